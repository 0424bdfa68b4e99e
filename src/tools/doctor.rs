//! `udpd doctor`: checks this host for what limits a UDP server and prints each finding with its fix.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use clap::Args;
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::socket::{self as nixsock, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::config::format_cpu_list;
use crate::error::{Error, Result};
use crate::tools::procfs::{cpu_times, read_sysctl, CpuTimes};
pub use crate::tools::procfs::{snmp6_counter, snmp_counter};

/// Socket buffer size recommended for high datagram rates when none is given: the one home of this
/// number (`scripts/tune-sysctl.sh` defaults to it, `udpd load` asks for it; a unit test checks both).
pub const RECOMMENDED_BUFFER: usize = 8 << 20;
/// `net.core.netdev_max_backlog` recommended for high rates (the kernel's default is 1000).
pub const RECOMMENDED_BACKLOG: u64 = 10_000;
/// How long the CPU load checks watch `/proc/stat` (50 clock ticks per CPU at the usual 100 Hz).
const LOAD_SAMPLE: Duration = Duration::from_millis(500);
/// A CPU a worker would be pinned to that is busier than this with other work is shared.
const SHARED_BUSY: f64 = 0.20;
/// A CPU losing more than this share of its time to other guests (steal) makes tails and figures noisy.
const NOTABLE_STEAL: f64 = 0.03;

/// Flags of `udpd doctor`: the settings you plan to run `udpd serve` with.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// The --rcvbuf you will give `udpd serve`, in bytes [default: checks for 8 MiB, recommended for high rates].
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf: Option<usize>,
    /// The --sndbuf you will give `udpd serve`, in bytes [default: checks for 8 MiB, recommended for high rates].
    #[arg(long, value_name = "BYTES")]
    pub sndbuf: Option<usize>,
    /// The --workers you will give `udpd serve` [default: one per CPU this process may use].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
    pub detail: String,
    /// What to do about it; empty when `ok`.
    pub fix: String,
}

impl Finding {
    fn ok(what: &str, detail: String) -> Finding {
        Finding {
            ok: true,
            what: what.to_string(),
            detail,
            fix: String::new(),
        }
    }

    fn warn(what: &str, detail: String, fix: String) -> Finding {
        Finding {
            ok: false,
            what: what.to_string(),
            detail,
            fix,
        }
    }

    /// `ok    WHAT: detail` or `warn  WHAT: detail — fix: ...`.
    pub fn line(&self) -> String {
        if self.ok {
            format!("ok    {}: {}", self.what, self.detail)
        } else {
            format!("warn  {}: {} — fix: {}", self.what, self.detail, self.fix)
        }
    }
}

pub fn run(args: DoctorArgs) -> Result<()> {
    for (flag, value) in [("--rcvbuf", args.rcvbuf), ("--sndbuf", args.sndbuf)] {
        if let Some(bytes) = value {
            if !(1024..=i32::MAX as usize / 2).contains(&bytes) {
                return Err(Error::usage(format!(
                    "{flag} {bytes} is out of range: use 1024 to {} bytes",
                    i32::MAX / 2
                )));
            }
        }
    }
    if matches!(args.workers, Some(0)) {
        return Err(Error::usage("--workers must be at least 1"));
    }
    let findings = check_all(&args);
    for finding in &findings {
        println!("{}", finding.line());
    }
    let warnings = findings.iter().filter(|f| !f.ok).count();
    if warnings == 0 {
        println!("doctor: all {} checks ok", findings.len());
        Ok(())
    } else {
        Err(Error::runtime(format!(
            "{warnings} of {} checks need attention (the warn lines above say how to fix each)",
            findings.len()
        )))
    }
}

