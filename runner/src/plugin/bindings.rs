//! The only place where types generated from `wit/` appear: the bindings,
//! the host side of the `host` interface, and conversions to `crate::rows`.

use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, StoreLimits};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::rows;

/// `health:aggregation@0.1.0`, frozen in `wit/0.1.0/`: plugins built
/// against it keep working unchanged.
pub mod v0_1 {
    wasmtime::component::bindgen!({ path: "../wit/0.1.0", world: "aggregator" });
}

/// `health:aggregation@0.2.0`, frozen in `wit/0.2.0/`: adds job settings.
pub mod v0_2 {
    wasmtime::component::bindgen!({ path: "../wit/0.2.0", world: "aggregator" });
}

/// `health:aggregation@0.3.0`, frozen in `wit/0.3.0/`: the group's
/// bounds, zone and rows' days; rows by column.
pub mod v0_3 {
    wasmtime::component::bindgen!({ path: "../wit/0.3.0", world: "aggregator" });
}

/// `health:aggregation@0.4.0` (`wit/`): daily rows by column; per-row
/// fields only when the plugin reads them.
pub mod v0_4 {
    wasmtime::component::bindgen!({ path: "../wit", world: "aggregator" });
}

mod columnar;

/// The package versions this runner provides, oldest first.
pub const WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.4.0"];

/// A linked plugin, of whichever package version it was built against.
#[derive(Clone)]
pub enum Pre {
    V0_1(v0_1::AggregatorPre<HostState>),
    V0_2(v0_2::AggregatorPre<HostState>),
    V0_3(v0_3::AggregatorPre<HostState>),
    V0_4(v0_4::AggregatorPre<HostState>),
}

/// An instance of a linked plugin.
pub enum Instance {
    V0_1(v0_1::Aggregator),
    V0_2(v0_2::Aggregator),
    V0_3(v0_3::Aggregator),
    V0_4(v0_4::Aggregator),
}

impl Pre {
    /// Type-checks the exports of a linked component against the world of
    /// the package version it imports (`None`: it imports none; the newest).
    pub fn new(pre: wasmtime::component::InstancePre<HostState>, wit_version: Option<&str>) -> wasmtime::Result<Pre> {
        Ok(match wit_version {
            Some("0.1.0") => Pre::V0_1(v0_1::AggregatorPre::new(pre)?),
            Some("0.2.0") => Pre::V0_2(v0_2::AggregatorPre::new(pre)?),
            Some("0.3.0") => Pre::V0_3(v0_3::AggregatorPre::new(pre)?),
            _ => Pre::V0_4(v0_4::AggregatorPre::new(pre)?),
        })
    }

    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
            Pre::V0_3(pre) => Instance::V0_3(pre.instantiate(store)?),
            Pre::V0_4(pre) => Instance::V0_4(pre.instantiate(store)?),
        })
    }
}

impl Instance {
    pub fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<rows::Description> {
        Ok(match self {
            Instance::V0_1(i) => i.call_describe(store)?.into(),
            Instance::V0_2(i) => i.call_describe(store)?.into(),
            Instance::V0_3(i) => i.call_describe(store)?.into(),
            Instance::V0_4(i) => i.call_describe(store)?.into(),
        })
    }

    /// The plugin's output, or its own error message. `frame` and the
    /// plugin's description shape a 0.3 or 0.4 group.
    pub fn aggregate(
        &self,
        store: &mut Store<HostState>,
        (key, frame, d): (rows::GroupKey, &rows::Frame, &rows::Description),
        rows: Vec<rows::InputRow>,
    ) -> wasmtime::Result<Result<rows::Output, String>> {
        Ok(match self {
            Instance::V0_1(i) => {
                i.call_aggregate(store, &v0_1_types::group(key, rows))?.map(Into::into).map_err(|e| e.message)
            }
            Instance::V0_2(i) => {
                i.call_aggregate(store, &v0_2_types::group(key, rows))?.map(Into::into).map_err(|e| e.message)
            }
            Instance::V0_3(i) => i
                .call_aggregate(store, &columnar::v0_3::group(key, rows, frame, &d.input, rows::RowFields::ALL))?
                .map(Into::into)
                .map_err(|e| e.message),
            Instance::V0_4(i) => i
                .call_aggregate(store, &columnar::v0_4::group(key, rows, frame, &d.input, d.row_fields))?
                .map(|o| columnar::output(o, &d.output))
                .map_err(|e| e.message),
        })
    }
}

