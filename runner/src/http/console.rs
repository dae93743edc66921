//! `GET /`: the operator's console. Server-rendered HTML with no build step
//! and nothing fetched from elsewhere (it works with no internet); a few
//! lines of script (`/console.js`, served by the runner: the page's CSP
//! allows no inline script) refresh it every five seconds and send the
//! actions. Its database figures are the operator's shared snapshot.
//!
//! It shows what the JSON endpoints show — queue, throughput, group times,
//! the pool, the plugins, failures grouped by cause — and never a raw
//! reading or the database password (errors, yes).

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use super::AppState;
use crate::db::pool;
use crate::pipeline::Job;
use crate::snapshot::{Figures, Snapshot};

/// The whole page, or (`fragment`) only its `<main>`, which the script swaps in.
pub(super) async fn render(s: &AppState, fragment: bool) -> String {
    let mut main = String::new();
    let u = pool::usage(&s.pool);
    let db = crate::db::health::check();
    let _ = write!(
        main,
        "<p class=summary>database: <b class={}>{}</b> · pool: {} of {} in use ({:.0} %), {} waiting · {}</p>",
        if db.is_ok() { "ok" } else { "bad" },
        esc(db.as_ref().map_or_else(String::as_str, |()| "reachable")),
        u.in_use,
        u.max,
        u.usage_percent,
        u.waiting,
        if s.admin_token.is_some() {
            "actions need the admin token"
        } else {
            "read-only: no [http] admin_token is set"
        }
    );
    let snapshot = s.reads.snapshot().await;
    if let Some(error) = &snapshot.error {
        let _ = write!(main, "<p class=bad>figures incomplete: {}</p>", esc(error));
    }
    for job in s.jobs.iter() {
        job_section(&mut main, job, &snapshot);
    }
    if fragment {
        return main;
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>runner console</title>\
         <meta name=viewport content='width=device-width,initial-scale=1'><link rel=stylesheet href=/console.css></head>\
         <body><header><h1>runner</h1><label>admin token <input id=token type=password autocomplete=off></label>\
         <span id=said role=status></span></header><main id=main>{main}</main><script src=/console.js></script></body></html>"
    )
}

fn job_section(out: &mut String, job: &Job, snapshot: &Snapshot) {
    let state = job.current();
    let name = esc(&job.name);
    let status = if !state.config.enabled {
        "disabled"
    } else if state.operator_paused {
        "paused by an operator"
    } else if state.live.is_none() {
        "paused: no plugin"
    } else {
        "running"
    };
    let health = job.health();
    let problems: Vec<String> = health.problems().into_iter().chain(health.degraded()).collect();
    let _ = write!(out, "<section class=job id='job-{name}'><h2>{name} <small>{status}</small></h2>");
    for problem in &problems {
        let _ = write!(out, "<p class=bad>{}</p>", esc(problem));
    }
    let figures = snapshot.jobs.get(&job.name);
    let q = figures.map(|f| &f.queue);
    let (slots, p95) = {
        let a = job.activity.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (a.rows_per_slot(), a.p95())
    };
    let recent: u64 = slots.iter().rev().take(6).sum();
    let cell = |v: Option<i64>| v.map_or("?".to_string(), |n| n.to_string());
    let _ = write!(
        out,
        "<dl class=figures><div><dt>groups pending</dt><dd>{}</dd></div><div><dt>in backoff</dt><dd>{}</dd></div>\
         <div><dt>failed</dt><dd>{}</dd></div><div><dt>oldest pending</dt><dd>{}</dd></div>\
         <div><dt>rows / min</dt><dd>{recent}</dd></div><div><dt>p95 group</dt><dd>{}</dd></div></dl>",
        cell(q.as_ref().map(|q| q.pending)),
        cell(q.as_ref().map(|q| q.in_backoff)),
        cell(q.as_ref().map(|q| q.failed)),
        q.as_ref().and_then(|q| q.oldest_pending_seconds).map_or("-".into(), age),
        p95.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
    );
    if let Some(n) = figures.and_then(|f| f.ungrouped).filter(|n| *n > 0) {
        let _ = write!(
            out,
            "<p class=bad>{n} raw row(s) belong to no group (NULL user or timestamp): never aggregated</p>"
        );
    }
    if let Some(n) = figures.and_then(|f| f.unknown_zones).filter(|n| *n > 0) {
        let _ = write!(
            out,
            "<p class=bad>{n} row(s) or user zone entr(ies) with an unknown zone: grouped in the job's timezone, {}</p>",
            esc(&state.config.timezone)
        );
    }
    out.push_str(&sparkline(&slots));
    plugin_lines(out, job, &state, figures);
    if let Some(figures) = figures {
        causes_table(out, &name, &figures.causes);
    }
    out.push_str("</section>");
}