/// Every check, in report order.
pub fn check_all(args: &DoctorArgs) -> Vec<Finding> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok();
    let snmp6 = std::fs::read_to_string("/proc/net/snmp6").ok();
    let [sharing, steal] = check_cpu_load(args.workers);
    vec![
        check_buffer_max("net.core.rmem_max", "--rcvbuf", args.rcvbuf),
        check_buffer_max("net.core.wmem_max", "--sndbuf", args.sndbuf),
        check_backlog(),
        check_buffer_errors(
            "RcvbufErrors",
            snmp.as_deref(),
            snmp6.as_deref(),
            "raise --rcvbuf (and net.core.rmem_max), add workers, or use a lighter handler; \
             `udpd serve` reports its own share as kernel_rx_overflow",
        ),
        check_buffer_errors(
            "SndbufErrors",
            snmp.as_deref(),
            snmp6.as_deref(),
            "raise --sndbuf (and net.core.wmem_max)",
        ),
        check_cpus(args.workers),
        sharing,
        steal,
        check_reuseport(),
        check_udp_option("UDP GSO", libc::UDP_SEGMENT, 1400, "4.18", "--no-gso"),
        check_udp_option("UDP GRO", libc::UDP_GRO, 1, "5.0", "--no-gro"),
        check_nofile(args.workers),
    ]
}

/// The kernel caps SO_RCVBUF/SO_SNDBUF requests at `net.core.[rw]mem_max`: it must be at least the buffer asked for.
fn check_buffer_max(sysctl: &str, flag: &str, asked: Option<usize>) -> Finding {
    let (want, why) = match asked {
        Some(bytes) => (bytes as u64, format!("{flag} {bytes}")),
        None => (
            RECOMMENDED_BUFFER as u64,
            format!(
                "{} MiB recommended for high rates",
                RECOMMENDED_BUFFER >> 20
            ),
        ),
    };
    match read_sysctl(sysctl) {
        Ok(have) if have >= want => Finding::ok(sysctl, format!("{have} bytes >= {want} ({why})")),
        Ok(have) => Finding::warn(
            sysctl,
            format!("{have} bytes < {want} ({why}): the kernel silently caps the socket buffer at {have}"),
            format!("sysctl -w {sysctl}={want} (or scripts/tune-sysctl.sh)"),
        ),
        Err(message) => Finding::warn(
            sysctl,
            message,
            "run on Linux with /proc mounted to check it".to_string(),
        ),
    }
}

/// Loopback and receive-side processing queue packets per CPU in the backlog; a short one drops bursts.
fn check_backlog() -> Finding {
    let name = "net.core.netdev_max_backlog";
    match read_sysctl(name) {
        Ok(have) if have >= RECOMMENDED_BACKLOG => Finding::ok(
            name,
            format!("{have} >= {RECOMMENDED_BACKLOG} recommended for high rates"),
        ),
        Ok(have) => Finding::warn(
            name,
            format!("{have} < {RECOMMENDED_BACKLOG}: bursts beyond it are dropped before any socket sees them"),
            format!("sysctl -w {name}={RECOMMENDED_BACKLOG} (or scripts/tune-sysctl.sh)"),
        ),
        Err(message) => Finding::warn(
            name,
            message,
            "run on Linux with /proc mounted to check it".to_string(),
        ),
    }
}

/// Datagrams the kernel dropped since boot because a UDP socket buffer was full (IPv4 plus IPv6).
fn check_buffer_errors(field: &str, snmp: Option<&str>, snmp6: Option<&str>, fix: &str) -> Finding {
    let what = format!("UDP {field}");
    let Some(v4) = snmp.and_then(|text| snmp_counter(text, field)) else {
        return Finding::warn(
            &what,
            format!("no {field} counter in /proc/net/snmp"),
            "run on Linux with /proc mounted to check it".to_string(),
        );
    };
    let v6 = snmp6
        .and_then(|text| snmp6_counter(text, field))
        .unwrap_or(0);
    let total = v4 + v6;
    if total == 0 {
        Finding::ok(
            &what,
            "0 datagrams dropped since boot (/proc/net/snmp)".to_string(),
        )
    } else {
        Finding::warn(
            &what,
            format!("{total} datagrams dropped since boot because a socket buffer was full (IPv4 {v4}, IPv6 {v6})"),
            fix.to_string(),
        )
    }
}

/// More workers than CPUs makes workers share cores (and pinning wraps around).
fn check_cpus(workers: Option<usize>) -> Finding {
    let cpus = crate::config::available_cpus();
    let workers = workers.unwrap_or(cpus.len());
    let list = cpus
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if workers <= cpus.len() {
        Finding::ok(
            "CPUs",
            format!(
                "{workers} workers on {} CPUs available ({list})",
                cpus.len()
            ),
        )
    } else {
        Finding::warn(
            "CPUs",
            format!(
                "{workers} workers but only {} CPUs available ({list}): workers will share cores",
                cpus.len()
            ),
            format!(
                "use --workers {} or fewer, or widen the CPU affinity (taskset, systemd CPUAffinity=)",
                cpus.len()
            ),
        )
    }
}

