//! Push and policy over HTTP: a challenge created directly at the bank by "the backend" is
//! pushed to a phone, which handles it by its prompt and fault; the sandbox's own record
//! says what the bank saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_common;

use control_common::{Rig, RigOptions, bounded, challenge_of, types};
use serde_json::json;
use vphone::api::KeyPurpose;
use vphone::sandbox::attempts::Status;

async fn set_policy(rig: &Rig, name: &str, policy: serde_json::Value) {
    let (status, body) = rig
        .call("PUT", &format!("/phones/{name}/policy"), Some(policy))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rig.get(&format!("/phones/{name}/policy")).await, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_challenge_is_approved_and_answered_by_default() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("push").await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("push", &challenge).await;
        assert_eq!(push["outcome"], "answered", "{push}");
        assert_eq!(push["fault"], "none");
        assert_eq!(push["answers"].as_array().unwrap().len(), 1);
        assert_eq!(push["answers"][0]["ok"], true);
        assert_eq!(push["result"]["challenge_id"], challenge.to_string());
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);
        let listed = rig.get("/phones/push/pushes").await;
        assert_eq!(listed[0]["id"], push["id"]);
        // The phone's event stream tells the story in order.
        let events = rig.events_after("/phones/push/events", 0).await;
        let kinds = types(&events);
        let story: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| {
                [
                    "challenge_pushed",
                    "prompt_shown",
                    "approved",
                    "answered",
                    "push_finished",
                ]
                .contains(k)
            })
            .collect();
        assert_eq!(
            story,
            [
                "challenge_pushed",
                "prompt_shown",
                "approved",
                "answered",
                "push_finished"
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_push_waits_for_approve_or_deny_from_the_api() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("sheet").await;
        rig.post("/phones/sheet/keys", json!({"purpose": "restricted"}))
            .await;
        set_policy(&rig, "sheet", json!({"prompt": "manual"})).await;

        // Approved through the API: the bank records the restricted challenge completed.
        let challenge = rig
            .backend_challenge(&device, Some(KeyPurpose::Restricted))
            .await;
        let pushed = rig
            .post("/phones/sheet/push", json!({"challenge_id": challenge}))
            .await;
        let pending = rig.pending_approval("sheet").await;
        assert_eq!(pending["challenge_id"], challenge.to_string());
        assert_eq!(pending["key_purpose"], "restricted");
        assert_eq!(rig.bank_record(&challenge).status, Status::Open);
        let id = pending["id"].as_u64().unwrap();
        rig.post(&format!("/phones/sheet/approvals/{id}/approve"), json!({}))
            .await;
        let push = rig.wait_push("sheet", pushed["id"].as_u64().unwrap()).await;
        assert_eq!(push["outcome"], "answered", "{push}");
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);

        // Denied: nothing is sent, the challenge stays open at the bank.
        let challenge = rig
            .backend_challenge(&device, Some(KeyPurpose::Restricted))
            .await;
        let pushed = rig
            .post("/phones/sheet/push", json!({"challenge_id": challenge}))
            .await;
        let id = rig.pending_approval("sheet").await["id"].as_u64().unwrap();
        let decided = rig
            .post(&format!("/phones/sheet/approvals/{id}/deny"), json!({}))
            .await;
        assert_eq!(decided["decision"], "denied");
        let push = rig.wait_push("sheet", pushed["id"].as_u64().unwrap()).await;
        assert_eq!(push["outcome"], "denied", "{push}");
        assert_eq!(push["answers"], json!([]));
        let record = rig.bank_record(&challenge);
        assert_eq!((record.status, record.failed), (Status::Open, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_challenge_cannot_be_fetched_again_records_no_answer() {
    bounded(async {
        // The phone fetches a pushed challenge, then fetches it again as it signs: the
        // second fetch is refused, so no answer is sent.
        let rig = Rig::with(RigOptions {
            faults: vec!["GET /v1/mfa/challenges/devices/*: status=503 every=2"],
            ..RigOptions::default()
        })
        .await;
        let device = rig.bound("refetch").await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("refetch", &challenge).await;
        assert_eq!(push["outcome"], "failed", "{push}");
        assert_eq!(push["answers"], json!([]), "{push}");
        assert_eq!(push["error"]["status"], 503, "{push}");
        let events = rig.events_after("/phones/refetch/events", 0).await;
        assert!(!types(&events).contains(&"answered"), "{events:?}");
        // The bank saw no answer.
        let record = rig.bank_record(&challenge);
        assert_eq!((record.status, record.failed), (Status::Open, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_is_refused_by_the_bank_and_the_challenge_stays_open() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("wrong").await;
        set_policy(&rig, "wrong", json!({"fault": "wrong_signature"})).await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("wrong", &challenge).await;
        assert_eq!(push["outcome"], "refused", "{push}");
        let answer = &push["answers"][0];
        assert_eq!(answer["sent"], "wrong_signature");
        assert_eq!(answer["ok"], false);
        assert_eq!(answer["status"], 403);
        assert_eq!(answer["code"], "invalid_signature");
        let record = rig.bank_record(&challenge);
        assert_eq!((record.status, record.failed), (Status::Open, 1));
        // Still open: a correct answer afterwards is accepted.
        rig.post("/phones/wrong/sign", json!({"challenge_id": challenge}))
            .await;
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_signature_is_refused_as_malformed_and_spends_no_attempt() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("bad").await;
        set_policy(&rig, "bad", json!({"fault": "malformed_signature"})).await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("bad", &challenge).await;
        assert_eq!(push["outcome"], "refused", "{push}");
        assert_eq!(push["answers"][0]["sent"], "malformed_signature");
        assert_eq!(push["answers"][0]["status"], 400);
        let record = rig.bank_record(&challenge);
        assert_eq!((record.status, record.failed), (Status::Open, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_twice_gets_the_second_answer_refused() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("twice").await;
        set_policy(&rig, "twice", json!({"fault": "answer_twice"})).await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("twice", &challenge).await;
        assert_eq!(push["outcome"], "answered", "{push}");
        let answers = push["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0]["ok"], true);
        assert_eq!(answers[1]["ok"], false);
        assert_eq!(answers[1]["status"], 403);
        assert_eq!(answers[1]["code"], "challenge_already_used");
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answer_leaves_the_challenge_pending_and_late_still_answers() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("silent").await;
        set_policy(&rig, "silent", json!({"fault": "never_answer"})).await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("silent", &challenge).await;
        assert_eq!(push["outcome"], "never_answered", "{push}");
        assert_eq!(push["answers"], json!([]));
        let record = rig.bank_record(&challenge);
        assert_eq!((record.status, record.failed), (Status::Open, 0));

        set_policy(
            &rig,
            "silent",
            json!({"fault": "late:20ms", "prompt": "delay:10ms"}),
        )
        .await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("silent", &challenge).await;
        assert_eq!(push["outcome"], "answered", "{push}");
        assert_eq!(push["fault"], "late:20ms");
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_denies_every_push_and_sends_nothing() {
    bounded(async {
        let rig = Rig::start().await;
        let device = rig.bound("no").await;
        set_policy(&rig, "no", json!({"prompt": "deny"})).await;
        let challenge = rig.backend_challenge(&device, None).await;
        let push = rig.push_and_wait("no", &challenge).await;
        assert_eq!(push["outcome"], "denied");
        assert_eq!(rig.bank_record(&challenge).status, Status::Open);
        let events = rig.events_after("/phones/no/events", 0).await;
        let denied = events.iter().find(|e| e["type"] == "denied").unwrap();
        assert_eq!(denied["data"]["by"], "policy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_without_a_challenge_id_creates_one_as_a_backend_would() {
    bounded(async {
        let rig = Rig::start().await;
        rig.bound("auto").await;
        let (status, pushed) = rig
            .call(
                "POST",
                "/phones/auto/push",
                Some(json!({"key_purpose": "unrestricted"})),
            )
            .await;
        assert_eq!(status, 202, "{pushed}");
        let challenge = challenge_of(&pushed["challenge_id"]);
        let push = rig.wait_push("auto", pushed["id"].as_u64().unwrap()).await;
        assert_eq!(push["outcome"], "answered");
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);
        // An unknown challenge fails the push, in the error shape.
        let unknown = "0123456789abcdef0123456789abcdef";
        let (_, pushed) = rig
            .call(
                "POST",
                "/phones/auto/push",
                Some(json!({"challenge_id": unknown})),
            )
            .await;
        let push = rig.wait_push("auto", pushed["id"].as_u64().unwrap()).await;
        assert_eq!(push["outcome"], "failed");
        assert_eq!(push["error"]["status"], 404);
        // Pushing to an unbound phone is refused at once.
        rig.created("loose").await;
        let (status, err) = rig.call("POST", "/phones/loose/push", None).await;
        assert_eq!(status, 409, "{err}");
    })
    .await;
}
