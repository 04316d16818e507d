//! The variant bank's ids: every id the real sandbox mints is shown to clients as a long
//! opaque id (`<kind>Id-<32 hex>-<32 hex>`, 70-80 characters, past the 64 characters the
//! sandbox itself would accept), and mapped back to the real id on the way in.

use crate::api::{is_hex32, random_hex32};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;

/// Both directions of the id mapping. One lock: a lookup in one direction and the insert in
/// both must be atomic, or two racing answers could mint two variant ids for one real id.
#[derive(Debug, Default)]
pub(super) struct IdMap {
    maps: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    to_variant: HashMap<String, String>,
    to_real: HashMap<String, String>,
}

/// The JSON keys whose string values are ids the sandbox minted.
const ID_KEYS: &[&str] = &["id", "person_id", "device_id", "key_id"];

/// The kind word of a real id, judged from its canonical shape; `None` for anything the
/// sandbox does not mint (left as it is).
fn kind_of(real: &str) -> Option<&'static str> {
    if real.strip_suffix("cper").is_some_and(is_hex32) {
        Some("personId")
    } else if real.strip_suffix("cmno").is_some_and(is_hex32) {
        Some("mobileNumberId")
    } else if is_hex32(real) {
        Some("objectId")
    } else if uuid::Uuid::parse_str(real).is_ok_and(|u| u.hyphenated().to_string() == real) {
        Some("keyId")
    } else {
        None
    }
}

impl IdMap {
    /// The variant id shown for `real`, minted on first sight.
    pub(super) fn shown(&self, real: &str) -> Option<String> {
        let kind = kind_of(real)?;
        let mut maps = self.maps.lock();
        if let Some(v) = maps.to_variant.get(real) {
            return Some(v.clone());
        }
        let variant = format!("{kind}-{}-{}", random_hex32(), random_hex32());
        maps.to_variant.insert(real.to_owned(), variant.clone());
        maps.to_real.insert(variant.clone(), real.to_owned());
        Some(variant)
    }

    /// The real id behind a variant id a client sent, if it is one.
    pub(super) fn real(&self, shown: &str) -> Option<String> {
        self.maps.lock().to_real.get(shown).cloned()
    }

    /// A request path with every variant-id segment replaced by its real id.
    pub(super) fn real_path(&self, path: &str) -> String {
        path.split('/')
            .map(|seg| {
                let decoded = percent_decode(seg);
                self.real(&decoded).unwrap_or_else(|| seg.to_owned())
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A query string with every variant-id value replaced by its real id.
    pub(super) fn real_query(&self, query: &str) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = self.real(&v).unwrap_or_else(|| v.into_owned());
            out.append_pair(&k, &v);
        }
        out.finish()
    }

    /// Replaces every string in a request body that is a variant id by its real id.
    pub(super) fn make_real(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Some(real) = self.real(s) {
                    *s = real;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.make_real(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.make_real(v)),
            _ => {}
        }
    }

    /// Replaces every id the sandbox minted in an answer by its variant id: values of the
    /// id keys, and real ids inside `url`. `string_to_sign` is never touched (it is signed
    /// byte for byte).
    pub(super) fn make_shown(&self, value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| self.make_shown(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if ID_KEYS.contains(&key.as_str()) => {
                            if let Some(shown) = self.shown(s) {
                                *s = shown;
                            }
                        }
                        Value::String(s) if key == "url" => *s = self.shown_path(s),
                        Value::String(_) => {}
                        other => self.make_shown(other),
                    }
                }
            }
            _ => {}
        }
    }

    fn shown_path(&self, path: &str) -> String {
        path.split('/')
            .map(|seg| self.shown(seg).unwrap_or_else(|| seg.to_owned()))
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn percent_decode(seg: &str) -> String {
    if !seg.contains('%') {
        return seg.to_owned();
    }
    // `form_urlencoded` also turns `+` into a space, which a path does not; protect it.
    let protected = seg.replace('+', "%2B");
    form_urlencoded::parse(format!("x={protected}").as_bytes())
        .next()
        .map_or_else(|| seg.to_owned(), |(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ids_are_shown_long_and_opaque_and_map_back() {
        let map = IdMap::default();
        let real = format!("{}cper", "ab".repeat(16));
        let shown = map.shown(&real).unwrap();
        assert!(
            shown.starts_with("personId-") && shown.len() > 64,
            "{shown}"
        );
        assert_eq!(
            map.shown(&real).unwrap(),
            shown,
            "one real id, one variant id"
        );
        assert_eq!(map.real(&shown).unwrap(), real);
        assert_eq!(
            map.real_path(&format!("/v1/persons/{shown}/mobile_number")),
            format!("/v1/persons/{real}/mobile_number")
        );
        assert!(map.shown("not-an-id-the-sandbox-mints").is_none());
    }

    #[test]
    fn answers_show_variant_ids_but_never_touch_the_string_to_sign() {
        let map = IdMap::default();
        let real = "cd".repeat(16);
        let mut v = serde_json::json!({
            "id": real, "string_to_sign": format!("sign {real}"),
            "url": format!("/v1/change_requests/{real}/authorize"),
            "nested": {"device_id": real}
        });
        map.make_shown(&mut v);
        let shown = map.shown(&real).unwrap();
        assert_eq!(v["id"], shown.as_str());
        assert_eq!(v["nested"]["device_id"], shown.as_str());
        assert_eq!(v["string_to_sign"], format!("sign {real}").as_str());
        assert_eq!(
            v["url"],
            format!("/v1/change_requests/{shown}/authorize").as_str()
        );
        let mut body = serde_json::json!({"device_id": shown});
        map.make_real(&mut body);
        assert_eq!(body["device_id"], real.as_str());
    }
}