/// Watches the CPUs for [`LOAD_SAMPLE`]: is another process busy on the CPUs the workers would be
/// pinned to (the first `workers` available ones, as `udpd serve` pins them), and does the hypervisor
/// take time from any CPU (steal)?
fn check_cpu_load(workers: Option<usize>) -> [Finding; 2] {
    let read = || {
        std::fs::read_to_string("/proc/stat")
            .map(|text| cpu_times(&text))
            .map_err(|e| format!("cannot read /proc/stat: {e}"))
    };
    let sample = read().and_then(|before| {
        std::thread::sleep(LOAD_SAMPLE);
        Ok((before, read()?))
    });
    match sample {
        Ok((before, after)) => {
            let cpus = crate::config::available_cpus();
            let pinned = &cpus[..workers.unwrap_or(cpus.len()).min(cpus.len())];
            cpu_load_findings(&before, &after, pinned)
        }
        Err(message) => ["CPU sharing", "CPU steal"].map(|what| {
            Finding::warn(
                what,
                message.clone(),
                "run on Linux with /proc mounted to check it".to_string(),
            )
        }),
    }
}

/// The two load findings from `/proc/stat` read `before` and `after` [`LOAD_SAMPLE`], for workers pinned
/// to `pinned` (steal is looked at on every CPU).
fn cpu_load_findings(
    before: &BTreeMap<usize, CpuTimes>,
    after: &BTreeMap<usize, CpuTimes>,
    pinned: &[usize],
) -> [Finding; 2] {
    let seconds = LOAD_SAMPLE.as_secs_f64();
    let share = |part: u64, times: &CpuTimes| part as f64 / times.total().max(1) as f64;
    let changes: BTreeMap<usize, CpuTimes> = after
        .iter()
        .filter_map(|(id, times)| Some((*id, times.since(before.get(id)?))))
        .collect();
    let busy = |id: &usize| {
        changes
            .get(id)
            .map_or(0.0, |times| share(times.busy, times))
    };
    let shared: Vec<usize> = pinned
        .iter()
        .copied()
        .filter(|id| busy(id) > SHARED_BUSY)
        .collect();
    let sharing = if let Some(&busiest) = shared.iter().max_by(|a, b| busy(a).total_cmp(&busy(b))) {
        let quiet: Vec<usize> = changes
            .keys()
            .copied()
            .filter(|id| busy(id) <= SHARED_BUSY && !pinned.contains(id))
            .collect();
        let fix = if quiet.is_empty() {
            "move the other work off those CPUs, or run fewer workers (--workers)".to_string()
        } else {
            format!(
                "pin workers to quiet CPUs with --cpus (quiet now: {}), or move the other work off those CPUs",
                format_cpu_list(&quiet)
            )
        };
        Finding::warn(
            "CPU sharing",
            format!(
                "{} {} of the workers' CPUs ({}) {} busy with other work over {seconds} s (CPU {busiest} at {:.0} %; more than {:.0} % counts): a worker pinned there shares it",
                if shared.len() == 1 { "CPU" } else { "CPUs" },
                format_cpu_list(&shared),
                format_cpu_list(pinned),
                if shared.len() == 1 { "was" } else { "were" },
                busy(&busiest) * 100.0,
                SHARED_BUSY * 100.0
            ),
            fix,
        )
    } else {
        let most = pinned.iter().map(busy).fold(0.0, f64::max);
        Finding::ok(
            "CPU sharing",
            format!(
                "the workers' CPUs ({}) were at most {:.0} % busy with other work over {seconds} s",
                format_cpu_list(pinned),
                most * 100.0
            ),
        )
    };
    let steal = |id: &usize| {
        changes
            .get(id)
            .map_or(0.0, |times| share(times.steal, times))
    };
    let robbed = changes
        .keys()
        .copied()
        .max_by(|a, b| steal(a).total_cmp(&steal(b)));
    let steal = match robbed {
        Some(id) if steal(&id) > NOTABLE_STEAL => Finding::warn(
            "CPU steal",
            format!(
                "the hypervisor took {:.0} % of CPU {id}'s time over {seconds} s: latency tails and benchmark figures vary with other guests' load",
                steal(&id) * 100.0
            ),
            "benchmark on a dedicated host (udpd cannot change this); compare servers measured in the same run, over several runs".to_string(),
        ),
        Some(id) => Finding::ok(
            "CPU steal",
            format!(
                "at most {:.0} % of a CPU's time taken by the hypervisor over {seconds} s (CPU {id})",
                steal(&id) * 100.0
            ),
        ),
        None => Finding::warn(
            "CPU steal",
            "no cpuN lines in /proc/stat".to_string(),
            "run on Linux with /proc mounted to check it".to_string(),
        ),
    };
    [sharing, steal]
}

