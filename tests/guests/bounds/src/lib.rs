//! A test plugin that writes what the runner tells it of its group, built
//! straight against the frozen `wit/0.3.0` (rows in by column, out by row)
//! so that plugins of that version stay proven: one row with the group's
//! first and last day, its zone, how many rows it holds, their distinct
//! local days and the latest row's `metric`.

// Generated code: its lowering of a group takes a parameter per field.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit/0.3.0", world: "aggregator" });
}

use bindings::{Description, Group, Guest, Output, PluginError};

use bindings::health::aggregation::types::{Column, ColumnType, ColumnValues, Value};

struct Bounds;

fn column(name: &str, kind: ColumnType) -> Column {
    Column { name: name.into(), kind }
}

impl Guest for Bounds {
    fn describe() -> Description {
        Description {
            name: "bounds".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            input: vec![column("metric", ColumnType::Text)],
            output: vec![
                column("first_day", ColumnType::Date),
                column("last_day", ColumnType::Date),
                column("zone", ColumnType::Text),
                column("readings", ColumnType::Integer),
                column("days", ColumnType::Text),
                column("last_metric", ColumnType::Text),
            ],
            key: vec![],
            settings: vec![],
        }
    }

    fn aggregate(group: Group) -> Result<Output, PluginError> {
        let mut days = group.days.clone();
        days.dedup();
        let days: Vec<String> = days.iter().map(i32::to_string).collect();
        let metric = group.columns.first().ok_or_else(|| PluginError { message: "no metric column".into() })?;
        let last = match &metric.values {
            ColumnValues::Text(text) => {
                text.row.last().and_then(|&i| text.distinct.get(i as usize)).map(|m| Value::Text(m.clone()))
            }
            _ => return Err(PluginError { message: "metric is not text".into() }),
        };
        let row = vec![
            Value::Date(group.first_day),
            Value::Date(group.last_day),
            group.zone.map_or(Value::Null, Value::Text),
            Value::Integer(group.ids.len() as i64),
            Value::Text(days.join(",")),
            last.unwrap_or(Value::Null),
        ];
        Ok(Output { rows: vec![row], rejected: 0 })
    }
}

bindings::export!(Bounds with_types_in bindings);
