//! The transactions a job has in hand. A batch's groups are cut into
//! transactions (units) that start as workers free up; a free worker is
//! given the next batch at once, without waiting for the batch before to
//! end: a slow group holds its own worker and no other (no batch barrier).
//! A batch is still accounted as one: its "Batch done." line and what the
//! throttle learns come when its last transaction ends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{Instrument as _, info_span};

use super::transaction::Outcome;
use crate::rows::GroupKey;

/// One group's result.
pub(super) struct GroupResult {
    pub key: GroupKey,
    pub outcome: anyhow::Result<Outcome>,
    /// Its share of its transaction's time; `None`: it did not run.
    pub took: Option<Duration>,
    /// Its transaction's wait for a pooled connection.
    pub waited: Duration,
}

/// One transaction's groups, and (when it ran to its end) how long it
/// stayed open and the groups it carried.
pub(super) struct UnitResult {
    pub groups: Vec<GroupResult>,
    pub transaction: Option<(Duration, usize)>,
}

/// A transaction that ended, with its batch.
pub(super) struct Ended {
    pub batch: u64,
    /// It ran on a heavy group's worker.
    pub heavy: bool,
    pub unit: UnitResult,
}

/// A batch's groups by what happened to them.
#[derive(Default)]
pub(super) struct Counts {
    pub completed: u64,
    pub emptied: u64,
    pub failed: u64,
    pub deferred: u64,
    pub busy: u64,
    pub empty: u64,
    pub put_back: u64,
    pub db_errors: u32,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.completed += other.completed;
        self.emptied += other.emptied;
        self.failed += other.failed;
        self.deferred += other.deferred;
        self.busy += other.busy;
        self.empty += other.empty;
        self.put_back += other.put_back;
        self.db_errors += other.db_errors;
    }
}

/// A batch peeked at once, until its last transaction ends.
pub(super) struct Batch {
    pub started: Instant,
    pub span: tracing::Span,
    /// Transactions not ended yet (started or waiting).
    units_left: usize,
    /// Transactions that ran.
    pub transactions: usize,
    /// Groups a shutdown kept from starting.
    pub not_started: u64,
    /// Each group that ran: its share of its transaction, its wait for a connection.
    pub times: Vec<(Duration, Duration)>,
    pub counts: Counts,
}

/// The job's transactions in hand and waiting. Each runs as a task of its
/// own: it makes progress whatever the loop awaits meanwhile (a peek that
/// waits for a pooled connection must not starve the transaction that holds
/// it), and they all stop if the loop is dropped.
pub(super) struct Flight {
    running: JoinSet<Ended>,
    /// When each running transaction started.
    started: HashMap<tokio::task::Id, Instant>,
    /// Of the running units, the heavy ones (one group each).
    heavy_running: usize,
    /// Units cut from a batch, not started yet.
    waiting: VecDeque<(u64, Vec<GroupKey>)>,
    /// Heavy groups' units, not started yet: they have workers of their
    /// own ([`Flight::start`]), so they neither wait behind nor hold the rest.
    waiting_heavy: VecDeque<(u64, Vec<GroupKey>)>,
    /// The groups of running and waiting units: never peeked into another.
    held: HashSet<GroupKey>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
}

impl Flight {
    pub fn new() -> Self {
        Flight {
            running: JoinSet::new(),
            started: HashMap::new(),
            heavy_running: 0,
            waiting: VecDeque::new(),
            waiting_heavy: VecDeque::new(),
            held: HashSet::new(),
            batches: HashMap::new(),
            next_batch: 0,
        }
    }

