//! Every flow of API.md, driven by a real phone against the real sandbox on 127.0.0.1, and
//! again against the variant bank (the same sandbox answering in other servers' shapes:
//! long opaque ids, missing and unknown fields, 200s, lowercase statuses, PATCH applied at
//! once, no SMS challenges).
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

mod common;

use common::{Rig, Server, bounded, feed, person_of, unique_number};
use std::sync::Arc;
use vphone::api::{
    ChangeRequestStatus, CreateDeviceChallenge, DeliveryMethod, ErrorShape, KeyPurpose, Otp,
    PhoneNumber, UpdatePerson,
};
use vphone::client::Hint;
use vphone::phone::{
    Confirmation, OtpSource, PersonChange, Phone, PhoneError, PhoneName, person_named,
};
use vphone::sandbox::attempts::Status;
use vphone_keystore::AlwaysDeny;

/// Runs flow `$flow(server)` as two tests, `$flow::on_the_sandbox` and
/// `$flow::on_the_variant_bank`.
macro_rules! on_both {
    ($flow:ident) => {
        mod $flow {
            use super::*;

            #[tokio::test]
            async fn on_the_sandbox() {
                bounded(super::$flow(Server::Sandbox)).await;
            }

            #[tokio::test]
            async fn on_the_variant_bank() {
                bounded(super::$flow(Server::Variant)).await;
            }
        }
    };
}

fn first_name(name: &str) -> UpdatePerson {
    UpdatePerson {
        first_name: Some(name.to_owned()),
        ..UpdatePerson::default()
    }
}

async fn a_phone_registers_binds_and_adds_a_restricted_key(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = rig.phone("alice");
    let reg = phone
        .register(person_named("Alice", "Example"), unique_number())
        .await
        .unwrap();
    // The variant bank leaves `verified` out: the phone goes by the confirmation's 2xx.
    assert_eq!(reg.mobile_number.verified, server == Server::Sandbox);
    assert!(phone.profile().number_verified);
    let bind = phone.bind().await.unwrap();
    assert!(phone.profile().bound);
    assert!(bind.timings.get("wait for SMS").is_some());
    let added = phone.add_key(None).await.unwrap();
    assert_eq!(added.key_purpose, KeyPurpose::Restricted);
    assert_eq!(added.signed_with, KeyPurpose::Unrestricted);

    let devices = phone.devices(false).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, bind.device_id);
    assert_eq!(phone.device().await.unwrap().id, bind.device_id);
    let keys = phone.keys().await.unwrap();
    let mut purposes: Vec<_> = keys.keys.iter().map(|k| k.key_purpose).collect();
    purposes.sort();
    assert_eq!(purposes, [KeyPurpose::Unrestricted, KeyPurpose::Restricted]);
    assert_eq!(
        phone.profile().restricted_key_id.as_ref(),
        Some(&added.key_id)
    );
    let detail = rig
        .client
        .get_key(&bind.device_id, &added.key_id)
        .await
        .unwrap();
    assert_eq!(detail.key_purpose, KeyPurpose::Restricted);
}

on_both!(a_phone_registers_binds_and_adds_a_restricted_key);

