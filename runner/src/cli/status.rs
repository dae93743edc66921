//! `runner status` and `runner retry-failed`: the queue at a glance, and
//! putting failed rows back.

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use runner::config::Config;
use runner::db::{pool, queue, schema};
use runner::plugin::contract;

use super::connect;

fn age(seconds: Option<f64>) -> String {
    let Some(s) = seconds else { return "-".into() };
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86400, s / 3600 % 24),
    }
}

/// What `status` says of one job.
struct JobStatus<'a> {
    name: &'a String,
    enabled: bool,
    q: queue::Queue,
    errors: queue::Causes,
    plugin: String,
    after_deploy: Option<String>,
    ungrouped: Option<i64>,
    /// Rows (or, with user_zones, zone entries) with a NULL or unknown zone.
    unknown_zones: Option<i64>,
    /// Change triggers that do not fire on every write (none: all do).
    capture: Vec<String>,
    partitions: Vec<runner::db::partitions::Partition>,
}

pub async fn status(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let pool = connect(config).await?;
    let client = pool.get().await?;
    let daemon = daemon_get(&config.http.listen, "/ready").await;
    // The daemon's own word on its plugins: what runs, and what it refused.
    // /plugins is the console's when the console has an address of its own.
    let console = config.http.console_listen.as_deref().filter(|a| !a.is_empty()).unwrap_or(&config.http.listen);
    let daemon_plugins = daemon_get(console, "/plugins").await;
    let mut jobs = Vec::new();
    for (name, cfg) in &config.jobs {
        let answer = daemon_plugins.as_ref().map(|(_, answer)| answer);
        jobs.push(job_status(&client, config, name, cfg, answer).await?);
    }
    let sessions = Sessions {
        connected: pool::sessions(&**client).await?,
        bound: config.database.max_connections + pool::BESIDE_THE_POOL,
        server_max: pool::server_max_connections(&**client).await?,
    };
    let refused = |job: &str| -> Vec<String> {
        let Some((_, answer)) = &daemon_plugins else { return Vec::new() };
        let jobs = answer["body"]["jobs"].as_array().into_iter().flatten();
        let Some(j) = jobs.into_iter().find(|j| j["job"] == job) else { return Vec::new() };
        [("plugin reload refused", &j["last_reload_error"]), ("shadow candidate refused", &j["candidate_refused"])]
            .into_iter()
            .filter_map(|(what, why)| Some(format!("{what}: {}", contract::sanitize(why.as_str()?, 2048))))
            .collect()
    };
    let daemon = daemon.as_ref();
    match as_json {
        true => print_json(config, &jobs, &sessions, daemon, &refused)?,
        false => print_text(config, &jobs, &sessions, daemon, &refused),
    }
    Ok(ExitCode::SUCCESS)
}

/// The runner's sessions as Postgres counts them, and the bounds.
struct Sessions {
    connected: i64,
    bound: usize,
    server_max: String,
}

/// One job's status, read from the database (and the daemon's `/plugins`).
async fn job_status<'a>(
    client: &tokio_postgres::Client,
    config: &Config,
    name: &'a String,
    cfg: &runner::config::Job,
    daemon_plugins: Option<&serde_json::Value>,
) -> anyhow::Result<JobStatus<'a>> {
    let q = queue::queue(client, name)
        .await
        .map_err(|e| anyhow::anyhow!("job {name}: {}", runner::db::describe_error(&e)))?;
    let errors = queue::top_errors(client, name, 3).await?;
    // Rows no change can ever name: said, since they are never aggregated.
    let shape = match schema::table(client, &cfg.source).await {
        Ok(Some(table)) => schema::check_source(cfg, &table).ok(),
        _ => None,
    };
    let ungrouped = match &shape {
        Some(shape) => queue::ungrouped(client, cfg, shape).await.ok(),
        None => None,
    };
    let unknown_zones = queue::zones_unknown(client, cfg, shape.as_ref()).await.ok().flatten();
    let plugin = plugin_line(config, cfg, name, daemon_plugins);
    let after_deploy = runner::db::progress::runs(client, name, runner::pipeline::recompute::AFTER_DEPLOY)
        .await?
        .into_iter()
        .next()
        .filter(|_| cfg.recompute_after_deploy.is_some())
        .map(|r| {
            format!(
                "recompute after deploy of {}: {} groups, {}",
                r.plugin_version,
                r.groups_done,
                if r.finished { "finished" } else { "in progress" }
            )
        });
    // Whether every write reaches the queue: the triggers, on the source and its partitions.
    let capture = runner::db::capture::trigger_problems(client, name, cfg).await.unwrap_or_default();
    let partitions = match &shape {
        Some(shape) => runner::db::partitions::of(client, cfg, shape).await.unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(JobStatus {
        name,
        enabled: cfg.enabled,
        q,
        errors,
        plugin,
        after_deploy,
        ungrouped,
        unknown_zones,
        capture,
        partitions,
    })
}

