//! Known-answer vectors and a cross-check of signing and verification against `ring`.
#![allow(clippy::unwrap_used)]

use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use vphone_keystore::{
    AlwaysApprove, KeyAlgorithm, KeyPurpose, SigningKey, Vault, VerifyError, hazmat, verify_hex,
};

/// RFC 6979 appendix A.2.5: the P-256 private key.
const RFC6979_X: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
const RFC6979_UX: &str = "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6";
const RFC6979_UY: &str = "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
const RFC6979_R: &str = "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716";
const RFC6979_S: &str = "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";

fn rfc6979_key() -> SigningKey {
    hazmat::signing_key_from_secret_hex(
        KeyAlgorithm::EcdsaP256,
        RFC6979_X,
        KeyPurpose::Unrestricted,
    )
    .unwrap()
}

#[test]
fn rfc6979_public_key_is_the_published_point() {
    let expected = format!("04{RFC6979_UX}{RFC6979_UY}");
    assert_eq!(rfc6979_key().public_key_hex(), expected);
}

#[test]
fn rfc6979_signature_of_sample_is_the_published_der() {
    // Both r and s have the top bit set, so each INTEGER gets a 00 prefix: 2 * (2 + 33) = 0x46.
    let expected = format!("3046022100{RFC6979_R}022100{RFC6979_S}");
    let key = rfc6979_key();
    assert_eq!(key.sign_hex(b"sample"), expected);
    assert_eq!(
        verify_hex(&key.public_key_hex(), b"sample", &expected),
        Ok(())
    );
}

#[test]
fn signature_from_vault_verifies_under_ring() {
    let mut vault = Vault::new();
    let key = vault.generate_key(KeyPurpose::Unrestricted).unwrap();
    let public = hex::decode(key.public_key_hex()).unwrap();
    for message in [&b"123456"[..], b"", b"string_to_sign with \xc3\xa9 utf-8"] {
        let sig_hex = vault
            .sign(KeyPurpose::Unrestricted, message, &AlwaysApprove, "test")
            .unwrap();
        let sig = hex::decode(&sig_hex).unwrap();
        UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_ASN1, &public)
            .verify(message, &sig)
            .unwrap();
    }
}

#[test]
fn signature_from_ring_verifies_under_verify_hex() {
    let rng = SystemRandom::new();
    let alg = &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let public_hex = hex::encode(pair.public_key().as_ref());
    for message in [&b"654321"[..], b"", b"a longer message to sign"] {
        let sig = pair.sign(&rng, message).unwrap();
        let sig_hex = hex::encode(sig.as_ref());
        assert_eq!(verify_hex(&public_hex, message, &sig_hex), Ok(()));
        assert_eq!(
            verify_hex(&public_hex, b"other", &sig_hex),
            Err(VerifyError::Mismatch)
        );
    }
}

#[test]
fn ed25519_keys_sign_with_raw_64_byte_signatures_that_ring_accepts() {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519, KeyPurpose::Unrestricted);
    assert_eq!(key.public_key_hex().len(), 64);
    let sig = key.sign_hex(b"hello");
    assert_eq!(sig.len(), 128);
    UnparsedPublicKey::new(
        &ring_sig::ED25519,
        hex::decode(key.public_key_hex()).unwrap(),
    )
    .verify(b"hello", &hex::decode(sig).unwrap())
    .unwrap();
}

#[test]
fn p256_public_key_and_signature_have_the_wire_shapes() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, KeyPurpose::Restricted);
    let public = key.public_key_hex();
    assert_eq!(public.len(), 130);
    assert!(public.starts_with("04"));
    let sig = key.sign_hex(b"m");
    // A DER SEQUENCE of two INTEGERs: its length byte covers the rest, and r and s each take
    // 1 to 33 bytes (a leading zero byte is dropped, or added before a high bit), so about one
    // signature in 128 is shorter than the usual 70 to 72 bytes.
    let der = hex::decode(&sig).unwrap();
    assert_eq!(der[0], 0x30, "{sig}");
    assert_eq!(usize::from(der[1]), der.len() - 2, "{sig}");
    assert!((8..=72).contains(&der.len()), "{sig}");
    // Lowercase hex digits and nothing else (the decoder above would also take `0x`).
    let lowercase_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    assert!(lowercase_hex(&sig), "{sig}");
    assert_eq!(key.fingerprint().len(), 16);
    assert!(lowercase_hex(&public), "{public}");
}

#[test]
fn an_imported_private_key_is_64_hex_digits_in_either_case_and_nothing_else() {
    let import = |hex: &str| {
        hazmat::signing_key_from_secret_hex(KeyAlgorithm::EcdsaP256, hex, KeyPurpose::Unrestricted)
    };
    for bad in [
        format!("0x{RFC6979_X}"),
        RFC6979_X[..62].to_owned(),
        format!("{RFC6979_X}00"),
        format!("{}zz", &RFC6979_X[..62]),
    ] {
        assert!(import(&bad).is_err(), "{bad}");
    }
    assert_eq!(
        import(&RFC6979_X.to_uppercase()).unwrap().public_key_hex(),
        rfc6979_key().public_key_hex()
    );
}
