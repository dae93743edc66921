//! The operator's HTTP endpoints, off the hot path: `/` (the console),
//! `/health`, `/ready`, `/health/db-pool`, `/metrics`, `/plugins`, and the
//! guarded actions under `/jobs/{job}/`. None of them takes a connection of
//! the workers' pool: database reads go through `snapshot`'s budget.

mod actions;
mod console;
pub mod snapshot;

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
    reads: Arc<snapshot::Reads>,
    jobs: Arc<[Arc<Job>]>,
    metrics: PrometheusHandle,
    /// Paths of plugins and candidates.
    config: Arc<Config>,
    /// `[http] admin_token`; `None`: read-only.
    admin_token: Option<String>,
}

/// Binds `listen` and serves until `shutdown`; returns the bound address
/// (useful with port 0) once listening.
pub async fn serve(
    config: &Config,
    pool: Pool,
    jobs: Vec<Arc<Job>>,
    metrics: PrometheusHandle,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listen = config.http.listen.as_str();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("[http] listen = \"{listen}\": cannot listen there: {e}"))?;
    let addr = listener.local_addr()?;
    let jobs: Arc<[Arc<Job>]> = jobs.into();
    let reads = Arc::new(snapshot::Reads::new(&config.database, jobs.clone())?);
    let app = axum::Router::new()
        .route("/", get(page))
        .route("/console.js", get(|| async { asset("text/javascript", console::SCRIPT) }))
        .route("/console.css", get(|| async { asset("text/css", console::STYLE) }))
        .route("/jobs/{job}/retry-failed", post(actions::retry_failed))
        .route("/jobs/{job}/pause", post(actions::pause))
        .route("/jobs/{job}/resume", post(actions::resume))
        .route("/jobs/{job}/promote", post(actions::promote))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/health/db-pool", get(db_pool))
        .route("/metrics", get(render_metrics))
        .route("/plugins", get(plugins))
        .layer(axum::middleware::map_response(secure))
        .with_state(AppState {
            pool,
            reads,
            jobs,
            metrics,
            config: Arc::new(config.clone()),
            admin_token: config.http.admin_token.clone(),
        });
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "HTTP server failed.");
        }
    });
    Ok((addr, task))
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
/// and why.
async fn ready(State(s): State<AppState>) -> Response {
    let db = crate::db::health::check();
    let waiting: Vec<&str> = s
        .jobs
        .iter()
        .filter(|j| j.current().config.enabled && j.current().live.is_none())
        .map(|j| j.name.as_str())
        .collect();
    let troubled: serde_json::Map<String, serde_json::Value> = s
        .jobs
        .iter()
        .filter_map(|j| {
            let problems = j.health().problems();
            (!problems.is_empty()).then(|| (j.name.clone(), json!(problems)))
        })
        .collect();
    let body = json!({
        "database": db.as_ref().map_or_else(String::clone, |()| "ok".into()),
        "jobs_without_plugin": waiting,
        "jobs_in_trouble": troubled,
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
