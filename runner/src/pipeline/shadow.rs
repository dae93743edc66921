//! Shadow rollout: a candidate plugin (`<name>.candidate.wasm`) runs on the
//! same groups as the live one without writing daily rows; where their
//! outputs differ, the group and the differing rows are recorded in
//! `runner_shadow_diffs`. Promoting the candidate is a rename.

use crate::db::shadow_diffs;
use crate::plugin::Plugin;
use crate::rows::{GroupKey, Output, Value};

/// How a candidate's result differs from the live one.
#[derive(Debug)]
pub struct Diff {
    /// Rows only the live plugin produced, as JSON objects.
    pub live_only: Vec<serde_json::Value>,
    /// Rows only the candidate produced.
    pub candidate_only: Vec<serde_json::Value>,
    /// The candidate failed (error, trap, limit, invalid output).
    pub candidate_error: Option<String>,
}

/// A row as a JSON object keyed by column name.
fn json_row(plugin: &Plugin, row: &[Value]) -> serde_json::Value {
    let object = plugin.description.output.iter().zip(row).map(|(c, v)| {
        let v = v.to_json();
        (c.name.clone(), v)
    });
    serde_json::Value::Object(object.collect())
}

/// Compares outputs as sets of rows (order does not matter; the rejected
/// count does not either, since it is not written). `None`: no difference.
pub fn compare(live: &Plugin, candidate: &Plugin, output: &Output, result: Result<Output, String>) -> Option<Diff> {
    let theirs = match result {
        Ok(out) => out,
        Err(e) => return Some(Diff { live_only: vec![], candidate_only: vec![], candidate_error: Some(e) }),
    };
    let ours: Vec<serde_json::Value> = output.rows.iter().map(|r| json_row(live, r)).collect();
    let theirs: Vec<serde_json::Value> = theirs.rows.iter().map(|r| json_row(candidate, r)).collect();
    let live_only: Vec<_> = ours.iter().filter(|r| !theirs.contains(r)).cloned().collect();
    let candidate_only: Vec<_> = theirs.iter().filter(|r| !ours.contains(r)).cloned().collect();
    if live_only.is_empty() && candidate_only.is_empty() {
        return None;
    }
    Some(Diff { live_only, candidate_only, candidate_error: None })
}

/// Records a difference in the group's transaction.
pub async fn record(
    client: &deadpool_postgres::ClientWrapper,
    job: &str,
    key: GroupKey,
    live: &Plugin,
    candidate: &Plugin,
    diff: &Diff,
) -> Result<(), tokio_postgres::Error> {
    metrics::counter!("runner_shadow_differences_total", "job" => job.to_string()).increment(1);
    tracing::info!(job, user = key.user_id, day = %key.day, live = %live.version, candidate = %candidate.version,
        live_only = diff.live_only.len(), candidate_only = diff.candidate_only.len(),
        error = diff.candidate_error.as_deref().unwrap_or(""), "Shadow candidate differs.");
    let difference = shadow_diffs::Difference {
        job,
        key,
        live_version: &live.version,
        candidate_version: &candidate.version,
        live_only: serde_json::Value::from(diff.live_only.clone()),
        candidate_only: serde_json::Value::from(diff.candidate_only.clone()),
        candidate_error: diff.candidate_error.as_deref(),
    };
    shadow_diffs::record(client, &difference).await
}
