//! What an outsider can do to `udpd serve`, as tests: each proves the daemon refuses one abuse and keeps
//! its books (`accounting: ... (holds)`, whatever terms the identity names) while it does.
//!
//! - Loops: a datagram forged between two echo servers on the same port (127.0.0.1:P and 127.0.0.2:P)
//!   dies after at most one hop, and is counted `loop_guard`; so is one forged from the server's own
//!   address and port (which would make it answer itself forever).
//! - Port 0: forged requests from source port 0 get no reply and are counted `loop_guard`; they do not
//!   make the daemon disable GSO (a reply train to port 0 fails in the kernel, which a daemon could take
//!   for a GSO refusal), so a normal client is still answered and its replies still leave as GSO trains.
//! - Loop-guard ports: a request from a listed source port is not answered (`loop_guard`), unless
//!   `--no-loop-guard`.
//! - Amplification: with the default `--max-amplification 3`, a 1-byte request does not get a 1000-byte
//!   reply (`amplification_refused`); a 400-byte request does; `--max-amplification 0` lifts the cap.
//! - `--max-datagram` with GRO applies per segment: a train of 10 × 50 bytes under a 100-byte limit is
//!   answered datagram by datagram (not truncated as one 500-byte buffer); 10 × 150 bytes is 10 truncated.
//! - Rate limit: under `--limit 200/50` a flooding source gets about what its token bucket allows
//!   (`rate_limited` counts the rest) while a quiet source from another address is served; with
//!   `--limit-dry-run` everything is answered and `rate_limited` still counts.
//! - ACLs: `--deny` refuses a source (`acl_denied`); with `--allow` and `--deny`, the most specific wins.
//! - `--cpus` values past any real CPU (or absurd ranges) are usage errors: exit 2, one line, no start.
//! - SIGUSR1 and SIGUSR2 do not kill the daemon: it logs a line, keeps answering, and exits 0 on SIGTERM
//!   (SIGHUP reloads without loss: tests/reload.rs).
//! - A second daemon on a port already served exits 1 naming `--share-port`; with it, it starts.
//! - The metrics endpoint answers its first scrape with full metrics, still answers with 200 idle
//!   connections open, and survives a 10 MiB request line.
//!
//! Forged sources need a raw socket (root); without root those tests skip (fail under
//! `UDPD_REQUIRE_FEATURES=1`). Every wait is bounded; the loop test's one-second wait is a deadline for
//! a loop to show itself, not a synchronisation.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::raw::RawSender;
use common::{
    assert_silent, can_bind, client_on, feature, is_root, kernel_has_gro, kernel_has_gso,
    recv_reply, round_trip, run_to_end_with_memory_cap, skip_or_fail, wait_receive_queue_empty,
    Daemon, Summary,
};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{setsockopt, sockopt};

/// Bound on any one HTTP exchange with the metrics endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops the daemon (exit 0 and a summary asserted) and checks that its accounting holds.
fn stop_checked(daemon: Daemon) -> Summary {
    let summary = daemon.stop();
    summary.assert_accounting_holds();
    summary
}

/// A raw socket for forged datagrams, or `None` after [`skip_or_fail`] when this process may not open one.
fn raw_sender() -> Option<RawSender> {
    if !is_root() {
        skip_or_fail("forging source addresses needs root (a raw socket)");
        return None;
    }
    match RawSender::open() {
        Ok(sender) => Some(sender),
        Err(e) => {
            skip_or_fail(&format!("cannot open a raw IPv4 socket: {e}"));
            None
        }
    }
}

/// Whether `ip` is a local address here (all of 127.0.0.0/8 is, on Linux); a skip note when not.
fn loopback_usable(ip: &str) -> bool {
    feature(
        can_bind(&format!("{ip}:0")),
        &format!("{ip} is not a local address here"),
    )
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("an IPv4 address expected, got {addr}"),
    }
}

/// A client on `ip` (port 0) with a bounded read timeout.
fn client_at(ip: &str) -> UdpSocket {
    client_on(format!("{ip}:0").parse().expect("an address"))
}

