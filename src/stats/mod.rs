//! Per-worker counters and latency histograms, their hand-off to the reporter, and the reports on stdout.
//!
//! Each worker records into its own [`WorkerStats`] (no shared cache line per datagram). At each interval
//! boundary it swaps in a spare and sends the filled one to the reporter over a channel; the reporter merges,
//! prints, clears and sends the buffer back for reuse, so steady state allocates nothing.

pub mod export;
pub mod metrics;

use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Declares the counter struct once, so the field list, the merge and the printed names cannot drift apart.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Every count a worker keeps; printed under these names.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// `(name, value)` pairs in declaration order, for reports.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name)),*]
            }

            pub fn add(&mut self, other: &Counters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Datagrams received (each GRO segment counts once).
    rx,
    /// Datagrams sent (each GSO segment counts once).
    tx,
    rx_bytes,
    tx_bytes,
    /// Larger than `--max-datagram` (or cut by the kernel): counted, never answered.
    truncated,
    /// The handler chose not to answer.
    no_reply,
    /// The reply queue was full because the kernel was not taking replies: reply dropped.
    tx_backpressure,
    /// The kernel refused the reply with an error other than "try later".
    tx_error,
    /// Replies still queued when the worker stopped.
    unsent_at_exit,
    /// Dropped by the kernel at the socket before udpd read them (`SO_RXQ_OVFL`); not part of `rx`.
    kernel_rx_overflow,
    /// Times the kernel refused GSO and the worker switched it off for its socket.
    gso_disabled,
    /// Received buffers that held more than one datagram (GRO).
    gro_trains,
    /// Sent messages that carried more than one datagram (GSO).
    gso_trains,
}

impl Counters {
    /// Datagrams received that were neither answered nor dropped under a named reason (0 when the books balance).
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.rx)
            - i128::from(self.tx)
            - i128::from(self.truncated)
            - i128::from(self.no_reply)
            - i128::from(self.tx_backpressure)
            - i128::from(self.tx_error)
            - i128::from(self.unsent_at_exit)
    }
}

/// Highest latency the histograms track (60 s, in ns); larger values are clamped.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 1 ns to [`LATENCY_MAX_NS`] at 3 significant digits, allocated once
/// and never resized (record with clamping or `saturating_record`). The daemon and the load generator
/// both use it, so their percentiles are comparable.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("static bounds")
}

/// One worker's counts and histograms for one interval.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub counters: Counters,
    /// In-server latency of answered datagrams, nanoseconds: kernel receive time to `sendmmsg` return.
    pub latency_ns: Histogram<u64>,
    /// Datagrams per receive call.
    pub batch_sizes: Histogram<u64>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            counters: Counters::default(),
            latency_ns: latency_histogram(),
            batch_sizes: Histogram::new_with_bounds(1, 1 << 20, 2).expect("static bounds"),
        }
    }
}

impl WorkerStats {
    #[inline]
    pub fn record_latency(&mut self, latency_ns: u64, datagrams: u64) {
        let _ = self
            .latency_ns
            .record_n(latency_ns.clamp(1, LATENCY_MAX_NS), datagrams);
    }

    #[inline]
    pub fn record_batch(&mut self, datagrams: u64) {
        self.batch_sizes.saturating_record(datagrams.max(1));
    }

    pub fn merge(&mut self, other: &WorkerStats) {
        self.counters.add(&other.counters);
        let _ = self.latency_ns.add(&other.latency_ns);
        let _ = self.batch_sizes.add(&other.batch_sizes);
    }

    pub fn reset(&mut self) {
        self.counters = Counters::default();
        self.latency_ns.reset();
        self.batch_sizes.reset();
    }
}

/// A worker's stats on their way to the reporter.
pub struct StatsMessage {
    pub worker: usize,
    pub stats: Box<WorkerStats>,
    /// The worker has stopped; this is its last message.
    pub last: bool,
}

/// A worker's end of the stats hand-off.
pub struct StatsLink {
    worker: usize,
    to_reporter: Sender<StatsMessage>,
    spares: Receiver<Box<WorkerStats>>,
    spare: Option<Box<WorkerStats>>,
    pub current: Box<WorkerStats>,
}

impl StatsLink {
    /// Hands the current interval's stats to the reporter if a cleared spare is available (otherwise keeps
    /// accumulating: the reporter then sees two intervals at once, nothing is lost).
    pub fn publish(&mut self) {
        if self.spare.is_none() {
            self.spare = self.spares.try_recv().ok();
        }
        if let Some(spare) = self.spare.take() {
            let filled = std::mem::replace(&mut self.current, spare);
            let _ = self.to_reporter.send(StatsMessage {
                worker: self.worker,
                stats: filled,
                last: false,
            });
        }
    }

