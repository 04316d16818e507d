//! SMS challenges: the person types the OTP sent to their verified number, which must still
//! be their verified number when they answer.

use super::attempts::Attempts;
use super::challenges::{ChallengeEntry, ChallengeWhat};
use super::persons::PersonEntry;
use super::{Reason, Refusal, SendOtp, mint};
use crate::api::{ChallengeId, Otp, Timestamp};
use crate::sandbox::config::SandboxConfig;
use rand::RngCore;

/// Makes an SMS challenge for `person`; the caller sends the OTP.
pub fn create(
    person: &mut PersonEntry,
    config: &SandboxConfig,
    now: Timestamp,
    rng: &mut dyn RngCore,
) -> Result<(ChallengeId, ChallengeEntry, SendOtp), Refusal> {
    let number = person.verified_number("OTP", "add and confirm one first")?;
    person.admit_sms(config, now)?;
    let otp = mint::otp(rng, &number, config.static_otp);
    let entry = ChallengeEntry {
        what: ChallengeWhat::Sms {
            person_id: person.person.id.clone(),
            otp: otp.clone(),
            sent_to: number.clone(),
        },
        attempts: Attempts::new(now, config.challenge_lifetime),
    };
    Ok((mint::challenge_id(rng), entry, SendOtp { number, otp }))
}

/// Answers an SMS challenge with the code typed. A wrong code counts as a failed attempt;
/// every other refusal changes nothing.
pub fn answer(
    challenge: &mut ChallengeEntry,
    person: &PersonEntry,
    code: &Otp,
    config: &SandboxConfig,
    now: Timestamp,
) -> Result<(), Refusal> {
    let ChallengeWhat::Sms { otp, sent_to, .. } = &challenge.what else {
        return Err(Refusal::new(Reason::NotFound, "not an SMS challenge"));
    };
    challenge.attempts.check_open(now, "SMS challenge")?;
    person.check_still_verified(sent_to, "OTP", "start a new SMS challenge")?;
    if !otp.matches(code) {
        let left = challenge
            .attempts
            .record_failure(config.max_failed_attempts, now);
        return Err(
            Refusal::new(Reason::InvalidOtp, format!("the code is wrong; {left}")).field("code"),
        );
    }
    challenge.attempts.complete(now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::core::testing::{config, rng, t0, verified_person};

    #[test]
    fn an_sms_challenge_is_answered_once_with_the_code_sent() {
        let (config, mut rng) = (config(), rng(21));
        let mut person = verified_person(&mut rng);
        let (_, mut c, send) = create(&mut person, &config, t0(), &mut rng).unwrap();
        assert_eq!(
            Some(send.number.clone()),
            person.mobile.as_ref().map(|m| m.number.clone())
        );
        answer(&mut c, &person, &send.otp, &config, t0()).unwrap();
        let again = answer(&mut c, &person, &send.otp, &config, t0()).unwrap_err();
        assert_eq!(again.reason, Reason::ChallengeAlreadyUsed);
    }

    #[test]
    fn a_code_sent_to_a_number_that_is_gone_is_refused() {
        let (config, mut rng) = (config(), rng(22));
        let mut person = verified_person(&mut rng);
        let (_, mut c, send) = create(&mut person, &config, t0(), &mut rng).unwrap();
        person.mobile = None;
        let refused = answer(&mut c, &person, &send.otp, &config, t0()).unwrap_err();
        assert_eq!(refused.reason, Reason::MobileNumberChanged);
        assert_eq!(c.attempts.failed, 0, "not a wrong answer");
    }
}
