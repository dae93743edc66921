//! What the runner accepts from a plugin, checked before any other use of
//! it: the bounds of its self-description, and the rules its output must
//! follow. A plugin is untrusted input; these checks are what keeps it from
//! making the host allocate, log or store more than a documented limit.

use std::collections::HashSet;

use crate::db::ident::Identifier;
use crate::rows::{ColumnType, Description, Output, Value};

/// The longest plugin name, in bytes.
pub const MAX_NAME: usize = 64;
/// The longest version, in bytes.
pub const MAX_VERSION: usize = 64;
/// Input or output columns at most: a Postgres table's own limit.
pub const MAX_COLUMNS: usize = 1600;
/// Key columns at most: a Postgres index's own limit, less `user_id` and `day`.
pub const MAX_KEY: usize = 30;
/// Problems listed one by one; the rest are counted.
pub const MAX_PROBLEMS: usize = 10;

/// Checks a description against the contract (documented in
/// `wit/aggregator.wit`); returns at most [`MAX_PROBLEMS`] sentences plus a
/// count of the rest. Nothing of the description is echoed unbounded.
pub fn check_description(d: &Description) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if !is_name(&d.name) {
        problems.push(format!(
            "its name {} must be 1 to {MAX_NAME} letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            excerpt(&d.name)
        ));
    }
    if d.version.len() > MAX_VERSION || semver::Version::parse(&d.version).is_err() {
        problems.push(format!("its version {} must be a semantic version such as `1.2.0`", excerpt(&d.version)));
    }
    for (what, columns) in [("input", &d.input), ("output", &d.output)] {
        if columns.len() > MAX_COLUMNS {
            problems.push(format!("it declares {} {what} columns; at most {MAX_COLUMNS} are allowed", columns.len()));
            continue;
        }
        let mut seen = HashSet::new();
        for c in columns.iter() {
            if Identifier::parse(&c.name).is_err() || c.name.contains('.') {
                problems.push(format!("{what} column {} is not a valid column name", excerpt(&c.name)));
            } else if !seen.insert(c.name.as_str()) {
                problems.push(format!("{what} column `{}` is declared twice", c.name));
            }
        }
    }
    if d.output.is_empty() {
        problems.push("it declares no output columns; a plugin writes at least one".to_string());
    }
    if d.key.len() > MAX_KEY {
        problems.push(format!("it declares {} key columns; at most {MAX_KEY} are allowed", d.key.len()));
    } else {
        for k in &d.key {
            if !d.output.iter().any(|c| &c.name == k) {
                problems.push(format!("key column {} is not among its output columns", excerpt(k)));
            }
        }
    }
    check_settings(d, &mut problems);
    if problems.is_empty() { Ok(()) } else { Err(bounded(problems)) }
}

/// The declared settings: bounded in number, valid distinct names, a doc
/// line of bounded length, and a default (if any) of the declared kind.
fn check_settings(d: &Description, problems: &mut Vec<String>) {
    use super::settings::{MAX_DOC_BYTES, MAX_SETTINGS, coerce};
    if d.settings.len() > MAX_SETTINGS {
        problems.push(format!("it declares {} settings; at most {MAX_SETTINGS} are allowed", d.settings.len()));
        return;
    }
    let mut seen = HashSet::new();
    for s in &d.settings {
        if Identifier::parse(&s.name).is_err() || s.name.contains('.') {
            problems.push(format!("setting {} is not a valid setting name", excerpt(&s.name)));
            continue;
        }
        if !seen.insert(s.name.as_str()) {
            problems.push(format!("setting `{}` is declared twice", s.name));
        }
        if !matches!(s.kind, ColumnType::Boolean | ColumnType::Integer | ColumnType::Float | ColumnType::Text) {
            problems.push(format!(
                "setting `{}` has the type {}; settings are boolean, integer, float or text",
                s.name, s.kind
            ));
        }
        if s.doc.len() > MAX_DOC_BYTES {
            problems.push(format!("setting `{}` has a doc of {} bytes; at most {MAX_DOC_BYTES}", s.name, s.doc.len()));
        }
        match &s.default {
            Some(Value::Float(f)) if !f.is_finite() => {
                problems.push(format!("setting `{}` has a default that is not finite", s.name));
            }
            Some(Value::Text(t)) if t.len() > MAX_DOC_BYTES * 5 || t.contains('\0') => {
                problems.push(format!(
                    "setting `{}` has a text default over {} bytes or with a NUL",
                    s.name,
                    MAX_DOC_BYTES * 5
                ));
            }
            Some(default) if coerce(default, s.kind).is_none() => {
                problems.push(format!("setting `{}` is declared {} but its default is not", s.name, s.kind));
            }
            _ => {}
        }
    }
}

