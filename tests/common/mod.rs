//! Test harness for the real `udpd` binary: start a daemon on port 0, stop it with SIGTERM, parse its summary.
#![allow(dead_code)] // each test crate that includes this module uses only part of it

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Longest wait for the daemon to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the daemon to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout of client sockets: a bound on waiting for a reply that should come.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a reply that should NOT come.
pub const SILENCE: Duration = Duration::from_millis(300);

/// The counters every `worker N:` and the `total:` line carry (docs/SERVE_OUTPUT.md).
pub const COUNTER_KEYS: [&str; 13] = [
    "rx",
    "tx",
    "rx_bytes",
    "tx_bytes",
    "truncated",
    "no_reply",
    "tx_backpressure",
    "tx_error",
    "unsent_at_exit",
    "kernel_rx_overflow",
    "gso_disabled",
    "gro_trains",
    "gso_trains",
];

/// The path of the binary under test.
pub fn udpd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_udpd")
}

/// A running `udpd serve`, killed on drop unless stopped with [`Daemon::stop`].
pub struct Daemon {
    /// The address from the `listening on` line (port resolved, address as given).
    pub addr: SocketAddr,
    /// Worker count from the `listening on` line.
    pub workers: usize,
    child: Option<Child>,
    lines: Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Daemon {
    /// Starts `udpd serve --listen LISTEN --workers N --no-pin --quiet EXTRA...` and waits (bounded) for its
    /// `listening on ADDR (udp, N workers)` line.
    pub fn start(listen: &str, workers: usize, extra: &[&str]) -> Daemon {
        let workers_text = workers.to_string();
        let mut args = vec![
            "serve",
            "--listen",
            listen,
            "--workers",
            &workers_text,
            "--no-pin",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(udpd_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn udpd");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = collect_stderr(child.stderr.take().expect("piped stderr"));
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            workers: 0,
            child: Some(child),
            lines,
            stdout_seen: Vec::new(),
            stderr: Some(stderr),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match daemon.lines.recv_timeout(left) {
                Ok(line) => {
                    daemon.stdout_seen.push(line.clone());
                    if let Some((addr, n)) = parse_listening(&line) {
                        daemon.addr = addr;
                        daemon.workers = n;
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "udpd {args:?} printed no `listening on` line within {START_TIMEOUT:?}; stdout so far: {:?}",
                        daemon.stdout_seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let mut child = daemon.child.take().expect("child");
                    let status = wait_bounded(&mut child, STOP_TIMEOUT);
                    let stderr = daemon
                        .stderr
                        .take()
                        .expect("stderr")
                        .join()
                        .unwrap_or_default();
                    panic!(
                        "udpd {args:?} exited ({}) before listening; stdout: {:?}; stderr: {stderr:?}",
                        describe(status),
                        daemon.stdout_seen
                    )
                }
            }
        }
        assert_eq!(
            daemon.workers, workers,
            "the listening line names a different worker count: {:?}",
            daemon.stdout_seen
        );
        assert_ne!(
            daemon.addr.port(),
            0,
            "the listening line must name the bound port"
        );
        daemon
    }

    /// `127.0.0.1:0` with `workers` workers.
    pub fn start_v4(workers: usize, extra: &[&str]) -> Daemon {
        Daemon::start("127.0.0.1:0", workers, extra)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM, waits (bounded) for exit, asserts exit code 0 and parses the summary block.
    pub fn stop(mut self) -> Summary {
        let mut child = self.child.take().expect("running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM udpd");
        // Collect stdout to EOF, bounded: the daemon closes it when it exits.
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut eof = false;
        while !eof {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout_seen.push(line),
                Err(RecvTimeoutError::Disconnected) => eof = true,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "udpd did not exit within {STOP_TIMEOUT:?} of SIGTERM; stdout so far: {:#?}",
                        self.stdout_seen
                    );
                }
            }
        }
        let status = wait_bounded(&mut child, STOP_TIMEOUT);
        let stderr = self
            .stderr
            .take()
            .expect("stderr")
            .join()
            .unwrap_or_default();
        let stdout = self.stdout_seen.join("\n");
        assert_eq!(
            status.code(),
            Some(0),
            "udpd must exit 0 after SIGTERM, got {}; stdout:\n{stdout}\nstderr:\n{stderr}",
            describe(status)
        );
        let summary = Summary::parse(&stdout, &stderr);
        assert_eq!(
            summary.workers.len(),
            self.workers,
            "one `worker N:` line per worker expected; stdout:\n{stdout}"
        );
        summary
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `listening on ADDR (udp, N workers)` (also accepts `1 worker`).
pub fn parse_listening(line: &str) -> Option<(SocketAddr, usize)> {
    let rest = line.strip_prefix("listening on ")?;
    let (addr, rest) = rest.split_once(" (udp, ")?;
    let (n, rest) = rest.split_once(' ')?;
    if !rest.starts_with("worker") || !rest.ends_with(')') {
        return None;
    }
    Some((addr.parse().ok()?, n.parse().ok()?))
}

/// The parsed summary block printed at exit.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `== summary: ... ==`
    pub header: String,
    /// `worker N:` counters, indexed by N.
    pub workers: Vec<BTreeMap<String, u64>>,
    /// `total:` counters.
    pub total: BTreeMap<String, u64>,
    /// `latency_us:` values (mean is fractional).
    pub latency_us: BTreeMap<String, f64>,
    /// `batches:` values.
    pub batches: BTreeMap<String, f64>,
    /// The `accounting:` line, and its `key=N` terms.
    pub accounting_line: String,
    pub accounting: BTreeMap<String, u64>,
    /// Whether the accounting line ends in `(holds)`.
    pub holds: bool,
    /// `kernel:` terms: arrived, rx, kernel_rx_overflow.
    pub kernel: BTreeMap<String, u64>,
    /// Everything the daemon printed, for failure messages.
    pub stdout: String,
    pub stderr: String,
}

impl Summary {
    /// Parses the summary block out of a daemon's whole stdout; panics, quoting it, when a line is missing.
    pub fn parse(stdout: &str, stderr: &str) -> Summary {
        let mut summary = Summary {
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            ..Summary::default()
        };
        let start = stdout
            .lines()
            .position(|line| line.starts_with("== summary:"))
            .unwrap_or_else(|| {
                panic!("no `== summary:` line in stdout:\n{stdout}\nstderr:\n{stderr}")
            });
        let mut saw = (false, false, false, false, false);
        for line in stdout.lines().skip(start) {
            if line.starts_with("== summary:") {
                summary.header = line.to_string();
            } else if let Some(rest) = line.strip_prefix("worker ") {
                let (index, counters) = rest
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad worker line {line:?}"));
                let index: usize = index
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("bad worker index in {line:?}"));
                assert_eq!(
                    index,
                    summary.workers.len(),
                    "worker lines out of order in:\n{stdout}"
                );
                let counters = parse_u64_terms(counters);
                check_counter_keys(&counters, line);
                summary.workers.push(counters);
            } else if let Some(rest) = line.strip_prefix("total:") {
                summary.total = parse_u64_terms(rest);
                check_counter_keys(&summary.total, line);
                saw.0 = true;
            } else if let Some(rest) = line.strip_prefix("latency_us:") {
                summary.latency_us = parse_f64_terms(rest);
                saw.1 = true;
            } else if let Some(rest) = line.strip_prefix("batches:") {
                summary.batches = parse_f64_terms(rest);
                saw.2 = true;
            } else if let Some(rest) = line.strip_prefix("accounting:") {
                summary.accounting_line = line.to_string();
                summary.accounting = parse_u64_terms(rest);
                let end = line.trim_end();
                assert!(
                    end.ends_with("(holds)") || end.ends_with("(VIOLATED)"),
                    "accounting line must end in (holds) or (VIOLATED): {line:?}"
                );
                summary.holds = end.ends_with("(holds)");
                saw.3 = true;
            } else if let Some(rest) = line.strip_prefix("kernel:") {
                summary.kernel = parse_u64_terms(rest);
                saw.4 = true;
            }
        }
        assert!(
            saw == (true, true, true, true, true),
            "summary lacks one of total/latency_us/batches/accounting/kernel lines:\n{stdout}"
        );
        assert!(
            !summary.workers.is_empty(),
            "summary has no worker lines:\n{stdout}"
        );
        summary
    }

    /// A `total:` counter; panics, quoting stdout, when absent.
    pub fn total(&self, key: &str) -> u64 {
        *self
            .total
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in total line:\n{}", self.stdout))
    }

    /// A `worker N:` counter.
    pub fn worker(&self, index: usize, key: &str) -> u64 {
        *self.workers[index]
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in worker {index} line:\n{}", self.stdout))
    }

    /// Sum of the drop reasons and replies that the accounting identity adds up to `rx`.
    pub fn accounted(&self) -> u64 {
        [
            "tx",
            "truncated",
            "no_reply",
            "tx_backpressure",
            "tx_error",
            "unsent_at_exit",
        ]
        .iter()
        .map(|key| self.total(key))
        .sum()
    }

    /// Asserts the accounting line says `(holds)` and that its identity holds on the `total:` numbers.
    pub fn assert_accounting_holds(&self) {
        assert!(
            self.holds,
            "accounting must hold: {:?}\n{}",
            self.accounting_line, self.stdout
        );
        assert_eq!(
            self.total("rx"),
            self.accounted(),
            "total rx must equal tx + truncated + no_reply + tx_backpressure + tx_error + unsent_at_exit:\n{}",
            self.stdout
        );
        for key in [
            "rx",
            "tx",
            "truncated",
            "no_reply",
            "tx_backpressure",
            "tx_error",
            "unsent_at_exit",
        ] {
            assert_eq!(
                self.accounting.get(key).copied(),
                Some(self.total(key)),
                "accounting line term {key} must match the total line:\n{}",
                self.stdout
            );
        }
    }
}

fn check_counter_keys(counters: &BTreeMap<String, u64>, line: &str) {
    for key in COUNTER_KEYS {
        assert!(
            counters.contains_key(key),
            "counter {key} missing from {line:?}"
        );
    }
}

/// `key=N` terms of a line; other tokens (`=`, `+`, `(holds)`) are skipped.
pub fn parse_u64_terms(text: &str) -> BTreeMap<String, u64> {
    parse_terms(text)
}

/// `key=N` or `key=N.N` terms of a line.
pub fn parse_f64_terms(text: &str) -> BTreeMap<String, f64> {
    parse_terms(text)
}

fn parse_terms<T: std::str::FromStr>(text: &str) -> BTreeMap<String, T> {
    text.split_whitespace()
        .filter_map(|token| {
            let (key, value) = token.split_once('=')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn collect_stderr(mut stderr: ChildStderr) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    })
}

/// Waits for `child` at most `timeout`; on timeout kills it and panics.
fn wait_bounded(child: &mut Child, timeout: Duration) -> ExitStatus {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        scope.spawn(move || {
            let _ = sender.send(child.wait());
        });
        match receiver.recv_timeout(timeout) {
            Ok(status) => status.expect("wait for udpd"),
            Err(_) => {
                // The waiter thread has not reaped the child, so the pid is still ours.
                let _ = kill(pid, Signal::SIGKILL);
                panic!("udpd did not exit within {timeout:?}; killed it");
            }
        }
    })
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("{status:?}"),
    }
}

