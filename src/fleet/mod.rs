//! Fleets: many simulated phones at once, for load tests of a banking backend.
//!
//! A fleet is derived from one seed (device index `i` signs with
//! `SigningKey::derive(seed, i, purpose)`), keeps a compact state per phone, and runs
//! scenarios (onboarding, binding, restricted keys, device-signing and SMS challenges,
//! change requests, weighted mixes) under a closed or open pacing model. Every operation's
//! latency goes into an HDR histogram; reports serialize those histograms so shards run on
//! many machines merge losslessly.

pub mod cli;
mod clock;
mod error;
pub mod faults;
mod html;
mod memory;
mod model;
mod op;
mod pacing;
mod recorder;
mod report;
mod runner;
mod scenario;
mod series;
mod shard;

pub use clock::{Clock, SYSTEM_CLOCK};
pub use error::FleetError;
pub use memory::{peak_rss_bytes, rss_bytes, use_small_pages};
pub use model::{DEFAULT_KEY_CACHE, DEFAULT_SIGNER, Fleet, PhoneSlot, PhoneState, parse_seed};
pub use op::Op;
pub use pacing::{Model, Pacing};
pub use recorder::{Failure, Recorder};
pub use report::{
    ErrorKey, MAX_LATENCY_US, MAX_LISTED_SHARDS, OpStats, REPORT_VERSION, Report, ShardRun,
    decode_histogram, encode_histogram, new_histogram, record_us, same_values,
};
pub use runner::{
    DEFAULT_DRAIN, ProgressMode, RunOptions, START_AT_GRACE, START_AT_MAX_AHEAD, Start, Threads,
    run, start_delay,
};
pub use scenario::{Aborted, Ran, Scenario, Step, Steps, failure_of};
pub use series::{SERIES_SIGNIFICANT_DIGITS, SecondBuffer, SecondClock, SecondOp, Series};
pub use shard::{COUNT_ENV, INDEX_ENV, Shard};
