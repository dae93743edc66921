//! Project tasks, runnable with nothing but cargo:
//!
//! - `cargo xtask build-plugins`: build the bundled plugins for
//!   `wasm32-wasip2` and copy them to `target/plugins/`.
//! - `cargo xtask demo [ARGS]`: build the plugins, then `runner demo ARGS`
//!   (a throwaway Postgres, seeded, aggregated, summarised).
//! - `cargo xtask test`: build everything and run the whole test suite.
//! - `cargo xtask bench [ARGS]`: the benchmark, in release mode (docs/performance.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The bundled plugins, as workspace package names.
const PLUGINS: &[&str] = &["vitals", "nutrition", "lab"];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest = passed_on(&task, args.collect());
    match task.as_str() {
        "build-plugins" => build_plugins().map(drop),
        "demo" => {
            build_plugins()?;
            cargo(&["run", "--package", "runner", "--", "demo"], &rest)
        }
        "bench" => {
            build_plugins()?;
            cargo(&["run", "--release", "--package", "bench", "--"], &rest)
        }
        "test" => {
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
    println!("plugins in {}", out.display());
    Ok(out)
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
