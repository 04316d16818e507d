//! The keys of one phone: at most one P-256 key per purpose, any number of Ed25519 keys,
//! and non-secret profile labels stored in the same file.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::path::Path;

use uuid::Uuid;

use crate::error::KeystoreError;
use crate::key::{KeyAlgorithm, KeyPurpose, SigningKey};
use crate::presence::{PresenceRequest, UserPresence};
use crate::seal::Passphrase;

/// The key vault of one phone.
#[derive(Default)]
pub struct Vault {
    p256: BTreeMap<KeyPurpose, SigningKey>,
    ed25519: Vec<SigningKey>,
    meta: BTreeMap<String, String>,
}

impl Vault {
    /// An empty vault.
    pub fn new() -> Vault {
        Vault::default()
    }

    /// Generates a P-256 key of `purpose`; fails if the vault already holds one.
    pub fn generate_key(&mut self, purpose: KeyPurpose) -> Result<&SigningKey, KeystoreError> {
        if self.p256.contains_key(&purpose) {
            return Err(KeystoreError::KeyExists(purpose));
        }
        self.insert_p256(SigningKey::generate(KeyAlgorithm::EcdsaP256, purpose))
    }

    /// Adds a key: a P-256 key takes its purpose's slot, an Ed25519 key joins the secondary keys.
    pub fn insert(&mut self, key: SigningKey) -> Result<(), KeystoreError> {
        match key.algorithm() {
            KeyAlgorithm::EcdsaP256 => self.insert_p256(key).map(|_| ()),
            KeyAlgorithm::Ed25519 => {
                self.check_new_id(key.key_id())?;
                self.ed25519.push(key);
                Ok(())
            }
        }
    }

    fn check_new_id(&self, id: Uuid) -> Result<(), KeystoreError> {
        if self.keys().any(|k| k.key_id() == id) {
            return Err(KeystoreError::DuplicateKeyId(id));
        }
        Ok(())
    }

    fn insert_p256(&mut self, key: SigningKey) -> Result<&SigningKey, KeystoreError> {
        self.check_new_id(key.key_id())?;
        match self.p256.entry(key.purpose()) {
            Entry::Occupied(_) => Err(KeystoreError::KeyExists(key.purpose())),
            Entry::Vacant(slot) => Ok(slot.insert(key)),
        }
    }

    /// The P-256 key of `purpose`, if any.
    pub fn key(&self, purpose: KeyPurpose) -> Option<&SigningKey> {
        self.p256.get(&purpose)
    }

    /// The key with this id, of any algorithm.
    pub fn key_by_id(&self, key_id: Uuid) -> Option<&SigningKey> {
        self.keys().find(|k| k.key_id() == key_id)
    }

