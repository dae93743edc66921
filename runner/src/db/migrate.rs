//! `runner migrate`: versioned, idempotent schema changes. The numbered
//! migrations create the runner's tables once; the reference tables a job
//! names are created if missing (`db::reference`); then every enabled
//! job's source gets its change capture (`db::capture`):
//! triggers only, no column and no index, so an application's table is
//! adopted without touching its data. Everything happens in one
//! transaction: a job that cannot be prepared (a missing column, a view, a
//! table whose triggers this role may not create) is named, and nothing is
//! changed.

use anyhow::Context as _;
use tokio_postgres::Client;

use super::capture;
use crate::config::Config;

/// Channel the change triggers notify on; the payload is the table's name.
pub const CHANNEL: &str = "runner_pending";

/// Jobs that cannot be prepared: one sentence each (`runner migrate` exits 2).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct Refused(pub Vec<String>);

/// Numbered migrations, applied in order, each once.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "reference schema (now created per job)", include_str!("migrations/0001_reference_schema.sql")),
    (2, "shadow differences", include_str!("migrations/0002_shadow_diffs.sql")),
    (3, "recompute progress", include_str!("migrations/0003_recompute_progress.sql")),
    (
        4,
        "partitions, recompute per plugin version",
        include_str!("migrations/0004_partitions_and_recompute_versions.sql"),
    ),
    (5, "change capture", include_str!("migrations/0005_change_capture.sql")),
    (6, "purges and partitions", include_str!("migrations/0006_purges_and_partitions.sql")),
    (7, "zone names", include_str!("migrations/0007_zone_names.sql")),
    (8, "failures on a limit", include_str!("migrations/0008_failures_on_a_limit.sql")),
    (9, "UTC days of local-day inserts", include_str!("migrations/0009_utc_changes.sql")),
];

/// Why this release cannot run on the schema as it is: migrations it needs
/// that are not applied (an upgrade run before `runner migrate`). Later
/// migrations it does not know are fine: each one only adds (tables,
/// columns with defaults, indexes), so a runner of an earlier release keeps
/// working beside a newer one during a rolling upgrade.
pub async fn behind(client: &impl tokio_postgres::GenericClient) -> Result<Option<String>, tokio_postgres::Error> {
    let table: bool =
        client.query_one("SELECT to_regclass('runner_schema_migrations') IS NOT NULL", &[]).await?.try_get(0)?;
    let applied: Vec<i32> = if table {
        client.query("SELECT version FROM runner_schema_migrations", &[]).await?.iter().map(|r| r.get(0)).collect()
    } else {
        Vec::new()
    };
    let missing: Vec<String> =
        MIGRATIONS.iter().filter(|(v, ..)| !applied.contains(v)).map(|(v, name, _)| format!("{v} ({name})")).collect();
    Ok((!missing.is_empty()).then(|| {
        format!(
            "the database lacks migration(s) {} that this runner needs: run `runner migrate` with this release \
             (as the owner role) first",
            missing.join(", ")
        )
    }))
}

/// Serializes concurrent `migrate` runs (an arbitrary constant).
const MIGRATE_LOCK: i64 = 0x7275_6e6e_6572_0001;

/// Applies pending migrations, creates the reference tables the jobs name
/// (all of them with `reference_schema`), then installs each enabled job's
/// change capture. Returns a line per change made; [`Refused`] when a job
/// cannot be prepared (then nothing at all is changed).
pub async fn migrate(client: &mut Client, config: &Config, reference_schema: bool) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    // `IF NOT EXISTS` notices are expected on every rerun; keep them out of the log.
    client.batch_execute("SET client_min_messages = warning").await?;
    // Queueing an adopted table's pending groups reads its history once;
    // the lock timeout still keeps migrate from queueing the application
    // behind it.
    client.batch_execute("SET statement_timeout = 0").await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK]).await?;
    let result = async {
        let mut tx = client.transaction().await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS runner_schema_migrations (
                version int PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let applied = tx.query_opt("SELECT 1 FROM runner_schema_migrations WHERE version = $1", &[version]).await?;
            if applied.is_none() {
                tx.batch_execute(sql).await.with_context(|| format!("migration {version} ({name})"))?;
                tx.execute("INSERT INTO runner_schema_migrations (version, name) VALUES ($1, $2)", &[version, name])
                    .await?;
                done.push(format!("applied migration {version}: {name}"));
            }
        }
        done.extend(super::reference::create(&tx, config, reference_schema).await?);
        let mut refused = Vec::new();
        for (job_name, job) in config.enabled_jobs() {
            // A savepoint per job: a refused one is named, the others still checked.
            let sp = tx.savepoint(format!("job_{job_name}")).await?;
            match capture::install(&sp, job_name, job).await {
                Ok(lines) => {
                    sp.commit().await?;
                    done.extend(lines);
                }
                Err(problems) => {
                    sp.rollback().await?;
                    refused.extend(problems.into_iter().map(|p| format!("job {job_name}: {p}")));
                }
            }
        }
        if !refused.is_empty() {
            tx.rollback().await?;
            return Err(Refused(refused).into());
        }
        tx.commit().await?;
        anyhow::Ok(())
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]).await?;
    client.batch_execute("RESET client_min_messages; RESET statement_timeout").await?;
    result.map(|()| done)
}
