//! `runner plugin validate | test | new`, as plugin authors and CI use them.

use std::path::Path;

use crate::util::{TestDb, job_on, plugins_dir, run_ok, runner, text};

async fn plugin(args: &[&str]) -> (Option<i32>, String) {
    // `plugin` commands read no config unless `--job` is given.
    let out = runner(Path::new("/nonexistent.toml"), args).output().await.unwrap();
    (out.status.code(), text(&out))
}

fn built(name: &str) -> String {
    plugins_dir().join(name).display().to_string()
}

#[tokio::test]
async fn validate_describes_a_good_plugin() {
    let (code, out) = plugin(&["plugin", "validate", &built("lab.wasm")]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("a component of health:aggregation/aggregator@0.4.0"), "{out}");
    assert!(out.contains("plugin:        lab@1.0.0+sha256:"), "{out}");
    assert!(out.contains("key:           (user_id, day, test_code)"), "{out}");
    // Declared settings are listed; a plugin of the first package version still validates.
    let (code, out) = plugin(&["plugin", "validate", &built("vitals.wasm")]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("setting:       heart_rate_max float (default 300.0): highest plausible heart_rate, bpm"),
        "{out}"
    );
    let (code, out) = plugin(&["plugin", "validate", &built("faulty.wasm")]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("a component of health:aggregation/aggregator@0.1.0"), "{out}");
}

#[tokio::test]
async fn validate_rejects_files_that_are_not_our_components() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("random.wasm", &[0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6], "is not a WebAssembly file"),
        ("core.wasm", b"\0asm\x01\0\0\0", "is a core WebAssembly module, not a component"),
        (
            "other-world.wasm",
            b"\0asm\x0d\0\x01\0",
            "is not a component of the world health:aggregation/aggregator@0.4.0",
        ),
        (
            "truncated.wasm",
            &std::fs::read(plugins_dir().join("vitals.wasm")).unwrap()[..4000],
            "is not a valid WebAssembly component",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, out) = plugin(&["plugin", "validate", path.to_str().unwrap()]).await;
        assert_eq!(code, Some(1), "{name}: {out}");
        assert!(
            out.contains(&format!("problem: plugin {}", path.display())) && out.contains(expected),
            "{name}: {out}"
        );
    }
}

#[tokio::test]
async fn validate_against_a_job_checks_its_tables() {
    let db = TestDb::new().await;
    let jobs = format!(
        "{}{}",
        job_on("lab", "lab.wasm", "lab_raw", "lab_daily", "collected_at", ""),
        job_on("wrong", "lab.wasm", "lab_raw", "vitals_daily", "collected_at", "enabled = false")
    );
    // Every reference table, not only those the enabled jobs name.
    let (_dir, config) = crate::util::config(&db.url, &jobs);
    run_ok(&config, &["migrate", "--reference-schema"]).await;
    let lab = built("lab.wasm");
    let ok = runner(&config, &["plugin", "validate", &lab, "--job", "lab"]).output().await.unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("job lab: fits lab_raw -> lab_daily"));
    let bad = runner(&config, &["plugin", "validate", &lab, "--job", "wrong"]).output().await.unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = text(&bad);
    assert!(out.contains("problem: job wrong: table vitals_daily has no column `test_code`"), "{out}");
}

