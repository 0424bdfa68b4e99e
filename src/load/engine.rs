//! One load thread: sends its flows' share of the load and checks their replies, in one busy-polling loop.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::mpsc::Sender;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::book::SeqBook;
use super::check::{Checker, Verdict};
use super::expect::Expect;
use super::feed::Feed;
use super::flow::Flow;
use super::outbox::Outbox;
use super::payload::Filler;
use super::phase::{Clock, Phase};
use super::ready::{Drained, ReadyFlows};
use super::sources::{FlowSources, SourceBook};
use super::Plan;
use crate::serve::segments::Received;
use crate::stats::latency_histogram;
use crate::sys::limits::{GRO_SLOT, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::sys::{recv_batch, RecvInfo, RecvScratch, Wait};

/// Bursts (of up to `--batch` datagrams) built and sent per loop turn at most, so that replies are read
/// between them: as fast as possible with 1,000 flows, one burst per flow was 64,000 datagrams a turn,
/// and replies waited ~0.3 s in the flow sockets before they were read, timed and (past `--timeout`)
/// counted late rather than received.
const SEND_BURSTS_PER_TURN: usize = 8;
/// `recvmmsg` calls per flow per loop turn, so one busy flow cannot starve the others or the sender.
const RECV_ROUNDS: usize = 4;
const SECOND_NS: u64 = 1_000_000_000;

/// Counts kept by each thread and summed at the end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Measured datagrams the kernel took.
    pub sent: u64,
    /// Correct replies within `--timeout`.
    pub received: u64,
    pub mismatched: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Datagrams the kernel refused (neither sent nor lost).
    pub send_errors: u64,
    /// Replies while `--expect none`.
    pub unexpected: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.sent += other.sent;
        self.received += other.received;
        self.mismatched += other.mismatched;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.send_errors += other.send_errors;
        self.unexpected += other.unexpected;
    }
}

/// What a thread hands back at the end.
pub struct ThreadReport {
    pub tally: Tally,
    /// Latency of every matched reply (late ones included), nanoseconds.
    pub hist: Histogram<u64>,
    /// How long the measured send phase lasted, nanoseconds.
    pub measured_ns: u64,
    /// `--check-source`: the replies per source address and the flows' stickiness.
    pub sources: Option<SourceBook>,
}

/// One second's worth of a thread's counts, for the live progress line.
pub struct Progress {
    pub sent: u64,
    pub received: u64,
    pub hist: Histogram<u64>,
}

/// Warnings printed at most once per thread.
#[derive(Default)]
pub struct Warned {
    pub send: bool,
    pub recv: bool,
}

/// The thread's counts: the tally, the run's latency histogram and, with a progress line, this second's.
struct Counts {
    tally: Tally,
    hist: Histogram<u64>,
    interval: Option<Histogram<u64>>,
}

impl Counts {
    fn new(with_interval: bool) -> Counts {
        Counts {
            tally: Tally::default(),
            hist: latency_histogram(),
            interval: with_interval.then(latency_histogram),
        }
    }

    /// Counts one reply's verdict; outside `measuring` only warm-up replies were possible, and none counts.
    #[inline]
    fn record(&mut self, verdict: Verdict, measuring: bool) {
        let tally = &mut self.tally;
        match verdict {
            Verdict::Ok(latency) => {
                tally.received += 1;
                self.hist.saturating_record(latency);
                if let Some(interval) = &mut self.interval {
                    interval.saturating_record(latency);
                }
            }
            Verdict::Late(latency) => {
                tally.late += 1;
                self.hist.saturating_record(latency);
            }
            Verdict::Warmup => {}
            Verdict::Duplicate if measuring => tally.duplicates += 1,
            Verdict::Mismatch if measuring => tally.mismatched += 1,
            Verdict::Unexpected if measuring => tally.unexpected += 1,
            Verdict::Duplicate | Verdict::Mismatch | Verdict::Unexpected => {}
        }
    }
}

/// Feeds the live progress line: once a second, the counts since the last time.
struct Ticker {
    sender: Sender<Progress>,
    next_tick: u64,
    last: Tally,
}

