//! `runner uninstall`: removes every object `runner migrate` created for the
//! runner — the change-capture triggers and their functions (found in the
//! catalog, so a job removed from the config since is removed too) and the
//! `runner_*` tables — in one transaction. The sources are left exactly as
//! they were before `migrate`; the daily tables stay unless asked for.

use tokio_postgres::Client;

use super::roles;
use crate::config::Config;

/// The runner's own tables, in an order that drops cleanly.
fn runner_tables() -> impl Iterator<Item = &'static str> {
    roles::WRITTEN.iter().chain(roles::READ).copied()
}

/// What uninstall removes (or would remove), a line each.
pub async fn plan(
    client: &impl tokio_postgres::GenericClient,
    config: &Config,
    drop_daily: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut steps = Vec::new();
    // Triggers whose function is the runner's (not the clones Postgres
    // keeps on partitions: dropping the parent's drops them).
    let triggers = client
        .query(
            "SELECT quote_ident(t.tgname) AS name, t.tgrelid::regclass::text AS on_table
             FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
             WHERE (p.proname LIKE 'runner\\_capture\\_%' OR p.proname LIKE 'runner\\_zones\\_%' OR p.proname = 'runner_notify_pending')
               AND NOT t.tgisinternal AND t.tgparentid = 0
             ORDER BY 2, 1",
            &[],
        )
        .await?;
    for t in triggers {
        let (name, table): (String, String) = (t.get("name"), t.get("on_table"));
        steps.push((format!("trigger {name} on {table}"), format!("DROP TRIGGER {name} ON {table}")));
    }
    let functions = client
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
             WHERE p.proname LIKE 'runner\\_capture\\_%' OR p.proname LIKE 'runner\\_zones\\_%' OR p.proname IN ('runner_notify_pending', 'runner_expand_purges')
             ORDER BY 1",
            &[],
        )
        .await?;
    for f in functions {
        let f: String = f.get(0);
        steps.push((format!("function {f}"), format!("DROP FUNCTION {f}")));
    }
    for table in runner_tables() {
        if client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await?.get(0) {
            steps.push((format!("table {table}"), format!("DROP TABLE {table}")));
        }
    }
    if drop_daily {
        for (name, job) in &config.jobs {
            let target = job.target.quoted();
            if client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&target]).await?.get(0) {
                steps.push((format!("table {} (job {name}'s daily rows)", job.target), format!("DROP TABLE {target}")));
            }
        }
    }
    Ok(steps)
}

/// Removes what [`plan`] lists, all or nothing; returns a line per object.
pub async fn uninstall(client: &mut Client, config: &Config, drop_daily: bool) -> anyhow::Result<Vec<String>> {
    let tx = client.transaction().await?;
    // Dropping a trigger takes a lock on its table: wait for the API's
    // statements a bounded time, never queue them behind us for long.
    tx.batch_execute("SET LOCAL lock_timeout = '5s'; SET LOCAL client_min_messages = warning").await?;
    let steps = plan(&tx, config, drop_daily).await?;
    for (_, sql) in &steps {
        tx.batch_execute(sql).await?;
    }
    tx.commit().await?;
    Ok(steps.into_iter().map(|(what, _)| what).collect())
}
