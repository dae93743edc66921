//! The plugin author's kit. A plugin is a type implementing [`Plugin`] —
//! its schema and its domain logic — plus one line, `export_plugin!(MyType)`.
//! The kit owns the WIT glue, gives typed access to a row's columns by name
//! with clear errors, builds output rows by column name in declared order,
//! and runs the same logic natively in `cargo test` ([`testing`]).
//!
//! ```ignore
//! use plugin_kit::{ColumnType::*, Day, Error, Output, Plugin, Schema};
//!
//! pub struct Steps;
//!
//! impl Plugin for Steps {
//!     fn schema() -> Schema {
//!         Schema::new("steps", env!("CARGO_PKG_VERSION"))
//!             .input("count", Integer)
//!             .output("total", Integer)
//!     }
//!     fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
//!         let mut total = 0;
//!         for row in day.rows() {
//!             total += row.integer("count")?.unwrap_or(0);
//!         }
//!         out.row(|r| r.set("total", total));
//!         Ok(())
//!     }
//! }
//!
//! plugin_kit::export_plugin!(Steps);
//! ```

mod output;
mod row;
mod schema;
mod settings;
pub mod testing;
pub mod units;

#[doc(hidden)]
// Generated code: its lowering of a group takes a parameter per field.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "aggregator",
        pub_export_macro: true,
        export_macro_name: "__export_aggregator",
        default_bindings_module: "plugin_kit::bindings",
    });
}

pub use bindings::health::aggregation::host::Level;
pub use bindings::health::aggregation::types::{ColumnType, SettingType, Value};
pub use output::{Output, RowBuilder};
pub use row::{Day, Row};
pub use schema::Schema;
pub use settings::Settings;

/// An aggregation plugin: what it reads and writes, and how it turns one
/// day of one user's rows into daily rows.
pub trait Plugin {
    /// The plugin's name, version, input and output columns, and key.
    /// Called once per process.
    fn schema() -> Schema;

    /// Aggregates one group (one user's one day). Add output rows with
    /// [`Output::row`] and count bad input with [`Output::reject`]. An
    /// `Err` fails the group: the runner rolls it back and retries it.
    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error>;
}

/// A plugin's verdict that it cannot aggregate a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_string())
    }
}

/// Writes a line to the runner's log, tagged with the plugin and the group.
/// In native tests it goes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::health::aggregation::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// The glue `export_plugin!` expands to; not for direct use.
#[doc(hidden)]
pub mod glue {
    use std::sync::OnceLock;

    use super::bindings::health::aggregation::types as wit;
    use super::{Day, Output, Plugin, Schema, Settings};

    pub fn describe<P: Plugin>(schema: &'static OnceLock<Schema>) -> wit::Description {
        schema.get_or_init(P::schema).to_description()
    }

    pub fn aggregate<P: Plugin>(
        schema: &'static OnceLock<Schema>,
        group: wit::Group,
    ) -> Result<wit::Output, wit::PluginError> {
        run::<P>(schema, group).map(Output::into_wit)
    }

    /// The same, its rows as the plugin built them, not by column: what a
    /// native build of a plugin gives (the benchmark's baseline).
    pub fn aggregate_rows<P: Plugin>(
        schema: &'static OnceLock<Schema>,
        group: wit::Group,
    ) -> Result<(Vec<Vec<super::Value>>, u32), wit::PluginError> {
        run::<P>(schema, group).map(Output::into_parts)
    }

    fn run<P: Plugin>(
        schema: &'static OnceLock<Schema>,
        group: wit::Group,
    ) -> Result<Output<'static>, wit::PluginError> {
        let schema = schema.get_or_init(P::schema);
        // Asked of the host once per instance: the runner keeps a job's
        // settings fixed for an instance's life (WIT 0.4, `host.settings`),
        // and an instance serves a transaction's groups (the call and its
        // fourteen values cost the vitals plugin 3 µs of a 30 µs group);
        // compiled natively (benchmarks), the declared defaults.
        #[cfg(target_arch = "wasm32")]
        let settings = {
            static SETTINGS: OnceLock<Settings> = OnceLock::new();
            SETTINGS.get_or_init(|| {
                if schema.settings.is_empty() {
                    Settings::default()
                } else {
                    Settings::new(super::bindings::health::aggregation::host::settings())
                }
            })
        };
        // Natively, the declared defaults, also resolved once per plugin
        // (its schema), so what it derives from them is kept as in WebAssembly.
        #[cfg(not(target_arch = "wasm32"))]
        let settings: &Settings = {
            type Resolved = std::sync::Mutex<Vec<(usize, &'static Settings)>>;
            static RESOLVED: Resolved = std::sync::Mutex::new(Vec::new());
            let plugin = std::ptr::from_ref(schema) as usize;
            let mut resolved = RESOLVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match resolved.iter().find(|(p, _)| *p == plugin) {
                Some((_, settings)) => settings,
                None => {
                    let settings = Box::leak(Box::new(Settings::resolved(schema, &[])));
                    resolved.push((plugin, settings));
                    settings
                }
            }
        };
        let day = Day::new(schema, settings, &group);
        let mut out = Output::new(schema);
        P::aggregate(&day, &mut out).map_err(|e| wit::PluginError { message: e.0 })?;
        Ok(out)
    }
}

/// Exports a [`Plugin`] as the component's `aggregator` world.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __PluginKitExport;
        static __PLUGIN_KIT_SCHEMA: ::std::sync::OnceLock<$crate::Schema> = ::std::sync::OnceLock::new();
        impl $crate::bindings::Guest for __PluginKitExport {
            fn describe() -> $crate::bindings::Description {
                $crate::glue::describe::<$plugin>(&__PLUGIN_KIT_SCHEMA)
            }
            fn aggregate(
                group: $crate::bindings::Group,
            ) -> ::std::result::Result<$crate::bindings::Output, $crate::bindings::PluginError> {
                $crate::glue::aggregate::<$plugin>(&__PLUGIN_KIT_SCHEMA, group)
            }
        }
        $crate::bindings::__export_aggregator!(__PluginKitExport with_types_in $crate::bindings);
    };
}
