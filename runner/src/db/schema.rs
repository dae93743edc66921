//! Table introspection, and the load-time check that a plugin's
//! self-description fits the job's raw and daily tables.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::GenericClient;

use crate::config::{self, Identifier};
use crate::rows::Description;

/// Columns the runner fills itself in every daily table; `day` is the
/// job's `target_day_column`.
pub fn runner_output(day: &str) -> [(&str, &'static [&'static str]); 4] {
    [
        ("user_id", &["int8", "int4", "int2"]),
        (day, &["date"]),
        ("plugin_version", &["text", "varchar"]),
        ("updated_at", &["timestamptz"]),
    ]
}

#[derive(Debug, Clone)]
pub struct ColumnInfo {
    /// `pg_type.typname`, e.g. `float8`.
    pub sql_type: String,
    pub not_null: bool,
    pub has_default: bool,
}

/// What the runner needs to know of a table.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: Identifier,
    pub columns: HashMap<String, ColumnInfo>,
    /// Column sets of the unique indexes (including the primary key).
    pub unique_keys: Vec<BTreeSet<String>>,
}

/// Reads a table's columns and unique keys; `None` when it does not exist.
pub async fn table(client: &impl GenericClient, name: &Identifier) -> Result<Option<Table>, tokio_postgres::Error> {
    let quoted = name.quoted();
    let rows = client
        .query(
            "SELECT a.attname::text AS name, t.typname::text AS sql_type, a.attnotnull AS not_null, a.atthasdef AS has_default
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&quoted],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows
        .iter()
        .map(|r| {
            let info = ColumnInfo {
                sql_type: r.get("sql_type"),
                not_null: r.get("not_null"),
                has_default: r.get("has_default"),
            };
            (r.get("name"), info)
        })
        .collect();
    let keys = client
        .query(
            "SELECT array_agg(a.attname::text) FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = to_regclass($1) AND i.indisunique GROUP BY i.indexrelid",
            &[&quoted],
        )
        .await?;
    let unique_keys = keys.iter().map(|r| r.get::<_, Vec<String>>(0).into_iter().collect()).collect();
    Ok(Some(Table { name: name.clone(), columns, unique_keys }))
}

fn expect_type(problems: &mut Vec<String>, table: &Table, column: &str, accepted: &[&str], what: &str) {
    match table.columns.get(column) {
        None => problems.push(format!("table {} has no column `{column}` ({what})", table.name)),
        Some(c) if !accepted.contains(&c.sql_type.as_str()) => problems.push(format!(
            "column {}.{column} is {} but {what} needs {}",
            table.name,
            c.sql_type,
            accepted.join(" or ")
        )),
        Some(_) => {}
    }
}

/// Integer types the runner reads row and user ids from (as `bigint`).
const INTEGER_IDS: &[&str] = &["int8", "int4", "int2"];

/// How the runner reads a raw table's key columns, learnt from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceShape {
    /// The timestamp column is `timestamp without time zone`: its values are
    /// wall-clock times in this zone (the job's `timestamp_zone`).
    pub naive_zone: Option<String>,
    /// The timestamp column is a `date`: the source is a daily table (a
    /// rollup of a rollup), its rows' days are that column, in no zone.
    pub dated: bool,
    /// The source has an `id` column. A dated source needs none: its rows
    /// are identified by their key, and numbered in time order when read.
    pub has_id: bool,
    /// Each row's zone (`zone_column`) and how it is written.
    pub zone: Option<ZoneKind>,
    /// One sentence per key column, for `runner check`.
    pub reading: Vec<String>,
}

/// How a `zone_column` gives a row's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// A `text` IANA name.
    Name,
    /// An `integer`: minutes east of UTC.
    Offset,
}

