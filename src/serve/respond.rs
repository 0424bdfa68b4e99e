//! Turns one received batch into staged replies: per received buffer, the receive-side bookkeeping, the
//! guard stage, then the one choice of reply path (borrow the bytes, answer the whole train at once, or
//! one by one, each reply within the amplification cap).

use std::net::SocketAddr;

use super::guard::{Refusal, Tick};
use super::queue::{Destination, ReplyTo, Stamp};
use super::segments::Received;
use super::worker::Worker;
use crate::config::guard::canonical;
use crate::sys::limits::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};

/// How the replies to one received buffer are produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyPath {
    /// A pure echo: the replies are the request bytes themselves, borrowed from the receive buffer.
    Borrow,
    /// An echo-like handler answers a whole coalesced train with one call; the replies leave as one train.
    Train,
    /// The handler is called once per datagram.
    OneByOne,
}

/// Whether a received train may be answered as one unit: GSO is on, the kernel would take it as one
/// GSO message, and every datagram in it (each `stride` bytes, the last no longer) is within `max_datagram`.
#[inline]
fn train_fits(view: &Received<'_>, gso: bool, max_datagram: usize) -> bool {
    view.is_train()
        && gso
        && view.stride() <= max_datagram
        && view.count() <= GSO_MAX_SEGMENTS
        && view.bytes().len() <= GSO_MAX_BYTES
}

/// Picks the reply path for one received buffer. A lone datagram over `max_datagram`, or a train whose
/// datagrams may be, goes one by one so that each datagram is judged (and counted) on its own.
#[inline]
pub fn reply_path(view: &Received<'_>, echoes: bool, gso: bool, max_datagram: usize) -> ReplyPath {
    let whole = train_fits(view, gso, max_datagram);
    let lone_fits = !view.is_train() && view.bytes().len() <= max_datagram;
    if echoes && (whole || lone_fits) {
        ReplyPath::Borrow
    } else if whole {
        ReplyPath::Train
    } else {
        ReplyPath::OneByOne
    }
}

impl Worker {
    /// Runs the guard and the handler over the `count` buffers of the last receive (each GRO segment is
    /// one datagram) and stages the replies.
    /// A sampled batch's replies each stand for `weight` replies in the latency histogram.
    pub(super) fn respond(&mut self, count: usize, weight: u32) {
        // A clock read is ~20 ns and at moderate load a batch is one or two datagrams: only the rate
        // limiter needs one here.
        let now = if self.guard.reads_the_clock() {
            Tick::from_elapsed(self.started.elapsed())
        } else {
            Tick(0)
        };
        let guarded = !self.guard.admits_everything();
        let echoes = self.handler.echoes_requests();
        let mut datagrams = 0u64;
        for i in 0..count {
            let (info, start, view) = self.rx.get(i);
            let info = *info;
            let stats = &mut self.stats.current;
            if let Some(drops) = info.control.kernel_drops {
                stats.counters.kernel_rx_overflow +=
                    u64::from(drops.wrapping_sub(self.last_kernel_drops));
                self.last_kernel_drops = drops;
            }
            if info.truncated {
                // The kernel cut the buffer: at least one datagram, and we cannot know more.
                let lost = (info.len / view.stride()).max(1) as u64;
                stats.counters.rx += lost;
                stats.counters.truncated += lost;
                datagrams += lost;
                continue;
            }
            let chunks = view.count() as u64;
            stats.counters.rx += chunks;
            stats.counters.rx_bytes += view.bytes().len() as u64;
            datagrams += chunks;
            if view.is_train() {
                stats.counters.gro_trains += 1;
            }
            // Every segment of one buffer has the same sender and receive time: one group.
            self.next_group += 1;
            let group = self.next_group;
            let destination = Destination {
                peer: info.peer,
                source: if self.features.pktinfo {
                    info.control.local_ip
                } else {
                    None
                },
                ifindex: info.control.ifindex,
            };
            // Latency is measured from the kernel's arrival stamp only: a batch that was not sampled (or a
            // socket without timestamps, whose replies `Transmitter` never times) has none.
            let stamp = info
                .control
                .rx_time_ns
                .map_or(Stamp::NONE, |time| Stamp::measured(time, weight));
            let peer = info.peer.to_socket_addr();
            let mut admitted = view.count();
            if guarded {
                let verdict = self.guard.admit(peer, view.count() as u32, now);
                let counters = &mut self.stats.current.counters;
                counters.rate_limited_dry_run += u64::from(verdict.dry_run_refused);
                if let Some(reason) = verdict.reason {
                    let refused = u64::from(verdict.refused);
                    match reason {
                        Refusal::LoopGuard => counters.loop_guard += refused,
                        Refusal::AclDenied => counters.acl_denied += refused,
                        Refusal::RateLimited => counters.rate_limited += refused,
                    }
                }
                if verdict.admitted == 0 {
                    continue;
                }
                admitted = verdict.admitted as usize;
            }
            if !self.tx.queue.has_room() {
                self.flush();
            }
            let reply = Reply {
                to: ReplyTo {
                    destination,
                    group,
                    stamp,
                },
                peer,
                datagrams: admitted,
            };
            self.answer(start, reply, echoes);
        }
        self.stats.current.record_batch(datagrams);
    }

