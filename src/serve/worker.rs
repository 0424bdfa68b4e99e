//! One worker: its own socket and `mio` loop, receiving batches, answering them, sending GSO trains.
//!
//! The hot path per batch: one `recvmmsg` ([`ReceiveBuffer::receive`]), the guard and the handler over
//! its datagrams (`respond`), one seal (grouping into trains) and normally one `sendmmsg`
//! ([`Transmitter::flush`]). A busy worker receives until its socket runs dry; an idle one sleeps in a
//! blocking receive, and only in its `mio` poll set while replies wait for write space or a retry
//! timer. Nothing is allocated, locked or shared per datagram: counters and
//! histograms are the worker's own and are handed to the reporter at interval boundaries.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::guard::Guard;
use super::queue::ReplyQueue;
use super::receive::ReceiveBuffer;
use super::socket::{self, IdleWait, SocketFeatures};
use super::transmit::Transmitter;
use super::watch::SocketWatch;
use crate::handler::Handler;
use crate::stats::StatsLink;
use crate::sys::limits::GRO_SLOT;
use crate::sys::Wait;

pub const SOCKET: Token = Token(0);
pub const WAKER: Token = Token(1);

/// Receive batches a busy worker handles before it looks at the clock (interval reports, retry timers)
/// and the stop flag again.
const FAIRNESS_BATCHES: usize = 16;
/// Iovecs (replies, or runs of replies of one received buffer) a worker may hold queued for sending.
pub const QUEUE_ENTRIES: usize = 8192;
/// Bytes of replies a worker may hold queued while the kernel is not taking them.
pub const QUEUE_BYTES: usize = 4 << 20;
/// How often a worker whose socket could not be put in its poll set looks at the socket.
const UNWATCHED_POLL: Duration = Duration::from_millis(1);
/// At shutdown, how long a worker keeps answering what is already queued in its socket.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(50);

/// Everything one worker needs, built on the main thread (so bind errors surface before anything starts).
pub struct WorkerParts {
    pub index: usize,
    /// Which socket group (`serve::addresses`) this thread of the worker serves; 0 is the listen address.
    pub group: usize,
    pub socket: socket::WorkerSocket,
    pub poll: Poll,
    pub cpu: Option<usize>,
    pub batch: usize,
    pub max_datagram: usize,
    /// Kernel receive timestamps on one busy receive in this many (1: all); see [`Sampling`].
    pub latency_sample: usize,
    pub handler: Box<dyn Handler>,
    pub guard: Guard,
    pub stats: StatsLink,
    pub interval: Duration,
    pub started: Instant,
    pub stop: Arc<AtomicBool>,
    /// Set before `stop` when another process took the sockets over: stop reading at once.
    pub handed_over: Arc<AtomicBool>,
}

/// A running worker: the socket, both halves of the datapath, the handler and the stats it records into.
pub(super) struct Worker {
    pub index: usize,
    pub socket: UdpSocket,
    pub features: SocketFeatures,
    pub max_datagram: usize,
    pub rx: ReceiveBuffer,
    pub tx: Transmitter,
    /// Whether the socket is in the poll set (only while the worker sleeps with replies waiting for
    /// write space or a retry timer).
    pub watch: SocketWatch,
    pub handler: Box<dyn Handler>,
    pub guard: Guard,
    /// The origin of the guard's coarse clock.
    pub started: Instant,
    pub stats: StatsLink,
    /// Last cumulative kernel drop count seen (`SO_MEMINFO` or `SO_RXQ_OVFL`), to count only new drops.
    pub last_kernel_drops: u32,
    /// Numbers received buffers, so the reply queue can tell replies of one buffer apart cheaply.
    pub next_group: u64,
    /// Latency sampling: which receives get kernel timestamps, and what their replies weigh.
    pub sampling: Sampling,
    /// The receive timeout of the socket while the worker sleeps in it.
    pub idle_wait: IdleWait,
    /// The worker sleeps in its receive when idle (false once the socket turned non-blocking).
    pub sleeps_in_receive: bool,
}