// ---- 1. loops ----

#[test]
fn a_datagram_forged_between_two_echo_servers_on_one_port_does_not_loop() {
    let Some(raw) = raw_sender() else { return };
    if !loopback_usable("127.0.0.2") {
        return;
    }
    let first = Daemon::start_v4(1, &[]);
    let port = first.port();
    let second = Daemon::start(&format!("127.0.0.2:{port}"), 1, &[]);
    // From the second server to the first: an echo answers it back, and the second echoes that...
    raw.send(v4(second.addr), v4(first.addr), b"who goes first?");
    // A loop shows itself within a second (thousands of rounds); this is a deadline, not a sync.
    thread::sleep(Duration::from_secs(1));
    let first = stop_checked(first);
    let second = stop_checked(second);
    let rx = first.total("rx") + second.total("rx");
    assert!(
        rx <= 2,
        "the pair received {rx} datagrams from one forged one: a loop\nfirst:\n{}\nsecond:\n{}",
        first.stdout,
        second.stdout
    );
    first.assert_total_at_least_why(
        "loop_guard",
        1,
        "the receiver must refuse a datagram from its own port on a peer address",
    );
}

#[test]
fn a_datagram_forged_from_the_servers_own_address_is_not_answered() {
    let Some(raw) = raw_sender() else { return };
    let daemon = Daemon::start_v4(1, &[]);
    raw.send(v4(daemon.addr), v4(daemon.addr), b"talk to yourself");
    // One worker reads in order: a normal client's answer means the forged datagram was handled.
    let client = client_at("127.0.0.1");
    assert_eq!(round_trip(&client, daemon.addr, b"after"), b"after");
    let summary = stop_checked(daemon);
    summary.assert_total_why(
        "rx",
        2,
        "the forged datagram must not be answered to itself",
    );
    summary.assert_total("tx", 1);
    summary.assert_total("loop_guard", 1);
}

// ---- 2. port 0 ----

/// Forges four back-to-back 100-byte datagrams from 127.0.0.9 port 0 to `to`: of one size, their
/// replies would make one GSO train to port 0.
fn forge_four_from_port_zero(raw: &RawSender, to: SocketAddr) {
    let forged = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 0);
    for _ in 0..4 {
        raw.send(forged, v4(to), &[b'z'; 100]);
    }
}

/// Sends eight 100-byte segments from `client` as one GSO train and checks each is echoed, in order.
fn echo_train_of_eight(client: &UdpSocket, to: SocketAddr) {
    let segments = send_train(client, to, 100, 8);
    for (i, segment) in segments.iter().enumerate() {
        let (reply, _) = recv_reply(client, &format!("segment {i} of the train"));
        assert_eq!(&reply, segment, "segment {i}");
    }
}

#[test]
fn datagrams_from_port_zero_are_dropped_without_disabling_gso() {
    let Some(raw) = raw_sender() else { return };
    let daemon = Daemon::start_v4(1, &[]);
    forge_four_from_port_zero(&raw, daemon.addr);
    let client = client_at("127.0.0.1");
    assert_eq!(
        round_trip(&client, daemon.addr, b"still there?"),
        b"still there?",
        "a normal client is answered after the port-0 datagrams"
    );
    let mut replies = 1;
    let gso = feature(kernel_has_gso(), "this kernel has no UDP GSO");
    if gso {
        // A train from one normal client: its echo must still leave as a GSO train.
        echo_train_of_eight(&client, daemon.addr);
        replies += 8;
    }
    let summary = stop_checked(daemon);
    summary.assert_total("loop_guard", 4);
    summary.assert_total_why(
        "gso_disabled",
        0,
        "datagrams from port 0 must not turn GSO off",
    );
    summary.assert_total("tx", replies);
    summary.assert_total("tx_error", 0);
    if gso && feature(kernel_has_gro(), "this kernel has no UDP GRO") {
        summary.assert_total_at_least_why(
            "gso_trains",
            1,
            "the normal client's train must be answered with a GSO train",
        );
    }
}

