//! `udpd serve --config FILE`: reads the TOML file, checks every key, lays the flags over it, prints the result.

use std::path::Path;

use toml::Value;

use crate::config::{parse_cpu_list, ReportFormat, ServeArgs, ServeConfig};
use crate::error::{Error, Result};
use crate::handler::HandlerSpec;

/// Every key the file may hold (each mirrors a `serve` flag), with the values it accepts.
pub const KEYS: [(&str, &str); 16] = [
    (
        "listen",
        "an address string such as \"0.0.0.0:9999\" or \"[::1]:9999\", or a bare port number",
    ),
    ("workers", "an integer from 1 to 1024"),
    (
        "cpus",
        "a CPU list string such as \"0,2-3\" or an array of CPU ids such as [0, 2, 3]",
    ),
    ("pin", "true or false"),
    ("batch", "an integer from 1 to 1024"),
    ("max_datagram", "an integer from 1 to 65535 (bytes)"),
    (
        "handler",
        "\"echo\", \"upper\", \"ack\", \"ack:TEXT\" or \"discard\"",
    ),
    ("rcvbuf", "an integer from 1024 to 1073741823 (bytes)"),
    ("sndbuf", "an integer from 1024 to 1073741823 (bytes)"),
    ("gso", "true or false"),
    ("gro", "true or false"),
    ("interval", "a number of seconds from 0.01 to 3600"),
    ("quiet", "true or false"),
    ("latency", "true or false"),
    ("format", "\"text\" or \"json\""),
    (
        "metrics",
        "an address string such as \"127.0.0.1:9100\" (Prometheus endpoint)",
    ),
];

/// What `key` accepts (from [`KEYS`]).
fn allowed(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(name, _)| *name == key)
        .map_or("", |(_, what)| what)
}

/// Reads and checks a configuration file; its settings come back as the flags that would say the same.
pub fn load(path: &Path) -> Result<ServeArgs> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read config file {file}: {e} (check the path given to --config)"
        ))
    })?;
    parse(&text, &file)
}

/// Checks the TOML text of a configuration file named `file` (used in messages).
pub fn parse(text: &str, file: &str) -> Result<ServeArgs> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map_or(String::new(), |n| format!(" line {n}"));
        Error::usage(format!(
            "{file}{at}: not valid TOML: {} (write one `key = value` per line)",
            e.message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ")
        ))
    })?;
    let mut args = ServeArgs::default();
    let mut pin = None;
    for (key, value) in &table {
        let wrong = |what: &str| {
            Error::usage(format!(
                "{file}: key `{key}` must be {}, not {what}",
                allowed(key)
            ))
        };
        let out_of_range = |shown: &str| {
            Error::usage(format!(
                "{file}: key `{key}` = {shown} is out of range: use {}",
                allowed(key)
            ))
        };
        let int = |low: i64, high: i64| -> Result<usize> {
            match value {
                Value::Integer(n) if (low..=high).contains(n) => Ok(*n as usize),
                Value::Integer(n) => Err(out_of_range(&n.to_string())),
                other => Err(wrong(describe(other))),
            }
        };
        let flag = || -> Result<bool> {
            match value {
                Value::Boolean(b) => Ok(*b),
                other => Err(wrong(describe(other))),
            }
        };
        match key.as_str() {
            "listen" => {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Integer(port) if (0..=65_535).contains(port) => port.to_string(),
                    Value::Integer(port) => return Err(out_of_range(&port.to_string())),
                    other => return Err(wrong(describe(other))),
                };
                crate::config::parse_listen(&text).map_err(|_| out_of_range(&quoted(&text)))?;
                args.listen = Some(text);
            }
            "workers" => args.workers = Some(int(1, 1024)?),
            "cpus" => {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Array(ids) => {
                        let ids = ids
                            .iter()
                            .map(|id| match id {
                                Value::Integer(n) if *n >= 0 => Ok(n.to_string()),
                                Value::Integer(n) => Err(out_of_range(&n.to_string())),
                                other => {
                                    Err(wrong(&format!("an array holding {}", describe(other))))
                                }
                            })
                            .collect::<Result<Vec<String>>>()?;
                        ids.join(",")
                    }
                    other => return Err(wrong(describe(other))),
                };
                parse_cpu_list(&text).map_err(|_| out_of_range(&value.to_string()))?;
                args.cpus = Some(text);
            }
            "pin" => pin = Some(flag()?),
            "batch" => args.batch = Some(int(1, crate::sys::limits::MAX_BATCH as i64)?),
            "max_datagram" => args.max_datagram = Some(int(1, 65_535)?),
            "handler" => {
                let Value::String(text) = value else {
                    return Err(wrong(describe(value)));
                };
                text.parse::<HandlerSpec>()
                    .map_err(|_| out_of_range(&quoted(text)))?;
                args.handler = Some(text.clone());
            }
            "rcvbuf" => args.rcvbuf = Some(int(1024, i64::from(i32::MAX / 2))?),
            "sndbuf" => args.sndbuf = Some(int(1024, i64::from(i32::MAX / 2))?),
            "gso" => args.no_gso = !flag()?,
            "gro" => args.no_gro = !flag()?,
            "interval" => {
                let secs = match value {
                    Value::Float(secs) => *secs,
                    Value::Integer(secs) => *secs as f64,
                    other => return Err(wrong(describe(other))),
                };
                if !(secs.is_finite() && (0.01..=3600.0).contains(&secs)) {
                    return Err(out_of_range(&value.to_string()));
                }
                args.interval = Some(secs);
            }
            "quiet" => args.quiet = flag()?,
            "latency" => args.no_latency = !flag()?,
            "format" => match value {
                Value::String(text) if text == "text" || text == "json" => {
                    args.format = Some(text.clone());
                }
                Value::String(text) => return Err(out_of_range(&quoted(text))),
                other => return Err(wrong(describe(other))),
            },
            "metrics" => match value {
                Value::String(text) if text.parse::<std::net::SocketAddr>().is_ok() => {
                    args.metrics = Some(text.clone());
                }
                Value::String(text) => return Err(out_of_range(&quoted(text))),
                other => return Err(wrong(describe(other))),
            },
            _ => {
                let names: Vec<&str> = KEYS.iter().map(|(name, _)| *name).collect();
                return Err(Error::usage(format!(
                    "{file}: unknown key `{key}`: allowed keys are {}",
                    names.join(", ")
                )));
            }
        }
    }
    if pin == Some(false) {
        if args.cpus.is_some() {
            return Err(Error::usage(format!(
                "{file}: keys `cpus` and `pin = false` contradict each other: drop one of them"
            )));
        }
        args.no_pin = true;
    }
    Ok(args)
}

