//! Whether a plugin is a function of its input, as sharing an instance
//! between groups requires (`reuse_instance`).
//!
//! Two checks, both comparing an instance that served other groups with a
//! fresh one: the probe at load ([`probe`]: sample groups A, B, A on one
//! instance against each on its own), and while running, one group in
//! `verify_every` ([`super::Session`]). A difference names the first
//! column that differs; the file is then *stateful* and its groups run on
//! fresh instances until it changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{CallError, Limits, Plugin};
use crate::rows::{ColumnType, Description, GroupKey, InputRow, Output, Value};

/// How a file was found stateful.
#[derive(Debug, Clone)]
pub struct Stateful {
    /// The group and column that differed.
    pub why: String,
    pub since: Instant,
    /// Found while running (rows were written from reused instances
    /// before), not by the probe at load.
    pub while_running: bool,
}

impl Stateful {
    pub fn found(why: String, while_running: bool) -> Self {
        Stateful { why, since: Instant::now(), while_running }
    }
}

/// A reused instance's result that differs from a fresh one's.
#[derive(Debug, Clone)]
pub struct Impurity {
    pub key: GroupKey,
    pub difference: Difference,
}

/// The first difference between two results of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The output column, or `(rows)`, `rejected`, `(call)`.
    pub column: String,
    /// What the reused instance gave, and what the fresh one gave.
    pub reused: String,
    pub fresh: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Difference { column, reused, fresh } = self;
        write!(f, "column `{column}` is {reused} on a reused instance, {fresh} on a fresh one")
    }
}

/// Where the outputs of one input differ first: the number of rows, then
/// row by row and column by column (a pure plugin gives the same rows in
/// the same order), then the rejected count. A fresh call that failed
/// where the reused one succeeded differs too.
pub fn difference(d: &Description, reused: &Output, fresh: &Result<Output, CallError>) -> Option<Difference> {
    let diff = |column: &str, reused: String, fresh: String| Some(Difference { column: column.into(), reused, fresh });
    let fresh = match fresh {
        Ok(fresh) => fresh,
        Err(e) => {
            return diff(
                "(call)",
                "a result".into(),
                format!("an error ({})", super::contract::excerpt(&e.to_string())),
            );
        }
    };
    if reused.rows.len() != fresh.rows.len() {
        return diff("(rows)", format!("{} rows", reused.rows.len()), format!("{} rows", fresh.rows.len()));
    }
    for (a, b) in reused.rows.iter().zip(&fresh.rows) {
        for (i, (x, y)) in a.iter().zip(b).enumerate().chain(extra(a, b)) {
            if !same(x, y) {
                let column = d.output.get(i).map_or("(extra)", |c| c.name.as_str());
                return diff(column, shown(x), shown(y));
            }
        }
    }
    (reused.rejected != fresh.rejected).then(|| Difference {
        column: "rejected".into(),
        reused: reused.rejected.to_string(),
        fresh: fresh.rejected.to_string(),
    })
}

/// Rows of different widths differ at the first column one lacks.
fn extra<'a>(a: &'a [Value], b: &'a [Value]) -> impl Iterator<Item = (usize, (&'a Value, &'a Value))> {
    const MISSING: Value = Value::Null;
    let n = a.len().min(b.len());
    (a.len() != b.len()).then(|| (n, (a.get(n).unwrap_or(&MISSING), b.get(n).unwrap_or(&MISSING)))).into_iter()
}

/// Equal, with floats compared bit for bit (a pure function repeats them exactly).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn shown(v: &Value) -> String {
    super::contract::excerpt(&v.to_string())
}

/// What the probe at load found.
#[derive(Debug)]
pub enum Probe {
    /// Same results on a reused instance as on fresh ones.
    Pure,
    Stateful(Impurity),
    /// The samples failed on fresh instances too: nothing to compare (the
    /// check while running still applies).
    Inconclusive(String),
}

/// One sample group and its rows.
pub type Sample = (GroupKey, Vec<InputRow>);

