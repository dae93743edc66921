//! Test helpers: one throwaway PostgreSQL per test run (or `DATABASE_URL`),
//! a fresh database per test, the plugins built for wasm32-wasip2, config
//! files, and the `runner` binary.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use runner::db::throwaway::TempPostgres;
use tokio_postgres::{Client, NoTls};

static SERVER: Mutex<Option<TempPostgres>> = Mutex::new(None);

/// The admin URL of the test server, without a database name.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        // Started from a thread that lives as long as the process: the server
        // is tied to it (PDEATHSIG), and stopped and deleted at exit.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            match TempPostgres::start() {
                Ok(pg) => {
                    let url = pg.url("postgres");
                    *SERVER.lock().unwrap() = Some(pg);
                    tx.send(Ok(url)).unwrap();
                    watch_server();
                }
                Err(e) => tx.send(Err(format!("{e:#}"))).unwrap(),
            }
            loop {
                std::thread::park();
            }
        });
        let url = rx.recv().unwrap().unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"));
        extern "C" fn stop_server() {
            if let Ok(mut server) = SERVER.lock() {
                server.take();
            }
        }
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_server) };
        url
    })
}

/// Watches the shared server from the thread that started it: should it
/// ever exit, that is said at once on stderr with the end of its log (what
/// a test's panic cannot show, on a machine we cannot log into), and it is
/// started again on the same data and port, so that one loss fails only the
/// tests it cut into.
fn watch_server() -> ! {
    use std::io::Write as _;
    let mut revived = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if revived == 3 {
            continue; // said three times; the tests' panics say the rest
        }
        let Some(said) = SERVER.lock().unwrap().as_mut().and_then(TempPostgres::revive) else { continue };
        revived += 1;
        // Straight to the file descriptor: libtest captures `eprintln!`.
        let _ = writeln!(std::io::stderr().lock(), "\nThe shared test server: {said}\n");
    }
}

/// A fresh, empty database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub client: Client,
}

pub async fn connect(url: &str) -> Client {
    match tokio_postgres::connect(url, NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => panic!("connecting to the test database: {e}\n{}", server_report()),
    }
}

/// What became of the shared test server, with the end of its log: a
/// refused connection then says why, on a machine we cannot log into.
fn server_report() -> String {
    let Ok(mut server) = SERVER.lock() else { return "the shared test server's lock is poisoned".into() };
    match server.as_mut() {
        None => "the shared test server is DATABASE_URL's, or not started".into(),
        Some(pg) => {
            let state = pg.exit_status().map_or("still running".to_string(), |s| format!("exited: {s}"));
            format!("the shared test server's process is {state}; the end of its log:\n{}", pg.log_tail(40))
        }
    }
}

impl TestDb {
    pub async fn new() -> TestDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let admin_url = server_url();
        let admin = connect(admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_db(admin_url, &name);
        TestDb { client: connect(&url).await, url }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).await.unwrap().get(0)
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
fn with_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out = format!("{out}?{q}");
    }
    out
}

/// The folder holding the built test and bundled plugins (`vitals.wasm`, `faulty.wasm`).
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = root.join("target/plugin-build/wasm32-wasip2/plugin");
        // A target folder of its own: the test's own cargo may still hold the main one.
        let build = |args: &[&str]| {
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--profile",
                    "plugin",
                    "--target",
                    "wasm32-wasip2",
                    "--target-dir",
                    "target/plugin-build",
                ])
                .args(args)
                .current_dir(root)
                .status()
                .expect("running cargo to build the plugins");
            assert!(
                status.success(),
                "building the plugins failed (is the wasm32-wasip2 target installed? `cargo xtask test` adds it)"
            );
        };
        // The hostile plugin's describe() variants first, kept under their
        // own names; the plain build below then restores `hostile.wasm`.
        let variants =
            [("hostile", "amplify"), ("hostile", "slow-describe"), ("diffy", "changed-rule"), ("stateful", "late")];
        for (package, feature) in variants {
            build(&["--package", package, "--features", feature]);
            let variant = format!("{package}_{}.wasm", feature.replace('-', "_"));
            std::fs::copy(out.join(format!("{package}.wasm")), out.join(variant)).unwrap();
        }
        let packages = ["vitals", "nutrition", "lab", "faulty", "hostile", "diffy", "stateful", "bounds"];
        build(&packages.iter().flat_map(|p| ["--package", p]).collect::<Vec<_>>());
        out
    })
}

