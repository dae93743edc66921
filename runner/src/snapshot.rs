//! Operator reads on a budget of their own. Everything an HTTP client can
//! make the runner read from the database (the console's queue figures and
//! causes, `/metrics`' queue gauges, shadow differences) comes from one
//! shared [`Snapshot`], taken at most once per [`INTERVAL`] whatever the
//! request rate, on a pool of its own: one connection, short timeouts. A
//! page reloaded by a hundred clients costs the database what one reload
//! costs, and never a connection the workers need. The guarded actions use
//! the same connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::config;
use crate::db::{self, pool, queue};
use crate::pipeline::Job;

/// A snapshot younger than this is served as it is.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// The longest a snapshot may take; past it, the figures are unknown.
const DEADLINE: Duration = Duration::from_secs(5);
/// Causes of failure the console lists per job.
const CAUSES: i64 = 5;
/// Rows that belong to no group are counted from the source table itself:
/// at most this often per job.
const SLOW_FIGURES: Duration = Duration::from_secs(60);

/// The operator's connection and the last snapshot taken on it.
pub struct Reads {
    pool: Pool,
    jobs: Arc<[Arc<Job>]>,
    /// Held while a snapshot is taken: callers arriving meanwhile wait for
    /// it (at most [`DEADLINE`]) instead of taking one of their own.
    last: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
    /// Per job, when the figures read from the source itself were last
    /// taken, and what they were.
    slow: std::sync::Mutex<HashMap<String, (Instant, Slow)>>,
}

/// The database's side of the operator's view, at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub taken: Instant,
    /// Per job; a job missing here could not be read (see `error`).
    pub jobs: HashMap<String, Figures>,
    /// Why some or all figures are missing.
    pub error: Option<String>,
}

/// One job's figures.
#[derive(Debug, Default)]
pub struct Figures {
    pub queue: queue::Queue,
    pub causes: queue::Causes,
    /// Groups where the shadow candidate differed, when there is one.
    pub shadow_diffs: Option<i64>,
    /// Source rows that belong to no group (a NULL user or timestamp),
    /// counted at most once a minute; `None` until counted or if the count
    /// did not fit the operator's statement timeout.
    pub ungrouped: Option<i64>,
    /// Rows or user zone entries with a NULL or unknown zone (grouped in
    /// the job's `timezone`), counted like `ungrouped`; `None` for a job in
    /// one fixed zone.
    pub unknown_zones: Option<i64>,
}

/// The figures read from the source itself: at most once per [`SLOW_FIGURES`].
#[derive(Debug, Clone, Copy, Default)]
struct Slow {
    ungrouped: Option<i64>,
    unknown_zones: Option<i64>,
}

impl Reads {
    /// The operator's pool: at most one connection, statements of at most
    /// five seconds, a wait of at most two (see [`pool::build_operator`]).
    pub fn new(database: &config::Database, jobs: Arc<[Arc<Job>]>) -> anyhow::Result<Self> {
        Ok(Reads {
            pool: pool::build_operator(database)?,
            jobs,
            last: tokio::sync::Mutex::new(None),
            slow: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The connection budget the guarded actions use too.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The last snapshot if it is recent, else a new one.
    pub async fn snapshot(&self) -> Arc<Snapshot> {
        let mut last = self.last.lock().await;
        if let Some(s) = last.as_ref().filter(|s| s.taken.elapsed() < INTERVAL) {
            return s.clone();
        }
        let fresh = Arc::new(self.take().await);
        metrics::counter!("runner_operator_snapshots_total").increment(1);
        if let Some(error) = &fresh.error {
            tracing::warn!(error = %error, "Operator figures incomplete.");
        }
        *last = Some(fresh.clone());
        fresh
    }

    async fn take(&self) -> Snapshot {
        let taken = Instant::now();
        let mut jobs = HashMap::new();
        let mut errors = Vec::new();
        let work = async {
            let client = match self.pool.get().await {
                Ok(c) => c,
                Err(e) => return errors.push(format!("no operator connection: {e}")),
            };
            for job in self.jobs.iter() {
                match figures(&client, job).await {
                    Ok(mut f) => {
                        let slow = self.slow(&client, job).await;
                        (f.ungrouped, f.unknown_zones) = (slow.ungrouped, slow.unknown_zones);
                        jobs.insert(job.name.clone(), f);
                    }
                    Err(e) => errors.push(format!("job {}: {}", job.name, db::describe_error(&e))),
                }
            }
        };
        if tokio::time::timeout(DEADLINE, work).await.is_err() {
            errors.push(format!("reading the figures took over {}s", DEADLINE.as_secs()));
        }
        Snapshot { taken, jobs, error: (!errors.is_empty()).then(|| errors.join("; ")) }
    }
}

impl Reads {
    /// The job's figures read from its source, counted again once
    /// [`SLOW_FIGURES`] has passed.
    async fn slow(&self, client: &deadpool_postgres::Client, job: &Job) -> Slow {
        let cached = self.slow.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&job.name).copied();
        if let Some((_, slow)) = cached.filter(|(at, _)| at.elapsed() < SLOW_FIGURES) {
            return slow;
        }
        let state = job.current();
        let (config, shape) = (&state.config, state.live.as_ref().map(|l| &l.shape));
        let slow = Slow {
            ungrouped: match shape {
                Some(shape) => queue::ungrouped(&***client, config, shape).await.ok(),
                None => None,
            },
            unknown_zones: queue::zones_unknown(&***client, config, shape).await.ok().flatten(),
        };
        self.slow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job.name.clone(), (Instant::now(), slow));
        slow
    }
}

async fn figures(client: &deadpool_postgres::Client, job: &Job) -> Result<Figures, tokio_postgres::Error> {
    let state = job.current();
    let queue = queue::queue(&***client, &job.name).await?;
    let causes = queue::top_errors(&***client, &job.name, CAUSES).await?;
    let shadow_diffs = match &state.candidate {
        Some(candidate) => Some(crate::db::shadow_diffs::count(&***client, &job.name, &candidate.version).await?),
        None => None,
    };
    Ok(Figures { queue, causes, shadow_diffs, ..Figures::default() })
}