/// Adds both package versions' host interfaces to `linker`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v0_1::Aggregator::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    v0_2::Aggregator::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    v0_3::Aggregator::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    v0_4::Aggregator::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    Ok(())
}

/// Per-call store data: a capability-free WASI context, the memory limiter,
/// and what the plugin's log lines are tagged with.
/// `StoreLimits`, remembering whether it refused a memory: what tells a
/// memory limit from any other failure, without reading error text.
pub struct Limiter {
    inner: StoreLimits,
    pub memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        self.memory_refused |= !matches!(allowed, Ok(true));
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: Limiter,
    /// `vitals@1.0.0+sha256:…`, for log lines.
    pub plugin: std::sync::Arc<str>,
    /// The group being aggregated, for log lines (none while describing);
    /// written out only when a line is logged.
    pub group: Option<crate::rows::GroupKey>,
    /// The job's settings, for `host.settings` (WIT 0.2).
    settings: super::Settings,
    /// Log lines still allowed in this call, the longest line kept, and
    /// how many were dropped.
    log_left: u32,
    log_line_bytes: usize,
    log_dropped: u64,
    /// A check's call (the purity probe, a fresh instance beside a reused
    /// one): its log lines are not the group's and are dropped uncounted.
    quiet: bool,
}

impl HostState {
    pub fn new(
        limits: StoreLimits,
        plugin: std::sync::Arc<str>,
        group: Option<crate::rows::GroupKey>,
        call: super::Limits,
        settings: super::Settings,
    ) -> Self {
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
            limits: Limiter { inner: limits, memory_refused: false },
            plugin,
            group,
            settings,
            log_left: call.log_lines,
            log_line_bytes: call.log_line_bytes,
            log_dropped: 0,
            quiet: false,
        }
    }

    /// Starts another call on a reused instance: its group, a full log
    /// allowance, no memory refusal remembered from the call before.
    pub fn begin_call(&mut self, group: crate::rows::GroupKey, call: super::Limits) {
        self.group = Some(group);
        self.log_left = call.log_lines;
        self.log_line_bytes = call.log_line_bytes;
        self.limits.memory_refused = false;
    }

    /// Makes this store's calls checks: their log lines are dropped.
    pub fn quiet(&mut self) {
        self.quiet = true;
    }

    /// Ends a call: one line for the log lines dropped, if any.
    pub fn finish_logs(&mut self) {
        if self.log_dropped > 0 {
            let (plugin, group, dropped) = (&*self.plugin, self.group_name(), self.log_dropped);
            tracing::warn!(target: "plugin", plugin, %group, dropped, "Plugin log lines dropped beyond the job's log_lines limit.");
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

impl HostState {
    /// `host.log`, bounded (see the WIT).
    fn log(&mut self, level: tracing::Level, message: &str) {
        if self.quiet {
            return;
        }
        if self.log_left == 0 {
            self.log_dropped += 1;
            return;
        }
        self.log_left -= 1;
        let message = super::contract::sanitize(message, self.log_line_bytes);
        let (plugin, group) = (&*self.plugin, self.group_name());
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "plugin", plugin, %group, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "plugin", plugin, %group, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "plugin", plugin, %group, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "plugin", plugin, %group, "{message}"),
            tracing::Level::ERROR => tracing::error!(target: "plugin", plugin, %group, "{message}"),
        }
    }

    /// The group for a log line: `user 7 day 2024-03-10`, empty while describing.
    fn group_name(&self) -> String {
        self.group.map(|key| key.to_string()).unwrap_or_default()
    }
}

