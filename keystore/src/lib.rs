//! vphone's key vault: P-256 (and Ed25519) keys, SHA256withECDSA signing exactly as the
//! Solaris device-management API expects, an emulated biometric prompt for restricted keys,
//! and sealed, atomically written key files. No network code lives here.
//!
//! ```
//! use vphone_keystore::{AlwaysApprove, KeyPurpose, Vault, verify_hex};
//!
//! let mut vault = Vault::new();
//! let public_key = vault.generate_key(KeyPurpose::Unrestricted)?.public_key_hex();
//! let signature = vault.sign(KeyPurpose::Unrestricted, b"123456", &AlwaysApprove, "binding")?;
//! assert!(verify_hex(&public_key, b"123456", &signature).is_ok());
//! # Ok::<(), vphone_keystore::KeystoreError>(())
//! ```
//!
//! Secrets stay secret: [`SigningKey`], [`Seed`] and [`Passphrase`] zeroize on drop and print
//! no secret in `Debug`; raw key import and export live only in [`hazmat`].

mod backend;
mod derive;
mod encode;
mod error;
mod key;
mod presence;
mod seal;
mod storage;
mod vault;
mod verify;

pub use backend::Backend;
pub use derive::Seed;
pub use encode::{Jwk, KeyLabel, PublicKeyFormat, SignatureFormat, encode_signature};
pub use error::{KeystoreError, VerifyError};
pub use key::{KeyAlgorithm, KeyPurpose, SigningKey, hazmat};
pub use presence::{
    AlwaysApprove, AlwaysDeny, ApproveAfter, PresenceError, PresenceRequest, TerminalPrompt,
    UserPresence,
};
pub use seal::{PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, Passphrase, SealParams};
pub use storage::FORMAT_VERSION;
pub use vault::Vault;
pub use verify::{
    der_signature_hex_to_raw, parse_public_key_hex, parse_signature_hex, public_key_hex_is_valid,
    raw_signature_to_der_hex, verify_hex,
};
