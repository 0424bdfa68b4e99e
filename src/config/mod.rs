//! `udpd serve` settings: the flags as given (`ServeArgs`), the validated, typed configuration
//! (`ServeConfig`), and the rooms that get from one to the other through one table of settings.

pub mod address;
pub mod cpus;
pub mod file;
pub mod flags;
pub mod guard;
pub mod kinds;
pub mod layer;
pub mod settings;
pub mod settings_guard;

#[cfg(test)]
mod tests;

pub use address::{parse_listen, resolve_target};
pub use cpus::{available_cpus, format_cpu_list, parse_cpu_list};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::handler::HandlerSpec;

/// Default `--max-datagram`: above any UDP payload (IPv6 allows up to 65,527), so nothing is cut by default.
pub const MAX_DATAGRAM_DEFAULT: usize = crate::sys::limits::MAX_DATAGRAM;
/// A loud server takes kernel timestamps during one 16th of the time (see `serve::stamps`): while any
/// socket wants them the kernel stamps every arriving packet, and with the timestamp control message
/// that costs about 2.5 % of the CPU per reply in the many-clients regime (docs/BENCHMARKS.md §8-9);
/// one 16th of the time still stamps thousands of replies a second.
pub const DEFAULT_LATENCY_SAMPLE: usize = 16;
/// Below this many datagrams a second (all workers together) every datagram is stamped: what the
/// timestamps cost there (well under 0.1 % of a CPU) is not worth a sampled histogram.
pub const DEFAULT_LATENCY_ALL_BELOW: usize = 20_000;

/// `udpd serve` as typed: the `--config` file, `--print-config`, and every setting flag given (each
/// already parsed and range-checked by its entry in [`settings`]; see [`flags`]).
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub print_config: bool,
    pub flags: layer::Layer,
}

/// How reports are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

impl ReportFormat {
    /// The name `--format` and the file use.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Text => "text",
            ReportFormat::Json => "json",
        }
    }
}

/// A validated `udpd serve` configuration: every value in range, nothing left to parse.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// With the IPv4 wildcard, also bind each local address found at start (see `serve::addresses`).
    pub address_sockets: bool,
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
    /// A loud server takes kernel receive timestamps during one N-th of the time (1: always).
    pub latency_sample: usize,
    /// Below this many datagrams a second every datagram is stamped (0: sampled at any rate).
    pub latency_all_below: usize,
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
        let cpus = cpus::default_cpus();
        ServeConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9999)),
            address_sockets: true,
            workers: cpus.len().clamp(1, cpus::MAX_CPUS),
            cpus: Some(cpus),
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
            latency_sample: DEFAULT_LATENCY_SAMPLE,
            latency_all_below: DEFAULT_LATENCY_ALL_BELOW,
            format: ReportFormat::Text,
            metrics: None,
            guard: guard::GuardConfig::default(),
            user: None,
            group: None,
            share_port: false,
        }
    }
}

impl ServeArgs {
    /// Validates the flags, laid over the `--config` file when there is one, into a configuration.
    pub fn resolve(&self) -> Result<ServeConfig> {
        if self.flags.contradicts_pinning() {
            return Err(Error::usage(
                "--cpus and --no-pin contradict each other: drop one of them",
            ));
        }
        let layer = match &self.config {
            Some(path) => file::load(path)?.under(&self.flags),
            None => self.flags.clone(),
        };
        Ok(layer.resolve())
    }
}