/// A TOML value's type, for messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number with a fraction",
        Value::Boolean(_) => "true/false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// The flags laid over the file: every flag given on the command line wins over the file's key.
pub fn overlay(file: ServeArgs, flags: &ServeArgs) -> ServeArgs {
    // `--no-pin` drops the file's CPU list; `--cpus` turns pinning back on whatever the file says.
    let (cpus, no_pin) = if flags.no_pin {
        (flags.cpus.clone(), true)
    } else if flags.cpus.is_some() {
        (flags.cpus.clone(), false)
    } else {
        (file.cpus, file.no_pin)
    };
    // Start from the flags so that any flag without a file key keeps its command-line value.
    let mut merged = flags.clone();
    merged.listen = flags.listen.clone().or(file.listen);
    merged.workers = flags.workers.or(file.workers);
    merged.cpus = cpus;
    merged.no_pin = no_pin;
    merged.batch = flags.batch.or(file.batch);
    merged.max_datagram = flags.max_datagram.or(file.max_datagram);
    merged.handler = flags.handler.clone().or(file.handler);
    merged.rcvbuf = flags.rcvbuf.or(file.rcvbuf);
    merged.sndbuf = flags.sndbuf.or(file.sndbuf);
    merged.no_gso = flags.no_gso || file.no_gso;
    merged.no_gro = flags.no_gro || file.no_gro;
    merged.interval = flags.interval.or(file.interval);
    merged.quiet = flags.quiet || file.quiet;
    merged.no_latency = flags.no_latency || file.no_latency;
    merged.format = flags.format.clone().or(file.format);
    merged.metrics = flags.metrics.clone().or(file.metrics);
    merged.config = None;
    merged
}

/// `ServeArgs::resolve`'s merge step: the file named by `--config`, with the flags laid over it.
pub fn merge(path: &Path, flags: &ServeArgs) -> Result<ServeArgs> {
    Ok(overlay(load(path)?, flags))
}

/// The effective configuration as a TOML file that `--config` reads back to the same configuration.
pub fn to_toml(config: &ServeConfig) -> String {
    let mut lines = vec![
        "# udpd serve: effective configuration (defaults, then the --config file, then flags)"
            .to_string(),
        format!("listen = {}", quoted(&config.listen.to_string())),
        format!("workers = {}", config.workers),
    ];
    match &config.cpus {
        Some(cpus) => {
            let ids: Vec<String> = cpus.iter().map(ToString::to_string).collect();
            lines.push("pin = true".to_string());
            lines.push(format!("cpus = {}", quoted(&ids.join(","))));
        }
        None => lines.push("pin = false".to_string()),
    }
    lines.push(format!("batch = {}", config.batch));
    lines.push(format!("max_datagram = {}", config.max_datagram));
    lines.push(format!("handler = {}", quoted(&config.handler.to_string())));
    for (name, value) in [("rcvbuf", config.rcvbuf), ("sndbuf", config.sndbuf)] {
        lines.push(match value {
            Some(bytes) => format!("{name} = {bytes}"),
            None => format!("# {name}: not set, the kernel's default applies"),
        });
    }
    lines.push(format!("gso = {}", config.gso));
    lines.push(format!("gro = {}", config.gro));
    lines.push(format!(
        "interval = {}",
        Value::Float(config.interval.as_secs_f64())
    ));
    lines.push(format!("quiet = {}", config.quiet));
    lines.push(format!("latency = {}", config.latency));
    let format = match config.format {
        ReportFormat::Text => "text",
        ReportFormat::Json => "json",
    };
    lines.push(format!("format = {}", quoted(format)));
    lines.push(match config.metrics {
        Some(addr) => format!("metrics = {}", quoted(&addr.to_string())),
        None => "# metrics: not served".to_string(),
    });
    lines.join("\n") + "\n"
}

