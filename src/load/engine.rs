//! One load thread: sends its flows' share of the load and checks their replies, in one busy-polling loop.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::mpsc::Sender;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::check::{Checker, SeqBook, Verdict};
use super::payload::{write_request, Filler};
use super::schedule::Schedule;
use super::{Pattern, Plan};
use crate::sys::limits::{GRO_SLOT, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::sys::{
    recv_batch, send_batch, IoRange, OutMessage, RecvInfo, RecvScratch, SendControl, SendScratch,
};

/// `recvmmsg` calls per flow per loop turn, so one busy flow cannot starve the others or the sender.
const RECV_ROUNDS: usize = 4;
const SECOND_NS: u64 = 1_000_000_000;

pub use crate::stats::latency_histogram as new_histogram;

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
}

/// One second's worth of a thread's counts, for the live progress line.
pub struct Progress {
    pub sent: u64,
    pub received: u64,
    pub hist: Histogram<u64>,
}

struct Flow {
    socket: UdpSocket,
    book: SeqBook,
}

/// The messages of one burst, built into `arena` and handed to `sendmmsg` one run of same-flow messages
/// at a time; what the kernel did not take yet stays here (from `pos`) for the next turn.
struct Outbox {
    arena: Vec<u8>,
    ranges: Vec<IoRange>,
    messages: Vec<OutMessage>,
    /// Per message: its flow and the sequence number of its first datagram.
    flow_of: Vec<usize>,
    seq_of: Vec<u64>,
    pos: usize,
    scratch: SendScratch,
    /// Segments per GSO train; 1 when GSO is off (or was switched off after the kernel refused it).
    segments: usize,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.pos >= self.messages.len()
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.flow_of.clear();
        self.seq_of.clear();
        self.pos = 0;
    }

    fn push(&mut self, flow: usize, seq: u64, iov_start: usize, iov_count: usize, payload: usize) {
        let segment_size = if iov_count > 1 { payload as u16 } else { 0 };
        self.messages.push(OutMessage {
            control: SendControl {
                segment_size,
                ..SendControl::default()
            },
            iov_start: iov_start as u32,
            iov_count: iov_count as u32,
            ..OutMessage::default()
        });
        self.flow_of.push(flow);
        self.seq_of.push(seq);
    }

    /// Turns every GSO train not sent yet into single datagrams (the kernel refused `UDP_SEGMENT`).
    fn split_trains(&mut self) {
        let mut at = self.pos;
        while at < self.messages.len() {
            let message = self.messages[at];
            if message.iov_count > 1 {
                let (flow, seq) = (self.flow_of[at], self.seq_of[at]);
                let singles = (0..message.iov_count).map(|i| OutMessage {
                    iov_start: message.iov_start + i,
                    iov_count: 1,
                    ..OutMessage::default()
                });
                let count = message.iov_count as usize;
                // At most `batch` datagrams per burst, so the vectors never grow past their capacity.
                self.messages.splice(at..=at, singles);
                self.flow_of
                    .splice(at..=at, std::iter::repeat_n(flow, count));
                self.seq_of
                    .splice(at..=at, (0..count as u64).map(|i| seq + i));
                at += count;
            } else {
                at += 1;
            }
        }
        self.segments = 1;
    }
}

/// The receive side: one `recvmmsg` scratch and buffer shared by the thread's flows.
struct Inbox {
    scratch: RecvScratch,
    buffer: Vec<u8>,
    slot: usize,
    infos: Vec<RecvInfo>,
}

/// Warnings printed at most once per thread.
#[derive(Default)]
struct Warned {
    send: bool,
    recv: bool,
}

