//! Answering challenges: device signing (by id or created here) and SMS challenges.

use crate::api::{
    AnswerDeviceChallenge, AnswerSmsChallenge, ChallengeId, CreateDeviceChallenge,
    CreateSmsChallenge, DeviceChallenge, KeyPurpose,
};
use crate::phone::error::StepContext;
use crate::phone::logic;
use crate::phone::outcome::{SignOutcome, SmsOutcome, Stopwatch};
use crate::phone::{Phone, PhoneError};

/// The step of a [`PhoneError::Bank`] raised by the answer to a device-signing challenge
/// itself, not by a call made before it.
pub const ANSWER_DEVICE_CHALLENGE: &str = "answer device challenge";

impl Phone {
    /// Answers the device-signing challenge `id`: fetches it, checks it, picks its key,
    /// asks the user for a restricted key, signs `string_to_sign` and submits.
    pub async fn sign_challenge(&self, id: &ChallengeId) -> Result<SignOutcome, PhoneError> {
        self.sign_challenge_for(id, None).await
    }

    /// [`Phone::sign_challenge`] for a challenge the caller knows was made for the key of
    /// `purpose`: used when the server's challenge does not say (a named purpose wins, and
    /// one that differs from `purpose` is refused).
    pub async fn sign_challenge_for(
        &self,
        id: &ChallengeId,
        purpose: Option<KeyPurpose>,
    ) -> Result<SignOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        self.bound_device()?;
        let challenge = self
            .client
            .get_device_challenge(id)
            .await
            .step(self.name(), "sign: fetch challenge")?;
        clock.lap("fetch challenge");
        logic::check_requested_purpose(&challenge, purpose).map_err(|p| self.refuse(p))?;
        self.answer(challenge, purpose, clock).await
    }

    /// Creates a device-signing challenge for this phone and answers it (what a bank app
    /// does when the user approves a login or payment).
    pub async fn approve(&self, purpose: Option<KeyPurpose>) -> Result<SignOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let device_id = self.bound_device()?;
        let req = CreateDeviceChallenge {
            device_id,
            key_purpose: purpose,
            device_data: None,
        };
        let challenge = self
            .client
            .create_device_challenge(&req)
            .await
            .step(self.name(), "approve: create challenge")?;
        clock.lap("create challenge");
        logic::check_requested_purpose(&challenge, purpose).map_err(|p| self.refuse(p))?;
        self.answer(challenge, purpose, clock).await
    }

    async fn answer(
        &self,
        challenge: DeviceChallenge,
        asked: Option<KeyPurpose>,
        mut clock: Stopwatch,
    ) -> Result<SignOutcome, PhoneError> {
        let now = self.clock.now();
        let purpose = logic::plan_device_answer(&challenge, asked, &self.key_purposes(), now)
            .map_err(|p| self.refuse(p))?;
        let reason = format!("device challenge {}", challenge.id);
        let signature = self.sign(
            purpose,
            logic::challenge_message(&challenge.string_to_sign),
            &reason,
            "sign challenge",
        )?;
        clock.lap("sign");
        let answer = AnswerDeviceChallenge {
            signature,
            device_data: None,
        };
        self.client
            .answer_device_challenge(&challenge.id, &answer)
            .await
            .step(self.name(), ANSWER_DEVICE_CHALLENGE)?;
        clock.lap("answer challenge");
        Ok(SignOutcome {
            challenge_id: challenge.id,
            key_purpose: purpose,
            user_confirmed: logic::needs_presence(purpose),
            key: self.key_label(purpose),
            timings: clock.finish(),
        })
    }

    /// Asks the bank for an SMS challenge and answers it with the code from the inbox.
    pub async fn sms_challenge(&self) -> Result<SmsOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let person_id = self.person_id()?;
        let inbox = self.inbox_ref()?;
        let mark = inbox
            .marker_for(crate::phone::SmsKind::SmsChallenge)
            .await
            .step(self.name(), "SMS challenge: read inbox")?;
        let challenge = self
            .client
            .create_sms_challenge(&CreateSmsChallenge {
                person_id,
                language: None,
            })
            .await
            .step(self.name(), "SMS challenge: create")?;
        clock.lap("create challenge");
        let code = inbox
            .wait_for_otp(mark, self.otp_timeout)
            .await
            .step(self.name(), "SMS challenge: wait for SMS")?;
        clock.lap("wait for SMS");
        self.client
            .answer_sms_challenge(&challenge.id, &AnswerSmsChallenge { code })
            .await
            .step(self.name(), "SMS challenge: answer")?;
        clock.lap("answer challenge");
        Ok(SmsOutcome {
            challenge_id: challenge.id,
            timings: clock.finish(),
        })
    }
}
