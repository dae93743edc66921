//! Trusted deploys: a plugin goes live only if `<file>.sig` — an Ed25519
//! signature over the file's SHA-256, the file name it is deployed under
//! and the time it was signed — verifies against one of the keys in
//! `[plugins] trusted_keys`, and its hash is not in `[plugins] revoked`.
//! Checked before the file is compiled, so an untrusted file never reaches
//! the compiler, let alone the data. The signing time is what refuses a
//! downgrade (an older signed release put back over a newer one: see
//! [`not_older`]); the name, a `.sig` copied to another job's file.
//!
//! Formats (one line each, hex, so that they survive any CI's copy-paste):
//! - `NAME.pub`: `runner-ed25519 <public key> <key id> <NAME>`
//! - `NAME.key`: `runner-ed25519-secret <seed> <key id> <NAME>` (mode 0600)
//! - `FILE.sig`: `runner-ed25519-sig-2 <key id> <file name> <signed at, RFC 3339>
//!   <downgrade|no-downgrade> <signature>`; the first format,
//!   `runner-ed25519-sig <key id> <signature>` (the hash alone), still
//!   verifies, with a warning, until the file is signed again.
//!
//! The key id is the first 8 bytes of the public key's SHA-256: short enough
//! for logs, long enough that two keys of one deployment never share it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

const PUBLIC: &str = "runner-ed25519";
const SECRET: &str = "runner-ed25519-secret";
const SIGNATURE: &str = "runner-ed25519-sig-2";
/// The first format: the file's hash alone, no name, no time.
const SIGNATURE_V1: &str = "runner-ed25519-sig";

/// A public key the runner trusts (or that signed a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub id: String,
    /// The name given at `keygen`, for messages.
    pub name: String,
    key: VerifyingKey,
}

/// What a plugin file must pass before it is compiled: `[plugins]
/// trusted_keys` and `[plugins] revoked`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// `None`: plugins are not verified.
    pub keys: Option<Vec<TrustedKey>>,
    /// SHA-256s (lower-case hex) that never load, however they are signed.
    pub revoked: Vec<String>,
}

impl Trust {
    /// Refused when revoked; else its signer when keys are set.
    pub fn check(&self, file: &Path, bytes: &[u8]) -> Result<Option<Signer>, String> {
        let hash = hex(&Sha256::digest(bytes));
        if self.revoked.contains(&hash) {
            return Err(format!("revoked: its SHA-256 {hash} is listed in [plugins] revoked"));
        }
        self.keys.as_ref().map(|keys| verify(file, bytes, keys)).transpose()
    }
}

/// Who signed a plugin that passed the check, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub key_id: String,
    pub name: String,
    /// When it was signed (by the signing machine's clock); `None` for a
    /// signature of the first format, which records no time.
    pub signed_at: Option<DateTime<Utc>>,
    /// Signed with `--allow-downgrade`: it may replace a newer version.
    pub allow_downgrade: bool,
}

impl Signer {
    /// What a log line or `status` says about an old-format signature.
    pub fn legacy_warning(&self) -> Option<String> {
        self.signed_at.is_none().then(|| {
            format!(
                "signed by {} in the first signature format, which binds neither the file name nor a signing \
                 time (so a downgrade cannot be told): sign it again with `runner plugin sign`",
                self.key_id
            )
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

impl TrustedKey {
    /// Parses a `NAME.pub` line (as pasted into `trusted_keys`).
    pub fn parse(line: &str) -> Result<Self, String> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [PUBLIC, key, id, name] = parts.as_slice() else {
            return Err(format!("expected `{PUBLIC} <public key> <key id> <name>` (the contents of a .pub file)"));
        };
        let key = unhex::<32>(key)
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or("the public key is not 64 hex digits of an Ed25519 key")?;
        if key_id(&key) != *id {
            return Err(format!("key id {id} does not match its key (a damaged or edited line)"));
        }
        Ok(TrustedKey { id: id.to_string(), name: name.to_string(), key })
    }

    /// The `NAME.pub` line.
    pub fn line(&self) -> String {
        format!("{PUBLIC} {} {} {}", hex(self.key.as_bytes()), self.id, self.name)
    }
}

/// `runner plugin keygen NAME`: writes `NAME.key` (0600) and `NAME.pub` in `dir`.
pub fn keygen(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf, TrustedKey)> {
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "`{name}` is not a key name: use letters, digits, `.`, `_` and `-`"
    );
    let (secret_path, public_path) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    for p in [&secret_path, &public_path] {
        anyhow::ensure!(!p.exists(), "{} already exists; keys are never overwritten", p.display());
    }
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let signing = SigningKey::from_bytes(&seed);
    let public =
        TrustedKey { id: key_id(&signing.verifying_key()), name: name.to_string(), key: signing.verifying_key() };
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&secret_path)?;
        writeln!(f, "{SECRET} {} {} {name}", hex(&seed), public.id)?;
    }
    std::fs::write(&public_path, format!("{}\n", public.line()))?;
    Ok((secret_path, public_path, public))
}

