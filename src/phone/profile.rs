//! Phone profiles: each phone is one vault file `phones/<name>.toml` under a home directory
//! (`--home`, `$VPHONE_HOME`, or `~/.vphone`). Its keys live in the vault; its person id,
//! number, device id and bound state live in the vault's meta labels, so one atomic save
//! keeps keys and state consistent. The file is sealed when a passphrase is configured.

use crate::api::{DeviceId, KeyId, KeyPurpose, PersonId, PhoneNumber};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vphone_keystore::{KeystoreError, Passphrase, Vault};

/// The environment variable naming the home directory.
pub const HOME_ENV: &str = "VPHONE_HOME";

/// Why a profile could not be found, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The name cannot be a file name.
    #[error("{0:?} is not a phone name: use 1-64 letters, digits, '-' or '_'")]
    BadName(String),
    /// No phone of this name exists.
    #[error("no phone named {name:?} in {}", home.display())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The home directory searched.
        home: PathBuf,
    },
    /// A phone of this name already exists.
    #[error("a phone named {name:?} already exists at {}; pick another name or delete the file", path.display())]
    Exists {
        /// The name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// No home directory could be determined.
    #[error("cannot find a home directory: set {HOME_ENV} or pass --home DIR")]
    NoHome,
    /// The home directory cannot be created or listed.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The vault file could not be read or written.
    #[error(transparent)]
    Vault(#[from] KeystoreError),
    /// A stored label does not parse.
    #[error("phone {name:?} has a corrupt {field} ({reason}); fix or delete its file")]
    Corrupt {
        /// The phone.
        name: String,
        /// The label.
        field: &'static str,
        /// Why it does not parse.
        reason: String,
    },
}

/// A validated phone name, usable as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneName(String);

impl PhoneName {
    /// Accepts 1-64 letters, digits, `-` or `_`.
    pub fn parse(name: &str) -> Result<PhoneName, ProfileError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(PhoneName(name.to_owned()))
        } else {
            Err(ProfileError::BadName(name.chars().take(80).collect()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PhoneName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PhoneName {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, ProfileError> {
        PhoneName::parse(s)
    }
}

/// The home directory holding phone profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `flag` if given, else `$VPHONE_HOME`, else `$HOME/.vphone`.
    pub fn resolve(flag: Option<&Path>) -> Result<Home, ProfileError> {
        if let Some(p) = flag {
            return Ok(Home::new(p));
        }
        if let Some(p) = std::env::var_os(HOME_ENV).filter(|p| !p.is_empty()) {
            return Ok(Home::new(p));
        }
        let home = std::env::var_os("HOME")
            .filter(|p| !p.is_empty())
            .ok_or(ProfileError::NoHome)?;
        Ok(Home::new(Path::new(&home).join(".vphone")))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of phone `name`.
    pub fn path_of(&self, name: &PhoneName) -> PathBuf {
        self.root.join("phones").join(format!("{name}.toml"))
    }

    /// Whether phone `name` exists.
    pub fn exists(&self, name: &PhoneName) -> bool {
        self.path_of(name).is_file()
    }

    /// The names of all phones, sorted.
    pub fn list(&self) -> Result<Vec<PhoneName>, ProfileError> {
        let dir = self.root.join("phones");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ProfileError::Io { path: dir, source }),
        };
        let mut names: Vec<PhoneName> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file = e.file_name();
                let stem = file.to_str()?.strip_suffix(".toml")?;
                PhoneName::parse(stem).ok()
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Makes sure `phones/` exists (owner-only where the platform allows).
    pub fn ensure(&self) -> Result<(), ProfileError> {
        let dir = self.root.join("phones");
        std::fs::create_dir_all(&dir).map_err(|source| ProfileError::Io {
            path: dir.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }
}

/// Where a phone is saved: its vault file and the passphrase sealing it.
#[derive(Clone)]
pub struct ProfileStore {
    /// The vault file.
    pub path: PathBuf,
    /// Seals the file when set.
    pub passphrase: Option<Arc<Passphrase>>,
}

impl std::fmt::Debug for ProfileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileStore")
            .field("path", &self.path)
            .field("sealed", &self.passphrase.is_some())
            .finish()
    }
}

impl ProfileStore {
    /// Where a new phone `name` under `home` will be saved; refuses a name already taken.
    pub fn new_phone(
        home: &Home,
        name: &PhoneName,
        passphrase: Option<Arc<Passphrase>>,
    ) -> Result<ProfileStore, ProfileError> {
        let path = home.path_of(name);
        if path.exists() {
            return Err(ProfileError::Exists {
                name: name.to_string(),
                path,
            });
        }
        home.ensure()?;
        Ok(ProfileStore { path, passphrase })
    }

    /// Saves `vault` atomically.
    pub fn save(&self, vault: &Vault) -> Result<(), ProfileError> {
        vault.save(&self.path, self.passphrase.as_deref())?;
        Ok(())
    }

    /// Loads the vault.
    pub fn load(&self) -> Result<Vault, ProfileError> {
        Ok(Vault::load(&self.path, self.passphrase.as_deref())?)
    }
}

/// A phone's non-secret state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// The phone's name.
    pub name: PhoneName,
    /// The person this phone belongs to.
    pub person_id: Option<PersonId>,
    /// The phone's mobile number.
    pub number: Option<PhoneNumber>,
    /// Whether the bank confirmed the number by SMS (or it was adopted as verified).
    pub number_verified: bool,
    /// The bank's id of this device, once binding started.
    pub device_id: Option<DeviceId>,
    /// Whether binding completed (and the device was not deleted since).
    pub bound: bool,
    /// The API base URL the phone was set up against.
    pub api_base: Option<String>,
    /// The bank's id of the unrestricted key, when known.
    pub unrestricted_key_id: Option<KeyId>,
    /// The bank's id of the restricted key, when known.
    pub restricted_key_id: Option<KeyId>,
    /// A key sent to the bank whose answer was lost: the vault holds it, but whether the
    /// bank added it is not known yet (settled by the next `keys` or `add-key`).
    pub pending_key: Option<KeyPurpose>,
    /// The device's key ids just before the pending key was sent: the bank's id of the
    /// pending key, if it added it, is one not among them.
    pub pending_known_key_ids: Vec<KeyId>,
}

impl serde::Serialize for PhoneName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

const PERSON: &str = "person_id";
const NUMBER: &str = "number";
const NUMBER_VERIFIED: &str = "number_verified";
const DEVICE: &str = "device_id";
const BOUND: &str = "bound";
const API: &str = "api_base";
const KEY_UNRESTRICTED: &str = "key_id.unrestricted";
const KEY_RESTRICTED: &str = "key_id.restricted";
const KEY_PENDING: &str = "key_pending";
const KEY_PENDING_KNOWN: &str = "key_pending.known_key_ids";

impl Profile {
    /// A fresh profile with nothing set.
    pub fn new(name: PhoneName) -> Profile {
        Profile {
            name,
            person_id: None,
            number: None,
            number_verified: false,
            device_id: None,
            bound: false,
            api_base: None,
            unrestricted_key_id: None,
            restricted_key_id: None,
            pending_key: None,
            pending_known_key_ids: Vec::new(),
        }
    }

    /// Whether setup finished: the phone belongs to a person whose number is verified.
    pub fn is_registered(&self) -> bool {
        self.person_id.is_some() && self.number.is_some() && self.number_verified
    }

    /// The bank's key id for `purpose`.
    pub fn key_id(&self, purpose: KeyPurpose) -> Option<&KeyId> {
        match purpose {
            KeyPurpose::Unrestricted => self.unrestricted_key_id.as_ref(),
            KeyPurpose::Restricted => self.restricted_key_id.as_ref(),
        }
    }

    /// Records the bank's key id for `purpose`.
    pub fn set_key_id(&mut self, purpose: KeyPurpose, id: Option<KeyId>) {
        match purpose {
            KeyPurpose::Unrestricted => self.unrestricted_key_id = id,
            KeyPurpose::Restricted => self.restricted_key_id = id,
        }
    }

    /// Reads the labels of `vault`.
    pub fn read(name: PhoneName, vault: &Vault) -> Result<Profile, ProfileError> {
        fn field<T, E: std::fmt::Display>(
            name: &PhoneName,
            vault: &Vault,
            key: &'static str,
            parse: impl Fn(&str) -> Result<T, E>,
        ) -> Result<Option<T>, ProfileError> {
            vault
                .meta(key)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    parse(v).map_err(|e| ProfileError::Corrupt {
                        name: name.to_string(),
                        field: key,
                        reason: e.to_string(),
                    })
                })
                .transpose()
        }
        Ok(Profile {
            person_id: field(&name, vault, PERSON, PersonId::from_user)?,
            number: field(&name, vault, NUMBER, PhoneNumber::parse)?,
            // Profiles written before this label existed kept a number only once verified.
            number_verified: match vault.meta(NUMBER_VERIFIED) {
                Some(v) => v == "true",
                None => vault.meta(NUMBER).is_some_and(|n| !n.is_empty()),
            },
            device_id: field(&name, vault, DEVICE, DeviceId::from_user)?,
            bound: vault.meta(BOUND) == Some("true"),
            api_base: vault.meta(API).map(str::to_owned),
            unrestricted_key_id: field(&name, vault, KEY_UNRESTRICTED, KeyId::from_user)?,
            restricted_key_id: field(&name, vault, KEY_RESTRICTED, KeyId::from_user)?,
            pending_key: field(&name, vault, KEY_PENDING, str::parse::<KeyPurpose>)?,
            pending_known_key_ids: field(&name, vault, KEY_PENDING_KNOWN, read_key_ids)?
                .unwrap_or_default(),
            name,
        })
    }

    /// Writes the labels into `vault`.
    pub fn write(&self, vault: &mut Vault) {
        let mut set = |key: &str, value: Option<&str>| match value {
            Some(v) => vault.set_meta(key, v),
            None => {
                vault.remove_meta(key);
            }
        };
        set("name", Some(self.name.as_str()));
        set(PERSON, self.person_id.as_ref().map(PersonId::as_str));
        set(NUMBER, self.number.as_ref().map(PhoneNumber::as_str));
        set(
            NUMBER_VERIFIED,
            Some(if self.number_verified {
                "true"
            } else {
                "false"
            }),
        );
        set(DEVICE, self.device_id.as_ref().map(DeviceId::as_str));
        set(BOUND, Some(if self.bound { "true" } else { "false" }));
        set(API, self.api_base.as_deref());
        set(
            KEY_UNRESTRICTED,
            self.unrestricted_key_id.as_ref().map(KeyId::as_str),
        );
        set(
            KEY_RESTRICTED,
            self.restricted_key_id.as_ref().map(KeyId::as_str),
        );
        let pending = self.pending_key.map(|p| p.to_string());
        set(KEY_PENDING, pending.as_deref());
        let known = write_key_ids(&self.pending_known_key_ids);
        set(
            KEY_PENDING_KNOWN,
            Some(known.as_str()).filter(|k| !k.is_empty()),
        );
    }
}

