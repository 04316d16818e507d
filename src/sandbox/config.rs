//! The sandbox's configuration: partners (OAuth2 clients), OTP mode, lifetimes and limits.

pub use super::ratelimit::RateLimit;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented default partner's client id.
pub const DEFAULT_CLIENT_ID: &str = "vphone-demo";
/// The documented default partner's secret. Public on purpose: it only opens a local sandbox.
pub const DEFAULT_CLIENT_SECRET: &str = "vphone-demo-secret";

/// How long finished challenges and change requests are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 60);

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The OAuth2 clients; each one is a partner with its own persons and devices.
    pub partners: Vec<PartnerConfig>,
    /// Every OTP and TAN is `212212` (handy for scripted demos; weakens nothing else).
    pub static_otp: bool,
    /// How long a challenge can be answered (5 minutes).
    pub challenge_lifetime: Duration,
    /// Failed answers a challenge allows before it is spent (3).
    pub max_failed_attempts: u32,
    /// Bound (verified, not deleted) devices a person may have (5).
    pub max_devices_per_person: usize,
    /// Fault injection: every `/v1` response is delayed by this much (the same as the
    /// fault rule `* /v1/*: latency=...`, which it becomes, listed first).
    pub latency: Option<Duration>,
    /// Fault rules (see [`super::faults`]), tried in order on every request outside
    /// `/sandbox/*`.
    pub faults: Vec<super::faults::FaultRule>,
    /// Seed of the generator every fault decision draws from; `None` picks one at start
    /// (logged, so a run can be replayed).
    pub faults_seed: Option<u64>,
    /// Seed of the generator the bank's ids, OTPs and strings to sign draw from; `None`
    /// seeds it from the OS. With a seed, the same requests in the same order get the same
    /// ids and codes (for reproducible test runs; never in a shared sandbox).
    pub seed: Option<u64>,
    /// How long an access token is accepted (one hour).
    pub token_lifetime: Duration,
    /// How long a finished challenge or change request (completed, spent or expired) is kept
    /// before it is forgotten, with the unverified device of a forgotten binding (15 minutes).
    /// Until then it answers as before (403 `challenge_expired`, ...); after, 404 `not_found`.
    pub retention: Duration,
    /// How long a connection may take to send a complete request head, counted from when it
    /// was accepted or from the first byte after an idle spell (10 s); then it is closed.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests (60 s). A long-poll
    /// keeps its connection busy, not idle, for up to its `wait_ms`.
    pub idle_timeout: Duration,
    /// How long a request body may pause between two chunks (10 s); then 408
    /// `request_timeout` and the connection is closed.
    pub body_read_timeout: Duration,
    /// At most this many open connections (1 to 1,000,000); `None` derives it from the
    /// open-files limit ([`super::serve::connection_cap`]).
    pub max_connections: Option<usize>,
    /// At most this many `/sandbox/sms` long-polls wait at once (10,000); beyond, a call
    /// answers at once with what there is.
    pub max_long_polls: usize,
    /// SMS carrying a code (SMS challenges, mobile-number authorizations, change-request
    /// TANs) per person (5 per 10 minutes).
    pub sms_rate_limit: RateLimit,
    /// Access tokens issued per partner (1,000 per minute).
    pub token_rate_limit: RateLimit,
    /// Refuses high-S signatures (s > n/2) with 403 `invalid_signature`. Off by default: Java's
    /// SHA256withECDSA and the Android and iOS keystores produce both halves.
    pub strict_low_s: bool,
    /// The token that opens `GET/PUT/DELETE /sandbox/faults`; without one that endpoint is
    /// refused. Never a partner's secret.
    pub admin_token: Option<super::faults::admin::AdminToken>,
}

impl Default for SandboxConfig {
    /// One partner, client id `vphone-demo`, secret `vphone-demo-secret`, and the API's limits.
    fn default() -> Self {
        SandboxConfig {
            partners: vec![PartnerConfig::demo()],
            static_otp: false,
            challenge_lifetime: Duration::from_secs(300),
            max_failed_attempts: 3,
            max_devices_per_person: 5,
            latency: None,
            faults: Vec::new(),
            faults_seed: None,
            seed: None,
            token_lifetime: Duration::from_secs(3600),
            retention: DEFAULT_RETENTION,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            max_connections: None,
            max_long_polls: 10_000,
            sms_rate_limit: RateLimit::SMS_DEFAULT,
            token_rate_limit: RateLimit::TOKEN_DEFAULT,
            strict_low_s: false,
            admin_token: None,
        }
    }
}

/// One OAuth2 client of the sandbox.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// The client id, sent as the HTTP Basic user name.
    pub client_id: String,
    /// The client secret, sent as the HTTP Basic password. Never printed by `Debug`.
    pub client_secret: String,
    /// A readable name, for logs.
    #[serde(default)]
    pub name: String,
}

