//! The per-source rate limiter: one token bucket per source prefix, in a fixed table of 4-way sets keyed
//! by a secret hash, modelled on DNS response rate limiting (BIND RRL, Knot `mod-rrl`).
//!
//! Each bucket is one number, its *theoretical arrival time* (GCRA): the time at which it will be full
//! again. With `rate` tokens per second and room for `burst`, a token is worth `T = 1/rate` s and a full
//! bucket spans `burst × T`; at time `now` the bucket holds `(now + burst·T − max(tat, now)) / T` tokens,
//! and taking `k` moves `tat` to `max(tat, now) + k·T`. Time is counted in units of `1/rate` ms, so a tick
//! of 1 ms is exactly `rate` units and a token exactly 1,000: integers only, exact, no drift.
//!
//! Memory is fixed at start: `table` entries of 16 bytes (a 64-bit fingerprint and the `tat`), four to a
//! 64-byte cache line. A source's set comes from the high bits of its keyed hash, its fingerprint is the
//! whole hash. A source that is not in its set replaces the way whose bucket is fullest now (the lowest
//! `tat`): a full bucket is the same as a fresh one, so replacing it forgets nothing, and a flood of new
//! (forged) sources — each of which spends tokens and so sits *less* full than a limited source —
//! evicts its own kind first and cannot hand a limited source a fresh burst for free.

use std::net::IpAddr;

use super::{GuardKey, Tick};
use crate::config::guard::RateLimit;
use crate::config::guard::{mask_u128, mask_u32};

/// Ways per set: one 64-byte cache line of 16-byte entries.
pub const WAYS: usize = 4;

/// Largest table the limiter builds (entries per worker, 64 MiB); larger requests are clamped.
pub const MAX_TABLE: usize = 1 << 22;

/// Units of time in one token (`1/rate` s = 1,000 × `1/rate` ms).
const TOKEN: u64 = 1_000;

/// Elapsed units after which the table is rebased so that no sum can overflow: far below `u64::MAX`
/// even with the largest burst added (years of uptime at the highest rate).
const REBASE_UNITS: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Entry {
    fingerprint: u64,
    /// When the bucket is full again, in units since `epoch`; 0 (or any time past) means full.
    tat: u64,
}

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Set([Entry; WAYS]);

/// One worker's limiter.
#[derive(Debug, Clone)]
pub struct Limiter {
    sets: Box<[Set]>,
    /// Right shift that turns a hash into a set index (its high bits).
    set_shift: u32,
    key: GuardKey,
    /// Units per millisecond (the rate in tokens per second).
    rate: u64,
    /// A full bucket's span in units (`burst × TOKEN`).
    span: u64,
    v4_mask: u32,
    v6_mask: u128,
    /// The tick that units count from; moved forward when they grow large.
    epoch: u64,
}

impl Limiter {
    /// A limiter of `table` buckets (rounded up to a power of two, at least one set of [`WAYS`], at
    /// most [`MAX_TABLE`]) for sources grouped by `prefix` = (IPv4, IPv6) lengths.
    pub fn new(limit: RateLimit, prefix: (u8, u8), table: usize, key: GuardKey) -> Self {
        let entries = table
            .clamp(WAYS, MAX_TABLE)
            .checked_next_power_of_two()
            .unwrap_or(MAX_TABLE)
            .min(MAX_TABLE);
        let sets = entries / WAYS;
        Limiter {
            sets: vec![Set::default(); sets].into_boxed_slice(),
            set_shift: 64 - sets.trailing_zeros(),
            key,
            rate: u64::from(limit.rate.max(1)),
            span: u64::from(limit.burst.max(1)) * TOKEN,
            v4_mask: mask_u32(prefix.0),
            v6_mask: mask_u128(prefix.1),
            epoch: 0,
        }
    }

