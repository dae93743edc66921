//! `runner plugin new`: a plugin crate that builds, tests and validates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// Where the kit was when this runner was built.
const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/kit");

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
plugin-kit = { path = "{kit}" }

# A workspace of its own, so the crate builds wherever it is created.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#;

const LIB_RS: &str = r#"//! The `{name}` aggregation plugin: per user and day, how many readings
//! there were and the sum of their `value`s, rejecting NULL and non-finite
//! values. Replace the schema and the logic with your own.

use plugin_kit::ColumnType::{Float, Integer};
use plugin_kit::{Day, Error, Output, Plugin, Schema};

pub struct {type_name};

impl Plugin for {type_name} {
    fn schema() -> Schema {
        Schema::new("{name}", env!("CARGO_PKG_VERSION"))
            .input("value", Float)
            .output("reading_count", Integer)
            .output("rejected_count", Integer)
            .output("total", Float)
    }

    fn aggregate(day: &Day<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let (mut count, mut rejected, mut total) = (0u32, 0u32, 0.0);
        for row in day.rows() {
            match row.float("value")? {
                Some(v) if v.is_finite() => {
                    count += 1;
                    total += v;
                }
                _ => rejected += 1,
            }
        }
        out.row(|r| {
            r.set("reading_count", count).set("rejected_count", rejected).set("total", total);
        });
        out.reject(rejected);
        Ok(())
    }
}

plugin_kit::export_plugin!({type_name});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_kit::testing::{Group, ts};

    #[test]
    fn sums_the_days_values_and_rejects_bad_ones() {
        let out = Group::new(1, "2024-03-10")
            .row(ts("2024-03-10T08:00:00Z"), [1.5.into()])
            .row(ts("2024-03-10T09:00:00Z"), [2.5.into()])
            .row(ts("2024-03-10T10:00:00Z"), [f64::NAN.into()])
            .run::<{type_name}>()
            .unwrap();
        let row = &out.rows[0];
        assert_eq!(row.integer("reading_count"), Some(2));
        assert_eq!(row.float("total"), Some(4.0));
        assert_eq!(out.rejected, 1);
    }
}
"#;

const SAMPLE_CSV: &str = "user_id,at,value\n1,2024-03-10T08:00:00Z,1.5\n1,2024-03-10T09:00:00Z,2.5\n1,2024-03-10T10:00:00Z,\n2,2024-03-10T08:00:00Z,7\n";

/// The languages `runner plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Javascript,
}

/// Files of the Python and JavaScript templates: (path, text with `{name}`).
const PYTHON: &[(&str, &str)] = &[
    ("rules.py", include_str!("templates/rules.py")),
    ("app.py", include_str!("templates/app.py")),
    ("runner_glue.py", include_str!("../../../../plugins/glue/runner_glue.py")),
    ("test_rules.py", include_str!("templates/test_rules.py")),
    ("README.md", include_str!("templates/README-python.md")),
    (".gitignore", "__pycache__/\n.venv/\n*.wasm\n"),
];
const JAVASCRIPT: &[(&str, &str)] = &[
    ("rules.js", include_str!("templates/rules.js")),
    ("app.js", include_str!("templates/app.js")),
    ("runner_glue.js", include_str!("../../../../plugins/glue/runner_glue.js")),
    ("rules.test.js", include_str!("templates/rules.test.js")),
    ("package.json", include_str!("templates/package.json")),
    ("README.md", include_str!("templates/README-javascript.md")),
    (".gitignore", "node_modules/\n*.wasm\n"),
];
/// The contract, copied into Python and JavaScript plugins (their
/// toolchains generate bindings from it).
const WIT: &str = include_str!("../../../../wit/aggregator.wit");

pub fn create(name: &str, dir: &Path, kit: Option<&Path>, lang: Lang) -> anyhow::Result<ExitCode> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!("`{name}` is not a valid plugin name: use lower-case letters, digits and `_`, starting with a letter");
    }
    let files = match lang {
        Lang::Rust => return create_rust(name, dir, kit),
        Lang::Python => PYTHON,
        Lang::Javascript => JAVASCRIPT,
    };
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    std::fs::create_dir_all(root.join("wit"))?;
    std::fs::write(root.join("wit/aggregator.wit"), WIT)?;
    std::fs::write(root.join("sample.csv"), SAMPLE_CSV)?;
    for (file, text) in files {
        std::fs::write(root.join(file), text.replace("{name}", name))?;
    }
    println!("Created {}. Next, as its README.md says:", root.display());
    println!("  cd {}", root.display());
    match lang {
        Lang::Python => {
            println!("  python3 -m unittest                               # your logic, natively");
            println!("  python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.0   # once");
            println!("  .venv/bin/componentize-py -d wit -w aggregator componentize app --stub-wasi -o {name}.wasm");
        }
        _ => {
            println!("  node --test                                       # your logic, natively");
            println!("  npm install && npm run build                      # {name}.wasm");
        }
    }
    println!("  runner plugin validate {name}.wasm");
    println!("  runner plugin test {name}.wasm --input sample.csv");
    Ok(ExitCode::SUCCESS)
}

fn create_rust(name: &str, dir: &Path, kit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let kit: PathBuf = match kit {
        Some(k) => k.to_path_buf(),
        None => PathBuf::from(KIT),
    };
    let kit = kit
        .canonicalize()
        .with_context(|| format!("the plugin kit is not at {}; pass --kit PATH to plugins/kit", kit.display()))?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let type_name: String =
        name.split('_').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect();
    std::fs::create_dir_all(root.join("src"))?;
    // Relative, so the crate and the checkout can move together.
    let kit = relative(&root.canonicalize()?, &kit);
    let fill = |t: &str| {
        t.replace("{name}", name).replace("{type_name}", &type_name).replace("{kit}", &kit.display().to_string())
    };
    std::fs::write(root.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(root.join("src/lib.rs"), fill(LIB_RS))?;
    std::fs::write(root.join("sample.csv"), SAMPLE_CSV)?;
    std::fs::write(root.join(".gitignore"), "target/\n")?;
    let wasm = format!("target/wasm32-wasip2/release/{name}.wasm");
    println!("Created {}. Next:", root.display());
    println!("  cd {}", root.display());
    println!("  cargo test                                    # your logic, natively");
    println!("  cargo build --release --target wasm32-wasip2  # the component");
    println!("  runner plugin validate {wasm}");
    println!("  runner plugin test {wasm} --input sample.csv");
    Ok(ExitCode::SUCCESS)
}

/// `to` as seen from `from` (both absolute): `../../plugins/kit`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kit_is_found_relative_to_the_new_crate() {
        let path =
            super::relative(std::path::Path::new("/repo/plugins/mine"), std::path::Path::new("/repo/plugins/kit"));
        assert_eq!(path, std::path::Path::new("../kit"));
        let path = super::relative(std::path::Path::new("/home/me/p"), std::path::Path::new("/repo/plugins/kit"));
        assert_eq!(path, std::path::Path::new("../../../repo/plugins/kit"));
    }
}
