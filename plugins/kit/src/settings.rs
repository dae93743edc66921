//! The job's settings, as the plugin declared them in its [`Schema`]
//! (`Schema::setting`) and operators set them in `[jobs.<name>.settings]`.
//! The runner checks every value against the declaration before the plugin
//! runs, so a declared setting is always present and of its declared type.

use crate::bindings::health::aggregation::types::Value;
use crate::{Error, Schema};

/// The settings of the job running the plugin.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: Vec<(String, Value)>,
}

impl Settings {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn new(values: Vec<(String, Value)>) -> Self {
        Settings { values }
    }

    /// The declared defaults with `overrides` on top: what the runner would
    /// pass a job that sets `overrides` (for native tests).
    pub(crate) fn resolved(schema: &Schema, overrides: &[(String, Value)]) -> Self {
        let values = schema
            .settings
            .iter()
            .filter_map(|s| {
                let set = overrides.iter().find(|(n, _)| *n == s.name).map(|(_, v)| v.clone());
                Some((s.name.clone(), set.or_else(|| s.default.clone())?))
            })
            .collect();
        Settings { values }
    }

    fn get(&self, name: &str) -> Result<&Value, Error> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error(format!("no setting `{name}` is declared")))
    }

    /// A `float` setting (an integer value reads as a float too).
    pub fn float(&self, name: &str) -> Result<f64, Error> {
        match self.get(name)? {
            Value::Float(f) => Ok(*f),
            Value::Integer(i) => Ok(*i as f64),
            other => Err(Error(format!("setting `{name}` is {other:?}, not a float"))),
        }
    }

    /// An `integer` setting.
    pub fn integer(&self, name: &str) -> Result<i64, Error> {
        match self.get(name)? {
            Value::Integer(i) => Ok(*i),
            other => Err(Error(format!("setting `{name}` is {other:?}, not an integer"))),
        }
    }

    /// A `boolean` setting.
    pub fn boolean(&self, name: &str) -> Result<bool, Error> {
        match self.get(name)? {
            Value::Boolean(b) => Ok(*b),
            other => Err(Error(format!("setting `{name}` is {other:?}, not a boolean"))),
        }
    }

    /// A `text` setting.
    pub fn text(&self, name: &str) -> Result<&str, Error> {
        match self.get(name)? {
            Value::Text(t) => Ok(t),
            other => Err(Error(format!("setting `{name}` is {other:?}, not text"))),
        }
    }
}
