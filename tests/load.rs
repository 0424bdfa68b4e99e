//! `udpd load` end to end: the real binary against small servers started in the test, on loopback only.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest any one run of the binary may take before the test kills it and fails.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// A UDP server on 127.0.0.1:0 in a thread, answering each datagram with `reply(request)` (None: silence).
struct Server {
    target: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn start(reply: fn(&[u8]) -> Option<Vec<u8>>) -> Server {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind test server");
        // Bounded waits: the loop looks at `stop` at least every 50 ms.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let target = socket.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop_flag.load(Ordering::Relaxed) {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = reply(&buf[..len]) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Server {
            target,
            stop,
            handle: Some(handle),
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    /// `TARGET --rate RATE --duration SECONDS EXTRA...`: the shape of most runs here.
    fn paced<'a>(&'a self, rate: &'a str, seconds: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![self.target(), "--rate", rate, "--duration", seconds];
        args.extend_from_slice(extra);
        args
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn echo(request: &[u8]) -> Option<Vec<u8>> {
    Some(request.to_vec())
}

fn upper(request: &[u8]) -> Option<Vec<u8>> {
    Some(request.to_ascii_uppercase())
}

/// Echoes with the last byte flipped: the kind of bug `--expect` is there to catch.
fn corrupt(request: &[u8]) -> Option<Vec<u8>> {
    let mut reply = request.to_vec();
    if let Some(last) = reply.last_mut() {
        *last ^= 0x55;
    }
    Some(reply)
}

fn pong(_request: &[u8]) -> Option<Vec<u8>> {
    Some(b"PONG".to_vec())
}

fn discard(_request: &[u8]) -> Option<Vec<u8>> {
    None
}

/// How a run of `udpd load` ended.
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `udpd load ARGS...` to completion (killing it past [`RUN_DEADLINE`]).
fn load(args: &[&str]) -> Output {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::run_to_end(&all, b"", RUN_DEADLINE);
    Output {
        code,
        stdout,
        stderr,
    }
}

/// A run with a JSON summary on stdout: returns it with the exit code and stderr.
fn load_json(args: &[&str]) -> (Json, Option<i32>, String) {
    let mut all = args.to_vec();
    all.extend(["--json", "-", "--quiet"]);
    let output = load(&all);
    let stdout = output.stdout;
    let stderr = output.stderr;
    assert!(
        stdout.trim_start().starts_with('{') && stdout.trim_end().ends_with('}'),
        "stdout is not one JSON object: {stdout:?} (stderr: {stderr})"
    );
    (Json(stdout), Some(output.code), stderr)
}

/// Just enough JSON reading for flat numeric keys of the summary object.
struct Json(String);

impl Json {
    fn raw(&self, key: &str) -> &str {
        let pattern = format!("\"{key}\":");
        let start = self
            .0
            .find(&pattern)
            .unwrap_or_else(|| panic!("no key {key} in {}", self.0))
            + pattern.len();
        let rest = &self.0[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim()
    }

    fn num(&self, key: &str) -> f64 {
        self.raw(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {}", self.0))
    }

    fn count(&self, key: &str) -> u64 {
        self.num(key) as u64
    }

    /// The accounting identity every run must satisfy.
    fn assert_counts_add_up(&self) {
        let sent = self.count("sent");
        let accounted = self.count("received")
            + self.count("mismatched")
            + self.count("late")
            + self.count("lost");
        assert_eq!(
            sent, accounted,
            "sent must equal received+mismatched+late+lost: {}",
            self.0
        );
        // The percentiles over every request sent count what got no correct reply at the top.
        if self.raw("latency_of_sent_us") != "null" {
            assert_eq!(
                self.count("unanswered"),
                self.count("lost") + self.count("mismatched"),
                "{}",
                self.0
            );
        }
    }

    /// A run whose every reply was right: none mismatched, some received, and the books balance.
    fn assert_all_matched(&self, context: &str) {
        assert_eq!(self.count("mismatched"), 0, "{context}: {}", self.0);
        assert!(self.count("received") > 0, "{context}: {}", self.0);
        self.assert_counts_add_up();
    }

    /// A run whose every reply was wrong: some mismatched, none received, and the books balance.
    fn assert_all_mismatched(&self, context: &str) {
        assert!(self.count("mismatched") > 0, "{context}: {}", self.0);
        assert_eq!(self.count("received"), 0, "{context}: {}", self.0);
        self.assert_counts_add_up();
    }
}

#[test]
fn echo_counts_add_up_with_no_mismatch() {
    let server = Server::start(echo);
    let (json, code, stderr) = load_json(&server.paced("2000", "1", &[]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json.raw("mode"), "\"open\"");
    assert_eq!(json.count("flows"), 4);
    assert_eq!(json.count("payload"), 64);
    assert!(json.count("sent") > 0);
    assert_eq!(json.count("duplicates"), 0);
    json.assert_all_matched("an echo server");
    assert!(json.num("p99") >= json.num("p50"));
    assert!(json.num("max") >= json.num("p99_99"));
}

#[test]
fn text_report_has_the_percentile_table() {
    let server = Server::start(echo);
    let output = load(&server.paced("1000", "0.5", &["--quiet"]));
    assert_eq!(output.code, 0, "{}", output.stderr);
    let text = output.stdout;
    for word in [
        "target",
        "offered 1000 pps",
        "received",
        "loss",
        "mismatched",
        "duplicates",
        "late",
        "p99.99",
        "max",
    ] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn expecting_upper_from_an_echo_server_counts_mismatches() {
    let server = Server::start(echo);
    let (json, _, stderr) = load_json(&server.paced("1000", "0.5", &["--expect", "upper"]));
    json.assert_all_mismatched(&stderr);
}

#[test]
fn an_upper_server_passes_expect_upper() {
    let server = Server::start(upper);
    let (json, code, stderr) =
        load_json(&server.paced("1000", "0.5", &["--expect", "upper", "--payload", "300"]));
    assert_eq!(code, Some(0), "{stderr}");
    json.assert_all_matched("an upper server, --expect upper");
}

#[test]
fn a_corrupting_server_is_caught() {
    let server = Server::start(corrupt);
    let (json, _, _) = load_json(&server.paced("1000", "0.5", &[]));
    json.assert_all_mismatched("a corrupting server");
}

#[test]
fn losses_are_counted_when_the_server_discards() {
    let server = Server::start(discard);
    let (json, code, stderr) = load_json(&server.paced("1000", "0.5", &["--timeout", "0.2"]));
    assert_eq!(code, Some(1), "a run with no replies must fail");
    assert!(
        stderr.contains(&format!("no replies received from {}", server.target())),
        "{stderr}"
    );
    assert!(json.count("sent") > 0);
    assert_eq!(json.count("lost"), json.count("sent"));
    assert_eq!(json.num("loss_ratio"), 1.0);
    assert_eq!(json.raw("latency_us"), "null");
}

#[test]
fn expect_none_reports_sends_only_and_succeeds() {
    let server = Server::start(discard);
    let output = load(&server.paced("1000", "0.3", &["--expect", "none", "--quiet"]));
    assert_eq!(output.code, 0, "{}", output.stderr);
    let text = output.stdout;
    assert!(text.contains("sent"), "{text}");
    assert!(
        !text.contains("received") && !text.contains("p99"),
        "{text}"
    );
}

#[test]
fn the_rate_limiter_holds_its_schedule() {
    let server = Server::start(echo);
    let (json, _, _) = load_json(&server.paced("2000", "1", &[]));
    let sent = json.count("sent");
    // A count, not a timing: the schedule releases rate*duration datagrams whatever the machine's speed.
    assert!(
        (1000..=3000).contains(&sent),
        "sent {sent} for 2000 pps over 1 s"
    );
    assert_eq!(json.num("offered_pps"), 2000.0);
}

#[test]
fn warmup_is_not_counted() {
    let server = Server::start(echo);
    let (json, _, _) = load_json(&server.paced("2000", "0.5", &["--warmup", "0.5"]));
    let sent = json.count("sent");
    // Only the measured half second is counted (about 1000), not the warmup before it.
    assert!((500..=1500).contains(&sent), "sent {sent}");
    json.assert_counts_add_up();
}

#[test]
fn closed_loop_keeps_requests_in_flight_and_accounts_for_them() {
    let server = Server::start(echo);
    let (json, code, stderr) =
        load_json(&[server.target(), "--outstanding", "2", "--duration", "0.5"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json.raw("mode"), "\"closed\"");
    assert_eq!(json.raw("offered_pps"), "null");
    json.assert_all_matched("closed loop");
}

#[test]
fn ack_replies_and_short_payloads_are_matched_in_order() {
    let server = Server::start(pong);
    let (json, code, _) = load_json(&server.paced("1000", "0.5", &["--expect", "ack:PONG"]));
    assert_eq!(code, Some(0));
    json.assert_all_matched("--expect ack:PONG");
    // The same server is wrong for the default ack text.
    let (json, _, _) = load_json(&server.paced("1000", "0.3", &["--expect", "ack"]));
    assert!(json.count("mismatched") > 0);

    let echo_server = Server::start(echo);
    let (json, code, _) = load_json(&echo_server.paced("1000", "0.5", &["--payload", "7"]));
    assert_eq!(code, Some(0));
    json.assert_all_matched("7-byte payloads");
}

#[test]
fn gso_gro_spread_and_threads_keep_the_books_straight() {
    let server = Server::start(echo);
    for extra in [
        &["--gso", "--gro", "--batch", "16"][..],
        &["--pattern", "spread", "--payload", "20"][..],
        &["--threads", "2", "--flows", "3"][..],
        // More flows per thread than it reads every turn: only those epoll says are readable.
        &["--threads", "2", "--flows", "64", "--pattern", "spread"][..],
    ] {
        let (json, code, stderr) = load_json(&server.paced("1000", "0.5", extra));
        let context = format!("{extra:?}");
        assert_eq!(code, Some(0), "{context}: {stderr}");
        assert_eq!(json.count("duplicates"), 0, "{context}");
        json.assert_all_matched(&context);
        // Loopback at 1,000/s loses nothing: a flow whose replies were never read would show here.
        assert_eq!(json.count("lost"), 0, "{context}: {}", json.0);
    }
}

#[test]
fn hgrm_output_parses_back() {
    let server = Server::start(echo);
    let dir = std::env::temp_dir().join(format!("udpd-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latency.hgrm");
    let hgrm = path.to_str().unwrap();
    let (json, code, _) = load_json(&server.paced("2000", "0.5", &["--hgrm", hgrm]));
    assert_eq!(code, Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let mut previous = (0.0f64, 0.0f64, 0u64);
    let mut rows = 0;
    let mut total_in_footer = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if let Some(footer) = line.strip_prefix("#[Max     = ") {
            let count = footer.split("Total count    =").nth(1).unwrap();
            total_in_footer = Some(count.trim_end_matches(']').trim().parse::<u64>().unwrap());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let value: f64 = fields[0].parse().unwrap();
        let percentile: f64 = fields[1].parse().unwrap();
        let count: u64 = fields[2].parse().unwrap();
        assert!(
            value >= previous.0 && percentile >= previous.1 && count >= previous.2,
            "{line}"
        );
        assert!((0.0..=1.0).contains(&percentile));
        previous = (value, percentile, count);
        rows += 1;
    }
    assert!(rows > 5, "{text}");
    assert_eq!(previous.1, 1.0, "the last row is the 100th percentile");
    let replies = json.count("received") + json.count("late");
    assert_eq!(
        previous.2, replies,
        "last row's total count is every reply timed"
    );
    assert_eq!(total_in_footer, Some(replies));
    // The table is in microseconds: the max matches the JSON's.
    assert!((previous.0 - json.num("max")).abs() <= json.num("max") * 0.01 + 0.01);
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let server = Server::start(discard);
    let target = server.target();
    for args in [
        vec![target, "--payload", "70000"],
        vec![target, "--rate", "-1"],
        vec!["no.such.host.invalid:9"],
        vec![target, "--threads", "5", "--flows", "2"],
        vec![target, "--rate", "10", "--outstanding", "2"],
        vec![target, "--expect", "shout"],
    ] {
        let output = load(&args);
        assert_eq!(output.code, 2, "{args:?}");
        let stderr = output.stderr;
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("udpd: error: "), "{stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// The offloads end to end: `udpd load --gso --gro` (bulk bursts; closed loop, so that bursts are full
/// trains whatever the machine's speed, where an open-loop schedule mostly sends one datagram at a time)
/// against `udpd serve`. All replies come back correct, and the daemon's summary shows that requests
/// arrived coalesced (`gro_trains`) and that replies left as trains (`gso_trains`).
#[test]
fn load_with_gso_and_gro_against_the_daemon_engages_both_offloads() {
    let gso = common::kernel_has_gso();
    let gro = common::kernel_has_gro();
    if !(gso && gro) {
        return common::skip_or_fail(&format!(
            "this kernel lacks UDP GSO ({gso}) or UDP GRO ({gro}): the offloads cannot engage"
        ));
    }
    let daemon = common::Daemon::start_v4(1, &[]);
    let target = daemon.addr.to_string();
    let (json, code, stderr) = load_json(&[
        &target,
        "--gso",
        "--gro",
        "--pattern",
        "bulk",
        "--outstanding",
        "32",
        "--batch",
        "16",
        "--flows",
        "2",
        "--payload",
        "64",
        "--duration",
        "0.05",
        "--timeout",
        "5",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    json.assert_counts_add_up();
    let sent = json.count("sent");
    // Closed loop: the first burst of each flow alone is 16 datagrams; a run sends thousands.
    assert!(sent >= 32, "at least one burst per flow: {}", json.0);
    assert_eq!(json.count("mismatched"), 0, "{}", json.0);
    assert_eq!(json.count("duplicates"), 0, "{}", json.0);
    assert_eq!(json.count("late"), 0, "{}", json.0);
    assert_eq!(json.count("lost"), 0, "{}", json.0);
    assert_eq!(
        json.count("received"),
        sent,
        "every reply correct: {}",
        json.0
    );
    let summary = daemon.stop();
    summary.assert_accounting_holds();
    assert_eq!(
        summary.total("rx") + summary.total("kernel_rx_overflow"),
        sent,
        "the daemon saw every request:\n{}",
        summary.stdout
    );
    summary.assert_total_at_least_why(
        "gro_trains",
        1,
        "the load's GSO bursts must arrive coalesced (GRO trains)",
    );
    summary.assert_total_at_least_why(
        "gso_trains",
        1,
        "the replies to coalesced requests must leave as GSO trains",
    );
}