#[tokio::test]
async fn test_runs_a_plugin_on_csv_and_json_rows_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        "user_id,at,meal,calories,protein_g,carbs_g,fat_g\n\
         1,2024-03-10T08:00:00Z,breakfast,400,20,50,10\n\
         1,2024-03-10T12:00:00Z,brunch,300,,,\n\
         2,2024-03-11T12:00:00Z,lunch,500,,,\n",
    )
    .unwrap();
    let (code, out) = plugin(&["plugin", "test", &built("nutrition.wasm"), "--input", csv.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("user 1 day 2024-03-10: 2 input rows") && out.contains("1 rejected"), "{out}");
    assert!(out.contains("entry_count") && out.contains("user 2 day 2024-03-11"), "{out}");

    // Rows of several days in one group (a window's), by their `group` date.
    let window = dir.path().join("window.csv");
    std::fs::write(
        &window,
        "group,at,metric,value,unit\n\
         2026-03-07,2026-03-01T08:00:00Z,weight,80,kg\n\
         2026-03-07,2026-03-07T08:00:00Z,weight,78,kg\n",
    )
    .unwrap();
    let (code, out) =
        plugin(&["plugin", "test", &built("weight_trend.wasm"), "--input", window.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("user 1 day 2026-03-07: 2 input rows") && out.contains("-2"),
        "change_kg over the window: {out}"
    );

    // A week's group, told its bounds (WIT 0.3): a row's own local day and
    // zone from the file, the rest the --zone given.
    let week = dir.path().join("week.csv");
    std::fs::write(
        &week,
        "group,at,day,zone,metric\n\
         2026-03-02,2026-03-01T15:30:00Z,2026-03-02,Asia/Tokyo,a\n\
         2026-03-02,2026-03-03T03:00:00Z,2026-03-03,Asia/Tokyo,b\n",
    )
    .unwrap();
    let bounds = crate::util::plugins_dir().join("bounds.wasm");
    let args = ["plugin", "test", bounds.to_str().unwrap(), "--input", week.to_str().unwrap(), "--period", "week"];
    let (code, out) = plugin(&[&args[..], &["--json"]].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &report[0]["rows"][0];
    let day = |d: &str| runner::rows::days_since_epoch(d.parse().unwrap());
    assert_eq!(
        (&row["first_day"], &row["last_day"], &row["zone"], &row["days"], &row["last_metric"]),
        (
            &serde_json::json!("2026-03-02"),
            &serde_json::json!("2026-03-08"),
            &serde_json::json!("Asia/Tokyo"),
            &serde_json::json!(format!("{},{}", day("2026-03-02"), day("2026-03-03"))),
            &serde_json::json!("b")
        ),
        "{out}"
    );
    let (code, out) = plugin(&args).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("user 1 day 2026-03-02 (2026-03-02 to 2026-03-08): 2 input rows"), "{out}");

    let json = dir.path().join("rows.json");
    std::fs::write(
        &json,
        r#"[{"user_id": 13, "at": "2024-05-01T10:00:00Z", "metric": "heart_rate"},
            {"user_id": 1, "at": "2024-05-01T10:00:00Z", "metric": "heart_rate"},
            {"user_id": 1, "at": "2024-05-01T11:00:00Z", "metric": "heart_rate"}]"#,
    )
    .unwrap();
    let (code, out) =
        plugin(&["plugin", "test", &built("faulty.wasm"), "--input", json.to_str().unwrap(), "--json"]).await;
    assert_eq!(code, Some(1), "a failed group fails the command: {out}");
    let start = out.find('[').unwrap();
    let report: serde_json::Value = serde_json::from_str(&out[start..out.rfind(']').unwrap() + 1]).unwrap();
    assert_eq!(report[0]["rows"][0]["sample_count"], 2, "{report}");
    assert_eq!(report[1]["error"], "plugin error: user 13 is refused", "{report}");
    assert!(out.contains("aggregating 2 rows"), "plugin log lines are shown: {out}");
}

