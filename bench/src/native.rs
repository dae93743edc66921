//! The vitals plugin's logic compiled into the host, through the same kit
//! glue the component uses: what the runner would do without WebAssembly.

use std::sync::OnceLock;

use plugin_kit::bindings::health::aggregation::types as kit;
use plugin_kit::testing::Head;
use runner::plugin::Plugin;
use runner::rows::{self, days_since_epoch};

static SCHEMA: OnceLock<plugin_kit::Schema> = OnceLock::new();

fn to_kit(v: rows::Value) -> kit::Value {
    match v {
        rows::Value::Null => kit::Value::Null,
        rows::Value::Boolean(b) => kit::Value::Boolean(b),
        rows::Value::Integer(i) => kit::Value::Integer(i),
        rows::Value::Float(f) => kit::Value::Float(f),
        rows::Value::Text(s) => kit::Value::Text(s),
        rows::Value::Timestamp(t) => kit::Value::Timestamp(t),
        rows::Value::Date(d) => kit::Value::Date(d),
    }
}

fn from_kit(v: kit::Value) -> rows::Value {
    match v {
        kit::Value::Null => rows::Value::Null,
        kit::Value::Boolean(b) => rows::Value::Boolean(b),
        kit::Value::Integer(i) => rows::Value::Integer(i),
        kit::Value::Float(f) => rows::Value::Float(f),
        kit::Value::Text(s) => rows::Value::Text(s),
        kit::Value::Timestamp(t) => rows::Value::Timestamp(t),
        kit::Value::Date(d) => rows::Value::Date(d),
    }
}

fn column(c: kit::Column) -> rows::Column {
    let kind = match c.kind {
        kit::ColumnType::Boolean => rows::ColumnType::Boolean,
        kit::ColumnType::Integer => rows::ColumnType::Integer,
        kit::ColumnType::Float => rows::ColumnType::Float,
        kit::ColumnType::Text => rows::ColumnType::Text,
        kit::ColumnType::Timestamp => rows::ColumnType::Timestamp,
        kit::ColumnType::Date => rows::ColumnType::Date,
    };
    rows::Column { name: c.name, kind }
}

/// The native vitals plugin.
pub fn vitals() -> Plugin {
    let d = plugin_kit::glue::describe::<vitals::Vitals>(&SCHEMA);
    let description = rows::Description {
        name: d.name,
        version: d.version,
        input: d.input.into_iter().map(column).collect(),
        output: d.output.into_iter().map(column).collect(),
        key: d.key,
        settings: Vec::new(),
        row_fields: rows::RowFields::ALL,
    };
    Plugin::native(
        description,
        Box::new(|key, input| {
            let schema = SCHEMA.get_or_init(<vitals::Vitals as plugin_kit::Plugin>::schema);
            let day = days_since_epoch(key.day);
            let head = Head { user_id: key.user_id, day, first_day: day, last_day: day, zone: Some("UTC".into()) };
            let rows = input.into_iter().map(|r| (r.id, r.at, r.day, r.values.into_iter().map(to_kit).collect()));
            let group = plugin_kit::testing::columnar(schema, head, rows.collect());
            let (out, rejected) =
                plugin_kit::glue::aggregate_rows::<vitals::Vitals>(&SCHEMA, group).map_err(|e| e.message)?;
            Ok(rows::Output::new(out.into_iter().map(|r| r.into_iter().map(from_kit).collect()).collect(), rejected))
        }),
    )
}
