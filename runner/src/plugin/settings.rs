//! Job settings: the values of `[jobs.<name>.settings]`, checked against the
//! settings a plugin declares (WIT 0.2) and handed to it through
//! `host.settings`. Resolution is all-or-nothing: a job whose settings do not
//! fit its plugin does not run that plugin, and every problem is listed.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::rows::{ColumnType, SettingSpec, Value};

/// A job's resolved settings: every declared setting in declared order,
/// with the job's value or the default. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub values: Arc<[(String, Value)]>,
    /// Set when the job sets any setting: the first 12 hex digits of the
    /// SHA-256 of the resolved values (`Settings::json`), appended to
    /// `plugin_version` as `+settings:<hash>`.
    pub hash: Option<String>,
}

impl Settings {
    /// The resolved values as one JSON object, keys sorted (canonical, so
    /// the hash does not change when a plugin reorders its declarations):
    /// what `runner check`, `/plugins` and the logs show beside the hash.
    pub fn json(&self) -> String {
        self.to_json().to_string()
    }

    /// The resolved values as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> =
            self.values.iter().map(|(name, value)| (name.clone(), json_value(value))).collect();
        serde_json::Value::Object(map)
    }
}

/// A setting's value in JSON.
pub fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Text(s) => s.clone().into(),
        other => format!("{other:?}").into(),
    }
}

/// The most settings a plugin may declare, and the longest `doc` kept.
pub const MAX_SETTINGS: usize = 64;
pub const MAX_DOC_BYTES: usize = 200;

/// Checks the job's `configured` values against what the plugin `declared`.
/// `line` names where a setting is written (`file:line`), for messages.
/// Problems: a setting the plugin does not declare, a value of another
/// type, a required setting left out.
pub fn resolve(
    declared: &[SettingSpec],
    configured: &BTreeMap<String, Value>,
    line: &dyn Fn(Option<&str>) -> String,
) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let names: Vec<&str> = declared.iter().map(|s| s.name.as_str()).collect();
    for name in configured.keys().filter(|n| !names.contains(&n.as_str())) {
        let known = if names.is_empty() {
            "it declares no settings".to_string()
        } else {
            format!("it declares: {}", names.join(", "))
        };
        problems.push(format!("{}: setting `{name}` is not one the plugin reads ({known})", line(Some(name))));
    }
    let mut values = Vec::with_capacity(declared.len());
    for spec in declared {
        let value = match configured.get(&spec.name) {
            Some(value) => match coerce(value, spec.kind) {
                Some(value) => value,
                None => {
                    problems.push(format!(
                        "{}: setting `{}` must be {} ({}), got {}",
                        line(Some(&spec.name)),
                        spec.name,
                        article(spec.kind),
                        spec.doc,
                        describe(value)
                    ));
                    continue;
                }
            },
            None => match &spec.default {
                Some(default) => default.clone(),
                None => {
                    problems.push(format!(
                        "{}: setting `{}` is required ({} {}, no default): add `{} = …` to the job's settings",
                        line(None),
                        spec.name,
                        article(spec.kind),
                        spec.doc,
                        spec.name
                    ));
                    continue;
                }
            },
        };
        values.push((spec.name.clone(), value));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut settings = Settings { values: values.into(), hash: None };
    if !configured.is_empty() {
        let digest = Sha256::digest(settings.json().as_bytes());
        settings.hash = Some(digest.iter().take(6).map(|b| format!("{b:02x}")).collect());
    }
    Ok(settings)
}

/// `value` as a setting of `kind`: an integer is a fine float, nothing else converts.
pub fn coerce(value: &Value, kind: ColumnType) -> Option<Value> {
    match (value, kind) {
        (Value::Boolean(_), ColumnType::Boolean)
        | (Value::Integer(_), ColumnType::Integer)
        | (Value::Float(_), ColumnType::Float)
        | (Value::Text(_), ColumnType::Text) => Some(value.clone()),
        (Value::Integer(i), ColumnType::Float) => Some(Value::Float(*i as f64)),
        _ => None,
    }
}

fn article(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Boolean => "a boolean",
        ColumnType::Integer => "an integer",
        ColumnType::Float => "a number",
        _ => "a string",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Text(s) => format!("the string {s:?}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: ColumnType, default: Option<Value>) -> SettingSpec {
        SettingSpec { name: name.into(), kind, default, doc: "doc".into() }
    }

    fn at(name: Option<&str>) -> String {
        format!("runner.toml:{}", name.map_or(7, |n| n.len()))
    }

    #[test]
    fn defaults_fill_in_and_no_hash_without_configured_values() {
        let declared = [spec("max", ColumnType::Float, Some(Value::Float(300.0)))];
        let s = resolve(&declared, &BTreeMap::new(), &at).unwrap();
        assert_eq!(&*s.values, &[("max".to_string(), Value::Float(300.0))]);
        assert_eq!(s.hash, None);
        assert_eq!(s.json(), r#"{"max":300.0}"#);
    }

    #[test]
    fn integers_widen_to_floats_and_the_hash_follows_the_values() {
        let declared = [spec("max", ColumnType::Float, Some(Value::Float(300.0)))];
        let a = resolve(&declared, &BTreeMap::from([("max".into(), Value::Integer(250))]), &at).unwrap();
        let b = resolve(&declared, &BTreeMap::from([("max".into(), Value::Float(250.0))]), &at).unwrap();
        let c = resolve(&declared, &BTreeMap::from([("max".into(), Value::Float(251.0))]), &at).unwrap();
        assert_eq!(a.values[0].1, Value::Float(250.0));
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.as_ref().map(String::len), Some(12));
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let declared =
            [spec("max", ColumnType::Float, None), spec("strict", ColumnType::Boolean, Some(Value::Boolean(true)))];
        let configured =
            BTreeMap::from([("strict".into(), Value::Text("yes".into())), ("maximum".into(), Value::Integer(1))]);
        let problems = resolve(&declared, &configured, &at).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("runner.toml:7: setting `maximum` is not one the plugin reads (it declares: max, strict)")
        );
        assert!(problems[1].contains("runner.toml:7: setting `max` is required"), "{problems:?}");
        assert!(problems[2].contains("runner.toml:6: setting `strict` must be a boolean"), "{problems:?}");
        assert!(problems[2].contains("the string \"yes\""), "{problems:?}");
    }
}
