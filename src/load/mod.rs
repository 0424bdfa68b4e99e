//! `udpd load`: its flags, their validation into a plan, and the run that spreads flows over pinned threads.
//!
//! The JSON summary (`--json`) is one object with these keys, which scripts rely on: `target`, `mode`
//! (`"open"` or `"closed"`), `flows`, `threads`, `payload`, `expect`, `duration_s`, `offered_pps` (`--rate`
//! in open loop, 0 meaning as fast as possible; null in closed loop), `sent`, `sent_pps`, `received`,
//! `received_pps`, `lost`, `loss_ratio`, `mismatched`, `duplicates`, `late`, `send_errors`, and `latency_us`
//! (`p50`, `p90`, `p99`, `p99_9`, `p99_99`, `max`, `mean`; null when no reply was matched).
//!
//! Accounting: every measured datagram sent ends up received (correct, in time), mismatched, late or lost,
//! so `sent = received + mismatched + late + lost`; duplicates are extra replies on top. Latency percentiles
//! cover every matched reply, late ones included. `--duration` is the measured part, after `--warmup`.

mod check;
mod engine;
mod flow;
mod payload;
mod report;
mod schedule;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

pub use check::Expect;
use engine::{new_histogram, Progress, Tally, ThreadReport};
use report::{Latency, Summary};

/// Datagrams per second offered when neither `--rate` nor `--outstanding` is given.
const DEFAULT_RATE: f64 = 10_000.0;

/// Flags of `udpd load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server to send to, HOST:PORT.
    pub target: String,
    /// Open loop (the default): datagrams per second over all flows, sent on a fixed schedule whatever the
    /// replies; 0 sends as fast as possible [default: 10000].
    #[arg(long, value_name = "PPS", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Closed loop instead: keep N requests in flight per flow.
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub outstanding: Option<u64>,
    /// Sockets to send from, each with its own source port.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub flows: usize,
    /// Sender/receiver threads; thread i is pinned to the i-th CPU of the affinity mask (see `taskset`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// UDP payload bytes per request (0 to 65507); from 16 bytes each carries its sequence number and send time.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub payload: usize,
    /// Seconds of measured load (after the warmup).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts; their replies are not counted.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup: f64,
    /// Datagrams per sendmmsg/recvmmsg call (1 to 1024).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,
    /// Seconds after which a reply counts as late and a missing one as lost.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub timeout: f64,
    /// Send each burst to one flow as one UDP_SEGMENT (GSO) train.
    #[arg(long)]
    pub gso: bool,
    /// Receive replies coalesced (UDP_GRO) and split them by segment size.
    #[arg(long)]
    pub gro: bool,
    /// bulk: bursts of --batch datagrams per flow; spread: consecutive datagrams to different flows.
    #[arg(long, value_enum, default_value_t = Pattern::Bulk)]
    pub pattern: Pattern,
    /// What the server should answer: echo, upper, ack, ack:TEXT or none (expect no reply).
    #[arg(long, value_name = "KIND", default_value = "echo", value_parser = Expect::parse)]
    pub expect: Expect,
    /// Write the latency distribution (microseconds) in HdrHistogram's percentile text format to FILE.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write a JSON summary to FILE (`-` for stdout, the text report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// How consecutive datagrams are spread over the flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// Bursts of `--batch` datagrams to one flow at a time (coalescible by GRO/GSO).
    Bulk,
    /// Round robin, one datagram per flow: nothing for the server to coalesce. Costs one `sendmmsg` per
    /// datagram, since a connected socket's batch cannot hold other flows' datagrams.
    Spread,
}

/// The validated flags, in the units the engine uses.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    /// The target as the user wrote it (for reports).
    pub target_text: String,
    /// Open-loop datagrams per second over all threads (0 = unlimited); unused in closed loop.
    pub rate: f64,
    /// Closed loop: requests in flight per flow.
    pub outstanding: Option<u64>,
    pub flows: usize,
    pub threads: usize,
    pub payload: usize,
    pub duration_ns: u64,
    pub warmup_ns: u64,
    pub timeout_ns: u64,
    pub batch: usize,
    pub gso: bool,
    pub gro: bool,
    pub pattern: Pattern,
    pub expect: Expect,
    /// Sequence numbers tracked per flow (duplicate detection, closed-loop expiry).
    pub window: usize,
}

fn seconds(flag: &str, value: f64, allow_zero: bool) -> crate::Result<u64> {
    let ok = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0)) && value < 1e9;
    if !ok {
        let want = if allow_zero {
            "0 or more"
        } else {
            "more than 0"
        };
        return Err(crate::Error::usage(format!(
            "{flag} must be a number of seconds, {want}; got {value}"
        )));
    }
    Ok((value * 1e9) as u64)
}

