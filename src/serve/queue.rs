//! The in-flight reply queue between the handler and `sendmmsg`: replies written into one arena (or
//! borrowed from the receive buffer), sealed into GSO trains (see [`super::train`]), and held in order until
//! the kernel takes them.
//!
//! The queue is linear: it empties completely before it is reused, so nothing wraps and nothing is
//! allocated after construction. When it is full (the kernel has not taken earlier replies), new replies
//! are refused and the caller counts them as `tx_backpressure`.
//!
//! A reply identical to its request (echo) need not be copied at all: it may *borrow* the request's bytes
//! in the receive buffer ([`ReplyQueue::stage_borrowed`]). Before that buffer is reused, whatever still
//! borrows it must be copied into the arena ([`ReplyQueue::detach_borrowed`]); the worker's receive buffer
//! (`super::receive::ReceiveBuffer`) can only be refilled through a call that does exactly that.

use super::segments::split_into_datagrams;
pub use super::train::{Bytes, Destination, ReplyTo, Stamp};
use super::train::{Grouping, StagedRun};
use crate::sys::{IoRange, OutMessage};

/// The largest reply a handler may write (the reply buffer it is given is this long).
pub const REPLY_MAX: usize = crate::sys::limits::MAX_DATAGRAM;

/// Datagrams and bytes handed to the kernel (or refused) by one [`ReplyQueue::complete`] or [`ReplyQueue::fail_head`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    pub messages: usize,
    pub datagrams: u64,
    pub bytes: u64,
    /// Messages of more than one segment among them.
    pub trains: u64,
}

/// What `sys::send_batch` needs, with the two buffers in the order their [`Bytes::index`] names them.
pub struct SendView<'a> {
    pub buffers: [&'a [u8]; 2],
    pub ranges: &'a [IoRange],
    pub messages: &'a [OutMessage],
}

/// The bounded queue of replies waiting for `sendmmsg`.
pub struct ReplyQueue {
    arena: Vec<u8>,
    arena_used: usize,
    staged: Vec<StagedRun>,
    grouping: Grouping,
    ranges: Vec<IoRange>,
    /// Per iovec: the receive time its datagrams share, and how many datagrams it holds.
    range_stamps: Vec<Stamp>,
    range_datagrams: Vec<u32>,
    messages: Vec<OutMessage>,
    head: usize,
    max_datagrams: usize,
    gso: bool,
    /// Some unsent iovec points into the receive buffer.
    borrows: bool,
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
            grouping: Grouping::with_capacity(max_datagrams),
            ranges: Vec::with_capacity(max_datagrams),
            range_stamps: Vec::with_capacity(max_datagrams),
            range_datagrams: Vec::with_capacity(max_datagrams),
            messages: Vec::with_capacity(max_datagrams),
            head: 0,
            max_datagrams,
            gso,
            borrows: false,
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

    /// Takes `bytes` of the reply buffer for a staged run (clamped to what the arena holds); returns the offset.
    fn claim(&mut self, bytes: usize) -> (usize, usize) {
        let bytes = bytes.min(REPLY_MAX).min(self.arena.len() - self.arena_used);
        let offset = self.arena_used;
        self.arena_used += bytes;
        (offset, bytes)
    }

    /// Records a whole reply train the handler wrote at once into [`reply_buffer`](Self::reply_buffer):
    /// `bytes` in `count` datagrams of `segment` bytes (the last may be shorter), for one destination.
    /// The caller keeps `count` within `GSO_MAX_SEGMENTS` and `bytes` within `GSO_MAX_BYTES`.
    pub fn stage_train(&mut self, bytes: usize, segment: usize, count: usize, to: &ReplyTo) {
        let (offset, bytes) = self.claim(bytes);
        let run = StagedRun::new(Bytes::Arena, offset, bytes, (segment, count), self.gso, to);
        self.staged.push(run);
    }

