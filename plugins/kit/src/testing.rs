//! Running a plugin's logic natively, in `cargo test`, without WebAssembly.
//!
//! ```ignore
//! use plugin_kit::testing::{Group, ts};
//! let out = Group::new(1, "2024-03-10")
//!     .row(ts("2024-03-10T08:00:00Z"), ["heart_rate".into(), 60.0.into(), "bpm".into()])
//!     .run::<Vitals>()
//!     .unwrap();
//! assert_eq!(out.find("metric", "heart_rate").float("avg_value"), Some(60.0));
//! ```

use crate::bindings::health::aggregation::types::{
    ColumnType, ColumnValues, Group as WitGroup, InputColumn, TextColumn, Value,
};
use crate::{Day, Error, Output, Plugin, Schema, Settings};

/// A group built by hand for a test.
pub struct Group {
    head: Head,
    rows: Vec<RowIn>,
    settings: Vec<(String, Value)>,
}

/// What a group says of itself besides its rows.
#[derive(Debug, Clone)]
pub struct Head {
    pub user_id: i64,
    /// Days since 1970-01-01: the group's date, and its first and last day.
    pub day: i32,
    pub first_day: i32,
    pub last_day: i32,
    pub zone: Option<String>,
}

/// One row as a test (or a native run) gives it: id, timestamp, local
/// day, and the values of the declared input columns.
pub type RowIn = (i64, i64, i32, Vec<Value>);

impl Group {
    /// A group of `user_id` on `day` (`YYYY-MM-DD`), in UTC.
    pub fn new(user_id: i64, day: &str) -> Self {
        let day = days(day);
        let head = Head { user_id, day, first_day: day, last_day: day, zone: Some("UTC".into()) };
        Group { head, rows: Vec::new(), settings: Vec::new() }
    }

    /// The days the group spans (`YYYY-MM-DD`): a week, a month, a window.
    pub fn spanning(mut self, first: &str, last: &str) -> Self {
        (self.head.first_day, self.head.last_day) = (days(first), days(last));
        self
    }

    /// The zone the group's days are read in (`None`: rows' zones differ).
    pub fn zone(mut self, zone: Option<&str>) -> Self {
        self.head.zone = zone.map(String::from);
        self
    }

    /// Adds a row, its local day the UTC date of `at`; ids count up from 1
    /// in the order rows are added.
    pub fn row(self, at: i64, values: impl IntoIterator<Item = Value>) -> Self {
        let id = self.rows.len() as i64 + 1;
        self.row_with_id(id, at, values)
    }

    /// Adds a row with an explicit id.
    pub fn row_with_id(self, id: i64, at: i64, values: impl IntoIterator<Item = Value>) -> Self {
        let day = at.div_euclid(86_400_000_000) as i32;
        self.row_on(id, at, day, values)
    }

    /// Adds a row with an explicit id and local day (`days`): a row of
    /// another zone than UTC.
    pub fn row_on(mut self, id: i64, at: i64, day: i32, values: impl IntoIterator<Item = Value>) -> Self {
        self.rows.push((id, at, day, values.into_iter().collect()));
        self
    }

