//! The one table of `udpd serve` settings: each one's flag, TOML key, type, range, help, default and the
//! `ServeConfig` field it lands in. Flags, the file, `--help`, file errors and `--print-config` all read it.

use std::time::Duration;

use clap::ValueEnum;

use crate::config::cpus::{available_cpus, default_cpus, parse_cpu_list, MAX_CPUS};
use crate::config::guard::{parse_port_list, parse_prefix_pair, Cidr, RateLimit};
use crate::config::kinds::{Kind, Problem, Setting, Shape, Value};
use crate::config::{parse_listen, ReportFormat};
use crate::handler::HandlerSpec;

/// Longest `--user` / `--group` name.
pub const MAX_ACCOUNT_NAME: usize = 32;

/// The setting whose TOML key is `key`.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.key == key)
}

const fn text(
    parse: fn(&str) -> Result<Value, Problem>,
    accepts: &'static str,
    shape: Shape,
) -> Kind {
    Kind::Text {
        parse,
        accepts,
        shape,
        choices: None,
    }
}

const fn switch(off: &'static str) -> Kind {
    Kind::Switch { off }
}

const fn whole(min: usize, max: usize, unit: &'static str) -> Kind {
    Kind::Whole { min, max, unit }
}

fn account_name(text: &str) -> Result<Value, Problem> {
    let fits = !text.is_empty()
        && text.chars().count() <= MAX_ACCOUNT_NAME
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if fits {
        Ok(Value::Name(text.to_string()))
    } else {
        Err(Problem::Refused(format!(
            "not an account name: use 1 to {MAX_ACCOUNT_NAME} characters without spaces or control characters"
        )))
    }
}

fn cidr(text: &str) -> Result<Value, Problem> {
    text.trim()
        .parse::<Cidr>()
        .map(|cidr| Value::Cidrs(vec![cidr]))
        .map_err(Problem::Refused)
}

fn format_choices() -> Vec<clap::builder::PossibleValue> {
    ReportFormat::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .collect()
}

