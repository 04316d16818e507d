//! The bodies of the fuzz targets in `fuzz/` (run with `cargo +nightly fuzz run TARGET`),
//! as plain functions so that stable `cargo test` replays the committed corpus
//! (`fuzz/corpus/TARGET/`, see `tests/fuzz_corpus.rs`). Each function panics when an
//! invariant breaks; any other input must return quietly.
//!
//! Not part of the library's API: the names and invariants change with the targets.

use crate::api::{
    AddKeyRequest, AnswerSignatureChallenge, ChallengeId, ChangeRequestId, CreateDeviceRequest,
    CreatePerson, DeviceId, KeyId, MobileNumberId, Otp, PersonId, PhoneNumber, PublicKeyHex,
    SignatureHex,
};
use crate::fleet::{Fleet, Report};
use crate::sandbox::error::{ApiError, parse_json};
use crate::sandbox::verify::{self, Verdict, VerifyingKey};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

/// A fuzz target's body: returns on any input, panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their file in `fuzz/fuzz_targets/` and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("der_signature", der_signature),
    ("json_body", json_body),
    ("values", values),
    ("fleet_file", fleet_file),
    ("report_merge", report_merge),
    ("lean_answer", lean_answer),
];

/// The fleets' HTTP/1.1 answer reader (`client::lean`, hand-written around `httparse`): any
/// bytes a server sends, read in pieces of 1-64 bytes (chosen by the first byte) or whole,
/// give the same answer or both fail; never a panic, never a body longer than what was sent.
pub fn lean_answer(data: &[u8]) {
    crate::client::lean::fuzz_answer(data);
}

/// A fixed key pair for the verification differential: the keystore signs (RFC 6979), both
/// verifiers check. Its signature seeds the corpus (`fuzz/corpus/der_signature/`).
struct Pair {
    public_hex: String,
    sandbox_key: VerifyingKey,
    signature_der: Vec<u8>,
}

const MESSAGE: &[u8] = b"212212";

static PAIR: LazyLock<Pair> = LazyLock::new(|| {
    let key = vphone_keystore::SigningKey::derive(
        &vphone_keystore::Seed::from_u64(7),
        0,
        vphone_keystore::KeyPurpose::Unrestricted,
    );
    let public_hex = key.public_key_hex();
    let point = hex::decode(&public_hex).expect("the keystore writes hex");
    Pair {
        sandbox_key: VerifyingKey::from_uncompressed(&point).expect("a derived key is on P-256"),
        signature_der: key.sign(MESSAGE),
        public_hex,
    }
});

/// The fixed key's valid signature of the message, which seeds `fuzz/corpus/der_signature/`.
pub fn valid_signature() -> Vec<u8> {
    PAIR.signature_der.clone()
}

/// DER signatures: the sandbox's strict parser ([`verify::check_der_signature`]) and the
/// keystore's (`p256`, canonical re-encoding) accept exactly the same inputs; whatever both
/// accept converts to `r||s` and back unchanged, and both verifiers give the same verdict.
pub fn der_signature(data: &[u8]) {
    let bytes = data;
    let hex = hex::encode(bytes);
    let sandbox = verify::check_der_signature(bytes);
    let keystore = vphone_keystore::parse_signature_hex(&hex);
    assert_eq!(
        sandbox.is_ok(),
        keystore.is_ok(),
        "the parsers disagree on {hex}: sandbox {sandbox:?}, keystore {keystore:?}"
    );
    let high = verify::is_high_s(bytes);
    if sandbox.is_err() {
        assert!(!high, "malformed DER is never high-S: {hex}");
        return;
    }
    let raw = vphone_keystore::der_signature_hex_to_raw(&hex).expect("accepted above");
    let back = vphone_keystore::raw_signature_to_der_hex(&raw).expect("r and s are in range");
    assert_eq!(back, hex, "DER -> r||s -> DER changed the signature");
    // s is the second half of r||s; high-S means s > n/2, read from the raw form too.
    let s = &raw[32..];
    assert_eq!(high, s > &HALF_ORDER[..], "is_high_s is wrong for {hex}");
    let sandbox_verdict = verify::verify_signature(&PAIR.sandbox_key, MESSAGE, bytes);
    let keystore_verdict = vphone_keystore::verify_hex(&PAIR.public_hex, MESSAGE, &hex);
    assert_eq!(
        sandbox_verdict == Verdict::Valid,
        keystore_verdict.is_ok(),
        "the verifiers disagree on {hex}"
    );
}