/// What `runner plugin sign` signs, besides the file.
#[derive(Debug, Clone, Default)]
pub struct SignAs {
    /// The file name it is deployed under (default: FILE's own name).
    pub name: Option<String>,
    /// May replace a newer signed version (`--allow-downgrade`).
    pub allow_downgrade: bool,
}

/// `runner plugin sign FILE --key NAME.key`: writes `FILE.sig`.
/// Refused, as ssh refuses such a key, when others may read the secret:
/// whoever can read it can sign plugins.
pub fn sign(file: &Path, secret: &Path, how: &SignAs) -> anyhow::Result<(PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(secret).map_err(|e| anyhow::anyhow!("reading {}: {e}", secret.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} is readable or writable by others (mode {mode:04o}): a secret key must be private to its owner; \
         run `chmod 600 {}` (CI: write it with `umask 077`)",
        secret.display(),
        secret.display()
    );
    let text = std::fs::read_to_string(secret).map_err(|e| anyhow::anyhow!("reading {}: {e}", secret.display()))?;
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [SECRET, seed, id, _name] = parts.as_slice() else {
        anyhow::bail!("{} is not a secret key made by `runner plugin keygen`", secret.display());
    };
    let seed =
        unhex::<32>(seed).ok_or_else(|| anyhow::anyhow!("{}: the secret is not 64 hex digits", secret.display()))?;
    let signing = SigningKey::from_bytes(&seed);
    anyhow::ensure!(key_id(&signing.verifying_key()) == *id, "{}: key id does not match its key", secret.display());
    let name = how.name.clone().unwrap_or_else(|| deploy_name(file));
    anyhow::ensure!(
        !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_whitespace),
        "`{name}` is not a plugin file name (no `/`, no spaces): pass the name it is deployed under with --as"
    );
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let signed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let downgrade = if how.allow_downgrade { "downgrade" } else { "no-downgrade" };
    let signature = signing.sign(&message(&Sha256::digest(&bytes), &name, &signed_at, downgrade));
    let sig_path = sig_path(file);
    // Aside, then renamed: a watching runner never reads half a signature.
    let line = format!("{SIGNATURE} {id} {name} {signed_at} {downgrade} {}\n", hex(&signature.to_bytes()));
    crate::files::write_atomically(&sig_path, line.as_bytes())?;
    Ok((sig_path, id.to_string()))
}

/// The bytes a signature of the current format covers: every field of the
/// `.sig` line but the signature, and the file's hash.
fn message(hash: &[u8], name: &str, signed_at: &str, downgrade: &str) -> Vec<u8> {
    format!("{SIGNATURE}\nsha256 {}\nname {name}\nsigned_at {signed_at}\n{downgrade}\n", hex(hash)).into_bytes()
}

/// The name a file at `path` is deployed under, which its signature must
/// name: its own, but for a shadow candidate (`vitals.candidate.wasm`
/// goes live as `vitals.wasm`) and a kept copy (`.kept/vitals.wasm/<hash>.wasm`).
pub fn deploy_name(path: &Path) -> String {
    let own = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let folder = path.parent();
    if let Some(kept) = folder.filter(|f| f.parent().and_then(Path::file_name) == Some(".kept".as_ref())) {
        return kept.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(own);
    }
    match own.strip_suffix(".candidate.wasm") {
        Some(stem) => format!("{stem}.wasm"),
        None => own,
    }
}