    /// Nothing running or waiting.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty() && self.waiting_heavy.is_empty()
    }

    /// A worker is free and nothing waits for it: time to peek.
    pub fn wants_work(&self, concurrency: usize) -> bool {
        self.waiting.is_empty() && self.light_running() < concurrency.max(1)
    }

    fn light_running(&self) -> usize {
        self.running.len() - self.heavy_running
    }

    /// Whether a group is in a running or waiting transaction.
    pub fn holds(&self, key: &GroupKey) -> bool {
        self.held.contains(key)
    }

    /// Adds a batch of groups, in transactions of `unit` groups (spread
    /// over the `concurrency` workers); a `heavy` group gets a transaction
    /// of its own, so it holds no other group.
    pub fn add(
        &mut self,
        job: &str,
        keys: Vec<GroupKey>,
        (unit, concurrency): (usize, usize),
        heavy: impl Fn(&GroupKey) -> bool,
    ) {
        let id = self.next_batch;
        self.next_batch += 1;
        let groups = keys.len();
        self.held.extend(keys.iter().copied());
        let (alone, light): (Vec<GroupKey>, Vec<GroupKey>) = keys.into_iter().partition(|k| heavy(k));
        let unit = unit.clamp(1, light.len().div_ceil(concurrency.max(1)).max(1));
        let units = light.chunks(unit).len() + alone.len();
        let batch = Batch {
            started: Instant::now(),
            span: info_span!("batch", job = %job, groups),
            units_left: units,
            transactions: 0,
            not_started: 0,
            times: Vec::with_capacity(groups),
            counts: Counts::default(),
        };
        self.batches.insert(id, batch);
        self.waiting_heavy.extend(alone.into_iter().map(|k| (id, vec![k])));
        self.waiting.extend(light.chunks(unit).map(|u| (id, u.to_vec())));
    }

    /// Starts waiting units while fewer than `concurrency` light ones
    /// run, and heavy ones while fewer than `heavy_workers` do: `run`
    /// makes a unit's transaction.
    pub fn start<F, Fut>(&mut self, (concurrency, heavy_workers): (usize, usize), run: F)
    where
        F: Fn(Vec<GroupKey>) -> Fut,
        Fut: Future<Output = UnitResult> + Send + 'static,
    {
        while self.light_running() < concurrency.max(1) {
            let Some((batch, keys)) = self.waiting.pop_front() else { break };
            self.spawn(batch, keys, false, &run);
        }
        while self.heavy_running < heavy_workers.max(1) {
            let Some((batch, keys)) = self.waiting_heavy.pop_front() else { break };
            self.spawn(batch, keys, true, &run);
        }
    }

    fn spawn<F, Fut>(&mut self, batch: u64, keys: Vec<GroupKey>, heavy: bool, run: &F)
    where
        F: Fn(Vec<GroupKey>) -> Fut,
        Fut: Future<Output = UnitResult> + Send + 'static,
    {
        self.heavy_running += usize::from(heavy);
        let unit = run(keys).instrument(self.span(batch));
        let task = self.running.spawn(async move { Ended { batch, heavy, unit: unit.await } });
        self.started.insert(task.id(), Instant::now());
    }

    /// When the longest-running transaction started (`None`: none runs).
    pub fn oldest_running(&self) -> Option<Instant> {
        self.started.values().min().copied()
    }

    /// The next transaction to end (`None`: none is running). A panic in
    /// one is the loop's own (it is logged, shown and restarted).
    pub async fn next(&mut self) -> Option<Ended> {
        loop {
            match self.running.join_next_with_id().await? {
                Ok((id, ended)) => {
                    self.started.remove(&id);
                    return Some(ended);
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => {
                    self.started.remove(&e.id());
                    continue; // aborted: the loop is going away
                }
            }
        }
    }

    /// The span of a batch's log lines.
    pub fn span(&self, batch: u64) -> tracing::Span {
        self.batches.get(&batch).map_or_else(tracing::Span::none, |b| b.span.clone())
    }

    /// Takes an ended transaction's groups out of the held ones and adds
    /// their `counts` to its batch; returns the batch once its last
    /// transaction has ended.
    pub fn ended(&mut self, ended: &Ended, counts: &Counts) -> Option<Batch> {
        self.heavy_running -= usize::from(ended.heavy);
        for group in &ended.unit.groups {
            self.held.remove(&group.key);
        }
        let batch = self.batches.get_mut(&ended.batch)?;
        batch.counts.add(counts);
        batch.units_left -= 1;
        batch.transactions += usize::from(ended.unit.transaction.is_some());
        batch.times.extend(ended.unit.groups.iter().filter_map(|g| Some((g.took?, g.waited))));
        if batch.units_left > 0 {
            return None;
        }
        self.batches.remove(&ended.batch)
    }

    /// On shutdown: the waiting units never start (their keys stay
    /// queued); returns the batches this ends.
    pub fn drop_waiting(&mut self) -> Vec<Batch> {
        let mut done = Vec::new();
        let waiting: Vec<_> = self.waiting.drain(..).chain(self.waiting_heavy.drain(..)).collect();
        for (id, keys) in waiting {
            for key in &keys {
                self.held.remove(key);
            }
            let Some(batch) = self.batches.get_mut(&id) else { continue };
            batch.not_started += keys.len() as u64;
            batch.units_left -= 1;
            if batch.units_left == 0 {
                done.extend(self.batches.remove(&id));
            }
        }
        done
    }
}
