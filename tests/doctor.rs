//! `udpd doctor`: runs on this host, prints one finding line per check, exits 0 (all ok) or 1 (needs attention).

mod common;

use std::time::Duration;

/// Longest any one run may take before the test kills it and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `udpd doctor ARGS` (bounded) and returns (exit code, stdout, stderr).
fn doctor(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    common::run_to_end(&all, b"", RUN_TIMEOUT)
}

/// The finding line about `what`.
fn finding<'a>(stdout: &'a str, what: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line[6.min(line.len())..].starts_with(what))
        .unwrap_or_else(|| panic!("no finding for {what:?} in:\n{stdout}"))
}

const CHECKS: [&str; 12] = [
    "net.core.rmem_max: ",
    "net.core.wmem_max: ",
    "net.core.netdev_max_backlog: ",
    "UDP RcvbufErrors: ",
    "UDP SndbufErrors: ",
    "CPUs: ",
    "CPU sharing: ",
    "CPU steal: ",
    "SO_REUSEPORT: ",
    "UDP GSO: ",
    "UDP GRO: ",
    "open files (RLIMIT_NOFILE): ",
];

#[test]
fn every_check_prints_one_finding_and_the_exit_code_follows_them() {
    let (code, stdout, stderr) = doctor(&[]);
    let findings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ok    ") || l.starts_with("warn  "))
        .collect();
    assert_eq!(findings.len(), CHECKS.len(), "stdout:\n{stdout}");
    for (line, what) in findings.iter().zip(CHECKS) {
        assert_eq!(
            &line[6..6 + what.len()],
            what,
            "order of findings:\n{stdout}"
        );
        if line.starts_with("warn  ") {
            assert!(line.contains(" — fix: "), "a warning names its fix: {line}");
        } else {
            assert!(!line.contains(" — fix: "), "{line}");
        }
    }
    let warnings = findings.iter().filter(|l| l.starts_with("warn")).count();
    match code {
        0 => {
            assert_eq!(warnings, 0, "{stdout}");
            assert!(stdout.contains("doctor: all 12 checks ok"), "{stdout}");
        }
        1 => {
            assert!(warnings > 0, "{stdout}");
            assert!(
                stderr.contains(&format!("{warnings} of 12 checks need attention")),
                "{stderr}"
            );
        }
        other => panic!("exit code {other}; stderr: {stderr}"),
    }
    // The buffer-size checks compare the sysctl with the 8 MiB recommendation when no size is given.
    assert!(
        finding(&stdout, "net.core.rmem_max").contains("8388608"),
        "{stdout}"
    );
}

#[test]
fn the_buffer_checks_use_the_given_sizes() {
    // Every Linux allows at least 1 KiB (the minimum rmem_max is far above it).
    let (_, stdout, _) = doctor(&["--rcvbuf", "1024", "--sndbuf", "2048"]);
    let rmem = finding(&stdout, "net.core.rmem_max");
    assert!(
        rmem.starts_with("ok    ") && rmem.contains("(--rcvbuf 1024)"),
        "{rmem}"
    );
    let wmem = finding(&stdout, "net.core.wmem_max");
    assert!(
        wmem.starts_with("ok    ") && wmem.contains("(--sndbuf 2048)"),
        "{wmem}"
    );
}

#[test]
fn more_workers_than_cpus_needs_attention() {
    let (code, stdout, stderr) = doctor(&["--workers", "100000"]);
    let cpus = finding(&stdout, "CPUs");
    assert!(cpus.starts_with("warn  "), "{cpus}");
    assert!(cpus.contains("100000 workers but only"), "{cpus}");
    assert!(cpus.contains("— fix: use --workers "), "{cpus}");
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [["--rcvbuf", "5"], ["--workers", "0"]] {
        let (code, stdout, stderr) = doctor(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn tune_sysctl_dry_run_changes_nothing_and_says_what_it_would_do() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tune-sysctl.sh");
    let (code, stdout, stderr) = common::run_program_to_end(
        "bash",
        &[script, "--dry-run", "--persist", "--buffer", "999999999999"],
        b"",
        RUN_TIMEOUT,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would run: sysctl -w net.core.rmem_max=999999999999"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would run: sysctl -w net.core.wmem_max=999999999999"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would write /etc/sysctl.d/60-udpd.conf"),
        "{stdout}"
    );
    assert!(!stdout.contains("running:"), "{stdout}");
    let (code, _, _) = common::run_program_to_end(
        "bash",
        &[script, "--dry-run", "--buffer", "lots"],
        b"",
        RUN_TIMEOUT,
    );
    assert_eq!(code, 2);
}
