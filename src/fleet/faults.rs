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
//!
//! Shards of one run often share one sandbox, and each shard's two readings then span every
//! fault that sandbox injected while it ran, other shards' included. So a report keeps its
//! readings ([`FaultWindow`], named by the sandbox's random `instance` id), and a merge
//! counts each sandbox instance once over the union of its shards' windows
//! ([`injected_in`]) instead of adding up the shards' differences.

use crate::client::ApiClient;
use crate::sandbox::SandboxState;
use serde::{Deserialize, Serialize};
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

/// One reading of a sandbox's fault counters (in a report file under the names
/// `/sandbox/stats` gives them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultReading {
    /// The sandbox process's random id, when it gives one (a sandbox from before instance
    /// ids gives none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Injected faults per rule text: since the sandbox started, or, from a sandbox that
    /// keeps no totals, since its rules were last set.
    #[serde(rename = "faults_total")]
    pub counts: FaultCounts,
    /// How many times its rules were replaced since it started, when it says.
    #[serde(
        rename = "faults_generation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generation: Option<u64>,
    /// Faults of retired rule texts no longer in `counts` (0 when it keeps none apart).
    #[serde(rename = "faults_total_retired", default)]
    pub retired: u64,
}

impl FaultReading {
    /// Where the reading stands in its instance's history: the generation, then every fault
    /// counted so far. Both only grow, and two readings of one instance at the same place
    /// read alike (within a generation the rule texts stay, and their counts only grow), so
    /// of two readings the one placed lower was taken earlier.
    fn place(&self) -> (u64, u64) {
        let all = self
            .counts
            .values()
            .fold(self.retired, |sum, n| sum.saturating_add(*n));
        (self.generation.unwrap_or(0), all)
    }
}

/// A run's readings of one sandbox instance before and after it: what a report keeps so a
/// merge can count each injected fault once, however many shards watched that sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The reading before the run.
    pub before: FaultReading,
    /// The reading after the run.
    pub after: FaultReading,
}

impl FaultWindow {
    /// The window between two readings of one sandbox instance; `None` when either gives no
    /// instance id or the ids differ (the sandbox was restarted, or another answered).
    pub fn new(before: FaultReading, after: FaultReading) -> Option<FaultWindow> {
        (before.instance.is_some() && before.instance == after.instance)
            .then_some(FaultWindow { before, after })
    }

    /// The window from when a sandbox restarted during a run (`after` comes from an
    /// instance other than `before`'s) to `after`: a restarted sandbox counts from zero, so
    /// all of `after`'s counts fall in the run. `None` unless both readings name an instance
    /// and the two differ. The old instance's faults after `before` were never read.
    pub fn since_restart(before: &FaultReading, after: FaultReading) -> Option<FaultWindow> {
        let restarted = before.instance.is_some()
            && after.instance.is_some()
            && before.instance != after.instance;
        restarted.then(|| FaultWindow {
            before: FaultReading {
                instance: after.instance.clone(),
                counts: FaultCounts::new(),
                generation: Some(0),
                retired: 0,
            },
            after,
        })
    }

    /// The sandbox instance both readings came from.
    pub fn instance(&self) -> &str {
        self.before.instance.as_deref().unwrap_or_default()
    }
}

