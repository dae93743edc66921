//! Every statement of a job's pipeline, built once per live plugin from the
//! job's config, the source's shape and the plugin's columns (identifiers
//! validated and quoted), with its parameters noted. The source table is
//! only ever read: the queue is `runner_changes` (filled by the triggers
//! of `db::capture`) and failures live in `runner_group_failures`.
//!
//! Ids and users are read as `bigint` and compared as `$n::int8`, whatever
//! the integer width of the table's columns (Postgres compares integer
//! widths within one index operator family, so the indexes still serve).

mod build;
mod calls;
mod claimed;

pub use calls::{Daily, Encoded, Failure, group_key};
pub use claimed::{Claimed, Read};

use crate::config;
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
    /// failure record (`fail`), and so do the new keys of a group held back
    /// after failing on a limit (`changed`: due when its backoff ends), so
    /// the queue holds only work to do now — which is what lets the
    /// triggers notify only into an empty queue.
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
    /// own claim removed, $9 whether it failed on a limit) → whether the
    /// group is now `failed`: one more attempt and a backoff (doubling, at
    /// most an hour), or `failed` at `max_attempts`. A group that failed on
    /// a limit is held back: its new changes wait for the backoff (`peek`). The group's queued keys move into the record
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
        let parts = build::Parts::new(job, shape, description);
        Statements {
            peek: parts.peek(),
            claim: parts.claim(),
            claim_many: parts.claim_many(),
            replace_many: parts.replace_many(),
            day_users: parts.day_users(),
            count_groups: parts.count_groups(),
            read_day: parts.read_day(),
            sample_groups: parts.sample_groups(),
            replace: parts.replace(),
            fail: parts.fail(),
            max_rows: job.max_group_rows,
            output: description.output.iter().map(|c| c.kind).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
