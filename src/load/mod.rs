//! `udpd load`: the run that spreads flows over pinned threads, merges their counts and writes the reports.
//!
//! The JSON summary (`--json`) is one object with these keys, which scripts rely on: `target`, `mode`
//! (`"open"` or `"closed"`), `flows`, `threads`, `payload`, `expect`, `duration_s`, `offered_pps` (`--rate`
//! in open loop, 0 meaning as fast as possible; null in closed loop), `sent`, `sent_pps`, `received`,
//! `received_pps`, `lost`, `loss_ratio`, `mismatched`, `duplicates`, `late`, `send_errors`, and `latency_us`
//! (`p50`, `p90`, `p99`, `p99_9`, `p99_99`, `max`, `mean`; null when no reply was matched),
//! `latency_of_sent_us` (the same percentiles but `max` and `mean` over every request sent, each request
//! without a correct reply counted as slower than any reply: null where a percentile falls among them;
//! and `unanswered`, their count; null when no reply was matched), and
//! `reply_sources` (null without `--check-source`; else `replies`, `flows_answered`, `single_source`,
//! `multi_source`, `moved_once`, `flapping`, `changes`, `other_replies` and `by_source`, a list of `addr`,
//! `replies`, `flows_first`, `flows_last`; see `sources`).
//!
//! Accounting: every measured datagram sent ends up received (correct, in time), mismatched, late or lost,
//! so `sent = received + mismatched + late + lost`; duplicates are extra replies on top. Latency percentiles
//! cover every matched reply, late ones included. `--duration` is the measured part, after `--warmup`.

mod book;
mod check;
mod engine;
mod expect;
mod feed;
mod flow;
mod hgrm;
mod outbox;
mod payload;
mod phase;
mod plan;
mod ready;
mod report;
mod schedule;
mod sources;

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::stats::latency_histogram;
use engine::{Progress, Tally, ThreadReport};
pub use expect::Expect;
pub use plan::{LoadArgs, Pattern, Plan};
use report::{Latency, LatencyOfSent, Summary};

/// Runs `udpd load`: validates, opens the flows, runs the threads, prints the report.
pub fn run(args: LoadArgs) -> crate::Result<()> {
    let plan = Plan::from_args(&args)?;
    let (sockets, gro) = flow::open(plan.target, plan.flows, plan.gro, !plan.check_source)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if !cores.is_empty() && plan.threads > cores.len() {
        eprintln!(
            "udpd: warning: {} threads but only {} CPUs in the affinity mask; threads will share CPUs",
            plan.threads,
            cores.len()
        );
    }
    let filler = payload::Filler::new();
    let clock = Instant::now();
    let show_progress = !args.quiet && std::io::stderr().is_terminal();

    let mut shares: Vec<Vec<std::net::UdpSocket>> = (0..plan.threads).map(|_| Vec::new()).collect();
    for (i, socket) in sockets.into_iter().enumerate() {
        shares[i % plan.threads].push(socket);
    }
    let readiness = shares
        .iter()
        .map(|share| ready::ReadyFlows::new(share))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|error| {
            crate::Error::runtime(format!(
                "cannot watch the flow sockets with epoll: {error} (too many flows for the open-file limit? see `ulimit -n`)"
            ))
        })?;
    let (sender, receiver) = mpsc::channel::<Progress>();
    let results: Vec<std::thread::Result<ThreadReport>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .zip(readiness)
            .enumerate()
            .map(|(i, (share, ready))| {
                let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
                let progress = show_progress.then(|| sender.clone());
                let (plan, filler) = (&plan, &filler);
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn_scoped(scope, move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core);
                        }
                        engine::run(plan, share, ready, filler, clock, progress, gro)
                    })
                    .expect("spawning a load thread")
            })
            .collect();
        drop(sender);
        if show_progress {
            show_progress_lines(&receiver, &plan);
        }
        handles.into_iter().map(|handle| handle.join()).collect()
    });

    let mut tally = Tally::default();
    let mut hist = latency_histogram();
    let mut measured_ns = 0;
    let mut sources = plan.check_source.then(sources::SourceBook::new);
    for result in results {
        let report = result.map_err(|_| crate::Error::runtime("a load thread panicked"))?;
        tally += report.tally;
        let _ = hist.add(&report.hist);
        measured_ns = measured_ns.max(report.measured_ns);
        if let (Some(all), Some(theirs)) = (&mut sources, &report.sources) {
            all.merge(theirs);
        }
    }
    let mut summary = summarize(&plan, &tally, &hist, measured_ns);
    summary.sources = sources;
    write_outputs(&args, &summary, &hist)?;
    if summary.nothing_received() {
        return Err(crate::Error::runtime(format!(
            "no replies received from {} ({} datagrams sent): is a server listening there and answering? (--expect none for a sink)",
            plan.target_text, summary.sent
        )));
    }
    Ok(())
}

