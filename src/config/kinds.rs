//! What a setting is: its descriptor ([`Setting`]), its kind (switch, whole number, number, text), the one
//! parser per kind for flag text and for TOML values, the one-line messages, and the TOML it prints as.

use std::net::SocketAddr;

use clap::builder::PossibleValue;
use toml::Value as Toml;

use crate::config::guard::{Cidr, RateLimit};
use crate::config::{ReportFormat, ServeConfig};
use crate::handler::HandlerSpec;

/// A parsed, range-checked setting value, ready to be applied to a [`ServeConfig`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Switch(bool),
    Whole(usize),
    Number(f64),
    Addr(SocketAddr),
    Cpus(Vec<usize>),
    Ports(Vec<u16>),
    Handler(HandlerSpec),
    Format(ReportFormat),
    Limit(RateLimit),
    Prefix(u8, u8),
    Cidrs(Vec<Cidr>),
    Name(String),
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// Not among the values the setting accepts (its `accepts` text says which).
    OutOfRange,
    /// Refused for this reason (a full clause, e.g. naming the CPUs that are allowed).
    Refused(String),
    /// A TOML value of the wrong type (its description, e.g. "a string").
    WrongType(String),
}

/// Which TOML values a text setting takes besides a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string only.
    Text,
    /// A string or an integer (read as its digits).
    TextOrInteger,
    /// A string or an array of non-negative integers (read as `a,b,c`).
    TextOrIntegers,
    /// An array of strings (or one string); each is one item, and the flag may be repeated.
    Items,
}

/// How a setting is typed and checked.
pub enum Kind {
    /// `--NAME` / `--no-NAME` on the command line (the `off` flag), true/false in the file.
    Switch { off: &'static str },
    /// A whole number from `min` to `max`.
    Whole {
        min: usize,
        max: usize,
        unit: &'static str,
    },
    /// A finite number from `min` to `max`; `0` also when `zero_is_off`.
    Number {
        min: f64,
        max: f64,
        unit: &'static str,
        zero_is_off: bool,
    },
    /// Text read by `parse` (one item for [`Shape::Items`]); `accepts` says what it takes.
    Text {
        parse: fn(&str) -> Result<Value, Problem>,
        accepts: &'static str,
        shape: Shape,
        choices: Option<fn() -> Vec<PossibleValue>>,
    },
}

/// A text kind without fixed choices.
pub const fn text(
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

/// A switch whose off flag is `off`.
pub const fn switch(off: &'static str) -> Kind {
    Kind::Switch { off }
}

/// A whole number from `min` to `max`.
pub const fn whole(min: usize, max: usize, unit: &'static str) -> Kind {
    Kind::Whole { min, max, unit }
}

/// One setting: its flag, its TOML key, its type and range, its help, its default, and where it lands.
pub struct Setting {
    /// The TOML key (and clap id); the flag is `--` + `flag`.
    pub key: &'static str,
    pub flag: &'static str,
    pub value_name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// What applies when `show` has no value, or when the default depends on the machine.
    pub note: &'static str,
    /// A valid, non-default value as TOML (tests and docs).
    pub example: &'static str,
    /// A value the setting refuses, as typed after the flag (tests and docs).
    pub bad: &'static str,
    pub apply: fn(&mut ServeConfig, Value),
    pub show: fn(&ServeConfig) -> Option<Value>,
}

impl Setting {
    /// What the setting accepts, as written in messages and in `--help`.
    pub fn accepts(&self) -> String {
        match &self.kind {
            Kind::Switch { .. } => "true or false".to_string(),
            Kind::Whole { min, max, unit } => {
                format!("an integer from {min} to {max}{}", in_parens(unit))
            }
            Kind::Number {
                min,
                max,
                unit,
                zero_is_off,
            } => {
                let of = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" of {unit}")
                };
                let off = if *zero_is_off { "0 (off) or " } else { "" };
                format!("{off}a number{of} from {min} to {max}")
            }
            Kind::Text { accepts, .. } => accepts.to_string(),
        }
    }

    /// Whether the flag may be given more than once (its values add up).
    pub fn repeats(&self) -> bool {
        matches!(
            self.kind,
            Kind::Text {
                shape: Shape::Items,
                ..
            }
        )
    }

    /// Parses the text typed after the flag (for a switch: `true` or `false`).
    pub fn parse_text(&self, text: &str) -> Result<Value, Problem> {
        match &self.kind {
            Kind::Switch { .. } => match text.trim() {
                "true" => Ok(Value::Switch(true)),
                "false" => Ok(Value::Switch(false)),
                _ => Err(Problem::OutOfRange),
            },
            Kind::Whole { min, max, .. } => {
                let n: u64 = text.trim().parse().map_err(|_| Problem::OutOfRange)?;
                checked_whole(n, *min, *max)
            }
            Kind::Number {
                min,
                max,
                zero_is_off,
                ..
            } => {
                let x: f64 = text.trim().parse().map_err(|_| Problem::OutOfRange)?;
                number(x, *min, *max, *zero_is_off)
            }
            Kind::Text { parse, .. } => parse(text),
        }
    }

