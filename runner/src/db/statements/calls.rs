//! The typed face of a job's statements: one method per statement, its
//! parameters named, its rows read by column name. Callers never see a
//! parameter position or a row width.

use std::time::Duration;

use chrono::NaiveDate;
use deadpool_postgres::{ClientWrapper, GenericClient, Object};
use tokio_postgres::Error;
use tokio_postgres::types::ToSql;

use super::Statements;
use super::claimed::Read;
use crate::db::pipelined::Pipelined;
use crate::db::sql::ColumnArray;
use crate::rows::{GroupKey, Value};

/// A group's failure, as `fail` records it.
pub struct Failure<'a> {
    pub job: &'a str,
    pub key: GroupKey,
    pub error: &'a str,
    pub max_attempts: i32,
    /// The first backoff; it doubles with each attempt, up to an hour.
    pub backoff: Duration,
    pub plugin_version: &'a str,
    /// The attempts of a failure record the group's own claim removed in
    /// this transaction (0 when the record is still there, or none is).
    pub prior_attempts: i32,
    /// It failed on a limit (memory, time, `max_group_rows`): new rows only
    /// make it larger, so its changes wait for the backoff.
    pub on_limit: bool,
}

/// One group's daily rows to write (none: its day's rows are deleted).
pub struct Daily<'a> {
    pub key: GroupKey,
    pub rows: &'a [Vec<Value>],
}

/// Daily rows of one or several groups, encoded as the write takes them:
/// one typed array per output column.
pub struct Encoded {
    users: Vec<i64>,
    days: Vec<NaiveDate>,
    /// The group (1-based) of each daily row.
    group_of: Vec<i64>,
    columns: Vec<ColumnArray>,
}

impl Encoded {
    /// Groups written.
    pub fn groups(&self) -> usize {
        self.users.len()
    }
}

/// A group key read by column name (`user_id`, `day`); `None` for a row
/// without one.
pub fn group_key(row: &tokio_postgres::Row) -> Option<GroupKey> {
    Some(GroupKey { user_id: row.try_get("user_id").ok()?, day: row.try_get("day").ok()? })
}

impl Statements {
    /// Up to `limit` due groups, oldest change first (failures whose
    /// backoff is over first); keys before the frozen horizon (today in
    /// `zone` less `frozen_days`) are dropped by the same statement.
    pub async fn peek(
        &self,
        client: &ClientWrapper,
        job: &str,
        limit: i64,
        frozen_days: Option<i32>,
        zone: &str,
    ) -> Result<Vec<GroupKey>, Error> {
        let statement = client.prepare_cached(&self.peek).await?;
        let rows = client.query(&statement, &[&job, &limit, &frozen_days, &zone]).await?;
        Ok(rows.iter().filter_map(group_key).collect())
    }

    /// Opens a transaction on `client` with the statement that locks the
    /// groups of `keys`, takes their queued keys and reads their input (one
    /// group: `claim`; several: `claim_many`). The transaction is open even
    /// if the statement failed; `Err` is a lost connection.
    pub async fn claim(
        &self,
        client: Object,
        job: &str,
        target: &str,
        keys: &[GroupKey],
    ) -> Result<(Pipelined, Result<Read, Error>), Error> {
        let (tx, rows) = if let [key] = keys {
            let statement = client.prepare_cached(&self.claim).await?;
            Pipelined::begin_with(client, &statement, &[&key.user_id, &key.day, &target, &job]).await?
        } else {
            let statement = client.prepare_cached(&self.claim_many).await?;
            let users: Vec<i64> = keys.iter().map(|k| k.user_id).collect();
            let days: Vec<NaiveDate> = keys.iter().map(|k| k.day).collect();
            Pipelined::begin_with(client, &statement, &[&users, &days, &target, &job]).await?
        };
        Ok((tx, rows.map(Read::new)))
    }

    /// One group's input (as a claim reads it), read only: no lock, no claim.
    pub async fn read_day(&self, client: &impl GenericClient, key: GroupKey) -> Result<Read, Error> {
        let statement = client.prepare_cached(&self.read_day).await?;
        Ok(Read::new(client.query(&statement, &[&key.user_id, &key.day]).await?))
    }

    /// Whether two jobs' plugins read a day with the same statement.
    pub fn reads_like(&self, other: &Statements) -> bool {
        self.read_day == other.read_day
    }

