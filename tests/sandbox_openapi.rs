//! The sandbox's OpenAPI document (`GET /sandbox/openapi.json`) names exactly the routes and
//! methods its router serves, and states the limits its validation enforces: the tests below
//! read bounds, lengths, patterns and properties from the document and try them on a real
//! sandbox, so the two cannot drift apart unnoticed. Whether every answer matches the
//! document's schemas is checked by schemathesis against a running sandbox
//! (`.ci/schemathesis.sh`).
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use regex::Regex;
use sandbox_common::{Bank, assert_refused, two_partner_config};
use serde_json::{Value, json};
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

/// The document, parsed.
fn doc() -> Value {
    serde_json::from_str(vphone::sandbox::openapi::OPENAPI_JSON).unwrap()
}

/// The schema `schema` stands for, following `$ref`s (their sibling keywords, only
/// descriptions in this document, are dropped).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    while let Some(target) = schema["$ref"].as_str() {
        schema = doc
            .pointer(target.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {target}"));
    }
    schema
}

/// The component schema `name`, resolved.
fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    resolve(doc, &doc["components"]["schemas"][name])
}

/// A bound of an integer schema, wide enough for one past `u64::MAX`.
fn bound(schema: &Value, keyword: &str) -> Option<i128> {
    let value = &schema[keyword];
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
}

/// Whether a string schema's pattern matches `value` (ECMA-262 and the regex crate agree on
/// the syntax the document uses: classes, `\uXXXX` escapes, groups, counted repetition).
fn pattern_matches(schema: &Value, value: &str) -> bool {
    schema["pattern"]
        .as_str()
        .is_none_or(|pattern| Regex::new(pattern).unwrap().is_match(value))
}

/// Whether `value` is a valid string of `schema`: its length in characters and its pattern.
fn documented_valid(schema: &Value, value: &str) -> bool {
    let chars = value.chars().count() as u64;
    let min = schema["minLength"].as_u64().unwrap_or(0);
    let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
    (min..=max).contains(&chars) && pattern_matches(schema, value)
}

/// A string of exactly `chars` characters that the schema's pattern accepts (its length may
/// be outside the schema's bounds: that is how a test goes one past them).
fn text_of_length(schema: &Value, chars: usize) -> String {
    let candidates = [
        "x".repeat(chars),
        format!("a@{}", "b".repeat(chars.saturating_sub(2))),
    ];
    candidates
        .into_iter()
        .find(|c| c.chars().count() == chars && pattern_matches(schema, c))
        .unwrap_or_else(|| panic!("no sample of {chars} characters for {schema}"))
}

/// Values `schema` documents as valid: each bound of a string's length and of an integer,
/// its examples, both booleans, and objects whose members sit at their bounds.
fn valid_values(doc: &Value, schema: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = schema["examples"].as_array().cloned().unwrap_or_default();
    match schema["type"].as_str() {
        Some("string") => {
            if let Some(max) = schema["maxLength"].as_u64() {
                let min = schema["minLength"].as_u64().unwrap_or(0).max(1);
                for len in [min, max] {
                    out.push(json!(text_of_length(schema, len as usize)));
                }
            }
        }
        Some("boolean") => out.extend([json!(true), json!(false)]),
        Some("integer") => {
            for keyword in ["minimum", "maximum"] {
                out.push(schema[keyword].clone());
            }
        }
        Some("object") => {
            let members = schema["properties"].as_object().unwrap();
            for pick in [0, 1] {
                let object: serde_json::Map<String, Value> = members
                    .iter()
                    .map(|(name, member)| {
                        let values = valid_values(doc, resolve(doc, member));
                        (name.clone(), values[pick.min(values.len() - 1)].clone())
                    })
                    .collect();
                out.push(Value::Object(object));
            }
        }
        other => panic!("no valid values for type {other:?}: {schema}"),
    }
    for value in out.iter().filter_map(Value::as_str) {
        assert!(documented_valid(schema, value), "{value:?} breaks {schema}");
    }
    assert!(!out.is_empty(), "no valid value for {schema}");
    out
}

