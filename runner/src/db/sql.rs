//! Conversions between Postgres values and the runner's `Value`: reading
//! by the column's actual SQL type, so plugins see the same types whatever
//! the table's integer or float width; writing as one typed array per
//! output column.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::rows::{ColumnType, Value, days_since_epoch};

/// Reads column `idx` of `row` as a `Value`.
pub fn read(row: &Row, idx: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[idx].type_().clone();
    Ok(match ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(idx)?.map(Value::Boolean),
        Type::INT2 => row.try_get::<_, Option<i16>>(idx)?.map(|v| Value::Integer(v.into())),
        Type::INT4 => row.try_get::<_, Option<i32>>(idx)?.map(|v| Value::Integer(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(idx)?.map(Value::Integer),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(idx)?.map(|v| Value::Float(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(idx)?.map(Value::Float),
        Type::TIMESTAMPTZ => {
            row.try_get::<_, Option<DateTime<Utc>>>(idx)?.map(|t| Value::Timestamp(t.timestamp_micros()))
        }
        Type::TIMESTAMP => {
            row.try_get::<_, Option<NaiveDateTime>>(idx)?.map(|t| Value::Timestamp(t.and_utc().timestamp_micros()))
        }
        Type::DATE => row.try_get::<_, Option<NaiveDate>>(idx)?.map(|d| Value::Date(days_since_epoch(d))),
        // text, varchar, bpchar; anything else was refused when the plugin was checked.
        _ => row.try_get::<_, Option<String>>(idx)?.map(Value::Text),
    }
    .unwrap_or(Value::Null))
}

/// One output column's values across a group's rows, as a typed array
/// parameter: the replace statement takes a whole day's rows as one array
/// per column (`unnest`), so it is one prepared statement whatever the
/// number of rows, and never near Postgres' parameter limit.
#[derive(Debug)]
pub enum ColumnArray {
    Boolean(Vec<Option<bool>>),
    Integer(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
    Date(Vec<Option<NaiveDate>>),
}

impl ColumnArray {
    /// The SQL array type the statement casts the parameter to.
    pub fn sql_type(kind: ColumnType) -> &'static str {
        match kind {
            ColumnType::Boolean => "bool[]",
            ColumnType::Integer => "int8[]",
            ColumnType::Float => "float8[]",
            ColumnType::Text => "text[]",
            ColumnType::Timestamp => "timestamptz[]",
            ColumnType::Date => "date[]",
        }
    }

    /// Column `index` of `rows`; the values were checked against the
    /// declared `kind` before (a mismatch would be an error here, not a panic).
    pub fn collect(kind: ColumnType, rows: &[&[Value]], index: usize) -> Result<Self, String> {
        fn each<T>(
            rows: &[&[Value]],
            index: usize,
            f: impl Fn(&Value) -> Option<Option<T>>,
        ) -> Result<Vec<Option<T>>, String> {
            rows.iter()
                .enumerate()
                .map(|(i, row)| {
                    let v = row.get(index).ok_or_else(|| format!("output row {i} has no value {index}"))?;
                    match v {
                        Value::Null => Ok(None),
                        v => f(v).ok_or_else(|| format!("output row {i}: value {index} has the wrong type")),
                    }
                })
                .collect()
        }
        Ok(match kind {
            ColumnType::Boolean => ColumnArray::Boolean(each(rows, index, |v| match v {
                Value::Boolean(b) => Some(Some(*b)),
                _ => None,
            })?),
            ColumnType::Integer => ColumnArray::Integer(each(rows, index, |v| match v {
                Value::Integer(n) => Some(Some(*n)),
                _ => None,
            })?),
            ColumnType::Float => ColumnArray::Float(each(rows, index, |v| match v {
                Value::Float(f) => Some(Some(*f)),
                _ => None,
            })?),
            ColumnType::Text => ColumnArray::Text(each(rows, index, |v| match v {
                Value::Text(s) => Some(Some(s.clone())),
                _ => None,
            })?),
            ColumnType::Timestamp => ColumnArray::Timestamp(each(rows, index, |v| match v {
                Value::Timestamp(us) => Some(DateTime::from_timestamp_micros(*us)),
                _ => None,
            })?),
            ColumnType::Date => ColumnArray::Date(each(rows, index, |v| match v {
                Value::Date(d) => Some(crate::rows::date_of(*d)),
                _ => None,
            })?),
        })
    }

    /// As a statement parameter.
    pub fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            ColumnArray::Boolean(v) => v,
            ColumnArray::Integer(v) => v,
            ColumnArray::Float(v) => v,
            ColumnArray::Text(v) => v,
            ColumnArray::Timestamp(v) => v,
            ColumnArray::Date(v) => v,
        }
    }
}
