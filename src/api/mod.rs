//! Wire types of the Solaris device-management API, shared by the sandbox and the phone.
//!
//! Requests are strict: value types validate when parsed, so a phone cannot send what the
//! bank would refuse. Responses are tolerant: unknown fields are ignored and known variants
//! (for example the keys list as an object or an array) are read.

mod auth;
mod challenges;
mod change_requests;
mod devices;
mod enums;
mod error;
mod error_code;
mod ids;
pub(crate) use ids::random_hex32;
mod persons;
mod sms;
mod time_fmt;
mod values;

pub use auth::{AccessToken, TokenResponse};
pub use challenges::{
    AnswerDeviceChallenge, AnswerSmsChallenge, CreateDeviceChallenge, CreateSmsChallenge,
    DeviceChallenge, SmsChallenge,
};
pub use change_requests::{
    AuthorizeChangeRequest, ChangeRequest, ConfirmChangeRequest, PersonUpdate,
};
pub use devices::{
    AddKeyRequest, AddKeyResponse, AnswerSignatureChallenge, CreateDeviceRequest,
    CreateDeviceResponse, Device, DeviceKeys, DeviceListQuery, DeviceSignature, KeyDetail,
    KeySummary, KeysAnswer, SignatureChallenge, SmsChallengeOptions,
};
pub use enums::{
    BindingChallengeType, ChallengeKind, ChangeRequestStatus, DeliveryMethod, KeyPurpose, KeyType,
    Language,
};
pub use error::{
    ApiErrorBody, ErrorObject, ErrorShape, ErrorSource, INJECTED_FAULT_HEADER, RemoteError,
};
pub use error_code::ErrorCode;
pub use ids::{
    ChallengeId, ChangeRequestId, DeviceId, IdError, IdProblem, KeyId, MAX_SERVER_ID,
    MobileNumberId, PersonId, TypedId, is_hex32, strict,
};
pub use persons::{
    ConfirmMobileNumber, CreatePerson, MobileNumber, MobileNumberRequest, Person, UpdatePerson,
};
pub use sms::{SmsMessage, SmsQuery};
pub use time_fmt::{Timestamp, now_utc};
pub use values::{Otp, PhoneNumber, PublicKeyHex, SignatureHex, ValueError, same_secret};
