//! The fleet: phones derived from one seed, with a compact per-phone state.
//!
//! A phone is its device index. Its keys are derived on demand from the seed and the index
//! (`SigningKey::derive(seed, index, purpose)`), never stored; what is kept per phone is the
//! bank's ids for it, as 128-bit numbers when they have the bank's canonical hex shape (ids of
//! any other shape spill into a side table), plus a few flag bits: about a hundred bytes per
//! idle phone whatever the fleet size.

use super::FleetError;
use crate::api::{DeviceId, PersonId};
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use vphone_keystore::{Backend, KeyPurpose, Seed, SigningKey};

/// The backend fleets derive and sign with unless told otherwise: aws-lc, several times
/// faster than the RustCrypto reference (single phones keep the reference and its
/// deterministic RFC 6979 signatures).
pub const DEFAULT_SIGNER: Backend = Backend::AwsLc;

/// Most derived keys a fleet keeps at once (see [`KeyCache`]).
pub const DEFAULT_KEY_CACHE: usize = 65_536;

struct CachedKey {
    index: u64,
    purpose: KeyPurpose,
    key: Arc<SigningKey>,
}

/// A bounded, direct-mapped cache of derived keys: a phone that signs often keeps its key
/// (as a real phone would) instead of paying the derivation (a scalar multiplication) per
/// challenge, while idle phones hold none. Each index and purpose maps to one slot; a
/// newcomer evicts whoever was there. Device index `d`'s two keys take slots `2d` and
/// `2d + 1` (modulo the size), so a slice of at most half as many consecutive phones as
/// there are slots never evicts a key it still uses. (A hashed slot did: among 2,000 phones
/// in 8,000 slots about a quarter shared a slot with another, and re-derived their key, a
/// scalar multiplication, at nearly every challenge.)
struct KeyCache {
    slots: Vec<Mutex<Option<CachedKey>>>,
}

impl KeyCache {
    fn new(size: usize) -> KeyCache {
        KeyCache {
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn get(
        &self,
        seed: &Seed,
        index: u64,
        purpose: KeyPurpose,
        signer: Backend,
    ) -> Arc<SigningKey> {
        if self.slots.is_empty() {
            return Arc::new(SigningKey::derive_with(seed, index, purpose, signer));
        }
        let at = index.wrapping_mul(2) | u64::from(purpose == KeyPurpose::Restricted);
        let slot = &self.slots[(at % self.slots.len() as u64) as usize];
        if let Some(c) = slot.lock().as_ref()
            && c.index == index
            && c.purpose == purpose
        {
            return c.key.clone();
        }
        // Derive outside the lock: it is the expensive part.
        let key = Arc::new(SigningKey::derive_with(seed, index, purpose, signer));
        *slot.lock() = Some(CachedKey {
            index,
            purpose,
            key: key.clone(),
        });
        key
    }
}

/// The person exists.
const PERSON: u8 = 1;
/// The person's mobile number is verified.
const VERIFIED: u8 = 2;
/// A device is bound (its unrestricted key verified).
const BOUND: u8 = 4;
/// The device also has a restricted key.
const RESTRICTED: u8 = 8;
/// `person` is an index into the spill table.
const PERSON_SPILLED: u8 = 16;
/// `device` is an index into the spill table.
const DEVICE_SPILLED: u8 = 32;
const STATE_BITS: u8 = PERSON | VERIFIED | BOUND | RESTRICTED;

/// A 128-bit id kept as two words, so a phone's state is 8-byte aligned (a `u128` field
/// would align it to 16 and pad every phone slot by 16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Id128([u64; 2]);

impl Id128 {
    fn new(n: u128) -> Id128 {
        Id128([(n >> 64) as u64, n as u64])
    }

    fn get(self) -> u128 {
        u128::from(self.0[0]) << 64 | u128::from(self.0[1])
    }
}

/// What the bank knows of one phone, in compact form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneState {
    person: Id128,
    device: Id128,
    flags: u8,
}

/// One phone's slot in the fleet; the lock is held across a state change so two workers
/// never bind the same phone twice.
pub type PhoneSlot = tokio::sync::Mutex<PhoneState>;

impl PhoneState {
    /// Whether the person exists.
    pub fn has_person(&self) -> bool {
        self.flags & PERSON != 0
    }
    /// Whether the person's number is verified.
    pub fn is_verified(&self) -> bool {
        self.flags & VERIFIED != 0
    }
    /// Whether the phone's device is bound.
    pub fn is_bound(&self) -> bool {
        self.flags & BOUND != 0
    }
    /// Whether the device also has its restricted key.
    pub fn has_restricted_key(&self) -> bool {
        self.flags & RESTRICTED != 0
    }
}

/// `n` as 32 lowercase hex digits followed by `suffix`: the id [`compact`] read it from.
fn expand(n: u128, suffix: &str) -> String {
    let mut digits = [0u8; 32];
    // 16 bytes always fit 32 digits; the digits are ASCII.
    let _ = hex::encode_to_slice(n.to_be_bytes(), &mut digits);
    let mut text = String::with_capacity(32 + suffix.len());
    text.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    text.push_str(suffix);
    text
}

/// Encodes 32 lowercase hex digits followed by `suffix` as a number.
fn compact(id: &str, suffix: &str) -> Option<u128> {
    let hex = id.strip_suffix(suffix)?;
    if !crate::api::is_hex32(hex) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

/// How a seed was given: a number (`42`) or 64 hex digits. The error does not repeat the
/// text: it may be a secret with a typo.
pub fn parse_seed(text: &str) -> Result<Seed, FleetError> {
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Seed::from_u64(n));
    }
    Seed::from_hex(text).map_err(|_| {
        FleetError::Usage(
            "the fleet seed must be a whole number (e.g. 42) or 64 hex digits".to_owned(),
        )
    })
}

