//! A job's loop: peek a batch of due groups, cut it into transactions
//! that run on the job's workers (each borrows one pooled connection for
//! one short transaction), and peek again as soon as a worker is free —
//! a slow group holds its own worker, never the others (`flight`). With
//! nothing due, wait for a notification, a state change or the poll
//! interval. A paused job (disabled, or its plugin file gone) claims
//! nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::flight::{Batch, Counts, Ended, Flight, GroupResult, UnitResult};

use super::job::{Job, JobState, TIMING_OUT_AFTER};
use super::throttle::{Observed, Throttle};
use super::transaction::{self, Context, Outcome, Purpose};
use crate::db::{cancel, pool};
use crate::rows::GroupKey;

/// How a job loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run until shut down, sleeping when there is no work.
    Daemon,
    /// Drain every due pending row, then return.
    Once,
}

/// Counts for one job's run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub batches: u64,
    pub groups_completed: u64,
    pub groups_failed: u64,
    pub rows_completed: u64,
    pub rows_rejected: u64,
    pub daily_rows_written: u64,
    /// Database errors (connection lost, pool timeout, ...): rows stayed pending.
    pub db_errors: u64,
    pub last_db_error: Option<String>,
    /// How long the loop ran.
    pub elapsed: Duration,
    /// Group transaction times (completed and failed groups).
    pub group_latency: super::latency::Histogram,
    /// Batches after which the job backed off (see `throttle`).
    pub backoffs: u64,
    /// Groups rolled back by lock or statement timeouts and retried.
    pub deferred: u64,
    /// The longest a group-commit transaction stayed open.
    pub longest_transaction: Duration,
    /// Transactions by the number of groups they carried.
    pub transaction_sizes: std::collections::BTreeMap<usize, u64>,
}

/// Pauses before looking at the queue again once it ran dry, before waiting
/// for a notification: the change triggers notify only when a job's queue
/// was empty, so a writer whose check saw keys queued, and whose commit
/// came after the runner took the last of them, is found here rather than
/// at the next poll.
const LINGER: [Duration; 3] = [Duration::from_millis(25), Duration::from_millis(100), Duration::from_millis(400)];

/// Consecutive database errors after which `--once` gives up.
const MAX_CONSECUTIVE_DB_ERRORS: u32 = 5;
/// Batches in a row that complete nothing because every group was deferred
/// (timeouts) after which `--once` gives up, leaving the rows pending.
const MAX_STALLED_BATCHES: u32 = 30;

/// A job loop's state between batches.
struct Loop {
    report: Report,
    consecutive_errors: u32,
    stalled: u32,
    throttle: Throttle,
    /// Groups deferred by a timeout rest a moment, so a lock held elsewhere
    /// on one group does not take a worker from every batch.
    resting: HashMap<GroupKey, Instant>,
    /// Re-peeks done since the queue ran dry (see `LINGER`).
    lingered: usize,
    /// A group's recent share of its transaction's time (group commit).
    per_group: Option<Duration>,
    /// The last look at the job's change capture (`capture_watch`): at the
    /// start, then once per poll interval as a daemon, on the loop's own
    /// turn, so it costs the job no connection beside its workers'.
    looked: Option<Instant>,
    /// What ran since the throttle last judged (each group's share of its
    /// transaction, its wait for a connection), and its completed and
    /// deferred groups: it judges at least [`THROTTLE_SAMPLE`] groups at once.
    sample: (Vec<(Duration, Duration)>, u64, u64),
    /// Groups that read more than [`HEAVY_ROWS`] rows last time (a 1 Hz
    /// sensor's day): each runs in a transaction of its own, and its time
    /// is not taken for the job's slowing down.
    heavy: HashSet<GroupKey>,
    /// The plugin file whose groups were last queued again for having
    /// been written while it shared instances and kept state (`purity`).
    repaired: Option<Arc<str>>,
}

/// Groups the throttle judges at once: a batch of a few groups (a free
/// worker peeks at once, so under live ingest most batches are small) has a
/// median too noisy to call a slowdown on.
const THROTTLE_SAMPLE: usize = 32;

