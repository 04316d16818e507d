//! What the core's unit tests share: a config, a seeded generator, a fixed time, entities.

use super::persons::{self, PersonEntry};
use crate::api::{CreatePerson, PhoneNumber, Timestamp};
use crate::sandbox::config::SandboxConfig;
use crate::sandbox::verify::Point;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The default configuration.
pub fn config() -> SandboxConfig {
    SandboxConfig::default()
}

/// A generator seeded with `seed`.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A fixed instant.
pub fn t0() -> Timestamp {
    Timestamp::from_unix(1_800_000_000).expect("in range")
}

/// A new person without a number.
pub fn person(rng: &mut StdRng) -> PersonEntry {
    let body: CreatePerson =
        serde_json::from_str(r#"{"first_name":"Ada","last_name":"Lovelace"}"#).expect("valid");
    persons::create(body, t0(), rng)
}

/// A person with a verified number.
pub fn verified_person(rng: &mut StdRng) -> PersonEntry {
    let config = config();
    let mut p = person(rng);
    let number = PhoneNumber::parse("+4915112345678").expect("valid");
    p.add_number(number.clone(), rng).expect("no number yet");
    let sent = p
        .authorize_number(&number, &config, t0(), rng)
        .expect("unverified");
    p.confirm_number(&number, &sent.otp, &config, t0())
        .expect("right OTP");
    p
}

/// A P-256 key pair for tests: signs, and gives its public key as the sandbox parses it.
pub struct TestKey(aws_lc_rs::signature::EcdsaKeyPair);

impl TestKey {
    /// A fresh key.
    pub fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("key generation");
        TestKey(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
                .expect("own pkcs8"),
        )
    }

    /// The public key as the sandbox parses it.
    pub fn verifying(&self) -> crate::sandbox::verify::VerifyingKey {
        use aws_lc_rs::signature::KeyPair;
        crate::sandbox::verify::VerifyingKey::from_uncompressed(self.0.public_key().as_ref())
            .expect("a valid point")
    }

    /// The public key's hex, as a phone sends it.
    pub fn hex(&self) -> crate::api::PublicKeyHex {
        use aws_lc_rs::signature::KeyPair;
        crate::api::PublicKeyHex::parse(&hex::encode(self.0.public_key().as_ref()))
            .expect("65 bytes of hex")
    }

    /// A DER signature of `message`, as hex.
    pub fn sign(&self, message: &[u8]) -> crate::api::SignatureHex {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.0.sign(&rng, message).expect("signing");
        crate::api::SignatureHex::parse(&hex::encode(sig.as_ref())).expect("hex")
    }
}

/// Verifies for real, without counting.
pub struct PlainVerifier;

impl super::Verifier for PlainVerifier {
    fn verify(
        &self,
        key: &crate::sandbox::verify::VerifyingKey,
        message: &[u8],
        der: &[u8],
    ) -> bool {
        key.verify(message, der)
    }
}

/// Bound keys in a plain map.
#[derive(Default)]
pub struct Keys(pub std::cell::RefCell<std::collections::HashMap<Vec<u8>, crate::api::DeviceId>>);

impl super::KeyIndex for Keys {
    fn is_bound(&self, point: &Point) -> bool {
        self.0.borrow().contains_key(point.as_slice())
    }
    fn claim(&self, point: &Point, device: &crate::api::DeviceId) -> bool {
        let mut map = self.0.borrow_mut();
        if map.contains_key(point.as_slice()) {
            return false;
        }
        map.insert(point.to_vec(), device.clone());
        true
    }
    fn release(&self, point: &Point) {
        self.0.borrow_mut().remove(point.as_slice());
    }
}
