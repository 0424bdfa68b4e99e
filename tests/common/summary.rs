//! The summary block `udpd serve` prints at exit (docs/SERVE_OUTPUT.md), parsed into counters, with the
//! accounting identity read generically so that new drop reasons join it without test changes.

use std::collections::BTreeMap;

/// The counters every `worker N:` and the `total:` line carry (docs/SERVE_OUTPUT.md); newer ones
/// (`loop_guard`, `rate_limited`, ...) may follow them.
pub const COUNTER_KEYS: [&str; 13] = [
    "rx",
    "tx",
    "rx_bytes",
    "tx_bytes",
    "truncated",
    "no_reply",
    "tx_backpressure",
    "tx_error",
    "unsent_at_exit",
    "kernel_rx_overflow",
    "gso_disabled",
    "gro_trains",
    "gso_trains",
];

/// The terms the accounting identity has always had; it may gain more.
pub const ACCOUNTING_TERMS: [&str; 6] = [
    "tx",
    "truncated",
    "no_reply",
    "tx_backpressure",
    "tx_error",
    "unsent_at_exit",
];

/// The parsed summary block printed at exit.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `== summary: ... ==`
    pub header: String,
    /// `worker N:` counters, indexed by N.
    pub workers: Vec<BTreeMap<String, u64>>,
    /// `total:` counters.
    pub total: BTreeMap<String, u64>,
    /// `latency_us:` values (mean is fractional).
    pub latency_us: BTreeMap<String, f64>,
    /// `batches:` values.
    pub batches: BTreeMap<String, f64>,
    /// The `accounting:` line, and its `key=N` terms.
    pub accounting_line: String,
    pub accounting: BTreeMap<String, u64>,
    /// The identity's left side (`rx`) and right-side terms in order.
    pub accounting_lhs: (String, u64),
    pub accounting_rhs: Vec<(String, u64)>,
    /// Whether the accounting line ends in `(holds)`.
    pub holds: bool,
    /// `kernel:` terms: rx, kernel_rx_overflow.
    pub kernel: BTreeMap<String, u64>,
    /// Everything the daemon printed, for failure messages.
    pub stdout: String,
    pub stderr: String,
}

