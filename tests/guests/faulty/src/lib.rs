//! A test plugin that misbehaves for chosen users, to prove that a failing
//! group is isolated: user 13 gets a plugin error, 14 a panic (trap), 15 an
//! endless loop (time limit), 16 a memory bomb (memory limit). Every other
//! group gets one row per metric with its reading count.

wit_bindgen::generate!({ path: "../../../wit", world: "aggregator" });

use health::aggregation::host::{Level, log};
use health::aggregation::types::{Column, ColumnType, Value};

struct Faulty;

impl Guest for Faulty {
    fn describe() -> Description {
        Description {
            name: "faulty".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            input: vec![Column { name: "metric".into(), kind: ColumnType::Text }],
            output: vec![
                Column { name: "metric".into(), kind: ColumnType::Text },
                Column { name: "sample_count".into(), kind: ColumnType::Integer },
            ],
            key: vec!["metric".into()],
        }
    }

    fn aggregate(group: Group) -> Result<Output, PluginError> {
        match group.user_id {
            13 => return Err(PluginError { message: "user 13 is refused".into() }),
            14 => panic!("boom"),
            15 => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            16 => {
                let bomb = vec![1u8; 1 << 30];
                std::hint::black_box(&bomb);
            }
            17 => return Ok(Output { rows: vec![vec![Value::Integer(1)]], rejected: 0 }),
            _ => {}
        }
        log(Level::Info, &format!("aggregating {} rows", group.rows.len()));
        let mut counts: Vec<(String, i64)> = Vec::new();
        for row in &group.rows {
            let Some(Value::Text(metric)) = row.values.first() else {
                return Err(PluginError { message: format!("row {} has no metric", row.id) });
            };
            match counts.iter_mut().find(|(m, _)| m == metric) {
                Some((_, n)) => *n += 1,
                None => counts.push((metric.clone(), 1)),
            }
        }
        let rows = counts.into_iter().map(|(m, n)| vec![Value::Text(m), Value::Integer(n)]).collect();
        Ok(Output { rows, rejected: 0 })
    }
}

export!(Faulty);