impl PartnerConfig {
    /// The documented demo partner (`vphone-demo` / `vphone-demo-secret`).
    pub fn demo() -> Self {
        PartnerConfig {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            name: "vphone demo partner".to_owned(),
        }
    }
}

impl fmt::Debug for PartnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("name", &self.name)
            .finish()
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read sandbox config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("sandbox config {path} is malformed: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why, without quoting the file: it holds client secrets.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("sandbox config is invalid: {0}")]
    Invalid(String),
}

/// The file format; durations are humantime strings such as `"5m"` or `"250ms"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    partners: Vec<PartnerConfig>,
    #[serde(default)]
    static_otp: bool,
    challenge_lifetime: Option<String>,
    max_failed_attempts: Option<u32>,
    max_devices_per_person: Option<usize>,
    latency: Option<String>,
    #[serde(default)]
    faults: Vec<String>,
    faults_seed: Option<u64>,
    seed: Option<u64>,
    token_lifetime: Option<String>,
    retention: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_read_timeout: Option<String>,
    max_connections: Option<usize>,
    max_long_polls: Option<usize>,
    sms_per_person: Option<u32>,
    sms_per_person_window: Option<String>,
    tokens_per_partner: Option<u32>,
    tokens_per_partner_window: Option<String>,
    #[serde(default)]
    strict_low_s: bool,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
}

fn duration(field: &str, text: Option<String>) -> Result<Option<Duration>, ConfigError> {
    text.map(|t| {
        humantime::parse_duration(&t).map_err(|e| {
            ConfigError::Invalid(format!(
                "{field} = {t:?} is not a duration ({e}); write e.g. \"5m\", \"30s\" or \"250ms\""
            ))
        })
    })
    .transpose()
}

/// A TOML error as "line L, column C: what", never quoting the file. `toml`'s own `Display`
/// shows the offending line and its `Debug` carries the whole text, and a config file holds
/// client secrets.
fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let what = super::error::redact_value(e.message().trim_end());
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

/// The admin token from the config's `admin_token` or `admin_token_file` (one at most).
fn admin_token(
    text: Option<String>,
    file: Option<PathBuf>,
    dir: Option<&Path>,
) -> Result<Option<super::faults::admin::AdminToken>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(why);
    let text = match (text.map(zeroize::Zeroizing::new), file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give admin_token or admin_token_file, not both".to_owned(),
            ));
        }
        (Some(text), None) => text,
        (None, Some(file)) => {
            let path = match dir {
                Some(dir) if file.is_relative() => dir.join(&file),
                _ => file,
            };
            return read_admin_token_file(&path).map(Some);
        }
        (None, None) => return Ok(None),
    };
    super::faults::admin::AdminToken::new(&text)
        .map(Some)
        .map_err(invalid)
}

/// The admin token held in the file at `path` (a final newline is dropped).
pub fn read_admin_token_file(path: &Path) -> Result<super::faults::admin::AdminToken, ConfigError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "cannot read admin_token_file {}: {e}",
            path.display()
        ))
    })?);
    super::faults::admin::AdminToken::new(&text)
        .map_err(|why| ConfigError::Invalid(format!("admin_token_file {}: {why}", path.display())))
}