/// `<file>.sig`.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Checks `bytes` (the file at `file`) against `<file>.sig` and `trusted`;
/// the reason when it does not pass: unsigned, unknown key, signed for
/// another file name, bad signature.
pub fn verify(file: &Path, bytes: &[u8], trusted: &[TrustedKey]) -> Result<Signer, String> {
    let sig_file = sig_path(file);
    let text = match std::fs::read_to_string(&sig_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("unsigned: there is no {} (trusted_keys is set)", sig_file.display()));
        }
        Err(e) => return Err(format!("unsigned: cannot read {}: {e}", sig_file.display())),
    };
    let not_ours = || format!("bad signature: {} is not a signature made by `runner plugin sign`", sig_file.display());
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (id, signature, signed) = match parts.as_slice() {
        [SIGNATURE, id, name, signed_at, downgrade @ ("downgrade" | "no-downgrade"), signature] => {
            let at = DateTime::parse_from_rfc3339(signed_at).map_err(|_| not_ours())?.with_timezone(&Utc);
            (*id, *signature, Some((*name, *signed_at, at, *downgrade)))
        }
        [SIGNATURE_V1, id, signature] => (*id, *signature, None),
        _ => return Err(not_ours()),
    };
    let Some(key) = trusted.iter().find(|k| k.id == id) else {
        return Err(format!("signed by key {id}, which is not among [plugins] trusted_keys"));
    };
    let expected = deploy_name(file);
    let hash = Sha256::digest(bytes);
    let message = match signed {
        Some((name, ..)) if name != expected => {
            return Err(format!(
                "signed for `{name}`, not for `{expected}`: a signature is made for one file name \
                 (sign with `--as {expected}` if this file is deployed under that name)"
            ));
        }
        Some((name, signed_at, _, downgrade)) => message(&hash, name, signed_at, downgrade),
        None => hash.to_vec(),
    };
    match unhex::<64>(signature).map(|b| Signature::from_bytes(&b)) {
        Some(s) if key.key.verify(&message, &s).is_ok() => Ok(Signer {
            key_id: key.id.clone(),
            name: key.name.clone(),
            signed_at: signed.map(|(.., at, _)| at),
            allow_downgrade: signed.is_some_and(|(.., downgrade)| downgrade == "downgrade"),
        }),
        _ => Err(format!(
            "bad signature: {} does not match this file for key {id} ({}); was the file changed after signing?",
            sig_file.display(),
            key.name
        )),
    }
}

/// When the signature at `sig` says it was signed, unverified: used only
/// to raise the downgrade floor from a kept copy the runner wrote itself.
pub fn signed_at(sig: &Path) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(sig).ok()?;
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [SIGNATURE, _, _, at, _, _] => DateTime::parse_from_rfc3339(at).ok().map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

/// Refuses a downgrade: `new` may replace a version signed at `floor` only
/// if it was signed no earlier, or with `--allow-downgrade`, or when the
/// operator asked for it (`rollback`). A first-format signature, which
/// records no time, may not replace one that does.
pub fn not_older(new: &Signer, floor: Option<DateTime<Utc>>, rollback: bool) -> Result<(), String> {
    let (Some(floor), false) = (floor, rollback || new.allow_downgrade) else { return Ok(()) };
    let floor_text = floor.to_rfc3339_opts(SecondsFormat::Millis, true);
    match new.signed_at {
        None => Err(format!(
            "its signature (first format) records no signing time, and the live version's does \
             (signed {floor_text}): it may be a downgrade; sign it again with `runner plugin sign`"
        )),
        Some(at) if at < floor => Err(format!(
            "a downgrade: signed {}, before the live version (signed {floor_text}); to put an older version \
             back on purpose, run `runner plugin rollback --job <job>`, or sign it with `--allow-downgrade`",
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        )),
        Some(_) => Ok(()),
    }
}