/// Key ids as one label: joined by commas, as profiles have always kept them, unless an id
/// (opaque, from a server) has a comma or starts with `[`; then a JSON array.
fn write_key_ids(ids: &[KeyId]) -> String {
    let plain = ids
        .iter()
        .all(|id| !id.as_str().contains(',') && !id.as_str().starts_with('['));
    if plain {
        let ids: Vec<&str> = ids.iter().map(KeyId::as_str).collect();
        ids.join(",")
    } else {
        serde_json::to_string(ids).unwrap_or_default()
    }
}

/// Reads what [`write_key_ids`] wrote: a JSON array, or ids joined by commas.
fn read_key_ids(text: &str) -> Result<Vec<KeyId>, String> {
    if text.starts_with('[') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        text.split(',')
            .map(|id| KeyId::from_user(id).map_err(|e| e.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_file_names_are_refused() {
        assert!(PhoneName::parse("alice-1").is_ok());
        assert!(PhoneName::parse("../x").is_err());
        assert!(PhoneName::parse("").is_err());
    }

    #[test]
    fn a_profile_round_trips_through_a_saved_vault() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.ensure().unwrap();
        let name = PhoneName::parse("alice").unwrap();
        let mut profile = Profile::new(name.clone());
        profile.person_id = Some(PersonId::generate());
        profile.number = Some(PhoneNumber::test_number());
        profile.number_verified = true;
        profile.device_id = Some(DeviceId::generate());
        profile.bound = true;
        profile.restricted_key_id = Some(KeyId::generate());
        profile.pending_key = Some(KeyPurpose::Restricted);
        profile.pending_known_key_ids = vec![KeyId::generate(), KeyId::generate()];
        let mut vault = Vault::new();
        profile.write(&mut vault);
        let store = ProfileStore {
            path: home.path_of(&name),
            passphrase: None,
        };
        store.save(&vault).unwrap();
        let back = Profile::read(name.clone(), &store.load().unwrap()).unwrap();
        assert_eq!(back, profile);
        assert_eq!(home.list().unwrap(), vec![name]);
    }

    #[test]
    fn a_profile_keeps_ids_of_any_shape_a_server_sent() {
        let name = PhoneName::parse("vee").unwrap();
        let mut profile = Profile::new(name.clone());
        let long = |kind: &str| format!("{kind}Id-{}-{}", "a".repeat(32), "b".repeat(32));
        profile.person_id = Some(PersonId::from_server(&long("person")).unwrap());
        profile.device_id = Some(DeviceId::from_server("device 7/a").unwrap());
        profile.unrestricted_key_id = Some(KeyId::from_server(&long("key")).unwrap());
        let key = |text: &str| KeyId::from_server(text).unwrap();
        for known in [
            vec![key(&long("key")), key("k2")],
            vec![key("a,b"), key("c")],
            vec![key("[x"), key("y]")],
            vec![key("\"quoted\"")],
        ] {
            profile.pending_known_key_ids = known;
            let mut vault = Vault::new();
            profile.write(&mut vault);
            assert_eq!(Profile::read(name.clone(), &vault).unwrap(), profile);
        }
        // Ids without a comma are kept as before, so older versions read them.
        let mut vault = Vault::new();
        profile.pending_known_key_ids = vec![key("k1"), key("k2")];
        profile.write(&mut vault);
        assert_eq!(vault.meta(KEY_PENDING_KNOWN), Some("k1,k2"));
    }
}
