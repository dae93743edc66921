//! `runner_shadow_diffs`: the groups on which a shadow candidate's output
//! differed from the live plugin's, recorded for review before promotion.

use tokio_postgres::{Error, GenericClient};

use crate::rows::GroupKey;

/// One difference, as `plugin diff` and the console show it.
pub struct Difference<'a> {
    pub job: &'a str,
    pub key: GroupKey,
    pub live_version: &'a str,
    pub candidate_version: &'a str,
    /// Rows only the live plugin wrote, as JSON.
    pub live_only: serde_json::Value,
    /// Rows only the candidate wrote, as JSON.
    pub candidate_only: serde_json::Value,
    pub candidate_error: Option<&'a str>,
}

/// Records a difference (in the group's transaction).
pub async fn record(client: &deadpool_postgres::ClientWrapper, d: &Difference<'_>) -> Result<(), Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO runner_shadow_diffs (job, user_id, day, live_version, candidate_version, live_only, candidate_only, candidate_error)
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8)",
        )
        .await?;
    let (live_only, candidate_only) = (d.live_only.to_string(), d.candidate_only.to_string());
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &d.job,
        &d.key.user_id,
        &d.key.day,
        &d.live_version,
        &d.candidate_version,
        &live_only,
        &candidate_only,
        &d.candidate_error,
    ];
    client.execute(&statement, &params).await.map(drop)
}

/// Differences recorded for a job's candidate version.
pub async fn count(client: &impl GenericClient, job: &str, candidate_version: &str) -> Result<i64, Error> {
    let sql = "SELECT count(*) AS differences FROM runner_shadow_diffs WHERE job = $1 AND candidate_version = $2";
    client.query_one(sql, &[&job, &candidate_version]).await?.try_get("differences")
}
