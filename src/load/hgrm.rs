//! The latency distribution as HdrHistogram's `.hgrm` percentile text (`--hgrm FILE`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Nanoseconds per microsecond: histograms hold nanoseconds, every report speaks microseconds.
pub const NS_PER_US: f64 = 1_000.0;

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
pub(super) mod tests {
    use super::*;

    /// 1,000 latencies from 1 us to 1 ms, one each: the histogram the load report tests share.
    pub fn histogram() -> Histogram<u64> {
        let mut hist = crate::stats::latency_histogram();
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
}
