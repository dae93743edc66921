//! A job and its swappable state: the config, the live plugin and the SQL
//! built from both (identifiers validated and quoted), and an optional
//! shadow candidate. Workers take a snapshot per group, so a swap never
//! changes a group in flight; the next group sees the new state.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config;
use crate::db::schema::SourceShape;
pub use crate::db::statements::Statements;
use crate::plugin::{Limits, Plugin};
use crate::rows::{Frame, Span};

/// A job: its name, its current state, and what wakes its loop.
pub struct Job {
    pub name: String,
    state: RwLock<Arc<JobState>>,
    /// Woken when rows arrive (NOTIFY) or the state changes.
    pub wake: Arc<Notify>,
    /// Why the last plugin change was refused, if it was.
    pub last_reload_error: Mutex<Option<String>>,
    /// Why the shadow candidate file now in the folder was refused, if it
    /// was: such a file is never promoted.
    candidate_error: Mutex<Option<String>>,
    /// Raw rows completed since start (for progress displays).
    pub rows_completed: AtomicU64,
    /// What keeps the job from working, if anything (`/ready`, `status`).
    pub health: Mutex<Health>,
    /// The last minutes of work, for the console.
    pub activity: Mutex<Activity>,
    /// The loop has a batch in hand (background recomputes wait for it).
    pub busy: std::sync::atomic::AtomicBool,
}

/// Recent work of a job: rows completed per 10 s over the last 10 minutes,
/// and the last group times.
#[derive(Debug, Default)]
pub struct Activity {
    /// (start of the 10 s slot, rows completed in it), oldest first.
    slots: std::collections::VecDeque<(std::time::Instant, u64)>,
    groups: std::collections::VecDeque<Duration>,
}

impl Activity {
    const SLOT: Duration = Duration::from_secs(10);
    const SLOTS: usize = 60;
    const GROUPS: usize = 2000;

    /// Records a group that completed `rows` raw rows in `took`.
    pub fn record(&mut self, rows: u64, took: Duration) {
        let now = std::time::Instant::now();
        match self.slots.back_mut() {
            Some((start, n)) if now.duration_since(*start) < Self::SLOT => *n += rows,
            _ => self.slots.push_back((now, rows)),
        }
        while self.slots.len() > Self::SLOTS {
            self.slots.pop_front();
        }
        self.groups.push_back(took);
        while self.groups.len() > Self::GROUPS {
            self.groups.pop_front();
        }
    }

    /// Rows completed per 10 s slot over the last 10 minutes, oldest first
    /// (empty slots included, so the chart's time axis is even).
    pub fn rows_per_slot(&self) -> Vec<u64> {
        let now = std::time::Instant::now();
        let mut out = vec![0; Self::SLOTS];
        for (start, n) in &self.slots {
            let age = (now.duration_since(*start).as_secs() / Self::SLOT.as_secs()) as usize;
            if age < Self::SLOTS {
                out[Self::SLOTS - 1 - age] += n;
            }
        }
        out
    }

    /// The 95th percentile of the last groups' times.
    pub fn p95(&self) -> Option<Duration> {
        let mut times: Vec<Duration> = self.groups.iter().copied().collect();
        times.sort_unstable();
        times.get((times.len() * 95 / 100).min(times.len().saturating_sub(1))).copied()
    }
}

/// Troubles of a job's loop that make the runner not ready.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Health {
    /// The loop ended unexpectedly and waits to be restarted: why.
    pub loop_down: Option<String>,
    /// Its groups keep hitting lock or statement timeouts (or conflicts)
    /// with none completing in between: the last such error.
    pub timing_out: Option<String>,
    /// The live plugin was not verified by a key trusted now (keys were
    /// turned on or rotated while it ran): which plugin and why.
    pub unverified: Option<String>,
    /// Change capture does not fire on every write to the source (triggers
    /// disabled or dropped, a partition without them): why, and since
    /// when. The job works, but is degraded: changes may be missed.
    pub capture: Option<CaptureGap>,
    /// The live plugin file keeps state between groups (found at load or
    /// while running): where it differed. Its groups run on fresh
    /// instances; the job works, degraded. Read from the plugin, not kept.
    pub stateful: Option<String>,
    /// Groups deferred since the last completed one.
    #[serde(skip)]
    pub deferred_in_a_row: u32,
}

/// Since when, and why, change capture has not fired on every write.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaptureGap {
    pub problems: Vec<String>,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// Deferred groups in a row, with none completed, that make a job "timing out".
pub const TIMING_OUT_AFTER: u32 = 3;

impl Health {
    /// One sentence per trouble.
    pub fn problems(&self) -> Vec<String> {
        let down = self.loop_down.iter().map(|r| format!("its loop stopped and is restarting: {r}"));
        let slow = self.timing_out.iter().map(|r| format!("its groups keep timing out: {r}"));
        let unverified = self.unverified.iter().map(|r| format!("it runs unverified code: {r}"));
        down.chain(slow).chain(unverified).collect()
    }