/// What one receive brought, which decides how the worker waits next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    /// Nothing: the socket is dry.
    Empty,
    /// One datagram: a quiet socket (ping-pong), most likely dry now.
    One,
    /// Several datagrams (or an error the next receive gets past): more arrived while this batch was
    /// answered, so receiving again takes them one syscall sooner than sleeping.
    Several,
}

/// Which receive batches carry kernel timestamps (`--latency-sample N`), and what their latency weighs.
///
/// A receive that follows a receive of at least [`BUSY_BATCH`] datagrams is a busy one: the worker is
/// emptying a queue. One busy receive in N is stamped and each of its replies weighs N, so the histogram
/// keeps the share of busy periods and its count still estimates the replies sent. Every other receive
/// (the first after a wake-up, or after a short batch) is stamped and weighs 1, so a quiet worker
/// (ping-pong, low and moderate rates) measures every reply. The socket's `SO_TIMESTAMPNS` is switched
/// only when the next receive needs the other setting. A switch is a syscall (~0.4 us) and a busy
/// period costs two, so batches of two or three (evenly spaced arrivals at half load) must not start
/// one: with a threshold of 2 a worker at 100 k/s switched 37,000 times a second, with 4 about 1,300,
/// and at maximum load 4 samples about as often as 2 did (measured, `docs/BENCHMARKS.md` §8). (The server keeps one socket with timestamps on for its whole
/// life, so the kernel stamps every packet on arrival whatever this socket says, and a sampled
/// datagram's latency still includes its time queued in the socket.)
pub struct Sampling {
    every: u64,
    /// Busy receives that brought datagrams so far (the turn of the next one).
    busy_receives: u64,
    /// The last receive brought at least [`BUSY_BATCH`] datagrams: the next one is busy.
    busy: bool,
    /// The socket's timestamps are on.
    on: bool,
}

/// A receive of this many datagrams or more means a queue: the receive after it may go unstamped.
pub const BUSY_BATCH: usize = 4;

/// What [`Sampling`] says about the next receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SampleDecision {
    /// Switch the socket's timestamps to this before receiving (`None`: leave them as they are).
    switch: Option<bool>,
    /// How many replies each stamped reply of this receive stands for.
    weight: u32,
}

impl Sampling {
    /// Every receive stamped when `every` is 1 or the socket has no kernel timestamps (nothing to switch).
    pub fn new(every: usize, timestamps: bool) -> Sampling {
        let every = if timestamps { every.max(1) } else { 1 };
        Sampling {
            every: every as u64,
            busy_receives: 0,
            busy: false,
            on: timestamps,
        }
    }

    /// Before a receive.
    #[inline]
    fn before_receive(&mut self) -> SampleDecision {
        if self.every == 1 {
            return SampleDecision {
                switch: None,
                weight: 1,
            };
        }
        let (want, weight) = if self.busy {
            (
                self.busy_receives.is_multiple_of(self.every),
                self.every as u32,
            )
        } else {
            (true, 1)
        };
        let switch = (want != self.on).then(|| {
            self.on = want;
            want
        });
        SampleDecision { switch, weight }
    }

    /// After a receive that brought `datagrams` (0: it found the socket dry, which does not take a busy
    /// receive's turn; a failed receive is not reported here and changes nothing).
    #[inline]
    fn after_receive(&mut self, datagrams: usize) {
        if self.busy && datagrams > 0 {
            self.busy_receives += 1;
        }
        self.busy = datagrams >= BUSY_BATCH;
    }
}

