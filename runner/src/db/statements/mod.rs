//! Every statement of a job's pipeline, built once per live plugin from the
//! job's config, the source's shape and the plugin's columns (identifiers
//! validated and quoted), with its parameters noted. The source table is
//! only ever read: the queue is `runner_changes` (filled by the triggers
//! of `db::capture`) and failures live in `runner_group_failures`.
//!
//! Ids and users are read as `bigint` and compared as `$n::int8`, whatever
//! the integer width of the table's columns (Postgres compares integer
//! widths within one index operator family, so the indexes still serve).

mod calls;
mod claimed;

pub use calls::{Daily, Encoded, Failure, group_key};
pub use claimed::{Claimed, Read};

use super::ident::quote;
use crate::config;
use crate::db::capture;
use crate::db::day::Day;
use crate::db::schema::SourceShape;
use crate::rows::{ColumnType, Description};

/// SQL text for one job.
#[derive(Clone)]
pub struct Statements {
    /// ($1 job, $2 limit, $3 frozen days or NULL, $4 tz) → (user_id, day)
    /// of a batch of due groups: failed groups whose backoff is over first,
    /// then queued changes, oldest first, not before the frozen horizon.
    /// Keys of days before the horizon are dropped by the same statement.
    /// Every queued key is due: a failing group's keys move into its
    /// failure record (`fail`), so the queue holds only work to do now — which
    /// is what lets the triggers notify only into an empty queue.
    peek: String,
    /// ($1 user_id, $2 day, $3 target table, $4 job) in one
    /// statement: takes the group's advisory lock; if it got it, takes the
    /// group's queued keys and its failure record (both undone by a
    /// rollback); returns the day's rows as id, timestamp, input
    /// columns..., then `taken` (keys, and a failure record due for a
    /// retry) and `locked`. Always at least
    /// one row: with no input, one whose id is NULL.
    claim: String,
    /// Group commit: `claim` for several groups in one statement. ($1 users,
    /// $2 days, $3 target table, $4 job) → for each group `n` (1-based,
    /// in the arrays' order): its rows as `claim` returns them, then `n` —
    /// at least one row per group (id NULL: no input, or not locked), in
    /// order of `n`.
    /// The locks are tried once each (a materialized CTE): a group another
    /// transaction holds is skipped, never waited on.
    claim_many: String,
    /// Group commit: `replace` for several groups in one statement. ($1
    /// users, $2 days, $3 plugin versions — one per group —, $4 the group
    /// (1-based) of each daily row, then one array per output column).
    replace_many: String,
    /// ($1 day, $2 users or NULL, $3 after user, $4 limit) → the
    /// users with daily rows or raw input on a day, in order (recompute).
    day_users: String,
    /// ($1 from, $2 to, $3 users or NULL) → groups in a range (recompute).
    count_groups: String,
    /// ($1 user_id, $2 day) → the day's input as `claim` returns it
    /// (id, timestamp, input columns), read only: no lock, no claim.
    read_day: String,
    /// ($1 from, $2 to, $3 limit) → up to `limit` groups with input
    /// in the range, a spread-out sample in a fixed order (`plugin diff`).
    sample_groups: String,
    /// ($1 user_id, $2 day, $3 plugin_version, then one array per output
    /// column): makes the group's daily rows exactly the given ones (none:
    /// the day's rows deleted). One statement per job, whatever the number
    /// of rows.
    replace: String,
    /// ($1 job, $2 user_id, $3 day, $4 error, $5 max_attempts, $6 backoff
    /// seconds, $7 plugin_version, $8 the attempts of a record the group's
    /// own claim removed) → whether the group is now `failed`: one more
    /// attempt and a backoff (doubling, at most an hour), or `failed` at
    /// `max_attempts`. The group's queued keys move into the record
    /// (it is due again when its backoff ends, when its rows change, or
    /// when an operator retries it).
    fail: String,
    /// `max_group_rows`: `claim`, `claim_many` and `read_day` read at most
    /// one row more than this per group (see `claimed`).
    pub max_rows: u32,
    /// The plugin's output column types, in order (the write's arrays).
    output: Vec<ColumnType>,
}

