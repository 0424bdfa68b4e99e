//! One worker: its own socket and `mio` loop, receiving batches, running the handler, sending GSO trains.
//!
//! The hot path per batch: one `recvmmsg`, the handler once per datagram writing into the reply queue, one
//! seal (grouping into trains) and normally one `sendmmsg`. Nothing is allocated, locked or shared per
//! datagram: counters and histograms are the worker's own and are handed to the reporter at boundaries.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::{Events, Interest, Poll, Token};

use crate::batch::{Destination, ReplyQueue, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::handler::Handler;
use crate::socket::{self, SocketFeatures};
use crate::stats::StatsLink;
use crate::sys::{self, RecvInfo, RecvScratch, SendScratch};

pub const SOCKET: Token = Token(0);
pub const WAKER: Token = Token(1);

/// Receive batches handled per wake-up before the loop looks at other events (the stop signal).
const FAIRNESS_BATCHES: usize = 16;
/// How long to wait before resending after `ENOBUFS`, which no readiness event announces.
const NOBUFS_RETRY: Duration = Duration::from_millis(1);
/// Datagrams a worker may hold queued for sending while the kernel is not taking them.
const QUEUE_DATAGRAMS: usize = 8192;
/// Bytes of replies a worker may hold queued.
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

struct Worker {
    index: usize,
    socket: mio::net::UdpSocket,
    features: SocketFeatures,
    max_datagram: usize,
    slot_size: usize,
    recv_scratch: RecvScratch,
    recv_buffer: Vec<u8>,
    recv_infos: Vec<RecvInfo>,
    queue: ReplyQueue,
    send_scratch: SendScratch,
    handler: Box<dyn Handler>,
    stats: StatsLink,
    registry: mio::Registry,
    last_kernel_drops: u32,
    /// Numbers received buffers, so the reply queue can tell replies of one buffer apart cheaply.
    next_group: u64,
    writable_registered: bool,
    retry_at: Option<Instant>,
    error_logged: bool,
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
        (max_datagram + 1).max(65_536)
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
        socket: mio::net::UdpSocket::from_std(socket.socket),
        features: socket.features,
        max_datagram,
        slot_size,
        recv_scratch: RecvScratch::new(batch),
        recv_buffer: vec![0; batch * slot_size],
        recv_infos: vec![RecvInfo::default(); batch],
        queue: ReplyQueue::new(QUEUE_BYTES, QUEUE_DATAGRAMS, socket.features.gso),
        send_scratch: SendScratch::new(sys::MAX_BATCH, QUEUE_DATAGRAMS),
        handler,
        stats,
        registry,
        last_kernel_drops: 0,
        next_group: 0,
        writable_registered: false,
        retry_at: None,
        error_logged: false,
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
                self.error_logged = false;
                while next_publish <= now {
                    next_publish += interval;
                }
            }
            let timeout = if readable || self.retry_at.is_some_and(|at| at <= now) {
                Duration::ZERO
            } else {
                let until_publish = next_publish - now;
                match self.retry_at {
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
                    readable |= event.is_readable();
                    writable |= event.is_writable();
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if writable || self.retry_at.is_some_and(|at| at <= Instant::now()) {
                self.retry_at = None;
                self.flush();
            }
            if readable {
                readable = self.receive_some(FAIRNESS_BATCHES);
            }
        }
    }

    /// Handles up to `max_batches` receive batches; returns whether more may be queued.
    fn receive_some(&mut self, max_batches: usize) -> bool {
        for _ in 0..max_batches {
            let fd = self.socket.as_fd();
            match sys::recv_batch(
                fd,
                &mut self.recv_scratch,
                &mut self.recv_buffer,
                self.slot_size,
                &mut self.recv_infos,
            ) {
                Ok(count) => {
                    self.process(count);
                    self.flush();
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Pending socket errors (ICMP reports) surface here; they concern earlier sends.
                    if !self.error_logged {
                        eprintln!(
                            "udpd: warning: worker {} receive error: {error}",
                            self.index
                        );
                        self.error_logged = true;
                    }
                }
            }
        }
        true
    }

    /// Runs the handler over `count` received buffers (each GRO segment is one datagram).
    fn process(&mut self, count: usize) {
        let batch_time_ns = realtime_ns();
        let counters = &mut self.stats.current.counters;
        let mut datagrams = 0u64;
        for i in 0..count {
            let info = self.recv_infos[i];
            if let Some(drops) = info.control.kernel_drops {
                counters.kernel_rx_overflow +=
                    u64::from(drops.wrapping_sub(self.last_kernel_drops));
                self.last_kernel_drops = drops;
            }
            let start = i * self.slot_size;
            let data = &self.recv_buffer[start..start + info.len];
            let segment = match info.control.segment_size {
                Some(size) if usize::from(size) < info.len => usize::from(size),
                _ => info.len.max(1),
            };
            if info.truncated {
                // The kernel cut the buffer: at least one datagram, and we cannot know more.
                let lost = (info.len / segment).max(1) as u64;
                counters.rx += lost;
                counters.truncated += lost;
                datagrams += lost;
                continue;
            }
            // Every segment of one buffer has the same sender and receive time: one group.
            self.next_group += 1;
            let group = self.next_group;
            let peer: SocketAddr = info.peer.to_socket_addr();
            let destination = Destination {
                peer: info.peer,
                source: if self.features.pktinfo {
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
                data.len().div_ceil(segment) as u64
            };
            counters.rx += chunks;
            counters.rx_bytes += data.len() as u64;
            datagrams += chunks;
            if chunks > 1 {
                counters.gro_trains += 1;
            }
            if segment > self.max_datagram && !data.is_empty() {
                // Only the last segment of a train may be shorter than the segment size.
                let last = data.len() - (chunks as usize - 1) * segment;
                let oversize = if last > self.max_datagram {
                    chunks
                } else {
                    chunks - 1
                };
                counters.truncated += oversize;
                if oversize == chunks {
                    continue;
                }
            }
            // Fast path: an echo-like handler answers a whole coalesced train with one write, and the
            // replies leave as one GSO train shaped like the request train.
            if chunks > 1
                && segment <= self.max_datagram
                && self.queue.gso_enabled()
                && chunks as usize <= GSO_MAX_SEGMENTS
                && data.len() <= GSO_MAX_BYTES
                && self.queue.has_room()
                && self
                    .handler
                    .handle_train(data, segment, peer, self.queue.reply_buffer())
            {
                self.queue.stage_train(
                    data.len(),
                    segment,
                    chunks as usize,
                    &destination,
                    group,
                    rx_time_ns,
                );
                continue;
            }
            let mut handle = |request: &[u8]| {
                if request.len() > self.max_datagram {
                    return;
                }
                if !self.queue.has_room() {
                    counters.tx_backpressure += 1;
                    return;
                }
                match self
                    .handler
                    .handle(request, peer, self.queue.reply_buffer())
                {
                    Some(len) => self.queue.stage(len, &destination, group, rx_time_ns),
                    None => counters.no_reply += 1,
                }
            };
            if data.is_empty() {
                handle(data);
            } else {
                data.chunks(segment).for_each(&mut handle);
            }
        }
        self.stats.current.record_batch(datagrams);
    }

    /// Seals staged replies and sends until the queue is empty or the kernel pushes back.
    fn flush(&mut self) {
        self.queue.seal();
        while !self.queue.unsent().is_empty() {
            let fd = self.socket.as_fd();
            let (arena, ranges, messages) = self.queue.send_view();
            match sys::send_batch(fd, &mut self.send_scratch, arena, ranges, messages) {
                Ok(0) => break,
                Ok(sent) => {
                    let stats = &mut *self.stats.current;
                    let done = if self.features.timestamps {
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
                    if !self.handle_send_error(&error) {
                        return;
                    }
                }
            }
        }
        if self.writable_registered {
            self.set_writable_interest(false);
        }
    }

    /// Deals with a `sendmmsg` error on the first unsent message; returns whether to keep sending now.
    fn handle_send_error(&mut self, error: &io::Error) -> bool {
        let counters = &mut self.stats.current.counters;
        match error.raw_os_error() {
            Some(libc::EAGAIN) => {
                self.set_writable_interest(true);
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
                    counters.gso_disabled += 1;
                } else {
                    let failed = self.queue.fail_head();
                    counters.tx_error += failed.datagrams;
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

    fn set_writable_interest(&mut self, on: bool) {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // A failed reregistration leaves the old interest; the ENOBUFS-style timer retry covers it.
        match self.socket_registry_reregister(interest) {
            Ok(()) => self.writable_registered = on,
            Err(_) => self.retry_at = Some(Instant::now() + NOBUFS_RETRY),
        }
    }

    fn socket_registry_reregister(&mut self, interest: Interest) -> io::Result<()> {
        self.registry.reregister(&mut self.socket, SOCKET, interest)
    }

    /// Answers what is already queued (briefly), sends what can be sent, counts the rest, reports.
    fn shut_down(mut self) {
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        while Instant::now() < deadline && self.receive_some(1) {}
        self.flush();
        let unsent = self.queue.discard_all();
        let fd = self.socket.as_fd();
        let proc_drops = sys::socket_drops_from_proc(fd);
        let counters = &mut self.stats.current.counters;
        counters.unsent_at_exit += unsent.datagrams;
        if let Some(total) = proc_drops {
            let seen = u64::from(self.last_kernel_drops);
            if total > seen {
                counters.kernel_rx_overflow += total - seen;
            }
        }
        self.stats.finish();
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
