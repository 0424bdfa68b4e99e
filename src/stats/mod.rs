//! Per-worker counters and latency histograms, their hand-off to the reporter, and the reports on stdout.
//!
//! Each worker records into its own [`WorkerStats`] (no shared cache line per datagram) and hands it to
//! the [`Reporter`] at each interval boundary; see `link` for the hand-off, `report` for the text,
//! [`export`] for JSON/Prometheus and [`metrics`] for the HTTP endpoint.

mod counters;
pub mod export;
mod http;
mod link;
pub mod metrics;
mod report;
mod worker_stats;

pub use counters::Counters;
pub use link::{
    channel, channel_for, line_grace, Interval, Reporter, StatsLink, StatsMessage, Summary,
};
pub use report::micros;
pub use worker_stats::{latency_histogram, WorkerStats, LATENCY_MAX_NS};
