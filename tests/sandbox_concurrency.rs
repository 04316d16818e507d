//! 1,000 bindings in parallel from many tasks: every device is bound exactly once and no
//! person ever has more than five bound devices.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::{Bank, Key};
use serde_json::json;
use std::sync::Arc;

const PERSONS: usize = 200;
const ATTEMPTS_PER_PERSON: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_parallel_bindings_respect_the_device_limit() {
    let bank = Arc::new(Bank::start().await);
    // All persons share the test number, so every OTP is 212212.
    let mut persons = Vec::new();
    for _ in 0..PERSONS {
        persons.push(bank.verified_person_with("+15550101").await);
    }
    let mut tasks = Vec::new();
    for person in &persons {
        for _ in 0..ATTEMPTS_PER_PERSON {
            let bank = bank.clone();
            let person = person.clone();
            tasks.push(tokio::spawn(async move {
                let key = Key::new();
                let (s, b) = bank
                    .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "race"})))
                    .await;
                if s == 409 {
                    assert_eq!(b["errors"][0]["code"], "device_limit_reached");
                    return (person, None);
                }
                assert_eq!(s, 202, "{b}");
                let device = b["id"].as_str().unwrap().to_owned();
                let path = format!("/v1/mfa/challenges/signatures/{}", b["challenge"]["id"].as_str().unwrap());
                let body = json!({"signature": key.sign(b"212212")});
                // The same answer twice at once: at most one may bind.
                let (a, b2) = tokio::join!(
                    bank.call("PUT", &path, Some(body.clone())),
                    bank.call("PUT", &path, Some(body))
                );
                let mut bound = 0;
                for (status, body) in [a, b2] {
                    match status.as_u16() {
                        204 => bound += 1,
                        403 => assert_eq!(body["errors"][0]["code"], "challenge_already_used"),
                        409 => assert_eq!(body["errors"][0]["code"], "device_limit_reached"),
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                assert!(bound <= 1, "a device was bound twice");
                (person, (bound == 1).then_some(device))
            }));
        }
    }
    let mut bound_per_person = std::collections::HashMap::<String, Vec<String>>::new();
    for task in tasks {
        let (person, device) = task.await.unwrap();
        let entry = bound_per_person.entry(person).or_default();
        if let Some(device) = device {
            entry.push(device);
        }
    }
    let mut total = 0;
    for person in &persons {
        let claimed = bound_per_person.get(person).cloned().unwrap_or_default();
        assert_eq!(claimed.len(), 5, "exactly five of seven attempts bind");
        let (_, list) = bank
            .call(
                "GET",
                &format!("/v1/mfa/devices?filter[person_id]={person}&page[size]=100"),
                None,
            )
            .await;
        let mut listed: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        let mut claimed = claimed;
        listed.sort();
        claimed.sort();
        assert_eq!(
            listed, claimed,
            "the bank lists exactly the devices that were bound"
        );
        total += listed.len();
    }
    assert_eq!(total, PERSONS * 5);
    assert_eq!(bank.state().stats().bindings, (PERSONS * 5) as u64);
}