fn print_json(
    config: &Config,
    jobs: &[JobStatus<'_>],
    sessions: &Sessions,
    daemon: Option<&(String, serde_json::Value)>,
    refused: &dyn Fn(&str) -> Vec<String>,
) -> anyhow::Result<()> {
    let Sessions { connected: sessions, bound, server_max } = sessions;
    let jobs: Vec<_> = jobs
        .iter()
        .map(|j| {
            json!({
                "job": j.name, "enabled": j.enabled, "plugin": j.plugin, "queue": j.q, "ungrouped_rows": j.ungrouped,
                "unknown_zones": j.unknown_zones,
                "top_errors": j.errors.shown, "causes_total": j.errors.total,
                "recompute_after_deploy": j.after_deploy, "daemon_refused": refused(j.name),
                "capture_problems": j.capture,
                "partitions": j.partitions.iter().map(|p| p.describe()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let out = json!({
        "database": pool::describe(&config.database.url),
        "jobs": jobs,
        "connections": { "runner_sessions": sessions, "max_per_runner": bound, "pool": config.database.max_connections, "server_max": server_max },
        "daemon": daemon.as_ref().map(|(addr, ready)| json!({"address": addr, "ready": ready})),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_text(
    config: &Config,
    jobs: &[JobStatus<'_>],
    sessions: &Sessions,
    daemon: Option<&(String, serde_json::Value)>,
    refused: &dyn Fn(&str) -> Vec<String>,
) {
    let Sessions { connected: sessions, bound, server_max } = sessions;
    println!("groups (a user's day) per job:");
    println!("{:<12} {:>10} {:>10} {:>8}  {:<14} plugin", "job", "pending", "in backoff", "failed", "oldest pending");
    for JobStatus { name, enabled, q, errors, plugin, after_deploy, ungrouped, unknown_zones, capture, partitions } in
        jobs
    {
        let plugin = if *enabled { plugin.clone() } else { format!("{plugin} (disabled)") };
        let pending = if q.pending_capped { format!("{}+", q.pending) } else { q.pending.to_string() };
        println!(
            "{name:<12} {pending:>10} {:>10} {:>8}  {:<14} {plugin}",
            q.in_backoff,
            q.failed,
            age(q.oldest_pending_seconds)
        );
        if q.held > 0 {
            println!(
                "{:<12} {} group(s) failed on a limit (memory, time or max_group_rows) and wait out their backoff: \
                 their new rows are aggregated when it ends, not at every change",
                "", q.held
            );
        }
        if let Some(n) = ungrouped.filter(|n| *n > 0) {
            println!("{:<12} {n} raw row(s) belong to no group (NULL user or timestamp): never aggregated", "");
        }
        if let Some(n) = unknown_zones.filter(|n| *n > 0) {
            println!(
                "{:<12} {n} row(s) or user zone entr(ies) with an unknown zone: grouped in the job's timezone",
                ""
            );
        }
        if let Some(line) = after_deploy {
            println!("{:<12} {line}", "");
        }
        for e in &errors.shown {
            println!("{:<12} {:>10} × {}", "", e.groups, e.error);
        }
        let hidden = errors.total - errors.shown.len() as i64;
        if hidden > 0 {
            println!("{:<12} {:>10}   and {hidden} more cause(s)", "", "");
        }
        for line in refused(name) {
            println!("{:<12} {line}", "");
        }
        if !partitions.is_empty() {
            let names: Vec<String> = partitions.iter().map(|p| p.describe()).collect();
            println!("{:<12} change capture covers {} partition(s): {}", "", partitions.len(), names.join(", "));
        }
        for problem in capture {
            println!("{:<12} CHANGES MAY BE MISSED: {problem} (run `runner migrate` as the table's owner)", "");
        }
    }
    match daemon {
        Some((addr, ready)) if ready["body"]["status"] == "degraded" => {
            println!("\nrunner daemon at {addr}: ready, degraded {}", ready["body"]["degraded"])
        }
        Some((addr, ready)) if ready.get("status").is_some_and(|s| s == 200) => {
            println!("\nrunner daemon at {addr}: ready")
        }
        Some((addr, ready)) => println!("\nrunner daemon at {addr}: NOT READY {}", ready["body"]),
        None => {}
    }
    println!(
        "\ndatabase {}: {sessions} runner session(s) connected; each runner holds at most {bound} \
         (a pool of {}, +1 listening, +1 operator, +1 pruning a moment each hour); server max_connections {server_max}",
        pool::describe(&config.database.url),
        config.database.max_connections
    );
}

/// What a job runs, without compiling anything: the daemon's live plugin
/// when a daemon answers, else what the file in the folder is (its hash,
/// and when that version last went live, from the kept versions).
fn plugin_line(config: &Config, cfg: &runner::config::Job, job: &str, daemon: Option<&serde_json::Value>) -> String {
    let live = daemon.and_then(|answer| {
        let jobs = answer["body"]["jobs"].as_array()?;
        let j = jobs.iter().find(|j| j["job"] == job)?;
        Some(match (j["plugin"]["version"].as_str(), j["plugin"]["signer"]["key_id"].as_str()) {
            (Some(v), Some(key)) => format!(
                "{} (signed by {key} {}; the daemon runs it)",
                contract::sanitize(v, 256),
                contract::sanitize(j["plugin"]["signer"]["name"].as_str().unwrap_or(""), 64)
            ),
            (Some(v), None) => format!("{} (the daemon runs it)", contract::sanitize(v, 256)),
            (None, _) => "none: the daemon has no plugin for it (paused)".to_string(),
        })
    });
    if let Some(line) = live {
        return line;
    }
    let path = config.plugin_path(cfg);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let hash = runner::plugin::sha256_hex(&bytes);
            let kept = runner::plugin::kept::versions(&path).into_iter().find(|k| k.hash == hash);
            // Verified as a load would, which needs no compile.
            let signed = match config.plugins.trust().check(&path, &bytes) {
                Ok(None) => String::new(),
                Ok(Some(s)) => format!(" (signed by {} {})", s.key_id, s.name),
                Err(why) => format!(" (refused: {why})"),
            };
            let (what, when) = match &kept {
                Some(k) => (
                    k.version().unwrap_or_else(|| format!("{} sha256:{}", cfg.plugin, &hash[..12])),
                    format!("last went live {}", DateTime::<Utc>::from(k.live_at).format("%Y-%m-%d %H:%M UTC")),
                ),
                None => (format!("{} sha256:{}", cfg.plugin, &hash[..12]), "never went live here".to_string()),
            };
            format!("{what}{signed} — {when}; no daemon answered on [http] listen")
        }
        Err(e) => format!("{}: cannot be read: {e}", path.display()),
    }
}

#[derive(clap::Args)]
pub struct RetryArgs {
    /// The job whose failed rows to retry.
    #[arg(long)]
    job: String,
    /// Only rows whose timestamp is at or after this (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only rows whose error contains this text (case-insensitive).
    #[arg(long)]
    error_contains: Option<String>,
}

pub async fn retry_failed(config: &Config, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let cfg = config
        .jobs
        .get(&args.job)
        .ok_or_else(|| super::Usage(format!("there is no job `{}` in {}", args.job, config.path.display())))?;
    // A date means that whole day and after, in the job's time zone, so that
    // a group's rows are never split; a timestamp means that instant.
    let (since_day, since_at): (Option<NaiveDate>, Option<DateTime<Utc>>) = match &args.since {
        None => (None, None),
        Some(s) => match s.parse::<NaiveDate>() {
            Ok(d) => (Some(d), None),
            Err(_) => (
                None,
                Some(
                    DateTime::parse_from_rfc3339(s)
                        .map_err(|_| {
                            super::Usage(format!("--since `{s}` is neither YYYY-MM-DD nor an RFC 3339 timestamp"))
                        })?
                        .to_utc(),
                ),
            ),
        },
    };
    let pool = connect(config).await?;
    let client = pool.get().await?;
    let filter = queue::RetryFilter { since_day, since: since_at, error_contains: args.error_contains, cause: None };
    let n = queue::retry_failed(&**client, &args.job, cfg, &filter).await?;
    println!("{n} failed group(s) of job {} are queued again.", args.job);
    Ok(ExitCode::SUCCESS)
}

/// What the daemon on `[http] listen` says of itself (`GET path`: `/ready`,
/// `/plugins`): its jobs' health and plugins live in that process, not in
/// the database. `None` when no daemon answers there within a second.
async fn daemon_get(listen: &str, path: &str) -> Option<(String, serde_json::Value)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if listen.is_empty() || listen.ends_with(":0") {
        return None;
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(listen).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        // Both answer a few kilobytes at most; read no more than that could be.
        stream.take(1024 * 1024).read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or(json!(body));
        Some(json!({"status": status, "body": body}))
    };
    let ready = tokio::time::timeout(std::time::Duration::from_secs(1), exchange).await.ok()??;
    Some((listen.to_string(), ready))
}
