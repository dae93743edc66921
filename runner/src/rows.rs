//! The runner's own row model: what crosses between the database side and
//! the plugin side. Generated WIT types never leave `plugin::bindings`.

use std::fmt;
use std::sync::Arc;

/// One typed value, mirroring the WIT `value` variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
    /// Days since 1970-01-01.
    Date(i32),
}

impl Value {
    /// The value's type, or `None` for NULL (which fits every column).
    pub fn kind(&self) -> Option<ColumnType> {
        Some(match self {
            Value::Null => return None,
            Value::Boolean(_) => ColumnType::Boolean,
            Value::Integer(_) => ColumnType::Integer,
            Value::Float(_) => ColumnType::Float,
            Value::Text(_) => ColumnType::Text,
            Value::Timestamp(_) => ColumnType::Timestamp,
            Value::Date(_) => ColumnType::Date,
        })
    }
}

/// A column's type as plugins declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Integer,
    Float,
    Text,
    Timestamp,
    Date,
}

impl ColumnType {
    /// The Postgres types (`pg_type.typname`) a column of this type may have.
    pub fn sql_types(self) -> &'static [&'static str] {
        match self {
            ColumnType::Boolean => &["bool"],
            ColumnType::Integer => &["int2", "int4", "int8"],
            ColumnType::Float => &["float4", "float8"],
            ColumnType::Text => &["text", "varchar", "bpchar"],
            ColumnType::Timestamp => &["timestamptz", "timestamp"],
            ColumnType::Date => &["date"],
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Text => "text",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
        })
    }
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
}

/// What a plugin says about itself.
#[derive(Debug, Clone)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub input: Vec<Column>,
    pub output: Vec<Column>,
    pub key: Vec<String>,
    /// The settings it reads (none for plugins built against WIT 0.1).
    pub settings: Vec<SettingSpec>,
    /// The per-row fields it reads besides its columns.
    pub row_fields: RowFields,
}

/// Which of a group's per-row fields (ids, timestamps, local days) a
/// plugin reads: WIT 0.4 asks (`row-fields`), so an interpreted plugin
/// that needs none is not handed three lists of objects a group; every
/// older version reads all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowFields {
    pub ids: bool,
    pub ats: bool,
    pub days: bool,
}

impl RowFields {
    pub const ALL: RowFields = RowFields { ids: true, ats: true, days: true };
}

/// A setting a plugin declares: its value comes from the job's
/// `[jobs.<name>.settings]`, or else from `default`.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingSpec {
    pub name: String,
    /// Boolean, integer, float or text.
    pub kind: ColumnType,
    /// `None`: the job must set it.
    pub default: Option<Value>,
    /// One line for operators.
    pub doc: String,
}

/// One raw row handed to a plugin.
#[derive(Debug, Clone)]
pub struct InputRow {
    pub id: i64,
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub values: Vec<Value>,
    /// Its local day, days since the Unix epoch (WIT 0.3).
    pub day: i32,
    /// Its own zone, when the job reads zones per row (`zone_column`,
    /// `user_zones`); otherwise the job's ([`Frame::zone`]).
    pub zone: Option<Arc<str>>,
}

impl InputRow {
    /// A row of the job's zone, its day the UTC date of `at` (plugin
    /// tests, benchmarks, made-up samples).
    pub fn new(id: i64, at: i64, values: Vec<Value>) -> Self {
        let day = timestamp_of(at).map_or(0, |t| days_since_epoch(t.date_naive()));
        InputRow { id, at, values, day, zone: None }
    }
}

/// How a job's groups span days, and the zone their days are read in:
/// what a plugin is told of its group besides the rows (WIT 0.3).
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub span: Span,
    /// The job's zone (`timezone`) for rows without one of their own;
    /// `None` for dated rows (a daily table as the source).
    pub zone: Option<Arc<str>>,
}

/// The days a group spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Its day, or a window of this many days ending on it.
    Days(u32),
    /// A week or a month starting on it.
    Week,
    Month,
}

impl Default for Span {
    fn default() -> Self {
        Span::Days(1)
    }
}

