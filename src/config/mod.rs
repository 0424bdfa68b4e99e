//! `udpd serve` settings: the raw flags (`ServeArgs`) and the validated, typed configuration (`ServeConfig`).

pub mod address;
pub mod file;
pub mod guard;

pub use address::{parse_listen, resolve_target};

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::handler::HandlerSpec;

/// Default `--max-datagram`: above any UDP payload (IPv6 allows up to 65,527), so nothing is cut by default.
pub const MAX_DATAGRAM_DEFAULT: usize = crate::sys::limits::MAX_DATAGRAM;

/// Raw `udpd serve` flags, as typed. Every value is optional so that a configuration file can sit under them.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address and port to listen on; IPv6 as `[::1]:9999`. Port 0 picks a free port (printed at start-up).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Worker threads, each with its own SO_REUSEPORT socket [default: one per CPU this process may use].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// CPUs to pin workers to, in order, e.g. `0,2-3` [default: the CPUs this process may use].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Do not pin workers to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Datagrams per recvmmsg/sendmmsg call [default: 64; 1 to 1024].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Largest datagram accepted; larger ones are counted as `truncated` and not answered [default: 65535].
    #[arg(long, value_name = "BYTES")]
    pub max_datagram: Option<usize>,
    /// Reply logic: echo, upper, ack[:TEXT] or discard [default: echo].
    #[arg(long, value_name = "NAME")]
    pub handler: Option<String>,
    /// Socket receive buffer (SO_RCVBUF) in bytes [default: the kernel's].
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf: Option<usize>,
    /// Socket send buffer (SO_SNDBUF) in bytes [default: the kernel's].
    #[arg(long, value_name = "BYTES")]
    pub sndbuf: Option<usize>,
    /// Send each reply as its own datagram instead of UDP GSO trains.
    #[arg(long)]
    pub no_gso: bool,
    /// Do not ask the kernel for GRO-coalesced requests.
    #[arg(long)]
    pub no_gro: bool,
    /// Seconds between report lines on stdout, e.g. 1 or 0.5 [default: 1].
    #[arg(long, value_name = "SECS")]
    pub interval: Option<f64>,
    /// Print only the summary at exit, no interval lines.
    #[arg(long)]
    pub quiet: bool,
    /// Do not take kernel receive timestamps or record latency histograms (counters stay on).
    #[arg(long)]
    pub no_latency: bool,
    /// Read settings from this TOML file (keys as in dist/udpd.toml); flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Print the effective configuration (defaults, file, flags) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Report format on stdout: text, or json (one object per line) [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9100), from a separate thread.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// How reports are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

/// A validated `udpd serve` configuration: every value in range, nothing left to parse.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub workers: usize,
    /// CPU ids to pin worker `i` to (`cpus[i % len]`); `None` when pinning is off.
    pub cpus: Option<Vec<usize>>,
    pub batch: usize,
    pub max_datagram: usize,
    pub handler: HandlerSpec,
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    pub gso: bool,
    pub gro: bool,
    pub interval: Duration,
    pub quiet: bool,
    pub latency: bool,
    pub format: ReportFormat,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// What the guard stage refuses before the handler sees a datagram.
    pub guard: guard::GuardConfig,
    /// Switch every thread to this user (and group) after binding.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Join a port that other sockets already serve (otherwise refused at start).
    pub share_port: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "0.0.0.0:9999".parse().expect("static address"),
            workers: available_cpus().len().max(1),
            cpus: Some(available_cpus()),
            batch: 64,
            max_datagram: MAX_DATAGRAM_DEFAULT,
            handler: HandlerSpec::Echo,
            rcvbuf: None,
            sndbuf: None,
            gso: true,
            gro: true,
            interval: Duration::from_secs(1),
            quiet: false,
            latency: true,
            format: ReportFormat::Text,
            metrics: None,
            guard: guard::GuardConfig::default(),
            user: None,
            group: None,
            share_port: false,
        }
    }
}

/// CPU ids this process may run on (its affinity mask), in ascending order.
pub fn available_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        ids = (0..n).collect();
    }
    ids
}

impl ServeArgs {
    /// Validates the flags, laid over the `--config` file when there is one, into a configuration.
    pub fn resolve(&self) -> Result<ServeConfig> {
        match &self.config {
            Some(path) => crate::config::file::merge(path, self)?.resolve_flags(),
            None => self.resolve_flags(),
        }
    }