#[tokio::test]
async fn a_new_plugin_from_the_template_builds_tests_validates_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = plugin(&["plugin", "new", "step_count", "--dir", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    let root = dir.path().join("step_count");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("plugin-kit = { path = \"../"), "a relative path to the kit: {manifest}");
    // A target folder shared between runs keeps this test quick.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/template-build");
    let cargo = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(out.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    cargo(&["test", "--quiet"]);
    cargo(&["build", "--release", "--target", "wasm32-wasip2", "--quiet"]);
    let wasm = target.join("wasm32-wasip2/release/step_count.wasm");
    let (code, out) = plugin(&["plugin", "validate", wasm.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("step_count@0.1.0+sha256:"), "{out}");
    let sample = root.join("sample.csv");
    let (code, out) = plugin(&["plugin", "test", wasm.to_str().unwrap(), "--input", sample.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("user 1 day 2024-03-10: 3 input rows") && out.contains("1 rejected"), "{out}");
}

/// A toolchain `cargo xtask build-plugins` installed into `.tools/`.
fn tool(path: &str) -> std::path::PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools").join(path);
    assert!(tool.exists(), "{} is missing: run `cargo xtask build-plugins` (`cargo xtask test` does)", tool.display());
    tool
}

fn must(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?}: {all}");
    all
}

#[tokio::test]
async fn new_python_and_javascript_plugins_build_test_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, test, build) in [
        ("python", &["python3", "-m", "unittest", "-q"][..], "python"),
        ("javascript", &["node", "--test"][..], "javascript"),
    ] {
        let name = format!("steps_{lang}");
        let (code, out) =
            plugin(&["plugin", "new", &name, "--lang", lang, "--dir", dir.path().to_str().unwrap()]).await;
        assert_eq!(code, Some(0), "{out}");
        let root = dir.path().join(&name);
        assert!(root.join("wit/aggregator.wit").exists());
        must(std::process::Command::new(test[0]).args(&test[1..]).current_dir(&root));
        let wasm = root.join(format!("{name}.wasm"));
        let componentize = |wasm: &Path| {
            if build == "python" {
                must(
                    std::process::Command::new(tool("python/bin/componentize-py"))
                        .args(["-d", "wit", "-w", "aggregator", "componentize", "app", "--stub-wasi", "-o"])
                        .arg(wasm)
                        .current_dir(&root),
                );
            } else {
                must(
                    std::process::Command::new(tool("node/node_modules/.bin/componentize-js"))
                        .args([
                            "app.js",
                            "--wit",
                            "wit",
                            "-n",
                            "aggregator",
                            "-d",
                            "stdio",
                            "random",
                            "clocks",
                            "http",
                            "fetch-event",
                            "-o",
                        ])
                        .arg(wasm)
                        .current_dir(&root),
                );
            }
        };
        componentize(&wasm);
        let (code, out) = plugin(&["plugin", "validate", wasm.to_str().unwrap()]).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("{name}@0.1.0+sha256:")), "{out}");
        let sample = root.join("sample.csv");
        let (code, out) =
            plugin(&["plugin", "test", wasm.to_str().unwrap(), "--input", sample.to_str().unwrap()]).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("user 1 day 2024-03-10: 3 input rows") && out.contains("1 rejected"), "{lang}: {out}");

        // The author's slip: a text where the declared float goes. The glue
        // names the row, the column and the value, not "unreachable".
        let (app, total, expected) = if build == "python" {
            ("app.py", "float(total) * scale", "output row 0, column `total` (float): got str 'oops'")
        } else {
            ("app.js", "total * scale", "output row 0, column `total` (float): got string \"oops\"")
        };
        let text = std::fs::read_to_string(root.join(app)).unwrap();
        assert!(text.contains(total), "{app} changed: update the test");
        std::fs::write(root.join(app), text.replacen(total, "'oops'", 1)).unwrap();
        let broken = root.join(format!("{name}_broken.wasm"));
        componentize(&broken);
        let (code, out) =
            plugin(&["plugin", "test", broken.to_str().unwrap(), "--input", sample.to_str().unwrap()]).await;
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(expected) && !out.contains("unreachable"), "{lang}: {out}");
    }
}

