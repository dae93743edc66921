//! Typed, by-name access to a group's input rows. The runner passes them
//! by column (WIT 0.3); a [`Row`] is a row's index into those columns, so
//! reading a value copies nothing.

use crate::bindings::health::aggregation::types::{ColumnValues, Group, InputColumn, Value};
use crate::{Error, Schema, Settings};

/// One group: one user's rows of the days from `first_day` to `last_day`
/// (one day, a week, a month, or a window), ordered by time, then id.
pub struct Day<'a> {
    /// The group's user.
    pub user_id: i64,
    /// The group's date, as days since 1970-01-01: the day, a period's
    /// first day, or a window's last day (what the daily row is keyed by).
    pub day: i32,
    /// The first and last local day whose rows the group holds.
    pub first_day: i32,
    pub last_day: i32,
    /// The zone the days are read in, when one holds for every row (an
    /// IANA name or `+05:30`); `None` when rows' zones differ, or rows are dated.
    pub zone: Option<&'a str>,
    schema: &'a Schema,
    settings: &'a Settings,
    group: &'a Group,
}

impl<'a> Day<'a> {
    pub(crate) fn new(schema: &'a Schema, settings: &'a Settings, group: &'a Group) -> Self {
        Day {
            user_id: group.user_id,
            day: group.day,
            first_day: group.first_day,
            last_day: group.last_day,
            zone: group.zone.as_deref(),
            schema,
            settings,
            group,
        }
    }

    /// The job's settings (declared with `Schema::setting`).
    pub fn settings(&self) -> &'a Settings {
        self.settings
    }

    /// The group's rows, ordered by timestamp, then id.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'a>> + '_ {
        let (schema, group) = (self.schema, self.group);
        (0..self.len()).map(move |index| Row { schema, group, index })
    }

    pub fn len(&self) -> usize {
        self.group.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.group.ids.is_empty()
    }
}

/// One raw row; columns are read by the names declared in the schema.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    schema: &'a Schema,
    group: &'a Group,
    index: usize,
}

/// A value of a row, borrowed from its column.
enum Cell<'a> {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(&'a str),
    Timestamp(i64),
    Date(i32),
}

impl<'a> Row<'a> {
    /// The raw row's `id` (ties in "latest" go to the greatest).
    pub fn id(&self) -> i64 {
        self.group.ids.get(self.index).copied().unwrap_or_default()
    }

    /// The row's timestamp, microseconds since the Unix epoch.
    pub fn at(&self) -> i64 {
        self.group.ats.get(self.index).copied().unwrap_or_default()
    }

    /// The row's local day, days since 1970-01-01 (in its zone).
    pub fn day(&self) -> i32 {
        self.group.days.get(self.index).copied().unwrap_or_default()
    }

    /// The value of a declared input column.
    pub fn value(&self, column: &str) -> Result<Value, Error> {
        Ok(match self.cell(column)? {
            Cell::Null => Value::Null,
            Cell::Boolean(b) => Value::Boolean(b),
            Cell::Integer(i) => Value::Integer(i),
            Cell::Float(f) => Value::Float(f),
            Cell::Text(s) => Value::Text(s.to_string()),
            Cell::Timestamp(t) => Value::Timestamp(t),
            Cell::Date(d) => Value::Date(d),
        })
    }

    fn cell(&self, column: &str) -> Result<Cell<'a>, Error> {
        let missing = || {
            let declared: Vec<&str> = self.schema.input.iter().map(|(c, _)| c.as_str()).collect();
            Error(format!("no input column `{column}` is declared (declared: {})", declared.join(", ")))
        };
        let at = self.schema.input_index(column).ok_or_else(missing)?;
        let absent = || Error(format!("row {} has no value for column `{column}`", self.id()));
        let input: &'a InputColumn = self.group.columns.get(at).ok_or_else(absent)?;
        let i = self.index;
        if input.nulls.binary_search(&(i as u32)).is_ok() {
            return Ok(Cell::Null);
        }
        Ok(match &input.values {
            ColumnValues::Boolean(v) => Cell::Boolean(*v.get(i).ok_or_else(absent)?),
            ColumnValues::Integer(v) => Cell::Integer(*v.get(i).ok_or_else(absent)?),
            ColumnValues::Float(v) => Cell::Float(*v.get(i).ok_or_else(absent)?),
            ColumnValues::Text(t) => {
                let at = *t.row.get(i).ok_or_else(absent)? as usize;
                Cell::Text(t.distinct.get(at).ok_or_else(absent)?)
            }
            ColumnValues::Timestamp(v) => Cell::Timestamp(*v.get(i).ok_or_else(absent)?),
            ColumnValues::Date(v) => Cell::Date(*v.get(i).ok_or_else(absent)?),
        })
    }

    fn mismatch(&self, column: &str, expected: &str) -> Error {
        let got = self.value(column).map_or_else(|e| e.0, |v| format!("{v:?}"));
        Error(format!("row {}: column `{column}` should be {expected}, got {got}", self.id()))
    }

    /// A text column that may be NULL.
    pub fn text_opt(&self, column: &str) -> Result<Option<&'a str>, Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s)),
            _ => Err(self.mismatch(column, "text")),
        }
    }

    /// A text column that must not be NULL.
    pub fn text(&self, column: &str) -> Result<&'a str, Error> {
        self.text_opt(column)?.ok_or_else(|| Error(format!("row {}: column `{column}` is NULL", self.id())))
    }

    /// A float column (integers are widened); NULL is `None`.
    pub fn float(&self, column: &str) -> Result<Option<f64>, Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Float(f) => Ok(Some(f)),
            Cell::Integer(i) => Ok(Some(i as f64)),
            _ => Err(self.mismatch(column, "a number")),
        }
    }

    /// An integer column; NULL is `None`.
    pub fn integer(&self, column: &str) -> Result<Option<i64>, Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Integer(i) => Ok(Some(i)),
            _ => Err(self.mismatch(column, "an integer")),
        }
    }

    /// A boolean column; NULL is `None`.
    pub fn boolean(&self, column: &str) -> Result<Option<bool>, Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Boolean(b) => Ok(Some(b)),
            _ => Err(self.mismatch(column, "a boolean")),
        }
    }

    /// A timestamp column, microseconds since the Unix epoch; NULL is `None`.
    pub fn timestamp(&self, column: &str) -> Result<Option<i64>, Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Timestamp(t) => Ok(Some(t)),
            _ => Err(self.mismatch(column, "a timestamp")),
        }
    }

    /// A date column, days since 1970-01-01; NULL is `None`.
    pub fn date(&self, column: &str) -> Result<Option<i32>, Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Date(d) => Ok(Some(d)),
            _ => Err(self.mismatch(column, "a date")),
        }
    }
}