impl Summary {
    /// Parses the summary block out of a daemon's whole stdout; panics, quoting it, when a line is missing.
    pub fn parse(stdout: &str, stderr: &str) -> Summary {
        let mut summary = Summary {
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            ..Summary::default()
        };
        let start = stdout
            .lines()
            .position(|line| line.starts_with("== summary:"))
            .unwrap_or_else(|| {
                panic!("no `== summary:` line in stdout:\n{stdout}\nstderr:\n{stderr}")
            });
        let mut saw = (false, false, false, false, false);
        for line in stdout.lines().skip(start) {
            if line.starts_with("== summary:") {
                summary.header = line.to_string();
            } else if let Some(rest) = line.strip_prefix("worker ") {
                let (index, counters) = rest
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad worker line {line:?}"));
                let index: usize = index
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("bad worker index in {line:?}"));
                assert_eq!(
                    index,
                    summary.workers.len(),
                    "worker lines out of order in:\n{stdout}"
                );
                let counters = parse_u64_terms(counters);
                check_counter_keys(&counters, line);
                summary.workers.push(counters);
            } else if let Some(rest) = line.strip_prefix("total:") {
                summary.total = parse_u64_terms(rest);
                check_counter_keys(&summary.total, line);
                saw.0 = true;
            } else if let Some(rest) = line.strip_prefix("latency_us:") {
                summary.latency_us = parse_f64_terms(rest);
                saw.1 = true;
            } else if let Some(rest) = line.strip_prefix("batches:") {
                summary.batches = parse_f64_terms(rest);
                saw.2 = true;
            } else if let Some(rest) = line.strip_prefix("accounting:") {
                summary.accounting_line = line.to_string();
                summary.accounting = parse_u64_terms(rest);
                let mut terms = ordered_u64_terms(rest).into_iter();
                summary.accounting_lhs = terms
                    .next()
                    .unwrap_or_else(|| panic!("accounting line has no terms: {line:?}"));
                summary.accounting_rhs = terms.collect();
                let end = line.trim_end();
                assert!(
                    end.ends_with("(holds)") || end.ends_with("(VIOLATED)"),
                    "accounting line must end in (holds) or (VIOLATED): {line:?}"
                );
                summary.holds = end.ends_with("(holds)");
                saw.3 = true;
            } else if let Some(rest) = line.strip_prefix("kernel:") {
                summary.kernel = parse_u64_terms(rest);
                saw.4 = true;
            }
        }
        assert!(
            saw == (true, true, true, true, true),
            "summary lacks one of total/latency_us/batches/accounting/kernel lines:\n{stdout}"
        );
        assert!(
            !summary.workers.is_empty(),
            "summary has no worker lines:\n{stdout}"
        );
        summary
    }

    /// A `total:` counter; panics, quoting stdout, when absent.
    pub fn total(&self, key: &str) -> u64 {
        *self
            .total
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in total line:\n{}", self.stdout))
    }

    /// Asserts that the `total:` counter `key` is `expected`, quoting stdout when it is not.
    pub fn assert_total(&self, key: &str, expected: u64) {
        assert_eq!(self.total(key), expected, "total {key}:\n{}", self.stdout);
    }

    /// [`Summary::assert_total`] that also says why the count must be what it is.
    pub fn assert_total_why(&self, key: &str, expected: u64, why: &str) {
        assert_eq!(
            self.total(key),
            expected,
            "total {key}: {why}:\n{}",
            self.stdout
        );
    }

    /// Asserts that the `total:` counter `key` is at least `least`, quoting stdout when it is not.
    pub fn assert_total_at_least(&self, key: &str, least: u64) {
        self.assert_total_at_least_why(key, least, "too few");
    }

    /// [`Summary::assert_total_at_least`] that also says why the count must reach `least`.
    pub fn assert_total_at_least_why(&self, key: &str, least: u64, why: &str) {
        let total = self.total(key);
        assert!(
            total >= least,
            "total {key} is {total}, under {least}: {why}:\n{}",
            self.stdout
        );
    }

    /// A `worker N:` counter.
    pub fn worker(&self, index: usize, key: &str) -> u64 {
        *self.workers[index]
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in worker {index} line:\n{}", self.stdout))
    }

    /// Sum of the terms the accounting line adds up to `rx`, taken from the `total:` line.
    pub fn accounted(&self) -> u64 {
        self.accounting_rhs
            .iter()
            .map(|(key, _)| self.total(key))
            .sum()
    }

    /// Asserts the accounting line says `(holds)`, that its identity `rx = a + b + ...` (whatever terms
    /// it names, at least the classic six) holds, and that each term equals the `total:` counter.
    pub fn assert_accounting_holds(&self) {
        assert!(
            self.holds,
            "accounting must hold: {:?}\n{}",
            self.accounting_line, self.stdout
        );
        assert_eq!(
            self.accounting_lhs.0, "rx",
            "the identity's left side is rx: {:?}",
            self.accounting_line
        );
        for key in ACCOUNTING_TERMS {
            assert!(
                self.accounting_rhs.iter().any(|(term, _)| term == key),
                "the accounting identity must name {key}: {:?}",
                self.accounting_line
            );
        }
        let rhs: u64 = self.accounting_rhs.iter().map(|(_, n)| n).sum();
        assert_eq!(
            self.accounting_lhs.1, rhs,
            "the accounting line's own numbers must add up: {:?}",
            self.accounting_line
        );
        assert_eq!(
            self.total("rx"),
            self.accounted(),
            "total rx must equal the sum of the accounting terms on the total line:\n{}",
            self.stdout
        );
        for (key, value) in std::iter::once(&self.accounting_lhs).chain(&self.accounting_rhs) {
            assert_eq!(
                *value,
                self.total(key),
                "accounting line term {key} must match the total line:\n{}",
                self.stdout
            );
        }
    }
}

fn check_counter_keys(counters: &BTreeMap<String, u64>, line: &str) {
    for key in COUNTER_KEYS {
        assert!(
            counters.contains_key(key),
            "counter {key} missing from {line:?}"
        );
    }
}

/// `key=N` terms of a line; other tokens (`=`, `+`, `(holds)`) are skipped.
pub fn parse_u64_terms(text: &str) -> BTreeMap<String, u64> {
    ordered_u64_terms(text).into_iter().collect()
}

/// `key=N` terms of a line in the order they appear.
pub fn ordered_u64_terms(text: &str) -> Vec<(String, u64)> {
    text.split_whitespace()
        .filter_map(|token| {
            let (key, value) = token.split_once('=')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `key=N` or `key=N.N` terms of a line.
pub fn parse_f64_terms(text: &str) -> BTreeMap<String, f64> {
    text.split_whitespace()
        .filter_map(|token| {
            let (key, value) = token.split_once('=')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}