impl Frame {
    /// The first and last day of the group of date `day`.
    pub fn bounds(&self, day: chrono::NaiveDate) -> (chrono::NaiveDate, chrono::NaiveDate) {
        use chrono::{Datelike as _, Days, Months};
        let before = |n: u32| day.checked_sub_days(Days::new(u64::from(n))).unwrap_or(day);
        match self.span {
            Span::Days(n) => (before(n.max(1) - 1), day),
            Span::Week => (day, day.checked_add_days(Days::new(6)).unwrap_or(day)),
            Span::Month => {
                let first = day.with_day(1).unwrap_or(day);
                let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
                (day, next.pred_opt().unwrap_or(day))
            }
        }
    }

    /// The zone of a group's rows, when one holds for all of them.
    pub fn zone_of<'a>(&'a self, rows: &'a [InputRow]) -> Option<Arc<str>> {
        let zone = |r: &'a InputRow| r.zone.as_ref().or(self.zone.as_ref());
        let first = zone(rows.first()?)?;
        // Compared in place: a clone per row was two atomic operations each.
        rows.iter().all(|r| zone(r).is_some_and(|z| Arc::ptr_eq(z, first) || z == first)).then(|| first.clone())
    }
}

/// A group's identity: one user's one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub user_id: i64,
    pub day: chrono::NaiveDate,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {} day {}", self.user_id, self.day)
    }
}

/// A plugin's result for one group.
#[derive(Debug, Clone)]
pub struct Output {
    pub rows: Vec<Vec<Value>>,
    pub rejected: u32,
    /// What is wrong with the shape of columns a plugin returned (WIT 0.4
    /// returns them by column; `rows` is then empty): the first thing the
    /// output check reports.
    pub malformed: Option<String>,
}

impl Output {
    pub fn new(rows: Vec<Vec<Value>>, rejected: u32) -> Output {
        Output { rows, rejected, malformed: None }
    }
}

/// Days since the Unix epoch of a date.
pub fn days_since_epoch(day: chrono::NaiveDate) -> i32 {
    (day - chrono::NaiveDate::default()).num_days() as i32
}

/// The date `days` after 1970-01-01 (before it when negative); `None`
/// beyond chrono's range. The one way back from a plugin's day number.
pub fn date_of(days: i32) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::default().checked_add_signed(chrono::TimeDelta::days(days.into()))
}

/// The instant `micros` after the Unix epoch; `None` beyond chrono's range.
pub fn timestamp_of(micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros)
}

/// As people read it: dates and instants in ISO 8601 (the raw number when
/// out of range), floats as Rust prints them (`NaN`, `inf`), text verbatim
/// (escape it before it reaches a terminal).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(t) => f.write_str(t),
            Value::Timestamp(t) => match timestamp_of(*t) {
                Some(at) => f.write_str(&at.to_rfc3339()),
                None => write!(f, "{t}"),
            },
            Value::Date(d) => match date_of(*d) {
                Some(day) => write!(f, "{day}"),
                None => write!(f, "{d}"),
            },
        }
    }
}

impl Value {
    /// As JSON: numbers and booleans as such, a non-finite float, a date
    /// and an instant as their [`Display`](fmt::Display) text.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Boolean(b) => (*b).into(),
            Value::Integer(i) => (*i).into(),
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or_else(|| x.to_string().into(), Into::into),
            Value::Text(t) => t.clone().into(),
            other => other.to_string().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_display_and_serialize_one_way_before_1970_and_beyond_range() {
        assert_eq!(Value::Date(-1).to_string(), "1969-12-31");
        assert_eq!(Value::Date(i32::MIN).to_string(), i32::MIN.to_string());
        assert_eq!(Value::Timestamp(-1_000_000).to_string(), "1969-12-31T23:59:59+00:00");
        assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::json!("NaN"));
        assert_eq!(Value::Float(f64::INFINITY).to_string(), "inf");
        assert_eq!(Value::Date(0).to_json(), serde_json::json!("1970-01-01"));
        assert_eq!(
            date_of(days_since_epoch(chrono::NaiveDate::from_ymd_opt(1900, 3, 1).unwrap())).unwrap().to_string(),
            "1900-03-01"
        );
    }
}
