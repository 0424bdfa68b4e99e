//! Machine-readable stats: `--format json` lines parse with the report's fields, and `--metrics` answers a
//! real HTTP GET with Prometheus counters after traffic.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::{Daemon, STOP_TIMEOUT};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// `udpd serve` on 127.0.0.1:0 with one unpinned worker and `extra` flags, once it is listening.
fn start(extra: &[&str]) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "1", "--no-pin"];
    args.extend_from_slice(extra);
    Daemon::launch(&args)
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

/// Every report line after `listening on` parses as JSON.
fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("every report line is JSON ({e}): {line}"))
}

#[test]
fn json_format_prints_parseable_interval_and_summary_objects() {
    let mut daemon = start(&["--format", "json", "--interval", "0.05"]);
    let server = daemon.addr;
    echo(server, 7);
    // Interval objects arrive every 50 ms; wait for one that has seen the traffic.
    let interval = daemon
        .process
        .wait_stdout("interval with traffic", WAIT, |line| {
            let value = json_line(line);
            assert_eq!(value["type"], "interval", "{line}");
            (value["counts"]["rx"].as_u64()? > 0).then_some(value)
        });
    assert!(interval["per_second"]["rx"].as_f64().unwrap() > 0.0);
    assert!(interval["latency_us"]["p99"].as_f64().is_some());
    let finished = daemon.terminate();
    let after_interval = finished
        .stdout
        .lines()
        .skip_while(|line| !line.contains("\"interval\""));
    let summary = after_interval
        .map(json_line)
        .find(|value| value["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary object in:\n{}", finished.stdout));
    assert_eq!(summary["total"]["rx"], 7);
    assert_eq!(summary["total"]["tx"], 7);
    assert_eq!(summary["total"]["rx_bytes"], 14);
    assert_eq!(summary["accounting_holds"], true);
    assert_eq!(summary["latency_us"]["count"], 7);
    // One request at a time: every reply is stamped, none stands for others.
    assert_eq!(summary["latency_us"]["stamped"], 7);
    assert_eq!(
        summary["settings"]["latency_sample"],
        udpd::config::DEFAULT_LATENCY_SAMPLE
    );
    assert_eq!(summary["settings"]["listen"], server.to_string());
    assert_eq!(finished.code, 0, "{}", finished.stderr);
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
    let mut daemon = start(&["--quiet", "--interval", "0.05", "--metrics", "127.0.0.1:0"]);
    let metrics: SocketAddr = daemon.process.wait_stderr("metrics address", WAIT, |line| {
        line.split("http://")
            .nth(1)?
            .trim_end_matches("/metrics")
            .parse()
            .ok()
    });
    let server = daemon.addr;
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
    let finished = daemon.terminate();
    assert_eq!(finished.code, 0, "{}", finished.stderr);
}

#[test]
fn bad_format_and_metrics_values_exit_2_with_one_line() {
    for args in [["--format", "xml"], ["--metrics", "nowhere"]] {
        let mut all = vec!["serve"];
        all.extend_from_slice(&args);
        let (code, _, stderr) = common::run_to_end(&all, b"", STOP_TIMEOUT);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(
            stderr.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "{stderr}"
        );
        assert!(stderr.starts_with("udpd: error: "), "{stderr}");
    }
}
