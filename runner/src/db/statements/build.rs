//! The SQL text of a job's statements, built from the job's config, the
//! source's shape and the plugin's columns: one method per statement over
//! the parts they share (identifiers validated and quoted once).

use super::group_lock;
use crate::config;
use crate::db::capture;
use crate::db::day::Day;
use crate::db::ident::quote;
use crate::db::schema::SourceShape;
use crate::rows::Description;

/// What the statements of one job are built from.
pub(super) struct Parts<'a> {
    job: &'a config::Job,
    shape: &'a SourceShape,
    description: &'a Description,
    /// The source and target tables, the timestamp and target date columns, quoted.
    src: String,
    dst: String,
    ts: String,
    dcol: String,
    /// Days, as the change triggers count them (`db::day`).
    day: Day,
    output_cols: Vec<String>,
    /// A group's read stops one row past `max_group_rows`: enough to say it is over.
    read_limit: u64,
    /// The daily table, its date column as `day`, as an SQL string (for
    /// `runner_expand_purges`, which reads `FROM <it> d`).
    purged_target: String,
    /// A row whose values and version are what it already holds is not
    /// updated: no write, no dead tuple, no capture downstream.
    changed: String,
}

impl<'a> Parts<'a> {
    pub(super) fn new(job: &'a config::Job, shape: &'a SourceShape, description: &'a Description) -> Self {
        let (dst, dcol) = (job.target.quoted(), job.target_day_column.quoted());
        let output_cols: Vec<String> = description.output.iter().map(|c| quote(&c.name)).collect();
        let changed = {
            let compared = ["plugin_version".to_string()].into_iter().chain(output_cols.iter().cloned());
            let (old, new): (Vec<String>, Vec<String>) =
                compared.map(|c| (format!("d.{c}"), format!("excluded.{c}"))).unzip();
            format!("WHERE ({}) IS DISTINCT FROM ({})", old.join(", "), new.join(", "))
        };
        let purged_target = match job.target_day_column.as_str() {
            "day" => dst.clone(),
            _ => format!("(SELECT user_id, {dcol} AS day FROM {dst})"),
        }
        .replace('\'', "''");
        Parts {
            job,
            shape,
            description,
            src: job.source.quoted(),
            ts: job.timestamp_column.quoted(),
            day: Day::new(job, shape),
            read_limit: u64::from(job.max_group_rows) + 1,
            dst,
            dcol,
            output_cols,
            purged_target,
            changed,
        }
    }

    /// The timestamp column as a timestamptz (`t` qualifies it). A naive
    /// column holds wall-clock times of `timestamp_zone` (validated: no quotes).
    fn at(&self, t: &str) -> String {
        let ts = &self.ts;
        match &self.shape.naive_zone {
            // A date (a daily table read as a source): its midnight in UTC.
            _ if self.shape.dated => format!("({t}{ts}::timestamp AT TIME ZONE 'UTC')"),
            None => format!("{t}{ts}"),
            Some(zone) => format!("({t}{ts} AT TIME ZONE '{zone}')"),
        }
    }

    /// Each row's id; a source without one (a daily table: its rows are
    /// identified by their key) numbers its group's rows in time order.
    fn id(&self, t: &str) -> String {
        match self.shape.has_id {
            true => format!("{t}id::int8"),
            false => format!("(row_number() OVER (ORDER BY {t}{}))::int8", self.ts),
        }
    }

    /// The input of the group of `user` and day `key`, as an index range
    /// on (user_id, timestamp): the day's rows, or its window's — and a
    /// window only when its own day has a row (else no output, as for a day).
    fn input_of(&self, t: &str, user: &str, key: &str) -> String {
        let day = &self.day;
        let own = match day.window() {
            1 => String::new(),
            _ => format!(
                " AND EXISTS (SELECT 1 FROM {} o WHERE o.user_id = {user} AND {})",
                self.src,
                day.between("o.", key, key)
            ),
        };
        format!("{t}user_id = {user} AND {}{own}", day.between(t, &day.first_day(key), &day.last_day(key)))
    }

    /// A group's input rows in `range` as `claim`, `claim_many` and
    /// `read_day` read them: id, timestamp and the input columns (`c0`...),
    /// at most one row past `max_group_rows`.
    fn input_read(&self, range: &str) -> String {
        // Each row's local day and (read per row) zone, for WIT 0.3's group.
        let zone = self.day.zone_text("s.").map_or_else(String::new, |z| format!(", {z} AS zone"));
        format!(
            "SELECT {} AS id, {} AS at{}, {} AS local_day{zone} FROM {} s WHERE {range} LIMIT {}",
            self.id("s."),
            self.at("s."),
            self.input_cols("s.", true),
            self.day.of("s."),
            self.src,
            self.read_limit
        )
    }

