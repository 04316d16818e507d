//! The vault file: round trips, sealing, atomic writes, permissions, and failed loads that
//! never touch the file.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use vphone_keystore::{
    AlwaysApprove, KeyAlgorithm, KeyPurpose, KeystoreError, Passphrase, SealParams, Seed,
    SigningKey, Vault,
};

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned()).with_cost(SealParams::for_tests())
}

fn sample_vault() -> Vault {
    let mut vault = Vault::new();
    vault.generate_key(KeyPurpose::Unrestricted).unwrap();
    vault
        .insert(SigningKey::derive(
            &Seed::from_u64(9),
            0,
            KeyPurpose::Restricted,
        ))
        .unwrap();
    vault
        .insert(SigningKey::generate(
            KeyAlgorithm::Ed25519,
            KeyPurpose::Unrestricted,
        ))
        .unwrap();
    vault.set_meta("person_id", "0123456789abcdef0123456789abcdefcper");
    vault.set_meta("bound", "true");
    vault
}

fn dir_and_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.toml");
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_same_vault(a: &Vault, b: &Vault) {
    let summary = |v: &Vault| {
        v.keys()
            .map(|k| {
                (
                    k.key_id(),
                    k.algorithm(),
                    k.purpose(),
                    k.created_at(),
                    k.public_key_hex(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(a), summary(b));
    assert_eq!(
        a.meta_iter().collect::<Vec<_>>(),
        b.meta_iter().collect::<Vec<_>>()
    );
    for purpose in KeyPurpose::ALL {
        let sa = a
            .sign(purpose, b"challenge", &AlwaysApprove, "test")
            .unwrap();
        let sb = b
            .sign(purpose, b"challenge", &AlwaysApprove, "test")
            .unwrap();
        assert_eq!(sa, sb, "RFC 6979 signatures are deterministic");
    }
}

#[test]
fn unsealed_vault_round_trips_with_the_same_keys_and_signatures() {
    let (_dir, path) = dir_and_path();
    let vault = sample_vault();
    vault.save(&path, None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("format_version = 1\n"), "{text}");
    assert_same_vault(&vault, &Vault::load(&path, None).unwrap());
}

#[test]
fn sealed_vault_round_trips_and_hides_keys_and_meta() {
    let (_dir, path) = dir_and_path();
    let vault = sample_vault();
    vault.save(&path, Some(&pass("correct horse"))).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("sealed = true"));
    assert!(text.contains("argon2id"));
    for key in vault.keys() {
        let secret = vphone_keystore::hazmat::secret_scalar_hex(key);
        assert!(!text.contains(secret.as_str()));
    }
    assert!(!text.contains("cper"), "meta is inside the ciphertext");
    assert_same_vault(
        &vault,
        &Vault::load(&path, Some(&pass("correct horse"))).unwrap(),
    );
}

#[test]
fn sealed_file_without_a_passphrase_says_how_to_give_one() {
    let (_dir, path) = dir_and_path();
    sample_vault().save(&path, Some(&pass("pw"))).unwrap();
    let err = Vault::load(&path, None).unwrap_err();
    assert!(matches!(err, KeystoreError::Sealed { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("VPHONE_PASSPHRASE"), "{msg}");
}

#[test]
fn wrong_passphrase_names_the_file_and_leaves_it_byte_identical() {
    let (_dir, path) = dir_and_path();
    sample_vault().save(&path, Some(&pass("right"))).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Vault::load(&path, Some(&pass("wrong"))).unwrap_err();
    assert!(
        matches!(err, KeystoreError::WrongPassphrase { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("wrong passphrase"), "{msg}");
    assert!(!msg.contains("right") && !format!("{err:?}").contains("right"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn truncated_files_are_reported_and_left_untouched() {
    for sealing in [None, Some(pass("pw"))] {
        let (_dir, path) = dir_and_path();
        sample_vault().save(&path, sealing.as_ref()).unwrap();
        let full = std::fs::read(&path).unwrap();
        for cut in [full.len() / 3, full.len() / 2, full.len() - 5] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let err = Vault::load(&path, sealing.as_ref()).unwrap_err();
            assert!(
                matches!(
                    err,
                    KeystoreError::Malformed { .. } | KeystoreError::WrongPassphrase { .. }
                ),
                "cut at {cut}: {err:?}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
            assert_eq!(std::fs::read(&path).unwrap(), &full[..cut]);
        }
    }
}

#[test]
fn corrupted_files_are_reported_and_left_untouched() {
    let (_dir, path) = dir_and_path();
    let cases: &[&[u8]] = &[
        b"",
        b"\xff\xfe not utf-8",
        b"this is { not toml",
        b"sealed = false\n",
        b"format_version = 1\n[[keys]]\nkey_id = \"nope\"\n",
        b"format_version = 1\nunexpected = 3\n",
        b"format_version = 1\nsealed = true\n",
    ];
    for case in cases {
        std::fs::write(&path, case).unwrap();
        let err = Vault::load(&path, Some(&pass("pw"))).unwrap_err();
        assert!(
            matches!(err, KeystoreError::Malformed { .. }),
            "{case:?}: {err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), *case);
    }
}

#[test]
fn hand_edited_secrets_are_reported_without_echoing_them() {
    let (_dir, path) = dir_and_path();
    let vault = sample_vault();
    vault.save(&path, None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let secret =
        vphone_keystore::hazmat::secret_scalar_hex(vault.key(KeyPurpose::Unrestricted).unwrap());
    // Flip one hex digit: a valid scalar whose public key no longer matches the file.
    let last = secret.chars().last().unwrap();
    let flipped = format!("{}{}", &secret[..63], if last == '0' { '1' } else { '0' });
    std::fs::write(&path, text.replace(secret.as_str(), &flipped)).unwrap();
    let err = Vault::load(&path, None).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("does not match"), "{shown}");
    assert!(!shown.contains(secret.as_str()) && !shown.contains(&flipped));

    // A secret of the wrong type: the parser's message must not echo it either.
    let as_number = text.replace(
        &format!("\"{}\"", secret.as_str()),
        "123456789012345678901234567890",
    );
    std::fs::write(&path, &as_number).unwrap();
    let err = Vault::load(&path, None).unwrap_err();
    assert!(matches!(err, KeystoreError::Malformed { .. }));
    assert!(!format!("{err} {err:?}").contains(secret.as_str()));
}

#[test]
fn unsupported_format_version_is_a_typed_error_naming_the_file() {
    let (_dir, path) = dir_and_path();
    std::fs::write(&path, "format_version = 2\nsealed = false\n").unwrap();
    let err = Vault::load(&path, None).unwrap_err();
    assert!(
        matches!(err, KeystoreError::UnsupportedFormat { ref found, .. } if found == "2"),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "format_version = 2\nsealed = false\n"
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_file() {
    let (_dir, path) = dir_and_path();
    let err = Vault::load(&path, None).unwrap_err();
    assert!(matches!(err, KeystoreError::Io { .. }));
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn a_leftover_temp_file_from_a_crash_does_not_break_load_or_save() {
    let (dir, path) = dir_and_path();
    let vault = sample_vault();
    vault.save(&path, None).unwrap();
    let before = std::fs::read(&path).unwrap();
    // A crash between write and rename leaves a temp file beside the real one.
    let leftover = dir
        .path()
        .join(format!(".phone.toml.tmp-{}-deadbeef", std::process::id()));
    std::fs::write(&leftover, b"half-written junk \x00\x01").unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the previous file is intact"
    );
    assert_same_vault(&vault, &Vault::load(&path, None).unwrap());
    vault.save(&path, None).unwrap();
    assert_same_vault(&vault, &Vault::load(&path, None).unwrap());
    assert_eq!(
        std::fs::read(&leftover).unwrap(),
        b"half-written junk \x00\x01"
    );
}

#[test]
fn save_leaves_no_temp_files_behind() {
    let (dir, path) = dir_and_path();
    sample_vault().save(&path, None).unwrap();
    sample_vault().save(&path, Some(&pass("pw"))).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["phone.toml".to_owned()]);
}

#[test]
fn a_failed_save_never_loses_the_previous_file() {
    let (dir, path) = dir_and_path();
    let vault = sample_vault();
    vault.save(&path, None).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Unusable KDF parameters make sealing fail before anything is written.
    let bad = Passphrase::new("pw".to_owned()).with_cost(SealParams {
        m_cost_kib: 0,
        t_cost: 0,
        p_cost: 0,
    });
    let err = sample_vault().save(&path, Some(&bad)).unwrap_err();
    assert!(matches!(err, KeystoreError::Seal(_)), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn saved_files_are_owner_only_and_stay_so_when_overwritten() {
    let (_dir, path) = dir_and_path();
    sample_vault().save(&path, None).unwrap();
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    sample_vault().save(&path, Some(&pass("pw"))).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn an_empty_vault_round_trips() {
    let (_dir, path) = dir_and_path();
    Vault::new().save(&path, None).unwrap();
    let loaded = Vault::load(&path, None).unwrap();
    assert_eq!(loaded.keys().count(), 0);
    assert_eq!(loaded.meta_iter().count(), 0);
}

#[test]
fn a_path_without_a_file_name_is_an_io_error() {
    let err = Vault::new().save(Path::new(""), None).unwrap_err();
    assert!(matches!(err, KeystoreError::Io { .. }), "{err:?}");
}
