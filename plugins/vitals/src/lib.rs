//! The `vitals` aggregation plugin: daily min/max/avg/last per metric, with
//! unit conversion and plausibility checks (see `rules`). This file is only
//! the WIT glue; the rules live in plain Rust in `rules.rs`.

pub mod rules;

wit_bindgen::generate!({ path: "../../wit", world: "aggregator" });

use health::aggregation::types::{Column, ColumnType, InputRow, Value};

struct Vitals;

fn column(name: &str, kind: ColumnType) -> Column {
    Column { name: name.to_string(), kind }
}

fn text(v: &Value) -> Result<&str, PluginError> {
    match v {
        Value::Text(s) => Ok(s),
        other => Err(PluginError { message: format!("expected text, got {other:?}") }),
    }
}

fn float(v: &Value) -> Result<Option<f64>, PluginError> {
    match v {
        Value::Null => Ok(None),
        Value::Float(f) => Ok(Some(*f)),
        other => Err(PluginError { message: format!("expected float, got {other:?}") }),
    }
}

fn reading(row: &InputRow) -> Result<rules::Reading<'_>, PluginError> {
    let [metric, value, unit] = row.values.as_slice() else {
        return Err(PluginError { message: format!("row {} has {} values, expected 3", row.id, row.values.len()) });
    };
    Ok(rules::Reading { id: row.id, at: row.at, metric: text(metric)?, value: float(value)?, unit: text(unit)? })
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, Value::Float)
}

impl Guest for Vitals {
    fn describe() -> Description {
        Description {
            name: "vitals".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            input: vec![
                column("metric", ColumnType::Text),
                column("value", ColumnType::Float),
                column("unit", ColumnType::Text),
            ],
            output: vec![
                column("metric", ColumnType::Text),
                column("unit", ColumnType::Text),
                column("sample_count", ColumnType::Integer),
                column("rejected_count", ColumnType::Integer),
                column("min_value", ColumnType::Float),
                column("max_value", ColumnType::Float),
                column("avg_value", ColumnType::Float),
                column("last_value", ColumnType::Float),
            ],
            key: vec!["metric".into()],
        }
    }

    fn aggregate(group: Group) -> Result<Output, PluginError> {
        let readings = group.rows.iter().map(reading).collect::<Result<Vec<_>, _>>()?;
        let (daily, rejected) = rules::aggregate(&readings);
        let rows = daily
            .into_iter()
            .map(|d| {
                vec![
                    Value::Text(d.metric.into()),
                    Value::Text(d.unit.into()),
                    Value::Integer(d.sample_count.into()),
                    Value::Integer(d.rejected_count.into()),
                    opt(d.min_value),
                    opt(d.max_value),
                    opt(d.avg_value),
                    opt(d.last_value),
                ]
            })
            .collect();
        Ok(Output { rows, rejected })
    }
}

export!(Vitals);
