//! A worker's receive buffer: `recvmmsg` slots, what the kernel said about each, and the one way to
//! refill them, which first detaches every queued reply that still borrows the old bytes.

use std::io;
use std::os::fd::BorrowedFd;

use super::queue::ReplyQueue;
use super::segments::Received;
use crate::sys::{self, RecvInfo, RecvScratch};

/// `batch` slots of `slot_size` bytes, and the kernel's account of the last `recvmmsg` into them.
///
/// The bytes can only be written by [`ReceiveBuffer::receive`], which takes the reply queue and detaches
/// borrowed echoes before the kernel overwrites them: the borrow rule holds by construction.
pub struct ReceiveBuffer {
    bytes: Vec<u8>,
    slot_size: usize,
    infos: Vec<RecvInfo>,
    scratch: RecvScratch,
}

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
        }
    }

    /// Detaches what `queue` still borrows from the old bytes, then receives one batch.
    pub fn receive(&mut self, fd: BorrowedFd<'_>, queue: &mut ReplyQueue) -> Refill {
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
            &mut self.infos,
        );
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