/// Values `schema` documents as invalid, each with the field (relative to the schema, dotted
/// for object members) the sandbox must name: one past each length bound and integer bound,
/// a value of another type, and an undocumented member of a closed object.
fn invalid_values(doc: &Value, schema: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    match schema["type"].as_str() {
        Some("string") => {
            out.push((String::new(), json!(7)));
            if let Some(max) = schema["maxLength"].as_u64() {
                out.push((
                    String::new(),
                    json!(text_of_length(schema, max as usize + 1)),
                ));
            }
            if schema["minLength"].as_u64().is_some_and(|min| min > 0) {
                out.push((String::new(), json!("")));
            }
        }
        Some("boolean") => out.push((String::new(), json!("true"))),
        Some("integer") => {
            out.push((String::new(), json!(1.5)));
            out.push((String::new(), json!("1")));
            // Only what a JSON number without a fraction can say (serde_json has no i128).
            if let Some(past) = bound(schema, "maximum").and_then(|m| u64::try_from(m + 1).ok()) {
                out.push((String::new(), json!(past)));
            }
            if let Some(past) = bound(schema, "minimum").and_then(|m| i64::try_from(m - 1).ok()) {
                out.push((String::new(), json!(past)));
            }
        }
        Some("object") => {
            out.push((String::new(), json!("an object")));
            if schema["additionalProperties"] == false {
                out.push(("nickname".to_owned(), json!({"nickname": "x"})));
            }
            for (name, member) in schema["properties"].as_object().unwrap() {
                for (field, value) in invalid_values(doc, resolve(doc, member)) {
                    let field = if field.is_empty() {
                        name.clone()
                    } else {
                        format!("{name}.{field}")
                    };
                    out.push((field, json!({ name: value })));
                }
            }
        }
        other => panic!("no invalid values for type {other:?}: {schema}"),
    }
    out
}

/// Asserts a 400 `validation_error` naming `field`.
#[track_caller]
fn assert_names_field(got: &(reqwest::StatusCode, Value), field: &str) {
    assert_refused_naming(got, "validation_error", field);
}

/// Asserts a 400 with this `code` naming `field`.
#[track_caller]
fn assert_refused_naming(got: &(reqwest::StatusCode, Value), code: &str, field: &str) {
    assert_refused(got, 400, code);
    assert_eq!(got.1["errors"][0]["source"]["field"], field, "{}", got.1);
}

/// A valid value for a required query parameter, so a test can vary the others.
fn required_query_value(name: &str, person: &str) -> String {
    match name {
        "filter[person_id]" => person.to_owned(),
        "number" => "+15550101".to_owned(),
        other => panic!("no valid value known for the required query parameter {other}: add one"),
    }
}

#[tokio::test]
async fn every_integer_query_parameter_accepts_its_documented_bounds_and_refuses_one_past() {
    // No long-poll slots: `wait_ms` at its maximum answers at once.
    let mut config = two_partner_config();
    config.max_long_polls = 0;
    let bank = Bank::start_with(config, false).await;
    let person = bank.person().await;
    let doc = doc();
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, op) in item.as_object().unwrap() {
            let Some(params) = op["parameters"].as_array() else {
                continue;
            };
            let query: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
            let required: Vec<(String, String)> = query
                .iter()
                .filter(|p| p["required"] == true)
                .map(|p| {
                    let name = p["name"].as_str().unwrap();
                    (name.to_owned(), required_query_value(name, &person))
                })
                .collect();
            for param in &query {
                let name = param["name"].as_str().unwrap();
                let schema = resolve(&doc, &param["schema"]);
                if schema["type"] != "integer" {
                    continue;
                }
                let (Some(min), Some(max)) = (bound(schema, "minimum"), bound(schema, "maximum"))
                else {
                    panic!("{verb} {path}: integer parameter {name} documents no bounds");
                };
                for (value, accepted) in
                    [(min, true), (max, true), (min - 1, false), (max + 1, false)]
                {
                    let mut pairs = required.clone();
                    pairs.push((name.to_owned(), value.to_string()));
                    let encoded = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs)
                        .finish();
                    let got = bank
                        .call(&verb.to_uppercase(), &format!("{path}?{encoded}"), None)
                        .await;
                    if accepted {
                        assert_eq!(got.0, 200, "{verb} {path}?{encoded}: {}", got.1);
                    } else {
                        assert_names_field(&got, name);
                    }
                }
                checked.push(name.to_owned());
            }
        }
    }
    checked.sort();
    assert_eq!(checked, ["after", "page[number]", "page[size]", "wait_ms"]);
    bank.handle.shutdown().await;
}

