//! Machine-readable stats: `--format json` lines parse with the report's fields, and `--metrics` answers a
//! real HTTP GET with Prometheus counters after traffic.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn start(extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_udpd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--no-pin",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn udpd");
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    Running {
        child,
        stdout,
        stderr,
    }
}

/// Waits (bounded) for the first line of `lines` that `pick` accepts.
fn wait_for<T>(lines: &Receiver<String>, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {what} within {WAIT:?}: {e}"));
        if let Some(found) = pick(&line) {
            return found;
        }
    }
}

fn listening(running: &Running) -> SocketAddr {
    wait_for(&running.stdout, "listening line", |line| {
        line.strip_prefix("listening on ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn echo(server: SocketAddr, count: usize) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..count {
        client.send_to(format!("m{i}").as_bytes(), server).unwrap();
        let (len, _) = client.recv_from(&mut buf).expect("echo reply");
        assert_eq!(&buf[..len], format!("m{i}").as_bytes());
    }
}

fn terminate(running: &mut Running) {
    let pid = Pid::from_raw(running.child.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
}

#[test]
fn json_format_prints_parseable_interval_and_summary_objects() {
    let mut running = start(&["--format", "json", "--interval", "0.05"]);
    let server = listening(&running);
    echo(server, 7);
    // Interval objects arrive every 50 ms; wait for one that has seen the traffic.
    let interval = wait_for(&running.stdout, "interval with traffic", |line| {
        let value: Value = serde_json::from_str(line).expect("every report line is JSON");
        assert_eq!(value["type"], "interval", "{line}");
        (value["counts"]["rx"].as_u64()? > 0).then_some(value)
    });
    assert!(interval["per_second"]["rx"].as_f64().unwrap() > 0.0);
    assert!(interval["latency_us"]["p99"].as_f64().is_some());
    terminate(&mut running);
    let summary = wait_for(&running.stdout, "summary object", |line| {
        let value: Value = serde_json::from_str(line).expect("every report line is JSON");
        (value["type"] == "summary").then_some(value)
    });
    assert_eq!(summary["total"]["rx"], 7);
    assert_eq!(summary["total"]["tx"], 7);
    assert_eq!(summary["total"]["rx_bytes"], 14);
    assert_eq!(summary["accounting_holds"], true);
    assert_eq!(summary["latency_us"]["count"], 7);
    assert_eq!(summary["settings"]["listen"], server.to_string());
    assert_eq!(running.child.wait().unwrap().code(), Some(0));
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read metrics");
    response
}

#[test]
fn metrics_endpoint_serves_prometheus_counters_after_traffic() {
    let mut running = start(&["--quiet", "--interval", "0.05", "--metrics", "127.0.0.1:0"]);
    let metrics: SocketAddr = wait_for(&running.stderr, "metrics address", |line| {
        line.split("http://")
            .nth(1)?
            .trim_end_matches("/metrics")
            .parse()
            .ok()
    });
    let server = listening(&running);
    echo(server, 5);
    // The reporter republishes every interval; poll (bounded) until the counters show the traffic.
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let response = http_get(metrics, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        if response.contains("udpd_rx_total{worker=\"0\"} 5\n") {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "counters never reached 5: {response}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(body.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(body.contains("# TYPE udpd_tx_total counter"));
    assert!(body.contains("udpd_tx_total{worker=\"0\"} 5\n"));
    assert!(body.contains("udpd_latency_seconds_count"));
    terminate(&mut running);
    assert_eq!(running.child.wait().unwrap().code(), Some(0));
}

#[test]
fn bad_format_and_metrics_values_exit_2_with_one_line() {
    for args in [["--format", "xml"], ["--metrics", "nowhere"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_udpd"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "{stderr}"
        );
        assert!(stderr.starts_with("udpd: error: "), "{stderr}");
    }
}
