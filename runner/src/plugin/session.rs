//! One instance for a transaction's groups (`reuse_instance`).
//!
//! A fresh instance per group costs about half of a small group's sandbox
//! time, and most of a Python group's (docs/performance.md). A transaction's
//! groups may share one instance because the runner checks that the plugin
//! is a function of its input: every `verify_every`-th group computed on a
//! reused instance is computed on a fresh one too, and a difference marks
//! the file stateful (fresh instances from then on, until the file changes).
//!
//! An instance never outlives its session (one transaction, one job, one
//! plugin version). A trap, a limit or a plugin error discards it; a group
//! that failed on an instance that had served others is retried once on a
//! fresh one before its failure counts, and the next group starts a new one.
//! Limits stay per call: the deadline is armed and the log allowance reset
//! before each.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::purity::{self, Impurity, Stateful};
use super::{CallError, Limits, Plugin, Warm};
use crate::rows::{GroupKey, InputRow, Output};

/// Whether a job's groups share instances, and how often that is checked.
#[derive(Debug, Clone, Copy)]
pub struct Reuse {
    /// `reuse_instance`.
    pub on: bool,
    /// `verify_every`: one reused call in this many is also made on a
    /// fresh instance (0: never).
    pub verify_every: u32,
}

impl Reuse {
    /// A fresh instance for every group.
    pub const OFF: Reuse = Reuse { on: false, verify_every: 0 };
}

/// A plugin's calls for one transaction.
pub struct Session<'p> {
    plugin: &'p Plugin,
    limits: Limits,
    reuse: Reuse,
    warm: Option<Warm>,
    /// A difference between a reused and a fresh instance, found in this session.
    pub found: Option<Impurity>,
}

impl Plugin {
    /// A session of calls under `limits`, sharing an instance when `reuse`
    /// says so and the file was not found stateful.
    pub fn session(&self, limits: Limits, reuse: Reuse) -> Session<'_> {
        Session { plugin: self, limits, reuse, warm: None, found: None }
    }
}

impl Session<'_> {
    /// Calls the plugin on one group's `rows`; `again` makes them once more
    /// for a retry or a check on a fresh instance. Blocking.
    pub fn aggregate(
        &mut self,
        key: GroupKey,
        rows: Vec<InputRow>,
        again: impl Fn() -> Vec<InputRow>,
    ) -> Result<Output, CallError> {
        let (plugin, limits) = (self.plugin, self.limits);
        let fresh = |rows| plugin.aggregate(key, rows, limits);
        if !self.reuse.on || plugin.stateful().is_some() || matches!(plugin.backend, super::Backend::Native(_)) {
            self.warm = None;
            return fresh(rows);
        }
        let mut warm = match self.warm.take() {
            Some(warm) => warm,
            None => plugin.instantiate(key, limits)?,
        };
        let reused = warm.served > 0;
        warm.store.data_mut().begin_call(key, limits);
        let result = warm.call(plugin, key, rows, limits);
        warm.store.data_mut().finish_logs();
        let output = match result {
            Ok(output) => output,
            // Discarded; what an earlier group left behind may be the cause.
            Err(_) if reused => return fresh(again()),
            Err(e) => return Err(e),
        };
        warm.served += 1;
        if reused && self.check_due() {
            let started = Instant::now();
            let truth = plugin.aggregate_on_fresh(key, again(), limits, true);
            let difference = purity::difference(&plugin.description, &output, &truth);
            purity::spent(started.elapsed());
            if let Some(difference) = difference {
                plugin.mark_stateful(Stateful::found(format!("group {key}: {difference}"), true));
                self.found = Some(Impurity { key, difference });
                // The fresh result is the plugin's; this instance is done.
                return truth;
            }
        }
        self.warm = Some(warm);
        Ok(output)
    }

    fn check_due(&self) -> bool {
        let every = u64::from(self.reuse.verify_every);
        every > 0 && (self.plugin.reused_calls.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(every)
    }
}
