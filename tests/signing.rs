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
    daemon.wait_for_swap_to(&crate::util::vitals_version(&v3), 60).await;
    deploy(&plugins.join("vitals.wasm"), &variant(&v3, "tampered"));
    daemon.wait_for("bad signature:", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(live(&body, &v3), "{body}");

    // The file first, its signature after (a CI's other order): refused
    // until the signature lands, then live without a new file.
    let v4 = variant(&vitals, "v4");
    std::fs::write(staging.join("v4.wasm"), &v4).unwrap();
    // Signed under another name: `--as` names the file it is deployed as.
    let v4_file = staging.join("v4.wasm");
    plugin(&staging, &config, &["sign", v4_file.to_str().unwrap(), "--key", "ci.key", "--as", "vitals.wasm"]).await;
    deploy(&plugins.join("vitals.wasm"), &v4);
    daemon.wait_for("bad signature:", 2, 60).await;
    deploy(&plugins.join("vitals.wasm.sig"), &std::fs::read(staging.join("v4.wasm.sig")).unwrap());
    daemon.wait_for_swap_to(&crate::util::vitals_version(&v4), 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(live(&body, &v4), "{body}");

    // Rotation: trust rogue, drop ci. The live plugin keeps running, named
    // at error level and on /ready; its file, checked again, is refused, and
    // so is a new one signed by ci.
    with_keys(&["rogue"]);
    daemon.wait_for("a key no longer trusted", 1, 60).await;
    let (code, body) = http_get(&addr, "/ready").await;
    assert!(code == 503 && body.contains("it runs unverified code"), "{code} {body}");
    daemon.wait_for(&format!("signed by key {ci}, which is not among [plugins] trusted_keys"), 1, 60).await;
    signed_deploy(&staging, &config, "ci.key", &plugins, "vitals.wasm", &variant(&vitals, "v5")).await;
    daemon.wait_for(&format!("signed by key {ci}, which is not among [plugins] trusted_keys"), 2, 60).await;
    let v6 = variant(&vitals, "v6");
    signed_deploy(&staging, &config, "rogue.key", &plugins, "vitals.wasm", &v6).await;
    daemon.wait_for_swap_to(&crate::util::vitals_version(&v6), 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(live(&body, &v6) && body.contains(&format!("\"key_id\":\"{rogue}\"")), "{body}");
    assert_eq!(http_get(&addr, "/ready").await.0, 200, "verified again");
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

#[tokio::test]
async fn keys_turned_on_name_unverified_code_and_a_refused_candidate_is_never_promoted() {
    const TOKEN: &str = "a-long-enough-admin-token";
    let db = TestDb::new().await;
    let (dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    plugin(&staging, &config, &["keygen", "ci"]).await;
    let pub_line = std::fs::read_to_string(staging.join("ci.pub")).unwrap().trim().to_string();
    let text_of = || std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_of().replace("[http]\n", &format!("[http]\nadmin_token = \"{TOKEN}\"\n"))).unwrap();
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Job started.", 1, 60).await;
    assert_eq!(http_get(&addr, "/ready").await.0, 200);

    // Keys turned on while the unsigned plugin runs: it keeps running, and
    // says so at error level and on /ready.
    std::fs::write(&config, text_of().replace("[plugins]\n", &format!("[plugins]\ntrusted_keys = [\"{pub_line}\"]\n")))
        .unwrap();
    daemon.wait_for("is not signed, and trusted_keys is now set", 1, 60).await;
    assert!(daemon.log().lines().any(|l| l.contains("ERROR") && l.contains("is not signed")), "{}", daemon.log());
    let (code, body) = http_get(&addr, "/ready").await;
    assert!(code == 503 && body.contains("vitals") && body.contains("it runs unverified code"), "{code} {body}");

    // An unsigned candidate: refused, shown with its reason, never promoted.
    let vitals = std::fs::read(plugins_dir().join("vitals.wasm")).unwrap();
    deploy(&plugins.join("vitals.candidate.wasm"), &variant(&vitals, "candidate"));
    daemon.wait_for("Shadow candidate rejected.", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    let plugins_json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let refused = plugins_json["jobs"][0]["candidate_refused"].as_str().unwrap_or_default().to_string();
    assert!(refused.contains("vitals.candidate.wasm") && refused.contains("unsigned"), "{body}");
    let (code, body) = crate::util::http_post(&addr, "/jobs/vitals/promote", Some(TOKEN), "").await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("the candidate was refused") && body.contains("unsigned"), "{body}");
    assert_eq!(std::fs::read(plugins.join("vitals.wasm")).unwrap(), vitals, "the live file is untouched");
    let (_, page) = http_get(&addr, "/").await;
    assert!(page.contains("shadow candidate refused:"), "{page}");
    // `runner status` asks the daemon, on its real address.
    let listen = format!("listen = \"{addr}\"");
    std::fs::write(&config, text_of().replace("listen = \"127.0.0.1:0\"", &listen)).unwrap();
    let status = text(&run_ok(&config, &["status"]).await);
    assert!(status.contains("shadow candidate refused:") && status.contains("unsigned"), "{status}");

    // Signed: the candidate loads and may be promoted; the live file, signed
    // in place, is verified again and /ready recovers.
    let sign = |file: std::path::PathBuf| {
        let staging = staging.clone();
        let config = config.clone();
        async move {
            let (code, out) = plugin(&staging, &config, &["sign", file.to_str().unwrap(), "--key", "ci.key"]).await;
            assert_eq!(code, Some(0), "{out}");
        }
    };
    sign(plugins.join("vitals.wasm")).await;
    daemon.wait_for("Plugin swapped.", 1, 60).await;
    assert_eq!(http_get(&addr, "/ready").await.0, 200, "{}", daemon.log());
    sign(plugins.join("vitals.candidate.wasm")).await;
    daemon.wait_for("Shadow candidate loaded", 1, 60).await;
    let (code, body) = crate::util::http_post(&addr, "/jobs/vitals/promote", Some(TOKEN), "").await;
    assert_eq!(code, 200, "{body}");
    daemon.wait_for_swap_to(&crate::util::vitals_version(&variant(&vitals, "candidate")), 60).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_signed_downgrade_a_signature_for_another_name_and_a_revoked_release_are_refused() {
    use crate::util::vitals_version;
    let db = TestDb::new().await;
    let (dir, config, plugins) = config_with_own_plugins(&db.url, &job("vitals", "vitals.wasm", ""), &["vitals.wasm"]);
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    plugin(&staging, &config, &["keygen", "ci"]).await;
    let key = staging.join("ci.key");
    let public = std::fs::read_to_string(staging.join("ci.pub")).unwrap();
    let toml = std::fs::read_to_string(&config).unwrap();
    let keys = format!("[plugins]\ntrusted_keys = [\"{}\"]\n", public.trim());
    std::fs::write(&config, toml.replace("[plugins]\n", &keys)).unwrap();
    // Releases signed one after another, each in its own folder as CI builds them.
    let vitals = std::fs::read(plugins_dir().join("vitals.wasm")).unwrap();
    let release = |tag: &str| {
        let (folder, bytes, key, config) = (staging.join(tag), variant(&vitals, tag), key.clone(), config.clone());
        async move {
            std::fs::create_dir(&folder).unwrap();
            let file = folder.join("vitals.wasm");
            std::fs::write(&file, &bytes).unwrap();
            let (code, out) =
                plugin(&folder, &config, &["sign", file.to_str().unwrap(), "--key", key.to_str().unwrap()]).await;
            assert_eq!(code, Some(0), "{out}");
            // Signing times are kept to the millisecond: the next release is later.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            (bytes.clone(), std::fs::read(folder.join("vitals.wasm.sig")).unwrap())
        }
    };
    let put = |(bytes, sig): &(Vec<u8>, Vec<u8>)| {
        deploy(&plugins.join("vitals.wasm.sig"), sig);
        deploy(&plugins.join("vitals.wasm"), bytes);
    };
    let (old, new, revoked) = (release("old").await, release("new").await, release("revoked").await);
    put(&old);
    run_ok(&config, &["migrate"]).await;
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("Plugins must be signed by a trusted key.", 1, 60).await;
    put(&new);
    daemon.wait_for_swap_to(&vitals_version(&new.0), 60).await;

    // The older release and its genuine signature, put back: refused.
    put(&old);
    daemon.wait_for("a downgrade: signed", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(body.contains(&vitals_version(&new.0)), "{body}");
    // Across a restart too: the floor is the version that last went live.
    daemon.stop().await;
    let daemon = Daemon::start(&config);
    let addr = daemon.http_address().await;
    daemon.wait_for("the job runs its last good version", 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(body.contains(&vitals_version(&new.0)) && body.contains("a downgrade"), "{body}");

    // An explicit rollback puts the older kept version back, once.
    put(&new);
    let out = text(&run_ok(&config, &["plugin", "rollback", "--job", "vitals"]).await);
    assert!(out.contains("Rolled back"), "{out}");
    daemon.wait_for_swap_to(&vitals_version(&old.0), 60).await;
    assert!(!plugins.join("vitals.wasm.rollback").exists(), "the request is spent once it went live");
    put(&new);
    daemon.wait_for_swap_to(&vitals_version(&new.0), 60).await;

    // A signature copied to another job's file name does not verify.
    let other = plugins.join("nutrition.wasm");
    std::fs::write(&other, &new.0).unwrap();
    std::fs::write(plugins.join("nutrition.wasm.sig"), &new.1).unwrap();
    let (code, out) = plugin(&staging, &config, &["verify", other.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("signed for `vitals.wasm`, not for `nutrition.wasm`"), "{out}");

    // A revoked release never loads, however well signed, and says why.
    let hash = runner::plugin::sha256_hex(&revoked.0);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[plugins]\n", &format!("[plugins]\nrevoked = [\"sha256:{hash}\"]\n")))
        .unwrap();
    daemon.wait_for("Trusted keys or revoked hashes changed", 1, 60).await;
    put(&revoked);
    daemon.wait_for(&format!("revoked: its SHA-256 {hash} is listed in [plugins] revoked"), 1, 60).await;
    let (_, body) = http_get(&addr, "/plugins").await;
    assert!(body.contains(&vitals_version(&new.0)), "{body}");
    let (code, out) = plugin(&staging, &config, &["verify", plugins.join("vitals.wasm").to_str().unwrap()]).await;
    assert!(code == Some(1) && out.contains("revoked"), "{out}");
    daemon.stop().await;
}