#[tokio::test]
async fn every_documented_person_field_is_accepted_within_its_bounds_and_refused_past_them() {
    let bank = Bank::start().await;
    let doc = doc();
    let schema = component(&doc, "CreatePerson");
    assert_eq!(
        schema["additionalProperties"], false,
        "the sandbox refuses undocumented person fields; the document must say so"
    );
    let properties = schema["properties"].as_object().unwrap();
    assert!(properties.len() >= 30, "{}", properties.len());
    let base = || json!({"first_name": "Ada", "last_name": "Lovelace"});
    for (field, property) in properties {
        let property = resolve(&doc, property);
        for value in valid_values(&doc, property) {
            let mut body = base();
            body[field] = value.clone();
            let (status, person) = bank.call("POST", "/v1/persons", Some(body)).await;
            assert_eq!(status, 201, "{field} = {value}: {person}");
            assert_eq!(person[field], value, "{field} is returned as sent");
        }
        for (member, value) in invalid_values(&doc, property) {
            let mut body = base();
            body[field] = value.clone();
            let got = bank.call("POST", "/v1/persons", Some(body)).await;
            let named = if member.is_empty() {
                field.clone()
            } else {
                format!("{field}.{member}")
            };
            assert_names_field(&got, &named);
        }
    }
    // Fields the document leaves out are refused, also those the bank sets itself.
    for field in ["nickname", "id", "created_at", "First_Name"] {
        assert!(!properties.contains_key(field));
        let mut body = base();
        body[field] = json!("x");
        let got = bank.call("POST", "/v1/persons", Some(body)).await;
        assert_names_field(&got, field);
    }
    for field in schema["required"].as_array().unwrap() {
        let mut body = base();
        body.as_object_mut()
            .unwrap()
            .remove(field.as_str().unwrap());
        let got = bank.call("POST", "/v1/persons", Some(body)).await;
        assert_refused(&got, 400, "validation_error");
    }
    bank.handle.shutdown().await;
}

#[tokio::test]
async fn a_person_update_follows_the_documented_fields_and_bounds() {
    let bank = Bank::start().await;
    let doc = doc();
    let schema = component(&doc, "UpdatePerson");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["minProperties"], 1);
    let person = bank.person().await;
    let path = format!("/v1/persons/{person}");
    for (field, property) in schema["properties"].as_object().unwrap() {
        let property = resolve(&doc, property);
        for value in valid_values(&doc, property) {
            let (status, body) = bank
                .call("PATCH", &path, Some(json!({ field: value })))
                .await;
            assert_eq!(status, 202, "{field} = {value}: {body}");
        }
        for (_, value) in invalid_values(&doc, property) {
            let got = bank
                .call("PATCH", &path, Some(json!({ field: value })))
                .await;
            assert_names_field(&got, field);
        }
    }
    let got = bank.call("PATCH", &path, Some(json!({}))).await;
    assert_refused(&got, 400, "validation_error");
    let got = bank
        .call("PATCH", &path, Some(json!({"salutation": "MS"})))
        .await;
    assert_refused(&got, 400, "validation_error");
    bank.handle.shutdown().await;
}

/// Text that probes the free-text rule: every script, zero-width and space characters inside
/// and alone, control characters (C0, DEL, C1), bidi controls, line and paragraph separators.
const TEXT_PROBES: &[&str] = &[
    "Ada",
    "Zoë",
    "李小龙",
    "عائشة",
    "😀",
    "O'Brien-Smith",
    "a\u{200D}b",
    " Ada ",
    "Ada\u{202F}Lovelace",
    "x\u{2028}",
    "x\u{FEFF}",
    "",
    " ",
    "\u{A0}",
    "\u{3000}",
    "\u{1680}",
    "\u{2028}",
    "\u{202F}",
    "\u{200B}",
    "\u{FEFF} \u{2060}",
    "\u{180E}",
    "Ada\u{0}",
    "Ada\nLovelace",
    "\tAda",
    "Ada\u{7F}",
    "\u{85}Ada",
    "Ada\u{9F}",
    "\u{202E}adA",
    "Ada\u{202A}",
    "Ada\u{2066}x\u{2069}",
];

/// E-mail probes on top of [`TEXT_PROBES`].
const EMAIL_PROBES: &[&str] = &[
    "a@b",
    "ada.lovelace+x@example.com",
    "a\u{200B}@b",
    "a\u{180E}@b",
    "a\u{FEFF}@b",
    "ada",
    "@example.com",
    "ada@",
    "a@b@c",
    "ada @example.com",
    "ada@example.com ",
    "a\u{A0}@b",
    "a\u{2003}@b",
    "a\u{3000}@b",
    "a\u{85}@b",
    "a@b\u{202E}",
];

