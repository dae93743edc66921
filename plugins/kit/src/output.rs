//! Building a group's output rows by column name, sent in declared order.

use crate::Schema;
use crate::bindings::health::aggregation::types::{self as wit, ColumnType, Value};

/// The group's result being built: rows, and the count of rejected input.
pub struct Output<'s> {
    schema: &'s Schema,
    rows: Vec<Vec<Value>>,
    rejected: u32,
}

impl<'s> Output<'s> {
    pub(crate) fn new(schema: &'s Schema) -> Self {
        Output { schema, rows: Vec::new(), rejected: 0 }
    }

    /// Adds one output row; columns not set are NULL.
    pub fn row(&mut self, build: impl FnOnce(&mut RowBuilder<'s>)) {
        let mut row = RowBuilder { schema: self.schema, values: vec![Value::Null; self.schema.output.len()] };
        build(&mut row);
        self.rows.push(row.values);
    }

    /// Counts `n` input rows rejected as bad data (not a failure).
    pub fn reject(&mut self, n: u32) {
        self.rejected += n;
    }

    pub(crate) fn into_parts(self) -> (Vec<Vec<Value>>, u32) {
        (self.rows, self.rejected)
    }

    /// The rows by column, as WIT 0.4 returns them: each declared column
    /// in turn appends its values to the list of its type. A value of
    /// another type than its column's cannot be here: [`RowBuilder::set`]
    /// refuses it.
    pub(crate) fn into_wit(self) -> wit::Output {
        let n = self.rows.len();
        let mut out = wit::Output {
            rows: n as u32,
            booleans: Vec::new(),
            integers: Vec::new(),
            floats: Vec::new(),
            texts: Vec::new(),
            nulls: Vec::new(),
            rejected: self.rejected,
        };
        let mut rows: Vec<std::vec::IntoIter<Value>> = self.rows.into_iter().map(Vec::into_iter).collect();
        let mut cell = 0u32;
        for (_, kind) in &self.schema.output {
            for row in &mut rows {
                match (kind, row.next().unwrap_or(Value::Null)) {
                    (_, Value::Boolean(v)) => out.booleans.push(v),
                    (_, Value::Integer(v) | Value::Timestamp(v)) => out.integers.push(v),
                    (_, Value::Date(v)) => out.integers.push(v.into()),
                    (_, Value::Float(v)) => out.floats.push(v),
                    (_, Value::Text(v)) => out.texts.push(v),
                    // NULL: a placeholder in its type's list, and the cell.
                    (kind, Value::Null) => {
                        out.nulls.push(cell);
                        match kind {
                            ColumnType::Boolean => out.booleans.push(false),
                            ColumnType::Integer | ColumnType::Timestamp | ColumnType::Date => out.integers.push(0),
                            ColumnType::Float => out.floats.push(0.0),
                            ColumnType::Text => out.texts.push(String::new()),
                        }
                    }
                }
                cell += 1;
            }
        }
        out
    }
}

/// One output row under construction.
pub struct RowBuilder<'s> {
    schema: &'s Schema,
    values: Vec<Value>,
}

impl RowBuilder<'_> {
    /// Sets a declared output column. Setting an undeclared column, or a
    /// value of another type than declared, is a bug in the plugin: it
    /// panics with a message naming the column (a trap in WebAssembly; a
    /// failed test natively).
    pub fn set(&mut self, column: &str, value: impl Into<Value>) -> &mut Self {
        let Some(index) = self.schema.output_index(column) else {
            panic!("no output column `{column}` is declared");
        };
        let value = value.into();
        let declared = self.schema.output[index].1;
        if let Some(kind) = kind_of(&value)
            && kind != declared
        {
            panic!("output column `{column}` is declared {declared:?} but was set to {value:?}");
        }
        self.values[index] = value;
        self
    }
}

fn kind_of(v: &Value) -> Option<ColumnType> {
    Some(match v {
        Value::Null => return None,
        Value::Boolean(_) => ColumnType::Boolean,
        Value::Integer(_) => ColumnType::Integer,
        Value::Float(_) => ColumnType::Float,
        Value::Text(_) => ColumnType::Text,
        Value::Timestamp(_) => ColumnType::Timestamp,
        Value::Date(_) => ColumnType::Date,
    })
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v.into())
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(v.into())
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Integer(v as i64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
