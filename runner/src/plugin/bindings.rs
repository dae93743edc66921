//! The only place where types generated from `wit/` appear: the bindings,
//! the host side of the `host` interface, and conversions to `crate::rows`.

use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use wasmtime::StoreLimits;
use wasmtime::component::{ResourceTable, bindgen};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::rows;

bindgen!({ path: "../wit", world: "aggregator" });

use health::aggregation::host::Level;
use health::aggregation::types as wit;

/// Per-call store data: a capability-free WASI context, the memory limiter,
/// and what the plugin's log lines are tagged with.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    /// `vitals@1.0.0+sha256:…`, for log lines.
    pub plugin: std::sync::Arc<str>,
    /// The group being aggregated, for log lines (empty while describing).
    pub group: String,
    /// Log lines still allowed in this call, the longest line kept, and
    /// how many were dropped.
    log_left: u32,
    log_line_bytes: usize,
    log_dropped: u64,
}

impl HostState {
    pub fn new(limits: StoreLimits, plugin: std::sync::Arc<str>, group: String, call: super::Limits) -> Self {
        // No preopened directories, environment, arguments, stdin or network:
        // a plugin sees only its input. Output to stdout/stderr is discarded.
        // Both clocks are stopped at zero and randomness is a fixed
        // sequence: the same input always gives the same output, which
        // shadow comparison and recompute rely on (the WIT grants no time
        // or entropy source; these only answer imports of toolchains that
        // link them anyway).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(StoppedClock)
            .monotonic_clock(StoppedClock)
            .secure_random(StdRng::seed_from_u64(0))
            .insecure_random(StdRng::seed_from_u64(0))
            .insecure_random_seed(0)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            plugin,
            group,
            log_left: call.log_lines,
            log_line_bytes: call.log_line_bytes,
            log_dropped: 0,
        }
    }

    /// Ends a call: one line for the log lines dropped, if any.
    pub fn finish_logs(&mut self) {
        if self.log_dropped > 0 {
            let (plugin, group, dropped) = (&*self.plugin, &self.group, self.log_dropped);
            tracing::warn!(target: "plugin", plugin, group, dropped, "Plugin log lines dropped beyond the job's log_lines limit.");
            let name = plugin.split('@').next().unwrap_or_default().to_string();
            metrics::counter!("runner_plugin_log_lines_dropped_total", "plugin" => name).increment(dropped);
            self.log_dropped = 0;
        }
    }
}

/// A clock that always reads zero.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wit::Host for HostState {}

impl health::aggregation::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_left == 0 {
            self.log_dropped += 1;
            return;
        }
        self.log_left -= 1;
        let message = super::contract::sanitize(&message, self.log_line_bytes);
        let (plugin, group) = (&*self.plugin, &self.group);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, group, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, group, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, group, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, group, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, group, "{message}"),
        }
    }
}

impl From<rows::Value> for wit::Value {
    fn from(v: rows::Value) -> Self {
        match v {
            rows::Value::Null => wit::Value::Null,
            rows::Value::Boolean(b) => wit::Value::Boolean(b),
            rows::Value::Integer(i) => wit::Value::Integer(i),
            rows::Value::Float(f) => wit::Value::Float(f),
            rows::Value::Text(s) => wit::Value::Text(s),
            rows::Value::Timestamp(t) => wit::Value::Timestamp(t),
            rows::Value::Date(d) => wit::Value::Date(d),
        }
    }
}

impl From<wit::Value> for rows::Value {
    fn from(v: wit::Value) -> Self {
        match v {
            wit::Value::Null => rows::Value::Null,
            wit::Value::Boolean(b) => rows::Value::Boolean(b),
            wit::Value::Integer(i) => rows::Value::Integer(i),
            wit::Value::Float(f) => rows::Value::Float(f),
            wit::Value::Text(s) => rows::Value::Text(s),
            wit::Value::Timestamp(t) => rows::Value::Timestamp(t),
            wit::Value::Date(d) => rows::Value::Date(d),
        }
    }
}

impl From<wit::ColumnType> for rows::ColumnType {
    fn from(t: wit::ColumnType) -> Self {
        match t {
            wit::ColumnType::Boolean => rows::ColumnType::Boolean,
            wit::ColumnType::Integer => rows::ColumnType::Integer,
            wit::ColumnType::Float => rows::ColumnType::Float,
            wit::ColumnType::Text => rows::ColumnType::Text,
            wit::ColumnType::Timestamp => rows::ColumnType::Timestamp,
            wit::ColumnType::Date => rows::ColumnType::Date,
        }
    }
}

impl From<wit::Column> for rows::Column {
    fn from(c: wit::Column) -> Self {
        rows::Column { name: c.name, kind: c.kind.into() }
    }
}

impl From<wit::Description> for rows::Description {
    fn from(d: wit::Description) -> Self {
        rows::Description {
            name: d.name,
            version: d.version,
            input: d.input.into_iter().map(Into::into).collect(),
            output: d.output.into_iter().map(Into::into).collect(),
            key: d.key,
        }
    }
}

impl From<rows::InputRow> for wit::InputRow {
    fn from(r: rows::InputRow) -> Self {
        wit::InputRow { id: r.id, at: r.at, values: r.values.into_iter().map(Into::into).collect() }
    }
}

impl From<wit::Output> for rows::Output {
    fn from(o: wit::Output) -> Self {
        rows::Output {
            rows: o.rows.into_iter().map(|r| r.into_iter().map(Into::into).collect()).collect(),
            rejected: o.rejected,
        }
    }
}

/// Builds the WIT group from a key and its rows.
pub fn group(key: rows::GroupKey, rows: Vec<rows::InputRow>) -> wit::Group {
    wit::Group {
        user_id: key.user_id,
        day: rows::days_since_epoch(key.day),
        rows: rows.into_iter().map(Into::into).collect(),
    }
}
