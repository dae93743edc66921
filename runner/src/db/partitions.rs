//! The partitions of a partitioned source, and what happens when they come
//! and go. A write through the parent fires the parent's statement
//! triggers; one made directly on a partition fires only the partition's,
//! so every table of the partition tree carries the job's capture too.
//!
//! Postgres has no trigger for `ATTACH`, `DETACH` or `DROP` of a partition
//! that the runner's roles can create (event triggers need a superuser), so
//! the partitions each job covers are recorded in `runner_partitions`, and
//! the daemon compares them with the catalog every poll interval
//! ([`sync`]): a partition gone is a purge of the days its bounds hold (its
//! rows left the source); a partition new gets the capture triggers when
//! this role may create them, and its rows' days are queued (an attached
//! table brings rows no trigger saw).

use chrono::NaiveDate;
use tokio_postgres::GenericClient;

use super::day::Day;
use super::schema::SourceShape;
use super::{capture, queue};
use crate::config;

/// A table below a partitioned source.
#[derive(Debug, Clone)]
pub struct Partition {
    pub relid: u32,
    /// Its name, schema-qualified where needed and quoted (`regclass` text).
    pub name: String,
    /// The days its bounds hold (a day's margin either side), when it is a
    /// range partition on the job's timestamp column; `None`: open.
    pub from_day: Option<NaiveDate>,
    pub to_day: Option<NaiveDate>,
}

impl Partition {
    /// From a row of `relid, name, from_day, to_day`.
    fn from_row(r: &tokio_postgres::Row) -> Result<Partition, tokio_postgres::Error> {
        Ok(Partition {
            relid: r.try_get("relid")?,
            name: r.try_get("name")?,
            from_day: r.try_get("from_day")?,
            to_day: r.try_get("to_day")?,
        })
    }

    /// "vitals_2024_06 (2024-05-31 to 2024-07-01)".
    pub fn describe(&self) -> String {
        let day = |d: Option<NaiveDate>| d.map_or_else(|| "open".to_string(), |d| d.to_string());
        match (self.from_day, self.to_day) {
            (None, None) => self.name.clone(),
            (from, to) => format!("{} ({} to {})", self.name, day(from), day(to)),
        }
    }
}

/// The tables below `job`'s source, intermediate and leaf (none for a plain
/// table), with the days each one's bounds hold.
pub async fn of(
    client: &impl GenericClient,
    job: &config::Job,
    shape: &SourceShape,
) -> Result<Vec<Partition>, tokio_postgres::Error> {
    let kind = match (shape.dated, &shape.naive_zone) {
        (true, _) => "date",
        (false, Some(_)) => "timestamp",
        (false, None) => "timestamptz",
    };
    // A bound is an instant, not a row: read in the job's zone. Rows with
    // zones of their own (`zone_column`, up to ±18 h) may lie a day further.
    let day = Day::new(job, shape).in_job_zone();
    let margin = if day.has_row_zones(job, shape) { 2 } else { 1 };
    let column = job.timestamp_column.quoted();
    // A bound is `FOR VALUES FROM ('…') TO ('…')` on the parent's key; only a
    // range key that is exactly the timestamp column says which days.
    let sql = format!(
        "WITH tree AS (
            SELECT t.relid, t.relid::regclass::text AS name,
                   pg_catalog.pg_get_partkeydef(t.parentrelid) = 'RANGE (' || quote_ident($2) || ')' AS by_time,
                   pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
            FROM pg_catalog.pg_partition_tree(to_regclass($1)) t JOIN pg_catalog.pg_class c ON c.oid = t.relid
            WHERE t.level > 0
         ), bounds AS (
            SELECT relid, name,
                   CASE WHEN by_time THEN substring(bound FROM $re$^FOR VALUES FROM \\('([^']*)'\\) TO$re$) END AS lo,
                   CASE WHEN by_time THEN substring(bound FROM $re$ TO \\('([^']*)'\\)$$re$) END AS hi
            FROM tree
         )
         SELECT b.relid::oid AS relid, b.name, {lo_day} - {margin} AS from_day, {hi_day} + {margin} AS to_day
         FROM bounds b
         LEFT JOIN LATERAL (SELECT b.lo::pg_catalog.{kind} AS {column}) lo ON true
         LEFT JOIN LATERAL (SELECT b.hi::pg_catalog.{kind} AS {column}) hi ON true
         ORDER BY b.name",
        lo_day = day.of("lo."),
        hi_day = day.of("hi."),
    );
    let rows = client.query(&sql, &[&job.source.quoted(), &job.timestamp_column.as_str()]).await?;
    rows.iter().map(Partition::from_row).collect()
}

