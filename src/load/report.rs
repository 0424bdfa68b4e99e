//! The run's results as people and scripts read them: the text block, the JSON object and the `.hgrm` file.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Nanoseconds per microsecond: histograms hold nanoseconds, every report speaks microseconds.
const NS_PER_US: f64 = 1_000.0;

/// Latency percentiles of the replies, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `hist` (nanoseconds), or `None` when it is empty.
    pub fn from_histogram(hist: &Histogram<u64>) -> Option<Latency> {
        if hist.is_empty() {
            return None;
        }
        let at = |q: f64| hist.value_at_quantile(q) as f64 / NS_PER_US;
        Some(Latency {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            p99_99: at(0.9999),
            max: hist.max() as f64 / NS_PER_US,
            mean: hist.mean() / NS_PER_US,
        })
    }
}

/// Everything the final report says.
#[derive(Clone, Debug)]
pub struct Summary {
    pub target: String,
    /// `"open"` or `"closed"`.
    pub mode: &'static str,
    /// `--rate` in open loop (0 = as fast as possible); `None` in closed loop.
    pub offered_pps: Option<f64>,
    /// `--outstanding` in closed loop.
    pub outstanding: Option<u32>,
    pub flows: usize,
    pub threads: usize,
    pub payload: usize,
    pub expect: String,
    /// `--expect none`: nothing to receive, report sends only.
    pub expect_none: bool,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub mismatched: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Datagrams the kernel refused to send (not counted as sent).
    pub send_errors: u64,
    /// Replies that arrived although `--expect none`.
    pub unexpected: u64,
    pub latency: Option<Latency>,
}

impl Summary {
    pub fn sent_pps(&self) -> f64 {
        per_second(self.sent, self.duration_s)
    }

