//! The text reports on stdout: the interval line and the summary block (see docs/SERVE_OUTPUT.md).

use std::fmt::Write as _;

use crate::stats::{Counters, Interval, Summary};

impl Interval<'_> {
    /// The interval's text report line (see docs/SERVE_OUTPUT.md).
    pub fn text_line(&self) -> String {
        let secs = self.length.as_secs_f64();
        let c = &self.stats.counters;
        let rate = |n: u64| (n as f64 / secs).round() as u64;
        let batches = &self.stats.batch_sizes;
        let mut line = format!(
            "[{:>8.1}s] rx/s={} tx/s={} drop/s",
            secs * self.index as f64,
            rate(c.rx),
            rate(c.tx),
        );
        for (name, value) in c.interval_drops() {
            let _ = write!(line, " {name}={}", rate(value));
        }
        let _ = write!(
            line,
            " kernel_rx_overflow={} batch={:.1}",
            rate(c.kernel_rx_overflow),
            batches.mean(),
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
            batches.calls(),
            batches.mean(),
            batches.max(),
        );
        let _ = writeln!(out, "{}", accounting_line(c));
        let _ = writeln!(out, "{}", kernel_line(c));
        out
    }
}

/// `accounting: rx=N = tx=N + <reason>=N + ... (holds)`: the identity over every drop reason.
fn accounting_line(c: &Counters) -> String {
    let mut line = format!("accounting: rx={} = tx={}", c.rx, c.tx);
    for (name, value) in c.drop_reasons() {
        let _ = write!(line, " + {name}={value}");
    }
    let verdict = if c.unaccounted() == 0 {
        "holds"
    } else {
        "VIOLATED"
    };
    let _ = write!(line, " ({verdict})");
    line
}

/// What the kernel read for udpd and what it dropped before udpd could read it. Not an identity: under GRO
/// `rx` counts datagrams while `kernel_rx_overflow` counts kernel packets (a dropped train counts once).
fn kernel_line(c: &Counters) -> String {
    format!(
        "kernel: rx={} datagrams read, kernel_rx_overflow={} packets dropped at the socket (a GRO train counts once)",
        c.rx, c.kernel_rx_overflow
    )
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
    use crate::stats::WorkerStats;
    use std::time::Duration;

    fn busy() -> WorkerStats {
        let mut stats = WorkerStats::default();
        let c = &mut stats.counters;
        c.rx = 12345;
        c.tx = 12000;
        c.truncated = 5;
        c.no_reply = 300;
        c.tx_backpressure = 20;
        c.tx_error = 7;
        c.unsent_at_exit = 13;
        c.kernel_rx_overflow = 99;
        c.gro_trains = 4;
        stats.record_latency(12_345, 100, 1);
        stats.record_latency(99_000, 3, 1);
        stats.record_batch(17);
        stats.record_batch(3);
        stats
    }

    /// The exact text of the format (docs/SERVE_OUTPUT.md), guard counters included.
    #[test]
    fn interval_lines_keep_their_exact_format() {
        let (busy, idle) = (busy(), WorkerStats::default());
        let totals = [busy.clone(), idle.clone()];
        let line = |stats| {
            Interval {
                index: 3,
                length: Duration::from_millis(500),
                stats,
                totals: &totals,
            }
            .text_line()
        };
        assert_eq!(
            line(&busy),
            "[     1.5s] rx/s=24690 tx/s=24000 drop/s truncated=10 no_reply=600 tx_backpressure=40 tx_error=14 loop_guard=0 acl_denied=0 rate_limited=0 amplification_refused=0 kernel_rx_overflow=198 batch=10.0 lat_us p50=12 p99=99 p99.9=99 max=99"
        );
        assert_eq!(
            line(&idle),
            "[     1.5s] rx/s=0 tx/s=0 drop/s truncated=0 no_reply=0 tx_backpressure=0 tx_error=0 loop_guard=0 acl_denied=0 rate_limited=0 amplification_refused=0 kernel_rx_overflow=0 batch=0.0 lat_us -"
        );
    }

    #[test]
    fn the_summary_keeps_its_exact_format() {
        let mut total = busy();
        total.merge(&WorkerStats::default());
        let summary = Summary {
            elapsed: Duration::from_millis(3210),
            workers: vec![busy(), WorkerStats::default()],
            total,
        };
        let expected = "\
== summary: 3.21 s, 2 workers, handler echo, gso on, gro on ==
worker 0: rx=12345 tx=12000 rx_bytes=0 tx_bytes=0 truncated=5 no_reply=300 tx_backpressure=20 tx_error=7 unsent_at_exit=13 kernel_rx_overflow=99 gso_disabled=0 gro_trains=4 gso_trains=0 tx_buffer_full=0 loop_guard=0 acl_denied=0 rate_limited=0 amplification_refused=0 rate_limited_dry_run=0
worker 1: rx=0 tx=0 rx_bytes=0 tx_bytes=0 truncated=0 no_reply=0 tx_backpressure=0 tx_error=0 unsent_at_exit=0 kernel_rx_overflow=0 gso_disabled=0 gro_trains=0 gso_trains=0 tx_buffer_full=0 loop_guard=0 acl_denied=0 rate_limited=0 amplification_refused=0 rate_limited_dry_run=0
total: rx=12345 tx=12000 rx_bytes=0 tx_bytes=0 truncated=5 no_reply=300 tx_backpressure=20 tx_error=7 unsent_at_exit=13 kernel_rx_overflow=99 gso_disabled=0 gro_trains=4 gso_trains=0 tx_buffer_full=0 loop_guard=0 acl_denied=0 rate_limited=0 amplification_refused=0 rate_limited_dry_run=0
latency_us: count=103 min=12 p50=12 p90=12 p99=99 p99.9=99 p99.99=99 max=99 mean=14.9
batches: calls=2 mean=10.0 max=17
accounting: rx=12345 = tx=12000 + truncated=5 + no_reply=300 + tx_backpressure=20 + tx_error=7 + unsent_at_exit=13 + loop_guard=0 + acl_denied=0 + rate_limited=0 + amplification_refused=0 (holds)
kernel: rx=12345 datagrams read, kernel_rx_overflow=99 packets dropped at the socket (a GRO train counts once)
";
        assert_eq!(
            summary.render("2 workers, handler echo, gso on, gro on"),
            expected
        );
    }

    #[test]
    fn an_unbalanced_book_is_reported_as_violated() {
        let mut stats = busy();
        stats.counters.tx += 1;
        let summary = Summary {
            elapsed: Duration::from_secs(1),
            workers: vec![stats.clone()],
            total: stats,
        };
        assert!(summary.render("x").contains(
            "accounting: rx=12345 = tx=12001 + truncated=5 + no_reply=300 + tx_backpressure=20 + tx_error=7 + unsent_at_exit=13 + loop_guard=0 + acl_denied=0 + rate_limited=0 + amplification_refused=0 (VIOLATED)\n"
        ));
    }
}
