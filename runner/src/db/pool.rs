//! The runner's bounded connection pool: a hard cap, timeouts on every wait,
//! and status figures for the logs.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use crate::config;

/// Builds the pool from `[database]`; sessions show as `application_name`
/// in `pg_stat_activity` unless the URL names one. Nothing connects until
/// first use.
pub fn build(db: &config::Database, application_name: &str) -> anyhow::Result<Pool> {
    let mut pg = pg_config(&db.url)?;
    if pg.get_application_name() == Some("runner") {
        pg.application_name(application_name);
    }
    if !db.synchronous_commit {
        // A group's commit need not wait for the WAL flush: if Postgres
        // crashes first, the group's raw rows revert to pending together
        // with its daily rows, and it is aggregated again. Atomicity is kept;
        // only the last moments of work may be redone.
        let options = pg.get_options().map_or(String::new(), |o| format!("{o} "));
        pg.options(format!("{options}-c synchronous_commit=off"));
    }
    // Every statement is bounded: a lock held by another session, or a
    // statement gone slow, ends the group's transaction (and frees its
    // connection) instead of keeping it open for as long as someone else
    // decides. The idle-in-transaction limit is the last safety net should
    // the runner itself stop between statements.
    //
    // enable_seqscan=off: every statement of the runner is an index lookup
    // by design (a group by user and day, pending rows by a partial index).
    // A prepared statement first planned while a table is known to be empty
    // (analyzed so, as after a TRUNCATE or on a new job) gets a sequential
    // scan, and after five executions that generic plan is kept for the
    // connection's life: every group would scan the whole daily table as it
    // grows. Off, the planner takes the index whatever the table's size
    // when it planned (a sequential scan remains possible where no index
    // applies). Cheaper than re-planning each execution
    // (plan_cache_mode=force_custom_plan).
    //
    // TimeZone=UTC: a `timestamp without time zone` output column receives
    // the UTC wall time of the plugin's timestamp.
    let options = pg.get_options().map_or(String::new(), |o| format!("{o} "));
    pg.options(format!(
        "{options}-c enable_seqscan=off -c TimeZone=UTC -c lock_timeout={}ms -c statement_timeout={}ms -c idle_in_transaction_session_timeout={}ms",
        db.lock_timeout.as_millis(),
        db.statement_timeout.as_millis(),
        db.idle_in_transaction_timeout.as_millis()
    ));
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

/// The names a runner's sessions show in `pg_stat_activity`: its pool and
/// LISTEN connection, the operator's connection (`[http] listen`) and
/// pruning's (a moment each hour). `runner status` counts these.
pub const SESSION_NAMES: [&str; 3] = ["runner", "runner-operator", "runner-maintenance"];

/// Sessions a runner holds beside its pool of `max_connections`: the
/// LISTEN connection, the operator's and pruning's, one each. The one
/// statement of the bound: `status` and operating.md say it from here.
pub const BESIDE_THE_POOL: usize = 3;

/// Sessions of runners connected now (every runner's, by [`SESSION_NAMES`]).
pub async fn sessions(client: &impl tokio_postgres::GenericClient) -> Result<i64, tokio_postgres::Error> {
    let names = SESSION_NAMES.to_vec();
    let sql = "SELECT count(*) AS sessions FROM pg_stat_activity WHERE application_name = ANY($1)";
    client.query_one(sql, &[&names]).await?.try_get("sessions")
}

/// The server's `max_connections`, as it shows it.
pub async fn server_max_connections(
    client: &impl tokio_postgres::GenericClient,
) -> Result<String, tokio_postgres::Error> {
    client.query_one("SHOW max_connections", &[]).await?.try_get("max_connections")
}

/// The operator's budget (`http::snapshot`): a pool of its own, apart from
/// the workers', of one connection whose statements and waits are short.
/// Its sessions show as `runner-operator`.
pub fn build_operator(db: &config::Database) -> anyhow::Result<Pool> {
    const STATEMENT: Duration = Duration::from_secs(5);
    const WAIT: Duration = Duration::from_secs(2);
    let db = config::Database {
        max_connections: 1,
        statement_timeout: db.statement_timeout.min(STATEMENT),
        lock_timeout: db.lock_timeout.min(STATEMENT),
        wait_timeout: db.wait_timeout.min(WAIT),
        ..db.clone()
    };
    build(&db, "runner-operator")
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
    usage(pool);
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

/// The pool at one instant, as `/health/db-pool` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    /// `healthy`, `busy` (above 80 % in use) or `exhausted` (callers waiting).
    pub status: &'static str,
    pub usage_percent: f64,
    pub in_use: usize,
    pub available: usize,
    pub waiting: usize,
    pub max: usize,
}

/// The most connections in use at once, as seen by `usage` (process-wide).
static PEAK_IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The pool's current use; also records the peak.
pub fn usage(pool: &Pool) -> Usage {
    let s = pool.status();
    let in_use = s.size.saturating_sub(s.available);
    PEAK_IN_USE.fetch_max(in_use, std::sync::atomic::Ordering::Relaxed);
    let usage_percent = if s.max_size == 0 { 0.0 } else { 100.0 * in_use as f64 / s.max_size as f64 };
    let status = if s.waiting > 0 {
        "exhausted"
    } else if usage_percent > 80.0 {
        "busy"
    } else {
        "healthy"
    };
    Usage { status, usage_percent, in_use, available: s.available, waiting: s.waiting, max: s.max_size }
}

/// The most pooled connections in use at once so far.
pub fn peak_in_use() -> usize {
    PEAK_IN_USE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Callers whose wait for a pooled connection ran out (process-wide).
static WAITS_TIMED_OUT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes an error a caller got: counts a wait for a connection that ran
/// out, which the monitor reports.
pub fn note_error(e: &anyhow::Error) {
    if let Some(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) = e.downcast_ref() {
        WAITS_TIMED_OUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Samples the pool every 250 ms until `shutdown`: warns when more than 80 %
/// has been in use for 10 s, and when callers have been queueing for a
/// connection without a break for half the pool's wait timeout (saying how
/// long); an error only when a caller's wait really ran out. A backlog at
/// start, queueing a moment while the pool opens its connections, logs
/// nothing. Each at most once a minute.
pub async fn monitor(pool: Pool, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    const EVERY: Duration = Duration::from_millis(250);
    const SUSTAINED: u32 = 40; // samples: 10 s
    const QUIET: Duration = Duration::from_secs(60);
    let limit = pool.timeouts().wait.unwrap_or(Duration::from_secs(5));
    let (mut busy_for, mut last_warn, mut last_wait, mut last_error) = (0u32, None, None, None::<Instant>);
    let mut timed_out = WAITS_TIMED_OUT.load(std::sync::atomic::Ordering::Relaxed);
    // Since when callers have been waiting without a break.
    let mut waiting_since: Option<Instant> = None;
    let due = |last: Option<Instant>| last.is_none_or(|t| t.elapsed() >= QUIET);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let u = usage(&pool);
        busy_for = if u.usage_percent > 80.0 { busy_for + 1 } else { 0 };
        // While the database is down, callers wait on connections that
        // cannot open: the outage is logged once by the listener, and the
        // pool is not the problem.
        let reachable = super::health::check().is_ok();
        waiting_since = match (u.waiting > 0 && reachable, waiting_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        let queueing = waiting_since.map_or(Duration::ZERO, |t| t.elapsed());
        let now_timed_out = WAITS_TIMED_OUT.load(std::sync::atomic::Ordering::Relaxed);
        let gave_up = now_timed_out - std::mem::replace(&mut timed_out, now_timed_out);
        if gave_up > 0 && due(last_error) {
            tracing::error!(in_use = u.in_use, waiting = u.waiting, max = u.max, callers_gave_up = gave_up,
                wait_timeout = ?limit,
                "Callers waited for a database connection as long as wait_timeout allows and gave up: the pool is exhausted.");
            last_error = Some(Instant::now());
        } else if queueing >= limit / 2 && due(last_wait) {
            tracing::warn!(in_use = u.in_use, waiting = u.waiting, max = u.max, queueing_for = ?queueing,
                wait_timeout = ?limit, "Callers are waiting for a database connection.");
            last_wait = Some(Instant::now());
        } else if busy_for >= SUSTAINED && due(last_warn) {
            tracing::warn!(
                in_use = u.in_use,
                max = u.max,
                usage_percent = u.usage_percent,
                "Pool use has stayed above 80 % for 10 s."
            );
            last_warn = Some(Instant::now());
        }
    }
}