impl SandboxConfig {
    /// Reads a TOML file (see `sandbox.example.toml`). Omitted fields keep their defaults;
    /// with no `[[partners]]` the demo partner is used.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_toml(&text, path.parent()).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses the TOML text of a config file (a relative `admin_token_file` is read from the
    /// current directory).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse_toml(text, None)
    }

    /// Parses TOML text; a relative `admin_token_file` is taken from `dir` when given.
    fn parse_toml(text: &str, dir: Option<&Path>) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: toml_error_message(text, &e),
        })?;
        let defaults = SandboxConfig::default();
        let config = SandboxConfig {
            partners: if file.partners.is_empty() {
                defaults.partners
            } else {
                file.partners
            },
            static_otp: file.static_otp,
            challenge_lifetime: duration("challenge_lifetime", file.challenge_lifetime)?
                .unwrap_or(defaults.challenge_lifetime),
            max_failed_attempts: file
                .max_failed_attempts
                .unwrap_or(defaults.max_failed_attempts),
            max_devices_per_person: file
                .max_devices_per_person
                .unwrap_or(defaults.max_devices_per_person),
            latency: duration("latency", file.latency)?.filter(|d| !d.is_zero()),
            faults: file
                .faults
                .iter()
                .map(|text| super::faults::FaultRule::parse(text))
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?,
            faults_seed: file.faults_seed,
            seed: file.seed,
            token_lifetime: duration("token_lifetime", file.token_lifetime)?
                .unwrap_or(defaults.token_lifetime),
            retention: duration("retention", file.retention)?.unwrap_or(defaults.retention),
            header_read_timeout: duration("header_read_timeout", file.header_read_timeout)?
                .unwrap_or(defaults.header_read_timeout),
            idle_timeout: duration("idle_timeout", file.idle_timeout)?
                .unwrap_or(defaults.idle_timeout),
            body_read_timeout: duration("body_read_timeout", file.body_read_timeout)?
                .unwrap_or(defaults.body_read_timeout),
            max_connections: file.max_connections,
            max_long_polls: file.max_long_polls.unwrap_or(defaults.max_long_polls),
            sms_rate_limit: RateLimit {
                max: file.sms_per_person.unwrap_or(defaults.sms_rate_limit.max),
                window: duration("sms_per_person_window", file.sms_per_person_window)?
                    .unwrap_or(defaults.sms_rate_limit.window),
            },
            token_rate_limit: RateLimit {
                max: file
                    .tokens_per_partner
                    .unwrap_or(defaults.token_rate_limit.max),
                window: duration("tokens_per_partner_window", file.tokens_per_partner_window)?
                    .unwrap_or(defaults.token_rate_limit.window),
            },
            strict_low_s: file.strict_low_s,
            admin_token: admin_token(file.admin_token, file.admin_token_file, dir)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// How often the background sweep forgets what outlived [`SandboxConfig::retention`]: a
    /// quarter of it, between 1 s and 60 s.
    pub fn sweep_interval(&self) -> Duration {
        (self.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Checks ranges and that client ids are unique and non-empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.partners.is_empty() {
            return bad("at least one partner is needed");
        }
        if self.challenge_lifetime < Duration::from_secs(1) {
            return bad("challenge_lifetime must be at least 1s");
        }
        if self.token_lifetime < Duration::from_secs(1) {
            return bad("token_lifetime must be at least 1s");
        }
        if self.retention > Duration::from_secs(366 * 24 * 3600) {
            return bad("retention must be at most a year");
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(24 * 3600) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be between 10ms and 24h"
                )));
            }
        }
        if self.max_connections == Some(0) {
            return bad(
                "max_connections must be at least 1 (leave it out to derive it from the open-files limit)",
            );
        }
        if self
            .max_connections
            .is_some_and(|n| n > super::serve::MAX_CONNECTION_CAP)
        {
            return bad("max_connections must be at most 1000000");
        }
        for (name, limit) in [
            ("sms_per_person_window", self.sms_rate_limit),
            ("tokens_per_partner_window", self.token_rate_limit),
        ] {
            if limit.is_on() && limit.window < Duration::from_secs(1) {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1s")));
            }
        }
        if self.max_failed_attempts == 0 {
            return bad("max_failed_attempts must be at least 1");
        }
        if self.max_devices_per_person == 0 {
            return bad("max_devices_per_person must be at least 1");
        }
        if self.partners.len() > usize::from(u16::MAX) {
            return bad("too many partners");
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.partners {
            if self
                .admin_token
                .as_ref()
                .is_some_and(|t| t.is(&p.client_secret))
            {
                return bad("the admin token must not be a partner's client_secret");
            }
            if p.client_id.is_empty() || p.client_secret.is_empty() {
                return bad("every partner needs a non-empty client_id and client_secret");
            }
            if p.client_id.contains(':') {
                return bad("a client_id cannot contain ':' (it is an HTTP Basic user name)");
            }
            if !seen.insert(p.client_id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "client_id {:?} appears twice",
                    p.client_id
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = SandboxConfig::from_toml_str("").unwrap();
        assert_eq!(c.partners, vec![PartnerConfig::demo()]);
        assert_eq!(c.challenge_lifetime, Duration::from_secs(300));
        assert_eq!((c.max_failed_attempts, c.max_devices_per_person), (3, 5));
        assert_eq!(c.retention, Duration::from_secs(900));
        assert_eq!(c.sweep_interval(), Duration::from_secs(60));
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!((c.max_connections, c.max_long_polls), (None, 10_000));
        assert_eq!(c.sms_rate_limit, RateLimit::SMS_DEFAULT);
        assert!(!c.strict_low_s);
    }

    #[test]
    fn limits_and_timeouts_are_read_from_the_file() {
        let c = SandboxConfig::from_toml_str(
            "header_read_timeout = \"2s\"\nidle_timeout = \"90s\"\nbody_read_timeout = \"3s\"\n\
             max_connections = 50\nmax_long_polls = 7\nsms_per_person = 2\n\
             sms_per_person_window = \"1m\"\ntokens_per_partner = 0\nstrict_low_s = true\n",
        )
        .unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.body_read_timeout, Duration::from_secs(3));
        assert_eq!((c.max_connections, c.max_long_polls), (Some(50), 7));
        assert_eq!(
            c.sms_rate_limit,
            RateLimit {
                max: 2,
                window: Duration::from_secs(60)
            }
        );
        assert!(!c.token_rate_limit.is_on());
        assert!(c.strict_low_s);
        let e = SandboxConfig::from_toml_str("max_connections = 0").unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
        let c = SandboxConfig::from_toml_str("max_connections = 1000000").unwrap();
        assert_eq!(c.max_connections, Some(1_000_000));
        let e = SandboxConfig::from_toml_str("max_connections = 1000001").unwrap_err();
        assert!(e.to_string().contains("at most 1000000"), "{e}");
        let e = SandboxConfig::from_toml_str("idle_timeout = \"0s\"").unwrap_err();
        assert!(e.to_string().contains("idle_timeout"), "{e}");
    }

    #[test]
    fn fault_rules_and_their_seed_are_read_from_the_file() {
        let c = SandboxConfig::from_toml_str(
            "faults_seed = 7\nfaults = [\"PUT /v1/mfa/challenges/*: status=503 p=0.05\"]\n",
        )
        .unwrap();
        assert_eq!(c.faults_seed, Some(7));
        assert_eq!(
            c.faults[0].to_string(),
            "PUT /v1/mfa/challenges/*: status=503 p=0.05"
        );
        let e = SandboxConfig::from_toml_str("faults = [\"PUT /v1/x: status=418\"]").unwrap_err();
        assert!(e.to_string().contains("418"), "{e}");
    }

    #[test]
    fn the_admin_token_comes_from_the_file_or_a_token_file_and_never_shows() {
        let c = SandboxConfig::from_toml_str("admin_token = \"s3cr3t-admin-token-42\"").unwrap();
        let token = c.admin_token.as_ref().unwrap();
        assert!(token.matches("s3cr3t-admin-token-42"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), "from-a-file-0123456789\n").unwrap();
        let config = dir.path().join("sandbox.toml");
        std::fs::write(&config, "admin_token_file = \"admin.token\"\n").unwrap();
        let c = SandboxConfig::from_toml_file(&config).unwrap();
        assert!(c.admin_token.unwrap().matches("from-a-file-0123456789"));
        for (text, says) in [
            ("admin_token = \"short\"", "at least 16"),
            (
                "admin_token = \"s3cr3t-admin-token-42\"\nadmin_token_file = \"x\"",
                "not both",
            ),
            (
                "admin_token_file = \"/nonexistent/admin.token\"",
                "admin_token_file",
            ),
            (
                "admin_token = \"vphone-demo-secret-but-longer\"\n[[partners]]\nclient_id = \"a\"\nclient_secret = \"vphone-demo-secret-but-longer\"",
                "partner",
            ),
        ] {
            let e = SandboxConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("s3cr3t") && !e.contains("but-longer"), "{e}");
        }
    }

    #[test]
    fn retention_is_read_from_the_file() {
        let c = SandboxConfig::from_toml_str("retention = \"2m\"").unwrap();
        assert_eq!(c.retention, Duration::from_secs(120));
        assert_eq!(c.sweep_interval(), Duration::from_secs(30));
        let c = SandboxConfig::from_toml_str("retention = \"0s\"").unwrap();
        assert_eq!(c.sweep_interval(), Duration::from_secs(1));
        let e = SandboxConfig::from_toml_str("retention = \"later\"").unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
    }

    #[test]
    fn the_example_file_parses() {
        let c = SandboxConfig::from_toml_str(include_str!("../../sandbox.example.toml")).unwrap();
        assert_eq!(c.partners.len(), 2);
        assert!(!format!("{c:?}").contains("vphone-demo-secret"));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let e = SandboxConfig::from_toml_str("challenge_lifetime = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("challenge_lifetime"), "{e}");
        assert!(SandboxConfig::from_toml_str("max_failed_attempts = 0").is_err());
        assert!(SandboxConfig::from_toml_str("colour = 1").is_err());
    }

    #[test]
    fn parse_errors_never_quote_a_client_secret() {
        for text in [
            "[[partners]]\nclient_id = \"a\"\nclient_secret = s3cr3t-value\n",
            "[[partners]]\nclient_id = \"a\"\nclient_secret = 987654321\n",
            "[[partners]]\nclient_id = \"a\"\nclient_secret = \"s3cr3t-value\"\ncolour = 1\n",
        ] {
            let e = SandboxConfig::from_toml_str(text).unwrap_err();
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains("s3cr3t"), "{shown}");
                assert!(!shown.contains("987654321"), "{shown}");
                assert!(shown.contains("line "), "{shown}");
            }
        }
    }
}