    /// Records a group's failure (one more attempt and a backoff, its
    /// queued keys moved into the record); whether it is now `failed`.
    pub async fn fail(&self, client: &ClientWrapper, f: &Failure<'_>) -> Result<bool, Error> {
        let statement = client.prepare_cached(&self.fail).await?;
        let backoff = f.backoff.as_secs_f64();
        let row = client
            .query_one(
                &statement,
                &[
                    &f.job,
                    &f.key.user_id,
                    &f.key.day,
                    &f.error,
                    &f.max_attempts,
                    &backoff,
                    &f.plugin_version,
                    &f.prior_attempts,
                    &f.on_limit,
                ],
            )
            .await?;
        row.try_get("failed")
    }

    /// Encodes groups' daily rows for [`Statements::commit_write`]; an
    /// error names a value that does not fit its declared column type.
    pub fn encode(&self, groups: &[Daily<'_>]) -> Result<Encoded, String> {
        let rows: Vec<&[Value]> = groups.iter().flat_map(|g| g.rows.iter().map(Vec::as_slice)).collect();
        let columns = self
            .output
            .iter()
            .enumerate()
            .map(|(i, &kind)| ColumnArray::collect(kind, &rows, i))
            .collect::<Result<_, _>>()?;
        let group_of =
            groups.iter().enumerate().flat_map(|(i, g)| std::iter::repeat_n(i as i64 + 1, g.rows.len())).collect();
        Ok(Encoded {
            users: groups.iter().map(|g| g.key.user_id).collect(),
            days: groups.iter().map(|g| g.key.day).collect(),
            group_of,
            columns,
        })
    }

    /// Makes each group's daily rows exactly the encoded ones, written by
    /// `plugin_version`, and commits (the write and `COMMIT` in one round
    /// trip; with nothing to write, only `COMMIT`). The statement is prepared
    /// inside the transaction: a daily table that cannot take it (a lock
    /// held, a column gone) fails the write like the write itself. Returns
    /// the connection and the rows the final delete removed, or the
    /// server's refusal (then everything is rolled back); `Err` is a lost
    /// connection.
    pub async fn commit_write(
        &self,
        tx: Pipelined,
        plugin_version: &str,
        daily: &Encoded,
    ) -> Result<(Object, Result<u64, Error>), Error> {
        if daily.groups() == 0 {
            let (client, committed) = tx.commit_keeping().await;
            return Ok((client, committed.map(|()| 0)));
        }
        let one = daily.groups() == 1;
        let statement = match tx.client().prepare_cached(if one { &self.replace } else { &self.replace_many }).await {
            Ok(statement) => statement,
            Err(e) => return Ok((tx.rollback_keeping().await?, Err(e))),
        };
        let versions: Vec<&str> = vec![plugin_version; daily.groups()];
        let mut params: Vec<&(dyn ToSql + Sync)> = if one {
            vec![&daily.users[0], &daily.days[0], &plugin_version]
        } else {
            vec![&daily.users, &daily.days, &versions, &daily.group_of]
        };
        params.extend(daily.columns.iter().map(ColumnArray::as_param));
        Ok(tx.commit_with(&statement, &params).await)
    }

    /// Users with input or daily rows on `day`, after `after_user`, at
    /// most `limit`, in order (recompute); only `users` when given.
    pub async fn day_users(
        &self,
        client: &impl GenericClient,
        day: NaiveDate,
        users: Option<&[i64]>,
        after_user: i64,
        limit: i64,
    ) -> Result<Vec<i64>, Error> {
        let statement = client.prepare_cached(&self.day_users).await?;
        let rows = client.query(&statement, &[&day, &users, &after_user, &limit]).await?;
        rows.iter().map(|r| r.try_get("user_id")).collect()
    }

    /// Groups in a range of days (recompute); only `users`' when given.
    pub async fn count_groups(
        &self,
        client: &impl GenericClient,
        from: NaiveDate,
        to: NaiveDate,
        users: Option<&[i64]>,
    ) -> Result<u64, Error> {
        let statement = client.prepare_cached(&self.count_groups).await?;
        let n: i64 = client.query_one(&statement, &[&from, &to, &users]).await?.try_get("groups")?;
        Ok(n as u64)
    }

    /// Up to `limit` groups with input in a range, a spread-out sample in a
    /// fixed order (`plugin diff`).
    pub async fn sample_groups(
        &self,
        client: &impl GenericClient,
        from: NaiveDate,
        to: NaiveDate,
        limit: i64,
    ) -> Result<Vec<GroupKey>, Error> {
        let statement = client.prepare_cached(&self.sample_groups).await?;
        Ok(client.query(&statement, &[&from, &to, &limit]).await?.iter().filter_map(group_key).collect())
    }
}