/// Problems with the raw table itself, independent of any plugin, and (when
/// there are none) how its key columns are read.
pub fn check_source(job: &config::Job, source: &Table) -> Result<SourceShape, Vec<String>> {
    let mut problems = Vec::new();
    let ts = job.timestamp_column.as_str();
    let dated = source.columns.get(ts).is_some_and(|c| c.sql_type == "date");
    let has_id = source.columns.contains_key("id");
    if has_id || !dated {
        expect_type(&mut problems, source, "id", INTEGER_IDS, "the runner's row id");
    }
    expect_type(&mut problems, source, "user_id", INTEGER_IDS, "the group's user");
    expect_type(&mut problems, source, ts, &["timestamptz", "timestamp", "date"], "timestamp_column");
    if source.columns.get("id").is_some_and(|c| !c.not_null) {
        // Plugins see each row's id (ties in time go to the greatest).
        problems.push(format!(
            "column {}.id may be NULL; plugins order a day's rows by time, then id, so it must be NOT NULL",
            source.name
        ));
    }
    let zone = job.zone_column.as_ref().and_then(|zc| {
        let kind = match source.columns.get(zc.as_str()).map(|c| c.sql_type.as_str()) {
            Some("text" | "varchar") => Some(ZoneKind::Name),
            Some("int2" | "int4" | "int8") => Some(ZoneKind::Offset),
            _ => None,
        };
        if kind.is_none() {
            expect_type(
                &mut problems,
                source,
                zc.as_str(),
                &["text", "varchar", "int2", "int4", "int8"],
                "zone_column",
            );
        }
        if source.columns.get(ts).is_some_and(|c| c.sql_type != "timestamptz") {
            problems.push(format!(
                "column {}.{ts} is {}, but zone_column needs instants (timestamp with time zone): a wall time \
                 already has a zone",
                source.name, source.columns[ts].sql_type
            ));
        }
        kind
    });
    if job.user_zones.is_some() && source.columns.get(ts).is_some_and(|c| c.sql_type != "timestamptz") {
        problems.push(format!(
            "column {}.{ts} is {}, but user_zones needs instants (timestamp with time zone): a wall time \
             already has a zone",
            source.name, source.columns[ts].sql_type
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let naive = source.columns[ts].sql_type == "timestamp";
    let reading = reading(job, source, dated, has_id, zone);
    Ok(SourceShape { naive_zone: naive.then(|| job.timestamp_zone.clone()), dated, has_id, zone, reading })
}

/// How a valid source's key columns are read, one sentence each (`check`).
fn reading(job: &config::Job, source: &Table, dated: bool, has_id: bool, zone: Option<ZoneKind>) -> Vec<String> {
    let column = |name: &str| &source.columns[name];
    let int = |name: &str| {
        let c = column(name);
        let nulls = if c.not_null { "" } else { "; a row where it is NULL belongs to no group" };
        format!("{name} is {}: read as bigint{nulls}", c.sql_type)
    };
    let ts = job.timestamp_column.as_str();
    let naive = column(ts).sql_type == "timestamp";
    let nulls = if column(ts).not_null { "" } else { "; a row where it is NULL belongs to no group" };
    let time = if dated {
        format!("{ts} is a date: each row's day, in no zone (a daily table as a source){nulls}")
    } else if naive {
        format!("{ts} is timestamp without time zone: read as {}{nulls}", job.timestamp_zone)
    } else {
        format!("{ts} is timestamp with time zone{nulls}")
    };
    let id = if has_id { int("id") } else { "no id column: rows are numbered in time order when read".to_string() };
    let mut reading = vec![id, int("user_id"), time];
    if let (Some(zc), Some(kind)) = (&job.zone_column, zone) {
        reading.push(match kind {
            ZoneKind::Name => format!("{zc}: each row's zone, an IANA name; NULL or unknown: {}", job.timezone),
            ZoneKind::Offset => {
                format!("{zc}: each row's offset in minutes east of UTC; NULL or beyond ±18 h: {}", job.timezone)
            }
        });
    }
    if let Some(u) = &job.user_zones {
        let when = match &u.from_column {
            Some(from) => format!(", the entry in effect at the row's time ({from})"),
            None => String::new(),
        };
        reading.push(format!(
            "each user's zone: {}.{}{when}; no entry or an unknown name: {}",
            u.table, u.zone_column, job.timezone
        ));
    }
    reading
}

/// Checks a plugin's description against the job's tables; returns every
/// mismatch, each as one sentence.
/// Warnings, not errors: nullable daily columns without a default that
/// the plugin never writes, which stay NULL for ever (often a column the
/// author forgot). `validate --job`, `check` and every load say them.
pub fn unwritten(desc: &Description, version: &str, target: &Table, day: &str) -> Vec<String> {
    let runner_output = runner_output(day);
    let mut names: Vec<&String> = target
        .columns
        .iter()
        .filter(|(name, info)| {
            !info.not_null
                && !info.has_default
                && !desc.output.iter().any(|c| &c.name == *name)
                && !runner_output.iter().any(|(n, _)| n == name)
        })
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            format!(
                "column {}.{name} is never written by plugin {version}: it stays NULL (have the plugin declare and \
                 write it, give it a default, or drop it)",
                target.name
            )
        })
        .collect()
}

/// [`unwritten`] for a job's daily table as it is in the database now.
pub async fn unwritten_in(
    client: &impl GenericClient,
    cfg: &crate::config::Job,
    desc: &Description,
    version: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let day = cfg.target_day_column.as_str();
    Ok(table(client, &cfg.target).await?.map(|t| unwritten(desc, version, &t, day)).unwrap_or_default())
}

pub fn check_plugin(desc: &Description, version: &str, source: &Table, target: &Table, day: &str) -> Vec<String> {
    let runner_output = runner_output(day);
    // The description's own bounds (names, counts, key) were checked when
    // the plugin was loaded (`plugin::contract`); here only the tables.
    let mut problems = Vec::new();
    let plugin = format!("plugin {version}");
    for c in &desc.input {
        expect_type(&mut problems, source, &c.name, c.kind.sql_types(), &format!("{plugin} reads it as {}", c.kind));
    }
    for c in &desc.output {
        if runner_output.iter().any(|(name, _)| *name == c.name) {
            problems.push(format!("{plugin} declares output column `{}`, which the runner fills itself", c.name));
            continue;
        }
        expect_type(&mut problems, target, &c.name, c.kind.sql_types(), &format!("{plugin} writes it as {}", c.kind));
    }
    for (name, types) in runner_output {
        expect_type(&mut problems, target, name, types, "the runner fills it");
    }
    for (name, info) in &target.columns {
        let written = desc.output.iter().any(|c| &c.name == name) || runner_output.iter().any(|(n, _)| n == name);
        if info.not_null && !info.has_default && !written {
            problems.push(format!(
                "column {}.{name} is NOT NULL without a default, but {plugin} does not write it",
                target.name
            ));
        }
    }
    let mut key: BTreeSet<String> = ["user_id".to_string(), day.to_string()].into();
    key.extend(desc.key.iter().cloned());
    if !target.unique_keys.contains(&key) {
        let key: Vec<_> = key.into_iter().collect();
        problems.push(format!(
            "table {} has no unique key on ({}), the key {plugin} declares",
            target.name,
            key.join(", ")
        ));
    }
    problems
}
