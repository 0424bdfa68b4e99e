//! `udpd serve --config FILE`: reads the TOML file, checks every key by its entry in the settings table,
//! and writes the effective configuration back as TOML (`--print-config`).

use std::path::Path;

use crate::config::layer::Layer;
use crate::config::settings;
use crate::config::{ServeArgs, ServeConfig};
use crate::error::{Error, Result};

/// Every key the file may hold (each mirrors a `serve` flag), with the values it accepts, from the table.
pub fn keys() -> Vec<(&'static str, String)> {
    settings::all()
        .map(|setting| (setting.key, setting.accepts()))
        .collect()
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Layer> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read config file {file}: {e} (check the path given to --config)"
        ))
    })?;
    parse(&text, &file)
}

/// Checks the TOML text of a configuration file named `file` (used in messages).
pub fn parse(text: &str, file: &str) -> Result<Layer> {
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
    let mut layer = Layer::default();
    for (key, value) in &table {
        let Some(setting) = settings::find(key) else {
            let names: Vec<&str> = settings::all().map(|setting| setting.key).collect();
            return Err(Error::usage(format!(
                "{file}: unknown key `{key}`: allowed keys are {}",
                names.join(", ")
            )));
        };
        let parsed = setting
            .parse_toml(value)
            .map_err(|problem| Error::usage(setting.file_error(file, value, problem)))?;
        layer.set(setting, parsed);
    }
    if layer.contradicts_pinning() {
        return Err(Error::usage(format!(
            "{file}: keys `cpus` and `pin = false` contradict each other: drop one of them"
        )));
    }
    Ok(layer)
}

