//! Opens one worker's socket: SO_REUSEPORT, bind, buffers, and the optional kernel features, each probed.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, getsockname, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrStorage, TimestampingFlag,
};

use crate::config::ServeConfig;
use crate::error::{Error, Result};

/// Which optional kernel features this socket ended up with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFeatures {
    /// Replies may carry `UDP_SEGMENT` (GSO).
    pub gso: bool,
    /// Requests may arrive coalesced (`UDP_GRO`).
    pub gro: bool,
    /// Packet info is on: replies must name their source address (wildcard bind).
    pub pktinfo: bool,
    /// Kernel receive timestamps are on.
    pub timestamps: bool,
    /// The kernel's drop counter can be read on demand (`SO_MEMINFO`); otherwise it rides on every
    /// datagram as `SO_RXQ_OVFL`.
    pub drops_on_demand: bool,
}

/// How long an idle worker that holds counts not yet handed to the reporter waits in one blocking
/// receive (`SO_RCVTIMEO`) before it looks at its clock again: how late those counts can reach the
/// reporter, so at most half the reporter's grace ([`crate::stats::line_grace`]).
pub const IDLE_WAIT: Duration = Duration::from_millis(20);

/// How long an idle worker with nothing to hand over waits in one receive: how late it notices the stop
/// flag. (Such a worker wakes 10 times a second; one holding counts, 50 times.)
pub const QUIET_WAIT: Duration = Duration::from_millis(100);

/// [`IDLE_WAIT`] for a report interval of `interval` (never under a millisecond).
fn idle_wait(interval: Duration) -> Duration {
    IDLE_WAIT
        .min(crate::stats::line_grace(interval) / 2)
        .max(Duration::from_millis(1))
}

/// The receive timeout of an idle worker's socket: [`IDLE_WAIT`] while it holds counts for the
/// reporter, [`QUIET_WAIT`] while it holds none; switched (one `setsockopt`) only when that changes.
pub struct IdleWait {
    holding: Duration,
    set: Option<Duration>,
}

impl IdleWait {
    /// For a socket [`open`]ed or [`adopt`]ed for a report interval of `interval` (which starts with
    /// the shorter timeout).
    pub fn new(interval: Duration) -> IdleWait {
        let holding = idle_wait(interval);
        IdleWait {
            holding,
            set: Some(holding),
        }
    }

    /// The timeout the next idle receive needs.
    fn wanted(&self, holds_counts: bool, wake_within: Option<Duration>) -> Duration {
        let wait = if holds_counts {
            self.holding
        } else {
            QUIET_WAIT.max(self.holding)
        };
        wake_within.map_or(wait, |within| wait.min(within))
    }

    /// Before an idle receive: gives `socket` the timeout a worker that `holds_counts` (or not) needs,
    /// or `wake_within` if shorter (a worker sleeping with timestamps on during a sampling window must
    /// wake soon after it closes: its socket holds the kernel's timestamps on for every packet).
    /// A failed switch keeps the old timeout (the worker then only wakes more often, or later).
    pub fn prepare(
        &mut self,
        socket: &impl AsFd,
        holds_counts: bool,
        wake_within: Option<Duration>,
    ) {
        let wanted = self.wanted(holds_counts, wake_within);
        if self.set != Some(wanted) && set_receive_timeout(socket.as_fd(), wanted).is_ok() {
            self.set = Some(wanted);
        }
    }
}

/// Sets `SO_RCVTIMEO` (under a second, as every timeout here is).
fn set_receive_timeout(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> nix::Result<()> {
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(
            timeout.as_secs() as libc::time_t,
            timeout.subsec_micros() as libc::suseconds_t,
        ),
    )
}

/// A bound worker socket, in blocking mode: the worker's every call says whether it may wait
/// (`MSG_DONTWAIT` otherwise), and only a receive by an idle worker waits, for at most the socket's
/// receive timeout.
pub struct WorkerSocket {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub features: SocketFeatures,
}