/// `udpd serve --print-config`: resolves the configuration (file plus flags) and prints it as TOML.
pub fn print_config(args: &ServeArgs) -> Result<()> {
    let config = args.resolve()?;
    print!("{}", to_toml(&config));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read() {
        let args = parse(
            "listen = \"127.0.0.1:7\"\nworkers = 3\ncpus = [0, 1]\nbatch = 8\nmax_datagram = 1500\n\
             handler = \"ack:hi\"\nrcvbuf = 4096\nsndbuf = 8192\ngso = false\ngro = false\n\
             interval = 0.5\nquiet = true\nlatency = false\npin = true\nformat = \"json\"\n\
             metrics = \"127.0.0.1:9100\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:7"));
        assert_eq!(args.workers, Some(3));
        assert_eq!(args.cpus.as_deref(), Some("0,1"));
        assert_eq!((args.batch, args.max_datagram), (Some(8), Some(1500)));
        assert_eq!(args.handler.as_deref(), Some("ack:hi"));
        assert_eq!((args.rcvbuf, args.sndbuf), (Some(4096), Some(8192)));
        assert!(args.no_gso && args.no_gro && args.quiet && args.no_latency && !args.no_pin);
        assert_eq!(args.interval, Some(0.5));
        assert_eq!(args.format.as_deref(), Some("json"));
        assert_eq!(args.metrics.as_deref(), Some("127.0.0.1:9100"));
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let config = ServeArgs {
            listen: Some("[::1]:5000".into()),
            handler: Some("ack:say \"hi\"".into()),
            rcvbuf: Some(65536),
            interval: Some(0.25),
            no_pin: true,
            format: Some("json".into()),
            metrics: Some("[::1]:9100".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let text = to_toml(&config);
        let again = parse(&text, "printed").unwrap().resolve().unwrap();
        assert_eq!(again, config, "{text}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = parse("workers = 3\nhandler = \"upper\"\ncpus = \"0\"\n", "f").unwrap();
        let flags = ServeArgs {
            workers: Some(2),
            no_pin: true,
            ..Default::default()
        };
        let merged = overlay(file, &flags);
        assert_eq!(merged.workers, Some(2));
        assert_eq!(merged.handler.as_deref(), Some("upper"));
        assert_eq!((merged.cpus, merged.no_pin), (None, true));
        let file = parse("pin = false\n", "f").unwrap();
        let flags = ServeArgs {
            cpus: Some("0".into()),
            ..Default::default()
        };
        let merged = overlay(file, &flags);
        assert_eq!((merged.cpus.as_deref(), merged.no_pin), (Some("0"), false));
    }

    #[test]
    fn rejections_name_the_key_the_file_and_the_allowed_values() {
        for (text, key) in [
            ("bogus = 1", "bogus"),
            ("workers = \"2\"", "workers"),
            ("workers = 0", "workers"),
            ("batch = 5000", "batch"),
            ("max_datagram = 70000", "max_datagram"),
            ("interval = 0", "interval"),
            ("rcvbuf = 10", "rcvbuf"),
            ("gso = \"yes\"", "gso"),
            ("handler = \"shout\"", "handler"),
            ("cpus = \"3-1\"", "cpus"),
            ("cpus = [0, -1]", "cpus"),
            ("listen = \"nowhere\"", "listen"),
            ("pin = false\ncpus = \"0\"", "cpus"),
            ("format = \"xml\"", "format"),
            ("metrics = \"nowhere\"", "metrics"),
            ("metrics = 9100", "metrics"),
        ] {
            let error = parse(text, "my.toml").unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 2, "{text}");
            assert!(message.starts_with("my.toml: "), "{message}");
            assert!(message.contains(&format!("`{key}`")), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let error = parse("workers = \n", "my.toml").unwrap_err().to_string();
        assert!(
            error.starts_with("my.toml line 1: not valid TOML"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }
}
