//! The queue as the database sees it, counted in groups (a user's day):
//! groups due (their changes queued), in backoff, failed; the oldest queued
//! change; the most common causes of failure; and putting failed groups
//! back. Everything reads `runner_changes` and `runner_group_failures`
//! through their indexes, never the source table's history.

use tokio_postgres::GenericClient;

use crate::config;

/// A job's queue, in groups.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Queue {
    /// Groups with queued changes or waiting out a backoff: 0 is the stable
    /// answer to "is this job caught up?".
    pub pending: i64,
    /// Of those, groups waiting out a retry backoff.
    pub in_backoff: i64,
    /// Groups that reached `max_attempts`, until retried.
    pub failed: i64,
    /// Seconds since the oldest queued change was recorded.
    pub oldest_pending_seconds: Option<f64>,
    /// `pending` stopped counting at [`COUNT_CAP`] (a backlog that large).
    pub pending_capped: bool,
    /// Groups that failed on a limit (memory, time, `max_group_rows`) and
    /// wait out their backoff: their new changes wait with them.
    pub held: i64,
}

/// Queued groups are counted up to this many: the count stays a bounded
/// index walk with a million keys queued.
pub const COUNT_CAP: i64 = 100_000;

/// A job's queue.
pub async fn queue(client: &impl GenericClient, job: &str) -> Result<Queue, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT
                (SELECT count(*) FROM (SELECT DISTINCT c.day, c.user_id FROM runner_changes c WHERE c.job = $1 LIMIT $2) k)
                -- Inserts' UTC days not yet widened: one group each, at least.
                + (SELECT count(*) FROM (SELECT DISTINCT u.day, u.user_id FROM runner_changes_utc u WHERE u.job = $1 LIMIT $2) k)
                + (SELECT count(*) FROM runner_group_failures f WHERE f.job = $1 AND NOT f.failed
                   AND NOT EXISTS (SELECT 1 FROM runner_changes c WHERE c.job = $1 AND c.day = f.day AND c.user_id = f.user_id))
                  AS pending,
                (SELECT count(*) FROM runner_group_failures WHERE job = $1 AND NOT failed AND not_before > now())
                  AS in_backoff,
                (SELECT count(*) FROM runner_group_failures WHERE job = $1 AND failed) AS failed,
                (SELECT extract(epoch FROM now() - min(q.at))::float8 FROM (
                    SELECT (SELECT queued_at FROM runner_changes WHERE job = $1 ORDER BY id LIMIT 1)
                    UNION ALL SELECT (SELECT queued_at FROM runner_changes_utc WHERE job = $1 ORDER BY id LIMIT 1)
                 ) q(at)) AS oldest,
                (SELECT count(*) FROM runner_group_failures WHERE job = $1 AND on_limit AND not_before > now()) AS held",
            &[&job, &(COUNT_CAP + 1)],
        )
        .await?;
    let pending: i64 = row.try_get("pending")?;
    Ok(Queue {
        pending: pending.min(COUNT_CAP),
        pending_capped: pending > COUNT_CAP,
        in_backoff: row.try_get("in_backoff")?,
        failed: row.try_get("failed")?,
        oldest_pending_seconds: row.try_get("oldest")?,
        held: row.try_get("held")?,
    })
}

/// Rows of a job's source that belong to no group (a NULL user or
/// timestamp, or a timestamp out of range): no change is queued for them,
/// so they are never aggregated. Reads the whole source: for `check`,
/// `status` and the console's slow figures, not for every scrape.
pub async fn ungrouped(
    client: &impl GenericClient,
    job: &config::Job,
    shape: &crate::db::schema::SourceShape,
) -> Result<i64, tokio_postgres::Error> {
    let grouped = crate::db::capture::in_a_group(job, shape, "");
    client
        .query_one(&format!("SELECT count(*) FROM {} WHERE NOT coalesce({grouped}, false)", job.source.quoted()), &[])
        .await?
        .try_get(0)
}