    /// Records replies that are byte for byte the requests at `offset..offset + bytes` of the receive buffer
    /// (`count` datagrams of `segment` bytes, the last possibly shorter), without copying them. The caller
    /// keeps `count` within `GSO_MAX_SEGMENTS` and `bytes` within `GSO_MAX_BYTES` (one datagram when GSO
    /// is off); the bytes are copied out by [`detach_borrowed`](Self::detach_borrowed) before the receive
    /// buffer is refilled.
    pub fn stage_borrowed(
        &mut self,
        offset: usize,
        bytes: usize,
        (segment, count): (usize, usize),
        to: &ReplyTo,
    ) {
        let run = StagedRun::new(
            Bytes::Received,
            offset,
            bytes,
            (segment, count),
            self.gso,
            to,
        );
        self.staged.push(run);
    }

    /// Records that the handler wrote `len` bytes into [`reply_buffer`](Self::reply_buffer) for `to`.
    ///
    /// Replies staged for the same `to.group` (the same received buffer) share destination and receive
    /// time, which lets a GRO-coalesced request train become a reply train without comparing addresses
    /// per datagram.
    #[inline]
    pub fn stage(&mut self, len: usize, to: &ReplyTo) {
        let (offset, len) = self.claim(len);
        if let Some(run) = self.staged.last_mut() {
            if run.try_extend(len as u32, offset as u32, to.group) {
                return;
            }
        }
        let run = StagedRun::new(Bytes::Arena, offset, len, (len, 1), self.gso, to);
        self.staged.push(run);
    }

    /// Whether unsent replies still borrow the receive buffer.
    pub fn borrows_received(&self) -> bool {
        self.borrows
            || self
                .staged
                .iter()
                .any(|run| run.bytes_in == Bytes::Received)
    }

    /// Copies every unsent reply that borrows `received` into the arena, so the receive buffer can be
    /// reused. A message whose borrowed bytes no longer fit is dropped whole; returns the datagrams dropped.
    pub fn detach_borrowed(&mut self, received: &[u8]) -> u64 {
        self.seal();
        if !self.borrows {
            return 0;
        }
        let mut dropped = 0;
        let mut kept = self.head;
        for index in self.head..self.messages.len() {
            let message = self.messages[index];
            let iovs = message.iov_start as usize..(message.iov_start + message.iov_count) as usize;
            let borrowed: usize = self.ranges[iovs.clone()]
                .iter()
                .filter(|r| r.buffer == Bytes::Received.index())
                .map(|r| r.len as usize)
                .sum();
            if borrowed > self.arena.len() - self.arena_used {
                dropped += self.range_datagrams[iovs.clone()]
                    .iter()
                    .map(|&n| u64::from(n))
                    .sum::<u64>();
                continue;
            }
            for range in &mut self.ranges[iovs] {
                if range.buffer == Bytes::Received.index() {
                    let (from, len) = (range.offset as usize, range.len as usize);
                    let to = self.arena_used;
                    self.arena[to..to + len].copy_from_slice(&received[from..from + len]);
                    self.arena_used += len;
                    *range = IoRange {
                        buffer: Bytes::Arena.index(),
                        offset: to as u32,
                        len: len as u32,
                    };
                }
            }
            // Dropped messages leave their iovecs unreferenced; kept ones keep their order.
            self.messages[kept] = message;
            kept += 1;
        }
        self.messages.truncate(kept);
        self.borrows = false;
        self.reset_if_drained();
        dropped
    }

    /// Turns GSO grouping off (after the kernel refused it); already sealed trains are split too.
    pub fn disable_gso(&mut self) {
        self.gso = false;
        self.seal();
        self.split_unsent(usize::MAX);
    }

    pub fn gso_enabled(&self) -> bool {
        self.gso
    }

    /// Cuts the first unsent message, if it is a GSO train, into single datagrams sent one by one, so that
    /// a refusal can be attributed (to the train's destination, or to GSO itself); returns the datagrams
    /// it now spans (0 when the head was not a train).
    pub fn split_head_train(&mut self) -> usize {
        match self.unsent().first() {
            Some(head) if head.control.segment_size > 0 => {
                let before = self.unsent().len();
                self.split_unsent(1);
                self.unsent().len() - before + 1
            }
            _ => 0,
        }
    }

