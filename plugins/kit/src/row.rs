//! Typed, by-name access to a group's input rows.

use crate::bindings::health::aggregation::types::{InputRow, Value};
use crate::{Error, Schema, Settings};

/// One group: one user's one day, with its rows ordered by time, then id.
pub struct Day<'a> {
    /// The group's user.
    pub user_id: i64,
    /// The group's calendar day, as days since 1970-01-01.
    pub day: i32,
    schema: &'a Schema,
    settings: &'a Settings,
    rows: &'a [InputRow],
}

impl<'a> Day<'a> {
    pub(crate) fn new(
        schema: &'a Schema,
        settings: &'a Settings,
        user_id: i64,
        day: i32,
        rows: &'a [InputRow],
    ) -> Self {
        Day { user_id, day, schema, settings, rows }
    }

    /// The job's settings (declared with `Schema::setting`).
    pub fn settings(&self) -> &'a Settings {
        self.settings
    }

    /// The day's rows, ordered by timestamp, then id.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'a>> + '_ {
        let schema = self.schema;
        self.rows.iter().map(move |raw| Row { schema, raw })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One raw row; columns are read by the names declared in the schema.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    schema: &'a Schema,
    raw: &'a InputRow,
}

impl<'a> Row<'a> {
    /// The raw row's `id` (ties in "latest" go to the greatest).
    pub fn id(&self) -> i64 {
        self.raw.id
    }

    /// The row's timestamp, microseconds since the Unix epoch.
    pub fn at(&self) -> i64 {
        self.raw.at
    }

    /// The raw value of a declared input column.
    pub fn value(&self, column: &str) -> Result<&'a Value, Error> {
        let raw: &'a InputRow = self.raw;
        let missing = || {
            let declared: Vec<&str> = self.schema.input.iter().map(|(c, _)| c.as_str()).collect();
            Error(format!("no input column `{column}` is declared (declared: {})", declared.join(", ")))
        };
        let index = self.schema.input_index(column).ok_or_else(missing)?;
        raw.values.get(index).ok_or_else(|| Error(format!("row {} has no value for column `{column}`", raw.id)))
    }

    fn mismatch(&self, column: &str, expected: &str, got: &Value) -> Error {
        Error(format!("row {}: column `{column}` should be {expected}, got {got:?}", self.raw.id))
    }

    /// A text column that may be NULL.
    pub fn text_opt(&self, column: &str) -> Result<Option<&'a str>, Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            other => Err(self.mismatch(column, "text", other)),
        }
    }

    /// A text column that must not be NULL.
    pub fn text(&self, column: &str) -> Result<&'a str, Error> {
        self.text_opt(column)?.ok_or_else(|| Error(format!("row {}: column `{column}` is NULL", self.raw.id)))
    }

    /// A float column (integers are widened); NULL is `None`.
    pub fn float(&self, column: &str) -> Result<Option<f64>, Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Float(f) => Ok(Some(*f)),
            Value::Integer(i) => Ok(Some(*i as f64)),
            other => Err(self.mismatch(column, "a number", other)),
        }
    }

    /// An integer column; NULL is `None`.
    pub fn integer(&self, column: &str) -> Result<Option<i64>, Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(*i)),
            other => Err(self.mismatch(column, "an integer", other)),
        }
    }

    /// A boolean column; NULL is `None`.
    pub fn boolean(&self, column: &str) -> Result<Option<bool>, Error> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Boolean(b) => Ok(Some(*b)),
            other => Err(self.mismatch(column, "a boolean", other)),
        }
    }
}
