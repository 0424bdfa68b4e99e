//! Reply bookkeeping between the handler and `sendmmsg`: a bounded queue of replies, grouped into GSO trains.
//!
//! Replies are written into one arena, staged with their destination, then *sealed*: consecutive replies to
//! the same destination with the same size (the last may be shorter) become one message carrying
//! `UDP_SEGMENT`, and the messages wait in order until the kernel takes them. The queue is linear: it
//! empties completely before it is reused, so nothing wraps and nothing is allocated after construction.
//! When it is full (the kernel has not taken earlier replies), new replies are refused and the caller
//! counts them as `tx_backpressure`.

use std::net::IpAddr;

use crate::sys::{IoRange, OutMessage, PeerAddr, SendControl};

/// The largest reply a handler may write (the reply buffer it is given is this long).
pub const REPLY_MAX: usize = 65_535;
/// Most segments the kernel accepts in one GSO message (`UDP_MAX_SEGMENTS` on older kernels).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message (an IP datagram is at most 64 KiB, headers included).
pub const GSO_MAX_BYTES: usize = 65_000;
/// How many of the most recent trains are searched for one to extend, bounding the work per reply.
const TRAIN_LOOKBACK: usize = 8;

/// Where a reply goes and where it leaves from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Destination {
    pub peer: PeerAddr,
    /// Source address for the reply (the address the request was sent to), when the socket is bound to a
    /// wildcard address; `None` otherwise.
    pub source: Option<IpAddr>,
    /// Interface the request arrived on (used for IPv6 packet info).
    pub ifindex: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct StagedReply {
    offset: u32,
    len: u32,
    destination: Destination,
    rx_time_ns: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Train {
    destination: Destination,
    segment: u32,
    count: u32,
    bytes: u32,
    closed: bool,
    iov_start: u32,
}

/// Datagrams and bytes handed to the kernel (or refused) by one [`ReplyQueue::complete`] or [`ReplyQueue::fail_head`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    pub messages: usize,
    pub datagrams: u64,
    pub bytes: u64,
    /// Messages of more than one segment among them.
    pub trains: u64,
}

/// The bounded queue of replies waiting for `sendmmsg`.
pub struct ReplyQueue {
    arena: Vec<u8>,
    arena_used: usize,
    staged: Vec<StagedReply>,
    ranges: Vec<IoRange>,
    range_rx_time_ns: Vec<u64>,
    messages: Vec<OutMessage>,
    head: usize,
    trains: Vec<Train>,
    assignment: Vec<u32>,
    max_datagrams: usize,
    gso: bool,
}

impl ReplyQueue {
    /// A queue holding at most `arena_bytes` of replies and `max_datagrams` datagrams; `gso` groups trains.
    pub fn new(arena_bytes: usize, max_datagrams: usize, gso: bool) -> Self {
        let arena_bytes = arena_bytes.max(2 * REPLY_MAX);
        let max_datagrams = max_datagrams.max(1);
        ReplyQueue {
            arena: vec![0; arena_bytes],
            arena_used: 0,
            staged: Vec::with_capacity(max_datagrams),
            ranges: Vec::with_capacity(max_datagrams),
            range_rx_time_ns: Vec::with_capacity(max_datagrams),
            messages: Vec::with_capacity(max_datagrams),
            head: 0,
            trains: Vec::with_capacity(max_datagrams),
            assignment: Vec::with_capacity(max_datagrams),
            max_datagrams,
            gso,
        }
    }

    /// Whether one more reply of any size fits (arena room for [`REPLY_MAX`] bytes and a datagram slot).
    #[inline]
    pub fn has_room(&self) -> bool {
        self.arena.len() - self.arena_used >= REPLY_MAX
            && self.staged.len() + self.ranges.len() < self.max_datagrams
    }

    /// The buffer the next reply is written into. Call only when [`has_room`](Self::has_room) is true.
    #[inline]
    pub fn reply_buffer(&mut self) -> &mut [u8] {
        let end = (self.arena_used + REPLY_MAX).min(self.arena.len());
        &mut self.arena[self.arena_used..end]
    }