/// The group's lock: keyed by (target table, user, day), hashed by Postgres
/// so every runner computes the same one. One text for `claim` and
/// `claim_many`: if the two drifted they would stop excluding each other.
fn group_lock(table: &str, user: &str, day: &str) -> String {
    format!("pg_try_advisory_xact_lock(hashtextextended({table}::text || '/' || {user} || '/' || {day}, 0))")
}

impl Statements {
    /// Every statement's name and text (the golden tests, `check`'s prepare).
    pub fn all(&self) -> [(&'static str, &str); 10] {
        [
            ("peek", &self.peek),
            ("claim", &self.claim),
            ("claim_many", &self.claim_many),
            ("replace", &self.replace),
            ("replace_many", &self.replace_many),
            ("fail", &self.fail),
            ("day_users", &self.day_users),
            ("count_groups", &self.count_groups),
            ("read_day", &self.read_day),
            ("sample_groups", &self.sample_groups),
        ]
    }

    pub fn new(job: &config::Job, shape: &SourceShape, description: &Description) -> Self {
        let src = job.source.quoted();
        let dst = job.target.quoted();
        let ts = job.timestamp_column.quoted();
        // The timestamp column as a timestamptz (`t` qualifies it). A naive
        // column holds wall-clock times of `timestamp_zone` (validated: no quotes).
        let at = |t: &str| match &shape.naive_zone {
            // A date (a daily table read as a source): its midnight in UTC.
            _ if shape.dated => format!("({t}{ts}::timestamp AT TIME ZONE 'UTC')"),
            None => format!("{t}{ts}"),
            Some(zone) => format!("({t}{ts} AT TIME ZONE '{zone}')"),
        };
        // Each row's id; a source without one (a daily table: its rows are
        // identified by their key) numbers its group's rows in time order.
        let id = |t: &str| match shape.has_id {
            true => format!("{t}id::int8"),
            false => format!("(row_number() OVER (ORDER BY {t}{ts}))::int8"),
        };
        // The target's date column (`target_day_column`), quoted.
        let dcol = job.target_day_column.quoted();
        // Days, as the change triggers count them (`db::day`).
        let day = Day::new(job, shape);
        // The input of the group of `user` and day `key`, as an index range
        // on (user_id, timestamp): the day's rows, or its window's — and a
        // window only when its own day has a row (else no output, as for a day).
        let input_of = |t: &str, user: &str, key: &str| {
            let own = match day.window() {
                1 => String::new(),
                _ => format!(
                    " AND EXISTS (SELECT 1 FROM {src} o WHERE o.user_id = {user} AND {})",
                    day.between("o.", key, key)
                ),
            };
            format!("{t}user_id = {user} AND {}{own}", day.between(t, &day.first_day(key), &day.last_day(key)))
        };
        // The group's rows ($1 user, $2 day).
        let day_range = |t: &str| input_of(t, "$1::int8", "$2");
        let grouped = |t: &str| capture::in_a_group(job, shape, t);
        // The rows of group `l` (its user and day columns).
        let group_range = |t: &str| input_of(t, "l.user_id", "l.day");
        let output_cols: Vec<String> = description.output.iter().map(|c| quote(&c.name)).collect();
        let input_cols = |t: &str, alias: bool| -> String {
            description
                .input
                .iter()
                .enumerate()
                .map(|(i, c)| if alias { format!(", {t}{} AS c{i}", quote(&c.name)) } else { format!(", {t}c{i}") })
                .collect()
        };
        // The daily upsert's parts: the key columns (quoted), the conflict
        // target, the SET list, and one typed array parameter per output
        // column from `$first` on.
        let upsert = |first: usize| {
            let key: Vec<String> = description.key.iter().map(|k| quote(k)).collect();
            let conflict = ["user_id".to_string(), dcol.clone()].into_iter().chain(key.iter().cloned());
            let set = ["plugin_version".to_string(), "updated_at".to_string()]
                .into_iter()
                .chain(description.output.iter().filter(|c| !description.key.contains(&c.name)).map(|c| quote(&c.name)))
                .map(|c| format!("{c} = excluded.{c}"));
            let arrays = description
                .output
                .iter()
                .enumerate()
                .map(|(i, c)| format!("${}::{}", i + first, crate::db::sql::ColumnArray::sql_type(c.kind)));
            (
                key.clone(),
                conflict.collect::<Vec<_>>().join(", "),
                set.collect::<Vec<_>>().join(", "),
                arrays.collect::<Vec<_>>().join(", "),
            )
        };
        // A row whose values and version are what it already holds is not
        // updated: no write, no dead tuple, no capture downstream.
        let changed = {
            let compared = ["plugin_version".to_string()].into_iter().chain(output_cols.iter().cloned());
            let (old, new): (Vec<String>, Vec<String>) =
                compared.map(|c| (format!("d.{c}"), format!("excluded.{c}"))).unzip();
            format!("WHERE ({}) IS DISTINCT FROM ({})", old.join(", "), new.join(", "))
        };
        // A group's read stops one row past the limit: enough to say it is over.
        let read_limit = u64::from(job.max_group_rows) + 1;
        // The daily table, its date column as `day`, as an SQL string (for
        // `runner_expand_purges`, which reads `FROM <it> d`).
        let target = match job.target_day_column.as_str() {
            "day" => dst.clone(),
            _ => format!("(SELECT user_id, {dcol} AS day FROM {dst})"),
        }
        .replace('\'', "''");
        Statements {
            // A purge (`runner_purges`: a TRUNCATE, a partition gone) becomes
            // the keys of the days it covers that have daily rows, read with
            // this statement's snapshot, and peeked at once.
            peek: format!(
                "WITH frozen AS (
                    DELETE FROM runner_changes
                    WHERE job = $1 AND $3::int4 IS NOT NULL AND day < (now() AT TIME ZONE $4::text)::date - $3::int4
                 ), expanded AS (
                    SELECT e.user_id, e.day, e.id FROM runner_expand_purges($1, '{target}') e
                 )
                 SELECT user_id, day FROM (
                    (SELECT f.user_id, f.day, 0::int8 AS id FROM runner_group_failures f
                     WHERE f.job = $1 AND NOT f.failed AND f.not_before <= now()
                     ORDER BY f.not_before LIMIT $2)
                    UNION ALL
                    (SELECT c.user_id, c.day, c.id FROM runner_changes c
                     WHERE c.job = $1 AND ($3::int4 IS NULL OR c.day >= (now() AT TIME ZONE $4::text)::date - $3::int4)
                     ORDER BY c.id LIMIT $2)
                    UNION ALL
                    (SELECT e.user_id, e.day, e.id FROM expanded e
                     WHERE $3::int4 IS NULL OR e.day >= (now() AT TIME ZONE $4::text)::date - $3::int4
                     ORDER BY e.id LIMIT $2)
                 ) b GROUP BY 1, 2 ORDER BY min(id) LIMIT $2"
            ),
            // The input is read in the same statement (one snapshot) as the
            // keys are taken: a change committed after it is not taken and
            // stays queued, so the group runs again (docs/architecture.md).
            claim: format!(
                "WITH locked AS (
                    SELECT {lock} AS ok
                 ), taken AS (
                    DELETE FROM runner_changes
                    WHERE job = $4::text AND day = $2::date AND user_id = $1::int8 AND (SELECT ok FROM locked)
                    RETURNING 1
                 ), cleared AS (
                    DELETE FROM runner_group_failures
                    WHERE job = $4::text AND user_id = $1::int8 AND day = $2::date AND (SELECT ok FROM locked)
                    RETURNING NOT failed AS retry, attempts
                 )
                 SELECT r.id, r.at{input_cols_r},
                        (SELECT count(*) FROM taken) + (SELECT count(*) FROM cleared WHERE retry) AS taken,
                        (SELECT coalesce(max(attempts), 0) FROM cleared) AS attempts,
                        (SELECT ok FROM locked) AS locked
                 FROM (SELECT 1) one LEFT JOIN LATERAL (
                    SELECT {id_s} AS id, {at_s} AS at{input_cols_s} FROM {src} s
                    WHERE {read_range} LIMIT {read_limit}
                 ) r ON (SELECT ok FROM locked)
                 ORDER BY r.at, r.id",
                lock = group_lock("$3", "$1::bigint", "$2::date"),
                at_s = at("s."),
                id_s = id("s."),
                input_cols_s = input_cols("s.", true),
                input_cols_r = input_cols("r.", false),
                read_range = day_range("s."),
            ),
            claim_many: format!(
                "WITH g AS (
                    SELECT * FROM unnest($1::int8[], $2::date[]) WITH ORDINALITY AS g(user_id, day, n)
                 ), locked AS MATERIALIZED (
                    SELECT g.*, {many_lock} AS ok
                    FROM g
                 ), taken AS (
                    DELETE FROM runner_changes c USING locked l
                    WHERE l.ok AND c.job = $4::text AND c.day = l.day AND c.user_id = l.user_id
                    RETURNING l.n
                 ), cleared AS (
                    DELETE FROM runner_group_failures f USING locked l
                    WHERE l.ok AND f.job = $4::text AND f.user_id = l.user_id AND f.day = l.day
                    RETURNING l.n, NOT f.failed AS retry, f.attempts
                 ), counts AS (
                    SELECT l.n, (SELECT count(*) FROM taken t WHERE t.n = l.n)
                              + (SELECT count(*) FROM cleared c WHERE c.n = l.n AND c.retry) AS taken,
                           (SELECT coalesce(max(c.attempts), 0) FROM cleared c WHERE c.n = l.n) AS attempts
                    FROM locked l
                 )
                 SELECT r.id, r.at{input_cols_r}, k.taken, k.attempts, l.ok AS locked, l.n
                 FROM locked l JOIN counts k USING (n) LEFT JOIN LATERAL (
                    SELECT {id_s} AS id, {at_s} AS at{input_cols_s} FROM {src} s
                    WHERE {group_range} LIMIT {read_limit}
                 ) r ON l.ok
                 ORDER BY l.n, r.at, r.id",
                at_s = at("s."),
                id_s = id("s."),
                input_cols_s = input_cols("s.", true),
                input_cols_r = input_cols("r.", false),
                group_range = group_range("s."),
                many_lock = group_lock("$3", "g.user_id", "g.day"),
            ),
            replace_many: {
                let (key, conflict, set, arrays) = upsert(5);
                let same_key: String = key.iter().map(|k| format!(" AND v.{k} = d.{k}")).collect();
                let v_cols: Vec<String> = output_cols.iter().map(|c| format!("v.{c}")).collect();
                // Stale rows are told from the rows given, not from those the
                // upsert returns: an unchanged row is not updated, so not returned.
                format!(
                    "WITH g AS (
                        SELECT * FROM unnest($1::int8[], $2::date[], $3::text[]) WITH ORDINALITY AS g(user_id, day, version, n)
                     ), v AS (
                        SELECT g.user_id, g.day, g.version, {v_cols}
                        FROM unnest($4::int8[], {arrays}) AS v(n, {cols}) JOIN g ON g.n = v.n
                     ), up AS (
                        INSERT INTO {dst} AS d (user_id, {dcol}, plugin_version, updated_at, {cols})
                        SELECT v.user_id, v.day, v.version, clock_timestamp(), {v_cols} FROM v
                        ON CONFLICT ({conflict}) DO UPDATE SET {set} {changed}
                     )
                     DELETE FROM {dst} d USING g
                     WHERE d.user_id = g.user_id AND d.{dcol} = g.day
                       AND NOT EXISTS (SELECT 1 FROM v WHERE v.user_id = d.user_id AND v.day = d.{dcol}{same_key})",
                    cols = output_cols.join(", "),
                    v_cols = v_cols.join(", "),
                )
            },
            day_users: format!(
                "SELECT user_id::int8 FROM {src}
                 WHERE {range} AND {grouped}
                   AND ($2::int8[] IS NULL OR user_id = ANY($2::int8[])) AND user_id > $3::int8
                 UNION
                 SELECT user_id::int8 FROM {dst}
                 WHERE {dcol} = $1::date AND ($2::int8[] IS NULL OR user_id = ANY($2::int8[])) AND user_id > $3::int8
                 ORDER BY 1 LIMIT $4",
                // A week or month is a group on its first day only.
                range = match day.is_period() {
                    false => day.between("", "$1", "$1"),
                    true => format!(
                        "$1::date = {} AND {}",
                        day.key_of("$1::date"),
                        day.between("", "$1", &day.last_day("$1"))
                    ),
                },
                grouped = grouped(""),
            ),
            count_groups: format!(
                "SELECT count(*) AS groups FROM (
                    SELECT user_id, {day_of} FROM {src}
                    WHERE {range} AND {grouped} AND ($3::int8[] IS NULL OR user_id = ANY($3::int8[]))
                    UNION
                    SELECT user_id, {dcol} FROM {dst}
                    WHERE {dcol} BETWEEN $1::date AND $2::date AND ($3::int8[] IS NULL OR user_id = ANY($3::int8[]))
                 ) g",
                day_of = day.key_of(&day.of("")),
                range = day.between("", "$1::date", "$2::date"),
                grouped = grouped(""),
            ),
            read_day: format!(
                "SELECT * FROM (SELECT {id_s} AS id, {at_s} AS at{input_cols_s} FROM {src} s
                 WHERE {read_range} LIMIT {read_limit}) r
                 ORDER BY r.at, r.id",
                at_s = at("s."),
                id_s = id("s."),
                input_cols_s = input_cols("s.", true),
                read_range = day_range("s."),
            ),
            sample_groups: format!(
                "SELECT user_id, day FROM (
                    SELECT DISTINCT user_id::int8 AS user_id, {day_of} AS day FROM {src}
                    WHERE {range} AND {grouped}
                 ) g ORDER BY hashtext(user_id::text || '/' || day::text), user_id, day LIMIT $3",
                day_of = day.key_of(&day.of("")),
                range = day.between("", "$1::date", "$2::date"),
                grouped = grouped(""),
            ),
            replace: {
                let (key, conflict, set, arrays) = upsert(4);
                // With no rows, the upsert does nothing and the delete takes
                // the whole day. Stale rows are told from the rows given: an
                // unchanged row is not updated, so an upsert would not return it.
                let stale = if key.is_empty() {
                    "NOT EXISTS (SELECT 1 FROM v)".to_string()
                } else {
                    format!("({k}) NOT IN (SELECT {k} FROM v)", k = key.join(", "))
                };
                format!(
                    "WITH v AS (
                        SELECT * FROM unnest({arrays}) AS v({cols})
                     ), up AS (
                        INSERT INTO {dst} AS d (user_id, {dcol}, plugin_version, updated_at, {cols})
                        SELECT $1::int8, $2::date, $3::text, clock_timestamp(), {cols} FROM v
                        ON CONFLICT ({conflict}) DO UPDATE SET {set} {changed}
                     )
                     DELETE FROM {dst} WHERE user_id = $1::int8 AND {dcol} = $2 AND {stale}",
                    cols = output_cols.join(", "),
                )
            },
            fail: "WITH f AS (
                    INSERT INTO runner_group_failures AS g
                        (job, user_id, day, attempts, not_before, failed, error, plugin_version)
                    VALUES ($1::text, $2::int8, $3::date, $8::int4 + 1,
                        now() + make_interval(secs => LEAST($6::float8 * power(2, $8::int4), 3600)),
                        $8::int4 + 1 >= $5::int4, $4::text, $7::text)
                    ON CONFLICT (job, user_id, day) DO UPDATE SET
                        attempts = g.attempts + 1,
                        not_before = now() + make_interval(secs => LEAST($6::float8 * power(2, g.attempts), 3600)),
                        failed = g.attempts + 1 >= $5::int4,
                        error = excluded.error,
                        plugin_version = excluded.plugin_version,
                        updated_at = now()
                    RETURNING failed
                 ), absorbed AS (
                    DELETE FROM runner_changes WHERE job = $1::text AND day = $3::date AND user_id = $2::int8
                 )
                 SELECT failed FROM f"
                .to_string(),
            max_rows: job.max_group_rows,
            output: description.output.iter().map(|c| c.kind).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
