//! Backpressure. Instead of a fixed batch, each job adapts how many raw rows
//! it claims (between `batch_size` and `max_batch_size`) and how many groups
//! it runs at once (between 1 and `workers`) to what it sees after each
//! batch: its workers waiting for a pooled connection, or group transactions
//! getting slower than the job's own recent best. Under pressure both halve
//! at once; when calm they grow back a little per batch.

use std::time::Duration;

use crate::config;

/// Group time above this multiple of the baseline counts as pressure.
const SLOWDOWN: f64 = 3.0;
/// Groups waiting this long for a pooled connection count as pressure.
const POOL_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct Throttle {
    batch: f64,
    concurrency: f64,
    /// The typical calm group time: follows drops at once, rises slowly.
    baseline: Option<Duration>,
}

/// What one batch showed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Median group transaction time of the batch.
    pub group_p50: Duration,
    /// The batch's waits for a pooled connection, 75th percentile: when
    /// most groups wait, the pool is short; one slow hand-over is not.
    pub pool_wait: Duration,
    /// Groups that ran (took a connection); the median is over these.
    pub ran: usize,
    /// Groups completed.
    pub completed: u64,
    /// Groups rolled back by a lock or statement timeout: pressure.
    pub deferred: u64,
}

/// The wait for a pooled connection that stands for a batch: its 75th
/// percentile. When most groups wait, the pool is short; one slow
/// hand-over among many is not.
pub fn typical_wait(mut waits: Vec<Duration>) -> Duration {
    waits.sort_unstable();
    waits.get(waits.len() * 3 / 4).copied().unwrap_or_default()
}

impl Throttle {
    pub fn new(cfg: &config::Job) -> Self {
        Throttle { batch: cfg.batch_size as f64, concurrency: cfg.workers as f64, baseline: None }
    }

    fn max_batch(cfg: &config::Job) -> i64 {
        cfg.max_batch_size.unwrap_or(cfg.batch_size * 4)
    }

    /// Raw rows to claim now (within the config's current bounds).
    pub fn batch(&self, cfg: &config::Job) -> i64 {
        (self.batch as i64).clamp(cfg.batch_size, Self::max_batch(cfg))
    }

    /// Groups to run at once now.
    pub fn concurrency(&self, cfg: &config::Job) -> usize {
        (self.concurrency as usize).clamp(1, cfg.workers)
    }

    /// Adapts to a batch; returns whether the job is under pressure.
    pub fn observe(&mut self, cfg: &config::Job, seen: &Observed) -> bool {
        if seen.ran == 0 {
            // Nothing ran (the job was paused mid-batch): nothing learnt.
            return false;
        }
        let baseline = match self.baseline {
            None => seen.group_p50,
            // Follows a drop at once; rises at most 2 % per batch, so a
            // slowdown stands out against it.
            Some(b) => b.mul_f64(1.02).min(seen.group_p50),
        };
        let pressure = seen.deferred > 0
            || seen.pool_wait >= POOL_WAIT
            || seen.group_p50.as_secs_f64() > SLOWDOWN * baseline.as_secs_f64();
        // A baseline of zero would make every later batch look slow.
        if !baseline.is_zero() {
            self.baseline = Some(baseline);
        }
        if pressure {
            self.concurrency = (self.concurrency / 2.0).max(1.0);
            self.batch = (self.batch / 2.0).max(cfg.batch_size as f64);
        } else {
            self.concurrency = (self.concurrency + 0.5).min(cfg.workers as f64);
            self.batch = (self.batch * 1.25).min(Self::max_batch(cfg) as f64);
        }
        pressure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> config::Job {
        let text = "[database]\nurl = \"x\"\n[plugins]\ndir = \"p\"\n[jobs.j]\nplugin = \"j.wasm\"\nsource = \"a\"\ntarget = \"b\"\ntimestamp_column = \"t\"\nworkers = 8\nbatch_size = 100\n";
        config::Config::parse(text, std::path::Path::new("/r.toml")).unwrap().jobs["j"].clone()
    }

    fn calm(ms: u64) -> Observed {
        Observed { group_p50: Duration::from_millis(ms), ran: 4, completed: 4, ..Observed::default() }
    }

    #[test]
    fn one_slow_hand_over_is_not_a_short_pool_but_most_groups_waiting_is() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        let one_outlier = typical_wait(ms(&[0, 0, 1, 0, 8, 0, 0, 1]));
        assert!(one_outlier < POOL_WAIT, "{one_outlier:?}");
        let short_pool = typical_wait(ms(&[9, 7, 0, 12, 8, 6, 1, 10]));
        assert!(short_pool >= POOL_WAIT, "{short_pool:?}");
        assert_eq!(typical_wait(Vec::new()), Duration::ZERO);
        let cfg = job();
        let mut t = Throttle::new(&cfg);
        assert!(!t.observe(&cfg, &Observed { pool_wait: one_outlier, ..calm(2) }));
        assert!(t.observe(&cfg, &Observed { pool_wait: short_pool, ..calm(2) }));
    }

    #[test]
    fn shrinks_fast_under_pressure_and_grows_back_slowly() {
        let cfg = job();
        let mut t = Throttle::new(&cfg);
        for _ in 0..10 {
            assert!(!t.observe(&cfg, &calm(2)));
        }
        assert_eq!((t.batch(&cfg), t.concurrency(&cfg)), (400, 8));
        // Callers waiting on the pool: halve at once.
        assert!(t.observe(&cfg, &Observed { pool_wait: Duration::from_millis(50), ..calm(2) }));
        assert_eq!((t.batch(&cfg), t.concurrency(&cfg)), (200, 4));
        // Groups four times slower than usual: halve again.
        assert!(t.observe(&cfg, &calm(8)));
        assert_eq!((t.batch(&cfg), t.concurrency(&cfg)), (100, 2));
        // Calm again: grows back over several batches, not at once.
        t.observe(&cfg, &calm(2));
        assert_eq!(t.concurrency(&cfg), 2);
        for _ in 0..20 {
            t.observe(&cfg, &calm(2));
        }
        assert_eq!((t.batch(&cfg), t.concurrency(&cfg)), (400, 8));
    }

    #[test]
    fn stays_within_the_configured_bounds() {
        let cfg = job();
        let mut t = Throttle::new(&cfg);
        for _ in 0..50 {
            t.observe(&cfg, &Observed { pool_wait: Duration::from_secs(1), ..calm(2) });
        }
        assert_eq!((t.batch(&cfg), t.concurrency(&cfg)), (100, 1));
    }

    #[test]
    fn a_paused_batch_teaches_nothing_and_timeouts_are_pressure() {
        let cfg = job();
        let mut t = Throttle::new(&cfg);
        assert!(!t.observe(&cfg, &calm(2)));
        // A batch whose groups never ran (the job paused) has no times: it
        // must not drag the baseline to zero, after which all is "slow".
        assert!(!t.observe(&cfg, &Observed::default()));
        for _ in 0..20 {
            assert!(!t.observe(&cfg, &calm(2)), "calm batches stay calm");
        }
        assert!(t.observe(&cfg, &Observed { deferred: 1, ..calm(2) }), "a lock timeout is pressure");
    }
}
