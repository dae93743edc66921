//! A job and its swappable state: the config, the live plugin and the SQL
//! built from both (identifiers validated and quoted), and an optional
//! shadow candidate. Workers take a snapshot per group, so a swap never
//! changes a group in flight; the next group sees the new state.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config;
use crate::db::schema::SourceShape;
use crate::plugin::{Limits, Plugin};

/// A job: its name, its current state, and what wakes its loop.
pub struct Job {
    pub name: String,
    state: RwLock<Arc<JobState>>,
    /// Woken when rows arrive (NOTIFY) or the state changes.
    pub wake: Arc<Notify>,
    /// Why the last plugin change was refused, if it was.
    pub last_reload_error: Mutex<Option<String>>,
    /// Why the shadow candidate file now in the folder was refused, if it
    /// was: such a file is never promoted.
    candidate_error: Mutex<Option<String>>,
    /// Raw rows completed since start (for progress displays).
    pub rows_completed: AtomicU64,
    /// What keeps the job from working, if anything (`/ready`, `status`).
    pub health: Mutex<Health>,
    /// The last minutes of work, for the console.
    pub activity: Mutex<Activity>,
    /// The loop has a batch in hand (background recomputes wait for it).
    pub busy: std::sync::atomic::AtomicBool,
}

/// Recent work of a job: rows completed per 10 s over the last 10 minutes,
/// and the last group times.
#[derive(Debug, Default)]
pub struct Activity {
    /// (start of the 10 s slot, rows completed in it), oldest first.
    slots: std::collections::VecDeque<(std::time::Instant, u64)>,
    groups: std::collections::VecDeque<Duration>,
}

impl Activity {
    const SLOT: Duration = Duration::from_secs(10);
    const SLOTS: usize = 60;
    const GROUPS: usize = 2000;

    /// Records a group that completed `rows` raw rows in `took`.
    pub fn record(&mut self, rows: u64, took: Duration) {
        let now = std::time::Instant::now();
        match self.slots.back_mut() {
            Some((start, n)) if now.duration_since(*start) < Self::SLOT => *n += rows,
            _ => self.slots.push_back((now, rows)),
        }
        while self.slots.len() > Self::SLOTS {
            self.slots.pop_front();
        }
        self.groups.push_back(took);
        while self.groups.len() > Self::GROUPS {
            self.groups.pop_front();
        }
    }

    /// Rows completed per 10 s slot over the last 10 minutes, oldest first
    /// (empty slots included, so the chart's time axis is even).
    pub fn rows_per_slot(&self) -> Vec<u64> {
        let now = std::time::Instant::now();
        let mut out = vec![0; Self::SLOTS];
        for (start, n) in &self.slots {
            let age = (now.duration_since(*start).as_secs() / Self::SLOT.as_secs()) as usize;
            if age < Self::SLOTS {
                out[Self::SLOTS - 1 - age] += n;
            }
        }
        out
    }

    /// The 95th percentile of the last groups' times.
    pub fn p95(&self) -> Option<Duration> {
        let mut times: Vec<Duration> = self.groups.iter().copied().collect();
        times.sort_unstable();
        times.get((times.len() * 95 / 100).min(times.len().saturating_sub(1))).copied()
    }
}

/// Troubles of a job's loop that make the runner not ready.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Health {
    /// The loop ended unexpectedly and waits to be restarted: why.
    pub loop_down: Option<String>,
    /// Its groups keep hitting lock or statement timeouts (or conflicts)
    /// with none completing in between: the last such error.
    pub timing_out: Option<String>,
    /// The live plugin was not verified by a key trusted now (keys were
    /// turned on or rotated while it ran): which plugin and why.
    pub unverified: Option<String>,
    /// Groups deferred since the last completed one.
    #[serde(skip)]
    pub deferred_in_a_row: u32,
}

/// Deferred groups in a row, with none completed, that make a job "timing out".
pub const TIMING_OUT_AFTER: u32 = 3;

impl Health {
    /// One sentence per trouble.
    pub fn problems(&self) -> Vec<String> {
        let down = self.loop_down.iter().map(|r| format!("its loop stopped and is restarting: {r}"));
        let slow = self.timing_out.iter().map(|r| format!("its groups keep timing out: {r}"));
        let unverified = self.unverified.iter().map(|r| format!("it runs unverified code: {r}"));
        down.chain(slow).chain(unverified).collect()
    }
}

/// One consistent view of a job.
#[derive(Clone)]
pub struct JobState {
    pub config: config::Job,
    /// Fallback wake-up of the job's loop.
    pub poll_interval: Duration,
    pub limits: Limits,
    /// `None`: the job is paused (disabled, or its plugin file is gone).
    pub live: Option<Live>,
    /// A shadow candidate run beside the live plugin, writing nothing.
    pub candidate: Option<Arc<Plugin>>,
    /// Paused by an operator (console or HTTP): claims nothing until resumed.
    pub operator_paused: bool,
}

