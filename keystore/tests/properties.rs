//! Property tests: encodings round-trip, signatures verify, and strict verification rejects
//! everything the bank would refuse.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use vphone_keystore::{
    KeyAlgorithm, KeyPurpose, Seed, SigningKey, VerifyError, der_signature_hex_to_raw,
    parse_public_key_hex, parse_signature_hex, raw_signature_to_der_hex, verify_hex,
};

fn purpose() -> impl Strategy<Value = KeyPurpose> {
    prop_oneof![Just(KeyPurpose::Unrestricted), Just(KeyPurpose::Restricted)]
}

fn key_from(seed: u64, index: u64) -> SigningKey {
    SigningKey::derive(&Seed::from_u64(seed), index, KeyPurpose::Unrestricted)
}

fn compressed_hex(public_hex: &str) -> String {
    let bytes = hex::decode(public_hex).unwrap();
    let prefix = if bytes[64].is_multiple_of(2) {
        "02"
    } else {
        "03"
    };
    format!("{prefix}{}", &public_hex[2..66])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn public_key_hex_round_trips_through_parsing(seed in any::<u64>(), index in 0u64..1000) {
        let public = key_from(seed, index).public_key_hex();
        let parsed = parse_public_key_hex(&public).unwrap();
        prop_assert_eq!(hex::encode(parsed.to_encoded_point(false).as_bytes()), public);
    }

    #[test]
    fn der_signature_round_trips_through_parsing_and_raw_form(
        seed in any::<u64>(), message in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let sig = key_from(seed, 0).sign_hex(&message);
        let parsed = parse_signature_hex(&sig).unwrap();
        prop_assert_eq!(hex::encode(parsed.to_der().as_bytes()), sig.clone());
        let raw = der_signature_hex_to_raw(&sig).unwrap();
        prop_assert_eq!(raw_signature_to_der_hex(&raw).unwrap(), sig);
    }

    #[test]
    fn any_message_signed_verifies(
        seed in any::<u64>(), message in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let key = key_from(seed, 1);
        prop_assert_eq!(verify_hex(&key.public_key_hex(), &message, &key.sign_hex(&message)), Ok(()));
    }

    #[test]
    fn derived_keys_are_stable_for_a_seed(seed in any::<u64>(), index in any::<u64>(), p in purpose()) {
        let a = SigningKey::derive(&Seed::from_u64(seed), index, p);
        let b = SigningKey::derive(&Seed::from_u64(seed), index, p);
        prop_assert_eq!(a.public_key_hex(), b.public_key_hex());
        prop_assert_eq!(a.key_id(), b.key_id());
        prop_assert_eq!(a.purpose(), p);
        prop_assert_eq!(a.algorithm(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn derived_keys_differ_across_indexes_purposes_and_seeds(seed in any::<u64>(), index in 0u64..u64::MAX) {
        let s = Seed::from_u64(seed);
        let base = SigningKey::derive(&s, index, KeyPurpose::Unrestricted);
        let next = SigningKey::derive(&s, index + 1, KeyPurpose::Unrestricted);
        let restricted = SigningKey::derive(&s, index, KeyPurpose::Restricted);
        let other_seed = SigningKey::derive(&Seed::from_u64(seed.wrapping_add(1)), index, KeyPurpose::Unrestricted);
        for other in [&next, &restricted, &other_seed] {
            prop_assert_ne!(base.public_key_hex(), other.public_key_hex());
            prop_assert_ne!(base.key_id(), other.key_id());
        }
    }

    #[test]
    fn verify_rejects_another_key(seed in any::<u64>(), message in proptest::collection::vec(any::<u8>(), 0..64)) {
        let sig = key_from(seed, 0).sign_hex(&message);
        let other = key_from(seed, 1).public_key_hex();
        prop_assert_eq!(verify_hex(&other, &message, &sig), Err(VerifyError::Mismatch));
    }

    #[test]
    fn verify_rejects_another_message(
        seed in any::<u64>(),
        message in proptest::collection::vec(any::<u8>(), 0..64),
        other in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(message != other);
        let key = key_from(seed, 0);
        let sig = key.sign_hex(&message);
        prop_assert_eq!(verify_hex(&key.public_key_hex(), &other, &sig), Err(VerifyError::Mismatch));
    }

    #[test]
    fn verify_rejects_raw_r_s_hex_instead_of_der(seed in any::<u64>()) {
        let key = key_from(seed, 0);
        let raw = der_signature_hex_to_raw(&key.sign_hex(b"m")).unwrap();
        let result = verify_hex(&key.public_key_hex(), b"m", &hex::encode(raw));
        prop_assert!(matches!(result, Err(VerifyError::BadSignatureEncoding(_))), "{:?}", result);
    }

    #[test]
    fn verify_rejects_uppercase_hex(seed in any::<u64>()) {
        let key = key_from(seed, 0);
        let sig = key.sign_hex(b"m");
        let public = key.public_key_hex();
        let r = verify_hex(&public, b"m", &sig.to_uppercase());
        prop_assert!(matches!(r, Err(VerifyError::BadSignatureEncoding(_))), "{:?}", r);
        let r = verify_hex(&public.to_uppercase(), b"m", &sig);
        prop_assert!(matches!(r, Err(VerifyError::BadPublicKey(_))), "{:?}", r);
    }

    #[test]
    fn verify_rejects_odd_length_hex(seed in any::<u64>()) {
        let key = key_from(seed, 0);
        let sig = key.sign_hex(b"m");
        let public = key.public_key_hex();
        let r = verify_hex(&public, b"m", &format!("{sig}0"));
        prop_assert!(matches!(r, Err(VerifyError::BadSignatureEncoding(_))), "{:?}", r);
        let r = verify_hex(&public[..129], b"m", &sig);
        prop_assert!(matches!(r, Err(VerifyError::BadPublicKey(_))), "{:?}", r);
    }

    #[test]
    fn verify_rejects_truncated_der(seed in any::<u64>(), cut in 1usize..70) {
        let key = key_from(seed, 0);
        let sig = key.sign_hex(b"m");
        let keep = sig.len() / 2 - cut.min(sig.len() / 2 - 1);
        let r = verify_hex(&key.public_key_hex(), b"m", &sig[..keep * 2]);
        prop_assert!(matches!(r, Err(VerifyError::BadSignatureEncoding(_))), "{:?}", r);
    }

    #[test]
    fn verify_rejects_der_with_trailing_bytes(seed in any::<u64>(), extra in 1usize..4) {
        let key = key_from(seed, 0);
        let sig = format!("{}{}", key.sign_hex(b"m"), "00".repeat(extra));
        let r = verify_hex(&key.public_key_hex(), b"m", &sig);
        prop_assert!(matches!(r, Err(VerifyError::BadSignatureEncoding(_))), "{:?}", r);
    }

    #[test]
    fn verify_rejects_a_compressed_public_key(seed in any::<u64>()) {
        let key = key_from(seed, 0);
        let compressed = compressed_hex(&key.public_key_hex());
        prop_assert!(parse_public_key_hex(&compressed).is_err());
        let r = verify_hex(&compressed, b"m", &key.sign_hex(b"m"));
        prop_assert!(matches!(r, Err(VerifyError::BadPublicKey(_))), "{:?}", r);
    }
}

#[test]
fn verify_rejects_a_der_signature_with_a_long_form_length() {
    let key = key_from(1, 0);
    let sig = key.sign_hex(b"m");
    // 30 LL ... -> 30 81 LL ...: same content, non-minimal length encoding.
    let long_form = format!("3081{}", &sig[2..]);
    let r = verify_hex(&key.public_key_hex(), b"m", &long_form);
    assert!(
        matches!(r, Err(VerifyError::BadSignatureEncoding(_))),
        "{r:?}"
    );
}

#[test]
fn verify_rejects_empty_and_non_hex_inputs() {
    let key = key_from(1, 0);
    let sig = key.sign_hex(b"m");
    let public = key.public_key_hex();
    assert!(matches!(
        verify_hex("", b"m", &sig),
        Err(VerifyError::BadPublicKey(_))
    ));
    assert!(matches!(
        verify_hex(&public, b"m", ""),
        Err(VerifyError::BadSignatureEncoding(_))
    ));
    assert!(matches!(
        verify_hex(&public, b"m", "zz"),
        Err(VerifyError::BadSignatureEncoding(_))
    ));
    assert!(!vphone_keystore::public_key_hex_is_valid("04"));
    assert!(vphone_keystore::public_key_hex_is_valid(&public));
}

/// SHA-256(tag || n le) computed with ring, independently of the crate's own code.
fn independent_seed_hex(n: u64) -> String {
    let mut data = b"vphone-keystore/seed-from-u64/v1".to_vec();
    data.extend_from_slice(&n.to_le_bytes());
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &data))
}

#[test]
fn seed_from_u64_is_sha256_of_the_domain_tag_and_number() {
    let from_u64 = SigningKey::derive(&Seed::from_u64(42), 7, KeyPurpose::Unrestricted);
    let from_hex = SigningKey::derive(
        &Seed::from_hex(&independent_seed_hex(42)).unwrap(),
        7,
        KeyPurpose::Unrestricted,
    );
    assert_eq!(from_u64.public_key_hex(), from_hex.public_key_hex());
}

#[test]
fn derived_key_for_a_fixed_seed_is_pinned() {
    // Pins the derivation scheme: changing tags or layout would silently change every fleet.
    let key = SigningKey::derive(&Seed::from_u64(42), 7, KeyPurpose::Unrestricted);
    assert_eq!(
        key.public_key_hex(),
        "04e0fd490153e7140a66ef8bfec961b0b881f0557aa5e1e2763fcb4eb730148fce\
         d8143f5ca8b95551b5a7577d5e8f60e468a1d2c092b5a1d989712ed9552c35bb"
    );
    assert_eq!(
        key.key_id().to_string(),
        "9a0bff0b-c26d-4bb2-8eb6-99b960340a97"
    );
}