/// Runs one thread's share of the load until the send phase and the drain after it are over.
pub fn run(
    plan: &Plan,
    sockets: Vec<UdpSocket>,
    filler: &Filler,
    clock: Instant,
    progress: Option<Sender<Progress>>,
    gro: bool,
) -> ThreadReport {
    let now_ns = || clock.elapsed().as_nanos() as u64;
    let checker = Checker::new(plan.expect.clone(), plan.payload, plan.timeout_ns, filler);
    let mut flows: Vec<Flow> = sockets
        .into_iter()
        .map(|socket| Flow {
            socket,
            book: SeqBook::new(plan.window),
        })
        .collect();
    let batch = plan.batch;
    let payload = plan.payload;
    let segments = if plan.gso {
        (GSO_MAX_BYTES / payload.max(1)).clamp(1, GSO_MAX_SEGMENTS)
    } else {
        1
    };
    let mut out = Outbox {
        arena: vec![0; batch * payload],
        ranges: vec![IoRange::default(); batch],
        messages: Vec::with_capacity(batch),
        flow_of: Vec::with_capacity(batch),
        seq_of: Vec::with_capacity(batch),
        pos: 0,
        scratch: SendScratch::new(batch, batch),
        segments,
    };
    let reply_max = match &plan.expect {
        super::check::Expect::Ack(text) => payload.max(text.len()),
        _ => payload,
    };
    let (slot, slots) = if gro {
        (GRO_SLOT, batch.min(64))
    } else {
        ((reply_max + 1).max(64), batch)
    };
    let mut inbox = Inbox {
        scratch: RecvScratch::new(slots),
        buffer: vec![0; slot * slots],
        slot,
        infos: vec![RecvInfo::default(); slots],
    };
    let mut tally = Tally::default();
    let mut hist = new_histogram();
    let mut interval = progress.as_ref().map(|_| new_histogram());
    let mut last_progress = Tally::default();
    let mut warned = Warned::default();

    let start = now_ns();
    let warmup_end = start + plan.warmup_ns;
    let send_end = warmup_end + plan.duration_ns;
    let rate = plan.rate / plan.threads as f64;
    let schedule = Schedule::new(
        start,
        if plan.outstanding.is_some() {
            0.0
        } else {
            rate
        },
    );
    let mut measuring = plan.warmup_ns == 0;
    if !measuring {
        for flow in &mut flows {
            flow.book.measure_from = u64::MAX;
        }
    }
    let mut measure_start = start;
    let mut measured_ns = 0;
    let mut sending = true;
    let mut drain_end = u64::MAX;
    let mut next_tick = start + SECOND_NS;
    let mut issued: u64 = 0;
    let mut turn = 0usize;

    loop {
        let now = now_ns();
        if !measuring && now >= warmup_end {
            measuring = true;
            measure_start = now;
            for flow in &mut flows {
                flow.book.measure_from = flow.book.next_seq;
            }
        }
        if sending && now >= send_end {
            sending = false;
            measured_ns = now.saturating_sub(measure_start);
            let grace = if plan.expect == super::check::Expect::None {
                0
            } else {
                plan.timeout_ns
            };
            drain_end = now + grace;
        }
        let mut busy = false;
        // Send: finish what the kernel did not take last turn, then up to one burst per flow.
        if !out.is_empty() {
            busy |= flush(&mut out, &mut flows, &mut tally, &mut warned);
        }
        if sending {
            for _ in 0..flows.len() {
                if !out.is_empty() {
                    break;
                }
                out.clear();
                let built = match plan.outstanding {
                    None => fill_open(
                        &mut out,
                        &mut flows,
                        filler,
                        plan,
                        &schedule,
                        now,
                        &mut issued,
                        &mut turn,
                    ),
                    Some(window) => {
                        fill_closed(&mut out, &mut flows, filler, plan, window, now, &mut turn)
                    }
                };
                if built == 0 {
                    break;
                }
                busy = true;
                flush(&mut out, &mut flows, &mut tally, &mut warned);
            }
        }
        // Receive from every flow.
        for flow in &mut flows {
            for _ in 0..RECV_ROUNDS {
                let fd = flow.socket.as_fd();
                match recv_batch(
                    fd,
                    &mut inbox.scratch,
                    &mut inbox.buffer,
                    inbox.slot,
                    &mut inbox.infos,
                ) {
                    Ok(count) => {
                        busy = true;
                        let at = now_ns();
                        for (i, info) in inbox.infos[..count].iter().enumerate() {
                            let data = &inbox.buffer[i * inbox.slot..i * inbox.slot + info.len];
                            if info.truncated {
                                if measuring {
                                    tally.mismatched += 1;
                                }
                                continue;
                            }
                            let segment = info
                                .control
                                .segment_size
                                .map_or(data.len(), usize::from)
                                .max(1);
                            // An empty datagram is one reply too; `chunks` would yield nothing for it.
                            let empty = data.is_empty().then_some(data);
                            for datagram in data.chunks(segment).chain(empty) {
                                let verdict = checker.classify(&mut flow.book, datagram, at);
                                count_verdict(
                                    verdict,
                                    measuring,
                                    &mut tally,
                                    &mut hist,
                                    &mut interval,
                                );
                            }
                        }
                        if count < inbox.infos.len() {
                            break;
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    // An ICMP "port unreachable" for an earlier datagram: the server is not (yet) there.
                    Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => {}
                    Err(error) => {
                        if !warned.recv {
                            eprintln!("udpd: warning: receive failed: {error}");
                            warned.recv = true;
                        }
                        break;
                    }
                }
            }
        }
        if !sending {
            let waiting: u64 = flows.iter().map(|flow| flow.book.outstanding).sum();
            if out.is_empty() && (waiting == 0 || now >= drain_end) {
                break;
            }
            if now >= drain_end.saturating_add(plan.timeout_ns) {
                break; // the kernel would not take the last burst: give up on it
            }
        }
        if let (Some(sender), Some(interval_hist)) = (&progress, &mut interval) {
            if now >= next_tick {
                next_tick += SECOND_NS;
                let _ = sender.send(Progress {
                    sent: tally.sent - last_progress.sent,
                    received: tally.received - last_progress.received,
                    hist: interval_hist.clone(),
                });
                interval_hist.reset();
                last_progress = tally;
            }
        }
        if !busy {
            std::thread::yield_now();
        }
    }
    ThreadReport {
        tally,
        hist,
        measured_ns,
    }
}

#[inline]
fn count_verdict(
    verdict: Verdict,
    measuring: bool,
    tally: &mut Tally,
    hist: &mut Histogram<u64>,
    interval: &mut Option<Histogram<u64>>,
) {
    match verdict {
        Verdict::Ok(latency) => {
            tally.received += 1;
            hist.saturating_record(latency);
            if let Some(interval) = interval {
                interval.saturating_record(latency);
            }
        }
        Verdict::Late(latency) => {
            tally.late += 1;
            hist.saturating_record(latency);
        }
        Verdict::Warmup => {}
        Verdict::Duplicate if measuring => tally.duplicates += 1,
        Verdict::Mismatch if measuring => tally.mismatched += 1,
        Verdict::Unexpected if measuring => tally.unexpected += 1,
        Verdict::Duplicate | Verdict::Mismatch | Verdict::Unexpected => {}
    }
}

/// Writes the next request of `flow` into slot `index` of the outbox arena; returns its sequence number.
#[inline]
fn build_one(
    out: &mut Outbox,
    flow: &mut Flow,
    filler: &Filler,
    payload: usize,
    index: usize,
    time: u64,
) -> u64 {
    let seq = flow.book.on_send(time);
    let offset = index * payload;
    write_request(&mut out.arena[offset..offset + payload], seq, time, filler);
    out.ranges[index] = IoRange {
        buffer: 0,
        offset: offset as u32,
        len: payload as u32,
    };
    seq
}

/// Builds `count` requests for one flow as a burst (GSO trains when enabled), timed by `time_of(k)`.
fn build_burst(
    out: &mut Outbox,
    flows: &mut [Flow],
    flow: usize,
    filler: &Filler,
    payload: usize,
    count: usize,
    mut time_of: impl FnMut() -> u64,
) {
    let mut index = 0;
    while index < count {
        let train = out.segments.min(count - index);
        let first_seq = build_one(out, &mut flows[flow], filler, payload, index, time_of());
        for i in 1..train {
            build_one(out, &mut flows[flow], filler, payload, index + i, time_of());
        }
        out.push(flow, first_seq, index, train, payload);
        index += train;
    }
}

/// Open loop: builds what the schedule says is due (at most one batch); returns how many datagrams.
#[allow(clippy::too_many_arguments)]
fn fill_open(
    out: &mut Outbox,
    flows: &mut [Flow],
    filler: &Filler,
    plan: &Plan,
    schedule: &Schedule,
    now: u64,
    issued: &mut u64,
    turn: &mut usize,
) -> usize {
    let due = schedule.due(now).saturating_sub(*issued);
    let count = due.min(plan.batch as u64) as usize;
    if count == 0 {
        return 0;
    }
    let mut time_of = || {
        let time = if schedule.is_unlimited() {
            now
        } else {
            schedule.intended(*issued)
        };
        *issued += 1;
        time
    };
    match plan.pattern {
        Pattern::Bulk => {
            let flow = *turn % flows.len();
            *turn = turn.wrapping_add(1);
            build_burst(out, flows, flow, filler, plan.payload, count, time_of);
        }
        Pattern::Spread => {
            for index in 0..count {
                let flow = *turn % flows.len();
                *turn = turn.wrapping_add(1);
                let seq = build_one(
                    out,
                    &mut flows[flow],
                    filler,
                    plan.payload,
                    index,
                    time_of(),
                );
                out.push(flow, seq, index, 1, plan.payload);
            }
        }
    }
    count
}

/// Closed loop: tops up flows to `window` requests in flight (one batch at most); returns how many.
fn fill_closed(
    out: &mut Outbox,
    flows: &mut [Flow],
    filler: &Filler,
    plan: &Plan,
    window: u64,
    now: u64,
    turn: &mut usize,
) -> usize {
    for flow in flows.iter_mut() {
        flow.book.expire(now, plan.timeout_ns);
    }
    match plan.pattern {
        Pattern::Bulk => {
            for _ in 0..flows.len() {
                let flow = *turn % flows.len();
                *turn = turn.wrapping_add(1);
                let room = window.saturating_sub(flows[flow].book.outstanding);
                let count = room.min(plan.batch as u64) as usize;
                if count > 0 {
                    build_burst(out, flows, flow, filler, plan.payload, count, || now);
                    return count;
                }
            }
            0
        }
        Pattern::Spread => {
            let mut count = 0;
            let mut idle = 0;
            while count < plan.batch && idle < flows.len() {
                let flow = *turn % flows.len();
                *turn = turn.wrapping_add(1);
                if flows[flow].book.outstanding < window {
                    let seq = build_one(out, &mut flows[flow], filler, plan.payload, count, now);
                    out.push(flow, seq, count, 1, plan.payload);
                    count += 1;
                    idle = 0;
                } else {
                    idle += 1;
                }
            }
            count
        }
    }
}

/// Hands the outbox to the kernel, one `sendmmsg` per run of same-flow messages, until it is empty or a
/// socket is full; returns whether anything was sent.
fn flush(out: &mut Outbox, flows: &mut [Flow], tally: &mut Tally, warned: &mut Warned) -> bool {
    let mut progressed = false;
    while out.pos < out.messages.len() {
        let flow = out.flow_of[out.pos];
        let mut end = out.pos + 1;
        while end < out.messages.len() && out.flow_of[end] == flow {
            end += 1;
        }
        let result = send_batch(
            flows[flow].socket.as_fd(),
            &mut out.scratch,
            &[&out.arena],
            &out.ranges,
            &out.messages[out.pos..end],
        );
        match result {
            Ok(taken) => {
                let book = &flows[flow].book;
                for m in out.pos..out.pos + taken {
                    tally.sent +=
                        measured(book.measure_from, out.seq_of[m], out.messages[m].iov_count);
                }
                out.pos += taken;
                if taken == 0 {
                    return progressed;
                }
                progressed = true;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return progressed,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // A pending ICMP error from an earlier datagram, reported now; this one was not sent: retry.
            Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            Err(error)
                if out.segments > 1
                    && out.messages[out.pos].iov_count > 1
                    && matches!(
                        error.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) =>
            {
                eprintln!(
                    "udpd: warning: the kernel refused UDP GSO ({error}); sending plain datagrams"
                );
                out.split_trains();
            }
            Err(error) => {
                let count = out.messages[out.pos].iov_count;
                let book = &mut flows[flow].book;
                tally.send_errors += measured(book.measure_from, out.seq_of[out.pos], count);
                book.on_send_failed(out.seq_of[out.pos], u64::from(count));
                if !warned.send {
                    eprintln!("udpd: warning: send failed: {error} (counted under send errors)");
                    warned.send = true;
                }
                out.pos += 1;
            }
        }
    }
    progressed
}

/// How many of the `count` datagrams from `first_seq` on are measured (not warmup).
#[inline]
fn measured(measure_from: u64, first_seq: u64, count: u32) -> u64 {
    let end = first_seq + u64::from(count);
    end.saturating_sub(first_seq.max(measure_from))
}
