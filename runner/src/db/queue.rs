//! The queue as the database sees it: rows per status, the oldest pending
//! row, and the most common recent errors of a job's raw table.

use tokio_postgres::GenericClient;

use crate::config;

/// Rows of one raw table by `aggregation_status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Queue {
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
    /// Seconds since the timestamp of the oldest pending row.
    pub oldest_pending_seconds: Option<f64>,
}

/// Counts a job's raw rows per status.
pub async fn queue(client: &impl GenericClient, job: &config::Job) -> Result<Queue, tokio_postgres::Error> {
    let (src, ts) = (job.source.quoted(), job.timestamp_column.quoted());
    let rows = client
        .query(
            &format!(
                "SELECT aggregation_status, count(*),
                        extract(epoch FROM now() - min({ts}))::float8
                 FROM {src} GROUP BY 1"
            ),
            &[],
        )
        .await?;
    let mut q = Queue::default();
    for r in rows {
        let n: i64 = r.get(1);
        match r.get::<_, &str>(0) {
            "pending" => {
                q.pending = n;
                q.oldest_pending_seconds = r.get(2);
            }
            "processing" => q.processing = n,
            "completed" => q.completed = n,
            "failed" => q.failed = n,
            _ => {}
        }
    }
    Ok(q)
}

/// The `n` most common errors among failed and retrying rows, with counts.
pub async fn top_errors(
    client: &impl GenericClient,
    job: &config::Job,
    n: i64,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let src = job.source.quoted();
    let rows = client
        .query(
            &format!(
                "SELECT aggregation_error, count(*) FROM {src}
                 WHERE aggregation_error IS NOT NULL AND aggregation_status IN ('pending', 'failed')
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1"
            ),
            &[&n],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