fn summarize(
    plan: &Plan,
    tally: &Tally,
    hist: &hdrhistogram::Histogram<u64>,
    measured_ns: u64,
) -> Summary {
    let expect_none = plan.expect == Expect::None;
    let lost = if expect_none {
        0
    } else {
        tally
            .sent
            .saturating_sub(tally.received + tally.mismatched + tally.late)
    };
    Summary {
        target: plan.target_text.clone(),
        mode: if plan.outstanding.is_some() {
            "closed"
        } else {
            "open"
        },
        offered_pps: plan.outstanding.is_none().then_some(plan.rate),
        outstanding: plan.outstanding.map(|n| n as u32),
        flows: plan.flows,
        threads: plan.threads,
        payload: plan.payload,
        expect: plan.expect.name(),
        expect_none,
        duration_s: measured_ns as f64 / 1e9,
        warmup_s: plan.warmup_ns as f64 / 1e9,
        sent: tally.sent,
        received: tally.received,
        lost,
        mismatched: tally.mismatched,
        duplicates: tally.duplicates,
        late: tally.late,
        send_errors: tally.send_errors,
        unexpected: tally.unexpected,
        latency: (!expect_none)
            .then(|| Latency::from_histogram(hist))
            .flatten(),
        latency_of_sent: (!expect_none)
            .then(|| LatencyOfSent::new(hist, tally.sent))
            .flatten(),
        sources: None,
    }
}

fn write_outputs(
    args: &LoadArgs,
    summary: &Summary,
    hist: &hdrhistogram::Histogram<u64>,
) -> crate::Result<()> {
    let text = summary.to_text();
    if args.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(path) = &args.json {
        let json = summary.to_json();
        if path == "-" {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(json.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|error| {
                    crate::Error::runtime(format!("cannot write JSON to stdout: {error}"))
                })?;
        } else {
            std::fs::write(path, json).map_err(|error| {
                crate::Error::runtime(format!("cannot write --json file {path}: {error}"))
            })?;
        }
    }
    if let Some(path) = &args.hgrm {
        std::fs::write(path, hgrm::hgrm(hist)).map_err(|error| {
            crate::Error::runtime(format!(
                "cannot write --hgrm file {}: {error}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// Prints one progress line a second on stderr (a terminal) until every thread has finished.
fn show_progress_lines(receiver: &mpsc::Receiver<Progress>, plan: &Plan) {
    let started = Instant::now();
    let mut next = started + Duration::from_secs(1);
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut hist = latency_histogram();
    let mut printed = false;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(wait) {
            Ok(progress) => {
                sent += progress.sent;
                received += progress.received;
                let _ = hist.add(&progress.hist);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let loss = if sent == 0 || plan.expect == Expect::None {
                0.0
            } else {
                (1.0 - received as f64 / sent as f64).max(0.0) * 100.0
            };
            let p99 = hist.value_at_quantile(0.99) as f64 / 1000.0;
            eprint!(
                "\r\x1b[K[{:>4}s] sent {sent}/s  received {received}/s  loss {loss:.2}%  p99 {p99:.1} us",
                started.elapsed().as_secs()
            );
            printed = true;
            sent = 0;
            received = 0;
            hist.reset();
        }
    }
    if printed {
        eprintln!();
    }
}
