//! Loopback client sockets for the tests: bounded reads, round trips, silence checks, receive queues.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// Read timeout of client sockets: a bound on waiting for a reply that should come.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a reply that should NOT come.
pub const SILENCE: Duration = Duration::from_millis(300);

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
/// (`--handler discard`). The short sleep only paces re-reading a kernel counter under a deadline. A read
/// that does not list the socket is read again: `/proc/net/udp` is read in chunks, and a chunk boundary
/// can skip a socket while other tests open and close theirs.
pub fn wait_receive_queue_empty(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match receive_queue_bytes(addr) {
            Some(0) => return,
            None => assert!(
                Instant::now() < deadline,
                "no socket bound to {addr} in /proc/net/udp for {timeout:?}"
            ),
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
