//! The sandbox's SMS outbox, read by phones and test rigs. Not part of the bank's `/v1` API.

use super::{Language, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One SMS the sandbox delivered. `Debug` hides the text, which carries an OTP.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// Delivery sequence number, increasing per sandbox.
    pub seq: u64,
    /// The receiving number.
    pub number: PhoneNumber,
    /// The message text, in the requested language.
    pub text: String,
    /// The language of the text.
    pub language: Language,
    /// When it was sent.
    pub sent_at: Timestamp,
    /// The id the sender gave the SMS when it sent it, increasing in sending order. A repeated
    /// delivery (a duplicate) carries the same id, and a late one a lower id than SMS sent
    /// after it: `seq` orders arrivals, `message_id` orders sending. Absent when the server
    /// does not number its SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<u64>,
}

impl SmsMessage {
    /// The first run of exactly six digits in the text, the OTP.
    pub fn code(&self) -> Option<super::Otp> {
        let bytes = self.text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 6 {
                return super::Otp::parse(&self.text[start..i]).ok();
            }
            i = if i == start { i + 1 } else { i };
        }
        None
    }
}

impl fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsMessage")
            .field("seq", &self.seq)
            .field("number", &self.number)
            .field("text", &"<redacted>")
            .field("language", &self.language)
            .field("sent_at", &self.sent_at)
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// `GET /sandbox/sms` query: messages to `number` with `seq > after`, waiting up to
/// `wait_ms` for the first one when none is there yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsQuery {
    /// The receiving number.
    pub number: PhoneNumber,
    /// Only messages after this sequence number.
    #[serde(default)]
    pub after: u64,
    /// How long to wait for a message, in milliseconds (at most 60000).
    #[serde(default)]
    pub wait_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_the_first_six_digit_run() {
        let sms = SmsMessage {
            seq: 1,
            number: PhoneNumber::test_number(),
            text: "Ihr Code 2026: 123456. Gueltig 5 Minuten. 1234567".into(),
            language: Language::De,
            sent_at: crate::api::now_utc(),
            message_id: None,
        };
        assert_eq!(sms.code().unwrap().expose(), "123456");
        assert!(!format!("{sms:?}").contains("123456"));
    }
}