/// Runs `a`, `b`, `a` on one instance and each on a fresh one, and
/// compares. Blocking.
pub fn probe(plugin: &Plugin, limits: Limits, [a, b]: [&Sample; 2]) -> Probe {
    let started = Instant::now();
    let mut warm = match plugin.instantiate(a.0, limits) {
        Ok(warm) => warm,
        Err(e) => return Probe::Inconclusive(format!("instantiating failed: {e}")),
    };
    // Checks, not the groups' aggregation: their log lines are not logged.
    warm.store.data_mut().quiet();
    let mut compared = 0;
    let mut failure = None;
    for (key, rows) in [a, b, a] {
        let fresh = plugin.aggregate_on_fresh(*key, rows.clone(), limits, true);
        warm.store.data_mut().begin_call(*key, limits);
        let reused = warm.call(plugin, *key, rows.clone(), limits);
        warm.store.data_mut().finish_logs();
        match (reused, &fresh) {
            (Ok(reused), _) => {
                if let Some(difference) = difference(&plugin.description, &reused, &fresh) {
                    spent(started.elapsed());
                    return Probe::Stateful(Impurity { key: *key, difference });
                }
                compared += 1;
            }
            (Err(e), Ok(_)) => {
                let difference = Difference {
                    column: "(call)".into(),
                    reused: format!("an error ({})", super::contract::excerpt(&e.to_string())),
                    fresh: "a result".into(),
                };
                spent(started.elapsed());
                return Probe::Stateful(Impurity { key: *key, difference });
            }
            // Both failed: a trap leaves the instance unusable.
            (Err(e), Err(_)) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    spent(started.elapsed());
    match (compared, failure) {
        (3, _) => Probe::Pure,
        (_, why) => Probe::Inconclusive(format!("the sample groups failed: {}", why.unwrap_or_default())),
    }
}

/// Two sample groups made from the plugin's declared input columns, for
/// a probe with no rows of the job's at hand (no database, an empty table):
/// one user's two days, of 3 and 5 rows.
pub fn made_up_samples(d: &Description) -> [Sample; 2] {
    const WORDS: [&str; 5] = ["heart_rate", "weight", "steps", "glucose", "kcal"];
    let day = |n: u32| chrono::NaiveDate::from_ymd_opt(2026, 1, n).expect("a date");
    let group = |n: u32, len: i64| {
        let midnight = day(n).and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros();
        let rows = (0..len)
            .map(|i| {
                let at = midnight + i * 3_600_000_000;
                let values = d
                    .input
                    .iter()
                    .map(|c| match c.kind {
                        ColumnType::Boolean => Value::Boolean(i % 2 == 0),
                        ColumnType::Integer => Value::Integer(i * 7 + i64::from(n)),
                        ColumnType::Float => Value::Float(60.0 + (i as f64) * 1.5 + f64::from(n)),
                        ColumnType::Text => Value::Text(WORDS[(i as usize + n as usize) % WORDS.len()].into()),
                        ColumnType::Timestamp => Value::Timestamp(at),
                        ColumnType::Date => Value::Date(crate::rows::days_since_epoch(day(n))),
                    })
                    .collect();
                InputRow::new(i64::from(n) * 100 + i, at, values)
            })
            .collect();
        (GroupKey { user_id: 1, day: day(n) }, rows)
    };
    [group(5, 3), group(6, 5)]
}

/// Time spent on purity checks in this process (probe and checks while
/// running), for the benchmark.
static SPENT_NANOS: AtomicU64 = AtomicU64::new(0);

pub(super) fn spent(took: Duration) {
    SPENT_NANOS.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
}

/// Time spent on purity checks in this process so far.
pub fn time_spent() -> Duration {
    Duration::from_nanos(SPENT_NANOS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Column;

    fn description() -> Description {
        let column = |name: &str, kind| Column { name: name.into(), kind };
        Description {
            name: "x".into(),
            version: "1".into(),
            input: vec![column("value", ColumnType::Float)],
            output: vec![column("metric", ColumnType::Text), column("total", ColumnType::Float)],
            key: vec!["metric".into()],
            settings: vec![],
            row_fields: crate::rows::RowFields::ALL,
        }
    }

    fn output(rows: Vec<Vec<Value>>, rejected: u32) -> Output {
        Output::new(rows, rejected)
    }

    #[test]
    fn the_first_differing_column_is_named() {
        let d = description();
        let a = output(vec![vec![Value::Text("hr".into()), Value::Float(1.0)]], 0);
        assert_eq!(difference(&d, &a, &Ok(a.clone())), None);
        let b = output(vec![vec![Value::Text("hr".into()), Value::Float(2.0)]], 0);
        let found = difference(&d, &a, &Ok(b)).expect("differs");
        assert_eq!((found.column.as_str(), found.reused.as_str(), found.fresh.as_str()), ("total", "`1`", "`2`"));
        let more = output(vec![a.rows[0].clone(), a.rows[0].clone()], 0);
        assert_eq!(difference(&d, &a, &Ok(more)).expect("differs").column, "(rows)");
        assert_eq!(difference(&d, &a, &Ok(output(a.rows.clone(), 1))).expect("differs").column, "rejected");
        let failed = Err(CallError::Plugin("no".into()));
        assert_eq!(difference(&d, &a, &failed).expect("differs").column, "(call)");
        // -0.0 and 0.0 are equal numbers, but not the same result.
        let (zero, minus) = (output(vec![vec![Value::Float(0.0)]], 0), output(vec![vec![Value::Float(-0.0)]], 0));
        assert_eq!(difference(&d, &zero, &Ok(minus)).expect("differs").column, "metric");
    }

    #[test]
    fn made_up_samples_follow_the_declared_columns() {
        let [a, b] = made_up_samples(&description());
        assert_ne!(a.0, b.0);
        assert_eq!((a.1.len(), b.1.len()), (3, 5));
        assert!(a.1.iter().chain(&b.1).all(|r| matches!(r.values[..], [Value::Float(_)])));
    }
}