    /// Groups the staged runs into messages appended after those already waiting.
    pub fn seal(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let first_iov = self.ranges.len() as u32;
        let total = self.grouping.group(&self.staged, self.gso, first_iov) as usize;
        self.ranges.resize(total, IoRange::default());
        self.range_stamps.resize(total, Stamp::NONE);
        self.range_datagrams.resize(total, 0);
        let (ranges, times, datagrams, borrows) = (
            &mut self.ranges,
            &mut self.range_stamps,
            &mut self.range_datagrams,
            &mut self.borrows,
        );
        self.grouping.place_runs(&self.staged, |run, slot| {
            ranges[slot] = IoRange {
                buffer: run.bytes_in.index(),
                offset: run.offset,
                len: run.bytes,
            };
            *borrows |= run.bytes_in == Bytes::Received;
            times[slot] = run.stamp;
            datagrams[slot] = run.count;
        });
        self.messages
            .extend(self.grouping.trains.iter().map(|train| train.message()));
        self.staged.clear();
    }

    /// Rewrites the first `count` unsent messages as single-datagram messages (one iovec each, no
    /// `UDP_SEGMENT`), keeping the rest as they are. Rare (a refusal): it may allocate.
    fn split_unsent(&mut self, count: usize) {
        let unsent = &self.messages[self.head..];
        if unsent.is_empty()
            || unsent
                .iter()
                .take(count)
                .all(|m| m.control.segment_size == 0)
        {
            return;
        }
        let first_iov = unsent[0].iov_start as usize;
        let mut ranges = Vec::new();
        let mut times = Vec::new();
        let mut datagrams = Vec::new();
        let mut messages = Vec::new();
        for (k, message) in unsent.iter().enumerate() {
            if k < count {
                split_into_datagrams(message, &self.ranges, |mut single, range, iov| {
                    single.iov_start = (first_iov + ranges.len()) as u32;
                    messages.push(single);
                    ranges.push(range);
                    times.push(self.range_stamps[iov]);
                    datagrams.push(1);
                });
            } else {
                let start = message.iov_start as usize;
                let iovs = start..start + message.iov_count as usize;
                messages.push(OutMessage {
                    iov_start: (first_iov + ranges.len()) as u32,
                    ..*message
                });
                ranges.extend_from_slice(&self.ranges[iovs.clone()]);
                times.extend_from_slice(&self.range_stamps[iovs.clone()]);
                datagrams.extend_from_slice(&self.range_datagrams[iovs]);
            }
        }
        self.messages.truncate(self.head);
        self.messages.extend_from_slice(&messages);
        self.ranges.truncate(first_iov);
        self.ranges.extend_from_slice(&ranges);
        self.range_stamps.truncate(first_iov);
        self.range_stamps.extend_from_slice(&times);
        self.range_datagrams.truncate(first_iov);
        self.range_datagrams.extend_from_slice(&datagrams);
    }

    /// Messages sealed and not yet taken by the kernel.
    pub fn unsent(&self) -> &[OutMessage] {
        &self.messages[self.head..]
    }

    /// Everything `send_batch` needs: both buffers by name (the arena, and `received`, the receive buffer
    /// borrowed echoes point into), the iovec ranges and the unsent messages.
    pub fn send_view<'a>(&'a self, received: &'a [u8]) -> SendView<'a> {
        let mut buffers: [&[u8]; 2] = [&[], &[]];
        buffers[Bytes::Arena.index() as usize] = &self.arena;
        buffers[Bytes::Received.index() as usize] = received;
        SendView {
            buffers,
            ranges: &self.ranges,
            messages: &self.messages[self.head..],
        }
    }

    pub fn is_idle(&self) -> bool {
        self.head == self.messages.len() && self.staged.is_empty()
    }

