//! The plugin call alone, per language: the same vitals group (34 readings
//! of one day) given to the Rust, Python and JavaScript vitals components,
//! many times, in one process; the median time per group. What an
//! interpreter costs beside compiled Rust: as the runner calls it with the
//! shipped settings (a transaction's groups on one instance), on a fresh
//! instance per group, and per row.

use std::path::Path;
use std::time::{Duration, Instant};

use runner::plugin::{Limits, Plugin, Reuse, Runtime};
use runner::rows::{GroupKey, InputRow, Value};

/// One day of one user's readings, as the seed makes them.
fn group() -> (GroupKey, Vec<InputRow>) {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 10).expect("a date");
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros();
    let mut rows = Vec::new();
    let mut add = |metric: &str, value: f64, unit: &str| {
        let i = rows.len() as i64;
        let values = vec![Value::Text(metric.into()), Value::Float(value), Value::Text(unit.into())];
        rows.push(InputRow::new(i + 1, start + i * 2_400_000_000, values));
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

/// Calls per measurement, the turns they are split into, and readings in
/// the full group.
pub const CALLS: usize = 200;
const ROUNDS: usize = 5;
pub const ROWS: usize = 34;
/// The Rust vitals compiled into the host (`crate::native`), measured last.
pub const NATIVE: &str = "Rust, native";

/// Seconds of one group's call, each the best turn's median.
#[derive(Clone, Copy)]
pub struct Cost {
    /// As the runner calls it with the shipped settings: a transaction's
    /// groups in one session (`reuse_instance`, `verify_every`).
    pub shipped: f64,
    /// On a fresh instance (`reuse_instance = false`).
    pub fresh: f64,
    /// On an instance that served the group before: the full group and
    /// its first row alone (the difference is what each further row costs).
    pub reused: f64,
    pub one_row_reused: f64,
}

impl Cost {
    pub fn per_row(&self) -> f64 {
        (self.reused - self.one_row_reused) / (ROWS - 1) as f64
    }

    fn min(self, o: Cost) -> Cost {
        Cost {
            shipped: self.shipped.min(o.shipped),
            fresh: self.fresh.min(o.fresh),
            reused: self.reused.min(o.reused),
            one_row_reused: self.one_row_reused.min(o.one_row_reused),
        }
    }
}

/// The shipped `config/runner.toml`'s vitals job: how the runner calls a plugin.
pub struct Shipped {
    pub reuse: Reuse,
    pub groups_per_transaction: usize,
}

pub fn shipped() -> Shipped {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/runner.toml");
    let text = std::fs::read_to_string(&path).expect("config/runner.toml");
    let config = runner::config::Config::parse(&text, &path).expect("the shipped config parses");
    let job = &config.jobs["vitals"];
    Shipped { reuse: runner::pipeline::purity::reuse(job), groups_per_transaction: job.groups_per_transaction }
}

/// The cost of each built vitals component in `dir` (`None`: not built).
/// Each language's calls run back to back, as a job's groups do, in turns
/// of `CALLS / ROUNDS` that alternate between languages, so a noisy
/// neighbour's burst spoils a turn, not a language. (Interleaving single
/// calls would let one language's memory evict another's from the CPU
/// caches, and charge Rust for Python's footprint.)
pub fn measure(dir: &Path) -> Vec<(&'static str, Option<Cost>)> {
    // The runner's own compile cache: a second run skips the compiles.
    let runtime = Runtime::new(runner::config::default_cache_dir()).expect("the engine");
    let limits = Limits::new(256 << 20, Duration::from_secs(10), runner::pipeline::default_limits());
    let shipped = shipped();
    let (key, rows) = group();
    debug_assert_eq!(rows.len(), ROWS);
    let mut plugins: Vec<(&str, Option<Plugin>)> =
        [("Rust", "vitals.wasm"), ("Python", "vitals_py.wasm"), ("JavaScript", "vitals_js.wasm")]
            .into_iter()
            .map(|(language, file)| match Plugin::load(&runtime, &dir.join(file), limits) {
                Ok(plugin) => (language, Some(plugin)),
                Err(error) if dir.join(file).exists() => panic!("{file} does not load: {error:#}"),
                Err(_) => (language, None),
            })
            .collect();
    // The same Rust logic without the sandbox: what WebAssembly costs.
    plugins.push((NATIVE, Some(crate::native::vitals())));
    let fresh = |plugin: &Plugin| {
        let rows = rows.to_vec();
        let started = Instant::now();
        plugin.aggregate(key, rows, limits).expect("the vitals plugin aggregates its group");
        started.elapsed()
    };
    // A transaction's worth of groups in one session, per group.
    let session = |plugin: &Plugin| {
        let n = shipped.groups_per_transaction;
        let started = Instant::now();
        let mut session = plugin.session(limits, shipped.reuse);
        for _ in 0..n {
            session.aggregate(key, rows.clone(), || rows.clone()).expect("the vitals plugin aggregates its group");
        }
        started.elapsed() / n as u32
    };
    let again = |plugin: &Plugin, rows: &[InputRow], n: usize| {
        plugin.time_calls_on_one_instance(key, rows, limits, n).expect("the vitals plugin aggregates its group again")
    };
    // Each turn's median; the best turn is the figure, as a noisy
    // neighbour only ever adds time, and turns of all languages alternate.
    let median = |mut times: Vec<Duration>| {
        times.sort_unstable();
        times[times.len() / 2].as_secs_f64()
    };
    let mut costs: Vec<Option<Cost>> = vec![None; plugins.len()];
    for _ in 0..ROUNDS {
        for ((_, plugin), best) in plugins.iter().zip(&mut costs) {
            let Some(plugin) = plugin else { continue };
            let turn = CALLS / ROUNDS;
            let sessions = turn.div_ceil(shipped.groups_per_transaction).max(3);
            let cost = Cost {
                shipped: median((0..sessions).map(|_| session(plugin)).collect()),
                fresh: median((0..turn).map(|_| fresh(plugin)).collect()),
                reused: median(again(plugin, &rows, turn)),
                one_row_reused: median(again(plugin, &rows[..1], turn)),
            };
            *best = Some(best.map_or(cost, |b| b.min(cost)));
        }
    }
    plugins.into_iter().zip(costs).map(|((language, _), cost)| (language, cost)).collect()
}
