//! Recompute runs as the database keeps them: `runner_recompute_progress`
//! (where a run is, so an interrupted one resumes) and
//! `runner_recompute_failures` (its groups that failed, retried by any
//! rerun). A run is keyed by job, range, users and plugin version.

use chrono::NaiveDate;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient, Row};

use crate::rows::GroupKey;

/// The key of a recompute run.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub job: &'a str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The `--users` filter as text, or `after-deploy` for background runs.
    pub users: &'a str,
    pub plugin_version: &'a str,
}

/// Where a run is.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The last day and user done, if any.
    pub last: Option<(NaiveDate, i64)>,
    pub groups_done: u64,
    pub finished: bool,
}

/// A run recorded for a job (`recompute_after_deploy`), latest first.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub plugin_version: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub groups_done: u64,
    pub finished: bool,
}

/// The key's columns, `$1` to `$5`.
const WHERE: &str = "job = $1 AND from_day = $2 AND to_day = $3 AND users = $4 AND plugin_version = $5";

impl Run<'_> {
    /// The key as the first five parameters.
    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.job, &self.from, &self.to, &self.users, &self.plugin_version]
    }

    /// The key, then `more` from `$6` on.
    fn params_and<'a>(&'a self, more: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        self.params().into_iter().chain(more.iter().copied()).collect()
    }

    /// Records the run unless it is recorded already.
    pub async fn start(&self, client: &impl GenericClient) -> Result<(), Error> {
        let sql = "INSERT INTO runner_recompute_progress (job, from_day, to_day, users, plugin_version)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
        client.execute(sql, &self.params()).await.map(drop)
    }

    /// Forgets the run: its progress and its failures (`--restart`).
    pub async fn forget(&self, client: &impl GenericClient) -> Result<(), Error> {
        client.execute(&format!("DELETE FROM runner_recompute_progress WHERE {WHERE}"), &self.params()).await?;
        client.execute(&format!("DELETE FROM runner_recompute_failures WHERE {WHERE}"), &self.params()).await?;
        Ok(())
    }

    /// Where the run is (it must be started).
    pub async fn saved(&self, client: &impl GenericClient) -> Result<Saved, Error> {
        let sql = format!(
            "SELECT last_day, last_user, groups_done, finished_at IS NOT NULL AS finished
             FROM runner_recompute_progress WHERE {WHERE}"
        );
        let row = client.query_one(&sql, &self.params()).await?;
        let last = match (row.try_get("last_day")?, row.try_get("last_user")?) {
            (Some(day), Some(user)) => Some((day, user)),
            _ => None,
        };
        Ok(Saved {
            last,
            groups_done: row.try_get::<_, i64>("groups_done")? as u64,
            finished: row.try_get("finished")?,
        })
    }

    /// Moves the run on to `last` (day, user), with its counts so far.
    pub async fn advance(
        &self,
        client: &impl GenericClient,
        last: (NaiveDate, i64),
        done: u64,
        failed: u64,
    ) -> Result<(), Error> {
        let sql = format!(
            "UPDATE runner_recompute_progress SET last_day = $6, last_user = $7, groups_done = $8,
                groups_failed = $9, updated_at = now() WHERE {WHERE}"
        );
        let (done, failed) = (done as i64, failed as i64);
        let params = self.params_and(&[&last.0, &last.1, &done, &failed]);
        client.execute(&sql, &params).await.map(drop)
    }

    /// Moves the run on to `next` (day, user) and adds `added` groups, only
    /// if it is still where this runner saw it (`seen`): a compare-and-set,
    /// so of several runners one moves it. Whether this one did.
    pub async fn advance_from(
        &self,
        client: &impl GenericClient,
        seen: Option<(NaiveDate, i64)>,
        next: (NaiveDate, i64),
        added: u64,
    ) -> Result<bool, Error> {
        let sql = format!(
            "UPDATE runner_recompute_progress SET last_day = $6, last_user = $7,
                groups_done = groups_done + $8, updated_at = now()
             WHERE {WHERE} AND last_day IS NOT DISTINCT FROM $9 AND last_user IS NOT DISTINCT FROM $10"
        );
        let (seen_day, seen_user) = (seen.map(|s| s.0), seen.map(|s| s.1));
        let added = added as i64;
        let params = self.params_and(&[&next.0, &next.1, &added, &seen_day, &seen_user]);
        Ok(client.execute(&sql, &params).await? == 1)
    }

    /// Marks the run finished, if it is not yet; whether this call did.
    pub async fn finish(&self, client: &impl GenericClient) -> Result<bool, Error> {
        let sql = format!(
            "UPDATE runner_recompute_progress SET finished_at = now(), updated_at = now()
             WHERE {WHERE} AND finished_at IS NULL"
        );
        Ok(client.execute(&sql, &self.params()).await? == 1)
    }

    /// The groups of the run that failed, in order.
    pub async fn failures(&self, client: &impl GenericClient) -> Result<Vec<GroupKey>, Error> {
        let sql = format!("SELECT user_id, day FROM runner_recompute_failures WHERE {WHERE} ORDER BY day, user_id");
        Ok(client.query(&sql, &self.params()).await?.iter().filter_map(crate::db::statements::group_key).collect())
    }

    /// Records (or updates) a group's failure in the run.
    pub async fn failed(&self, client: &impl GenericClient, key: GroupKey, error: &str) -> Result<(), Error> {
        let sql =
            "INSERT INTO runner_recompute_failures (job, from_day, to_day, users, plugin_version, user_id, day, error)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (job, from_day, to_day, users, plugin_version, day, user_id)
                   DO UPDATE SET error = excluded.error";
        let params = self.params_and(&[&key.user_id, &key.day, &error]);
        client.execute(sql, &params).await.map(drop)
    }

    /// Forgets a group's failure in the run (it was done since).
    pub async fn done(&self, client: &impl GenericClient, key: GroupKey) -> Result<(), Error> {
        let sql = format!("DELETE FROM runner_recompute_failures WHERE {WHERE} AND user_id = $6 AND day = $7");
        let params = self.params_and(&[&key.user_id, &key.day]);
        client.execute(&sql, &params).await.map(drop)
    }

    /// Records the run as finished already (a baseline: nothing to redo).
    pub async fn record_finished(&self, client: &impl GenericClient) -> Result<(), Error> {
        let sql = "INSERT INTO runner_recompute_progress (job, from_day, to_day, users, plugin_version, finished_at)
                   VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING";
        client.execute(sql, &self.params()).await.map(drop)
    }
}

/// The runs of `job` for `users` (the filter's text), latest first.
pub async fn runs(client: &impl GenericClient, job: &str, users: &str) -> Result<Vec<Recorded>, Error> {
    let sql = "SELECT plugin_version, from_day, to_day, groups_done, finished_at IS NOT NULL AS finished
               FROM runner_recompute_progress WHERE job = $1 AND users = $2 ORDER BY updated_at DESC";
    client.query(sql, &[&job, &users]).await?.iter().map(recorded).collect()
}

fn recorded(row: &Row) -> Result<Recorded, Error> {
    Ok(Recorded {
        plugin_version: row.try_get("plugin_version")?,
        from: row.try_get("from_day")?,
        to: row.try_get("to_day")?,
        groups_done: row.try_get::<_, i64>("groups_done")? as u64,
        finished: row.try_get("finished")?,
    })
}
