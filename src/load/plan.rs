//! `udpd load`'s flags and their validation into a [`Plan`], in the units the engine uses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Expect;

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
    /// Accept replies from any address and count, per flow, which addresses answered (reported under
    /// `reply_sources`): checks that a balancer keeps each flow on one backend. Flow sockets are then not
    /// connected, so ICMP errors are not seen.
    #[arg(long)]
    pub check_source: bool,
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
    /// `--check-source`: unconnected flow sockets, replies counted per source address.
    pub check_source: bool,
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
        let target = crate::config::resolve_target(&args.target, "target")?;
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
            check_source: args.check_source,
        })
    }
}