/// A loopback UDP socket with `SO_REUSEPORT` set, bound to `port` (0: any).
fn reuseport_socket(port: u16) -> std::result::Result<(OwnedFd, u16), String> {
    let fd = nixsock::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    crate::sys::set_int_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
        .map_err(|e| format!("setsockopt(SO_REUSEPORT) failed: {e}"))?;
    nixsock::bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port))
        .map_err(|e| format!("binding 127.0.0.1:{port} with SO_REUSEPORT failed: {e}"))?;
    let bound: SockaddrIn = nixsock::getsockname(fd.as_raw_fd())
        .map_err(|e| format!("cannot read the test socket's address: {e}"))?;
    Ok((fd, bound.port()))
}

/// Workers share one port through `SO_REUSEPORT`: two sockets must bind the same port.
fn check_reuseport() -> Finding {
    let result = reuseport_socket(0).and_then(|(first, port)| {
        let (second, _) = reuseport_socket(port)?;
        drop((first, second));
        Ok(port)
    });
    match result {
        Ok(port) => Finding::ok(
            "SO_REUSEPORT",
            format!("two sockets bound 127.0.0.1:{port} together"),
        ),
        Err(message) => Finding::warn(
            "SO_REUSEPORT",
            message,
            "use Linux 3.9 or later; until then run with --workers 1".to_string(),
        ),
    }
}

/// Probes a `SOL_UDP` option on a test socket: accepted means the kernel supports the offload.
fn check_udp_option(what: &str, option: i32, value: i32, kernel: &str, flag: &str) -> Finding {
    let socket = match UdpSocket::bind("127.0.0.1:0") {
        Ok(socket) => socket,
        Err(e) => {
            return Finding::warn(
                what,
                format!("cannot open a test socket: {e}"),
                "check that UDP sockets can be created here".to_string(),
            )
        }
    };
    match crate::sys::set_int_option(socket.as_fd(), libc::SOL_UDP, option, value) {
        Ok(()) => Finding::ok(what, "supported by this kernel".to_string()),
        Err(e) => Finding::warn(
            what,
            format!("not supported ({e}): udpd falls back to one datagram per syscall slot, at a higher CPU cost"),
            format!("use Linux {kernel} or later, or pass {flag} to say so explicitly"),
        ),
    }
}