/// Raw rows above which a group is heavy (see `Loop::heavy`): a hundred
/// times a typical health group's.
const HEAVY_ROWS: usize = 5_000;
/// A heavy group rests this many times its last transaction's time before
/// it is taken again: at most an eleventh of a worker, whatever its syncs.
/// Its recompute takes a core of Postgres and of the runner while it runs,
/// slowing every other group meanwhile: at 4 (a fifth of the time) the
/// others' p95 was 1.9–2.6 × alone (an invocation's median), at 10
/// 1.2–1.5 ×, for a big day's own row about 0.7 s later
/// (docs/performance.md, round 13).
const HEAVY_REST_FACTOR: u32 = 10;
/// The most heavy groups remembered; past it the memory starts again.
const HEAVY_KEPT: usize = 10_000;

/// What the loop does after a turn.
enum Turn {
    Continue,
    Stop,
}

/// With transactions in hand and a worker free, how often the queue is
/// looked at again: the change triggers notify only into an empty queue,
/// and a queue with a group in hand is not empty to a writer.
const BUSY_PEEK: Duration = Duration::from_millis(50);

/// Runs one job until `shutdown` turns true (or, with `Mode::Once`, until
/// nothing due is left).
pub async fn run(pool: Pool, job: Arc<Job>, mode: Mode, repair: bool, mut shutdown: watch::Receiver<bool>) -> Report {
    let started = Instant::now();
    let mut l = Loop {
        report: Report::default(),
        consecutive_errors: 0,
        stalled: 0,
        throttle: Throttle::new(&job.current().config),
        resting: HashMap::new(),
        lingered: 0,
        per_group: None,
        looked: None,
        heavy: HashSet::new(),
        sample: (Vec::new(), 0, 0),
        repaired: None,
    };
    let mut flight = Flight::new();
    while !*shutdown.borrow() {
        failpoint(&job.name);
        if let Turn::Stop = turn(&pool, &job, mode, repair, &mut shutdown, &mut l, &mut flight).await {
            break;
        }
    }
    // No new transaction starts; the ones in hand finish.
    for batch in flight.drop_waiting() {
        batch_done(&pool, &job, &mut l, batch, mode);
    }
    while let Some(ended) = flight.next().await {
        unit_ended(&pool, &job, &mut l, &mut flight, ended, mode);
    }
    job.busy.store(false, std::sync::atomic::Ordering::Relaxed);
    l.report.elapsed = started.elapsed();
    l.report
}

/// One turn of the loop: a look at change capture when due; then, with a
/// worker free, a peek for groups not in hand; then a wait for a
/// transaction to end, for new work, or for the queue to fill.
async fn turn(
    pool: &Pool,
    job: &Arc<Job>,
    mode: Mode,
    repair: bool,
    shutdown: &mut watch::Receiver<bool>,
    l: &mut Loop,
    flight: &mut Flight,
) -> Turn {
    let state = job.current();
    let due = match l.looked {
        None => true,
        Some(at) => mode == Mode::Daemon && at.elapsed() >= state.poll_interval,
    };
    if due {
        if let Err(e) = super::capture_watch::look(pool, job, repair).await {
            warn!(job = %job.name, error = %format!("{e:#}"), "Checking change capture failed; it is tried again.");
        }
        l.looked = Some(Instant::now());
    }
    if let Some(live) = &state.live {
        let oldest = flight.oldest_running();
        super::purity::repair_if_due(pool, &job.name, &state.config, &live.plugin, oldest, &mut l.repaired).await;
    }
    let concurrency = l.throttle.concurrency(&state.config);
    let run = |keys| run_unit(pool.clone(), job.clone(), keys);
    // Heavy groups have at most half the job's workers, beside the rest.
    let slots = (concurrency, state.config.workers / 2);
    flight.start(slots, run);
    // A peek waits for a connection like any caller: if one plugin holds
    // the pool past `wait_timeout`, the wait running out is the error that
    // says so (the transactions in hand go on meanwhile: they are tasks).
    if flight.wants_work(concurrency) {
        match peek(pool, job, &state, mode, shutdown, l, flight).await {
            Some(turn) => return turn,
            None => flight.start(slots, run),
        }
    }
    job.busy.store(!flight.is_empty(), std::sync::atomic::Ordering::Relaxed);
    if flight.is_empty() {
        return Turn::Continue;
    }
    // A worker free: new work is looked for soon, or as a notification says.
    let free = flight.wants_work(concurrency);
    tokio::select! {
        ended = flight.next() => if let Some(ended) = ended
            && let Turn::Stop = unit_ended(pool, job, l, flight, ended, mode)
        {
            return Turn::Stop;
        },
        _ = job.wake.notified(), if free => woken(&job.name),
        _ = tokio::time::sleep(BUSY_PEEK), if free => {}
        _ = shutdown.changed() => {}
    }
    Turn::Continue
}

