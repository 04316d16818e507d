//! The vault file: one TOML file per phone, written atomically with owner-only permissions.
//!
//! Unsealed files hold the private keys as hex beside their metadata. Sealed files hold only
//! the format version, the KDF and cipher parameters and the ciphertext: the whole inner
//! (unsealed) TOML, including the meta labels, is encrypted, so a sealed file reveals nothing
//! about the phone it belongs to.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::error::KeystoreError;
use crate::key::{KeyAlgorithm, KeyPurpose, SigningKey};
use crate::seal::{self, Passphrase, SealedFile};
use crate::vault::Vault;

/// The only file format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// One key in an unsealed file.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    key_id: String,
    algorithm: KeyAlgorithm,
    purpose: KeyPurpose,
    created_at: u64,
    /// Informational, and checked against the secret on load to catch hand edits.
    #[serde(default)]
    public_key: String,
    /// The private key as lowercase hex (P-256 scalar or Ed25519 seed).
    secret: String,
}

impl Drop for KeyRecord {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// An unsealed file, and the plaintext inside a sealed one.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainFile {
    format_version: u32,
    #[serde(default)]
    sealed: bool,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    keys: Vec<KeyRecord>,
}

/// The two fields read first, to pick the right parser.
#[derive(serde::Deserialize)]
struct Header {
    format_version: Option<toml::Value>,
    #[serde(default)]
    sealed: Option<toml::Value>,
}

fn to_toml<T: serde::Serialize>(value: &T) -> Result<Zeroizing<String>, KeystoreError> {
    toml::to_string(value)
        .map(Zeroizing::new)
        .map_err(|e| KeystoreError::Seal(format!("cannot encode the vault as TOML: {e}")))
}

pub(crate) fn save(
    vault: &Vault,
    path: &Path,
    sealing: Option<&Passphrase>,
) -> Result<(), KeystoreError> {
    let plain = PlainFile {
        format_version: FORMAT_VERSION,
        sealed: false,
        meta: vault
            .meta_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        keys: vault
            .keys()
            .map(|k| KeyRecord {
                key_id: k.key_id().to_string(),
                algorithm: k.algorithm(),
                purpose: k.purpose(),
                created_at: k.created_at(),
                public_key: k.public_key_hex(),
                secret: hex::encode(k.secret_bytes().as_slice()),
            })
            .collect(),
    };
    let inner = to_toml(&plain)?;
    drop(plain);
    let text = match sealing {
        None => inner,
        Some(passphrase) => to_toml(&seal::seal(inner.as_bytes(), passphrase)?)?,
    };
    write_atomic(path, text.as_bytes())
}

/// Replaces hex runs that could be key material, so parser messages are safe to show.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 16 {
            out.push_str("<redacted>");
        } else {
            out.push_str(run);
        }
        run.zeroize();
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out.trim().to_owned()
}

fn parse<'de, T: serde::Deserialize<'de>>(
    text: &'de str,
    path: &Path,
    what: &str,
) -> Result<T, KeystoreError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
        KeystoreError::Malformed {
            path: path.to_owned(),
            reason: format!("{what}{at}: {}", redact(e.message())),
        }
    })
}

pub(crate) fn load(path: &Path, sealing: Option<&Passphrase>) -> Result<Vault, KeystoreError> {
    let malformed = |reason: String| KeystoreError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeystoreError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8 text".to_owned()))?;
    let header: Header = parse(text, path, "not valid TOML")?;
    check_version(header.format_version.as_ref(), path)?;
    let sealed = match header.sealed {
        None => false,
        Some(toml::Value::Boolean(b)) => b,
        Some(_) => return Err(malformed("`sealed` must be true or false".to_owned())),
    };
    if !sealed {
        let plain: PlainFile = parse(text, path, "bad vault file")?;
        return vault_from(plain, path);
    }
    let Some(passphrase) = sealing else {
        return Err(KeystoreError::Sealed {
            path: path.to_owned(),
        });
    };
    let envelope: SealedFile = parse(text, path, "bad sealed file")?;
    let inner = seal::unseal(&envelope, passphrase, path)?;
    let inner_text = std::str::from_utf8(&inner)
        .map_err(|_| malformed("sealed content is not UTF-8".to_owned()))?;
    let plain: PlainFile = parse(inner_text, path, "bad sealed content")?;
    if plain.sealed || plain.format_version != FORMAT_VERSION {
        return Err(malformed(
            "sealed content has an unexpected header".to_owned(),
        ));
    }
    vault_from(plain, path)
}

