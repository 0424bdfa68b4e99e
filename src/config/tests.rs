//! Unit tests of the settings table as a whole: help and defaults of every entry, ranges, both-way switches,
//! the guard and account flags, CPU lists, and the layering of flags over a file.

use super::*;
use crate::config::cpus::format_cpu_list;
use crate::config::guard::{Cidr, RateLimit, DEFAULT_LOOP_GUARD_PORTS};
use crate::config::kinds::{Kind, Value};
use crate::config::settings;

fn flags(list: &[&str]) -> ServeArgs {
    ServeArgs::from_flags(list).unwrap_or_else(|e| panic!("{list:?}: {e}"))
}

fn resolved(list: &[&str]) -> ServeConfig {
    flags(list).resolve().unwrap()
}

/// The one line `udpd` prints for a refused command line.
fn flag_error(list: &[&str]) -> String {
    let error = ServeArgs::from_flags(list).expect_err("must be refused");
    let line = crate::cli::one_line(&error.to_string());
    assert!(!line.contains('\n'), "{line}");
    line
}

/// The range a numeric setting states, e.g. "from 1 to 1024".
fn range_of(kind: &Kind) -> Option<String> {
    match kind {
        Kind::Whole { min, max, .. } => Some(format!("from {min} to {max}")),
        Kind::Number { min, max, .. } => Some(format!("from {min} to {max}")),
        _ => None,
    }
}

#[test]
fn every_setting_has_help_a_flag_named_like_its_key_and_a_unique_key() {
    let mut keys = std::collections::HashSet::new();
    let mut count = 0;
    for setting in settings::all() {
        count += 1;
        assert!(keys.insert(setting.key), "{} twice", setting.key);
        assert!(setting.help.len() > 10, "{}: help", setting.key);
        assert!(!setting.accepts().is_empty(), "{}", setting.key);
        assert_eq!(setting.flag, setting.key.replace('_', "-"));
        match setting.kind {
            Kind::Switch { off } => {
                assert_eq!(off, format!("no-{}", setting.flag));
                assert!(setting.value_name.is_empty() && setting.bad.is_empty());
            }
            _ => assert!(!setting.value_name.is_empty() && !setting.bad.is_empty()),
        }
        assert!(settings::find(setting.key).is_some());
    }
    assert_eq!(count, 31);
    let keys_help = file::keys();
    assert_eq!(keys_help.len(), 31);
    assert!(keys_help.contains(&("batch", "an integer from 1 to 1024".to_string())));
    let help = {
        use clap::Args;
        ServeArgs::augment_args(clap::Command::new("serve"))
            .render_help()
            .to_string()
    };
    for setting in settings::all() {
        assert!(
            help.contains(&format!("--{}", setting.flag)),
            "{}",
            setting.flag
        );
        assert!(help.contains(setting.help), "{}", setting.key);
        if let Some(range) = range_of(&setting.kind) {
            assert!(help.contains(&range), "{}: {range}", setting.key);
        }
    }
}

#[test]
fn every_default_prints_parses_and_validates_back_to_the_default() {
    let defaults = ServeConfig::default();
    for setting in settings::all() {
        let Some(value) = (setting.show)(&defaults) else {
            assert!(
                !setting.note.is_empty(),
                "{}: unset needs a note",
                setting.key
            );
            continue;
        };
        let line = format!("{} = {}\n", setting.key, value.to_toml());
        let layer = file::parse(&line, "defaults").unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(layer.get(setting.key), Some(&value), "{line}");
        assert_eq!(layer.resolve(), defaults, "{line}");
        let text = value.to_text();
        let empty_list = matches!(&value, Value::Cidrs(list) if list.is_empty());
        if !matches!(setting.kind, Kind::Switch { .. }) && !empty_list {
            assert_eq!(setting.parse_text(&text), Ok(value.clone()), "{text}");
        }
    }
}

#[test]
fn every_example_is_valid_and_changes_the_configuration() {
    let defaults = ServeConfig::default();
    for setting in settings::all() {
        if setting.key == "cpus" && available_cpus().len() < 2 {
            eprintln!("skipping cpus: one CPU, so no list differs from the default");
            continue;
        }
        let line = format!("{} = {}\n", setting.key, setting.example);
        let config = file::parse(&line, "example")
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .resolve();
        assert_ne!(config, defaults, "{line} changes nothing");
    }
}

