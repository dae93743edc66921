//! Everything that talks to Postgres outside the per-group pipeline:
//! the pool, migrations, table introspection, value conversion, the
//! notification listener, and a throwaway server for demos and tests.

pub mod listen;
pub mod migrate;
pub mod pool;
pub mod queue;
pub mod schema;
pub mod sql;
pub mod throwaway;

/// A Postgres error in one line: the server's message (with its detail),
/// or the client-side cause, instead of tokio-postgres's bare "db error".
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    }
}
