//! The operator's console: the page (in a real headless Chromium), and the
//! guarded actions behind its buttons.

use std::path::Path;
use std::time::Duration;

use crate::util::{
    Daemon, TestDb, config_with_own_plugins, http_get, http_post, job, one_reading, run_ok, wait_count, wait_http,
};

const TOKEN: &str = "a-long-enough-admin-token";

fn with_token(config: &Path) {
    let text =
        std::fs::read_to_string(config).unwrap().replace("[http]\n", &format!("[http]\nadmin_token = \"{TOKEN}\"\n"));
    std::fs::write(config, text).unwrap();
}

#[tokio::test]
async fn actions_need_the_admin_token_and_do_what_they_say() {
    let db = TestDb::new().await;
    let (_dir, config, plugins) =
        config_with_own_plugins(&db.url, &job("faulty", "faulty.wasm", "max_attempts = 1"), &["faulty.wasm"]);
    run_ok(&config, &["migrate"]).await;

    // No token configured: read-only.
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    let (code, body) = http_post(&addr, "/jobs/faulty/pause", Some(TOKEN), "").await;
    assert_eq!(code, 403, "{body}");
    let (code, page) = http_get(&addr, "/").await;
    assert_eq!(code, 200);
    assert!(page.contains("read-only: no [http] admin_token is set"), "{page}");
    daemon.stop().await;

    with_token(&config);
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;
    for token in [None, Some("wrong-token-of-some-length")] {
        let (code, body) = http_post(&addr, "/jobs/faulty/pause", token, "").await;
        assert_eq!(code, 401, "{body}");
    }
    assert_eq!(http_post(&addr, "/jobs/nosuch/pause", Some(TOKEN), "").await.0, 404);
    // The token is checked before any body is read: a caller without it
    // declares 2 MB, sends none, and is answered at once.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /jobs/faulty/retry-failed HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer wrong\r\n\
             Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    // The scheme is matched without regard to case (RFC 7235).
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "POST /jobs/nosuch/pause HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: bearer {TOKEN}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "authorized, then no such job: {answer}");
    }

    // Paused: rows wait; resumed: they are aggregated.
    let (code, body) = http_post(&addr, "/jobs/faulty/pause", Some(TOKEN), "").await;
    assert_eq!((code, body.as_str()), (200, r#"{"job":"faulty","paused":true}"#));
    let woken = crate::util::wakeups(&addr, "faulty").await;
    one_reading(&db, 1, "2024-05-01").await;
    // Not a sleep: the paused loop answered the row's notification, and left it queued.
    crate::util::wait_http(&daemon, &addr, "/metrics", 60, |_, m| crate::util::wakeups_in(m, "faulty") > woken).await;
    assert_eq!(db.count(crate::util::QUEUED).await, 1, "still queued");
    assert!(http_get(&addr, "/").await.1.contains("paused by an operator"));
    http_post(&addr, "/jobs/faulty/resume", Some(TOKEN), "").await;
    crate::util::wait_settled(&db, 60).await;

    // Failures grouped by cause on the page; retry with a filter.
    one_reading(&db, 13, "2024-05-01").await;
    one_reading(&db, 13, "2024-05-02").await;
    one_reading(&db, 14, "2024-05-01").await;
    wait_count(&db, crate::util::FAILED_GROUPS, 3, 60).await;
    let page = wait_http(&daemon, &addr, "/", 60, |_, p| p.contains("user 13 is refused")).await;
    assert!(page.contains("on user … day …: plugin error: user 13 is refused"), "{page}");
    assert!(!page.contains("heart_rate"), "no raw readings on the page");
    assert!(!page.contains(&db.url), "no database URL on the page");
    let (code, body) =
        http_post(&addr, "/jobs/faulty/retry-failed", Some(TOKEN), r#"{"error_contains": "trapped"}"#).await;
    assert_eq!((code, body.as_str()), (200, r#"{"job":"faulty","retried":1}"#), "{body}");
    let (code, body) = http_post(&addr, "/jobs/faulty/retry-failed", Some(TOKEN), "{bad json").await;
    assert_eq!(code, 400, "{body}");
    // A mistyped filter is refused by name, not read as "retry everything".
    let (code, body) =
        http_post(&addr, "/jobs/faulty/retry-failed", Some(TOKEN), r#"{"errorContains": "refused"}"#).await;
    assert!(code == 400 && body.contains("unknown field `errorContains`"), "{code} {body}");

    // A cause whose own text names a group: its button retries exactly its
    // rows. Six causes: the page shows five and says one more exists.
    for user in [24, 16, 17, 21] {
        one_reading(&db, user, "2024-05-01").await;
    }
    one_reading(&db, 24, "2024-05-02").await;
    // Users 13 (two days) and 14 (retried above, failed again), and these five.
    wait_count(&db, crate::util::FAILED_GROUPS, 8, 60).await;
    let button = "user … day …: plugin error: user … day … has no baseline'>retry these 2</button>";
    let page = wait_http(&daemon, &addr, "/", 60, |_, p| p.contains(button)).await;
    let end = page.find(button).unwrap() + button.find('\'').unwrap();
    let cause = &page[page[..end].rfind("data-cause='").unwrap() + "data-cause='".len()..end];
    assert!(cause.starts_with("plugin faulty@") && cause.contains("on user … day …:"), "{cause}");
    assert!(page.contains("1 more cause(s) not shown"), "{page}");
    let (code, body) =
        http_post(&addr, "/jobs/faulty/retry-failed", Some(TOKEN), &serde_json::json!({ "cause": cause }).to_string())
            .await;
    assert_eq!((code, body.as_str()), (200, r#"{"job":"faulty","retried":2}"#), "{body}");
    // Not framed; no inline script (the CSP allows the runner's own file only).
    let (_, head, _) = crate::util::http_get_with_head(&addr, "/").await;
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self';"), "{head}");
    assert!(!page.contains("<script>") && page.contains("<script src=/console.js></script>"), "{page}");
    let (code, script) = http_get(&addr, "/console.js").await;
    assert!(code == 200 && script.contains("dataset.cause"), "{code} {script}");

    // Promote a shadow candidate: a rename, then the hot reload.
    assert_eq!(http_post(&addr, "/jobs/faulty/promote", Some(TOKEN), "").await.0, 404);
    let v2 = crate::util::variant(&std::fs::read(plugins.join("faulty.wasm")).unwrap(), "v2");
    crate::util::deploy(&plugins.join("faulty.candidate.wasm"), &v2);
    daemon.wait_for("Shadow candidate loaded", 1, 60).await;
    let (code, body) = http_post(&addr, "/jobs/faulty/promote", Some(TOKEN), "").await;
    assert_eq!(code, 200, "{body}");
    daemon.wait_for("Plugin swapped.", 1, 60).await;
    assert!(!plugins.join("faulty.candidate.wasm").exists());
    daemon.stop().await;
}

/// The folder of the browser test's script and its pinned playwright-core.
fn browser_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Debian's Chromium (`cargo xtask test` installs it).
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-headless-shell"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium: `apt-get install chromium` (`cargo xtask test` installs it)")
}

#[tokio::test]
async fn the_console_in_a_real_browser_shows_jobs_and_errors_and_its_retry_button_requeues() {
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists() {
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "npm ci in tests/browser: {}", String::from_utf8_lossy(&out.stderr));
    }
    let db = TestDb::new().await;
    let (_dir, config, _plugins) =
        config_with_own_plugins(&db.url, &job("faulty", "faulty.wasm", "max_attempts = 1"), &["faulty.wasm"]);
    with_token(&config);
    run_ok(&config, &["migrate"]).await;
    one_reading(&db, 1, "2024-05-01").await;
    one_reading(&db, 13, "2024-05-01").await;
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    wait_count(&db, crate::util::FAILED_GROUPS, 1, 60).await;

    let screenshot = std::env::temp_dir().join(format!("console-{}.png", std::process::id()));
    let out = tokio::process::Command::new("node")
        .arg(dir.join("console.mjs"))
        .args([&format!("http://{addr}/"), TOKEN, screenshot.to_str().unwrap(), chromium()])
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser script failed:\n{said}\nrunner log:\n{}", daemon.log());
    assert!(said.contains("job faulty shown") && said.contains("error shown") && said.contains("retried 1"), "{said}");
    // The click re-queued the failed row; the runner took it again.
    assert!(daemon.log().contains("Failed groups queued again from HTTP."));
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);
    daemon.stop().await;
}

/// Every `runner_*` metric name the runner's source records or describes.
fn metric_names() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                names.extend(runner_tokens(&std::fs::read_to_string(&path).unwrap(), "\"runner_"));
            }
        }
    }
    names
}

