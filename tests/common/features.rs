//! What this machine offers the tests (UDP GSO/GRO, root, extra loopback addresses, tools), and the one
//! way a test skips: say why on stderr and return, or fail when `UDPD_REQUIRE_FEATURES=1` (CI).

use std::net::UdpSocket;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

/// The environment variable that turns every skip into a failure.
pub const REQUIRE_FEATURES: &str = "UDPD_REQUIRE_FEATURES";

/// Whether skips are failures here (`UDPD_REQUIRE_FEATURES=1`).
pub fn features_required() -> bool {
    std::env::var(REQUIRE_FEATURES).is_ok_and(|value| value == "1")
}

/// A test that cannot run here calls this and returns: it prints `reason` on stderr, or panics with it
/// when `UDPD_REQUIRE_FEATURES=1`.
pub fn skip_or_fail(reason: &str) {
    if features_required() {
        panic!("{REQUIRE_FEATURES}=1 and this test cannot run: {reason}");
    }
    eprintln!("skipped: {reason} (set {REQUIRE_FEATURES}=1 to make this a failure)");
}

/// `present`, after calling [`skip_or_fail`] with `reason` when it is false: for a check inside a test
/// that only makes sense where the machine has a feature.
pub fn feature(present: bool, reason: &str) -> bool {
    if !present {
        skip_or_fail(reason);
    }
    present
}

/// Whether the kernel accepts UDP_SEGMENT (UDP GSO) on a socket.
pub fn kernel_has_gso() -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    match setsockopt(&socket, sockopt::UdpGsoSegment, &1200) {
        Ok(()) => true,
        Err(Errno::ENOPROTOOPT) => false,
        Err(e) => panic!("probing UDP_SEGMENT: {e}"),
    }
}

/// Whether the kernel accepts UDP_GRO on a socket.
pub fn kernel_has_gro() -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    match setsockopt(&socket, sockopt::UdpGroSegment, &true) {
        Ok(()) => true,
        Err(Errno::ENOPROTOOPT) => false,
        Err(e) => panic!("probing UDP_GRO: {e}"),
    }
}

/// Whether the tests run as root (raw sockets, forged sources): effective uid 0 in /proc/self/status.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Whether `program -V`-style `args` runs and succeeds (bounded), i.e. the tool is installed.
pub fn tool_runs(program: &str, args: &[&str]) -> bool {
    let Ok(mut child) = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return false;
            }
        }
    }
}
