//! Integration tests: the real `runner` binary, real components built from
//! `plugins/` and `tests/guests/`, and a real throwaway PostgreSQL.

mod util;

mod adopt;
mod capture;
mod cli;
mod console;
mod deploy_preview;
mod deployment;
mod failures;
mod faults;
mod group_bounds;
mod group_commit;
mod hostile;
mod http_limits;
mod lab;
mod local_days;
mod nutrition;
mod operator;
mod pipelined;
mod plans;
mod plugin_cli;
mod purity;
mod recompute;
mod recovery;
mod reload;
mod rollups;
mod settings;
mod signing;
mod slow_groups;
mod timeouts;
mod untrusted;
mod vitals;
mod windows;
mod write_paths;
mod zones;
