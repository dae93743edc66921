//! The operator's actions, guarded by `Authorization: Bearer <[http]
//! admin_token>`: retry a job's failed rows, pause or resume a job, promote
//! its shadow candidate. With no token configured the runner is read-only
//! (403); a missing or wrong token is 401; a body with a key the action does
//! not know is 400 naming it. The console's buttons call these. Their SQL
//! runs on the operator's connection (`crate::snapshot::Reads`), never the workers'.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::AppState;
use crate::db::queue::{self, RetryFilter};
use crate::pipeline::{Job, JobState};

/// An action not done: its status code and why.
pub struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn refuse(code: StatusCode, why: &str) -> Refusal {
    Refusal(code, why.to_string())
}

type Answer = Result<Json<serde_json::Value>, Refusal>;

/// Guards every action: the request must carry the admin token, checked
/// from its headers before its body is read (a layer, not an extractor of
/// the handler: an unauthenticated caller cannot make the runner take in a
/// body). The scheme is matched without regard to case (RFC 7235).
pub async fn require_token(
    State(s): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = &s.admin_token else {
        return refuse(StatusCode::FORBIDDEN, "read-only: [http] admin_token is not set").into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    // Compared in constant time: the answer's timing says nothing of the token.
    let same = given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong admin token").into_response();
    }
    next.run(request).await
}

fn find<'a>(s: &'a AppState, name: &str) -> Result<&'a Job, Refusal> {
    s.jobs.iter().find(|j| j.name == name).map(|j| &**j).ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such job"))
}

/// `POST /jobs/{job}/retry-failed`, optionally with a JSON body of filters
/// (`since_day`, `since`, `error_contains` as the CLI's; `cause`, a cause as
/// the console lists it).
pub async fn retry_failed(State(s): State<AppState>, Path(name): Path<String>, body: Bytes) -> Answer {
    let job = find(&s, &name)?;
    let filter: RetryFilter = if body.iter().all(u8::is_ascii_whitespace) {
        RetryFilter::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("filters: {e}")))?
    };
    let client = s
        .reads
        .pool()
        .get()
        .await
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("no database connection: {e}")))?;
    let n = queue::retry_failed(&**client, &name, &job.current().config, &filter)
        .await
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, &crate::db::describe_error(&e)))?;
    tracing::info!(job = %name, groups = n, filter = ?filter, "Failed groups queued again from HTTP.");
    job.wake.notify_one();
    Ok(Json(json!({ "job": name, "retried": n })))
}

/// `POST /jobs/{job}/pause` and `/resume`: stops or restarts claiming (the
/// groups in hand finish). Not persisted: a restart runs every enabled job.
pub async fn pause(s: State<AppState>, name: Path<String>) -> Answer {
    set_paused(s, name, true)
}

pub async fn resume(s: State<AppState>, name: Path<String>) -> Answer {
    set_paused(s, name, false)
}

fn set_paused(State(s): State<AppState>, Path(name): Path<String>, paused: bool) -> Answer {
    let job = find(&s, &name)?;
    job.update(|st| JobState { operator_paused: paused, ..st.clone() });
    tracing::info!(job = %name, paused, "Job {} from HTTP.", if paused { "paused" } else { "resumed" });
    metrics::gauge!("runner_job_paused", "job" => name.clone())
        .set(f64::from(u8::from(job.current().running().is_none())));
    Ok(Json(json!({ "job": name, "paused": paused })))
}

/// `POST /jobs/{job}/promote`: renames the shadow candidate (and its
/// signature) over the live plugin file; the hot reload takes it from there.
/// Only the file that passed every check (signature, contract, settings,
/// columns) goes live: a refused candidate, one not checked yet, or one
/// whose bytes changed since it was checked is 409 with the reason.
pub async fn promote(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    let job = find(&s, &name)?;
    let state = job.current();
    let (from, to) = (s.config.candidate_path(&state.config), s.config.plugin_path(&state.config));
    let conflict = |why: String| Refusal(StatusCode::CONFLICT, why);
    let bytes = match std::fs::read(&from) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(StatusCode::NOT_FOUND, "this job has no shadow candidate"));
        }
        Err(e) => return Err(conflict(format!("cannot read the candidate {}: {e}", from.display()))),
    };
    if let Some(why) = job.candidate_error() {
        return Err(conflict(format!("the candidate was refused: {why}")));
    }
    let Some(candidate) = &state.candidate else {
        return Err(conflict("the candidate has not been checked yet; try again in a few seconds".into()));
    };
    if crate::plugin::sha256_hex(&bytes) != candidate.hash {
        return Err(conflict(format!(
            "{} changed since {} was checked; try again once it has been checked",
            from.display(),
            candidate.version
        )));
    }
    let (from_sig, to_sig) = (crate::trust::sig_path(&from), crate::trust::sig_path(&to));
    let failed =
        |what: &str, e: std::io::Error| refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("renaming the {what}: {e}"));
    // The signature first, so the new file finds it waiting.
    if from_sig.exists() {
        std::fs::rename(&from_sig, &to_sig).map_err(|e| failed("signature", e))?;
    }
    std::fs::rename(&from, &to).map_err(|e| failed("candidate", e))?;
    tracing::info!(job = %name, file = %to.display(), candidate = %candidate.version, "Shadow candidate promoted from HTTP.");
    job.wake.notify_one();
    Ok(Json(json!({ "job": name, "promoted": to.display().to_string(), "version": &*candidate.version })))
}
