//! Trusted deploys: with `[plugins] trusted_keys` set, only a plugin whose
//! `.sig` verifies against a trusted key goes live — at start, on reload,
//! as a shadow candidate — and the old version keeps running otherwise.

use std::path::Path;

use crate::util::{
    Daemon, TestDb, config_with_own_plugins, deploy, http_get, job, plugins_dir, run_ok, runner, text, variant,
};

/// `runner plugin <args>` in `dir` (keygen writes to the current folder).
async fn plugin(dir: &Path, config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = runner(config, &[&["plugin"][..], args].concat()).current_dir(dir).output().await.unwrap();
    (out.status.code(), text(&out))
}

/// Signs `bytes` as `name` with `key` in `staging`, then deploys the
/// signature first and the file second (the safe order).
async fn signed_deploy(staging: &Path, config: &Path, key: &str, plugins: &Path, name: &str, bytes: &[u8]) {
    let file = staging.join(name);
    std::fs::write(&file, bytes).unwrap();
    let (code, out) = plugin(staging, config, &["sign", file.to_str().unwrap(), "--key", key]).await;
    assert_eq!(code, Some(0), "{out}");
    deploy(&plugins.join(format!("{name}.sig")), &std::fs::read(staging.join(format!("{name}.sig"))).unwrap());
    deploy(&plugins.join(name), bytes);
}

#[tokio::test]
async fn only_plugins_signed_by_a_trusted_key_go_live_and_keys_rotate() {
    let db = TestDb::new().await;
    let (dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let (_, out) = plugin(&staging, &config, &["keygen", "ci"]).await;
    assert!(out.contains("trusted_keys = [\"runner-ed25519 "), "{out}");
    plugin(&staging, &config, &["keygen", "rogue"]).await;
    let pub_line =
        |name: &str| std::fs::read_to_string(staging.join(format!("{name}.pub"))).unwrap().trim().to_string();
    let key_id = |name: &str| pub_line(name).split_whitespace().nth(2).unwrap().to_string();
    let (ci, rogue) = (key_id("ci"), key_id("rogue"));
    let with_keys = |keys: &[&str]| {
        let lines: Vec<String> = keys.iter().map(|k| format!("\"{}\"", pub_line(k))).collect();
        let text = std::fs::read_to_string(&config).unwrap();
        let text: Vec<String> = text.lines().filter(|l| !l.starts_with("trusted_keys")).map(String::from).collect();
        let text =
            text.join("\n").replace("[plugins]\n", &format!("[plugins]\ntrusted_keys = [{}]\n", lines.join(", ")));
        std::fs::write(&config, text).unwrap();
    };
    run_ok(&config, &["migrate"]).await;

    // Unsigned at start: refused, fail closed.
    with_keys(&["ci"]);
    let out = runner(&config, &["check"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("refused: unsigned: there is no"), "{}", text(&out));
    let vitals = std::fs::read(plugins_dir().join("vitals.wasm")).unwrap();
    signed_deploy(&staging, &config, "ci.key", &plugins, "vitals.wasm", &vitals).await;
    let (code, out) = plugin(&staging, &config, &["verify", plugins.join("vitals.wasm").to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("signed by trusted key {ci} (ci)")), "{out}");
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(status.contains(&format!("(signed by {ci} ci)")), "{status}");

    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Plugins must be signed by a trusted key.", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(body.contains(&format!("\"key_id\":\"{ci}\"")), "{body}");
    let live = |body: &str, bytes: &[u8]| body.contains(&crate::util::vitals_version(bytes));

    // Signed by an untrusted key: refused, the old version keeps running.
    let v2 = variant(&vitals, "v2");
    signed_deploy(&staging, &config, "rogue.key", &plugins, "vitals.wasm", &v2).await;
    daemon.wait_for(&format!("signed by key {rogue}, which is not among [plugins] trusted_keys"), 1, 60).await;
    // Tampered after signing: the signature no longer matches.
    let v3 = variant(&vitals, "v3");
    signed_deploy(&staging, &config, "ci.key", &plugins, "vitals.wasm", &v3).await;
    daemon.wait_for("Plugin swapped.", 1, 60).await;
    deploy(&plugins.join("vitals.wasm"), &variant(&v3, "tampered"));
    daemon.wait_for("bad signature:", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(live(&body, &v3), "{body}");

    // The file first, its signature after (a CI's other order): refused
    // until the signature lands, then live without a new file.
    let v4 = variant(&vitals, "v4");
    std::fs::write(staging.join("v4.wasm"), &v4).unwrap();
    plugin(&staging, &config, &["sign", staging.join("v4.wasm").to_str().unwrap(), "--key", "ci.key"]).await;
    deploy(&plugins.join("vitals.wasm"), &v4);
    daemon.wait_for("bad signature:", 2, 60).await;
    deploy(&plugins.join("vitals.wasm.sig"), &std::fs::read(staging.join("v4.wasm.sig")).unwrap());
    daemon.wait_for("Plugin swapped.", 2, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(live(&body, &v4), "{body}");

    // Rotation: trust rogue, drop ci. The live plugin keeps running, and the
    // log says its next reload will be refused; a file signed by ci is.
    with_keys(&["rogue"]);
    daemon.wait_for("The live plugin was signed by a key no longer trusted", 1, 60).await;
    signed_deploy(&staging, &config, "ci.key", &plugins, "vitals.wasm", &variant(&vitals, "v5")).await;
    daemon.wait_for(&format!("signed by key {ci}, which is not among [plugins] trusted_keys"), 1, 60).await;
    let v6 = variant(&vitals, "v6");
    signed_deploy(&staging, &config, "rogue.key", &plugins, "vitals.wasm", &v6).await;
    daemon.wait_for("Plugin swapped.", 3, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(live(&body, &v6) && body.contains(&format!("\"key_id\":\"{rogue}\"")), "{body}");
    let log = daemon.stop().await;
    assert!(
        log.contains(&format!("signer=\"{rogue} (rogue)\"")) || log.contains(&format!("signer={rogue} (rogue)")),
        "{log}"
    );
}

#[tokio::test]
async fn without_trusted_keys_the_runner_says_plugins_are_not_verified() {
    let db = TestDb::new().await;
    let (_dir, config, _plugins) =
        config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    run_ok(&config, &["migrate"]).await;
    let out = text(&run_ok(&config, &["run", "--once"]).await);
    assert_eq!(out.matches("Plugins are not verified").count(), 1, "{out}");
}