/// A job section over the vitals tables for the config file.
pub fn job(name: &str, plugin: &str, extra: &str) -> String {
    job_on(name, plugin, "vitals_raw", "vitals_daily", "recorded_at", extra)
}

/// A job section for the config file.
pub fn job_on(name: &str, plugin: &str, source: &str, target: &str, timestamp: &str, extra: &str) -> String {
    format!(
        "[jobs.{name}]\nplugin = \"{plugin}\"\nsource = \"{source}\"\ntarget = \"{target}\"\ntimestamp_column = \"{timestamp}\"\n{extra}\n"
    )
}

/// Writes a config with the given job sections into a temp folder.
pub fn config(db_url: &str, jobs: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runner.toml");
    let text = format!(
        "[database]\nurl = \"{db_url}\"\nconnect_attempts = 2\n\n[runner]\npoll_interval = \"60s\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[plugins]\ndir = \"{}\"\n\n{jobs}",
        plugins_dir().display()
    );
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// The runner binary with `--config path`, without an inherited DATABASE_URL.
pub fn runner(config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(args).arg("--config").arg(config).env_remove("DATABASE_URL").env("RUST_LOG", "info");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd
}

/// Runs the runner to completion; panics with its output if it fails.
pub async fn run_ok(config: &Path, args: &[&str]) -> Output {
    let out = runner(config, args).output().await.unwrap();
    assert!(out.status.success(), "runner {args:?} failed: {}\n{}", out.status, text(&out));
    out
}

/// stdout and stderr of a finished command.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `runner migrate` on a fresh database with the given jobs; returns the config.
pub async fn migrated(db: &TestDb, jobs: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = config(&db.url, jobs);
    run_ok(&path, &["migrate"]).await;
    (dir, path)
}

/// A `runner run` daemon whose log is collected while it runs.
pub struct Daemon {
    child: tokio::process::Child,
    log: std::sync::Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::spawn(runner(config, &["run"]))
    }

    /// Starts a prepared `runner run` command.
    pub fn spawn(mut command: tokio::process::Command) -> Daemon {
        let mut child = command.spawn().unwrap();
        let log = std::sync::Arc::new(Mutex::new(String::new()));
        type Stream = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
        let stderr = child.stderr.take().map(|s| Box::new(s) as Stream);
        let stdout = child.stdout.take().map(|s| Box::new(s) as Stream);
        for stream in [stderr, stdout].into_iter().flatten() {
            let log = log.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt as _;
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The most memory the process has held so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id().unwrap())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    }

    /// Waits until the log contains `text` `n` times; panics with the log after `secs`.
    pub async fn wait_for(&self, text: &str, n: usize, secs: u64) {
        let seen = || async { (self.log().matches(text).count() >= n).then_some(()).ok_or_else(|| self.log()) };
        eventually(secs, seen, |log| format!("no {n}× `{text}`; log:\n{log}")).await
    }

    /// Waits until the plugin swapped to `version`: the swap meant, whatever
    /// other swaps a slow or fast machine logs around it.
    pub async fn wait_for_swap_to(&self, version: &str, secs: u64) {
        let to = format!("to={version}");
        let swapped = || async {
            let log = self.log();
            log.lines().any(|l| l.contains("Plugin swapped.") && l.contains(&to)).then_some(()).ok_or(log)
        };
        eventually(secs, swapped, |log| format!("no swap to {version}; log:\n{log}")).await
    }

    /// SIGTERM, then expects a clean exit 0.
    pub async fn stop(mut self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        let status =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait()).await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(status.success(), "runner exited with {status}; log:\n{}", self.log());
        self.log()
    }
}

/// The one deadline loop: polls `check` until it gives `Ok`, and panics
/// after `secs` with `why` of its last `Err`. A wait names its condition;
/// nothing in the tests sleeps and hopes.
pub async fn eventually<T, E, F, Fut>(secs: u64, check: F, why: impl Fn(E) -> String) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(done) => return done,
            Err(last) if std::time::Instant::now() >= deadline => panic!("after {secs} s: {}", why(last)),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// Waits until `sql` (a count) reaches `n`; panics after `secs`.
pub async fn wait_count(db: &TestDb, sql: &str, n: i64, secs: u64) {
    let reached = || async {
        let got = db.count(sql).await;
        if got >= n { Ok(()) } else { Err(got) }
    };
    eventually(secs, reached, |got| format!("`{sql}` is {got}, not {n}")).await
}

