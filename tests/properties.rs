//! Property tests: what an outsider or an operator can hand udpd — source addresses, control messages,
//! GRO buffers, config files, requests — never panics it, and the guard keeps its invariants.
//!
//! Case counts are small by default (the whole file runs in seconds on a slow debug build); set
//! `PROPTEST_CASES=N` to run N cases of each property (the two heavy ones, which push 100,000 sources
//! through a table per case, run N / 1,000 cases, at least their default).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use udpd::config::guard::{canonical, Cidr, GuardConfig, RateLimit};
use udpd::handler::{Ack, Discard, Echo, Handler, Upper};
use udpd::serve::guard::{Guard, GuardKey, Refusal, Tick};
use udpd::serve::segments::Received;
use udpd::sys::wire::decode_recv_control;
use udpd::sys::RecvControl;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn heavy_cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .map_or(default, |n| (n / 1_000).max(default));
    ProptestConfig::with_cases(cases)
}

/// Addresses weighted toward the edges the guard cares about: mapped, unspecified, multicast, broadcast.
fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        prop::sample::select(vec![
            IpAddr::from([0, 0, 0, 0]),
            IpAddr::from([255, 255, 255, 255]),
            IpAddr::from([224, 0, 0, 1]),
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "ff02::1".parse().unwrap(),
            "::ffff:255.255.255.255".parse().unwrap(),
        ]),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![any::<u16>(), prop::sample::select(vec![0u16, 7, 53, 4_000])]
}

fn cidr() -> impl Strategy<Value = Cidr> {
    (address(), any::<u8>()).prop_map(|(ip, prefix)| {
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        format!("{ip}/{}", prefix % (max + 1)).parse().unwrap()
    })
}

/// Any settings the types allow, including ones the config parser would refuse (prefix lengths past the
/// family, table sizes of 0 or huge, factors that are not numbers).
fn guard_config() -> impl Strategy<Value = GuardConfig> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u16>(), 0..20),
        prop::option::of(prop_oneof![
            any::<f64>(),
            0.0f64..10.0,
            Just(f64::NAN),
            Just(f64::INFINITY)
        ]),
        prop::option::of((1u32..=100_000_000, 1u32..=100_000_000)),
        (any::<u8>(), any::<u8>()),
        prop_oneof![30 => 0usize..5_000, 1 => Just(usize::MAX)],
        any::<bool>(),
        prop::collection::vec(cidr(), 0..6),
        prop::collection::vec(cidr(), 0..6),
    )
        .prop_map(
            |(loop_guard, ports, factor, limit, prefix, table, dry_run, allow, deny)| GuardConfig {
                loop_guard,
                loop_guard_ports: ports,
                max_amplification: factor,
                limit: limit.map(|(rate, burst)| RateLimit { rate, burst }),
                limit_prefix: prefix,
                limit_table: table,
                limit_dry_run: dry_run,
                allow,
                deny,
            },
        )
}