    /// Sends the final stats; the worker records nothing after this.
    pub fn finish(self) {
        let _ = self.to_reporter.send(StatsMessage {
            worker: self.worker,
            stats: self.current,
            last: true,
        });
    }
}

/// The reporter's end: receives, merges, prints.
pub struct Reporter {
    from_workers: Receiver<StatsMessage>,
    spares: Vec<Sender<Box<WorkerStats>>>,
    totals: Vec<WorkerStats>,
    interval_stats: WorkerStats,
    started: Instant,
    interval: Duration,
}

/// One finished interval, as the reporter hands it to whoever prints or exports it.
pub struct Interval<'a> {
    /// 1 for the first interval.
    pub index: u64,
    pub length: Duration,
    /// What happened during this interval, all workers merged.
    pub stats: &'a WorkerStats,
    /// Per-worker totals since start (for cumulative exports such as Prometheus counters).
    pub totals: &'a [WorkerStats],
}

/// Creates the reporter and one link per worker.
pub fn channel(workers: usize, interval: Duration, started: Instant) -> (Reporter, Vec<StatsLink>) {
    let (to_reporter, from_workers) = mpsc::channel();
    let mut spares = Vec::with_capacity(workers);
    let mut links = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (spare_tx, spare_rx) = mpsc::channel();
        spares.push(spare_tx);
        links.push(StatsLink {
            worker,
            to_reporter: to_reporter.clone(),
            spares: spare_rx,
            spare: Some(Box::default()),
            current: Box::default(),
        });
    }
    let reporter = Reporter {
        from_workers,
        spares,
        totals: vec![WorkerStats::default(); workers],
        interval_stats: WorkerStats::default(),
        started,
        interval,
    };
    (reporter, links)
}

/// What the reporter knows at the end: per-worker totals and their merge.
pub struct Summary {
    pub elapsed: Duration,
    pub workers: Vec<WorkerStats>,
    pub total: WorkerStats,
}

