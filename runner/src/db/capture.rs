//! Change capture: which `(user, day)` groups a statement on a source table
//! touched. `runner migrate` installs, per job, a trigger function and four
//! statement-level triggers on the source (insert, update, delete with
//! their transition tables, and truncate; Postgres allows transition tables
//! on single-event triggers only). The function appends the affected keys
//! to `runner_changes` — for an update both the old and the new key — and
//! wakes the runners with `pg_notify` when the job's queue held nothing
//! before this statement's keys: a runner with work queued is not asleep,
//! and a notification costs every writer a lock at commit (measured: most
//! of what capture costs ingest). The runner then only reads the source.
//!
//! The function's text encodes the job's columns, day and zones, so
//! [`problems`] compares the installed text with the one the config would
//! install: a config edited since `migrate` is named, not silently wrong.

use tokio_postgres::GenericClient;

use super::ident::quote;
use super::schema::SourceShape;
use crate::config;

/// Timestamps outside these bounds belong to no group: near the ends of
/// Postgres's range, converting them to a day in another zone overflows,
/// and an error in the trigger would fail the application's statement.
pub const FIRST_TIMESTAMP: &str = "4712-01-01 00:00:00+00 BC";
pub const LAST_TIMESTAMP: &str = "294275-01-01 00:00:00+00";
/// The same bounds for a `date` column (a daily table as a source).
const FIRST_DATE: &str = "4712-01-02 BC";
const LAST_DATE: &str = "294275-01-01";

/// The trigger function of a job (job names are `[a-z0-9_]+`).
pub fn function_name(job: &str) -> String {
    format!("runner_capture_{job}")
}

/// The names of the four triggers on the source table.
fn trigger_names(job: &str) -> [(String, &'static str, &'static str); 4] {
    triggers_of(&function_name(job))
}

/// The four triggers that run `function`, named after it.
fn triggers_of(function: &str) -> [(String, &'static str, &'static str); 4] {
    [
        (format!("{function}_insert"), "INSERT", "REFERENCING NEW TABLE AS runner_new FOR EACH STATEMENT"),
        (
            format!("{function}_update"),
            "UPDATE",
            "REFERENCING OLD TABLE AS runner_old NEW TABLE AS runner_new FOR EACH STATEMENT",
        ),
        (format!("{function}_delete"), "DELETE", "REFERENCING OLD TABLE AS runner_old FOR EACH STATEMENT"),
        (format!("{function}_truncate"), "TRUNCATE", "FOR EACH STATEMENT"),
    ]
}

/// Where a job's capture writes, resolved in the database: the function
/// runs with an empty search path (as the table's owner: the application's
/// role needs no right on the runner's tables), so every name in it is
/// schema-qualified.
#[derive(Debug, Clone)]
pub struct Names {
    /// The schema of the runner's tables, quoted.
    pub schema: String,
    /// The job's source, schema-qualified.
    pub source: String,
    /// The job's `user_zones` table, schema-qualified (`None`: none, or it
    /// does not exist).
    pub user_zones: Option<String>,
}

impl Names {
    pub async fn resolve(client: &impl GenericClient, job: &config::Job) -> Result<Names, tokio_postgres::Error> {
        let qualified = "SELECT (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1))";
        let row = client.query_one("SELECT quote_ident(current_schema())", &[]).await?;
        let source: Option<String> = client.query_one(qualified, &[&job.source.quoted()]).await?.try_get(0)?;
        let user_zones = match &job.user_zones {
            Some(u) => client.query_one(qualified, &[&u.table.quoted()]).await?.try_get(0)?,
            None => None,
        };
        Ok(Names { schema: row.try_get(0)?, source: source.unwrap_or_else(|| job.source.quoted()), user_zones })
    }
}

/// `SELECT user_id, day FROM rows r WHERE <r belongs to a group>`: the
/// group keys of some source rows, as the job counts days. Rows with a NULL
/// user or timestamp, or a timestamp outside [`FIRST_TIMESTAMP`,
/// [`LAST_TIMESTAMP`]), belong to no group.
pub fn group_keys(job: &config::Job, shape: &SourceShape, rows: &str) -> String {
    keys_with(super::day::Day::new(job, shape), job, shape, rows)
}

/// [`group_keys`] with the days read by `day` (the capture function's
/// reads its zone names from the runner's schema).
fn keys_with(day: super::day::Day, job: &config::Job, shape: &SourceShape, rows: &str) -> String {
    // The group's date (the day, or its week's or month's first day); for
    // a rolling window, also the days whose windows hold it.
    let (windows, due) = day.due_days(&day.key_of(&day.of("r.")));
    format!(
        "SELECT r.user_id::pg_catalog.int8 AS user_id, {due} AS day FROM {rows} r{windows} WHERE {grouped}",
        grouped = in_a_group(job, shape, "r."),
    )
}

