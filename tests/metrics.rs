//! The `--metrics` HTTP endpoint under hostile clients, started in-process on loopback: it serves the
//! published text from the first scrape, answers bad requests with the right status, and neither idle,
//! slow nor oversized clients keep a scrape from completing.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use udpd::stats::export::initial_prometheus;
use udpd::stats::metrics::{serve, serve_with, Limits, MetricsText};

/// Bound on every wait in this file; a healthy endpoint answers in milliseconds.
const WAIT: Duration = Duration::from_secs(5);
const EXPOSITION: &str = "# TYPE udpd_rx_total counter\nudpd_rx_total{worker=\"0\"} 0\n";

fn start(text: MetricsText) -> SocketAddr {
    serve("127.0.0.1:0".parse().unwrap(), text).expect("serve metrics on loopback")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to metrics");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Sends `request` and reads the whole response (the server closes after it): (status line, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("no complete response within {WAIT:?}: {e}"));
    let response = String::from_utf8(response).expect("response is UTF-8");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

fn scrape(addr: SocketAddr) -> (String, String) {
    exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

fn assert_scrape_serves(addr: SocketAddr, expected: &str) {
    let (status, body) = scrape(addr);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, expected);
}

/// True when `stream` has been closed by the server (EOF or reset), false when it is still open after
/// `WAIT`.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

#[test]
fn the_first_scrape_serves_the_initial_text_and_later_ones_the_published() {
    let text = MetricsText::new(EXPOSITION.to_string());
    let addr = start(text.clone());
    assert_scrape_serves(addr, EXPOSITION);
    text.publish("udpd_rx_total{worker=\"0\"} 7\n".to_string());
    assert_scrape_serves(addr, "udpd_rx_total{worker=\"0\"} 7\n");
    let (status, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "", "HEAD has no body");
}

#[test]
fn the_all_zero_exposition_is_served_before_the_first_interval() {
    let addr = start(MetricsText::new(initial_prometheus(2)));
    let (status, body) = scrape(addr);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("udpd_rx_total{worker=\"1\"} 0\n"), "{body}");
    assert!(body.contains("udpd_workers 2\n"), "{body}");
}

#[test]
fn nothing_published_yet_is_503_not_an_empty_200() {
    let addr = start(MetricsText::default());
    let (status, _) = scrape(addr);
    assert!(status.starts_with("HTTP/1.1 503 "), "{status}");
}

#[test]
fn wrong_method_path_and_encoding_get_their_status() {
    let addr = start(MetricsText::new(EXPOSITION.to_string()));
    let (status, _) = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(status.starts_with("HTTP/1.1 405 "), "{status}");
    let (status, _) = exchange(addr, b"GET /secrets HTTP/1.1\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 404 "), "{status}");
    let (status, _) = exchange(addr, b"GET /\xff\xfe HTTP/1.1\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    let (status, _) = exchange(addr, b"\xc3\x28 / HTTP/1.1\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    let (status, _) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_scrape_serves(addr, EXPOSITION);
}

#[test]
fn two_hundred_idle_connections_do_not_delay_a_scrape() {
    let addr = start(MetricsText::new(EXPOSITION.to_string()));
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    let started = Instant::now();
    assert_scrape_serves(addr, EXPOSITION);
    assert!(
        started.elapsed() < WAIT,
        "scrape took {:?} with 200 idle connections open",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn at_the_connection_cap_the_oldest_is_closed_and_scrapes_still_complete() {
    let limits = Limits {
        max_connections: 8,
        deadline: Duration::from_secs(30),
        ..Limits::default()
    };
    let text = MetricsText::new(EXPOSITION.to_string());
    let addr = serve_with("127.0.0.1:0".parse().unwrap(), text, limits).unwrap();
    let mut idle: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    assert_scrape_serves(addr, EXPOSITION);
    assert!(
        closed_by_server(&mut idle[0]),
        "the oldest idle connection must be closed once 50 exceed a cap of 8 (deadline is 30 s)"
    );
}

#[test]
fn a_slow_client_is_dropped_at_its_deadline_without_blocking_scrapes() {
    let limits = Limits {
        deadline: Duration::from_secs(1),
        ..Limits::default()
    };
    let text = MetricsText::new(EXPOSITION.to_string());
    let addr = serve_with("127.0.0.1:0".parse().unwrap(), text, limits).unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let slow = thread::spawn(move || {
        let mut stream = connect(addr);
        let request = b"GET /metrics HTTP/1.1\r\nHost: a-very-slow-client.example\r\n\r\n";
        let began = Instant::now();
        for (sent, byte) in request.iter().enumerate() {
            if stream.write_all(&[*byte]).is_err() {
                return Some(sent);
            }
            if sent == 2 {
                let _ = started_tx.send(());
            }
            if began.elapsed() > WAIT {
                break;
            }
            // The pacing under test (one byte per 100 ms), not synchronisation.
            thread::sleep(Duration::from_millis(100));
        }
        None
    });
    started_rx
        .recv_timeout(WAIT)
        .expect("slow client started sending");
    for _ in 0..5 {
        assert_scrape_serves(addr, EXPOSITION);
    }
    let refused_after = slow.join().expect("slow client");
    assert!(
        refused_after.is_some(),
        "the server must drop a client still sending its head after the 1 s deadline"
    );
}

#[test]
fn a_ten_mebibyte_request_line_is_refused_and_the_server_keeps_serving() {
    let addr = start(MetricsText::new(EXPOSITION.to_string()));
    let mut stream = connect(addr);
    let reader = stream.try_clone().expect("clone stream");
    let answer = thread::spawn(move || {
        let mut reader = reader;
        let mut response = Vec::new();
        // Reading stops at EOF or at a reset; either is a refusal. A timeout is not.
        match reader.read_to_end(&mut response) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("neither an answer nor a close within {WAIT:?}")
            }
            _ => response,
        }
    });
    let line = vec![b'A'; 10 * 1024 * 1024];
    // Fails once the server closes (the usual case); may succeed when the kernel buffers took it all.
    let _ = stream.write_all(&line);
    let response = answer.join().expect("reader");
    let status = String::from_utf8_lossy(&response[..response.len().min(40)]).to_string();
    assert!(
        response.is_empty() || status.starts_with("HTTP/1.1 414 "),
        "expected 414 or a closed connection, got {status:?}"
    );
    assert_scrape_serves(addr, EXPOSITION);
}

#[test]
fn oversized_headers_get_431() {
    let addr = start(MetricsText::new(EXPOSITION.to_string()));
    let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for n in 0..200 {
        request.extend_from_slice(format!("X-Filler-{n}: {}\r\n", "f".repeat(60)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let (status, _) = exchange(addr, &request);
    assert!(status.starts_with("HTTP/1.1 431 "), "{status}");
    assert_scrape_serves(addr, EXPOSITION);
}
