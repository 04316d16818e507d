//! The crate's error types: one enum for the vault boundary, one for signature checks.

use std::path::PathBuf;

use crate::key::KeyPurpose;
use crate::presence::PresenceError;

/// Everything that can go wrong in the vault; messages never contain key material,
/// passphrases or decrypted plaintext, and file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The vault already holds a P-256 key of this purpose; remove it first.
    #[error("the vault already holds a {0} P-256 key; remove it before adding another")]
    KeyExists(KeyPurpose),
    /// A key with this id is already in the vault.
    #[error("the vault already holds a key with id {0}")]
    DuplicateKeyId(uuid::Uuid),
    /// The vault holds no P-256 key of this purpose.
    #[error("the vault holds no {0} P-256 key; generate one first")]
    NoKey(KeyPurpose),
    /// The user-presence check for a restricted key did not approve the operation.
    #[error("user presence check failed: {0}")]
    Presence(#[from] PresenceError),
    /// A seed, secret or name given by the caller could not be parsed (reason says why).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was being parsed, e.g. "seed" or "key purpose".
        what: &'static str,
        /// Why it was rejected; never contains secret material.
        reason: String,
    },
    /// Reading, writing or syncing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read" or "rename temp file over".
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid vphone key file (truncated, hand-edited or corrupted).
    #[error("{} is not a valid vphone key file: {reason}", path.display())]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong; secrets are redacted.
        reason: String,
    },
    /// The file declares a format version this build does not understand.
    #[error("{} has format_version {found}, but this build reads only version 1", path.display())]
    UnsupportedFormat {
        /// The file concerned.
        path: PathBuf,
        /// The version found in the file.
        found: String,
    },
    /// The file is sealed and no passphrase was given.
    #[error("file {} is sealed; set VPHONE_PASSPHRASE or VPHONE_PASSPHRASE_FILE", path.display())]
    Sealed {
        /// The file concerned.
        path: PathBuf,
    },
    /// The sealed file could not be opened: wrong passphrase, or the file was tampered with.
    #[error("cannot unseal {}: wrong passphrase, or the file was modified", path.display())]
    WrongPassphrase {
        /// The file concerned.
        path: PathBuf,
    },
    /// The passphrase could not be obtained from the environment.
    #[error("passphrase: {0}")]
    Passphrase(String),
    /// Key derivation or encryption for sealing failed (e.g. unusable KDF parameters).
    #[error("sealing failed: {0}")]
    Seal(String),
}

/// Why a signature check failed; messages describe the input's shape, never echo it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The public key is not lowercase hex of a 65-byte uncompressed point on P-256.
    #[error("bad public key: {0}")]
    BadPublicKey(String),
    /// The signature is not lowercase hex of a strict ASN.1 DER ECDSA signature.
    #[error("bad signature encoding: {0}")]
    BadSignatureEncoding(String),
    /// The signature is well-formed but does not match this key and message.
    #[error("signature does not match the public key and message")]
    Mismatch,
}
