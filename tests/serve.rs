//! Integration tests of `udpd serve` through the real binary: loopback only, port 0, bounded in time.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_silent, can_bind, client_for, client_on, feature, kernel_has_gro, recv_reply,
    round_trip, run_udpd, skip_or_fail, wait_receive_queue_empty, Daemon, Summary,
};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

/// Sends each payload, checks its reply with `expect`, stops the daemon and checks the byte totals.
fn check_round_trips(
    daemon: Daemon,
    payloads: &[Vec<u8>],
    expect: impl Fn(&[u8]) -> Vec<u8>,
) -> Summary {
    let server = daemon.addr;
    let client = client_for(server);
    let mut tx_bytes = 0;
    for payload in payloads {
        let reply = round_trip(&client, server, payload);
        let wanted = expect(payload);
        assert_eq!(
            reply,
            wanted,
            "reply to a {}-byte request differs",
            payload.len()
        );
        tx_bytes += wanted.len() as u64;
    }
    let summary = daemon.stop();
    let n = payloads.len() as u64;
    let rx_bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    summary.assert_total("rx", n);
    summary.assert_total("tx", n);
    summary.assert_total("rx_bytes", rx_bytes);
    summary.assert_total("tx_bytes", tx_bytes);
    summary.assert_accounting_holds();
    summary
}

fn sample_payloads() -> Vec<Vec<u8>> {
    vec![
        b"hello, udpd".to_vec(),
        (0..=255u8).collect(),
        (0..1400u32).map(|i| (i * 7 % 251) as u8).collect(),
        b"Mixed Case 123 \xe9\xff".to_vec(),
    ]
}

#[test]
fn echo_round_trips_and_counts_bytes() {
    let daemon = Daemon::start_v4(1, &[]);
    let summary = check_round_trips(daemon, &sample_payloads(), <[u8]>::to_vec);
    summary.assert_total("truncated", 0);
    summary.assert_total("no_reply", 0);
    assert_eq!(
        summary.latency_us.get("count").copied(),
        Some(4.0),
        "latency count is one per answered datagram:\n{}",
        summary.stdout
    );
}

#[test]
fn echo_answers_an_empty_datagram_with_an_empty_one() {
    let daemon = Daemon::start_v4(1, &[]);
    let payloads = vec![Vec::new(), b"x".to_vec(), Vec::new()];
    check_round_trips(daemon, &payloads, <[u8]>::to_vec);
}

#[test]
fn upper_round_trips() {
    let daemon = Daemon::start_v4(1, &["--handler", "upper"]);
    check_round_trips(daemon, &sample_payloads(), <[u8]>::to_ascii_uppercase);
}

#[test]
fn ack_default_replies_ack() {
    let daemon = Daemon::start_v4(1, &["--handler", "ack"]);
    let mut payloads = sample_payloads();
    payloads.push(Vec::new());
    check_round_trips(daemon, &payloads, |_| b"ACK".to_vec());
}

#[test]
fn ack_with_text_replies_the_text() {
    let daemon = Daemon::start_v4(1, &["--handler", "ack:hello"]);
    check_round_trips(daemon, &sample_payloads(), |_| b"hello".to_vec());
}

#[test]
fn discard_answers_nothing_and_counts() {
    let daemon = Daemon::start_v4(1, &["--handler", "discard"]);
    let client = client_for(daemon.addr);
    let sent = 25u64;
    for i in 0..sent {
        client
            .send_to(format!("discard me {i}").as_bytes(), daemon.addr)
            .expect("send");
    }
    assert_silent(&client, "--handler discard");
    // No reply can tell us the daemon has read everything: wait (bounded) for its queue to empty.
    wait_receive_queue_empty(daemon.addr, Duration::from_secs(5));
    let summary = daemon.stop();
    summary.assert_total("rx", sent);
    summary.assert_total("no_reply", sent);
    summary.assert_total("tx", 0);
    summary.assert_total("tx_bytes", 0);
    summary.assert_accounting_holds();
}

