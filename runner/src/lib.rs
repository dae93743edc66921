//! The aggregation runner: claims raw rows from Postgres in small batches,
//! groups them per (user, day), and aggregates each group with a
//! WebAssembly plugin in one short transaction.
//!
//! Data flows config → db (pool) → pipeline (claim, group) → plugin → db;
//! `http` and `telemetry` watch it from the side.

pub mod config;
pub mod db;
pub mod http;
pub mod pipeline;
pub mod plugin;
pub mod rows;
pub mod seed;
pub mod telemetry;
