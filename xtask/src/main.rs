//! Project tasks, runnable with nothing but cargo:
//!
//! - `cargo xtask build-plugins`: build the bundled plugins for
//!   `wasm32-wasip2` and copy them to `target/plugins/`, the Python and
//!   JavaScript vitals too (componentize-py and componentize-js, pinned,
//!   installed into `.tools/` on first use: nothing global).
//! - `cargo xtask demo [ARGS]`: build the plugins, then `runner demo ARGS`
//!   (a throwaway Postgres, seeded, aggregated, summarised).
//! - `cargo xtask test`: build everything and run the whole test suite.
//!   The Debian packages the tests run (PostgreSQL's server, promtool,
//!   Chromium, systemd-analyze) are installed first when missing, as root
//!   with apt-get; otherwise it stops, before building anything, naming the
//!   command that installs them.
//! - `cargo xtask bench [ARGS]`: the benchmark, in release mode (docs/performance.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The bundled plugins, as workspace package names.
const PLUGINS: &[&str] = &["vitals", "nutrition", "lab", "weight_trend", "vitals_weekly"];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest = passed_on(&task, args.collect());
    match task.as_str() {
        "build-plugins" => build_plugins().map(drop),
        "demo" => {
            system_packages(DEMO_NEEDS)?;
            build_plugins()?;
            cargo(&["run", "--package", "runner", "--", "demo"], &rest)
        }
        "bench" => {
            build_plugins()?;
            cargo(&["run", "--release", "--package", "bench", "--"], &rest)
        }
        "test" => {
            system_packages(TEST_NEEDS)?;
            build_plugins()?;
            cargo(&["test", "--workspace"], &rest)
        }
        _ => bail!("usage: cargo xtask <build-plugins | demo [ARGS] | test [ARGS] | bench [ARGS]>"),
    }
}

/// The arguments a task passes on. `cargo xtask demo -- --users 5` (as the
/// README writes it) and `cargo xtask demo --users 5` mean the same: `demo`
/// and `bench` add their own `--` before the binary's arguments. `test`
/// passes everything to `cargo test`, whose own `--` must stay.
fn passed_on(task: &str, mut rest: Vec<String>) -> Vec<String> {
    if matches!(task, "demo" | "bench") && rest.first().is_some_and(|a| a == "--") {
        rest.remove(0);
    }
    rest
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

fn cargo(args: &[&str], rest: &[String]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO")).args(args).args(rest).current_dir(root()).status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Adds the wasm32-wasip2 target when rustup lacks it, builds the plugins,
/// and copies them to `target/plugins/`.
fn build_plugins() -> anyhow::Result<PathBuf> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if let Ok(out) = installed
        && !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-wasip2")
    {
        let ok = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status()?.success();
        if !ok {
            bail!("rustup target add wasm32-wasip2 failed");
        }
    }
    let root = root();
    let mut args =
        vec!["build", "--profile", "plugin", "--target", "wasm32-wasip2", "--target-dir", "target/plugin-build"];
    for p in PLUGINS {
        args.extend(["--package", p]);
    }
    cargo(&args, &[])?;
    let built = root.join("target/plugin-build/wasm32-wasip2/plugin");
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    for p in PLUGINS {
        let file = format!("{p}.wasm");
        // Write aside, then rename: a watching runner never sees half a file.
        let tmp = out.join(format!(".{file}.tmp"));
        std::fs::copy(built.join(&file), &tmp).with_context(|| format!("copying {file}"))?;
        std::fs::rename(&tmp, out.join(&file))?;
    }
    // On the newest package version: rows by column are what make an
    // interpreter's group cheap. (The test guests stay on 0.1.0 and 0.2.0,
    // proving that plugins of those keep running unchanged.)
    build_python(&root, &out, "plugins/vitals-py", "wit", "vitals_py.wasm")?;
    build_javascript(&root, &out, "plugins/vitals-js", "wit", "vitals_js.wasm")?;
    // A test guest: a Python plugin that keeps state between groups, which
    // the runner's purity probe must catch (tests/purity.rs).
    build_python(&root, &out, "tests/guests/stateful-py", "wit/0.1.0", "stateful_py.wasm")?;
    println!("plugins in {}", out.display());
    Ok(out)
}

/// A program a task runs, and the Debian package that provides it.
struct Needed {
    /// What it is for, in the message when it cannot be installed.
    why: &'static str,
    /// Any of these paths, or the first on PATH.
    programs: &'static [&'static str],
    package: &'static str,
}

/// The throwaway PostgreSQL of the demo and of every integration test.
const POSTGRES: Needed = Needed {
    why: "a throwaway database",
    programs: &["initdb", "/usr/lib/postgresql/*/bin/initdb"],
    package: "postgresql",
};

const DEMO_NEEDS: &[Needed] = &[POSTGRES];

const TEST_NEEDS: &[Needed] = &[
    POSTGRES,
    Needed { why: "linting /metrics and the alert rules", programs: &["promtool"], package: "prometheus" },
    Needed {
        why: "the console's browser test",
        programs: &["/usr/bin/chromium", "/usr/bin/chromium-headless-shell"],
        package: "chromium",
    },
    Needed { why: "verifying the systemd unit", programs: &["systemd-analyze"], package: "systemd" },
];

