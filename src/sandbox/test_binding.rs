//! For the sandbox's own tests: a binding started for a new person with a verified number,
//! put in the bank as `POST /v1/mfa/devices` puts it (queued for the state file first, when
//! there is one), and a request adding a restricted key.

use super::auth::Caller;
use super::core::devices::{self as rules, NewDevice};
use super::core::testing::{TestKey, rng, verified_person};
use super::state::Inner;
use super::store::Write;
use crate::api::{
    AddKeyRequest, ChallengeId, DeviceId, DeviceSignature, KeyPurpose, KeyType, PersonId,
};

/// The ids of a started binding and the OTP it sent.
pub(crate) struct Started {
    /// The binding's signature challenge.
    pub id: ChallengeId,
    /// The OTP to sign.
    pub otp: String,
    /// The person.
    pub person: PersonId,
    /// The unverified device.
    pub device: DeviceId,
}

/// Starts a binding of `key` for a new person (drawn from `seed`) of `caller`.
pub(crate) fn start(inner: &Inner, caller: Caller, key: &TestKey, seed: u64) -> Started {
    let mut rng = rng(seed);
    let person = verified_person(&mut rng);
    let person_id = person.person.id.clone();
    let started = rules::start_binding(
        &person,
        NewDevice {
            person_id: person_id.clone(),
            name: "phone".into(),
            key: key.verifying(),
            purpose: KeyPurpose::Unrestricted,
            device_data: None,
        },
        &inner.keys(caller.0),
        &inner.config,
        inner.clock.now(),
        &mut rng,
    )
    .expect("a verified person may bind");
    let partner = inner.partner_name(caller.0);
    inner
        .commit(&[
            Write::Person(partner, &person),
            Write::Device(partner, &started.device),
            Write::Challenge(partner, &started.challenge_id, &started.challenge),
        ])
        .expect("queued");
    let b = Started {
        id: started.challenge_id.clone(),
        otp: started.send.otp.expose().to_owned(),
        person: person_id.clone(),
        device: started.device.id.clone(),
    };
    Inner::insert(&inner.persons, caller.0, person_id, person);
    Inner::insert(&inner.devices, caller.0, b.device.clone(), started.device);
    Inner::insert(&inner.challenges, caller.0, b.id.clone(), started.challenge);
    b
}

/// A request adding `new` as a device's restricted key, signed by its unrestricted `signer`.
pub(crate) fn restricted_key(signer: &TestKey, new: &TestKey) -> AddKeyRequest {
    AddKeyRequest {
        key: new.hex(),
        key_type: KeyType::EcdsaP256,
        key_purpose: KeyPurpose::Restricted,
        device_signature: DeviceSignature {
            signature_key_purpose: KeyPurpose::Unrestricted,
            signature: signer.sign(new.hex().as_str().as_bytes()),
        },
    }
}