/// Deleting devices, adding keys to them, signing with them, binding new devices and sweeping,
/// all at once for the same persons: nothing deadlocks (the locks follow one order, see
/// `sandbox::state`), a deleted device's keys are all released, even one added while it was
/// being deleted, and the person's bound count matches the devices listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_adding_keys_signing_binding_and_sweeping_at_once_never_deadlock() {
    const PERSONS: usize = 12;
    const NEW_BINDINGS: usize = 3;
    let bank = Arc::new(Bank::start().await);
    let number = "+15550101";
    let mut persons = Vec::new();
    for _ in 0..PERSONS {
        let person = bank.verified_person_with(number).await;
        let mut phones = Vec::new();
        for _ in 0..4 {
            phones.push(Arc::new(bank.bind(&person, number).await));
        }
        persons.push((person, phones));
    }
    let storm = async {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sweeper = {
            let (bank, stop) = (bank.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bank.state().sweep();
                }
            })
        };
        let mut tasks = Vec::new();
        for (person, phones) in &persons {
            for phone in phones {
                let (b, p) = (bank.clone(), phone.clone());
                tasks.push(tokio::spawn(async move {
                    let got = b
                        .call("DELETE", &format!("/v1/mfa/devices/{}", p.device_id), None)
                        .await;
                    assert_eq!(got.0, 204, "{}", got.1);
                    (None, 0)
                }));
                let (b, p) = (bank.clone(), phone.clone());
                tasks.push(tokio::spawn(async move {
                    let key = Key::new();
                    let got = b
                        .call(
                            "POST",
                            &format!("/v1/mfa/devices/{}/keys", p.device_id),
                            Some(json!({
                                "key": key.public_hex(), "key_type": "ecdsa-p256",
                                "key_purpose": "restricted",
                                "device_signature": {"signature_key_purpose": "unrestricted",
                                    "signature": p.key.sign(key.public_hex().as_bytes())}
                            })),
                        )
                        .await;
                    match got.0.as_u16() {
                        201 => (Some(key), 0),
                        403 | 404 => (None, 0),
                        other => panic!("adding a key: {other} {}", got.1),
                    }
                }));
                let (b, p) = (bank.clone(), phone.clone());
                tasks.push(tokio::spawn(async move {
                    let (s, c) = b
                        .call(
                            "POST",
                            "/v1/mfa/challenges/devices",
                            Some(json!({"device_id": p.device_id, "key_purpose": "unrestricted"})),
                        )
                        .await;
                    if s == 201 {
                        let path =
                            format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap());
                        let sig = p.key.sign(c["string_to_sign"].as_str().unwrap().as_bytes());
                        let got = b.call("PUT", &path, Some(json!({"signature": sig}))).await;
                        assert!(
                            matches!(got.0.as_u16(), 204 | 403),
                            "answering: {} {}",
                            got.0,
                            got.1
                        );
                    }
                    (None, 0)
                }));
            }
            for _ in 0..NEW_BINDINGS {
                let (b, person) = (bank.clone(), person.clone());
                tasks.push(tokio::spawn(async move {
                    let key = Key::new();
                    let (s, d) = b
                        .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "storm"})))
                        .await;
                    if s == 409 {
                        return (None, 0);
                    }
                    assert_eq!(s, 202, "{d}");
                    let path = format!("/v1/mfa/challenges/signatures/{}", d["challenge"]["id"].as_str().unwrap());
                    let got = b.call("PUT", &path, Some(json!({"signature": key.sign(b"212212")}))).await;
                    match got.0.as_u16() {
                        204 => (None, 1),
                        409 => (None, 0),
                        other => panic!("binding: {other} {}", got.1),
                    }
                }));
            }
        }
        let mut added = Vec::new();
        let mut bound = 0;
        for task in tasks {
            let (key, b) = task.await.unwrap();
            added.extend(key);
            bound += b;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sweeper.await.unwrap();
        (added, bound)
    };
    let (added, new_bound) = tokio::time::timeout(std::time::Duration::from_secs(120), storm)
        .await
        .expect("no deadlock: the storm ends");

    // Every original device is deleted; what is listed is exactly what the storm bound, and
    // the person's count agrees: each can bind up to five again, and not one more.
    let mut listed_total = 0;
    for (person, _) in &persons {
        let (_, list) = bank
            .call(
                "GET",
                &format!("/v1/mfa/devices?filter[person_id]={person}&page[size]=100"),
                None,
            )
            .await;
        let listed = list.as_array().unwrap().len();
        listed_total += listed;
        for _ in listed..5 {
            bank.bind(person, number).await;
        }
        let (s, b) = bank
            .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": Key::new().public_hex(), "name": "sixth"})))
            .await;
        assert_eq!(s, 409, "{b}");
        assert_eq!(b["errors"][0]["code"], "device_limit_reached");
    }
    assert_eq!(listed_total, new_bound);
    // A key added to a device that was then deleted was released with it.
    let fresh = bank.verified_person_with(number).await;
    for key in added {
        let (s, b) = bank
            .call("POST", "/v1/mfa/devices", Some(json!({"person_id": fresh, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "reuse"})))
            .await;
        assert_eq!(
            s, 202,
            "the restricted key was released when its device was deleted: {b}"
        );
    }
}
