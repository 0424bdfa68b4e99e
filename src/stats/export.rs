//! Renders stats for machines: one JSON object per report line, and the Prometheus text exposition format.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::{Counters, Interval, Summary, WorkerStats};

/// Quantiles reported everywhere, with the names they carry in JSON (`p99_9` for 99.9%).
const QUANTILES: [(&str, f64); 6] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99_9", 0.999),
    ("p99_99", 0.9999),
    ("max", 1.0),
];

fn latency_us(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return Value::Null;
    }
    let mut out = Map::new();
    out.insert("count".into(), json!(histogram.len()));
    for (name, q) in QUANTILES {
        let ns = if q >= 1.0 {
            histogram.max()
        } else {
            histogram.value_at_quantile(q)
        };
        out.insert(name.into(), json!(ns as f64 / 1000.0));
    }
    out.insert("mean".into(), json!(histogram.mean() / 1000.0));
    Value::Object(out)
}

/// [`latency_us`] plus `stamped`: how many replies' latency was measured (fewer than `count` when sampled).
fn summary_latency_us(total: &WorkerStats) -> Value {
    let mut value = latency_us(&total.latency_ns);
    if let Value::Object(out) = &mut value {
        out.insert("stamped".into(), json!(total.latency_stamped));
    }
    value
}

fn counters(counters: &Counters) -> Map<String, Value> {
    counters
        .fields()
        .into_iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect()
}

/// One interval as a JSON line: the same fields as the text line, rates per second.
pub fn interval_json(interval: &Interval<'_>) -> String {
    let secs = interval.length.as_secs_f64();
    let mut rates = Map::new();
    for (name, value) in interval.stats.counters.fields() {
        rates.insert(name.to_string(), json!(value as f64 / secs));
    }
    let batches = &interval.stats.batch_sizes;
    json!({
        "type": "interval",
        "elapsed_s": secs * interval.index as f64,
        "interval_s": secs,
        "per_second": rates,
        "counts": counters(&interval.stats.counters),
        "batch_mean": batches.mean(),
        "latency_us": latency_us(&interval.stats.latency_ns),
    })
    .to_string()
}

/// The summary as one JSON line: per-worker and total counters, latency, batches, and the accounting check.
pub fn summary_json(summary: &Summary, settings: Value) -> String {
    let workers: Vec<Value> = summary
        .workers
        .iter()
        .map(|worker| Value::Object(counters(&worker.counters)))
        .collect();
    let total = &summary.total;
    json!({
        "type": "summary",
        "elapsed_s": summary.elapsed.as_secs_f64(),
        "settings": settings,
        "workers": workers,
        "total": counters(&total.counters),
        "latency_us": summary_latency_us(total),
        "batches": {
            "calls": total.batch_sizes.calls(),
            "mean": total.batch_sizes.mean(),
            "max": total.batch_sizes.max(),
        },
        "accounting_holds": total.counters.unaccounted() == 0,
    })
    .to_string()
}

