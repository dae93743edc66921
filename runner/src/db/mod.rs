//! Everything that talks to Postgres outside the per-group pipeline:
//! the pool, migrations, table introspection, value conversion, the
//! notification listener, and a throwaway server for demos and tests.

pub mod listen;
pub mod migrate;
pub mod pool;
pub mod schema;
pub mod sql;
pub mod throwaway;
