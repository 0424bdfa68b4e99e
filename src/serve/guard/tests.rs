//! Tests of the guard stage as the worker sees it: every rule, their order, and the edges.

use super::*;
use crate::config::guard::{Cidr, RateLimit};

const OUR_PORT: u16 = 4_000;

fn guard(config: GuardConfig) -> Guard {
    Guard::new(&config, OUR_PORT, GuardKey::random())
}

fn open() -> GuardConfig {
    GuardConfig {
        loop_guard: false,
        max_amplification: None,
        ..GuardConfig::default()
    }
}

fn limited(rate: u32, burst: u32) -> GuardConfig {
    GuardConfig {
        limit: Some(RateLimit { rate, burst }),
        ..GuardConfig::default()
    }
}

fn peer(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|text| text.parse().unwrap()).collect()
}

fn refused(reason: Refusal, datagrams: u32) -> Admission {
    Admission::none(datagrams, reason)
}

/// Admits each `(source, datagrams, at tick, expected verdict)` in turn, naming the step that differs.
fn assert_admissions(guard: &mut Guard, steps: &[(&str, u32, u64, Admission)]) {
    for (step, &(source, datagrams, at, expected)) in steps.iter().enumerate() {
        assert_eq!(
            guard.admit(peer(source), datagrams, Tick(at)),
            expected,
            "step {step}: {datagrams} from {source} at tick {at}"
        );
    }
}

/// `datagrams` from each of `sources` at tick 0 get the `expected` verdict.
fn assert_each_source(guard: &mut Guard, sources: &[&str], datagrams: u32, expected: Admission) {
    for source in sources {
        assert_eq!(
            guard.admit(peer(source), datagrams, Tick(0)),
            expected,
            "{source}"
        );
    }
}

#[test]
fn the_loop_guard_refuses_port_zero_our_port_and_listed_ports() {
    let mut guard = guard(GuardConfig::default());
    let refused_sources = [
        "192.0.2.1:0",
        "192.0.2.1:4000",
        "127.0.0.1:4000",
        "[::1]:4000",
        "192.0.2.1:7",
        "192.0.2.1:19",
        "192.0.2.1:53",
        "192.0.2.1:123",
        "[2001:db8::1]:11211",
        "[::ffff:192.0.2.1]:53",
    ];
    assert_each_source(
        &mut guard,
        &refused_sources,
        3,
        refused(Refusal::LoopGuard, 3),
    );
    let admitted_sources = ["192.0.2.1:4001", "192.0.2.1:1", "[2001:db8::1]:40000"];
    assert_each_source(&mut guard, &admitted_sources, 3, Admission::all(3));
}

#[test]
fn the_loop_guard_uses_the_configured_ports_only() {
    let mut guard = guard(GuardConfig {
        loop_guard_ports: vec![9_999],
        ..GuardConfig::default()
    });
    assert_admissions(
        &mut guard,
        &[
            ("192.0.2.1:9999", 1, 0, refused(Refusal::LoopGuard, 1)),
            ("192.0.2.1:53", 1, 0, Admission::all(1)),
            // Port 0 is always refused.
            ("192.0.2.1:0", 1, 0, refused(Refusal::LoopGuard, 1)),
        ],
    );
}

#[test]
fn the_loop_guard_refuses_addresses_no_sender_has_in_every_form() {
    let mut guard = guard(GuardConfig::default());
    let impossible_sources = [
        "0.0.0.0:5000",
        "224.0.0.251:5000",
        "255.255.255.255:5000",
        "[::]:5000",
        "[ff02::1]:5000",
        "[::ffff:0.0.0.0]:5000",
        "[::ffff:239.1.2.3]:5000",
        "[::ffff:255.255.255.255]:5000",
    ];
    assert_each_source(
        &mut guard,
        &impossible_sources,
        1,
        refused(Refusal::LoopGuard, 1),
    );
}

#[test]
fn without_the_loop_guard_those_sources_pass() {
    let mut guard = guard(open());
    assert!(guard.admits_everything());
    let sources = ["192.0.2.1:0", "192.0.2.1:4000", "192.0.2.1:7", "[::]:5000"];
    assert_each_source(&mut guard, &sources, 2, Admission::all(2));
    assert!(!self::guard(GuardConfig::default()).admits_everything());
}

#[test]
fn only_the_rate_limiter_needs_the_clock() {
    assert!(!guard(open()).reads_the_clock());
    assert!(!guard(GuardConfig::default()).reads_the_clock());
    assert!(guard(limited(10, 10)).reads_the_clock());
    // Without the limiter the tick is never looked at: any tick gives the same verdicts.
    let mut guard = guard(GuardConfig::default());
    for tick in [0, 1, u64::MAX] {
        assert_eq!(
            guard.admit(peer("192.0.2.1:5000"), 3, Tick(tick)),
            Admission::all(3)
        );
        assert_eq!(
            guard.admit(peer("192.0.2.1:0"), 3, Tick(tick)),
            refused(Refusal::LoopGuard, 3)
        );
    }
}