    /// Records that the handler wrote `len` bytes into [`reply_buffer`](Self::reply_buffer) for `destination`.
    #[inline]
    pub fn stage(&mut self, len: usize, destination: Destination, rx_time_ns: u64) {
        let len = len.min(self.arena.len() - self.arena_used);
        self.staged.push(StagedReply {
            offset: self.arena_used as u32,
            len: len as u32,
            destination,
            rx_time_ns,
        });
        self.arena_used += len;
    }

    /// Turns GSO grouping off (after the kernel refused it); already sealed trains are split too.
    pub fn disable_gso(&mut self) {
        self.gso = false;
        self.split_unsent_trains();
    }

    pub fn gso_enabled(&self) -> bool {
        self.gso
    }

    /// Groups the staged replies into messages appended after those already waiting.
    pub fn seal(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        self.trains.clear();
        self.assignment.clear();
        for reply in &self.staged {
            let index = Self::place(&mut self.trains, reply, self.gso);
            self.assignment.push(index);
        }
        // Lay the iovecs of each train out contiguously, trains in order of their first reply.
        let mut next = self.ranges.len() as u32;
        for train in &mut self.trains {
            train.iov_start = next;
            next += train.count;
            train.count = 0;
        }
        let total = next as usize;
        self.ranges.resize(total, IoRange::default());
        self.range_rx_time_ns.resize(total, 0);
        for (reply, &index) in self.staged.iter().zip(&self.assignment) {
            let train = &mut self.trains[index as usize];
            let slot = (train.iov_start + train.count) as usize;
            train.count += 1;
            self.ranges[slot] = IoRange {
                offset: reply.offset,
                len: reply.len,
            };
            self.range_rx_time_ns[slot] = reply.rx_time_ns;
        }
        for train in &self.trains {
            self.messages.push(OutMessage {
                peer: train.destination.peer,
                control: SendControl {
                    source_ip: train.destination.source,
                    ifindex: train.destination.ifindex,
                    segment_size: if train.count > 1 {
                        train.segment as u16
                    } else {
                        0
                    },
                },
                iov_start: train.iov_start,
                iov_count: train.count,
            });
        }
        self.staged.clear();
    }

    /// Chooses the train for one reply: extends a recent open train to the same destination when the
    /// size allows, else opens a new one (closing the old, so order per destination is kept).
    fn place(trains: &mut Vec<Train>, reply: &StagedReply, gso: bool) -> u32 {
        if gso && reply.len > 0 {
            let lookback_start = trains.len().saturating_sub(TRAIN_LOOKBACK);
            for index in (lookback_start..trains.len()).rev() {
                let train = &mut trains[index];
                if train.destination != reply.destination {
                    continue;
                }
                let fits = !train.closed
                    && reply.len <= train.segment
                    && (train.count as usize) < GSO_MAX_SEGMENTS
                    && (train.bytes + reply.len) as usize <= GSO_MAX_BYTES;
                if fits {
                    train.count += 1;
                    train.bytes += reply.len;
                    train.closed = reply.len < train.segment;
                    return index as u32;
                }
                train.closed = true;
                break;
            }
        } else if let Some(train) = trains
            .iter_mut()
            .rev()
            .take(TRAIN_LOOKBACK)
            .find(|train| train.destination == reply.destination)
        {
            train.closed = true;
        }
        trains.push(Train {
            destination: reply.destination,
            segment: reply.len,
            count: 1,
            bytes: reply.len,
            // Empty replies cannot be GSO segments, and without GSO every train holds one datagram.
            closed: reply.len == 0 || !gso,
            iov_start: 0,
        });
        (trains.len() - 1) as u32
    }

    fn split_unsent_trains(&mut self) {
        let unsent = self.messages.len() - self.head;
        if self.messages[self.head..].iter().all(|m| m.iov_count <= 1) {
            return;
        }
        let mut split = Vec::with_capacity(unsent);
        for message in &self.messages[self.head..] {
            for i in 0..message.iov_count {
                split.push(OutMessage {
                    iov_start: message.iov_start + i,
                    iov_count: 1,
                    control: SendControl {
                        segment_size: 0,
                        ..message.control
                    },
                    ..*message
                });
            }
        }
        self.messages.truncate(self.head);
        self.messages.extend_from_slice(&split);
    }

    /// Messages sealed and not yet taken by the kernel.
    pub fn unsent(&self) -> &[OutMessage] {
        &self.messages[self.head..]
    }

