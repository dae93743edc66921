//! Whether the database can be reached, as the runner last saw it. The
//! notification listener probes its own dedicated connection every few
//! seconds (no pooled connection is spent on it), so `/ready` and
//! `/health/db-pool` tell the truth while the database is down even when
//! no job is working.

use std::sync::Mutex;
use std::time::Instant;

/// The last verdict: `None` reachable, `Some(why)` not.
static STATE: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// Records a successful round trip.
pub fn reachable() {
    *STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// Records a failure to connect or to get an answer.
pub fn unreachable(why: String) {
    let mut state = STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Keep the time the outage began.
    let since = state.as_ref().map_or_else(Instant::now, |(_, t)| *t);
    *state = Some((why, since));
}

/// `Err(why and for how long)` while the database cannot be reached.
pub fn check() -> Result<(), String> {
    match &*STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
        None => Ok(()),
        Some((why, since)) => Err(format!("unreachable for {}s: {why}", since.elapsed().as_secs())),
    }
}