/// Opens a socket bound to `addr` with `SO_REUSEPORT`, configured as `config` asks.
///
/// Soft failures (a capped buffer, a missing offload) are described in `warnings`; the socket still works.
pub fn open(
    addr: SocketAddr,
    config: &ServeConfig,
    warnings: &mut Vec<String>,
) -> Result<WorkerSocket> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd =
        socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(|errno| {
            Error::io(
                format!("cannot create a UDP socket: {}", errno.desc()),
                errno.into(),
            )
        })?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(|errno| {
        Error::runtime(format!(
            "cannot set SO_REUSEPORT: {} (udpd needs Linux 3.9 or later)",
            errno.desc()
        ))
    })?;
    match config.rcvbuf {
        Some(bytes) => set_buffer(&fd, bytes, Buffer::Receive, warnings),
        None => set_default_rcvbuf(&fd, warnings),
    }
    if let Some(bytes) = config.sndbuf {
        set_buffer(&fd, bytes, Buffer::Send, warnings);
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|errno| bind_error(addr, errno))?;
    let local = bound_address(&fd).unwrap_or(addr);
    configure(fd, local, config, warnings)
}

/// Takes over a socket a previous udpd process bound and handed over on reload: it must be a UDP
/// socket bound to `expected` (any port when `expected` has port 0); its options are set anew from
/// `config` (buffers, offloads, timestamps), as for a socket just opened.
pub fn adopt(
    fd: OwnedFd,
    expected: SocketAddr,
    config: &ServeConfig,
    warnings: &mut Vec<String>,
) -> Result<WorkerSocket> {
    let is_udp = nix::sys::socket::getsockopt(&fd, sockopt::SockType)
        .is_ok_and(|kind| kind == SockType::Datagram);
    let local = bound_address(&fd).filter(|_| is_udp).ok_or_else(|| {
        Error::runtime("an inherited descriptor is not a bound UDP socket: restart udpd instead")
    })?;
    let same_port = expected.port() == 0 || expected.port() == local.port();
    if local.ip() != expected.ip() || !same_port {
        return Err(Error::usage(format!(
            "reload refused: the listen address changed from {local} to {expected}, which needs new sockets: restart udpd to apply it"
        )));
    }
    let socket = UdpSocket::from(fd);
    socket.set_nonblocking(false).map_err(|e| {
        Error::io(
            format!("cannot put an inherited socket in blocking mode: {e}"),
            e,
        )
    })?;
    let fd = OwnedFd::from(socket);
    crate::sys::set_close_on_exec(fd.as_fd(), true)
        .map_err(|e| Error::io(format!("cannot set close-on-exec: {e}"), e))?;
    match config.rcvbuf {
        Some(bytes) => set_buffer(&fd, bytes, Buffer::Receive, warnings),
        None => set_default_rcvbuf(&fd, warnings),
    }
    if let Some(bytes) = config.sndbuf {
        set_buffer(&fd, bytes, Buffer::Send, warnings);
    }
    configure(fd, local, config, warnings)
}

/// Turns kernel receive timestamps on or off for `socket` (`SO_TIMESTAMPING`, software receive stamps).
///
/// Not `SO_TIMESTAMPNS`: turning that off only stops the control messages, and the socket keeps the
/// kernel stamping every packet of the host until it is closed; `SO_TIMESTAMPING` gives the switch back
/// when turned off, which is what lets sampling windows (`serve::stamps`) save the stamps between
/// windows. A packet that arrived before the kernel's switch was on carries no stamp (rather than the
/// time it was read).
pub fn set_receive_timestamps(socket: &impl AsFd, on: bool) -> nix::Result<()> {
    let flags = if on {
        TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
    } else {
        TimestampingFlag::empty()
    };
    setsockopt(socket, sockopt::Timestamping, &flags)
}

/// The address a socket is bound to.
pub fn bound_address(fd: &OwnedFd) -> Option<SocketAddr> {
    getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|storage| to_socket_addr(&storage))
}