impl Ticker {
    fn tick(&mut self, now: u64, counts: &mut Counts) {
        if now < self.next_tick {
            return;
        }
        self.next_tick += SECOND_NS;
        let Some(interval) = &mut counts.interval else {
            return;
        };
        let _ = self.sender.send(Progress {
            sent: counts.tally.sent - self.last.sent,
            received: counts.tally.received - self.last.received,
            hist: interval.clone(),
        });
        interval.reset();
        self.last = counts.tally;
    }
}

/// The receive side: one `recvmmsg` scratch and buffer shared by the thread's flows.
struct Inbox {
    scratch: RecvScratch,
    buffer: Vec<u8>,
    slot: usize,
    infos: Vec<RecvInfo>,
}

impl Inbox {
    /// Slots big enough for any correct reply (and one byte more, to see a longer one as truncated), or
    /// for a whole GRO train.
    fn new(plan: &Plan, gro: bool) -> Inbox {
        let reply_max = match &plan.expect {
            Expect::Ack(text) => plan.payload.max(text.len()),
            _ => plan.payload,
        };
        let (slot, slots) = if gro {
            (GRO_SLOT, plan.batch.min(64))
        } else {
            ((reply_max + 1).max(64), plan.batch)
        };
        Inbox {
            scratch: RecvScratch::new(slots),
            buffer: vec![0; slot * slots],
            slot,
            infos: vec![RecvInfo::default(); slots],
        }
    }
}

/// Everything one thread's loop works on.
struct Thread<'a> {
    flows: Vec<Flow>,
    ready: ReadyFlows,
    out: Outbox,
    inbox: Inbox,
    feed: Feed<'a>,
    checker: Checker<'a>,
    counts: Counts,
    warned: Warned,
    clock: Clock,
    /// `--check-source` only.
    sources: Option<SourceBook>,
}

/// Runs one thread's share of the load until the send phase and the drain after it are over.
pub fn run(
    plan: &Plan,
    sockets: Vec<UdpSocket>,
    ready: ReadyFlows,
    filler: &Filler,
    origin: Instant,
    progress: Option<Sender<Progress>>,
    gro: bool,
) -> ThreadReport {
    let clock = Clock::new(origin);
    let segments = if plan.gso {
        (GSO_MAX_BYTES / plan.payload.max(1)).clamp(1, GSO_MAX_SEGMENTS)
    } else {
        1
    };
    let start = clock.now_ns();
    let grace_ns = if plan.expect == Expect::None {
        0
    } else {
        plan.timeout_ns
    };
    let mut phase = Phase::new(
        start,
        plan.warmup_ns,
        plan.duration_ns,
        grace_ns,
        plan.timeout_ns,
    );
    let flows: Vec<Flow> = sockets
        .into_iter()
        .map(|socket| Flow {
            socket,
            book: SeqBook::new(plan.window),
            sources: FlowSources::default(),
        })
        .collect();
    let mut thread = Thread {
        ready,
        flows,
        out: Outbox::new(plan.batch, plan.payload, segments)
            .send_to(plan.check_source.then_some(plan.target)),
        inbox: Inbox::new(plan, gro),
        feed: Feed::new(plan, filler, start),
        checker: Checker::new(plan.expect.clone(), plan.payload, plan.timeout_ns, filler),
        counts: Counts::new(progress.is_some()),
        warned: Warned::default(),
        clock,
        sources: plan.check_source.then(SourceBook::new),
    };
    let mut ticker = progress.map(|sender| Ticker {
        sender,
        next_tick: start + SECOND_NS,
        last: Tally::default(),
    });
    if !phase.is_measuring() {
        for flow in &mut thread.flows {
            flow.book.measure_from = u64::MAX;
        }
    }
    loop {
        let now = clock.now_ns();
        if phase.advance(now) {
            for flow in &mut thread.flows {
                flow.book.measure_from = flow.book.next_seq;
            }
        }
        let mut busy = false;
        if !thread.out.is_empty() {
            busy |= thread.flush();
        }
        if phase.is_sending() {
            busy |= thread.send(now);
        }
        busy |= thread.receive(phase.is_measuring());
        if !phase.is_sending() {
            let waiting: u64 = thread.flows.iter().map(|flow| flow.book.outstanding).sum();
            if phase.is_over(now, thread.out.is_empty(), waiting) {
                break;
            }
        }
        if let Some(ticker) = &mut ticker {
            ticker.tick(now, &mut thread.counts);
        }
        if !busy {
            std::thread::yield_now();
        }
    }
    if let Some(book) = &mut thread.sources {
        for flow in &thread.flows {
            book.close_flow(&flow.sources);
        }
    }
    ThreadReport {
        tally: thread.counts.tally,
        hist: thread.counts.hist,
        measured_ns: phase.measured_ns(),
        sources: thread.sources,
    }
}