    /// Everything `send_batch` needs: the arena, the iovec ranges and the unsent messages.
    pub fn send_view(&self) -> (&[u8], &[IoRange], &[OutMessage]) {
        (&self.arena, &self.ranges, &self.messages[self.head..])
    }

    pub fn is_idle(&self) -> bool {
        self.head == self.messages.len() && self.staged.is_empty()
    }

    /// Marks the first `count` unsent messages as taken by the kernel; `on_datagrams` sees the receive
    /// timestamps of their datagrams (runs of equal timestamps, as `(rx_time_ns, n)`), for latency.
    pub fn complete(&mut self, count: usize, on_datagrams: impl FnMut(u64, u64)) -> Completed {
        let done = self.advance(count, on_datagrams);
        self.reset_if_drained();
        done
    }

    /// Drops the first unsent message after an error the kernel will not get over; returns what it held.
    pub fn fail_head(&mut self) -> Completed {
        let done = self.advance(1, |_, _| {});
        self.reset_if_drained();
        done
    }

    /// Drops everything still queued (at exit); returns what it held.
    pub fn discard_all(&mut self) -> Completed {
        self.seal();
        let remaining = self.messages.len() - self.head;
        let done = self.advance(remaining, |_, _| {});
        self.reset_if_drained();
        done
    }

    fn advance(&mut self, count: usize, mut on_datagrams: impl FnMut(u64, u64)) -> Completed {
        let count = count.min(self.messages.len() - self.head);
        let mut done = Completed {
            messages: count,
            ..Completed::default()
        };
        if count == 0 {
            return done;
        }
        let first = self.messages[self.head].iov_start as usize;
        let last = &self.messages[self.head + count - 1];
        let end = (last.iov_start + last.iov_count) as usize;
        done.trains = self.messages[self.head..self.head + count]
            .iter()
            .filter(|m| m.iov_count > 1)
            .count() as u64;
        done.datagrams = (end - first) as u64;
        done.bytes = self.ranges[first..end]
            .iter()
            .map(|r| u64::from(r.len))
            .sum();
        let times = &self.range_rx_time_ns[first..end];
        let mut run_start = 0;
        for i in 1..=times.len() {
            if i == times.len() || times[i] != times[run_start] {
                on_datagrams(times[run_start], (i - run_start) as u64);
                run_start = i;
            }
        }
        self.head += count;
        done
    }