/// Queued changes and purges, and groups waiting out a backoff: 0 once
/// every change so far has been aggregated (or its group has failed for good).
pub const QUEUED: &str = "SELECT (SELECT count(*) FROM runner_changes) + (SELECT count(*) FROM runner_changes_utc)
    + (SELECT count(*) FROM runner_purges)
    + (SELECT count(*) FROM runner_group_failures WHERE NOT failed)";

/// Groups that reached `max_attempts`.
pub const FAILED_GROUPS: &str = "SELECT count(*) FROM runner_group_failures WHERE failed";

/// Waits until a runner session sits inside a transaction (a group's plugin running).
pub async fn wait_runner_in_transaction(db: &TestDb) {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner' AND datname = current_database()
        AND state = 'idle in transaction'";
    wait_count(db, sql, 1, 60).await;
}

/// Waits until every queued change has been aggregated (or its group failed).
pub async fn wait_settled(db: &TestDb, secs: u64) {
    let settled = || async {
        let queued = db.count(QUEUED).await;
        if queued == 0 { Ok(()) } else { Err(queued) }
    };
    eventually(secs, settled, |queued| format!("{queued} change(s) still queued")).await
}

/// A user's one group: `failed`, `pending` (queued, maybe in backoff) or
/// `completed`, with its attempts and error.
pub async fn group_state(db: &TestDb, user: i64) -> (String, i32, Option<String>) {
    let failure = db
        .client
        .query_opt(
            "SELECT CASE WHEN failed THEN 'failed' ELSE 'pending' END, attempts, error
             FROM runner_group_failures WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    if let Some(r) = failure {
        return (r.get(0), r.get(1), Some(r.get(2)));
    }
    let queued = db
        .count(&format!(
            "SELECT (SELECT count(*) FROM runner_changes WHERE user_id = {user})
                  + (SELECT count(*) FROM runner_changes_utc WHERE user_id = {user})"
        ))
        .await;
    (if queued > 0 { "pending" } else { "completed" }.into(), 0, None)
}

/// Puts `bytes` at `dest` the way CI deploys: write aside, then rename.
pub fn deploy(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_file_name(format!(".{}.tmp", dest.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// The same component with a custom section appended: identical behaviour,
/// a different hash, so a different `plugin_version`.
pub fn variant(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"runner-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(payload.len() as u8); // LEB128, payloads here are short
    out.extend(payload);
    out
}

/// A config whose plugin folder is a fresh copy of the named built plugins.
pub fn config_with_own_plugins(db_url: &str, jobs: &str, plugins: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, path) = config(db_url, jobs);
    let own = dir.path().join("plugins");
    std::fs::create_dir(&own).unwrap();
    for p in plugins {
        std::fs::copy(plugins_dir().join(p), own.join(p)).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("dir = ") { format!("dir = \"{}\"", own.display()) } else { l.to_string() })
        .collect();
    std::fs::write(&path, text.join("\n")).unwrap();
    (dir, path, own)
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with_head(addr, path).await;
    (status, body)
}

/// A plain HTTP/1.1 GET; returns the status code, the head (status line
/// and headers, lowercase) and the body.
pub async fn http_get_with_head(addr: &str, path: &str) -> (u16, String, String) {
    try_http_get(addr, path).await.unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// A GET that may fail at the socket (refused, reset): what a server at
/// its connection cap does, and what `wait_http` waits out.
async fn try_http_get(addr: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head.to_lowercase(), body.to_string()))
}

/// GETs `path` until `pred(status, body)` holds; returns that body. The
/// console's and `/metrics`' queue figures are a snapshot up to 2 s old, so
/// a test waits for them rather than reading them once.
pub async fn wait_http(daemon: &Daemon, addr: &str, path: &str, secs: u64, pred: impl Fn(u16, &str) -> bool) -> String {
    let matched = || async {
        // A refused or reset connection is "not yet", like a wrong status.
        let (status, _, body) = try_http_get(addr, path).await.unwrap_or_else(|e| (0, String::new(), e.to_string()));
        if pred(status, &body) { Ok(body) } else { Err((status, body)) }
    };
    eventually(secs, matched, |(status, body)| {
        format!("{path} never matched; last {status} {body}; log:\n{}", daemon.log())
    })
    .await
}

impl Daemon {
    /// The HTTP address the daemon logged when it started listening.
    pub async fn http_address(&self) -> String {
        self.wait_for("HTTP endpoints listening", 1, 60).await;
        let log = self.log();
        let line = log.lines().find(|l| l.contains("HTTP endpoints listening")).unwrap();
        let start = line.find("address=").unwrap() + "address=".len();
        line[start..].split_whitespace().next().unwrap().to_string()
    }
}

/// The `plugin_version` the runner gives the vitals component `wasm`.
pub fn vitals_version(wasm: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    let hash: String = Sha256::digest(wasm).iter().map(|b| format!("{b:02x}")).collect();
    format!("vitals@1.1.0+sha256:{}", &hash[..12])
}

/// Every vitals daily row as one text, for comparing whole results.
pub async fn vitals_daily_text(client: &Client) -> String {
    daily_text(client, "vitals_daily").await
}

/// Every row of a daily table shaped like `vitals_daily` as one text.
pub async fn daily_text(client: &Client, table: &str) -> String {
    let daily = format!(
        "SELECT coalesce(string_agg(concat_ws(',', user_id, day, metric, unit, sample_count,
        rejected_count, min_value, max_value, avg_value, last_value), E'\\n' ORDER BY user_id, day, metric), '')
        FROM {table}"
    );
    client.query_one(&daily, &[]).await.unwrap().get(0)
}

