//! The config's unit tests: each problem named with its line.

use super::*;

/// The smallest valid config: one job, every default.
pub(super) const GOOD: &str = r#"
[database]
url = "postgres://localhost/health"

[plugins]
dir = "plugins"

[jobs.vitals]
plugin = "vitals.wasm"
source = "vitals_raw"
target = "vitals_daily"
timestamp_column = "recorded_at"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/runner/runner.toml"))
}

#[test]
fn defaults_and_relative_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.plugins.dir, Path::new("/etc/runner/plugins"));
    let job = &c.jobs["vitals"];
    assert_eq!((job.batch_size, job.workers, job.max_attempts), (200, 2, 5));
    assert_eq!(job.timezone, "UTC");
    assert_eq!(c.database.max_connections, 4);
}

#[test]
fn a_job_name_of_39_bytes_is_the_longest_taken() {
    // A dot and a 40-byte name: cases/job_name_with_a_dot and job_name_of_40_bytes.
    let longest = "v".repeat(39);
    assert!(parse(&GOOD.replace("[jobs.vitals]", &format!("[jobs.{longest}]"))).is_ok());
    let over = "v".repeat(40);
    let e = parse(&GOOD.replace("[jobs.vitals]", &format!("[jobs.{over}]"))).unwrap_err().to_string();
    assert!(e.contains("a job name may have at most 39 bytes"), "{e}");
}

#[test]
fn the_reference_config_parses_with_every_job_enabled() {
    let text = include_str!("../../../config/runner.toml");
    let c = Config::parse(text, Path::new("/repo/config/runner.toml")).unwrap();
    assert_eq!(c.jobs.keys().collect::<Vec<_>>(), ["lab", "nutrition", "vitals", "vitals_weekly", "weight_trend"]);
    assert_eq!(c.jobs["weight_trend"].window_days, 7);
    assert!(c.jobs.values().all(|j| j.enabled));
    assert_eq!(c.plugins.dir, Path::new("/repo/config/../target/plugins"));
    assert_eq!(c.http.listen, "127.0.0.1:9187");
    assert!(!c.database.synchronous_commit);
}

#[test]
fn settings_are_scalars_with_their_lines() {
    let e = parse(&format!("{GOOD}\n[jobs.vitals.settings]\nmax = nan\nwhen = 2024-01-01\n")).unwrap_err();
    let all = e.problems.join("\n");
    assert!(all.contains("jobs.vitals.settings.max: expected a finite number, got nan"), "{e}");
    assert!(all.contains("jobs.vitals.settings.when: expected a string, number or boolean, got datetime"), "{e}");
    let c = parse(&format!("{GOOD}\n[jobs.vitals.settings]\nmax = 220\nstrict = true\n")).unwrap();
    let job = &c.jobs["vitals"];
    let line = |n: usize| format!("{}:{n}", c.path.display());
    let table = GOOD.lines().count() + 2;
    assert_eq!(job.setting_origin(None), line(table));
    assert_eq!(job.setting_origin(Some("strict")), line(table + 2));
    assert_eq!(job.setting_origin(Some("unknown")), line(table));
    use crate::rows::Value;
    assert_eq!(job.setting_values()["max"], Value::Integer(220));
}

#[test]
fn a_window_is_one_day_to_a_year() {
    assert_eq!(parse(GOOD).unwrap().jobs["vitals"].window_days, 1);
    let with = |n: &str| GOOD.replace("timestamp_column", &format!("window_days = {n}\ntimestamp_column"));
    assert_eq!(parse(&with("7")).unwrap().jobs["vitals"].window_days, 7);
    assert!(parse(&with("0")).unwrap_err().to_string().contains("expected a number above 0, got 0"));
    let e = parse(&with("367")).unwrap_err().to_string();
    assert!(e.contains("jobs.vitals.window_days: expected at most 366 (a year), got 367"), "{e}");
}

#[test]
fn two_jobs_writing_one_table_are_refused_naming_both() {
    let other = "\n[jobs.more]\nplugin = \"more.wasm\"\nsource = \"public.vitals_raw\"\ntarget = \"vitals_daily\"\ntimestamp_column = \"t\"\n";
    let e = parse(&format!("{GOOD}{other}")).unwrap_err();
    // One source for several jobs is fine (capture queues keys per job); one target is not.
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(
        e.problems[0].contains("jobs more (line 14) and vitals both use table vitals_daily as their target"),
        "{e}"
    );
    assert!(parse(&format!("{GOOD}{}", other.replace("\"vitals_daily\"", "\"more_daily\""))).is_ok());
    // A disabled job may share its tables (it is neither loaded nor run).
    let disabled = other.replace("[jobs.more]", "[jobs.more]\nenabled = false");
    assert!(parse(&format!("{GOOD}{disabled}")).is_ok());
}

#[test]
fn zone_names_cannot_carry_sql() {
    let text = GOOD.replace("timestamp_column", "timestamp_zone = \"UTC'; drop table x; --\"\ntimestamp_column");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("jobs.vitals.timestamp_zone: `UTC'; drop table x; --` is not a time zone name"), "{e}");
}

#[test]
fn the_compile_cache_may_not_live_in_the_plugin_folder() {
    let text = GOOD.replace("dir = \"plugins\"", "dir = \"plugins\"\ncache_dir = \"plugins/./x/../.cache\"");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("[plugins] cache_dir: /etc/runner/plugins/./x/../.cache is inside the plugin folder"), "{e}");
    let text = GOOD.replace("dir = \"plugins\"", "dir = \"plugins\"\ncache_dir = \"/var/lib/runner\"");
    assert_eq!(parse(&text).unwrap().plugins.cache_dir.unwrap(), Path::new("/var/lib/runner"));
}