/// Peeks for due groups not in hand and adds them as a batch. `Some`: the
/// turn ends here (nothing in hand and nothing new: a wait, or the end of
/// `--once`); `None`: go on to wait for the transactions in hand.
async fn peek(
    pool: &Pool,
    job: &Job,
    state: &JobState,
    mode: Mode,
    shutdown: &mut watch::Receiver<bool>,
    l: &mut Loop,
    flight: &mut Flight,
) -> Option<Turn> {
    let peeked = match claim_batch(pool, &job.name, state, l.throttle.batch(&state.config)).await {
        Ok(peeked) => {
            l.consecutive_errors = 0;
            if state.running().is_some() {
                // Claiming works again: a restarted loop has recovered.
                job.set_health(|h| h.loop_down = None);
            }
            peeked
        }
        Err(e) => {
            l.consecutive_errors += 1;
            record_db_error(&mut l.report, &job.name, &e, l.consecutive_errors);
            if mode == Mode::Once && l.consecutive_errors >= MAX_CONSECUTIVE_DB_ERRORS {
                return Some(Turn::Stop);
            }
            if !flight.is_empty() {
                return None;
            }
            let delay = Duration::from_millis(250 << l.consecutive_errors.min(5));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
            return Some(Turn::Continue);
        }
    };
    let Some(keys) = peeked else {
        if !flight.is_empty() {
            return None;
        }
        job.busy.store(false, std::sync::atomic::Ordering::Relaxed);
        if mode == Mode::Once {
            return Some(Turn::Stop);
        }
        wait_for_work(job, state, shutdown, l).await;
        return Some(Turn::Continue);
    };
    l.lingered = 0;
    let now = Instant::now();
    l.resting.retain(|_, until| *until > now);
    let fresh: Vec<GroupKey> = keys.into_iter().filter(|k| !l.resting.contains_key(k) && !flight.holds(k)).collect();
    if !fresh.is_empty() {
        pool::log_status(pool, &job.name, "before batch");
        let concurrency = l.throttle.concurrency(&state.config);
        let heavy = &l.heavy;
        flight.add(&job.name, fresh, (unit_size(l, &state.config), concurrency), |k| heavy.contains(k));
        return None;
    }
    if !flight.is_empty() {
        // Everything due is in hand already.
        return None;
    }
    // Everything due is resting: wait for the first to wake, looking again
    // meanwhile (a writer is not told to notify while their keys are queued).
    let wake = l.resting.values().min().map_or(BUSY_PEEK, |t| t.saturating_duration_since(now));
    tokio::select! {
        _ = tokio::time::sleep(wake.clamp(Duration::from_millis(10), BUSY_PEEK)) => {}
        _ = shutdown.changed() => {}
    }
    Some(Turn::Continue)
}

/// Groups a transaction carries: as many as the recent per-group time
/// says fit the budget.
fn unit_size(l: &Loop, cfg: &crate::config::Job) -> usize {
    match l.per_group {
        Some(share) if !share.is_zero() => {
            (cfg.transaction_budget.as_secs_f64() / share.as_secs_f64()).floor() as usize
        }
        _ => cfg.groups_per_transaction,
    }
    .clamp(1, cfg.groups_per_transaction)
}

/// Nothing due: a short pause or two first (see `LINGER`), then until a
/// notification, the poll interval or shutdown.
async fn wait_for_work(job: &Job, state: &JobState, shutdown: &mut watch::Receiver<bool>, l: &mut Loop) {
    if let Some(&pause) = LINGER.get(l.lingered) {
        l.lingered += 1;
        // A notification ends the pause at once.
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = job.wake.notified() => woken(&job.name),
            _ = shutdown.changed() => {}
        }
        return;
    }
    tokio::select! {
        _ = job.wake.notified() => woken(&job.name),
        _ = tokio::time::sleep(state.poll_interval) => {}
        _ = shutdown.changed() => {}
    }
}

