//! Reload without losing a datagram: `udpd load` at a fixed rate while the daemon is reloaded (SIGHUP,
//! the sockets handed to a fresh process) three times — every datagram answered, every reply correct,
//! and the summaries of all the processes together account for every datagram sent. Also: a reload
//! with a broken or sockets-changing configuration leaves the running process serving.

mod common;

use std::time::Duration;

use common::{client_for, round_trip, Running, Summary};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// `udpd serve` from `config` (a TOML file path) on 127.0.0.1 with a free port.
fn serve_args(config: &str) -> [&str; 7] {
    [
        "serve",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--no-pin",
        "--quiet",
    ]
}

/// A daemon started from `config` (a TOML file path) on 127.0.0.1 with a free port; returns it and its port.
fn start(config: &str) -> (Running, u16) {
    let mut daemon = Running::udpd(&serve_args(config));
    let (addr, _) = daemon.wait_stdout("the listening line", LINE_TIMEOUT, common::parse_listening);
    (daemon, addr.port())
}

/// Sends SIGHUP to `pid` and waits for the line naming the process that took over; returns its pid.
fn reload(daemon: &mut Running, pid: Pid) -> Pid {
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    daemon.wait_stderr("a handover line", LINE_TIMEOUT, |line| {
        let rest = line.strip_prefix("udpd: handed over to pid ")?;
        let number = rest.split(';').next()?.parse::<i32>().ok()?;
        Some(Pid::from_raw(number))
    })
}

/// Every summary block in `stdout` (one per process that served), parsed.
fn summaries(stdout: &str, stderr: &str) -> Vec<Summary> {
    stdout
        .split("== summary:")
        .skip(1)
        .map(|block| Summary::parse(&format!("== summary:{block}"), stderr))
        .collect()
}