/// Keeps the first [`MAX_PROBLEMS`] problems and counts the rest.
pub fn bounded(mut problems: Vec<String>) -> Vec<String> {
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(format!("and {more} more"));
    }
    problems
}

fn is_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A plugin-supplied string for a message: quoted, control characters
/// escaped, at most 40 characters.
pub fn excerpt(s: &str) -> String {
    const KEEP: usize = 40;
    let shown: String = s.chars().take(KEEP).flat_map(char::escape_debug).collect();
    if s.chars().nth(KEEP).is_some() { format!("`{shown}…` ({} bytes)", s.len()) } else { format!("`{shown}`") }
}

/// A plugin-supplied message for the log or `aggregation_error`: control
/// characters escaped (no forged lines), at most `max` bytes kept.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 32);
    for c in s.chars() {
        if out.len() >= max {
            let cut = s.len().saturating_sub(out.len());
            out.push_str(&format!("… ({cut} more bytes cut)"));
            break;
        }
        if c.is_control() { out.extend(c.escape_debug()) } else { out.push(c) }
    }
    out
}

/// A plugin's error message as stored: [`sanitize`]d to 1 KiB.
pub fn excerpt_long(s: &str) -> String {
    sanitize(s, 1024)
}

/// Checks a group's output before any SQL: every row has the declared
/// number of values, each of its column's type or NULL; floats are finite;
/// text holds no NUL; no two rows share a key. The message names the row
/// and the column or key.
pub fn check_output(d: &Description, output: &Output) -> Result<(), String> {
    if let Some(problem) = &output.malformed {
        return Err(problem.clone());
    }
    let columns = &d.output;
    let key_index: Vec<usize> = d.key.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
    let mut keys = HashSet::new();
    for (i, row) in output.rows.iter().enumerate() {
        if row.len() != columns.len() {
            return Err(format!("output row {i} has {} values but {} columns are declared", row.len(), columns.len()));
        }
        for (value, column) in row.iter().zip(columns) {
            let name = &column.name;
            if let Some(kind) = value.kind()
                && kind != column.kind
            {
                return Err(format!(
                    "output row {i}: column `{name}` is declared {} but the value is {kind}",
                    column.kind
                ));
            }
            match value {
                Value::Float(f) if !f.is_finite() => {
                    return Err(format!("output row {i}: column `{name}` is {f}; only finite numbers can be stored"));
                }
                Value::Text(t) if t.contains('\0') => {
                    return Err(format!(
                        "output row {i}: column `{name}` contains a NUL character, which Postgres text cannot hold"
                    ));
                }
                _ => {}
            }
        }
        // The key's values as text: Value has floats, so no Hash of its own.
        let key: Vec<String> = key_index.iter().map(|&k| format!("{:?}", row[k])).collect();
        if !keys.insert(key) {
            let shown: Vec<String> =
                key_index.iter().map(|&k| format!("{}={}", columns[k].name, shown(&row[k]))).collect();
            return Err(format!(
                "output row {i} repeats the key ({}) of an earlier row; each key may appear once a day",
                if shown.is_empty() { "one row per day".to_string() } else { shown.join(", ") }
            ));
        }
    }
    Ok(())
}

