//! The sandbox's OpenAPI document (`GET /sandbox/openapi.json`) names exactly the routes and
//! methods its router serves. Whether every answer matches the document's schemas is checked
//! by schemathesis against a running sandbox (`.ci/schemathesis.sh`).
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::collections::BTreeSet;

const VERBS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (METHOD, path) pairs of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| VERBS.contains(&k.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (METHOD, path) pairs registered in `sandbox::router`, read from its source: axum cannot
/// list a router's routes, and the live probe below covers the other direction.
fn routed() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/sandbox/mod.rs");
    let start = source.find("pub fn router(").unwrap();
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap()];
    let mut out = BTreeSet::new();
    for (i, piece) in body.split(".route(").enumerate().skip(1) {
        let piece = piece.split(".fallback(").next().unwrap();
        let path = piece
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("route {i} of sandbox::router has no literal path: {piece}"));
        let mut methods = 0;
        for verb in VERBS {
            let call = format!("{verb}(");
            let mut at = 0;
            while let Some(found) = piece[at..].find(&call) {
                let pos = at + found;
                let before = piece[..pos].chars().next_back().unwrap_or(' ');
                if !(before.is_alphanumeric() || before == '_' || before == ':') {
                    out.insert((verb.to_uppercase(), path.to_owned()));
                    methods += 1;
                }
                at = pos + call.len();
            }
        }
        assert!(methods > 0, "no method found for {path}");
    }
    out
}

fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push_str("0123456789abcdef0123456789abcdef");
        rest = &rest[rest.find('}').unwrap() + 1..];
    }
    out + rest
}

#[tokio::test]
async fn the_openapi_document_and_the_router_name_the_same_routes() {
    let sandbox = vphone::sandbox::spawn(vphone::sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = sandbox.base_url();
    let r = http
        .get(format!("{base}/sandbox/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let documented = documented(&doc);
    let routed = routed();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /sandbox/openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );

    // The live router serves each documented (method, path), and refuses every other method
    // on that path with 405: whatever else it answers, it is not "no route".
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = format!("{base}{}", concrete(path));
        for verb in VERBS {
            let method = reqwest::Method::from_bytes(verb.to_uppercase().as_bytes()).unwrap();
            let status = http
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap()
                .status();
            let served = documented.contains(&(verb.to_uppercase(), path.clone()));
            if served {
                assert!(status != 404 && status != 405, "{method} {path}: {status}");
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented");
            }
        }
    }
    sandbox.shutdown().await;
}

#[test]
fn every_refusal_and_every_operation_is_described() {
    let doc: Value = serde_json::from_str(vphone::sandbox::openapi::OPENAPI_JSON).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, op) in item.as_object().unwrap() {
            if !VERBS.contains(&verb.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("4XX"),
                "{verb} {path} does not describe its refusals"
            );
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{verb} {path} has no success"
            );
            assert!(op["operationId"].is_string(), "{verb} {path}");
            let security = &op["security"];
            if path.starts_with("/v1/") {
                assert_eq!(
                    security,
                    &serde_json::json!([{"bearer": []}]),
                    "{verb} {path}"
                );
            } else if path.ends_with("/token") {
                assert_eq!(
                    security,
                    &serde_json::json!([{"basic": []}]),
                    "{verb} {path}"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_fault_counter_of_the_stats_answer_is_documented() {
    let sandbox = vphone::sandbox::spawn(vphone::sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let stats: Value = reqwest::get(format!("{}/sandbox/stats", sandbox.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(vphone::sandbox::openapi::OPENAPI_JSON).unwrap();
    let documented = doc["components"]["schemas"]["Stats"]["properties"]
        .as_object()
        .unwrap();
    // The work counters may grow freely (the schema allows more properties); the fault
    // counters are the stats' documented contract.
    let faults: Vec<&String> = stats
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("faults") || *k == "instance")
        .collect();
    assert!(faults.len() >= 5, "{faults:?}");
    for key in faults {
        assert!(
            documented.contains_key(key),
            "{key} is not documented in Stats"
        );
    }
    sandbox.shutdown().await;
}
