//! Wakes job loops when raw rows arrive: LISTEN on a dedicated connection
//! (pooled clients drop notifications), reconnecting with backoff. Missed
//! notifications only delay work until the next poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{Notify, mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::migrate::CHANNEL;

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
                    tracing::warn!(error = %e, retry_in = ?delay, "Notification listener disconnected.");
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
    tracing::debug!("Listening for new raw rows.");
    // Anything that arrived while we were not listening is found by a claim now.
    wakers.values().flatten().for_each(|w| w.notify_one());
    while let Some(table) = rx.recv().await {
        for waker in wakers.get(&table).into_iter().flatten() {
            waker.notify_one();
        }
    }
    drop(client);
    match driver.await? {
        Ok(()) => anyhow::bail!("connection closed"),
        Err(e) => Err(e.into()),
    }
}
