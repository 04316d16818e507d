//! Sealing a vault file with a passphrase: Argon2id key derivation + XChaCha20-Poly1305.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::KeystoreError;

/// Environment variable holding the passphrase itself.
pub const PASSPHRASE_ENV: &str = "VPHONE_PASSPHRASE";
/// Environment variable naming a file whose contents are the passphrase.
pub const PASSPHRASE_FILE_ENV: &str = "VPHONE_PASSPHRASE_FILE";

const KDF_NAME: &str = "argon2id";
const CIPHER_NAME: &str = "xchacha20poly1305";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// Upper bounds on KDF parameters read from a file, so a hand-edited file cannot exhaust memory.
const MAX_M_COST_KIB: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Argon2id cost parameters used when sealing (loading uses the ones stored in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
}

impl SealParams {
    /// OWASP's interactive recommendation: 19 MiB, 2 passes, 1 lane.
    pub const INTERACTIVE: SealParams = SealParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// Tiny parameters that keep tests fast; never use them for real files.
    pub fn for_tests() -> SealParams {
        SealParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

impl Default for SealParams {
    fn default() -> Self {
        SealParams::INTERACTIVE
    }
}

/// A passphrase for sealing vault files; zeroized on drop, `Debug` prints `<redacted>`.
pub struct Passphrase {
    secret: Zeroizing<String>,
    params: SealParams,
}

impl Passphrase {
    /// Wraps a passphrase, sealing with [`SealParams::INTERACTIVE`].
    pub fn new(passphrase: String) -> Passphrase {
        Passphrase {
            secret: Zeroizing::new(passphrase),
            params: SealParams::default(),
        }
    }

    /// The same passphrase, sealing with other Argon2id costs (e.g. [`SealParams::for_tests`]).
    pub fn with_cost(mut self, params: SealParams) -> Passphrase {
        self.params = params;
        self
    }

    /// The Argon2id costs used when sealing.
    pub fn params(&self) -> SealParams {
        self.params
    }

    /// Reads `VPHONE_PASSPHRASE`, or the file named by `VPHONE_PASSPHRASE_FILE` (one trailing
    /// newline trimmed); `Ok(None)` if neither is set. Never from the command line.
    pub fn from_env() -> Result<Option<Passphrase>, KeystoreError> {
        Passphrase::from_vars(|name| std::env::var_os(name))
    }

    /// [`Passphrase::from_env`] over an arbitrary variable lookup, so it can be tested.
    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Option<Passphrase>, KeystoreError> {
        let direct = var(PASSPHRASE_ENV);
        let file = var(PASSPHRASE_FILE_ENV);
        let secret = match (direct, file) {
            (Some(_), Some(_)) => {
                return Err(KeystoreError::Passphrase(format!(
                    "both {PASSPHRASE_ENV} and {PASSPHRASE_FILE_ENV} are set; set only one"
                )));
            }
            (None, None) => return Ok(None),
            (Some(value), None) => {
                // into_string moves the buffer, so no unzeroized copy is left behind.
                Zeroizing::new(value.into_string().map_err(|_| {
                    KeystoreError::Passphrase(format!("{PASSPHRASE_ENV} is not valid UTF-8"))
                })?)
            }
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let bytes =
                    Zeroizing::new(std::fs::read(&path).map_err(|source| KeystoreError::Io {
                        action: "read passphrase file",
                        path: path.clone(),
                        source,
                    })?);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    KeystoreError::Passphrase(format!(
                        "passphrase file {} is not valid UTF-8",
                        path.display()
                    ))
                })?;
                let text = text.strip_suffix('\n').unwrap_or(text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Zeroizing::new(text.to_owned())
            }
        };
        if secret.is_empty() {
            return Err(KeystoreError::Passphrase(
                "the passphrase is empty".to_owned(),
            ));
        }
        Ok(Some(Passphrase {
            secret,
            params: SealParams::default(),
        }))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The `[kdf]` table of a sealed file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KdfSection {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

/// The `[cipher]` table of a sealed file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CipherSection {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

/// A sealed vault file: everything (keys and meta) is inside the ciphertext.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SealedFile {
    pub(crate) format_version: u32,
    pub(crate) sealed: bool,
    kdf: KdfSection,
    cipher: CipherSection,
}

/// Binds the header to the ciphertext, so edited KDF parameters fail authentication.
fn associated_data(format_version: u32, kdf: &KdfSection) -> Vec<u8> {
    format!(
        "vphone-keystore sealed file|v{format_version}|{}|m={}|t={}|p={}|salt={}",
        kdf.algorithm, kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, kdf.salt
    )
    .into_bytes()
}

fn derive_key(
    passphrase: &Passphrase,
    params: SealParams,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| format!("unusable Argon2id parameters: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.secret.as_bytes(), salt, key.as_mut())
        .map_err(|e| format!("Argon2id failed: {e}"))?;
    Ok(key)
}

/// Encrypts `plaintext` under a key derived from `passphrase` with a fresh salt and nonce.
pub(crate) fn seal(plaintext: &[u8], passphrase: &Passphrase) -> Result<SealedFile, KeystoreError> {
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let params = passphrase.params;
    let key = derive_key(passphrase, params, &salt).map_err(KeystoreError::Seal)?;
    let kdf = KdfSection {
        algorithm: KDF_NAME.to_owned(),
        m_cost_kib: params.m_cost_kib,
        t_cost: params.t_cost,
        p_cost: params.p_cost,
        salt: B64.encode(salt),
    };
    let aad = associated_data(1, &kdf);
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| KeystoreError::Seal("encryption failed".to_owned()))?;
    Ok(SealedFile {
        format_version: 1,
        sealed: true,
        kdf,
        cipher: CipherSection {
            algorithm: CIPHER_NAME.to_owned(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        },
    })
}

/// Decrypts a sealed file read from `path`; any header problem is `Malformed`, any
/// authentication failure `WrongPassphrase`.
pub(crate) fn unseal(
    file: &SealedFile,
    passphrase: &Passphrase,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let malformed = |reason: String| KeystoreError::Malformed {
        path: path.to_owned(),
        reason,
    };
    if file.kdf.algorithm != KDF_NAME {
        return Err(malformed(format!(
            "unsupported kdf algorithm {:?}",
            file.kdf.algorithm
        )));
    }
    if file.cipher.algorithm != CIPHER_NAME {
        return Err(malformed(format!(
            "unsupported cipher algorithm {:?}",
            file.cipher.algorithm
        )));
    }
    let params = SealParams {
        m_cost_kib: file.kdf.m_cost_kib,
        t_cost: file.kdf.t_cost,
        p_cost: file.kdf.p_cost,
    };
    if params.m_cost_kib > MAX_M_COST_KIB
        || params.t_cost > MAX_T_COST
        || params.p_cost > MAX_P_COST
    {
        return Err(malformed(format!(
            "kdf parameters exceed the limits (m <= {MAX_M_COST_KIB} KiB, t <= {MAX_T_COST}, p <= {MAX_P_COST})"
        )));
    }
    let salt = B64
        .decode(&file.kdf.salt)
        .map_err(|_| malformed("kdf.salt is not base64".to_owned()))?;
    if salt.len() < 8 {
        return Err(malformed("kdf.salt is shorter than 8 bytes".to_owned()));
    }
    let nonce = B64
        .decode(&file.cipher.nonce)
        .map_err(|_| malformed("cipher.nonce is not base64".to_owned()))?;
    if nonce.len() != NONCE_LEN {
        return Err(malformed(format!(
            "cipher.nonce must be {NONCE_LEN} bytes, got {}",
            nonce.len()
        )));
    }
    let ciphertext = B64
        .decode(&file.cipher.ciphertext)
        .map_err(|_| malformed("cipher.ciphertext is not base64".to_owned()))?;
    let key = derive_key(passphrase, params, &salt).map_err(malformed)?;
    let aad = associated_data(file.format_version, &file.kdf);
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| KeystoreError::WrongPassphrase {
            path: path.to_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, OsString)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned()).with_cost(SealParams::for_tests())
    }

    #[test]
    fn seal_then_unseal_returns_the_plaintext() {
        let sealed = seal(b"hello", &pass("pw")).unwrap();
        let plain = unseal(&sealed, &pass("pw"), Path::new("f")).unwrap();
        assert_eq!(plain.as_slice(), b"hello");
    }

    #[test]
    fn unseal_with_another_passphrase_is_wrong_passphrase() {
        let sealed = seal(b"hello", &pass("pw")).unwrap();
        let err = unseal(&sealed, &pass("other"), Path::new("f")).unwrap_err();
        assert!(matches!(err, KeystoreError::WrongPassphrase { .. }));
    }

    #[test]
    fn edited_kdf_parameters_fail_authentication() {
        let mut sealed = seal(b"hello", &pass("pw")).unwrap();
        sealed.kdf.t_cost = 2;
        assert!(unseal(&sealed, &pass("pw"), Path::new("f")).is_err());
    }

    #[test]
    fn passphrase_comes_from_the_variable_or_the_file_without_newline() {
        let p = Passphrase::from_vars(vars(&[(PASSPHRASE_ENV, "s3cret".into())]))
            .unwrap()
            .unwrap();
        assert_eq!(p.secret.as_str(), "s3cret");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let p = Passphrase::from_vars(vars(&[(PASSPHRASE_FILE_ENV, file.into())]))
            .unwrap()
            .unwrap();
        assert_eq!(p.secret.as_str(), "from-file");

        assert!(Passphrase::from_vars(vars(&[])).unwrap().is_none());
    }

    #[test]
    fn passphrase_from_env_rejects_both_set_empty_and_missing_file() {
        let both = vars(&[
            (PASSPHRASE_ENV, "a".into()),
            (PASSPHRASE_FILE_ENV, "b".into()),
        ]);
        assert!(Passphrase::from_vars(both).is_err());
        assert!(Passphrase::from_vars(vars(&[(PASSPHRASE_ENV, "".into())])).is_err());
        let missing = vars(&[(PASSPHRASE_FILE_ENV, "/nonexistent/vphone-pw".into())]);
        let err = Passphrase::from_vars(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vphone-pw"), "{err}");
    }

    #[test]
    fn the_default_interactive_cost_is_usable() {
        let p = Passphrase::new("pw".to_owned());
        assert_eq!(p.params(), SealParams::INTERACTIVE);
        let sealed = seal(b"x", &p).unwrap();
        assert_eq!(
            unseal(&sealed, &p, Path::new("f")).unwrap().as_slice(),
            b"x"
        );
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        assert_eq!(format!("{:?}", pass("hunter2")), "Passphrase(<redacted>)");
    }
}
