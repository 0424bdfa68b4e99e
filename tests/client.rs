//! `udpd client` driven through a pipe against small servers started in the test (and the real daemon).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest any one client run may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A test server on 127.0.0.1:0 answering each datagram with `reply(request)`; every request's bytes are
/// also sent on the returned channel.
fn server(
    reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let (seen, requests) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let request = buf[..len].to_vec();
            if let Some(answer) = reply(&request) {
                let _ = socket.send_to(&answer, from);
            }
            if seen.send(request).is_err() {
                break;
            }
        }
    });
    (addr, requests)
}

/// An upper-casing echo server, as in the tutorials.
fn upper_server() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    server(|request| Some(request.to_ascii_uppercase()))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `udpd client ARGS` with `input` on its stdin (a pipe), bounded by [`RUN_TIMEOUT`].
fn client(args: &[&str], input: &[u8]) -> Run {
    let mut all = vec!["client"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::run_to_end(&all, input, RUN_TIMEOUT);
    Run {
        code,
        stdout,
        stderr,
    }
}

/// The lines of `text` that start with `prefix`.
fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// Checks `reply from ADDR (N bytes, RTT ms): TEXT` and returns the RTT.
fn assert_reply_line(line: &str, from: SocketAddr, bytes: usize, text: &str) -> f64 {
    let head = format!("reply from {from} ({bytes} bytes, ");
    let rest = line
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{line:?} does not start with {head:?}"));
    let (rtt, tail) = rest
        .split_once(" ms)")
        .unwrap_or_else(|| panic!("no RTT in {line:?}"));
    let expected_tail = if text.is_empty() {
        ":".to_string()
    } else {
        format!(": {text}")
    };
    assert_eq!(tail, expected_tail, "in {line:?}");
    let rtt: f64 = rtt
        .parse()
        .unwrap_or_else(|_| panic!("bad RTT in {line:?}"));
    assert!(rtt >= 0.0, "{line:?}");
    rtt
}

#[test]
fn each_line_is_one_datagram_and_its_reply_is_printed() {
    let (addr, requests) = upper_server();
    let run = client(&[&addr.to_string()], b"hello\nsecond line\r\n");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 2, "stdout: {}", run.stdout);
    assert_reply_line(replies[0], addr, 5, "HELLO");
    assert_reply_line(replies[1], addr, 11, "SECOND LINE");
    assert_eq!(requests.recv_timeout(RUN_TIMEOUT).unwrap(), b"hello");
    assert_eq!(requests.recv_timeout(RUN_TIMEOUT).unwrap(), b"second line");
    assert!(
        !run.stdout.contains("> "),
        "no prompt on a pipe: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("from any other address are ignored"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_empty_line_sends_an_empty_datagram() {
    let (addr, requests) = upper_server();
    let run = client(&[&addr.to_string()], b"\n");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 1, "stdout: {}", run.stdout);
    assert_reply_line(replies[0], addr, 0, "");
    assert_eq!(requests.recv_timeout(RUN_TIMEOUT).unwrap(), b"");
}

#[test]
fn a_silent_server_gives_no_reply_lines_and_retries_resend() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let run = client(
        &[&addr.to_string(), "--timeout", "0.2", "--retries", "2"],
        b"anyone?\n",
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("no reply from {addr} after 0.200 s, resending (1 of 2)"),
            format!("no reply from {addr} after 0.200 s, resending (2 of 2)"),
            format!("no reply from {addr} after 0.200 s"),
        ],
        "stdout: {}",
        run.stdout
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for attempt in 0..3 {
        let len = silent
            .recv(&mut buf)
            .expect("each attempt sends a datagram");
        assert_eq!(&buf[..len], b"anyone?", "attempt {attempt}");
    }
}

#[test]
fn default_timeout_is_one_second() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let run = client(&[&addr.to_string()], b"x\n");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        run.stdout.trim_end(),
        format!("no reply from {addr} after 1.000 s")
    );
}