impl Plan {
    /// Checks every flag and resolves the target; any problem is a usage error naming the flag.
    pub fn from_args(args: &LoadArgs) -> crate::Result<Plan> {
        let rate = args.rate.unwrap_or(DEFAULT_RATE);
        if !rate.is_finite() || rate < 0.0 {
            return Err(crate::Error::usage(format!(
                "--rate must be 0 (as fast as possible) or a positive number of datagrams per second; got {rate}"
            )));
        }
        if args.payload > crate::sys::limits::MAX_UDP_PAYLOAD {
            return Err(crate::Error::usage(format!(
                "--payload {} is too large: a UDP datagram carries at most {} bytes",
                args.payload,
                crate::sys::limits::MAX_UDP_PAYLOAD
            )));
        }
        if args.flows == 0 || args.flows > 65_536 {
            return Err(crate::Error::usage(format!(
                "--flows must be between 1 and 65536; got {}",
                args.flows
            )));
        }
        if args.threads == 0 || args.threads > args.flows {
            return Err(crate::Error::usage(format!(
                "--threads must be between 1 and --flows ({}), since each thread owns its own flows; got {}",
                args.flows, args.threads
            )));
        }
        if args.batch == 0 || args.batch > crate::sys::limits::MAX_BATCH {
            return Err(crate::Error::usage(format!(
                "--batch must be between 1 and {}; got {}",
                crate::sys::limits::MAX_BATCH,
                args.batch
            )));
        }
        if let Some(outstanding) = args.outstanding {
            if outstanding == 0 || outstanding > 1 << 20 {
                return Err(crate::Error::usage(format!(
                    "--outstanding must be between 1 and 1048576 requests per flow; got {outstanding}"
                )));
            }
            if args.expect == Expect::None {
                return Err(crate::Error::usage(
                    "--outstanding waits for replies, so it cannot be used with --expect none; use --rate",
                ));
            }
        }
        if args.gso && args.payload == 0 {
            return Err(crate::Error::usage(
                "--gso needs a --payload of at least 1 byte (segments cannot be empty)",
            ));
        }
        if args.gso && args.pattern == Pattern::Spread {
            return Err(crate::Error::usage(
                "--gso sends bursts to one flow, which --pattern spread rules out; drop one of them",
            ));
        }
        let duration_ns = seconds("--duration", args.duration, false)?;
        let warmup_ns = seconds("--warmup", args.warmup, true)?;
        let timeout_ns = seconds("--timeout", args.timeout, false)?;
        let target = resolve(&args.target)?;
        let per_flow = ((1usize << 23) / args.flows).clamp(1 << 12, 1 << 19);
        let in_flight = args.outstanding.unwrap_or(0) as usize * 2;
        Ok(Plan {
            target,
            target_text: args.target.clone(),
            rate: if args.outstanding.is_some() {
                0.0
            } else {
                rate
            },
            outstanding: args.outstanding,
            flows: args.flows,
            threads: args.threads,
            payload: args.payload,
            duration_ns,
            warmup_ns,
            timeout_ns,
            batch: args.batch,
            gso: args.gso,
            gro: args.gro,
            pattern: args.pattern,
            expect: args.expect.clone(),
            window: per_flow.max(in_flight).next_power_of_two(),
        })
    }
}

/// Resolves HOST:PORT to its first address.
fn resolve(target: &str) -> crate::Result<SocketAddr> {
    let unresolvable = |why: String| {
        crate::Error::usage(format!(
            "cannot resolve target '{target}': {why}; give HOST:PORT, e.g. 127.0.0.1:9000"
        ))
    };
    target
        .to_socket_addrs()
        .map_err(|error| unresolvable(error.to_string()))?
        .next()
        .ok_or_else(|| unresolvable("no address found".into()))
}

/// Runs `udpd load`: validates, opens the flows, runs the threads, prints the report.
pub fn run(args: LoadArgs) -> crate::Result<()> {
    let plan = Plan::from_args(&args)?;
    let (sockets, gro) = flow::open(plan.target, plan.flows, plan.gro)?;
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
    let (sender, receiver) = mpsc::channel::<Progress>();
    let results: Vec<std::thread::Result<ThreadReport>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(i, share)| {
                let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
                let progress = show_progress.then(|| sender.clone());
                let (plan, filler) = (&plan, &filler);
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn_scoped(scope, move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core);
                        }
                        engine::run(plan, share, filler, clock, progress, gro)
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
    let mut hist = new_histogram();
    let mut measured_ns = 0;
    for result in results {
        let report = result.map_err(|_| crate::Error::runtime("a load thread panicked"))?;
        tally += report.tally;
        let _ = hist.add(&report.hist);
        measured_ns = measured_ns.max(report.measured_ns);
    }
    let summary = summarize(&plan, &tally, &hist, measured_ns);
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
        latency: if expect_none {
            None
        } else {
            Latency::from_histogram(hist)
        },
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
        std::fs::write(path, report::hgrm(hist)).map_err(|error| {
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
    let mut hist = new_histogram();
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