/// Prometheus text exposition (version 0.0.4) of cumulative per-worker counters and the latency quantiles
/// of the last interval.
pub fn prometheus(totals: &[WorkerStats], last_interval: &WorkerStats) -> String {
    let mut out = String::new();
    if let Some(first) = totals.first() {
        for (name, _) in first.counters.fields() {
            let _ = writeln!(
                out,
                "# HELP udpd_{name}_total udpd counter `{name}` (see README, Reading the reports)."
            );
            let _ = writeln!(out, "# TYPE udpd_{name}_total counter");
            for (worker, stats) in totals.iter().enumerate() {
                let value = stats
                    .counters
                    .fields()
                    .into_iter()
                    .find(|(field, _)| *field == name)
                    .map_or(0, |(_, value)| value);
                let _ = writeln!(out, "udpd_{name}_total{{worker=\"{worker}\"}} {value}");
            }
        }
    }
    let _ = writeln!(out, "# HELP udpd_latency_seconds In-server latency over the last report interval (kernel receive to sendmmsg return); while the server is loud, timestamps are on one --latency-sample-th of the time and each stamped reply is weighed accordingly, so _count estimates the replies.");
    let _ = writeln!(out, "# TYPE udpd_latency_seconds summary");
    let histogram = &last_interval.latency_ns;
    for (name, q) in QUANTILES {
        if name == "max" {
            continue;
        }
        let value = if histogram.is_empty() {
            f64::NAN
        } else {
            histogram.value_at_quantile(q) as f64 / 1e9
        };
        let _ = writeln!(out, "udpd_latency_seconds{{quantile=\"{q}\"}} {value}");
    }
    let sum_seconds = histogram.mean() * histogram.len() as f64 / 1e9;
    let _ = writeln!(out, "udpd_latency_seconds_sum {sum_seconds}");
    let _ = writeln!(out, "udpd_latency_seconds_count {}", histogram.len());
    let _ = writeln!(out, "# HELP udpd_workers Worker threads serving.");
    let _ = writeln!(out, "# TYPE udpd_workers gauge");
    let _ = writeln!(out, "udpd_workers {}", totals.len());
    out
}

/// The exposition before the first interval: every counter 0 for each of `workers`, latency quantiles NaN
/// (as after an interval without traffic). Serve it from the start with `MetricsText::new`.
pub fn initial_prometheus(workers: usize) -> String {
    prometheus(
        &vec![WorkerStats::default(); workers],
        &WorkerStats::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> WorkerStats {
        let mut stats = WorkerStats::default();
        stats.counters.rx = 10;
        stats.counters.tx = 9;
        stats.counters.no_reply = 1;
        stats.record_latency(20_000, 9, 1);
        stats.record_batch(10);
        stats
    }

    #[test]
    fn interval_and_summary_json_parse_back_with_the_text_fields() {
        let stats = sample();
        let totals = vec![stats.clone()];
        let line = interval_json(&Interval {
            index: 2,
            length: Duration::from_millis(500),
            stats: &stats,
            totals: &totals,
        });
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "interval");
        assert_eq!(value["per_second"]["rx"], 20.0);
        assert_eq!(value["elapsed_s"], 1.0);
        assert!((value["latency_us"]["p99"].as_f64().unwrap() - 20.0).abs() < 0.1);
        let summary = Summary {
            elapsed: Duration::from_secs(1),
            workers: totals.clone(),
            total: stats,
        };
        let value: Value =
            serde_json::from_str(&summary_json(&summary, json!({"workers": 1}))).unwrap();
        assert_eq!(value["total"]["rx"], 10);
        assert_eq!(value["workers"][0]["no_reply"], 1);
        assert_eq!(value["accounting_holds"], true);
    }

    #[test]
    fn prometheus_text_has_one_sample_per_worker_and_quantiles() {
        let text = prometheus(&[sample(), WorkerStats::default()], &sample());
        assert!(text.contains("udpd_rx_total{worker=\"0\"} 10\n"));
        assert!(text.contains("udpd_rx_total{worker=\"1\"} 0\n"));
        assert!(text.contains("# TYPE udpd_tx_total counter"));
        assert!(text.contains("udpd_latency_seconds{quantile=\"0.99\"} 0.00002"));
        assert!(text.contains("udpd_latency_seconds_count 9\n"));
    }

    #[test]
    fn the_initial_exposition_has_every_counter_at_zero_for_every_worker() {
        let text = initial_prometheus(2);
        for (name, _) in Counters::default().fields() {
            for worker in 0..2 {
                let sample = format!("udpd_{name}_total{{worker=\"{worker}\"}} 0\n");
                assert!(text.contains(&sample), "{sample} missing from:\n{text}");
            }
        }
        assert!(text.contains("udpd_workers 2\n"));
    }
}
