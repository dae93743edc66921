//! Wakes job loops when raw rows arrive: LISTEN on a dedicated connection
//! (pooled clients drop notifications), reconnecting with backoff. Missed
//! notifications only delay work until the next poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{Notify, mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::health;
use super::migrate::CHANNEL;

/// How often the listener's connection proves the database answers.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Listens until `shutdown`; `wakers` maps a raw table's name (the
/// notification payload) to the loops to wake.
pub async fn listen(
    pg: tokio_postgres::Config,
    wakers: HashMap<String, Vec<Arc<Notify>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(250);
    while !*shutdown.borrow() {
        tokio::select! {
            result = listen_once(&pg, &wakers) => {
                if let Err(e) = result {
                    let why = format!("{e:#}");
                    // One line per outage, not per retry.
                    if health::check().is_ok() {
                        tracing::warn!(error = %why, "Database connection lost; reconnecting with backoff.");
                    } else {
                        tracing::debug!(error = %why, retry_in = ?delay, "Still cannot reach the database.");
                    }
                    health::unreachable(why);
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once(pg: &tokio_postgres::Config, wakers: &HashMap<String, Vec<Arc<Notify>>>) -> anyhow::Result<()> {
    let (client, mut connection) = pg.connect(NoTls).await?;
    if health::check().is_err() {
        tracing::info!("Database reachable again.");
    }
    health::reachable();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Said once per connection: a reader (an operator, a test) knows that
    // from here on a new row wakes the runner without waiting for a poll.
    tracing::info!(channel = CHANNEL, "Listening for new raw rows.");
    // Anything that arrived while we were not listening is found by a claim now.
    wakers.values().flatten().for_each(|w| w.notify_one());
    let mut probe = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            table = rx.recv() => {
                let Some(table) = table else { break };
                for waker in wakers.get(&table).into_iter().flatten() {
                    waker.notify_one();
                }
            }
            _ = probe.tick() => {
                // A round trip proves the server answers, not just that the socket is open.
                match tokio::time::timeout(PROBE_EVERY, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => health::reachable(),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => anyhow::bail!("the database did not answer within {PROBE_EVERY:?}"),
                }
            }
        }
    }
    drop(client);
    match driver.await? {
        Ok(()) => anyhow::bail!("connection closed"),
        Err(e) => Err(e.into()),
    }
}