#[tokio::test]
async fn the_documented_text_patterns_accept_exactly_what_the_sandbox_accepts() {
    let bank = Bank::start().await;
    let doc = doc();
    let name = component(&doc, "PersonText");
    let email = component(&doc, "Email");
    let salutation = component(&doc, "Salutation");
    let cases = TEXT_PROBES
        .iter()
        .flat_map(|probe| {
            [
                ("first_name", name, *probe),
                ("salutation", salutation, *probe),
                ("email", email, *probe),
            ]
        })
        .chain(EMAIL_PROBES.iter().map(|probe| ("email", email, *probe)));
    for (field, schema, probe) in cases {
        let mut body = json!({"first_name": "Ada", "last_name": "Lovelace"});
        body[field] = json!(probe);
        let got = bank.call("POST", "/v1/persons", Some(body)).await;
        let documented = documented_valid(schema, probe);
        if documented {
            assert_eq!(
                got.0, 201,
                "{field} = {probe:?} is documented valid: {}",
                got.1
            );
        } else {
            assert_names_field(&got, field);
        }
    }
    bank.handle.shutdown().await;
}

/// The document's example public key: the P-256 base point, which is on the curve.
fn example_key(doc: &Value) -> String {
    component(doc, "PublicKeyHex")["examples"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every property of `schema` whose limits [`valid_values`] and [`invalid_values`] can try:
/// strings with a length cap, and objects of them.
fn bounded_properties<'a>(doc: &'a Value, schema: &'a Value) -> Vec<(&'a String, &'a Value)> {
    schema["properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, property)| (name, resolve(doc, property)))
        .filter(|(_, p)| p["maxLength"].is_u64() || p["type"] == "object")
        .collect()
}

#[tokio::test]
async fn a_binding_follows_the_documented_name_device_data_app_signature_and_key_rules() {
    let bank = Bank::start().await;
    let doc = doc();
    let schema = component(&doc, "CreateDeviceRequest");
    assert_eq!(schema["additionalProperties"], false);
    let (person, _) = bank.verified_person().await;
    // Bindings are never answered here, so one key serves them all.
    let base = json!({"person_id": person, "key_type": "ecdsa-p256", "key": example_key(&doc), "name": "Pixel"});
    let bind = |body: Value| bank.call("POST", "/v1/mfa/devices", Some(body));
    let (status, answer) = bind(base.clone()).await;
    assert_eq!(status, 202, "the documented example binds: {answer}");

    let bounded = bounded_properties(&doc, schema);
    let names: Vec<&str> = bounded.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["device_data", "name", "sms_challenge"]);
    for (field, property) in bounded {
        for value in valid_values(&doc, property) {
            let mut body = base.clone();
            body[field] = value.clone();
            let (status, answer) = bind(body).await;
            assert_eq!(status, 202, "{field} = {value}: {answer}");
        }
        for (member, value) in invalid_values(&doc, property) {
            let mut body = base.clone();
            body[field] = value;
            let named = if member.is_empty() {
                field.clone()
            } else {
                format!("{field}.{member}")
            };
            assert_names_field(&bind(body).await, &named);
        }
    }
    for field in schema["required"].as_array().unwrap() {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .remove(field.as_str().unwrap());
        assert_refused(&bind(body).await, 400, "validation_error");
    }
    let mut body = base.clone();
    body["nickname"] = json!("x");
    assert_refused(&bind(body).await, 400, "validation_error");

    let app_signature = component(&doc, "AppSignature");
    for probe in [
        "abc",
        "12345a",
        "12345",
        "123456",
        "a123456b",
        "1234512345",
        "abc+/=",
        "a-b",
        "ÄÖ",
    ] {
        let mut body = base.clone();
        body["sms_challenge"] = json!({"app_signature": probe});
        let got = bind(body).await;
        if documented_valid(app_signature, probe) {
            assert_eq!(got.0, 202, "app_signature {probe:?}: {}", got.1);
        } else {
            assert_names_field(&got, "sms_challenge.app_signature");
        }
    }

    let key_schema = component(&doc, "PublicKeyHex");
    for _ in 0..20 {
        let key = sandbox_common::Key::new().public_hex();
        assert!(documented_valid(key_schema, &key), "{key}");
    }
    let example = example_key(&doc);
    let compressed = format!("03{}", &example[2..66]);
    let off_curve = format!("04{}", "0".repeat(128));
    // What the pattern refuses, the sandbox refuses; what it lets through must still be a
    // point on the curve, as the description says.
    for (probe, fits_the_pattern) in [
        (example.to_uppercase(), false),
        (compressed, false),
        (example[..128].to_owned(), false),
        (format!("{example}00"), false),
        (example.replacen("04", "05", 1), false),
        (off_curve, true),
    ] {
        assert_eq!(
            documented_valid(key_schema, &probe),
            fits_the_pattern,
            "{probe}"
        );
        let mut body = base.clone();
        body["key"] = json!(probe);
        let got = bind(body).await;
        assert_eq!(got.0, 400, "key {probe}: {}", got.1);
        assert_eq!(got.1["errors"][0]["source"]["field"], "key", "{}", got.1);
    }
    bank.handle.shutdown().await;
}

#[tokio::test]
async fn a_signature_answer_follows_the_documented_der_shape_and_device_data_cap() {
    let bank = Bank::start().await;
    let doc = doc();
    let signature_schema = component(&doc, "SignatureHex");
    let answer_schema = component(&doc, "AnswerSignature");
    assert_eq!(answer_schema["additionalProperties"], false);
    let signer = sandbox_common::Key::new();
    for i in 0..50u32 {
        let signature = signer.sign(&i.to_be_bytes());
        assert!(
            documented_valid(signature_schema, &signature),
            "{signature}"
        );
    }

    let (person, number) = bank.verified_person().await;
    let key = sandbox_common::Key::new();
    let (_, challenge) = bank.start_binding(&person, &key).await;
    let otp = bank.last_otp(&number).await;
    let good = key.sign(otp.as_bytes());
    let der = key.sign_der(otp.as_bytes());
    let raw_r_s = {
        // r and s as 32 bytes each, as a careless client sends them.
        let r_len = usize::from(der[3]);
        let r = &der[4..4 + r_len];
        let s = &der[4 + r_len + 2..];
        let fixed = |v: &[u8]| hex::encode(&v[v.len().saturating_sub(32)..]);
        format!("{:0>64}{:0>64}", fixed(r), fixed(s))
    };
    let path = format!("/v1/mfa/challenges/signatures/{challenge}");
    let long_data =
        "x".repeat(component(&doc, "DeviceData")["maxLength"].as_u64().unwrap() as usize);
    // Malformed answers are refused with 400 and spend no attempt, so the good one still
    // binds afterwards. The pattern refuses the first ones; the DER lengths of the others
    // are beyond a pattern, as the description says.
    let encoding = "invalid_signature_encoding";
    for (signature, refused_by_the_pattern) in [
        (String::new(), true),
        ("30".to_owned(), true),
        (good.to_uppercase(), true),
        (format!("31{}", &good[2..]), true),
        (raw_r_s, false),
        (format!("{good}00"), false),
    ] {
        if refused_by_the_pattern {
            assert!(
                !documented_valid(signature_schema, &signature),
                "{signature}"
            );
        }
        let got = bank
            .call("PUT", &path, Some(json!({ "signature": signature })))
            .await;
        assert_refused_naming(&got, encoding, "signature");
    }
    let too_long = json!({"signature": good, "device_data": format!("{long_data}x")});
    let got = bank.call("PUT", &path, Some(too_long)).await;
    assert_names_field(&got, "device_data");
    let (status, answer) = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": good, "device_data": long_data})),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    bank.handle.shutdown().await;
}

#[tokio::test]
async fn a_change_request_takes_exactly_one_documented_shape_of_authorization_and_confirmation() {
    let bank = Bank::start().await;
    let doc = doc();
    for (name, branches) in [
        (
            "AuthorizeChangeRequest",
            ["AuthorizeByTan", "AuthorizeByDevice"],
        ),
        (
            "ConfirmChangeRequest",
            ["ConfirmWithTan", "ConfirmWithSignature"],
        ),
    ] {
        let one_of: Vec<&str> = component(&doc, name)["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["$ref"].as_str().unwrap().rsplit('/').next().unwrap())
            .collect();
        assert_eq!(one_of, branches, "{name}");
    }
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let change = || async {
        let (status, held) = bank
            .call(
                "PATCH",
                &format!("/v1/persons/{person}"),
                Some(json!({"first_name": "Augusta"})),
            )
            .await;
        assert_eq!(status, 202, "{held}");
        format!("/v1/change_requests/{}", held["id"].as_str().unwrap())
    };
    // A field of the other branch is refused, as the closed branches document.
    let request = change().await;
    let mixed = json!({"delivery_method": "device_signing", "device_id": phone.device_id, "person_id": person});
    assert!(!documented_valid_object(&doc, "AuthorizeByDevice", &mixed));
    let got = bank
        .call("POST", &format!("{request}/authorize"), Some(mixed))
        .await;
    assert_names_field(&got, "person_id");
    let by_device = json!({"delivery_method": "device_signing", "device_id": phone.device_id});
    assert!(documented_valid_object(
        &doc,
        "AuthorizeByDevice",
        &by_device
    ));
    let (status, authorized) = bank
        .call("POST", &format!("{request}/authorize"), Some(by_device))
        .await;
    assert_eq!(status, 201, "{authorized}");
    let signature = phone
        .key
        .sign(authorized["string_to_sign"].as_str().unwrap().as_bytes());
    let mixed = json!({"device_id": phone.device_id, "signature": signature, "person_id": person});
    assert!(!documented_valid_object(
        &doc,
        "ConfirmWithSignature",
        &mixed
    ));
    let got = bank
        .call("POST", &format!("{request}/confirm"), Some(mixed))
        .await;
    assert_names_field(&got, "person_id");
    let confirm = json!({"device_id": phone.device_id, "signature": signature});
    assert!(documented_valid_object(
        &doc,
        "ConfirmWithSignature",
        &confirm
    ));
    let (status, done) = bank
        .call("POST", &format!("{request}/confirm"), Some(confirm))
        .await;
    assert_eq!(status, 201, "{done}");

    let request = change().await;
    let by_tan = json!({"delivery_method": "static", "person_id": person});
    assert!(documented_valid_object(&doc, "AuthorizeByTan", &by_tan));
    let (status, authorized) = bank
        .call("POST", &format!("{request}/authorize"), Some(by_tan))
        .await;
    assert_eq!(status, 201, "{authorized}");
    let confirm = json!({"person_id": person, "tan": "212212"});
    assert!(documented_valid_object(&doc, "ConfirmWithTan", &confirm));
    let (status, done) = bank
        .call("POST", &format!("{request}/confirm"), Some(confirm))
        .await;
    assert_eq!(status, 201, "{done}");
    bank.handle.shutdown().await;
}

/// Whether `body` has the required members of the closed object schema `name` and no other,
/// with string members valid for theirs.
fn documented_valid_object(doc: &Value, name: &str, body: &Value) -> bool {
    let schema = component(doc, name);
    let properties = schema["properties"].as_object().unwrap();
    let body = body.as_object().unwrap();
    let required_present = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .all(|field| body.contains_key(field.as_str().unwrap()));
    let members_valid = body.iter().all(|(field, value)| {
        properties.get(field).is_some_and(|property| {
            let property = resolve(doc, property);
            let in_enum = property["enum"]
                .as_array()
                .is_none_or(|words| words.contains(value));
            let is_const = property.get("const").is_none_or(|c| c == value);
            let text_ok = value
                .as_str()
                .is_none_or(|text| documented_valid(property, text));
            in_enum && is_const && text_ok
        })
    });
    assert_eq!(schema["additionalProperties"], false, "{name}");
    required_present && members_valid
}

#[tokio::test]
async fn every_member_of_a_delivered_sms_is_documented() {
    let bank = Bank::start().await;
    let doc = doc();
    let schema = component(&doc, "SmsMessage");
    let (_, number) = bank.verified_person().await;
    let messages = bank.sms(&number).await;
    assert!(!messages.is_empty());
    let properties = schema["properties"].as_object().unwrap();
    for message in messages {
        for key in message.as_object().unwrap().keys() {
            assert!(
                properties.contains_key(key),
                "{key} is not documented in SmsMessage"
            );
        }
        for key in schema["required"].as_array().unwrap() {
            assert!(
                message.get(key.as_str().unwrap()).is_some(),
                "{key} missing: {message}"
            );
        }
    }
    bank.handle.shutdown().await;
}

/// An operation of the document: its path, method, the operation object and its path item.
struct Operation<'a> {
    label: String,
    op: &'a Value,
    item: &'a Value,
}

impl Operation<'_> {
    /// The (location, name) of its parameters, the path item's and its own.
    fn parameters(&self, doc: &Value) -> Vec<(String, String)> {
        [&self.item["parameters"], &self.op["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| {
                let p = resolve(doc, p);
                let field = |k: &str| p[k].as_str().unwrap().to_owned();
                (field("in"), field("name"))
            })
            .collect()
    }

    /// The schema of its JSON request body, if it has one.
    fn body<'d>(&self, doc: &'d Value) -> Option<&'d Value>
    where
        Self: 'd,
    {
        let body = self.op.get("requestBody")?;
        let schema = &resolve(doc, body)["content"]["application/json"]["schema"];
        Some(resolve(doc, schema))
    }
}