/// Runs a worker until `stop` is set and its waker fires; then sends its final stats.
pub fn run(parts: WorkerParts) {
    if let Some(cpu) = parts.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            eprintln!(
                "udpd: warning: worker {} could not be pinned to CPU {cpu}; it runs unpinned",
                parts.index
            );
        }
    }
    let WorkerParts {
        index,
        socket,
        mut poll,
        batch,
        max_datagram,
        latency_sample,
        handler,
        guard,
        stats,
        interval,
        started,
        stop,
        handed_over,
        ..
    } = parts;
    // With GRO one buffer may hold up to 64 KiB of coalesced datagrams; without it, one byte more than the
    // largest accepted datagram lets an over-size one be seen whole enough to be counted.
    let slot_size = if socket.features.gro {
        (max_datagram + 1).max(GRO_SLOT)
    } else {
        max_datagram + 1
    }
    .next_multiple_of(64);
    let queue = ReplyQueue::new(QUEUE_BYTES, QUEUE_ENTRIES, socket.features.gso);
    let mut worker = Worker {
        index,
        socket: UdpSocket::from_std(socket.socket),
        features: socket.features,
        max_datagram,
        rx: ReceiveBuffer::new(batch, slot_size),
        tx: Transmitter::new(index, queue, socket.features.timestamps),
        watch: SocketWatch::new(SOCKET),
        handler,
        guard,
        started,
        stats,
        last_kernel_drops: 0,
        next_group: 0,
        sampling: Sampling::new(latency_sample, socket.features.timestamps),
        idle_wait: IdleWait::new(interval),
        sleeps_in_receive: true,
    };
    worker.event_loop(&mut poll, interval, started, &stop);
    worker.shut_down(handed_over.load(Ordering::Relaxed));
}

