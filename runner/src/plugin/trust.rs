//! Trusted deploys: a plugin goes live only if `<file>.sig` — an Ed25519
//! signature over the file's SHA-256 — verifies against one of the keys in
//! `[plugins] trusted_keys`. Checked before the file is compiled, so an
//! untrusted file never reaches the compiler, let alone the data.
//!
//! Formats (one line each, hex, so that they survive any CI's copy-paste):
//! - `NAME.pub`: `runner-ed25519 <public key> <key id> <NAME>`
//! - `NAME.key`: `runner-ed25519-secret <seed> <key id> <NAME>` (mode 0600)
//! - `FILE.sig`: `runner-ed25519-sig <key id> <signature>`
//!
//! The key id is the first 8 bytes of the public key's SHA-256: short enough
//! for logs, long enough that two keys of one deployment never share it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

const PUBLIC: &str = "runner-ed25519";
const SECRET: &str = "runner-ed25519-secret";
const SIGNATURE: &str = "runner-ed25519-sig";

/// A public key the runner trusts (or that signed a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub id: String,
    /// The name given at `keygen`, for messages.
    pub name: String,
    key: VerifyingKey,
}

/// Who signed a plugin that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub key_id: String,
    pub name: String,
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

/// `runner plugin sign FILE --key NAME.key`: writes `FILE.sig`.
/// Refused, as ssh refuses such a key, when others may read the secret:
/// whoever can read it can sign plugins.
pub fn sign(file: &Path, secret: &Path) -> anyhow::Result<(PathBuf, String)> {
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
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let signature = signing.sign(&Sha256::digest(&bytes));
    let sig_path = sig_path(file);
    // Aside, then renamed: a watching runner never reads half a signature.
    let line = format!("{SIGNATURE} {id} {}\n", hex(&signature.to_bytes()));
    super::kept::write_atomically(&sig_path, line.as_bytes())?;
    Ok((sig_path, id.to_string()))
}

/// `<file>.sig`.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Checks `bytes` (the file at `file`) against `<file>.sig` and `trusted`;
/// the reason when it does not pass: unsigned, unknown key, bad signature.
pub fn verify(file: &Path, bytes: &[u8], trusted: &[TrustedKey]) -> Result<Signer, String> {
    let sig_file = sig_path(file);
    let text = match std::fs::read_to_string(&sig_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("unsigned: there is no {} (trusted_keys is set)", sig_file.display()));
        }
        Err(e) => return Err(format!("unsigned: cannot read {}: {e}", sig_file.display())),
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [SIGNATURE, id, signature] = parts.as_slice() else {
        return Err(format!("bad signature: {} is not a signature made by `runner plugin sign`", sig_file.display()));
    };
    let Some(key) = trusted.iter().find(|k| k.id == *id) else {
        return Err(format!("signed by key {id}, which is not among [plugins] trusted_keys"));
    };
    let signature = unhex::<64>(signature).map(|b| Signature::from_bytes(&b));
    match signature {
        Some(s) if key.key.verify(&Sha256::digest(bytes), &s).is_ok() => {
            Ok(Signer { key_id: key.id.clone(), name: key.name.clone() })
        }
        _ => Err(format!(
            "bad signature: {} does not match this file for key {id} ({}); was the file changed after signing?",
            sig_file.display(),
            key.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_every_way_to_fail() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public, key) = keygen(dir.path(), "ci").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        for loose in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(loose)).unwrap();
            let e = sign(&dir.path().join("any.wasm"), &secret).unwrap_err().to_string();
            assert!(e.contains(&format!("(mode {loose:04o})")) && e.contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let parsed = TrustedKey::parse(std::fs::read_to_string(&public).unwrap().trim()).unwrap();
        assert_eq!(parsed, key);
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"component bytes").unwrap();
        let trusted = [parsed];
        assert!(verify(&file, b"component bytes", &trusted).unwrap_err().starts_with("unsigned"));
        sign(&file, &secret).unwrap();
        assert_eq!(verify(&file, b"component bytes", &trusted).unwrap().key_id, key.id);
        assert!(verify(&file, b"component bytez", &trusted).unwrap_err().starts_with("bad signature"));
        let (_, _, other) = keygen(dir.path(), "other").unwrap();
        assert!(verify(&file, b"component bytes", &[other]).unwrap_err().contains("not among [plugins] trusted_keys"));
        let edited = key.line().replace(&key.id, "0000000000000000");
        assert!(TrustedKey::parse(&edited).unwrap_err().contains("does not match"));
    }
}