/// Every `udpd serve` setting, in the order `--help` and `--print-config` show them. `cpus` comes before
/// `pin` (pin = false drops the list) and `workers` is filled from the CPU list when not given.
pub static SETTINGS: [Setting; 28] = [
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
        note: "the CPUs this process may use",
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
            "\"echo\", \"upper\", \"ack\", \"ack:TEXT\" or \"discard\"",
            Shape::Text,
        ),
        help: "Reply logic: echo, upper, ack[:TEXT] or discard",
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
        note: "not set, the kernel's default applies",
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
    Setting {
        key: "loop_guard",
        flag: "loop-guard",
        value_name: "",
        kind: switch("no-loop-guard"),
        help: "Refuse to answer port 0, our own address and port, and the --loop-guard-ports",
        note: "",
        example: "false",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.guard.loop_guard = on },
        show: |c| Some(Value::Switch(c.guard.loop_guard)),
    },
    Setting {
        key: "loop_guard_ports",
        flag: "loop-guard-ports",
        value_name: "LIST",
        kind: text(
            |t| parse_port_list(t).map(Value::Ports).map_err(|_| Problem::OutOfRange),
            "a port list string such as \"7,19,53\" (ports 1 to 65535, \"\" for none) or an array of ports",
            Shape::TextOrIntegers,
        ),
        help: "Source ports never answered (services that answer anything or amplify); empty for none",
        note: "",
        example: "\"7,19\"",
        bad: "0",
        apply: |c, v| if let Value::Ports(p) = v { c.guard.loop_guard_ports = p },
        show: |c| Some(Value::Ports(c.guard.loop_guard_ports.clone())),
    },
    Setting {
        key: "max_amplification",
        flag: "max-amplification",
        value_name: "FACTOR",
        kind: Kind::Number { min: 1.0, max: 1000.0, unit: "", zero_is_off: true },
        help: "Largest reply-to-request size ratio (whole packets); 0 turns the cap off",
        note: "",
        example: "0",
        bad: "0.5",
        apply: |c, v| if let Value::Number(x) = v { c.guard.max_amplification = (x != 0.0).then_some(x) },
        show: |c| Some(Value::Number(c.guard.max_amplification.unwrap_or(0.0))),
    },
    Setting {
        key: "limit",
        flag: "limit",
        value_name: "RATE[/BURST]",
        kind: text(
            |t| t.parse::<RateLimit>().map(Value::Limit).map_err(Problem::Refused),
            "a rate string \"RATE\" or \"RATE/BURST\" such as \"200/50\" (datagrams per second per source)",
            Shape::TextOrInteger,
        ),
        help: "Per-source token bucket: RATE datagrams per second, bursts of BURST [default burst: RATE]",
        note: "off",
        example: "\"200/50\"",
        bad: "0",
        apply: |c, v| if let Value::Limit(l) = v { c.guard.limit = Some(l) },
        show: |c| c.guard.limit.map(Value::Limit),
    },
    Setting {
        key: "limit_prefix",
        flag: "limit-prefix",
        value_name: "V4/V6",
        kind: text(
            |t| parse_prefix_pair(t).map(|(v4, v6)| Value::Prefix(v4, v6)).map_err(Problem::Refused),
            "a prefix pair string \"V4/V6\" such as \"32/56\"",
            Shape::Text,
        ),
        help: "Prefix lengths that make one source for --limit (IPv4/IPv6)",
        note: "",
        example: "\"24/48\"",
        bad: "33/56",
        apply: |c, v| if let Value::Prefix(v4, v6) = v { c.guard.limit_prefix = (v4, v6) },
        show: |c| Some(Value::Prefix(c.guard.limit_prefix.0, c.guard.limit_prefix.1)),
    },
    Setting {
        key: "limit_table",
        flag: "limit-table",
        value_name: "ENTRIES",
        kind: whole(64, 16_777_216, "buckets per worker"),
        help: "Rate-limit buckets per worker (fixed at start; memory does not grow with sources)",
        note: "",
        example: "1024",
        bad: "63",
        apply: |c, v| if let Value::Whole(n) = v { c.guard.limit_table = n },
        show: |c| Some(Value::Whole(c.guard.limit_table)),
    },
    Setting {
        key: "limit_dry_run",
        flag: "limit-dry-run",
        value_name: "",
        kind: switch("no-limit-dry-run"),
        help: "Count what --limit would refuse, but answer it",
        note: "",
        example: "true",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.guard.limit_dry_run = on },
        show: |c| Some(Value::Switch(c.guard.limit_dry_run)),
    },
    Setting {
        key: "allow",
        flag: "allow",
        value_name: "CIDR",
        kind: text(cidr, "an array of address blocks such as [\"192.0.2.0/24\", \"2001:db8::/32\"]", Shape::Items),
        help: "Answer sources in this block (repeatable); the most specific --allow/--deny match wins",
        note: "",
        example: "[\"10.0.0.0/8\", \"::1\"]",
        bad: "10.0.0.0/33",
        apply: |c, v| if let Value::Cidrs(list) = v { c.guard.allow = list },
        show: |c| Some(Value::Cidrs(c.guard.allow.clone())),
    },
    Setting {
        key: "deny",
        flag: "deny",
        value_name: "CIDR",
        kind: text(cidr, "an array of address blocks such as [\"198.51.100.0/24\"]", Shape::Items),
        help: "Never answer sources in this block (repeatable); no match at all allows",
        note: "",
        example: "[\"198.51.100.7\"]",
        bad: "nope",
        apply: |c, v| if let Value::Cidrs(list) = v { c.guard.deny = list },
        show: |c| Some(Value::Cidrs(c.guard.deny.clone())),
    },
    Setting {
        key: "user",
        flag: "user",
        value_name: "NAME",
        kind: text(account_name, "a user name string such as \"udpd\"", Shape::Text),
        help: "Switch every thread to this user after binding (looked up at start)",
        note: "not set, stay the user that started udpd",
        example: "\"udpd\"",
        bad: "a b",
        apply: |c, v| if let Value::Name(n) = v { c.user = Some(n) },
        show: |c| c.user.clone().map(Value::Name),
    },
    Setting {
        key: "group",
        flag: "group",
        value_name: "NAME",
        kind: text(account_name, "a group name string such as \"udpd\"", Shape::Text),
        help: "Switch every thread to this group after binding (looked up at start)",
        note: "not set, the user's group (or stay)",
        example: "\"nogroup\"",
        bad: "abcdefghijklmnopqrstuvwxyz0123456",
        apply: |c, v| if let Value::Name(n) = v { c.group = Some(n) },
        show: |c| c.group.clone().map(Value::Name),
    },
    Setting {
        key: "share_port",
        flag: "share-port",
        value_name: "",
        kind: switch("no-share-port"),
        help: "Join a port that other sockets already serve (otherwise refused at start)",
        note: "",
        example: "true",
        bad: "",
        apply: |c, v| if let Value::Switch(on) = v { c.share_port = on },
        show: |c| Some(Value::Switch(c.share_port)),
    },
];