/// Rows whose own zone (`zone_column`) is NULL or unknown, grouped in the
/// job's `timezone` instead; `None` for a job without a zone column.
pub async fn unknown_zones(
    client: &impl GenericClient,
    job: &config::Job,
    shape: &crate::db::schema::SourceShape,
) -> Result<Option<i64>, tokio_postgres::Error> {
    use crate::db::schema::ZoneKind;
    let (Some(column), Some(kind)) = (&job.zone_column, shape.zone) else { return Ok(None) };
    let column = column.quoted();
    let unknown = match kind {
        ZoneKind::Name => format!("{column} IS NULL OR {column} NOT IN (SELECT name FROM runner_zone_names)"),
        ZoneKind::Offset => format!("{column} IS NULL OR {column} NOT BETWEEN -1080 AND 1080"),
    };
    let sql = format!("SELECT count(*) FROM {} WHERE {unknown}", job.source.quoted());
    Ok(Some(client.query_one(&sql, &[]).await?.try_get(0)?))
}

/// Rows (with `zone_column`) or user zone entries (with `user_zones`)
/// whose zone is NULL or unknown, so grouped in the job's `timezone`;
/// `None` for a job in one fixed zone (or a source not read yet: `shape`).
pub async fn zones_unknown(
    client: &impl GenericClient,
    job: &config::Job,
    shape: Option<&crate::db::schema::SourceShape>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    match shape {
        Some(shape) if job.zone_column.is_some() => unknown_zones(client, job, shape).await,
        _ => crate::db::user_zones::unknown(client, job).await,
    }
}

/// The `n` most common causes among failed and retrying groups, with
/// counts and one example each, and how many distinct causes there are in
/// all. The user and the day are taken out of each message first
/// ([`CAUSE`]), so that one cause on many groups counts as one.
pub async fn top_errors(client: &impl GenericClient, job: &str, n: i64) -> Result<Causes, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT cause, groups, failed, example, count(*) OVER () AS causes FROM (
                     SELECT {CAUSE} AS cause, count(*) AS groups, count(*) FILTER (WHERE failed) AS failed,
                            min(error) AS example
                     FROM runner_group_failures WHERE job = $1
                     GROUP BY 1) causes
                 ORDER BY groups DESC, cause LIMIT $2"
            ),
            &[&job, &n],
        )
        .await?;
    let total = match rows.first() {
        Some(r) => r.try_get::<_, i64>("causes")?,
        None => 0,
    };
    let shown = rows
        .iter()
        .map(|r| {
            Ok(TopError {
                error: r.try_get("cause")?,
                groups: r.try_get("groups")?,
                failed: r.try_get("failed")?,
                example: r.try_get("example")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(Causes { shown, total })
}

/// A row's cause: its error with every group name replaced by `user … day
/// …`. The console groups by it and its "retry these" button filters on it,
/// so the button retries exactly the rows of its line.
const CAUSE: &str = "regexp_replace(error, 'user -?[0-9]+ day [0-9]{4}-[0-9]{2}-[0-9]{2}', 'user … day …', 'g')";

/// The most common causes of a job's failures, and how many there are.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Causes {
    pub shown: Vec<TopError>,
    /// Distinct causes in all (`shown` may be fewer).
    pub total: i64,
}

/// One kind of error and how many groups carry it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopError {
    /// The message without the user and the day.
    pub error: String,
    /// Groups with this cause, failed or retrying.
    pub groups: i64,
    /// Of those, groups that are `failed` (what a retry puts back).
    pub failed: i64,
    /// One full message of this kind.
    pub example: String,
}

/// Which failed groups to put back in the queue.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFilter {
    /// That day and later, in the job's time zone.
    pub since_day: Option<chrono::NaiveDate>,
    /// Groups whose day (in the job's time zone) holds or follows this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Groups whose error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Groups of exactly this cause (`TopError::error`: the message with
    /// its group names replaced), as the console's "retry these" sends it.
    pub cause: Option<String>,
}