/// Parses a `[plugins] revoked` entry: a file's SHA-256 in hex, optionally
/// written `sha256:<hex>` (as versions show it); lower case.
pub fn parse_revoked(entry: &str) -> Result<String, String> {
    let hex = entry.strip_prefix("sha256:").unwrap_or(entry).to_ascii_lowercase();
    match hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => Ok(hex),
        false => Err(format!("`{entry}` is not a SHA-256 (64 hex digits, as `sha256sum FILE` prints)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing_key(secret: &Path) -> SigningKey {
        let text = std::fs::read_to_string(secret).unwrap();
        SigningKey::from_bytes(&unhex::<32>(text.split_whitespace().nth(1).unwrap()).unwrap())
    }

    #[test]
    fn a_downgrade_is_refused_unless_flagged_or_asked_for() {
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let signer =
            |signed_at, allow_downgrade| Signer { key_id: "k".into(), name: "ci".into(), signed_at, allow_downgrade };
        let floor = at("2026-12-05T10:00:00.000Z");
        let older = signer(at("2026-12-01T10:00:00.000Z"), false);
        assert!(
            not_older(&older, floor, false).unwrap_err().starts_with("a downgrade: signed 2026-12-01T10:00:00.000Z")
        );
        assert!(not_older(&older, floor, true).is_ok(), "an explicit rollback");
        assert!(not_older(&signer(older.signed_at, true), floor, false).is_ok(), "--allow-downgrade");
        assert!(not_older(&signer(floor, false), floor, false).is_ok(), "the same release signed again");
        assert!(not_older(&older, None, false).is_ok(), "nothing signed with a time is live");
        assert!(not_older(&signer(None, false), floor, false).unwrap_err().contains("records no signing time"));
        assert_eq!(parse_revoked(&format!("sha256:{}", "AB".repeat(32))).unwrap(), "ab".repeat(32));
        assert!(parse_revoked("abc").unwrap_err().contains("64 hex digits"));
    }

    #[test]
    fn sign_then_verify_and_every_way_to_fail() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public, key) = keygen(dir.path(), "ci").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        for loose in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(loose)).unwrap();
            let e = sign(&dir.path().join("any.wasm"), &secret, &SignAs::default()).unwrap_err().to_string();
            assert!(e.contains(&format!("(mode {loose:04o})")) && e.contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let parsed = TrustedKey::parse(std::fs::read_to_string(&public).unwrap().trim()).unwrap();
        assert_eq!(parsed, key);
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"component bytes").unwrap();
        let trusted = [parsed];
        assert!(verify(&file, b"component bytes", &trusted).unwrap_err().starts_with("unsigned"));
        sign(&file, &secret, &SignAs::default()).unwrap();
        let signer = verify(&file, b"component bytes", &trusted).unwrap();
        assert_eq!(signer.key_id, key.id);
        assert!(signer.signed_at.is_some() && !signer.allow_downgrade && signer.legacy_warning().is_none());
        assert!(verify(&file, b"component bytez", &trusted).unwrap_err().starts_with("bad signature"));
        let (_, _, other) = keygen(dir.path(), "other").unwrap();
        assert!(verify(&file, b"component bytes", &[other]).unwrap_err().contains("not among [plugins] trusted_keys"));
        // Copied to another job's file name: refused, naming both names.
        let other_job = dir.path().join("nutrition.wasm");
        std::fs::copy(sig_path(&file), sig_path(&other_job)).unwrap();
        let e = verify(&other_job, b"component bytes", &trusted).unwrap_err();
        assert!(e.contains("signed for `p.wasm`, not for `nutrition.wasm`"), "{e}");
        // A shadow candidate and a kept copy answer to the live file's name.
        assert_eq!(deploy_name(Path::new("/p/vitals.candidate.wasm")), "vitals.wasm");
        assert_eq!(deploy_name(Path::new("/p/.kept/vitals.wasm/0a1b.wasm")), "vitals.wasm");
        // Edited fields (a later time, another flag) break the signature.
        let line = std::fs::read_to_string(sig_path(&file)).unwrap();
        let forged = line.replace("no-downgrade", "downgrade");
        std::fs::write(sig_path(&file), &forged).unwrap();
        assert!(verify(&file, b"component bytes", &trusted).unwrap_err().starts_with("bad signature"));
        // The first format (the hash alone) still verifies, without a time.
        let v1 = signing_key(&secret).sign(&Sha256::digest(b"component bytes"));
        std::fs::write(sig_path(&file), format!("{SIGNATURE_V1} {} {}", key.id, hex(&v1.to_bytes()))).unwrap();
        let legacy = verify(&file, b"component bytes", &trusted).unwrap();
        assert!(legacy.signed_at.is_none() && legacy.legacy_warning().unwrap().contains("sign it again"));
        let edited = key.line().replace(&key.id, "0000000000000000");
        assert!(TrustedKey::parse(&edited).unwrap_err().contains("does not match"));
    }
}
