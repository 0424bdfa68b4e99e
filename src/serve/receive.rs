//! A worker's receive buffer: `recvmmsg` slots, what the kernel said about each, and the one way to
//! refill them, which first detaches every queued reply that still borrows the old bytes.

use std::io;
use std::os::fd::BorrowedFd;

use super::queue::ReplyQueue;
use super::segments::Received;
use crate::sys::{self, RecvInfo, RecvScratch, Wait};

/// `batch` slots of `slot_size` bytes, and the kernel's account of the last `recvmmsg` into them.
///
/// The bytes can only be written by [`ReceiveBuffer::receive`], which takes the reply queue and detaches
/// borrowed echoes before the kernel overwrites them: the borrow rule holds by construction.
pub struct ReceiveBuffer {
    bytes: Vec<u8>,
    slot_size: usize,
    infos: Vec<RecvInfo>,
    scratch: RecvScratch,
    /// Slots the next receive offers the kernel: all of them, unless the last receive's buffers were so
    /// full (GRO trains) that all of them would bring more than [`RECEIVE_BYTES_BUDGET`]. The first
    /// receive assumes full slots (a queue that filled before the worker started is not read whole).
    next_slots: usize,
}

/// About how many bytes one receive should bring. A receive of 64 full GRO trains (up to 4 MiB) outgrows
/// the caches; and once the socket's queue is always full, every receive is that large. Measured with
/// bulk 1400-byte trains at maximum load: one run in three fell from ~2.4 M/s served to ~1.2 M/s at
/// 2.5x the CPU per datagram and stayed there; with receives bounded to a few trains, none did.
pub const RECEIVE_BYTES_BUDGET: usize = 256 << 10;

/// What one refill brought: the receive's outcome (buffers filled, or the error), and how many queued
/// replies had to be dropped because they borrowed the old bytes and the arena had no room to keep them
/// (the caller counts those as `tx_backpressure` whatever the outcome).
pub struct Refill {
    pub received: io::Result<usize>,
    pub dropped_replies: u64,
}

impl ReceiveBuffer {
    pub fn new(batch: usize, slot_size: usize) -> ReceiveBuffer {
        ReceiveBuffer {
            bytes: vec![0; batch * slot_size],
            slot_size,
            infos: vec![RecvInfo::default(); batch],
            scratch: RecvScratch::new(batch),
            next_slots: slots_within_budget(slot_size, batch),
        }
    }

    /// Detaches what `queue` still borrows from the old bytes, then receives one batch (waiting for its
    /// first datagram as `wait` says).
    pub fn receive(&mut self, fd: BorrowedFd<'_>, queue: &mut ReplyQueue, wait: Wait) -> Refill {
        let dropped_replies = if queue.borrows_received() {
            queue.detach_borrowed(&self.bytes)
        } else {
            0
        };
        let received = sys::recv_batch(
            fd,
            &mut self.scratch,
            &mut self.bytes,
            self.slot_size,
            &mut self.infos[..self.next_slots],
            wait,
        );
        if let Ok(count @ 1..) = received {
            let bytes: usize = self.infos[..count].iter().map(|info| info.len).sum();
            self.next_slots = slots_within_budget(bytes / count, self.infos.len());
        }
        Refill {
            received,
            dropped_replies,
        }
    }

    /// How many buffers one receive may fill.
    pub fn capacity(&self) -> usize {
        self.infos.len()
    }

    /// The `i`th buffer of the last receive: what the kernel said, where it starts, and its datagrams.
    #[inline]
    pub fn get(&self, i: usize) -> (&RecvInfo, usize, Received<'_>) {
        let info = &self.infos[i];
        let start = i * self.slot_size;
        let view = Received::new(
            &self.bytes[start..start + info.len],
            info.control.segment_size,
        );
        (info, start, view)
    }

    /// The buffer that starts at `start` (as [`get`](Self::get) gave it) seen again, for the reply path.
    #[inline]
    pub fn view_at(&self, start: usize) -> Received<'_> {
        let info = &self.infos[start / self.slot_size];
        Received::new(
            &self.bytes[start..start + info.len],
            info.control.segment_size,
        )
    }

    /// All the bytes (for sending the replies that borrow them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Slots for the next receive when the last one brought `bytes_per_buffer` on average: as many as keep it
/// within [`RECEIVE_BYTES_BUDGET`], at least one, at most `capacity`.
fn slots_within_budget(bytes_per_buffer: usize, capacity: usize) -> usize {
    (RECEIVE_BYTES_BUDGET / bytes_per_buffer.max(1)).clamp(1, capacity)
}

#[cfg(test)]
mod tests {
    use super::{slots_within_budget, RECEIVE_BYTES_BUDGET};

    #[test]
    fn receives_of_small_datagrams_use_every_slot() {
        assert_eq!(slots_within_budget(64, 64), 64);
        assert_eq!(slots_within_budget(1400, 64), 64);
        // Empty datagrams are valid: no division by zero, every slot.
        assert_eq!(slots_within_budget(0, 64), 64);
    }

    #[test]
    fn receives_of_gro_trains_stay_within_the_byte_budget() {
        // 32 segments of 1400 bytes per buffer.
        let train = 32 * 1400;
        let slots = slots_within_budget(train, 64);
        assert_eq!(slots, RECEIVE_BYTES_BUDGET / train);
        assert!(
            slots * train <= RECEIVE_BYTES_BUDGET && (slots + 1) * train > RECEIVE_BYTES_BUDGET
        );
        // The largest train still leaves several slots, so a full receive is told from a quiet socket.
        assert!(slots_within_budget(65_535, 64) >= 2);
        assert_eq!(slots_within_budget(1 << 30, 64), 1);
        assert_eq!(slots_within_budget(train, 2), 2);
    }
}