    fn reset_if_drained(&mut self) {
        if self.head == self.messages.len() && self.staged.is_empty() {
            self.head = 0;
            self.messages.clear();
            self.ranges.clear();
            self.range_rx_time_ns.clear();
            self.arena_used = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: u16) -> Destination {
        Destination {
            peer: PeerAddr::from_socket_addr(([127, 0, 0, 1], port).into()),
            source: None,
            ifindex: 0,
        }
    }

    fn push(queue: &mut ReplyQueue, port: u16, bytes: &[u8]) {
        assert!(queue.has_room());
        queue.reply_buffer()[..bytes.len()].copy_from_slice(bytes);
        queue.stage(bytes.len(), dest(port), 7);
    }

    /// The datagrams each message would put on the wire, as (port, segment size, payloads).
    fn wire(queue: &ReplyQueue) -> Vec<(u16, u16, Vec<Vec<u8>>)> {
        let (arena, ranges, messages) = queue.send_view();
        messages
            .iter()
            .map(|m| {
                let payloads = ranges[m.iov_start as usize..(m.iov_start + m.iov_count) as usize]
                    .iter()
                    .map(|r| arena[r.offset as usize..(r.offset + r.len) as usize].to_vec())
                    .collect();
                (
                    m.peer.to_socket_addr().port(),
                    m.control.segment_size,
                    payloads,
                )
            })
            .collect()
    }

    #[test]
    fn same_destination_same_size_becomes_one_train_with_shorter_tail() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        push(&mut queue, 1, b"aaaa");
        push(&mut queue, 1, b"bbbb");
        push(&mut queue, 1, b"cc");
        push(&mut queue, 1, b"dddd");
        queue.seal();
        let out = wire(&queue);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            (
                1,
                4,
                vec![b"aaaa".to_vec(), b"bbbb".to_vec(), b"cc".to_vec()]
            )
        );
        assert_eq!(out[1], (1, 0, vec![b"dddd".to_vec()]));
    }

    #[test]
    fn interleaved_destinations_keep_per_destination_order() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        for i in 0..6u8 {
            push(&mut queue, 1 + u16::from(i % 2), &[i; 3]);
        }
        queue.seal();
        let out = wire(&queue);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], (1, 3, vec![vec![0; 3], vec![2; 3], vec![4; 3]]));
        assert_eq!(out[1], (2, 3, vec![vec![1; 3], vec![3; 3], vec![5; 3]]));
    }

    #[test]
    fn larger_reply_or_empty_reply_starts_a_new_message() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        push(&mut queue, 1, b"ab");
        push(&mut queue, 1, b"abc");
        push(&mut queue, 1, b"");
        push(&mut queue, 1, b"xyz");
        queue.seal();
        let sizes: Vec<usize> = wire(&queue).iter().map(|m| m.2.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1]);
        assert!(wire(&queue).iter().all(|m| m.1 == 0));
    }

    #[test]
    fn trains_respect_segment_and_byte_limits() {
        let mut queue = ReplyQueue::new(8 << 20, 4096, true);
        for _ in 0..(GSO_MAX_SEGMENTS + 5) {
            push(&mut queue, 1, &[1; 10]);
        }
        for _ in 0..70 {
            push(&mut queue, 2, &[2; 1400]);
        }
        queue.seal();
        let out = wire(&queue);
        let per_message: Vec<(u16, usize)> = out.iter().map(|m| (m.0, m.2.len())).collect();
        assert_eq!(per_message[0], (1, GSO_MAX_SEGMENTS));
        assert_eq!(per_message[1], (1, 5));
        assert_eq!(per_message[2], (2, GSO_MAX_BYTES / 1400));
        assert!(out
            .iter()
            .all(|m| m.2.iter().map(Vec::len).sum::<usize>() <= GSO_MAX_BYTES));
        let total: usize = out.iter().map(|m| m.2.len()).sum();
        assert_eq!(total, GSO_MAX_SEGMENTS + 5 + 70);
    }

    #[test]
    fn without_gso_every_reply_is_its_own_message() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, false);
        for _ in 0..4 {
            push(&mut queue, 1, b"same");
        }
        queue.seal();
        assert_eq!(queue.unsent().len(), 4);
        assert!(queue.unsent().iter().all(|m| m.control.segment_size == 0));
    }

    #[test]
    fn disabling_gso_splits_sealed_trains_in_order() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        for i in 0..3u8 {
            push(&mut queue, 1, &[i; 5]);
        }
        queue.seal();
        assert_eq!(queue.unsent().len(), 1);
        queue.disable_gso();
        let out = wire(&queue);
        assert_eq!(out.len(), 3);
        for (i, message) in out.iter().enumerate() {
            assert_eq!(message.1, 0);
            assert_eq!(message.2, vec![vec![i as u8; 5]]);
        }
    }

    #[test]
    fn partial_completion_then_drain_resets_the_queue() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        push(&mut queue, 1, b"x");
        push(&mut queue, 2, b"yy");
        push(&mut queue, 2, b"zz");
        queue.seal();
        let mut seen = Vec::new();
        let first = queue.complete(1, |t, n| seen.push((t, n)));
        assert_eq!(
            first,
            Completed {
                messages: 1,
                datagrams: 1,
                bytes: 1,
                trains: 0
            }
        );
        assert!(!queue.is_idle());
        let second = queue.complete(5, |t, n| seen.push((t, n)));
        assert_eq!(
            second,
            Completed {
                messages: 1,
                datagrams: 2,
                bytes: 4,
                trains: 1
            }
        );
        assert_eq!(seen, vec![(7, 1), (7, 2)]);
        assert!(queue.is_idle());
        assert_eq!(queue.arena_used, 0);
    }

    #[test]
    fn full_queue_refuses_and_counts_what_it_drops() {
        let mut queue = ReplyQueue::new(0, 3, true);
        for _ in 0..3 {
            push(&mut queue, 1, b"abc");
        }
        assert!(!queue.has_room());
        queue.seal();
        let dropped = queue.fail_head();
        assert_eq!(dropped.datagrams, 3);
        assert!(queue.is_idle());
        assert!(queue.has_room());
        push(&mut queue, 1, b"q");
        let rest = queue.discard_all();
        assert_eq!((rest.datagrams, rest.bytes), (1, 1));
    }
}
