//! The database's clock and zones: what day it is in a zone, and whether
//! Postgres knows a zone. Postgres, not the host, is the clock, so every
//! runner and the change triggers agree on "today".

use chrono::NaiveDate;
use tokio_postgres::{Error, GenericClient};

/// Today in `zone`, as the server's clock and zone database say.
pub async fn today_in(client: &impl GenericClient, zone: &str) -> Result<NaiveDate, Error> {
    client.query_one("SELECT (now() AT TIME ZONE $1::text)::date AS today", &[&zone]).await?.try_get("today")
}

/// Fails when Postgres cannot resolve `zone` (it accepts any spelling it
/// can: `utc`, `Europe/Paris`, `+02`).
pub async fn knows_zone(client: &impl GenericClient, zone: &str) -> Result<(), Error> {
    client.query_one("SELECT now() AT TIME ZONE $1::text", &[&zone]).await.map(drop)
}