/// Runs `udpd ARGS` to completion (bounded) and returns (exit code, stdout, stderr); a death by signal
/// reads as 128 + the signal number.
pub fn run_udpd(args: &[&str], timeout: Duration) -> (i32, String, String) {
    let mut child = Command::new(udpd_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn udpd");
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let stdout = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr = collect_stderr(child.stderr.take().expect("piped stderr"));
    let status = wait_bounded(&mut child, timeout);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (
        code,
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    )
}

/// The loopback address of `addr`'s family.
pub fn loopback_of(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// A client socket on the loopback of `server`'s family, port 0, with a bounded read timeout.
pub fn client_for(server: SocketAddr) -> UdpSocket {
    client_on(SocketAddr::new(loopback_of(server), 0))
}

/// A client socket bound to `local`, with a bounded read timeout.
pub fn client_on(local: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind client {local}: {e}"));
    socket
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("set read timeout");
    socket
}

/// Receives one datagram (bounded by the socket's read timeout); panics on timeout with `what`.
pub fn recv_reply(socket: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => (buf[..len].to_vec(), from),
        Err(e) => panic!("no reply for {what}: {e}"),
    }
}

/// Sends `payload` to `server` and returns the reply, asserting that it came from `server`.
pub fn round_trip(socket: &UdpSocket, server: SocketAddr, payload: &[u8]) -> Vec<u8> {
    socket.send_to(payload, server).expect("send request");
    let (reply, from) = recv_reply(socket, &format!("a {}-byte request", payload.len()));
    assert_eq!(from, server, "reply must come from the server address");
    reply
}

/// Asserts that nothing arrives on `socket` within [`SILENCE`] (a bound on waiting for what should not come).
pub fn assert_silent(socket: &UdpSocket, what: &str) {
    let previous = socket.read_timeout().expect("read timeout");
    socket.set_read_timeout(Some(SILENCE)).expect("set timeout");
    let mut buf = vec![0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => panic!(
            "{what}: expected no datagram, got {len} bytes from {from}: {:?}",
            String::from_utf8_lossy(&buf[..len.min(64)])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{what}: unexpected receive error {e}"
        ),
    }
    socket.set_read_timeout(previous).expect("restore timeout");
}

/// Whether this machine can bind a UDP socket to `addr` (e.g. `[::1]:0` for IPv6 loopback).
pub fn can_bind(addr: &str) -> bool {
    UdpSocket::bind(addr).is_ok()
}

/// Waits (bounded) until every UDP socket bound to `addr` (IP and port) has an empty receive queue, per
/// `/proc/net/udp{,6}`. Used where no reply can tell the test that the daemon has read what was sent
/// (`--handler discard`). The short sleep only paces re-reading a kernel counter under a deadline.
pub fn wait_receive_queue_empty(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let queued = receive_queue_bytes(addr);
        match queued {
            Some(0) => return,
            None => panic!("no socket bound to {addr} in /proc/net/udp"),
            Some(bytes) => assert!(
                Instant::now() < deadline,
                "the daemon left {bytes} bytes unread in its receive queue for {timeout:?}"
            ),
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Total bytes queued on the sockets bound to `addr`, or `None` when no such socket exists.
pub fn receive_queue_bytes(addr: SocketAddr) -> Option<u64> {
    let (path, want_ip) = match addr.ip() {
        IpAddr::V4(ip) => (
            "/proc/net/udp",
            format!("{:08X}", u32::from_ne_bytes(ip.octets())),
        ),
        IpAddr::V6(ip) => {
            let octets = ip.octets();
            let words: String = octets
                .chunks(4)
                .map(|word| {
                    format!(
                        "{:08X}",
                        u32::from_ne_bytes([word[0], word[1], word[2], word[3]])
                    )
                })
                .collect();
            ("/proc/net/udp6", words)
        }
    };
    let want = format!("{want_ip}:{:04X}", addr.port());
    let table = std::fs::read_to_string(path).expect("read /proc/net/udp");
    let mut found = None;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[1] != want {
            continue;
        }
        let (_, rx) = fields[4].split_once(':')?;
        let rx = u64::from_str_radix(rx, 16).ok()?;
        *found.get_or_insert(0) += rx;
    }
    found
}
