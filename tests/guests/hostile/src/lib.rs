//! A plugin written straight against `wit/aggregator.wit` by a careless or
//! hostile author. Per user: 1 floods the host log (a million calls, one of
//! them 10 MB), 2 returns NaN, 3 infinity, 4 a NUL in text, 5 the same key
//! twice, 6 reports what the clocks and randomness give it, 7 and 8 try to
//! carry state from one group to the next (a static counter, a heap list of
//! the users seen). Its one setting's doc holds terminal escape codes. With feature
//! `amplify`, `describe` returns an 8 MiB name, 100,000 columns and 100,000
//! settings; with
//! `slow-describe` it never returns.

wit_bindgen::generate!({ path: "../../../wit/0.2.0", world: "aggregator" });

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use health::aggregation::host::{Level, log};
use health::aggregation::types::{Column, ColumnType, Setting, SettingType, Value};

struct Hostile;

fn column(name: &str, kind: ColumnType) -> Column {
    Column { name: name.into(), kind }
}

impl Guest for Hostile {
    fn describe() -> Description {
        if cfg!(feature = "slow-describe") {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if cfg!(feature = "amplify") {
            return Description {
                name: "x".repeat(8 << 20),
                version: "1.0.0".into(),
                input: (0..100_000).map(|i| column(&format!("c{i}"), ColumnType::Text)).collect(),
                output: vec![column("metric", ColumnType::Text)],
                key: vec!["metric".into()],
                settings: (0..100_000)
                    .map(|i| Setting {
                        name: format!("s{i}"),
                        kind: SettingType::Text,
                        default: None,
                        doc: "z".repeat(100),
                    })
                    .collect(),
            };
        }
        Description {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            input: vec![column("metric", ColumnType::Text)],
            output: vec![column("metric", ColumnType::Text), column("avg_value", ColumnType::Float)],
            key: vec!["metric".into()],
            // A doc that would clear an operator's terminal and forge a line.
            settings: vec![Setting {
                name: "note".into(),
                kind: SettingType::Text,
                default: Some(Value::Text(String::new())),
                doc: "\x1b[2J\x1b[31mred\x1b[0m\nproblem: none, all is well".into(),
            }],
        }
    }

    fn aggregate(group: Group) -> Result<Output, PluginError> {
        let row = |m: &str, v: f64| vec![Value::Text(m.into()), Value::Float(v)];
        let rows = match group.user_id {
            1 => {
                log(Level::Warn, &format!("big\n{}", "y".repeat(10 << 20)));
                for i in 0..1_000_000 {
                    log(Level::Info, &format!("line {i}\nforged: INFO runner: all is well"));
                }
                vec![row("flood", 1.0)]
            }
            2 => vec![row("ok", 1.0), row("nan", f64::NAN)],
            3 => vec![row("inf", f64::INFINITY)],
            4 => vec![row("nul\0byte", 1.0)],
            5 => vec![row("same", 1.0), row("other", 2.0), row("same", 3.0)],
            6 => {
                // std seeds its hash maps from wasi:random; read the clocks too.
                let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
                let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let mono = std::time::Instant::now();
                vec![
                    row("random", (random % 1_000_000) as f64),
                    row("wall", wall.as_secs_f64()),
                    row("mono", {
                        let _ = mono;
                        0.0
                    }),
                ]
            }
            7 | 8 => {
                static CALLS: AtomicU32 = AtomicU32::new(0);
                static SEEN: Mutex<Vec<i64>> = Mutex::new(Vec::new());
                let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let before = seen.len();
                seen.push(group.user_id);
                vec![row("calls", f64::from(calls)), row("seen_before", before as f64)]
            }
            _ => vec![row("ok", group.rows.len() as f64)],
        };
        Ok(Output { rows, rejected: 0 })
    }
}

export!(Hostile);
