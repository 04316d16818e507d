//! The faults a vphone sandbox injected during a run, read from its `/sandbox/stats` (or
//! its state, when the sandbox runs in this process) before and after, so a report tells
//! injected faults apart from the failures that remained after the client's retries.

use crate::client::ApiClient;
use crate::sandbox::SandboxState;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Injected faults per rule (rules with the same text add up).
pub type FaultCounts = BTreeMap<String, u64>;

/// Where a run reads the faults its target injected.
pub enum FaultSource {
    /// The sandbox runs in this process.
    InProcess(SandboxState),
    /// A vphone sandbox elsewhere, read over HTTP.
    Http(ApiClient),
}

#[derive(Deserialize)]
struct StatsBody {
    #[serde(default)]
    faults: Vec<RuleCount>,
}

#[derive(Deserialize)]
struct RuleCount {
    rule: String,
    injected: u64,
}

impl FaultSource {
    /// The source for `client`'s target: over HTTP when it answers `/sandbox/health` as a
    /// vphone sandbox, else none.
    pub async fn probe(client: &ApiClient) -> Option<FaultSource> {
        client
            .is_vphone_sandbox()
            .await
            .then(|| FaultSource::Http(client.clone()))
    }

    /// The counts now; `None` when they cannot be read (the run's report then has none).
    pub async fn read(&self) -> Option<FaultCounts> {
        let pairs: Vec<(String, u64)> = match self {
            FaultSource::InProcess(state) => state
                .fault_counts()
                .into_iter()
                .map(|c| (c.rule, c.injected))
                .collect(),
            FaultSource::Http(client) => {
                let answer = client
                    .http()
                    .get(client.url("/sandbox/stats"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .ok()?;
                if !answer.status().is_success() {
                    return None;
                }
                let body: StatsBody = answer.json().await.ok()?;
                body.faults
                    .into_iter()
                    .map(|c| (c.rule, c.injected))
                    .collect()
            }
        };
        Some(add_up(pairs))
    }
}

/// The counts per rule text, rules with the same text added up (saturating: the counts may
/// come from another process, over HTTP).
fn add_up(pairs: impl IntoIterator<Item = (String, u64)>) -> FaultCounts {
    let mut counts = FaultCounts::new();
    for (rule, n) in pairs {
        let count = counts.entry(rule).or_default();
        *count = count.saturating_add(n);
    }
    counts
}

/// What was injected between two readings: per rule, `after - before` (a rule added during
/// the run counts from 0).
pub fn injected_between(before: &FaultCounts, after: &FaultCounts) -> FaultCounts {
    after
        .iter()
        .map(|(rule, n)| {
            let was = before.get(rule).copied().unwrap_or(0);
            (rule.clone(), n.saturating_sub(was))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_with_the_same_text_add_up_without_overflowing() {
        let got = add_up([
            ("a".to_owned(), 2),
            ("b".to_owned(), u64::MAX),
            ("a".to_owned(), 3),
            ("b".to_owned(), 1),
        ]);
        assert_eq!(
            got,
            FaultCounts::from([("a".to_owned(), 5), ("b".to_owned(), u64::MAX)])
        );
    }

    #[test]
    fn injected_faults_are_the_growth_between_readings() {
        let before = FaultCounts::from([("a".to_owned(), 3), ("b".to_owned(), 0)]);
        let after = FaultCounts::from([
            ("a".to_owned(), 10),
            ("b".to_owned(), 0),
            ("c".to_owned(), 2),
        ]);
        let got = injected_between(&before, &after);
        assert_eq!(
            got,
            FaultCounts::from([
                ("a".to_owned(), 7),
                ("b".to_owned(), 0),
                ("c".to_owned(), 2)
            ])
        );
    }
}