/// With the loop guard off, replies to port 0 reach the kernel as one GSO train, which it refuses with
/// `EINVAL`: the daemon must attribute that to the destination (its single datagrams fail too), count
/// them as `tx_error` and keep GSO for everyone else.
#[test]
fn a_refused_train_to_port_zero_is_blamed_on_its_destination_not_on_gso() {
    let Some(raw) = raw_sender() else { return };
    if !feature(kernel_has_gso(), "this kernel has no UDP GSO") {
        return;
    }
    let daemon = Daemon::start_v4(1, &["--no-loop-guard"]);
    forge_four_from_port_zero(&raw, daemon.addr);
    let client = client_at("127.0.0.1");
    assert_eq!(round_trip(&client, daemon.addr, b"ping"), b"ping");
    echo_train_of_eight(&client, daemon.addr);
    let summary = stop_checked(daemon);
    summary.assert_total("loop_guard", 0);
    summary.assert_total_why(
        "tx_error",
        4,
        "every reply to port 0 is refused by the kernel and counted",
    );
    summary.assert_total_why(
        "gso_disabled",
        0,
        "a per-destination refusal must not turn GSO off",
    );
    if feature(kernel_has_gro(), "this kernel has no UDP GRO") {
        summary.assert_total_at_least("gso_trains", 1);
    }
}

// ---- 3. loop-guard ports ----

#[test]
fn a_source_port_on_the_loop_guard_list_is_not_answered_unless_the_guard_is_off() {
    let guarded = client_at("127.0.0.1");
    let port = guarded
        .local_addr()
        .expect("client address")
        .port()
        .to_string();
    let probe = client_at("127.0.0.1");

    let daemon = Daemon::start_v4(1, &["--loop-guard-ports", &port]);
    guarded
        .send_to(b"from a guarded port", daemon.addr)
        .expect("send");
    // In order on one worker: the probe's answer means the guarded datagram was handled.
    assert_eq!(round_trip(&probe, daemon.addr, b"probe"), b"probe");
    assert_silent(&guarded, "a request from a --loop-guard-ports port");
    let summary = stop_checked(daemon);
    summary.assert_total("loop_guard", 1);
    summary.assert_total("tx", 1);

    let daemon = Daemon::start_v4(1, &["--loop-guard-ports", &port, "--no-loop-guard"]);
    assert_eq!(
        round_trip(&guarded, daemon.addr, b"answered now"),
        b"answered now",
        "--no-loop-guard answers every port"
    );
    let summary = stop_checked(daemon);
    summary.assert_total("loop_guard", 0);
}

#[test]
fn a_source_port_on_the_default_loop_guard_list_is_not_answered() {
    if !is_root() {
        return skip_or_fail("binding a port below 1024 (chargen, 19) needs root");
    }
    let Ok(chargen) = UdpSocket::bind("127.0.0.1:19") else {
        return skip_or_fail("127.0.0.1:19 is in use here");
    };
    chargen
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let probe = client_at("127.0.0.1");
    let daemon = Daemon::start_v4(1, &[]);
    chargen.send_to(b"from chargen", daemon.addr).expect("send");
    assert_eq!(round_trip(&probe, daemon.addr, b"probe"), b"probe");
    assert_silent(&chargen, "a request from port 19");
    let summary = stop_checked(daemon);
    summary.assert_total("loop_guard", 1);
}

// ---- 4. amplification ----

