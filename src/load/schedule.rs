//! The open-loop send schedule: when each datagram should leave, and how many are due at a given instant.

/// A fixed-rate schedule starting at `start_ns`: datagram `k` (counted from 0 over one thread) is due at
/// `start_ns + k / rate`. The sender asks [`Schedule::due`] how many should have left by now and sends the
/// backlog at once when it fell behind; latency is still measured from [`Schedule::intended`], so a stall
/// shows up as latency instead of silently stretching the schedule (coordinated omission, as wrk2 avoids it).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start_ns: u64,
    /// Picoseconds between two datagrams (integer, so `due` and `intended` agree exactly); `None` means
    /// as fast as possible.
    period_ps: Option<u128>,
}

impl Schedule {
    /// A schedule of `rate` datagrams per second from `start_ns`; a rate of 0 means unlimited.
    pub fn new(start_ns: u64, rate: f64) -> Schedule {
        let period_ps =
            (rate > 0.0 && rate.is_finite()).then(|| ((1e12 / rate).round() as u128).max(1));
        Schedule {
            start_ns,
            period_ps,
        }
    }

    /// True when the schedule imposes no pace (`--rate 0`).
    pub fn is_unlimited(&self) -> bool {
        self.period_ps.is_none()
    }

    /// How many datagrams in all should have been sent by `now_ns` (datagram 0 is due at the start);
    /// `u64::MAX` when unlimited.
    pub fn due(&self, now_ns: u64) -> u64 {
        let Some(period) = self.period_ps else {
            return u64::MAX;
        };
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed_ps = u128::from(now_ns - self.start_ns) * 1000;
        u64::try_from(elapsed_ps / period + 1).unwrap_or(u64::MAX)
    }

    /// When datagram `k` should leave; for an unlimited schedule the caller uses the actual send time instead.
    pub fn intended(&self, k: u64) -> u64 {
        match self.period_ps {
            // Rounded up, so that at its intended instant a datagram is already due.
            Some(period) => {
                let offset = (u128::from(k) * period).div_ceil(1000);
                self.start_ns
                    .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
            }
            None => self.start_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn due_counts_whole_periods_from_the_start() {
        let schedule = Schedule::new(1_000, 1_000_000.0); // one per microsecond
        assert_eq!(schedule.due(0), 0);
        assert_eq!(schedule.due(999), 0);
        assert_eq!(schedule.due(1_000), 1);
        assert_eq!(schedule.due(1_999), 1);
        assert_eq!(schedule.due(2_000), 2);
        assert_eq!(schedule.due(1_000 + 1_000_000_000), 1_000_001);
    }

    #[test]
    fn intended_times_are_evenly_spaced_and_consistent_with_due() {
        let schedule = Schedule::new(5_000, 3_000.0);
        let mut previous = 0;
        for k in 0..10_000u64 {
            let at = schedule.intended(k);
            assert!(at >= previous);
            previous = at;
            // At its own intended time a datagram is due, and not before.
            assert!(schedule.due(at) > k, "k={k}");
            if at > 5_000 {
                assert!(schedule.due(at - 1) <= k, "k={k}");
            }
        }
        // One second holds `rate` periods (to within the picosecond rounding of the period).
        let one_second = schedule.intended(3_000) - 5_000;
        assert!(
            (999_999_000..=1_000_001_000).contains(&one_second),
            "{one_second}"
        );
    }

    #[test]
    fn a_late_sender_sees_the_whole_backlog_with_original_times() {
        let schedule = Schedule::new(0, 1_000.0);
        // The sender wakes 50 ms late: 51 datagrams are due, the first of them 50 ms ago.
        assert_eq!(schedule.due(50_000_000), 51);
        assert_eq!(schedule.intended(0), 0);
        assert_eq!(schedule.intended(50), 50_000_000);
        assert_eq!(schedule.due(50_999_999), 51);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let schedule = Schedule::new(7, 0.0);
        assert!(schedule.is_unlimited());
        assert_eq!(schedule.due(0), u64::MAX);
        assert!(!Schedule::new(7, 1.0).is_unlimited());
    }
}