/// The condition that a source row (`t`: its alias and a dot, or "") belongs to a group.
pub fn in_a_group(job: &config::Job, shape: &SourceShape, t: &str) -> String {
    let ts = job.timestamp_column.quoted();
    let (kind, first, last) = match (shape.dated, &shape.naive_zone) {
        (true, _) => ("date", FIRST_DATE, LAST_DATE),
        (false, Some(_)) => ("timestamp", FIRST_TIMESTAMP, LAST_TIMESTAMP),
        (false, None) => ("timestamptz", FIRST_TIMESTAMP, LAST_TIMESTAMP),
    };
    format!(
        "{t}user_id IS NOT NULL AND {t}{ts} >= '{first}'::pg_catalog.{kind} AND {t}{ts} < '{last}'::pg_catalog.{kind}"
    )
}

/// What a trigger function does on each kind of statement, as SQL that
/// sets `first` (the least id it queued, or NULL).
pub(super) struct OnStatement {
    /// Says whose function it is, as a comment.
    pub comment: String,
    pub insert: String,
    pub update: String,
    pub delete: String,
    /// The purge a TRUNCATE records.
    pub truncate: String,
    /// Whether to notify: SQL true when `first` queued something.
    pub wake: String,
    /// The NOTIFY payload: the source's name (what the job's loop waits on).
    pub table: String,
}

/// The one shape of the runner's trigger functions (the source's and the
/// user zones table's): queue keys per statement kind, record a TRUNCATE
/// as a purge, and wake the runners.
pub(super) fn trigger_function(s: &OnStatement) -> String {
    format!(
        "
DECLARE
    first pg_catalog.int8;
BEGIN
    -- {comment}
    IF TG_OP = 'INSERT' THEN
        {insert}
    ELSIF TG_OP = 'UPDATE' THEN
        {update}
    ELSIF TG_OP = 'DELETE' THEN
        {delete}
    ELSE
        {truncate}
        PERFORM pg_catalog.pg_notify('{channel}', '{table}');
        RETURN NULL;
    END IF;
    IF {wake} THEN
        PERFORM pg_catalog.pg_notify('{channel}', '{table}');
    END IF;
    RETURN NULL;
END
",
        comment = s.comment,
        insert = s.insert,
        update = s.update,
        delete = s.delete,
        truncate = s.truncate,
        wake = s.wake,
        table = s.table,
        channel = super::migrate::CHANNEL,
    )
}

/// The body of a job's trigger function.
pub fn function_body(job_name: &str, job: &config::Job, shape: &SourceShape, names: &Names) -> String {
    let schema = &names.schema;
    let day = super::day::Day::new(job, shape).in_capture(schema, names.user_zones.as_deref());
    let keys = |rows: &str| keys_with(day.clone(), job, shape, rows);
    let insert = |from: &str| {
        format!(
            "WITH queued AS (
            INSERT INTO {schema}.runner_changes (job, user_id, day)
            SELECT DISTINCT '{job_name}', k.user_id, k.day FROM ({from}) k
            RETURNING id) SELECT pg_catalog.min(id) INTO first FROM queued;"
        )
    };
    // The job's oldest key in a queue, read in `(job, id)` order: whatever
    // the statistics say, one probe, never a scan of the other jobs' keys
    // (which an `EXISTS … id < first` became, per insert, behind a backlog).
    let oldest =
        |queue: &str| format!("(SELECT id FROM {schema}.{queue} WHERE job = '{job_name}' ORDER BY id LIMIT 1)");
    // Inserts of rows with zones of their own queue UTC days, at the price
    // of fixed-zone capture; the runner widens them (`Day::captures_utc`).
    let (on_insert, wake) = if day.captures_utc() {
        // Per user and UTC day, the first and last instant inserted: the
        // runner reads the user's rows between them (`Parts::widen`).
        let ts = job.timestamp_column.quoted();
        let utc_keys = format!(
            "WITH queued AS (
            INSERT INTO {schema}.runner_changes_utc (job, user_id, day, first_at, last_at)
            SELECT '{job_name}', r.user_id::pg_catalog.int8, {utc}, pg_catalog.min(r.{ts}), pg_catalog.max(r.{ts})
            FROM runner_new r WHERE {grouped} GROUP BY 2, 3
            RETURNING id) SELECT pg_catalog.min(id) INTO first FROM queued;",
            utc = day.utc_of("r."),
            grouped = in_a_group(job, shape, "r."),
        );
        let (utc, local) = (oldest("runner_changes_utc"), oldest("runner_changes"));
        (
            utc_keys,
            format!(
                // In parentheses: PL/pgSQL ends an IF's condition at the
                // first THEN outside them.
                "first IS NOT NULL AND (CASE WHEN TG_OP = 'INSERT'
            THEN {utc} >= first AND {local} IS NULL
            ELSE {local} >= first AND {utc} IS NULL END)"
            ),
        )
    } else {
        (insert(&keys("runner_new")), format!("first IS NOT NULL\n       AND {} >= first", oldest("runner_changes")))
    };
    trigger_function(&OnStatement {
        comment: format!(
            "Generated by `runner migrate` for job {job_name}; edit the config and migrate again instead."
        ),
        insert: on_insert,
        update: insert(&format!("{} UNION {}", keys("runner_old"), keys("runner_new"))),
        delete: insert(&keys("runner_old")),
        // TRUNCATE: every day of the table that has daily rows is due (and,
        // with no raw row left, emptied). The runner expands this purge with
        // its own snapshot: this transaction's may predate daily rows
        // committed since (REPEATABLE READ, SERIALIZABLE).
        truncate: format!(
            "INSERT INTO {schema}.runner_purges (job, relid, reason)
        VALUES ('{job_name}', TG_RELID, 'TRUNCATE of ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);"
        ),
        // Wake the runners only if nothing of this job was queued before.
        wake,
        table: job.source.name().to_string(),
    })
}

