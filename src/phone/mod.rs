//! One virtual phone: a key vault, an SMS inbox, an emulated biometric prompt and a client of
//! the bank, with the flows of API.md as methods that return typed outcomes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vphone::api::PhoneNumber;
//! use vphone::client::{ApiClient, ClientConfig, Credentials};
//! use vphone::phone::{OtpSource, Phone, PhoneName, person_named};
//!
//! let config = ClientConfig::local("http://127.0.0.1:8080".parse()?, Credentials::sandbox_default());
//! let client = ApiClient::new(config)?;
//! let mut phone = Phone::new(PhoneName::parse("alice")?, client.clone(), OtpSource::SandboxHttp(client));
//! phone.register(person_named("Alice", "Example"), PhoneNumber::test_number()).await?;
//! phone.bind().await?;
//! phone.approve(None).await?;
//! # Ok(()) }
//! ```

pub mod cli;
mod error;
mod flows;
mod inbox;
pub mod logic;
mod otp_input;
mod outcome;
mod profile;
mod toolkit;

pub use error::PhoneError;
pub use flows::{ANSWER_DEVICE_CHALLENGE, Confirmation, person_named, random_number};
pub use inbox::{Inbox, InboxError, Marker, OtpSource, SmsFeed, newest_code};
pub use otp_input::{OTP_KIND_ENV, OTP_NUMBER_ENV, OtpCommand, SmsKind, find_code};
pub use outcome::{
    AddKeyOutcome, BindOutcome, ChangeOutcome, DeleteOutcome, PersonChange, RegisterOutcome,
    SignOutcome, SmsOutcome, StepTime, Timings, VerifyOutcome,
};
pub use profile::{HOME_ENV, Home, PhoneName, Profile, ProfileError, ProfileStore};
pub use toolkit::{Adoption, ReceivedOtp};

use crate::api::{KeyPurpose, PhoneNumber};
use crate::client::ApiClient;
use crate::clock::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;
use vphone_keystore::{AlwaysApprove, Passphrase, UserPresence, Vault};

/// How long a flow waits for an SMS by default.
pub const DEFAULT_OTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A saved phone read from its file but not yet connected to a bank, so a caller can pick
/// the server from the profile (`api_base`) before building a client.
#[derive(Debug)]
pub struct SavedPhone {
    profile: Profile,
    vault: Vault,
    store: ProfileStore,
}

impl SavedPhone {
    /// Reads saved phone `name` from `home`.
    pub fn load(
        home: &Home,
        name: PhoneName,
        passphrase: Option<Arc<Passphrase>>,
    ) -> Result<SavedPhone, PhoneError> {
        let path = home.path_of(&name);
        if !path.is_file() {
            return Err(ProfileError::NotFound {
                name: name.to_string(),
                home: home.root().to_owned(),
            }
            .into());
        }
        let store = ProfileStore { path, passphrase };
        let vault = store.load()?;
        let profile = Profile::read(name, &vault)?;
        Ok(SavedPhone {
            profile,
            vault,
            store,
        })
    }

    /// The saved state.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The saved keys.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The phone, talking through `client` and reading codes from `source`.
    pub fn into_phone(self, client: ApiClient, source: OtpSource) -> Phone {
        Phone::from_parts(self.profile, self.vault, client, source, Some(self.store))
    }
}

/// One virtual phone.
pub struct Phone {
    profile: Profile,
    vault: Vault,
    client: ApiClient,
    source: OtpSource,
    inbox: Option<Inbox>,
    presence: Arc<dyn UserPresence>,
    store: Option<ProfileStore>,
    otp_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("profile", &self.profile)
            .field("vault", &self.vault)
            .field("source", &self.source)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Phone {
    /// A phone kept in memory only (nothing is saved), approving every biometric prompt.
    pub fn new(name: PhoneName, client: ApiClient, source: OtpSource) -> Phone {
        Phone::from_parts(Profile::new(name), Vault::new(), client, source, None)
    }

    fn from_parts(
        profile: Profile,
        vault: Vault,
        client: ApiClient,
        source: OtpSource,
        store: Option<ProfileStore>,
    ) -> Phone {
        let inbox = profile
            .number
            .clone()
            .map(|n| Inbox::new(n, source.clone()));
        Phone {
            profile,
            vault,
            client,
            source,
            inbox,
            presence: Arc::new(AlwaysApprove),
            store,
            otp_timeout: DEFAULT_OTP_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }

    /// Creates a new saved phone `name` under `home`; fails if it exists.
    pub fn create(
        home: &Home,
        name: PhoneName,
        client: ApiClient,
        source: OtpSource,
        passphrase: Option<Arc<Passphrase>>,
    ) -> Result<Phone, PhoneError> {
        let store = ProfileStore::new_phone(home, &name, passphrase)?;
        let mut profile = Profile::new(name);
        profile.api_base = Some(client.base_url().to_owned());
        let mut phone = Phone::from_parts(profile, Vault::new(), client, source, Some(store));
        phone.save()?;
        Ok(phone)
    }

    /// Opens saved phone `name` from `home`.
    pub fn open(
        home: &Home,
        name: PhoneName,
        client: ApiClient,
        source: OtpSource,
        passphrase: Option<Arc<Passphrase>>,
    ) -> Result<Phone, PhoneError> {
        Ok(SavedPhone::load(home, name, passphrase)?.into_phone(client, source))
    }

    /// The same phone asking `presence` before each use of its restricted key.
    pub fn with_presence(mut self, presence: Arc<dyn UserPresence>) -> Phone {
        self.presence = presence;
        self
    }

    /// The same phone reading its codes from `source`.
    pub fn with_otp_source(mut self, source: OtpSource) -> Phone {
        self.inbox = self
            .profile
            .number
            .clone()
            .map(|n| Inbox::new(n, source.clone()));
        self.source = source;
        self
    }

    /// The same phone reading the time from `clock` (a `ManualClock` in tests), e.g. to
    /// judge whether a challenge expired.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Phone {
        self.clock = clock;
        self
    }

    /// The same phone waiting up to `timeout` for each SMS.
    pub fn with_otp_timeout(mut self, timeout: Duration) -> Phone {
        self.otp_timeout = timeout;
        self
    }

    /// The phone's name.
    pub fn name(&self) -> &PhoneName {
        &self.profile.name
    }

    /// The phone's state (person, number, device, bound).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The phone's keys.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The client the phone talks through.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// The inbox, once the phone has a number.
    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_ref()
    }

    /// The purposes of the keys the phone holds.
    pub fn key_purposes(&self) -> Vec<KeyPurpose> {
        [KeyPurpose::Unrestricted, KeyPurpose::Restricted]
            .into_iter()
            .filter(|p| self.vault.key(*p).is_some())
            .collect()
    }

    /// Sets the phone's number (and its inbox): where its codes arrive. Saved with the next
    /// change; the bank is not told.
    pub fn set_number(&mut self, number: PhoneNumber) {
        self.inbox = Some(Inbox::new(number.clone(), self.source.clone()));
        self.profile.number = Some(number);
    }

    /// Records the client's server as the one this phone is set up against (saved with the
    /// next change).
    pub fn set_api_base(&mut self) {
        self.profile.api_base = Some(self.client.base_url().to_owned());
    }

    /// Writes the profile and keys, if this phone is saved.
    pub fn save(&mut self) -> Result<(), PhoneError> {
        self.profile.write(&mut self.vault);
        if let Some(store) = &self.store {
            store.save(&self.vault)?;
        }
        Ok(())
    }
}
