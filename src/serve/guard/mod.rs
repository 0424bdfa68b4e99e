//! The guard stage: per received buffer, before the handler, decides how many of its datagrams are
//! answered — loop guard, then ACL, then per-source rate limit — and, per reply, the amplification cap.
//!
//! Every source address may be forged; the guard is what keeps udpd from being a reflector or one end of
//! an echo loop. One [`Guard`] per worker; all its memory is allocated in [`Guard::new`] and never grows,
//! and [`Guard::admit`] allocates nothing, locks nothing and makes no syscall.
//!
//! How the worker uses it, per batch:
//! 1. read the clock once, if [`Guard::reads_the_clock`] (only the rate limiter does; any tick will do
//!    otherwise): `let now = Tick::from_elapsed(origin.elapsed())`;
//! 2. per received buffer from `peer` holding `n` datagrams (`Received::count()`):
//!    `let verdict = guard.admit(peer, n, now)`; answer the first `verdict.admitted` datagrams, drop the
//!    remaining `verdict.refused` and count them under `verdict.reason`; count `verdict.dry_run_refused`
//!    (already among the admitted) as "rate limited, dry run";
//! 3. per reply, unless `!guard.amplification_enabled()` or the handler echoes: send only if
//!    `guard.reply_within_cap(request_len, reply_len, ipv6)`.
//!
//! Rules, in the order they are checked (the first that refuses decides, and later rules do not run:
//! a refused source spends no rate-limit tokens):
//! 1. **Loop guard** (`loop_guard`): source port 0, our own listening port (another udpd, or our own
//!    address and port), any port of `loop_guard_ports`; source addresses no real sender has
//!    (0.0.0.0, ::, multicast, 255.255.255.255, and their IPv4-mapped forms). [`Refusal::LoopGuard`].
//! 2. **ACL** (`allow`, `deny`): longest prefix wins, deny wins ties, no match allows unless the allow
//!    list is non-empty (see [`acl`]). [`Refusal::AclDenied`].
//! 3. **Rate limit** (`limit`): a token bucket per source prefix (see [`limiter`]); a buffer of `n`
//!    datagrams takes `n` tokens and is admitted in part when fewer remain. [`Refusal::RateLimited`].
//!    With `limit_dry_run` nothing is refused: the would-be refusals are reported in
//!    [`Admission::dry_run_refused`] and admitted.

pub mod acl;
mod key;
pub mod limiter;
pub mod loop_guard;

use std::net::SocketAddr;
use std::time::Duration;

pub use key::GuardKey;

use crate::config::guard::{canonical, GuardConfig};
use crate::sys::limits::{IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD};
use acl::Acl;
use limiter::Limiter;
use loop_guard::LoopPorts;

/// Coarse time for the guard: milliseconds from any fixed, worker-local origin (read once per batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(pub u64);

impl Tick {
    /// The tick `elapsed` after the origin (e.g. `origin.elapsed()` of a worker's start `Instant`).
    #[inline]
    pub fn from_elapsed(elapsed: Duration) -> Self {
        Tick(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Why datagrams were not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The source port or address is one that must never be answered (see the module docs).
    LoopGuard,
    /// An ACL denied the source.
    AclDenied,
    /// The source's token bucket was empty.
    RateLimited,
}

/// The guard's verdict on one received buffer.
///
/// Always `admitted + refused == datagrams`: the worker answers the first `admitted` datagrams of the
/// buffer and drops the other `refused`, whatever the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Datagrams to answer (the first ones of the buffer).
    pub admitted: u32,
    /// Datagrams to drop.
    pub refused: u32,
    /// Why the `refused` ones are dropped; `None` exactly when `refused == 0`.
    pub reason: Option<Refusal>,
    /// Dry run only (`limit_dry_run`): datagrams the rate limiter would have refused but that are
    /// admitted — counted within `admitted`, to be counted apart and answered. Always 0 otherwise.
    pub dry_run_refused: u32,
}

impl Admission {
    /// Every datagram admitted.
    #[inline]
    pub fn all(datagrams: u32) -> Self {
        Admission {
            admitted: datagrams,
            refused: 0,
            reason: None,
            dry_run_refused: 0,
        }
    }

    /// Every datagram refused, for `reason`.
    #[inline]
    pub fn none(datagrams: u32, reason: Refusal) -> Self {
        Admission {
            admitted: 0,
            refused: datagrams,
            reason: (datagrams > 0).then_some(reason),
            dry_run_refused: 0,
        }
    }
}

/// Fixed-point scale of the amplification factor (16 fractional bits).
const FACTOR_ONE: u64 = 1 << 16;

/// One worker's guard stage.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Refused source ports (port 0, our port, the configured list); `None` when the loop guard is off.
    loop_ports: Option<LoopPorts>,
    /// `None` when there are no ACL rules (everything allowed).
    acl: Option<Acl>,
    limiter: Option<Limiter>,
    dry_run: bool,
    /// The amplification factor × [`FACTOR_ONE`], rounded down; `None` when the cap is off.
    factor: Option<u64>,
}