#[test]
fn the_bundled_python_and_javascript_vitals_and_glue_pass_their_own_unit_tests() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let py = must(
        std::process::Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(plugins.join("vitals-py")),
    );
    assert!(py.contains("Ran 7 tests") && py.contains("OK"), "{py}");
    let js = must(std::process::Command::new("node").arg("--test").current_dir(plugins.join("vitals-js")));
    assert!(js.contains("# pass 7") && js.contains("# fail 0"), "{js}");
    // And the glue both share with every plugin `runner plugin new` writes.
    let py =
        must(std::process::Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(plugins.join("glue")));
    assert!(py.contains("Ran 4 tests") && py.contains("OK"), "{py}");
    let js = must(std::process::Command::new("node").arg("--test").current_dir(plugins.join("glue")));
    assert!(js.contains("# pass 3") && js.contains("# fail 0"), "{js}");
}

#[tokio::test]
async fn test_takes_settings_from_set_and_from_a_job_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        "user_id,at,metric,value,unit\n1,2024-03-10T08:00:00Z,heart_rate,230,bpm\n1,2024-03-10T09:00:00Z,heart_rate,60,bpm\n",
    )
    .unwrap();
    let rows = csv.to_str().unwrap();
    let vitals = built("vitals.wasm");
    let (code, out) = plugin(&["plugin", "test", &vitals, "--input", rows]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"heart_rate_max\":300") && out.contains("0 rejected"), "the defaults keep 230 bpm: {out}");

    let (code, out) = plugin(&["plugin", "test", &vitals, "--input", rows, "--set", "heart_rate_max=220"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"heart_rate_max\":220") && out.contains("1 rejected"), "{out}");
    assert!(out.contains("+settings:"), "the version names the settings: {out}");

    // A job's settings, overridden by --set.
    let config = dir.path().join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"postgres://x@localhost/x\"\n[plugins]\ndir = \"{}\"\n{}[jobs.vitals.settings]\nheart_rate_max = 100\n",
            plugins_dir().display(),
            job_on("vitals", "vitals.wasm", "vitals_raw", "vitals_daily", "recorded_at", "")
        ),
    )
    .unwrap();
    let from_job = |extra: &'static [&'static str]| {
        let mut args = vec!["plugin", "test", vitals.as_str(), "--input", rows, "--job", "vitals"];
        args.extend(extra);
        runner(&config, &args)
    };
    let out = from_job(&[]).output().await.unwrap();
    assert!(text(&out).contains("\"heart_rate_max\":100") && text(&out).contains("1 rejected"), "{}", text(&out));
    let out = from_job(&["--set", "heart_rate_max=300"]).output().await.unwrap();
    assert!(text(&out).contains("\"heart_rate_max\":300") && text(&out).contains("0 rejected"), "{}", text(&out));

    let (code, out) = plugin(&["plugin", "test", &vitals, "--input", rows, "--set", "heart_rate_mux=1"]).await;
    assert_eq!(code, Some(2), "an undeclared setting is bad usage: {out}");
    assert!(out.contains("heart_rate_mux"), "{out}");
    let (code, out) = plugin(&["plugin", "test", &vitals, "--input", rows, "--set", "heart_rate_max"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--set heart_rate_max: expected NAME=VALUE"), "{out}");
}

#[tokio::test]
async fn a_daily_column_the_plugin_never_writes_is_a_warning_in_validate_check_and_the_log() {
    let db = TestDb::new().await;
    let (_dir, config) =
        crate::util::migrated(&db, &job_on("lab", "lab.wasm", "lab_raw", "lab_daily", "collected_at", "")).await;
    let lab = built("lab.wasm");
    let clean = text(&runner(&config, &["plugin", "validate", &lab, "--job", "lab"]).output().await.unwrap());
    assert!(!clean.contains("warning"), "the reference table is written whole: {clean}");
    db.client.batch_execute("ALTER TABLE lab_daily ADD COLUMN reviewer text").await.unwrap();
    let out = runner(&config, &["plugin", "validate", &lab, "--job", "lab"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "a warning, not a failure: {}", text(&out));
    assert!(
        text(&out).contains("warning: job lab: column lab_daily.reviewer is never written by plugin lab@"),
        "{}",
        text(&out)
    );
    let check = text(&run_ok(&config, &["check"]).await);
    assert!(check.contains("warning: column lab_daily.reviewer is never written"), "{check}");
    let run = text(&run_ok(&config, &["run", "--once"]).await);
    assert!(run.contains("column lab_daily.reviewer is never written"), "{run}");
    // NOT NULL without a default: an error, as before.
    db.client.batch_execute("ALTER TABLE lab_daily ADD COLUMN approved boolean NOT NULL").await.unwrap();
    let out = runner(&config, &["plugin", "validate", &lab, "--job", "lab"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("lab_daily.approved is NOT NULL without a default"), "{}", text(&out));
}

/// Copies a folder's files (not its subfolders).
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten().filter(|e| e.path().is_file()) {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn the_bundled_python_and_javascript_plugins_made_to_fail_name_the_error_in_test_the_record_and_status() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    for folder in ["vitals-py", "vitals-js", "glue"] {
        copy_files(&root.join("plugins").join(folder), &dir.path().join(folder));
    }
    // The bug a new author writes: a missing key, an undefined property.
    let inject = |file: &str, after: &str, bug: &str| {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(after), "{file} changed: update the test");
        std::fs::write(&path, text.replacen(after, &format!("{after}{bug}"), 1)).unwrap();
    };
    inject("vitals-py/rules.py", "is its last one.\"\"\"\n", "    units = {}\n    units['mmHg']\n");
    inject(
        "vitals-js/rules.js",
        "export function aggregateColumns({ metrics, values, units }) {\n",
        "  const unit = undefined;\n  unit.val;\n",
    );
    let wit = root.join("wit");
    let (py, js) = (dir.path().join("broken_py.wasm"), dir.path().join("broken_js.wasm"));
    must(
        std::process::Command::new(tool("python/bin/componentize-py"))
            .arg("-d")
            .arg(&wit)
            .args(["-w", "aggregator", "componentize", "app", "-p", "vitals-py", "-p", "glue", "--stub-wasi", "-o"])
            .arg(&py)
            .current_dir(dir.path()),
    );
    must(
        std::process::Command::new(tool("node/node_modules/.bin/componentize-js"))
            // From the parent folder, as `cargo xtask build-plugins` does:
            // componentize-js resolves imports within its working folder.
            .args(["vitals-js/app.js", "--wit"])
            .arg(&wit)
            .args(["-n", "aggregator", "-d", "stdio", "random", "clocks", "http", "fetch-event", "-o"])
            .arg(&js)
            .current_dir(dir.path()),
    );
    let rows = dir.path().join("rows.csv");
    std::fs::write(&rows, "at,metric,value,unit\n2024-03-10T08:00:00Z,heart_rate,60,bpm\n").unwrap();
    let py_error = "KeyError: 'mmHg' (at rules.py:";
    let js_error = "TypeError: can't access property \"val\", unit is undefined (at aggregateColumns@rules.js:";
    for (wasm, expected) in [(&py, py_error), (&js, js_error)] {
        let (code, out) = plugin(&["plugin", "test", wasm.to_str().unwrap(), "--input", rows.to_str().unwrap()]).await;
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&format!("FAILED: plugin error: {expected}")), "{out}");
        assert!(!out.contains("unreachable"), "{out}");
    }

    // The same words in the log, the failure record and `runner status`.
    let db = TestDb::new().await;
    let (_dir, config) = crate::util::config_with_plugin_file(
        &db.url,
        &crate::util::job("vitals", "broken.wasm", "max_attempts = 1"),
        &py,
        "broken.wasm",
    );
    run_ok(&config, &["migrate"]).await;
    crate::util::one_reading(&db, 1, "2024-03-10").await;
    let log = text(&run_ok(&config, &["run", "--once"]).await);
    assert!(log.contains(py_error), "{log}");
    let recorded: String = db.client.query_one("SELECT error FROM runner_group_failures", &[]).await.unwrap().get(0);
    assert!(recorded.contains(py_error), "{recorded}");
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(status.contains("KeyError: 'mmHg'"), "{status}");
}