/// Every operation of the document by `operationId`, and by its `operationRef`
/// (`#/paths/<escaped path>/<method>`).
fn operations(doc: &Value) -> Vec<(String, String, Operation<'_>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !VERBS.contains(&method.as_str()) {
                continue;
            }
            let id = op["operationId"].as_str().unwrap().to_owned();
            let reference = format!(
                "#/paths/{}/{method}",
                path.replace('~', "~0").replace('/', "~1")
            );
            let label = format!("{} {path}", method.to_uppercase());
            out.push((id, reference, Operation { label, op, item }));
        }
    }
    out
}

/// The schemas `schema` may take: its `oneOf`/`anyOf` branches (resolved), or itself.
fn branches<'a>(doc: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let schema = resolve(doc, schema);
    for keyword in ["oneOf", "anyOf"] {
        if let Some(list) = schema[keyword].as_array() {
            return list.iter().flat_map(|s| branches(doc, s)).collect();
        }
    }
    vec![schema]
}

/// Whether the JSON pointer `pointer` (without its `#`) names a place a value of `schema` can
/// have: each segment a property of an object schema or an index of an array schema.
fn pointer_fits(doc: &Value, schema: &Value, pointer: &str) -> bool {
    let Some(rest) = pointer.strip_prefix('/') else {
        return pointer.is_empty();
    };
    let (segment, rest) = rest.split_once('/').map_or((rest, ""), |(s, r)| (s, r));
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!("/{rest}")
    };
    let segment = segment.replace("~1", "/").replace("~0", "~");
    branches(doc, schema).into_iter().any(|s| {
        if let Some(property) = s["properties"].get(&segment) {
            return pointer_fits(doc, property, &rest);
        }
        segment.parse::<usize>().is_ok()
            && s.get("items")
                .is_some_and(|items| pointer_fits(doc, items, &rest))
    })
}

