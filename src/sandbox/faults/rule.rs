//! One fault rule and its compact text form, the same on the command line (`--fault`) and in
//! the TOML config (`faults = [...]`):
//!
//! ```text
//! [METHOD] PATTERN: ACTION [WHEN] [partner=CLIENT_ID]
//! ```
//!
//! - `METHOD` is an HTTP method or `*` (any; also when left out).
//! - `PATTERN` is a request path where `*` stands for any run of characters, `/` included:
//!   `/v1/mfa/challenges/*` matches every challenge route.
//! - `ACTION` is one of
//!   - `latency=50ms` (fixed), `latency=20ms..80ms` (uniform), or log-normal:
//!     `latency=lognormal(median=50ms,sigma=0.5)` or `latency=lognormal(median=50ms,p99=400ms)`
//!     (half the delays are under the median; `p99` gives sigma = ln(p99/median)/2.326);
//!     every delay is capped at [`MAX_DELAY`];
//!   - `status=500|502|503`, `status=429` (with `retry_after=SECONDS`, default 1),
//!     `status=401` (as if the access token expired), all refused before the bank acts;
//!   - `drop_before` (the connection is closed, the bank did nothing) or `drop_after` (the
//!     bank applies the request, then the connection is closed unanswered);
//!   - `slow_body=BYTES/INTERVAL`, e.g. `slow_body=16/50ms`: the answer trickles out BYTES at
//!     a time, one piece per INTERVAL, at most [`MAX_TRICKLE`] in all (then the rest goes);
//!   - SMS faults, applied to the SMS a matching request makes the bank send (an OTP or TAN):
//!     `sms_delay=5s` or `sms_delay=2s..10s` (the SMS reaches the outbox that much later, by
//!     the sandbox's clock), `sms_drop` (never delivered), `sms_duplicate` (delivered twice;
//!     `sms_duplicate=30s` sends the copy that much later), `sms_reorder` (held back and
//!     delivered right after the next SMS to the same number, so an older code arrives after
//!     a newer one; at most [`REORDER_HOLD`], then delivered anyway).
//! - `WHEN` is `p=0.05` (each matching request with that probability), `every=3` (every third
//!   matching request), `next=2` (the next two matching requests, then never); by default
//!   every matching request.
//! - `partner=CLIENT_ID` limits the rule to calls made with that partner's token.
//!
//! Example: `PUT /v1/mfa/challenges/*: status=503 p=0.05`.

use axum::http::Method;
use std::fmt;
use std::time::Duration;

/// The longest delay any latency or SMS rule injects (a draw above it is cut to it).
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// The longest a `slow_body` answer trickles; what is left then goes at once.
pub const MAX_TRICKLE: Duration = Duration::from_secs(30);
/// The longest `sms_reorder` holds an SMS back when no other SMS to its number follows.
pub const REORDER_HOLD: Duration = Duration::from_secs(60);

/// The z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// How a delay is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    /// Uniformly from `min..=max` (a fixed delay when they are equal).
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// Log-normal: `median * exp(sigma * z)` with `z` standard normal, capped at [`MAX_DELAY`].
    LogNormal {
        /// Half the delays are shorter.
        median: Duration,
        /// The spread of the underlying normal distribution.
        sigma: f64,
        /// The 99th percentile it was given by, if it was (kept for the rule's text).
        p99: Option<Duration>,
    },
}

impl Delay {
    /// A fixed delay.
    pub fn fixed(d: Duration) -> Delay {
        Delay::Uniform { min: d, max: d }
    }

    /// Whether drawing needs the generator.
    pub fn is_random(&self) -> bool {
        !matches!(self, Delay::Uniform { min, max } if min == max)
    }

