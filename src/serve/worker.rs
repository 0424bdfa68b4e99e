//! One worker: its own socket and `mio` loop, receiving batches, running the handler, sending GSO trains.
//!
//! The hot path per batch: one `recvmmsg`, the handler once per datagram (or once per coalesced train)
//! writing into the reply queue, one seal (grouping into trains) and normally one `sendmmsg`. Nothing is
//! allocated, locked or shared per datagram: counters and histograms are the worker's own and are handed
//! to the reporter at interval boundaries.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::handler::Handler;
use crate::serve::queue::{Destination, ReplyQueue};
use crate::serve::socket::{self, SocketFeatures};
use crate::stats::{StatsLink, WorkerStats};
use crate::sys::limits::{GRO_SLOT, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::sys::{self, RecvInfo, RecvScratch, SendScratch};

pub const SOCKET: Token = Token(0);
pub const WAKER: Token = Token(1);

/// Receive batches handled per wake-up before the loop looks at other events (the stop signal).
const FAIRNESS_BATCHES: usize = 16;
/// How long to wait before resending after `ENOBUFS`, which no readiness event announces.
const NOBUFS_RETRY: Duration = Duration::from_millis(1);
/// Iovecs (replies, or runs of replies of one received buffer) a worker may hold queued for sending.
const QUEUE_ENTRIES: usize = 8192;
/// Bytes of replies a worker may hold queued while the kernel is not taking them.
const QUEUE_BYTES: usize = 4 << 20;
/// At shutdown, how long a worker keeps answering what is already queued in its socket.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(50);

/// Everything one worker needs, built on the main thread (so bind errors surface before anything starts).
pub struct WorkerParts {
    pub index: usize,
    pub socket: socket::WorkerSocket,
    pub poll: Poll,
    pub cpu: Option<usize>,
    pub batch: usize,
    pub max_datagram: usize,
    pub handler: Box<dyn Handler>,
    pub stats: StatsLink,
    pub interval: Duration,
    pub started: Instant,
    pub stop: Arc<AtomicBool>,
}

/// The receiving half: `recvmmsg` buffers and what is remembered between batches.
struct Receiver {
    scratch: RecvScratch,
    buffer: Vec<u8>,
    infos: Vec<RecvInfo>,
    slot_size: usize,
    /// Last cumulative `SO_RXQ_OVFL` value seen, to count only new drops.
    last_kernel_drops: u32,
    /// Numbers received buffers, so the reply queue can tell replies of one buffer apart cheaply.
    next_group: u64,
}

/// The sending half: the reply queue, `sendmmsg` scratch, and the state of a blocked send.
struct Transmitter {
    index: usize,
    queue: ReplyQueue,
    scratch: SendScratch,
    registry: Registry,
    timestamps: bool,
    writable_registered: bool,
    retry_at: Option<Instant>,
    error_logged: bool,
}

struct Worker {
    index: usize,
    socket: UdpSocket,
    features: SocketFeatures,
    max_datagram: usize,
    rx: Receiver,
    tx: Transmitter,
    handler: Box<dyn Handler>,
    stats: StatsLink,
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
        handler,
        stats,
        interval,
        started,
        stop,
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
    let registry = match poll.registry().try_clone() {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("udpd: error: worker {index} cannot clone its poll registry: {error}");
            stats.finish();
            return;
        }
    };
    let mut worker = Worker {
        index,
        socket: UdpSocket::from_std(socket.socket),
        features: socket.features,
        max_datagram,
        rx: Receiver {
            scratch: RecvScratch::new(batch),
            buffer: vec![0; batch * slot_size],
            infos: vec![RecvInfo::default(); batch],
            slot_size,
            last_kernel_drops: 0,
            next_group: 0,
        },
        tx: Transmitter {
            index,
            queue: ReplyQueue::new(QUEUE_BYTES, QUEUE_ENTRIES, socket.features.gso),
            scratch: SendScratch::new(sys::limits::MAX_BATCH, QUEUE_ENTRIES),
            registry,
            timestamps: socket.features.timestamps,
            writable_registered: false,
            retry_at: None,
            error_logged: false,
        },
        handler,
        stats,
    };
    if let Err(error) = poll
        .registry()
        .register(&mut worker.socket, SOCKET, Interest::READABLE)
    {
        eprintln!("udpd: error: worker {index} cannot register its socket: {error}");
        worker.stats.finish();
        return;
    }
    worker.event_loop(&mut poll, interval, started, &stop);
    worker.shut_down();
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
        // Edge-triggered readiness: assume data may be queued until a receive says otherwise.
        let mut readable = true;
        loop {
            let now = Instant::now();
            if now >= next_publish {
                self.stats.publish();
                self.tx.error_logged = false;
                while next_publish <= now {
                    next_publish += interval;
                }
            }
            let retry_due = self.tx.retry_at.is_some_and(|at| at <= now);
            let timeout = if readable || retry_due {
                Duration::ZERO
            } else {
                let until_publish = next_publish - now;
                match self.tx.retry_at {
                    Some(at) => until_publish.min(at - now),
                    None => until_publish,
                }
            };
            if let Err(error) = poll.poll(&mut events, Some(timeout)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    eprintln!("udpd: error: worker {} poll failed: {error}", self.index);
                    return;
                }
            }
            let mut writable = false;
            for event in events.iter() {
                if event.token() == SOCKET {
                    readable |= event.is_readable() || event.is_error();
                    writable |= event.is_writable();
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if writable || self.tx.retry_at.is_some_and(|at| at <= Instant::now()) {
                self.tx.retry_at = None;
                self.tx
                    .flush(&self.socket, &self.rx.buffer, &mut self.stats.current);
            }
            if readable {
                readable = self.receive_some(FAIRNESS_BATCHES);
            }
        }
    }

    /// Handles up to `max_batches` receive batches; returns whether more may be queued.
    fn receive_some(&mut self, max_batches: usize) -> bool {
        for _ in 0..max_batches {
            if self.tx.queue.borrows_received() {
                // Replies still waiting for the kernel borrow the receive buffer: copy them out first.
                let dropped = self.tx.queue.detach_borrowed(&self.rx.buffer);
                self.stats.current.counters.tx_backpressure += dropped;
            }
            let rx = &mut self.rx;
            match sys::recv_batch(
                self.socket.as_fd(),
                &mut rx.scratch,
                &mut rx.buffer,
                rx.slot_size,
                &mut rx.infos,
            ) {
                Ok(count) => {
                    self.process(count);
                    self.tx
                        .flush(&self.socket, &self.rx.buffer, &mut self.stats.current);
                    // A short batch means the queue was empty when the kernel looked; with edge-triggered
                    // readiness anything arriving later raises a new event, so no extra empty receive.
                    if count < self.rx.infos.len() {
                        return false;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Pending socket errors (ICMP reports) surface here; they concern earlier sends.
                    if !self.tx.error_logged {
                        eprintln!(
                            "udpd: warning: worker {} receive error: {error}",
                            self.index
                        );
                        self.tx.error_logged = true;
                    }
                }
            }
        }
        true
    }

    /// Runs the handler over `count` received buffers (each GRO segment is one datagram).
    fn process(&mut self, count: usize) {
        let Worker {
            socket,
            features,
            max_datagram,
            rx,
            tx,
            handler,
            stats,
            ..
        } = self;
        let max_datagram = *max_datagram;
        let stats = &mut *stats.current;
        let batch_time_ns = realtime_ns();
        let mut datagrams = 0u64;
        for i in 0..count {
            let info = rx.infos[i];
            if let Some(drops) = info.control.kernel_drops {
                stats.counters.kernel_rx_overflow +=
                    u64::from(drops.wrapping_sub(rx.last_kernel_drops));
                rx.last_kernel_drops = drops;
            }
            let start = i * rx.slot_size;
            let data = &rx.buffer[start..start + info.len];
            let segment = match info.control.segment_size {
                Some(size) if usize::from(size) < info.len => usize::from(size),
                _ => info.len.max(1),
            };
            if info.truncated {
                // The kernel cut the buffer: at least one datagram, and we cannot know more.
                let lost = (info.len / segment).max(1) as u64;
                stats.counters.rx += lost;
                stats.counters.truncated += lost;
                datagrams += lost;
                continue;
            }
            // Every segment of one buffer has the same sender and receive time: one group.
            rx.next_group += 1;
            let group = rx.next_group;
            let peer: SocketAddr = info.peer.to_socket_addr();
            let destination = Destination {
                peer: info.peer,
                source: if features.pktinfo {
                    info.control.local_ip
                } else {
                    None
                },
                ifindex: info.control.ifindex,
            };
            let rx_time_ns = info.control.rx_time_ns.unwrap_or(batch_time_ns);
            let chunks = if data.is_empty() {
                1
            } else {
                data.len().div_ceil(segment)
            };
            stats.counters.rx += chunks as u64;
            stats.counters.rx_bytes += data.len() as u64;
            datagrams += chunks as u64;
            if chunks > 1 {
                stats.counters.gro_trains += 1;
            }
            if !tx.queue.has_room() {
                tx.flush(socket, &rx.buffer, stats);
            }
            // Fastest path: a pure echo sends the request bytes themselves, borrowed from the receive
            // buffer: one run for a whole coalesced train, or one per datagram.
            if handler.echoes_requests() && tx.queue.has_room() {
                let whole_train = chunks > 1
                    && segment <= max_datagram
                    && tx.queue.gso_enabled()
                    && chunks <= GSO_MAX_SEGMENTS
                    && data.len() <= GSO_MAX_BYTES;
                if whole_train || chunks == 1 {
                    if data.len() > max_datagram {
                        stats.counters.truncated += 1;
                    } else {
                        tx.queue.stage_borrowed(
                            start,
                            data.len(),
                            segment,
                            chunks,
                            &destination,
                            group,
                            rx_time_ns,
                        );
                    }
                    continue;
                }
            }
            // Fast path: an echo-like handler answers a whole coalesced train with one write, and the
            // replies leave as one GSO train shaped like the request train.
            if chunks > 1
                && segment <= max_datagram
                && tx.queue.gso_enabled()
                && chunks <= GSO_MAX_SEGMENTS
                && data.len() <= GSO_MAX_BYTES
                && tx.queue.has_room()
                && handler.handle_train(data, segment, peer, tx.queue.reply_buffer())
            {
                tx.queue
                    .stage_train(data.len(), segment, chunks, &destination, group, rx_time_ns);
                continue;
            }
            let requests = (0..chunks)
                .map(|k| &data[(k * segment).min(data.len())..((k + 1) * segment).min(data.len())]);
            for request in requests {
                if request.len() > max_datagram {
                    stats.counters.truncated += 1;
                    continue;
                }
                if !tx.queue.has_room() {
                    tx.flush(socket, &rx.buffer, stats);
                    if !tx.queue.has_room() {
                        stats.counters.tx_backpressure += 1;
                        continue;
                    }
                }
                match handler.handle(request, peer, tx.queue.reply_buffer()) {
                    Some(len) => tx.queue.stage(len, &destination, group, rx_time_ns),
                    None => stats.counters.no_reply += 1,
                }
            }
        }
        stats.record_batch(datagrams);
    }

    /// Answers what is already queued (briefly), sends what can be sent, counts the rest, reports.
    fn shut_down(mut self) {
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        while Instant::now() < deadline && self.receive_some(1) {}
        self.tx
            .flush(&self.socket, &self.rx.buffer, &mut self.stats.current);
        let unsent = self.tx.queue.discard_all();
        let proc_drops = socket::socket_drops_from_proc(self.socket.as_fd());
        let counters = &mut self.stats.current.counters;
        counters.unsent_at_exit += unsent.datagrams;
        if let Some(total) = proc_drops {
            let seen = u64::from(self.rx.last_kernel_drops);
            if total > seen {
                counters.kernel_rx_overflow += total - seen;
            }
        }
        self.stats.finish();
    }
}

impl Transmitter {
    /// Seals staged replies and sends until the queue is empty or the kernel pushes back.
    /// `received` is the receive buffer, which echoed replies may borrow.
    fn flush(&mut self, socket: &UdpSocket, received: &[u8], stats: &mut WorkerStats) {
        self.queue.seal();
        while !self.queue.unsent().is_empty() {
            let (arena, ranges, messages) = self.queue.send_view();
            let buffers = [arena, received];
            match sys::send_batch(
                socket.as_fd(),
                &mut self.scratch,
                &buffers,
                ranges,
                messages,
            ) {
                Ok(0) => break,
                Ok(sent) => {
                    let done = if self.timestamps {
                        let now_ns = realtime_ns();
                        self.queue.complete(sent, |rx_ns, n| {
                            stats.record_latency(now_ns.saturating_sub(rx_ns), n)
                        })
                    } else {
                        self.queue.complete(sent, |_, _| {})
                    };
                    stats.counters.tx += done.datagrams;
                    stats.counters.tx_bytes += done.bytes;
                    stats.counters.gso_trains += done.trains;
                }
                Err(error) => {
                    if !self.handle_send_error(socket, &error, stats) {
                        return;
                    }
                }
            }
        }
        if self.writable_registered {
            self.set_writable_interest(socket, false);
        }
    }

    /// Deals with a `sendmmsg` error on the first unsent message; returns whether to keep sending now.
    fn handle_send_error(
        &mut self,
        socket: &UdpSocket,
        error: &io::Error,
        stats: &mut WorkerStats,
    ) -> bool {
        match error.raw_os_error() {
            Some(libc::EAGAIN) => {
                self.set_writable_interest(socket, true);
                false
            }
            Some(libc::ENOBUFS) => {
                self.retry_at = Some(Instant::now() + NOBUFS_RETRY);
                false
            }
            Some(libc::EINTR) => true,
            _ => {
                let head_is_train = self
                    .queue
                    .unsent()
                    .first()
                    .is_some_and(|message| message.control.segment_size > 0);
                if head_is_train && socket::is_gso_refusal(error) {
                    eprintln!(
                        "udpd: warning: worker {}: the kernel refused UDP GSO ({error}); sending replies one by one",
                        self.index
                    );
                    self.queue.disable_gso();
                    stats.counters.gso_disabled += 1;
                } else {
                    let failed = self.queue.fail_head();
                    stats.counters.tx_error += failed.datagrams;
                    if !self.error_logged {
                        eprintln!(
                            "udpd: warning: worker {}: reply not sent: {error}",
                            self.index
                        );
                        self.error_logged = true;
                    }
                }
                true
            }
        }
    }

    /// Asks for (or stops asking for) WRITABLE events, only while replies wait on a full socket buffer.
    fn set_writable_interest(&mut self, socket: &UdpSocket, on: bool) {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let fd = socket.as_raw_fd();
        match self
            .registry
            .reregister(&mut SourceFd(&fd), SOCKET, interest)
        {
            Ok(()) => self.writable_registered = on,
            // The old interest stays; a timed retry makes sure the queue is still drained.
            Err(_) => self.retry_at = Some(Instant::now() + NOBUFS_RETRY),
        }
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