fn shown(v: &Value) -> String {
    match v {
        Value::Text(t) => excerpt(t),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{Column, ColumnType};

    fn description() -> Description {
        Description {
            name: "vitals".into(),
            version: "1.0.0".into(),
            input: vec![Column { name: "metric".into(), kind: ColumnType::Text }],
            output: vec![
                Column { name: "metric".into(), kind: ColumnType::Text },
                Column { name: "avg_value".into(), kind: ColumnType::Float },
            ],
            key: vec!["metric".into()],
            settings: Vec::new(),
            row_fields: crate::rows::RowFields::ALL,
        }
    }

    #[test]
    fn settings_declarations_are_checked() {
        use crate::rows::SettingSpec;
        let spec = |name: &str, kind, default| SettingSpec { name: name.into(), kind, default, doc: String::new() };
        let mut d = description();
        d.settings = vec![
            spec("max", ColumnType::Float, Some(Value::Integer(3))),
            spec("max", ColumnType::Float, None),
            spec("Bad Name", ColumnType::Text, None),
            spec("strict", ColumnType::Boolean, Some(Value::Text("yes".into()))),
            spec("since", ColumnType::Date, None),
            spec("ratio", ColumnType::Float, Some(Value::Float(f64::NAN))),
        ];
        let problems = check_description(&d).unwrap_err();
        assert_eq!(
            problems,
            [
                "setting `max` is declared twice",
                "setting `Bad Name` is not a valid setting name",
                "setting `strict` is declared boolean but its default is not",
                "setting `since` has the type date; settings are boolean, integer, float or text",
                "setting `ratio` has a default that is not finite",
            ]
        );
        d.settings = (0..1000).map(|i| spec(&format!("s{i}"), ColumnType::Text, None)).collect();
        assert_eq!(check_description(&d).unwrap_err(), ["it declares 1000 settings; at most 64 are allowed"]);
    }

    #[test]
    fn an_amplifying_description_gives_a_bounded_answer() {
        let mut d = description();
        d.name = "x".repeat(8 << 20);
        d.version = "1.0\n2".into();
        d.input = (0..1_000).map(|i| Column { name: format!("Bad Name {i}"), kind: ColumnType::Text }).collect();
        let problems = check_description(&d).unwrap_err();
        let total: usize = problems.iter().map(String::len).sum();
        assert!(total < 2_000, "{total} bytes of problems");
        assert!(problems[0].contains("(8388608 bytes)"), "{problems:?}");
        assert!(problems[1].contains(r"`1.0\n2`"), "control characters are escaped: {problems:?}");
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(problems[MAX_PROBLEMS], "and 992 more");
        d.input = (0..100_000).map(|i| Column { name: format!("c{i}"), kind: ColumnType::Text }).collect();
        let problems = check_description(&d).unwrap_err();
        assert!(problems.contains(&"it declares 100000 input columns; at most 1600 are allowed".to_string()));
    }

    #[test]
    fn output_rules_name_the_row_and_the_column_or_key() {
        let d = description();
        let row = |m: &str, v: f64| vec![Value::Text(m.into()), Value::Float(v)];
        let check = |rows| check_output(&d, &Output::new(rows, 0)).unwrap_err();
        assert_eq!(
            check(vec![row("hr", 1.0), row("bp", f64::NAN)]),
            "output row 1: column `avg_value` is NaN; only finite numbers can be stored"
        );
        assert!(check(vec![row("hr", f64::NEG_INFINITY)]).contains("is -inf"));
        assert!(check(vec![row("h\0r", 1.0)]).contains("column `metric` contains a NUL character"));
        assert_eq!(
            check(vec![row("hr", 1.0), row("bp", 2.0), row("hr", 3.0)]),
            "output row 2 repeats the key (metric=`hr`) of an earlier row; each key may appear once a day"
        );
        assert!(check_output(&d, &Output::new(vec![row("hr", 1.0), row("bp", 2.0)], 0)).is_ok());
        // A shape the columns could not be read from (WIT 0.4) comes first.
        let malformed = Output { malformed: Some("output `floats` holds 1 values".into()), ..Output::new(vec![], 0) };
        assert_eq!(check_output(&d, &malformed).unwrap_err(), "output `floats` holds 1 values");
    }
}
