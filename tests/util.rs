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
                    tx.send(Ok(pg.url("postgres"))).unwrap();
                    *SERVER.lock().unwrap() = Some(pg);
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

/// A fresh, empty database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub client: Client,
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connecting to the test database");
    tokio::spawn(conn);
    client
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
        // A target folder of its own: the test's own cargo may still hold the main one.
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2", "--target-dir", "target/plugin-build"])
            .args(["--package", "vitals", "--package", "nutrition", "--package", "lab", "--package", "faulty"])
            .current_dir(root)
            .status()
            .expect("running cargo to build the plugins");
        assert!(
            status.success(),
            "building the plugins failed (is the wasm32-wasip2 target installed? `cargo xtask test` adds it)"
        );
        root.join("target/plugin-build/wasm32-wasip2/plugin")
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
        "[database]\nurl = \"{db_url}\"\nconnect_attempts = 2\n\n[runner]\npoll_interval = \"60s\"\n\n[plugins]\ndir = \"{}\"\n\n{jobs}",
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