    /// Buckets in the table (fixed for the limiter's life).
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Bytes the table takes (its entries; the struct around it is a few dozen more).
    pub fn table_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.sets)
    }

    /// Takes up to `wanted` tokens from the bucket of `ip` (canonical) at `now`; returns how many it got.
    #[inline]
    pub fn take(&mut self, ip: IpAddr, wanted: u32, now: Tick) -> u32 {
        let hash = match ip {
            IpAddr::V4(v4) => self.key.hash_v4(u32::from(v4) & self.v4_mask),
            IpAddr::V6(v6) => self.key.hash_v6(u128::from(v6) & self.v6_mask),
        };
        let now = self.units(now);
        let span = self.span;
        // `sets.len()` is a power of two: the shift alone is in range; the mask keeps that obvious.
        let index =
            (hash.checked_shr(self.set_shift).unwrap_or(0) as usize) & (self.sets.len() - 1);
        let set = &mut self.sets[index].0;
        let way = match set.iter().position(|entry| entry.fingerprint == hash) {
            Some(way) => way,
            None => {
                let way = fullest(set);
                set[way] = Entry {
                    fingerprint: hash,
                    tat: 0,
                };
                way
            }
        };
        let entry = &mut set[way];
        let start = entry.tat.max(now);
        let tokens = (now + span).saturating_sub(start) / TOKEN;
        let granted = tokens.min(u64::from(wanted));
        entry.tat = start + granted * TOKEN;
        granted as u32
    }

    /// `now` in units since the epoch; rebases the table first when that would grow too large.
    #[inline]
    fn units(&mut self, now: Tick) -> u64 {
        let elapsed = now.0.saturating_sub(self.epoch);
        match elapsed.checked_mul(self.rate) {
            Some(units) if units < REBASE_UNITS => units,
            _ => {
                self.rebase(now.0);
                0
            }
        }
    }

    /// Moves the epoch to `tick`: every bucket's `tat` shifts back by the same time (past ones to 0).
    #[cold]
    fn rebase(&mut self, tick: u64) {
        let shift = tick.saturating_sub(self.epoch).saturating_mul(self.rate);
        for entry in self.sets.iter_mut().flat_map(|set| set.0.iter_mut()) {
            entry.tat = entry.tat.saturating_sub(shift);
        }
        self.epoch = tick;
    }
}

