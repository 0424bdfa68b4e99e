//! One worker's counts, latency histogram and batch sizes for one interval, and the shared latency
//! histogram shape.

use hdrhistogram::Histogram;

use crate::stats::Counters;

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
    /// Replies whose own latency was measured. Equal to the histogram's count unless latency is sampled
    /// (`--latency-sample`), where each reply measured in a sampling window stands for several.
    pub latency_stamped: u64,
    /// Datagrams per receive call.
    pub batch_sizes: BatchSizes,
}

/// Datagrams per receive call that brought any: how many calls, their mean and their largest. Three
/// counters, exact, where a histogram cost a bucket lookup per call and only gave these three back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchSizes {
    calls: u64,
    datagrams: u64,
    max: u64,
}

impl BatchSizes {
    #[inline]
    pub fn record(&mut self, datagrams: u64) {
        self.calls += 1;
        self.datagrams += datagrams;
        self.max = self.max.max(datagrams);
    }

    pub fn merge(&mut self, other: &BatchSizes) {
        self.calls += other.calls;
        self.datagrams += other.datagrams;
        self.max = self.max.max(other.max);
    }

    /// Receive calls recorded.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Mean datagrams per call (0 before the first).
    pub fn mean(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.datagrams as f64 / self.calls as f64
        }
    }

    /// The largest batch (0 before the first).
    pub fn max(&self) -> u64 {
        self.max
    }
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            counters: Counters::default(),
            latency_ns: latency_histogram(),
            latency_stamped: 0,
            batch_sizes: BatchSizes::default(),
        }
    }
}

impl WorkerStats {
    /// Records the latency of `datagrams` replies, each standing for `weight` replies (1 unless the
    /// latency is sampled).
    #[inline]
    pub fn record_latency(&mut self, latency_ns: u64, datagrams: u64, weight: u64) {
        self.latency_stamped += datagrams;
        let _ = self
            .latency_ns
            .record_n(latency_ns.clamp(1, LATENCY_MAX_NS), datagrams * weight);
    }

    /// Records one receive call that brought `datagrams` (a truncated buffer counts as at least one).
    #[inline]
    pub fn record_batch(&mut self, datagrams: u64) {
        self.batch_sizes.record(datagrams.max(1));
    }

    pub fn merge(&mut self, other: &WorkerStats) {
        self.counters.add(&other.counters);
        let _ = self.latency_ns.add(&other.latency_ns);
        self.latency_stamped += other.latency_stamped;
        self.batch_sizes.merge(&other.batch_sizes);
    }

    /// Nothing was counted (so nothing recorded either: every histogram entry comes with a count).
    pub fn is_empty(&self) -> bool {
        self.counters == Counters::default()
    }

    pub fn reset(&mut self) {
        self.counters = Counters::default();
        self.latency_ns.reset();
        self.latency_stamped = 0;
        self.batch_sizes = BatchSizes::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_exact_over_calls_and_merges() {
        let mut first = WorkerStats::default();
        assert_eq!((first.batch_sizes.calls(), first.batch_sizes.max()), (0, 0));
        assert_eq!(first.batch_sizes.mean(), 0.0);
        for datagrams in [1, 2, 64] {
            first.record_batch(datagrams);
        }
        // A receive that brought only a cut-off buffer still counts as one datagram's call.
        first.record_batch(0);
        let mut second = WorkerStats::default();
        second.record_batch(3);
        first.merge(&second);
        let batches = first.batch_sizes;
        assert_eq!(batches.calls(), 5);
        assert_eq!(batches.max(), 64);
        assert_eq!(batches.mean(), (1 + 2 + 64 + 1 + 3) as f64 / 5.0);
        first.reset();
        assert_eq!(first.batch_sizes, BatchSizes::default());
    }
}
