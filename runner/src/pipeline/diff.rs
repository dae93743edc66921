//! `runner plugin diff`: what a new plugin would change in a job's daily
//! rows, before it is deployed. Each group is read from the raw table in a
//! short read-only transaction of its own (plain selects: no row lock, no
//! claim, nothing written, every statement under the runner's timeouts),
//! which ends before any plugin runs: a slow plugin or a long preview never
//! keeps a snapshot, a lock or an idle transaction open, so an `ALTER
//! TABLE` waits at most one group's read. The live plugin and the new one
//! each aggregate every group, and their outputs are compared row by row on
//! the daily key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use deadpool_postgres::Pool;
use serde::Serialize;

use super::job::Live;
use super::transaction::call;
use crate::db::statements::Read;
use crate::plugin::Limits;
use crate::rows::{GroupKey, Output, Value};

/// How many examples a report keeps.
const EXAMPLES: usize = 10;

/// What the comparison found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub groups: u64,
    /// Groups where at least one daily row differs (or a plugin failed).
    pub groups_differing: u64,
    pub rows_unchanged: u64,
    pub rows_changed: u64,
    /// Daily rows only the new plugin writes.
    pub rows_added: u64,
    /// Daily rows only the live plugin writes.
    pub rows_removed: u64,
    /// Per output column: values changed, and the largest numeric change.
    pub columns: BTreeMap<String, ColumnChange>,
    /// Groups on which a plugin failed (error, trap, limit, invalid output).
    pub failures: Vec<Failure>,
    pub examples: Vec<Example>,
}

#[derive(Debug, Default, Serialize)]
pub struct ColumnChange {
    pub changed: u64,
    /// The largest absolute change of a numeric value, if any changed.
    pub largest_change: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub user_id: i64,
    pub day: NaiveDate,
    /// `live` or `new`.
    pub plugin: &'static str,
    pub error: String,
}

/// One changed, added or removed daily row.
#[derive(Debug, Serialize)]
pub struct Example {
    pub user_id: i64,
    pub day: NaiveDate,
    /// The row's key columns, `metric=heart_rate`.
    pub key: String,
    pub column: String,
    pub old: String,
    pub new: String,
}

impl Report {
    pub fn differs(&self) -> bool {
        self.groups_differing > 0
    }
}

/// Compares `live` and `new` on up to `sample` groups with input between
/// `from` and `to` (days in the job's time zone).
pub async fn compare(
    pool: &Pool,
    live: &Live,
    new: &Live,
    limits: Limits,
    (from, to): (NaiveDate, NaiveDate),
    sample: i64,
) -> anyhow::Result<Report> {
    let groups = live.sql.sample_groups(&pool.get().await?, from, to, sample).await?;
    let mut report = Report::default();
    for key in groups {
        let (first, second) = read_day(pool, [live, new], key).await?;
        let days = [&first, second.as_ref().unwrap_or(&first)];
        let mut outputs = Vec::new();
        for ((side, plugin), raw) in [("live", live), ("new", new)].into_iter().zip(days) {
            let result = match raw.input(plugin.sql.max_rows) {
                Ok(rows) => call(&plugin.plugin, key, rows, limits).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("reading the day: {e}")),
            };
            let result = result.and_then(|out| plugin.plugin.check_output(&out).map(|()| out));
            if let Err(error) = &result {
                report.failures.push(Failure {
                    user_id: key.user_id,
                    day: key.day,
                    plugin: side,
                    error: error.clone(),
                });
            }
            outputs.push(result.ok());
        }
        report.groups += 1;
        let differs = match (&outputs[0], &outputs[1]) {
            (Some(old), Some(new_out)) => compare_group(&mut report, key, live, new, old, new_out),
            _ => true,
        };
        report.groups_differing += u64::from(differs);
    }
    Ok(report)
}

/// One group's rows as each plugin reads them (`None` for the second: the
/// same statement as the first), from one snapshot so both plugins see the
/// same rows, in a transaction that ends, and a connection that goes back
/// to the pool, before either plugin runs.
async fn read_day(pool: &Pool, plugins: [&Live; 2], key: GroupKey) -> anyhow::Result<(Read, Option<Read>)> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let first = plugins[0].sql.read_day(&tx, key).await?;
    let second = match plugins[1].sql.reads_like(&plugins[0].sql) {
        true => None,
        false => Some(plugins[1].sql.read_day(&tx, key).await?),
    };
    tx.commit().await?;
    Ok((first, second))
}

/// A row as column → value, and its key as text.
type Row = BTreeMap<String, Value>;

fn rows(plugin: &Live, output: &Output, key_columns: &[String]) -> BTreeMap<String, Row> {
    let names: Vec<&String> = plugin.plugin.description.output.iter().map(|c| &c.name).collect();
    output
        .rows
        .iter()
        .map(|values| {
            let row: Row = names.iter().map(|n| (*n).clone()).zip(values.iter().cloned()).collect();
            let key = key_columns
                .iter()
                .map(|k| format!("{k}={}", show(row.get(k).unwrap_or(&Value::Null))))
                .collect::<Vec<_>>()
                .join(", ");
            (key, row)
        })
        .collect()
}

/// Compares one group's outputs; returns whether they differ.
fn compare_group(
    report: &mut Report,
    group: GroupKey,
    live: &Live,
    new: &Live,
    old: &Output,
    new_out: &Output,
) -> bool {
    // The live plugin's key names the rows (the daily table's key).
    let key_columns = &live.plugin.description.key;
    let (before, after) = (rows(live, old, key_columns), rows(new, new_out, key_columns));
    let mut differs = false;
    let example = |report: &mut Report, key: &str, column: &str, old: String, new: String| {
        if report.examples.len() < EXAMPLES {
            report.examples.push(Example {
                user_id: group.user_id,
                day: group.day,
                key: key.to_string(),
                column: column.to_string(),
                old,
                new,
            });
        }
    };
    for (key, row) in &before {
        let Some(other) = after.get(key) else {
            report.rows_removed += 1;
            differs = true;
            example(report, key, "(row)", "present".into(), "removed".into());
            continue;
        };
        let columns: BTreeSet<&String> = row.keys().chain(other.keys()).collect();
        let mut changed = false;
        for column in columns {
            let (a, b) = (row.get(column).unwrap_or(&Value::Null), other.get(column).unwrap_or(&Value::Null));
            if a == b {
                continue;
            }
            changed = true;
            let entry = report.columns.entry(column.clone()).or_default();
            entry.changed += 1;
            if let (Some(x), Some(y)) = (number(a), number(b)) {
                let delta = (x - y).abs();
                entry.largest_change = Some(entry.largest_change.map_or(delta, |d: f64| d.max(delta)));
            }
            example(report, key, column, show(a), show(b));
        }
        if changed {
            report.rows_changed += 1;
            differs = true;
        } else {
            report.rows_unchanged += 1;
        }
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        report.rows_added += 1;
        differs = true;
        example(report, key, "(row)", "absent".into(), "added".into());
    }
    differs
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Text(t) => crate::plugin::contract::excerpt(t),
        other => other.to_string(),
    }
}