#[test]
fn the_acl_applies_longest_prefix_with_deny_winning_ties() {
    let mut guard = guard(GuardConfig {
        allow: cidrs(&["10.1.0.0/16", "192.0.2.0/24"]),
        deny: cidrs(&["10.0.0.0/8", "10.1.2.3", "192.0.2.0/24"]),
        ..open()
    });
    let denied = refused(Refusal::AclDenied, 1);
    assert_admissions(
        &mut guard,
        &[
            ("10.1.9.9:5000", 1, 0, Admission::all(1)),
            ("[::ffff:10.1.9.9]:5000", 1, 0, Admission::all(1)),
            ("10.1.2.3:5000", 1, 0, denied),
            ("10.2.0.1:5000", 1, 0, denied),
            // A tie: deny wins.
            ("192.0.2.5:5000", 1, 0, denied),
            // Allow-list mode: no match is denied.
            ("198.51.100.1:5000", 1, 0, denied),
            ("[2001:db8::1]:5000", 1, 0, denied),
        ],
    );
}

#[test]
fn a_deny_list_alone_allows_the_rest() {
    let mut guard = guard(GuardConfig {
        deny: cidrs(&["2001:db8::/32"]),
        ..open()
    });
    assert!(!guard.admits_everything());
    assert_admissions(
        &mut guard,
        &[
            ("[2001:db8:5::1]:5000", 4, 0, refused(Refusal::AclDenied, 4)),
            ("[2001:db9::1]:5000", 4, 0, Admission::all(4)),
            ("192.0.2.1:5000", 4, 0, Admission::all(4)),
        ],
    );
}

#[test]
fn rules_apply_in_order_and_refused_sources_spend_no_tokens() {
    let mut guard = guard(GuardConfig {
        deny: cidrs(&["192.0.2.0/24"]),
        ..limited(1, 2)
    });
    // Port 53 from a denied block: the loop guard decides first.
    assert_eq!(
        guard.admit(peer("192.0.2.1:53"), 1, Tick(0)),
        refused(Refusal::LoopGuard, 1)
    );
    for _ in 0..10 {
        assert_eq!(
            guard.admit(peer("192.0.2.1:5000"), 5, Tick(0)),
            refused(Refusal::AclDenied, 5)
        );
        assert_eq!(
            guard.admit(peer("198.51.100.1:53"), 5, Tick(0)),
            refused(Refusal::LoopGuard, 5)
        );
    }
    // 198.51.100.1 tried 50 datagrams from port 53, none spent a token: its burst is whole.
    assert_eq!(
        guard.admit(peer("198.51.100.1:5000"), 2, Tick(0)),
        Admission::all(2)
    );
}

#[test]
fn the_limiter_gives_the_burst_then_the_rate() {
    let mut guard = guard(limited(10, 4));
    let source = "192.0.2.1:5000";
    let limited = refused(Refusal::RateLimited, 1);
    assert_admissions(
        &mut guard,
        &[
            (source, 4, 0, Admission::all(4)),
            (source, 1, 0, limited),
            (source, 1, 99, limited),
            // 10/s: one per 100 ms.
            (source, 1, 100, Admission::all(1)),
            (source, 1, 150, limited),
            // Refilled to the burst.
            (source, 4, 10_000, Admission::all(4)),
            (source, 1, 10_000, limited),
        ],
    );
}

#[test]
fn a_gro_buffer_is_admitted_in_part_when_fewer_tokens_remain() {
    let mut guard = guard(limited(1_000, 10));
    let source = peer("[2001:db8::7]:5000");
    assert_eq!(guard.admit(source, 6, Tick(0)), Admission::all(6));
    assert_eq!(
        guard.admit(source, 6, Tick(0)),
        Admission {
            admitted: 4,
            refused: 2,
            reason: Some(Refusal::RateLimited),
            dry_run_refused: 0
        }
    );
    // 3 ms at 1,000/s: 3 tokens.
    let verdict = guard.admit(source, 64, Tick(3));
    assert_eq!((verdict.admitted, verdict.refused), (3, 61));
}

#[test]
fn mapped_ipv6_sources_share_the_bucket_of_their_ipv4_address() {
    let mut guard = guard(limited(1, 3));
    assert_eq!(
        guard.admit(peer("192.0.2.9:5000"), 2, Tick(0)),
        Admission::all(2)
    );
    let verdict = guard.admit(peer("[::ffff:192.0.2.9]:6000"), 2, Tick(0));
    assert_eq!((verdict.admitted, verdict.refused), (1, 1));
}