/// udpd needs one descriptor per worker socket plus a few; services commonly raise the limit far higher.
fn check_nofile(workers: Option<usize>) -> Finding {
    let workers = workers.unwrap_or_else(|| crate::config::available_cpus().len());
    let want = 1024u64.max(workers as u64 * 4 + 64);
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft >= want => Finding::ok(
            "open files (RLIMIT_NOFILE)",
            format!("soft limit {soft}, hard {hard} (>= {want})"),
        ),
        Ok((soft, hard)) => Finding::warn(
            "open files (RLIMIT_NOFILE)",
            format!("soft limit {soft} < {want} (hard {hard})"),
            format!("ulimit -n {want} before starting, or LimitNOFILE= in the systemd unit (dist/udpd.service)"),
        ),
        Err(e) => Finding::warn(
            "open files (RLIMIT_NOFILE)",
            format!("cannot read the limit: {e}"),
            "check `ulimit -n`".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
        Udp: 100 2 7 90 7 3\n\
        UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
        UdpLite: 0 0 0 0 0 0\n";

    #[test]
    fn buffer_errors_warn_only_when_nonzero() {
        let finding = check_buffer_errors(
            "RcvbufErrors",
            Some(SNMP),
            Some("Udp6RcvbufErrors 1\n"),
            "fix it",
        );
        assert!(!finding.ok);
        assert!(
            finding.detail.starts_with("8 datagrams"),
            "{}",
            finding.detail
        );
        let quiet = SNMP.replace("Udp: 100 2 7 90 7 3", "Udp: 100 2 0 90 0 0");
        assert!(check_buffer_errors("RcvbufErrors", Some(&quiet), None, "fix").ok);
        assert!(!check_buffer_errors("RcvbufErrors", None, None, "fix").ok);
    }

    #[test]
    fn lines_have_the_documented_shape() {
        assert_eq!(Finding::ok("x", "fine".into()).line(), "ok    x: fine");
        assert_eq!(
            Finding::warn("x", "bad".into(), "do y".into()).line(),
            "warn  x: bad — fix: do y"
        );
    }

    fn times(busy: u64, idle: u64, steal: u64) -> CpuTimes {
        CpuTimes { busy, idle, steal }
    }

    #[test]
    fn a_busy_worker_cpu_and_steal_need_attention() {
        let before: BTreeMap<usize, CpuTimes> =
            (0..4).map(|id| (id, times(100, 1000, 10))).collect();
        let mut after = before.clone();
        // Over the sample: CPU 1 busy 60 % with other work, CPU 3 losing 10 % to steal.
        after.insert(0, times(101, 1049, 10));
        after.insert(1, times(130, 1020, 10));
        after.insert(2, times(100, 1050, 10));
        after.insert(3, times(102, 1043, 15));
        let [sharing, steal] = cpu_load_findings(&before, &after, &[0, 1]);
        assert!(!sharing.ok, "{}", sharing.line());
        assert!(
            sharing
                .detail
                .starts_with("CPU 1 of the workers' CPUs (0-1) was busy with other work")
                && sharing
                    .detail
                    .contains("(CPU 1 at 60 %; more than 20 % counts)"),
            "{}",
            sharing.detail
        );
        assert!(sharing.fix.contains("quiet now: 2-3"), "{}", sharing.fix);
        assert!(!steal.ok, "{}", steal.line());
        assert!(
            steal.detail.contains("10 % of CPU 3's time"),
            "{}",
            steal.detail
        );

        // Workers only on the quiet CPUs, and no steal: both fine.
        after.insert(3, times(102, 1048, 10));
        let [sharing, steal] = cpu_load_findings(&before, &after, &[0, 2]);
        assert!(
            sharing.ok && sharing.detail.contains("at most 2 %"),
            "{}",
            sharing.line()
        );
        assert!(steal.ok, "{}", steal.line());
        // A CPU missing from either reading is not counted busy, and nothing divides by zero.
        let [sharing, _] = cpu_load_findings(&BTreeMap::new(), &after, &[7]);
        assert!(sharing.ok, "{}", sharing.line());
    }

    #[test]
    fn too_many_workers_warn() {
        assert!(check_cpus(Some(1)).ok);
        assert!(!check_cpus(Some(100_000)).ok);
    }

    #[test]
    fn the_recommendations_have_one_home() {
        let script = include_str!("../../scripts/tune-sysctl.sh");
        assert!(
            script.contains(&format!("\nbuffer={RECOMMENDED_BUFFER}\n")),
            "scripts/tune-sysctl.sh must default --buffer to RECOMMENDED_BUFFER"
        );
        assert!(
            script.contains(&format!("\nbacklog={RECOMMENDED_BACKLOG}\n")),
            "scripts/tune-sysctl.sh must default --backlog to RECOMMENDED_BACKLOG"
        );
        let mib = format!("{} MiB", RECOMMENDED_BUFFER >> 20);
        let command = <DoctorArgs as clap::Args>::augment_args(clap::Command::new("doctor"));
        for flag in ["rcvbuf", "sndbuf"] {
            let argument = command
                .get_arguments()
                .find(|argument| argument.get_id() == flag)
                .unwrap();
            let help = argument.get_help().unwrap().to_string();
            assert!(
                help.contains(&mib),
                "--{flag} help says {help:?}, not {mib}"
            );
        }
    }
}
