//! Every flow route of the control API over HTTP against a real sandbox on 127.0.0.1: each
//! answers the library's outcome with timings, and the bank records what it says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_common;

use control_common::{Rig, bounded, challenge_of, types};
use serde_json::json;
use vphone::api::KeyPurpose;
use vphone::sandbox::attempts::Status;

fn step_names(outcome: &serde_json::Value) -> Vec<&str> {
    outcome["timings"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_add_key_approve_and_sign_answer_typed_outcomes_the_bank_confirms() {
    bounded(async {
        let rig = Rig::start().await;
        rig.created("flow").await;
        let bound = rig.post("/phones/flow/bind", json!({})).await;
        assert_eq!(bound["key_purpose"], "unrestricted");
        assert_eq!(
            step_names(&bound),
            [
                "create device",
                "wait for SMS",
                "sign OTP",
                "answer challenge"
            ]
        );
        assert!(bound["total_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(
            rig.bank_record(&challenge_of(&bound["challenge_id"]))
                .status,
            Status::Completed
        );
        assert_eq!(rig.get("/phones/flow").await["bound"], true);

        let added = rig
            .post("/phones/flow/keys", json!({"purpose": "restricted"}))
            .await;
        assert_eq!(added["key_purpose"], "restricted");
        assert_eq!(added["signed_with"], "unrestricted");
        let listed = rig.get("/phones/flow/keys").await;
        let purposes: Vec<&str> = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key_purpose"].as_str().unwrap())
            .collect();
        assert_eq!(purposes.len(), 2, "{listed}");
        assert!(purposes.contains(&"restricted"));

        let approved = rig
            .post("/phones/flow/approve", json!({"purpose": "restricted"}))
            .await;
        assert_eq!(approved["key_purpose"], "restricted");
        assert_eq!(approved["user_confirmed"], true);
        assert_eq!(
            rig.bank_record(&challenge_of(&approved["challenge_id"]))
                .status,
            Status::Completed
        );

        let device =
            vphone::api::DeviceId::from_server(bound["device_id"].as_str().unwrap()).unwrap();
        let challenge = rig
            .backend_challenge(&device, Some(KeyPurpose::Unrestricted))
            .await;
        let signed = rig
            .post("/phones/flow/sign", json!({"challenge_id": challenge}))
            .await;
        assert_eq!(signed["challenge_id"], challenge.to_string());
        assert_eq!(signed["user_confirmed"], false);
        assert_eq!(
            step_names(&signed),
            ["fetch challenge", "sign", "answer challenge"]
        );
        assert_eq!(rig.bank_record(&challenge).status, Status::Completed);

        let events = rig.all_events().await;
        let kinds = types(&events);
        for expected in [
            "phone_created",
            "device_bound",
            "key_added",
            "flow_finished",
        ] {
            assert!(kinds.contains(&expected), "{kinds:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_challenge_change_by_each_method_and_delete_device() {
    bounded(async {
        let rig = Rig::start().await;
        rig.bound("misc").await;
        let sms = rig.post("/phones/misc/sms-challenge", json!({})).await;
        assert_eq!(
            step_names(&sms),
            ["create challenge", "wait for SMS", "answer challenge"]
        );
        assert_eq!(
            rig.bank_record(&challenge_of(&sms["challenge_id"])).status,
            Status::Completed
        );

        for (via, method, name) in [
            ("device", "device_signing", "Dora"),
            ("sms", "mobile_number", "Sam"),
            ("static", "static", "Stan"),
        ] {
            let changed = rig
                .post(
                    "/phones/misc/change",
                    json!({"first_name": name, "via": via}),
                )
                .await;
            assert_eq!(changed["status"], "COMPLETED", "{changed}");
            assert_eq!(changed["delivery_method"], method);
            let person = vphone::api::PersonId::from_server(
                rig.get("/phones/misc").await["person_id"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(
                rig.backend.get_person(&person).await.unwrap().first_name,
                name
            );
        }
        let (status, err) = rig
            .call("POST", "/phones/misc/change", Some(json!({})))
            .await;
        assert_eq!(status, 400, "{err}");

        let deleted = rig.call("DELETE", "/phones/misc/device", None).await;
        assert_eq!(deleted.0, 200, "{}", deleted.1);
        assert_eq!(deleted.1["already_deleted"], false);
        let device =
            vphone::api::DeviceId::from_server(deleted.1["device_id"].as_str().unwrap()).unwrap();
        let at_bank = rig.backend.get_device(&device).await.unwrap();
        assert!(
            at_bank.deleted_at.is_some(),
            "the bank did not delete the device"
        );
        let shown = rig.get("/phones/misc").await;
        assert_eq!(shown["bound"], false);
        assert_eq!(shown["keys"], json!([]));
        let devices = rig.get("/phones/misc/devices?include_deleted=true").await;
        assert!(devices[0]["deleted_at"].is_string(), "{devices}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_flows_answer_the_error_shape_with_the_cli_exit_codes() {
    bounded(async {
        let rig = Rig::start().await;
        rig.created("unbound").await;
        // Local state: not bound (exit 4, HTTP 409).
        let (status, err) = rig.call("POST", "/phones/unbound/approve", None).await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["error"]["exit_code"], 4);
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not bound")
        );

        rig.post("/phones/unbound/bind", json!({})).await;
        // Refused by the bank (exit 1, HTTP 422) with the bank's status and code.
        let unknown = "0123456789abcdef0123456789abcdef";
        let (status, err) = rig
            .call(
                "POST",
                "/phones/unbound/sign",
                Some(json!({"challenge_id": unknown})),
            )
            .await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["exit_code"], 1);
        assert_eq!(err["error"]["kind"], "refused");
        assert_eq!(err["error"]["status"], 404);
        assert_eq!(err["error"]["step"], "sign: fetch challenge");
        // Binding twice is refused locally.
        let (status, err) = rig.call("POST", "/phones/unbound/bind", None).await;
        assert_eq!(status, 409, "{err}");
        // The failure is an event too.
        let events = rig.all_events().await;
        let failed = events
            .iter()
            .find(|e| e["type"] == "flow_finished" && e["data"]["ok"] == false)
            .unwrap();
        assert_eq!(failed["data"]["error"]["exit_code"], 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_prompt_holds_a_restricted_approve_until_the_api_decides() {
    bounded(async {
        let rig = Rig::start().await;
        rig.bound("hand").await;
        rig.post("/phones/hand/keys", json!({"purpose": "restricted"}))
            .await;
        let put = rig
            .call(
                "PUT",
                "/phones/hand/policy",
                Some(json!({"prompt": "manual"})),
            )
            .await;
        assert_eq!(put.0, 200);
        assert_eq!(put.1, json!({"prompt": "manual", "fault": "none"}));

        // Approve: the flow waits in the prompt until a decision arrives.
        let flow = rig.call(
            "POST",
            "/phones/hand/approve",
            Some(json!({"purpose": "restricted"})),
        );
        let decide = async {
            let pending = rig.pending_approval("hand").await;
            assert_eq!(pending["key_purpose"], "restricted");
            let id = pending["id"].as_u64().unwrap();
            rig.post(&format!("/phones/hand/approvals/{id}/approve"), json!({}))
                .await
        };
        let ((status, out), decided) = tokio::join!(flow, decide);
        assert_eq!(status, 200, "{out}");
        assert_eq!(decided["decision"], "approved");
        assert_eq!(
            rig.bank_record(&challenge_of(&out["challenge_id"])).status,
            Status::Completed
        );

        // Deny: the flow fails as refused by the user, and nothing was signed.
        let flow = rig.call(
            "POST",
            "/phones/hand/approve",
            Some(json!({"purpose": "restricted"})),
        );
        let decide = async {
            let id = rig.pending_approval("hand").await["id"].as_u64().unwrap();
            rig.post(&format!("/phones/hand/approvals/{id}/deny"), json!({}))
                .await
        };
        let ((status, err), _) = tokio::join!(flow, decide);
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["exit_code"], 1);
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("declined"),
            "{err}"
        );
        assert_eq!(rig.get("/phones/hand/approvals").await, json!([]));
        // Deciding again is refused: nothing is pending.
        let (status, _) = rig
            .call("POST", "/phones/hand/approvals/1/approve", None)
            .await;
        assert_eq!(status, 404);
    })
    .await;
}