    /// All keys: P-256 keys (unrestricted, then restricted), then Ed25519 keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        self.p256.values().chain(self.ed25519.iter())
    }

    /// Takes the P-256 key of `purpose` out of the vault.
    pub fn remove(&mut self, purpose: KeyPurpose) -> Option<SigningKey> {
        self.p256.remove(&purpose)
    }

    /// Takes the key with this id (of any algorithm) out of the vault.
    pub fn remove_by_id(&mut self, key_id: Uuid) -> Option<SigningKey> {
        let purpose = self
            .p256
            .iter()
            .find(|(_, k)| k.key_id() == key_id)
            .map(|(p, _)| *p);
        if let Some(purpose) = purpose {
            return self.p256.remove(&purpose);
        }
        let pos = self.ed25519.iter().position(|k| k.key_id() == key_id)?;
        Some(self.ed25519.remove(pos))
    }

    /// Signs `message` with the P-256 key of `purpose` (DER hex); a restricted key first asks
    /// `presence` with `reason`, and signs only if the user approves.
    pub fn sign(
        &self,
        purpose: KeyPurpose,
        message: &[u8],
        presence: &dyn UserPresence,
        reason: &str,
    ) -> Result<String, KeystoreError> {
        self.sign_as(purpose, message, presence, reason, None)
    }

    /// Like [`Vault::sign`], with the bank's id of the key (when known) shown in the prompt,
    /// so the prompt names the key as every other command does.
    pub fn sign_as(
        &self,
        purpose: KeyPurpose,
        message: &[u8],
        presence: &dyn UserPresence,
        reason: &str,
        bank_key_id: Option<&str>,
    ) -> Result<String, KeystoreError> {
        let key = self.key(purpose).ok_or(KeystoreError::NoKey(purpose))?;
        if purpose == KeyPurpose::Restricted {
            presence.confirm(&PresenceRequest {
                key: key.label(bank_key_id),
                reason: reason.to_owned(),
            })?;
        }
        Ok(key.sign_hex(message))
    }

    /// Sets a non-secret label (person id, device id, number, bound state, ...).
    pub fn set_meta(&mut self, key: &str, value: &str) {
        self.meta.insert(key.to_owned(), value.to_owned());
    }

    /// The label stored under `key`.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }

    /// Removes a label, returning its value.
    pub fn remove_meta(&mut self, key: &str) -> Option<String> {
        self.meta.remove(key)
    }

    /// All labels, sorted by key.
    pub fn meta_iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.meta.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Writes the vault to `path` atomically with mode 0600, sealed if a passphrase is given
    /// (a sealed file encrypts the keys and the meta labels alike).
    pub fn save(&self, path: &Path, sealing: Option<&Passphrase>) -> Result<(), KeystoreError> {
        crate::storage::save(self, path, sealing)
    }

    /// Reads a vault file; a sealed file needs the passphrase (an unsealed file loads with or
    /// without one). Never modifies the file; leftover temp files beside it are ignored.
    pub fn load(path: &Path, sealing: Option<&Passphrase>) -> Result<Vault, KeystoreError> {
        crate::storage::load(path, sealing)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("meta", &self.meta)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::presence::{AlwaysApprove, AlwaysDeny, PresenceError};

    #[test]
    fn a_second_key_of_the_same_purpose_is_refused() {
        let mut vault = Vault::new();
        vault.generate_key(KeyPurpose::Unrestricted).unwrap();
        let err = vault.generate_key(KeyPurpose::Unrestricted).unwrap_err();
        assert!(matches!(
            err,
            KeystoreError::KeyExists(KeyPurpose::Unrestricted)
        ));
        let other = SigningKey::generate(KeyAlgorithm::EcdsaP256, KeyPurpose::Unrestricted);
        assert!(matches!(
            vault.insert(other),
            Err(KeystoreError::KeyExists(_))
        ));
    }

    #[test]
    fn ed25519_keys_are_kept_beside_the_p256_keys() {
        let mut vault = Vault::new();
        vault.generate_key(KeyPurpose::Restricted).unwrap();
        for _ in 0..2 {
            let key = SigningKey::generate(KeyAlgorithm::Ed25519, KeyPurpose::Unrestricted);
            vault.insert(key).unwrap();
        }
        assert_eq!(vault.keys().count(), 3);
        assert!(vault.key(KeyPurpose::Unrestricted).is_none());
        let id = vault.keys().last().unwrap().key_id();
        assert!(vault.remove_by_id(id).is_some());
        assert_eq!(vault.keys().count(), 2);
    }

    #[test]
    fn the_same_key_id_cannot_be_inserted_twice() {
        let seed = crate::Seed::from_u64(3);
        let mut vault = Vault::new();
        vault
            .insert(SigningKey::derive(&seed, 0, KeyPurpose::Unrestricted))
            .unwrap();
        vault.remove(KeyPurpose::Unrestricted);
        vault
            .insert(SigningKey::derive(&seed, 0, KeyPurpose::Unrestricted))
            .unwrap();
        let twin = SigningKey::derive(&seed, 0, KeyPurpose::Unrestricted);
        assert!(vault.insert(twin).is_err());
    }

    #[test]
    fn signing_without_a_key_names_the_missing_purpose() {
        let vault = Vault::new();
        let err = vault
            .sign(KeyPurpose::Restricted, b"m", &AlwaysApprove, "test")
            .unwrap_err();
        assert!(matches!(err, KeystoreError::NoKey(KeyPurpose::Restricted)));
    }

    #[test]
    fn unrestricted_keys_sign_without_asking_the_user() {
        let mut vault = Vault::new();
        vault.generate_key(KeyPurpose::Unrestricted).unwrap();
        assert!(
            vault
                .sign(KeyPurpose::Unrestricted, b"m", &AlwaysDeny, "test")
                .is_ok()
        );
    }

    #[test]
    fn restricted_keys_sign_only_when_the_user_approves() {
        let mut vault = Vault::new();
        vault.generate_key(KeyPurpose::Restricted).unwrap();
        let err = vault
            .sign(KeyPurpose::Restricted, b"m", &AlwaysDeny, "test")
            .unwrap_err();
        assert!(matches!(
            err,
            KeystoreError::Presence(PresenceError::Denied)
        ));
        assert!(
            vault
                .sign(KeyPurpose::Restricted, b"m", &AlwaysApprove, "test")
                .is_ok()
        );
    }

    #[test]
    fn meta_labels_are_set_read_and_listed_in_order() {
        let mut vault = Vault::new();
        vault.set_meta("person_id", "p1");
        vault.set_meta("device_id", "d1");
        assert_eq!(vault.meta("person_id"), Some("p1"));
        let all: Vec<_> = vault.meta_iter().collect();
        assert_eq!(all, vec![("device_id", "d1"), ("person_id", "p1")]);
        assert_eq!(vault.remove_meta("device_id").as_deref(), Some("d1"));
    }
}