/// A live plugin and the SQL built for its columns and the raw table's shape.
#[derive(Clone)]
pub struct Live {
    pub plugin: Arc<Plugin>,
    pub shape: SourceShape,
    pub sql: Statements,
}

impl Live {
    pub fn new(config: &config::Job, shape: SourceShape, plugin: Arc<Plugin>) -> Self {
        let sql = Statements::new(config, &shape, &plugin);
        Live { plugin, shape, sql }
    }

    /// The same tables with another plugin.
    pub fn with_plugin(&self, config: &config::Job, plugin: Arc<Plugin>) -> Self {
        Live::new(config, self.shape.clone(), plugin)
    }
}

impl JobState {
    pub fn new(config: &config::Job, poll_interval: Duration, live: Option<(SourceShape, Arc<Plugin>)>) -> Self {
        JobState {
            limits: super::job_limits(config),
            live: live.map(|(shape, p)| Live::new(config, shape, p)),
            candidate: None,
            operator_paused: false,
            config: config.clone(),
            poll_interval,
        }
    }

    /// The live plugin when the job is enabled, not paused, and has one.
    pub fn running(&self) -> Option<&Live> {
        self.live.as_ref().filter(|_| self.config.enabled && !self.operator_paused)
    }
}

impl Job {
    pub fn new(name: &str, state: JobState) -> Self {
        Job {
            name: name.to_string(),
            state: RwLock::new(Arc::new(state)),
            wake: Arc::new(Notify::new()),
            last_reload_error: Mutex::new(None),
            candidate_error: Mutex::new(None),
            rows_completed: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            activity: Mutex::new(Activity::default()),
            busy: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Changes the job's health.
    pub fn set_health(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The job's health now.
    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Why the candidate file in the folder was refused, if it was.
    pub fn candidate_error(&self) -> Option<String> {
        self.candidate_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records (or, with `None`, clears) why the candidate file was refused.
    pub fn set_candidate_error(&self, why: Option<String>) {
        *self.candidate_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    /// The current state; cheap (an `Arc` clone under a read lock).
    pub fn current(&self) -> Arc<JobState> {
        self.state.read().expect("job state lock").clone()
    }

    /// Replaces the state with `f(current)` and wakes the job's loop.
    pub fn update(&self, f: impl FnOnce(&JobState) -> JobState) {
        {
            let mut state = self.state.write().expect("job state lock");
            *state = Arc::new(f(&state));
        }
        self.wake.notify_one();
    }
}

/// SQL text for one job. Parameters are noted per statement. Ids and users
/// are read as `bigint` and compared as `$n::int8`, whatever the integer
/// width of the table's columns (Postgres compares integer widths within
/// one index operator family, so the indexes still serve).
#[derive(Clone)]
pub struct Statements {
    /// ($1 tz, $2 limit) → (user_id, day) of a batch of due pending rows;
    /// rows whose user or timestamp is NULL are marked `failed` by the same
    /// statement and come back as a NULL group, to be skipped. Rows in a
    /// group another worker is claiming right now are skipped; the group's
    /// advisory lock in `claim` is what keeps workers and runners apart,
    /// and a group found busy rests briefly instead of being peeked again
    /// at once. (Peeking without row locks was measured: no gain in
    /// Postgres CPU within the noise, so the skip stays.)
    pub peek: String,
    /// ($1 user_id, $2 day, $3 tz, $4 target table) in one statement: takes
    /// the group's advisory lock; if it got it, claims the group's pending
    /// rows by marking them `completed` (undone by a rollback if the group
    /// fails); returns every non-failed row of the day as id, timestamp,
    /// input columns..., `claimed`, `locked`.
    pub claim: String,
    /// ($1 user_id, $2 day, $3 tz) → ids of the group's pending rows (when
    /// the claim itself failed and the failure must still be recorded).
    pub pending: String,
    /// ($1 user_id, $2 day, $3 target table) → (locked, daily rows deleted):
    /// a recomputed day whose input is gone loses its daily rows.
    pub empty_day: String,
    /// ($1 day, $2 tz, $3 users or NULL, $4 after user, $5 limit) → the
    /// users with daily rows or raw input on a day, in order (recompute).
    pub day_users: String,
    /// ($1 from, $2 tz, $3 to, $4 users or NULL) → groups in a range (recompute).
    pub count_groups: String,
    /// ($1 user_id, $2 day, $3 tz) → the day's input as `claim` returns it
    /// (id, timestamp, input columns), read only: no lock, no claim.
    pub read_day: String,
    /// ($1 from, $2 tz, $3 to, $4 limit) → up to `limit` groups with input
    /// in the range, a spread-out sample in a fixed order (`plugin diff`).
    pub sample_groups: String,
    /// ($1 user_id, $2 day, $3 plugin_version, then one array per output
    /// column): makes the group's daily rows exactly the given ones. One
    /// statement per job, whatever the number of rows (see `replace`).
    pub replace: String,
    /// ($1 ids, $2 error, $3 max_attempts, $4 backoff seconds)
    pub fail: String,
}

impl Statements {
    pub fn new(job: &config::Job, shape: &SourceShape, plugin: &Plugin) -> Self {
        let src = job.source.quoted();
        let dst = job.target.quoted();
        let ts = job.timestamp_column.quoted();
        let quote = |name: &str| format!("\"{name}\"");
        // The timestamp column as a timestamptz (`t` qualifies it), and a
        // timestamptz bound in the column's own type, so that comparisons
        // stay on the column and its index serves. A naive column holds
        // wall-clock times of `timestamp_zone` (validated: no quotes).
        let at = |t: &str| match &shape.naive_zone {
            None => format!("{t}{ts}"),
            Some(zone) => format!("({t}{ts} AT TIME ZONE '{zone}')"),
        };
        let bound = |tstz: &str| match &shape.naive_zone {
            None => tstz.to_string(),
            Some(zone) => format!("({tstz} AT TIME ZONE '{zone}')"),
        };
        let range = |t: &str, from: &str, to: &str, tz: &str| {
            format!(
                "{t}{ts} >= {} AND {t}{ts} < {}",
                bound(&format!("({from}::date::timestamp AT TIME ZONE {tz})")),
                bound(&format!("(({to}::date + 1)::timestamp AT TIME ZONE {tz})"))
            )
        };
        // The group's rows ($1 user, $2 day, $3 time zone) as an index range
        // on (user_id, timestamp).
        let day_range = |t: &str| format!("{t}user_id = $1::int8 AND {}", range(t, "$2", "$2", "$3"));
        let output_cols: Vec<String> = plugin.description.output.iter().map(|c| quote(&c.name)).collect();
        // The lock key is (target table, user, day), hashed by Postgres so
        // every runner computes the same one.
        let lock = |table: &str| {
            format!(
                "pg_try_advisory_xact_lock(hashtextextended({table}::text || '/' || $1::bigint || '/' || $2::date, 0))"
            )
        };
        Statements {
            peek: format!(
                "WITH batch AS (
                    SELECT id, user_id, {ts} FROM {src}
                    WHERE aggregation_status = 'pending'
                      AND (aggregation_not_before IS NULL OR aggregation_not_before <= now())
                    ORDER BY id LIMIT $2
                    FOR UPDATE SKIP LOCKED
                 ), no_key AS (
                    UPDATE {src} s SET aggregation_status = 'failed', aggregation_attempts = s.aggregation_attempts + 1,
                        aggregation_error = CASE WHEN b.user_id IS NULL THEN 'user_id is NULL: the row belongs to no user'
                            ELSE '{name} is NULL: the row belongs to no day' END
                    FROM batch b WHERE s.id = b.id AND (b.user_id IS NULL OR b.{ts} IS NULL)
                      AND s.aggregation_status = 'pending'
                 )
                 SELECT user_id::int8, ({at} AT TIME ZONE $1)::date AS day FROM batch
                 GROUP BY 1, 2 ORDER BY min(id)",
                name = job.timestamp_column,
                at = at(""),
            ),
            // The select sees the day as it was before the claim, which is
            // what the input needs.
            claim: format!(
                "WITH locked AS (
                    SELECT {lock} AS ok
                 ), claimed AS (
                    UPDATE {src} SET aggregation_status = 'completed', aggregation_error = NULL
                    WHERE {claim_range} AND aggregation_status = 'pending' AND (SELECT ok FROM locked)
                    RETURNING id
                 )
                 SELECT s.id::int8, {at_s}{input_cols_s}, c.id IS NOT NULL, (SELECT ok FROM locked)
                 FROM {src} s LEFT JOIN claimed c ON c.id = s.id
                 WHERE {read_range} AND s.aggregation_status <> 'failed'
                 ORDER BY s.{ts}, s.id",
                lock = lock("$4"),
                at_s = at("s."),
                input_cols_s = plugin.description.input.iter().map(|c| format!(", s.{}", quote(&c.name))).collect::<String>(),
                claim_range = day_range(""),
                read_range = day_range("s."),
            ),
            pending: format!("SELECT id::int8 FROM {src} WHERE {} AND aggregation_status = 'pending'", day_range("")),
            empty_day: format!(
                "WITH locked AS (SELECT {lock} AS ok),
                 gone AS (DELETE FROM {dst} WHERE user_id = $1::int8 AND day = $2 AND (SELECT ok FROM locked) RETURNING 1)
                 SELECT (SELECT ok FROM locked), (SELECT count(*) FROM gone)",
                lock = lock("$3"),
            ),
            day_users: format!(
                "SELECT user_id::int8 FROM {src}
                 WHERE {range} AND aggregation_status <> 'failed' AND user_id IS NOT NULL
                   AND ($3::int8[] IS NULL OR user_id = ANY($3::int8[])) AND user_id > $4::int8
                 UNION
                 SELECT user_id::int8 FROM {dst}
                 WHERE day = $1::date AND ($3::int8[] IS NULL OR user_id = ANY($3::int8[])) AND user_id > $4::int8
                 ORDER BY 1 LIMIT $5",
                range = range("", "$1", "$1", "$2"),
            ),
            count_groups: format!(
                "SELECT count(*) FROM (
                    SELECT user_id, ({at} AT TIME ZONE $2)::date FROM {src}
                    WHERE {range} AND aggregation_status <> 'failed' AND user_id IS NOT NULL
                      AND ($4::int8[] IS NULL OR user_id = ANY($4::int8[]))
                    UNION
                    SELECT user_id, day FROM {dst}
                    WHERE day BETWEEN $1::date AND $3::date AND ($4::int8[] IS NULL OR user_id = ANY($4::int8[]))
                 ) g",
                at = at(""),
                range = range("", "$1", "$3", "$2"),
            ),
            read_day: format!(
                "SELECT s.id::int8, {at_s}{input_cols_s} FROM {src} s
                 WHERE {read_range} AND s.aggregation_status <> 'failed'
                 ORDER BY s.{ts}, s.id",
                at_s = at("s."),
                input_cols_s = plugin.description.input.iter().map(|c| format!(", s.{}", quote(&c.name))).collect::<String>(),
                read_range = day_range("s."),
            ),
            sample_groups: format!(
                "SELECT user_id, day FROM (
                    SELECT DISTINCT user_id::int8 AS user_id, ({at} AT TIME ZONE $2)::date AS day FROM {src}
                    WHERE {range} AND aggregation_status <> 'failed' AND user_id IS NOT NULL
                 ) g ORDER BY hashtext(user_id::text || '/' || day::text), user_id, day LIMIT $4",
                at = at(""),
                range = range("", "$1", "$3", "$2"),
            ),
            replace: {
                let desc = &plugin.description;
                let key: Vec<String> = desc.key.iter().map(|k| quote(k)).collect();
                let conflict: Vec<&str> = ["user_id", "day"].into_iter().chain(key.iter().map(String::as_str)).collect();
                let set: Vec<String> = ["plugin_version".to_string(), "updated_at".to_string()]
                    .into_iter()
                    .chain(desc.output.iter().filter(|c| !desc.key.contains(&c.name)).map(|c| quote(&c.name)))
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                let arrays: Vec<String> = desc
                    .output
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("${}::{}", i + 4, crate::db::sql::ColumnArray::sql_type(c.kind)))
                    .collect();
                // With no rows, the upsert does nothing and the delete takes the whole day.
                let stale = if key.is_empty() {
                    "NOT EXISTS (SELECT 1 FROM up)".to_string()
                } else {
                    format!("({k}) NOT IN (SELECT {k} FROM up)", k = key.join(", "))
                };
                format!(
                    "WITH up AS (
                        INSERT INTO {dst} (user_id, day, plugin_version, updated_at, {cols})
                        SELECT $1::int8, $2::date, $3::text, clock_timestamp(), {cols}
                        FROM unnest({arrays}) AS v({cols})
                        ON CONFLICT ({conflict}) DO UPDATE SET {set}
                        RETURNING {returning}
                     )
                     DELETE FROM {dst} WHERE user_id = $1::int8 AND day = $2 AND {stale}",
                    cols = output_cols.join(", "),
                    arrays = arrays.join(", "),
                    conflict = conflict.join(", "),
                    set = set.join(", "),
                    returning = if key.is_empty() { "1".to_string() } else { key.join(", ") },
                )
            },
            fail: format!(
                "UPDATE {src} SET
                    aggregation_attempts = aggregation_attempts + 1,
                    aggregation_error = $2,
                    aggregation_status = CASE WHEN aggregation_attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END,
                    aggregation_not_before = now() + make_interval(secs => LEAST($4 * power(2, aggregation_attempts), 3600))
                 WHERE id = ANY($1::int8[]) AND aggregation_status = 'pending'
                 RETURNING aggregation_status"
            ),
        }
    }
}
