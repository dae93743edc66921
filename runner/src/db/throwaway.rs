//! A throwaway PostgreSQL server for `runner demo` and the test suite:
//! `initdb` into a temporary folder, a free port on 127.0.0.1, torn down on
//! drop. As root it runs the server as the `postgres` account, since
//! PostgreSQL refuses to run as root.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running throwaway server. Dropping it stops the server and deletes its data.
pub struct TempPostgres {
    child: Option<Child>,
    bin: PathBuf,
    /// The (uid, gid) the server runs as, when we are root.
    account: Option<(u32, u32)>,
    die_with_parent: bool,
    /// Postgres' durable defaults instead of fsync off.
    durable: bool,
    /// `None` once `keep` was called: nothing is stopped or deleted on drop.
    dir: Option<tempfile::TempDir>,
    port: u16,
}

impl TempPostgres {
    /// Starts a new server and waits until it accepts connections. The
    /// server also stops if the thread that started it exits (Linux), so a
    /// crashed test run leaves no server behind.
    pub fn start() -> anyhow::Result<TempPostgres> {
        Self::start_with(true, false)
    }

    /// As `start`, for a server that may outlive this process (`keep`).
    pub fn start_detached() -> anyhow::Result<TempPostgres> {
        Self::start_with(false, false)
    }

    /// As `start`, with Postgres' durable defaults (fsync and
    /// full_page_writes on; `synchronous_commit` left to `ALTER SYSTEM`):
    /// for measuring what a real server costs.
    pub fn start_durable() -> anyhow::Result<TempPostgres> {
        Self::start_with(true, true)
    }

    fn start_with(die_with_parent: bool, durable: bool) -> anyhow::Result<TempPostgres> {
        let bin = find_bin_dir()?;
        let account = unprivileged_account()?;
        let dir = tempfile::Builder::new().prefix("runner-pg-").tempdir().context("creating a temporary folder")?;
        let data = dir.path().join("data");
        if let Some((uid, gid)) = account {
            chown(dir.path(), uid, gid)?;
        }
        let as_account = |cmd: &mut Command| {
            if let Some((uid, gid)) = account {
                cmd.uid(uid).gid(gid);
            }
        };

        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "-D"]).arg(&data);
        as_account(&mut initdb);
        let out = initdb.stdin(Stdio::null()).output().context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }

        let port = free_port()?;
        let mut server = TempPostgres { child: None, dir: Some(dir), port, bin, account, die_with_parent, durable };
        server.spawn()?;
        Ok(server)
    }

    /// Starts the server process on the existing data folder and waits for it.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let (bin, account, port, die_with_parent) = (&self.bin, self.account, self.port, self.die_with_parent);
        // A throwaway server trades durability for speed unless asked not
        // to; JIT only slows short queries.
        let fast: &[&str] =
            if self.durable { &[] } else { &["fsync=off", "synchronous_commit=off", "full_page_writes=off"] };
        let dir = self.dir.as_ref().context("the server was kept")?.path().to_path_buf();
        let data = dir.join("data");
        // One log across restarts; readiness is looked for after `from`.
        let log_path = dir.join("postgres.log");
        let log = File::options().create(true).append(true).open(&log_path)?;
        let from = log.metadata()?.len() as usize;
        if let Some((uid, gid)) = account {
            chown(&log_path, uid, gid)?;
        }
        let mut postgres = Command::new(bin.join("postgres"));
        postgres.arg("-D").arg(&data).args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"]);
        postgres.arg("-c").arg(format!("unix_socket_directories={}", dir.display()));
        for setting in fast.iter().chain(&["jit=off", "max_connections=200"]) {
            postgres.args(["-c", setting]);
        }
        if let Some((uid, gid)) = account {
            postgres.uid(uid).gid(gid);
        }
        // Its own process group: a signal meant for ours (a Ctrl-C in the
        // terminal, a tool stopping its process group) is not a shutdown
        // request. Tied to our thread instead, below.
        postgres.process_group(0);
        if die_with_parent {
            // SAFETY: prctl is async-signal-safe and touches only the child.
            unsafe {
                postgres.pre_exec(|| {
                    // Fast shutdown if our process dies without dropping us.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                    Ok(())
                });
            }
        }
        let child =
            postgres.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("starting postgres")?;
        self.child = Some(child);
        self.wait_ready(&log_path, from)
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only a child not yet waited for: a reaped one's pid may belong
            // to another process by now.
            if let Ok(None) = child.try_wait() {
                // SIGINT is PostgreSQL's fast shutdown: disconnect clients, exit cleanly.
                // SAFETY: plain kill(2) on our own child's pid, not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            }
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same data and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    fn wait_ready(&mut self, log: &Path, from: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read(log)
                .map(|b| String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned())
                .unwrap_or_default();
            if text.contains("database system is ready to accept connections") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().context("not started")?.try_wait()? {
                bail!("postgres exited ({status}) while starting:\n{}", text.trim());
            }
            if Instant::now() > deadline {
                bail!("postgres did not start within 60 s:\n{}", text.trim());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A connection URL for database `dbname` (`postgres` always exists).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Creates a database on the server.
    pub async fn create_database(&self, dbname: &str) -> anyhow::Result<()> {
        let (admin, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        admin.batch_execute(&format!("CREATE DATABASE {}", super::ident::quote(dbname))).await?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's folder (data, socket and log).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// What became of the server process: `None` while it runs, else how it
    /// ended. For a test harness whose clients are suddenly refused.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id of the postmaster last started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// If the server has exited, starts it again on the same data and port
    /// and says what happened: how it ended, the end of its log, and
    /// whether it came back. `None` while it runs.
    pub fn revive(&mut self) -> Option<String> {
        let status = self.exit_status()?;
        let log = self.log_tail(60);
        // A killed postmaster's backends leave on their own within moments;
        // until they have, a new one refuses their shared memory.
        let mut outcome = self.restart();
        for _ in 0..20 {
            if outcome.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            outcome = self.restart();
        }
        let outcome = match outcome {
            Ok(()) => "It was started again.".to_string(),
            Err(e) => format!("It could not be started again: {e:#}"),
        };
        Some(format!("PostgreSQL on port {} exited ({status}); its log ends:\n{log}\n{outcome}", self.port))
    }

    /// The last `lines` lines of the server's log (all its starts).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(self.dir().join("postgres.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Leaves the server running after this value is gone; returns its folder.
    pub fn keep(mut self) -> PathBuf {
        self.dir.take().map(|d| d.keep()).unwrap_or_default()
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.dir.is_some() {
            self.stop();
        }
    }
}

/// PostgreSQL's server binaries: on PATH, or the newest under /usr/lib/postgresql.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().next() {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql; \
         install them (Debian: apt-get install postgresql) or set DATABASE_URL",
    )
}

/// As root: the uid and gid of the `postgres` account. Otherwise `None`.
fn unprivileged_account() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns NULL or a pointer to a static record that we
    // read at once, before any other passwd call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("running as root, and there is no `postgres` account to run the throwaway server as");
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn chown(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
