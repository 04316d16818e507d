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
//! - `ACTION` is one of `latency=50ms`, `latency=20ms..80ms` (uniform), `status=500|502|503`,
//!   `status=429` (with `retry_after=SECONDS`, default 1), `status=401` (as if the access
//!   token expired), `drop_before` (the connection is closed, the bank did nothing) or
//!   `drop_after` (the bank applies the request, then the connection is closed unanswered).
//! - `WHEN` is `p=0.05` (each matching request with that probability), `every=3` (every third
//!   matching request), `next=2` (the next two matching requests, then never); by default
//!   every matching request.
//! - `partner=CLIENT_ID` limits the rule to calls made with that partner's token.
//!
//! Example: `PUT /v1/mfa/challenges/*: status=503 p=0.05`.

use axum::http::Method;
use std::fmt;
use std::time::Duration;

/// What a rule does to a request it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Delays the answer by a duration drawn uniformly from `min..=max` (equal for a fixed one).
    Latency {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
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
    /// Which matching requests it fires on.
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
            let new_action = match key {
                "latency" => Some(parse_latency(value).map_err(err)?),
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
                "drop_before" => Some(FaultAction::DropBefore),
                "drop_after" => Some(FaultAction::DropAfter),
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
            err("no action (latency=, status=, drop_before or drop_after)".into())
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
            action: FaultAction::Latency {
                min: latency,
                max: latency,
            },
        }
    }
}

/// `50ms` or `20ms..80ms`.
fn parse_latency(value: &str) -> Result<FaultAction, String> {
    let d = |t: &str| {
        humantime::parse_duration(t)
            .map_err(|e| format!("latency={value:?}: {t:?} is not a duration ({e})"))
    };
    let (min, max) = match value.split_once("..") {
        Some((a, b)) => (d(a)?, d(b)?),
        None => (d(value)?, d(value)?),
    };
    if min > max {
        return Err(format!("latency={value:?}: the range is backwards"));
    }
    if max > Duration::from_secs(600) {
        return Err(format!("latency={value:?}: at most 10m"));
    }
    Ok(FaultAction::Latency { min, max })
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
        let ms = |d: &Duration| humantime::format_duration(*d).to_string();
        match &self.action {
            FaultAction::Latency { min, max } if min == max => write!(f, "latency={}", ms(min))?,
            FaultAction::Latency { min, max } => write!(f, "latency={}..{}", ms(min), ms(max))?,
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
        ] {
            let e = FaultRule::parse(text).unwrap_err().to_string();
            assert!(e.contains(part), "{text}: {e}");
        }
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