    /// Sets a setting as a job's `[jobs.<name>.settings]` would; the rest
    /// keep their declared defaults.
    pub fn setting(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Runs plugin `P` on the group, as the runner would (rows ordered by
    /// time, then id, passed by column).
    pub fn run<P: Plugin>(mut self) -> Result<Outcome, Error> {
        self.rows.sort_by_key(|r| (r.1, r.0));
        let schema = P::schema();
        let settings = Settings::resolved(&schema, &self.settings);
        let group = columnar(&schema, self.head, self.rows);
        let day = Day::new(&schema, &settings, &group);
        let mut out = Output::new(&schema);
        P::aggregate(&day, &mut out)?;
        let names: Vec<String> = schema.output.iter().map(|(n, _)| n.clone()).collect();
        let (rows, rejected) = out.into_parts();
        let rows = rows.into_iter().map(|values| Record { names: names.clone(), values }).collect();
        Ok(Outcome { rows, rejected })
    }
}

/// A group by column, as the runner passes it, from rows in order: for
/// running a plugin's logic natively (tests, the benchmark's baseline).
/// A value of another type than its column's declared one is passed as NULL.
pub fn columnar(schema: &Schema, head: Head, rows: Vec<RowIn>) -> WitGroup {
    let n = rows.len();
    // Each column's values, its NULL rows, and its distinct texts so far.
    type Building = (ColumnValues, Vec<u32>, Vec<(String, u32)>);
    let mut columns: Vec<Building> = schema
        .input
        .iter()
        .map(|(_, kind)| {
            let values = match kind {
                ColumnType::Boolean => ColumnValues::Boolean(Vec::with_capacity(n)),
                ColumnType::Integer => ColumnValues::Integer(Vec::with_capacity(n)),
                ColumnType::Float => ColumnValues::Float(Vec::with_capacity(n)),
                ColumnType::Text => ColumnValues::Text(TextColumn { distinct: Vec::new(), row: Vec::with_capacity(n) }),
                ColumnType::Timestamp => ColumnValues::Timestamp(Vec::with_capacity(n)),
                ColumnType::Date => ColumnValues::Date(Vec::with_capacity(n)),
            };
            (values, Vec::new(), Vec::new())
        })
        .collect();
    let (mut ids, mut ats, mut row_days) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, (id, at, day, values)) in rows.into_iter().enumerate() {
        ids.push(id);
        ats.push(at);
        row_days.push(day);
        let mut values = values.into_iter();
        for (column, nulls, seen) in &mut columns {
            let value = values.next().unwrap_or(Value::Null);
            match (&mut *column, value) {
                (ColumnValues::Boolean(c), Value::Boolean(b)) => c.push(b),
                (ColumnValues::Integer(c), Value::Integer(v)) => c.push(v),
                (ColumnValues::Float(c), Value::Float(v)) => c.push(v),
                (ColumnValues::Float(c), Value::Integer(v)) => c.push(v as f64),
                (ColumnValues::Text(t), Value::Text(s)) => {
                    let at = match seen.iter().find(|(known, _)| *known == s) {
                        Some((_, at)) => *at,
                        None => {
                            let at = t.distinct.len() as u32;
                            t.distinct.push(s.clone());
                            seen.push((s, at));
                            at
                        }
                    };
                    t.row.push(at)
                }
                (ColumnValues::Timestamp(c), Value::Timestamp(v)) => c.push(v),
                (ColumnValues::Date(c), Value::Date(v)) => c.push(v),
                (column, _) => {
                    match column {
                        ColumnValues::Boolean(c) => c.push(false),
                        ColumnValues::Integer(c) | ColumnValues::Timestamp(c) => c.push(0),
                        ColumnValues::Float(c) => c.push(0.0),
                        ColumnValues::Text(t) => t.row.push(u32::MAX),
                        ColumnValues::Date(c) => c.push(0),
                    }
                    nulls.push(i as u32);
                }
            }
        }
    }
    WitGroup {
        user_id: head.user_id,
        day: head.day,
        first_day: head.first_day,
        last_day: head.last_day,
        zone: head.zone,
        ids,
        ats,
        days: row_days,
        columns: columns.into_iter().map(|(values, nulls, _)| InputColumn { values, nulls }).collect(),
    }
}

/// A plugin's output in a test.
#[derive(Debug)]
pub struct Outcome {
    pub rows: Vec<Record>,
    pub rejected: u32,
}

impl Outcome {
    /// The one row whose text column `column` equals `value`; panics otherwise.
    pub fn find(&self, column: &str, value: &str) -> &Record {
        let found: Vec<_> = self.rows.iter().filter(|r| r.text(column) == Some(value)).collect();
        assert_eq!(found.len(), 1, "expected one row with {column} = {value:?} in {:#?}", self.rows);
        found[0]
    }
}

/// One output row, readable by column name.
#[derive(Debug, Clone)]
pub struct Record {
    names: Vec<String>,
    values: Vec<Value>,
}

impl Record {
    pub fn get(&self, column: &str) -> &Value {
        let i = self.names.iter().position(|n| n == column).unwrap_or_else(|| panic!("no output column `{column}`"));
        &self.values[i]
    }

    pub fn float(&self, column: &str) -> Option<f64> {
        match self.get(column) {
            Value::Float(f) => Some(*f),
            Value::Null => None,
            other => panic!("`{column}` is {other:?}, not a float"),
        }
    }

    pub fn integer(&self, column: &str) -> Option<i64> {
        match self.get(column) {
            Value::Integer(i) => Some(*i),
            Value::Null => None,
            other => panic!("`{column}` is {other:?}, not an integer"),
        }
    }

    pub fn text(&self, column: &str) -> Option<&str> {
        match self.get(column) {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` (UTC only).
pub fn ts(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').expect("YYYY-MM-DDTHH:MM:SSZ");
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().expect("a number")).collect();
    let seconds =
        i64::from(days(date)) * 86_400 + hms[0] * 3600 + hms.get(1).unwrap_or(&0) * 60 + hms.get(2).unwrap_or(&0);
    seconds * 1_000_000
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (proleptic Gregorian).
pub fn days(date: &str) -> i32 {
    let p: Vec<i64> = date.split('-').map(|p| p.parse().expect("YYYY-MM-DD")).collect();
    let (y, m, d) = (p[0] - i64::from(p[1] <= 2), p[1], p[2]);
    // Howard Hinnant's days_from_civil.
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as i32
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_days() {
        assert_eq!(super::days("1970-01-01"), 0);
        assert_eq!(super::days("2024-03-10"), 19792);
        assert_eq!(super::days("2000-02-29"), 11016);
        assert_eq!(super::ts("1970-01-02T01:00:00Z"), 90_000_000_000);
    }
}
