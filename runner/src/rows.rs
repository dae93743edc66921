//! The runner's own row model: what crosses between the database side and
//! the plugin side. Generated WIT types never leave `plugin::bindings`.

use std::fmt;

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
}

/// Days since the Unix epoch of a date.
pub fn days_since_epoch(day: chrono::NaiveDate) -> i32 {
    (day - chrono::NaiveDate::default()).num_days() as i32
}
