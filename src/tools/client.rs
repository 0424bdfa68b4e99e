//! `udpd client TARGET`: send lines from stdin (or numbered pings) as datagrams and print each reply with its round-trip time.

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::resolve_target;
use crate::error::{Error, Result};
use crate::sys::limits::{MAX_DATAGRAM, MAX_UDP_PAYLOAD};
pub use crate::tools::show::{escape_payload, summary_line};
use crate::tools::show::{late_line, print_line, reply_line, stdout_error};

/// Flags of `udpd client`.
///
/// The socket is connected to TARGET, so the kernel drops datagrams from any other address: only the
/// target's replies are ever shown.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server to talk to: IP:PORT, `[V6]:PORT` or HOST:PORT. Datagrams from other addresses are ignored.
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Seconds to wait for each reply before saying "no reply", e.g. 1 or 0.2.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub timeout: f64,
    /// Times to resend a line that got no reply (line mode only).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Ping mode: send N datagrams `ping 1`, `ping 2`, ... instead of reading stdin, then print a loss/RTT summary.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Milliseconds between pings (with --count).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub interval: u64,
}

/// Validated client settings.
#[derive(Debug, Clone)]
struct Settings {
    target: SocketAddr,
    timeout: Duration,
    retries: u32,
    count: Option<u64>,
    interval: Duration,
}

impl ClientArgs {
    fn resolve(&self) -> Result<Settings> {
        let target = resolve_target(&self.target, "target")?;
        if !self.timeout.is_finite() || !(0.001..=3600.0).contains(&self.timeout) {
            return Err(Error::usage(format!(
                "--timeout {} is out of range: use 0.001 to 3600 seconds",
                self.timeout
            )));
        }
        if self.count == Some(0) {
            return Err(Error::usage("--count must be at least 1"));
        }
        if self.count.is_some() && self.retries > 0 {
            return Err(Error::usage(
                "--retries applies to lines read from stdin, not to --count pings: drop one of them",
            ));
        }
        if self.interval > 3_600_000 {
            return Err(Error::usage(format!(
                "--interval {} is out of range: use 0 to 3600000 milliseconds",
                self.interval
            )));
        }
        Ok(Settings {
            target,
            timeout: Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            count: self.count,
            interval: Duration::from_millis(self.interval),
        })
    }
}

pub fn run(args: ClientArgs) -> Result<()> {
    let settings = args.resolve()?;
    let socket = open_socket(settings.target)?;
    let local = socket
        .local_addr()
        .map_err(|e| Error::runtime(format!("cannot read the client socket's address: {e}")))?;
    eprintln!(
        "udpd client: talking to {} from {local}; datagrams from any other address are ignored",
        settings.target
    );
    match settings.count {
        Some(count) => ping(&socket, &settings, count),
        None => lines(&socket, &settings),
    }
}

/// A UDP socket on an ephemeral port of the target's family, connected to the target.
fn open_socket(target: SocketAddr) -> Result<UdpSocket> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .map_err(|e| Error::runtime(format!("cannot open a UDP socket on {local}: {e}")))?;
    socket.connect(target).map_err(|e| {
        Error::runtime(format!(
            "cannot reach {target}: {e} (check the address and the routes)"
        ))
    })?;
    Ok(socket)
}

/// What waiting for a datagram ended with.
enum Wait {
    /// `len` bytes arrived at `at`.
    Datagram { len: usize, at: Instant },
    /// The deadline passed with nothing.
    TimedOut,
    /// The kernel said the target port is closed (ICMP port unreachable).
    Refused,
    /// Ctrl-C (ping mode).
    Interrupted,
}

/// Waits until `deadline` for one datagram from the target.
fn wait(socket: &UdpSocket, buf: &mut [u8], deadline: Instant, stop: &AtomicBool) -> Result<Wait> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Wait::Interrupted);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Wait::TimedOut);
        }
        // A zero read timeout means "block forever", so never pass less than a microsecond.
        let left = (deadline - now).max(Duration::from_micros(1));
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| Error::runtime(format!("cannot set the socket's read timeout: {e}")))?;
        match socket.recv(buf) {
            Ok(len) => {
                return Ok(Wait::Datagram {
                    len,
                    at: Instant::now(),
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Wait::Refused),
            Err(e) => return Err(Error::runtime(format!("receiving failed: {e}"))),
        }
    }
}

/// Sends one datagram; a refusal left over from an earlier datagram is reported by the kernel on the next
/// call, so one such error is retried once. `Ok(false)`: the payload does not fit in one datagram
/// (`EMSGSIZE`), nothing was sent.
fn send(socket: &UdpSocket, payload: &[u8], target: SocketAddr) -> Result<bool> {
    let mut result = socket.send(payload);
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
        result = socket.send(payload);
    }
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(false),
        Err(e) => Err(Error::runtime(format!(
            "sending {} bytes to {target} failed: {e}",
            payload.len()
        ))),
    }
}

/// Prints replies that arrived after their request had been given up on, without waiting.
fn drain_late(socket: &UdpSocket, buf: &mut [u8], out: &mut impl Write) -> Result<()> {
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::runtime(format!("cannot make the socket non-blocking: {e}")))?;
    let result = loop {
        match socket.recv(buf) {
            Ok(len) => {
                let peer = socket
                    .peer_addr()
                    .map_err(|e| Error::runtime(e.to_string()))?;
                print_line(out, &late_line(peer, &buf[..len]))?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A closed port reported for an earlier datagram: it was already counted as unanswered.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => break Err(Error::runtime(format!("receiving failed: {e}"))),
        }
    };
    socket
        .set_nonblocking(false)
        .map_err(|e| Error::runtime(format!("cannot make the socket blocking: {e}")))?;
    result
}

