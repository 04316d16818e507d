//! Merging the reports of a run's shards: counts add, histograms merge exactly, nothing is
//! averaged; reports of different runs are refused with the reason.

use super::{Report, ShardRun, add_counts, add_each, micros_to_secs, secs_to_micros};
use crate::fleet::FleetError;
use std::collections::BTreeMap;

impl Report {
    /// Whether `other` measured another part of the same run: the same scenario, pacing,
    /// seed and fleet size, cut into the same number of shards, none of them run twice.
    /// Anything else would not be one fleet's report, so it is refused with the reason.
    pub fn check_mergeable(&self, other: &Report) -> Result<(), FleetError> {
        for (what, mine, theirs) in [
            ("scenario", &self.scenario, &other.scenario),
            ("pacing", &self.pacing, &other.pacing),
            ("seed", &self.seed, &other.seed),
        ] {
            if mine != theirs {
                return Err(FleetError::Mismatch(format!(
                    "cannot merge reports of different runs: {what} {mine:?} vs {theirs:?} \
                     (merge only the shards of one run: same --scenario, pacing flags, fleet seed \
                     and --devices)"
                )));
            }
        }
        if self.devices != other.devices {
            return Err(FleetError::Mismatch(format!(
                "cannot merge reports of different runs: a fleet of {} phones vs one of {}",
                self.devices, other.devices
            )));
        }
        let count = |s: &ShardRun| s.shard.split_once('/').map(|(_, n)| n.to_owned());
        for mine in &self.shards {
            for theirs in &other.shards {
                if count(mine) != count(theirs) {
                    return Err(FleetError::Mismatch(format!(
                        "cannot merge shard {} with shard {}: the fleet was cut into a \
                         different number of shards",
                        mine.shard, theirs.shard
                    )));
                }
                let overlap = mine.first_device.max(theirs.first_device)
                    < mine.end_device.min(theirs.end_device);
                if mine.shard == theirs.shard || overlap {
                    return Err(FleetError::Mismatch(format!(
                        "shard {} (phones {}..{}) and shard {} (phones {}..{}) overlap: a \
                         report was given twice, or two runs drove the same phones",
                        mine.shard,
                        mine.first_device,
                        mine.end_device,
                        theirs.shard,
                        theirs.first_device,
                        theirs.end_device
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds another shard's report of the same run (see [`Report::check_mergeable`]; a
    /// mismatch is refused and leaves `self` untouched): counts add, histograms merge
    /// exactly, the time series add second by second (aligned by Unix second), the wall time
    /// becomes the span from the earliest start to the latest end. Nothing is averaged.
    pub fn merge(&mut self, other: &Report) -> Result<(), FleetError> {
        self.check_mergeable(other)?;
        // Merge into a copy, so any failure (a histogram, a count past u64) leaves `self` as
        // it was.
        let mut merged = self.clone();
        merged.add(other)?;
        *self = merged;
        Ok(())
    }

    /// The work of [`Report::merge`] once the reports are known to be mergeable.
    fn add(&mut self, other: &Report) -> Result<(), FleetError> {
        let count = |what: &str| {
            let what = what.to_owned();
            move |detail: String| FleetError::Mismatch(format!("cannot merge {what}: {detail}"))
        };
        for (name, stats) in &other.ops {
            self.ops
                .entry(name.clone())
                .or_default()
                .merge(stats)
                .map_err(|detail| FleetError::Histogram {
                    op: name.clone(),
                    detail,
                })?;
        }
        self.series
            .merge(&other.series)
            .map_err(|detail| FleetError::Histogram {
                op: "time series".into(),
                detail,
            })?;
        add_each(&mut self.errors, &other.errors, "errors").map_err(count("error counts"))?;
        // In whole microseconds, so the merged time is as exact as the parts' (see [`secs`]).
        let end_us = |r: &Report| {
            r.started_unix_ms
                .saturating_mul(1000)
                .saturating_add(secs_to_micros(r.elapsed_secs))
        };
        let end = end_us(self).max(end_us(other));
        self.started_unix_ms = self.started_unix_ms.min(other.started_unix_ms);
        self.elapsed_secs =
            micros_to_secs(end.saturating_sub(self.started_unix_ms.saturating_mul(1000)));
        let counts = count("run counts");
        self.iterations =
            add_counts(self.iterations, other.iterations, "iterations").map_err(&counts)?;
        self.failed_iterations = add_counts(
            self.failed_iterations,
            other.failed_iterations,
            "failed_iterations",
        )
        .map_err(&counts)?;
        self.missed = add_counts(self.missed, other.missed, "missed").map_err(&counts)?;
        self.unfinished =
            add_counts(self.unfinished, other.unfinished, "unfinished").map_err(&counts)?;
        self.skipped = add_counts(self.skipped, other.skipped, "skipped").map_err(&counts)?;
        self.shards.extend(other.shards.iter().cloned());
        self.faults_replaced |= other.faults_replaced;
        self.faults_restarted |= other.faults_restarted;
        // Readings of one sandbox instance are combined, never added (see
        // [`crate::fleet::faults::injected_in`]); counts without readings add.
        self.fault_windows
            .extend(other.fault_windows.iter().cloned());
        if let Some(theirs) = &other.faults_unread {
            let ours = self.faults_unread.get_or_insert_with(BTreeMap::new);
            add_each(ours, theirs, "faults").map_err(count("fault counts"))?;
        }
        self.recount_faults().map_err(count("fault counts"))?;
        Ok(())
    }
}
