//! The sandbox verifies exactly as API.md says: signatures made by independent implementations
//! (ring, RustCrypto p256) are accepted; every other way a signature can be wrong is refused
//! and changes nothing.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use p256::ecdsa::signature::Signer;
use rand::RngCore;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use sandbox_common::{Bank, Key, assert_refused};
use serde_json::json;

/// A person whose number is the test number, so every binding OTP is 212212.
async fn bank_and_person() -> (Bank, String) {
    let bank = Bank::start().await;
    let person = bank.verified_person_with("+15550101").await;
    (bank, person)
}

async fn answer(
    bank: &Bank,
    challenge: &str,
    signature: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    bank.call(
        "PUT",
        &format!("/v1/mfa/challenges/signatures/{challenge}"),
        Some(json!({"signature": signature})),
    )
    .await
}

#[tokio::test]
async fn a_ring_signature_of_the_otp_binds_the_device() {
    let (bank, person) = bank_and_person().await;
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let (s, _) = answer(&bank, &challenge, &key.sign(b"212212")).await;
    assert_eq!(s, 204);
    assert_eq!(
        bank.call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_rustcrypto_p256_signature_binds_the_device() {
    let (bank, person) = bank_and_person().await;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let signing = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
    let public = hex::encode(signing.verifying_key().to_encoded_point(false).as_bytes());
    let (s, b) = bank
        .call(
            "POST",
            "/v1/mfa/devices",
            Some(
                json!({"person_id": person, "key_type": "ecdsa-p256", "key": public, "name": "rc"}),
            ),
        )
        .await;
    assert_eq!(s, 202);
    let sig: p256::ecdsa::Signature = signing.sign(b"212212");
    let der = hex::encode(sig.to_der().as_bytes());
    let (s, _) = answer(&bank, b["challenge"]["id"].as_str().unwrap(), &der).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn malformed_signatures_are_refused_without_spending_an_attempt() {
    let (bank, person) = bank_and_person().await;
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let der = key.sign_der(b"212212");
    let der_hex = hex::encode(&der);
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let fixed =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let raw_rs = hex::encode(fixed.sign(&rng, b"212212").unwrap().as_ref());
    let mut trailing = der.clone();
    trailing.push(0);
    let cases = [
        ("raw r||s instead of DER", raw_rs),
        ("uppercase hex", der_hex.to_uppercase()),
        ("odd-length hex", der_hex[..der_hex.len() - 1].to_owned()),
        ("truncated DER", hex::encode(&der[..der.len() - 2])),
        ("DER with a trailing byte", hex::encode(&trailing)),
        ("not hex", format!("zz{}", &der_hex[2..])),
        ("base64 instead of hex", "MEUCIQ==".to_owned()),
        ("empty", String::new()),
    ];
    for (what, sig) in cases {
        let r = answer(&bank, &challenge, &sig).await;
        assert_eq!(r.0, 400, "{what}: {}", r.1);
        assert_refused(&r, 400, "invalid_signature_encoding");
        assert_eq!(r.1["errors"][0]["source"]["field"], "signature", "{what}");
    }
    assert_eq!(
        bank.state().stats().verifications,
        0,
        "nothing malformed reached the verifier"
    );
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
    // Eight refusals later the challenge is still open: malformed input spends no attempt.
    let (s, _) = answer(&bank, &challenge, &der_hex).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn well_formed_but_wrong_signatures_are_refused_and_count_as_attempts() {
    let (bank, person) = bank_and_person().await;
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let digest = ring::digest::digest(&ring::digest::SHA256, b"212212");
    let cases = [
        ("signed with another key", Key::new().sign(b"212212")),
        ("signed over another message", key.sign(b"212213")),
        (
            "signed over the digest (hashed twice)",
            key.sign(digest.as_ref()),
        ),
    ];
    for (what, sig) in cases {
        let r = answer(&bank, &challenge, &sig).await;
        assert_eq!(r.0, 403, "{what}: {}", r.1);
        assert_refused(&r, 403, "invalid_signature");
    }
    assert_refused(
        &answer(&bank, &challenge, &key.sign(b"212212")).await,
        403,
        "challenge_failed",
    );
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn device_challenges_refuse_raw_signatures_and_the_wrong_key() {
    let (bank, person) = bank_and_person().await;
    let phone = bank.bind(&person, "+15550101").await;
    let (_, c) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": phone.device_id})),
        )
        .await;
    let path = format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap());
    let sts = c["string_to_sign"].as_str().unwrap();
    let der = phone.key.sign_der(sts.as_bytes());
    // r||s of the same signature: strip the DER framing.
    let r_len = der[3] as usize;
    let r = &der[4..4 + r_len];
    let s = &der[4 + r_len + 2..];
    let pad = |v: &[u8]| {
        let v = if v.len() == 33 { &v[1..] } else { v };
        let mut out = vec![0u8; 32 - v.len()];
        out.extend_from_slice(v);
        out
    };
    let raw = hex::encode([pad(r), pad(s)].concat());
    let put = |sig: String| bank.call("PUT", &path, Some(json!({"signature": sig})));
    assert_refused(&put(raw).await, 400, "invalid_signature_encoding");
    assert_refused(
        &put(Key::new().sign(sts.as_bytes())).await,
        403,
        "invalid_signature",
    );
    let (status, _) = put(hex::encode(&der)).await;
    assert_eq!(status, 204);
}