/// The effective configuration as a TOML file that `--config` reads back to the same configuration.
pub fn to_toml(config: &ServeConfig) -> String {
    let mut lines = vec![
        "# udpd serve: effective configuration (defaults, then the --config file, then flags)"
            .to_string(),
    ];
    for setting in settings::all() {
        lines.push(match (setting.show)(config) {
            Some(value) => format!("{} = {}", setting.key, value.to_toml()),
            None => format!("# {}: {}", setting.key, setting.note),
        });
    }
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
    use crate::config::guard::{Cidr, RateLimit};
    use crate::config::ReportFormat;
    use crate::handler::HandlerSpec;

    #[test]
    fn every_key_is_read() {
        let config = parse(
            "listen = \"127.0.0.1:7\"\nworkers = 3\ncpus = [0]\nbatch = 8\nmax_datagram = 1500\n\
             handler = \"ack:hi\"\nrcvbuf = 4096\nsndbuf = 8192\ngso = false\ngro = false\n\
             interval = 0.5\nquiet = true\nlatency = false\npin = true\nformat = \"json\"\n\
             metrics = \"127.0.0.1:9100\"\nloop_guard = false\nloop_guard_ports = [7, 53]\n\
             max_amplification = 0\nlimit = 100\nlimit_prefix = \"24/48\"\nlimit_table = 128\n\
             limit_dry_run = true\nallow = [\"10.0.0.0/8\"]\ndeny = \"192.0.2.1\"\n\
             user = \"udpd\"\ngroup = \"udpd\"\nshare_port = true\n",
            "t.toml",
        )
        .unwrap()
        .resolve();
        assert_eq!(config.listen, "127.0.0.1:7".parse().unwrap());
        assert_eq!((config.workers, config.cpus.clone()), (3, Some(vec![0])));
        assert_eq!((config.batch, config.max_datagram), (8, 1500));
        assert_eq!(config.handler, HandlerSpec::Ack(b"hi".to_vec()));
        assert_eq!((config.rcvbuf, config.sndbuf), (Some(4096), Some(8192)));
        assert!(!config.gso && !config.gro && config.quiet && !config.latency);
        assert_eq!(config.interval.as_secs_f64(), 0.5);
        assert_eq!(config.format, ReportFormat::Json);
        assert_eq!(config.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let guard = &config.guard;
        assert!(!guard.loop_guard && guard.limit_dry_run && config.share_port);
        assert_eq!(guard.loop_guard_ports, vec![7, 53]);
        assert_eq!(guard.max_amplification, None);
        assert_eq!(
            guard.limit,
            Some(RateLimit {
                rate: 100,
                burst: 100
            })
        );
        assert_eq!((guard.limit_prefix, guard.limit_table), ((24, 48), 128));
        assert_eq!(guard.allow, vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        assert_eq!(guard.deny, vec!["192.0.2.1/32".parse::<Cidr>().unwrap()]);
        assert_eq!(
            (config.user.as_deref(), config.group.as_deref()),
            (Some("udpd"), Some("udpd"))
        );
        let ports = parse("loop_guard_ports = \"\"\n", "t").unwrap().resolve();
        assert!(ports.guard.loop_guard_ports.is_empty());
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let samples: [&[&str]; 3] = [
            &[
                "--listen",
                "[::1]:5000",
                "--handler",
                "ack:say \"hi\"",
                "--rcvbuf",
                "65536",
                "--interval",
                "0.25",
                "--no-pin",
                "--format",
                "json",
                "--metrics",
                "[::1]:9100",
            ],
            &[
                "--no-loop-guard",
                "--loop-guard-ports",
                "",
                "--max-amplification",
                "0",
                "--limit",
                "200/50",
                "--limit-prefix",
                "24/48",
                "--limit-table",
                "64",
                "--limit-dry-run",
                "--allow",
                "10.0.0.0/8",
                "--allow",
                "2001:db8::/32",
                "--deny",
                "10.1.0.0/16",
                "--user",
                "udpd",
                "--group",
                "nogroup",
                "--share-port",
                "--quiet",
                "--no-gro",
            ],
            &[
                "--max-amplification",
                "7.5",
                "--loop-guard-ports",
                "7",
                "--workers",
                "5",
            ],
        ];
        for flags in samples {
            let config = ServeArgs::from_flags(flags).unwrap().resolve().unwrap();
            let text = to_toml(&config);
            let again = parse(&text, "printed").unwrap().resolve();
            assert_eq!(again, config, "{text}");
            for setting in settings::all() {
                let key = setting.key;
                let shown =
                    text.contains(&format!("\n{key} = ")) || text.contains(&format!("\n# {key}: "));
                assert!(shown, "{key}: {text}");
            }
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = parse("workers = 3\nhandler = \"upper\"\ncpus = \"0\"\n", "f").unwrap();
        let flags = ServeArgs::from_flags(["--workers", "2", "--no-pin"]).unwrap();
        let merged = file.under(&flags.flags).resolve();
        assert_eq!(merged.workers, 2);
        assert_eq!(merged.handler, HandlerSpec::Upper);
        assert_eq!(merged.cpus, None);
        let file = parse("pin = false\n", "f").unwrap();
        let flags = ServeArgs::from_flags(["--cpus", "0"]).unwrap();
        assert_eq!(file.under(&flags.flags).resolve().cpus, Some(vec![0]));
        let file = parse("pin = false\nallow = [\"10.0.0.0/8\"]\n", "f").unwrap();
        let flags = ServeArgs::from_flags(["--pin", "--allow", "::1"]).unwrap();
        let merged = file.under(&flags.flags).resolve();
        assert!(merged.cpus.is_some());
        assert_eq!(merged.guard.allow, vec!["::1".parse::<Cidr>().unwrap()]);
    }

    #[test]
    fn rejections_name_the_key_the_file_and_the_allowed_values() {
        for (text, key) in [
            ("bogus = 1", "bogus"),
            ("workers = \"2\"", "workers"),
            ("workers = 0", "workers"),
            ("workers = -1", "workers"),
            ("batch = 5000", "batch"),
            ("max_datagram = 70000", "max_datagram"),
            ("interval = 0", "interval"),
            ("rcvbuf = 10", "rcvbuf"),
            ("gso = \"yes\"", "gso"),
            ("handler = \"shout\"", "handler"),
            ("cpus = \"3-1\"", "cpus"),
            ("cpus = [0, -1]", "cpus"),
            ("cpus = [0, \"1\"]", "cpus"),
            ("listen = \"nowhere\"", "listen"),
            ("listen = 70000", "listen"),
            ("pin = false\ncpus = \"0\"", "cpus"),
            ("format = \"xml\"", "format"),
            ("metrics = \"nowhere\"", "metrics"),
            ("metrics = 9100", "metrics"),
            ("allow = [1]", "allow"),
            ("deny = [\"nope\"]", "deny"),
            ("loop_guard_ports = [0]", "loop_guard_ports"),
            ("max_amplification = 0.5", "max_amplification"),
            ("limit = \"1/0\"", "limit"),
            ("limit_table = 1", "limit_table"),
            ("user = \"a b\"", "user"),
            ("share_port = 1", "share_port"),
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