    /// Stages the replies to the admitted datagrams of the received buffer that starts at `start` in the
    /// receive buffer.
    fn answer(&mut self, start: usize, reply: Reply, echoes: bool) {
        let Worker {
            rx,
            tx,
            handler,
            guard,
            stats,
            socket,
            max_datagram,
            ..
        } = self;
        let stats = &mut *stats.current;
        let max_datagram = *max_datagram;
        let view = rx.view_at(start).prefix(reply.datagrams);
        // Echo-like replies are never larger than their requests: only other replies are measured.
        let capped = guard.amplification_enabled() && !echoes;
        let ipv6 = canonical(reply.peer.ip()).is_ipv6();
        let queue = &mut tx.queue;
        let path = reply_path(&view, echoes, queue.gso_enabled(), max_datagram);
        let to = &reply.to;
        let shape = (view.stride(), view.count());
        if path == ReplyPath::Borrow && queue.has_room() {
            queue.stage_borrowed(start, view.bytes().len(), shape, to);
            return;
        }
        if path == ReplyPath::Train
            && queue.has_room()
            && handler.handle_train(
                view.bytes(),
                view.stride(),
                reply.peer,
                queue.reply_buffer(),
            )
        {
            queue.stage_train(view.bytes().len(), shape.0, shape.1, to);
            return;
        }
        for request in view.segments() {
            if request.len() > max_datagram {
                stats.counters.truncated += 1;
                continue;
            }
            if !tx.queue.has_room() {
                tx.flush(socket, rx.bytes(), stats);
                if !tx.queue.has_room() {
                    stats.counters.tx_backpressure += 1;
                    continue;
                }
            }
            let queue = &mut tx.queue;
            match handler.handle(request, reply.peer, queue.reply_buffer()) {
                Some(len) if capped && !guard.reply_within_cap(request.len(), len, ipv6) => {
                    stats.counters.amplification_refused += 1;
                }
                Some(len) => queue.stage(len, to),
                None => stats.counters.no_reply += 1,
            }
        }
    }
}

/// Where the replies to one received buffer go, and what they share.
#[derive(Clone, Copy)]
struct Reply {
    to: ReplyTo,
    peer: SocketAddr,
    /// How many of the buffer's datagrams the guard admitted (the first ones).
    datagrams: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_path_judges_each_datagram_against_the_limit() {
        let train = [7u8; 500]; // 10 datagrams of 50 bytes
        let view = Received::new(&train, Some(50));
        assert_eq!(reply_path(&view, true, true, 100), ReplyPath::Borrow);
        assert_eq!(reply_path(&view, false, true, 100), ReplyPath::Train);
        // Without GSO a train cannot leave as one: each datagram is answered on its own.
        assert_eq!(reply_path(&view, true, false, 100), ReplyPath::OneByOne);
        // Datagrams over the limit are judged one by one, never the train as a whole.
        assert_eq!(reply_path(&view, true, true, 40), ReplyPath::OneByOne);
        let lone = [1u8; 200];
        let view = Received::new(&lone, None);
        assert_eq!(reply_path(&view, true, true, 100), ReplyPath::OneByOne);
        assert_eq!(reply_path(&view, true, true, 200), ReplyPath::Borrow);
        assert_eq!(
            reply_path(&Received::new(&[], None), true, true, 1),
            ReplyPath::Borrow
        );
    }
}