/// Puts a job's failed groups matching `filter` back in the queue (attempts
/// reset) and wakes the runners; returns how many groups.
pub async fn retry_failed(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    filter: &RetryFilter,
) -> Result<u64, tokio_postgres::Error> {
    let n: i64 = client
        .query_one(
            &format!(
                "WITH picked AS (
                    DELETE FROM runner_group_failures
                    WHERE job = $1 AND failed
                      AND ($2::date IS NULL OR day >= $2)
                      AND ($3::timestamptz IS NULL OR day >= ($3 AT TIME ZONE $4::text)::date)
                      AND ($5::text IS NULL OR strpos(lower(error), lower($5)) > 0)
                      AND ($6::text IS NULL OR {CAUSE} = $6)
                    RETURNING user_id, day
                 ), queued AS (
                    INSERT INTO runner_changes (job, user_id, day) SELECT $1, user_id, day FROM picked
                 )
                 SELECT count(*) FROM picked"
            ),
            &[&job_name, &filter.since_day, &filter.since, &job.timezone, &filter.error_contains, &filter.cause],
        )
        .await?
        .try_get(0)?;
    // Wake running runners now rather than at their next poll.
    notify(client, job).await?;
    Ok(n as u64)
}

/// Wakes every runner's loop for `job` now, rather than at its next poll
/// (the change triggers notify for writers; this is for the runner's own
/// queueing).
pub async fn notify(client: &impl GenericClient, job: &config::Job) -> Result<(), tokio_postgres::Error> {
    client.execute("SELECT pg_notify($1, $2)", &[&super::migrate::CHANNEL, &job.source.name()]).await.map(drop)
}

/// Queues `keys` again, untouched (a transaction's groups its budget left).
pub async fn put_back(
    client: &impl GenericClient,
    job_name: &str,
    keys: &[crate::rows::GroupKey],
) -> Result<(), tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let users: Vec<i64> = keys.iter().map(|k| k.user_id).collect();
    let days: Vec<chrono::NaiveDate> = keys.iter().map(|k| k.day).collect();
    client
        .execute(
            "INSERT INTO runner_changes (job, user_id, day) SELECT $1, u, d FROM unnest($2::int8[], $3::date[]) AS k(u, d)",
            &[&job_name, &users, &days],
        )
        .await
        .map(drop)
}

/// Queues the groups of `users` on `day`.
pub async fn queue_users(
    client: &impl GenericClient,
    job_name: &str,
    day: chrono::NaiveDate,
    users: &[i64],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO runner_changes (job, user_id, day) SELECT $1, u, $2 FROM unnest($3::int8[]) u",
            &[&job_name, &day, &users],
        )
        .await
        .map(drop)
}

/// Whether the job's queue holds `n` keys or more (an index walk of at most `n`).
pub async fn holds_at_least(
    client: &impl GenericClient,
    job_name: &str,
    n: i64,
) -> Result<bool, tokio_postgres::Error> {
    let queued: i64 = client
        .query_one(
            "SELECT count(*) AS queued FROM (
                 (SELECT 1 FROM runner_changes WHERE job = $1 LIMIT $2)
                 UNION ALL (SELECT 1 FROM runner_changes_utc WHERE job = $1 LIMIT $2)
             ) q",
            &[&job_name, &n],
        )
        .await?
        .try_get("queued")?;
    Ok(queued >= n)
}

/// Queues the groups of `[from, to]` whose daily rows a version other than
/// `version` wrote; returns how many.
pub async fn queue_written_by_others(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    (from, to): (chrono::NaiveDate, chrono::NaiveDate),
    version: &str,
) -> Result<u64, tokio_postgres::Error> {
    let day = job.target_day_column.quoted();
    let which = format!("{day} BETWEEN $2 AND $3 AND plugin_version IS DISTINCT FROM $4::text");
    queue_daily(client, job_name, job, &which, &[&from, &to, &version]).await
}

