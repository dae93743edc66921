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
        if !exists(client, table).await? {
            client.batch_execute(sql).await?;
            created.push(format!("created reference table {table} ({why})"));
        }
    }
    Ok(created)
}

/// Whether a table (or view) of that name, as the search path resolves it, exists.
pub async fn exists(client: &impl GenericClient, table: &str) -> Result<bool, tokio_postgres::Error> {
    client.query_one("SELECT to_regclass($1) IS NOT NULL AS found", &[&table]).await?.try_get("found")
}

/// A row of `vitals_daily` as the demo prints it: numbers rounded to one
/// decimal, as text.
pub struct VitalsDaily {
    pub user_id: i64,
    pub day: String,
    pub metric: Option<String>,
    pub unit: Option<String>,
    pub sample_count: i32,
    pub rejected_count: i32,
    pub min: Option<String>,
    pub max: Option<String>,
    pub avg: Option<String>,
    pub plugin_version: Option<String>,
}

/// The first `limit` rows of `vitals_daily`, by user, day and metric.
pub async fn vitals_daily_sample(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<VitalsDaily>, tokio_postgres::Error> {
    let sql = "SELECT user_id, day::text AS day, metric, unit, sample_count, rejected_count,
                      round(min_value::numeric, 1)::text AS min, round(max_value::numeric, 1)::text AS max,
                      round(avg_value::numeric, 1)::text AS avg, plugin_version
               FROM vitals_daily ORDER BY user_id, day, metric LIMIT $1";
    let read = |r: &tokio_postgres::Row| -> Result<VitalsDaily, tokio_postgres::Error> {
        Ok(VitalsDaily {
            user_id: r.try_get("user_id")?,
            day: r.try_get("day")?,
            metric: r.try_get("metric")?,
            unit: r.try_get("unit")?,
            sample_count: r.try_get("sample_count")?,
            rejected_count: r.try_get("rejected_count")?,
            min: r.try_get("min")?,
            max: r.try_get("max")?,
            avg: r.try_get("avg")?,
            plugin_version: r.try_get("plugin_version")?,
        })
    };
    client.query(sql, &[&limit]).await?.iter().map(read).collect()
}