/// Conversions between `crate::rows` and one package version's types, which
/// are the same in every version but `description`.
macro_rules! row_conversions {
    ($module:ident, $version:ident) => {
        mod $module {
            use super::$version::health::aggregation::host::{Host, Level};
            use super::$version::health::aggregation::types as wit;
            use super::{HostState, rows};

            impl wit::Host for HostState {}

            impl Host for HostState {
                fn log(&mut self, level: Level, message: String) {
                    let level = match level {
                        Level::Trace => tracing::Level::TRACE,
                        Level::Debug => tracing::Level::DEBUG,
                        Level::Info => tracing::Level::INFO,
                        Level::Warn => tracing::Level::WARN,
                        Level::Error => tracing::Level::ERROR,
                    };
                    HostState::log(self, level, &message);
                }
                settings_import!($version);
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

            output_rows!($version);
            row_group!($version);

            impl From<wit::Description> for rows::Description {
                fn from(d: wit::Description) -> Self {
                    rows::Description {
                        name: d.name,
                        version: d.version,
                        input: d.input.into_iter().map(Into::into).collect(),
                        output: d.output.into_iter().map(Into::into).collect(),
                        key: d.key,
                        settings: description_settings!($version, d),
                        row_fields: description_row_fields!($version, d),
                    }
                }
            }
        }
    };
}

/// A version's output as rows: 0.1 to 0.3 return rows (0.4 returns
/// columns: `columnar::output`).
macro_rules! output_rows {
    (v0_4) => {};
    ($version:ident) => {
        impl From<wit::Output> for rows::Output {
            fn from(o: wit::Output) -> Self {
                rows::Output::new(
                    o.rows.into_iter().map(|r| r.into_iter().map(Into::into).collect()).collect(),
                    o.rejected,
                )
            }
        }
    };
}

/// The per-row fields a plugin reads: 0.4 says; every older version
/// reads all.
macro_rules! description_row_fields {
    (v0_4, $d:ident) => {
        rows::RowFields {
            ids: $d.row_fields.contains(wit::RowFields::IDS),
            ats: $d.row_fields.contains(wit::RowFields::ATS),
            days: $d.row_fields.contains(wit::RowFields::DAYS),
        }
    };
    ($version:ident, $d:ident) => {
        rows::RowFields::ALL
    };
}

/// The WIT group of a key and its rows, row by row: 0.1 and 0.2 (0.3 and
/// 0.4 pass columns: `columnar`).
macro_rules! row_group {
    (v0_3) => {};
    (v0_4) => {};
    ($version:ident) => {
        pub fn group(key: rows::GroupKey, rows: Vec<rows::InputRow>) -> wit::Group {
            let rows = rows
                .into_iter()
                .map(|r| wit::InputRow { id: r.id, at: r.at, values: r.values.into_iter().map(Into::into).collect() })
                .collect();
            wit::Group { user_id: key.user_id, day: rows::days_since_epoch(key.day), rows }
        }
    };
}

/// `host.settings`: only in 0.2 and later.
macro_rules! settings_import {
    (v0_1) => {};
    ($version:ident) => {
        fn settings(&mut self) -> Vec<(String, wit::Value)> {
            self.settings.values.iter().map(|(name, value)| (name.clone(), value.clone().into())).collect()
        }
    };
}

/// A description's settings: only in 0.2 and later.
macro_rules! description_settings {
    (v0_1, $d:ident) => {
        Vec::new()
    };
    ($version:ident, $d:ident) => {
        $d.settings
            .into_iter()
            .map(|s| rows::SettingSpec {
                name: s.name,
                kind: match s.kind {
                    wit::SettingType::Boolean => rows::ColumnType::Boolean,
                    wit::SettingType::Integer => rows::ColumnType::Integer,
                    wit::SettingType::Float => rows::ColumnType::Float,
                    wit::SettingType::Text => rows::ColumnType::Text,
                },
                default: s.default.map(Into::into),
                doc: s.doc,
            })
            .collect()
    };
}

row_conversions!(v0_1_types, v0_1);
row_conversions!(v0_2_types, v0_2);
row_conversions!(v0_3_types, v0_3);
row_conversions!(v0_4_types, v0_4);
