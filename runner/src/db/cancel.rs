//! The queries in flight, so that shutdown can cancel them. Dropping a
//! client does not stop its backend: one waiting for a lock keeps its
//! transaction open until the lock comes, long after the runner has gone.
//! Past the grace period, each registered query is cancelled with the
//! driver's cancel token (a separate connection the server acts on at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::{CancelToken, NoTls};

static IN_FLIGHT: Mutex<Option<HashMap<u64, CancelToken>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Keeps a client's cancel token registered while alive.
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(map) = IN_FLIGHT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            map.remove(&self.0);
        }
    }
}

/// Registers `client`'s queries for cancellation until the guard drops.
pub fn register(client: &tokio_postgres::Client) -> Registered {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut map = IN_FLIGHT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.get_or_insert_with(HashMap::new).insert(id, client.cancel_token());
    Registered(id)
}

/// Cancels every registered query, each within `timeout`; returns how many
/// were asked to stop.
pub async fn cancel_all(timeout: Duration) -> usize {
    let tokens: Vec<CancelToken> = IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let n = tokens.len();
    let cancels = tokens.into_iter().map(|t| async move {
        if let Err(e) = tokio::time::timeout(timeout, t.cancel_query(NoTls)).await.unwrap_or(Ok(())) {
            tracing::warn!(error = %e, "Could not cancel a query in flight.");
        }
    });
    futures::future::join_all(cancels).await;
    n
}
