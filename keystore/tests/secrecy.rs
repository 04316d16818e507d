//! No secret ever shows up in `Debug` or `Display` output, and restricted keys ask the user.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use vphone_keystore::{
    AlwaysApprove, AlwaysDeny, ApproveAfter, KeyAlgorithm, KeyPurpose, KeystoreError, Passphrase,
    PresenceError, SealParams, Seed, SigningKey, TerminalPrompt, Vault, hazmat, verify_hex,
};

const PASSPHRASE: &str = "tr0ub4dor&3-very-secret";

fn assert_hides(shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{shown:?} leaks a secret");
    }
}

#[test]
fn signing_key_debug_shows_only_id_algorithm_purpose_and_fingerprint() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(algorithm, KeyPurpose::Restricted);
        let secret = hazmat::secret_scalar_hex(&key);
        let shown = format!("{key:?} {key:#?}");
        assert_hides(&shown, &[secret.as_str(), &key.public_key_hex()]);
        assert!(shown.contains(&key.key_id().to_string()));
        assert!(shown.contains(&key.fingerprint()));
    }
}

#[test]
fn vault_debug_lists_keys_and_meta_without_secrets() {
    let mut vault = Vault::new();
    vault.generate_key(KeyPurpose::Unrestricted).unwrap();
    vault.generate_key(KeyPurpose::Restricted).unwrap();
    vault.set_meta("device_id", "d-1");
    let secrets: Vec<_> = vault.keys().map(hazmat::secret_scalar_hex).collect();
    let shown = format!("{vault:?}");
    assert_hides(
        &shown,
        &secrets.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    assert!(shown.contains("d-1"));
}

#[test]
fn seed_and_passphrase_debug_are_redacted() {
    let hex = "ab".repeat(32);
    let seed = Seed::from_hex(&hex).unwrap();
    assert_hides(&format!("{seed:?} {:?}", seed.clone()), &[&hex, "171, 171"]);
    let pass = Passphrase::new(PASSPHRASE.to_owned());
    assert_eq!(format!("{pass:?}"), "Passphrase(<redacted>)");
}

#[test]
fn errors_never_contain_key_material_or_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.toml");
    let mut vault = Vault::new();
    vault.generate_key(KeyPurpose::Restricted).unwrap();
    let key = vault.key(KeyPurpose::Restricted).unwrap();
    let secret = hazmat::secret_scalar_hex(key);
    let pass = Passphrase::new(PASSPHRASE.to_owned()).with_cost(SealParams::for_tests());
    vault.save(&path, Some(&pass)).unwrap();

    let wrong = Passphrase::new("nope".to_owned()).with_cost(SealParams::for_tests());
    let mut errors: Vec<KeystoreError> = vec![
        Vault::load(&path, None).unwrap_err(),
        Vault::load(&path, Some(&wrong)).unwrap_err(),
        vault
            .sign(KeyPurpose::Restricted, b"m", &AlwaysDeny, "login")
            .unwrap_err(),
        vault
            .sign(KeyPurpose::Unrestricted, b"m", &AlwaysApprove, "login")
            .unwrap_err(),
        vault.generate_key(KeyPurpose::Restricted).unwrap_err(),
        Seed::from_hex(&format!("{}zz", &secret[..62])).unwrap_err(),
        "secret".parse::<KeyPurpose>().unwrap_err(),
        hazmat::signing_key_from_secret_hex(
            KeyAlgorithm::EcdsaP256,
            &"ff".repeat(32),
            KeyPurpose::Restricted,
        )
        .unwrap_err(),
    ];
    std::fs::write(
        &path,
        format!("format_version = 1\n[[keys]]\nsecret = {}\n", &secret[..20]),
    )
    .unwrap();
    errors.push(Vault::load(&path, Some(&pass)).unwrap_err());
    for err in &errors {
        let shown = format!("{err} | {err:?}");
        assert_hides(&shown, &[secret.as_str(), &secret[..20], PASSPHRASE]);
    }
}

#[test]
fn verify_errors_do_not_echo_the_inputs() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, KeyPurpose::Unrestricted);
    let sig = key.sign_hex(b"m");
    let public = key.public_key_hex();
    for err in [
        verify_hex(&public.to_uppercase(), b"m", &sig).unwrap_err(),
        verify_hex(&public, b"m", &sig[..40]).unwrap_err(),
        verify_hex(&public, b"other", &sig).unwrap_err(),
    ] {
        assert_hides(
            &format!("{err} {err:?}"),
            &[&sig[..40], &public[2..40], &public[2..40].to_uppercase()],
        );
    }
}

fn restricted_vault() -> Vault {
    let mut vault = Vault::new();
    vault.generate_key(KeyPurpose::Restricted).unwrap();
    vault
}

#[test]
fn restricted_key_denied_by_the_user_is_a_typed_presence_error() {
    let err = restricted_vault()
        .sign(KeyPurpose::Restricted, b"m", &AlwaysDeny, "login")
        .unwrap_err();
    assert!(
        matches!(err, KeystoreError::Presence(PresenceError::Denied)),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the user declined the biometric prompt")
    );
}

#[test]
fn restricted_key_approved_by_the_user_signs_a_verifiable_signature() {
    let vault = restricted_vault();
    let sig = vault
        .sign(KeyPurpose::Restricted, b"m", &AlwaysApprove, "login")
        .unwrap();
    let public = vault.key(KeyPurpose::Restricted).unwrap().public_key_hex();
    assert_eq!(verify_hex(&public, b"m", &sig), Ok(()));
}

#[test]
fn approve_after_delays_the_restricted_signature() {
    let start = Instant::now();
    restricted_vault()
        .sign(
            KeyPurpose::Restricted,
            b"m",
            &ApproveAfter(Duration::from_millis(50)),
            "login",
        )
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn terminal_prompt_with_scripted_yes_approves_and_no_denies() {
    let vault = restricted_vault();
    let yes = TerminalPrompt::with_io(Cursor::new(b"y\n".to_vec()), std::io::sink());
    assert!(
        vault
            .sign(KeyPurpose::Restricted, b"m", &yes, "login")
            .is_ok()
    );
    let no = TerminalPrompt::with_io(Cursor::new(b"n\n".to_vec()), std::io::sink());
    let err = vault
        .sign(KeyPurpose::Restricted, b"m", &no, "login")
        .unwrap_err();
    assert!(matches!(
        err,
        KeystoreError::Presence(PresenceError::Denied)
    ));
}

#[test]
fn names_parse_and_display_as_on_the_wire() {
    for p in KeyPurpose::ALL {
        assert_eq!(p.to_string().parse::<KeyPurpose>().unwrap(), p);
    }
    assert_eq!(KeyPurpose::Unrestricted.to_string(), "unrestricted");
    assert_eq!(KeyAlgorithm::EcdsaP256.to_string(), "ecdsa-p256");
    assert_eq!(
        "ed25519".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::Ed25519
    );
    assert!("ECDSA-P256".parse::<KeyAlgorithm>().is_err());
}

#[test]
fn vaults_keys_and_prompts_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vault>();
    assert_send_sync::<SigningKey>();
    assert_send_sync::<Seed>();
    assert_send_sync::<Passphrase>();
    assert_send_sync::<TerminalPrompt>();
    assert_send_sync::<KeystoreError>();
}