/// SQL that installs (or replaces) a job's function, and its triggers on
/// each of `tables` (the source and its partitions, quoted).
pub fn install_sql(job_name: &str, job: &config::Job, shape: &SourceShape, names: &Names, tables: &[String]) -> String {
    let function = format!("{}.{}", names.schema, quote(&function_name(job_name)));
    let mut sql = format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
         SECURITY DEFINER SET search_path = '' AS $runner${}$runner$;
         -- Only its triggers run it: no other role may attach it to a table of its own.
         REVOKE ALL ON FUNCTION {function}() FROM PUBLIC;\n",
        function_body(job_name, job, shape, names)
    );
    for table in tables {
        sql.push_str(&triggers_on(job_name, &names.schema, table));
    }
    sql
}

/// SQL that creates (or replaces) a job's four triggers on one table, set
/// to fire always: also under `session_replication_role = replica`, which
/// logical replication's apply and some restores write with. Without it a
/// write that bypasses the application's triggers on purpose bypasses
/// capture too, silently.
pub fn triggers_on(job_name: &str, schema: &str, table: &str) -> String {
    triggers_for(&function_name(job_name), schema, table)
}

/// [`triggers_on`] for any of the runner's trigger functions (`function`
/// in `schema`; its triggers are named after it).
pub fn triggers_for(function_name: &str, schema: &str, table: &str) -> String {
    let function = format!("{schema}.{}", quote(function_name));
    let mut sql = String::new();
    for (name, event, referencing) in triggers_of(function_name) {
        sql.push_str(&format!(
            "CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {table} {referencing} EXECUTE FUNCTION {function}();
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name};\n",
            name = quote(&name)
        ));
    }
    sql
}

