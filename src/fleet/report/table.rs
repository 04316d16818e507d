//! The report as text: the table `vphone load` prints and the one-line top errors.

use super::Report;
use crate::fleet::Op;
use std::fmt::Write as _;

impl Report {
    /// One line naming the top errors (`top errors: 12x bind 409 device_limit_reached; ...`),
    /// or `None` when nothing failed.
    pub fn render_top_errors(&self, n: usize) -> Option<String> {
        let top = self.top_errors(n);
        if top.is_empty() {
            return None;
        }
        let items: Vec<String> = top
            .iter()
            .map(|(k, count)| {
                let status = if k.status == 0 {
                    "-".to_owned()
                } else {
                    k.status.to_string()
                };
                format!("{count}x {} {status} {}", k.op, k.code)
            })
            .collect();
        Some(format!("top errors: {}", items.join("; ")))
    }

    /// The final table: one row per operation (steps first), then errors, then memory.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} ({}), {} iterations in {:.2}s, seed fingerprint {}",
            self.scenario, self.pacing, self.iterations, self.elapsed_secs, self.seed
        );
        let missing = self.missing_shards();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(name, phones)| format!("{name} (phones {}..{})", phones.start, phones.end))
                .collect();
            let _ = writeln!(
                out,
                "PARTIAL: {} shard(s) missing: {}; their phones were not measured, and rates \
                 count only the shards present",
                missing.len(),
                list.join(", ")
            );
        }
        if self.shards.len() > 1 {
            let each: Vec<String> = self
                .shards
                .iter()
                .map(|s| format!("{} {:.2}s", s.shard, s.elapsed_secs))
                .collect();
            let _ = writeln!(
                out,
                "wall time per shard: {}; the merged {:.2}s spans the earliest start to the \
                 latest end, read from each machine's clock (skew between machines adds in)",
                each.join(", "),
                self.elapsed_secs
            );
        }
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "ok", "failed", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let order = |name: &str| {
            Op::ALL
                .iter()
                .position(|op| op.name() == name)
                .unwrap_or(usize::MAX)
        };
        let mut names: Vec<&String> = self.ops.keys().collect();
        names.sort_by_key(|n| (order(n), (*n).clone()));
        let ms = super::ms_text;
        for name in names {
            let s = &self.ops[name];
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                s.ok,
                s.failed,
                self.rate(name),
                ms(s.quantile_us(0.5)),
                ms(s.quantile_us(0.9)),
                ms(s.quantile_us(0.99)),
                ms(s.quantile_us(0.999)),
                ms(s.max_us()),
            );
        }
        if self.missed > 0 {
            let _ = writeln!(
                out,
                "missed: {} iterations were due before the end but no worker was free to start \
                 them; they are not in the latencies above (each would have waited at least \
                 until the end): raise --concurrency or lower --rate",
                self.missed
            );
        }
        if self.skipped > 0 {
            let _ = writeln!(
                out,
                "skipped: {} one-time steps were drawn for phones that had already taken them \
                 (nothing sent, not counted as iterations)",
                self.skipped
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                out,
                "unfinished: {} iterations were still running when the duration and its drain \
                 time ended, and were cancelled",
                self.unfinished
            );
        }
        self.render_retries_and_faults(&mut out);
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let steps: u64 = self
                .errors
                .iter()
                .filter(|(k, _)| Op::ALL.iter().any(|op| op.is_step() && op.name() == k.op))
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(
                out,
                "errors ({} failed requests; {steps} failed scenario steps, which repeat them):",
                self.total_errors() - steps
            );
            for (k, n) in &self.errors {
                let status = if k.status == 0 {
                    "-".to_owned()
                } else {
                    k.status.to_string()
                };
                let _ = writeln!(out, "  {:<28} {:>4} {:<28} {:>9}", k.op, status, k.code, n);
            }
        }
        let _ = writeln!(
            out,
            "peak memory (VmHWM): {:.1} MiB{}",
            self.peak_memory_bytes() as f64 / (1024.0 * 1024.0),
            if self.shards.len() > 1 {
                format!(" (largest of {} shards)", self.shards.len())
            } else {
                String::new()
            }
        );
        out
    }

    /// The retries per operation and the faults the sandbox injected, apart from the
    /// failures (which are what remained after the retries).
    fn render_retries_and_faults(&self, out: &mut String) {
        // In the order of the table's rows.
        let retried: Vec<String> = Op::ALL
            .iter()
            .filter_map(|op| {
                let s = self.ops.get(op.name())?;
                (s.retries > 0).then(|| format!("{} {}", s.retries, op.name()))
            })
            .collect();
        if retried.is_empty() {
            let _ = writeln!(out, "retries: none");
        } else {
            let _ = writeln!(
                out,
                "retries: {} ({})",
                self.total_retries(),
                retried.join(", ")
            );
        }
        match &self.faults {
            None => {}
            Some(faults) if faults.values().all(|n| *n == 0) => {
                let _ = writeln!(out, "injected faults (the sandbox's /sandbox/stats): none");
            }
            Some(faults) => {
                let _ = writeln!(
                    out,
                    "injected faults (the sandbox's /sandbox/stats): {}, apart from the errors below",
                    faults.values().sum::<u64>()
                );
                for (rule, n) in faults.iter().filter(|(_, n)| **n > 0) {
                    let _ = writeln!(out, "  {rule:<58} {n:>9}");
                }
            }
        }
        if let Some(caveat) = self.faults_caveat() {
            let _ = writeln!(out, "  {caveat}");
        }
        if self.faults.is_some() && self.faults_restarted {
            let _ = writeln!(
                out,
                "  the sandbox restarted during the run; counted from its restart (what it injected before the restart was not read)"
            );
        }
        if self.faults.is_some() && self.faults_replaced {
            let _ = writeln!(
                out,
                "  the sandbox's fault rules were replaced during the run; counted per rule text over the whole run"
            );
        }
    }
}