impl Reporter {
    /// Receives until every worker has sent its last message, handing each finished interval to
    /// `on_interval` (which prints it, exports it, or both).
    pub fn run(mut self, mut on_interval: impl FnMut(&Interval<'_>)) -> Summary {
        let mut running = self.totals.len();
        let mut next_line = 1u64;
        // Print slightly after each boundary, so that workers' hand-offs at the boundary are included.
        let grace = (self.interval / 5).min(Duration::from_millis(100));
        while running > 0 {
            let due = self.started + self.interval * next_line as u32 + grace;
            let wait = due.saturating_duration_since(Instant::now());
            match self.from_workers.recv_timeout(wait) {
                Ok(message) => {
                    self.absorb(&message);
                    if message.last {
                        running -= 1;
                    } else {
                        let mut stats = message.stats;
                        stats.reset();
                        let _ = self.spares[message.worker].send(stats);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    on_interval(&Interval {
                        index: next_line,
                        length: self.interval,
                        stats: &self.interval_stats,
                        totals: &self.totals,
                    });
                    self.interval_stats.reset();
                    next_line += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut total = WorkerStats::default();
        for worker in &self.totals {
            total.merge(worker);
        }
        Summary {
            elapsed: self.started.elapsed(),
            workers: self.totals,
            total,
        }
    }

    fn absorb(&mut self, message: &StatsMessage) {
        self.totals[message.worker].merge(&message.stats);
        self.interval_stats.merge(&message.stats);
    }
}

impl Interval<'_> {
    /// The interval's text report line (see docs/SERVE_OUTPUT.md).
    pub fn text_line(&self) -> String {
        let secs = self.length.as_secs_f64();
        let c = &self.stats.counters;
        let rate = |n: u64| (n as f64 / secs).round() as u64;
        let batches = &self.stats.batch_sizes;
        let mut line = format!(
            "[{:>8.1}s] rx/s={} tx/s={} drop/s truncated={} no_reply={} tx_backpressure={} tx_error={} kernel_rx_overflow={} batch={:.1}",
            secs * self.index as f64,
            rate(c.rx),
            rate(c.tx),
            rate(c.truncated),
            rate(c.no_reply),
            rate(c.tx_backpressure),
            rate(c.tx_error),
            rate(c.kernel_rx_overflow),
            if batches.is_empty() { 0.0 } else { batches.mean() },
        );
        let latency = &self.stats.latency_ns;
        if latency.is_empty() {
            line.push_str(" lat_us -");
        } else {
            let _ = write!(
                line,
                " lat_us p50={} p99={} p99.9={} max={}",
                micros(latency.value_at_quantile(0.5)),
                micros(latency.value_at_quantile(0.99)),
                micros(latency.value_at_quantile(0.999)),
                micros(latency.max()),
            );
        }
        line
    }
}

/// Nanoseconds to whole microseconds, rounded.
pub fn micros(ns: u64) -> u64 {
    (ns + 500) / 1000
}

impl Summary {
    /// The summary block (see docs/SERVE_OUTPUT.md), `header` naming the run's settings.
    pub fn render(&self, header: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== summary: {:.2} s, {} ==",
            self.elapsed.as_secs_f64(),
            header
        );
        for (index, worker) in self.workers.iter().enumerate() {
            let _ = writeln!(out, "worker {index}: {}", counter_list(&worker.counters));
        }
        let c = &self.total.counters;
        let _ = writeln!(out, "total: {}", counter_list(c));
        let latency = &self.total.latency_ns;
        if latency.is_empty() {
            let _ = writeln!(out, "latency_us: count=0");
        } else {
            let _ = writeln!(
                out,
                "latency_us: count={} min={} p50={} p90={} p99={} p99.9={} p99.99={} max={} mean={:.1}",
                latency.len(),
                micros(latency.min()),
                micros(latency.value_at_quantile(0.5)),
                micros(latency.value_at_quantile(0.9)),
                micros(latency.value_at_quantile(0.99)),
                micros(latency.value_at_quantile(0.999)),
                micros(latency.value_at_quantile(0.9999)),
                micros(latency.max()),
                latency.mean() / 1000.0,
            );
        }
        let batches = &self.total.batch_sizes;
        let _ = writeln!(
            out,
            "batches: calls={} mean={:.1} max={}",
            batches.len(),
            if batches.is_empty() {
                0.0
            } else {
                batches.mean()
            },
            batches.max(),
        );
        let verdict = if c.unaccounted() == 0 {
            "holds"
        } else {
            "VIOLATED"
        };
        let _ = writeln!(
            out,
            "accounting: rx={} = tx={} + truncated={} + no_reply={} + tx_backpressure={} + tx_error={} + unsent_at_exit={} ({verdict})",
            c.rx, c.tx, c.truncated, c.no_reply, c.tx_backpressure, c.tx_error, c.unsent_at_exit
        );
        let _ = writeln!(
            out,
            "kernel: arrived={} = rx={} + kernel_rx_overflow={}",
            c.rx + c.kernel_rx_overflow,
            c.rx,
            c.kernel_rx_overflow
        );
        out
    }
}

fn counter_list(counters: &Counters) -> String {
    let mut out = String::new();
    for (name, value) in counters.fields() {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{name}={value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_merges_workers_and_recycles_buffers() {
        let (reporter, mut links) = channel(2, Duration::from_secs(3600), Instant::now());
        links[0].current.counters.rx = 5;
        links[0].current.counters.tx = 5;
        links[0].current.record_latency(2_000, 5);
        links[0].publish();
        links[0].current.counters.rx = 1;
        links[0].current.counters.no_reply = 1;
        links[1].current.counters.rx = 3;
        links[1].current.counters.truncated = 3;
        let handles: Vec<_> = links
            .into_iter()
            .map(|link| std::thread::spawn(move || link.finish()))
            .collect();
        let summary = reporter.run(|_| {});
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(summary.workers[0].counters.rx, 6);
        assert_eq!(summary.workers[1].counters.truncated, 3);
        assert_eq!(summary.total.counters.rx, 9);
        assert_eq!(summary.total.counters.unaccounted(), 0);
        assert_eq!(summary.total.latency_ns.len(), 5);
        let text = summary.render("test");
        assert!(text.contains("accounting: rx=9 = tx=5 + truncated=3 + no_reply=1"));
        assert!(text.contains("(holds)"));
        assert!(text.contains("worker 1: rx=3 tx=0"));
    }

    #[test]
    fn an_unbalanced_book_is_reported_as_violated() {
        let mut stats = WorkerStats::default();
        stats.counters.rx = 2;
        stats.counters.tx = 1;
        let summary = Summary {
            elapsed: Duration::from_secs(1),
            workers: vec![stats.clone()],
            total: stats,
        };
        assert!(summary.render("x").contains("(VIOLATED)"));
    }

    #[test]
    fn interval_lines_are_handed_out_at_each_boundary() {
        let (reporter, links) = channel(1, Duration::from_millis(20), Instant::now());
        let link = links.into_iter().next().unwrap();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            // Stay alive until the reporter has printed at least one line.
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            link.finish();
        });
        let mut lines = Vec::new();
        let mut done = Some(done_tx);
        let _ = reporter.run(|interval| {
            lines.push(interval.text_line());
            done.take();
        });
        worker.join().unwrap();
        assert!(
            lines[0].starts_with('[') && lines[0].contains("rx/s=0"),
            "{lines:?}"
        );
    }
}
