//! `runner migrate`: versioned, idempotent schema changes. The numbered
//! migrations create the reference schema once; then every configured job's
//! raw table gets the bookkeeping columns, indexes and notify trigger it
//! lacks, so an existing table can be adopted without manual SQL.

use anyhow::Context as _;
use tokio_postgres::Client;

use crate::config::{Config, Identifier};

/// Channel the notify trigger sends on; the payload is the table's name.
pub const CHANNEL: &str = "runner_pending";

/// Numbered migrations, applied in order, each once.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "reference schema", include_str!("migrations/0001_reference_schema.sql")),
    (2, "shadow differences", include_str!("migrations/0002_shadow_diffs.sql")),
    (3, "recompute progress", include_str!("migrations/0003_recompute_progress.sql")),
    (
        4,
        "partitions, recompute per plugin version",
        include_str!("migrations/0004_partitions_and_recompute_versions.sql"),
    ),
];

/// Serializes concurrent `migrate` runs (an arbitrary constant).
const MIGRATE_LOCK: i64 = 0x7275_6e6e_6572_0001;

/// Applies pending migrations, then adopts each enabled job's raw table.
/// Returns a line per change made.
pub async fn migrate(client: &mut Client, config: &Config) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    // `IF NOT EXISTS` notices are expected on every rerun; keep them out of the log.
    client.batch_execute("SET client_min_messages = warning").await?;
    // Building an index on a long history may take a while; the lock
    // timeout still keeps migrate from queueing the application behind it.
    client.batch_execute("SET statement_timeout = 0").await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK]).await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS runner_schema_migrations (
                    version int PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
        for (version, name, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            let applied = tx.query_opt("SELECT 1 FROM runner_schema_migrations WHERE version = $1", &[version]).await?;
            if applied.is_none() {
                tx.batch_execute(sql).await.with_context(|| format!("migration {version} ({name})"))?;
                tx.execute("INSERT INTO runner_schema_migrations (version, name) VALUES ($1, $2)", &[version, name])
                    .await?;
                done.push(format!("applied migration {version}: {name}"));
            }
            tx.commit().await?;
        }
        for (job_name, job) in config.enabled_jobs() {
            let tx = client.transaction().await?;
            let changed = adopt_raw_table(&tx, &job.source, &job.timestamp_column)
                .await
                .with_context(|| format!("preparing raw table {} of job {job_name}", job.source))?;
            tx.commit().await?;
            if changed {
                done.push(format!("prepared raw table {} for job {job_name}", job.source));
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]).await?;
    client.batch_execute("RESET client_min_messages; RESET statement_timeout").await?;
    result.map(|()| done)
}

/// Adds what the runner needs to a raw table; returns whether anything changed.
async fn adopt_raw_table(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Identifier,
    ts: &Identifier,
) -> anyhow::Result<bool> {
    let exists: bool = tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()]).await?.get(0);
    anyhow::ensure!(exists, "table {table} does not exist");
    let before: i64 = tx.query_one(FINGERPRINT, &[&table.quoted()]).await?.get(0);
    let partitioned: bool = tx
        .query_one("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)", &[&table.quoted()])
        .await?
        .get(0);
    let (t, name, ts) = (table.quoted(), table.name(), ts.quoted());
    // On a partitioned table, columns and indexes added to the parent reach
    // every partition, present and future; so does a row trigger (a
    // statement trigger on the parent would miss inserts made straight into
    // a partition). Notifications are folded per transaction by Postgres.
    let each = if partitioned { "ROW" } else { "STATEMENT" };
    tx.batch_execute(&format!(
        "ALTER TABLE {t}
            ADD COLUMN IF NOT EXISTS aggregation_status text NOT NULL DEFAULT 'pending',
            ADD COLUMN IF NOT EXISTS aggregation_error text,
            ADD COLUMN IF NOT EXISTS aggregation_attempts int NOT NULL DEFAULT 0,
            ADD COLUMN IF NOT EXISTS aggregation_not_before timestamptz;
         CREATE INDEX IF NOT EXISTS \"{name}_pending_idx\" ON {t} (id) WHERE aggregation_status = 'pending';
         CREATE INDEX IF NOT EXISTS \"{name}_failed_idx\" ON {t} (id) WHERE aggregation_status = 'failed';
         CREATE INDEX IF NOT EXISTS \"{name}_user_time_idx\" ON {t} (user_id, {ts});
         CREATE OR REPLACE TRIGGER \"{name}_notify_pending\" AFTER INSERT ON {t}
            FOR EACH {each} EXECUTE FUNCTION runner_notify_pending('{name}');"
    ))
    .await?;
    let after: i64 = tx.query_one(FINGERPRINT, &[&table.quoted()]).await?.get(0);
    Ok(before != after)
}

/// Counts a table's columns, indexes and triggers: changes when `adopt_raw_table` adds any.
const FINGERPRINT: &str =
    "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped)
     + (SELECT count(*) FROM pg_index WHERE indrelid = to_regclass($1))
     + (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal)";
