//! Pruning of the runner's history tables: shadow differences, and the
//! progress (and left-over failures) of finished recomputes, older than
//! `[runner] keep_history`. The queue tables need none: `runner_changes`
//! holds only due work and `runner_group_failures` one row per failing
//! group. The daemon prunes at start and hourly, in bounded chunks, so no
//! statement runs long or holds many row locks.

use std::time::Duration;

use tokio::sync::watch;

use crate::config;

/// Rows deleted per statement.
const CHUNK: i64 = 5_000;
/// How often the daemon prunes.
const EVERY: Duration = Duration::from_secs(3600);

/// Each history table's chunked delete of rows older than $1 (a number of
/// seconds), at most $2 rows at a time. Recompute progress keeps each job's
/// newest after-deploy row, which says which version history follows.
const DELETES: &[(&str, &str)] = &[
    (
        "runner_shadow_diffs",
        "DELETE FROM runner_shadow_diffs WHERE id IN (
             SELECT id FROM runner_shadow_diffs WHERE recorded_at < now() - make_interval(secs => $1) LIMIT $2)",
    ),
    (
        "runner_recompute_failures",
        "DELETE FROM runner_recompute_failures f WHERE (f.job, f.from_day, f.to_day, f.users, f.plugin_version, f.day, f.user_id) IN (
             SELECT f.job, f.from_day, f.to_day, f.users, f.plugin_version, f.day, f.user_id
             FROM runner_recompute_failures f JOIN runner_recompute_progress p USING (job, from_day, to_day, users, plugin_version)
             WHERE p.finished_at < now() - make_interval(secs => $1) LIMIT $2)",
    ),
    (
        "runner_recompute_progress",
        "DELETE FROM runner_recompute_progress p WHERE (p.job, p.from_day, p.to_day, p.users, p.plugin_version) IN (
             SELECT job, from_day, to_day, users, plugin_version FROM runner_recompute_progress q
             WHERE q.finished_at < now() - make_interval(secs => $1)
               AND NOT (q.users = 'after-deploy' AND q.updated_at = (
                   SELECT max(updated_at) FROM runner_recompute_progress r WHERE r.job = q.job AND r.users = 'after-deploy'))
               AND NOT EXISTS (SELECT 1 FROM runner_recompute_failures f
                   WHERE (f.job, f.from_day, f.to_day, f.users, f.plugin_version) = (q.job, q.from_day, q.to_day, q.users, q.plugin_version))
             LIMIT $2)",
    ),
];

/// Deletes history older than `keep`; returns the rows deleted per table.
pub async fn prune(
    client: &impl tokio_postgres::GenericClient,
    keep: Duration,
) -> Result<Vec<(&'static str, u64)>, tokio_postgres::Error> {
    let seconds = keep.as_secs_f64();
    let mut deleted = Vec::new();
    for (table, sql) in DELETES {
        let mut total = 0;
        loop {
            let n = client.execute(*sql, &[&seconds, &CHUNK]).await?;
            total += n;
            if n < CHUNK as u64 {
                break;
            }
        }
        if total > 0 {
            deleted.push((*table, total));
        }
    }
    Ok(deleted)
}

/// The daemon's pruning loop: at start, then every hour, until `shutdown`,
/// on a connection of its own (`runner-maintenance`, closed after each
/// turn: the workers' pool is never borrowed, and nothing is held between
/// turns). A failure (the database down) is logged and tried next turn.
pub async fn run(db: config::Database, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let result = async {
            let pool = super::pool::build(&config::Database { max_connections: 1, ..db.clone() }, "runner-maintenance")
                .map_err(|e| format!("{e:#}"))?;
            let deleted = match pool.get().await {
                Ok(client) => prune(&**client, keep).await.map_err(|e| super::describe_error(&e)),
                Err(e) => Err(e.to_string()),
            };
            pool.close();
            deleted
        }
        .await;
        match result {
            Ok(deleted) if !deleted.is_empty() => {
                let tables: Vec<String> = deleted.iter().map(|(t, n)| format!("{t}: {n}")).collect();
                tracing::info!(keep_history = ?keep, deleted = %tables.join(", "), "Pruned old history.");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Pruning old history failed; it is tried again in an hour."),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
