//! The group transaction sends `BEGIN` and `COMMIT` in the same write as
//! its statements (`db::pipelined`). These tests hold it to what
//! tokio-postgres's own `Transaction` guarantees: nothing half-done is ever
//! committed, and no connection goes back to the pool inside a transaction.

use std::path::Path;

use deadpool_postgres::Pool;
use runner::config::Config;
use runner::db::pipelined::Pipelined;
use runner::db::pool;

use crate::util::TestDb;

async fn setup() -> (TestDb, Pool) {
    let db = TestDb::new().await;
    db.client.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, n int8 NOT NULL CHECK (n >= 0))").await.unwrap();
    let text = format!(
        "[database]\nurl = \"{}\"\nmax_connections = 1\n[plugins]\ndir = \"p\"\n[jobs.j]\nplugin = \"j.wasm\"\n\
         source = \"a\"\ntarget = \"b\"\ntimestamp_column = \"t\"\n",
        db.url
    );
    let config = Config::parse(&text, Path::new("/test.toml")).unwrap();
    let pool = pool::build(&config.database, "pipelined-test").unwrap();
    (db, pool)
}

/// Begins with one insert, then ends with `insert` and `COMMIT` pipelined.
async fn two_inserts(pool: &Pool, second: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<u64, String> {
    let client = pool.get().await.unwrap();
    let insert = client.prepare_cached("INSERT INTO t VALUES ($1, $2)").await.unwrap();
    let (tx, first) = Pipelined::begin_with(client, &insert, &[&1i64, &1i64]).await.unwrap();
    assert!(first.is_ok(), "{first:?}");
    let (client, result) = tx.commit_with(&insert, second).await;
    // Whatever happened, the connection is outside any transaction now.
    // (A savepoint is refused outside a transaction block.)
    let open = client.batch_execute("SAVEPOINT probe").await.is_ok();
    assert!(!open, "the connection came back inside a transaction");
    result.map_err(|e| runner::db::describe_error(&e))
}

#[tokio::test]
async fn both_statements_commit_together() {
    let (db, pool) = setup().await;
    assert_eq!(two_inserts(&pool, &[&2i64, &2i64]).await, Ok(1));
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
}

#[tokio::test]
async fn a_last_statement_refused_by_the_server_commits_nothing() {
    let (db, pool) = setup().await;
    let error = two_inserts(&pool, &[&2i64, &-1i64]).await.unwrap_err();
    assert!(error.contains("check constraint"), "{error}");
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0, "the first insert must roll back with the second");
}

#[tokio::test]
async fn a_last_statement_whose_parameters_do_not_encode_commits_nothing() {
    let (db, pool) = setup().await;
    // An int4 for an int8 parameter: refused by the driver before anything
    // is sent, so the `COMMIT` queued after it must not go out either.
    let error = two_inserts(&pool, &[&2i64, &2i32]).await.unwrap_err();
    assert!(error.contains("error serializing parameter"), "{error}");
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
}

#[tokio::test]
async fn a_transaction_dropped_open_takes_its_connection_out_of_the_pool() {
    let (db, pool) = setup().await;
    let client = pool.get().await.unwrap();
    let insert = client.prepare_cached("INSERT INTO t VALUES ($1, $2)").await.unwrap();
    let (tx, first) = Pipelined::begin_with(client, &insert, &[&1i64, &1i64]).await.unwrap();
    first.unwrap();
    // As when the future holding it is cancelled mid-group.
    drop(tx);
    assert_eq!(pool.status().size, 0, "the connection went back to the pool inside a transaction");
    // The server saw the connection close and rolled back.
    let client = pool.get().await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
}
