//! A small plugin for `runner plugin diff` tests: per metric, the number of
//! readings with a value and the largest value. Built twice: as is, and with
//! feature `changed-rule`, under which heart rates above 100 are rejected —
//! one rule changed, so a diff must show exactly the groups it touches. A
//! reading of metric `slow` makes the call spin for `value` iterations: a
//! slow plugin on demand.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "aggregator" });

use health::aggregation::types::{Column, ColumnType, Value};

struct Diffy;

impl Guest for Diffy {
    fn describe() -> Description {
        let column = |name: &str, kind| Column { name: name.into(), kind };
        Description {
            name: "diffy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // Value first: not the order the vitals plugin reads them in.
            input: vec![column("value", ColumnType::Float), column("metric", ColumnType::Text)],
            output: vec![
                column("metric", ColumnType::Text),
                column("sample_count", ColumnType::Integer),
                column("max_value", ColumnType::Float),
            ],
            key: vec!["metric".into()],
        }
    }

    fn aggregate(group: Group) -> Result<Output, PluginError> {
        let mut per_metric: Vec<(String, i64, f64)> = Vec::new();
        let mut rejected = 0;
        for row in &group.rows {
            let (Some(Value::Float(value)), Some(Value::Text(metric))) = (row.values.first(), row.values.get(1)) else {
                rejected += 1;
                continue;
            };
            if metric == "slow" {
                let mut n = 0u64;
                for _ in 0..*value as u64 {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            if cfg!(feature = "changed-rule") && metric == "heart_rate" && *value > 100.0 {
                rejected += 1;
                continue;
            }
            match per_metric.iter_mut().find(|(m, _, _)| m == metric) {
                Some((_, n, max)) => {
                    *n += 1;
                    *max = max.max(*value);
                }
                None => per_metric.push((metric.clone(), 1, *value)),
            }
        }
        let rows = per_metric
            .into_iter()
            .map(|(m, n, max)| vec![Value::Text(m), Value::Integer(n), Value::Float(max)])
            .collect();
        Ok(Output { rows, rejected })
    }
}

export!(Diffy);