#[test]
fn each_bad_value_is_one_line_naming_the_flag_or_key_and_what_is_allowed() {
    for setting in settings::all() {
        let toml = match setting.kind {
            Kind::Switch { .. } => "1".to_string(),
            Kind::Whole { .. } | Kind::Number { .. } => setting.bad.to_string(),
            Kind::Text { .. } => toml::Value::String(setting.bad.to_string()).to_string(),
        };
        let error = file::parse(&format!("{} = {toml}\n", setting.key), "my.toml").unwrap_err();
        let message = error.to_string();
        assert_eq!(error.exit_code(), 2);
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with(&format!("my.toml: key `{}` ", setting.key)),
            "{message}"
        );
        if let Kind::Switch { .. } = setting.kind {
            assert!(message.contains("must be true or false"), "{message}");
            continue;
        }
        let line = flag_error(&[&format!("--{}", setting.flag), setting.bad]);
        assert!(line.starts_with(&format!("--{} ", setting.flag)), "{line}");
        if let Some(range) = range_of(&setting.kind) {
            assert!(line.contains(&range), "{line}");
            assert!(message.contains(&range), "{message}");
        }
        assert!(line.contains("use "), "says what to use: {line}");
    }
}

#[test]
fn switches_work_both_ways_and_the_last_flag_wins() {
    for setting in settings::all() {
        let Kind::Switch { off } = setting.kind else {
            continue;
        };
        let on = format!("--{}", setting.flag);
        let off = format!("--{off}");
        let value = |list: &[&str]| flags(list).flags.get(setting.key).cloned();
        assert_eq!(value(&[&on]), Some(Value::Switch(true)), "{on}");
        assert_eq!(value(&[&off]), Some(Value::Switch(false)), "{off}");
        assert_eq!(
            value(&[&on, &off]),
            Some(Value::Switch(false)),
            "{on} {off}"
        );
        assert_eq!(value(&[&off, &on]), Some(Value::Switch(true)), "{off} {on}");
        assert_eq!(value(&[&on, &on]), Some(Value::Switch(true)), "{on} twice");
        assert_eq!(value(&[&off, &on, &off]), Some(Value::Switch(false)));
        assert_eq!(value(&[]), None, "absent");
    }
}

#[test]
fn flags_undo_the_files_switches_and_absent_flags_keep_them() {
    let file = file::parse("gso = false\nquiet = true\nshare_port = true\n", "f").unwrap();
    let config = file
        .clone()
        .under(&flags(&["--gso", "--no-quiet"]).flags)
        .resolve();
    assert!(config.gso && !config.quiet && config.share_port);
    let config = file.under(&flags(&[]).flags).resolve();
    assert!(!config.gso && config.quiet && config.share_port);
}

#[test]
fn guard_and_account_flags_land_in_the_configuration() {
    let config = resolved(&[
        "--no-loop-guard",
        "--loop-guard-ports",
        "7,53",
        "--max-amplification",
        "2.5",
        "--limit",
        "200/50",
        "--limit-prefix",
        "24/48",
        "--limit-table",
        "1024",
        "--limit-dry-run",
        "--allow",
        "10.1.2.3/8",
        "--allow",
        "::1",
        "--deny",
        "10.9.0.0/16",
        "--user",
        "udpd",
        "--group",
        "nogroup",
        "--share-port",
    ]);
    let guard = &config.guard;
    assert!(!guard.loop_guard && guard.limit_dry_run && config.share_port);
    assert_eq!(guard.loop_guard_ports, vec![7, 53]);
    assert_eq!(guard.max_amplification, Some(2.5));
    assert_eq!(
        guard.limit,
        Some(RateLimit {
            rate: 200,
            burst: 50
        })
    );
    assert_eq!((guard.limit_prefix, guard.limit_table), ((24, 48), 1024));
    let cidr = |t: &str| t.parse::<Cidr>().unwrap();
    assert_eq!(guard.allow, vec![cidr("10.0.0.0/8"), cidr("::1/128")]);
    assert_eq!(guard.deny, vec![cidr("10.9.0.0/16")]);
    assert_eq!(config.user.as_deref(), Some("udpd"));
    assert_eq!(config.group.as_deref(), Some("nogroup"));

    let defaults = resolved(&[]).guard;
    assert!(defaults.loop_guard && defaults.limit.is_none());
    assert_eq!(defaults.loop_guard_ports, DEFAULT_LOOP_GUARD_PORTS.to_vec());
    assert_eq!(defaults.max_amplification, Some(3.0));
    assert_eq!(
        (defaults.limit_prefix, defaults.limit_table),
        ((32, 56), 65_536)
    );
    let off = resolved(&["--max-amplification", "0", "--loop-guard-ports", ""]).guard;
    assert_eq!(
        (off.max_amplification, off.loop_guard_ports),
        (None, vec![])
    );
    assert_eq!(
        resolved(&["--limit", "10"]).guard.limit,
        Some(RateLimit {
            rate: 10,
            burst: 10
        })
    );
    let longest = "u".repeat(settings_guard::MAX_ACCOUNT_NAME);
    assert_eq!(resolved(&["--user", &longest]).user, Some(longest.clone()));
    for bad in [
        ["--max-amplification", "inf"],
        ["--max-amplification", "NaN"],
        ["--max-amplification", "1001"],
        ["--max-amplification=-1", "--quiet"],
        ["--limit-table", "4194305"],
        ["--limit", "5/0"],
        ["--user", ""],
        ["--user", "a\0b"],
        ["--group", "tab\there"],
        ["--deny", "10.0.0.0/33"],
        ["--loop-guard-ports", "7,x"],
    ] {
        let line = flag_error(&bad);
        let flag = bad[0].split('=').next().unwrap();
        assert!(line.starts_with(&format!("{flag} ")), "{line}");
    }
    let line = flag_error(&["--user", &format!("{longest}x")]);
    assert!(line.contains("1 to 32 characters"), "{line}");
}