/// A plain HTTP/1.1 POST with an optional bearer token and JSON body;
/// returns the status code and the body.
pub async fn http_post(addr: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// One plausible heart-rate reading of `user` at 10:00 UTC on `day`.
pub async fn one_reading(db: &TestDb, user: i64, day: &str) {
    db.client
        .execute(
            &format!("INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, '{day} 10:00Z', 'heart_rate', 60, 'bpm')"),
            &[&user],
        )
        .await
        .unwrap();
}

/// A plugin built by `cargo xtask build-plugins` into `target/plugins/`
/// (the Python and JavaScript vitals: `cargo xtask test` builds them first).
pub fn built_plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins").join(name);
    assert!(path.exists(), "{} is missing: run `cargo xtask build-plugins` (`cargo xtask test` does)", path.display());
    path
}

/// A config whose plugin folder holds `file` under the name `as_name`.
pub fn config_with_plugin_file(db_url: &str, jobs: &str, file: &Path, as_name: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, path, own) = config_with_own_plugins(db_url, jobs, &[]);
    std::fs::copy(file, own.join(as_name)).unwrap();
    (dir, path)
}

/// `user day readings` per group of `vitals_daily`, a line each: what the
/// runner made of the raw rows.
pub async fn daily_counts(db: &TestDb) -> String {
    let sql = "SELECT coalesce(string_agg(user_id || ' ' || day || ' ' || n, E'\\n' ORDER BY user_id, day), '')
               FROM (SELECT user_id, day, sum(sample_count + rejected_count) n FROM vitals_daily GROUP BY 1, 2) g";
    db.client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The same, computed by Postgres itself from the raw rows in `table`, with
/// `day` (an SQL expression) as a row's day: what the spec says it must be.
pub async fn counts_by_day(db: &TestDb, table: &str, day: &str) -> String {
    let sql = format!(
        "SELECT coalesce(string_agg(user_id || ' ' || day || ' ' || n, E'\\n' ORDER BY user_id, day), '')
         FROM (SELECT user_id, {day} AS day, count(*) n FROM {table} GROUP BY 1, 2) g"
    );
    db.client.query_one(&sql, &[]).await.unwrap().get(0)
}

/// One `vitals_raw` reading at `at` (RFC 3339 text).
pub async fn insert_reading(db: &TestDb, user: i64, at: &str, metric: &str, value: f64, unit: &str) {
    db.client
        .execute(
            "INSERT INTO vitals_raw (user_id, recorded_at, metric, value, unit) VALUES ($1, $2::text::timestamptz, $3, $4, $5)",
            &[&user, &at, &metric, &value, &unit],
        )
        .await
        .unwrap();
}

/// A job's `runner_job_wakeups_total` in a `/metrics` text (0 before the
/// first): how a negative check knows the daemon answered a notification.
pub fn wakeups_in(metrics: &str, job: &str) -> u64 {
    let name = format!("runner_job_wakeups_total{{job=\"{job}\"}}");
    let line = metrics.lines().find(|l| l.starts_with(&name));
    line.and_then(|l| l.split_whitespace().last()?.parse().ok()).unwrap_or(0)
}

/// [`wakeups_in`] of the daemon at `addr`, now.
pub async fn wakeups(addr: &str, job: &str) -> u64 {
    wakeups_in(&http_get(addr, "/metrics").await.1, job)
}