    /// Marks the first `count` unsent messages as taken by the kernel; `on_datagrams` sees the receive
    /// latency stamps of their datagrams (runs of equal stamps, as `(stamp, n)`).
    pub fn complete(&mut self, count: usize, on_datagrams: impl FnMut(Stamp, u64)) -> Completed {
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

    fn advance(&mut self, count: usize, mut on_datagrams: impl FnMut(Stamp, u64)) -> Completed {
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
            .filter(|m| m.control.segment_size > 0)
            .count() as u64;
        for iov in first..end {
            let datagrams = u64::from(self.range_datagrams[iov]);
            done.datagrams += datagrams;
            done.bytes += u64::from(self.ranges[iov].len);
            on_datagrams(self.range_stamps[iov], datagrams);
        }
        self.head += count;
        done
    }

    fn reset_if_drained(&mut self) {
        if self.head == self.messages.len() && self.staged.is_empty() {
            self.head = 0;
            self.messages.clear();
            self.ranges.clear();
            self.range_stamps.clear();
            self.range_datagrams.clear();
            self.arena_used = 0;
            self.borrows = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::limits::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
    use crate::sys::PeerAddr;

    fn dest(port: u16) -> Destination {
        Destination {
            peer: PeerAddr::from_socket_addr(([127, 0, 0, 1], port).into()),
            source: None,
            ifindex: 0,
        }
    }

    /// Replies to `port` for the received buffer `group`, received at time 7.
    fn to(port: u16, group: u64) -> ReplyTo {
        ReplyTo {
            destination: dest(port),
            group,
            stamp: Stamp::measured(7, 1),
        }
    }

    /// Stages one reply as if it came from its own received buffer (its own group).
    fn push(queue: &mut ReplyQueue, port: u16, bytes: &[u8]) {
        static NEXT_GROUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let group = NEXT_GROUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        push_in_group(queue, port, bytes, group);
    }

    fn push_in_group(queue: &mut ReplyQueue, port: u16, bytes: &[u8], group: u64) {
        assert!(queue.has_room());
        queue.reply_buffer()[..bytes.len()].copy_from_slice(bytes);
        queue.stage(bytes.len(), &to(port, group));
    }

    /// The datagrams each message puts on the wire, as the kernel cuts them: its iovecs concatenated, then
    /// split every `segment_size` bytes (one datagram when the size is 0). As (port, segment size, payloads).
    fn wire(queue: &ReplyQueue) -> Vec<(u16, u16, Vec<Vec<u8>>)> {
        wire_with(queue, &[])
    }

    /// [`wire`] for a queue whose replies may borrow `received`.
    fn wire_with(queue: &ReplyQueue, received: &[u8]) -> Vec<(u16, u16, Vec<Vec<u8>>)> {
        let view = queue.send_view(received);
        let (buffers, ranges, messages) = (view.buffers, view.ranges, view.messages);
        messages
            .iter()
            .map(|m| {
                let mut bytes = Vec::new();
                for r in &ranges[m.iov_start as usize..(m.iov_start + m.iov_count) as usize] {
                    let buffer = buffers[r.buffer as usize];
                    bytes
                        .extend_from_slice(&buffer[r.offset as usize..(r.offset + r.len) as usize]);
                }
                let payloads = if m.control.segment_size == 0 {
                    vec![bytes]
                } else {
                    bytes
                        .chunks(usize::from(m.control.segment_size))
                        .map(<[u8]>::to_vec)
                        .collect()
                };
                (
                    m.peer.to_socket_addr().port(),
                    m.control.segment_size,
                    payloads,
                )
            })
            .collect()
    }

    #[test]
    fn replies_of_one_received_buffer_share_an_iovec() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        for _ in 0..10 {
            push_in_group(&mut queue, 1, b"abcd", 42);
        }
        push_in_group(&mut queue, 1, b"ab", 42);
        queue.seal();
        assert_eq!(queue.unsent().len(), 1);
        assert_eq!(queue.unsent()[0].iov_count, 1, "one run, one iovec");
        assert_eq!(wire(&queue)[0].2.len(), 11);
        let mut recorded = Vec::new();
        let done = queue.complete(1, |t, n| recorded.push((t, n)));
        assert_eq!((done.datagrams, done.bytes, done.trains), (11, 42, 1));
        assert_eq!(recorded, vec![(Stamp::measured(7, 1), 11)]);
    }

    #[test]
    fn a_staged_train_is_sent_as_one_message_and_counted_per_datagram() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        let bytes = b"aaaabbbbcc";
        queue.reply_buffer()[..bytes.len()].copy_from_slice(bytes);
        queue.stage_train(bytes.len(), 4, 3, &to(9, 5));
        push_in_group(&mut queue, 9, b"x", 6);
        queue.seal();
        let out = wire(&queue);
        assert_eq!(
            out.len(),
            2,
            "the train ended with a shorter segment: nothing may join it"
        );
        assert_eq!(
            out[0],
            (
                9,
                4,
                vec![b"aaaa".to_vec(), b"bbbb".to_vec(), b"cc".to_vec()]
            )
        );
        let done = queue.complete(2, |_, _| {});
        assert_eq!((done.datagrams, done.bytes), (4, 11));
    }

    #[test]
    fn borrowed_replies_go_out_from_the_receive_buffer_and_detach_on_demand() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        let mut received = b"xxHELLOWORLD!yy".to_vec();
        queue.stage_borrowed(2, 11, (5, 3), &to(4, 1));
        push_in_group(&mut queue, 4, b"own", 2);
        queue.seal();
        assert!(queue.borrows_received());
        let expected = vec![
            (
                4,
                5,
                vec![b"HELLO".to_vec(), b"WORLD".to_vec(), b"!".to_vec()],
            ),
            (4, 0, vec![b"own".to_vec()]),
        ];
        assert_eq!(wire_with(&queue, &received), expected);
        // Detaching copies the borrowed bytes: the receive buffer may now change without changing the replies.
        assert_eq!(queue.detach_borrowed(&received), 0);
        assert!(!queue.borrows_received());
        received.fill(b'?');
        assert_eq!(wire_with(&queue, &received), expected);
        let done = queue.complete(2, |_, _| {});
        assert_eq!((done.datagrams, done.bytes, done.trains), (4, 14, 1));
        assert!(queue.is_idle());
    }

