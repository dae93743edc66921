//! The operator's HTTP endpoints, off the hot path: `/` (the console),
//! `/health`, `/ready`, `/health/db-pool`, `/metrics`, `/plugins`, and the
//! guarded actions under `/jobs/{job}/`. None of them takes a connection of
//! the workers' pool: database reads go through `snapshot`'s budget.

mod actions;
mod console;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::config::Config;
use crate::db::pool;
use crate::pipeline::Job;

#[derive(Clone)]
struct AppState {
    /// The workers' pool: only its figures are read here, never a connection.
    pool: Pool,
    /// The operator's own connection and the shared snapshot.
    reads: Arc<crate::snapshot::Reads>,
    jobs: Arc<[Arc<Job>]>,
    metrics: PrometheusHandle,
    /// Paths of plugins and candidates.
    config: Arc<Config>,
    /// `[http] admin_token`; `None`: read-only.
    admin_token: Option<String>,
}

/// Where the endpoints listen.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// `[http] listen`: health, readiness, pool, metrics and plugins (and
    /// the console, unless it has an address of its own).
    pub addr: SocketAddr,
    /// `[http] console_listen`, when set: the console and its actions.
    pub console: Option<SocketAddr>,
}

/// The bound sockets, before anything is served on them.
pub struct Bound {
    listener: tokio::net::TcpListener,
    console: Option<tokio::net::TcpListener>,
}

/// Binds `listen` (and `console_listen`, when set): done before plugins are
/// compiled, so a taken address is reported at once.
pub async fn bind(config: &Config) -> anyhow::Result<Bound> {
    let bind = |key: &'static str, address: String| async move {
        tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| anyhow::anyhow!("[http] {key} = \"{address}\": cannot listen there: {e}"))
    };
    let listener = bind("listen", config.http.listen.clone()).await?;
    let console = match &config.http.console_listen {
        Some(address) => Some(bind("console_listen", address.clone()).await?),
        None => None,
    };
    Ok(Bound { listener, console })
}

/// Serves on the bound sockets until `shutdown`; returns their addresses
/// (useful with port 0).
pub fn serve(
    bound: Bound,
    config: &Config,
    pool: Pool,
    jobs: Vec<Arc<Job>>,
    metrics: PrometheusHandle,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Listening> {
    let Bound { listener, console: console_listener } = bound;
    let jobs: Arc<[Arc<Job>]> = jobs.into();
    let state = AppState {
        pool,
        reads: Arc::new(crate::snapshot::Reads::new(&config.database, jobs.clone())?),
        jobs,
        metrics,
        config: Arc::new(config.clone()),
        admin_token: config.http.admin_token.clone(),
    };
    // What a Prometheus or a load balancer on another host may reach.
    let monitoring = axum::Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/health/db-pool", get(db_pool))
        .route("/metrics", get(render_metrics));
    // What only operators should: the console, its actions, and /plugins
    // (file paths, hashes, signers, refusal texts: a map for an attacker,
    // while /ready and /metrics already say what monitoring needs).
    let console = axum::Router::new()
        .route("/", get(page))
        .route("/plugins", get(plugins))
        .route("/console.js", get(|| async { asset("text/javascript", console::SCRIPT) }))
        .route("/console.css", get(|| async { asset("text/css", console::STYLE) }))
        .merge(
            axum::Router::new()
                .route("/jobs/{job}/retry-failed", post(actions::retry_failed))
                .route("/jobs/{job}/pause", post(actions::pause))
                .route("/jobs/{job}/resume", post(actions::resume))
                .route("/jobs/{job}/promote", post(actions::promote))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), actions::require_token)),
        );
    let finish =
        |router: axum::Router<AppState>| router.layer(axum::middleware::map_response(secure)).with_state(state.clone());
    let addr = listener.local_addr()?;
    let listeners = 1 + usize::from(console_listener.is_some());
    let cap = server::connection_cap(listeners, config.database.max_connections + crate::db::pool::BESIDE_THE_POOL);
    let console_addr = match console_listener {
        Some(console_listener) => {
            let console_addr = console_listener.local_addr()?;
            // The console's pages link to the figures it shows.
            server::spawn(console_listener, finish(console.merge(monitoring.clone())), cap, shutdown.clone());
            server::spawn(listener, finish(monitoring), cap, shutdown);
            Some(console_addr)
        }
        None => {
            server::spawn(listener, finish(monitoring.merge(console)), cap, shutdown);
            None
        }
    };
    Ok(Listening { addr, console: console_addr })
}