    /// The delay for uniform draws `u1`, `u2` in `[0, 1)` (the log-normal uses both, by
    /// Box-Muller; the uniform only `u1`).
    pub fn draw(&self, u1: f64, u2: f64) -> Duration {
        match *self {
            Delay::Uniform { min, max } => min + max.saturating_sub(min).mul_f64(u1),
            Delay::LogNormal { median, sigma, .. } => {
                // 1 - u1 is in (0, 1], so the logarithm is finite.
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let secs = median.as_secs_f64() * (sigma * z).exp();
                Duration::try_from_secs_f64(secs)
                    .unwrap_or(MAX_DELAY)
                    .min(MAX_DELAY)
            }
        }
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Delay::Uniform { min, max } if min == max => f.write_str(&d(min)),
            Delay::Uniform { min, max } => write!(f, "{}..{}", d(min), d(max)),
            Delay::LogNormal {
                median,
                p99: Some(p99),
                ..
            } => write!(f, "lognormal(median={},p99={})", d(median), d(p99)),
            Delay::LogNormal { median, sigma, .. } => {
                write!(f, "lognormal(median={},sigma={sigma})", d(median))
            }
        }
    }
}

/// What a rule does to a request it fires on (or to the SMS that request makes the bank send).
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Delays the answer.
    Latency(Delay),
    /// Refuses the request with this status before the bank acts, in the errors shape.
    Status {
        /// 401, 429, 500, 502 or 503.
        status: u16,
        /// `Retry-After` seconds (429 and 503).
        retry_after: Option<u64>,
    },
    /// Closes the connection without an answer; the bank did nothing.
    DropBefore,
    /// Lets the bank apply the request, then closes the connection without an answer.
    DropAfter,
    /// Writes the answer `bytes` at a time, one piece every `every`.
    SlowBody {
        /// Bytes per piece (1 to 65,536).
        bytes: u32,
        /// Pause before each further piece (1 ms to 1 s).
        every: Duration,
    },
    /// The SMS reaches the outbox this much later, by the sandbox's clock.
    SmsDelay(Delay),
    /// The SMS is never delivered (the bank believes it sent it).
    SmsDrop,
    /// The SMS is delivered twice, the copy `after` later (zero: right away).
    SmsDuplicate {
        /// How much later the copy arrives.
        after: Duration,
    },
    /// The SMS is held back and delivered right after the next SMS to the same number.
    SmsReorder,
}

impl FaultAction {
    /// Whether it acts on the SMS a request makes the bank send, rather than on the request.
    pub fn is_sms(&self) -> bool {
        matches!(
            self,
            FaultAction::SmsDelay(_)
                | FaultAction::SmsDrop
                | FaultAction::SmsDuplicate { .. }
                | FaultAction::SmsReorder
        )
    }
}

/// Which of the matching requests a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultWhen {
    /// Every matching request.
    Always,
    /// Each matching request with this probability (0..=1), drawn from the seeded RNG.
    Probability(f64),
    /// Every Nth matching request (the Nth, the 2Nth, ...).
    EveryNth(u64),
    /// The next N matching requests, then never.
    NextN(u64),
}

/// A parsed fault rule; [`fmt::Display`] gives its canonical text, used as its name in
/// `/sandbox/stats` and in logs.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The method matched, `None` for any.
    pub method: Option<Method>,
    /// The path pattern (`*` matches any run of characters).
    pub pattern: String,
    /// Only calls with this partner's token, when set.
    pub partner: Option<String>,
    /// Which matching requests it fires on (for an SMS action: which of the SMS sent while
    /// handling matching requests).
    pub when: FaultWhen,
    /// What it does.
    pub action: FaultAction,
}

/// Why a rule's text was refused; the message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault rule {rule:?}: {why}; write e.g. \"PUT /v1/mfa/challenges/*: status=503 p=0.05\"")]
pub struct RuleError {
    /// The rule text (rules hold no secrets).
    pub rule: String,
    /// What is wrong.
    pub why: String,
}

