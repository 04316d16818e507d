//! The OAuth2 client-credentials token.

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// A bearer token. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct AccessToken(Zeroizing<String>);

/// Written from the zeroized buffer itself: no copy of the token is left behind.
impl Serialize for AccessToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        AccessToken(Zeroizing::new(token))
    }

    /// The token text. Call only to put it in an `Authorization` header or a lookup.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for AccessToken {
    fn from(s: String) -> Self {
        AccessToken::new(s)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// `POST /oauth2/token` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: AccessToken,
    /// Always `bearer`.
    #[serde(default = "bearer")]
    pub token_type: String,
    /// Lifetime in seconds; `None` when the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Granted scope.
    #[serde(default)]
    pub scope: Option<String>,
}

fn bearer() -> String {
    "bearer".to_owned()
}
