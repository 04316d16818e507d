//! Latency histograms: microseconds, 3 significant digits, and their text form in a report
//! file (HdrHistogram V2 + DEFLATE, base64).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::{Counter, Histogram};

/// Latencies are recorded in microseconds; values above one hour are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A fresh latency histogram: microseconds, 3 significant digits, growing as values need.
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits is a constant the library always accepts.
    let mut h = Histogram::new(3).expect("3 significant digits is valid");
    h.auto(true);
    h
}

/// Records `us` microseconds, clamped to 1..=[`MAX_LATENCY_US`], growing the histogram.
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let us = us.clamp(1, MAX_LATENCY_US);
    if h.record(us).is_err() {
        // Only a failed resize (out of memory for the counts) lands here.
        h.saturating_record(us);
    }
}

/// Encodes a histogram as base64 of its V2 + DEFLATE serialization.
pub fn encode_histogram<T: Counter>(h: &Histogram<T>) -> Result<String, String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| format!("{e:?}"))?;
    Ok(B64.encode(buf))
}

/// Decodes what [`encode_histogram`] wrote.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    decode_any(text)
}

/// Decodes a per-second histogram (32-bit counts) that [`encode_histogram`] wrote.
pub(in crate::fleet) fn decode_histogram_u32(text: &str) -> Result<Histogram<u32>, String> {
    decode_any(text)
}

fn decode_any<T: Counter>(text: &str) -> Result<Histogram<T>, String> {
    let bytes = B64.decode(text).map_err(|e| e.to_string())?;
    let mut h: Histogram<T> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{e:?}"))?;
    h.auto(true);
    Ok(h)
}

/// Whether two histograms hold exactly the same recorded values (whatever their sizes).
pub fn same_values<T: Counter>(a: &Histogram<T>, b: &Histogram<T>) -> bool {
    a.len() == b.len()
        && a.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .eq(b
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value())))
}