impl FaultRule {
    /// Parses the compact form described in the module documentation.
    pub fn parse(text: &str) -> Result<FaultRule, RuleError> {
        let err = |why: String| RuleError {
            rule: text.to_owned(),
            why,
        };
        let (target, rest) = text
            .split_once(": ")
            .or_else(|| text.split_once(':'))
            .ok_or_else(|| err("no ':' between the route and the action".into()))?;
        let mut target_words = target.split_whitespace();
        let (method, pattern) = match (target_words.next(), target_words.next()) {
            (Some(p), None) => (None, p),
            (Some("*"), Some(p)) => (None, p),
            (Some(m), Some(p)) => {
                let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| err(format!("{m:?} is not an HTTP method")))?;
                (Some(method), p)
            }
            (None, _) => return Err(err("no route pattern".into())),
        };
        if target_words.next().is_some() {
            return Err(err("the route is METHOD PATTERN, nothing more".into()));
        }
        if !pattern.starts_with('/') && pattern != "*" {
            return Err(err(format!("the pattern {pattern:?} must start with '/'")));
        }
        let mut action = None;
        let mut when = FaultWhen::Always;
        let mut partner = None;
        let mut retry_after = None;
        for word in rest.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| err(format!("{key}={v:?} needs a whole number")))
            };
            let no_value = |a: FaultAction| {
                if value.is_empty() {
                    Ok(Some(a))
                } else {
                    Err(err(format!("{key} takes no value")))
                }
            };
            let new_action = match key {
                "latency" => Some(FaultAction::Latency(
                    parse_delay("latency", value).map_err(err)?,
                )),
                "status" => {
                    let status = number(value)?;
                    if ![401, 429, 500, 502, 503].contains(&status) {
                        return Err(err(format!(
                            "status={status}: only 401, 429, 500, 502 and 503 are injected"
                        )));
                    }
                    Some(FaultAction::Status {
                        status: status as u16,
                        retry_after: None,
                    })
                }
                "drop_before" => no_value(FaultAction::DropBefore)?,
                "drop_after" => no_value(FaultAction::DropAfter)?,
                "slow_body" => Some(parse_slow_body(value).map_err(err)?),
                "sms_delay" => Some(FaultAction::SmsDelay(
                    parse_delay("sms_delay", value).map_err(err)?,
                )),
                "sms_drop" => no_value(FaultAction::SmsDrop)?,
                "sms_duplicate" => Some(FaultAction::SmsDuplicate {
                    after: if value.is_empty() {
                        Duration::ZERO
                    } else {
                        match parse_delay("sms_duplicate", value).map_err(err)? {
                            Delay::Uniform { min, max } if min == max => min,
                            _ => {
                                return Err(err(format!(
                                    "sms_duplicate={value:?}: one fixed delay, e.g. sms_duplicate=30s"
                                )));
                            }
                        }
                    },
                }),
                "sms_reorder" => no_value(FaultAction::SmsReorder)?,
                "p" => {
                    let p: f64 = value
                        .parse()
                        .ok()
                        .filter(|p: &f64| (0.0..=1.0).contains(p))
                        .ok_or_else(|| err(format!("p={value:?} must be between 0 and 1")))?;
                    when = FaultWhen::Probability(p);
                    None
                }
                "every" => {
                    let n = number(value)?;
                    if n == 0 {
                        return Err(err("every=0: write every=1 or more".into()));
                    }
                    when = FaultWhen::EveryNth(n);
                    None
                }
                "next" => {
                    when = FaultWhen::NextN(number(value)?);
                    None
                }
                "partner" if !value.is_empty() => {
                    partner = Some(value.to_owned());
                    None
                }
                "retry_after" => {
                    retry_after = Some(number(value)?);
                    None
                }
                _ => return Err(err(format!("unknown part {word:?}"))),
            };
            if let Some(a) = new_action
                && action.replace(a).is_some()
            {
                return Err(err("one action per rule".into()));
            }
        }
        let mut action = action.ok_or_else(|| {
            err("no action (latency=, status=, drop_before, drop_after, slow_body=, sms_delay=, sms_drop, sms_duplicate or sms_reorder)".into())
        })?;
        match &mut action {
            FaultAction::Status {
                status,
                retry_after: r,
            } if *status == 429 || *status == 503 => {
                *r = retry_after.or((*status == 429).then_some(1));
            }
            _ if retry_after.is_some() => {
                return Err(err("retry_after goes with status=429 or status=503".into()));
            }
            _ => {}
        }
        Ok(FaultRule {
            method,
            pattern: pattern.to_owned(),
            partner,
            when,
            action,
        })
    }

    /// Whether the rule applies to a request (the partner is checked apart, only when set).
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && glob(&self.pattern, path)
    }

    /// The rule that stands for the sandbox's fixed `latency` option: every `/v1` call.
    pub fn fixed_latency(latency: Duration) -> FaultRule {
        FaultRule {
            method: None,
            pattern: "/v1/*".to_owned(),
            partner: None,
            when: FaultWhen::Always,
            action: FaultAction::Latency(Delay::fixed(latency)),
        }
    }
}

