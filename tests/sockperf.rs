//! `udpd serve --handler sockperf` against sockperf's own client (ping-pong, under-load) and against
//! hand-built datagrams: what is answered, what is not, and how the summary counts both.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{
    assert_silent, client_for, feature, kernel_has_gro, kernel_has_gso, recv_reply, round_trip,
    run_program_to_end, skip_or_fail, tool_runs, Daemon,
};
use nix::sys::socket::{setsockopt, sockopt};
use udpd::handler::sockperf::{Header, FLAG_CLIENT, FLAG_PONG_REQUEST, FLAG_WARMUP, HEADER_LEN};

/// Longest a sockperf client run of `-t 2` may take (it warms up first, then runs, then prints).
const SOCKPERF_TIMEOUT: Duration = Duration::from_secs(30);
const PING: u16 = FLAG_CLIENT | FLAG_PONG_REQUEST;

/// Whether the `sockperf` client is installed; a skip (or, under `UDPD_REQUIRE_FEATURES=1`, a failure)
/// when it is not.
fn sockperf_installed() -> bool {
    let present = tool_runs("sockperf", &["--version"]);
    if !present {
        skip_or_fail("sockperf not installed");
    }
    present
}

/// What a sockperf client run reported (its summary lines, colours stripped).
#[derive(Debug)]
struct Report {
    /// `[Total Run] ... SentMessages=N; ReceivedMessages=M` (warm-up excluded).
    total_sent: u64,
    total_received: u64,
    /// `[Valid Duration] ... ReceivedMessages=M`.
    valid_received: u64,
    /// `Total N observations`.
    observations: u64,
    /// `# dropped messages = A; # duplicated messages = B; # out-of-order messages = C`.
    dropped: u64,
    duplicated: u64,
    out_of_order: u64,
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for skipped in chars.by_ref() {
                if skipped == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number right after `key` in `line` (`key` includes its `=` or space).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Runs `sockperf ARGS` to the end (bounded), asserts exit 0 and parses its summary; panics, quoting the
/// output, when a line is missing.
fn run_sockperf(args: &[&str]) -> Report {
    let (code, stdout, stderr) = run_program_to_end("sockperf", args, b"", SOCKPERF_TIMEOUT);
    let text = strip_colours(&format!("{stdout}\n{stderr}"));
    assert_eq!(code, 0, "sockperf {args:?} failed:\n{text}");
    let find = |marker: &str| {
        text.lines()
            .find(|line| line.contains(marker))
            .unwrap_or_else(|| {
                panic!("no {marker:?} line in the output of sockperf {args:?}:\n{text}")
            })
    };
    let total = find("[Total Run]");
    let valid = find("[Valid Duration]");
    let losses = find("# dropped messages");
    let observations = find(" observations;");
    let get = |line: &str, key: &str| {
        number_after(line, key).unwrap_or_else(|| panic!("no {key:?} in {line:?}:\n{text}"))
    };
    Report {
        total_sent: get(total, "SentMessages="),
        total_received: get(total, "ReceivedMessages="),
        valid_received: get(valid, "ReceivedMessages="),
        observations: get(observations, "Total "),
        dropped: get(losses, "# dropped messages ="),
        duplicated: get(losses, "# duplicated messages ="),
        out_of_order: get(losses, "# out-of-order messages ="),
    }
}

fn assert_clean(report: &Report, what: &str) {
    assert!(
        report.observations > 0 && report.valid_received > 0,
        "{what}: no observations: {report:?}"
    );
    assert_eq!(
        (report.dropped, report.duplicated, report.out_of_order),
        (0, 0, 0),
        "{what}: sockperf saw dropped/duplicated/out-of-order messages: {report:?}"
    );
}

/// A `--handler sockperf` daemon and its port as text, or `None` (after saying why) without sockperf.
fn sockperf_daemon() -> Option<(Daemon, String)> {
    if !sockperf_installed() {
        return None;
    }
    let daemon = Daemon::start_v4(1, &["--handler", "sockperf"]);
    let port = daemon.port().to_string();
    Some((daemon, port))
}

#[test]
fn sockperf_ping_pong_is_answered_at_every_message_size() {
    let Some((daemon, port)) = sockperf_daemon() else {
        return;
    };
    let (mut sent, mut received) = (0, 0);
    for size in ["14", "64", "1400"] {
        let report = run_sockperf(&[
            "ping-pong",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "2",
            "-m",
            size,
        ]);
        assert_clean(&report, &format!("ping-pong -m {size}"));
        sent += report.total_sent;
        received += report.total_received;
    }
    let summary = daemon.stop();
    let tx = summary.total("tx");
    assert!(
        received <= tx && tx <= sent,
        "udpd answered {tx}; the clients sent {sent} pings and received {received} pongs:\n{}",
        summary.stdout
    );
    summary.assert_total_why(
        "no_reply",
        0,
        "every ping-pong message asks for a reply (sockperf sends warm-up messages only to multicast)",
    );
    summary.assert_accounting_holds();
}

#[test]
fn sockperf_under_load_gets_every_reply_it_asks_for() {
    let Some((daemon, port)) = sockperf_daemon() else {
        return;
    };
    let report = run_sockperf(&[
        "under-load",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "2",
        "--mps",
        "10000",
    ]);
    assert_clean(&report, "under-load --mps 10000");
    let summary = daemon.stop();
    assert!(
        summary.total("tx") >= report.total_received,
        "udpd sent fewer replies than sockperf received: {report:?}\n{}",
        summary.stdout
    );
    assert!(
        summary.total("no_reply") > summary.total("tx"),
        "under-load asks a reply of one message in 100 (--reply-every): the rest count as no_reply:\n{}",
        summary.stdout
    );
    summary.assert_accounting_holds();
}

/// A `len`-byte sockperf message with these flags and its own length in the header.
fn message(sequence: u64, flags: u16, len: usize) -> Vec<u8> {
    let mut bytes = Header {
        sequence,
        flags,
        length: u32::try_from(len).expect("length fits"),
    }
    .encode()
    .to_vec();
    bytes.extend((0..len - HEADER_LEN).map(|i| (i * 7 + sequence as usize) as u8));
    bytes
}

/// What `sockperf server` sends back for `request`: the same bytes, client flag cleared.
fn pong_of(request: &[u8]) -> Vec<u8> {
    let mut header = Header::parse(request).expect("a message");
    header.flags &= !FLAG_CLIENT;
    let mut reply = header.encode().to_vec();
    reply.extend_from_slice(&request[HEADER_LEN..]);
    reply
}

#[test]
fn what_sockperf_server_ignores_gets_no_reply_and_counts_as_no_reply() {
    let daemon = Daemon::start_v4(1, &["--handler", "sockperf"]);
    let client = client_for(daemon.addr);
    let mut wrong_length = message(1, PING, 64);
    wrong_length[10..HEADER_LEN].copy_from_slice(&63u32.to_be_bytes());
    let ignored: Vec<(&str, Vec<u8>)> = vec![
        ("plain text", b"hello, not sockperf".to_vec()),
        ("empty", Vec::new()),
        (
            "shorter than the header",
            message(1, PING, HEADER_LEN)[..13].to_vec(),
        ),
        ("length field is not the datagram's", wrong_length),
        (
            "a server's reply (client flag clear)",
            message(2, FLAG_PONG_REQUEST, 64),
        ),
        ("a warm-up message", message(3, PING | FLAG_WARMUP, 64)),
        (
            "a client message asking no reply",
            message(4, FLAG_CLIENT, 64),
        ),
    ];
    for (_, datagram) in &ignored {
        client.send_to(datagram, daemon.addr).expect("send");
    }
    // One worker reads in order: once this ping is answered, everything before it has been judged.
    let ping = message(5, PING, 100);
    assert_eq!(round_trip(&client, daemon.addr, &ping), pong_of(&ping));
    assert_silent(&client, "the ignored datagrams");
    let summary = daemon.stop();
    let n = ignored.len() as u64;
    summary.assert_total_why("rx", n + 1, "every datagram is received");
    summary.assert_total_why("tx", 1, "only the ping is answered");
    summary.assert_total_why(
        "no_reply",
        n,
        "each ignored datagram is counted as no_reply",
    );
    summary.assert_accounting_holds();
}

/// Sends `datagrams` (all `segment` bytes but the last) as one UDP_SEGMENT train.
fn send_train(socket: &UdpSocket, segment: usize, datagrams: &[Vec<u8>], to: SocketAddr) {
    let size = i32::try_from(segment).expect("segment fits");
    setsockopt(socket, sockopt::UdpGsoSegment, &size).expect("set UDP_SEGMENT");
    let buffer = datagrams.concat();
    assert_eq!(
        socket.send_to(&buffer, to).expect("send train"),
        buffer.len()
    );
}

/// A coalesced train of pings is answered through the train fast path (one GSO train of pongs); a train
/// with one segment that must not be answered falls back to one by one and answers all the others.
#[test]
fn a_gro_train_of_pings_is_answered_segment_by_segment() {
    if !feature(kernel_has_gso(), "this kernel has no UDP_SEGMENT (UDP GSO)") {
        return;
    }
    let daemon = Daemon::start_v4(1, &["--handler", "sockperf"]);
    let client = client_for(daemon.addr);
    let mut pings: Vec<Vec<u8>> = (0..8).map(|i| message(i, PING, 100)).collect();
    pings.push(message(8, PING, 37));
    send_train(&client, 100, &pings, daemon.addr);
    for (i, ping) in pings.iter().enumerate() {
        let (reply, from) = recv_reply(&client, &format!("ping {i} of the train"));
        assert_eq!(from, daemon.addr);
        assert_eq!(reply, pong_of(ping), "pong {i} (order, length or flags)");
    }
    let mut mixed: Vec<Vec<u8>> = (10..16).map(|i| message(i, PING, 100)).collect();
    mixed[3] = message(13, FLAG_CLIENT, 100);
    send_train(&client, 100, &mixed, daemon.addr);
    for (i, ping) in mixed.iter().enumerate().filter(|(i, _)| *i != 3) {
        let (reply, _) = recv_reply(&client, &format!("ping {i} of the mixed train"));
        assert_eq!(reply, pong_of(ping), "pong {i} of the mixed train");
    }
    assert_silent(&client, "the segment that asked no reply");
    let summary = daemon.stop();
    let sent = (pings.len() + mixed.len()) as u64;
    summary.assert_total("rx", sent);
    summary.assert_total("tx", sent - 1);
    summary.assert_total_why("no_reply", 1, "the one segment without a pong request");
    if feature(
        kernel_has_gro(),
        "this kernel has no UDP_GRO: cannot check the train path",
    ) {
        summary.assert_total_why("gro_trains", 2, "each train arrives coalesced");
        summary.assert_total_at_least_why(
            "gso_trains",
            1,
            "the all-ping train is answered whole, as one GSO train",
        );
    }
    summary.assert_accounting_holds();
}