    /// Each row's local day and (read per row) zone from [`Parts::input_read`]'s
    /// result aliased `t`.
    fn row_facts(&self, t: &str) -> String {
        let zone = if self.day.zone_text("").is_some() { format!(", {t}zone") } else { String::new() };
        format!(", {t}local_day{zone}")
    }

    /// The plugin's input columns, read from `t` (`alias`: as `c0`, `c1`...).
    fn input_cols(&self, t: &str, alias: bool) -> String {
        self.description
            .input
            .iter()
            .enumerate()
            .map(|(i, c)| if alias { format!(", {t}{} AS c{i}", quote(&c.name)) } else { format!(", {t}c{i}") })
            .collect()
    }

    /// The daily upsert's parts: the key columns (quoted), the conflict
    /// target, the SET list, and one typed array parameter per output
    /// column from `$first` on.
    fn upsert(&self, first: usize) -> (Vec<String>, String, String, String) {
        let description = self.description;
        let key: Vec<String> = description.key.iter().map(|k| quote(k)).collect();
        let conflict = ["user_id".to_string(), self.dcol.clone()].into_iter().chain(key.iter().cloned());
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
    }

    /// A purge (`runner_purges`: a TRUNCATE, a partition gone) becomes
    /// the keys of the days it covers that have daily rows, read with
    /// this statement's snapshot, and peeked at once.
    pub(super) fn peek(&self) -> String {
        let target = &self.purged_target;
        let (widen, widened) = self.widen();
        format!(
            "WITH {widen}frozen AS (
                DELETE FROM runner_changes
                WHERE job = $1 AND $3::int4 IS NOT NULL AND day < (now() AT TIME ZONE $4::text)::date - $3::int4
             ), held AS (
                DELETE FROM runner_changes c USING runner_group_failures h
                WHERE c.job = $1 AND h.job = $1 AND h.user_id = c.user_id AND h.day = c.day
                  AND h.on_limit AND h.not_before > now()
                RETURNING c.user_id, c.day
             ), marked AS (
                UPDATE runner_group_failures f SET changed = true
                FROM (SELECT DISTINCT user_id, day FROM held) k
                WHERE f.job = $1 AND f.user_id = k.user_id AND f.day = k.day
             ), expanded AS (
                SELECT e.user_id, e.day, e.id FROM runner_expand_purges($1, '{target}') e
             )
             SELECT user_id, day FROM (
                (SELECT f.user_id, f.day, 0::int8 AS id FROM runner_group_failures f
                 WHERE f.job = $1 AND NOT f.failed AND f.not_before <= now()
                 ORDER BY f.not_before LIMIT $2)
                UNION ALL
                (SELECT f.user_id, f.day, 0::int8 AS id FROM runner_group_failures f
                 WHERE f.job = $1 AND f.failed AND f.changed AND f.not_before <= now()
                 ORDER BY f.not_before LIMIT $2)
                UNION ALL
                (SELECT c.user_id, c.day, c.id FROM runner_changes c
                 WHERE c.job = $1 AND ($3::int4 IS NULL OR c.day >= (now() AT TIME ZONE $4::text)::date - $3::int4)
                   AND NOT EXISTS (SELECT 1 FROM runner_group_failures h
                                   WHERE h.job = $1 AND h.user_id = c.user_id AND h.day = c.day
                                     AND h.on_limit AND h.not_before > now())
                 ORDER BY c.id LIMIT $2)
                UNION ALL
                (SELECT e.user_id, e.day, e.id FROM expanded e
                 WHERE $3::int4 IS NULL OR e.day >= (now() AT TIME ZONE $4::text)::date - $3::int4
                 ORDER BY e.id LIMIT $2){widened}
             ) b GROUP BY 1, 2 ORDER BY min(id) LIMIT $2"
        )
    }

    /// For a job whose inserts queue UTC days (`Day::captures_utc`): the
    /// peek's first step takes the oldest of them (a batch's worth, so a
    /// bulk load's backlog is turned a batch at a time, each peek bounded;
    /// another runner's are skipped, not waited for) and queues the local
    /// days of the user's rows between each key's first and last inserted
    /// instant (the inserted rows are among them; rows deleted or moved
    /// since queued their own days exactly), and the
    /// part of the peek that offers those keys at once. Keys of a frozen
    /// day or of a group held on a limit stay queued, for the next peek's
    /// `frozen` and `held`. Empty for other jobs.
    fn widen(&self) -> (String, String) {
        if !self.day.captures_utc() {
            return (String::new(), String::new());
        }
        // LATERAL: one index range per key, whatever the plan thinks of the
        // keys' count (a hash join would read the whole source).
        let rows = format!(
            "(SELECT s.* FROM (SELECT DISTINCT user_id, first_at, last_at FROM utc) u
                 CROSS JOIN LATERAL (SELECT s.* FROM {src} s
                     WHERE s.user_id = u.user_id AND s.{ts} BETWEEN u.first_at AND u.last_at) s)",
            src = self.src,
            ts = self.ts,
        );
        let widen = format!(
            "utc AS (
                DELETE FROM runner_changes_utc WHERE ctid IN (
                    SELECT ctid FROM runner_changes_utc WHERE job = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING user_id, first_at, last_at
             ), widened AS (
                INSERT INTO runner_changes (job, user_id, day)
                SELECT DISTINCT $1, k.user_id, k.day FROM ({keys}) k
                RETURNING user_id, day, id
             ), ",
            keys = capture::group_keys(self.job, self.shape, &rows),
        );
        let widened = "
                UNION ALL
                (SELECT w.user_id, w.day, w.id FROM widened w
                 WHERE ($3::int4 IS NULL OR w.day >= (now() AT TIME ZONE $4::text)::date - $3::int4)
                   AND NOT EXISTS (SELECT 1 FROM runner_group_failures h
                                   WHERE h.job = $1 AND h.user_id = w.user_id AND h.day = w.day
                                     AND h.on_limit AND h.not_before > now())
                 ORDER BY w.id LIMIT $2)"
            .to_string();
        (widen, widened)
    }

    /// The input is read in the same statement (one snapshot) as the
    /// keys are taken: a change committed after it is not taken and
    /// stays queued, so the group runs again (docs/architecture.md).
    pub(super) fn claim(&self) -> String {
        format!(
            "WITH locked AS (
                SELECT {lock} AS ok
             ), taken AS (
                DELETE FROM runner_changes
                WHERE job = $4::text AND day = $2::date AND user_id = $1::int8 AND (SELECT ok FROM locked)
                RETURNING 1
             ), cleared AS (
                DELETE FROM runner_group_failures
                WHERE job = $4::text AND user_id = $1::int8 AND day = $2::date AND (SELECT ok FROM locked)
                RETURNING (NOT failed OR changed) AS retry, attempts
             )
             SELECT r.id, r.at{input_cols_r},
                    (SELECT count(*) FROM taken) + (SELECT count(*) FROM cleared WHERE retry) AS taken,
                    (SELECT coalesce(max(attempts), 0) FROM cleared) AS attempts,
                    (SELECT ok FROM locked) AS locked
             FROM (SELECT 1) one LEFT JOIN LATERAL (
                {read}
             ) r ON (SELECT ok FROM locked)
             ORDER BY r.at, r.id",
            lock = group_lock("$3", "$1::bigint", "$2::date"),
            input_cols_r = self.input_cols("r.", false) + &self.row_facts("r."),
            read = self.input_read(&self.input_of("s.", "$1::int8", "$2")),
        )
    }

    /// `claim_many`: see [`Statements`].
    pub(super) fn claim_many(&self) -> String {
        // Each group's counts are joined, grouped, and materialized once:
        // as correlated subqueries they ran for every row read, each over
        // the whole batch's keys (the claim's largest cost on many small
        // groups; docs/performance.md, round 17).
        format!(
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
                RETURNING l.n, (NOT f.failed OR f.changed) AS retry, f.attempts
             ), counts AS MATERIALIZED (
                SELECT l.n, l.user_id, l.day, l.ok,
                       coalesce(t.taken, 0) + coalesce(c.retries, 0) AS taken, coalesce(c.attempts, 0) AS attempts
                FROM locked l
                LEFT JOIN (SELECT n, count(*) AS taken FROM taken GROUP BY n) t USING (n)
                LEFT JOIN (SELECT n, count(*) FILTER (WHERE retry) AS retries, max(attempts) AS attempts
                           FROM cleared GROUP BY n) c USING (n)
             )
             SELECT r.id, r.at{input_cols_r}, l.taken, l.attempts, l.ok AS locked, l.n
             FROM counts l LEFT JOIN LATERAL (
                {read}
             ) r ON l.ok
             ORDER BY l.n, r.at, r.id",
            input_cols_r = self.input_cols("r.", false) + &self.row_facts("r."),
            read = self.input_read(&self.input_of("s.", "l.user_id", "l.day")),
            many_lock = group_lock("$3", "g.user_id", "g.day"),
        )
    }

    /// `replace_many`: see [`Statements`].
    pub(super) fn replace_many(&self) -> String {
        let dst = &self.dst;
        let dcol = &self.dcol;
        let changed = &self.changed;
        let output_cols = &self.output_cols;
        let upsert = |first: usize| self.upsert(first);
        {
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
        }
    }

    /// `day_users`: see [`Statements`].
    pub(super) fn day_users(&self) -> String {
        let src = &self.src;
        let dst = &self.dst;
        let dcol = &self.dcol;
        let day = &self.day;
        let grouped = |t: &str| capture::in_a_group(self.job, self.shape, t);
        format!(
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
                true =>
                    format!("$1::date = {} AND {}", day.key_of("$1::date"), day.between("", "$1", &day.last_day("$1"))),
            },
            grouped = grouped(""),
        )
    }

    /// `count_groups`: see [`Statements`].
    pub(super) fn count_groups(&self) -> String {
        let (dst, dcol) = (&self.dst, &self.dcol);
        format!(
            "SELECT count(*) AS groups FROM (
                SELECT user_id, day FROM ({groups}) s WHERE $3::int8[] IS NULL OR user_id = ANY($3::int8[])
                UNION
                SELECT user_id, {dcol} FROM {dst}
                WHERE {dcol} BETWEEN $1::date AND $2::date AND ($3::int8[] IS NULL OR user_id = ANY($3::int8[]))
             ) g",
            groups = self.groups_in_range(),
        )
    }

    /// `read_day`: see [`Statements`].
    pub(super) fn read_day(&self) -> String {
        let read = self.input_read(&self.input_of("s.", "$1::int8", "$2"));
        format!("SELECT * FROM ({read}) r ORDER BY r.at, r.id")
    }

    /// `sample_groups`: see [`Statements`].
    pub(super) fn sample_groups(&self) -> String {
        format!(
            "SELECT user_id, day FROM ({}) g ORDER BY hashtext(user_id::text || '/' || day::text), user_id, day LIMIT $3",
            self.groups_in_range()
        )
    }

    /// The groups of the source's rows in `[$1, $2]`, each once.
    fn groups_in_range(&self) -> String {
        let day = &self.day;
        format!(
            "SELECT DISTINCT user_id::int8 AS user_id, {} AS day FROM {} WHERE {} AND {}",
            day.key_of(&day.of("")),
            self.src,
            day.between("", "$1::date", "$2::date"),
            capture::in_a_group(self.job, self.shape, ""),
        )
    }

    /// `replace`: see [`Statements`].
    pub(super) fn replace(&self) -> String {
        let dst = &self.dst;
        let dcol = &self.dcol;
        let changed = &self.changed;
        let output_cols = &self.output_cols;
        let upsert = |first: usize| self.upsert(first);
        {
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
        }
    }

    /// `fail`: see [`Statements`].
    pub(super) fn fail(&self) -> String {
        "WITH f AS (
                INSERT INTO runner_group_failures AS g
                    (job, user_id, day, attempts, not_before, failed, error, plugin_version, on_limit)
                VALUES ($1::text, $2::int8, $3::date, $8::int4 + 1,
                    now() + make_interval(secs => LEAST($6::float8 * power(2, $8::int4), 3600)),
                    $8::int4 + 1 >= $5::int4, $4::text, $7::text, $9::bool)
                ON CONFLICT (job, user_id, day) DO UPDATE SET
                    attempts = g.attempts + 1,
                    not_before = now() + make_interval(secs => LEAST($6::float8 * power(2, g.attempts), 3600)),
                    failed = g.attempts + 1 >= $5::int4,
                    error = excluded.error,
                    plugin_version = excluded.plugin_version,
                    on_limit = excluded.on_limit,
                    changed = false,
                    updated_at = now()
                RETURNING failed
             ), absorbed AS (
                DELETE FROM runner_changes WHERE job = $1::text AND day = $3::date AND user_id = $2::int8
             )
             SELECT failed FROM f"
            .to_string()
    }
}
