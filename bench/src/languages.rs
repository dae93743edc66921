//! The plugin call alone, per language: the same vitals group (34 readings
//! of one day) given to the Rust, Python and JavaScript vitals components,
//! many times, in one process; the median time per group. What an
//! interpreter costs beside compiled Rust, with the runner's per-group
//! store and instance included.

use std::path::Path;
use std::time::{Duration, Instant};

use runner::plugin::{Limits, Plugin, Runtime};
use runner::rows::{GroupKey, InputRow, Value};

/// One day of one user's readings, as the seed makes them.
fn group() -> (GroupKey, Vec<InputRow>) {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 10).expect("a date");
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros();
    let mut rows = Vec::new();
    let mut add = |metric: &str, value: f64, unit: &str| {
        let i = rows.len() as i64;
        let values = vec![Value::Text(metric.into()), Value::Float(value), Value::Text(unit.into())];
        rows.push(InputRow { id: i + 1, at: start + i * 2_400_000_000, values });
    };
    for h in 0..24 {
        add("heart_rate", 60.0 + f64::from(h), "bpm");
    }
    for (s, d) in [(120.0, 80.0), (16.0, 10.5)] {
        add("systolic_bp", s, if s < 50.0 { "kPa" } else { "mmHg" });
        add("diastolic_bp", d, if d < 20.0 { "kPa" } else { "mmHg" });
    }
    for v in [97.0, 98.0, 0.96, 99.0] {
        add("spo2", v, if v < 1.0 { "fraction" } else { "%" });
    }
    add("temperature", 98.6, "F");
    add("weight", 154.0, "lb");
    (GroupKey { user_id: 1, day }, rows)
}

/// Median time per group of each built vitals component in `dir`.
pub fn measure(dir: &Path, calls: usize) -> Vec<(&'static str, Option<Duration>)> {
    let runtime = Runtime::new(None).expect("the engine");
    let limits = Limits::new(256 << 20, Duration::from_secs(10));
    let (key, rows) = group();
    [("Rust", "vitals.wasm"), ("Python", "vitals_py.wasm"), ("JavaScript", "vitals_js.wasm")]
        .into_iter()
        .map(|(language, file)| {
            let Ok(plugin) = Plugin::load(&runtime, &dir.join(file), limits) else { return (language, None) };
            let mut times: Vec<Duration> = (0..calls)
                .map(|_| {
                    let started = Instant::now();
                    plugin.aggregate(key, rows.clone(), limits).expect("the vitals plugin aggregates its group");
                    started.elapsed()
                })
                .collect();
            times.sort_unstable();
            (language, times.get(times.len() / 2).copied())
        })
        .collect()
}