/// Queues the groups of `job` that have daily rows matching `which` (SQL
/// over the daily table, its parameters from `$2` on); returns how many.
async fn queue_daily(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    which: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let (target, day) = (job.target.quoted(), job.target_day_column.quoted());
    let sql = format!(
        "INSERT INTO runner_changes (job, user_id, day) SELECT DISTINCT $1::text, user_id::int8, {day} FROM {target} WHERE {which}"
    );
    client.execute(&sql, &[&[&job_name as &(dyn tokio_postgres::types::ToSql + Sync)][..], params].concat()).await
}

/// Up to `n` of the groups queued for `job`, any of them.
pub async fn some_queued(
    client: &impl GenericClient,
    job_name: &str,
    n: i64,
) -> Result<Vec<crate::rows::GroupKey>, tokio_postgres::Error> {
    let rows = client
        .query("SELECT DISTINCT user_id, day FROM runner_changes WHERE job = $1 LIMIT $2", &[&job_name, &n])
        .await?;
    Ok(rows.iter().map(|r| crate::rows::GroupKey { user_id: r.get("user_id"), day: r.get("day") }).collect())
}

/// Queues every group of `job` whose daily rows the plugin file
/// `file_version` wrote, with any settings; returns how many.
pub async fn queue_written_by(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    file_version: &str,
) -> Result<u64, tokio_postgres::Error> {
    let which = "plugin_version = $2::text OR starts_with(plugin_version, $2::text || '+settings:')";
    queue_daily(client, job_name, job, which, &[&file_version]).await
}

/// Queues the groups of some source rows (`rows`: a parenthesized query or
/// a table, aliased by the caller's SQL; its parameters from `$2` on): their
/// keys, as the change triggers would have recorded them. Returns how many.
pub async fn queue_rows(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &crate::db::schema::SourceShape,
    rows: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let keys = crate::db::capture::group_keys(job, shape, rows);
    let sql = format!(
        "INSERT INTO runner_changes (job, user_id, day) SELECT DISTINCT $1::text, k.user_id, k.day FROM ({keys}) k"
    );
    client.execute(&sql, &[&[&job_name as &(dyn tokio_postgres::types::ToSql + Sync)][..], params].concat()).await
}

/// Records a purge: every day of `job` in `[from, to]` (`None`: open) that
/// has daily rows is due; the next peek expands it (`runner_expand_purges`).
pub async fn purge(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    (from, to): (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>),
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    // The days whose windows hold the range's last days are due too, and
    // the week or month its first day belongs to.
    let to = to.map(|d| d + chrono::Days::new(u64::from(job.window_days.max(1) - 1)));
    let from = from.map(|d| super::day::period_start(job, d));
    client
        .execute(
            "INSERT INTO runner_purges (job, from_day, to_day, reason) VALUES ($1, $2, $3, $4)",
            &[&job_name, &from, &to, &reason],
        )
        .await
        .map(drop)
}

/// Queues every group of `job` whose day lies in `[from, to]`: the days of
/// its raw rows, and (as a purge) the days that have daily rows. What
/// `runner recompute` would redo, but through the queue, beside the live
/// work: how a daemon started with `--repair` mends a window in which
/// change capture did not fire.
pub async fn queue_days(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &crate::db::schema::SourceShape,
    (from, to): (chrono::NaiveDate, chrono::NaiveDate),
) -> Result<u64, tokio_postgres::Error> {
    let day = crate::db::day::Day::new(job, shape);
    let rows = format!("(SELECT * FROM {} s WHERE {})", job.source.quoted(), day.between("s.", "$2::date", "$3::date"));
    let queued = queue_rows(client, job_name, job, shape, &rows, &[&from, &to]).await?;
    purge(client, job_name, job, (Some(from), Some(to)), "repair").await?;
    Ok(queued)
}
