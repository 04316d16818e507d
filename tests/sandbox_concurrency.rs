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