/// The way whose bucket is fullest: the lowest `tat` (any `tat` in the past means full).
#[inline]
fn fullest(set: &[Entry; WAYS]) -> usize {
    let mut best = 0;
    for way in 1..WAYS {
        if set[way].tat < set[best].tat {
            best = way;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, burst: u32, table: usize) -> Limiter {
        Limiter::new(
            RateLimit { rate, burst },
            (32, 56),
            table,
            GuardKey::random(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_bucket_gives_its_burst_then_refills_at_the_rate() {
        let mut limiter = limiter(10, 5, 64);
        let source = ip("192.0.2.1");
        assert_eq!(limiter.take(source, 3, Tick(1_000)), 3);
        assert_eq!(limiter.take(source, 3, Tick(1_000)), 2, "partial: 2 left");
        assert_eq!(limiter.take(source, 1, Tick(1_000)), 0);
        assert_eq!(limiter.take(source, 1, Tick(1_099)), 0, "99 ms: not yet");
        assert_eq!(limiter.take(source, 5, Tick(1_100)), 1, "100 ms: one token");
        assert_eq!(
            limiter.take(source, 9, Tick(1_350)),
            2,
            "250 ms: two, half a token kept"
        );
        assert_eq!(
            limiter.take(source, 9, Tick(1_400)),
            1,
            "the half plus 50 ms"
        );
        assert_eq!(
            limiter.take(source, 9, Tick(60_000)),
            5,
            "idle: back to the burst, no more"
        );
        assert_eq!(limiter.take(source, 0, Tick(60_000)), 0);
    }

    #[test]
    fn sources_in_one_prefix_share_a_bucket_and_others_do_not() {
        let mut limiter = Limiter::new(
            RateLimit { rate: 1, burst: 2 },
            (24, 48),
            64,
            GuardKey::random(),
        );
        assert_eq!(limiter.take(ip("198.51.100.1"), 1, Tick(0)), 1);
        assert_eq!(
            limiter.take(ip("198.51.100.200"), 5, Tick(0)),
            1,
            "same /24"
        );
        assert_eq!(limiter.take(ip("198.51.101.1"), 5, Tick(0)), 2, "next /24");
        assert_eq!(limiter.take(ip("2001:db8:0:1::1"), 1, Tick(0)), 1);
        assert_eq!(
            limiter.take(ip("2001:db8:0:ff::2"), 5, Tick(0)),
            1,
            "same /48"
        );
        assert_eq!(limiter.take(ip("2001:db8:1::1"), 5, Tick(0)), 2, "next /48");
    }

    #[test]
    fn the_table_rounds_up_and_never_grows() {
        let mut limiter = limiter(5, 5, 1_000);
        assert_eq!(limiter.capacity(), 1_024);
        assert_eq!(limiter.table_bytes(), 1_024 * 16);
        for n in 0..100_000u32 {
            limiter.take(IpAddr::V4((0x0a00_0000 + n).into()), 1, Tick(u64::from(n)));
        }
        assert_eq!(limiter.capacity(), 1_024);
        assert_eq!(limiter.table_bytes(), 1_024 * 16);
        assert_eq!(self::limiter(1, 1, 0).capacity(), WAYS);
        assert_eq!(self::limiter(1, 1, usize::MAX).capacity(), MAX_TABLE);
        assert_eq!(std::mem::size_of::<Set>(), 64);
    }

    #[test]
    fn a_flood_of_forged_sources_keeps_a_limited_source_limited() {
        let mut limiter = limiter(10, 20, 256);
        let victim = ip("192.0.2.7");
        assert_eq!(
            limiter.take(victim, 100, Tick(0)),
            20,
            "the burst, then limited"
        );
        let mut granted_to_victim = 0;
        for step in 0..200_000u64 {
            let now = Tick(step / 100); // 100 forged datagrams per millisecond, 2 s in all
            let forged = IpAddr::V4((0xc633_0000 + step as u32).into());
            assert_eq!(
                limiter.take(forged, 1, now),
                1,
                "every new source has a token"
            );
            if step % 100 == 0 {
                granted_to_victim += limiter.take(victim, 1, now);
            }
        }
        // 2 s at 10/s: about 20 tokens refilled; a reset bucket would have given 20 more at once.
        assert!(granted_to_victim <= 21, "victim got {granted_to_victim}");
        assert!(granted_to_victim >= 19, "victim got {granted_to_victim}");
        assert_eq!(limiter.take(victim, 5, Tick(1_999)), 0, "still limited");
    }

    #[test]
    fn huge_and_backward_ticks_neither_overflow_nor_free_tokens() {
        let mut limiter = limiter(100_000_000, 100_000_000, 64);
        let source = ip("2001:db8::1");
        assert_eq!(limiter.take(source, u32::MAX, Tick(0)), 100_000_000);
        assert_eq!(limiter.take(source, 1, Tick(0)), 0);
        // Past the rebase point (2^62 units at 10^8 units/ms is about 4.6e10 ms).
        let late = Tick(50_000_000_000);
        assert_eq!(
            limiter.take(source, u32::MAX, late),
            100_000_000,
            "full after years"
        );
        assert_eq!(limiter.take(source, 1, late), 0);
        assert_eq!(
            limiter.take(source, 1, Tick(late.0 - 5)),
            0,
            "time going back gives nothing"
        );
        assert_eq!(limiter.take(source, 1, Tick(u64::MAX)), 1);
        assert_eq!(limiter.take(ip("10.0.0.1"), 7, Tick(u64::MAX)), 7);
    }
}
