//! The generated SQL, shown whole for the reference schema and for an
//! adopted table (another schema, a naive timestamp column): what a
//! reviewer reads to know what the runner sends.
use super::*;
use crate::rows::{Column, ColumnType};

fn job(source: &str, target: &str, ts: &str) -> config::Job {
    let text = format!(
        "[database]\nurl = \"postgres://localhost/x\"\n[plugins]\ndir = \"p\"\n[jobs.vitals]\nplugin = \"v.wasm\"\n\
         source = \"{source}\"\ntarget = \"{target}\"\ntimestamp_column = \"{ts}\"\ntimestamp_zone = \"America/New_York\"\n"
    );
    config::Config::parse(&text, std::path::Path::new("/etc/runner/runner.toml")).unwrap().jobs["vitals"].clone()
}

fn vitals() -> Description {
    let column = |name: &str, kind| Column { name: name.into(), kind };
    Description {
        name: "vitals".into(),
        version: "1.0.0".into(),
        input: vec![column("metric", ColumnType::Text), column("value", ColumnType::Float)],
        output: vec![column("metric", ColumnType::Text), column("avg_value", ColumnType::Float)],
        key: vec!["metric".into()],
        settings: Vec::new(),
        row_fields: crate::rows::RowFields::ALL,
    }
}