/// floor(n/2) of P-256, big-endian.
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// The sandbox's JSON body parser ([`parse_json`]): it accepts a body exactly when it is one
/// JSON value, with nothing after it and no key twice in any object (checked here by an
/// independent reader that keeps every key), and the typed request bodies also parse. A
/// refusal is a 4xx in the bank's shape whose detail never repeats a six-digit value from the
/// body (an OTP or TAN).
pub fn json_body(data: &[u8]) {
    let reference = reference_json(data);
    let parsed = parse_json::<serde_json::Value>(data);
    match (&parsed, &reference) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err(why)) => check_refusal(data, e, why),
        (Ok(_), Err(why)) => panic!("accepted a body the reference refuses ({why})"),
        (Err(e), Ok(())) => panic!("refused a body the reference accepts: {}", e.detail),
    }
    for result in [
        parse_json::<AnswerSignatureChallenge>(data).map(drop),
        parse_json::<CreateDeviceRequest>(data).map(drop),
        parse_json::<AddKeyRequest>(data).map(drop),
        parse_json::<CreatePerson>(data).map(drop),
    ] {
        match result {
            Ok(()) => assert!(
                reference.is_ok(),
                "a typed body was accepted but the reference refuses it"
            ),
            Err(e) => check_refusal(data, &e, "typed"),
        }
    }
}

fn check_refusal(data: &[u8], e: &ApiError, why: &str) {
    assert!(
        e.status.is_client_error(),
        "refusal is not 4xx ({why}): {}",
        e.status
    );
    for secret in six_digit_values(data) {
        assert!(
            !e.detail.contains(&secret),
            "the detail repeats the value {secret}: {}",
            e.detail
        );
    }
}

/// Six-digit runs that stand alone as a JSON number or string value (`: 123456`,
/// `"123456"` after a colon), the shapes an OTP or TAN takes.
fn six_digit_values(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i] == b':' {
            let mut j = i + 1;
            while j < data.len() && data[j] == b' ' {
                j += 1;
            }
            let quoted = data.get(j) == Some(&b'"');
            let start = j + usize::from(quoted);
            let end = start + 6;
            if end <= data.len()
                && data[start..end].iter().all(u8::is_ascii_digit)
                && data.get(end).is_some_and(|&b| {
                    if quoted {
                        b == b'"'
                    } else {
                        !b.is_ascii_digit()
                    }
                })
            {
                out.push(String::from_utf8_lossy(&data[start..end]).into_owned());
            }
        }
        i += 1;
    }
    out
}

