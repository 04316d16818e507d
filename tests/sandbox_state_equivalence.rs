//! `vphone sandbox --state FILE` commits everything a request changed before it answers.
//!
//! A seeded random run (about 500 calls) of every state-changing call of the API, by two
//! partners: persons (create, PATCH held as a change request), mobile numbers (add,
//! authorize, confirm with the OTP read from `/sandbox/sms`, DELETE held as a change
//! request), bindings (start, answer with a P-256 signature of the OTP), restricted keys,
//! device and SMS challenges, change-request authorization (static, SMS, device signing) and
//! confirmation, device deletion; with refusals (bad input, the other partner's ids, limits,
//! rate limits, finished challenges) and wrong answers that count attempts. The child
//! process is SIGKILLed and started again on the same file every 10-50 calls; at each
//! restart everything the API shows about what the run made (persons, numbers, device lists,
//! devices, keys, challenges and how they finished, change requests, the counts of
//! `/sandbox/stats`) is read before and after, and must read the same. Once, challenges live
//! one second, so some expire; once, finished ones are kept one second, so the sweep forgets
//! them. At the end, what is still open is answered after the restart with exactly the
//! failed attempts it had left (on the file), and spent by one more (on a copy of the file),
//! so the attempts counted before the restart are the ones counted after it.
//!
//! A handler that changes memory and leaves a `Write` out of its `commit` shows here as a
//! difference between two readings, or as an attempt count that went back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sandbox_common;

use common::child::Listening;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sandbox_common::Key;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_vphone");
/// Seeds the sandbox (`--seed`) and the choice of operations: a failure replays.
const SEED: u64 = 20_261_130;
/// The run's random operations come in this many segments, each ended by a restart...
const SEGMENTS: usize = 16;
/// ... of this many operations.
const OPS_PER_SEGMENT: std::ops::Range<usize> = 10..50;
/// The config's limits, small so that the run reaches them.
const MAX_ATTEMPTS: u32 = 3;
const MAX_DEVICES: usize = 3;
/// The two partners of the config: (client id, secret).
const PARTNERS: [(&str, &str); 2] = [
    ("vphone-demo", "vphone-demo-secret"),
    ("second-partner", "second-partner-secret"),
];
/// Codes of a wrong answer: each counts as a failed attempt.
const COUNTED: [&str; 3] = [
    "invalid_otp",
    "invalid_signature",
    "restricted_key_required",
];

fn config_toml() -> String {
    let partners: String = PARTNERS
        .iter()
        .map(|(id, secret)| {
            format!("[[partners]]\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\nname = \"{id}\"\n")
        })
        .collect();
    format!(
        "max_failed_attempts = {MAX_ATTEMPTS}\nmax_devices_per_person = {MAX_DEVICES}\n\
         sms_per_person = 6\nsms_per_person_window = \"10m\"\n{partners}"
    )
}

