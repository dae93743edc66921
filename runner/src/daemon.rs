//! The daemon assembled in one place, for `runner run`, the demo and the
//! benchmark alike: the jobs with their plugins loaded and checked, the
//! HTTP endpoints, the background tasks (hot reload, pool monitor, pruning,
//! recompute after deploy), and the job loops with a bounded shutdown.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::config::Config;
use crate::pipeline::deploy::Deployer;
use crate::pipeline::{self, Job, Mode, OnRefusedFile, Report};
use crate::plugin::Runtime;

/// A daemon's parts, ready to run.
pub struct Daemon {
    pub pool: Pool,
    pub runtime: Runtime,
    pub jobs: Vec<Arc<Job>>,
    stop: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
}

/// How a run ended.
pub enum Ended {
    /// Every job loop returned (drained with `--once`, or stopped in time).
    Reports(Vec<(String, Report)>),
    /// The shutdown grace ran out: the queries in flight were cancelled.
    Abandoned { cancelled: usize },
}

impl Daemon {
    /// Loads every job's plugin and checks it against the job's tables;
    /// every problem found, one sentence each, if it cannot start.
    pub async fn load(
        config: &Config,
        pool: Pool,
        runtime: Runtime,
        on_refused: OnRefusedFile,
    ) -> anyhow::Result<Self> {
        let jobs = pipeline::prepare_all(config, &pool, &runtime, on_refused)
            .await
            .map_err(|problems| anyhow::anyhow!("cannot start:\n{}", problems.join("\n")))?;
        let (stop, shutdown) = watch::channel(false);
        Ok(Daemon { pool, runtime, jobs, stop, shutdown })
    }

    /// Keeps what goes live for rollback (`.kept/`): `run` does, never the
    /// commands that only look (`check`, `status`, `validate`).
    pub fn remember_live(&self, config: &Config) {
        for job in &self.jobs {
            let state = job.current();
            if let Some(live) = &state.live {
                pipeline::remember(&job.name, &config.plugin_path(&state.config), &live.plugin);
            }
        }
    }

    /// Serves the HTTP endpoints on sockets bound earlier.
    pub fn serve(
        &self,
        config: &Config,
        bound: crate::http::Bound,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<crate::http::Listening> {
        crate::http::serve(bound, config, self.pool.clone(), self.jobs.clone(), metrics, self.shutdown.clone())
    }

    /// The background tasks of a daemon: plugin and config reloads, the
    /// pool monitor, history pruning, and each job's recompute after deploy.
    pub fn spawn_background(&self, config: &Config) {
        let deployer = Deployer::new(config.clone(), self.pool.clone(), self.runtime.clone(), self.jobs.clone());
        tokio::spawn(deployer.run(self.shutdown.clone()));
        tokio::spawn(crate::db::pool::monitor(self.pool.clone(), self.shutdown.clone()));
        let prune = crate::db::prune::run(config.database.clone(), config.runner.keep_history, self.shutdown.clone());
        tokio::spawn(prune);
        for job in &self.jobs {
            if let Some(window) = job.current().config.recompute_after_deploy {
                let task = pipeline::after_deploy::run(self.pool.clone(), job.clone(), window, self.shutdown.clone());
                tokio::spawn(task);
            }
        }
    }

    /// Runs every job loop until drained (`Mode::Once`) or until `stop`
    /// resolves; then stops claiming and gives the groups in hand
    /// `grace` to finish, after which the queries in flight are cancelled
    /// and every connection closed (Postgres rolls back; the keys stay
    /// queued).
    pub async fn run(
        &self,
        config: &Config,
        mode: Mode,
        repair: bool,
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<Ended> {
        let run = pipeline::run(config, self.pool.clone(), &self.jobs, mode, repair, self.shutdown.clone());
        tokio::pin!(run);
        tokio::select! {
            reports = &mut run => return Ok(Ended::Reports(reports?)),
            () = stop => {}
        }
        tracing::info!(?grace, "Shutting down: no new claims; finishing the groups in hand.");
        let _ = self.stop.send(true);
        match tokio::time::timeout(grace, &mut run).await {
            Ok(reports) => Ok(Ended::Reports(reports?)),
            Err(_) => {
                // A backend waiting on a lock would outlive its dropped
                // client: cancel what is running, then close every connection.
                let cancelled = crate::db::cancel::cancel_all(config.database.connect_timeout).await;
                self.pool.close();
                Ok(Ended::Abandoned { cancelled })
            }
        }
    }

    /// Stops the job loops and background tasks (as a signal would).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
