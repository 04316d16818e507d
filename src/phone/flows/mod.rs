//! The flows of API.md as methods of [`Phone`], one file per area. Each takes its inbox
//! marker before the call that sends an SMS, checks challenges before signing, and saves
//! the profile when the bank's state changed.

mod change;
mod device;
mod setup;
mod sign;

pub use change::Confirmation;
pub use sign::ANSWER_DEVICE_CHALLENGE;

use super::{Inbox, Phone, PhoneError};
use crate::api::{CreatePerson, DeviceId, KeyPurpose, PersonId, PhoneNumber, SignatureHex};
use std::collections::BTreeMap;

/// A fresh random German mobile number (`+49151` and 8 digits), so that on a sandbox that
/// really delivers SMS a phone's codes are not mixed with other phones' codes.
pub fn random_number() -> PhoneNumber {
    let digits: u32 = rand::Rng::gen_range(&mut rand::thread_rng(), 0..100_000_000);
    // `+49151` and 8 digits is valid E.164 by construction.
    PhoneNumber::parse(&format!("+49151{digits:08}")).unwrap_or_else(|_| PhoneNumber::test_number())
}

/// A person with just a first and last name.
pub fn person_named(first_name: &str, last_name: &str) -> CreatePerson {
    CreatePerson {
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        email: None,
        salutation: None,
        birth_date: None,
        extra: BTreeMap::new(),
    }
}

impl Phone {
    fn person_id(&self) -> Result<PersonId, PhoneError> {
        self.profile
            .person_id
            .clone()
            .ok_or_else(|| PhoneError::NoPerson {
                name: self.name().to_string(),
            })
    }

    fn number_and_inbox(&self) -> Result<(PhoneNumber, &Inbox), PhoneError> {
        match (&self.profile.number, &self.inbox) {
            (Some(n), Some(i)) => Ok((n.clone(), i)),
            _ => Err(PhoneError::NoNumber {
                name: self.name().to_string(),
            }),
        }
    }

    fn inbox_ref(&self) -> Result<&Inbox, PhoneError> {
        self.number_and_inbox().map(|(_, i)| i)
    }

    fn bound_device(&self) -> Result<DeviceId, PhoneError> {
        match (&self.profile.device_id, self.profile.bound) {
            (Some(d), true) => Ok(d.clone()),
            _ => Err(PhoneError::NotBound {
                name: self.name().to_string(),
            }),
        }
    }

    fn refuse(&self, problem: super::logic::ChallengeProblem) -> PhoneError {
        PhoneError::Challenge {
            phone: self.name().to_string(),
            problem,
        }
    }

    fn sign(
        &self,
        purpose: KeyPurpose,
        message: &[u8],
        reason: &str,
        step: &'static str,
    ) -> Result<SignatureHex, PhoneError> {
        let hex = super::toolkit::sign_hex(
            &self.profile,
            &self.vault,
            &*self.presence,
            purpose,
            message,
            reason,
        )?;
        SignatureHex::parse(&hex).map_err(|source| PhoneError::Value { step, source })
    }
}