/// `vphone sandbox` on `file` with the test's config and seed, and `extra` arguments.
fn sandbox_on_file(file: &Path, config: &Path, extra: &[&str]) -> Listening {
    let mut command = Command::new(BIN);
    command
        .args(["sandbox", "--listen", "127.0.0.1:0", "--state"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .args(["--seed", &SEED.to_string()])
        .args(extra)
        .env("RUST_LOG", "warn");
    Listening::start(command, "vphone sandbox")
}

/// A client of one sandbox process, with a token of each partner.
struct Api {
    http: reqwest::Client,
    base: String,
    tokens: Vec<String>,
}

impl Api {
    async fn connect(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut tokens = Vec::new();
        for (id, secret) in PARTNERS {
            tokens.push(sandbox_common::partner_token(&http, base, id, secret).await);
        }
        Api {
            http,
            base: base.to_owned(),
            tokens,
        }
    }

    /// `GET /sandbox/stats`.
    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/sandbox/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Calls as partner `who`; the status and the body (`null` when empty).
    async fn call(
        &self,
        who: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[who]);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The SMS to `number` with `seq > after`, waiting (at most 5 s) for the first.
    async fn sms_after(&self, number: &str, after: u64) -> Vec<Value> {
        self.http
            .get(format!(
                "{}/sandbox/sms?number={}&after={after}&wait_ms=5000",
                self.base,
                number.replace('+', "%2B")
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The code of an `errors` body, or "".
fn code(body: &Value) -> String {
    body["errors"][0]["code"].as_str().unwrap_or("").to_owned()
}

/// An answer as a snapshot keeps it: without the errors' fresh ids, and without the end of
/// a 404's detail, which names the retention (some restarts change it).
fn normalize(body: &mut Value) {
    let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) else {
        return;
    };
    for e in errors {
        let e = e.as_object_mut().unwrap();
        e.remove("id");
        if let Some(Value::String(detail)) = e.get_mut("detail")
            && let Some(at) = detail.find(" (a ")
        {
            detail.truncate(at);
        }
    }
}

/// Another six digits than `otp`.
fn wrong_otp(otp: &str) -> String {
    if otp == "000000" { "000001" } else { "000000" }.to_owned()
}

/// Where something answerable stands, as the run saw it in the answers it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Open,
    Completed,
    Spent,
    Expired,
}

#[derive(Clone, Debug)]
struct Attempts {
    life: Life,
    failed: u32,
}

impl Attempts {
    fn new() -> Self {
        Attempts {
            life: Life::Open,
            failed: 0,
        }
    }

    /// Follows what an answer got: 2xx completes, a wrong answer counts, an expired one is
    /// expired; any other refusal changes nothing. Says so if a finished one was answered.
    fn follow(&mut self, status: u16, code: &str) -> Result<(), String> {
        if (200..300).contains(&status) || (status == 403 && COUNTED.contains(&code)) {
            if self.life != Life::Open {
                return Err(format!(
                    "it was {:?} after {} failed answers, and is answered {status} {code} now",
                    self.life, self.failed
                ));
            }
            if (200..300).contains(&status) {
                self.life = Life::Completed;
            } else {
                self.failed += 1;
                if self.failed >= MAX_ATTEMPTS {
                    self.life = Life::Spent;
                }
            }
        } else if code == "challenge_expired" {
            self.life = Life::Expired;
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Person {
    id: String,
    owner: usize,
    number: Option<String>,
    verified: bool,
    /// The OTP of the number's verification and its attempts.
    otp: Option<(String, Attempts)>,
    bound: usize,
}

#[derive(Clone)]
struct Device {
    id: String,
    owner: usize,
    person: usize,
    key: Arc<Key>,
    restricted: Option<Arc<Key>>,
    bound: bool,
    deleted: bool,
}

#[derive(Clone)]
enum What {
    Binding {
        device: usize,
        otp: String,
        sent_to: String,
    },
    Signing {
        device: usize,
        sts: String,
        restricted: bool,
    },
    Sms {
        person: usize,
        otp: String,
        sent_to: String,
    },
}

#[derive(Clone)]
struct Challenge {
    id: String,
    owner: usize,
    what: What,
    a: Attempts,
}

#[derive(Clone)]
enum Proof {
    Tan {
        tan: String,
        sent_to: Option<String>,
    },
    Signature {
        device: usize,
        sts: String,
        restricted: bool,
    },
}

#[derive(Clone)]
struct ChangeRequest {
    id: String,
    owner: usize,
    person: usize,
    status: String,
    /// The authorization and the attempts of its confirmation.
    proof: Option<(Proof, Attempts)>,
}

/// Everything the run made, as it saw it.
#[derive(Clone, Default)]
struct World {
    persons: Vec<Person>,
    devices: Vec<Device>,
    challenges: Vec<Challenge>,
    change_requests: Vec<ChangeRequest>,
}

/// One of `0..n` for which `ok` holds, if any.
fn pick(rng: &mut StdRng, n: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let candidates: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
    (!candidates.is_empty()).then(|| candidates[rng.gen_range(0..candidates.len())])
}

/// How an answer is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Right,
    /// Well-formed and wrong: counts as a failed attempt.
    Wrong,
    /// For a restricted challenge: signed with the unrestricted key (counts too).
    OtherKey,
    /// Not DER: refused (400) before it counts.
    Malformed,
}

struct Run {
    api: Api,
    world: World,
    rng: StdRng,
    journal: Vec<String>,
    numbers: u32,
    /// The highest SMS `seq` seen.
    sms_seq: u64,
}

impl Run {
    /// Calls and journals; no call may fail with a server error.
    async fn call(
        &mut self,
        who: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (s, b) = self.api.call(who, method, path, body).await;
        // With the id an answer names, so that the history of a difference finds it.
        self.journal.push(format!(
            "#{} partner {who}: {method} {path} -> {s} {} {}",
            self.journal.len(),
            code(&b),
            b["id"].as_str().unwrap_or("")
        ));
        assert!(s < 500, "{method} {path}: {s} {b}");
        (s, b)
    }

    /// Fails with the history of `id` if `followed` says a finished one was answered.
    fn check(&self, followed: Result<(), String>, id: &str) {
        if let Err(e) = followed {
            panic!(
                "{id}: {e}; its history:\n    {}",
                self.history(id).join("\n    ")
            );
        }
    }

    /// Adds to the last journal line what its body named, for the history of a difference.
    fn note(&mut self, what: &str, id: &str) {
        let line = self.journal.last_mut().unwrap();
        line.push_str(&format!(" (for {what} {id})"));
    }

    /// The owner, or now and then the other partner (who must get 404 or 400).
    fn who(&mut self, owner: usize) -> usize {
        if self.rng.gen_ratio(1, 10) {
            1 - owner
        } else {
            owner
        }
    }

    /// A refusal for the other partner.
    fn check_isolated(&self, who: usize, owner: usize, s: u16) {
        assert!(
            who == owner || s == 404 || s == 400,
            "partner {who} reached partner {owner}'s data: {}",
            self.journal.last().unwrap()
        );
    }

    /// The code in the newest SMS to `number`, which must be new.
    async fn otp_sent_to(&mut self, number: &str) -> String {
        let messages = self.api.sms_after(number, self.sms_seq).await;
        let last = messages
            .last()
            .unwrap_or_else(|| panic!("no new SMS to {number}"));
        self.sms_seq = last["seq"].as_u64().unwrap();
        let text = last["text"].as_str().unwrap();
        text.split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .unwrap()
            .to_owned()
    }

    fn fresh_number(&mut self) -> String {
        self.numbers += 1;
        format!("+49151{:08}", self.numbers)
    }

    async fn create_person(&mut self, who: usize, valid: bool) -> Option<usize> {
        let n = self.world.persons.len();
        let body = if valid {
            json!({"first_name": format!("Ada{n}"), "last_name": "Lovelace", "email": format!("ada{n}@example.com")})
        } else {
            json!({"first_name": "Ada", "last_name": "Lovelace", "nickname": "not a field"})
        };
        let (s, b) = self.call(who, "POST", "/v1/persons", Some(body)).await;
        if s != 201 {
            assert_eq!((s, valid), (400, false), "{b}");
            return None;
        }
        self.world.persons.push(Person {
            id: b["id"].as_str().unwrap().to_owned(),
            owner: who,
            number: None,
            verified: false,
            otp: None,
            bound: 0,
        });
        Some(n)
    }

    async fn add_number(&mut self, p: usize, who: usize, valid: bool) {
        let number = if valid {
            self.fresh_number()
        } else {
            "0151 not e164".to_owned()
        };
        let path = format!("/v1/persons/{}/mobile_number", self.world.persons[p].id);
        let (s, _) = self
            .call(who, "POST", &path, Some(json!({"number": number})))
            .await;
        self.check_isolated(who, self.world.persons[p].owner, s);
        if s == 201 {
            let person = &mut self.world.persons[p];
            person.number = Some(number);
            person.verified = false;
            person.otp = None;
        }
    }

    async fn authorize_number(&mut self, p: usize, who: usize, same_number: bool) {
        let person = &self.world.persons[p];
        let number = match (&person.number, same_number) {
            (Some(n), true) => n.clone(),
            _ => "+4915199999999".to_owned(),
        };
        let path = format!("/v1/persons/{}/mobile_number/authorize", person.id);
        let (s, _) = self
            .call(who, "POST", &path, Some(json!({"number": number})))
            .await;
        self.check_isolated(who, self.world.persons[p].owner, s);
        if s == 201 {
            let otp = self.otp_sent_to(&number).await;
            self.world.persons[p].otp = Some((otp, Attempts::new()));
        }
    }

    async fn confirm_number(&mut self, p: usize, who: usize, answer: Answer) -> (u16, String) {
        let person = &self.world.persons[p];
        let number = person
            .number
            .clone()
            .unwrap_or_else(|| "+4915199999999".into());
        let otp = person
            .otp
            .as_ref()
            .map_or("212212".to_owned(), |o| o.0.clone());
        let token = if answer == Answer::Right {
            otp
        } else {
            wrong_otp(&otp)
        };
        let path = format!("/v1/persons/{}/mobile_number/confirm", person.id);
        let (s, b) = self
            .call(
                who,
                "POST",
                &path,
                Some(json!({"number": number, "token": token})),
            )
            .await;
        self.check_isolated(who, self.world.persons[p].owner, s);
        let c = code(&b);
        let person = &mut self.world.persons[p];
        if let Some((_, a)) = person.otp.as_mut() {
            let followed = a.follow(s, &c);
            self.check(followed, &self.world.persons[p].id);
        }
        let person = &mut self.world.persons[p];
        if s == 201 {
            person.verified = true;
        }
        (s, c)
    }

    async fn update_person(&mut self, p: usize, who: usize, variant: u32) {
        let n = self.journal.len();
        let body = match variant {
            0 => json!({}),
            1 => json!({"email": "no at sign"}),
            2 => json!({"last_name": format!("Hopper{n}"), "email": format!("g{n}@example.org")}),
            _ => json!({"first_name": format!("Grace{n}")}),
        };
        let path = format!("/v1/persons/{}", self.world.persons[p].id);
        let (s, b) = self.call(who, "PATCH", &path, Some(body)).await;
        self.held(p, who, s, &b);
    }

    async fn delete_number(&mut self, p: usize, who: usize) {
        let path = format!("/v1/persons/{}/mobile_number", self.world.persons[p].id);
        let (s, b) = self.call(who, "DELETE", &path, None).await;
        self.held(p, who, s, &b);
    }

    /// Keeps the change request a PATCH or DELETE answered with.
    fn held(&mut self, p: usize, who: usize, s: u16, b: &Value) {
        self.check_isolated(who, self.world.persons[p].owner, s);
        if s == 202 {
            assert_eq!(b["status"], "AUTHORIZATION_REQUIRED", "{b}");
            self.world.change_requests.push(ChangeRequest {
                id: b["id"].as_str().unwrap().to_owned(),
                owner: who,
                person: p,
                status: "AUTHORIZATION_REQUIRED".into(),
                proof: None,
            });
        }
    }

    /// `method`: 0 static, 1 mobile_number, 2 device_signing with `device`.
    async fn authorize_change(&mut self, c: usize, who: usize, method: u32, device: Option<usize>) {
        let cr = &self.world.change_requests[c];
        let person = &self.world.persons[cr.person];
        let body = match (method, device) {
            (0, _) => json!({"delivery_method": "static", "person_id": person.id}),
            (1, _) => json!({"delivery_method": "mobile_number", "person_id": person.id}),
            (_, Some(d)) => {
                json!({"delivery_method": "device_signing", "device_id": self.world.devices[d].id})
            }
            (_, None) => json!({"delivery_method": "device_signing"}),
        };
        let path = format!("/v1/change_requests/{}/authorize", cr.id);
        let person_id = person.id.clone();
        let (s, b) = self.call(who, "POST", &path, Some(body)).await;
        self.note("person", &person_id);
        let cr = &self.world.change_requests[c];
        self.check_isolated(who, cr.owner, s);
        if s != 201 {
            return;
        }
        let proof = match (method, device) {
            (0, _) => Proof::Tan {
                tan: "212212".into(),
                sent_to: None,
            },
            (1, _) => {
                let number = self.world.persons[cr.person].number.clone().unwrap();
                Proof::Tan {
                    tan: self.otp_sent_to(&number).await,
                    sent_to: Some(number),
                }
            }
            (_, d) => {
                let d = d.unwrap();
                Proof::Signature {
                    device: d,
                    sts: b["string_to_sign"].as_str().unwrap().to_owned(),
                    restricted: self.world.devices[d].restricted.is_some(),
                }
            }
        };
        let cr = &mut self.world.change_requests[c];
        cr.status = "CONFIRMATION_REQUIRED".into();
        cr.proof = Some((proof, Attempts::new()));
    }

    async fn confirm_change(&mut self, c: usize, who: usize, answer: Answer) -> (u16, String) {
        let cr = &self.world.change_requests[c];
        let person_id = self.world.persons[cr.person].id.clone();
        let body = match cr.proof.as_ref().map(|p| &p.0) {
            None => json!({"person_id": person_id, "tan": "212212"}),
            Some(Proof::Tan { tan, .. }) => {
                let tan = if answer == Answer::Right {
                    tan.clone()
                } else {
                    wrong_otp(tan)
                };
                json!({"person_id": person_id, "tan": tan})
            }
            Some(Proof::Signature {
                device,
                sts,
                restricted,
            }) => {
                let d = &self.world.devices[*device];
                let key = match (restricted, &d.restricted) {
                    (true, Some(k)) => k,
                    _ => &d.key,
                };
                let signature = match answer {
                    Answer::Right => key.sign(sts.as_bytes()),
                    Answer::Malformed => "00".into(),
                    _ => key.sign(b"not the string to sign"),
                };
                json!({"device_id": d.id, "signature": signature})
            }
        };
        let path = format!("/v1/change_requests/{}/confirm", cr.id);
        let (s, b) = self.call(who, "POST", &path, Some(body)).await;
        self.note("person", &person_id);
        let c_ = code(&b);
        let cr = &mut self.world.change_requests[c];
        let owner = cr.owner;
        if let Some((_, a)) = cr.proof.as_mut() {
            let followed = a.follow(s, &c_);
            if a.life == Life::Spent {
                cr.status = "FAILED".into();
            }
            self.check(followed, &self.world.change_requests[c].id);
        }
        let cr = &mut self.world.change_requests[c];
        if s == 201 {
            assert_eq!(b["status"], "COMPLETED", "{b}");
            cr.status = "COMPLETED".into();
            let p = cr.person;
            self.reread_number(p).await;
        }
        self.check_isolated(who, owner, s);
        (s, c_)
    }

    /// Reads a person's number again after a change request was carried out.
    async fn reread_number(&mut self, p: usize) {
        let person = &self.world.persons[p];
        let path = format!("/v1/persons/{}/mobile_number", person.id);
        let (s, b) = self.api.call(person.owner, "GET", &path, None).await;
        let person = &mut self.world.persons[p];
        if s == 404 {
            person.number = None;
            person.verified = false;
            person.otp = None;
        } else {
            assert_eq!(s, 200, "{b}");
            assert_eq!(b["number"].as_str(), person.number.as_deref(), "{b}");
        }
    }

    /// `key`: 0 a new one, 1 one that is bound already, 2 not a point.
    async fn start_binding(&mut self, p: usize, who: usize, key: u32) {
        let new = Arc::new(Key::new());
        // Keys are unique per partner (README): one bound by the same partner.
        let owner = self.world.persons[p].owner;
        let bound = pick(&mut self.rng, self.world.devices.len(), |d| {
            let d = &self.world.devices[d];
            d.bound && !d.deleted && d.owner == owner
        });
        let hex = match (key, bound) {
            (1, Some(d)) => self.world.devices[d].key.public_hex(),
            (2, _) => format!("04{}", "00".repeat(64)),
            _ => new.public_hex(),
        };
        let purpose = if self.rng.gen_ratio(1, 3) {
            json!("unrestricted")
        } else {
            Value::Null
        };
        let person = &self.world.persons[p];
        let body = json!({"person_id": person.id, "key_type": "ecdsa-p256", "key": hex,
                          "key_purpose": purpose, "name": format!("phone {}", self.world.devices.len())});
        let body = if purpose.is_null() {
            let mut b = body;
            b.as_object_mut().unwrap().remove("key_purpose");
            b
        } else {
            body
        };
        let (s, b) = self.call(who, "POST", "/v1/mfa/devices", Some(body)).await;
        let person_id = self.world.persons[p].id.clone();
        self.note("person", &person_id);
        self.check_isolated(who, self.world.persons[p].owner, s);
        if s != 202 {
            return;
        }
        assert_eq!(
            hex,
            new.public_hex(),
            "a bound or bad key was accepted: {b}"
        );
        let number = self.world.persons[p].number.clone().unwrap();
        let otp = self.otp_sent_to(&number).await;
        let device = self.world.devices.len();
        self.world.devices.push(Device {
            id: b["id"].as_str().unwrap().to_owned(),
            owner: who,
            person: p,
            key: new,
            restricted: None,
            bound: false,
            deleted: false,
        });
        self.world.challenges.push(Challenge {
            id: b["challenge"]["id"].as_str().unwrap().to_owned(),
            owner: who,
            what: What::Binding {
                device,
                otp,
                sent_to: number,
            },
            a: Attempts::new(),
        });
    }

    /// Answers challenge `c` of any kind.
    async fn answer(&mut self, c: usize, who: usize, answer: Answer) -> (u16, String) {
        let ch = &self.world.challenges[c];
        let (path, body) = match &ch.what {
            What::Binding { device, otp, .. } => {
                let key = &self.world.devices[*device].key;
                let signature = match answer {
                    Answer::Right => key.sign(otp.as_bytes()),
                    Answer::Malformed => "00".into(),
                    _ => key.sign(wrong_otp(otp).as_bytes()),
                };
                (
                    format!("/v1/mfa/challenges/signatures/{}", ch.id),
                    json!({"signature": signature}),
                )
            }
            What::Signing {
                device,
                sts,
                restricted,
            } => {
                let d = &self.world.devices[*device];
                let key = match (restricted, &d.restricted, answer) {
                    (true, Some(k), Answer::Right | Answer::Wrong) => k,
                    _ => &d.key,
                };
                let signature = match answer {
                    Answer::Right | Answer::OtherKey => key.sign(sts.as_bytes()),
                    Answer::Malformed => "00".into(),
                    Answer::Wrong => key.sign(b"not the string to sign"),
                };
                (
                    format!("/v1/mfa/challenges/devices/{}", ch.id),
                    json!({"signature": signature}),
                )
            }
            What::Sms { otp, .. } => {
                let code = match answer {
                    Answer::Right => otp.clone(),
                    _ => wrong_otp(otp),
                };
                (
                    format!("/v1/mfa/challenges/sms/{}", ch.id),
                    json!({"code": code}),
                )
            }
        };
        let (s, b) = self.call(who, "PUT", &path, Some(body)).await;
        let c_ = code(&b);
        self.check_isolated(who, self.world.challenges[c].owner, s);
        let followed = self.world.challenges[c].a.follow(s, &c_);
        self.check(followed, &self.world.challenges[c].id);
        if s == 204
            && let What::Binding { device, .. } = self.world.challenges[c].what
        {
            let d = &mut self.world.devices[device];
            d.bound = true;
            let p = d.person;
            self.world.persons[p].bound += 1;
        }
        (s, c_)
    }

    async fn add_key(&mut self, d: usize, who: usize, right: bool) {
        let new = Arc::new(Key::new());
        let device = &self.world.devices[d];
        let signature = if right {
            device.key.sign(new.public_hex().as_bytes())
        } else {
            device.key.sign(b"another key")
        };
        let body = json!({
            "key": new.public_hex(), "key_type": "ecdsa-p256", "key_purpose": "restricted",
            "device_signature": {"signature_key_purpose": "unrestricted", "signature": signature}
        });
        let path = format!("/v1/mfa/devices/{}/keys", device.id);
        let (s, b) = self.call(who, "POST", &path, Some(body)).await;
        self.check_isolated(who, self.world.devices[d].owner, s);
        if s == 201 {
            assert!(right, "a wrong device signature added a key: {b}");
            self.world.devices[d].restricted = Some(new);
        }
    }

    /// `purpose`: 0 none, 1 unrestricted, 2 restricted.
    async fn create_signing(&mut self, d: usize, who: usize, purpose: u32) {
        let device = &self.world.devices[d];
        let body = match purpose {
            0 => json!({"device_id": device.id}),
            1 => json!({"device_id": device.id, "key_purpose": "unrestricted"}),
            _ => json!({"device_id": device.id, "key_purpose": "restricted"}),
        };
        let device_id = device.id.clone();
        let (s, b) = self
            .call(who, "POST", "/v1/mfa/challenges/devices", Some(body))
            .await;
        self.note("device", &device_id);
        self.check_isolated(who, self.world.devices[d].owner, s);
        if s == 201 {
            self.world.challenges.push(Challenge {
                id: b["id"].as_str().unwrap().to_owned(),
                owner: who,
                what: What::Signing {
                    device: d,
                    sts: b["string_to_sign"].as_str().unwrap().to_owned(),
                    restricted: b["key_purpose"] == "restricted",
                },
                a: Attempts::new(),
            });
        }
    }

    async fn create_sms(&mut self, p: usize, who: usize) {
        let person = &self.world.persons[p];
        let body = json!({"person_id": person.id, "language": "en"});
        let person_id = person.id.clone();
        let (s, b) = self
            .call(who, "POST", "/v1/mfa/challenges/sms", Some(body))
            .await;
        self.note("person", &person_id);
        self.check_isolated(who, self.world.persons[p].owner, s);
        if s == 201 {
            let number = self.world.persons[p].number.clone().unwrap();
            let otp = self.otp_sent_to(&number).await;
            self.world.challenges.push(Challenge {
                id: b["id"].as_str().unwrap().to_owned(),
                owner: who,
                what: What::Sms {
                    person: p,
                    otp,
                    sent_to: number,
                },
                a: Attempts::new(),
            });
        }
    }

    async fn delete_device(&mut self, d: usize, who: usize) {
        let path = format!("/v1/mfa/devices/{}", self.world.devices[d].id);
        let (s, _) = self.call(who, "DELETE", &path, None).await;
        self.check_isolated(who, self.world.devices[d].owner, s);
        if s == 204 {
            let device = &mut self.world.devices[d];
            assert!(device.bound && !device.deleted);
            device.deleted = true;
            let p = device.person;
            self.world.persons[p].bound -= 1;
        }
    }

    /// A person with a verified number and a bound device with both keys, for each partner.
    async fn set_up(&mut self) {
        for who in 0..2 {
            let p = self.create_person(who, true).await.unwrap();
            self.add_number(p, who, true).await;
            self.authorize_number(p, who, true).await;
            assert_eq!(self.confirm_number(p, who, Answer::Right).await.0, 201);
            self.start_binding(p, who, 0).await;
            let c = self.world.challenges.len() - 1;
            assert_eq!(self.answer(c, who, Answer::Right).await.0, 204);
            let d = self.world.devices.len() - 1;
            self.add_key(d, who, true).await;
            assert!(self.world.devices[d].restricted.is_some());
        }
    }

    /// One random operation.
    async fn step(&mut self) {
        let w = &self.world;
        let (np, nd, nc, ncr) = (
            w.persons.len(),
            w.devices.len(),
            w.challenges.len(),
            w.change_requests.len(),
        );
        let any = self.rng.gen_ratio(1, 6);
        let op = self.rng.gen_range(0..100);
        let rng = &mut self.rng;
        let w = &self.world;
        match op {
            0..5 => {
                let who = rng.gen_range(0..2);
                let valid = rng.gen_ratio(5, 6);
                self.create_person(who, valid).await;
            }
            5..10 => {
                if let Some(p) = pick(rng, np, |p| any || w.persons[p].number.is_none()) {
                    let valid = rng.gen_ratio(7, 8);
                    let who = self.who(self.world.persons[p].owner);
                    self.add_number(p, who, valid).await;
                }
            }
            10..16 => {
                if let Some(p) = pick(rng, np, |p| {
                    any || (w.persons[p].number.is_some() && !w.persons[p].verified)
                }) {
                    let same = rng.gen_ratio(7, 8);
                    let who = self.who(self.world.persons[p].owner);
                    self.authorize_number(p, who, same).await;
                }
            }
            16..22 => {
                if let Some(p) = pick(rng, np, |p| {
                    any || w.persons[p]
                        .otp
                        .as_ref()
                        .is_some_and(|o| o.1.life == Life::Open)
                }) {
                    let answer = if rng.gen_ratio(2, 3) {
                        Answer::Right
                    } else {
                        Answer::Wrong
                    };
                    let who = self.who(self.world.persons[p].owner);
                    self.confirm_number(p, who, answer).await;
                }
            }
            22..27 => {
                if let Some(p) = pick(rng, np, |_| true) {
                    let variant = rng.gen_range(0..6);
                    let who = self.who(self.world.persons[p].owner);
                    self.update_person(p, who, variant).await;
                }
            }
            27..29 => {
                if let Some(p) = pick(rng, np, |p| any || w.persons[p].number.is_some()) {
                    let who = self.who(self.world.persons[p].owner);
                    self.delete_number(p, who).await;
                }
            }
            29..37 => {
                if let Some(c) = pick(rng, ncr, |c| {
                    any || matches!(
                        w.change_requests[c].status.as_str(),
                        "AUTHORIZATION_REQUIRED" | "CONFIRMATION_REQUIRED"
                    )
                }) {
                    let method = rng.gen_range(0..3);
                    let person = w.change_requests[c].person;
                    let device = pick(rng, nd, |d| {
                        any || (w.devices[d].person == person
                            && w.devices[d].bound
                            && !w.devices[d].deleted)
                    });
                    let who = self.who(self.world.change_requests[c].owner);
                    self.authorize_change(c, who, method, device).await;
                }
            }
            37..45 => {
                if let Some(c) = pick(rng, ncr, |c| {
                    any || w.change_requests[c]
                        .proof
                        .as_ref()
                        .is_some_and(|p| p.1.life == Life::Open)
                }) {
                    let answer = match rng.gen_range(0..6) {
                        0 => Answer::Malformed,
                        1 | 2 => Answer::Wrong,
                        _ => Answer::Right,
                    };
                    let who = self.who(self.world.change_requests[c].owner);
                    self.confirm_change(c, who, answer).await;
                }
            }
            45..53 => {
                if let Some(p) = pick(rng, np, |p| {
                    any || (w.persons[p].verified && w.persons[p].bound < MAX_DEVICES)
                }) {
                    let key = match rng.gen_range(0..10) {
                        0 => 1,
                        1 => 2,
                        _ => 0,
                    };
                    let who = self.who(self.world.persons[p].owner);
                    self.start_binding(p, who, key).await;
                }
            }
            53..69 | 93..100 => {
                if let Some(c) = pick(rng, nc, |c| any || w.challenges[c].a.life == Life::Open) {
                    let answer = match rng.gen_range(0..10) {
                        0 => Answer::Malformed,
                        1 => Answer::OtherKey,
                        2..4 => Answer::Wrong,
                        _ => Answer::Right,
                    };
                    let who = self.who(self.world.challenges[c].owner);
                    self.answer(c, who, answer).await;
                }
            }
            69..73 => {
                if let Some(d) = pick(rng, nd, |d| {
                    any || (w.devices[d].bound
                        && !w.devices[d].deleted
                        && w.devices[d].restricted.is_none())
                }) {
                    let right = rng.gen_ratio(4, 5);
                    let who = self.who(self.world.devices[d].owner);
                    self.add_key(d, who, right).await;
                }
            }
            73..83 => {
                if let Some(d) = pick(rng, nd, |d| {
                    any || (w.devices[d].bound && !w.devices[d].deleted)
                }) {
                    let purpose = rng.gen_range(0..3);
                    let who = self.who(self.world.devices[d].owner);
                    self.create_signing(d, who, purpose).await;
                }
            }
            83..91 => {
                if let Some(p) = pick(rng, np, |p| any || w.persons[p].verified) {
                    let who = self.who(self.world.persons[p].owner);
                    self.create_sms(p, who).await;
                }
            }
            _ => {
                if let Some(d) = pick(rng, nd, |d| {
                    any || (w.devices[d].bound && !w.devices[d].deleted)
                }) {
                    let who = self.who(self.world.devices[d].owner);
                    self.delete_device(d, who).await;
                }
            }
        }
    }

    /// A partner's call in the snapshot: status and body, without the errors' fresh ids.
    async fn read(&self, out: &mut BTreeMap<String, Value>, who: usize, path: String) -> Value {
        let (s, mut b) = self.api.call(who, "GET", &path, None).await;
        normalize(&mut b);
        out.insert(
            format!("partner {who}: GET {path}"),
            json!({"status": s, "body": b}),
        );
        b
    }

    /// Everything the API shows about what the run made.
    async fn snapshot(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let w = &self.world;
        for p in &w.persons {
            self.read(&mut out, p.owner, format!("/v1/persons/{}", p.id))
                .await;
            self.read(&mut out, 1 - p.owner, format!("/v1/persons/{}", p.id))
                .await;
            self.read(
                &mut out,
                p.owner,
                format!("/v1/persons/{}/mobile_number", p.id),
            )
            .await;
            self.read(
                &mut out,
                p.owner,
                format!(
                    "/v1/mfa/devices?filter[person_id]={}&filter[include_deleted]=true&page[size]=100",
                    p.id
                ),
            )
            .await;
        }
        for d in &w.devices {
            self.read(&mut out, d.owner, format!("/v1/mfa/devices/{}", d.id))
                .await;
            self.read(&mut out, 1 - d.owner, format!("/v1/mfa/devices/{}", d.id))
                .await;
            let keys = self
                .read(&mut out, d.owner, format!("/v1/mfa/devices/{}/keys", d.id))
                .await;
            for k in keys["keys"].as_array().into_iter().flatten() {
                let key = k["key_id"].as_str().unwrap();
                self.read(
                    &mut out,
                    d.owner,
                    format!("/v1/mfa/devices/{}/keys/{key}", d.id),
                )
                .await;
            }
        }
        for c in &w.challenges {
            let kind = match c.what {
                What::Binding { .. } => "signatures",
                What::Signing { .. } => "devices",
                What::Sms { .. } => "sms",
            };
            self.read(
                &mut out,
                c.owner,
                format!("/v1/mfa/challenges/{kind}/{}", c.id),
            )
            .await;
            if kind != "sms" {
                // Not DER: an open challenge refuses it (400) before counting or changing
                // anything, a finished one says how it finished (403), so this reads status.
                let path = format!("/v1/mfa/challenges/{kind}/{}", c.id);
                let (s, mut b) = self
                    .api
                    .call(c.owner, "PUT", &path, Some(json!({"signature": "00"})))
                    .await;
                normalize(&mut b);
                out.insert(
                    format!("partner {}: PUT {path} (not DER)", c.owner),
                    json!({"status": s, "body": b}),
                );
            }
        }
        for cr in &w.change_requests {
            self.read(&mut out, cr.owner, format!("/v1/change_requests/{}", cr.id))
                .await;
        }
        let stats = self.api.stats().await;
        for held in [
            "live_persons",
            "live_devices",
            "live_challenges",
            "live_change_requests",
        ] {
            out.insert(format!("/sandbox/stats {held}"), stats[held].clone());
        }
        out
    }

    /// How many calls of each kind got each answer, to show what the run covered.
    fn coverage(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for line in &self.journal {
            let line = line.split_once(": ").map_or(line.as_str(), |l| l.1);
            let line = line.split(" (for ").next().unwrap_or(line);
            let shape: Vec<String> = line
                .split(' ')
                .map(|word| {
                    word.split('/')
                        .map(|part| if part.len() >= 32 { "{id}" } else { part })
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect();
            *counts.entry(shape.join(" ")).or_default() += 1;
        }
        counts
            .iter()
            .map(|(shape, n)| format!("{n:4} {shape}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the journal says about the ids in `key`, with the restarts in between.
    fn history(&self, key: &str) -> Vec<&str> {
        let ids: Vec<&str> = key
            .split(['/', '?', '=', '&', ' '])
            .filter(|part| part.len() >= 32)
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut lines: Vec<&str> = Vec::new();
        for line in &self.journal {
            let restart = line.starts_with("---");
            if restart && lines.last().is_some_and(|l| l.starts_with("---")) {
                lines.pop();
            }
            if restart || ids.iter().any(|id| line.contains(id)) {
                lines.push(line);
            }
        }
        lines
    }

    /// Asserts two snapshots are the same, showing each difference with its history.
    fn assert_same(
        &self,
        before: &BTreeMap<String, Value>,
        after: &BTreeMap<String, Value>,
        what: &str,
    ) {
        let mut diff = String::new();
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let mut differences = 0;
        for key in keys {
            let (b, a) = (before.get(key), after.get(key));
            if b != a {
                differences += 1;
                if differences > 12 {
                    continue;
                }
                diff.push_str(&format!(
                    "\n{key}\n  before: {}\n  after:  {}\n",
                    b.map_or("-".into(), Value::to_string),
                    a.map_or("-".into(), Value::to_string),
                ));
                let history = self.history(key);
                if !history.is_empty() {
                    diff.push_str(&format!("  history:\n    {}\n", history.join("\n    ")));
                }
            }
        }
        assert!(
            diff.is_empty(),
            "{what}: the restarted sandbox shows another bank ({differences} of {} readings \
             differ; the first ones follow):{diff}",
            before.len()
        );
    }
}

impl Run {
    /// Snapshot, SIGKILL, (copy the file to `copy_to`,) start again on the file with
    /// `extra` arguments, snapshot: the two must be the same. Returns the new process and
    /// the snapshot.
    async fn restart(
        &mut self,
        sandbox: Listening,
        files: &Files,
        extra: &[&str],
        copy_to: Option<&Path>,
        what: &str,
    ) -> (Listening, BTreeMap<String, Value>) {
        let before = self.snapshot().await;
        sandbox.kill();
        self.journal
            .push(format!("--- SIGKILL and restart ({what})"));
        if let Some(copy) = copy_to {
            // No process has the file open now: the file and its write-ahead log are the bank.
            for suffix in ["", "-wal"] {
                let from = format!("{}{suffix}", files.state.display());
                if Path::new(&from).exists() {
                    std::fs::copy(&from, format!("{}{suffix}", copy.display())).unwrap();
                }
            }
        }
        let sandbox = sandbox_on_file(&files.state, &files.config, extra);
        self.api = Api::connect(&sandbox.base).await;
        let after = self.snapshot().await;
        self.assert_same(&before, &after, what);
        (sandbox, before)
    }

    /// On a sandbox whose challenges live one second: one of every kind of answerable thing
    /// is made, waited for until it expired, and answered rightly (refused: expired).
    async fn make_expired_ones(&mut self) -> Vec<usize> {
        let w = &self.world;
        let verified = pick(&mut self.rng, w.persons.len(), |p| w.persons[p].verified)
            .expect("a person with a verified number");
        let owner = self.world.persons[verified].owner;
        // A number's OTP.
        let p = self.create_person(owner, true).await.unwrap();
        self.add_number(p, owner, true).await;
        self.authorize_number(p, owner, true).await;
        assert!(self.world.persons[p].otp.is_some());
        // A change request's TAN, by SMS.
        self.update_person(verified, owner, 5).await;
        let cr = self.world.change_requests.len() - 1;
        self.authorize_change(cr, owner, 1, None).await;
        assert!(self.world.change_requests[cr].proof.is_some());
        let first = self.world.challenges.len();
        self.create_sms(verified, owner).await;
        let w = &self.world;
        if let Some(p) = pick(&mut self.rng, w.persons.len(), |p| {
            w.persons[p].verified && w.persons[p].bound < MAX_DEVICES
        }) {
            let who = self.world.persons[p].owner;
            self.start_binding(p, who, 0).await;
        }
        let w = &self.world;
        let d = pick(&mut self.rng, w.devices.len(), |d| {
            w.devices[d].bound && !w.devices[d].deleted
        })
        .expect("a bound device");
        let who = self.world.devices[d].owner;
        self.create_signing(d, who, 0).await;
        let made: Vec<usize> = (first..self.world.challenges.len()).collect();
        assert!(made.len() >= 2, "made {made:?}");
        // Made last, so it expires last (expiry is in whole seconds): wait until it has.
        let last = &self.world.challenges[*made.last().unwrap()];
        let path = format!("/v1/mfa/challenges/devices/{}", last.id);
        let mut expired = false;
        for _ in 0..100 {
            let (s, b) = self
                .api
                .call(last.owner, "PUT", &path, Some(json!({"signature": "00"})))
                .await;
            if (s, code(&b).as_str()) == (403, "challenge_expired") {
                expired = true;
                break;
            }
            assert_eq!(s, 400, "{b}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(expired, "a challenge of one second did not expire in 5 s");
        // Answered rightly, each is refused as expired, which changes nothing.
        for &c in &made {
            let owner = self.world.challenges[c].owner;
            let got = self.answer(c, owner, Answer::Right).await;
            assert_eq!(got, (403, "challenge_expired".into()));
        }
        let got = self.confirm_change(cr, owner, Answer::Right).await;
        assert_eq!(got, (403, "challenge_expired".into()));
        let got = self.confirm_number(p, owner, Answer::Right).await;
        assert_eq!(got, (403, "challenge_expired".into()));
        made
    }

    /// On a sandbox that keeps what is finished for one second: waits (at most 10 s) until
    /// the sweep forgot the challenges `expired` (finished last, so everything finished
    /// before them is forgettable too), then until a whole sweep forgot nothing more, so no
    /// sweep runs into the snapshot of the restart that follows.
    async fn wait_for_the_sweep(&mut self, expired: &[usize]) {
        for &c in expired {
            let ch = &self.world.challenges[c];
            let kind = match ch.what {
                What::Binding { .. } => "signatures",
                What::Signing { .. } => "devices",
                What::Sms { .. } => "sms",
            };
            let path = format!("/v1/mfa/challenges/{kind}/{}", ch.id);
            let mut forgotten = false;
            for _ in 0..100 {
                let (s, b) = self.api.call(ch.owner, "GET", &path, None).await;
                if s == 404 {
                    forgotten = true;
                    break;
                }
                assert_eq!(s, 200, "{b}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(forgotten, "{path} was not forgotten in 10 s");
        }
        let swept = || async { self.api.stats().await["swept"].as_u64().unwrap() };
        let mut last = swept().await;
        let mut still = false;
        for _ in 0..8 {
            // The sweep runs every second (a quarter of the retention, at least 1 s).
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let now = swept().await;
            if now == last {
                still = true;
                break;
            }
            last = now;
        }
        assert!(still, "the sweep kept forgetting for 10 s");
        assert!(last > 0, "the sweep forgot nothing");
        self.journal
            .push(format!("--- the sweep forgot {last} entries"));
    }

    /// Answers everything still open that a wrong answer counts against, by its owner: the
    /// wrong answers it has left (one fewer unless `spend`), then the right one, which must
    /// be accepted, or with `spend` refused as spent. So the attempts counted before the
    /// restart are exactly the ones counted after it. Returns how many were probed.
    async fn probe_attempts(&mut self, spend: bool) -> Vec<String> {
        let mut probed = Vec::new();
        let left = |failed: u32| MAX_ATTEMPTS - failed - u32::from(!spend);
        let expect = |got: (u16, String), what: &str| {
            if spend {
                assert_eq!(got, (403, "challenge_failed".to_owned()), "{what}");
            } else {
                assert!((200..300).contains(&got.0), "{what}: {got:?}");
            }
        };
        let still_verified = |w: &World, p: usize, sent_to: &str| {
            w.persons[p].verified && w.persons[p].number.as_deref() == Some(sent_to)
        };
        for c in 0..self.world.challenges.len() {
            let w = &self.world;
            let ch = &w.challenges[c];
            let open = ch.a.life == Life::Open
                && match &ch.what {
                    What::Binding {
                        device, sent_to, ..
                    } => {
                        let p = w.devices[*device].person;
                        still_verified(w, p, sent_to) && (spend || w.persons[p].bound < MAX_DEVICES)
                    }
                    What::Signing { device, .. } => !w.devices[*device].deleted,
                    What::Sms {
                        person, sent_to, ..
                    } => still_verified(w, *person, sent_to),
                };
            if !open {
                continue;
            }
            let owner = ch.owner;
            for _ in 0..left(ch.a.failed) {
                let (s, code) = self.answer(c, owner, Answer::Wrong).await;
                assert!(s == 403 && COUNTED.contains(&code.as_str()), "{s} {code}");
            }
            let got = self.answer(c, owner, Answer::Right).await;
            expect(got, self.journal.last().unwrap());
            probed.push(self.world.challenges[c].id.clone());
        }
        for p in 0..self.world.persons.len() {
            let person = &self.world.persons[p];
            let Some((_, a)) = person.otp.as_ref() else {
                continue;
            };
            if a.life != Life::Open || person.verified || person.number.is_none() {
                continue;
            }
            let owner = person.owner;
            for _ in 0..left(a.failed) {
                let got = self.confirm_number(p, owner, Answer::Wrong).await;
                assert_eq!(got, (403, "invalid_otp".to_owned()));
            }
            let got = self.confirm_number(p, owner, Answer::Right).await;
            expect(got, self.journal.last().unwrap());
            probed.push(self.world.persons[p].id.clone());
        }
        for c in 0..self.world.change_requests.len() {
            let w = &self.world;
            let cr = &w.change_requests[c];
            let Some((proof, a)) = cr.proof.as_ref() else {
                continue;
            };
            let open = cr.status == "CONFIRMATION_REQUIRED"
                && a.life == Life::Open
                && match proof {
                    Proof::Tan {
                        sent_to: Some(n), ..
                    } => still_verified(w, cr.person, n),
                    Proof::Tan { sent_to: None, .. } => true,
                    Proof::Signature { device, .. } => !w.devices[*device].deleted,
                };
            if !open {
                continue;
            }
            let owner = cr.owner;
            for _ in 0..left(a.failed) {
                let (s, code) = self.confirm_change(c, owner, Answer::Wrong).await;
                assert!(s == 403 && COUNTED.contains(&code.as_str()), "{s} {code}");
            }
            let got = self.confirm_change(c, owner, Answer::Right).await;
            expect(got, self.journal.last().unwrap());
            probed.push(self.world.change_requests[c].id.clone());
        }
        probed
    }
}

/// The test's files.
struct Files {
    state: std::path::PathBuf,
    config: std::path::PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_a_request_made_is_in_the_state_file_when_the_sandbox_is_killed() {
    common::bounded(run()).await;
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files {
        state: dir.path().join("bank.sqlite"),
        config: dir.path().join("sandbox.toml"),
    };
    std::fs::write(&files.config, config_toml()).unwrap();
    let sandbox = sandbox_on_file(&files.state, &files.config, &[]);
    let mut run = Run {
        api: Api::connect(&sandbox.base).await,
        world: World::default(),
        rng: StdRng::seed_from_u64(SEED),
        journal: Vec::new(),
        numbers: 0,
        sms_seq: 0,
    };
    run.set_up().await;
    // Restarts come often, so a change left out of a commit is seldom written again (with
    // the rest of its entity) by a later request before a restart shows it missing.
    // Each restart also checks that the SMS numbering goes on: every SMS read later must
    // have a `seq` above every one read before (`otp_sent_to`).
    let mut sandbox = sandbox;
    for segment in 0..SEGMENTS {
        for _ in 0..run.rng.gen_range(OPS_PER_SEGMENT) {
            run.step().await;
        }
        let what = format!("segment {segment}");
        if segment == SEGMENTS / 2 {
            let short = ["--challenge-lifetime", "1s"];
            sandbox = run.restart(sandbox, &files, &short, None, &what).await.0;
            let expired = run.make_expired_ones().await;
            let what = "the expired ones";
            sandbox = run.restart(sandbox, &files, &[], None, what).await.0;
            // Forgetting what is finished is a change too (the sweep's, not a request's). The
            // bank was just compared across a restart; this one is not compared, as its first
            // sweep may run into the reading.
            sandbox.kill();
            run.journal
                .push("--- SIGKILL and restart (retention 1 s)".into());
            sandbox = sandbox_on_file(&files.state, &files.config, &["--retention", "1s"]);
            run.api = Api::connect(&sandbox.base).await;
            run.wait_for_the_sweep(&expired).await;
            sandbox = run.restart(sandbox, &files, &[], None, "the sweep").await.0;
        } else {
            sandbox = run.restart(sandbox, &files, &[], None, &what).await.0;
        }
    }
    for _ in 0..run.rng.gen_range(OPS_PER_SEGMENT) {
        run.step().await;
    }
    eprintln!("{}", run.coverage());
    let copy = dir.path().join("copy.sqlite");
    let (sandbox, last) = run
        .restart(sandbox, &files, &[], Some(&copy), "after the last segment")
        .await;
    let world = run.world.clone();
    // What was open before the restart is answered after it, with the attempts it had.
    let probed = run.probe_attempts(false).await;
    assert!(probed.len() >= 5, "only {probed:?} open to probe");
    // And new work goes on: a device challenge made and answered, an SMS sent.
    let w = &run.world;
    let d = pick(&mut run.rng, w.devices.len(), |d| {
        w.devices[d].bound && !w.devices[d].deleted
    })
    .expect("a bound device");
    let owner = run.world.devices[d].owner;
    run.create_signing(d, owner, 0).await;
    let c = run.world.challenges.len() - 1;
    assert_eq!(run.answer(c, owner, Answer::Right).await.0, 204);
    let w = &run.world;
    let p = pick(&mut run.rng, w.persons.len(), |p| w.persons[p].verified).unwrap();
    let owner = run.world.persons[p].owner;
    run.create_sms(p, owner).await;
    let c = run.world.challenges.len() - 1;
    assert_eq!(run.answer(c, owner, Answer::Right).await.0, 204);
    sandbox.kill();

    // The same bank from the copy: the same readings, and one more wrong answer than the
    // probe above gave spends each open one.
    run.journal
        .push("--- a sandbox on the copy of the file, which the probes above did not touch".into());
    let sandbox = sandbox_on_file(&copy, &files.config, &[]);
    run.api = Api::connect(&sandbox.base).await;
    run.world = world;
    let again = run.snapshot().await;
    run.assert_same(&last, &again, "the copy of the file");
    // Each one answered after the restart is spent here (and some more: bindings the
    // device limit would refuse are spent all the same).
    let spent = run.probe_attempts(true).await;
    let missing: Vec<&String> = probed.iter().filter(|id| !spent.contains(id)).collect();
    assert!(missing.is_empty(), "not probed in the copy: {missing:?}");
    sandbox.kill();
}