/// A transaction ended: its groups' outcomes recorded, and, if it was its
/// batch's last, the batch.
fn unit_ended(pool: &Pool, job: &Job, l: &mut Loop, flight: &mut Flight, ended: Ended, mode: Mode) -> Turn {
    if let Some((open_for, carried)) = ended.unit.transaction {
        l.report.longest_transaction = l.report.longest_transaction.max(open_for);
        *l.report.transaction_sizes.entry(carried).or_default() += 1;
    }
    let span = flight.span(ended.batch);
    let resting = &mut l.resting;
    let rest = |key, rest| {
        resting.insert(key, Instant::now() + rest);
    };
    let counts = record_outcomes(job, &ended.unit.groups, &mut l.report, &span, rest);
    // A heavy group's time says nothing of the job slowing down.
    let mut ended = ended;
    for group in &mut ended.unit.groups {
        let read = match &group.outcome {
            Ok(Outcome::Completed { rows, .. }) => *rows,
            _ => continue,
        };
        if read > HEAVY_ROWS {
            if l.heavy.len() >= HEAVY_KEPT {
                l.heavy.clear();
            }
            l.heavy.insert(group.key);
            // Not taken again for a while, so that it costs at most a share
            // of a worker however often its rows change: their changes gather.
            if let Some(took) = ended.unit.transaction.map(|t| t.0) {
                l.resting.insert(group.key, Instant::now() + took * HEAVY_REST_FACTOR);
            }
            group.took = None;
        } else {
            l.heavy.remove(&group.key);
        }
    }
    match flight.ended(&ended, &counts) {
        Some(batch) => batch_done(pool, job, l, batch, mode),
        None => Turn::Continue,
    }
}

/// A batch's last transaction ended: its line in the log, and what the
/// throttle learns from it.
fn batch_done(pool: &Pool, job: &Job, l: &mut Loop, batch: Batch, mode: Mode) -> Turn {
    l.report.batches += 1;
    metrics::histogram!("runner_batch_seconds", "job" => job.name.clone()).record(batch.started.elapsed());
    pool::log_status(pool, &job.name, "after batch");
    let Counts { completed, emptied, failed, deferred, busy, empty, put_back, db_errors } = batch.counts;
    // Every group of the batch is in one count.
    let (not_started, transactions) = (batch.not_started, batch.transactions);
    info!(parent: &batch.span, completed, emptied, failed, deferred, busy, empty, put_back, db_errors, not_started,
        transactions, "Batch done.");
    // The throttle judges what ran since it last did, once that is enough
    // to judge (a timeout is pressure at once).
    l.sample.0.extend(&batch.times);
    (l.sample.1, l.sample.2) = (l.sample.1 + completed, l.sample.2 + deferred);
    if l.sample.0.len() < THROTTLE_SAMPLE && l.sample.2 == 0 {
        return Turn::Continue;
    }
    let (sample, completed, deferred) = std::mem::take(&mut l.sample);
    let mut times: Vec<Duration> = sample.iter().map(|t| t.0).collect();
    times.sort_unstable();
    let seen = Observed {
        group_p50: times.get(times.len() / 2).copied().unwrap_or_default(),
        pool_wait: super::throttle::typical_wait(sample.iter().map(|t| t.1).collect()),
        ran: times.len(),
        completed,
        deferred,
    };
    if seen.ran > 0 && !seen.group_p50.is_zero() {
        // Follows the batches, a drop at once and a rise gently.
        l.per_group = Some(match l.per_group {
            Some(old) if seen.group_p50 > old => (old * 3 + seen.group_p50) / 4,
            _ => seen.group_p50,
        });
    }
    l.stalled = if seen.deferred > 0 && seen.completed == 0 { l.stalled + 1 } else { 0 };
    if mode == Mode::Once && l.stalled >= MAX_STALLED_BATCHES {
        l.report.db_errors += 1;
        l.report.last_db_error = Some(format!(
            "groups kept timing out for {} batches in a row: {}",
            l.stalled,
            job.health().timing_out.unwrap_or_default()
        ));
        return Turn::Stop;
    }
    let cfg = &job.current().config;
    if l.throttle.observe(cfg, &seen) {
        l.report.backoffs += 1;
        debug!(job = %job.name, batch = l.throttle.batch(cfg), concurrency = l.throttle.concurrency(cfg),
            group_p50 = ?seen.group_p50, pool_wait = ?seen.pool_wait, deferred = seen.deferred, "Backing off.");
    }
    metrics::gauge!("runner_job_batch_size", "job" => job.name.clone()).set(l.throttle.batch(cfg) as f64);
    metrics::gauge!("runner_job_concurrency", "job" => job.name.clone()).set(l.throttle.concurrency(cfg) as f64);
    Turn::Continue
}

