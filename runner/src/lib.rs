//! The aggregation runner: claims raw rows from Postgres in small batches,
//! groups them per (user, day), and aggregates each group with a
//! WebAssembly plugin in one short transaction.
//!
//! Data flows config → db (pool) → pipeline (claim, group) → plugin → db;
//! `http` and `telemetry` watch it from the side, reading the queue's
//! figures through `snapshot` (the operator's own, bounded read budget).
//! Lower layers never import higher ones: `rows` and `db` know nothing of
//! `pipeline`, `http` or `telemetry`; `plugin` knows nothing of `config`.
//! `daemon` assembles them all, for `runner run` and the benchmark.

pub mod config;
pub mod daemon;
pub mod db;
pub mod files;
pub mod http;
pub mod pipeline;
pub mod plugin;
pub mod rows;
pub mod snapshot;
pub mod telemetry;
pub mod trust;