/// Sets the optional features on a bound socket (each probed, each missing one a warning).
fn configure(
    fd: OwnedFd,
    local: SocketAddr,
    config: &ServeConfig,
    warnings: &mut Vec<String>,
) -> Result<WorkerSocket> {
    let addr = local;
    // The timeout `IdleWait::new` starts from.
    set_receive_timeout(fd.as_fd(), idle_wait(config.interval)).map_err(|errno| {
        Error::runtime(format!(
            "cannot set a receive timeout (SO_RCVTIMEO) on a worker socket: {}",
            errno.desc()
        ))
    })?;
    // The drop counter, read once per interval; only kernels without SO_MEMINFO attach it to every
    // datagram instead (a control message per datagram that the batch does not need).
    let mut features = SocketFeatures {
        drops_on_demand: crate::sys::socket_drops(fd.as_fd()).is_ok(),
        ..SocketFeatures::default()
    };
    if !features.drops_on_demand {
        let _ = setsockopt(&fd, sockopt::RxqOvfl, &1);
    }
    if config.latency {
        features.timestamps = set_receive_timestamps(&fd, true).is_ok();
        if !features.timestamps {
            warnings.push("kernel receive timestamps unavailable: latency is measured from the moment udpd reads each batch".into());
        }
    }
    if addr.ip().is_unspecified() {
        let v4 = setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).is_ok();
        let v6 = addr.is_ipv6() && setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).is_ok();
        features.pktinfo = v4 || v6;
        if !features.pktinfo {
            warnings.push(
                "packet info unavailable: replies leave from the kernel's choice of source address"
                    .into(),
            );
        }
    }
    if config.gro {
        match setsockopt(&fd, sockopt::UdpGroSegment, &true) {
            Ok(()) => features.gro = true,
            Err(errno) => warnings.push(format!(
                "UDP GRO unavailable ({}): requests are received one datagram per buffer",
                errno.desc()
            )),
        }
    }
    if config.gso {
        // Setting a zero segment size probes for GSO support without changing what is sent by default.
        match setsockopt(&fd, sockopt::UdpGsoSegment, &0) {
            Ok(()) => features.gso = true,
            Err(errno) => warnings.push(format!(
                "UDP GSO unavailable ({}): replies are sent one datagram per message",
                errno.desc()
            )),
        }
    }
    Ok(WorkerSocket {
        socket: UdpSocket::from(fd),
        local,
        features,
    })
}

/// The receive buffer asked for when `--rcvbuf` is not given. The kernel's own default (208 KiB) holds
/// 256 datagrams of up to 64 bytes, so a burst of a few hundred clients at once can overflow it;
/// 512 KiB holds 1,260 small datagrams or 455 of 1,400 bytes (measured on Linux 6.18), and a burst of
/// 1,000 clients sending 10 each to two workers lost none. Not more: under overload the queue stays
/// full, and a deeper one only adds queueing delay and cache misses (with many clients at overload, two
/// sets of 5 runs: 512 KiB took 11 % less CPU per reply than 1 MiB at 64 bytes, 0-6 % at 1,400 bytes;
/// 4 MiB cost more again).
pub const DEFAULT_RCVBUF: usize = 512 << 10;

/// Asks for [`DEFAULT_RCVBUF`] (forcing past `net.core.rmem_max` when privileged); when the kernel caps
/// it, one notice names the sysctl. Never shrinks a larger system default.
fn set_default_rcvbuf(fd: &OwnedFd, warnings: &mut Vec<String>) {
    let granted = |fd: &OwnedFd| nix::sys::socket::getsockopt(fd, sockopt::RcvBuf).unwrap_or(0);
    // The kernel reports twice what was asked (bookkeeping overhead included).
    if granted(fd) >= 2 * DEFAULT_RCVBUF {
        return;
    }
    if setsockopt(fd, sockopt::RcvBufForce, &DEFAULT_RCVBUF).is_ok() {
        return;
    }
    let _ = setsockopt(fd, sockopt::RcvBuf, &DEFAULT_RCVBUF);
    // What was asked for, as the kernel counts it (it reports twice the request).
    let now = granted(fd) / 2;
    if now < DEFAULT_RCVBUF {
        warnings.push(format!(
            "receive buffer capped at {now} bytes, less than udpd's default of {DEFAULT_RCVBUF}: bursts beyond it are dropped (kernel_rx_overflow); raise net.core.rmem_max (sysctl -w net.core.rmem_max={DEFAULT_RCVBUF}) or run as root, or set --rcvbuf"
        ));
    }
}

#[derive(Clone, Copy)]
enum Buffer {
    Receive,
    Send,
}

