//! `udpd serve` on the command line: one clap argument per entry of the settings table (two for a switch,
//! `--NAME` and `--no-NAME`, the last one given winning), each value parsed by that entry's own parser.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use crate::config::kinds::{Kind, Setting, Value};
use crate::config::settings;
use crate::config::{ServeArgs, ServeConfig};

/// A setting's parser as a clap value parser: its errors are the setting's one-line messages.
#[derive(Clone, Copy)]
struct SettingParser(&'static Setting);

impl TypedValueParser for SettingParser {
    type Value = Value;

    fn parse_ref(
        &self,
        _cmd: &Command,
        _arg: Option<&Arg>,
        raw: &OsStr,
    ) -> Result<Value, clap::Error> {
        let setting = self.0;
        let text = raw.to_str().ok_or_else(|| {
            clap::Error::raw(
                ErrorKind::InvalidUtf8,
                format!("--{} takes UTF-8 text", setting.flag),
            )
        })?;
        setting.parse_text(text).map_err(|problem| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                setting.flag_error(text, problem),
            )
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        match &self.0.kind {
            Kind::Text {
                choices: Some(choices),
                ..
            } => Some(Box::new(choices().into_iter())),
            _ => None,
        }
    }
}

/// `--help` for a setting: its help, its default and, for numbers, its range.
fn help_line(setting: &Setting, defaults: &ServeConfig) -> String {
    let default = setting.default_text(defaults);
    match setting.kind {
        Kind::Whole { .. } | Kind::Number { .. } => format!(
            "{} [default: {default}; {}]",
            setting.help,
            setting.accepts()
        ),
        _ => format!("{} [default: {default}]", setting.help),
    }
}

/// The clap arguments of one setting.
fn args_for(setting: &'static Setting, defaults: &ServeConfig) -> Vec<Arg> {
    let help = help_line(setting, defaults);
    match setting.kind {
        Kind::Switch { off } => vec![
            Arg::new(setting.key)
                .long(setting.flag)
                .action(ArgAction::SetTrue)
                .overrides_with(off)
                .overrides_with(setting.key)
                .help(help),
            Arg::new(off)
                .long(off)
                .action(ArgAction::SetTrue)
                .overrides_with(setting.key)
                .overrides_with(off)
                .help(format!("Turn --{} off", setting.flag)),
        ],
        _ if setting.repeats() => vec![Arg::new(setting.key)
            .long(setting.flag)
            .value_name(setting.value_name)
            .value_parser(SettingParser(setting))
            .action(ArgAction::Append)
            .help(help)],
        _ => vec![Arg::new(setting.key)
            .long(setting.flag)
            .value_name(setting.value_name)
            .value_parser(SettingParser(setting))
            .action(ArgAction::Set)
            .overrides_with(setting.key)
            .help(help)],
    }
}

impl Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let defaults = ServeConfig::default();
        let mut cmd = cmd;
        for setting in settings::all() {
            cmd = cmd.args(args_for(setting, &defaults));
        }
        cmd.arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Read settings from this TOML file (keys as in dist/udpd.toml); flags given here override it"),
        )
        .arg(
            Arg::new("print_config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the effective configuration (defaults, file, flags) as TOML and exit"),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// Whether the switch with clap id `id` was given.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches
        .try_get_one::<bool>(id)
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false)
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ServeArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Ok(Some(path)) = matches.try_get_one::<PathBuf>("config") {
            self.config = Some(path.clone());
        }
        self.print_config |= given(matches, "print_config");
        for setting in settings::all() {
            match setting.kind {
                Kind::Switch { off } => {
                    if given(matches, setting.key) {
                        self.flags.set(setting, Value::Switch(true));
                    } else if given(matches, off) {
                        self.flags.set(setting, Value::Switch(false));
                    }
                }
                _ => {
                    if let Ok(Some(values)) = matches.try_get_many::<Value>(setting.key) {
                        for value in values {
                            self.flags.set(setting, value.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl ServeArgs {
    /// Parses `udpd serve` flags (without the `serve`), as the command line would.
    pub fn from_flags<I, T>(flags: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = ServeArgs::augment_args(Command::new("serve").no_binary_name(true));
        let matches = command.try_get_matches_from(flags)?;
        ServeArgs::from_arg_matches(&matches)
    }
}