    pub fn received_pps(&self) -> f64 {
        per_second(self.received, self.duration_s)
    }

    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 / self.sent as f64
        }
    }

    /// True when replies were expected and none at all arrived (not even wrong ones).
    pub fn nothing_received(&self) -> bool {
        !self.expect_none && self.received + self.mismatched + self.duplicates + self.late == 0
    }

    /// The plain text block printed at the end of a run.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mode = match (self.mode, self.offered_pps) {
            ("open", Some(rate)) if rate > 0.0 => format!("open loop, offered {rate:.0} pps"),
            ("open", _) => "open loop, as fast as possible".to_string(),
            _ => format!(
                "closed loop, {} outstanding per flow",
                self.outstanding.unwrap_or(0)
            ),
        };
        let _ = writeln!(out, "target      {}", self.target);
        let _ = writeln!(out, "mode        {mode}");
        let _ = writeln!(out, "flows       {}", self.flows);
        let _ = writeln!(out, "threads     {}", self.threads);
        let _ = writeln!(out, "payload     {} bytes", self.payload);
        let _ = writeln!(out, "expect      {}", self.expect);
        let _ = writeln!(
            out,
            "duration    {:.3} s (after {:.3} s warmup)",
            self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            out,
            "sent        {} ({:.0} pps)",
            self.sent,
            self.sent_pps()
        );
        if self.send_errors > 0 {
            let _ = writeln!(out, "send errors {}", self.send_errors);
        }
        if self.expect_none {
            if self.unexpected > 0 {
                let _ = writeln!(out, "unexpected  {} replies", self.unexpected);
            }
            return out;
        }
        let _ = writeln!(
            out,
            "received    {} ({:.0} replies/s)",
            self.received,
            self.received_pps()
        );
        let _ = writeln!(
            out,
            "loss        {} ({:.3}%)",
            self.lost,
            self.loss_ratio() * 100.0
        );
        let _ = writeln!(out, "mismatched  {}", self.mismatched);
        let _ = writeln!(out, "duplicates  {}", self.duplicates);
        let _ = writeln!(out, "late        {}", self.late);
        match &self.latency {
            _ if self.nothing_received() => {
                let _ = writeln!(out, "no replies received from {}", self.target);
            }
            None => {
                let _ = writeln!(out, "latency     no correct reply to measure");
            }
            Some(l) => {
                let _ = writeln!(out, "latency (us)");
                let _ = writeln!(
                    out,
                    "  {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    "p50", "p90", "p99", "p99.9", "p99.99", "max"
                );
                let _ = writeln!(
                    out,
                    "  {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                    l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
                );
            }
        }
        out
    }

    /// One JSON object (keys are a contract with the scripts; see the module docs of `load`).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        let _ = write!(out, "\"target\":{}", json_string(&self.target));
        let _ = write!(out, ",\"mode\":\"{}\"", self.mode);
        let _ = write!(out, ",\"flows\":{}", self.flows);
        let _ = write!(out, ",\"threads\":{}", self.threads);
        let _ = write!(out, ",\"payload\":{}", self.payload);
        let _ = write!(out, ",\"expect\":{}", json_string(&self.expect));
        let _ = write!(out, ",\"duration_s\":{}", json_number(self.duration_s));
        let offered = self.offered_pps.map_or("null".to_string(), json_number);
        let _ = write!(out, ",\"offered_pps\":{offered}");
        let _ = write!(out, ",\"sent\":{}", self.sent);
        let _ = write!(out, ",\"sent_pps\":{}", json_number(self.sent_pps()));
        let _ = write!(out, ",\"received\":{}", self.received);
        let _ = write!(
            out,
            ",\"received_pps\":{}",
            json_number(self.received_pps())
        );
        let _ = write!(out, ",\"lost\":{}", self.lost);
        let _ = write!(out, ",\"loss_ratio\":{}", json_number(self.loss_ratio()));
        let _ = write!(out, ",\"mismatched\":{}", self.mismatched);
        let _ = write!(out, ",\"duplicates\":{}", self.duplicates);
        let _ = write!(out, ",\"late\":{}", self.late);
        let _ = write!(out, ",\"send_errors\":{}", self.send_errors);
        match &self.latency {
            None => out.push_str(",\"latency_us\":null"),
            Some(l) => {
                let _ = write!(
                    out,
                    ",\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p99_9\":{},\"p99_99\":{},\"max\":{},\"mean\":{}}}",
                    json_number(l.p50),
                    json_number(l.p90),
                    json_number(l.p99),
                    json_number(l.p99_9),
                    json_number(l.p99_99),
                    json_number(l.max),
                    json_number(l.mean)
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// A finite number with at most three decimals (JSON has no NaN or infinity: those become null).
fn json_number(value: f64) -> String {
    if !value.is_finite() {
        return "null".into();
    }
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".into()
    } else {
        text.to_string()
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// HdrHistogram's standard percentile distribution (as `outputPercentileDistribution` writes it, five ticks
/// per half distance), values scaled from the histogram's nanoseconds to microseconds.
pub fn hgrm(hist: &Histogram<u64>) -> String {
    let digits = usize::from(hist.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in hist.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / NS_PER_US;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.digits$} {quantile:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value:>12.digits$} {quantile:>2.12} {total:>10}");
        }
    }
    let mean = hist.mean() / NS_PER_US;
    let stdev = hist.stdev() / NS_PER_US;
    let max = hist.max() as f64 / NS_PER_US;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        hist.len()
    );
    // HdrHistogram's sub-bucket count: the power of two that holds 2 * 10^digits distinct values.
    let sub_buckets = (2 * 10u64.pow(u32::from(hist.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_buckets
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram() -> Histogram<u64> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for value in 1..=1000u64 {
            hist.saturating_record(value * 1_000);
        }
        hist
    }

    #[test]
    fn hgrm_has_the_standard_header_rows_and_footer() {
        let text = hgrm(&histogram());
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                line.split_whitespace()
                    .map(|f| f.parse().unwrap())
                    .collect()
            })
            .collect();
        assert!(rows.len() > 20);
        assert!(rows
            .windows(2)
            .all(|w| w[0][1] <= w[1][1] && w[0][0] <= w[1][0]));
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 1000.0);
        assert!(
            (last[0] - 1000.0).abs() < 1.0,
            "max is ~1000 us: {}",
            last[0]
        );
        let mean_line = text
            .lines()
            .find(|l| l.starts_with("#[Mean    = "))
            .unwrap();
        let mean: f64 = mean_line["#[Mean    = ".len()..]
            .split(',')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!((mean - 500.5).abs() < 1.0, "{mean_line}");
        assert!(mean_line.contains(", StdDeviation   = "));
        assert!(text.contains("Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    fn summary() -> Summary {
        Summary {
            target: "127.0.0.1:9".into(),
            mode: "open",
            offered_pps: Some(1000.0),
            outstanding: None,
            flows: 4,
            threads: 1,
            payload: 64,
            expect: "echo".into(),
            expect_none: false,
            duration_s: 2.0,
            warmup_s: 0.0,
            sent: 2000,
            received: 1990,
            lost: 10,
            mismatched: 0,
            duplicates: 0,
            late: 0,
            send_errors: 0,
            unexpected: 0,
            latency: Latency::from_histogram(&histogram()),
        }
    }

    #[test]
    fn json_has_the_contract_keys() {
        let json = summary().to_json();
        for key in [
            "\"target\":\"127.0.0.1:9\"",
            "\"mode\":\"open\"",
            "\"flows\":4",
            "\"threads\":1",
            "\"payload\":64",
            "\"duration_s\":2",
            "\"offered_pps\":1000",
            "\"sent\":2000",
            "\"sent_pps\":1000",
            "\"received\":1990",
            "\"received_pps\":995",
            "\"lost\":10",
            "\"loss_ratio\":0.005",
            "\"mismatched\":0",
            "\"duplicates\":0",
            "\"late\":0",
            "\"latency_us\":{\"p50\":500.",
            "\"p99_99\":",
            "\"mean\":500.",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
        let mut empty = summary();
        empty.latency = None;
        assert!(empty.to_json().contains("\"latency_us\":null"));
    }

    #[test]
    fn text_says_plainly_when_nothing_came_back() {
        let mut s = summary();
        assert!(s.to_text().contains("p99.99"));
        s.received = 0;
        s.lost = 2000;
        s.latency = None;
        let text = s.to_text();
        assert!(text.contains("no replies received from 127.0.0.1:9"));
        assert!(!text.contains("p99.99"));
        s.expect_none = true;
        assert!(!s.to_text().contains("received"));
        assert_eq!(json_number(0.1234), "0.123");
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\u000a\"");
    }
}