impl Thread<'_> {
    /// Hands what the kernel did not take last turn to it again; returns whether anything went.
    fn flush(&mut self) -> bool {
        self.out
            .flush(&mut self.flows, &mut self.counts.tally, &mut self.warned)
    }

    /// Builds and sends up to one burst per flow (at most [`SEND_BURSTS_PER_TURN`]) while the kernel
    /// takes them whole; returns whether anything was built.
    fn send(&mut self, now: u64) -> bool {
        let mut busy = false;
        for _ in 0..self.flows.len().min(SEND_BURSTS_PER_TURN) {
            if !self.out.is_empty() {
                break;
            }
            self.out.clear();
            if self.feed.fill(&mut self.out, &mut self.flows, now) == 0 {
                break;
            }
            busy = true;
            self.flush();
        }
        busy
    }

    /// Reads the replies of every flow that may have some (at most [`RECV_ROUNDS`] batches each) and
    /// judges them; returns whether anything arrived.
    fn receive(&mut self, measuring: bool) -> bool {
        let mut busy = false;
        self.ready.for_each(|flow| {
            let (got, drained) = receive_flow(
                &mut self.flows[flow],
                &mut self.inbox,
                &self.checker,
                measuring,
                &mut self.counts,
                &mut self.warned,
                &self.clock,
                self.sources.as_mut(),
            );
            busy |= got;
            drained
        });
        busy
    }
}

/// One flow's part of [`Thread::receive`]: each datagram, GRO trains split as the server splits them.
/// Returns whether anything arrived, and whether the socket was read down to "would block".
#[allow(clippy::too_many_arguments)] // the thread's parts, borrowed apart
fn receive_flow(
    flow: &mut Flow,
    inbox: &mut Inbox,
    checker: &Checker,
    measuring: bool,
    counts: &mut Counts,
    warned: &mut Warned,
    clock: &Clock,
    mut sources: Option<&mut SourceBook>,
) -> (bool, Drained) {
    let mut busy = false;
    for _ in 0..RECV_ROUNDS {
        let fd = flow.socket.as_fd();
        match recv_batch(
            fd,
            &mut inbox.scratch,
            &mut inbox.buffer,
            inbox.slot,
            &mut inbox.infos,
            Wait::No,
        ) {
            Ok(count) => {
                busy = true;
                let at = clock.now_ns();
                for (i, info) in inbox.infos[..count].iter().enumerate() {
                    if let Some(book) = sources.as_deref_mut() {
                        book.record_received(&mut flow.sources, info);
                    }
                    if info.truncated {
                        if measuring {
                            counts.tally.mismatched += 1;
                        }
                        continue;
                    }
                    let bytes = &inbox.buffer[i * inbox.slot..i * inbox.slot + info.len];
                    for datagram in Received::new(bytes, info.control.segment_size).segments() {
                        let verdict = checker.classify(&mut flow.book, datagram, at);
                        counts.record(verdict, measuring);
                    }
                }
                if count < inbox.infos.len() {
                    return (busy, Drained::Yes);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return (busy, Drained::Yes),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // An ICMP "port unreachable" for an earlier datagram: the server is not (yet) there.
            Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            Err(error) => {
                if !warned.recv {
                    eprintln!("udpd: warning: receive failed: {error}");
                    warned.recv = true;
                }
                return (busy, Drained::Yes);
            }
        }
    }
    (busy, Drained::No)
}