/// The text of the runner's trigger function `name`, as installed in the
/// runner's schema (`None`: not there).
pub(super) async fn installed_body(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    client
        .query_opt(
            "SELECT p.prosrc FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace AND p.proname = $1",
            &[&name],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()
}

/// Problems with a job's change-capture function, one sentence each
/// (empty: fine): missing, or installed for another configuration. Its
/// triggers are [`trigger_problems`].
pub async fn problems(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &SourceShape,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let names = Names::resolve(client, job).await?;
    let expected = function_body(job_name, job, shape, &names);
    let installed = installed_body(client, &function_name(job_name)).await?;
    let migrate = "run `runner migrate`";
    let zones = super::user_zones::problems(client, job_name, job, shape, &names).await?;
    Ok(zones
        .into_iter()
        .chain(match installed {
            None => vec![format!(
                "source {} has no change capture for this job (its trigger function {} is missing): {migrate}",
                job.source,
                function_name(job_name)
            )],
            Some(body) if body != expected => vec![format!(
                "the change capture on {} was installed for another configuration (its columns, timezone, window_days, \
             timestamp_zone or target changed since, or an older release installed it): {migrate} to install \
             the current one",
                job.source
            )],
            Some(_) => Vec::new(),
        })
        .collect())
}

/// The job's capture triggers that do not fire on every write, one sentence
/// per table (empty: all fire): missing (dropped, or a partition created
/// since `migrate`), disabled, or not set to fire always.
pub async fn trigger_problems(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<String> = trigger_names(job_name).into_iter().map(|(n, _, _)| n).collect();
    let rows = client
        .query(
            "WITH tables AS (
                SELECT to_regclass($1)::oid AS relid, 0 AS level
                UNION ALL
                SELECT relid, level FROM pg_partition_tree(to_regclass($1)) WHERE level > 0
             )
             SELECT t.relid::regclass::text AS name, t.level > 0 AS partition, count(g.oid) AS present,
                    count(g.oid) FILTER (WHERE g.tgenabled = 'D') AS disabled,
                    count(g.oid) FILTER (WHERE g.tgenabled IN ('O', 'R')) AS always
             FROM tables t LEFT JOIN pg_trigger g ON g.tgrelid = t.relid AND g.tgname = ANY($2)
             WHERE t.relid IS NOT NULL
             GROUP BY t.relid, t.level ORDER BY t.level, 1",
            &[&job.source.quoted(), &names],
        )
        .await?;
    let all = names.len() as i64;
    let mut problems = Vec::new();
    for r in rows {
        let (table, partition, present, disabled, not_always): (String, bool, i64, i64, i64) = (
            r.try_get("name")?,
            r.try_get("partition")?,
            r.try_get("present")?,
            r.try_get("disabled")?,
            r.try_get("always")?,
        );
        let what = if partition { format!("partition {table} of {}", job.source) } else { format!("source {table}") };
        if present < all {
            problems.push(format!("{what} lacks {} of the job's {all} change triggers", all - present));
        }
        if disabled > 0 {
            problems.push(format!("{what} has {disabled} of the job's change triggers disabled"));
        }
        if not_always > 0 {
            problems.push(format!(
                "{what} has {not_always} change trigger(s) that do not fire under session_replication_role = replica"
            ));
        }
    }
    Ok(problems)
}

/// Installs (or refreshes) a job's change capture on its source; returns a
/// line per change, or every reason it cannot (one sentence each).
pub async fn install(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
) -> Result<Vec<String>, Vec<String>> {
    let db = |what: &str, e: tokio_postgres::Error| vec![format!("{what}: {}", super::describe_error(&e))];
    let src = job.source.quoted();
    let kind: Option<String> = client
        .query_one("SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1))", &[&src])
        .await
        .map_err(|e| db("reading the source", e))?
        .get(0);
    match kind.as_deref() {
        None => return Err(vec![format!("source table {} does not exist", job.source)]),
        Some("r" | "p") => {}
        Some(other) => {
            let what = match other {
                "v" => "a view",
                "m" => "a materialized view",
                "f" => "a foreign table",
                _ => "not a table",
            };
            return Err(vec![format!(
                "source {} is {what}: change capture needs triggers on a table (a partitioned table is fine)",
                job.source
            )]);
        }
    }
    let Some(source) = super::schema::table(client, &job.source).await.map_err(|e| db("reading the source", e))? else {
        return Err(vec![format!("source table {} does not exist", job.source)]);
    };
    let shape = super::schema::check_source(job, &source)?;
    let names = Names::resolve(client, job).await.map_err(|e| db("resolving names", e))?;
    let partitions =
        super::partitions::of(client, job, &shape).await.map_err(|e| db("reading the source's partitions", e))?;
    let mut before = problems(client, job_name, job, &shape).await.map_err(|e| db("reading the capture", e))?;
    before.extend(trigger_problems(client, job_name, job).await.map_err(|e| db("reading the capture", e))?);
    let mut lines = Vec::new();
    if !before.is_empty() {
        let tables: Vec<String> =
            std::iter::once(src.clone()).chain(partitions.iter().map(|p| p.name.clone())).collect();
        let mut sql = install_sql(job_name, job, &shape, &names, &tables);
        sql.extend(super::user_zones::install_sql(job_name, job, &shape, &names));
        client.batch_execute(&sql).await.map_err(|e| {
            let why = super::describe_error(&e);
            let hint = if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                " (run `runner migrate` as the table's owner: it also sets the triggers to fire always, which only \
                 the owner may)"
            } else {
                ""
            };
            vec![format!("cannot install the change triggers on {}: {why}{hint}", job.source)]
        })?;
        lines.push(match partitions.len() {
            0 => format!("installed change capture on {} for job {job_name}", job.source),
            n => format!("installed change capture on {} and its {n} partition(s) for job {job_name}", job.source),
        });
    }
    super::partitions::sync(client, job_name, job, &shape, false).await.map_err(|e| db("recording partitions", e))?;
    lines.extend(adopt_status_columns(client, job_name, job, &shape, &source).await.map_err(|e| db("queueing", e))?);
    if !before.is_empty() {
        lines.extend(history(client, job_name, job, &shape).await.map_err(|e| db("reading the history", e))?);
    }
    Ok(lines)
}

