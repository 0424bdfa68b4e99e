//! A worker's sending half: hands sealed replies to `sendmmsg`, waits for write space when the kernel
//! pushes back, and classifies send errors so that a per-destination refusal never costs everyone GSO.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;

use super::queue::ReplyQueue;
use crate::stats::WorkerStats;
use crate::sys::{self, SendScratch};

/// How long to wait before resending after `ENOBUFS`, which no readiness event announces.
const NOBUFS_RETRY: Duration = Duration::from_millis(1);

/// How many GSO trains the kernel must refuse while the same datagrams, sent one by one to the same
/// destinations, go through, before GSO is switched off for the socket. One forged destination cannot
/// get there: its single datagrams fail too, and any train that goes through resets the count.
pub const GSO_REFUSALS_BEFORE_DISABLE: u32 = 3;

/// Where a refused GSO train stands while its datagrams are resent one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attribution {
    /// Nothing is being attributed.
    Idle,
    /// The head train was refused and split: the next send of its first datagram decides.
    TrainRefused,
}

/// The sending half: the reply queue, `sendmmsg` scratch, and the state of a blocked send.
pub struct Transmitter {
    pub index: usize,
    pub queue: ReplyQueue,
    pub scratch: SendScratch,
    pub timestamps: bool,
    /// The kernel refused the last send for want of buffer space (`EAGAIN`): replies wait for a
    /// write-space event, which the worker asks for before it sleeps.
    pub write_blocked: bool,
    pub retry_at: Option<Instant>,
    /// A send error was logged this interval (one line per interval at most).
    pub error_logged: bool,
    attribution: Attribution,
    /// Trains refused while their single datagrams went through, since the last train that went through.
    gso_refusals: u32,
}

impl Transmitter {
    /// Whether replies wait for something other than the next datagram: write space (asked for in the
    /// poll set) or a retry timer. Only then does an idle worker sleep in its poll set.
    pub fn is_waiting(&self) -> bool {
        self.write_blocked || self.retry_at.is_some()
    }

    pub fn new(index: usize, queue: ReplyQueue, timestamps: bool) -> Transmitter {
        Transmitter {
            index,
            queue,
            scratch: SendScratch::new(sys::limits::MAX_BATCH, super::worker::QUEUE_ENTRIES),
            timestamps,
            write_blocked: false,
            retry_at: None,
            error_logged: false,
            attribution: Attribution::Idle,
            gso_refusals: 0,
        }
    }

    /// Seals staged replies and sends until the queue is empty or the kernel pushes back.
    /// `received` is the receive buffer, which echoed replies may borrow.
    pub fn flush(&mut self, socket: &UdpSocket, received: &[u8], stats: &mut WorkerStats) {
        self.queue.seal();
        self.write_blocked = false;
        while !self.queue.unsent().is_empty() {
            let view = self.queue.send_view(received);
            let head_is_train = view.messages[0].control.segment_size > 0;
            match sys::send_batch(
                socket.as_fd(),
                &mut self.scratch,
                &view.buffers,
                view.ranges,
                view.messages,
            ) {
                Ok(0) => break,
                Ok(sent) => {
                    self.on_sent(head_is_train, stats);
                    let done = if self.timestamps {
                        // The clock is read only for a batch with a stamped reply (none between
                        // sampling windows).
                        let mut now_ns = None;
                        self.queue.complete(sent, |stamp, n| {
                            if stamp.is_sampled() {
                                let now_ns = *now_ns.get_or_insert_with(realtime_ns);
                                stats.record_latency(
                                    now_ns.saturating_sub(stamp.rx_time_ns),
                                    n,
                                    u64::from(stamp.weight),
                                )
                            }
                        })
                    } else {
                        self.queue.complete(sent, |_, _| {})
                    };
                    stats.counters.tx += done.datagrams;
                    stats.counters.tx_bytes += done.bytes;
                    stats.counters.gso_trains += done.trains;
                }
                Err(error) => {
                    if !self.handle_send_error(&error, head_is_train, stats) {
                        return;
                    }
                }
            }
        }
    }

    /// Learns from a send that went through: a train resets the refusal count; the first single datagram
    /// of a refused train means the kernel refused the train, not the destination.
    fn on_sent(&mut self, head_is_train: bool, stats: &mut WorkerStats) {
        if head_is_train {
            self.gso_refusals = 0;
        }
        if self.attribution == Attribution::TrainRefused {
            self.attribution = Attribution::Idle;
            self.gso_refusals += 1;
            if self.gso_refusals >= GSO_REFUSALS_BEFORE_DISABLE && self.queue.gso_enabled() {
                eprintln!(
                    "udpd: warning: worker {}: the kernel refused {} UDP GSO trains whose datagrams it took one by one; sending replies one by one from now on",
                    self.index, self.gso_refusals
                );
                self.queue.disable_gso();
                stats.counters.gso_disabled += 1;
            }
        }
    }

    /// Deals with a `sendmmsg` error on the first unsent message; returns whether to keep sending now.
    fn handle_send_error(
        &mut self,
        error: &io::Error,
        head_is_train: bool,
        stats: &mut WorkerStats,
    ) -> bool {
        match error.raw_os_error() {
            Some(libc::EAGAIN) => {
                self.write_blocked = true;
                stats.counters.tx_buffer_full += 1;
                false
            }
            Some(libc::ENOBUFS) => {
                self.retry_at = Some(Instant::now() + NOBUFS_RETRY);
                false
            }
            Some(libc::EINTR) => true,
            _ if head_is_train && sys::is_gso_refusal(error) => {
                // The train, or its destination? Resend its datagrams one by one and let the first decide.
                self.queue.split_head_train();
                self.attribution = Attribution::TrainRefused;
                true
            }
            _ => {
                // A refusal of this datagram or its destination: count it, keep GSO, go on with the rest.
                self.attribution = Attribution::Idle;
                let failed = self.queue.fail_head();
                stats.counters.tx_error += failed.datagrams;
                if !self.error_logged {
                    eprintln!(
                        "udpd: warning: worker {}: reply not sent: {error}",
                        self.index
                    );
                    self.error_logged = true;
                }
                true
            }
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch (the clock kernel receive timestamps use).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
