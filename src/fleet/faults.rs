//! The faults a vphone sandbox injected during a run, read from its `/sandbox/stats` (or
//! its state, when the sandbox runs in this process) before and after, so a report tells
//! injected faults apart from the failures that remained after the client's retries.
//!
//! A `PUT /sandbox/faults` starts the per-rule counts over, so a run that met one would
//! under-report: the counts read are the sandbox's totals per rule text since it started
//! (`faults_total`), which go on through replacements, and its `faults_generation` tells
//! the report that the rules changed during the run. A sandbox from before those fields
//! gives only the per-rule counts; a count that went down then shows the replacement. A
//! sandbox keeps the totals of a bounded number of retired rule texts and sums older ones
//! (`faults_total_retired`): faults of texts dropped during the run are reported under
//! [`RETIRED_RULES`].

use crate::client::ApiClient;
use crate::sandbox::SandboxState;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Injected faults per rule (rules with the same text add up).
pub type FaultCounts = BTreeMap<String, u64>;

/// Where a run's faults go whose rule text the sandbox dropped from its totals during the
/// run (it had replaced its rules very often).
pub const RETIRED_RULES: &str = "(rules retired from the sandbox's totals)";

/// Where a run reads the faults its target injected.
pub enum FaultSource {
    /// The sandbox runs in this process.
    InProcess(SandboxState),
    /// A vphone sandbox elsewhere, read over HTTP.
    Http(ApiClient),
}

/// One reading of a sandbox's fault counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultReading {
    /// Injected faults per rule text: since the sandbox started, or, from a sandbox that
    /// keeps no totals, since its rules were last set.
    pub counts: FaultCounts,
    /// How many times its rules were replaced since it started, when it says.
    pub generation: Option<u64>,
    /// Faults of retired rule texts no longer in `counts` (0 when it keeps none apart).
    pub retired: u64,
}

/// The faults injected during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFaults {
    /// Per rule text, how many faults were injected between the two readings.
    pub injected: FaultCounts,
    /// The sandbox's rules were replaced (or cleared) between the two readings.
    pub rules_replaced: bool,
}

#[derive(Deserialize)]
struct StatsBody {
    #[serde(default)]
    faults: Vec<RuleCount>,
    #[serde(default)]
    faults_generation: Option<u64>,
    #[serde(default)]
    faults_total: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    faults_total_retired: u64,
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

    /// The counters now; `None` when they cannot be read (the run's report then has none).
    pub async fn read(&self) -> Option<FaultReading> {
        match self {
            FaultSource::InProcess(state) => Some(FaultReading {
                counts: state.fault_totals(),
                generation: Some(state.faults_generation()),
                retired: state.faults_retired_total(),
            }),
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
                let counts = match body.faults_total {
                    Some(totals) => totals,
                    None => add_up(body.faults.into_iter().map(|c| (c.rule, c.injected))),
                };
                Some(FaultReading {
                    counts,
                    generation: body.faults_generation,
                    retired: body.faults_total_retired,
                })
            }
        }
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
/// the run counts from 0; a count that went down, from where it started over), and whether the rules were replaced in between (the generations
/// differ or, when the sandbox gives none, a count went down).
pub fn injected_between(before: &FaultReading, after: &FaultReading) -> RunFaults {
    let went_down = || {
        before
            .counts
            .iter()
            .any(|(rule, was)| after.counts.get(rule).is_none_or(|now| now < was))
    };
    let rules_replaced = match (before.generation, after.generation) {
        (Some(was), Some(now)) => was != now,
        _ => went_down(),
    };
    let mut injected: FaultCounts = after
        .counts
        .iter()
        .map(|(rule, n)| {
            let was = before.counts.get(rule).copied().unwrap_or(0);
            // A count that went down started over in between: what it counts since is
            // all that can still be told.
            (rule.clone(), if *n < was { *n } else { n - was })
        })
        .collect();
    // The retired total grew by the final totals of the texts dropped in between; of those
    // listed before, only their growth since belongs to the run.
    let dropped_before: u64 = before
        .counts
        .iter()
        .filter(|(rule, _)| !after.counts.contains_key(*rule))
        .map(|(_, n)| *n)
        .fold(0, u64::saturating_add);
    let retired = after
        .retired
        .saturating_sub(before.retired)
        .saturating_sub(dropped_before);
    if retired > 0 {
        injected.insert(RETIRED_RULES.to_owned(), retired);
    }
    RunFaults {
        injected,
        rules_replaced,
    }
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

    fn reading(counts: &[(&str, u64)], generation: Option<u64>) -> FaultReading {
        FaultReading {
            counts: counts.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
            generation,
            retired: 0,
        }
    }

    #[test]
    fn injected_faults_are_the_growth_between_readings() {
        let before = reading(&[("a", 3), ("b", 0)], Some(0));
        let after = reading(&[("a", 10), ("b", 0), ("c", 2)], Some(0));
        let got = injected_between(&before, &after);
        assert_eq!(
            got.injected,
            FaultCounts::from([
                ("a".to_owned(), 7),
                ("b".to_owned(), 0),
                ("c".to_owned(), 2)
            ])
        );
        assert!(!got.rules_replaced);
    }

    #[test]
    fn a_replacement_shows_by_its_generation_or_else_by_a_count_that_went_down() {
        let same = [("a", 3)];
        assert!(
            injected_between(&reading(&same, Some(1)), &reading(&same, Some(2))).rules_replaced
        );
        // A sandbox without generations: its per-rule counts started over.
        let reset = injected_between(&reading(&[("a", 3)], None), &reading(&[("a", 1)], None));
        assert!(reset.rules_replaced);
        assert_eq!(reset.injected["a"], 1, "what can still be told");
        let gone = injected_between(&reading(&[("a", 3)], None), &reading(&[], None));
        assert!(gone.rules_replaced, "a rule that vanished was replaced");
        assert!(
            !injected_between(&reading(&[("a", 3)], None), &reading(&[("a", 5)], None))
                .rules_replaced
        );
    }

    #[test]
    fn faults_of_rule_texts_the_sandbox_retired_during_the_run_are_not_lost() {
        // Before: "a" had 3 faults. During the run "a" got 2 more, "b" came and went with 4,
        // and the sandbox dropped both texts into its retired total (2 before, 2 + 5 + 4 after).
        let before = FaultReading {
            retired: 2,
            ..reading(&[("a", 3)], Some(1))
        };
        let after = FaultReading {
            retired: 11,
            ..reading(&[("c", 1)], Some(9))
        };
        let got = injected_between(&before, &after);
        assert_eq!(
            got.injected,
            FaultCounts::from([("c".to_owned(), 1), (RETIRED_RULES.to_owned(), 6)])
        );
        assert!(got.rules_replaced);
    }
}