/// A 500-byte datagram over `--max-datagram 100` is counted and unanswered; a 50-byte one is answered.
fn truncation(extra: &[&str]) {
    let mut args = vec!["--max-datagram", "100"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start_v4(1, &args);
    let client = client_for(daemon.addr);
    client.send_to(&[b'L'; 500], daemon.addr).expect("send 500");
    let small = [b's'; 50];
    // One worker reads its queue in order: the reply to the small one proves the big one was handled.
    let reply = round_trip(&client, daemon.addr, &small);
    assert_eq!(reply, small, "the 50-byte datagram must be echoed");
    assert_silent(&client, "after the truncated datagram");
    let summary = daemon.stop();
    summary.assert_total("truncated", 1);
    summary.assert_total("tx", 1);
    summary.assert_total("rx", 2);
    summary.assert_total("tx_bytes", 50);
    summary.assert_accounting_holds();
}

#[test]
fn truncated_datagram_is_counted_and_unanswered_with_gro() {
    truncation(&[]);
}

#[test]
fn truncated_datagram_is_counted_and_unanswered_without_gro() {
    truncation(&["--no-gro"]);
}

/// Many source ports over `workers` SO_REUSEPORT sockets: every worker serves some of them.
///
/// The kernel spreads flows over the reuseport group by a hash of the 4-tuple. With 128 distinct source
/// ports, the chance that some worker gets none is 2 * 2^-128 for 2 workers and about 4 * (3/4)^128
/// (~4e-16) for 4: astronomically unlikely, so an idle worker means the daemon is not sharing the port.
fn every_worker_serves(workers: usize) {
    let daemon = Daemon::start_v4(workers, &[]);
    let clients: Vec<UdpSocket> = (0..128).map(|_| client_for(daemon.addr)).collect();
    let per_client = 4;
    for (c, client) in clients.iter().enumerate() {
        for seq in 0..per_client {
            let payload = format!("client {c} seq {seq}");
            client
                .send_to(payload.as_bytes(), daemon.addr)
                .expect("send");
        }
        for seq in 0..per_client {
            let (reply, from) = recv_reply(client, &format!("client {c} seq {seq}"));
            assert_eq!(from, daemon.addr);
            assert_eq!(
                String::from_utf8_lossy(&reply),
                format!("client {c} seq {seq}")
            );
        }
    }
    let summary = daemon.stop();
    let expected = (clients.len() * per_client) as u64;
    summary.assert_total("rx", expected);
    summary.assert_total("tx", expected);
    let mut sum_rx = 0;
    for w in 0..workers {
        let rx = summary.worker(w, "rx");
        assert!(
            rx > 0,
            "worker {w} served nothing out of {} flows:\n{}",
            clients.len(),
            summary.stdout
        );
        sum_rx += rx;
    }
    assert_eq!(
        sum_rx,
        summary.total("rx"),
        "worker rx must add up to total rx:\n{}",
        summary.stdout
    );
    summary.assert_accounting_holds();
}

#[test]
fn two_workers_each_serve_traffic() {
    every_worker_serves(2);
}

#[test]
fn four_workers_each_serve_traffic() {
    every_worker_serves(4);
}

#[test]
fn many_concurrent_clients_each_get_their_own_replies() {
    const CLIENTS: usize = 512;
    const PER_CLIENT: usize = 3;
    // All 512 sockets stay open (512 concurrent source ports), but requests go out 32 clients at a time
    // (96 datagrams in flight) so that the daemon's default-sized socket buffer (rmem_default, often
    // 208 KiB) can never overflow: a kernel drop would make this test measure the machine, not udpd.
    const WINDOW: usize = 32;
    let daemon = Daemon::start_v4(2, &[]);
    let clients: Vec<UdpSocket> = (0..CLIENTS).map(|_| client_for(daemon.addr)).collect();
    let payload = |c: usize, seq: usize| format!("client {c:03} seq {seq} {}", "-".repeat(c % 40));
    for start in (0..CLIENTS).step_by(WINDOW) {
        let window = start..(start + WINDOW).min(CLIENTS);
        for seq in 0..PER_CLIENT {
            for c in window.clone() {
                clients[c]
                    .send_to(payload(c, seq).as_bytes(), daemon.addr)
                    .expect("send");
            }
        }
        for c in window {
            for seq in 0..PER_CLIENT {
                let (reply, from) = recv_reply(&clients[c], &format!("client {c} seq {seq}"));
                assert_eq!(from, daemon.addr, "client {c}: reply from elsewhere");
                assert_eq!(
                    String::from_utf8_lossy(&reply),
                    payload(c, seq),
                    "client {c} got someone else's reply or one out of order"
                );
            }
        }
    }
    let summary = daemon.stop();
    // Each client received its own 3 replies; with tx == 1536 in all, nobody got an extra one.
    let total = (CLIENTS * PER_CLIENT) as u64;
    summary.assert_total("rx", total);
    summary.assert_total("tx", total);
    summary.assert_accounting_holds();
}

#[test]
fn ipv6_loopback_echo() {
    if !can_bind("[::1]:0") {
        return skip_or_fail("this machine has no IPv6 loopback (cannot bind [::1]:0)");
    }
    let daemon = Daemon::start("[::1]:0", 2, &[]);
    assert!(daemon.addr.is_ipv6(), "listening on {}", daemon.addr);
    let payloads = vec![b"over v6".to_vec(), Vec::new(), vec![0xAB; 1400]];
    check_round_trips(daemon, &payloads, <[u8]>::to_vec);
}

#[test]
fn wildcard_bind_answers_from_the_address_the_client_sent_to() {
    if !can_bind("127.0.0.2:0") {
        return skip_or_fail("127.0.0.2 is not a local address here");
    }
    let daemon = Daemon::start("0.0.0.0:0", 1, &[]);
    let port = daemon.port();
    let client = client_on("127.0.0.1:0".parse().unwrap());
    let targets: [SocketAddr; 2] = [
        SocketAddr::from(([127, 0, 0, 2], port)),
        SocketAddr::from(([127, 0, 0, 1], port)),
    ];
    let mut sent = 0;
    for round in 0..3 {
        for target in targets {
            let payload = format!("round {round} to {target}");
            client.send_to(payload.as_bytes(), target).expect("send");
            sent += 1;
            let (reply, from) = recv_reply(&client, &payload);
            assert_eq!(reply, payload.as_bytes());
            assert_eq!(
                from, target,
                "a reply must leave from the address the request was sent to"
            );
        }
    }
    let summary = daemon.stop();
    summary.assert_total("tx", sent);
}

/// Bytes queued on the sockets bound exactly to `addr` (0 when there are none), read again while a
/// chunked read of `/proc/net/udp` misses a socket that `must_exist` says is there.
fn queued_at(addr: SocketAddr, must_exist: bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match common::receive_queue_bytes(addr) {
            Some(bytes) => return bytes,
            None if !must_exist => return 0,
            None => assert!(
                Instant::now() < deadline,
                "no socket bound to {addr} in /proc/net/udp"
            ),
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Sends SIGSTOP and waits (bounded) until every thread of the daemon is stopped (state `T` in
/// `/proc/PID/task/*/stat`): the signal is only delivered on each thread's way back from the kernel.
fn stop_and_wait(daemon: &Daemon) {
    daemon.signal(nix::sys::signal::Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(5);
    let tasks = format!("/proc/{}/task", daemon.pid());
    loop {
        let all_stopped = std::fs::read_dir(&tasks).expect("task list").all(|task| {
            let stat =
                std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('T' | 't')))
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "udpd did not stop within 5 s");
        // Paces re-reading the thread states under the deadline.
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_wildcard_listen_gives_each_local_address_its_own_socket() {
    if !can_bind("127.0.0.2:0") {
        return skip_or_fail("127.0.0.2 is not a local address here");
    }
    // 127.0.0.1 is an interface address (lo), 127.0.0.2 only a route: the first gets its own sockets,
    // the second is served by the wildcard socket with packet info.
    for (flags, split) in [(&[][..], true), (&["--no-address-sockets"][..], false)] {
        let daemon = Daemon::start("0.0.0.0:0", 1, flags);
        let port = daemon.port();
        let one = SocketAddr::from(([127, 0, 0, 1], port));
        let two = SocketAddr::from(([127, 0, 0, 2], port));
        let wildcard = SocketAddr::from(([0, 0, 0, 0], port));
        assert_eq!(queued_at(wildcard, true), 0);
        // Stopped, the daemon leaves each request in the socket the kernel chose for it.
        stop_and_wait(&daemon);
        let client = client_on("127.0.0.1:0".parse().unwrap());
        client.send_to(b"to one", one).expect("send");
        let (at_one, at_wildcard) = (queued_at(one, split), queued_at(wildcard, true));
        if split {
            assert!(
                at_one > 0 && at_wildcard == 0,
                "a request to 127.0.0.1 must wait in the 127.0.0.1 socket ({at_one} bytes), not the wildcard ({at_wildcard})"
            );
        } else {
            assert!(
                at_one == 0 && at_wildcard > 0,
                "with --no-address-sockets only the wildcard socket exists"
            );
        }
        client.send_to(b"to two", two).expect("send");
        assert!(queued_at(wildcard, true) > at_wildcard);
        daemon.signal(nix::sys::signal::Signal::SIGCONT);
        // Two sockets, two threads: the replies may come in either order.
        let mut replies: Vec<(Vec<u8>, SocketAddr)> =
            (0..2).map(|_| recv_reply(&client, "a reply")).collect();
        replies.sort();
        assert_eq!(
            replies,
            [(b"to one".to_vec(), one), (b"to two".to_vec(), two)],
            "each reply must leave from the address its request was sent to"
        );
        let summary = daemon.stop();
        summary.assert_total("tx", 2);
        summary.assert_total("rx", 2);
    }
}

/// Sets a stop flag when dropped, so a load thread ends even when the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Receives replies until `done` is set and a read times out; returns how many arrived. Reports the
/// number in every `MARK n` reply on `marks`.
fn spawn_reply_reader(
    socket: UdpSocket,
    done: Arc<AtomicBool>,
    marks: mpsc::Sender<u64>,
) -> thread::JoinHandle<u64> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set timeout");
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut received = 0u64;
        loop {
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    received += 1;
                    if let Some(rest) = buf[..len].strip_prefix(b"MARK ") {
                        if let Ok(n) = String::from_utf8_lossy(rest).parse() {
                            let _ = marks.send(n);
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if done.load(Ordering::SeqCst) {
                        return received;
                    }
                }
                Err(e) => panic!("reply reader: {e}"),
            }
        }
    })
}

/// Sends `payload`, retrying while the socket's send buffer is full; returns 1 (a datagram sent).
fn send_counted(socket: &UdpSocket, payload: &[u8], to: SocketAddr) -> u64 {
    loop {
        match socket.send_to(payload, to) {
            Ok(_) => return 1,
            Err(e)
                if e.kind() == ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(Errno::ENOBUFS as i32) =>
            {
                // EAGAIN / ENOBUFS: nothing left the socket; try again (a blocking socket rarely sees these).
                thread::yield_now();
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Packets dropped machine-wide at the per-CPU input backlog (second column of /proc/net/softnet_stat).
fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .map(|table| {
            table
                .lines()
                .filter_map(|line| line.split_whitespace().nth(1))
                .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn burst_through_a_small_socket_buffer_keeps_exact_accounts() {
    let daemon = Daemon::start_v4(1, &["--rcvbuf", "4096", "--batch", "8"]);
    let server = daemon.addr;
    let client = client_for(server);
    // A big receive buffer for the replies (capped by net.core.rmem_max; only the reply count depends on it).
    let _ = setsockopt(&client, sockopt::RcvBuf, &(8 << 20));
    let done = Arc::new(AtomicBool::new(false));
    let _stop_reader = StopOnDrop(done.clone());
    let (marks_tx, marks) = mpsc::channel();
    let reader = spawn_reply_reader(
        client.try_clone().expect("clone client"),
        done.clone(),
        marks_tx,
    );

    let backlog_drops_before = softnet_dropped();
    // The blast: as fast as a blocking send goes (it only waits when the client's own send buffer is full).
    let mut sent = 0u64;
    let payload = [b'b'; 64];
    for _ in 0..20_000 {
        sent += send_counted(&client, &payload, server);
    }
    // Synchronise without sleeping: send `MARK n` until the last one sent is answered. One worker reads
    // its queue in order, so by then every earlier datagram was either read or dropped by the kernel.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut mark = 0u64;
    'marks: loop {
        assert!(Instant::now() < deadline, "no marker answered within 10 s");
        mark += 1;
        sent += send_counted(&client, format!("MARK {mark}").as_bytes(), server);
        let wait_until = Instant::now() + Duration::from_millis(200);
        loop {
            match marks.recv_timeout(wait_until.saturating_duration_since(Instant::now())) {
                Ok(n) if n == mark => break 'marks,
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break, // dropped somewhere: send another
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("reply reader died"),
            }
        }
    }

    let backlog_drops = softnet_dropped().saturating_sub(backlog_drops_before);
    let summary = daemon.stop();
    done.store(true, Ordering::SeqCst);
    let received = reader.join().expect("reply reader");
    summary.assert_accounting_holds();
    let rx = summary.total("rx");
    let overflow = summary.total("kernel_rx_overflow");
    // On loopback a datagram that left the client either reaches the daemon's socket queue (and is read:
    // rx) or is dropped there (kernel_rx_overflow). The one other place it can die is the per-CPU input
    // backlog, only when softirq processing falls far behind; those drops are machine-wide
    // (/proc/net/softnet_stat), so when any happened during the blast the check allows for them.
    if backlog_drops == 0 {
        assert_eq!(
            sent,
            rx + overflow,
            "every datagram sent is read (rx) or dropped at the socket (kernel_rx_overflow):\n{}",
            summary.stdout
        );
    } else {
        println!("note: {backlog_drops} input-backlog drops on this machine during the burst");
        assert!(
            rx + overflow <= sent && sent <= rx + overflow + backlog_drops,
            "sent {sent} must be rx + kernel_rx_overflow (+ at most {backlog_drops} backlog drops):\n{}",
            summary.stdout
        );
    }
    assert_eq!(
        (
            summary.kernel.get("rx").copied(),
            summary.kernel.get("kernel_rx_overflow").copied()
        ),
        (Some(rx), Some(overflow)),
        "the kernel line must show rx and kernel_rx_overflow as the total line does:\n{}",
        summary.stdout
    );
    let tx = summary.total("tx");
    assert!(
        received <= tx,
        "client received {received} replies but the daemon sent {tx}:\n{}",
        summary.stdout
    );
    assert!(received >= 1, "at least the marker reply arrived");
    println!(
        "burst: sent {sent}, rx {rx}, kernel_rx_overflow {overflow}, tx {tx}, received {received}"
    );
}

#[test]
fn sigterm_under_load_prints_summary_and_exits_zero() {
    let daemon = Daemon::start_v4(2, &[]);
    let server = daemon.addr;
    let client = client_for(server);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_sender = StopOnDrop(stop.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let socket = client.try_clone().expect("clone client");
        let stop = stop.clone();
        let sent = sent.clone();
        thread::spawn(move || {
            let payload = [b'l'; 32];
            while !stop.load(Ordering::SeqCst) {
                sent.fetch_add(send_counted(&socket, &payload, server), Ordering::Relaxed);
            }
        })
    };
    // The daemon is demonstrably serving the load before it is stopped.
    let (reply, from) = recv_reply(&client, "the load");
    assert_eq!((reply.as_slice(), from), (&[b'l'; 32][..], server));
    let summary = daemon.stop(); // asserts exit code 0 and parses the summary
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender thread");
    summary.assert_accounting_holds();
    summary.assert_total_at_least("rx", 1);
    summary.assert_total_at_least("tx", 1);
    assert!(
        summary.total("rx") <= sent.load(Ordering::SeqCst),
        "the daemon cannot receive more than was sent:\n{}",
        summary.stdout
    );
}

fn assert_one_error_line(stderr: &str, context: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{context}: exactly one stderr line expected, got {stderr:?}"
    );
    let line = lines[0];
    let message = line
        .strip_prefix("udpd: error: ")
        .unwrap_or_else(|| panic!("{context}: stderr must start with `udpd: error: `: {line:?}"));
    assert!(!message.trim().is_empty(), "{context}: empty error message");
    line.to_string()
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let cases: [&[&str]; 9] = [
        &["--listen", "127.0.0.1:0", "--workers", "0"],
        &["--listen", "127.0.0.1:0", "--batch", "0"],
        &["--listen", "127.0.0.1:0", "--handler", "shout"],
        &["--listen", "nonsense"],
        &["--listen", "127.0.0.1:0", "--bogus-flag"],
        &["--listen", "127.0.0.1:0", "--max-datagram", "0"],
        &["--listen", "127.0.0.1:0", "--interval", "0"],
        &["--listen", "127.0.0.1:0", "--rcvbuf", "10"],
        &["--listen", "127.0.0.1:0", "--cpus", "0"], // with --no-pin: contradictory
    ];
    for case in cases {
        let mut args = vec!["serve", "--no-pin", "--quiet"];
        args.extend_from_slice(case);
        let (code, stdout, stderr) = run_udpd(&args, Duration::from_secs(5));
        assert_eq!(
            code, 2,
            "{case:?}: usage error must exit 2; stdout {stdout:?} stderr {stderr:?}"
        );
        assert_one_error_line(&stderr, &format!("{case:?}"));
        assert!(
            !stdout.contains("listening on"),
            "{case:?}: must not start serving: {stdout:?}"
        );
    }
}

#[test]
fn address_in_use_exits_1_with_one_line() {
    // A plain socket without SO_REUSEPORT: udpd's SO_REUSEPORT socket cannot join it.
    let holder = UdpSocket::bind("127.0.0.1:0").expect("bind holder");
    let addr = holder.local_addr().expect("holder address");
    let listen = addr.to_string();
    let (code, stdout, stderr) = run_udpd(
        &[
            "serve",
            "--listen",
            &listen,
            "--workers",
            "1",
            "--no-pin",
            "--quiet",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(
        code, 1,
        "address in use is a runtime error (exit 1); stdout {stdout:?} stderr {stderr:?}"
    );
    let line = assert_one_error_line(&stderr, "address in use");
    assert!(
        line.to_lowercase().contains("in use"),
        "the error must say the address is in use: {line:?}"
    );
    assert!(
        line.contains(&addr.port().to_string()),
        "the error must name the address: {line:?}"
    );
    assert!(!stdout.contains("listening on"), "{stdout:?}");
    drop(holder);
}

// ---- GSO trains sent by the client (UDP_SEGMENT), received with and without GRO ----

/// Sets UDP_SEGMENT on `socket`; `false` (after [`skip_or_fail`]) when the kernel lacks UDP GSO.
fn set_gso(socket: &UdpSocket, segment: usize) -> bool {
    let size = i32::try_from(segment).expect("segment size fits");
    match setsockopt(socket, sockopt::UdpGsoSegment, &size) {
        Ok(()) => true,
        Err(Errno::ENOPROTOOPT) => {
            skip_or_fail("this kernel has no UDP_SEGMENT (UDP GSO)");
            false
        }
        Err(e) => panic!("setsockopt UDP_SEGMENT {segment}: {e}"),
    }
}

/// The datagrams of one train: `full` segments of `segment` bytes and a last one of `tail` bytes (none
/// when 0), each with distinct content.
fn train(id: u8, segment: usize, full: usize, tail: usize) -> Vec<Vec<u8>> {
    let mut datagrams: Vec<Vec<u8>> = (0..full)
        .map(|i| {
            (0..segment)
                .map(|j| (id as usize * 97 + i * 31 + j) as u8)
                .collect()
        })
        .collect();
    if tail > 0 {
        datagrams.push(
            (0..tail)
                .map(|j| (id as usize * 13 + j * 3) as u8)
                .collect(),
        );
    }
    datagrams
}

/// Sends `datagrams` as one buffer with UDP_SEGMENT = `segment` (one send, the kernel keeps it a train).
fn send_train(socket: &UdpSocket, segment: usize, datagrams: &[Vec<u8>], to: SocketAddr) {
    let buffer = datagrams.concat();
    assert!(
        buffer.len() > segment,
        "a train needs more than one segment"
    );
    let sent = socket.send_to(&buffer, to).expect("send GSO train");
    assert_eq!(sent, buffer.len());
}

fn expect_replies(socket: &UdpSocket, server: SocketAddr, datagrams: &[Vec<u8>]) {
    for (i, wanted) in datagrams.iter().enumerate() {
        let (reply, from) = recv_reply(socket, &format!("segment {i}"));
        assert_eq!(from, server);
        assert_eq!(
            reply.len(),
            wanted.len(),
            "reply {i} must be one segment, answered separately"
        );
        assert_eq!(&reply, wanted, "reply {i} differs (order or content)");
    }
}

fn gso_train_round_trip(extra: &[&str]) {
    let daemon = Daemon::start_v4(1, extra);
    let client = client_for(daemon.addr);
    if !set_gso(&client, 100) {
        return;
    }
    let datagrams = train(1, 100, 10, 37);
    send_train(&client, 100, &datagrams, daemon.addr);
    expect_replies(&client, daemon.addr, &datagrams);
    let summary = daemon.stop();
    let n = datagrams.len() as u64;
    summary.assert_total_why("rx", n, "each segment is one datagram");
    summary.assert_total("tx", n);
    summary.assert_total("rx_bytes", 1037);
    summary.assert_total("tx_bytes", 1037);
    if extra.contains(&"--no-gro") {
        summary.assert_total_why("gro_trains", 0, "--no-gro must receive no GRO trains");
    } else if gro_engages() {
        summary.assert_total_why(
            "gro_trains",
            1,
            "with GRO the train must arrive coalesced, as one GRO train",
        );
        // The echo of a coalesced train leaves as a train when GSO is on (whole-train fast path).
        if !extra.contains(&"--no-gso") {
            summary.assert_total_at_least_why(
                "gso_trains",
                1,
                "with GRO and GSO the replies to a train must leave as a GSO train",
            );
        }
    }
    if extra.contains(&"--no-gso") {
        summary.assert_total_why("gso_trains", 0, "--no-gso must send every reply on its own");
    }
    summary.assert_accounting_holds();
}

/// Whether this kernel offers UDP_GRO, so that a daemon with GRO on must report `gro_trains`; a skip
/// note (or, with `UDPD_REQUIRE_FEATURES=1`, a failure) when it does not.
fn gro_engages() -> bool {
    feature(
        kernel_has_gro(),
        "this kernel has no UDP_GRO: cannot check that GRO engaged",
    )
}

#[test]
fn gso_train_is_answered_per_datagram_without_gso_replies() {
    gso_train_round_trip(&["--no-gso"]);
}

#[test]
fn gso_train_is_answered_per_datagram_without_any_offload() {
    gso_train_round_trip(&["--no-gso", "--no-gro"]);
}

/// The non-echo handlers answer each datagram of a coalesced train too: `upper` through its train fast
/// path, `ack` one reply per datagram.
#[test]
fn gso_train_is_answered_by_upper_and_ack_per_datagram() {
    for (handler, extra) in [
        ("upper", &[][..]),
        ("upper", &["--no-gro"][..]),
        ("ack:xy", &[][..]),
    ] {
        let mut args = vec!["--handler", handler];
        args.extend_from_slice(extra);
        let daemon = Daemon::start_v4(1, &args);
        let client = client_for(daemon.addr);
        if !set_gso(&client, 100) {
            return;
        }
        let datagrams: Vec<Vec<u8>> = (0..8u8)
            .map(|i| {
                format!("segment {i} of a train, lower case ")
                    .repeat(4)
                    .into_bytes()[..100]
                    .to_vec()
            })
            .chain(std::iter::once(b"short tail".to_vec()))
            .collect();
        send_train(&client, 100, &datagrams, daemon.addr);
        let expected: Vec<Vec<u8>> = datagrams
            .iter()
            .map(|d| match handler {
                "upper" => d.to_ascii_uppercase(),
                _ => b"xy".to_vec(),
            })
            .collect();
        expect_replies(&client, daemon.addr, &expected);
        let summary = daemon.stop();
        assert_eq!(summary.total("rx"), 9, "{handler} {extra:?}");
        assert_eq!(summary.total("tx"), 9, "{handler} {extra:?}");
        if extra.is_empty() && gro_engages() {
            summary.assert_total_why(
                "gro_trains",
                1,
                &format!("{handler}: the train must arrive as one GRO train"),
            );
            summary.assert_total_at_least_why(
                "gso_trains",
                1,
                &format!("{handler}: the replies to a coalesced train must leave as GSO trains"),
            );
        }
        summary.assert_accounting_holds();
    }
}

#[test]
fn gso_train_is_answered_per_datagram_with_gro() {
    gso_train_round_trip(&[]);
}

#[test]
fn gso_train_is_answered_per_datagram_without_gro() {
    gso_train_round_trip(&["--no-gro"]);
}

fn gso_mixed_trains(extra: &[&str]) {
    let daemon = Daemon::start_v4(1, extra);
    let client = client_for(daemon.addr);
    if !set_gso(&client, 100) {
        return;
    }
    // (segment size, full segments, tail): a short tail, an exact fit, tiny segments, big segments.
    let plan = [
        (100, 5, 30),
        (300, 3, 0),
        (7, 20, 3),
        (1000, 2, 999),
        (64, 40, 1),
    ];
    let mut all = Vec::new();
    for (id, &(segment, full, tail)) in plan.iter().enumerate() {
        assert!(set_gso(&client, segment));
        let datagrams = train(id as u8, segment, full, tail);
        send_train(&client, segment, &datagrams, daemon.addr);
        // A plain datagram (no longer than the segment size, so not a train) between trains.
        let single = vec![b'a' + id as u8; segment.min(5)];
        client.send_to(&single, daemon.addr).expect("send single");
        all.extend(datagrams);
        all.push(single);
    }
    client.send_to(&[], daemon.addr).expect("send empty");
    all.push(Vec::new());
    expect_replies(&client, daemon.addr, &all);
    let summary = daemon.stop();
    let n = all.len() as u64;
    let bytes: u64 = all.iter().map(|d| d.len() as u64).sum();
    summary.assert_total("rx", n);
    summary.assert_total("tx", n);
    summary.assert_total("rx_bytes", bytes);
    summary.assert_total("tx_bytes", bytes);
    if !extra.contains(&"--no-gro") && gro_engages() {
        summary.assert_total_why(
            "gro_trains",
            plan.len() as u64,
            "with GRO each train must arrive coalesced",
        );
        summary.assert_total_at_least_why(
            "gso_trains",
            1,
            "with GRO and GSO echoed trains must leave as GSO trains",
        );
    }
    summary.assert_accounting_holds();
}

#[test]
fn gso_mixed_trains_are_answered_in_order_with_gro() {
    gso_mixed_trains(&[]);
}

#[test]
fn gso_mixed_trains_are_answered_in_order_without_gro() {
    gso_mixed_trains(&["--no-gro"]);
}

fn gso_train_truncation(extra: &[&str]) {
    let mut args = vec!["--max-datagram", "100"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start_v4(1, &args);
    let client = client_for(daemon.addr);
    if !set_gso(&client, 200) {
        return;
    }
    // Five 200-byte segments, all over the limit: five truncated, no reply.
    send_train(&client, 200, &train(1, 200, 5, 0), daemon.addr);
    // Four 150-byte segments over the limit and a 50-byte tail under it: four truncated, the tail answered.
    assert!(set_gso(&client, 150));
    let mixed = train(2, 150, 4, 50);
    send_train(&client, 150, &mixed, daemon.addr);
    let (reply, _) = recv_reply(&client, "the 50-byte tail of a truncated train");
    assert_eq!(
        &reply,
        mixed.last().unwrap(),
        "only the tail may be answered"
    );
    // A plain small datagram answers last: one worker, in order, so everything before it was handled.
    let probe = round_trip(&client, daemon.addr, b"probe");
    assert_eq!(probe, b"probe");
    assert_silent(&client, "after the probe");
    let summary = daemon.stop();
    summary.assert_total_why("truncated", 9, "one truncated per oversize segment");
    summary.assert_total("tx", 2);
    summary.assert_total("rx", 11);
    if !extra.contains(&"--no-gro") && gro_engages() {
        summary.assert_total_why(
            "gro_trains",
            2,
            "with GRO both trains must arrive coalesced",
        );
    }
    summary.assert_accounting_holds();
}

#[test]
fn gso_train_over_max_datagram_is_truncated_per_segment_with_gro() {
    gso_train_truncation(&[]);
}

#[test]
fn gso_train_over_max_datagram_is_truncated_per_segment_without_gro() {
    gso_train_truncation(&["--no-gro"]);
}

/// Replies that outgrow the worker's reply queue within one receive batch are sent mid-batch, not dropped:
/// an `ack` handler answering 1000 bytes to each 16-byte request (amplification cap off) turns one batch
/// of small coalesced trains into more reply bytes than the 4 MiB queue holds. The trains are small (64 ×
/// 16 bytes) so that one receive, bounded in bytes, still takes hundreds of them.
#[test]
fn replies_larger_than_the_queue_are_flushed_mid_batch_not_dropped() {
    let text = "a".repeat(1000);
    let handler = format!("ack:{text}");
    let daemon = Daemon::start_v4(
        1,
        &[
            "--handler",
            &handler,
            "--max-amplification",
            "0",
            "--batch",
            "256",
            "--rcvbuf",
            "33554432",
        ],
    );
    let client = client_for(daemon.addr);
    if !set_gso(&client, 16) {
        return;
    }
    let per_train = 64;
    let trains = queue_trains_while_stopped(&daemon, &client, 400, 16, per_train);
    let summary = daemon.stop();
    summary.assert_accounting_holds();
    assert_eq!(
        summary.total("tx_backpressure"),
        0,
        "a full queue must be flushed first"
    );
    assert_eq!(summary.total("tx"), summary.total("rx"));
    assert_eq!(summary.total("tx_bytes"), summary.total("tx") * 1000);
    assert_eq!(
        summary.total("rx") + summary.total("kernel_rx_overflow") * per_train,
        trains * per_train,
        "every train is received or dropped whole by the kernel"
    );
    if gro_engages() {
        summary.assert_total_at_least_why("gro_trains", 1, "the trains must arrive coalesced");
        summary.assert_total_at_least_why(
            "gso_trains",
            1,
            "equal-size replies to one peer must leave as GSO trains",
        );
        let largest = summary.batches["max"] as usize;
        assert!(
            largest * 1000 > udpd::serve::worker::QUEUE_BYTES,
            "the premise: one receive of {largest} datagrams must outgrow the reply queue"
        );
    }
}

/// Stops the daemon, sends `trains` GSO trains of `per_train` × `segment` bytes so that they queue up in
/// its (large) receive buffer, lets it go on and waits (bounded) until it has read them all; returns
/// `trains`.
fn queue_trains_while_stopped(
    daemon: &Daemon,
    client: &UdpSocket,
    trains: u64,
    segment: usize,
    per_train: u64,
) -> u64 {
    daemon.signal(nix::sys::signal::Signal::SIGSTOP);
    for id in 0..trains {
        send_train(
            client,
            segment,
            &train(id as u8, segment, per_train as usize, 0),
            daemon.addr,
        );
    }
    daemon.signal(nix::sys::signal::Signal::SIGCONT);
    wait_receive_queue_empty(daemon.addr, Duration::from_secs(10));
    trains
}

/// One receive takes only a few coalesced trains, not 64 of them (up to 4 MiB, out of the caches): 40
/// trains of 32 × 1400 bytes queued while the daemon is stopped are read a few at a time, so no receive
/// brings more than `RECEIVE_BYTES_BUDGET` worth of trains.
#[test]
fn a_queue_of_gro_trains_is_read_a_few_trains_per_receive() {
    let daemon = Daemon::start_v4(1, &["--handler", "discard", "--rcvbuf", "33554432"]);
    let client = client_for(daemon.addr);
    if !set_gso(&client, 1400) {
        return;
    }
    let trains = queue_trains_while_stopped(&daemon, &client, 40, 1400, 32);
    let summary = daemon.stop();
    summary.assert_accounting_holds();
    summary.assert_total("rx", trains * 32);
    if !gro_engages() {
        return;
    }
    summary.assert_total_at_least_why("gro_trains", 2, "the trains must arrive coalesced");
    let largest = summary.batches["max"] as usize;
    let trains_per_receive = udpd::serve::receive::RECEIVE_BYTES_BUDGET / (32 * 1400);
    assert!(
        largest <= trains_per_receive * 32,
        "a receive brought {largest} datagrams: more than {trains_per_receive} trains of 32"
    );
}

/// The default latency sampling stamps every receive that follows a wake-up: in ping-pong (one request in
/// flight) every reply is measured, and the summary says so.
#[test]
fn a_quiet_worker_stamps_every_reply_by_default() {
    let daemon = Daemon::start_v4(1, &[]);
    let client = client_for(daemon.addr);
    for i in 0..200u32 {
        let payload = i.to_be_bytes();
        assert_eq!(round_trip(&client, daemon.addr, &payload), payload);
    }
    let summary = daemon.stop();
    summary.assert_total("tx", 200);
    assert_eq!(
        summary.latency_us.get("count").copied(),
        Some(200.0),
        "{}",
        summary.stdout
    );
    assert!(
        summary
            .stdout
            .contains("(200 of the histogram's 200 replies stamped)"),
        "the summary must say how many replies were stamped:\n{}",
        summary.stdout
    );
}

/// `--latency-sample 4 --latency-all-below 0`: timestamps only in windows covering a quarter of the time,
/// at any rate, each stamped reply counted four times: fewer replies are stamped than answered, some are
/// (the kernel's switch engaged within each window), and the histogram counts exactly four per stamp.
#[test]
fn a_loud_server_stamps_in_windows_and_weighs_each_reply_n() {
    const REQUESTS: u32 = 600;
    let daemon = Daemon::start_v4(1, &["--latency-sample", "4", "--latency-all-below", "0"]);
    let client = client_for(daemon.addr);
    // Spread over several window periods (200 ms each): pacing, not synchronisation.
    for i in 0..REQUESTS {
        let payload = i.to_be_bytes();
        assert_eq!(round_trip(&client, daemon.addr, &payload), payload);
        std::thread::sleep(Duration::from_millis(2));
    }
    let summary = daemon.stop();
    summary.assert_total("tx", u64::from(REQUESTS));
    let header = summary
        .stdout
        .lines()
        .find(|line| {
            line.contains("latency sampled above 0 datagrams/s: timestamps on 1/4 of the time")
        })
        .unwrap_or_else(|| {
            panic!(
                "the summary must say latency is sampled:\n{}",
                summary.stdout
            )
        });
    let stamped: f64 = header
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stamped count in {header}"));
    let count = summary.latency_us.get("count").copied().unwrap_or(0.0);
    assert!(
        stamped > 0.0 && stamped < f64::from(REQUESTS),
        "windows must stamp some replies but not all, stamped {stamped}:\n{}",
        summary.stdout
    );
    assert_eq!(count, 4.0 * stamped, "each stamped reply counts 4 times");
}

/// An idle worker sleeps in its blocking receive (the kernel's datagram wait), not in its poll set
/// (`epoll_wait`): one syscall per wake-up. Read from each worker thread's `/proc/.../wchan`.
#[test]
fn an_idle_worker_sleeps_in_its_receive_not_in_its_poll_set() {
    let daemon = Daemon::start_v4(2, &[]);
    let client = client_for(daemon.addr);
    assert_eq!(round_trip(&client, daemon.addr, b"wake"), b"wake");
    let tasks = format!("/proc/{}/task", daemon.pid());
    let workers: Vec<_> = std::fs::read_dir(&tasks)
        .expect("list the daemon's threads")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|task| {
            std::fs::read_to_string(task.join("comm"))
                .is_ok_and(|name| name.starts_with("udpd-worker-"))
        })
        .collect();
    assert_eq!(workers.len(), 2, "two worker threads in {tasks}");
    // `wchan` names the kernel function a sleeping thread waits in, and reads "0" while it runs (or
    // always, where the kernel hides it).
    let wchan = |task: &std::path::Path| {
        std::fs::read_to_string(task.join("wchan"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    for task in &workers {
        // A worker wakes every few milliseconds (its receive timeout) to look at the clock: look until
        // it is caught asleep.
        let mut last_sleep = None;
        loop {
            let seen = wchan(task);
            if seen.contains("wait_for_more_packets") {
                break;
            }
            if !seen.is_empty() && seen != "0" {
                last_sleep = Some(seen);
            }
            if Instant::now() >= deadline {
                match last_sleep {
                    Some(other) => {
                        panic!("{} sleeps in {other:?}, not in a receive", task.display())
                    }
                    None => {
                        skip_or_fail(
                            "this kernel does not show where a thread sleeps (/proc/PID/task/TID/wchan)",
                        );
                        return;
                    }
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
    let summary = daemon.stop();
    summary.assert_total("tx", 1);
    summary.assert_accounting_holds();
}