#[test]
fn a_tiny_request_does_not_get_a_large_reply() {
    let handler = format!("ack:{}", "a".repeat(1000));
    let client = client_at("127.0.0.1");

    let daemon = Daemon::start_v4(1, &["--handler", &handler]);
    // 1 byte is 29 on the wire; 1000 bytes back (1028) is over 3 times that: refused.
    client.send_to(b"x", daemon.addr).expect("send 1 byte");
    // 400 bytes (428 on the wire) for 1028 back is under 3 times: answered.
    client
        .send_to(&[b'r'; 400], daemon.addr)
        .expect("send 400 bytes");
    let (reply, _) = recv_reply(&client, "a 400-byte request (within the cap)");
    assert_eq!(reply.len(), 1000);
    assert_silent(&client, "a 1-byte request must not get 1000 bytes back");
    let summary = stop_checked(daemon);
    summary.assert_total("rx", 2);
    summary.assert_total_why("tx", 1, "only the 400-byte request may be answered");
    summary.assert_total("amplification_refused", 1);

    let daemon = Daemon::start_v4(1, &["--handler", &handler, "--max-amplification", "0"]);
    let reply = round_trip(&client, daemon.addr, b"x");
    assert_eq!(reply.len(), 1000, "--max-amplification 0 lifts the cap");
    let summary = stop_checked(daemon);
    summary.assert_total("amplification_refused", 0);
}

// ---- 5. --max-datagram with GRO ----

/// Sends `count` segments of `size` bytes as one UDP_SEGMENT train; returns the segments.
fn send_train(client: &UdpSocket, to: SocketAddr, size: usize, count: usize) -> Vec<Vec<u8>> {
    setsockopt(client, sockopt::UdpGsoSegment, &(size as i32)).expect("UDP_SEGMENT");
    let segments: Vec<Vec<u8>> = (0..count)
        .map(|i| (0..size).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    let sent = client.send_to(&segments.concat(), to).expect("send train");
    assert_eq!(sent, size * count);
    segments
}

#[test]
fn max_datagram_applies_to_each_segment_of_a_gro_train() {
    if !feature(
        kernel_has_gso(),
        "this kernel has no UDP GSO to send a train",
    ) {
        return;
    }
    // Without GRO the kernel splits the train and the test passes trivially; it still must hold.
    feature(
        kernel_has_gro(),
        "this kernel has no UDP GRO: the train arrives split",
    );
    let client = client_at("127.0.0.1");

    let daemon = Daemon::start_v4(1, &["--max-datagram", "100"]);
    let segments = send_train(&client, daemon.addr, 50, 10);
    for (i, segment) in segments.iter().enumerate() {
        let (reply, _) = recv_reply(
            &client,
            &format!("50-byte segment {i} under a 100-byte limit"),
        );
        assert_eq!(&reply, segment, "segment {i}");
    }
    let summary = stop_checked(daemon);
    summary.assert_total("rx", 10);
    summary.assert_total("tx", 10);
    summary.assert_total_why(
        "truncated",
        0,
        "segments under the limit are not truncated because their train is over it",
    );

    let daemon = Daemon::start_v4(1, &["--max-datagram", "100"]);
    send_train(&client, daemon.addr, 150, 10);
    setsockopt(&client, sockopt::UdpGsoSegment, &0).expect("UDP_SEGMENT off");
    assert_eq!(round_trip(&client, daemon.addr, b"probe"), b"probe");
    assert_silent(&client, "after the probe");
    let summary = stop_checked(daemon);
    summary.assert_total("truncated", 10);
    summary.assert_total("tx", 1);
    summary.assert_total("rx", 11);
}

// ---- 6. rate limit ----

/// Counts datagrams arriving on `socket` until `done` is set and a read then times out.
fn spawn_counter(socket: UdpSocket, done: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        let mut count = 0;
        loop {
            match socket.recv_from(&mut buf) {
                Ok(_) => count += 1,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if done.load(Ordering::SeqCst) {
                        return count;
                    }
                }
                Err(e) => panic!("reply counter: {e}"),
            }
        }
    })
}

