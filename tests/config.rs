//! `udpd serve --config FILE` and `--print-config`: round trip, override order, and every rejection path.

mod common;

use std::path::PathBuf;
use std::time::Duration;

/// A config file in a fresh temporary directory, removed on drop.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let dir =
            std::env::temp_dir().join(format!("udpd-config-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("udpd.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `udpd serve ARGS` (which must exit by itself, within 10 s) and returns (exit code, stdout, stderr).
fn serve(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    common::run_to_end(&all, b"", Duration::from_secs(10))
}

/// The value of `key = value` in printed TOML.
fn value<'a>(toml: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    toml.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in:\n{toml}"))
}

#[test]
fn print_config_shows_defaults_and_exits_0() {
    let (code, stdout, stderr) = serve(&["--print-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(value(&stdout, "listen"), "\"0.0.0.0:9999\"");
    assert_eq!(value(&stdout, "batch"), "64");
    let max: usize = value(&stdout, "max_datagram").parse().unwrap();
    assert!(max >= 65_507, "the default takes any UDP payload: {max}");
    assert_eq!(value(&stdout, "handler"), "\"echo\"");
    assert_eq!(value(&stdout, "interval"), "1.0");
    for key in ["gso", "gro", "latency", "pin"] {
        assert_eq!(value(&stdout, key), "true", "{key}");
    }
    assert_eq!(value(&stdout, "quiet"), "false");
}

#[test]
fn printed_config_round_trips() {
    let (code, first, stderr) = serve(&[
        "--print-config",
        "--listen",
        "[::1]:5353",
        "--workers",
        "3",
        "--no-pin",
        "--batch",
        "16",
        "--max-datagram",
        "1500",
        "--handler",
        "ack:got \"it\"",
        "--rcvbuf",
        "65536",
        "--no-gso",
        "--interval",
        "0.25",
        "--quiet",
        "--no-latency",
        "--format",
        "json",
        "--metrics",
        "127.0.0.1:9100",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(value(&first, "pin"), "false");
    assert_eq!(value(&first, "format"), "\"json\"");
    assert_eq!(value(&first, "metrics"), "\"127.0.0.1:9100\"");
    assert_eq!(value(&first, "handler"), "'ack:got \"it\"'");
    let file = ConfigFile::new("round-trip", &first);
    let (code, second, stderr) = serve(&["--config", file.arg(), "--print-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first, second);
}

#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let file = ConfigFile::new(
        "override",
        "workers = 3\nhandler = \"upper\"\nbatch = 8\ncpus = [0]\ngso = false\n",
    );
    let (code, stdout, stderr) = serve(&[
        "--config",
        file.arg(),
        "--workers",
        "2",
        "--no-pin",
        "--print-config",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(value(&stdout, "workers"), "2", "flag wins");
    assert_eq!(
        value(&stdout, "pin"),
        "false",
        "--no-pin drops the file's cpus"
    );
    assert_eq!(
        value(&stdout, "handler"),
        "\"upper\"",
        "file wins over default"
    );
    assert_eq!(value(&stdout, "batch"), "8");
    assert_eq!(value(&stdout, "gso"), "false");
    let (_, defaults, _) = serve(&["--print-config"]);
    assert_eq!(
        value(&stdout, "max_datagram"),
        value(&defaults, "max_datagram"),
        "default stays"
    );
    let (code, stdout, stderr) =
        serve(&["--config", file.arg(), "--batch", "32", "--print-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(value(&stdout, "batch"), "32");
    assert_eq!(value(&stdout, "cpus"), "\"0\"");
}

#[test]
fn the_daemon_runs_with_the_file() {
    let file = ConfigFile::new("daemon", "handler = \"upper\"\nlisten = \"127.0.0.1:1\"\n");
    // The --listen flag (port 0) overrides the file's port; the handler comes from the file.
    let daemon = common::Daemon::start("127.0.0.1:0", 1, &["--config", file.arg()]);
    let socket = common::client_for(daemon.addr);
    assert_eq!(
        common::round_trip(&socket, daemon.addr, b"from a file"),
        b"FROM A FILE"
    );
    let summary = daemon.stop();
    assert!(
        summary.header.contains("handler upper"),
        "summary names the handler: {}",
        summary.header
    );
}

#[test]
fn every_bad_file_is_one_line_naming_key_file_and_allowed_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown",
            "colour = \"blue\"\n",
            "unknown key `colour`: allowed keys are listen, workers",
        ),
        (
            "type-int",
            "workers = \"four\"\n",
            "key `workers` must be an integer from 1 to 1024, not a string",
        ),
        (
            "type-bool",
            "gso = 1\n",
            "key `gso` must be true or false, not an integer",
        ),
        (
            "type-string",
            "handler = 3\n",
            "key `handler` must be \"echo\"",
        ),
        (
            "type-float",
            "interval = \"1s\"\n",
            "key `interval` must be a number of seconds from 0.01 to 3600",
        ),
        (
            "type-table",
            "[listen]\nport = 1\n",
            "key `listen` must be an address string",
        ),
        (
            "range-workers",
            "workers = 0\n",
            "key `workers` = 0 is out of range: use an integer from 1 to 1024",
        ),
        (
            "range-batch",
            "batch = 5000\n",
            "key `batch` = 5000 is out of range: use an integer from 1 to 1024",
        ),
        (
            "range-max",
            "max_datagram = 70000\n",
            "key `max_datagram` = 70000 is out of range",
        ),
        (
            "range-interval",
            "interval = 0.001\n",
            "key `interval` = 0.001 is out of range: use a number of seconds from 0.01 to 3600",
        ),
        (
            "range-rcvbuf",
            "rcvbuf = 10\n",
            "key `rcvbuf` = 10 is out of range: use an integer from 1024",
        ),
        (
            "range-sndbuf",
            "sndbuf = 4294967296\n",
            "key `sndbuf` = 4294967296 is out of range",
        ),
        (
            "bad-handler",
            "handler = \"shout\"\n",
            "key `handler` = \"shout\" is out of range: use \"echo\", \"upper\"",
        ),
        (
            "bad-cpus",
            "cpus = \"3-1\"\n",
            "key `cpus` = \"3-1\" is out of range",
        ),
        (
            "bad-listen",
            "listen = \"nowhere\"\n",
            "key `listen` = \"nowhere\" is out of range: use an address string",
        ),
        (
            "contradiction",
            "pin = false\ncpus = \"0\"\n",
            "keys `cpus` and `pin = false` contradict each other",
        ),
        (
            "bad-format",
            "format = \"xml\"\n",
            "key `format` = \"xml\" is out of range: use \"text\" or \"json\"",
        ),
        (
            "bad-metrics",
            "metrics = 9100\n",
            "key `metrics` must be an address string",
        ),
        (
            "syntax",
            "workers = 2\nbatch = = 3\n",
            "line 2: not valid TOML",
        ),
    ];
    for (name, text, expected) in cases {
        let file = ConfigFile::new(name, text);
        let (code, stdout, stderr) = serve(&["--config", file.arg(), "--print-config"]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: nothing printed: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("udpd: error: {}", file.arg())),
            "{name}: names the file: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{name}: {stderr:?} lacks {expected:?}"
        );
        // Without --print-config the daemon refuses to start the same way (nothing half-configured).
        let (code, stdout, _) = serve(&["--config", file.arg(), "--listen", "127.0.0.1:0"]);
        assert_eq!(code, 2, "{name}");
        assert!(!stdout.contains("listening on"), "{name}: {stdout}");
    }
    let (code, _, stderr) = serve(&["--config", "/nonexistent/udpd.toml", "--print-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read config file /nonexistent/udpd.toml"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/udpd.toml");
    let (code, stdout, stderr) = serve(&["--config", example, "--print-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(value(&stdout, "listen"), "\"0.0.0.0:9999\"");
    assert_eq!(value(&stdout, "handler"), "\"echo\"");
}

/// Runs `udpd serve ARGS` through the common harness (killed, and the test failed, if it has not exited
/// within 10 s); returns (exit code, stdout, stderr).
fn serve_bounded(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::run_to_end(&all, b"", Duration::from_secs(10));
    (Some(code), stdout, stderr)
}

#[test]
fn cpus_the_process_may_not_use_exit_2_with_one_line_before_starting() {
    let allowed = udpd::config::available_cpus();
    let mut cases = vec![
        vec!["--cpus", "0-18446744073709551615"],
        vec!["--cpus", "0-1500"],
        vec!["--cpus", "0-99999999"],
    ];
    if allowed.contains(&1024) {
        eprintln!("this process may use CPU 1024: --cpus 1024 is valid here, not checked");
    } else {
        cases.push(vec!["--cpus", "1024"]);
    }
    for case in cases {
        let mut args = vec!["--listen", "127.0.0.1:0", "--quiet"];
        args.extend(&case);
        let (code, stdout, stderr) = serve_bounded(&args);
        assert_eq!(
            code,
            Some(2),
            "{case:?}: stdout {stdout:?} stderr {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "{case:?}: one line: {stderr:?}");
        assert!(stderr.starts_with("udpd: error: --cpus "), "{stderr}");
        assert!(
            stderr.contains("(allowed: "),
            "names the allowed CPUs: {stderr}"
        );
        assert!(!stdout.contains("listening on"), "{case:?}: {stdout}");
    }
    let file = ConfigFile::new("huge-cpus", "cpus = \"0-99999999\"\n");
    let (code, stdout, stderr) = serve_bounded(&["--config", file.arg(), "--print-config"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("key `cpus`"), "{stderr}");
}

#[test]
fn flags_turn_the_files_switches_back_and_the_last_flag_wins() {
    let file = ConfigFile::new(
        "switch-back",
        "gso = false\nquiet = true\nloop_guard = false\n",
    );
    let (code, stdout, stderr) = serve_bounded(&[
        "--config",
        file.arg(),
        "--gso",
        "--no-quiet",
        "--print-config",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(value(&stdout, "gso"), "true", "--gso undoes gso = false");
    assert_eq!(
        value(&stdout, "quiet"),
        "false",
        "--no-quiet undoes quiet = true"
    );
    assert_eq!(
        value(&stdout, "loop_guard"),
        "false",
        "no flag: the file's value stays"
    );
    let (code, stdout, stderr) = serve_bounded(&[
        "--no-gro",
        "--gro",
        "--share-port",
        "--no-share-port",
        "--print-config",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(value(&stdout, "gro"), "true");
    assert_eq!(value(&stdout, "share_port"), "false");
}

#[test]
fn guard_and_account_settings_print_and_read_back() {
    // (flags, the key --print-config shows them under, its printed value)
    let settings: [(&[&str], &str, &str); 12] = [
        (&["--no-loop-guard"], "loop_guard", "false"),
        (
            &["--loop-guard-ports", "7,53"],
            "loop_guard_ports",
            "\"7,53\"",
        ),
        (&["--max-amplification", "0"], "max_amplification", "0.0"),
        (&["--limit", "200/50"], "limit", "\"200/50\""),
        (&["--limit-prefix", "24/48"], "limit_prefix", "\"24/48\""),
        (&["--limit-table", "4096"], "limit_table", "4096"),
        (&["--limit-dry-run"], "limit_dry_run", "true"),
        (
            &["--allow", "10.0.0.0/8", "--allow", "::1"],
            "allow",
            "[\"10.0.0.0/8\", \"::1/128\"]",
        ),
        (&["--deny", "10.1.0.0/16"], "deny", "[\"10.1.0.0/16\"]"),
        (&["--user", "udpd"], "user", "\"udpd\""),
        (&["--group", "udpd"], "group", "\"udpd\""),
        (&["--share-port"], "share_port", "true"),
    ];
    let mut args = vec!["--print-config"];
    args.extend(
        settings
            .iter()
            .flat_map(|(flags, _, _)| flags.iter().copied()),
    );
    let (code, first, stderr) = serve_bounded(&args);
    assert_eq!(code, Some(0), "{stderr}");
    for (flags, key, printed) in settings {
        assert_eq!(value(&first, key), printed, "{flags:?}");
    }
    let file = ConfigFile::new("guard-round-trip", &first);
    let (code, second, stderr) = serve_bounded(&["--config", file.arg(), "--print-config"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(first, second);
    for bad in [
        &["--limit-table", "1"][..],
        &["--max-amplification", "1001"],
        &["--user", "two words"],
        &["--allow", "10.0.0.0/33"],
    ] {
        let (code, _, stderr) = serve_bounded(&[bad[0], bad[1], "--print-config"]);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{bad:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("udpd: error: {} ", bad[0])),
            "{stderr}"
        );
    }
}