/// One received buffer: source, datagram count and tick (ticks may go backwards, jump or saturate).
fn arrival() -> impl Strategy<Value = (SocketAddr, u32, u64)> {
    (
        address(),
        port(),
        prop_oneof![1u32..=64, any::<u32>()],
        prop_oneof![0u64..10_000, any::<u64>()],
    )
        .prop_map(|(ip, port, datagrams, tick)| (SocketAddr::new(ip, port), datagrams, tick))
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn the_guard_accounts_for_every_datagram(
        config in guard_config(),
        local_port in port(),
        arrivals in prop::collection::vec(arrival(), 1..200),
        lengths in prop::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 0..20),
    ) {
        let mut guard = Guard::new(&config, local_port, GuardKey::random());
        let capacity = guard.limiter_capacity();
        for (peer, datagrams, tick) in arrivals {
            let verdict = guard.admit(peer, datagrams, Tick(tick));
            prop_assert_eq!(verdict.admitted + verdict.refused, datagrams);
            prop_assert_eq!(verdict.reason.is_none(), verdict.refused == 0);
            prop_assert!(verdict.dry_run_refused <= verdict.admitted);
            if !config.limit_dry_run {
                prop_assert_eq!(verdict.dry_run_refused, 0);
            }
            if verdict.reason == Some(Refusal::LoopGuard) {
                prop_assert!(config.loop_guard);
            }
            if config.limit.is_none() {
                prop_assert!(verdict.reason != Some(Refusal::RateLimited));
            }
        }
        prop_assert_eq!(guard.limiter_capacity(), capacity);
        for (request, reply, ipv6) in lengths {
            let fits = guard.reply_within_cap(request, reply, ipv6);
            // Monotone: a shorter reply to a longer request fits whenever this one does.
            if fits {
                prop_assert!(guard.reply_within_cap(request.saturating_add(1), reply / 2, ipv6));
            }
            prop_assert!(guard.amplification_enabled() || fits);
        }
    }

    #[test]
    fn handlers_never_panic_and_stay_within_their_buffer(
        request in prop::collection::vec(any::<u8>(), 0..2_048),
        reply_len in 0usize..4_096,
        segment in 0usize..600,
        ack in prop::collection::vec(any::<u8>(), 0..300),
        peer in (address(), port()).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
    ) {
        let mut reply = vec![0u8; reply_len];
        let mut handlers: [Box<dyn Handler>; 4] =
            [Box::new(Echo), Box::new(Upper), Box::new(Ack::new(ack.clone())), Box::new(Discard)];
        for handler in handlers.iter_mut() {
            if let Some(len) = handler.handle(&request, peer, &mut reply) {
                prop_assert!(len <= reply.len());
            }
            let mut replies = vec![0u8; reply_len];
            if handler.handle_train(&request, segment, peer, &mut replies) {
                prop_assert!(request.len() <= replies.len());
            }
        }
        let len = Echo.handle(&request, peer, &mut reply).unwrap();
        prop_assert_eq!(&reply[..len], &request[..len.min(request.len())]);
        if reply_len >= request.len() {
            prop_assert_eq!(&reply[..len], &request[..]);
            let mut replies = vec![0u8; reply_len];
            prop_assert!(Echo.handle_train(&request, segment, peer, &mut replies));
            prop_assert_eq!(&replies[..request.len()], &request[..]);
        }
        let len = Upper.handle(&request, peer, &mut reply).unwrap();
        prop_assert_eq!(reply[..len].to_vec(), request[..len].to_ascii_uppercase());
        prop_assert_eq!(Discard.handle(&request, peer, &mut reply), None);
        let len = Ack::new(ack.clone()).handle(&request, peer, &mut reply).unwrap();
        prop_assert_eq!(&reply[..len], &ack[..len]);
        prop_assert_eq!(len, ack.len().min(reply_len));
    }

    #[test]
    fn gro_buffers_cut_into_datagrams_that_make_them_whole(
        bytes in prop::collection::vec(any::<u8>(), 0..3_000),
        gro in prop::option::of(prop_oneof![0u16..64, any::<u16>()]),
    ) {
        let view = Received::new(&bytes, gro);
        let segments: Vec<&[u8]> = view.segments().collect();
        prop_assert_eq!(segments.len(), view.count());
        prop_assert!(view.count() >= 1 && view.stride() >= 1);
        prop_assert_eq!(segments.concat(), bytes.clone());
        prop_assert_eq!(view.is_train(), segments.len() > 1);
        for (index, segment) in segments.iter().enumerate() {
            if index + 1 < segments.len() {
                prop_assert_eq!(segment.len(), view.stride());
            } else {
                prop_assert!(segment.len() <= view.stride());
            }
        }
    }

    #[test]
    fn control_messages_decode_without_panicking(
        bytes in control_bytes(),
        len in prop_oneof![0usize..600, any::<usize>()],
    ) {
        // Stale values in `out` must not survive the decode either.
        let mut decoded = RecvControl { segment_size: Some(0), ..RecvControl::default() };
        decode_recv_control(&bytes, len, &mut decoded);
        if let Some(size) = decoded.segment_size {
            prop_assert!(size > 0);
        }
    }

    #[test]
    fn config_files_parse_or_fail_without_panicking(text in config_text()) {
        let _ = udpd::config::file::parse(&text, "t.toml");
    }
}

