//! Conversions between Postgres values and the runner's `Value`, chosen by
//! the column's actual SQL type, so plugins see the same types whatever the
//! table's integer or float width.

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::rows::{Value, days_since_epoch};

type BoxError = Box<dyn Error + Sync + Send>;

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

/// A `Value` bound as a statement parameter, encoded for the column's type.
#[derive(Debug)]
pub struct Param<'a>(pub &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Boolean(b), _) => b.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), _) => i.to_sql(ty, out),
            (Value::Float(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Float(f), _) => f.to_sql(ty, out),
            (Value::Text(s), _) => s.to_sql(ty, out),
            (Value::Timestamp(us), &Type::TIMESTAMP) => timestamp(*us)?.naive_utc().to_sql(ty, out),
            (Value::Timestamp(us), _) => timestamp(*us)?.to_sql(ty, out),
            (Value::Date(d), _) => NaiveDate::default()
                .checked_add_signed(chrono::TimeDelta::days((*d).into()))
                .ok_or("date out of range")?
                .to_sql(ty, out),
        }
    }

    /// The plugin's declared columns were checked against the table when it
    /// was loaded, and each row's values against those columns before
    /// writing; `to_sql` converts within the compatible types.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn timestamp(us: i64) -> Result<DateTime<Utc>, BoxError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| "timestamp out of range".into())
}