/// `50ms`, `20ms..80ms`, `lognormal(median=50ms,sigma=0.5)` or
/// `lognormal(median=50ms,p99=400ms)`; `what` names the action in errors.
fn parse_delay(what: &str, value: &str) -> Result<Delay, String> {
    let d = |t: &str| {
        humantime::parse_duration(t)
            .map_err(|e| format!("{what}={value:?}: {t:?} is not a duration ({e})"))
    };
    let capped = |d: Duration| {
        if d > MAX_DELAY {
            Err(format!("{what}={value:?}: at most 10m"))
        } else {
            Ok(d)
        }
    };
    if let Some(inner) = value
        .strip_prefix("lognormal(")
        .and_then(|v| v.strip_suffix(')'))
    {
        let mut median = None;
        let mut sigma = None;
        let mut p99 = None;
        for part in inner.split(',') {
            match part.split_once('=') {
                Some(("median", v)) => median = Some(capped(d(v)?)?),
                Some(("p99", v)) => p99 = Some(capped(d(v)?)?),
                Some(("sigma", v)) => {
                    sigma = Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|s| (0.0..=3.0).contains(s))
                            .ok_or_else(|| {
                                format!("{what}={value:?}: sigma must be between 0 and 3")
                            })?,
                    );
                }
                _ => {
                    return Err(format!(
                        "{what}={value:?}: write lognormal(median=50ms,sigma=0.5) or lognormal(median=50ms,p99=400ms)"
                    ));
                }
            }
        }
        let median = median.ok_or_else(|| format!("{what}={value:?}: no median="))?;
        if median.is_zero() {
            return Err(format!("{what}={value:?}: the median must be above zero"));
        }
        let (sigma, p99) = match (sigma, p99) {
            (Some(s), None) => (s, None),
            (None, Some(p)) if p >= median => {
                ((p.as_secs_f64() / median.as_secs_f64()).ln() / Z99, Some(p))
            }
            (None, Some(_)) => {
                return Err(format!("{what}={value:?}: p99 must be at least the median"));
            }
            _ => return Err(format!("{what}={value:?}: give either sigma= or p99=")),
        };
        if sigma > 3.0 {
            return Err(format!(
                "{what}={value:?}: p99 is too far above the median (sigma over 3)"
            ));
        }
        return Ok(Delay::LogNormal { median, sigma, p99 });
    }
    let (min, max) = match value.split_once("..") {
        Some((a, b)) => (d(a)?, d(b)?),
        None => (d(value)?, d(value)?),
    };
    if min > max {
        return Err(format!("{what}={value:?}: the range is backwards"));
    }
    capped(max)?;
    Ok(Delay::Uniform { min, max })
}

/// `16/50ms`: 16 bytes, one piece every 50 ms.
fn parse_slow_body(value: &str) -> Result<FaultAction, String> {
    let shape = || format!("slow_body={value:?}: write BYTES/INTERVAL, e.g. slow_body=16/50ms");
    let (bytes, every) = value.split_once('/').ok_or_else(shape)?;
    let bytes: u32 = bytes
        .parse()
        .ok()
        .filter(|b| (1..=65_536).contains(b))
        .ok_or_else(|| format!("slow_body={value:?}: BYTES must be 1 to 65536"))?;
    let every = humantime::parse_duration(every).map_err(|_| shape())?;
    if every < Duration::from_millis(1) || every > Duration::from_secs(1) {
        return Err(format!(
            "slow_body={value:?}: the INTERVAL must be 1ms to 1s"
        ));
    }
    Ok(FaultAction::SlowBody { bytes, every })
}

