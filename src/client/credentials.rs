//! Partner credentials (OAuth2 client id and secret), read from the environment or a file,
//! never from command-line arguments, and never printed.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable holding the OAuth2 client id.
pub const CLIENT_ID_ENV: &str = "VPHONE_CLIENT_ID";
/// The environment variable holding the OAuth2 client secret.
pub const CLIENT_SECRET_ENV: &str = "VPHONE_CLIENT_SECRET";
/// The environment variable naming a TOML credentials file.
pub const CREDENTIALS_FILE_ENV: &str = "VPHONE_CREDENTIALS";

/// The client id the built-in sandbox accepts by default.
pub const SANDBOX_CLIENT_ID: &str = "vphone-demo";
const SANDBOX_CLIENT_SECRET: &str = "vphone-demo-secret";

/// An OAuth2 client id and secret. The secret is zeroized on drop and `Debug` hides it.
#[derive(Clone)]
pub struct Credentials {
    client_id: String,
    client_secret: Zeroizing<String>,
}

/// Why credentials could not be read. Messages name the variable or file, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Only one of the two environment variables is set.
    #[error("{set} is set but {missing} is not: set both, or neither and use a credentials file")]
    HalfSet {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// The credentials file cannot be read.
    #[error("cannot read credentials file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is not TOML with `client_id` and `client_secret` strings.
    #[error(
        "credentials file {} must be TOML with client_id = \"...\" and client_secret = \"...\": {reason}",
        path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret itself).
        reason: String,
    },
    /// No credentials are configured for a server that needs them.
    #[error(
        "no client credentials for {target}: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}, or pass --credentials FILE"
    )]
    Missing {
        /// The server that needs them.
        target: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    client_id: String,
    client_secret: String,
}

impl Drop for CredentialsFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.client_secret);
    }
}

impl Credentials {
    /// Credentials from values (for code and tests; command lines use env or files).
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Credentials {
        Credentials {
            client_id: client_id.into(),
            client_secret: Zeroizing::new(client_secret.into()),
        }
    }

    /// The built-in sandbox's default partner (`vphone-demo`); only for local sandboxes.
    pub fn sandbox_default() -> Credentials {
        Credentials::new(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)
    }

    /// Reads `VPHONE_CLIENT_ID` and `VPHONE_CLIENT_SECRET`; `None` when neither is set.
    pub fn from_env() -> Result<Option<Credentials>, CredentialsError> {
        let id = std::env::var(CLIENT_ID_ENV).ok().filter(|s| !s.is_empty());
        let secret = std::env::var(CLIENT_SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .map(Zeroizing::new);
        match (id, secret) {
            (Some(client_id), Some(client_secret)) => Ok(Some(Credentials {
                client_id,
                client_secret,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(CredentialsError::HalfSet {
                set: CLIENT_ID_ENV,
                missing: CLIENT_SECRET_ENV,
            }),
            (None, Some(_)) => Err(CredentialsError::HalfSet {
                set: CLIENT_SECRET_ENV,
                missing: CLIENT_ID_ENV,
            }),
        }
    }

    /// Reads a TOML file with `client_id` and `client_secret`.
    pub fn from_file(path: &Path) -> Result<Credentials, CredentialsError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            CredentialsError::Read {
                path: path.to_owned(),
                source,
            }
        })?);
        let mut file: CredentialsFile =
            toml::from_str(&text).map_err(|e| CredentialsError::Malformed {
                path: path.to_owned(),
                // toml's message may quote the offending line, which could hold the secret.
                reason: e.message().to_owned(),
            })?;
        Ok(Credentials::new(
            std::mem::take(&mut file.client_id),
            std::mem::take(&mut file.client_secret),
        ))
    }

    /// The first configured source: the given file, `$VPHONE_CREDENTIALS`, then the
    /// environment variables. `None` when nothing is configured.
    pub fn discover(file: Option<&Path>) -> Result<Option<Credentials>, CredentialsError> {
        if let Some(path) = file {
            return Credentials::from_file(path).map(Some);
        }
        if let Some(path) = std::env::var_os(CREDENTIALS_FILE_ENV).filter(|p| !p.is_empty()) {
            return Credentials::from_file(Path::new(&path)).map(Some);
        }
        Credentials::from_env()
    }

    /// The credentials for `target`: from `file`, `$VPHONE_CREDENTIALS` or the environment;
    /// a local server without any falls back to the sandbox's default partner.
    pub fn for_target(
        file: Option<&Path>,
        target: &super::Target,
    ) -> Result<Credentials, CredentialsError> {
        match Credentials::discover(file)? {
            Some(credentials) => Ok(credentials),
            None if target.is_local() => Ok(Credentials::sandbox_default()),
            None => Err(CredentialsError::Missing {
                target: target.to_string(),
            }),
        }
    }

    /// The client id (not secret).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The secret; call only to authenticate.
    pub fn expose_secret(&self) -> &str {
        &self.client_secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::new("partner", "s3cr3t-value");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("partner") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn a_credentials_file_is_read_and_its_errors_hide_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "client_id = \"p\"\nclient_secret = \"s3cr3t\"\n").unwrap();
        let c = Credentials::from_file(&good).unwrap();
        assert_eq!((c.client_id(), c.expose_secret()), ("p", "s3cr3t"));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "client_id = \"p\"\nclient_secret = s3cr3t\n").unwrap();
        let err = Credentials::from_file(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && !err.contains("s3cr3t"), "{err}");
    }
}