async fn a_device_challenge_is_answered_by_id_with_the_key_it_names(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = rig.bound("bob").await;
    phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
    let device = phone.profile().device_id.clone().unwrap();
    for purpose in [KeyPurpose::Unrestricted, KeyPurpose::Restricted] {
        let challenge = rig
            .client
            .create_device_challenge(&CreateDeviceChallenge {
                device_id: device.clone(),
                key_purpose: Some(purpose),
                device_data: None,
            })
            .await
            .unwrap();
        // The variant bank's challenges do not say which key: the caller who asked for it
        // tells the phone.
        let out = match server {
            Server::Sandbox => phone.sign_challenge(&challenge.id).await.unwrap(),
            Server::Variant => {
                assert_eq!(challenge.key_purpose, None);
                phone
                    .sign_challenge_for(&challenge.id, Some(purpose))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(out.key_purpose, purpose);
        assert_eq!(out.user_confirmed, purpose == KeyPurpose::Restricted);
    }
    // The bank records the use of each key.
    let keys = phone.keys().await.unwrap();
    if server == Server::Sandbox {
        assert!(
            keys.keys.iter().all(|k| k.used_at.flatten().is_some()),
            "{keys:?}"
        );
    }
    // Without a purpose the bank picks the restricted key of a device with both.
    let out = phone.approve(None).await.unwrap();
    assert_eq!(out.key_purpose, KeyPurpose::Restricted);
}

on_both!(a_device_challenge_is_answered_by_id_with_the_key_it_names);

async fn a_denied_biometric_prompt_keeps_the_restricted_key_unused(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = rig.bound("carol").await;
    phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
    let phone = phone.with_presence(Arc::new(AlwaysDeny));
    let err = phone
        .approve(Some(KeyPurpose::Restricted))
        .await
        .unwrap_err();
    assert!(matches!(err, PhoneError::Presence { .. }), "{err:?}");
    assert!(!err.to_string().contains("--presence"), "{err}");
    assert_eq!(err.exit_code(), 1);
    // The CLI, not the library, says what to do next.
    let cli = vphone::phone::cli::CliError::from(err).to_string();
    assert!(cli.contains("--presence approve"), "{cli}");
    // The unrestricted key needs no prompt.
    phone.approve(Some(KeyPurpose::Unrestricted)).await.unwrap();
}

on_both!(a_denied_biometric_prompt_keeps_the_restricted_key_unused);

/// Asserts that the variant bank's HTML 404 for SMS challenges reads as "not offered",
/// condensed to one line.
#[track_caller]
fn assert_sms_challenges_not_offered(err: &PhoneError) {
    let client = err.client_error().expect("a refusal");
    assert_eq!(client.status(), Some(404), "{err}");
    assert_eq!(client.hint(), Some(Hint::NotOffered), "{err}");
    assert_eq!(client.remote().unwrap().shape, ErrorShape::Html);
    let text = err.to_string();
    assert!(
        text.contains("HTTP 404 HTML page: \"Cannot POST /v1/mfa/challenges/sms\""),
        "{text}"
    );
    assert!(!text.contains('<') && !text.contains('\n'), "{text}");
}

async fn an_sms_challenge_is_answered_from_the_inbox(server: Server) {
    let rig = Rig::on(server).await;
    let phone = rig.registered("dave").await;
    if server == Server::Variant {
        let err = phone.sms_challenge().await.unwrap_err();
        assert_sms_challenges_not_offered(&err);
        return;
    }
    let state = rig.sandbox.state();
    let first = phone.sms_challenge().await.unwrap();
    // A second challenge gets a new SMS, not the old one (the old code would be refused).
    let second = phone.sms_challenge().await.unwrap();
    assert_ne!(first.challenge_id, second.challenge_id);
    for out in [&first, &second] {
        let record = state.challenge_status(&out.challenge_id).unwrap();
        assert_eq!(
            (record.status, record.failed),
            (Status::Completed, 0),
            "the bank took the inbox's code at the first try"
        );
    }
}

on_both!(an_sms_challenge_is_answered_from_the_inbox);

async fn change_requests_are_confirmed_by_device_signing_sms_tan_and_static_tan(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = rig.bound("erin").await;
    let person = person_of(&phone);
    let cases = [
        (
            "Device",
            Confirmation::DeviceSigning,
            DeliveryMethod::DeviceSigning,
        ),
        ("Sms", Confirmation::Sms, DeliveryMethod::MobileNumber),
        (
            "Static",
            Confirmation::Static(Otp::parse("212212").unwrap()),
            DeliveryMethod::Static,
        ),
    ];
    for (name, via, method) in &cases {
        match phone.change_person(&first_name(name), via).await.unwrap() {
            PersonChange::Confirmed(out) => {
                assert_eq!(server, Server::Sandbox, "the variant bank applies at once");
                assert_eq!(out.status, ChangeRequestStatus::Completed);
                assert_eq!(out.delivery_method, *method);
            }
            PersonChange::AppliedWithoutConfirmation { person: p, .. } => {
                assert_eq!(server, Server::Variant, "the sandbox holds every change");
                assert_eq!((&p.id, p.first_name.as_str()), (&person, *name));
            }
        }
        let now = rig.client.get_person(&person).await.unwrap();
        assert_eq!(now.first_name, *name, "the change was carried out");
    }
    // With a restricted key, device signing uses it (and asks the user).
    phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
    phone
        .change_person(&first_name("Restricted"), &Confirmation::DeviceSigning)
        .await
        .unwrap();
    assert_eq!(
        rig.client.get_person(&person).await.unwrap().first_name,
        "Restricted"
    );
}

on_both!(change_requests_are_confirmed_by_device_signing_sms_tan_and_static_tan);

async fn deleting_the_mobile_number_is_confirmed_by_sms_tan(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = rig.registered("frank").await;
    let out = phone.delete_number(&Confirmation::Sms).await.unwrap();
    assert_eq!(out.status, ChangeRequestStatus::Completed);
    // Without a verified number the bank cannot bind: the error says why.
    let err = phone.bind().await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    let hint = err.client_error().and_then(|c| c.hint());
    assert_eq!(hint, Some(Hint::NoVerifiedNumber), "{err}");
    assert!(
        err.to_string().contains("no verified mobile number"),
        "{err}"
    );
}

on_both!(deleting_the_mobile_number_is_confirmed_by_sms_tan);

async fn the_in_process_inbox_and_the_static_test_code_work_like_the_outbox(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = Phone::new(
        PhoneName::parse("grace").unwrap(),
        rig.client.clone(),
        feed(&rig),
    );
    phone
        .register(person_named("Grace", "Hopper"), unique_number())
        .await
        .unwrap();
    let state = rig.sandbox.state();
    phone.bind().await.unwrap();
    assert_eq!(state.stats().bindings, 1, "the bank bound the device");
    match server {
        Server::Sandbox => {
            let out = phone.sms_challenge().await.unwrap();
            let record = state.challenge_status(&out.challenge_id).unwrap();
            assert_eq!((record.status, record.failed), (Status::Completed, 0));
        }
        Server::Variant => {
            assert_sms_challenges_not_offered(&phone.sms_challenge().await.unwrap_err())
        }
    }

    // The test number always receives 212212, as on the real Solaris sandbox.
    let mut fixed = Phone::new(
        PhoneName::parse("heidi").unwrap(),
        rig.client.clone(),
        OtpSource::Static(Otp::parse("212212").unwrap()),
    );
    fixed
        .register(person_named("Heidi", "Static"), PhoneNumber::test_number())
        .await
        .unwrap();
    fixed.bind().await.unwrap();
    assert_eq!(state.stats().bindings, 2, "212212 bound the second device");
    let verified = state.stats().verifications;
    let signed = fixed.approve(None).await.unwrap();
    assert_eq!(
        state.stats().verifications,
        verified + 1,
        "the bank verified the approval's signature"
    );
    if server == Server::Sandbox {
        let record = state.challenge_status(&signed.challenge_id).unwrap();
        assert_eq!(record.status, Status::Completed);
    }
}

on_both!(the_in_process_inbox_and_the_static_test_code_work_like_the_outbox);

async fn deleting_the_device_forgets_its_keys_and_a_new_binding_works(server: Server) {
    let rig = Rig::on(server).await;
    let mut phone = rig.bound("ivan").await;
    let old = phone.profile().device_id.clone().unwrap();
    phone.delete_device().await.unwrap();
    assert!(!phone.profile().bound);
    assert!(phone.key_purposes().is_empty());
    assert!(phone.devices(false).await.unwrap().is_empty());
    let deleted = phone.devices(true).await.unwrap();
    assert!(
        deleted
            .iter()
            .any(|d| d.id == old && d.deleted_at.is_some())
    );
    let again = phone.bind().await.unwrap();
    assert_ne!(again.device_id, old);
}

on_both!(deleting_the_device_forgets_its_keys_and_a_new_binding_works);
