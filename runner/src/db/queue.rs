//! The queue as the database sees it: rows per status, the oldest pending
//! row, and the most common recent errors of a job's raw table.

use tokio_postgres::GenericClient;

use crate::config;

/// Rows of one raw table by `aggregation_status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Queue {
    pub pending: i64,
    /// Pending rows waiting out a retry backoff (`aggregation_not_before` ahead).
    pub in_backoff: i64,
    /// Always 0: a claim is a transaction's row locks, not a status (kept
    /// for the output's shape).
    pub processing: i64,
    pub completed: i64,
    /// `completed` is the planner's estimate (a large table), not a count.
    pub completed_estimated: bool,
    pub failed: i64,
    /// Seconds since the timestamp of the oldest pending row.
    pub oldest_pending_seconds: Option<f64>,
}

/// Below this many bytes of table, completed rows are counted exactly.
const EXACT_COUNT_BYTES: i64 = 16 << 20;

/// A job's queue. Its cost does not grow with history: pending and failed
/// rows are read through their partial indexes, and completed rows are
/// counted only while the table is small, estimated from the planner's
/// statistics after that.
pub async fn queue(client: &impl GenericClient, job: &config::Job) -> Result<Queue, tokio_postgres::Error> {
    let (src, ts) = (job.source.quoted(), job.timestamp_column.quoted());
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {src} WHERE aggregation_status = 'pending'),
                        (SELECT count(*) FROM {src} WHERE aggregation_status = 'pending' AND aggregation_not_before > now()),
                        (SELECT extract(epoch FROM now() - min({ts}))::float8 FROM {src} WHERE aggregation_status = 'pending'),
                        (SELECT count(*) FROM {src} WHERE aggregation_status = 'failed'),
                        sum(pg_relation_size(c.oid))::int8, sum(greatest(c.reltuples, 0))::int8
                 FROM pg_partition_tree(to_regclass($1::text)) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
            ),
            &[&job.source.quoted()],
        )
        .await?;
    let mut q = Queue {
        pending: row.try_get::<_, Option<i64>>(0)?.unwrap_or(0),
        in_backoff: row.try_get::<_, Option<i64>>(1)?.unwrap_or(0),
        oldest_pending_seconds: row.try_get(2)?,
        failed: row.try_get::<_, Option<i64>>(3)?.unwrap_or(0),
        ..Queue::default()
    };
    let bytes = row.try_get::<_, Option<i64>>(4)?.unwrap_or(0);
    let estimate = row.try_get::<_, Option<i64>>(5)?.unwrap_or(0);
    if bytes < EXACT_COUNT_BYTES {
        let sql = format!("SELECT count(*) FROM {src} WHERE aggregation_status = 'completed'");
        q.completed = client.query_one(&sql, &[]).await?.try_get(0)?;
    } else {
        q.completed = (estimate - q.pending - q.failed).max(0);
        q.completed_estimated = true;
    }
    Ok(q)
}

/// The `n` most common errors among failed and retrying rows, with counts
/// and one example each, and how many distinct causes there are in all. The
/// user and the day are taken out of each message first ([`CAUSE`]), so
/// that one cause on many groups counts as one error.
pub async fn top_errors(
    client: &impl GenericClient,
    job: &config::Job,
    n: i64,
) -> Result<Causes, tokio_postgres::Error> {
    let src = job.source.quoted();
    let rows = client
        .query(
            &format!(
                "SELECT cause, rows, failed, example, count(*) OVER () FROM (
                     SELECT {CAUSE} AS cause, count(*) AS rows,
                            count(*) FILTER (WHERE aggregation_status = 'failed') AS failed,
                            min(aggregation_error) AS example
                     FROM {src}
                     WHERE aggregation_status IN ('pending', 'failed') AND aggregation_error IS NOT NULL
                     GROUP BY 1) causes
                 ORDER BY rows DESC, cause LIMIT $1"
            ),
            &[&n],
        )
        .await?;
    let total = match rows.first() {
        Some(r) => r.try_get::<_, i64>(4)?,
        None => 0,
    };
    let shown = rows
        .iter()
        .map(|r| {
            Ok(TopError { error: r.try_get(0)?, rows: r.try_get(1)?, failed: r.try_get(2)?, example: r.try_get(3)? })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(Causes { shown, total })
}

/// A row's cause: its error with every group name replaced by `user … day
/// …`. The console groups by it and its "retry these" button filters on it,
/// so the button retries exactly the rows of its line.
const CAUSE: &str =
    "regexp_replace(aggregation_error, 'user -?[0-9]+ day [0-9]{4}-[0-9]{2}-[0-9]{2}', 'user … day …', 'g')";

/// The most common causes of a job's failures, and how many there are.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Causes {
    pub shown: Vec<TopError>,
    /// Distinct causes in all (`shown` may be fewer).
    pub total: i64,
}

/// One kind of error and how many rows carry it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopError {
    /// The message without the user and the day.
    pub error: String,
    /// Rows with this cause, failed or retrying.
    pub rows: i64,
    /// Of those, rows that are `failed` (what a retry puts back).
    pub failed: i64,
    /// One full message of this kind.
    pub example: String,
}

/// Which failed rows to put back to pending.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFilter {
    /// That day and later, in the job's time zone (whole days: a group's
    /// rows are never split).
    pub since_day: Option<chrono::NaiveDate>,
    /// Rows at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Rows whose error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Rows of exactly this cause (`TopError::error`: the message with its
    /// group names replaced), as the console's "retry these" sends it.
    pub cause: Option<String>,
}

/// Puts a job's failed rows matching `filter` back to pending (attempts
/// reset) and wakes the runners; returns how many.
pub async fn retry_failed(
    client: &impl GenericClient,
    job: &config::Job,
    filter: &RetryFilter,
) -> Result<u64, tokio_postgres::Error> {
    let (src, ts) = (job.source.quoted(), job.timestamp_column.quoted());
    // A naive timestamp column holds wall-clock times of `timestamp_zone`.
    let naive: bool = client
        .query_one(
            "SELECT coalesce((SELECT atttypid = 'timestamp'::regtype FROM pg_attribute
                WHERE attrelid = to_regclass($1) AND attname = $2), false)",
            &[&src, &job.timestamp_column.as_str()],
        )
        .await?
        .try_get(0)?;
    // The zone was checked when the config was parsed (no quotes can reach
    // it), as for the pipeline's own statements.
    let at = if naive { format!("({ts} AT TIME ZONE '{}')", job.timestamp_zone) } else { ts };
    let n = client
        .execute(
            &format!(
                "UPDATE {src} SET aggregation_status = 'pending', aggregation_attempts = 0, aggregation_not_before = NULL
                 WHERE aggregation_status = 'failed'
                   AND ($1::date IS NULL OR ({at} AT TIME ZONE $4::text)::date >= $1)
                   AND ($2::timestamptz IS NULL OR {at} >= $2)
                   AND ($3::text IS NULL OR strpos(lower(aggregation_error), lower($3)) > 0)
                   AND ($5::text IS NULL OR {CAUSE} = $5)"
            ),
            &[&filter.since_day, &filter.since, &filter.error_contains, &job.timezone, &filter.cause],
        )
        .await?;
    // Wake running runners now rather than at their next poll.
    client.execute("SELECT pg_notify('runner_pending', $1)", &[&job.source.name()]).await?;
    Ok(n)
}
