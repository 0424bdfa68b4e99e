//! The run's results as people and scripts read them: the text block and the JSON object.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::Value;

use super::hgrm::NS_PER_US;
use super::sources::SourceBook;

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

/// Latency percentiles over every measured request sent, in microseconds, each request that got no
/// correct reply (lost or mismatched) counted as slower than any reply: `None` where a percentile falls
/// among those. A server that drops the datagrams of a burst answers fewer requests late, so the
/// percentiles of its replies alone look better than its service was; these do not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyOfSent {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p99_9: Option<f64>,
    pub p99_99: Option<f64>,
    /// Requests without a correct reply, counted at the top.
    pub unanswered: u64,
}

impl LatencyOfSent {
    /// The percentiles over `sent` requests of which `hist` (nanoseconds) holds the answered ones, or
    /// `None` when nothing was answered.
    pub fn new(hist: &Histogram<u64>, sent: u64) -> Option<LatencyOfSent> {
        let answered = hist.len();
        if answered == 0 {
            return None;
        }
        let sent = sent.max(answered);
        let at = |q: f64| {
            let rank = (q * sent as f64).ceil().max(1.0) as u64;
            (rank <= answered)
                .then(|| hist.value_at_quantile(rank as f64 / answered as f64) as f64 / NS_PER_US)
        };
        Some(LatencyOfSent {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            p99_99: at(0.9999),
            unanswered: sent - answered,
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
    /// The same percentiles over every request sent (see [`LatencyOfSent`]).
    pub latency_of_sent: Option<LatencyOfSent>,
    /// `--check-source`: replies per source address and the flows' stickiness.
    pub sources: Option<SourceBook>,
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
        if let Some(sources) = &self.sources {
            out.push_str(&sources.to_text());
        }
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
                if let Some(all) = self.latency_of_sent.filter(|all| all.unanswered > 0) {
                    let cell = |value: Option<f64>| {
                        value.map_or("unanswered".to_string(), |v| format!("{v:.1}"))
                    };
                    let _ = writeln!(
                        out,
                        "latency over every request sent (us), the {} unanswered counted as slowest",
                        all.unanswered
                    );
                    let _ = writeln!(
                        out,
                        "  {:>10} {:>10} {:>10} {:>10} {:>10}",
                        cell(all.p50),
                        cell(all.p90),
                        cell(all.p99),
                        cell(all.p99_9),
                        cell(all.p99_99)
                    );
                }
            }
        }
        out
    }

    /// One JSON object on one line (keys are a contract with the scripts; see the module docs of `load`).
    pub fn to_json(&self) -> String {
        let text = |value: Value| value.to_string();
        let latency = match &self.latency {
            None => text(Value::Null),
            Some(l) => object(&[
                ("p50", text(number(l.p50))),
                ("p90", text(number(l.p90))),
                ("p99", text(number(l.p99))),
                ("p99_9", text(number(l.p99_9))),
                ("p99_99", text(number(l.p99_99))),
                ("max", text(number(l.max))),
                ("mean", text(number(l.mean))),
            ]),
        };
        let optional = |value: Option<f64>| text(value.map_or(Value::Null, number));
        let latency_of_sent = match &self.latency_of_sent {
            None => text(Value::Null),
            Some(l) => object(&[
                ("p50", optional(l.p50)),
                ("p90", optional(l.p90)),
                ("p99", optional(l.p99)),
                ("p99_9", optional(l.p99_9)),
                ("p99_99", optional(l.p99_99)),
                ("unanswered", text(l.unanswered.into())),
            ]),
        };
        let mut json = object(&[
            ("target", text(self.target.as_str().into())),
            ("mode", text(self.mode.into())),
            ("flows", text(self.flows.into())),
            ("threads", text(self.threads.into())),
            ("payload", text(self.payload.into())),
            ("expect", text(self.expect.as_str().into())),
            ("duration_s", text(number(self.duration_s))),
            (
                "offered_pps",
                text(self.offered_pps.map_or(Value::Null, number)),
            ),
            ("sent", text(self.sent.into())),
            ("sent_pps", text(number(self.sent_pps()))),
            ("received", text(self.received.into())),
            ("received_pps", text(number(self.received_pps()))),
            ("lost", text(self.lost.into())),
            ("loss_ratio", text(number(self.loss_ratio()))),
            ("mismatched", text(self.mismatched.into())),
            ("duplicates", text(self.duplicates.into())),
            ("late", text(self.late.into())),
            ("send_errors", text(self.send_errors.into())),
            ("latency_us", latency),
            ("latency_of_sent_us", latency_of_sent),
            (
                "reply_sources",
                self.sources
                    .as_ref()
                    .map_or_else(|| text(Value::Null), SourceBook::to_json),
            ),
        ]);
        json.push('\n');
        json
    }
}

/// A JSON object from `(key, JSON text)` pairs, keys in the order given (a `serde_json::Map` would sort
/// them); serde_json writes every key and value.
fn object(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*key).to_string());
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// A number rounded to three decimals, whole ones written without a fraction (`2`, not `2.0`); JSON has
/// no NaN or infinity, so those become null.
fn number(value: f64) -> Value {
    if !value.is_finite() {
        return Value::Null;
    }
    let rounded = (value * 1000.0).round() / 1000.0;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        Value::from(rounded as i64)
    } else {
        Value::from(rounded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::hgrm::tests::histogram;

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
            latency_of_sent: LatencyOfSent::new(&histogram(), 2000),
            sources: None,
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
        assert!(empty.to_json().contains("\"reply_sources\":null"));
        empty.sources = Some(SourceBook::new());
        let parsed: Value = serde_json::from_str(&empty.to_json()).unwrap();
        assert_eq!(parsed["reply_sources"]["flows_answered"], 0);
    }

    #[test]
    fn unanswered_requests_count_as_slower_than_every_reply() {
        // 1,000 replies of 1..=1000 us.
        let hist = histogram();
        let all_answered = LatencyOfSent::new(&hist, 1000).unwrap();
        let replies = Latency::from_histogram(&hist).unwrap();
        assert_eq!(all_answered.unanswered, 0);
        assert_eq!(all_answered.p99, Some(replies.p99));
        assert_eq!(all_answered.p50, Some(replies.p50));
        // 10 of 1,010 unanswered (1 %): p99 moves up to the slowest reply, p99.9 falls among the lost.
        let some_lost = LatencyOfSent::new(&hist, 1010).unwrap();
        assert_eq!(some_lost.unanswered, 10);
        assert!(some_lost.p99.unwrap() > replies.p99);
        assert!((some_lost.p99.unwrap() - replies.max).abs() < 1.0);
        assert_eq!(some_lost.p99_9, None);
        assert!(LatencyOfSent::new(&crate::stats::latency_histogram(), 10).is_none());

        let mut s = summary();
        s.latency_of_sent = Some(some_lost);
        let text = s.to_text();
        assert!(
            text.contains("the 10 unanswered counted as slowest"),
            "{text}"
        );
        assert!(text.contains("unanswered"));
        let parsed: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(parsed["latency_of_sent_us"]["unanswered"], 10);
        assert_eq!(parsed["latency_of_sent_us"]["p99_9"], Value::Null);
        s.latency_of_sent = LatencyOfSent::new(&hist, 1000);
        assert!(
            !s.to_text().contains("every request sent"),
            "no second row without losses"
        );
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
        assert_eq!(number(0.1234).to_string(), "0.123");
        assert_eq!(number(f64::NAN), Value::Null);
        s.target = "a\"b\n".into();
        let parsed: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(parsed["target"], "a\"b\n");
    }
}
