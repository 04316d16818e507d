//! The control API's phone routes, error shape, token, and OpenAPI document, over HTTP
//! against a real sandbox on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_common;

use control_common::{Rig, RigOptions, bounded};
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_is_created_listed_shown_and_forgotten() {
    bounded(async {
        let rig = Rig::start().await;
        let created = rig.created("alice").await;
        assert_eq!(created["phone"]["name"], "alice");
        assert_eq!(created["phone"]["number_verified"], true);
        assert_eq!(created["phone"]["on_this_server"], true);
        let person = created["outcome"]["person"]["id"].as_str().unwrap();
        assert_eq!(created["phone"]["person_id"], person);
        let steps = created["outcome"]["timings"]["steps"].as_array().unwrap();
        assert!(
            steps.iter().any(|s| s["step"] == "confirm OTP"),
            "{steps:?}"
        );

        let list = rig.get("/phones").await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["name"], "alice");

        let shown = rig.get("/phones/alice").await;
        assert_eq!(shown["person_id"], person);
        assert_eq!(shown["bound"], false);
        assert_eq!(
            shown["policy"],
            json!({"prompt": "approve", "fault": "none"})
        );
        assert_eq!(shown["pending_approvals"], 0);

        let (status, forgotten) = rig.call("DELETE", "/phones/alice", None).await;
        assert_eq!(status, 200, "{forgotten}");
        assert!(!rig.home.path().join("phones/alice.toml").exists());
        let (status, err) = rig.call("GET", "/phones/alice", None).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["exit_code"], 4);
        assert_eq!(rig.get("/phones").await, json!([]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_lists_keys_by_fingerprint_and_never_key_material() {
    bounded(async {
        let rig = Rig::start().await;
        rig.bound("keys").await;
        let shown = rig.get("/phones/keys").await;
        assert_eq!(shown["bound"], true);
        let keys = shown["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["purpose"], "unrestricted");
        let text = shown.to_string();
        // A private scalar or a public point would be 64+ hex digits in a row.
        let longest_hex = text
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap();
        assert!(longest_hex < 64, "key material in {text}");
        assert!(!text.contains("secret"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_phone_joins_an_existing_person() {
    bounded(async {
        let rig = Rig::start().await;
        let first = rig.created("first").await;
        let person = first["phone"]["person_id"].clone();
        let number = first["phone"]["number"].clone();
        let (status, second) = rig
            .call(
                "POST",
                "/phones",
                Some(json!({"name": "second", "person_id": person, "number": number})),
            )
            .await;
        assert_eq!(status, 201, "{second}");
        assert_eq!(second["phone"]["person_id"], person);
        assert_eq!(second["outcome"], Value::Null);
        // The joined phone really works at the bank: it binds to the same person.
        let bound = rig.post("/phones/second/bind", json!({})).await;
        let devices = rig.get("/phones/first/devices").await;
        assert_eq!(devices[0]["id"], bound["device_id"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_phone_that_exists_is_a_conflict_in_the_error_shape() {
    bounded(async {
        let rig = Rig::start().await;
        rig.created("twice").await;
        let (status, err) = rig
            .call("POST", "/phones", Some(json!({"name": "twice"})))
            .await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["error"]["exit_code"], 4);
        assert_eq!(err["error"]["kind"], "state");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("already exists")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_400_with_exit_code_2() {
    bounded(async {
        let rig = Rig::start().await;
        for (path, body) in [
            ("/phones", json!({"name": "../x"})),
            ("/phones", json!({"name": "ok", "number": "0151"})),
            ("/phones", json!({"name": "ok", "colour": "blue"})),
            ("/phones", json!({})),
        ] {
            let (status, err) = rig.call("POST", path, Some(body.clone())).await;
            assert_eq!(status, 400, "{body} -> {err}");
            assert_eq!(err["error"]["exit_code"], 2, "{err}");
            assert_eq!(err["error"]["kind"], "usage");
        }
        let (status, err) = rig.call("GET", "/phones/ghost", None).await;
        assert_eq!(status, 404, "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("ghost"));
        let (status, err) = rig.call("GET", "/nowhere", None).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["exit_code"], 2);
        let (status, err) = rig.call("PATCH", "/phones", None).await;
        assert_eq!(status, 405, "{err}");
        assert_eq!(err["error"]["exit_code"], 2);
        rig.created("pol").await;
        let (status, err) = rig
            .call(
                "PUT",
                "/phones/pol/policy",
                Some(json!({"prompt": "maybe"})),
            )
            .await;
        assert_eq!(status, 400, "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sms_route_returns_what_the_number_received_and_long_polls() {
    bounded(async {
        let rig = Rig::start().await;
        rig.created("texts").await;
        let sms = rig.get("/phones/texts/sms").await;
        let list = sms.as_array().unwrap();
        assert_eq!(list.len(), 1, "the verification SMS: {sms}");
        let seq = list[0]["seq"].as_u64().unwrap();
        assert!(list[0]["text"].as_str().unwrap().contains("code"));
        assert_eq!(
            rig.get(&format!("/phones/texts/sms?after={seq}")).await,
            json!([])
        );
        // A long-poll started before the SMS is sent returns it when it arrives.
        let poll = format!("/phones/texts/sms?after={seq}&wait_ms=20000");
        let waiting = rig.get(&poll);
        let trigger = rig.post("/phones/texts/sms-challenge", json!({}));
        let (got, _) = tokio::join!(waiting, trigger);
        assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
        assert!(got[0]["seq"].as_u64().unwrap() > seq);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_needs_it() {
    bounded(async {
        let token = "0123456789abcdef-test-token";
        let rig = Rig::with(RigOptions {
            token: Some(token.into()),
            ..RigOptions::default()
        })
        .await;
        for path in ["/phones", "/openapi.json", "/info", "/nowhere"] {
            let resp = rig.http.get(rig.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path}");
            let body: Value = resp.json().await.unwrap();
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Bearer")
            );
            assert!(!body.to_string().contains(token));
            let wrong = rig
                .http
                .get(rig.url(path))
                .bearer_auth("0123456789abcdef-test-tokeN")
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{path}");
        }
        // The rig sends the token on its own calls.
        assert_eq!(rig.get("/phones").await, json!([]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_names_the_bank_this_server_drives() {
    bounded(async {
        let rig = Rig::start().await;
        let info = rig.get("/info").await;
        assert_eq!(info["api_base"], rig.sandbox.base_url());
        assert_eq!(info["embedded_sandbox"], true);
    })
    .await;
}

/// `{name}` in both the router and the document; a concrete path for a request.
fn concrete(path: &str) -> String {
    path.replace("{name}", "nobody")
        .replace("{push_id}", "1")
        .replace("{approval_id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_and_the_router_name_the_same_routes() {
    bounded(async {
        let rig = Rig::start().await;
        let doc = rig.get("/openapi.json").await;
        assert_eq!(doc["openapi"], "3.1.0");
        let verbs = ["get", "put", "post", "delete", "patch", "head", "options"];
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| verbs.contains(&k.as_str()))
                    .map(|m| (m.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let routed: BTreeSet<(String, String)> = vphone::control::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_owned()))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from /openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
        // And the live router really serves each documented (method, path): whatever it
        // answers, it is not "no route" or "method not allowed".
        for (method, path) in &documented {
            if path.ends_with("/events") && method == "GET" {
                // An event stream never ends; its routing is covered by the events tests.
                continue;
            }
            let (status, body) = rig.call(method, &concrete(path), None).await;
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                status != 405 && !message.starts_with("no route"),
                "{method} {path}: {status} {body}"
            );
        }
        // Every operation points at a schema that exists.
        let text = doc.to_string();
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "missing schema {name}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_set_up_against_another_server_is_shown_but_not_driven() {
    bounded(async {
        let rig = Rig::start().await;
        // A phone file the CLI left behind, set up against another server.
        let elsewhere = vphone::client::ApiClient::new(vphone::client::ClientConfig::local(
            "http://127.0.0.1:9".parse().unwrap(),
            vphone::client::Credentials::sandbox_default(),
        ))
        .unwrap();
        let home = vphone::phone::Home::new(rig.home.path());
        vphone::phone::Phone::create(
            &home,
            vphone::phone::PhoneName::parse("stranger").unwrap(),
            elsewhere.clone(),
            vphone::phone::OtpSource::SandboxHttp(elsewhere),
            None,
        )
        .unwrap();
        let list = rig.get("/phones").await;
        assert_eq!(list[0]["name"], "stranger");
        assert_eq!(list[0]["on_this_server"], false);
        let (status, err) = rig.call("POST", "/phones/stranger/bind", None).await;
        assert_eq!(status, 409, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1:9"),
            "{err}"
        );
        // Forgetting it works.
        let (status, _) = rig.call("DELETE", "/phones/stranger", None).await;
        assert_eq!(status, 200);
    })
    .await;
}