/// `*` matches any run of characters (including none and `/`); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = self.method.as_ref().map_or("*", Method::as_str);
        write!(f, "{method} {}: ", self.pattern)?;
        match &self.action {
            FaultAction::Latency(delay) => write!(f, "latency={delay}")?,
            FaultAction::Status {
                status,
                retry_after,
            } => {
                write!(f, "status={status}")?;
                if let Some(r) = retry_after {
                    write!(f, " retry_after={r}")?;
                }
            }
            FaultAction::DropBefore => f.write_str("drop_before")?,
            FaultAction::DropAfter => f.write_str("drop_after")?,
            FaultAction::SlowBody { bytes, every } => write!(
                f,
                "slow_body={bytes}/{}",
                humantime::format_duration(*every)
            )?,
            FaultAction::SmsDelay(delay) => write!(f, "sms_delay={delay}")?,
            FaultAction::SmsDrop => f.write_str("sms_drop")?,
            FaultAction::SmsDuplicate { after } if after.is_zero() => {
                f.write_str("sms_duplicate")?;
            }
            FaultAction::SmsDuplicate { after } => {
                write!(f, "sms_duplicate={}", humantime::format_duration(*after))?
            }
            FaultAction::SmsReorder => f.write_str("sms_reorder")?,
        }
        match self.when {
            FaultWhen::Always => {}
            FaultWhen::Probability(p) => write!(f, " p={p}")?,
            FaultWhen::EveryNth(n) => write!(f, " every={n}")?,
            FaultWhen::NextN(n) => write!(f, " next={n}")?,
        }
        if let Some(p) = &self.partner {
            write!(f, " partner={p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_prints_back() {
        let r = FaultRule::parse("PUT /v1/mfa/challenges/*: status=503 p=0.05").unwrap();
        assert_eq!(r.method, Some(Method::PUT));
        assert_eq!(r.when, FaultWhen::Probability(0.05));
        assert_eq!(
            r.action,
            FaultAction::Status {
                status: 503,
                retry_after: None
            }
        );
        assert_eq!(r.to_string(), "PUT /v1/mfa/challenges/*: status=503 p=0.05");
        assert_eq!(FaultRule::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn every_form_round_trips() {
        for text in [
            "* /v1/*: latency=50ms",
            "GET /v1/persons/*: latency=20ms..80ms every=3",
            "POST /v1/mfa/devices: drop_before next=1 partner=vphone-demo",
            "PUT /v1/mfa/challenges/signatures/*: drop_after",
            "* /v1/*: status=429 retry_after=2 p=0.5",
            "* /v1/*: status=401",
            "* /v1/*: latency=lognormal(median=50ms,sigma=0.5)",
            "GET /v1/*: latency=lognormal(median=50ms,p99=400ms) p=0.1",
            "GET /v1/persons/*: slow_body=16/50ms",
            "POST /v1/mfa/devices: sms_delay=5s",
            "POST /v1/mfa/challenges/sms: sms_delay=2s..10s every=2",
            "POST /v1/mfa/challenges/sms: sms_drop next=1",
            "POST /v1/mfa/challenges/sms: sms_duplicate",
            "POST /v1/mfa/challenges/sms: sms_duplicate=30s",
            "* /v1/*: sms_reorder p=0.5 partner=vphone-demo",
        ] {
            let r = FaultRule::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
        }
        let r = FaultRule::parse("/v1/*: status=429").unwrap();
        assert_eq!(r.to_string(), "* /v1/*: status=429 retry_after=1");
    }

    #[test]
    fn bad_rules_are_refused_with_the_part_named() {
        for (text, part) in [
            ("PUT /v1/x status=503", "':'"),
            ("PUT /v1/x: status=404", "404"),
            ("PUT /v1/x: p=0.5", "no action"),
            ("PUT /v1/x: status=503 p=2", "p="),
            ("PUT /v1/x: status=503 every=0", "every=0"),
            ("PUT /v1/x: drop_after drop_before", "one action"),
            ("PUT /v1/x: latency=soon", "latency"),
            ("PUT /v1/x: drop_after retry_after=2", "retry_after"),
            ("PUT v1/x: drop_after", "'/'"),
            ("PUT /v1/x: colour=red", "colour"),
            (
                "PUT /v1/x: latency=lognormal(median=50ms)",
                "sigma= or p99=",
            ),
            (
                "PUT /v1/x: latency=lognormal(median=50ms,p99=10ms)",
                "at least the median",
            ),
            ("PUT /v1/x: latency=lognormal(median=50ms,sigma=9)", "sigma"),
            ("PUT /v1/x: latency=lognormal(sigma=1)", "median"),
            ("PUT /v1/x: slow_body=16", "BYTES/INTERVAL"),
            ("PUT /v1/x: slow_body=0/10ms", "BYTES"),
            ("PUT /v1/x: slow_body=16/5s", "INTERVAL"),
            ("PUT /v1/x: sms_delay=2h", "at most 10m"),
            ("PUT /v1/x: sms_duplicate=1s..2s", "one fixed delay"),
            ("PUT /v1/x: sms_drop=yes", "takes no value"),
            ("PUT /v1/x: sms_drop status=503", "one action"),
        ] {
            let e = FaultRule::parse(text).unwrap_err().to_string();
            assert!(e.contains(part), "{text}: {e}");
        }
    }

    #[test]
    fn log_normal_delays_are_spread_around_their_median() {
        let r = FaultRule::parse("* /v1/*: latency=lognormal(median=100ms,p99=400ms)").unwrap();
        let FaultAction::Latency(delay @ Delay::LogNormal { sigma, .. }) = r.action else {
            panic!("{r:?}");
        };
        // ln(4) / 2.326 = 0.596.
        assert!((sigma - 0.596).abs() < 0.001, "{sigma}");
        // The median of the underlying normal maps to the median delay, z = 2.326 to p99.
        let at = |z: f64| {
            // Box-Muller with u2 = 0 gives z = sqrt(-2 ln(1 - u1)).
            let u1 = 1.0 - (-z * z / 2.0).exp();
            delay.draw(u1, 0.0)
        };
        assert_eq!(
            delay.draw(1.0 - (-0.0f64).exp(), 0.25),
            Duration::from_millis(100)
        );
        let p99 = at(Z99).as_secs_f64();
        assert!((p99 - 0.4).abs() < 0.001, "{p99}");
        assert!(!Delay::fixed(Duration::from_millis(5)).is_random());
        // Far tails are cut at the cap.
        let wild = Delay::LogNormal {
            median: Duration::from_secs(300),
            sigma: 3.0,
            p99: None,
        };
        assert_eq!(wild.draw(0.999_999_999, 0.0), MAX_DELAY);
    }

    #[test]
    fn patterns_match_with_stars_across_segments() {
        let r = FaultRule::parse("PUT /v1/mfa/challenges/*: drop_after").unwrap();
        assert!(r.matches(&Method::PUT, "/v1/mfa/challenges/signatures/abc"));
        assert!(!r.matches(&Method::GET, "/v1/mfa/challenges/signatures/abc"));
        assert!(!r.matches(&Method::PUT, "/v1/mfa/devices/abc"));
        assert!(glob("/v1/*/keys", "/v1/mfa/devices/d1/keys"));
        assert!(!glob("/v1/*/keys", "/v1/mfa/devices/d1/keys/k1"));
        assert!(glob("*", "/anything"));
        assert!(glob("/v1/persons", "/v1/persons"));
        assert!(!glob("/v1/persons", "/v1/persons/p1"));
        assert!(glob("/a*b*c", "/abc"));
        assert!(!glob("/a*bc", "/abc/x"));
    }
}