/// Sets a socket buffer, then reads back what the kernel granted (it doubles the request for bookkeeping);
/// when capped, retries with the privileged `*BUFFORCE` option and otherwise warns naming the sysctl.
fn set_buffer(fd: &OwnedFd, bytes: usize, which: Buffer, warnings: &mut Vec<String>) {
    let (flag, sysctl) = match which {
        Buffer::Receive => ("--rcvbuf", "net.core.rmem_max"),
        Buffer::Send => ("--sndbuf", "net.core.wmem_max"),
    };
    let effective = |fd: &OwnedFd| -> usize {
        match which {
            Buffer::Receive => nix::sys::socket::getsockopt(fd, sockopt::RcvBuf).unwrap_or(0),
            Buffer::Send => nix::sys::socket::getsockopt(fd, sockopt::SndBuf).unwrap_or(0),
        }
    };
    let _ = match which {
        Buffer::Receive => setsockopt(fd, sockopt::RcvBuf, &bytes),
        Buffer::Send => setsockopt(fd, sockopt::SndBuf, &bytes),
    };
    if effective(fd) >= bytes {
        return;
    }
    let _ = match which {
        Buffer::Receive => setsockopt(fd, sockopt::RcvBufForce, &bytes),
        Buffer::Send => setsockopt(fd, sockopt::SndBufForce, &bytes),
    };
    let granted = effective(fd);
    if granted < bytes {
        warnings.push(format!(
            "{flag} {bytes} was capped by the kernel to {granted} bytes: raise {sysctl} (sysctl -w {sysctl}={bytes})"
        ));
    }
}

fn bind_error(addr: SocketAddr, errno: Errno) -> Error {
    let fix = match errno {
        Errno::EADDRINUSE => "another program holds this port without SO_REUSEPORT: stop it or choose another --listen port",
        Errno::EACCES => "ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a port of 1024 or more",
        Errno::EADDRNOTAVAIL => "no interface of this host has that address: use 0.0.0.0 or one of `ip addr`",
        Errno::EAFNOSUPPORT => "this host has no support for that address family (IPv6 disabled?)",
        _ => "check the --listen address",
    };
    Error::io(
        format!("cannot listen on {addr}: {} — {fix}", errno.desc()),
        errno.into(),
    )
}

fn to_socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Whether an error from `sendmmsg` means the kernel refused the GSO option itself.
pub fn is_gso_refusal(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::{idle_wait, IdleWait, IDLE_WAIT, QUIET_WAIT};
    use crate::stats::line_grace;
    use std::time::Duration;

    #[test]
    fn an_idle_worker_hands_over_its_stats_within_the_reporters_grace() {
        assert_eq!(idle_wait(Duration::from_secs(1)), IDLE_WAIT);
        for millis in [1, 10, 50, 100, 250, 1000, 60_000] {
            let interval = Duration::from_millis(millis);
            let wait = idle_wait(interval);
            assert!(wait >= Duration::from_millis(1), "{interval:?}: {wait:?}");
            assert!(
                wait <= line_grace(interval) / 2 || wait == Duration::from_millis(1),
                "{interval:?}: {wait:?} against a grace of {:?}",
                line_grace(interval)
            );
            assert!(
                wait.as_micros() < 1_000_000,
                "fits a timeval's microseconds"
            );
        }
    }

    #[test]
    fn a_worker_with_nothing_to_hand_over_sleeps_longer() {
        let wait = IdleWait::new(Duration::from_secs(1));
        assert_eq!(wait.wanted(true, None), IDLE_WAIT);
        assert_eq!(wait.wanted(false, None), QUIET_WAIT);
        // A long report interval never makes the quiet wait shorter than the holding one.
        let wait = IdleWait::new(Duration::from_secs(3600));
        assert!(wait.wanted(false, None) >= wait.wanted(true, None));
    }

    #[test]
    fn a_worker_in_a_sampling_window_wakes_within_it() {
        let wait = IdleWait::new(Duration::from_secs(1));
        let window = Duration::from_millis(12);
        assert_eq!(wait.wanted(false, Some(window)), window);
        assert_eq!(wait.wanted(true, Some(window)), window);
        // A window longer than the wait changes nothing.
        assert_eq!(wait.wanted(true, Some(QUIET_WAIT)), IDLE_WAIT);
    }

    #[test]
    fn the_timeout_is_switched_only_when_it_changes() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let timeout = || socket.read_timeout().unwrap();
        let mut wait = IdleWait::new(Duration::from_secs(1));
        // `new` assumes the socket already has the holding timeout (as `configure` sets it).
        wait.prepare(&socket, true, None);
        assert_eq!(
            timeout(),
            None,
            "no switch when the wanted timeout is the one set"
        );
        wait.prepare(&socket, false, None);
        assert_eq!(timeout(), Some(QUIET_WAIT));
        wait.prepare(&socket, true, None);
        assert_eq!(timeout(), Some(IDLE_WAIT));
    }
}