/// The `runner_...` names in `text` that follow `prefix` (`"runner_` in source).
fn runner_tokens(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len() - "runner_".len()..];
            rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect()
        })
        .collect()
}

#[tokio::test]
async fn alert_rules_pass_promtool_and_the_dashboard_uses_only_real_metrics() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for args in [&["check", "rules", "alerts.yaml"][..], &["test", "rules", "alerts_test.yaml"]] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(deploy.join("prometheus"))
            .output()
            .expect("promtool (Debian package `prometheus`; `cargo xtask test` installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let known = metric_names();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/runner.json")).unwrap()).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    exprs.push(std::fs::read_to_string(deploy.join("prometheus/alerts.yaml")).unwrap());
    for expr in &exprs {
        for name in runner_tokens(expr, "runner_") {
            let base = name.trim_end_matches("_bucket").to_string();
            assert!(known.contains(&base), "`{name}` in {expr:?} is not a metric of the runner ({known:?})");
        }
    }
}

#[tokio::test]
async fn many_clients_on_the_console_take_no_worker_connection_and_share_one_snapshot() {
    let db = TestDb::new().await;
    let (_dir, config) = crate::util::migrated(&db, &job("vitals", "vitals.wasm", "workers = 1")).await;
    // Room for a second connection beside the one worker: a console read
    // that borrowed from the workers' pool would show as a peak of 2.
    let text = std::fs::read_to_string(&config).unwrap().replace("[database]\n", "[database]\nmax_connections = 2\n");
    std::fs::write(&config, text).unwrap();
    runner::db::seed::vitals(&db.client, 60, 2, chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()).await.unwrap();
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    let started = std::time::Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (addr, stop) = (addr.clone(), stop.clone());
            tokio::spawn(async move {
                let mut requests = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = if i % 2 == 0 { "/" } else { "/metrics" };
                    assert_eq!(http_get(&addr, path).await.0, 200);
                    requests += 1;
                }
                requests
            })
        })
        .collect();
    let operator_sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner-operator' AND datname = current_database()";
    let most_sessions = std::sync::atomic::AtomicI64::new(0);
    let drained = || async {
        most_sessions.fetch_max(db.count(operator_sessions).await, std::sync::atomic::Ordering::Relaxed);
        let left = db.count(crate::util::QUEUED).await;
        if left == 0 { Ok(()) } else { Err(left) }
    };
    crate::util::eventually(180, drained, |left| format!("the backlog did not drain ({left} keys):\n{}", daemon.log()))
        .await;
    let most_sessions = most_sessions.into_inner();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut requests = 0;
    for client in clients {
        requests += client.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (_, metrics) = http_get(&addr, "/metrics").await;
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(most_sessions <= 1, "{most_sessions} operator sessions at once");
    assert_eq!(value("runner_pool_peak_in_use"), 1.0, "an HTTP read used a worker connection");
    // At most one snapshot per 2 s, however many requests.
    let snapshots = value("runner_operator_snapshots_total");
    assert!(snapshots <= elapsed / 2.0 + 2.0, "{snapshots} snapshots in {elapsed:.1} s");
    assert!(requests as f64 > 2.0 * snapshots, "{requests} requests, {snapshots} snapshots");
    daemon.stop().await;
}