impl Guard {
    /// The guard for a worker listening on `local_port`, from validated settings. Never panics: a
    /// factor that is not a number counts as 0 (answer nothing that costs bytes), a table size out of
    /// range is clamped (see [`Limiter::new`]).
    pub fn new(config: &GuardConfig, local_port: u16, key: GuardKey) -> Guard {
        let loop_ports = config
            .loop_guard
            .then(|| LoopPorts::new(local_port, config.loop_guard_ports.iter().copied()));
        let acl = Acl::new(&config.allow, &config.deny);
        Guard {
            loop_ports,
            acl: (!acl.is_open()).then_some(acl),
            limiter: config
                .limit
                .map(|limit| Limiter::new(limit, config.limit_prefix, config.limit_table, key)),
            dry_run: config.limit_dry_run,
            // `as` saturates: NaN becomes 0, huge factors become u64::MAX.
            factor: config
                .max_amplification
                .map(|factor| (factor * FACTOR_ONE as f64) as u64),
        }
    }

    /// For one received buffer of `datagrams` datagrams from `peer`, at coarse time `now`: how many are
    /// admitted, and why the rest are refused (see the module docs for the rules and their order).
    #[inline]
    pub fn admit(&mut self, peer: SocketAddr, datagrams: u32, now: Tick) -> Admission {
        let ip = canonical(peer.ip());
        if let Some(ports) = &self.loop_ports {
            if ports.refuses(peer.port()) || loop_guard::impossible_source(ip) {
                return Admission::none(datagrams, Refusal::LoopGuard);
            }
        }
        if let Some(acl) = &self.acl {
            if !acl.allows(ip) {
                return Admission::none(datagrams, Refusal::AclDenied);
            }
        }
        let Some(limiter) = &mut self.limiter else {
            return Admission::all(datagrams);
        };
        let granted = limiter.take(ip, datagrams, now);
        let over = datagrams - granted;
        if over == 0 {
            Admission::all(datagrams)
        } else if self.dry_run {
            Admission {
                dry_run_refused: over,
                ..Admission::all(datagrams)
            }
        } else {
            Admission {
                admitted: granted,
                refused: over,
                reason: Some(Refusal::RateLimited),
                dry_run_refused: 0,
            }
        }
    }

    /// Amplification cap, per reply: whether a reply of `reply_len` payload bytes to a request of
    /// `request_len` payload bytes stays within the factor, counted in whole-packet bytes (payload plus
    /// IP and UDP headers: 28 for IPv4, 48 for IPv6): `reply + overhead <= factor × (request + overhead)`.
    /// Always true when the cap is off.
    #[inline]
    pub fn reply_within_cap(&self, request_len: usize, reply_len: usize, ipv6: bool) -> bool {
        let Some(factor) = self.factor else {
            return true;
        };
        let overhead = if ipv6 {
            IPV6_UDP_OVERHEAD
        } else {
            IPV4_UDP_OVERHEAD
        } as u64;
        let reply = (reply_len as u64).saturating_add(overhead);
        let request = (request_len as u64).saturating_add(overhead);
        u128::from(reply) * u128::from(FACTOR_ONE) <= u128::from(request) * u128::from(factor)
    }

    /// Whether the amplification cap is on (the worker may skip [`reply_within_cap`](Self::reply_within_cap)
    /// when it is off, or for echo-like handlers whose replies never outgrow requests).
    pub fn amplification_enabled(&self) -> bool {
        self.factor.is_some()
    }

    /// Whether [`admit`](Self::admit) admits every buffer whatever its source (no loop guard, no ACL, no
    /// limiter): the worker may skip calling it.
    pub fn admits_everything(&self) -> bool {
        self.loop_ports.is_none() && self.acl.is_none() && self.limiter.is_none()
    }

    /// Whether [`admit`](Self::admit) looks at its `now` (the rate limiter refills by it): without it
    /// the worker need not read the clock for the guard.
    pub fn reads_the_clock(&self) -> bool {
        self.limiter.is_some()
    }

    /// Buckets in the rate limiter's table (0 when the limiter is off); fixed for the guard's life.
    pub fn limiter_capacity(&self) -> usize {
        self.limiter.as_ref().map_or(0, Limiter::capacity)
    }

    /// Bytes the rate limiter's table takes (0 when the limiter is off).
    pub fn limiter_bytes(&self) -> usize {
        self.limiter.as_ref().map_or(0, Limiter::table_bytes)
    }
}

#[cfg(test)]
mod tests;