/// Every answer: not to be framed, sniffed or cached; scripts and styles
/// only from the runner itself (the console has no inline script).
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Ready when the database answers, every enabled job has a plugin, and
/// no job's loop is down or keeps timing out; otherwise 503 naming each job
/// and why. A job that works but may be wrong (change capture incomplete)
/// is named under `degraded`, with 200.
async fn ready(State(s): State<AppState>) -> Response {
    let db = crate::db::health::check();
    let waiting: Vec<&str> = s
        .jobs
        .iter()
        .filter(|j| j.current().config.enabled && j.current().live.is_none())
        .map(|j| j.name.as_str())
        .collect();
    // Each job's reasons of one kind, for the jobs that have any.
    let by_job =
        |reasons: fn(&crate::pipeline::job::Health) -> Vec<String>| -> serde_json::Map<String, serde_json::Value> {
            s.jobs
                .iter()
                .filter_map(|j| {
                    let reasons = reasons(&j.health());
                    (!reasons.is_empty()).then(|| (j.name.clone(), json!(reasons)))
                })
                .collect()
        };
    let troubled = by_job(|h| h.problems());
    // A refused file with the previous version still running is named, but
    // the job works: not a reason to be unready on its own.
    let refused: serde_json::Map<String, serde_json::Value> = s
        .jobs
        .iter()
        .filter_map(|j| Some((j.name.clone(), json!(j.last_reload_error.lock().expect("lock").clone()?))))
        .collect();
    // Working, but perhaps wrong: named, not a reason to be unready.
    let degraded = by_job(|h| h.degraded());
    let body = json!({
        "status": if !troubled.is_empty() || !waiting.is_empty() || db.is_err() { "down" }
            else if degraded.is_empty() { "ok" } else { "degraded" },
        "database": db.as_ref().map_or_else(String::clone, |()| "ok".into()),
        "jobs_without_plugin": waiting,
        "jobs_in_trouble": troubled,
        "degraded": degraded,
        "refused_files": refused,
    });
    let ok = db.is_ok() && waiting.is_empty() && troubled.is_empty();
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body)).into_response()
}

/// The pool's use, and 503 `unreachable` while the database cannot be reached.
async fn db_pool(State(s): State<AppState>) -> Response {
    let usage = pool::usage(&s.pool);
    match crate::db::health::check() {
        Ok(()) => Json(usage).into_response(),
        Err(why) => {
            let mut body = json!(usage);
            body["status"] = json!("unreachable");
            body["error"] = json!(why);
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /` (`?fragment=1`: only the part the page refreshes).
async fn page(State(s): State<AppState>, query: axum::extract::RawQuery) -> Response {
    let fragment = query.0.as_deref().is_some_and(|q| q.contains("fragment=1"));
    let html = console::render(&s, fragment).await;
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response()
}

async fn render_metrics(State(s): State<AppState>) -> Response {
    let text = crate::telemetry::render(&s.metrics, &s.pool, &s.jobs, &*s.reads.snapshot().await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn plugins(State(s): State<AppState>) -> Json<serde_json::Value> {
    let unix = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let jobs: Vec<_> = s
        .jobs
        .iter()
        .map(|job| {
            let state = job.current();
            let plugin = state.live.as_ref().map(|l| {
                json!({
                    "version": &*l.plugin.version,
                    "hash": l.plugin.hash,
                    "file": l.plugin.path.display().to_string(),
                    "wit": l.plugin.wit_version,
                    "settings": l.plugin.settings.to_json(),
                    "loaded_at_unix": unix(l.plugin.loaded_at),
                    "signer": l.plugin.signer.as_ref().map(|s| json!({"key_id": s.key_id, "name": s.name})),
                })
            });
            json!({
                "job": job.name,
                "enabled": state.config.enabled,
                "paused": state.running().is_none(),
                "plugin": plugin,
                "candidate": state.candidate.as_ref().map(|c| c.version.to_string()),
                "candidate_refused": job.candidate_error(),
                "last_reload_error": job.last_reload_error.lock().expect("lock").clone(),
                "health": job.health(),
            })
        })
        .collect();
    Json(json!({ "jobs": jobs }))
}