#[test]
fn a_dry_run_admits_everything_and_reports_what_it_would_refuse() {
    let mut guard = guard(GuardConfig {
        limit_dry_run: true,
        ..limited(1, 2)
    });
    let source = peer("192.0.2.1:5000");
    assert_eq!(guard.admit(source, 2, Tick(0)), Admission::all(2));
    assert_eq!(
        guard.admit(source, 5, Tick(0)),
        Admission {
            admitted: 5,
            refused: 0,
            reason: None,
            dry_run_refused: 5
        }
    );
    // A dry run spends only the tokens there were: the bucket refills as it would for real.
    let verdict = guard.admit(source, 3, Tick(1_000));
    assert_eq!((verdict.admitted, verdict.dry_run_refused), (3, 2));
    // The other rules are not dry runs.
    assert_eq!(
        guard.admit(peer("192.0.2.1:0"), 1, Tick(0)),
        refused(Refusal::LoopGuard, 1)
    );
}

#[test]
fn a_table_full_of_forged_sources_keeps_a_limited_source_limited_in_fixed_memory() {
    let mut guard = guard(GuardConfig {
        limit_table: 4_096,
        ..limited(100, 50)
    });
    assert_eq!(
        (guard.limiter_capacity(), guard.limiter_bytes()),
        (4_096, 4_096 * 16)
    );
    let victim = peer("203.0.113.5:5000");
    assert_eq!(guard.admit(victim, 64, Tick(0)).admitted, 50);
    let mut victim_admitted = 0;
    for n in 0..500_000u32 {
        // 500k forged sources over 1 s, each once.
        let now = Tick(u64::from(n / 500));
        let forged = SocketAddr::from((std::net::Ipv4Addr::from(0x0b00_0000 + n), 5_000));
        assert_eq!(guard.admit(forged, 1, now), Admission::all(1));
        if n % 500 == 0 {
            victim_admitted += guard.admit(victim, 1, now).admitted;
        }
    }
    // 1 s at 100/s refills about 100 tokens, but the victim asked for one per ms (1,000 in all).
    assert!((95..=101).contains(&victim_admitted), "{victim_admitted}");
    assert_eq!(
        (guard.limiter_capacity(), guard.limiter_bytes()),
        (4_096, 4_096 * 16)
    );
}

#[test]
fn the_default_table_is_65536_entries_of_16_bytes() {
    let guard = guard(limited(1, 1));
    assert_eq!(guard.limiter_capacity(), 65_536);
    assert_eq!(guard.limiter_bytes(), 1 << 20);
    assert_eq!(self::guard(GuardConfig::default()).limiter_bytes(), 0);
}

#[test]
fn zero_datagrams_are_neither_admitted_nor_refused() {
    let mut guard = guard(limited(1, 1));
    assert_admissions(
        &mut guard,
        &[
            ("192.0.2.1:5000", 0, 0, Admission::all(0)),
            ("192.0.2.1:0", 0, 0, Admission::all(0)),
            ("192.0.2.1:5000", 1, 0, Admission::all(1)),
        ],
    );
}

#[test]
fn the_amplification_cap_counts_whole_packets() {
    let guard = guard(GuardConfig::default()); // factor 3
    assert!(guard.amplification_enabled());
    // IPv4: 3 × (10 + 28) = 114 bytes on the wire, so 86 bytes of payload.
    assert!(guard.reply_within_cap(10, 86, false));
    assert!(!guard.reply_within_cap(10, 87, false));
    // IPv6: 3 × (10 + 48) = 174, so 126.
    assert!(guard.reply_within_cap(10, 126, true));
    assert!(!guard.reply_within_cap(10, 127, true));
    // An empty request still buys its headers' worth.
    assert!(guard.reply_within_cap(0, 56, false) && !guard.reply_within_cap(0, 57, false));
    assert!(guard.reply_within_cap(65_535, 65_535, true));
    assert!(guard.reply_within_cap(usize::MAX, usize::MAX, false));
}

#[test]
fn fractional_off_and_silly_factors() {
    let with = |factor| {
        self::guard(GuardConfig {
            max_amplification: factor,
            ..GuardConfig::default()
        })
    };
    let one_and_a_half = with(Some(1.5));
    assert!(one_and_a_half.reply_within_cap(100, 164, false)); // 1.5 × 128 = 192 = 164 + 28
    assert!(!one_and_a_half.reply_within_cap(100, 165, false));
    let exact = with(Some(1.0));
    assert!(exact.reply_within_cap(100, 100, true) && !exact.reply_within_cap(100, 101, true));
    let off = with(None);
    assert!(!off.amplification_enabled());
    assert!(off.reply_within_cap(0, usize::MAX, false));
    assert!(!with(Some(f64::NAN)).reply_within_cap(100, 0, false));
    assert!(!with(Some(-1.0)).reply_within_cap(100, 0, false));
    assert!(with(Some(f64::INFINITY)).reply_within_cap(0, 1 << 40, false));
}

#[test]
fn ticks_come_from_elapsed_time_in_milliseconds() {
    assert_eq!(Tick::from_elapsed(Duration::from_micros(2_999)), Tick(2));
    assert_eq!(Tick::from_elapsed(Duration::MAX), Tick(u64::MAX));
}
