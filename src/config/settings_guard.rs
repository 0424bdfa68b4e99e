//! The guard stage's and the account settings of `udpd serve` (loop guard, amplification cap, rate limit,
//! ACLs, user and group, port sharing): the second half of the one settings table.

use crate::config::guard::{parse_port_list, parse_prefix_pair, Cidr, RateLimit};
use crate::config::kinds::{switch, text, whole, Kind, Problem, Setting, Shape, Value};

/// Longest `--user` / `--group` name.
pub const MAX_ACCOUNT_NAME: usize = 32;

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

/// The guard and account settings, after the serve settings in `--help` and `--print-config`.
pub static GUARD_SETTINGS: [Setting; 12] = [
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
        kind: whole(64, crate::serve::guard::limiter::MAX_TABLE, "buckets per worker"),
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
        help: "Never answer sources in this block (repeatable); a source no rule matches is allowed unless some --allow is given (allow-list mode)",
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
