//! Plugin settings as the config and the command line write them.

/// A setting's TOML value as a typed value (`None`: not a scalar).
pub fn setting_value(v: &toml::Value) -> Option<crate::rows::Value> {
    use crate::rows::Value;
    match v {
        toml::Value::Boolean(b) => Some(Value::Boolean(*b)),
        toml::Value::Integer(i) => Some(Value::Integer(*i)),
        toml::Value::Float(f) => Some(Value::Float(*f)),
        toml::Value::String(s) => Some(Value::Text(s.clone())),
        _ => None,
    }
}

/// `NAME=VALUE` from the command line: VALUE as TOML (`220`, `0.5`, `true`,
/// `"text"`), else as text.
pub fn setting_from_arg(arg: &str) -> Result<(String, crate::rows::Value), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("--set {arg}: expected NAME=VALUE, e.g. --set heart_rate_max=220"))?;
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}")).ok().and_then(|t| setting_value(&t["v"]));
    Ok((name.trim().to_string(), parsed.unwrap_or_else(|| crate::rows::Value::Text(value.to_string()))))
}
