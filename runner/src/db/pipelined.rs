//! A transaction in two round trips instead of four: `BEGIN` travels in the
//! same write as the first statement, `COMMIT` in the same write as the
//! last. A group's transaction is `BEGIN`, one statement, the plugin call,
//! one statement, `COMMIT`; Postgres runs the pipelined messages in order
//! without waiting for the client, so the two waits for `BEGIN` and
//! `COMMIT` alone (and the context switches they cost on both sides) go.
//!
//! Drop-safe like tokio-postgres's own `Transaction`, which cannot be
//! pipelined: should the future holding it be dropped while the
//! transaction is open, the connection is taken out of the pool and closed,
//! so the server rolls back and no later borrower finds a transaction open.

use std::task::Poll;

use deadpool_postgres::{ClientWrapper, Object};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row, Statement};

/// An open transaction on a pooled connection.
pub struct Pipelined {
    client: Option<Object>,
    open: bool,
}

impl Pipelined {
    /// Sends `BEGIN` and `statement` together; the transaction is open even
    /// if the statement failed (then only `rollback` is left to do).
    pub async fn begin_with(
        client: Object,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Self, Result<Vec<Row>, Error>), Error> {
        // Both requests are queued on the connection on their first poll,
        // in this order, before either waits for an answer.
        let (begun, rows) = futures::join!(client.batch_execute("BEGIN"), client.query(statement, params));
        let tx = Pipelined { client: Some(client), open: true };
        begun?;
        Ok((tx, rows))
    }

    /// The connection, for statements inside the transaction.
    pub fn client(&self) -> &ClientWrapper {
        self.client.as_ref().expect("a transaction holds its connection until it ends")
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<(), Error> {
        let result = self.client().batch_execute("COMMIT").await;
        // Whatever the answer, no transaction is left open on the server
        // (a failed `COMMIT` rolls back), unless the connection is gone.
        self.open = result.is_err();
        result
    }

    /// Commits and hands the connection back, for work after the
    /// transaction (a refused `COMMIT` has rolled back).
    pub async fn commit_keeping(mut self) -> (Object, Result<(), Error>) {
        let result = self.client().batch_execute("COMMIT").await;
        self.open = false;
        (self.client.take().expect("a transaction holds its connection until it ends"), result)
    }

    /// Sends `statement` and `COMMIT` together and hands the connection
    /// back, for work after the transaction. A statement that fails on the
    /// server aborts the transaction, and Postgres answers that `COMMIT`
    /// with a rollback: committed only on `Ok`.
    pub async fn commit_with(
        mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> (Object, Result<u64, Error>) {
        let result = {
            let client = self.client();
            let mut done = std::pin::pin!(client.execute(statement, params));
            // Its first poll queues the statement, or refuses it before
            // sending (a parameter that does not encode): then `COMMIT` must
            // not follow, or it would commit the transaction without it.
            match futures::poll!(done.as_mut()) {
                Poll::Pending => {
                    let (done, committed) = futures::join!(done, client.batch_execute("COMMIT"));
                    done.and_then(|n| committed.map(|()| n))
                }
                Poll::Ready(Ok(n)) => client.batch_execute("COMMIT").await.map(|()| n),
                Poll::Ready(Err(e)) => client.batch_execute("ROLLBACK").await.and(Err(e)),
            }
        };
        self.open = false;
        (self.client.take().expect("a transaction holds its connection until it ends"), result)
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), Error> {
        self.rollback_keeping().await.map(drop)
    }

    /// Rolls back and hands the connection back, for work after the transaction.
    pub async fn rollback_keeping(mut self) -> Result<Object, Error> {
        self.client().batch_execute("ROLLBACK").await?;
        self.open = false;
        Ok(self.client.take().expect("a transaction holds its connection until it ends"))
    }
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        if self.open
            && let Some(client) = self.client.take()
        {
            // Detached from the pool and dropped: the connection closes and
            // the server rolls the transaction back.
            drop(Object::take(client));
        }
    }
}
