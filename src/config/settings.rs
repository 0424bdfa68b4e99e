//! The one table of `udpd serve` settings: each one's flag, TOML key, type, range, help, default and the
//! `ServeConfig` field it lands in. Flags, the file, `--help`, file errors and `--print-config` all read it
//! (the guard and account settings are in `settings_guard.rs`).

use std::time::Duration;

use clap::ValueEnum;

use crate::config::cpus::{available_cpus, default_cpus, parse_cpu_list, MAX_CPUS};
use crate::config::kinds::{switch, text, whole, Kind, Problem, Setting, Shape, Value};
use crate::config::settings_guard::GUARD_SETTINGS;
use crate::config::{parse_listen, ReportFormat};
use crate::handler::HandlerSpec;

/// Every setting, in the order `--help` and `--print-config` show them.
pub fn all() -> impl Iterator<Item = &'static Setting> {
    SERVE_SETTINGS.iter().chain(GUARD_SETTINGS.iter())
}

/// The setting whose TOML key is `key`.
pub fn find(key: &str) -> Option<&'static Setting> {
    all().find(|setting| setting.key == key)
}

fn format_choices() -> Vec<clap::builder::PossibleValue> {
    ReportFormat::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .collect()
}

/// The listening, I/O and reporting settings. `cpus` comes before `pin` (pin = false drops the list), and
/// `workers` is filled from the CPU list when not given.
pub static SERVE_SETTINGS: [Setting; 19] = [
    Setting {
        key: "listen",
        flag: "listen",
        value_name: "ADDR",
        kind: text(
            |t| parse_listen(t).map(Value::Addr).map_err(|_| Problem::OutOfRange),
            "an address string such as \"0.0.0.0:9999\" or \"[::1]:9999\", or a bare port number",
            Shape::TextOrInteger,
        ),
        help: "Address and port to listen on; IPv6 as `[::1]:9999`. Port 0 picks a free port (printed at start-up)",
        note: "",
        example: "\"[::1]:5000\"",
        bad: "nowhere",
        apply: |c, v| if let Value::Addr(a) = v { c.listen = a },
        show: |c| Some(Value::Addr(c.listen)),
    },
    Setting {
        key: "workers",
        flag: "workers",
        value_name: "N",
        kind: whole(1, MAX_CPUS, ""),
        help: "Worker threads, each with its own SO_REUSEPORT socket",
        note: "one per CPU in the pinning list, or per CPU this process may use",
        example: "3",
        bad: "0",
        apply: |c, v| if let Value::Whole(n) = v { c.workers = n },
        show: |c| Some(Value::Whole(c.workers)),
    },
    Setting {
        key: "cpus",
        flag: "cpus",
        value_name: "LIST",
        kind: text(
            |t| parse_cpu_list(t, &available_cpus()).map(Value::Cpus),
            "a CPU list string such as \"0,2-3\" or an array of CPU ids such as [0, 2, 3]",
            Shape::TextOrIntegers,
        ),
        help: "CPUs to pin workers to, in order (worker i gets cpus[i % len]), e.g. `0,2-3`",
        note: "the CPUs this process may use, when pinned",
        example: "[0]",
        bad: "3-1",
        apply: |c, v| if let Value::Cpus(ids) = v { c.cpus = Some(ids) },
        show: |c| c.cpus.clone().map(Value::Cpus),
    },
    Setting {
        key: "pin",
        flag: "pin",
        value_name: "",
        kind: switch("no-pin"),
        help: "Pin each worker to its own CPU (cannot go with --cpus and pin off)",
        note: "",
        example: "false",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v {
            c.cpus = if on { c.cpus.take().or_else(|| Some(default_cpus())) } else { None };
        },
        show: |c| Some(Value::Switch(c.cpus.is_some())),
    },
    Setting {
        key: "batch",
        flag: "batch",
        value_name: "N",
        kind: whole(1, crate::sys::limits::MAX_BATCH, ""),
        help: "Datagrams per recvmmsg/sendmmsg call",
        note: "",
        example: "8",
        bad: "0",
        apply: |c, v| if let Value::Whole(n) = v { c.batch = n },
        show: |c| Some(Value::Whole(c.batch)),
    },
    Setting {
        key: "max_datagram",
        flag: "max-datagram",
        value_name: "BYTES",
        kind: whole(1, 65_535, "bytes"),
        help: "Largest datagram accepted; larger ones are counted as `truncated` and not answered",
        note: "",
        example: "1500",
        bad: "70000",
        apply: |c, v| if let Value::Whole(n) = v { c.max_datagram = n },
        show: |c| Some(Value::Whole(c.max_datagram)),
    },
    Setting {
        key: "handler",
        flag: "handler",
        value_name: "NAME",
        kind: text(
            |t| t.parse::<HandlerSpec>().map(Value::Handler).map_err(|_| Problem::OutOfRange),
            "\"echo\", \"upper\", \"ack\", \"ack:TEXT\", \"sockperf\" or \"discard\"",
            Shape::Text,
        ),
        help: "Reply logic: echo, upper, ack[:TEXT], sockperf or discard",
        note: "",
        example: "\"ack:hi\"",
        bad: "shout",
        apply: |c, v| if let Value::Handler(h) = v { c.handler = h },
        show: |c| Some(Value::Handler(c.handler.clone())),
    },
    Setting {
        key: "rcvbuf",
        flag: "rcvbuf",
        value_name: "BYTES",
        kind: whole(1024, i32::MAX as usize / 2, "bytes"),
        help: "Socket receive buffer (SO_RCVBUF)",
        note: "not set: udpd asks for 512 KiB (forced when privileged, else capped by net.core.rmem_max)",
        example: "65536",
        bad: "10",
        apply: |c, v| if let Value::Whole(n) = v { c.rcvbuf = Some(n) },
        show: |c| c.rcvbuf.map(Value::Whole),
    },
    Setting {
        key: "sndbuf",
        flag: "sndbuf",
        value_name: "BYTES",
        kind: whole(1024, i32::MAX as usize / 2, "bytes"),
        help: "Socket send buffer (SO_SNDBUF)",
        note: "not set, the kernel's default applies",
        example: "8192",
        bad: "4294967296",
        apply: |c, v| if let Value::Whole(n) = v { c.sndbuf = Some(n) },
        show: |c| c.sndbuf.map(Value::Whole),
    },
    Setting {
        key: "gso",
        flag: "gso",
        value_name: "",
        kind: switch("no-gso"),
        help: "Send replies to one client as UDP GSO trains (off: each reply its own datagram)",
        note: "",
        example: "false",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.gso = on },
        show: |c| Some(Value::Switch(c.gso)),
    },
    Setting {
        key: "gro",
        flag: "gro",
        value_name: "",
        kind: switch("no-gro"),
        help: "Ask the kernel for GRO-coalesced requests",
        note: "",
        example: "false",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.gro = on },
        show: |c| Some(Value::Switch(c.gro)),
    },
    Setting {
        key: "address_sockets",
        flag: "address-sockets",
        value_name: "",
        kind: switch("no-address-sockets"),
        help: "With --listen 0.0.0.0, also bind one socket per worker to each local IPv4 address found at start (up to 8), whose replies need no packet info; the wildcard socket serves addresses added later",
        note: "",
        example: "false",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.address_sockets = on },
        show: |c| Some(Value::Switch(c.address_sockets)),
    },
    Setting {
        key: "interval",
        flag: "interval",
        value_name: "SECS",
        kind: Kind::Number { min: 0.01, max: 3600.0, unit: "seconds", zero_is_off: false },
        help: "Seconds between report lines on stdout, e.g. 1 or 0.5",
        note: "",
        example: "0.25",
        bad: "0",
        apply: |c, v| if let Value::Number(secs) = v { c.interval = Duration::from_secs_f64(secs) },
        show: |c| Some(Value::Number(c.interval.as_secs_f64())),
    },
    Setting {
        key: "quiet",
        flag: "quiet",
        value_name: "",
        kind: switch("no-quiet"),
        help: "Print only the summary at exit, no interval lines",
        note: "",
        example: "true",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.quiet = on },
        show: |c| Some(Value::Switch(c.quiet)),
    },
    Setting {
        key: "latency",
        flag: "latency",
        value_name: "",
        kind: switch("no-latency"),
        help: "Take kernel receive timestamps and record latency histograms (counters stay on either way)",
        note: "",
        example: "false",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.latency = on },
        show: |c| Some(Value::Switch(c.latency)),
    },
    Setting {
        key: "latency_sample",
        flag: "latency-sample",
        value_name: "N",
        kind: whole(1, 1_000, ""),
        help: "Above --latency-all-below, take kernel receive timestamps during one N-th of the time (random windows) and count each stamped reply N times (the summary says how many replies were stamped); 1 stamps every datagram",
        note: "",
        example: "4",
        bad: "0",
        apply: |c, v| if let Value::Whole(n) = v { c.latency_sample = n },
        show: |c| Some(Value::Whole(c.latency_sample)),
    },
    Setting {
        key: "latency_all_below",
        flag: "latency-all-below",
        value_name: "RATE",
        kind: whole(0, 1_000_000_000, "datagrams a second"),
        help: "Stamp every datagram while the server receives fewer than RATE datagrams a second, all workers together (0: sample at any rate)",
        note: "",
        example: "50000",
        bad: "2000000000",
        apply: |c, v| if let Value::Whole(n) = v { c.latency_all_below = n },
        show: |c| Some(Value::Whole(c.latency_all_below)),
    },
    Setting {
        key: "format",
        flag: "format",
        value_name: "FORMAT",
        kind: Kind::Text {
            parse: |t| ReportFormat::from_str(t, false).map(Value::Format).map_err(|_| Problem::OutOfRange),
            accepts: "\"text\" or \"json\"",
            shape: Shape::Text,
            choices: Some(format_choices),
        },
        help: "Report format on stdout: text, or json (one object per line)",
        note: "",
        example: "\"json\"",
        bad: "xml",
        apply: |c, v| if let Value::Format(f) = v { c.format = f },
        show: |c| Some(Value::Format(c.format)),
    },
    Setting {
        key: "metrics",
        flag: "metrics",
        value_name: "ADDR",
        kind: text(
            |t| t.parse().map(Value::Addr).map_err(|_| Problem::OutOfRange),
            "an address string such as \"127.0.0.1:9100\" (Prometheus endpoint)",
            Shape::Text,
        ),
        help: "Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9100), from a separate thread",
        note: "not served",
        example: "\"[::1]:9100\"",
        bad: "nowhere",
        apply: |c, v| if let Value::Addr(a) = v { c.metrics = Some(a) },
        show: |c| c.metrics.map(Value::Addr),
    },
];