/// The faults injected during some windows, each fault once: windows of one sandbox
/// instance that overlap (shards that ran at the same time) count from the earliest reading
/// before to the latest after (per rule text, the largest count after less the smallest
/// before, as the counts only grow); windows that do not overlap, and windows of different
/// instances, add up. Rules replaced in a window are handled as in [`injected_between`].
pub fn injected_in(windows: &[FaultWindow]) -> FaultCounts {
    let mut by_instance: BTreeMap<&str, Vec<&FaultWindow>> = BTreeMap::new();
    for w in windows {
        by_instance.entry(w.instance()).or_default().push(w);
    }
    let mut spans: Vec<(&FaultReading, &FaultReading)> = Vec::new();
    for (_, mut ws) in by_instance {
        ws.sort_by_key(|w| w.before.place());
        let mut current: Option<(&FaultReading, &FaultReading)> = None;
        for w in ws {
            current = match current {
                // It began before the current span ended: one span, to the later end.
                Some((from, to)) if w.before.place() <= to.place() => Some((
                    from,
                    if w.after.place() > to.place() {
                        &w.after
                    } else {
                        to
                    },
                )),
                Some(done) => {
                    spans.push(done);
                    Some((&w.before, &w.after))
                }
                None => Some((&w.before, &w.after)),
            };
        }
        spans.extend(current);
    }
    add_up(
        spans
            .into_iter()
            .flat_map(|(before, after)| injected_between(before, after).injected),
    )
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
    instance: Option<String>,
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
            FaultSource::InProcess(state) => {
                let totals = state.fault_totals();
                Some(FaultReading {
                    instance: Some(state.instance().to_owned()),
                    counts: totals.by_text,
                    generation: Some(totals.generation),
                    retired: totals.retired,
                })
            }
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
                    instance: body.instance,
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

    fn reading(pairs: &[(&str, u64)], generation: Option<u64>) -> FaultReading {
        with_retired(pairs, generation, 0)
    }

    /// A reading whose sandbox also summed `retired` faults of dropped rule texts.
    fn with_retired(pairs: &[(&str, u64)], generation: Option<u64>, retired: u64) -> FaultReading {
        FaultReading {
            instance: None,
            counts: counts(pairs),
            generation,
            retired,
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

    fn of(instance: &str, r: FaultReading) -> FaultReading {
        FaultReading {
            instance: Some(instance.to_owned()),
            ..r
        }
    }

    fn window(instance: &str, before: &[(&str, u64)], after: &[(&str, u64)]) -> FaultWindow {
        FaultWindow::new(
            of(instance, reading(before, Some(0))),
            of(instance, reading(after, Some(0))),
        )
        .unwrap()
    }

    fn counts(pairs: &[(&str, u64)]) -> FaultCounts {
        pairs.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect()
    }

    #[test]
    fn overlapping_windows_of_one_instance_count_each_fault_once() {
        // Shard 1 read a=2, then a=9; shard 2 (inside shard 1's run) read a=4, then a=7, b=1.
        let one = window("i1", &[("a", 2)], &[("a", 9), ("b", 1)]);
        let two = window("i1", &[("a", 4)], &[("a", 7)]);
        let want = counts(&[("a", 7), ("b", 1)]);
        assert_eq!(injected_in(&[one.clone(), two.clone()]), want);
        assert_eq!(injected_in(&[two, one]), want, "in any order");
        // Staggered: shard 2 began inside shard 1's run and ended after it.
        let one = window("i1", &[("a", 2)], &[("a", 6)]);
        let two = window("i1", &[("a", 4)], &[("a", 10)]);
        assert_eq!(injected_in(&[one, two]), counts(&[("a", 8)]));
    }

    #[test]
    fn windows_apart_in_time_or_of_different_instances_add_up() {
        // One after the other, with faults in between that were no shard's.
        let one = window("i1", &[("a", 2)], &[("a", 5)]);
        let two = window("i1", &[("a", 8)], &[("a", 10)]);
        assert_eq!(injected_in(&[two, one]), counts(&[("a", 5)]));
        // The same readings from two sandboxes: each counts.
        let one = window("i1", &[("a", 2)], &[("a", 5)]);
        let two = window("i2", &[("a", 2)], &[("a", 5)]);
        assert_eq!(injected_in(&[one, two]), counts(&[("a", 6)]));
    }

    #[test]
    fn a_window_needs_one_instance_on_both_readings() {
        let r = reading(&[("a", 1)], Some(0));
        assert!(FaultWindow::new(r.clone(), r.clone()).is_none(), "no id");
        assert!(FaultWindow::new(of("i1", r.clone()), of("i2", r.clone())).is_none());
        assert!(FaultWindow::new(of("i1", r.clone()), of("i1", r)).is_some());
    }

    #[test]
    fn overlapping_windows_across_a_retirement_lose_nothing_and_double_nothing() {
        // Shard 1: a=3 (retired 2) .. c=1 (retired 11): "a" got 2 more, "b" came with 4,
        // both retired. Shard 2 read a=4 at generation 1, and c=1 at the end.
        let after = of("i", with_retired(&[("c", 1)], Some(9), 11));
        let one = FaultWindow::new(
            of("i", with_retired(&[("a", 3)], Some(1), 2)),
            after.clone(),
        )
        .unwrap();
        let two = FaultWindow::new(of("i", with_retired(&[("a", 4)], Some(1), 2)), after).unwrap();
        assert_eq!(
            injected_in(&[two, one]),
            counts(&[("c", 1), (RETIRED_RULES, 6)])
        );
    }

    #[test]
    fn faults_of_rule_texts_the_sandbox_retired_during_the_run_are_not_lost() {
        // Before: "a" had 3 faults. During the run "a" got 2 more, "b" came and went with 4,
        // and the sandbox dropped both texts into its retired total (2 before, 2 + 5 + 4 after).
        let before = with_retired(&[("a", 3)], Some(1), 2);
        let after = with_retired(&[("c", 1)], Some(9), 11);
        let got = injected_between(&before, &after);
        assert_eq!(got.injected, counts(&[("c", 1), (RETIRED_RULES, 6)]));
        assert!(got.rules_replaced);
    }
}
