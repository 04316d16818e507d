//! `public-key` and `sign-message` formats, checked against independent decoders: `p256`
//! (SPKI DER and PEM), a JWK read back by hand into a SEC1 point, and `ring` (raw r||s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;
use vphone::api::KeyPurpose;
use vphone::phone::{Home, PhoneName, SavedPhone};
use vphone_keystore::{AlwaysApprove, PublicKeyFormat, SignatureFormat};

fn phone(home: &Home) -> SavedPhone {
    let mut saved =
        SavedPhone::create(home, PhoneName::parse("fmt").unwrap(), None, None, None).unwrap();
    saved.new_key(KeyPurpose::Restricted).unwrap();
    saved
}

/// The uncompressed SEC1 point a JWK names.
fn jwk_point(jwk: &Value) -> Vec<u8> {
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    assert_eq!((x.len(), y.len()), (32, 32));
    let point = p256::EncodedPoint::from_affine_coordinates(
        p256::FieldBytes::from_slice(&x),
        p256::FieldBytes::from_slice(&y),
        false,
    );
    // On the curve, or p256 refuses it.
    let key = p256::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap();
    p256::EncodedPoint::from(key).as_bytes().to_vec()
}

/// The bytes of `s`, which must be lowercase hex and nothing else (no `0x`, no uppercase:
/// the decoder alone would take both).
fn lowercase_hex(s: &str) -> Vec<u8> {
    assert!(
        !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "not lowercase hex: {s:?}"
    );
    hex::decode(s).unwrap()
}

#[test]
fn spki_pem_and_jwk_decode_to_the_point_the_hex_names() {
    let dir = tempfile::tempdir().unwrap();
    let saved = phone(&Home::new(dir.path()));
    let get = |f| saved.public_key(KeyPurpose::Restricted, f).unwrap();
    let point = lowercase_hex(&get(PublicKeyFormat::Hex));
    assert_eq!((point.len(), point[0]), (65, 0x04));

    let spki = STANDARD.decode(get(PublicKeyFormat::SpkiBase64)).unwrap();
    let from_spki = p256::PublicKey::from_public_key_der(&spki).unwrap();
    assert_eq!(p256::EncodedPoint::from(from_spki).as_bytes(), &point[..]);

    let from_pem = p256::PublicKey::from_public_key_pem(&get(PublicKeyFormat::Pem)).unwrap();
    assert_eq!(p256::EncodedPoint::from(from_pem).as_bytes(), &point[..]);

    let jwk: Value = serde_json::from_str(&get(PublicKeyFormat::Jwk)).unwrap();
    assert_eq!(jwk_point(&jwk), point);
}

#[test]
fn raw_base64_is_r_then_s_and_verifies_under_ring() {
    let dir = tempfile::tempdir().unwrap();
    let saved = phone(&Home::new(dir.path()));
    let message = b"payment 42: 10.00 EUR to Bob";
    let sign = |f| {
        saved
            .sign_message(KeyPurpose::Restricted, message, f, &AlwaysApprove)
            .unwrap()
    };
    let raw = STANDARD.decode(sign(SignatureFormat::RawBase64)).unwrap();
    assert_eq!(raw.len(), 64);
    let point = lowercase_hex(
        &saved
            .public_key(KeyPurpose::Restricted, PublicKeyFormat::Hex)
            .unwrap(),
    );
    let ring_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point);
    ring_key
        .verify(message, &raw)
        .expect("r||s verifies under ring");
    ring_key.verify(b"another message", &raw).unwrap_err();

    // DER (hex and base64) carries the same (r, s): RFC 6979 signs deterministically.
    let der = lowercase_hex(&sign(SignatureFormat::Hex));
    assert_eq!(STANDARD.decode(sign(SignatureFormat::Base64)).unwrap(), der);
    let parsed = p256::ecdsa::Signature::from_der(&der).unwrap();
    assert_eq!(parsed.r().to_bytes().as_slice(), &raw[..32]);
    assert_eq!(parsed.s().to_bytes().as_slice(), &raw[32..]);
    let ring_der =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &point);
    ring_der
        .verify(message, &der)
        .expect("DER verifies under ring");
}

fn vphone(home: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("vphone").unwrap();
    cmd.env_remove("VPHONE_PASSPHRASE")
        .env_remove("VPHONE_PASSPHRASE_FILE")
        .env("VPHONE_HOME", home)
        .timeout(std::time::Duration::from_secs(60))
        .arg("phone");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_cli_prints_each_format_alone_on_stdout_and_names_the_key_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let hex_key = stdout(vphone(home).args(["new-key", "cli", "--purpose", "unrestricted"]));
    let point = lowercase_hex(hex_key.trim_end());
    let pem = stdout(vphone(home).args(["public-key", "cli", "--format", "pem"]));
    let key = p256::PublicKey::from_public_key_pem(&pem).unwrap();
    assert_eq!(p256::EncodedPoint::from(key).as_bytes(), &point[..]);
    let jwk: Value = serde_json::from_str(&stdout(vphone(home).args([
        "public-key",
        "cli",
        "--format",
        "jwk",
    ])))
    .unwrap();
    assert_eq!(jwk_point(&jwk), point);

    let json: Value = serde_json::from_str(&stdout(vphone(home).args([
        "--json",
        "public-key",
        "cli",
        "--format",
        "jwk",
    ])))
    .unwrap();
    assert_eq!(jwk_point(&json["public_key"]), point, "{json}");
    assert_eq!(json["key"]["purpose"], "unrestricted");
    assert_eq!(
        json["key"]["key_id"],
        Value::Null,
        "no bank knows this key yet"
    );
    assert_eq!(json["key"]["fingerprint"].as_str().unwrap().len(), 16);

    let raw = stdout(vphone(home).args([
        "sign-message",
        "cli",
        "--purpose",
        "unrestricted",
        "--message",
        "hi",
        "--format",
        "raw-base64",
    ]));
    let raw = STANDARD.decode(raw.trim_end()).unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(b"hi", &raw)
        .unwrap();
    vphone(home)
        .args([
            "sign-message",
            "cli",
            "--purpose",
            "restricted",
            "--message",
            "x",
        ])
        .assert()
        .code(4)
        .stdout("")
        .stderr(predicates::str::contains(
            "make one with `vphone phone new-key cli --purpose restricted`",
        ));
    vphone(home)
        .args(["public-key", "cli", "--format", "der"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("hex, spki-base64, pem, jwk"));
}
