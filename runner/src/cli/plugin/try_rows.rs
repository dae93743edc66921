//! `runner plugin test`: a plugin on rows from a file, no database.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate};

use runner::plugin::{Limits, Plugin};
use runner::rows::{Column, ColumnType, GroupKey, InputRow, Value, days_since_epoch};

/// Reads the rows of a CSV or JSON file as (user, timestamp, id, values) by
/// the plugin's declared input columns.
fn read_rows(path: &Path, input: &[Column]) -> anyhow::Result<BTreeMap<GroupKey, Vec<InputRow>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let records: Vec<BTreeMap<String, serde_json::Value>> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{}: expected a JSON array of objects", path.display()))?
    } else {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers()?.clone();
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.with_context(|| format!("reading {}", path.display()))?;
            let fields = headers.iter().zip(record.iter());
            records.push(
                fields
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(h, v)| (h.trim().to_string(), serde_json::Value::String(v.to_string())))
                    .collect(),
            );
        }
        records
    };
    let mut groups: BTreeMap<GroupKey, Vec<InputRow>> = BTreeMap::new();
    for (n, record) in records.iter().enumerate() {
        let line = n + 1;
        let field = |name: &str| record.get(name).filter(|v| !v.is_null());
        let at = field("at").with_context(|| format!("row {line}: no `at` timestamp"))?;
        let at = parse(at, ColumnType::Timestamp).with_context(|| format!("row {line}: `at`"))?;
        let Value::Timestamp(at) = at else { unreachable!("parsed as a timestamp") };
        let int = |name: &str, default: i64| match field(name) {
            None => anyhow::Ok(default),
            Some(v) => match parse(v, ColumnType::Integer)? {
                Value::Integer(i) => Ok(i),
                _ => unreachable!("parsed as an integer"),
            },
        };
        let user_id = int("user_id", 1).with_context(|| format!("row {line}: `user_id`"))?;
        let id = int("id", line as i64).with_context(|| format!("row {line}: `id`"))?;
        let values = input
            .iter()
            .map(|c| match field(&c.name) {
                None => Ok(Value::Null),
                Some(v) => parse(v, c.kind).with_context(|| format!("row {line}: column `{}`", c.name)),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Its local day and zone, when the file gives them (WIT 0.3).
        let row_day = match field("day") {
            Some(v) => match parse(v, ColumnType::Date).with_context(|| format!("row {line}: `day`"))? {
                Value::Date(d) => Some(d),
                _ => unreachable!("parsed as a date"),
            },
            None => None,
        };
        let zone = match field("zone") {
            Some(serde_json::Value::String(z)) => Some(std::sync::Arc::from(z.trim())),
            Some(other) => bail!("row {line}: `zone` {other} is not text"),
            None => None,
        };
        let day = match field("group") {
            // Rows of several days in one group (a window, a week).
            Some(v) => match parse(v, ColumnType::Date).with_context(|| format!("row {line}: `group`"))? {
                Value::Date(d) => runner::rows::date_of(d).context("`group` out of range")?,
                _ => unreachable!("parsed as a date"),
            },
            None => DateTime::from_timestamp_micros(at).context("timestamp out of range")?.date_naive(),
        };
        let mut row = InputRow::new(id, at, values);
        row.day = row_day.unwrap_or(row.day);
        row.zone = zone;
        groups.entry(GroupKey { user_id, day }).or_default().push(row);
    }
    for rows in groups.values_mut() {
        rows.sort_by_key(|r| (r.at, r.id));
    }
    Ok(groups)
}

/// Parses one input value as the declared type (CSV gives strings).
fn parse(v: &serde_json::Value, kind: ColumnType) -> anyhow::Result<Value> {
    use serde_json::Value as J;
    Ok(match (kind, v) {
        (_, J::Null) => Value::Null,
        (ColumnType::Text, J::String(s)) => Value::Text(s.clone()),
        (ColumnType::Float, J::Number(n)) => Value::Float(n.as_f64().context("not a number")?),
        (ColumnType::Float, J::String(s)) => {
            Value::Float(s.trim().parse().with_context(|| format!("`{s}` is not a number"))?)
        }
        (ColumnType::Integer, J::Number(n)) => Value::Integer(n.as_i64().context("not an integer")?),
        (ColumnType::Integer, J::String(s)) => {
            Value::Integer(s.trim().parse().with_context(|| format!("`{s}` is not an integer"))?)
        }
        (ColumnType::Boolean, J::Bool(b)) => Value::Boolean(*b),
        (ColumnType::Boolean, J::String(s)) => {
            Value::Boolean(s.trim().parse().with_context(|| format!("`{s}` is not true or false"))?)
        }
        (ColumnType::Timestamp, J::String(s)) => Value::Timestamp(
            DateTime::parse_from_rfc3339(s.trim())
                .with_context(|| format!("`{s}` is not an RFC 3339 timestamp"))?
                .timestamp_micros(),
        ),
        (ColumnType::Date, J::String(s)) => Value::Date(days_since_epoch(
            s.trim().parse::<NaiveDate>().with_context(|| format!("`{s}` is not a date"))?,
        )),
        (kind, other) => bail!("{other} is not a {kind}"),
    })
}

fn show(v: &Value) -> String {
    match v {
        // Six decimals are what a table on a terminal needs.
        Value::Float(f) if f.is_finite() => format!("{}", (f * 1e6).round() / 1e6),
        // A plugin's text reaches a terminal: control characters escaped.
        Value::Text(s) => runner::plugin::contract::sanitize(s, 1024),
        other => other.to_string(),
    }
}

pub fn run(plugin: &Plugin, input: &Path, as_json: bool, limits: Limits) -> anyhow::Result<ExitCode> {
    let groups = read_rows(input, &plugin.description.input)?;
    let names: Vec<&str> = plugin.description.output.iter().map(|c| c.name.as_str()).collect();
    let mut failed = 0;
    let mut report = Vec::new();
    for (key, rows) in groups {
        let count = rows.len();
        let started = Instant::now();
        let result = plugin
            .aggregate(key, rows, limits)
            .map_err(|e| e.to_string())
            .and_then(|out| plugin.check_output(&out).map(|()| out).map_err(|e| format!("invalid output: {e}")));
        let micros = started.elapsed().as_secs_f64() * 1e6;
        let (first, last) = plugin.frame.bounds(key.day);
        let span = if first == last { String::new() } else { format!(" ({first} to {last})") };
        let head = format!("user {} day {}{span}: {count} input rows, {micros:.0} µs", key.user_id, key.day);
        match result {
            Ok(output) if as_json => report.push(serde_json::json!({
                "user_id": key.user_id, "day": key.day.to_string(), "input_rows": count, "micros": micros,
                "rejected": output.rejected,
                "rows": output.rows.iter().map(|r| names.iter().zip(r).map(|(n, v)| (n.to_string(), v.to_json())).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
            })),
            Ok(output) => {
                println!("{head}, {} rejected", output.rejected);
                print_table(&names, &output.rows);
                println!();
            }
            Err(e) => {
                failed += 1;
                if as_json {
                    report.push(serde_json::json!({"user_id": key.user_id, "day": key.day.to_string(), "input_rows": count, "micros": micros, "error": e.to_string()}));
                } else {
                    println!("{head}: FAILED: {e}\n");
                }
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print_table(names: &[&str], rows: &[Vec<Value>]) {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(show).collect()).collect();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| cells.iter().map(|r| r[i].chars().count()).chain([n.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(names.to_vec());
    line(widths.iter().map(|w| &"----------------------------------------"[..(*w).min(40)]).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}