impl Needed {
    fn present(&self) -> bool {
        self.programs.iter().any(|p| {
            if p.contains('*') {
                // The one glob used here: /usr/lib/postgresql/<version>/bin/initdb.
                let (dir, rest) = p.split_once('*').unwrap_or((p, ""));
                std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| Path::new(&format!("{}{rest}", e.path().display())).is_file())
            } else if p.starts_with('/') {
                Path::new(p).is_file()
            } else {
                std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            }
        })
    }
}

/// Installs the Debian packages of `needs` that this machine lacks, as
/// root with apt-get; otherwise fails, naming the command to run. Either
/// way before anything is built, so a missing package costs seconds, not
/// a build followed by failing tests.
fn system_packages(needs: &[Needed]) -> anyhow::Result<()> {
    let missing: Vec<&Needed> = needs.iter().filter(|n| !n.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let install = ["install", "-y", "--no-install-recommends"];
    let command = format!("apt-get update && apt-get install -y --no-install-recommends {}", packages.join(" "));
    let what: Vec<String> = missing.iter().map(|n| format!("{} ({})", n.package, n.why)).collect();
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let has_apt = Needed { why: "", programs: &["apt-get"], package: "" }.present();
    if !(is_root && has_apt) {
        bail!(
            "this machine lacks {}.\nInstall them, then run this command again:\n    sudo sh -c '{command}'",
            what.join(", ")
        );
    }
    println!("Installing {} (first run only, about a minute): {command}", what.join(", "));
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let ok = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?.success();
        if !ok {
            bail!("apt-get {} failed; run it yourself: {command}", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    apt(&[&install[..], &packages].concat())?;
    if let Some(n) = needs.iter().find(|n| !n.present()) {
        bail!("apt-get installed {} but {} is still not found", n.package, n.programs.join(" or "));
    }
    Ok(())
}

/// The pinned plugin toolchains for other languages.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.0";
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.19.3";

/// Runs a command in `dir`, failing with its name.
fn run(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<()> {
    let program = program.as_ref();
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    if !status.success() {
        bail!("{} {} failed", program.to_string_lossy(), args.join(" "));
    }
    Ok(())
}

/// Whether `out` is older than any file in `src` or the WIT (or missing).
fn stale(src: &Path, wit: &str, out: &Path) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else { return true };
    let wit = root().join(wit).join("aggregator.wit");
    // The shared glue (plugins/glue) is part of every Python and JavaScript plugin.
    [src.to_path_buf(), root().join("plugins/glue")]
        .iter()
        .flat_map(std::fs::read_dir)
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([wit])
        .filter(|p| p.is_file())
        .any(|p| std::fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t > built))
}

/// Builds a Python plugin with componentize-py, from a virtualenv in `.tools/python`.
fn build_python(root: &Path, out: &Path, src: &str, wit: &str, file: &str) -> anyhow::Result<()> {
    let target = out.join(file);
    if !stale(&root.join(src), wit, &target) {
        return Ok(());
    }
    let venv = root.join(".tools/python");
    let tool = venv.join("bin/componentize-py");
    if !tool.exists() {
        run(root, "python3", &["-m", "venv", venv.to_str().unwrap_or_default()])?;
        run(root, venv.join("bin/pip"), &["install", "--quiet", COMPONENTIZE_PY])?;
    }
    let tmp = out.join(format!(".{file}.tmp"));
    // The shared glue (plugins/glue/runner_glue.py) is found beside the source.
    let args =
        ["-d", wit, "-w", "aggregator", "componentize", "app", "-p", src, "-p", "plugins/glue", "--stub-wasi", "-o"];
    run(root, &tool, &[&args[..], &[tmp.to_str().unwrap_or_default()]].concat())?;
    std::fs::rename(&tmp, &target)?;
    Ok(())
}

/// Builds a JavaScript plugin with componentize-js, from `.tools/node`,
/// with every optional WASI feature off (it imports nothing the runner lacks).
fn build_javascript(root: &Path, out: &Path, src: &str, wit: &str, file: &str) -> anyhow::Result<()> {
    let target = out.join(file);
    if !stale(&root.join(src), wit, &target) {
        return Ok(());
    }
    let tools = root.join(".tools/node");
    let tool = tools.join("node_modules/.bin/componentize-js");
    if !tool.exists() {
        std::fs::create_dir_all(&tools)?;
        let prefix = tools.to_str().unwrap_or_default();
        run(root, "npm", &["install", "--no-save", "--no-audit", "--no-fund", "--prefix", prefix, COMPONENTIZE_JS])?;
    }
    let tmp = out.join(format!(".{file}.tmp"));
    let app = format!("{src}/app.js");
    let args = ["--wit", wit, "-n", "aggregator", "-d", "stdio", "random", "clocks", "http", "fetch-event", "-o"];
    run(root, &tool, &[&[app.as_str()][..], &args, &[tmp.to_str().unwrap_or_default()]].concat())?;
    std::fs::rename(&tmp, &target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::passed_on;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_readme_and_docs_commands_reach_the_binary_unchanged() {
        // README: `cargo xtask demo -- --users 500 --days 30 --keep`
        assert_eq!(passed_on("demo", args("-- --users 500 --days 30 --keep")), args("--users 500 --days 30 --keep"));
        // docs/performance.md: `cargo xtask bench -- --users 300`
        assert_eq!(passed_on("bench", args("-- --users 300")), args("--users 300"));
        assert_eq!(passed_on("demo", args("--users 5")), args("--users 5"));
        assert_eq!(passed_on("test", args("-- --nocapture")), args("-- --nocapture"));
    }
}
