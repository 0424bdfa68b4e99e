//! A load thread's clock and phases: warm-up (sending, not counting), measuring (sending and counting),
//! then the drain (waiting for the last replies), each ending at an instant fixed when the thread starts.

use std::time::Instant;

/// Nanoseconds since one instant shared by every thread (what requests carry as their send time).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new(origin: Instant) -> Clock {
        Clock { origin }
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// Where a thread stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Sending; replies are not counted.
    WarmingUp,
    /// Sending and counting, since `since`.
    Measuring { since: u64 },
    /// No more sending; counting replies until `until` (or until none is awaited).
    Draining { until: u64, measured_ns: u64 },
}

/// The phases of one thread's run, moved on by [`Phase::advance`] at the top of every loop turn.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    stage: Stage,
    warmup_end: u64,
    send_end: u64,
    /// How long the drain waits for replies (0 when none is expected).
    grace_ns: u64,
    /// How much longer past the drain the thread keeps offering the kernel a burst it will not take.
    give_up_ns: u64,
}

impl Phase {
    /// Phases starting at `start`: `warmup_ns` of warm-up, `duration_ns` measured, then a drain of
    /// `grace_ns`, and `give_up_ns` more for a last burst the kernel would not take.
    pub fn new(
        start: u64,
        warmup_ns: u64,
        duration_ns: u64,
        grace_ns: u64,
        give_up_ns: u64,
    ) -> Phase {
        let warmup_end = start + warmup_ns;
        Phase {
            stage: if warmup_ns == 0 {
                Stage::Measuring { since: start }
            } else {
                Stage::WarmingUp
            },
            warmup_end,
            send_end: warmup_end + duration_ns,
            grace_ns,
            give_up_ns,
        }
    }

    /// Moves on to `now`; true when measuring starts at this call (the warm-up just ended).
    #[inline]
    pub fn advance(&mut self, now: u64) -> bool {
        let mut started = false;
        if self.stage == Stage::WarmingUp && now >= self.warmup_end {
            self.stage = Stage::Measuring { since: now };
            started = true;
        }
        if let Stage::Measuring { since } = self.stage {
            if now >= self.send_end {
                self.stage = Stage::Draining {
                    until: now + self.grace_ns,
                    measured_ns: now.saturating_sub(since),
                };
            }
        }
        started
    }

    /// Whether replies (and sends) count: from the end of the warm-up on, the drain included.
    #[inline]
    pub fn is_measuring(&self) -> bool {
        self.stage != Stage::WarmingUp
    }

    /// Whether new requests go out (warm-up and measuring).
    #[inline]
    pub fn is_sending(&self) -> bool {
        !matches!(self.stage, Stage::Draining { .. })
    }

    /// Whether the run is over at `now`: draining, with the outbox empty and nothing `waiting` for a reply
    /// (or the grace spent), or past the grace and the give-up time whatever is left.
    #[inline]
    pub fn is_over(&self, now: u64, outbox_empty: bool, waiting: u64) -> bool {
        let Stage::Draining { until, .. } = self.stage else {
            return false;
        };
        (outbox_empty && (waiting == 0 || now >= until))
            || now >= until.saturating_add(self.give_up_ns)
    }

    /// How long the measured send phase lasted (0 until the drain starts).
    pub fn measured_ns(&self) -> u64 {
        match self.stage {
            Stage::Draining { measured_ns, .. } => measured_ns,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_measuring_then_drain() {
        let mut phase = Phase::new(100, 50, 1_000, 200, 300);
        assert!(!phase.is_measuring() && phase.is_sending());
        assert!(!phase.advance(149));
        assert!(phase.advance(160), "measuring starts once");
        assert!(!phase.advance(170));
        assert!(phase.is_measuring() && phase.is_sending());
        assert!(!phase.is_over(170, true, 0), "still sending");
        assert_eq!(phase.measured_ns(), 0);
        phase.advance(1_150);
        assert!(!phase.is_sending() && phase.is_measuring());
        assert_eq!(phase.measured_ns(), 1_150 - 160);
        assert!(phase.is_over(1_150, true, 0), "nothing awaited");
        assert!(!phase.is_over(1_150, true, 3), "replies still awaited");
        assert!(phase.is_over(1_350, true, 3), "grace spent");
        assert!(!phase.is_over(1_350, false, 0), "a burst is still queued");
        assert!(
            phase.is_over(1_650, false, 3),
            "give up on the queued burst"
        );
    }

    #[test]
    fn no_warmup_measures_from_the_start() {
        let mut phase = Phase::new(10, 0, 100, 0, 5);
        assert!(phase.is_measuring());
        assert!(!phase.advance(10));
        phase.advance(110);
        assert_eq!(phase.measured_ns(), 100);
        assert!(phase.is_over(110, true, 7), "no grace: done at once");
        let mut late = Phase::new(0, 10, 10, 0, 0);
        assert!(
            late.advance(500),
            "warm-up and measuring both end in one late turn"
        );
        assert_eq!(late.measured_ns(), 0);
        assert!(!late.is_sending());
    }
}