    /// Validates the flags into a configuration, filling defaults.
    fn resolve_flags(&self) -> Result<ServeConfig> {
        let defaults = ServeConfig::default();
        let listen = match &self.listen {
            Some(text) => parse_listen(text)?,
            None => defaults.listen,
        };
        let cpus = match (&self.cpus, self.no_pin) {
            (Some(_), true) => {
                return Err(Error::usage(
                    "--cpus and --no-pin contradict each other: drop one of them",
                ))
            }
            (Some(list), false) => Some(parse_cpu_list(list)?),
            (None, true) => None,
            (None, false) => Some(available_cpus()),
        };
        let workers = match self.workers {
            Some(0) => return Err(Error::usage("--workers must be at least 1")),
            Some(n) if n > 1024 => return Err(Error::usage("--workers must be at most 1024")),
            Some(n) => n,
            None => cpus.as_ref().map_or(defaults.workers, |list| list.len()),
        };
        let batch = match self.batch {
            Some(n) if (1..=crate::sys::limits::MAX_BATCH).contains(&n) => n,
            Some(n) => {
                return Err(Error::usage(format!(
                    "--batch {n} is out of range: use 1 to {}",
                    crate::sys::limits::MAX_BATCH
                )))
            }
            None => defaults.batch,
        };
        let max_datagram = match self.max_datagram {
            Some(n) if (1..=65_535).contains(&n) => n,
            Some(n) => {
                return Err(Error::usage(format!(
                    "--max-datagram {n} is out of range: use 1 to 65535 bytes"
                )))
            }
            None => defaults.max_datagram,
        };
        let handler = match &self.handler {
            Some(text) => text.parse::<HandlerSpec>().map_err(Error::usage)?,
            None => defaults.handler,
        };
        let interval = match self.interval {
            Some(secs) if secs.is_finite() && (0.01..=3600.0).contains(&secs) => {
                Duration::from_secs_f64(secs)
            }
            Some(secs) => {
                return Err(Error::usage(format!(
                    "--interval {secs} is out of range: use 0.01 to 3600 seconds"
                )))
            }
            None => defaults.interval,
        };
        for (flag, value) in [("--rcvbuf", self.rcvbuf), ("--sndbuf", self.sndbuf)] {
            if let Some(bytes) = value {
                if !(1024..=i32::MAX as usize / 2).contains(&bytes) {
                    return Err(Error::usage(format!(
                        "{flag} {bytes} is out of range: use 1024 to {} bytes",
                        i32::MAX / 2
                    )));
                }
            }
        }
        let format = match self.format.as_deref() {
            None | Some("text") => ReportFormat::Text,
            Some("json") => ReportFormat::Json,
            Some(other) => {
                return Err(Error::usage(format!(
                    "--format {other:?} is unknown: use text or json"
                )))
            }
        };
        let metrics = match &self.metrics {
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                Error::usage(format!(
                    "--metrics {text:?} is not an address: use IP:PORT such as 127.0.0.1:9100"
                ))
            })?),
            None => None,
        };
        Ok(ServeConfig {
            listen,
            workers,
            cpus,
            batch,
            max_datagram,
            handler,
            rcvbuf: self.rcvbuf,
            sndbuf: self.sndbuf,
            gso: !self.no_gso,
            gro: !self.no_gro,
            interval,
            quiet: self.quiet,
            latency: !self.no_latency,
            format,
            metrics,
            guard: defaults.guard,
            user: defaults.user,
            group: defaults.group,
            share_port: defaults.share_port,
        })
    }
}

/// Parses a CPU list such as `0,2-3` into ids, rejecting empty lists, reversed ranges and duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>> {
    let bad = || {
        Error::usage(format!(
            "--cpus {text:?} is not a CPU list: use ids and ranges such as 0,2-3"
        ))
    };
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim) {
        if let Some((low, high)) = part.split_once('-') {
            let low: usize = low.trim().parse().map_err(|_| bad())?;
            let high: usize = high.trim().parse().map_err(|_| bad())?;
            if low > high {
                return Err(bad());
            }
            ids.extend(low..=high);
        } else {
            ids.push(part.parse().map_err(|_| bad())?);
        }
    }
    let mut seen = ids.clone();
    seen.sort_unstable();
    seen.dedup();
    if ids.is_empty() || seen.len() != ids.len() {
        return Err(bad());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_reject() {
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        for bad in ["", "3-1", "a", "1,1", "0,,2"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listen_accepts_v4_v6_and_bare_port() {
        assert_eq!(
            parse_listen("9000").unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:53").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn out_of_range_values_are_usage_errors() {
        let cases = [
            ServeArgs {
                workers: Some(0),
                ..Default::default()
            },
            ServeArgs {
                batch: Some(0),
                ..Default::default()
            },
            ServeArgs {
                batch: Some(5000),
                ..Default::default()
            },
            ServeArgs {
                max_datagram: Some(70_000),
                ..Default::default()
            },
            ServeArgs {
                interval: Some(0.0),
                ..Default::default()
            },
            ServeArgs {
                rcvbuf: Some(10),
                ..Default::default()
            },
            ServeArgs {
                handler: Some("shout".into()),
                ..Default::default()
            },
            ServeArgs {
                cpus: Some("0".into()),
                no_pin: true,
                ..Default::default()
            },
        ];
        for args in cases {
            let error = args.resolve().unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(config.listen, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(config.batch, 64);
        assert!(config.gso && config.gro && config.latency);
        let config = ServeArgs {
            workers: Some(3),
            no_pin: true,
            no_gso: true,
            handler: Some("ack:ok".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.cpus, None);
        assert!(!config.gso);
        assert_eq!(config.handler, HandlerSpec::Ack(b"ok".to_vec()));
    }
}
