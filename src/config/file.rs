//! `udpd serve --config FILE`: reads the TOML file, checks every key by its entry in the settings table,
//! and writes the effective configuration back as TOML (`--print-config`).

use std::path::Path;

use crate::config::layer::Layer;
use crate::config::settings::{self, SETTINGS};
use crate::config::{ServeArgs, ServeConfig};
use crate::error::{Error, Result};

/// Every key the file may hold (each mirrors a `serve` flag), with the values it accepts, from the table.
pub fn keys() -> Vec<(&'static str, String)> {
    SETTINGS
        .iter()
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
            let names: Vec<&str> = SETTINGS.iter().map(|setting| setting.key).collect();
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
    for setting in &SETTINGS {
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