/// Whether the runtime expression `expression` reads something the source operation has:
/// a path or query parameter of its request, a field of its request body, or a field of the
/// answer `response` (the response object the link is on).
fn expression_fits(doc: &Value, source: &Operation, response: &Value, expression: &str) -> bool {
    if let Some(pointer) = expression.strip_prefix("$response.body#") {
        let schema = &response["content"]["application/json"]["schema"];
        return pointer_fits(doc, schema, pointer);
    }
    if let Some(pointer) = expression.strip_prefix("$request.body#") {
        return source
            .body(doc)
            .is_some_and(|schema| pointer_fits(doc, schema, pointer));
    }
    for location in ["path", "query", "header"] {
        if let Some(name) = expression.strip_prefix(&format!("$request.{location}.")) {
            return source
                .parameters(doc)
                .contains(&(location.to_owned(), name.to_owned()));
        }
    }
    false
}

/// What is wrong with the link body value `value` for a request body of `schema` (empty when
/// nothing): every member a property of the schema (of one branch when it has several), each
/// constant valid for its property, each runtime expression one the source can answer.
fn body_problems(
    doc: &Value,
    schema: &Value,
    value: &Value,
    source: &Operation,
    response: &Value,
) -> Vec<String> {
    if let Some(expression) = value.as_str().filter(|v| v.starts_with('$')) {
        return if expression_fits(doc, source, response, expression) {
            Vec::new()
        } else {
            vec![format!("{expression} reads nothing of {}", source.label)]
        };
    }
    let mut best: Option<Vec<String>> = None;
    for branch in branches(doc, schema) {
        let mut problems = Vec::new();
        if let Some(members) = value.as_object() {
            for (field, member) in members {
                match branch["properties"].get(field) {
                    Some(property) => {
                        problems.extend(body_problems(doc, property, member, source, response))
                    }
                    None => problems.push(format!("{field} is not a field of the request body")),
                }
            }
        } else if let Some(text) = value.as_str() {
            let in_enum = branch["enum"]
                .as_array()
                .is_none_or(|words| words.contains(value));
            let is_const = branch.get("const").is_none_or(|c| c == value);
            if !(in_enum && is_const && documented_valid(branch, text)) {
                problems.push(format!("{text:?} is not valid for its field"));
            }
        }
        if best.as_ref().is_none_or(|b| problems.len() < b.len()) {
            best = Some(problems);
        }
    }
    best.unwrap_or_default()
}