/// Whitespace folded, so that the expectations read as SQL.
fn folded(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_reference_schema_claims_keys_and_only_reads_the_source() {
    let shape = SourceShape { naive_zone: None, dated: false, has_id: true, zone: None, reading: Vec::new() };
    let sql = Statements::new(&job("vitals_raw", "vitals_daily", "recorded_at"), &shape, &vitals());
    assert_eq!(
        folded(&sql.claim),
        "WITH locked AS ( SELECT pg_try_advisory_xact_lock(hashtextextended($3::text || '/' || $1::bigint || \
         '/' || $2::date, 0)) AS ok ), taken AS ( DELETE FROM runner_changes WHERE job = $4::text AND day = \
         $2::date AND user_id = $1::int8 AND (SELECT ok FROM locked) RETURNING 1 ), cleared AS ( DELETE FROM \
         runner_group_failures WHERE job = $4::text AND user_id = $1::int8 AND day = $2::date AND (SELECT ok \
         FROM locked) RETURNING (NOT failed OR changed) AS retry, attempts ) SELECT r.id, r.at, r.c0, r.c1, \
         r.local_day, (SELECT count(*) \
         FROM taken) + (SELECT count(*) FROM cleared WHERE retry) AS taken, (SELECT coalesce(max(attempts), 0) \
         FROM cleared) AS attempts, (SELECT ok FROM locked) AS locked FROM \
         (SELECT 1) one \
         LEFT JOIN LATERAL ( SELECT s.id::int8 AS id, s.\"recorded_at\" AS at, s.\"metric\" AS c0, \
         s.\"value\" AS c1, (s.\"recorded_at\" AT TIME ZONE 'UTC')::pg_catalog.date AS local_day FROM \
         \"vitals_raw\" s WHERE s.user_id = $1::int8 AND s.\"recorded_at\" >= \
         ($2::pg_catalog.date::timestamp AT TIME ZONE 'UTC') AND s.\"recorded_at\" < (($2::pg_catalog.date + \
         1)::timestamp AT TIME ZONE 'UTC') AND (s.\"recorded_at\" AT TIME ZONE 'UTC')::pg_catalog.date = \
         $2::pg_catalog.date LIMIT 250001 ) r ON (SELECT ok FROM locked) ORDER BY r.at, r.id"
    );
    assert_eq!(
        folded(&sql.replace),
        "WITH v AS ( SELECT * FROM unnest($4::text[], $5::float8[]) AS v(\"metric\", \"avg_value\") ), up AS ( \
         INSERT INTO \"vitals_daily\" AS d (user_id, \"day\", plugin_version, updated_at, \"metric\", \"avg_value\") \
         SELECT $1::int8, $2::date, $3::text, clock_timestamp(), \"metric\", \"avg_value\" FROM v ON CONFLICT \
         (user_id, \"day\", \"metric\") DO UPDATE SET plugin_version = excluded.plugin_version, updated_at = \
         excluded.updated_at, \"avg_value\" = excluded.\"avg_value\" WHERE (d.plugin_version, d.\"metric\", \
         d.\"avg_value\") IS DISTINCT FROM (excluded.plugin_version, excluded.\"metric\", excluded.\"avg_value\") ) \
         DELETE FROM \"vitals_daily\" WHERE user_id = $1::int8 AND \"day\" = $2 AND (\"metric\") NOT IN (SELECT \
         \"metric\" FROM v)"
    );
    // The source appears in reads only.
    for statement in [&sql.peek, &sql.claim, &sql.read_day, &sql.day_users, &sql.count_groups, &sql.sample_groups] {
        let s = folded(statement);
        for write in ["UPDATE \"vitals_raw\"", "INSERT INTO \"vitals_raw\"", "DELETE FROM \"vitals_raw\""] {
            assert!(!s.contains(write), "{s}");
        }
    }
}

#[test]
fn an_adopted_table_is_read_in_its_schema_and_its_naive_times_in_their_zone() {
    let shape = SourceShape {
        naive_zone: Some("America/New_York".into()),
        dated: false,
        has_id: true,
        zone: None,
        reading: Vec::new(),
    };
    let sql = Statements::new(&job("app.readings", "app.daily", "taken_at"), &shape, &vitals());
    assert_eq!(
        folded(&sql.read_day),
        "SELECT * FROM (SELECT s.id::int8 AS id, (s.\"taken_at\" AT TIME ZONE 'America/New_York') AS at, \
         s.\"metric\" AS c0, s.\"value\" AS c1, ((s.\"taken_at\" AT TIME ZONE 'America/New_York') AT TIME ZONE \
         'UTC')::pg_catalog.date AS local_day FROM \"app\".\"readings\" s WHERE s.user_id = $1::int8 AND \
         s.\"taken_at\" >= LEAST(($2::pg_catalog.date::timestamp AT TIME ZONE 'UTC') AT TIME ZONE \
         'America/New_York', (($2::pg_catalog.date::timestamp AT TIME ZONE 'UTC') - interval '1 day') AT TIME \
         ZONE 'America/New_York' + interval '1 day', (($2::pg_catalog.date::timestamp AT TIME ZONE 'UTC') + \
         interval '1 day') AT TIME ZONE 'America/New_York' - interval '1 day') AND s.\"taken_at\" < \
         GREATEST((($2::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') AT TIME ZONE 'America/New_York', \
         ((($2::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') - interval '1 day') AT TIME ZONE \
         'America/New_York' + interval '1 day', ((($2::pg_catalog.date + 1)::timestamp AT TIME ZONE 'UTC') + \
         interval '1 day') AT TIME ZONE 'America/New_York' - interval '1 day') AND ((s.\"taken_at\" AT TIME \
         ZONE 'America/New_York') AT TIME ZONE 'UTC')::pg_catalog.date = $2::pg_catalog.date LIMIT 250001) r \
         ORDER BY r.at, r.id"
    );
    assert!(folded(&sql.replace).contains("up AS ( INSERT INTO \"app\".\"daily\" AS d"));
    let count = folded(&sql.count_groups);
    assert!(
        count.contains(
            "((\"taken_at\" AT TIME ZONE 'America/New_York') AT TIME ZONE 'UTC')::pg_catalog.date AS day FROM \"app\".\"readings\""
        ),
        "{count}"
    );
}

#[test]
fn a_naive_column_in_the_jobs_own_zone_is_read_by_its_own_date() {
    let shape = SourceShape {
        naive_zone: Some("America/Santiago".into()),
        dated: false,
        has_id: true,
        zone: None,
        reading: Vec::new(),
    };
    let mut config = job("app.readings", "app.daily", "taken_at");
    config.timezone = "America/Santiago".into();
    let sql = Statements::new(&config, &shape, &vitals());
    let read = folded(&sql.read_day);
    assert!(
        read.contains(
            "s.\"taken_at\" >= $2::pg_catalog.date::timestamp AND s.\"taken_at\" < ($2::pg_catalog.date + \
             1)::timestamp AND s.\"taken_at\"::pg_catalog.date = $2::pg_catalog.date"
        ),
        "{read}"
    );
}