impl Worker {
    fn event_loop(
        &mut self,
        poll: &mut Poll,
        interval: Duration,
        started: Instant,
        stop: &AtomicBool,
    ) {
        let mut events = Events::with_capacity(16);
        let mut next_publish = started + interval;
        // Busy: the socket is out of the poll set and the worker receives until it runs dry. A worker
        // starts busy, so what was queued before it started is read at once.
        let mut busy = true;
        let mut watch_error_logged = false;
        loop {
            let now = Instant::now();
            if now >= next_publish {
                self.count_kernel_drops();
                self.stats.publish();
                self.tx.error_logged = false;
                while next_publish <= now {
                    next_publish += interval;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if self.tx.retry_at.is_some_and(|at| at <= now) {
                self.tx.retry_at = None;
                self.flush();
            }
            if busy {
                busy = self.receive_while_queued(FAIRNESS_BATCHES);
                continue;
            }
            if self.can_sleep_in_receive() {
                // Nothing to wait for but datagrams and the clock: sleep in the receive itself, for at
                // most the socket's receive timeout (`IdleWait`). One syscall per wake-up,
                // where the poll set costs three (add, wait, take out again) and a wait-queue entry
                // that every sent datagram's freed buffer locks.
                if self.watch.is_watched() {
                    let _ = self.watch.unwatch(poll.registry(), &mut self.socket);
                }
                self.idle_wait
                    .prepare(&self.socket, !self.stats.current.is_empty());
                let batch = self.receive_batch(Wait::ForOne);
                if batch == Batch::Empty && self.socket_went_nonblocking() {
                    // Another process sharing the socket (an older udpd taking it over on reload)
                    // made it non-blocking: the receive no longer waits, so wait in the poll set.
                    eprintln!(
                        "udpd: warning: worker {} socket was made non-blocking by another process; waiting in the poll set instead",
                        self.index
                    );
                    self.sleeps_in_receive = false;
                }
                busy = batch == Batch::Several;
                continue;
            }
            // Replies wait for write space or a retry timer: the worker sleeps in its poll set, asking
            // for write space while replies wait for it. Being added reports what is already queued,
            // so nothing is missed.
            let interest = if self.tx.write_blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let mut timeout = next_publish - now;
            if let Some(at) = self.tx.retry_at {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if let Err(error) = self
                .watch
                .watch(poll.registry(), &mut self.socket, interest)
            {
                // Not in the poll set: look again after a short sleep instead of waiting for an event.
                if !watch_error_logged {
                    eprintln!(
                        "udpd: warning: worker {} cannot add its socket to its poll set ({error}); polling it every millisecond",
                        self.index
                    );
                    watch_error_logged = true;
                }
                timeout = timeout.min(UNWATCHED_POLL);
            }
            if let Err(error) = poll.poll(&mut events, Some(timeout)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    eprintln!("udpd: error: worker {} poll failed: {error}", self.index);
                    return;
                }
            }
            let (mut readable, mut writable) = (!self.watch.is_watched(), false);
            for event in events.iter() {
                if event.token() == SOCKET {
                    readable |= event.is_readable() || event.is_error();
                    writable |= event.is_writable();
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if writable {
                self.flush();
            }
            // A batch of one means a quiet socket: the worker sleeps again, with no receive that would
            // come back empty. A fuller batch means load: out of the poll set until the socket runs dry
            // (a failure to take it out only leaves the write-space wake-ups in).
            if readable && self.receive_batch(Wait::No) == Batch::Several {
                let _ = self.watch.unwatch(poll.registry(), &mut self.socket);
                busy = true;
            }
        }
    }

    /// Whether the socket's receives no longer wait (checked only after an idle receive came back
    /// empty, at most a few times a second).
    fn socket_went_nonblocking(&self) -> bool {
        crate::sys::is_nonblocking(self.socket.as_fd()).unwrap_or(false)
    }

    /// Adds the drops the kernel counted at the socket since the last look (`SO_MEMINFO`).
    fn count_kernel_drops(&mut self) {
        if !self.features.drops_on_demand {
            return;
        }
        if let Ok(total) = crate::sys::socket_drops(self.socket.as_fd()) {
            self.stats.current.counters.kernel_rx_overflow +=
                u64::from(total.wrapping_sub(self.last_kernel_drops));
            self.last_kernel_drops = total;
        }
    }

    /// Sends what is queued, as far as the kernel takes it.
    pub(super) fn flush(&mut self) {
        self.tx
            .flush(&self.socket, self.rx.bytes(), &mut self.stats.current);
    }

    /// Nothing waits for write space or a retry timer, so the worker may wait for datagrams in a blocking
    /// receive rather than in its poll set.
    fn can_sleep_in_receive(&self) -> bool {
        self.sleeps_in_receive && !self.tx.is_waiting()
    }

    /// A busy worker: handles up to `max_batches` receive batches; returns whether more may be queued
    /// (every batch brought several datagrams). Each receive waits for its first datagram when the
    /// worker may sleep in its receive (`MSG_WAITFORONE` returns at once while anything is queued), so
    /// the receive that finds the socket dry is also the one that sleeps: one syscall where a
    /// non-waiting receive and then a sleeping one were two (at 100 k/s spread, one receive in 13).
    fn receive_while_queued(&mut self, max_batches: usize) -> bool {
        (0..max_batches).all(|_| {
            let wait = if self.can_sleep_in_receive() {
                self.idle_wait
                    .prepare(&self.socket, !self.stats.current.is_empty());
                Wait::ForOne
            } else {
                Wait::No
            };
            self.receive_batch(wait) == Batch::Several
        })
    }

    /// Handles up to `max_batches` receive batches without waiting; returns whether more may be queued.
    fn receive_some(&mut self, max_batches: usize) -> bool {
        (0..max_batches).all(|_| self.receive_batch(Wait::No) == Batch::Several)
    }

    /// Receives one batch (waiting for its first datagram as `wait` says) and answers it.
    fn receive_batch(&mut self, wait: Wait) -> Batch {
        let sample = self.sampling.before_receive();
        if let Some(on) = sample.switch {
            // A failed switch only changes which batches are sampled.
            let _ = nix::sys::socket::setsockopt(
                &self.socket,
                nix::sys::socket::sockopt::ReceiveTimestampns,
                &on,
            );
        }
        let refill = self
            .rx
            .receive(self.socket.as_fd(), &mut self.tx.queue, wait);
        self.stats.current.counters.tx_backpressure += refill.dropped_replies;
        match refill.received {
            Ok(count) => {
                let batch = if count <= 1 {
                    Batch::One
                } else {
                    Batch::Several
                };
                self.sampling.after_receive(count);
                self.respond(count, sample.weight);
                self.flush();
                batch
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.sampling.after_receive(0);
                Batch::Empty
            }
            // Interrupted, or a pending socket error: more may be queued behind it.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Batch::Several,
            Err(error) => {
                // Pending socket errors (ICMP reports) surface here; they concern earlier sends.
                if !self.tx.error_logged {
                    eprintln!(
                        "udpd: warning: worker {} receive error: {error}",
                        self.index
                    );
                    self.tx.error_logged = true;
                }
                Batch::Several
            }
        }
    }

    /// Answers what is already queued (briefly, unless the sockets were `handed_over` to a successor,
    /// which reads it instead), sends what can be sent, counts the rest, reports.
    fn shut_down(mut self, handed_over: bool) {
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        while !handed_over && Instant::now() < deadline && self.receive_some(1) {}
        self.flush();
        let unsent = self.tx.queue.discard_all();
        self.stats.current.counters.unsent_at_exit += unsent.datagrams;
        if self.features.drops_on_demand {
            self.count_kernel_drops();
        } else if let Some(total) = super::proc_net::socket_drops(self.socket.as_fd()) {
            // SO_RXQ_OVFL reports drops only on the next datagram: those after the last are seen here.
            let seen = u64::from(self.last_kernel_drops);
            if total > seen {
                self.stats.current.counters.kernel_rx_overflow += total - seen;
            }
        }
        self.stats.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::{SampleDecision, Sampling, BUSY_BATCH};

    /// A batch long enough to make the next receive a busy one.
    const FULL: usize = BUSY_BATCH;

    /// One receive that brings `datagrams` (0: the socket was dry): the switch before it and its weight.
    fn receive(sampling: &mut Sampling, datagrams: usize) -> (Option<bool>, u32) {
        let SampleDecision { switch, weight } = sampling.before_receive();
        sampling.after_receive(datagrams);
        (switch, weight)
    }

    #[test]
    fn every_receive_is_stamped_at_one_in_one_or_without_timestamps() {
        for mut sampling in [Sampling::new(1, true), Sampling::new(16, false)] {
            for datagrams in [FULL, FULL, 0, 1, FULL] {
                assert_eq!(receive(&mut sampling, datagrams), (None, 1));
            }
        }
    }

    #[test]
    fn a_busy_worker_stamps_one_receive_in_n_and_weighs_it_n() {
        let mut sampling = Sampling::new(4, true);
        // The first receive follows no full one: stamped, weight 1.
        assert_eq!(receive(&mut sampling, FULL), (None, 1));
        let busy: Vec<_> = (0..9).map(|_| receive(&mut sampling, FULL)).collect();
        // Busy receive 0 is sampled (timestamps still on), 1-3 off, 4 on, 5-7 off, 8 on: each weighs 4.
        let switches: Vec<_> = busy.iter().map(|(switch, _)| *switch).collect();
        assert_eq!(
            switches,
            [
                None,
                Some(false),
                None,
                None,
                Some(true),
                Some(false),
                None,
                None,
                Some(true)
            ]
        );
        assert!(busy.iter().all(|(_, weight)| *weight == 4));
    }

    #[test]
    fn a_receive_after_a_dry_or_single_one_is_stamped_and_weighs_one() {
        let mut sampling = Sampling::new(8, true);
        assert_eq!(receive(&mut sampling, FULL), (None, 1));
        assert_eq!(receive(&mut sampling, FULL), (None, 8));
        assert_eq!(receive(&mut sampling, 0), (Some(false), 8));
        // The socket ran dry (the worker slept): stamped, whatever the busy count says.
        assert_eq!(receive(&mut sampling, 1), (Some(true), 1));
        // Ping-pong: one datagram per receive, every one stamped, no switching.
        assert_eq!(receive(&mut sampling, 1), (None, 1));
        // Short batches (evenly spaced arrivals at moderate load): still every receive stamped.
        for _ in 0..4 {
            assert_eq!(receive(&mut sampling, FULL - 1), (None, 1));
        }
        assert_eq!(receive(&mut sampling, FULL), (None, 1));
        // Busy again: the count goes on from where it was (busy receive 1 of 8: not sampled).
        assert_eq!(receive(&mut sampling, FULL), (Some(false), 8));
    }

    #[test]
    fn an_empty_receive_does_not_take_the_sampled_turn() {
        let mut sampling = Sampling::new(2, true);
        receive(&mut sampling, FULL);
        assert_eq!(receive(&mut sampling, FULL), (None, 2));
        assert_eq!(receive(&mut sampling, FULL), (Some(false), 2));
        // The sampled turn comes up, but an interrupted receive brings nothing and changes nothing...
        assert_eq!(sampling.before_receive().switch, Some(true));
        // ...so the next receive with datagrams is still the sampled one.
        assert_eq!(receive(&mut sampling, FULL), (None, 2));
        assert_eq!(receive(&mut sampling, FULL), (Some(false), 2));
    }
}