/// A fleet, or the slice of one this process runs.
pub struct Fleet {
    seed: Seed,
    seed_text: String,
    total: u64,
    range: Range<u64>,
    phones: Vec<PhoneSlot>,
    spill: Mutex<Vec<Box<str>>>,
    keys: KeyCache,
    signer: Backend,
}

impl Fleet {
    /// The phones `range` of a fleet of `total` phones derived from `seed_text`.
    pub fn new(seed_text: &str, total: u64, range: Range<u64>) -> Result<Fleet, FleetError> {
        if range.end > total || range.start > range.end {
            return Err(FleetError::Mismatch(format!(
                "phones {range:?} are not part of a fleet of {total}"
            )));
        }
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| FleetError::Usage("fleet slice too large for this machine".into()))?;
        let mut phones = Vec::with_capacity(len);
        phones.resize_with(len, PhoneSlot::default);
        Ok(Fleet {
            seed: parse_seed(seed_text)?,
            seed_text: seed_text.to_owned(),
            total,
            range,
            keys: KeyCache::new(len.saturating_mul(4).min(DEFAULT_KEY_CACHE)),
            phones,
            spill: Mutex::new(Vec::new()),
            signer: DEFAULT_SIGNER,
        })
    }

    /// The same fleet keeping at most `slots` derived keys (0: derive on every use).
    pub fn with_key_cache(mut self, slots: usize) -> Fleet {
        self.keys = KeyCache::new(slots);
        self
    }

    /// The same fleet deriving and signing with `signer` (default [`DEFAULT_SIGNER`]); the
    /// keys are the same on every backend, only the speed (and aws-lc's random nonces)
    /// differ. Call before the first [`Fleet::key`].
    pub fn with_signer(mut self, signer: Backend) -> Fleet {
        self.signer = signer;
        self.keys = KeyCache::new(self.keys.slots.len());
        self
    }

    /// The backend this fleet derives and signs with.
    pub fn signer(&self) -> Backend {
        self.signer
    }

    /// The seed's public fingerprint (see `Seed::fingerprint`): what reports and logs show
    /// instead of the seed, which derives every key of the fleet.
    pub fn seed_fingerprint(&self) -> String {
        self.seed.fingerprint()
    }

    /// The seed as given (a secret: written only to the owner-only fleet file).
    pub fn seed_text(&self) -> &str {
        &self.seed_text
    }

    /// Phones in the whole fleet.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The device indices this fleet (slice) holds.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Phones in this slice.
    pub fn len(&self) -> usize {
        self.phones.len()
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.phones.is_empty()
    }

    /// The slot of the `i`-th phone of the slice (device index `range.start + i`).
    pub fn slot(&self, i: usize) -> &PhoneSlot {
        &self.phones[i]
    }

    /// The device index of the `i`-th phone of the slice.
    pub fn device_index(&self, i: usize) -> u64 {
        self.range.start + i as u64
    }

    /// The phone's key of `purpose`, derived from the seed (or taken from the bounded cache
    /// of recently used keys; nothing is stored per phone).
    pub fn key(&self, i: usize, purpose: KeyPurpose) -> Arc<SigningKey> {
        self.keys
            .get(&self.seed, self.device_index(i), purpose, self.signer)
    }

    /// Copies of all phone states (a snapshot; phones locked by a running worker are
    /// waited for).
    pub async fn states(&self) -> Vec<PhoneState> {
        let mut out = Vec::with_capacity(self.phones.len());
        for slot in &self.phones {
            out.push(*slot.lock().await);
        }
        out
    }

    fn spill(&self, id: &str) -> u128 {
        let mut spill = self.spill.lock();
        spill.push(id.into());
        (spill.len() - 1) as u128
    }

    fn unspill(&self, n: u128) -> String {
        self.spill
            .lock()
            .get(n as usize)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// Records that the phone's person exists.
    pub fn set_person(&self, state: &mut PhoneState, id: &PersonId) {
        match compact(id.as_str(), "cper") {
            Some(n) => {
                state.person = Id128::new(n);
                state.flags &= !PERSON_SPILLED;
            }
            None => {
                state.person = Id128::new(self.spill(id.as_str()));
                state.flags |= PERSON_SPILLED;
            }
        }
        state.flags = (state.flags | PERSON) & !(VERIFIED | BOUND | RESTRICTED);
    }

    /// Records that the person's number is verified.
    pub fn set_verified(&self, state: &mut PhoneState) {
        state.flags |= VERIFIED;
    }

    /// Records that the phone's device is bound.
    pub fn set_device(&self, state: &mut PhoneState, id: &DeviceId) {
        match compact(id.as_str(), "") {
            Some(n) => {
                state.device = Id128::new(n);
                state.flags &= !DEVICE_SPILLED;
            }
            None => {
                state.device = Id128::new(self.spill(id.as_str()));
                state.flags |= DEVICE_SPILLED;
            }
        }
        state.flags = (state.flags | BOUND) & !RESTRICTED;
    }

    /// Records that the device has its restricted key.
    pub fn set_restricted(&self, state: &mut PhoneState) {
        state.flags |= RESTRICTED;
    }

    /// The phone's person id, if it has one.
    pub fn person_id(&self, state: &PhoneState) -> Option<PersonId> {
        if !state.has_person() {
            return None;
        }
        let text = if state.flags & PERSON_SPILLED != 0 {
            self.unspill(state.person.get())
        } else {
            expand(state.person.get(), "cper")
        };
        PersonId::from_server(&text).ok()
    }

    /// The phone's device id, if it is bound.
    pub fn device_id(&self, state: &PhoneState) -> Option<DeviceId> {
        if !state.is_bound() {
            return None;
        }
        let text = if state.flags & DEVICE_SPILLED != 0 {
            self.unspill(state.device.get())
        } else {
            expand(state.device.get(), "")
        };
        DeviceId::from_server(&text).ok()
    }

    /// The fleet file: the seed, the fleet size, and one line per phone the bank knows
    /// (`index flags person device`). Keys are not written: they follow from the seed.
    pub async fn to_text(&self) -> String {
        let mut out = format!(
            "vphone-fleet 1\nseed {}\ndevices {}\n",
            self.seed_text, self.total
        );
        for (i, state) in self.states().await.iter().enumerate() {
            if !state.has_person() {
                continue;
            }
            let person = self.person_id(state);
            let device = self.device_id(state);
            let _ = writeln!(
                out,
                "{} {} {} {}",
                self.device_index(i),
                state.flags & STATE_BITS,
                person.as_ref().map_or("-", |p| p.as_str()),
                device.as_ref().map_or("-", |d| d.as_str()),
            );
        }
        out
    }

    /// Writes the fleet file, readable only by the owner (the seed derives the private keys).
    pub async fn save(&self, path: &Path) -> Result<(), FleetError> {
        let text = self.to_text().await;
        write_private(path, text.as_bytes()).map_err(|e| FleetError::io(path, e))
    }

    /// Applies a fleet file's phone lines to this fleet (lines outside this slice are
    /// skipped, so one file serves every shard). The file's seed and size must match.
    pub async fn load_text(&self, text: &str, path: &Path) -> Result<usize, FleetError> {
        let bad = |detail: String| FleetError::Format {
            path: path.to_owned(),
            what: "fleet",
            detail,
        };
        let mut lines = text.lines();
        if lines.next() != Some("vphone-fleet 1") {
            return Err(bad("the first line is not `vphone-fleet 1`".into()));
        }
        let seed = lines.next().and_then(|l| l.strip_prefix("seed "));
        let total = lines
            .next()
            .and_then(|l| l.strip_prefix("devices "))
            .and_then(|n| n.parse::<u64>().ok());
        let (Some(seed), Some(total)) = (seed, total) else {
            return Err(bad("missing `seed` or `devices` line".into()));
        };
        // Compared as seeds, not as text: the same 64 hex digits may be written in either case.
        let theirs = parse_seed(seed).map_or_else(|_| "?".to_owned(), |s| s.fingerprint());
        if theirs != self.seed_fingerprint() || total != self.total {
            return Err(FleetError::Mismatch(format!(
                "{}: the fleet file holds the seed with fingerprint {theirs} and {total} \
                 devices, but this run has the seed with fingerprint {} and {} devices; give \
                 the file's seed and --devices (or omit them)",
                path.display(),
                self.seed_fingerprint(),
                self.total
            )));
        }
        let mut applied = 0;
        for (n, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [index, flags, person, device] = fields[..] else {
                return Err(bad(format!("line {}: expected 4 fields", n + 4)));
            };
            let (Ok(index), Ok(flags)) = (index.parse::<u64>(), flags.parse::<u8>()) else {
                return Err(bad(format!("line {}: bad index or flags", n + 4)));
            };
            if !self.range.contains(&index) {
                continue;
            }
            let mut state = self.phones[(index - self.range.start) as usize]
                .lock()
                .await;
            let person =
                PersonId::from_server(person).map_err(|e| bad(format!("line {}: {e}", n + 4)))?;
            self.set_person(&mut state, &person);
            if flags & VERIFIED != 0 {
                self.set_verified(&mut state);
            }
            if flags & BOUND != 0 {
                let device = DeviceId::from_server(device)
                    .map_err(|e| bad(format!("line {}: {e}", n + 4)))?;
                self.set_device(&mut state, &device);
            }
            if flags & RESTRICTED != 0 {
                self.set_restricted(&mut state);
            }
            applied += 1;
        }
        Ok(applied)
    }

    /// Reads the seed and size of a fleet file, to build a matching [`Fleet`].
    pub fn peek_file(text: &str) -> Option<(String, u64)> {
        let mut lines = text.lines().skip(1);
        let seed = lines.next()?.strip_prefix("seed ")?.to_owned();
        let total = lines.next()?.strip_prefix("devices ")?.parse().ok()?;
        Some((seed, total))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_of_any_shape_survive_the_fleet_file() {
        let fleet = Fleet::new("7", 10, 2..6).unwrap().with_key_cache(0);
        let canonical = PersonId::generate();
        let odd = PersonId::from_user("person-17").unwrap();
        let device = DeviceId::generate();
        {
            let mut s = fleet.slot(0).lock().await;
            fleet.set_person(&mut s, &canonical);
            fleet.set_verified(&mut s);
            fleet.set_device(&mut s, &device);
            fleet.set_restricted(&mut s);
        }
        {
            let mut s = fleet.slot(3).lock().await;
            fleet.set_person(&mut s, &odd);
        }
        let text = fleet.to_text().await;
        let other = Fleet::new("7", 10, 0..10).unwrap();
        assert_eq!(other.load_text(&text, Path::new("f")).await.unwrap(), 2);
        let s = *other.slot(2).lock().await;
        assert!(s.is_verified() && s.is_bound() && s.has_restricted_key());
        assert_eq!(other.person_id(&s), Some(canonical));
        assert_eq!(other.device_id(&s), Some(device));
        let s = *other.slot(5).lock().await;
        assert_eq!((other.person_id(&s), s.is_bound()), (Some(odd), false));
        assert!(
            Fleet::new("8", 10, 0..10)
                .unwrap()
                .load_text(&text, Path::new("f"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_fleet_file_matches_its_seed_written_in_the_other_case() {
        let lower = "6b1f0c3e9a5d47e2b8c1f0a3d5e7c9b1a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d2";
        let fleet = Fleet::new(lower, 4, 0..4).unwrap();
        fleet.set_person(&mut *fleet.slot(1).lock().await, &PersonId::generate());
        let text = fleet.to_text().await;
        let upper = Fleet::new(&lower.to_uppercase(), 4, 0..4).unwrap();
        assert_eq!(upper.load_text(&text, Path::new("f")).await.unwrap(), 1);
        // Another seed or size is still refused, naming both fingerprints.
        let err = Fleet::new("9", 4, 0..4)
            .unwrap()
            .load_text(&text, Path::new("f"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&fleet.seed_fingerprint()), "{err}");
        assert!(!err.contains(lower), "{err}");
        assert!(
            Fleet::new(lower, 5, 0..5)
                .unwrap()
                .load_text(&text, Path::new("f"))
                .await
                .is_err()
        );
    }

    #[test]
    fn ids_are_expanded_as_the_formatter_writes_them_and_read_back() {
        for n in [0u128, 1, 0xabc, u64::MAX as u128, u128::MAX / 3, u128::MAX] {
            for suffix in ["", "cper"] {
                let text = expand(n, suffix);
                assert_eq!(text, format!("{n:032x}{suffix}"));
                assert_eq!(compact(&text, suffix), Some(n));
            }
        }
    }

    #[test]
    fn the_same_seed_derives_the_same_keys() {
        let a = Fleet::new("42", 100, 0..100).unwrap();
        let b = Fleet::new("42", 100, 50..100).unwrap();
        let c = Fleet::new("43", 100, 0..100).unwrap();
        let pk = |f: &Fleet, i| f.key(i, KeyPurpose::Unrestricted).public_key_hex();
        // Cached and freshly derived keys are the same key.
        assert_eq!(pk(&a, 60), pk(&a, 60));
        let uncached = Fleet::new("42", 100, 0..100).unwrap().with_key_cache(0);
        assert_eq!(pk(&a, 60), pk(&uncached, 60));
        let tiny = Fleet::new("42", 100, 0..100).unwrap().with_key_cache(1);
        assert_eq!(pk(&tiny, 60), pk(&a, 60));
        assert_eq!(pk(&tiny, 61), pk(&a, 61));
        assert_eq!(pk(&tiny, 60), pk(&a, 60));
        assert_eq!(pk(&a, 60), pk(&b, 10));
        assert_ne!(pk(&a, 60), pk(&c, 60));
        assert_ne!(pk(&a, 1), a.key(1, KeyPurpose::Restricted).public_key_hex());
        // Either signer derives the same keys; the default is the fast one.
        assert_eq!(a.key(3, KeyPurpose::Unrestricted).backend(), DEFAULT_SIGNER);
        let reference = Fleet::new("42", 100, 0..100)
            .unwrap()
            .with_signer(Backend::RustCrypto);
        assert_eq!(
            reference.key(3, KeyPurpose::Unrestricted).backend(),
            Backend::RustCrypto
        );
        assert_eq!(pk(&reference, 60), pk(&a, 60));
    }

    #[test]
    fn a_slice_within_half_the_cache_keeps_every_key_it_uses() {
        // 300 phones of a larger fleet, both keys each, in 600 slots: all stay cached, so
        // the second round gets the very same keys back (nothing derived again).
        let fleet = Fleet::new("42", 1000, 700..1000)
            .unwrap()
            .with_key_cache(600);
        let purposes = [KeyPurpose::Unrestricted, KeyPurpose::Restricted];
        let first: Vec<Arc<SigningKey>> = (0..300)
            .flat_map(|i| purposes.map(|p| fleet.key(i, p)))
            .collect();
        let second: Vec<Arc<SigningKey>> = (0..300)
            .flat_map(|i| purposes.map(|p| fleet.key(i, p)))
            .collect();
        let kept = first
            .iter()
            .zip(&second)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(kept, 600);
        // One slot too few: the first phone's keys were evicted by the last one's.
        let small = Fleet::new("42", 1000, 700..1000)
            .unwrap()
            .with_key_cache(599);
        let before = small.key(0, KeyPurpose::Unrestricted);
        for i in 1..300 {
            for p in purposes {
                small.key(i, p);
            }
        }
        assert!(!Arc::ptr_eq(
            &before,
            &small.key(0, KeyPurpose::Unrestricted)
        ));
    }

    #[test]
    fn an_idle_phone_is_small() {
        assert!(
            std::mem::size_of::<PhoneSlot>() <= 128,
            "{}",
            std::mem::size_of::<PhoneSlot>()
        );
    }
}
