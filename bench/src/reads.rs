//! The API read load: concurrent clients running a small indexed query
//! through their own pool, as the app's API does, with latencies recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use runner::pipeline::latency::Histogram;
use tokio_postgres::NoTls;

#[derive(Debug, Default)]
pub struct Reads {
    pub latency: Histogram,
    pub timeouts: u64,
    pub errors: u64,
}

/// `run` for `tokio::spawn`.
pub async fn run_owned(
    url: String,
    clients: usize,
    users: i32,
    days: i32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Reads> {
    run(&url, clients, users, days, stop).await
}

/// Runs `clients` readers until `stop`; each picks a user and day and reads
/// that day's daily rows by primary key.
pub async fn run(url: &str, clients: usize, users: i32, days: i32, stop: Arc<AtomicBool>) -> anyhow::Result<Reads> {
    let mut pg: tokio_postgres::Config = url.parse()?;
    pg.application_name("api");
    let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
        .max_size(clients)
        .wait_timeout(Some(Duration::from_secs(1)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(Runtime::Tokio1)
        .build()?;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = Reads::default();
                // A small LCG: reproducible, and no dependency for it.
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ c as u64;
                while !stop.load(Ordering::Relaxed) {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    let user = 1 + (state >> 33) as i64 % i64::from(users);
                    let day = (state >> 13) as i32 % days;
                    let started = Instant::now();
                    let result = async {
                        let client = pool.get().await?;
                        let statement = client
                            .prepare_cached(
                                "SELECT metric, avg_value FROM vitals_daily
                                 WHERE user_id = $1 AND day = date '2024-01-01' + $2::int",
                            )
                            .await?;
                        client.query(&statement, &[&user, &day]).await?;
                        anyhow::Ok(())
                    }
                    .await;
                    match result {
                        Ok(()) => reads.latency.record(started.elapsed()),
                        Err(e)
                            if e.downcast_ref::<deadpool_postgres::PoolError>()
                                .is_some_and(|p| matches!(p, deadpool_postgres::PoolError::Timeout(_))) =>
                        {
                            reads.timeouts += 1
                        }
                        Err(_) => reads.errors += 1,
                    }
                }
                reads
            })
        })
        .collect();
    let mut all = Reads::default();
    for t in tasks {
        let r = t.await?;
        all.latency.merge(&r.latency);
        all.timeouts += r.timeouts;
        all.errors += r.errors;
    }
    pool.close();
    Ok(all)
}
