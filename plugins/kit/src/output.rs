//! Building a group's output rows by column name, sent in declared order.

use crate::Schema;
use crate::bindings::health::aggregation::types::{self as wit, ColumnType, Value};

/// The group's result being built: rows, and the count of rejected input.
pub struct Output<'s> {
    schema: &'s Schema,
    /// The rows' values one after another, each row as wide as the schema's
    /// output: one buffer for the group, not one per row.
    values: Vec<Value>,
    rows: usize,
    rejected: u32,
}

impl<'s> Output<'s> {
    pub(crate) fn new(schema: &'s Schema) -> Self {
        Output { schema, values: Vec::new(), rows: 0, rejected: 0 }
    }

    /// Adds one output row; columns not set are NULL.
    pub fn row(&mut self, build: impl FnOnce(&mut RowBuilder<'s, '_>)) {
        let start = self.values.len();
        if start == 0 {
            // A group's rows are few (a vitals day: one per metric): one allocation.
            self.values.reserve(8 * self.schema.output.len());
        }
        self.values.resize(start + self.schema.output.len(), Value::Null);
        self.rows += 1;
        build(&mut RowBuilder { schema: self.schema, values: &mut self.values[start..], next: 0 });
    }

    /// Counts `n` input rows rejected as bad data (not a failure).
    pub fn reject(&mut self, n: u32) {
        self.rejected += n;
    }

    pub(crate) fn into_parts(self) -> (Vec<Vec<Value>>, u32) {
        let (width, mut values) = (self.schema.output.len(), self.values.into_iter());
        let rows = (0..self.rows).map(|_| values.by_ref().take(width).collect()).collect();
        (rows, self.rejected)
    }

    /// The rows by column, as WIT 0.4 returns them: each declared column
    /// in turn appends its values to the list of its type. A value of
    /// another type than its column's cannot be here: [`RowBuilder::set`]
    /// refuses it.
    pub(crate) fn into_wit(self) -> wit::Output {
        let (width, n) = (self.schema.output.len(), self.rows);
        // Each list sized up front from the declared columns.
        let of = |kinds: &[ColumnType]| n * self.schema.output.iter().filter(|(_, k)| kinds.contains(k)).count();
        let mut out = wit::Output {
            rows: n as u32,
            booleans: Vec::with_capacity(of(&[ColumnType::Boolean])),
            integers: Vec::with_capacity(of(&[ColumnType::Integer, ColumnType::Timestamp, ColumnType::Date])),
            floats: Vec::with_capacity(of(&[ColumnType::Float])),
            texts: Vec::with_capacity(of(&[ColumnType::Text])),
            nulls: Vec::new(),
            rejected: self.rejected,
        };
        let mut values = self.values;
        let mut cell = 0u32;
        for (column, (_, kind)) in self.schema.output.iter().enumerate() {
            for row in 0..n {
                match (kind, std::mem::replace(&mut values[row * width + column], Value::Null)) {
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
pub struct RowBuilder<'s, 'o> {
    schema: &'s Schema,
    values: &'o mut [Value],
    /// The column after the one set last: where the next is looked for first.
    next: usize,
}

impl RowBuilder<'_, '_> {
    /// Sets a declared output column. Setting an undeclared column, or a
    /// value of another type than declared, is a bug in the plugin: it
    /// panics with a message naming the column (a trap in WebAssembly; a
    /// failed test natively).
    pub fn set(&mut self, column: &str, value: impl Into<Value>) -> &mut Self {
        let Some(index) = self.schema.output_index(column, self.next) else {
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
        self.next = index + 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_set_in_any_order_go_out_by_column_with_their_nulls() {
        let schema = Schema::new("t", "1.0.0")
            .output("name", ColumnType::Text)
            .output("n", ColumnType::Integer)
            .output("x", ColumnType::Float)
            .output("ok", ColumnType::Boolean)
            .output("on", ColumnType::Date);
        let mut out = Output::new(&schema);
        out.row(|r| {
            r.set("x", 1.5).set("name", "a").set("on", Value::Date(3)).set("n", 7);
        });
        out.row(|r| {
            r.set("ok", true).set("name", "b");
        });
        out.reject(2);
        let wit = out.into_wit();
        assert_eq!(wit.rows, 2);
        assert_eq!(wit.texts, ["a", "b"]);
        assert_eq!(wit.integers, [7, 0, 3, 0], "n then on, a NULL's placeholder 0");
        assert_eq!(wit.floats, [1.5, 0.0]);
        assert_eq!(wit.booleans, [false, true]);
        // Cells by column: n row 2 is 3, x row 2 is 5, ok row 1 is 6, on row 2 is 9.
        assert_eq!(wit.nulls, [3, 5, 6, 9]);
        assert_eq!(wit.rejected, 2);
    }
}
