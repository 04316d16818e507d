//! The closed set of things a fleet measures: API requests and whole scenario steps.

use std::fmt;

/// One measured operation: an API request, or a scenario step made of several requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Scenario step: a person with a verified mobile number.
    Onboard,
    /// Scenario step: a device bound by signing the SMS OTP.
    Bind,
    /// Scenario step: a restricted key added to a bound device.
    AddKey,
    /// Scenario step: a device-signing challenge created and answered.
    Sign,
    /// Scenario step: an SMS challenge created and answered.
    Sms,
    /// Scenario step: a person change requested, authorized and confirmed by device signing.
    Change,
    /// `POST /v1/persons`.
    CreatePerson,
    /// `POST /v1/persons/{id}/mobile_number`.
    CreateMobileNumber,
    /// `POST /v1/persons/{id}/mobile_number/authorize`.
    AuthorizeMobileNumber,
    /// `POST /v1/persons/{id}/mobile_number/confirm`.
    ConfirmMobileNumber,
    /// `POST /v1/mfa/devices`.
    CreateDevice,
    /// `PUT /v1/mfa/challenges/signatures/{id}`.
    AnswerSignatureChallenge,
    /// `POST /v1/mfa/devices/{id}/keys`.
    AddKeyRequest,
    /// `POST /v1/mfa/challenges/devices`.
    CreateDeviceChallenge,
    /// `PUT /v1/mfa/challenges/devices/{id}`.
    AnswerDeviceChallenge,
    /// `POST /v1/mfa/challenges/sms`.
    CreateSmsChallenge,
    /// `PUT /v1/mfa/challenges/sms/{id}`.
    AnswerSmsChallenge,
    /// `PATCH /v1/persons/{id}`.
    UpdatePerson,
    /// `POST /v1/change_requests/{id}/authorize`.
    AuthorizeChangeRequest,
    /// `POST /v1/change_requests/{id}/confirm`.
    ConfirmChangeRequest,
}

impl Op {
    /// Every operation, scenario steps first.
    pub const ALL: [Op; 20] = [
        Op::Onboard,
        Op::Bind,
        Op::AddKey,
        Op::Sign,
        Op::Sms,
        Op::Change,
        Op::CreatePerson,
        Op::CreateMobileNumber,
        Op::AuthorizeMobileNumber,
        Op::ConfirmMobileNumber,
        Op::CreateDevice,
        Op::AnswerSignatureChallenge,
        Op::AddKeyRequest,
        Op::CreateDeviceChallenge,
        Op::AnswerDeviceChallenge,
        Op::CreateSmsChallenge,
        Op::AnswerSmsChallenge,
        Op::UpdatePerson,
        Op::AuthorizeChangeRequest,
        Op::ConfirmChangeRequest,
    ];

    /// Position in [`Op::ALL`], for array-indexed recorders.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Onboard => "onboard",
            Op::Bind => "bind",
            Op::AddKey => "add_key",
            Op::Sign => "sign",
            Op::Sms => "sms",
            Op::Change => "change",
            Op::CreatePerson => "create_person",
            Op::CreateMobileNumber => "create_mobile_number",
            Op::AuthorizeMobileNumber => "authorize_mobile_number",
            Op::ConfirmMobileNumber => "confirm_mobile_number",
            Op::CreateDevice => "create_device",
            Op::AnswerSignatureChallenge => "answer_signature_challenge",
            Op::AddKeyRequest => "add_key_request",
            Op::CreateDeviceChallenge => "create_device_challenge",
            Op::AnswerDeviceChallenge => "answer_device_challenge",
            Op::CreateSmsChallenge => "create_sms_challenge",
            Op::AnswerSmsChallenge => "answer_sms_challenge",
            Op::UpdatePerson => "update_person",
            Op::AuthorizeChangeRequest => "authorize_change_request",
            Op::ConfirmChangeRequest => "confirm_change_request",
        }
    }

    /// Whether this is a scenario step (several requests) rather than one request.
    pub fn is_step(self) -> bool {
        self.index() < 6
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_order_of_all() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op}");
        }
        assert!(Op::Change.is_step() && !Op::CreatePerson.is_step());
    }
}