    /// One sentence per reason the job works but may be wrong: `/ready`
    /// stays 200 and names them.
    pub fn degraded(&self) -> Vec<String> {
        let capture =
            self.capture.iter().flat_map(|g| g.problems.iter().map(|p| format!("changes may be missed: {p}")));
        let stateful = self.stateful.iter().map(|why| {
            format!("its plugin keeps state between groups ({why}): its groups run on fresh instances until the file changes")
        });
        capture.chain(stateful).collect()
    }
}

/// One consistent view of a job.
#[derive(Clone)]
pub struct JobState {
    pub config: config::Job,
    /// Fallback wake-up of the job's loop.
    pub poll_interval: Duration,
    pub limits: Limits,
    /// `None`: the job is paused (disabled, or its plugin file is gone).
    pub live: Option<Live>,
    /// A shadow candidate run beside the live plugin, writing nothing.
    pub candidate: Option<Arc<Plugin>>,
    /// Paused by an operator (console or HTTP): claims nothing until resumed.
    pub operator_paused: bool,
}

/// A live plugin and the SQL built for its columns and the raw table's shape.
#[derive(Clone)]
pub struct Live {
    pub plugin: Arc<Plugin>,
    pub shape: SourceShape,
    pub sql: Statements,
}

impl Live {
    pub fn new(config: &config::Job, shape: SourceShape, plugin: Arc<Plugin>) -> Self {
        let sql = Statements::new(config, &shape, &plugin.description);
        let plugin = Arc::new(plugin.in_frame(frame(config, shape.dated)));
        Live { plugin, shape, sql }
    }

    /// A shadow candidate, told of its groups as the live plugin is.
    pub fn frame_candidate(&self, config: &config::Job, candidate: &Plugin) -> Arc<Plugin> {
        Arc::new(candidate.in_frame(frame(config, self.shape.dated)))
    }

    /// The same tables with another plugin.
    pub fn with_plugin(&self, config: &config::Job, plugin: Arc<Plugin>) -> Self {
        Live::new(config, self.shape.clone(), plugin)
    }
}

/// How a job's groups span days, and their zone when rows have none of
/// their own: the job's, except for dated rows (a daily table as source).
pub fn frame(config: &config::Job, dated: bool) -> Frame {
    let span = match config.period {
        config::Period::Day => Span::Days(config.window_days),
        config::Period::Week => Span::Week,
        config::Period::Month => Span::Month,
    };
    Frame { span, zone: (!dated).then(|| Arc::from(config.timezone.as_str())) }
}

impl JobState {
    pub fn new(config: &config::Job, poll_interval: Duration, live: Option<(SourceShape, Arc<Plugin>)>) -> Self {
        JobState {
            limits: super::job_limits(config),
            live: live.map(|(shape, p)| Live::new(config, shape, p)),
            candidate: None,
            operator_paused: false,
            config: config.clone(),
            poll_interval,
        }
    }

    /// The live plugin when the job is enabled, not paused, and has one.
    pub fn running(&self) -> Option<&Live> {
        self.live.as_ref().filter(|_| self.config.enabled && !self.operator_paused)
    }
}

impl Job {
    pub fn new(name: &str, state: JobState) -> Self {
        Job {
            name: name.to_string(),
            state: RwLock::new(Arc::new(state)),
            wake: Arc::new(Notify::new()),
            last_reload_error: Mutex::new(None),
            candidate_error: Mutex::new(None),
            rows_completed: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            activity: Mutex::new(Activity::default()),
            busy: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Changes the job's health.
    pub fn set_health(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The job's health now.
    pub fn health(&self) -> Health {
        let mut health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let state = self.current();
        let live = state.live.as_ref().filter(|_| state.config.reuse_instance);
        health.stateful = live.and_then(|l| l.plugin.stateful()).map(|s| s.why);
        health
    }

    /// Why the candidate file in the folder was refused, if it was.
    pub fn candidate_error(&self) -> Option<String> {
        self.candidate_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records (or, with `None`, clears) why the candidate file was refused.
    pub fn set_candidate_error(&self, why: Option<String>) {
        *self.candidate_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    /// The current state; cheap (an `Arc` clone under a read lock).
    pub fn current(&self) -> Arc<JobState> {
        self.state.read().expect("job state lock").clone()
    }

    /// Replaces the state with `f(current)` and wakes the job's loop.
    pub fn update(&self, f: impl FnOnce(&JobState) -> JobState) {
        {
            let mut state = self.state.write().expect("job state lock");
            *state = Arc::new(f(&state));
        }
        self.wake.notify_one();
    }
}
