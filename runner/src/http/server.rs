//! Serving one listener within bounds, so that no client, slow or many,
//! can take the runner down (a slowloris: many connections, each sending
//! a header line now and then, holding every file descriptor the process
//! has until its database connections cannot reopen).
//!
//! hyper's own settings do the work, not hand-written timers:
//! `header_read_timeout` closes a connection whose request headers have
//! not all arrived in time, and since hyper starts that clock whenever it
//! waits for a request, it is also the idle timeout of a keep-alive
//! connection. Connections at once are capped per listener below what the
//! process's descriptors allow (a reserve is kept for the database); one
//! over the cap is closed as soon as it is accepted. Shutdown lets the
//! requests in hand finish (hyper-util's graceful shutdown), within a bound.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

/// A request's headers must all arrive within this, and an idle
/// keep-alive connection is closed after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in hand.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Descriptors kept for everything but HTTP: the pool's connections, the
/// listener's, the operator's and maintenance connections, plugin and
/// config files, the compile cache, logs.
fn reserved(database_connections: usize) -> u64 {
    128 + 2 * database_connections as u64
}

/// Raises the process's soft limit on open files to its hard limit (as Go
/// and nginx do; the systemd unit sets `LimitNOFILE`), then returns how
/// many connections each of `listeners` may hold at once: what remains
/// after the reserve, shared, between 8 and 1,024.
pub fn connection_cap(listeners: usize, database_connections: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a
    // live, properly aligned rlimit.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            1024
        } else {
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        }
    };
    let spare = soft.saturating_sub(reserved(database_connections));
    (spare / listeners.max(1) as u64).clamp(8, 1024) as usize
}

/// Serves `app` on `listener` until `shutdown`, at most `cap` connections at once.
pub fn spawn(listener: tokio::net::TcpListener, app: axum::Router, cap: usize, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(cap));
        let graceful = GracefulShutdown::new();
        let mut refused_at: Option<std::time::Instant> = None;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it was
                    // taken): wait a moment instead of spinning.
                    tracing::warn!(error = %e, "Accepting an HTTP connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                metrics::counter!("runner_http_connections_refused_total").increment(1);
                if refused_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(cap, "HTTP connections at their cap: new ones are closed until some end.");
                    refused_at = Some(std::time::Instant::now());
                }
                continue;
            };
            let service = TowerToHyperService::new(app.clone());
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _slot = slot;
                // A client gone or too slow: nothing to report.
                let _ = connection.await;
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, graceful.shutdown()).await;
    });
}
