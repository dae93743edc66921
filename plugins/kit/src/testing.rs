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

use crate::bindings::health::aggregation::types::{InputRow, Value};
use crate::{Day, Error, Output, Plugin, Settings};

/// A group built by hand for a test.
pub struct Group {
    user_id: i64,
    day: i32,
    rows: Vec<InputRow>,
    settings: Vec<(String, Value)>,
}

impl Group {
    /// A group of `user_id` on `day` (`YYYY-MM-DD`).
    pub fn new(user_id: i64, day: &str) -> Self {
        Group { user_id, day: days(day), rows: Vec::new(), settings: Vec::new() }
    }

    /// Adds a row; ids count up from 1 in the order rows are added.
    pub fn row(self, at: i64, values: impl IntoIterator<Item = Value>) -> Self {
        let id = self.rows.len() as i64 + 1;
        self.row_with_id(id, at, values)
    }

    /// Adds a row with an explicit id.
    pub fn row_with_id(mut self, id: i64, at: i64, values: impl IntoIterator<Item = Value>) -> Self {
        self.rows.push(InputRow { id, at, values: values.into_iter().collect() });
        self
    }

    /// Sets a setting as a job's `[jobs.<name>.settings]` would; the rest
    /// keep their declared defaults.
    pub fn setting(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Runs plugin `P` on the group, as the runner would (rows ordered by
    /// time, then id).
    pub fn run<P: Plugin>(mut self) -> Result<Outcome, Error> {
        self.rows.sort_by_key(|r| (r.at, r.id));
        let schema = P::schema();
        let settings = Settings::resolved(&schema, &self.settings);
        let day = Day::new(&schema, &settings, self.user_id, self.day, &self.rows);
        let mut out = Output::new(&schema);
        P::aggregate(&day, &mut out)?;
        let names: Vec<String> = schema.output.iter().map(|(n, _)| n.clone()).collect();
        let (rows, rejected) = out.into_parts();
        let rows = rows.into_iter().map(|values| Record { names: names.clone(), values }).collect();
        Ok(Outcome { rows, rejected })
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
