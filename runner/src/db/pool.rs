//! The runner's bounded connection pool: a hard cap, timeouts on every wait,
//! and status figures for the logs.

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use crate::config;

/// Builds the pool from `[database]`. Nothing connects until first use.
pub fn build(db: &config::Database) -> anyhow::Result<Pool> {
    let mut pg = pg_config(&db.url)?;
    pg.connect_timeout(db.connect_timeout);
    let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(db.max_connections)
        .wait_timeout(Some(db.wait_timeout))
        .create_timeout(Some(db.connect_timeout))
        .recycle_timeout(Some(db.recycle_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}

/// Parses a connection URL, without ever echoing it (it may hold a password).
/// Sessions are named `runner` in `pg_stat_activity` unless the URL says otherwise.
pub fn pg_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg = url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| anyhow::anyhow!("[database] url (or DATABASE_URL) is not a valid connection string: {e}"))?;
    if pg.get_application_name().is_none() {
        pg.application_name("runner");
    }
    Ok(pg)
}

/// `user@host:port/dbname`, never the password: safe for logs and errors.
pub fn describe(url: &str) -> String {
    let Ok(pg) = pg_config(url) else { return "<invalid url>".into() };
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{}@{host}:{port}/{}", pg.get_user().unwrap_or("?"), pg.get_dbname().unwrap_or("?"))
}

/// Waits until the database answers, retrying with backoff; the final error
/// says where it tried to connect and what went wrong.
pub async fn wait_until_reachable(pool: &Pool, url: &str, attempts: u32) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=attempts {
        let result = async { pool.get().await?.simple_query("SELECT 1").await.map(drop).map_err(anyhow::Error::from) };
        match result.await {
            Ok(()) => return Ok(()),
            Err(e) if attempt == attempts => {
                return Err(anyhow::anyhow!(
                    "cannot reach the database {} after {attempts} attempts: {e:#}",
                    describe(url)
                ));
            }
            Err(e) => {
                tracing::warn!(attempt, attempts, database = %describe(url), error = %format!("{e:#}"), "Database not reachable, retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    unreachable!("attempts is at least 1")
}

/// Logs the pool's size, free connections, waiters and cap.
pub fn log_status(pool: &Pool, job: &str, when: &'static str) {
    let s = pool.status();
    tracing::debug!(
        job,
        when,
        size = s.size,
        available = s.available,
        waiting = s.waiting,
        max = s.max_size,
        "Pool status."
    );
}
