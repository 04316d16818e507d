//! The API's machine-readable error codes: one enum for the sandbox, which sends them, and
//! the client, which chooses its hints by them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)+) => {
        /// A machine-readable error code (`code` of an error body).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
            /// A code this crate does not know (other servers have their own).
            Other(String),
        }

        impl ErrorCode {
            /// The code on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                    ErrorCode::Other(other) => other,
                }
            }

            /// Reads a code; known codes in any case (the flat shape's `error_code` is often
            /// upper case), anything else kept as [`ErrorCode::Other`].
            pub fn parse(text: &str) -> ErrorCode {
                $(if text.eq_ignore_ascii_case($text) {
                    return ErrorCode::$variant;
                })+
                ErrorCode::Other(text.to_owned())
            }
        }
    };
}

error_codes! {
    /// 401: no bearer token was sent.
    Unauthorized = "unauthorized",
    /// 401: the bearer token is unknown or expired.
    InvalidToken = "invalid_token",
    /// 401: wrong client id or secret at the token endpoint.
    InvalidClient = "invalid_client",
    /// 400: the token request is not a client-credentials grant.
    InvalidRequest = "invalid_request",
    /// 404: no such resource for this partner.
    NotFound = "not_found",
    /// 404: no such route.
    RouteNotFound = "route_not_found",
    /// 405: the route exists with other methods.
    MethodNotAllowed = "method_not_allowed",
    /// 400: the body is not JSON.
    InvalidJson = "invalid_json",
    /// 415: the body is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    /// 413: the body is too large.
    PayloadTooLarge = "payload_too_large",
    /// 400: a field is missing, unknown or out of range.
    ValidationError = "validation_error",
    /// 400: the public key is not a valid uncompressed P-256 point.
    InvalidKey = "invalid_key",
    /// 400: only `ecdsa-p256` keys are accepted.
    UnsupportedKeyType = "unsupported_key_type",
    /// 400: the signature is not lowercase hex of strict DER.
    InvalidSignatureEncoding = "invalid_signature_encoding",
    /// 403: the signature does not verify.
    InvalidSignature = "invalid_signature",
    /// 403: wrong OTP or TAN.
    InvalidOtp = "invalid_otp",
    /// 403: the challenge's lifetime is over.
    ChallengeExpired = "challenge_expired",
    /// 403: the challenge was already completed.
    ChallengeAlreadyUsed = "challenge_already_used",
    /// 403: the challenge's failed attempts are spent.
    ChallengeFailed = "challenge_failed",
    /// 400: the person has no verified mobile number.
    TelephoneNumberNotFound = "telephone_number_not_found",
    /// 409: the person already has the maximum of bound devices.
    DeviceLimitReached = "device_limit_reached",
    /// 409: the public key is already bound.
    KeyAlreadyBound = "key_already_bound",
    /// 409: the device already has a key of this purpose.
    KeyPurposeTaken = "key_purpose_taken",
    /// 409: the person already has a mobile number.
    MobileNumberExists = "mobile_number_exists",
    /// 403: the device was deleted and signs nothing.
    DeviceDeleted = "device_deleted",
    /// 403: a restricted-key challenge needs the device's restricted key.
    RestrictedKeyRequired = "restricted_key_required",
    /// 403: the device has no key of the purpose asked for.
    KeyNotFound = "key_not_found",
    /// 403: a person or device does not belong to the change request's person.
    PersonMismatch = "person_mismatch",
    /// 409: the change request is not in a state that allows this call.
    InvalidChangeRequestState = "invalid_change_request_state",
    /// 400: the number in the request is not the person's number.
    MobileNumberMismatch = "mobile_number_mismatch",
    /// 403: the OTP or TAN went to a number that is no longer the person's.
    MobileNumberChanged = "mobile_number_changed",
    /// 409: the number's OTP was not requested yet.
    AuthorizationRequired = "authorization_required",
    /// 409: the mobile number is already verified.
    MobileNumberAlreadyVerified = "mobile_number_already_verified",
    /// 429: too many requests; retry after the `Retry-After` seconds.
    TooManyRequests = "too_many_requests",
    /// 408: the request was not received in time.
    RequestTimeout = "request_timeout",
    /// 414: the request line is too long.
    UriTooLong = "uri_too_long",
    /// 431: the request headers are too large.
    RequestHeaderFieldsTooLarge = "request_header_fields_too_large",
    /// Client side only: a success answer whose body the client could not read.
    UnreadableAnswer = "unreadable_answer",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ErrorCode::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_in_any_case_and_unknown_ones_are_kept() {
        assert_eq!(ErrorCode::parse("INVALID_OTP"), ErrorCode::InvalidOtp);
        assert_eq!(ErrorCode::parse("invalid_otp").as_str(), "invalid_otp");
        assert_eq!(
            ErrorCode::parse("model_not_found"),
            ErrorCode::Other("model_not_found".into())
        );
        assert_eq!(
            ErrorCode::parse("model_not_found").as_str(),
            "model_not_found"
        );
    }
}
