//! What change capture costs the application: API-style ingest (device
//! syncs of 20 rows an `INSERT`, several producers at once, as fast as they
//! go) with the change triggers on, over the same ingest with them off.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Producers at once.
const PRODUCERS: usize = 4;
/// Rows a sync.
const ROWS: i32 = 20;

/// Rows a second with the triggers on, then off (on `url`, a copy whose
/// contents do not matter: rows go to users of their own).
pub async fn measure(url: &str, seconds: f64) -> anyhow::Result<(f64, f64)> {
    let admin = crate::connect(url).await?;
    let on = rate(url, seconds, 10_000_000).await?;
    admin.batch_execute("ALTER TABLE vitals_raw DISABLE TRIGGER USER").await?;
    let off = rate(url, seconds, 20_000_000).await;
    admin.batch_execute("ALTER TABLE vitals_raw ENABLE TRIGGER USER").await?;
    Ok((on, off?))
}

pub(crate) async fn rate(url: &str, seconds: f64, first_user: i64) -> anyhow::Result<f64> {
    let syncs = Arc::new(AtomicI64::new(0));
    let started = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..PRODUCERS {
        let (url, syncs) = (url.to_string(), syncs.clone());
        producers.push(tokio::spawn(async move {
            let client = crate::connect(&url).await?;
            let insert = client
                .prepare(
                    "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit)
                     SELECT $1::int8, now() - g * interval '1 minute', 'heart_rate', 60 + g % 40, 'bpm'
                     FROM generate_series(1, $2::int) g",
                )
                .await?;
            while started.elapsed() < Duration::from_secs_f64(seconds) {
                let user = first_user + syncs.fetch_add(1, Ordering::Relaxed);
                client.execute(&insert, &[&user, &ROWS]).await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in producers {
        p.await??;
    }
    Ok((syncs.load(Ordering::Relaxed) * i64::from(ROWS)) as f64 / started.elapsed().as_secs_f64())
}