    /// Checks a value from the TOML file.
    pub fn parse_toml(&self, value: &Toml) -> Result<Value, Problem> {
        let wrong = || Problem::WrongType(describe(value).to_string());
        match (&self.kind, value) {
            (Kind::Switch { .. }, Toml::Boolean(b)) => Ok(Value::Switch(*b)),
            (Kind::Whole { min, max, .. }, Toml::Integer(n)) => {
                let n = u64::try_from(*n).map_err(|_| Problem::OutOfRange)?;
                checked_whole(n, *min, *max)
            }
            (
                Kind::Number {
                    min,
                    max,
                    zero_is_off,
                    ..
                },
                Toml::Float(_) | Toml::Integer(_),
            ) => {
                let x = value
                    .as_float()
                    .or(value.as_integer().map(|n| n as f64))
                    .unwrap_or(f64::NAN);
                number(x, *min, *max, *zero_is_off)
            }
            (Kind::Text { parse, shape, .. }, _) => match (shape, value) {
                (_, Toml::String(text)) => parse(text),
                (Shape::TextOrInteger, Toml::Integer(n)) => parse(&n.to_string()),
                (Shape::TextOrIntegers, Toml::Array(items)) => {
                    let mut parts = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Toml::Integer(n) if *n >= 0 => parts.push(n.to_string()),
                            Toml::Integer(_) => return Err(Problem::OutOfRange),
                            other => {
                                return Err(Problem::WrongType(format!(
                                    "an array holding {}",
                                    describe(other)
                                )))
                            }
                        }
                    }
                    parse(&parts.join(","))
                }
                (Shape::Items, Toml::Array(items)) => {
                    let mut all = Value::Cidrs(Vec::new());
                    for item in items {
                        let Toml::String(text) = item else {
                            return Err(Problem::WrongType(format!(
                                "an array holding {}",
                                describe(item)
                            )));
                        };
                        all.append(parse(text)?);
                    }
                    Ok(all)
                }
                _ => Err(wrong()),
            },
            _ => Err(wrong()),
        }
    }

    /// The one-line message for a refused flag value.
    pub fn flag_error(&self, text: &str, problem: Problem) -> String {
        let flag = self.flag;
        let shown = if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            format!("{text:?}")
        } else {
            text.to_string()
        };
        match problem {
            Problem::Refused(why) => format!("--{flag} {shown}: {why}"),
            Problem::OutOfRange | Problem::WrongType(_) => {
                format!("--{flag} {shown} is out of range: use {}", self.accepts())
            }
        }
    }

    /// The one-line message for a refused key in the file named `file`.
    pub fn file_error(&self, file: &str, value: &Toml, problem: Problem) -> String {
        let key = self.key;
        match problem {
            Problem::WrongType(what) => {
                format!("{file}: key `{key}` must be {}, not {what}", self.accepts())
            }
            Problem::Refused(why) => format!("{file}: key `{key}` = {value}: {why}"),
            Problem::OutOfRange => format!(
                "{file}: key `{key}` = {value} is out of range: use {}",
                self.accepts()
            ),
        }
    }

    /// The default as `--help` shows it, given the defaults of this machine.
    pub fn default_text(&self, defaults: &ServeConfig) -> String {
        if !self.note.is_empty() {
            return self.note.to_string();
        }
        match (self.show)(defaults).map(|value| value.to_text()) {
            Some(text) if !text.is_empty() => text,
            _ => "none".to_string(),
        }
    }
}

impl Value {
    /// Adds another repeat of a repeatable setting (`--allow A --allow B`).
    pub fn append(&mut self, more: Value) {
        if let (Value::Cidrs(all), Value::Cidrs(more)) = (self, more) {
            all.extend(more);
        }
    }

    /// As TOML, reading back to the same value.
    pub fn to_toml(&self) -> String {
        let text = |t: String| Toml::String(t).to_string();
        match self {
            Value::Switch(b) => b.to_string(),
            Value::Whole(n) => n.to_string(),
            Value::Number(x) => Toml::Float(*x).to_string(),
            Value::Cidrs(items) => {
                Toml::Array(items.iter().map(|c| Toml::String(c.to_string())).collect()).to_string()
            }
            other => text(other.to_text()),
        }
    }

    /// As typed after a flag.
    pub fn to_text(&self) -> String {
        match self {
            Value::Switch(b) => (if *b { "on" } else { "off" }).to_string(),
            Value::Whole(n) => n.to_string(),
            Value::Number(x) => x.to_string(),
            Value::Addr(addr) => addr.to_string(),
            Value::Cpus(ids) => crate::config::cpus::format_cpu_list(ids),
            Value::Ports(ports) => {
                let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
                ports.join(",")
            }
            Value::Handler(spec) => spec.to_string(),
            Value::Format(format) => format.name().to_string(),
            Value::Limit(limit) => limit.to_string(),
            Value::Prefix(v4, v6) => format!("{v4}/{v6}"),
            Value::Cidrs(items) => {
                let items: Vec<String> = items.iter().map(ToString::to_string).collect();
                items.join(",")
            }
            Value::Name(name) => name.clone(),
        }
    }
}

fn checked_whole(n: u64, min: usize, max: usize) -> Result<Value, Problem> {
    usize::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Value::Whole)
        .ok_or(Problem::OutOfRange)
}

fn number(x: f64, min: f64, max: f64, zero_is_off: bool) -> Result<Value, Problem> {
    if (zero_is_off && x == 0.0) || (x.is_finite() && (min..=max).contains(&x)) {
        Ok(Value::Number(x))
    } else {
        Err(Problem::OutOfRange)
    }
}

fn in_parens(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" ({unit})")
    }
}

/// A TOML value's type, for messages.
pub fn describe(value: &Toml) -> &'static str {
    match value {
        Toml::String(_) => "a string",
        Toml::Integer(_) => "an integer",
        Toml::Float(_) => "a number with a fraction",
        Toml::Boolean(_) => "true/false",
        Toml::Datetime(_) => "a date",
        Toml::Array(_) => "an array",
        Toml::Table(_) => "a table",
    }
}