/// A source the seed's worker used (an `aggregation_status` column): its
/// `pending` and `processing` groups are queued once, then the column is
/// left alone.
async fn adopt_status_columns(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &SourceShape,
    source: &super::schema::Table,
) -> Result<Vec<String>, tokio_postgres::Error> {
    if !source.columns.get("aggregation_status").is_some_and(|c| c.sql_type == "text" || c.sql_type == "varchar") {
        return Ok(Vec::new());
    }
    let src = job.source.quoted();
    let adopted = client
        .query_opt("SELECT 1 FROM runner_adopted_sources WHERE job = $1 AND source = $2", &[&job_name, &src])
        .await?;
    if adopted.is_some() {
        return Ok(Vec::new());
    }
    let pending = format!("(SELECT * FROM {src} WHERE aggregation_status IN ('pending', 'processing'))");
    let queued = super::queue::queue_rows(client, job_name, job, shape, &pending, &[]).await?;
    client
        .execute(
            "INSERT INTO runner_adopted_sources (job, source, groups_queued) VALUES ($1, $2, $3)",
            &[&job_name, &src, &(queued as i64)],
        )
        .await?;
    Ok(vec![format!(
        "queued {queued} group(s) of {}'s pending rows for job {job_name}, once; the runner no longer reads or writes \
         its aggregation_status / aggregation_error columns (drop them when no old worker needs them)",
        job.source
    )])
}

/// Days with raw rows but no daily rows (a history from before the runner),
/// and the command that aggregates them.
async fn history(
    client: &impl GenericClient,
    job_name: &str,
    job: &config::Job,
    shape: &SourceShape,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let target_exists: bool =
        client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&job.target.quoted()]).await?.try_get(0)?;
    if !target_exists {
        return Ok(Vec::new());
    }
    let keys = group_keys(job, shape, &job.source.quoted());
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) AS days, min(k.day) AS first, max(k.day) AS last
                 FROM (SELECT DISTINCT user_id, day FROM ({keys}) g) k
                 WHERE NOT EXISTS (SELECT 1 FROM {dst} d WHERE d.user_id = k.user_id AND d.{dcol} = k.day)
                   AND NOT EXISTS (SELECT 1 FROM runner_changes c WHERE c.job = $1 AND c.day = k.day AND c.user_id = k.user_id)",
                dst = job.target.quoted(),
                dcol = job.target_day_column.quoted()
            ),
            &[&job_name],
        )
        .await?;
    let days: i64 = row.try_get("days")?;
    let (first, last): (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>) =
        (row.try_get("first")?, row.try_get("last")?);
    Ok(match (first, last) {
        (Some(first), Some(last)) if days > 0 => vec![format!(
            "job {job_name}: {days} user-day(s) of {} have raw rows but no daily rows (from before change capture); \
             aggregate them with `runner recompute --job {job_name} --from {first} --to {last}`",
            job.source
        )],
        _ => Vec::new(),
    })
}

/// A warning when no index of the source starts with `(user_id, <timestamp
/// column>)`: every group's read is a range on it, so without it each read
/// scans the table. The runner builds no index on an application's table;
/// the warning says what to run.
pub async fn missing_index(
    client: &impl GenericClient,
    job: &config::Job,
) -> Result<Option<String>, tokio_postgres::Error> {
    let found: bool = client
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM pg_index i
                WHERE i.indrelid = to_regclass($1) AND i.indnatts >= 2
                  AND (SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[0]) = 'user_id'
                  AND (SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[1]) = $2)",
            &[&job.source.quoted(), &job.timestamp_column.as_str()],
        )
        .await?
        .try_get(0)?;
    Ok((!found).then(|| {
        let index = quote(&format!("{}_user_time_idx", job.source.name()));
        format!(
            "{} has no index on (user_id, {}), which every group's read uses; build it without blocking writes: \
             CREATE INDEX CONCURRENTLY {index} ON {} (user_id, {});",
            job.source,
            job.timestamp_column,
            job.source.quoted(),
            job.timestamp_column.quoted()
        )
    }))
}