/// The job's plugin, its refusals, its shadow candidate and its actions.
fn plugin_lines(out: &mut String, job: &Job, state: &crate::pipeline::JobState, figures: Option<&Figures>) {
    let name = esc(&job.name);
    let cell = |v: Option<i64>| v.map_or("?".to_string(), |n| n.to_string());
    match &state.live {
        Some(live) => {
            let loaded = live.plugin.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let signer =
                live.plugin.signer.as_ref().map_or(String::new(), |s| format!(", signed by {}", esc(&s.key_id)));
            let _ = write!(
                out,
                "<p>plugin <code>{}</code>, loaded <time data-unix={loaded}>{}</time>{signer}</p>",
                esc(&live.plugin.version),
                chrono::DateTime::from_timestamp(loaded as i64, 0).map_or(String::new(), |t| t.to_rfc3339())
            );
        }
        None => out.push_str("<p class=bad>no plugin loaded</p>"),
    }
    if let Some(error) = job.last_reload_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
        let _ = write!(out, "<p class=bad>last reload refused: {}</p>", esc(error));
    }
    let candidate_refused = job.candidate_error();
    match (&state.candidate, &candidate_refused) {
        (_, Some(why)) => {
            let _ = write!(out, "<p class=bad>shadow candidate refused: {}</p>", esc(why));
        }
        (Some(candidate), None) => {
            let _ = write!(
                out,
                "<p>shadow candidate <code>{}</code>: {} group(s) differ \
                 <button data-action='/jobs/{name}/promote'>promote</button></p>",
                esc(&candidate.version),
                cell(figures.and_then(|f| f.shadow_diffs))
            );
        }
        (None, None) => {}
    }
    let _ = write!(
        out,
        "<p class=actions><button data-action='/jobs/{name}/retry-failed'>retry all failed</button> \
         <button data-action='/jobs/{name}/{}'>{}</button></p>",
        if state.operator_paused { "resume" } else { "pause" },
        if state.operator_paused { "resume" } else { "pause" },
    );
}

/// The most common causes of failure, each with a button that retries its groups.
fn causes_table(out: &mut String, name: &str, causes: &crate::db::queue::Causes) {
    if causes.shown.is_empty() {
        return;
    }
    out.push_str(
        "<table><thead><tr><th>groups</th><th>failing because</th><th>for example</th><th></th></tr></thead><tbody>",
    );
    for e in &causes.shown {
        // The button sends the cause as shown: the server matches it
        // against each row's cause, so it retries exactly these rows.
        let button = if e.failed > 0 {
            format!(
                "<button data-action='/jobs/{name}/retry-failed' data-cause='{}'>retry these {}</button>",
                esc(&e.error),
                e.failed
            )
        } else {
            "retrying".into()
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=error>{}</td><td class=example>{}</td><td>{button}</td></tr>",
            e.groups,
            esc(&e.error),
            esc(&e.example),
        );
    }
    out.push_str("</tbody></table>");
    let hidden = causes.total - causes.shown.len() as i64;
    if hidden > 0 {
        let _ = write!(
            out,
            "<p class=more>{hidden} more cause(s) not shown; <code>runner status</code> and \
             <code>runner retry-failed --error-contains</code> reach them</p>"
        );
    }
}

/// Rows completed per 10 s over the last 10 minutes, as a small SVG chart.
fn sparkline(slots: &[u64]) -> String {
    let (w, h) = (300.0, 40.0);
    let max = slots.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = w / (slots.len().max(2) - 1) as f64;
    let points: Vec<String> = slots
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{:.1},{:.1}", i as f64 * step, h - (*n as f64 / max) * (h - 2.0) - 1.0))
        .collect();
    format!(
        "<svg class=spark viewBox='0 0 {w} {h}' width={w} height={h} role=img aria-label='rows completed per 10 s, last 10 minutes'>\
         <polyline fill=none stroke=currentColor stroke-width=1.5 points='{}'/></svg>",
        points.join(" ")
    )
}

fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86400, s / 3600 % 24),
    }
}

/// Escapes text for HTML content and single- or double-quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}\
header{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#24292f;color:#fff}\
header h1{font-size:1.1em;margin:0}main{padding:1em;display:grid;gap:1em}\
section.job{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em}\
h2 small{font-weight:normal;color:#57606a}.figures{display:flex;gap:1.5em;flex-wrap:wrap;margin:.5em 0}\
.figures dt{color:#57606a;font-size:.85em}.figures dd{margin:0;font-size:1.3em}\
.bad{color:#cf222e}.ok{color:#1a7f37}table{border-collapse:collapse;width:100%}\
td,th{border-top:1px solid #d0d7de;padding:.3em;text-align:left;vertical-align:top}\
td.example{color:#57606a;font-size:.85em}.spark{color:#0969da}#said{margin-left:auto}";

/// Refreshes `<main>` every 5 s; sends a button's action with the token.
pub(super) const SCRIPT: &str = r#"
const token = document.getElementById('token');
const said = document.getElementById('said');
token.value = sessionStorage.getItem('runner-token') || '';
token.addEventListener('change', () => sessionStorage.setItem('runner-token', token.value));
async function refresh() {
  try {
    const r = await fetch('/?fragment=1', {cache: 'no-store'});
    if (r.ok) document.getElementById('main').innerHTML = await r.text();
  } catch (e) { said.textContent = 'runner unreachable'; }
}
setInterval(refresh, 5000);
document.addEventListener('click', async (ev) => {
  const b = ev.target.closest('button[data-action]');
  if (!b) return;
  const body = b.dataset.cause ? JSON.stringify({cause: b.dataset.cause}) : '';
  const r = await fetch(b.dataset.action, {method: 'POST', body,
    headers: {'Authorization': 'Bearer ' + token.value, 'Content-Type': 'application/json'}});
  const text = await r.text();
  said.textContent = (r.ok ? '' : r.status + ': ') + text;
  refresh();
});
"#;
