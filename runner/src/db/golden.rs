//! Golden SQL: every statement the runner generates from a config, written
//! out whole for the shipped `config/runner.toml` and for jobs of every
//! other shape (a zone column of names and of offsets, a users' zones
//! table, a month of a naive timestamp in another schema), and compared
//! with `db/golden/<job>.sql`. A change to generated SQL shows in review as
//! a diff of these files; after a deliberate one, rewrite them with
//! `RUNNER_BLESS=1 cargo test -p runner --lib golden`.

use std::path::{Path, PathBuf};

use super::capture::{self, Names};
use super::schema::{SourceShape, ZoneKind};
use super::statements::Statements;
use crate::config::Config;
use crate::rows::{Column, ColumnType, Description};

/// Jobs of the shapes the shipped config does not have.
const OTHER_SHAPES: &str = r#"
[database]
url = "postgres://localhost/health"
[plugins]
dir = "plugins"
[jobs.local_days]
plugin = "vitals.wasm"
source = "vitals_raw"
target = "vitals_local"
timestamp_column = "recorded_at"
zone_column = "zone"
[jobs.offsets]
plugin = "vitals.wasm"
source = "vitals_offsets"
target = "vitals_offsets_daily"
timestamp_column = "recorded_at"
zone_column = "offset_minutes"
[jobs.user_local]
plugin = "vitals.wasm"
source = "vitals_raw"
target = "vitals_user_local"
timestamp_column = "recorded_at"
[jobs.user_local.user_zones]
table = "app.users"
user_column = "id"
from_column = "since"
[jobs.monthly]
plugin = "vitals.wasm"
source = "app.readings"
target = "app.readings_monthly"
timestamp_column = "taken_at"
timestamp_zone = "Europe/Berlin"
timezone = "America/New_York"
period = "month"
target_day_column = "month"
"#;

/// The plugin columns every golden job is rendered with: the SQL's shape
/// depends on how many and of which type, not on which plugin.
fn description() -> Description {
    let column = |name: &str, kind| Column { name: name.into(), kind };
    Description {
        name: "vitals".into(),
        version: "1.0.0".into(),
        input: vec![column("metric", ColumnType::Text), column("value", ColumnType::Float)],
        output: vec![
            column("metric", ColumnType::Text),
            column("sample_count", ColumnType::Integer),
            column("avg_value", ColumnType::Float),
        ],
        key: vec!["metric".into()],
        settings: Vec::new(),
        row_fields: crate::rows::RowFields::ALL,
    }
}

/// The source's shape as `check_source` would find it for these tables.
fn shape(name: &str, job: &crate::config::Job) -> SourceShape {
    SourceShape {
        naive_zone: (name == "monthly").then(|| job.timestamp_zone.clone()),
        dated: name == "vitals_weekly",
        has_id: name != "vitals_weekly",
        zone: match name {
            "local_days" => Some(ZoneKind::Name),
            "offsets" => Some(ZoneKind::Offset),
            _ => None,
        },
        reading: Vec::new(),
    }
}

/// Everything generated for one job, in one file.
fn render(name: &str, job: &crate::config::Job) -> String {
    let shape = shape(name, job);
    let names = Names {
        schema: "runner".into(),
        source: match job.source.as_str().contains('.') {
            true => job.source.quoted(),
            false => format!("public.{}", job.source.quoted()),
        },
        user_zones: job.user_zones.as_ref().map(|u| u.table.quoted()),
    };
    let mut out = format!("-- Generated for job `{name}` (see db/golden.rs).\n");
    let statements = Statements::new(job, &shape, &description());
    for (what, sql) in statements.all() {
        out += &format!("\n-- {what}\n{}\n", sql.trim());
    }
    let install = capture::install_sql(name, job, &shape, &names, std::slice::from_ref(&names.source));
    out += &format!("\n-- change capture\n{}\n", install.trim());
    if let Some(zones) = super::user_zones::install_sql(name, job, &shape, &names) {
        out += &format!("\n-- users' zones capture\n{}\n", zones.trim());
    }
    out
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db/golden")
}

#[test]
fn generated_sql_matches_the_golden_files() {
    let shipped = Config::parse(
        include_str!("../../../config/runner.toml"),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/runner.toml")),
    )
    .unwrap();
    let others = Config::parse(OTHER_SHAPES, Path::new("/etc/runner/runner.toml")).unwrap();
    let grants = super::roles::grants(&shipped, "app", Some("health"));
    let grants = format!("-- `runner migrate --print-grants app` for config/runner.toml\n{}\n", grants.trim());
    let mut files = vec![("grants".to_string(), grants)];
    for config in [&shipped, &others] {
        files.extend(config.jobs.iter().map(|(name, job)| (name.clone(), render(name, job))));
    }
    let bless = std::env::var_os("RUNNER_BLESS").is_some();
    let mut differ = Vec::new();
    for (name, text) in files {
        let path = golden_dir().join(format!("{name}.sql"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            differ.push(format!("{}\n--- generated now:\n{text}", path.display()));
        }
    }
    assert!(
        differ.is_empty(),
        "generated SQL differs from its golden file (if the change is meant, run \
         `RUNNER_BLESS=1 cargo test -p runner --lib golden` and review the diff):\n{}",
        differ.join("\n")
    );
}