/// Peeks a batch: up to `batch_size` due groups, oldest change first,
/// `None` when nothing is due or the job is paused. Claims nothing: each
/// group's own transaction takes its keys. The connection goes back to
/// the pool right after.
async fn claim_batch(
    pool: &Pool,
    job: &str,
    state: &JobState,
    batch_size: i64,
) -> anyhow::Result<Option<Vec<GroupKey>>> {
    let Some(live) = state.running() else { return Ok(None) };
    let client = pool.get().await?;
    let keys = live.sql.peek(&client, job, batch_size, state.config.frozen_days(), &state.config.timezone).await?;
    Ok(Some(keys).filter(|k| !k.is_empty()))
}

/// How long a group another worker or runner holds is left out of batches.
const BUSY_REST: Duration = Duration::from_millis(50);

/// One transaction of a batch, on a pooled connection.
async fn run_unit(pool: Pool, job: Arc<Job>, keys: Vec<GroupKey>) -> UnitResult {
    let (pool, job) = (&pool, &*job);
    // Each transaction takes the job's state as it is now: a plugin
    // swapped mid-batch applies to the next one, never to one in flight.
    let state = job.current();
    let Some(live) = state.running() else {
        let skipped = |key| GroupResult { key, outcome: Ok(Outcome::Busy), took: None, waited: Duration::ZERO };
        return UnitResult { groups: keys.into_iter().map(skipped).collect(), transaction: None };
    };
    let first = keys[0];
    let span = info_span!("group", user = first.user_id, day = %first.day, groups = keys.len(),
        plugin = %live.plugin.version);
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    let cx = Context { job: &job.name, state: &state, live };
    let result = async {
        let client = pool.get().await?;
        // A connection opened for this transaction (the pool growing,
        // as at start-up) waited for the connect, not for other
        // groups: not pressure the throttle should back off from.
        if deadpool_postgres::Object::metrics(&client).recycle_count > 0 {
            waited = started.elapsed();
        }
        pool::usage(pool); // records the peak
        // Cancelled on shutdown past the grace period.
        let _in_flight = cancel::register(&client);
        anyhow::Ok(transaction::run(pool, client, cx, &keys, Purpose::Pending).await?)
    }
    .instrument(span)
    .await;
    match result {
        Ok(done) => {
            metrics::histogram!("runner_transaction_seconds", "job" => job.name.clone()).record(done.open_for);
            // A group's share of its transaction's time.
            let share = done.open_for / done.carried.max(1) as u32;
            metrics::histogram!("runner_group_seconds", "job" => job.name.clone()).record(share);
            let groups = done.outcomes.into_iter().map(|(key, outcome)| GroupResult {
                key,
                outcome: Ok(outcome),
                took: Some(share),
                waited,
            });
            UnitResult { groups: groups.collect(), transaction: Some((done.open_for, done.carried)) }
        }
        Err(e) => {
            pool::note_error(&e);
            let message = format!("{e:#}");
            let took = Some(started.elapsed());
            let failed = |key| GroupResult { key, outcome: Err(anyhow::anyhow!("{message}")), took, waited };
            UnitResult { groups: keys.into_iter().map(failed).collect(), transaction: None }
        }
    }
}

/// Records a batch's outcomes, in one place: the report, the metrics, the
/// job's health and activity, the log.
fn record_outcomes(
    job: &Job,
    results: &[GroupResult],
    report: &mut Report,
    span: &tracing::Span,
    mut rest: impl FnMut(GroupKey, Duration),
) -> Counts {
    // A deferred group waits out what held it (at most a second); a busy
    // one only as long as another worker needs to finish a group.
    let deferral = job.current().config.retry_backoff.min(Duration::from_secs(1));
    let counter =
        |result: &'static str| metrics::counter!("runner_groups_total", "job" => job.name.clone(), "result" => result);
    let mut c = Counts::default();
    for GroupResult { key, outcome, took, .. } in results {
        let took = took.unwrap_or_default();
        match outcome {
            Ok(Outcome::Completed { rows: claimed, written, rejected }) => {
                c.completed += 1;
                report.group_latency.record(took);
                completed(job, report, (*claimed as u64, *written as u64, u64::from(*rejected)), took);
            }
            Ok(Outcome::Failed { error, last }) => {
                c.failed += 1;
                report.group_latency.record(took);
                counter(if *last { "failed" } else { "retried" }).increment(1);
                warn!(parent: span, user = key.user_id, day = %key.day, final_attempt = last, error = %error, "Group failed.");
            }
            Ok(Outcome::Deferred { kind, error }) => {
                c.deferred += 1;
                rest(*key, deferral);
                report.deferred += 1;
                deferred(job, *key, *kind, error, span);
            }
            // Its transaction ran out of budget first: queued again, untouched.
            Ok(Outcome::PutBack) => {
                c.put_back += 1;
                counter("put_back").increment(1);
            }
            // Another worker or runner has it: not peeked again until it had time to finish.
            Ok(Outcome::Busy) => {
                c.busy += 1;
                counter("busy").increment(1);
                rest(*key, BUSY_REST);
            }
            Ok(Outcome::Emptied) => {
                c.emptied += 1;
                counter("emptied").increment(1);
            }
            // Another runner took its keys first, or a frozen day.
            Ok(Outcome::Empty) => {
                c.empty += 1;
                counter("empty").increment(1);
            }
            Err(e) => {
                // One outage fails every group of the batch alike: say it once.
                c.db_errors += 1;
                record_db_error(report, &job.name, e, c.db_errors);
            }
        }
    }
    if c.completed > 0 {
        job.set_health(|h| {
            h.deferred_in_a_row = 0;
            h.timing_out = None;
        });
    }
    report.groups_completed += c.completed;
    report.groups_failed += c.failed;
    c
}