/// What [`sync`] found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Partitions new to the job since the last look.
    pub joined: Vec<Partition>,
    /// Partitions that left the source (detached or dropped).
    pub left: Vec<Partition>,
    /// Joined partitions whose capture triggers this role could not create:
    /// the partition and why.
    pub uncovered: Vec<(String, String)>,
}

/// Takes the job's partition lock for `client`'s transaction, if no other
/// runner holds it: one runner at a time turns a partition's coming or
/// going into work.
pub async fn try_lock(client: &impl GenericClient, job_name: &str) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('runner-partitions/' || $1, 0)) AS ours",
            &[&job_name],
        )
        .await?
        .try_get("ours")
}

/// Compares the job's partitions with those recorded, in `client`'s
/// transaction: records the new ones (and, with `queue`, installs their
/// capture where this role may and queues their rows' days), and turns
/// each one gone into a purge of its days. `migrate` records without
/// queueing: it installs the triggers itself, and its history line names
/// what predates them.
pub async fn sync(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &SourceShape,
    queue: bool,
) -> Result<Changes, tokio_postgres::Error> {
    let now = of(client, job, shape).await?;
    let recorded: Vec<Partition> = client
        .query("SELECT relid, name, from_day, to_day FROM runner_partitions WHERE job = $1 ORDER BY name", &[&job_name])
        .await?
        .iter()
        .map(Partition::from_row)
        .collect::<Result<_, _>>()?;
    let mut changes = Changes::default();
    for gone in recorded.iter().filter(|r| !now.iter().any(|p| p.relid == r.relid)) {
        let reason = format!("partition {} left {}", gone.name, job.source);
        queue::purge(client, job_name, job, (gone.from_day, gone.to_day), &reason).await?;
        client
            .execute("DELETE FROM runner_partitions WHERE job = $1 AND relid = $2", &[&job_name, &gone.relid])
            .await?;
        changes.left.push(gone.clone());
    }
    for new in now.iter().filter(|p| !recorded.iter().any(|r| r.relid == p.relid)) {
        client
            .execute(
                "INSERT INTO runner_partitions (job, relid, name, from_day, to_day) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (job, relid) DO UPDATE SET name = excluded.name, from_day = excluded.from_day,
                     to_day = excluded.to_day, seen_at = now()",
                &[&job_name, &new.relid, &new.name, &new.from_day, &new.to_day],
            )
            .await?;
        if queue {
            if let Err(why) = cover(client, job_name, &new.name).await? {
                changes.uncovered.push((new.name.clone(), why));
            }
            queue_partition(client, job_name, job, shape, new).await?;
        }
        changes.joined.push(new.clone());
    }
    Ok(changes)
}

/// Installs the job's capture triggers on one partition, in a savepoint:
/// `Ok(Err(why))` when this role may not.
async fn cover(
    client: &impl GenericClient,
    job_name: &str,
    table: &str,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let schema: String = client.query_one("SELECT quote_ident(current_schema())", &[]).await?.try_get(0)?;
    client.batch_execute("SAVEPOINT runner_cover").await?;
    match client.batch_execute(&capture::triggers_on(job_name, &schema, table)).await {
        Ok(()) => {
            client.batch_execute("RELEASE SAVEPOINT runner_cover").await?;
            Ok(Ok(()))
        }
        Err(e) => {
            client.batch_execute("ROLLBACK TO SAVEPOINT runner_cover").await?;
            Ok(Err(super::describe_error(&e)))
        }
    }
}

/// Queues the days of a partition that joined the source: its rows' (read
/// through the source, which this role may read) and, as a purge, every
/// day of its bounds that has daily rows (rows deleted from it before its
/// triggers existed left no key) when it has bounds.
async fn queue_partition(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &SourceShape,
    partition: &Partition,
) -> Result<(), tokio_postgres::Error> {
    let day = Day::new(job, shape);
    let literal = |d: Option<NaiveDate>| d.map_or_else(|| "NULL".to_string(), |d| format!("'{d}'::date"));
    let range = match (partition.from_day, partition.to_day) {
        (Some(_), Some(_)) => {
            format!(" AND {}", day.between("s.", &literal(partition.from_day), &literal(partition.to_day)))
        }
        _ => String::new(),
    };
    let rows = format!("(SELECT * FROM {} s WHERE s.tableoid = {}::oid{range})", job.source.quoted(), partition.relid);
    queue::queue_rows(client, job_name, job, shape, &rows, &[]).await?;
    if !range.is_empty() {
        // Unbounded (a list, hash or default partition), this would be
        // every day of the job: its rows' days are queued above.
        let reason = format!("partition {} joined {}", partition.name, job.source);
        queue::purge(client, job_name, job, (partition.from_day, partition.to_day), &reason).await?;
    }
    Ok(())
}
