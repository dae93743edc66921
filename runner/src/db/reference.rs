//! The aggregation spec's reference tables: a raw and a daily table each
//! for vitals, nutrition and lab, `weight_trend` (a window over vitals_raw) and `vitals_weekly` (a week of
//! vitals_daily). `runner migrate` creates one only when an
//! enabled job names it and it does not exist, or all eight with
//! `--reference-schema` (the demo, the benchmark, trying the bundled
//! plugins). A table that exists — an application's own — is never touched.

use tokio_postgres::GenericClient;

use crate::config::Config;

/// Each table and the SQL that creates it (with the `(user_id, time)`
/// index a raw table's group reads need).
const TABLES: &[(&str, &str)] = &[
    ("vitals_raw", include_str!("reference/vitals_raw.sql")),
    ("vitals_daily", include_str!("reference/vitals_daily.sql")),
    ("nutrition_raw", include_str!("reference/nutrition_raw.sql")),
    ("nutrition_daily", include_str!("reference/nutrition_daily.sql")),
    ("lab_raw", include_str!("reference/lab_raw.sql")),
    ("lab_daily", include_str!("reference/lab_daily.sql")),
    ("weight_trend", include_str!("reference/weight_trend.sql")),
    ("vitals_weekly", include_str!("reference/vitals_weekly.sql")),
];

/// Creates the reference tables the config's enabled jobs name (or all,
/// with `all`) that do not exist yet; a line per table created, saying why.
pub async fn create(
    client: &impl GenericClient,
    config: &Config,
    all: bool,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut created = Vec::new();
    for (table, sql) in TABLES {
        let named_by = config.enabled_jobs().find(|(_, j)| {
            [&j.source, &j.target].iter().any(|t| t.as_str() == *table || t.as_str() == format!("public.{table}"))
        });
        let why = match (named_by, all) {
            (Some((job, _)), _) => format!("job {job} names it"),
            (None, true) => "--reference-schema".to_string(),
            (None, false) => continue,
        };
        let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[table]).await?.try_get(0)?;
        if !exists {
            client.batch_execute(sql).await?;
            created.push(format!("created reference table {table} ({why})"));
        }
    }
    Ok(created)
}
