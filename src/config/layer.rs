//! Settings from one source (the TOML file, or the flags): laid over another source, the last one
//! winning key by key, and resolved into a `ServeConfig` by the table's own `apply` functions.

use std::collections::BTreeMap;

use crate::config::cpus::{available_cpus, MAX_CPUS};
use crate::config::kinds::{Setting, Value};
use crate::config::settings;
use crate::config::ServeConfig;

/// The settings one source gave, each already parsed and range-checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    values: BTreeMap<&'static str, Value>,
}

impl Layer {
    /// Records a value; a repeatable setting adds it to what this source already gave.
    pub fn set(&mut self, setting: &'static Setting, value: Value) {
        match self.values.get_mut(setting.key) {
            Some(existing) if setting.repeats() => existing.append(value),
            _ => {
                self.values.insert(setting.key, value);
            }
        }
    }

    /// The value given for the setting with TOML key `key`, if this source gave one.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Whether this source names CPUs and turns pinning off at once.
    pub fn contradicts_pinning(&self) -> bool {
        self.get("cpus").is_some() && self.get("pin") == Some(&Value::Switch(false))
    }

    /// `self` (the file) with `flags` laid over it: each setting the flags give replaces the file's. If the
    /// flags say anything about pinning (`--cpus`, `--pin`, `--no-pin`), the file's `cpus` and `pin` go.
    pub fn under(mut self, flags: &Layer) -> Layer {
        if flags.get("cpus").is_some() || flags.get("pin").is_some() {
            self.values.remove("cpus");
            self.values.remove("pin");
        }
        for (key, value) in &flags.values {
            self.values.insert(key, value.clone());
        }
        self
    }

    /// The configuration: defaults, with every given setting applied in table order. Without `workers`,
    /// there is one worker per pinned CPU (or per available CPU), at most [`MAX_CPUS`].
    pub fn resolve(&self) -> ServeConfig {
        let mut config = ServeConfig::default();
        for setting in settings::all() {
            if let Some(value) = self.values.get(setting.key) {
                (setting.apply)(&mut config, value.clone());
            }
        }
        if self.get("workers").is_none() {
            let cpus = config
                .cpus
                .as_ref()
                .map_or_else(|| available_cpus().len(), Vec::len);
            config.workers = cpus.clamp(1, MAX_CPUS);
        }
        config
    }
}