#[test]
fn a_cache_folder_reached_through_a_symlink_into_the_plugin_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("plugins"), dir.path().join("looks-elsewhere")).unwrap();
    let path = dir.path().join("runner.toml");
    for cache in ["looks-elsewhere/cache", "looks-elsewhere", "looks-elsewhere/a/../b"] {
        let text = GOOD.replace("dir = \"plugins\"", &format!("dir = \"plugins\"\ncache_dir = \"{cache}\""));
        let e = Config::parse(&text, &path).unwrap_err().to_string();
        assert!(e.contains("is inside the plugin folder"), "{cache}: {e}");
    }
    // A symlinked plugin folder and a real cache beside it are fine.
    std::fs::create_dir(dir.path().join("cache")).unwrap();
    let text = GOOD.replace("dir = \"plugins\"", "dir = \"looks-elsewhere\"\ncache_dir = \"cache\"");
    assert!(Config::parse(&text, &path).is_ok());
}

#[test]
fn zero_waits_and_a_busy_poll_are_refused_at_their_lines() {
    let text = GOOD.replace("[plugins]", "wait_timeout = \"0s\"\n\n[runner]\npoll_interval = \"0s\"\n\n[plugins]");
    let e = parse(&text).unwrap_err();
    assert_eq!(
        e.problems,
        [
            "line 5: database.wait_timeout: expected a duration above 0 (every wait is bounded)",
            "line 8: runner.poll_interval: expected at least 10ms (it paces an idle runner's checks), got 0ns",
        ],
        "{e}"
    );
}

#[test]
fn bad_values_in_several_sections_are_all_reported() {
    let text = GOOD
        .replace("[plugins]", "max_connections = \"many\"\n\n[plugins]")
        .replace("timestamp_column", "workers = -1\ntimestamp_column");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.problems[0].starts_with("line 5, column 19: invalid type: string \"many\""), "{e}");
    assert!(e.problems[1].starts_with("line 14, column 11: invalid value: integer `-1`"), "{e}");
}

#[test]
fn a_pool_smaller_than_the_jobs_workers_is_warned_about() {
    let two_jobs = format!(
        "{GOOD}\n[jobs.more]\nplugin = \"more.wasm\"\nsource = \"more_raw\"\ntarget = \"more_daily\"\ntimestamp_column = \"at\"\nworkers = 3\n"
    );
    let small = parse(&two_jobs.replace("[database]\n", "[database]\nmax_connections = 4\n")).unwrap();
    let warnings = small.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("max_connections = 4 is less than the enabled jobs' workers together (")),
        "{warnings:?}"
    );
    let enough = parse(&two_jobs.replace("[database]\n", "[database]\nmax_connections = 8\n")).unwrap();
    assert!(enough.warnings().is_empty(), "{:?}", enough.warnings());
}

#[test]
fn a_listen_address_other_hosts_reach_without_a_token_is_warned_about() {
    let http = |listen: &str, token: Option<&str>| Http {
        listen: listen.into(),
        console_listen: None,
        admin_token: token.map(Into::into),
    };
    for quiet in ["127.0.0.1:9187", "127.0.0.2:1", "[::1]:9187", "localhost:9187", ""] {
        assert_eq!(http(quiet, None).exposure_warning(), None, "{quiet}");
    }
    for open in ["0.0.0.0:9187", "[::]:9187", "10.1.2.3:80", "runner.internal:9187"] {
        let warning = http(open, None).exposure_warning().unwrap_or_default();
        assert!(warning.contains(&format!("listen = \"{open}\" is reachable from other hosts")), "{warning}");
        assert_eq!(http(open, Some("a-long-enough-admin-token")).exposure_warning(), None);
        // Metrics for a remote Prometheus, the console on loopback: quiet.
        let split = Http { console_listen: Some("127.0.0.1:9188".into()), ..http(open, None) };
        assert_eq!(split.exposure_warning(), None);
        let warning = Http { console_listen: Some(open.into()), ..http("127.0.0.1:1", None) }.exposure_warning();
        assert!(warning.unwrap_or_default().contains("console_listen"), "{open}");
    }
}

/// Each `cases/<name>.toml` is refused with exactly what `cases/<name>.err`
/// says: every problem, each at its line. After a deliberate change of a
/// message, rewrite them with `RUNNER_BLESS=1 cargo test -p runner --lib config`.
#[test]
fn each_bad_config_in_cases_is_refused_as_its_err_file_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/cases");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the cases are in {}", dir.display());
    let bless = std::env::var_os("RUNNER_BLESS").is_some();
    let mut differ = Vec::new();
    for case in cases {
        let got = match parse(&std::fs::read_to_string(&case).unwrap()) {
            Ok(_) => "accepted\n".to_string(),
            Err(e) => format!("{e}\n"),
        };
        let expected = case.with_extension("err");
        if bless {
            std::fs::write(&expected, &got).unwrap();
        } else if std::fs::read_to_string(&expected).ok().as_deref() != Some(got.as_str()) {
            differ.push(format!("{}:\n{got}", expected.display()));
        }
    }
    assert!(differ.is_empty(), "refused otherwise than the .err files say:\n{}", differ.join("\n"));
}