#[test]
fn ping_mode_prints_each_reply_and_a_summary() {
    let (addr, requests) = upper_server();
    let run = client(
        &[&addr.to_string(), "--count", "3", "--interval", "10"],
        b"",
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 3, "stdout: {}", run.stdout);
    for (i, line) in replies.iter().enumerate() {
        assert_reply_line(line, addr, 6, &format!("PING {}", i + 1));
    }
    for seq in 1..=3 {
        assert_eq!(
            requests.recv_timeout(RUN_TIMEOUT).unwrap(),
            format!("ping {seq}").into_bytes()
        );
    }
    let summary = run.stdout.lines().last().unwrap();
    let rtts = summary
        .strip_prefix("3 sent, 3 received, 0% loss, rtt min/avg/max = ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("bad summary {summary:?}"));
    let rtts: Vec<f64> = rtts.split('/').map(|v| v.parse().unwrap()).collect();
    assert_eq!(rtts.len(), 3, "{summary}");
    assert!(rtts[0] <= rtts[1] && rtts[1] <= rtts[2], "{summary}");
}

#[test]
fn ping_mode_exits_1_when_every_ping_is_lost() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let run = client(
        &[
            &addr.to_string(),
            "--count",
            "2",
            "--interval",
            "10",
            "--timeout",
            "0.1",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert_eq!(
        lines_starting(&run.stdout, &format!("no reply from {addr} after 0.100 s")).len(),
        2,
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.lines().last().unwrap(),
        "2 sent, 0 received, 100% loss, rtt min/avg/max = -/-/- ms"
    );
    assert!(run.stderr.contains("udpd: error: "), "{}", run.stderr);
}

#[test]
fn ping_mode_counts_partial_loss() {
    // Answers only odd pings.
    let (addr, _requests) = server(|request| {
        let seq: u64 = std::str::from_utf8(request)
            .ok()?
            .strip_prefix("ping ")?
            .parse()
            .ok()?;
        (seq % 2 == 1).then(|| request.to_vec())
    });
    let run = client(
        &[
            &addr.to_string(),
            "--count",
            "3",
            "--interval",
            "0",
            "--timeout",
            "0.2",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        lines_starting(&run.stdout, "reply from").len(),
        2,
        "{}",
        run.stdout
    );
    assert_eq!(
        lines_starting(&run.stdout, "no reply from").len(),
        1,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("3 sent, 2 received, 33.3% loss, rtt min/avg/max = "),
        "{}",
        run.stdout
    );
}

#[test]
fn datagrams_from_other_addresses_are_ignored() {
    // A server that, before answering, has a stranger write to the client's port first.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 1024];
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            stranger.send_to(b"from a stranger", from).unwrap();
            socket.send_to(&buf[..len], from).unwrap();
        }
    });
    let run = client(&[&addr.to_string()], b"real\n");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 1, "stdout: {}", run.stdout);
    assert_reply_line(replies[0], addr, 4, "real");
    assert!(!run.stdout.contains("stranger"), "{}", run.stdout);
}

#[test]
fn binary_replies_are_escaped() {
    let (addr, _requests) = server(|_| Some(b"\xff\x00ok\n\x1b[31m".to_vec()));
    let run = client(&[&addr.to_string()], b"?\n");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 1, "stdout: {}", run.stdout);
    assert_reply_line(replies[0], addr, 10, "\\xff\\u{0}ok\\n\\u{1b}[31m");
}

#[test]
fn talks_to_the_real_daemon() {
    let daemon = common::Daemon::start("127.0.0.1:0", 1, &["--handler", "upper"]);
    let addr = daemon.addr;
    let run = client(&[&addr.to_string()], b"hi daemon\n\n");
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 2, "stdout: {}", run.stdout);
    assert_reply_line(replies[0], addr, 9, "HI DAEMON");
    assert_reply_line(replies[1], addr, 0, "");
    let run = client(
        &[&addr.to_string(), "--count", "3", "--interval", "10"],
        b"",
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        run.stdout.contains("3 sent, 3 received, 0% loss"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_flags_are_one_line_usage_errors() {
    for args in [
        vec!["not-an-address"],
        vec!["127.0.0.1:9", "--timeout", "0"],
        vec!["127.0.0.1:9", "--count", "0"],
        vec!["127.0.0.1:9", "--count", "2", "--retries", "1"],
    ] {
        let started = Instant::now();
        let run = client(&args, b"");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("udpd: error: "), "{}", run.stderr);
        assert!(started.elapsed() < RUN_TIMEOUT);
    }
}

#[test]
fn a_line_too_long_for_a_datagram_is_reported_and_the_next_line_still_goes() {
    let (addr, requests) = upper_server();
    let mut input = vec![b'x'; 70_000];
    input.extend_from_slice(b"\nnext\n");
    let run = client(&[&addr.to_string()], &input);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let replies = lines_starting(&run.stdout, "reply from");
    assert_eq!(replies.len(), 1, "stdout: {}", run.stdout);
    assert_reply_line(replies[0], addr, 4, "NEXT");
    assert_eq!(requests.recv_timeout(RUN_TIMEOUT).unwrap(), b"next");
    let complaints = lines_starting(&run.stderr, "udpd client: line of 70000 bytes not sent");
    assert_eq!(complaints.len(), 1, "stderr: {}", run.stderr);
    assert!(
        !run.stderr.contains("udpd: error"),
        "stderr: {}",
        run.stderr
    );
}