/// Sends, retrying while the socket buffer is full (ENOBUFS/EAGAIN: nothing left).
fn send_retrying(socket: &UdpSocket, payload: &[u8], to: SocketAddr) {
    loop {
        match socket.send_to(payload, to) {
            Ok(_) => return,
            Err(e)
                if e.kind() == ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(Errno::ENOBUFS as i32) =>
            {
                thread::yield_now()
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// What a flood under a rate limit came to.
struct Flood {
    sent: u64,
    flood_replies: u64,
    quiet_replies: u64,
    seconds: f64,
    summary: Summary,
}

/// 100 steps 10 ms apart (deadline-paced): each sends `per_step` datagrams from 127.0.0.1 (the flood)
/// and one from 127.0.0.2 (the quiet source), to a daemon started with `extra`.
fn flood(extra: &[&str], per_step: u64) -> Flood {
    let mut args = vec!["--rcvbuf", "16777216"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start_v4(1, &args);
    let flooder = client_at("127.0.0.1");
    let quiet = client_at("127.0.0.2");
    let _ = setsockopt(&flooder, sockopt::RcvBuf, &(8 << 20));
    let done = Arc::new(AtomicBool::new(false));
    let flood_count = spawn_counter(flooder.try_clone().expect("clone"), done.clone());
    let quiet_count = spawn_counter(quiet.try_clone().expect("clone"), done.clone());
    let started = Instant::now();
    let mut sent = 0;
    for step in 0..100u32 {
        let due = started + Duration::from_millis(10) * step;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        for _ in 0..per_step {
            send_retrying(&flooder, &[b'f'; 32], daemon.addr);
            sent += 1;
        }
        send_retrying(&quiet, format!("quiet {step}").as_bytes(), daemon.addr);
    }
    // The daemon has read everything once its queue is empty (no reply can tell for refused ones).
    wait_receive_queue_empty(daemon.addr, Duration::from_secs(10));
    let summary = stop_checked(daemon);
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    Flood {
        sent,
        flood_replies: flood_count.join().expect("flood counter"),
        quiet_replies: quiet_count.join().expect("quiet counter"),
        seconds,
        summary,
    }
}

#[test]
fn a_flooding_source_is_rate_limited_while_a_quiet_one_is_served() {
    if !loopback_usable("127.0.0.2") {
        return;
    }
    let run = flood(&["--limit", "200/50"], 200);
    let summary = &run.summary;
    // The bucket allows 200 per second plus a burst of 50, over the time the daemon saw the flood.
    let allowed = (200.0 * run.seconds + 50.0) * 1.1 + 20.0;
    assert!(
        (run.flood_replies as f64) <= allowed,
        "the flooding source got {} replies of {} sent in {:.2} s; at most {allowed:.0} allowed:\n{}",
        run.flood_replies,
        run.sent,
        run.seconds,
        summary.stdout
    );
    summary.assert_total_at_least("rate_limited", 1);
    assert!(
        run.quiet_replies >= 95,
        "the quiet source (100 datagrams at 100/s) must be served: {} replies:\n{}",
        run.quiet_replies,
        summary.stdout
    );
}

#[test]
fn limit_dry_run_answers_everything_and_still_counts() {
    if !loopback_usable("127.0.0.2") {
        return;
    }
    let run = flood(&["--limit", "200/50", "--limit-dry-run"], 50);
    let summary = &run.summary;
    // Would-be refusals are counted apart: they are answered, so they are not a drop reason.
    summary.assert_total_at_least("rate_limited_dry_run", 1);
    summary.assert_total("rate_limited", 0);
    assert_eq!(
        summary.total("tx"),
        summary.total("rx"),
        "a dry run answers every datagram it reads:\n{}",
        summary.stdout
    );
    assert!(
        run.quiet_replies >= 95,
        "quiet replies {}:\n{}",
        run.quiet_replies,
        summary.stdout
    );
    assert!(
        run.flood_replies > 1000,
        "the flood is answered too: {} of {}:\n{}",
        run.flood_replies,
        run.sent,
        summary.stdout
    );
}

// ---- 7. ACLs ----

#[test]
fn denied_sources_get_no_reply_and_the_most_specific_rule_wins() {
    if !(loopback_usable("127.0.0.3") && loopback_usable("127.0.0.4")) {
        return;
    }
    let allowed = client_at("127.0.0.1");

    let daemon = Daemon::start_v4(1, &["--deny", "127.0.0.3/32"]);
    let denied = client_at("127.0.0.3");
    for i in 0..5 {
        denied
            .send_to(format!("denied {i}").as_bytes(), daemon.addr)
            .expect("send");
    }
    // In order on one worker: the allowed client's answer means the denied ones were handled.
    assert_eq!(round_trip(&allowed, daemon.addr, b"allowed"), b"allowed");
    assert_silent(&denied, "a source under --deny");
    let summary = stop_checked(daemon);
    summary.assert_total("acl_denied", 5);
    summary.assert_total("tx", 1);

    let daemon = Daemon::start_v4(1, &["--allow", "127.0.0.1/32", "--deny", "127.0.0.0/8"]);
    let denied = client_at("127.0.0.4");
    for i in 0..3 {
        denied
            .send_to(format!("denied {i}").as_bytes(), daemon.addr)
            .expect("send");
    }
    assert_eq!(
        round_trip(&allowed, daemon.addr, b"the /32 allow wins"),
        b"the /32 allow wins"
    );
    assert_silent(&denied, "127.0.0.4 under --deny 127.0.0.0/8");
    let summary = stop_checked(daemon);
    summary.assert_total("acl_denied", 3);
    summary.assert_total("tx", 1);
}

// ---- 8. --cpus ----

#[test]
fn cpus_past_any_real_cpu_are_usage_errors() {
    for cpus in ["1024", "0-18446744073709551615", "0-1500"] {
        // A broken parser could try to allocate the whole range: cap its memory at 1 GiB.
        let (code, stdout, stderr) = run_to_end_with_memory_cap(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--quiet",
                "--cpus",
                cpus,
            ],
            1024,
            Duration::from_secs(10),
        );
        assert_eq!(
            code, 2,
            "--cpus {cpus}: a usage error (exit 2); stdout {stdout:?} stderr {stderr:?}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "--cpus {cpus}: one line on stderr: {stderr:?}"
        );
        assert!(
            stderr.starts_with("udpd: error: "),
            "--cpus {cpus}: {stderr:?}"
        );
        assert!(
            !stdout.contains("listening on"),
            "--cpus {cpus}: must not start: {stdout:?}"
        );
    }
}

// ---- 9. signals ----

#[test]
fn sigusr1_and_sigusr2_are_logged_and_do_not_stop_the_daemon() {
    // SIGHUP reloads (the sockets pass to a new process: tests/reload.rs); the others only log.
    let mut daemon = Daemon::start_v4(1, &[]);
    let client = client_at("127.0.0.1");
    assert_eq!(round_trip(&client, daemon.addr, b"before"), b"before");
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2] {
        daemon.signal(signal);
        let line = daemon.process.wait_stderr(
            &format!("a log line for {signal:?}"),
            Duration::from_secs(5),
            |line| line.starts_with("udpd: ").then(|| line.to_string()),
        );
        assert!(!line.trim().is_empty());
        let payload = format!("after {signal:?}");
        assert_eq!(
            round_trip(&client, daemon.addr, payload.as_bytes()),
            payload.as_bytes(),
            "still answering after {signal:?}"
        );
    }
    let summary = stop_checked(daemon); // SIGTERM: exit 0 and the summary
    summary.assert_total("rx", 3);
    summary.assert_total("tx", 3);
}

// ---- 10. port sharing ----

#[test]
fn a_second_daemon_on_a_served_port_needs_share_port() {
    let first = Daemon::start_v4(1, &[]);
    let listen = first.addr.to_string();
    let base = [
        "--listen",
        listen.as_str(),
        "--workers",
        "1",
        "--no-pin",
        "--quiet",
    ];
    match Daemon::try_launch(&base) {
        Ok(second) => {
            let _ = second.terminate();
            panic!("a second daemon joined {listen} without --share-port");
        }
        Err(finished) => {
            assert_eq!(
                finished.code, 1,
                "a served port is a runtime error (exit 1): {finished:?}"
            );
            let lines: Vec<&str> = finished.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line on stderr: {:?}", finished.stderr);
            assert!(
                lines[0].contains("--share-port"),
                "the error must name --share-port: {:?}",
                lines[0]
            );
        }
    }
    let mut shared = base.to_vec();
    shared.push("--share-port");
    let second = Daemon::launch(&shared);
    assert_eq!(second.addr, first.addr);
    stop_checked(second);
    stop_checked(first);
}

// ---- 11. metrics endpoint ----

/// One GET of /metrics, bounded by [`HTTP_TIMEOUT`] at every step; the whole response.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the metrics endpoint {addr}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("no complete metrics response within {HTTP_TIMEOUT:?}: {e}"));
    String::from_utf8_lossy(&response).into_owned()
}

fn assert_full_metrics(response: &str, when: &str) {
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{when}: status must be 200: {response:?}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.contains("udpd_rx"),
        "{when}: the body must carry the metrics (udpd_rx...): {response:?}"
    );
}

#[test]
fn the_metrics_endpoint_survives_idle_connections_and_a_huge_request_line() {
    let mut daemon = Daemon::start_v4(1, &["--metrics", "127.0.0.1:0", "--interval", "3600"]);
    let metrics: SocketAddr =
        daemon
            .process
            .wait_stderr("the metrics address", Duration::from_secs(10), |line| {
                line.strip_prefix("udpd: metrics on http://")?
                    .strip_suffix("/metrics")?
                    .parse()
                    .ok()
            });
    // Right after start (an hour before the first report): full metrics already.
    assert_full_metrics(&scrape(metrics), "the first scrape");

    // 200 idle connections that never send a byte must not starve a real scrape.
    let idle: Vec<TcpStream> = (0..200)
        .map(|i| {
            TcpStream::connect_timeout(&metrics, HTTP_TIMEOUT)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    assert_full_metrics(&scrape(metrics), "a scrape beside 200 idle connections");
    drop(idle);

    // A 10 MiB request line without a newline: an error status, or the connection closed.
    let mut huge = TcpStream::connect_timeout(&metrics, HTTP_TIMEOUT).expect("connect");
    huge.set_write_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    huge.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    let line = vec![b'A'; 10 << 20];
    let _ = huge.write_all(&line); // the server may close before taking it all
    let mut response = Vec::new();
    match huge.read_to_end(&mut response) {
        Ok(_) => {
            let text = String::from_utf8_lossy(&response);
            assert!(
                response.is_empty()
                    || text.starts_with("HTTP/1.1 4")
                    || text.starts_with("HTTP/1.1 5"),
                "a 10 MiB request line must get an error status or a closed connection: {:?}",
                &text[..text.len().min(200)]
            );
        }
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!(
            "a 10 MiB request line was neither answered nor closed within {HTTP_TIMEOUT:?}: {e}"
        ),
    }
    drop(huge);
    assert_full_metrics(&scrape(metrics), "a scrape after the huge request line");
    stop_checked(daemon);
}

// ---- privileges ----

/// `--user nobody --group nogroup` as root: once the sockets are bound, every thread of the daemon runs
/// as that user and group, and it still answers.
#[test]
fn user_and_group_apply_to_every_thread_after_binding() {
    if !feature(common::is_root(), "not root: cannot switch users") {
        return;
    }
    let daemon = Daemon::start_v4(2, &["--user", "nobody", "--group", "nogroup"]);
    let client = client_at("127.0.0.1");
    assert_eq!(round_trip(&client, daemon.addr, b"who am i"), b"who am i");
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).expect("task list");
    let mut threads = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.expect("task").path().join("status"))
            .expect("task status");
        let ids = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .map(|rest| {
                    rest.split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        // Real, effective, saved and filesystem ids: all nobody (65534) and nogroup (65534).
        assert!(ids("Uid:").iter().all(|id| id == "65534"), "{status}");
        assert!(ids("Gid:").iter().all(|id| id == "65534"), "{status}");
        threads += 1;
    }
    assert!(
        threads >= 3,
        "workers, reporter and signal threads: {threads}"
    );
    let summary = stop_checked(daemon);
    summary.assert_total("tx", 1);
}
