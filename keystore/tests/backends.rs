//! The signing backends agree: the same seed, index and purpose derive the same key on
//! RustCrypto `p256` (the reference) and aws-lc, and every signature of either verifies
//! under the other and under `ring`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use vphone_keystore::{Backend, KeyPurpose, Seed, SigningKey, hazmat, verify_hex};

fn both(seed: &Seed, index: u64, purpose: KeyPurpose) -> (SigningKey, SigningKey) {
    (
        SigningKey::derive_with(seed, index, purpose, Backend::RustCrypto),
        SigningKey::derive_with(seed, index, purpose, Backend::AwsLc),
    )
}

fn ring_verifies(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public)
        .verify(message, signature)
        .is_ok()
}

#[test]
fn both_backends_derive_the_same_key() {
    let seed = Seed::from_u64(42);
    for index in [0, 1, 7, 1_000_000, u64::MAX] {
        for purpose in KeyPurpose::ALL {
            let (reference, fast) = both(&seed, index, purpose);
            assert_eq!(reference.backend(), Backend::RustCrypto);
            assert_eq!(fast.backend(), Backend::AwsLc);
            assert_eq!(reference.public_key_hex(), fast.public_key_hex());
            assert_eq!(reference.key_id(), fast.key_id());
            assert_eq!(reference.fingerprint(), fast.fingerprint());
            assert_eq!(
                *hazmat::secret_scalar_hex(&reference),
                *hazmat::secret_scalar_hex(&fast)
            );
        }
    }
    // `derive` is the reference backend.
    let plain = SigningKey::derive(&seed, 3, KeyPurpose::Restricted);
    assert_eq!(plain.backend(), Backend::RustCrypto);
    assert_eq!(
        plain.public_key_hex(),
        both(&seed, 3, KeyPurpose::Restricted).1.public_key_hex()
    );
}

#[test]
fn aws_lc_signatures_are_randomized_and_all_verify() {
    let (reference, fast) = both(&Seed::from_u64(1), 0, KeyPurpose::Unrestricted);
    let a = fast.sign(b"212212");
    let b = fast.sign(b"212212");
    assert_ne!(a, b, "aws-lc uses random nonces");
    assert_eq!(reference.sign(b"212212"), reference.sign(b"212212"));
    for sig in [&a, &b] {
        assert!(verify_hex(&reference.public_key_hex(), b"212212", &hex::encode(sig)).is_ok());
    }
}

#[test]
fn debug_shows_no_secret_on_either_backend() {
    let (reference, fast) = both(&Seed::from_u64(9), 5, KeyPurpose::Unrestricted);
    for key in [&reference, &fast] {
        let secret = hazmat::secret_scalar_hex(key);
        let debug = format!("{key:?}");
        assert!(!debug.contains(secret.as_str()), "{debug}");
        assert!(debug.contains(key.backend().as_str()), "{debug}");
    }
}

#[test]
fn signer_names_parse() {
    for backend in Backend::ALL {
        assert_eq!(backend.as_str().parse::<Backend>().unwrap(), backend);
    }
    assert!("openssl".parse::<Backend>().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_signature_verifies_under_both_backends_and_ring(
        seed in any::<u64>(),
        index in any::<u64>(),
        restricted in any::<bool>(),
        message in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let purpose = if restricted { KeyPurpose::Restricted } else { KeyPurpose::Unrestricted };
        let (reference, fast) = both(&Seed::from_u64(seed), index, purpose);
        prop_assert_eq!(reference.public_key_bytes(), fast.public_key_bytes());
        let public = fast.public_key_bytes();
        for signer in [&reference, &fast] {
            let sig = signer.sign(&message);
            // The keystore's own verifier (RustCrypto) ...
            prop_assert_eq!(verify_hex(&reference.public_key_hex(), &message, &hex::encode(&sig)), Ok(()));
            // ... aws-lc's verifier (what the sandbox uses) ...
            let aws = aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, &public);
            prop_assert!(aws.verify(&message, &sig).is_ok());
            // ... and ring.
            prop_assert!(ring_verifies(&public, &message, &sig));
        }
    }
}