/// Line mode: each line of stdin is one datagram; each gets its reply or a "no reply" line.
fn lines(socket: &UdpSocket, settings: &Settings) -> Result<()> {
    let interactive = io::stdin().is_terminal();
    let stop = AtomicBool::new(false);
    let mut stdin = io::stdin().lock();
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut line = Vec::new();
    loop {
        if interactive {
            out.write_all(b"> ")
                .and_then(|()| out.flush())
                .map_err(stdout_error)?;
        }
        line.clear();
        let read = stdin
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::runtime(format!("reading stdin failed: {e}")))?;
        if read == 0 {
            if interactive {
                print_line(&mut out, "")?;
            }
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        drain_late(socket, &mut buf, &mut out)?;
        exchange(socket, settings, &line, &mut buf, &stop, &mut out)?;
    }
}

/// Sends `payload` (and resends it up to `--retries` times) until a reply comes; prints what happened.
fn exchange(
    socket: &UdpSocket,
    settings: &Settings,
    payload: &[u8],
    buf: &mut [u8],
    stop: &AtomicBool,
    out: &mut impl Write,
) -> Result<()> {
    let target = settings.target;
    for attempt in 0..=settings.retries {
        if !send(socket, payload, target)? {
            eprintln!(
                "udpd client: line of {} bytes not sent: one UDP datagram carries at most {MAX_UDP_PAYLOAD} bytes \
                 over IPv4; going on with the next line",
                payload.len()
            );
            return Ok(());
        }
        let sent = Instant::now();
        let outcome = wait(socket, buf, sent + settings.timeout, stop)?;
        let more = attempt < settings.retries;
        let resend = if more {
            format!(", resending ({} of {})", attempt + 1, settings.retries)
        } else {
            String::new()
        };
        match outcome {
            Wait::Datagram { len, at } => {
                return print_line(out, &reply_line(target, &buf[..len], at - sent));
            }
            Wait::TimedOut => print_line(
                out,
                &format!(
                    "no reply from {target} after {:.3} s{resend}",
                    settings.timeout.as_secs_f64()
                ),
            )?,
            Wait::Refused => print_line(
                out,
                &format!("no reply from {target}: port closed (connection refused){resend}"),
            )?,
            Wait::Interrupted => return Ok(()),
        }
    }
    Ok(())
}

/// Ping mode: `count` datagrams `ping SEQ` paced by `--interval`, then the summary line.
fn ping(socket: &UdpSocket, settings: &Settings, count: u64) -> Result<()> {
    let target = settings.target;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Error::runtime(format!("cannot install the Ctrl-C handler: {e}")))?;
    }
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut rtts: Vec<Duration> = Vec::new();
    let mut sent_count = 0u64;
    let mut next_send = Instant::now();
    'pings: for seq in 1..=count {
        // Pace the sends; anything arriving meanwhile is a late reply to an earlier ping.
        while Instant::now() < next_send {
            match wait(socket, &mut buf, next_send, &stop)? {
                Wait::Datagram { len, .. } => {
                    print_line(&mut out, &late_line(target, &buf[..len]))?
                }
                Wait::Interrupted => break 'pings,
                Wait::TimedOut | Wait::Refused => {}
            }
        }
        let payload = format!("ping {seq}");
        if !send(socket, payload.as_bytes(), target)? {
            return Err(Error::runtime(format!(
                "the kernel says {payload:?} is too long for one datagram"
            )));
        }
        sent_count += 1;
        let sent = Instant::now();
        next_send = sent + settings.interval;
        let deadline = sent + settings.timeout;
        loop {
            match wait(socket, &mut buf, deadline, &stop)? {
                Wait::Datagram { len, at } => {
                    let reply = &buf[..len];
                    match ping_seq(reply) {
                        Some(other) if other != seq => {
                            print_line(&mut out, &late_line(target, reply))?
                        }
                        _ => {
                            rtts.push(at - sent);
                            print_line(&mut out, &reply_line(target, reply, at - sent))?;
                            break;
                        }
                    }
                }
                Wait::TimedOut => {
                    print_line(
                        &mut out,
                        &format!(
                            "no reply from {target} after {:.3} s",
                            settings.timeout.as_secs_f64()
                        ),
                    )?;
                    break;
                }
                Wait::Refused => {
                    print_line(
                        &mut out,
                        &format!("no reply from {target}: port closed (connection refused)"),
                    )?;
                    break;
                }
                Wait::Interrupted => break 'pings,
            }
        }
    }
    print_line(&mut out, &summary_line(sent_count, &rtts))?;
    if rtts.is_empty() {
        return Err(Error::runtime(format!(
            "no reply from {target} to any of {sent_count} pings"
        )));
    }
    Ok(())
}

/// The sequence number in a reply that looks like `ping SEQ` (any case, as an upper-casing server sends it back).
fn ping_seq(reply: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(reply).ok()?;
    let (word, number) = text.split_once(' ')?;
    if !word.eq_ignore_ascii_case("ping") {
        return None;
    }
    number.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_replies_are_recognised_in_any_case() {
        assert_eq!(ping_seq(b"ping 7"), Some(7));
        assert_eq!(ping_seq(b"PING 12"), Some(12));
        assert_eq!(ping_seq(b"ack"), None);
        assert_eq!(ping_seq(b"\xff 1"), None);
    }

    #[test]
    fn targets_parse_or_fail_with_usage() {
        assert!(resolve_target("127.0.0.1:9", "target").is_ok());
        assert!(resolve_target("[::1]:9", "target").is_ok());
        assert_eq!(
            resolve_target("nonsense", "target")
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
