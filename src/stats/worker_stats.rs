//! One worker's counts and latency/batch histograms for one interval, and the shared latency histogram
//! shape.

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
    pub batch_sizes: Histogram<u64>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            counters: Counters::default(),
            latency_ns: latency_histogram(),
            latency_stamped: 0,
            batch_sizes: Histogram::new_with_bounds(1, 1 << 20, 2).expect("static bounds"),
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

    #[inline]
    pub fn record_batch(&mut self, datagrams: u64) {
        self.batch_sizes.saturating_record(datagrams.max(1));
    }

    pub fn merge(&mut self, other: &WorkerStats) {
        self.counters.add(&other.counters);
        let _ = self.latency_ns.add(&other.latency_ns);
        self.latency_stamped += other.latency_stamped;
        let _ = self.batch_sizes.add(&other.batch_sizes);
    }

    /// Nothing was counted (so nothing recorded either: every histogram entry comes with a count).
    pub fn is_empty(&self) -> bool {
        self.counters == Counters::default()
    }

    pub fn reset(&mut self) {
        self.counters = Counters::default();
        self.latency_ns.reset();
        self.latency_stamped = 0;
        self.batch_sizes.reset();
    }
}