fn check_version(found: Option<&toml::Value>, path: &Path) -> Result<(), KeystoreError> {
    match found {
        None => Err(KeystoreError::Malformed {
            path: path.to_owned(),
            reason: "missing format_version".to_owned(),
        }),
        Some(toml::Value::Integer(v)) if *v == i64::from(FORMAT_VERSION) => Ok(()),
        Some(other) => Err(KeystoreError::UnsupportedFormat {
            path: path.to_owned(),
            found: redact(&other.to_string()),
        }),
    }
}

fn vault_from(plain: PlainFile, path: &Path) -> Result<Vault, KeystoreError> {
    let malformed = |reason: String| KeystoreError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut vault = Vault::new();
    for (k, v) in &plain.meta {
        vault.set_meta(k, v);
    }
    for (i, record) in plain.keys.iter().enumerate() {
        let n = i + 1;
        let key_id = Uuid::parse_str(&record.key_id)
            .map_err(|_| malformed(format!("key {n}: key_id is not a UUID")))?;
        let s = &record.secret;
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed(format!(
                "key {n}: secret must be 64 lowercase hex characters"
            )));
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s, raw.as_mut())
            .map_err(|_| malformed(format!("key {n}: secret is not hex")))?;
        let key = SigningKey::from_secret_bytes(
            record.algorithm,
            raw.as_ref(),
            record.purpose,
            key_id,
            record.created_at,
        )
        .map_err(|_| {
            malformed(format!(
                "key {n}: secret is not a valid {} private key",
                record.algorithm
            ))
        })?;
        if !record.public_key.is_empty() && record.public_key != key.public_key_hex() {
            return Err(malformed(format!(
                "key {n}: public_key does not match the secret"
            )));
        }
        vault
            .insert(key)
            .map_err(|e| malformed(format!("key {n}: {e}")))?;
    }
    Ok(vault)
}

/// Writes `bytes` to a fresh 0600 temp file beside `path`, fsyncs it, renames it over `path`
/// and fsyncs the directory, so `path` always holds either the old or the new content.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| KeystoreError::Io {
            action,
            path,
            source,
        }
    };
    let file_name = path.file_name().ok_or_else(|| KeystoreError::Io {
        action: "write",
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tmp, mut file) = create_temp(&dir, &file_name.to_string_lossy())?;
    let result = (|| {
        file.write_all(bytes).map_err(io("write temp file", &tmp))?;
        file.sync_all().map_err(io("fsync temp file", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io("rename temp file over", path))
    })();
    if let Err(e) = result {
        // The target is untouched; do not leave our half-written temp file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", &dir))
}

/// Creates `.<name>.tmp-<pid>-<random>` with mode 0600, never reusing an existing file.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File), KeystoreError> {
    let mut last_err = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{:016x}",
            std::process::id(),
            OsRng.next_u64()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some((tmp, e)),
            Err(source) => {
                return Err(KeystoreError::Io {
                    action: "create temp file",
                    path: tmp,
                    source,
                });
            }
        }
    }
    let (path, source) = last_err.unwrap_or_else(|| {
        (
            dir.to_owned(),
            std::io::Error::other("no temp file name available"),
        )
    });
    Err(KeystoreError::Io {
        action: "create temp file",
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_long_hex_runs_only() {
        let s = "invalid value `c9afa9d845ba75166b5c215767b1d693` at key 12";
        assert_eq!(redact(s), "invalid value `<redacted>` at key 12");
    }
}