proptest! {
    #![proptest_config(heavy_cases(3))]

    #[test]
    fn the_limiter_table_stays_its_size_under_100k_sources(
        seed in any::<u64>(),
        table in prop_oneof![0usize..70_000, Just(65_536)],
        prefix in (any::<u8>(), any::<u8>()),
        dry_run in any::<bool>(),
    ) {
        let config = GuardConfig {
            loop_guard: false,
            limit: Some(RateLimit { rate: 10, burst: 20 }),
            limit_prefix: prefix,
            limit_table: table,
            limit_dry_run: dry_run,
            ..GuardConfig::default()
        };
        let mut guard = Guard::new(&config, 4_000, GuardKey::random());
        let (capacity, bytes) = (guard.limiter_capacity(), guard.limiter_bytes());
        prop_assert!(capacity.is_power_of_two() && capacity >= table.clamp(4, 1 << 22));
        prop_assert_eq!(bytes, capacity * 16);
        let mut state = seed | 1;
        for step in 0..100_000u64 {
            // xorshift64: cheap, deterministic per seed, covers both families.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let ip = if state & 1 == 0 {
                IpAddr::V4(Ipv4Addr::from((state >> 32) as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(u128::from(state) << 64 | u128::from(step)))
            };
            let datagrams = (state >> 8) as u32 % 64 + 1;
            let verdict = guard.admit(SocketAddr::new(ip, 5_000), datagrams, Tick(step / 50));
            prop_assert_eq!(verdict.admitted + verdict.refused, datagrams);
        }
        prop_assert_eq!((guard.limiter_capacity(), guard.limiter_bytes()), (capacity, bytes));
    }
}

/// Control-message buffers: mostly well-formed headers (with lengths that may lie, levels and types the
/// decoder knows) and payloads of any bytes, sometimes raw noise.
fn control_bytes() -> impl Strategy<Value = Vec<u8>> {
    let levels = vec![
        libc::SOL_SOCKET,
        libc::IPPROTO_IP,
        libc::IPPROTO_IPV6,
        libc::SOL_UDP,
        -1,
    ];
    let kinds = vec![
        libc::SO_TIMESTAMPNS,
        libc::SO_RXQ_OVFL,
        libc::IP_PKTINFO,
        libc::IPV6_PKTINFO,
        libc::UDP_GRO,
        0,
    ];
    let message = (
        prop_oneof![0usize..64, any::<usize>(), Just(usize::MAX)],
        prop::sample::select(levels),
        prop::sample::select(kinds),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(lie, level, kind, data, honest)| {
            let len = if honest { 16 + data.len() } else { lie };
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&len.to_ne_bytes());
            bytes.extend_from_slice(&level.to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&data);
            bytes.resize(bytes.len().next_multiple_of(8), 0);
            bytes
        });
    prop_oneof![
        prop::collection::vec(message, 0..6).prop_map(|messages| messages.concat()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Config text: mostly `key = value` lines with the keys udpd knows and values of every TOML type
/// (including ones out of range), sometimes any text at all.
fn config_text() -> impl Strategy<Value = String> {
    let keys: Vec<String> = udpd::config::file::keys()
        .into_iter()
        .map(|(key, _)| key.to_string())
        .chain(["nope".to_string(), "listen.x".to_string()])
        .collect();
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..2_000).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        prop::sample::select(vec![
            "inf", "-inf", "nan", "0.001", "1e300", "true", "false"
        ])
        .prop_map(str::to_string),
        any::<String>().prop_map(|text| format!("{text:?}")),
        prop::sample::select(vec![
            "\"0.0.0.0:9999\"",
            "\"[::1]:0\"",
            "\"echo\"",
            "\"ack:\"",
            "\"json\"",
            "\"0-3,7\"",
            "\"99999999999-1\"",
            "[0, 2, 3]",
            "[-1]",
            "[]",
            "{ a = 1 }",
            "1979-05-27T07:32:00Z",
        ])
        .prop_map(str::to_string),
    ];
    let line =
        (prop::sample::select(keys), value).prop_map(|(key, value)| format!("{key} = {value}"));
    prop_oneof![
        4 => prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n")),
        1 => any::<String>(),
    ]
}