/// What is wrong with the link `name` on `response` of `source` (empty when nothing).
fn link_problems(doc: &Value, source: &Operation, response: &Value, link: &Value) -> Vec<String> {
    let all = operations(doc);
    let target = match (link["operationId"].as_str(), link["operationRef"].as_str()) {
        (Some(id), None) => all.iter().find(|(i, _, _)| i == id),
        (None, Some(reference)) => all.iter().find(|(_, r, _)| r == reference),
        _ => return vec!["names neither an operationId nor an operationRef, or both".into()],
    };
    let Some((_, _, target)) = target else {
        return vec![format!("names no operation of the document: {link}")];
    };
    let mut problems = Vec::new();
    let parameters = target.parameters(doc);
    for (key, expression) in link["parameters"].as_object().into_iter().flatten() {
        let (location, name) = match key.split_once('.') {
            Some((l, n)) if ["path", "query", "header", "cookie"].contains(&l) => (Some(l), n),
            _ => (None, key.as_str()),
        };
        if !parameters
            .iter()
            .any(|(l, n)| n == name && location.is_none_or(|x| x == l))
        {
            problems.push(format!("{key} is not a parameter of {}", target.label));
        }
        let expression = expression.as_str().unwrap_or_default();
        if expression.starts_with('$') && !expression_fits(doc, source, response, expression) {
            problems.push(format!("{expression} reads nothing of {}", source.label));
        }
    }
    if let Some(body) = link.get("requestBody") {
        match target.body(doc) {
            Some(schema) => problems.extend(body_problems(doc, schema, body, source, response)),
            None => problems.push(format!("{} takes no request body", target.label)),
        }
    }
    let known = [
        "operationId",
        "operationRef",
        "parameters",
        "requestBody",
        "description",
        "x-schemathesis",
    ];
    for key in link.as_object().unwrap().keys() {
        if !known.contains(&key.as_str()) {
            problems.push(format!("unknown member {key}"));
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{} -> {}: {p}", source.label, target.label))
        .collect()
}

/// Every link of the document names an operation of it, sets only parameters and body
/// fields that operation has (constants valid for their fields), reads only what its source
/// operation's request or answer has, and sits on a success answer: schemathesis's stateful
/// phase follows these links to reach the operations that need an id, and a link that is
/// wrong silently sends random data instead.
#[test]
fn every_link_names_a_real_operation_parameter_and_body_field() {
    let doc = doc();
    let mut problems = Vec::new();
    let mut count = 0;
    for (_, _, source) in operations(&doc) {
        for (status, response) in source.op["responses"].as_object().unwrap() {
            let response = resolve(&doc, response);
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                count += 1;
                if !status.starts_with('2') {
                    problems.push(format!(
                        "{} {status} {name}: a link on a refusal",
                        source.label
                    ));
                }
                for problem in link_problems(&doc, &source, response, resolve(&doc, link)) {
                    problems.push(format!("{name}: {problem}"));
                }
            }
        }
    }
    assert!(count >= 30, "only {count} links");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The links bind a device with a fixed test key and add a second fixed key, so that the
/// stateful phase gets past binding: the binding answer they carry is that key's signature of
/// the test number's OTP, and the new key's signature is the first key's over the new key.
#[test]
fn the_fixed_keys_and_signatures_of_the_links_verify() {
    let doc = doc();
    let links = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["links"].clone()
    };
    let confirmed = links(
        "/v1/persons/{person_id}/mobile_number/confirm",
        "post",
        "201",
    );
    let bound = links("/v1/mfa/devices", "post", "202");
    let key = confirmed["CreateDevice"]["requestBody"]["key"]
        .as_str()
        .unwrap();
    assert_eq!(
        links("/v1/persons", "post", "201")["AddMobileNumber"]["requestBody"]["number"],
        "+15550101",
        "the binding signature is over the OTP of the test number"
    );
    let answer = bound["AnswerSignatureChallenge"]["requestBody"]["signature"]
        .as_str()
        .unwrap();
    vphone_keystore::verify_hex(key, b"212212", answer).unwrap();
    for (path, status) in [
        ("/v1/mfa/devices/{device_id}", "200"),
        ("/v1/mfa/devices/{device_id}/keys", "200"),
    ] {
        let add = &links(path, "get", status)["AddKey"]["requestBody"];
        let new_key = add["key"].as_str().unwrap();
        let signature = add["device_signature"]["signature"].as_str().unwrap();
        assert_ne!(new_key, key);
        assert_eq!(
            add["device_signature"]["signature_key_purpose"],
            "unrestricted"
        );
        vphone_keystore::verify_hex(key, new_key.as_bytes(), signature).unwrap();
    }
}