    #[test]
    fn detaching_without_room_drops_whole_messages_and_counts_them() {
        let mut queue = ReplyQueue::new(0, 16, true);
        let received = vec![1u8; 3 * REPLY_MAX];
        // Fill the arena with own replies, then borrow more than the room left.
        while queue.has_room() {
            queue.stage(REPLY_MAX, &to(1, 9));
        }
        queue.stage_borrowed(0, 3 * REPLY_MAX, (REPLY_MAX, 3), &to(2, 10));
        queue.seal();
        let before = queue.unsent().len();
        assert_eq!(queue.detach_borrowed(&received), 3);
        assert_eq!(queue.unsent().len(), before - 1);
        assert!(!queue.borrows_received());
    }

    #[test]
    fn runs_of_several_buffers_to_one_peer_join_one_train_until_the_limit() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        for group in 100..103 {
            for _ in 0..30 {
                push_in_group(&mut queue, 1, &[group as u8; 8], group);
            }
        }
        queue.seal();
        let out = wire(&queue);
        let counts: Vec<usize> = out.iter().map(|m| m.2.len()).collect();
        // 30 + 30 fit in one train of at most 64; the third run opens the next train.
        assert_eq!(counts, vec![60, 30]);
        assert!(out[0].2[..30].iter().all(|d| d == &vec![100u8; 8]));
        assert!(out[0].2[30..].iter().all(|d| d == &vec![101u8; 8]));
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
    fn splitting_the_head_train_leaves_the_rest_and_keeps_gso() {
        let mut queue = ReplyQueue::new(1 << 20, 1024, true);
        for i in 0..3u8 {
            push(&mut queue, 1, &[i; 5]);
        }
        for i in 0..2u8 {
            push(&mut queue, 2, &[10 + i; 5]);
        }
        queue.seal();
        assert_eq!(queue.unsent().len(), 2);
        assert_eq!(queue.split_head_train(), 3);
        let out = wire(&queue);
        assert_eq!(
            out.len(),
            4,
            "three singles, then the untouched second train"
        );
        for (i, message) in out.iter().take(3).enumerate() {
            assert_eq!((message.0, message.1), (1, 0));
            assert_eq!(message.2, vec![vec![i as u8; 5]]);
        }
        assert_eq!(out[3], (2, 5, vec![vec![10; 5], vec![11; 5]]));
        assert!(queue.gso_enabled());
        assert_eq!(
            queue.split_head_train(),
            0,
            "the head is now a single datagram"
        );
        let done = queue.complete(4, |_, _| {});
        assert_eq!((done.datagrams, done.trains), (5, 1));
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
        assert_eq!(seen, vec![(Stamp::measured(7, 1), 1); 3]);
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
