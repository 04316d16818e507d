//! The HTML form of a report: one self-contained page (inline CSS and SVG, no script, nothing
//! fetched when it is viewed) with throughput and latency-percentile charts over the run's
//! seconds, the operations and errors tables and the run's parameters.
//!
//! Every text that comes from the run (operation names, error codes, scenario, pacing, shard
//! names) is spliced by `maud`, which escapes it; only the constant style sheet is inserted
//! unescaped. The seed never reaches a report, only its fingerprint.

use super::report::{Report, ms_text as ms, unix_ms_text};
use super::series::SecondOp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #1b1f24; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; }
.sub { color: #57606a; margin-top: 0; }
.partial { background: #fff4e5; border: 1px solid #f0b849; padding: 8px 12px; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eaeef2; text-align: right; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; font-family: ui-monospace, monospace; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
figure { margin: 0; } figcaption { font-weight: 600; margin: 4px 0; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid #eaeef2; }
svg .axis { stroke: #8c959f; stroke-width: 1; } svg .gridline { stroke: #eaeef2; stroke-width: 1; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
svg .line { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
svg .p50 { stroke-dasharray: 5 3; } svg .failed { stroke-dasharray: 2 2; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 2px 0 6px; }
.swatch { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 4px; }
.none { color: #57606a; }
"#;

/// Line colours, by the operation's place in the chart (no red: red is for failures).
const COLOURS: [&str; 8] = [
    "#0969da", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00", "#4d2d8f", "#57606a",
];

/// The colour of failures.
const FAILED: &str = "#cf222e";

/// One line of a chart: a name, a colour, a dash class, and one value (or a gap) per second.
struct Line {
    name: String,
    colour: &'static str,
    class: &'static str,
    values: Vec<Option<f64>>,
}

/// Drawing area of a chart, in SVG units.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

const BIG: Frame = Frame {
    width: 1000.0,
    height: 280.0,
    left: 56.0,
    right: 16.0,
    top: 12.0,
    bottom: 34.0,
};

const SMALL: Frame = Frame {
    width: 520.0,
    height: 200.0,
    left: 52.0,
    right: 12.0,
    top: 10.0,
    bottom: 32.0,
};

/// A round step near `span / 5` (1, 2 or 5 times a power of ten).
fn nice_step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let rough = span / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let m = rough / power;
    power
        * if m <= 1.0 {
            1.0
        } else if m <= 2.0 {
            2.0
        } else if m <= 5.0 {
            5.0
        } else {
            10.0
        }
}

fn label(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An SVG line chart of `lines` over `seconds` points (second 0 is the series' first).
fn chart(id: &str, frame: &Frame, seconds: usize, lines: &[Line], y_unit: &str) -> Markup {
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let y_step = nice_step(max);
    let y_max = ((max / y_step).ceil() * y_step).max(y_step);
    let x_span = seconds.saturating_sub(1).max(1) as f64;
    let x_step = nice_step(x_span).max(1.0);
    let (w, h) = (
        frame.width - frame.left - frame.right,
        frame.height - frame.top - frame.bottom,
    );
    let x = |i: f64| frame.left + i / x_span * w;
    let y = |v: f64| frame.top + h - v / y_max * h;
    let path = |values: &[Option<f64>]| {
        let mut d = String::new();
        let mut pen_down = false;
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(i as f64),
                        y(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        d
    };
    let y_ticks: Vec<f64> = (0..)
        .map(|k| k as f64 * y_step)
        .take_while(|v| *v <= y_max + y_step / 2.0)
        .collect();
    let x_ticks: Vec<f64> = (0..)
        .map(|k| k as f64 * x_step)
        .take_while(|v| *v <= x_span)
        .collect();
    let view = format!("0 0 {} {}", frame.width, frame.height);
    let base = frame.top + h;
    html! {
        svg.chart id=(id) viewBox=(view) role="img" aria-label=(format!("{id} chart, {y_unit}")) {
            @for v in &y_ticks {
                line.gridline x1=(frame.left) x2=(frame.width - frame.right)
                    y1=(format!("{:.1}", y(*v))) y2=(format!("{:.1}", y(*v))) {}
                text x=(frame.left - 6.0) y=(format!("{:.1}", y(*v) + 4.0)) text-anchor="end" { (label(*v)) }
            }
            @for t in &x_ticks {
                text x=(format!("{:.1}", x(*t))) y=(base + 16.0) text-anchor="middle" { (label(*t)) }
            }
            line.axis x1=(frame.left) x2=(frame.width - frame.right) y1=(base) y2=(base) {}
            line.axis x1=(frame.left) x2=(frame.left) y1=(frame.top) y2=(base) {}
            text x=(frame.left + w / 2.0) y=(frame.height - 4.0) text-anchor="middle" { "seconds since the first" }
            text x="12" y=(frame.top + h / 2.0) text-anchor="middle"
                transform=(format!("rotate(-90 12 {:.1})", frame.top + h / 2.0)) { (y_unit) }
            @for l in lines {
                path class=(format!("line {}", l.class)) stroke=(l.colour) d=(path(&l.values)) data-name=(l.name) {
                    title { (l.name) }
                }
                @for (i, v) in marked(&l.values) {
                    circle class=(format!("point {}", l.class)) fill=(l.colour) r="2.5"
                        cx=(format!("{:.1}", x(i as f64))) cy=(format!("{:.1}", y(v))) {
                        title { (l.name) ": " (label(v)) " at second " (i) }
                    }
                }
            }
        }
    }
}

/// Up to this many seconds, every point of a line gets a marker; beyond, only the points a
/// line cannot show (a second with no neighbour that has a value).
const MARK_ALL_UP_TO: usize = 60;

/// The points of `values` that get a marker (see [`MARK_ALL_UP_TO`]).
fn marked(values: &[Option<f64>]) -> Vec<(usize, f64)> {
    let has = |i: Option<usize>| i.and_then(|i| values.get(i)).is_some_and(Option::is_some);
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .filter(|(i, _)| {
            values.len() <= MARK_ALL_UP_TO || !(has(i.checked_sub(1)) || has(Some(i + 1)))
        })
        .collect()
}

fn legend(lines: &[Line]) -> Markup {
    html! {
        div.legend {
            @for l in lines {
                span {
                    span.swatch style=(format!("background:{}", l.colour)) {}
                    (l.name)
                }
            }
        }
    }
}

/// Operation names in the report's order: scenario steps first, then requests by API order.
fn ordered_ops(report: &Report) -> Vec<&String> {
    let order = |name: &str| {
        super::Op::ALL
            .iter()
            .position(|op| op.name() == name)
            .unwrap_or(usize::MAX)
    };
    let mut names: Vec<&String> = report.ops.keys().collect();
    names.sort_by_key(|n| (order(n), (*n).clone()));
    names
}

fn is_step(name: &str) -> bool {
    super::Op::ALL
        .iter()
        .any(|op| op.is_step() && op.name() == name)
}

/// Per operation, its stats in each second of `seconds` (None where it had no row).
fn per_second<'a>(
    report: &'a Report,
    seconds: &[u64],
) -> BTreeMap<&'a str, Vec<Option<&'a SecondOp>>> {
    let mut out: BTreeMap<&str, Vec<Option<&SecondOp>>> = BTreeMap::new();
    for name in report.ops.keys() {
        let column = seconds
            .iter()
            .map(|s| report.series.seconds.get(s).and_then(|ops| ops.get(name)))
            .collect();
        out.insert(name.as_str(), column);
    }
    out
}

/// The longest time series charted, in seconds (48 hours): a report read from a file may
/// hold seconds arbitrarily far apart (a shard whose clock was wrong), and a chart keeps one
/// point per second between the first and the last.
pub const MAX_CHART_SECONDS: u64 = 48 * 3600;

/// The seconds the charts cover (every second from the series' first to its last), or why
/// there are none: the span in seconds when it is longer than [`MAX_CHART_SECONDS`].
fn chart_seconds(series: &super::series::Series) -> Result<Vec<u64>, u64> {
    match series.span() {
        Some((first, last)) => {
            let span = (last - first).saturating_add(1);
            if span > MAX_CHART_SECONDS {
                Err(span)
            } else {
                Ok((first..=last).collect())
            }
        }
        None => Ok(Vec::new()),
    }
}

impl Report {
    /// The report as one self-contained HTML page (see the module documentation).
    pub fn to_html(&self) -> String {
        let (seconds, too_long) = match chart_seconds(&self.series) {
            Ok(seconds) => (seconds, None),
            Err(span) => (Vec::new(), Some(span)),
        };
        let columns = per_second(self, &seconds);
        let names = ordered_ops(self);
        let mut throughput: Vec<Line> = names
            .iter()
            .filter(|n| is_step(n))
            .enumerate()
            .map(|(k, name)| Line {
                name: format!("{name} ok/s"),
                colour: COLOURS[k % COLOURS.len()],
                class: "ok",
                values: columns[name.as_str()]
                    .iter()
                    .map(|s| Some(s.map_or(0.0, |s| s.ok as f64)))
                    .collect(),
            })
            .collect();
        // Failed requests (steps left out: they repeat their requests' failures).
        let failed: Vec<Option<f64>> = (0..seconds.len())
            .map(|i| {
                let n = columns
                    .iter()
                    .filter(|(name, _)| !is_step(name))
                    .filter_map(|(_, c)| c[i])
                    .fold(0u64, |sum, s| sum.saturating_add(s.failed));
                Some(n as f64)
            })
            .collect();
        if failed.iter().flatten().any(|n| *n > 0.0) {
            throughput.push(Line {
                name: "failed requests/s".into(),
                colour: FAILED,
                class: "failed",
                values: failed,
            });
        }
        let latency: Vec<(&String, Vec<Line>)> = names
            .iter()
            .map(|name| {
                let column = &columns[name.as_str()];
                let line = |q: f64, class: &'static str, colour: &'static str| Line {
                    name: format!("{name} {class}"),
                    colour,
                    class,
                    values: column
                        .iter()
                        .map(|s| s.and_then(|s| s.quantile_us(q)).map(|us| us as f64 / 1e3))
                        .collect(),
                };
                (
                    *name,
                    vec![line(0.5, "p50", "#0969da"), line(0.99, "p99", "#bc4c00")],
                )
            })
            .collect();
        let missing = self.missing_shards();
        let started = unix_ms_text(self.started_unix_ms);
        let first_second = seconds
            .first()
            .map(|s| unix_ms_text(s.saturating_mul(1000)));
        let request_failures: u64 = self
            .errors
            .iter()
            .filter(|(k, _)| !is_step(&k.op))
            // Saturating: counts read from a file may be anything.
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "vphone load report: " (self.scenario) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { "vphone load report" }
                    p.sub {
                        "scenario " code { (self.scenario) } " (" (self.pacing) "), "
                        (self.iterations) " iterations in " (format!("{:.2}", self.elapsed_secs))
                        " s, started " (started)
                    }
                    @if !missing.is_empty() {
                        p.partial id="partial" {
                            "PARTIAL: " (missing.len()) " shard(s) missing: "
                            @for (i, (name, phones)) in missing.iter().enumerate() {
                                @if i > 0 { ", " }
                                (name) " (phones " (phones.start) ".." (phones.end) ")"
                            }
                            "; their phones were not measured."
                        }
                    }
                    h2 { "Throughput" }
                    @if let Some(span) = too_long {
                        p.none id="series-too-long" {
                            "No charts: the time series spans " (span) " seconds from its first to its last, more than the "
                            (MAX_CHART_SECONDS) " (48 hours) a page charts; the shards' clocks may disagree (see their start times below)."
                        }
                    } @else if seconds.is_empty() {
                        p.none { "No time series in this report (written by an older vphone, or nothing ran)." }
                    } @else {
                        p.sub {
                            "Completed scenario steps per wall-clock second"
                            @if let Some(first) = &first_second { ", from " (first) }
                            ". The first and last seconds are partial."
                        }
                        (legend(&throughput))
                        (chart("throughput", &BIG, seconds.len(), &throughput, "per second"))
                    }
                    h2 { "Latency over time" }
                    @if !seconds.is_empty() {
                        p.sub { "p50 (dashed) and p99 of each second's successes, in ms (per-second histograms keep 1 significant digit: within 6.25%)." }
                        div.grid {
                            @for (name, lines) in &latency {
                                figure {
                                    figcaption { (name) }
                                    (legend(lines))
                                    (chart(&format!("latency-{name}"), &SMALL, seconds.len(), lines, "ms"))
                                }
                            }
                        }
                    }
                    h2 { "Operations" }
                    table id="operations" {
                        tr { th { "operation" } th { "ok" } th { "failed" } th { "retries" } th { "ok/s" } th { "p50 ms" } th { "p90 ms" } th { "p99 ms" } th { "p99.9 ms" } th { "max ms" } }
                        @for name in &names {
                            @let s = &self.ops[name.as_str()];
                            tr {
                                td.text { (name) } td { (s.ok) } td { (s.failed) } td { (s.retries) }
                                td { (format!("{:.1}", self.rate(name))) }
                                td { (ms(s.quantile_us(0.5))) } td { (ms(s.quantile_us(0.9))) }
                                td { (ms(s.quantile_us(0.99))) } td { (ms(s.quantile_us(0.999))) }
                                td { (ms(s.max_us())) }
                            }
                        }
                    }
                    @if let Some(faults) = &self.faults {
                        h2 { "Injected faults" }
                        p.sub { "Faults the sandbox injected during the run, from its /sandbox/stats; the errors below are what remained after the client's retries." }
                        @if let Some(caveat) = self.faults_caveat() {
                            p.sub id="faults-caveat" { (caveat) "." }
                        }
                        @if self.faults_restarted {
                            p.sub id="faults-restarted" { "The sandbox restarted during the run; faults are counted from its restart (what it injected before the restart was not read)." }
                        }
                        @if self.faults_replaced {
                            p.sub id="faults-replaced" { "The sandbox's fault rules were replaced during the run; each rule text is counted over the whole run." }
                        }
                        table id="faults" {
                            tr { th { "rule" } th { "injected" } }
                            @for (rule, n) in faults {
                                tr { td.text { (rule) } td { (n) } }
                            }
                        }
                    }
                    h2 { "Errors" }
                    @if self.errors.is_empty() {
                        p id="errors-none" { "None." }
                    } @else {
                        p.sub { (request_failures) " failed requests; rows of scenario steps repeat the failures of their requests." }
                        table id="errors" {
                            tr { th { "operation" } th { "status" } th { "code" } th { "count" } }
                            @for (k, n) in &self.errors {
                                tr {
                                    td.text { (k.op) }
                                    td { @if k.status == 0 { "-" } @else { (k.status) } }
                                    td.text { (k.code) }
                                    td { (n) }
                                }
                            }
                        }
                    }
                    h2 { "Parameters" }
                    table id="parameters" {
                        tr { th { "scenario" } td.text { (self.scenario) } }
                        tr { th { "pacing" } td.text { (self.pacing) } }
                        tr { th { "phones in the fleet" } td { (self.devices) } }
                        tr { th { "seed fingerprint" } td.text { (self.seed) } }
                        tr { th { "started (UTC)" } td.text { (started) } }
                        tr { th { "wall time" } td { (format!("{:.2} s", self.elapsed_secs)) } }
                        tr { th { "iterations" } td { (self.iterations) } }
                        tr { th { "failed iterations" } td { (self.failed_iterations) } }
                        tr { th { "missed (open model)" } td { (self.missed) } }
                        tr { th { "skipped one-time steps" } td { (self.skipped) } }
                        tr { th { "unfinished at the end" } td { (self.unfinished) } }
                        tr { th { "peak memory (largest shard)" } td { (format!("{:.1} MiB", self.peak_memory_bytes() as f64 / (1024.0 * 1024.0))) } }
                    }
                    table id="shards" {
                        tr { th { "shard" } th { "phones" } th { "wall time" } th { "peak memory" } th { "threads" } th { "signer" } }
                        @for s in &self.shards {
                            tr {
                                td.text { (s.shard) }
                                td { (s.first_device) ".." (s.end_device) }
                                td { (format!("{:.2} s", s.elapsed_secs)) }
                                td { (format!("{:.1} MiB", s.peak_memory_bytes as f64 / (1024.0 * 1024.0))) }
                                td { @if s.threads > 0 { (s.threads) } @else { "not recorded" } }
                                td.text { @if s.signer.is_empty() { "not recorded" } @else { (s.signer) } }
                            }
                        }
                    }
                    @if self.shards.len() > 1 {
                        p.sub { "The merged wall time spans the earliest start to the latest end, read from each machine's clock (skew between machines adds in); seconds are aligned by each machine's wall clock." }
                    }
                }
            }
        };
        page.into_string()
    }

    /// Writes [`Report::to_html`] to `path`.
    pub fn write_html(&self, path: &std::path::Path) -> Result<(), super::FleetError> {
        std::fs::write(path, self.to_html()).map_err(|e| super::FleetError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{ErrorKey, OpStats, record_us};

    fn sample() -> Report {
        let mut r = Report::new(
            "sign</code><script>alert(1)</script>",
            "closed concurrency=2",
            "fp&1",
            1_800_000_000_000,
        );
        let mut s = OpStats::default();
        record_us(&mut s.latency_us, 1_500);
        s.ok = 1;
        r.ops.insert("sign".into(), s);
        r.series.at(1_800_000_000, "sign").record_ok(1_500);
        r.series.at(1_800_000_001, "sign").record_ok(2_500);
        r.errors.insert(
            ErrorKey {
                op: "create_device_challenge".into(),
                status: 0,
                code: "<img src=x onerror=alert(1)>".into(),
            },
            2,
        );
        r
    }

    #[test]
    fn text_from_the_run_is_escaped() {
        let page = sample().to_html();
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("fp&amp;1"));
    }

    #[test]
    fn the_page_loads_nothing_and_draws_a_line_per_step() {
        let page = sample().to_html();
        for needle in ["http://", "https://", "src=\"", "<link", "@import", "url("] {
            assert!(!page.contains(needle), "{needle} in {page}");
        }
        assert!(page.contains("id=\"throughput\""));
        assert!(page.contains("data-name=\"sign ok/s\""));
        assert!(page.contains("id=\"latency-sign\""));
    }

    #[test]
    fn retries_and_injected_faults_are_shown_apart_from_the_errors() {
        let mut r = sample();
        assert!(
            !r.to_html().contains("id=\"faults\""),
            "no faults were read"
        );
        r.ops.get_mut("sign").unwrap().retries = 7;
        r.faults = Some([("* /v1/*: status=503 p=0.05".to_owned(), 9)].into());
        let page = r.to_html();
        assert!(page.contains("<th>retries</th>"), "{page}");
        assert!(page.contains("<td>7</td>"), "{page}");
        assert!(
            page.contains("<td class=\"text\">* /v1/*: status=503 p=0.05</td><td>9</td>"),
            "{page}"
        );
        assert!(!page.contains("id=\"faults-replaced\""), "{page}");
        r.faults_replaced = true;
        let page = r.to_html();
        assert!(page.contains("id=\"faults-replaced\""), "{page}");
        assert!(!page.contains("id=\"faults-caveat\""), "{page}");
        // Counts without readings, from more than one shard: they may repeat, and it says so.
        r.faults_unread = r.faults.clone();
        for k in 1..=2 {
            r.shards.push(crate::fleet::ShardRun {
                shard: format!("{k}/2"),
                first_device: k - 1,
                end_device: k,
                peak_memory_bytes: 0,
                elapsed_secs: 1.0,
                threads: if k == 1 { 2 } else { 0 },
                signer: if k == 1 {
                    "aws-lc".into()
                } else {
                    String::new()
                },
            });
        }
        let page = r.to_html();
        assert!(page.contains("id=\"faults-caveat\""), "{page}");
        assert!(page.contains("counted more than once"), "{page}");
        // Each shard's threads and signer, or that its report does not say.
        assert!(
            page.contains("<td>2</td><td class=\"text\">aws-lc</td>"),
            "{page}"
        );
        assert!(
            page.contains("<td>not recorded</td><td class=\"text\">not recorded</td>"),
            "{page}"
        );
    }

    #[test]
    fn seconds_far_apart_give_no_charts_rather_than_a_point_for_every_second_between() {
        let mut r = sample();
        // A shard whose clock read 1970: charting every second between would need
        // 1.8 billion points per line.
        r.series.at(0, "sign").record_ok(1_000);
        let page = r.to_html();
        assert!(page.contains("id=\"series-too-long\""), "{page}");
        assert!(page.contains("spans 1800000002 seconds"), "{page}");
        assert!(!page.contains("id=\"throughput\""), "{page}");
        // The tables are still there.
        assert!(page.contains("id=\"operations\""), "{page}");
        // At the limit, the chart is drawn.
        let mut r = sample();
        r.series
            .at(1_800_000_000 + MAX_CHART_SECONDS - 1, "sign")
            .record_ok(1_000);
        assert!(r.to_html().contains("id=\"throughput\""));
    }

    #[test]
    fn counts_read_from_a_file_that_add_up_past_u64_do_not_panic() {
        let mut r = sample();
        for op in ["create_person", "create_device"] {
            r.errors.insert(
                ErrorKey {
                    op: op.into(),
                    status: 503,
                    code: "service_unavailable".into(),
                },
                u64::MAX,
            );
            r.series.at(1_800_000_000, op).failed = u64::MAX;
            r.ops.entry(op.into()).or_default();
        }
        let page = r.to_html();
        assert!(
            page.contains(&format!("{} failed requests", u64::MAX)),
            "{page}"
        );
    }

    #[test]
    fn isolated_points_get_markers_on_long_series() {
        let mut values = vec![Some(1.0); 100];
        values[50] = None;
        values[52] = None;
        assert_eq!(marked(&values), [(51, 1.0)]);
        assert_eq!(marked(&[Some(1.0), None, Some(2.0)]).len(), 2);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(nice_step(1_000.0), 200.0);
        assert_eq!(nice_step(3.0), 1.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
