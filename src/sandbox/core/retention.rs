//! When the bank forgets: anything finished (completed, spent or expired) keeps answering
//! as it did for the retention window, then the sweep forgets it and its id answers 404.

use crate::api::Timestamp;
use std::time::Duration;

/// Whether something finished `at` has been finished for longer than `retention` by `now`.
pub fn finished_longer_than(at: Timestamp, now: Timestamp, retention: Duration) -> bool {
    u64::try_from(now.unix().saturating_sub(at.unix()))
        .is_ok_and(|elapsed| Duration::from_secs(elapsed) > retention)
}

/// `lifetime` as whole seconds for timestamp arithmetic.
pub fn seconds(lifetime: Duration) -> i64 {
    i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2)
}
