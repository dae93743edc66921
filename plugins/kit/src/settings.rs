//! The job's settings, as the plugin declared them in its [`Schema`]
//! (`Schema::setting`) and operators set them in `[jobs.<name>.settings]`.
//! The runner checks every value against the declaration before the plugin
//! runs, so a declared setting is always present and of its declared type.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use crate::bindings::health::aggregation::types::Value;
use crate::{Error, Schema};

/// The settings of the job running the plugin.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: Vec<(String, Value)>,
    derived: Derived,
}

/// What the plugin derived from the settings ([`Settings::derived`]).
#[derive(Clone, Default)]
struct Derived(OnceLock<Arc<dyn Any + Send + Sync>>);

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "Derived(kept)" } else { "Derived(none)" })
    }
}

impl Settings {
    pub(crate) fn new(values: Vec<(String, Value)>) -> Self {
        Settings { values, derived: Derived::default() }
    }

    /// A value the plugin computes from its settings, computed once and
    /// kept for as long as these settings hold: an instance's life, as the
    /// runner never changes a running instance's settings. For what a
    /// plugin reads from many settings, such as the vitals plugin's
    /// fourteen plausible bounds (read each group, they cost a tenth of a
    /// small group in WebAssembly). It must depend on the settings alone.
    /// One value is kept; asking for another type computes that one each
    /// time, and an error is not kept.
    pub fn derived<T: Any + Send + Sync>(
        &self,
        derive: impl FnOnce(&Settings) -> Result<T, Error>,
    ) -> Result<Arc<T>, Error> {
        if let Some(kept) = self.derived.0.get() {
            if let Ok(value) = kept.clone().downcast::<T>() {
                return Ok(value);
            }
            return derive(self).map(Arc::new);
        }
        let value = Arc::new(derive(self)?);
        let _ = self.derived.0.set(value.clone());
        Ok(value)
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
        Settings::new(values)
    }

    fn get(&self, name: &str) -> Result<&Value, Error> {
        self.values
            .iter()
            .find(|(n, _)| crate::schema::same_name(n, name))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_value_is_computed_once_and_an_error_or_another_type_each_time() {
        let settings = Settings::new(vec![("low".into(), Value::Float(2.0))]);
        let calls = std::cell::Cell::new(0);
        let double = || {
            settings.derived(|s| {
                calls.set(calls.get() + 1);
                Ok(s.float("low")? * 2.0)
            })
        };
        assert!(settings.derived::<f64>(|_| Err(Error::msg("not yet"))).is_err());
        assert_eq!((*double().unwrap(), *double().unwrap()), (4.0, 4.0));
        assert_eq!(calls.get(), 1, "kept after the first success");
        assert_eq!(*settings.derived(|_| Ok(7_i64)).unwrap(), 7, "another type is computed, not mistaken");
        assert_eq!(*double().unwrap(), 4.0);
        assert_eq!(calls.get(), 1);
    }
}