/// A fresh scratch folder for one test, and the path of a config file in it holding `config`.
fn scratch(name: &str, config: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("udpd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("udpd.toml");
    std::fs::write(&file, config).unwrap();
    (dir, file)
}

fn json_u64(json: &serde_json::Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in the load report: {json}"))
}

#[test]
fn three_reloads_under_load_lose_nothing() {
    let (dir, config) = scratch("reload", "handler = \"echo\"\nworkers = 2\n");
    let (mut daemon, port) = start(config.to_str().unwrap());
    let target = format!("127.0.0.1:{port}");
    let mut load = Running::udpd(&[
        "load",
        &target,
        "--rate",
        "20000",
        "--duration",
        "4",
        "--warmup",
        "0",
        "--flows",
        "8",
        "--timeout",
        "2",
        "--json",
        "-",
        "--quiet",
    ]);
    // Reload about once a second while the load runs; each time the process that took over is the one
    // to signal next. The pauses only spread the reloads over the load; nothing waits on them.
    let mut pid = daemon.pid();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(900));
        pid = reload(&mut daemon, pid);
    }
    let report = load.wait_exit(Duration::from_secs(30));
    assert_eq!(report.code, 0, "udpd load failed: {}", report.stderr);
    let json: serde_json::Value = serde_json::from_str(report.stdout.trim()).expect("load JSON");
    let sent = json_u64(&json, "sent");
    assert!(sent >= 40_000, "the load ran at its rate: {json}");
    for key in ["lost", "mismatched", "duplicates", "late", "send_errors"] {
        assert_eq!(
            json_u64(&json, key),
            0,
            "{key} across three reloads: {json}"
        );
    }
    assert_eq!(json_u64(&json, "received"), sent, "{json}");
    kill(pid, Signal::SIGTERM).expect("SIGTERM the last process");
    let finished = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    let all = summaries(&finished.stdout, &finished.stderr);
    assert_eq!(all.len(), 4, "one summary per process: {}", finished.stdout);
    let rx: u64 = all.iter().map(|s| s.total("rx")).sum();
    let tx: u64 = all.iter().map(|s| s.total("tx")).sum();
    for summary in &all {
        summary.assert_accounting_holds();
    }
    assert_eq!(rx, sent, "the processes together read every datagram sent");
    assert_eq!(tx, sent, "and answered every one");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_that_cannot_apply_leaves_the_old_process_serving() {
    let (dir, config) = scratch("reload-bad", "workers = 1\n");
    let (mut daemon, port) = start(config.to_str().unwrap());
    let server: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let client = client_for(server);
    for (bad, why) in [
        ("workers = \"many\"\n", "must be an integer"),
        ("workers = 2\n", "reload refused: --workers changed"),
    ] {
        std::fs::write(&config, bad).unwrap();
        kill(daemon.pid(), Signal::SIGHUP).expect("SIGHUP");
        daemon.wait_stderr("the refusal", LINE_TIMEOUT, |line| {
            line.contains(why).then_some(())
        });
        daemon.wait_stderr("the old process going on", LINE_TIMEOUT, |line| {
            line.starts_with("udpd: reload failed: ").then_some(())
        });
        assert_eq!(round_trip(&client, server, b"still here"), b"still here");
    }
    daemon.signal(Signal::SIGTERM);
    let finished = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    let all = summaries(&finished.stdout, &finished.stderr);
    assert_eq!(
        all.len(),
        1,
        "the old process served throughout: {}",
        finished.stdout
    );
    all[0].assert_total("tx", 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn under_systemd_the_process_that_serves_reports_its_pid_and_readiness() {
    use std::os::unix::net::UnixDatagram;
    let (dir, config) = scratch("notify", "workers = 1\n");
    let path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&path).expect("a notify socket");
    systemd.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let config = config.to_str().unwrap();
    let mut daemon = Running::spawn_with_env(
        common::udpd_bin(),
        &serve_args(config),
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
        false,
    );
    let mut message = [0u8; 512];
    let mut next_state = || {
        let len = systemd
            .recv(&mut message)
            .expect("a notification within 10 s");
        String::from_utf8_lossy(&message[..len]).into_owned()
    };
    let first = next_state();
    let pid = daemon.pid();
    assert!(first.contains(&format!("MAINPID={pid}\n")), "{first:?}");
    assert!(first.contains("READY=1"), "{first:?}");
    let successor = reload(&mut daemon, pid);
    let second = next_state();
    assert!(
        second.contains(&format!("MAINPID={successor}\n")),
        "{second:?}"
    );
    assert!(second.contains("READY=1"), "{second:?}");
    kill(successor, Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_keeps_the_sockets_of_each_local_address() {
    let (dir, config) = scratch("reload-split", "workers = 1\n");
    let config = config.to_str().unwrap().to_string();
    let args = [
        "serve",
        "--config",
        &config,
        "--listen",
        "0.0.0.0:0",
        "--no-pin",
        "--quiet",
    ];
    let mut daemon = Running::udpd(&args);
    let (addr, _) = daemon.wait_stdout("the listening line", LINE_TIMEOUT, common::parse_listening);
    let server: std::net::SocketAddr = ([127, 0, 0, 1], addr.port()).into();
    let client = client_for(server);
    assert_eq!(round_trip(&client, server, b"before"), b"before");
    let first = daemon.pid();
    let successor = reload(&mut daemon, first);
    assert_eq!(round_trip(&client, server, b"after"), b"after");
    // The old process's summary comes first (it stops within its idle receive timeout).
    daemon.wait_stdout("the old process's summary", LINE_TIMEOUT, |line| {
        line.starts_with("== summary:").then_some(())
    });
    // The successor cannot drop the per-address sockets it was handed: refused, it keeps serving.
    std::fs::write(&config, "workers = 1\naddress_sockets = false\n").unwrap();
    kill(successor, Signal::SIGHUP).expect("SIGHUP");
    daemon.wait_stderr("the refusal", LINE_TIMEOUT, |line| {
        line.contains("reload refused: --no-address-sockets")
            .then_some(())
    });
    daemon.wait_stderr("the process going on", LINE_TIMEOUT, |line| {
        line.starts_with("udpd: reload failed: ").then_some(())
    });
    assert_eq!(round_trip(&client, server, b"still"), b"still");
    kill(successor, Signal::SIGTERM).expect("SIGTERM");
    let finished = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    let split_lines = finished
        .stderr
        .lines()
        .filter(|line| line.contains("each worker also has a socket on 127.0.0.1"))
        .count();
    assert_eq!(
        split_lines, 2,
        "both processes served 127.0.0.1 on its own socket: {}",
        finished.stderr
    );
    let all = summaries(&finished.stdout, &finished.stderr);
    assert_eq!(all.len(), 2, "{}", finished.stdout);
    let tx: u64 = all.iter().map(|s| s.total("tx")).sum();
    assert_eq!(tx, 3);
    let _ = std::fs::remove_dir_all(dir);
}
