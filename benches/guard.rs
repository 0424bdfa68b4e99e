//! Criterion bench of the guard stage: cost per datagram of `Guard::admit` as rules are added (loop guard,
//! an 8-entry ACL, the rate limiter with one source and with 1,000,000 forged sources cycling through a
//! 65,536-entry table) and of `Guard::reply_within_cap`; prints the limiter table's memory first.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use udpd::config::guard::{GuardConfig, RateLimit};
use udpd::serve::guard::{Guard, GuardKey, Tick};

/// Buffers per measured iteration (one recvmmsg batch's worth).
const BATCH: u32 = 1_024;

/// Distinct forged sources in the flood case.
const FORGED: u32 = 1_000_000;

fn config(acl: bool, limit: bool) -> GuardConfig {
    let deny = if acl {
        // Eight blocks none of the benched sources is in: every lookup walks the whole list.
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "198.18.0.0/15",
            "203.0.113.0/24",
            "2001:db8::/32",
            "fc00::/7",
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect()
    } else {
        Vec::new()
    };
    GuardConfig {
        deny,
        // High enough that the single source is never limited: the bench measures the bookkeeping.
        limit: limit.then_some(RateLimit {
            rate: 100_000_000,
            burst: 100_000_000,
        }),
        ..GuardConfig::default()
    }
}

fn guard(config: &GuardConfig) -> Guard {
    Guard::new(config, 9_999, GuardKey::random())
}

fn one_source(c: &mut Criterion, name: &str, config: GuardConfig) {
    let mut guard = guard(&config);
    let peer = SocketAddr::from(([198, 51, 100, 7], 40_000));
    let mut group = c.benchmark_group("guard_admit");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    let mut tick = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            tick += 1;
            let mut admitted = 0;
            for _ in 0..BATCH {
                admitted += guard.admit(black_box(peer), 1, Tick(tick)).admitted;
            }
            admitted
        })
    });
    group.finish();
}

fn admit(c: &mut Criterion) {
    one_source(c, "loop_guard", config(false, false));
    one_source(c, "loop_guard+acl8", config(true, false));
    one_source(c, "loop_guard+acl8+limit_1_source", config(true, true));

    let flood = GuardConfig {
        limit: Some(RateLimit {
            rate: 100,
            burst: 20,
        }),
        ..config(true, true)
    };
    let mut guard = guard(&flood);
    assert_eq!(guard.limiter_capacity(), 65_536);
    let mut group = c.benchmark_group("guard_admit");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    let (mut next, mut tick) = (0u32, 0u64);
    group.bench_function("loop_guard+acl8+limit_1M_forged_sources", |b| {
        b.iter(|| {
            tick += 1;
            let mut admitted = 0;
            for _ in 0..BATCH {
                next = (next + 1) % FORGED;
                // 1,000,000 sources spread over the IPv4 space (an odd multiplier is a bijection).
                let ip = Ipv4Addr::from(next.wrapping_mul(0x9e37_79b1) | 0x0100_0000);
                let peer = SocketAddr::new(IpAddr::V4(ip), 40_000);
                admitted += guard.admit(black_box(peer), 1, Tick(tick)).admitted;
            }
            admitted
        })
    });
    group.finish();
}

fn reply_cap(c: &mut Criterion) {
    let guard = guard(&GuardConfig::default());
    let mut group = c.benchmark_group("guard_reply_within_cap");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.bench_function("factor_3", |b| {
        b.iter(|| {
            let mut within = 0u32;
            for n in 0..BATCH as usize {
                within +=
                    u32::from(guard.reply_within_cap(black_box(n), black_box(3 * n), n & 1 == 0));
            }
            within
        })
    });
    group.finish();
}

/// Resident memory of this process in bytes (from /proc/self/statm), 0 if unreadable.
fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4_096)
}

fn table_memory(_: &mut Criterion) {
    let before = resident_bytes();
    let guard = guard(&GuardConfig {
        limit: Some(RateLimit { rate: 1, burst: 1 }),
        ..GuardConfig::default()
    });
    let after = resident_bytes();
    eprintln!(
        "limiter table: {} entries x 16 B = {} B; process RSS grew by {} B on building it",
        guard.limiter_capacity(),
        guard.limiter_bytes(),
        after.saturating_sub(before)
    );
    black_box(&guard);
}

criterion_group!(benches, table_memory, admit, reply_cap);
criterion_main!(benches);