/// A completed group's rows (claimed, written, rejected), in the report,
/// the metrics and the job's activity.
fn completed(job: &Job, report: &mut Report, (claimed, written, rejected): (u64, u64, u64), took: Duration) {
    report.rows_completed += claimed;
    report.daily_rows_written += written;
    report.rows_rejected += rejected;
    metrics::counter!("runner_groups_total", "job" => job.name.clone(), "result" => "completed").increment(1);
    job.rows_completed.fetch_add(claimed, std::sync::atomic::Ordering::Relaxed);
    job.activity.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(claimed, took);
    metrics::counter!("runner_rows_completed_total", "job" => job.name.clone()).increment(claimed);
    metrics::counter!("runner_rows_rejected_total", "job" => job.name.clone()).increment(rejected);
}

/// A group the database rolled back (a lock or statement timeout): said,
/// counted, and after a few in a row the job is "timing out".
fn deferred(job: &Job, key: GroupKey, kind: crate::db::Transient, error: &str, span: &tracing::Span) {
    metrics::counter!("runner_groups_total", "job" => job.name.clone(), "result" => "deferred").increment(1);
    metrics::counter!("runner_db_timeouts_total", "job" => job.name.clone(), "kind" => kind.label()).increment(1);
    warn!(parent: span, user = key.user_id, day = %key.day, waited_on = %kind.label(), error = %error,
        "Group rolled back by the database; its keys stay queued and are retried soon, no attempt spent.");
    job.set_health(|h| {
        h.deferred_in_a_row += 1;
        if h.deferred_in_a_row >= TIMING_OUT_AFTER {
            h.timing_out = Some(error.to_string());
        }
    });
}

/// Logs a database error (the first of a streak at warn level, repeats at
/// debug, so an outage is not a flood) and keeps it for the report.
fn record_db_error(report: &mut Report, job: &str, e: &anyhow::Error, streak: u32) {
    report.db_errors += 1;
    pool::note_error(e);
    let message = format!("{e:#}");
    if streak <= 1 || report.last_db_error.as_ref() != Some(&message) {
        warn!(job, error = %message, "Database error; the keys stay queued and will be retried.");
    } else {
        debug!(job, error = %message, streak, "Database error again.");
    }
    report.last_db_error = Some(message);
}

/// A test hook in debug builds: `RUNNER_FAILPOINT=job-loop-panic:JOB:N`
/// makes JOB's loop panic the first N times round, so that the tests can
/// prove a dying loop is logged, shown and restarted.
fn failpoint(job: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    static LEFT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    let Ok(spec) = std::env::var("RUNNER_FAILPOINT") else { return };
    let mut parts = spec.split(':');
    if parts.next() != Some("job-loop-panic") || parts.next() != Some(job) {
        return;
    }
    let left = LEFT.get_or_init(|| parts.next().and_then(|n| n.parse().ok()).unwrap_or(1).into());
    if left
        .try_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        panic!("failpoint job-loop-panic");
    }
}

/// A notification (new rows) woke the job's loop: counted, so that an
/// operator (or a test) sees the loop answered it, even when it then found
/// nothing to do (a paused or disabled job).
fn woken(job: &str) {
    debug!(job = %job, "Woken.");
    metrics::counter!("runner_job_wakeups_total", "job" => job.to_string()).increment(1);
}