#[test]
fn format_and_handler_are_parsed_by_clap() {
    assert_eq!(resolved(&["--format", "json"]).format, ReportFormat::Json);
    assert_eq!(
        resolved(&["--handler", "ack:ok"]).handler,
        HandlerSpec::Ack(b"ok".to_vec())
    );
    assert!(flag_error(&["--format", "xml"]).contains("use \"text\" or \"json\""));
    assert!(flag_error(&["--handler", "shout"]).starts_with("--handler shout is out of range"));
}

#[test]
fn cpu_flags_are_checked_against_the_mask_before_anything_starts() {
    let allowed = format_cpu_list(&available_cpus());
    if !available_cpus().contains(&1024) {
        assert_eq!(
            flag_error(&["--cpus", "1024"]),
            format!(
                "--cpus 1024: CPU 1024 is not one this process may use (allowed: {allowed}) \
                 (see `udpd --help` or `udpd <command> --help`)"
            )
        );
    }
    for huge in ["0-18446744073709551615", "0-99999999", "0-1500"] {
        let line = flag_error(&["--cpus", huge]);
        assert!(line.contains("names more than 1024 CPUs"), "{line}");
        let file = format!("cpus = \"{huge}\"\n");
        let message = file::parse(&file, "f.toml").unwrap_err().to_string();
        assert!(message.starts_with("f.toml: key `cpus` = "), "{message}");
        assert!(message.contains("names more than 1024 CPUs"), "{message}");
    }
    let message = file::parse("cpus = [1024, 65536]\n", "f.toml")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("is not one this process may use"),
        "{message}"
    );
    assert!(flag_error(&["--cpus", "18446744073709551616"]).contains("is out of range"));
    let first = available_cpus()[0].to_string();
    let config = resolved(&["--cpus", &first]);
    assert_eq!(
        (config.cpus, config.workers),
        (Some(vec![available_cpus()[0]]), 1)
    );
    assert!((1..=cpus::MAX_CPUS).contains(&resolved(&[]).workers));
}

#[test]
fn listen_accepts_v4_v6_and_bare_port() {
    assert_eq!(
        parse_listen("9000").unwrap(),
        "0.0.0.0:9000".parse().unwrap()
    );
    assert_eq!(
        parse_listen("[::1]:53").unwrap(),
        "[::1]:53".parse().unwrap()
    );
    assert!(parse_listen("localhost").is_err());
}

#[test]
fn out_of_range_values_are_refused() {
    for case in [
        &["--workers", "0"][..],
        &["--workers", "1025"],
        &["--batch", "0"],
        &["--batch", "5000"],
        &["--max-datagram", "70000"],
        &["--interval", "0"],
        &["--interval", "inf"],
        &["--rcvbuf", "10"],
        &["--handler", "shout"],
    ] {
        let line = flag_error(case);
        assert!(line.starts_with(case[0]), "{line}");
    }
    let error = flags(&["--cpus", "0", "--no-pin"]).resolve().unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("contradict"), "{error}");
    assert!(flags(&["--no-pin", "--pin", "--cpus", "0"])
        .resolve()
        .is_ok());
}

#[test]
fn defaults_and_overrides() {
    let config = resolved(&[]);
    assert_eq!(config, ServeConfig::default());
    assert_eq!(
        resolved(&["--batch", "8", "--batch", "16"]).batch,
        16,
        "last one wins"
    );
    assert_eq!(config.listen, "0.0.0.0:9999".parse().unwrap());
    assert_eq!(config.batch, 64);
    assert!(config.gso && config.gro && config.latency && !config.quiet);
    let config = resolved(&[
        "--workers",
        "3",
        "--no-pin",
        "--no-gso",
        "--handler",
        "ack:ok",
    ]);
    assert_eq!(config.workers, 3);
    assert_eq!(config.cpus, None);
    assert!(!config.gso);
    assert_eq!(config.handler, HandlerSpec::Ack(b"ok".to_vec()));
    let config = resolved(&[
        "--interval",
        "0.5",
        "--sndbuf",
        "4096",
        "--metrics",
        "[::1]:9100",
    ]);
    assert_eq!(config.interval, Duration::from_millis(500));
    assert_eq!(config.sndbuf, Some(4096));
    assert_eq!(config.metrics, Some("[::1]:9100".parse().unwrap()));
}
