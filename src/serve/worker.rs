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
use super::stamps::WorkerStamps;
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
    /// When this worker's receives carry kernel timestamps, and what a stamped reply weighs.
    pub stamps: WorkerStamps,
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
    pub stamps: WorkerStamps,
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
        stamps,
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
        stamps,
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
                self.idle_wait.prepare(
                    &self.socket,
                    !self.stats.current.is_empty(),
                    self.stamps.wake_within(),
                );
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
                self.idle_wait.prepare(
                    &self.socket,
                    !self.stats.current.is_empty(),
                    self.stamps.wake_within(),
                );
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
        if let Some(on) = self.stamps.before_receive() {
            // A failed switch only changes which batches carry timestamps: what is recorded follows the
            // mode after the receive.
            let _ = socket::set_receive_timestamps(&self.socket, on);
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
                let weight = self.stamps.after_receive(count);
                self.respond(count, weight);
                self.flush();
                batch
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Batch::Empty,
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
