//! Everything that talks to Postgres outside the per-group pipeline:
//! the pool, migrations, table introspection, value conversion, the
//! notification listener, and a throwaway server for demos and tests.

pub mod cancel;
pub mod capture;
pub mod clock;
pub mod day;
pub mod health;
pub mod ident;
pub mod listen;
pub mod migrate;
pub mod partitions;
pub mod pipelined;
pub mod pool;
pub mod progress;
pub mod prune;
pub mod queue;
pub mod reference;
pub mod roles;
pub mod schema;
pub mod seed;
pub mod shadow_diffs;
pub mod sql;
pub mod statements;
pub mod throwaway;
pub mod uninstall;
pub mod user_zones;

#[cfg(test)]
mod golden;

/// A Postgres error in one line: the server's message (with its detail),
/// or the client-side cause, instead of tokio-postgres's bare "db error".
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            if let Some(detail) = db.detail() {
                text = format!("{text} ({detail})");
            }
            // A lock timeout's context names what it waited on
            // ("while updating tuple (0,1) in relation \"vitals_daily\"").
            if db.code().code() == "55P03"
                && let Some(context) = db.where_()
            {
                text = format!("{text}, {}", context.lines().next().unwrap_or(context));
            }
            text
        }
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

/// Why a statement failed when the failure is the database's, not the
/// group's: a lock or statement timeout, a serialization failure or
/// deadlock, a lost or refused connection, a server short of resources.
/// Such a group is retried without spending one of its attempts.
pub fn transient(e: &tokio_postgres::Error) -> Option<Transient> {
    let Some(db) = e.as_db_error() else {
        // No server error at all: the connection broke or timed out.
        return Some(Transient::Connection);
    };
    let code = db.code().code();
    Some(match code {
        "55P03" => Transient::LockTimeout,
        "57014" => Transient::StatementTimeout,
        _ if code.starts_with("40") => Transient::Conflict,
        _ if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") => Transient::Connection,
        _ => return None,
    })
}

/// The kinds of [`transient`] failure, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    LockTimeout,
    StatementTimeout,
    Conflict,
    Connection,
}

impl Transient {
    pub fn label(self) -> &'static str {
        match self {
            Transient::LockTimeout => "lock_timeout",
            Transient::StatementTimeout => "statement_timeout",
            Transient::Conflict => "conflict",
            Transient::Connection => "connection",
        }
    }
}
