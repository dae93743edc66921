//! A test plugin that misbehaves for chosen users, to prove that a failing
//! group is isolated: user 13 gets a plugin error, 14 a panic (trap), 15 an
//! endless loop (time limit), 16 a memory bomb (memory limit), 17 output of
//! the wrong width, 19 a stack overflow, 20 a huge output, 21 a value of the
//! wrong type, 22 a large valid output (6,000 rows), 23 tries to escape the sandbox (file, socket,
//! environment, clock) and reports what it got, and 24 an error that names a
//! group in the runner's own words. Every other group gets one
//! row per metric with its reading count.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "aggregator" });

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
            19 => {
                // Unbounded on purpose: the guard against it is the host's.
                fn dive(n: u64) -> u64 {
                    let pad = std::hint::black_box([n; 64]);
                    if pad[0] == u64::MAX { 0 } else { pad[1] + dive(n + 1) }
                }
                std::hint::black_box(dive(0));
            }
            20 => {
                let rows =
                    (0..5_000_000).map(|i| vec![Value::Text(format!("metric-{i}")), Value::Integer(i)]).collect();
                return Ok(Output { rows, rejected: 0 });
            }
            21 => {
                return Ok(Output {
                    rows: vec![vec![Value::Text("heart_rate".into()), Value::Text("many".into())]],
                    rejected: 0,
                });
            }
            23 => return Err(PluginError { message: escape_attempts() }),
            // A message that names a group itself, as the runner's prefix does.
            24 => return Err(PluginError { message: "user 24 day 2000-01-01 has no baseline".into() }),
            22 => {
                // Large but valid: more rows than one INSERT can carry.
                let rows = (0..6000).map(|i| vec![Value::Text(format!("m-{i:04}")), Value::Integer(i)]).collect();
                return Ok(Output { rows, rejected: 0 });
            }
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

/// Tries what a sandboxed plugin must not be able to do; says what happened.
fn escape_attempts() -> String {
    let file = std::fs::read("/etc/passwd").map(|b| b.len()).map_err(|e| e.to_string());
    let socket = std::net::TcpStream::connect("127.0.0.1:5432").map(|_| ()).map_err(|e| e.to_string());
    let env = std::env::vars().count();
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!(
        "escape: file={} socket={} env_vars={env} clock_secs={clock}",
        if file.is_ok() { "READ" } else { "denied" },
        if socket.is_ok() { "CONNECTED" } else { "denied" },
    )
}

export!(Faulty);