/// One JSON value with every key of every object kept, in order.
enum Tree {
    Object(Vec<(String, Tree)>),
    Array(Vec<Tree>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(t) = a.next_element()? {
                    items.push(t);
                }
                Ok(Tree::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Tree::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl Tree {
    fn has_duplicate_key(&self) -> bool {
        match self {
            Tree::Leaf => false,
            Tree::Array(items) => items.iter().any(Tree::has_duplicate_key),
            Tree::Object(entries) => {
                let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                keys.windows(2).any(|w| w[0] == w[1])
                    || entries.iter().any(|(_, t)| t.has_duplicate_key())
            }
        }
    }
}

/// The reference: serde_json reads one whole value (trailing whitespace only), then no
/// object may hold a key twice.
fn reference_json(data: &[u8]) -> Result<(), &'static str> {
    let tree: Tree = serde_json::from_slice(data).map_err(|_| "not one JSON value")?;
    if tree.has_duplicate_key() {
        return Err("a duplicate key");
    }
    Ok(())
}

/// The value types: whatever parses prints back to the same text and parses again; an OTP
/// never prints its digits; a public key that parses as P-256 in the keystore also does in
/// the sandbox's verifier and the other way round; typed ids accept exactly the token rule
/// (and everything strict is also acceptable from a server).
pub fn values(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(otp) = Otp::parse(text) {
        assert_eq!(otp.expose(), text);
        assert!(otp.matches(&Otp::parse(text).expect("parsed above")));
        assert!(
            !format!("{otp:?} {otp}").contains(text),
            "an OTP printed itself"
        );
        assert!(text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Ok(number) = PhoneNumber::parse(text) {
        assert_eq!(number.to_string(), text);
        assert_eq!(PhoneNumber::parse(number.as_str()).ok(), Some(number));
    }
    let keystore_ok = vphone_keystore::public_key_hex_is_valid(text);
    let sandbox_ok = PublicKeyHex::parse(text)
        .is_ok_and(|k| VerifyingKey::from_uncompressed(&k.to_bytes()).is_ok());
    assert_eq!(
        keystore_ok, sandbox_ok,
        "the key checks disagree on {text:?}"
    );
    if let Ok(sig) = SignatureHex::parse(text) {
        assert_eq!(hex::encode(sig.to_bytes()), text);
    }
    macro_rules! ids {
        ($($id:ty),*) => {$(
            let strict = <$id>::strict(text);
            let token = !text.is_empty()
                && text.len() <= 64
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            assert_eq!(strict.is_ok(), token, "{} on {text:?}", stringify!($id));
            if let Ok(id) = strict {
                assert_eq!(id.as_str(), text);
                assert!(id.is_token());
                assert_eq!(<$id>::from_server(text).ok(), Some(id));
            }
            assert_eq!(text.parse::<$id>().ok(), <$id>::from_server(text).ok());
            if let Err(e) = <$id>::from_server(text) {
                assert!(e.value.chars().count() <= 80 && !e.value.chars().any(char::is_control));
            }
        )*};
    }
    ids!(
        PersonId,
        MobileNumberId,
        DeviceId,
        ChallengeId,
        ChangeRequestId,
        KeyId
    );
}

/// The header of a fleet file for the fleet [`fleet_file`] loads into.
const FLEET_HEADER: &str = "vphone-fleet 1\nseed 7\ndevices 10\n";

/// The fleet file parser ([`Fleet::load_text`]): any text loads or is refused without a
/// panic, and a file that loads writes back as a file that loads to the same fleet.
pub fn fleet_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Most inputs are phone lines; a leading '!' means "the whole file as given".
    let text = match text.strip_prefix('!') {
        Some(whole) => whole.to_owned(),
        None => format!("{FLEET_HEADER}{text}"),
    };
    let _ = Fleet::peek_file(&text);
    let fleet = Fleet::new("7", 10, 2..8)
        .expect("a fixed seed")
        .with_key_cache(0);
    let path = Path::new("fuzz.fleet");
    let Ok(_) = block_on(fleet.load_text(&text, path)) else {
        return;
    };
    let written = block_on(fleet.to_text());
    let again = Fleet::new("7", 10, 2..8)
        .expect("a fixed seed")
        .with_key_cache(0);
    block_on(again.load_text(&written, path)).expect("a written fleet file loads");
    assert_eq!(
        block_on(again.to_text()),
        written,
        "a fleet file changed on its way through"
    );
}

/// Report merging: two reports read from JSON (split at the first NUL) merge or are refused;
/// a refused merge leaves the report as it was, a merge adds the counts, and the merged report
/// survives its own JSON.
pub fn report_merge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\0').unwrap_or((text, text));
    let path = Path::new("fuzz.json");
    let (Ok(mut left), Ok(right)) = (Report::from_json(a, path), Report::from_json(b, path)) else {
        return;
    };
    let before = left.clone();
    match left.merge(&right) {
        Err(_) => assert!(left == before, "a refused merge changed the report"),
        Ok(()) => {
            assert_eq!(left.iterations, before.iterations + right.iterations);
            assert_eq!(left.shards.len(), before.shards.len() + right.shards.len());
            for (name, stats) in &left.ops {
                let part = |r: &Report| r.ops.get(name).map_or(0, |s| s.ok);
                assert_eq!(stats.ok, part(&before) + part(&right), "op {name}");
            }
            if let Ok(json) = left.to_json() {
                let back = Report::from_json(&json, path).expect("a written report reads");
                assert!(back == left, "the merged report changed through its JSON");
            }
        }
    }
}

/// Runs a future that never waits on I/O (the fleet's locks are uncontended here).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}
