//! Persons and their mobile numbers: a person gets one number, which an OTP sent by SMS
//! verifies; only a verified number receives binding OTPs, SMS challenges and TANs.

use super::attempts::Attempts;
use super::{Reason, Refusal, SendOtp, mint};
use crate::api::{CreatePerson, DeviceId, MobileNumberId, Otp, Person, PhoneNumber, Timestamp};
use crate::sandbox::config::SandboxConfig;
use crate::sandbox::ratelimit::Window;
use rand::RngCore;

/// A person and what hangs off it.
#[derive(Clone)]
pub struct PersonEntry {
    /// The person as the API shows it.
    pub person: Person,
    /// Their mobile number, verified or not.
    pub mobile: Option<MobileEntry>,
    /// Every device that was ever bound, in binding order (deleted ones included).
    pub devices: Vec<DeviceId>,
    /// Bound and not deleted devices; the device-limit rule is checked against this.
    pub bound: usize,
    /// The latest SMS with a code sent to the person, for [`SandboxConfig::sms_rate_limit`].
    /// Not kept across restarts: a restarted sandbox starts a fresh window.
    pub sms_sent: Window,
}

/// A person's mobile number.
#[derive(Debug, Clone)]
pub struct MobileEntry {
    /// Its id.
    pub id: MobileNumberId,
    /// The number.
    pub number: PhoneNumber,
    /// Whether an OTP confirmed it.
    pub verified: bool,
    /// The OTP sent to verify it, with its attempts.
    pub otp: Option<(Otp, Attempts)>,
}

/// A new person with a fresh id, created `now`.
pub fn create(body: CreatePerson, now: Timestamp, rng: &mut dyn RngCore) -> PersonEntry {
    PersonEntry {
        person: Person {
            id: mint::person_id(rng),
            first_name: body.first_name,
            last_name: body.last_name,
            email: body.email,
            salutation: body.salutation,
            birth_date: body.birth_date,
            created_at: Some(now),
            extra: body.extra,
        },
        mobile: None,
        devices: Vec::new(),
        bound: 0,
        sms_sent: Window::default(),
    }
}

fn no_number() -> Refusal {
    Refusal::new(
        Reason::NotFound,
        "the person has no mobile number; add one with POST /v1/persons/{person_id}/mobile_number",
    )
}

fn mismatch() -> Refusal {
    Refusal::new(
        Reason::MobileNumberMismatch,
        "this is not the person's mobile number; send the number that was added",
    )
    .field("number")
}

impl PersonEntry {
    /// The person's number, verified or not.
    pub fn mobile(&self) -> Result<&MobileEntry, Refusal> {
        self.mobile.as_ref().ok_or_else(no_number)
    }

    /// The person's verified number, where an OTP or TAN `for_what` can be sent; else the
    /// refusal ending in `next_step`.
    pub fn verified_number(&self, for_what: &str, next_step: &str) -> Result<PhoneNumber, Refusal> {
        self.mobile
            .as_ref()
            .filter(|m| m.verified)
            .map(|m| m.number.clone())
            .ok_or_else(|| {
                Refusal::new(
                    Reason::NoVerifiedNumber,
                    format!(
                        "the person has no verified mobile number to send the {for_what} to; {next_step}"
                    ),
                )
            })
    }

    /// Refuses unless the person's verified number is still `sent_to`, the number the `what`
    /// (an OTP or TAN) was sent to; `start_again` says what to start anew.
    pub fn check_still_verified(
        &self,
        sent_to: &PhoneNumber,
        what: &str,
        start_again: &str,
    ) -> Result<(), Refusal> {
        match &self.mobile {
            Some(m) if m.verified && m.number == *sent_to => Ok(()),
            _ => Err(Refusal::new(
                Reason::MobileNumberChanged,
                format!(
                    "the {what} was sent to a mobile number that is no longer the person's verified number; {start_again}"
                ),
            )),
        }
    }

    /// Admits one more SMS with a code under [`SandboxConfig::sms_rate_limit`].
    pub fn admit_sms(&mut self, config: &SandboxConfig, now: Timestamp) -> Result<(), Refusal> {
        let limit = config.sms_rate_limit;
        self.sms_sent.admit(limit, now).map_err(|r| {
            Refusal::new(
                Reason::TooManyRequests { retry_after: r.0 },
                format!(
                    "too many SMS with a code to this person: at most {} per {}; retry in {} s",
                    limit.max,
                    humantime::format_duration(limit.window),
                    r.0
                ),
            )
        })
    }

    /// Adds an unverified mobile number; a person has one at most.
    pub fn add_number(
        &mut self,
        number: PhoneNumber,
        rng: &mut dyn RngCore,
    ) -> Result<&MobileEntry, Refusal> {
        if self.mobile.is_some() {
            return Err(Refusal::new(
                Reason::MobileNumberExists,
                "the person already has a mobile number; delete it first (a change request)",
            ));
        }
        Ok(self.mobile.insert(MobileEntry {
            id: mint::mobile_number_id(rng),
            number,
            verified: false,
            otp: None,
        }))
    }

    /// Starts verifying the number: a fresh OTP replaces any earlier one; the caller sends it.
    pub fn authorize_number(
        &mut self,
        number: &PhoneNumber,
        config: &SandboxConfig,
        now: Timestamp,
        rng: &mut dyn RngCore,
    ) -> Result<SendOtp, Refusal> {
        let mobile = self.mobile()?;
        if mobile.number != *number {
            return Err(mismatch());
        }
        if mobile.verified {
            return Err(Refusal::new(
                Reason::MobileNumberAlreadyVerified,
                "the mobile number is already verified; nothing to authorize",
            ));
        }
        self.admit_sms(config, now)?;
        let mobile = self.mobile.as_mut().ok_or_else(no_number)?;
        let otp = mint::otp(rng, &mobile.number, config.static_otp);
        mobile.otp = Some((otp.clone(), Attempts::new(now, config.challenge_lifetime)));
        Ok(SendOtp {
            number: mobile.number.clone(),
            otp,
        })
    }

    /// Verifies the number with the OTP sent to it. A wrong OTP counts as a failed attempt
    /// (the refusal is the only change).
    pub fn confirm_number(
        &mut self,
        number: &PhoneNumber,
        token: &Otp,
        config: &SandboxConfig,
        now: Timestamp,
    ) -> Result<&MobileEntry, Refusal> {
        let mobile = self.mobile.as_mut().ok_or_else(no_number)?;
        if mobile.number != *number {
            return Err(mismatch());
        }
        if mobile.verified {
            return Err(Refusal::new(
                Reason::MobileNumberAlreadyVerified,
                "the mobile number is already verified",
            ));
        }
        let Some((otp, attempts)) = mobile.otp.as_mut() else {
            return Err(Refusal::new(
                Reason::AuthorizationRequired,
                "no OTP was sent yet; call POST .../mobile_number/authorize first",
            ));
        };
        attempts.check_open(now, "mobile number OTP")?;
        if !otp.matches(token) {
            let left = attempts.record_failure(config.max_failed_attempts, now);
            return Err(
                Refusal::new(Reason::InvalidOtp, format!("the OTP is wrong; {left}"))
                    .field("token"),
            );
        }
        attempts.complete(now);
        mobile.verified = true;
        Ok(mobile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::core::testing::{config, person, rng, t0};

    #[test]
    fn a_number_is_verified_by_the_otp_sent_to_it_and_not_by_another() {
        let (config, mut rng) = (config(), rng(1));
        let mut p = person(&mut rng);
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        p.add_number(number.clone(), &mut rng).unwrap();
        assert_eq!(
            p.add_number(number.clone(), &mut rng).unwrap_err().reason,
            Reason::MobileNumberExists
        );
        let sent = p
            .authorize_number(&number, &config, t0(), &mut rng)
            .unwrap();
        assert_eq!(sent.number, number);
        let wrong = Otp::parse(if sent.otp.expose() == "000000" {
            "000001"
        } else {
            "000000"
        })
        .unwrap();
        let refused = p
            .confirm_number(&number, &wrong, &config, t0())
            .unwrap_err();
        assert_eq!(
            (refused.reason, refused.field.as_deref()),
            (Reason::InvalidOtp, Some("token"))
        );
        assert!(!p.mobile().unwrap().verified);
        assert!(
            p.confirm_number(&number, &sent.otp, &config, t0())
                .unwrap()
                .verified
        );
        assert_eq!(p.verified_number("OTP", "").unwrap(), number);
    }

    #[test]
    fn an_expired_number_otp_is_refused_and_verifies_nothing() {
        let (config, mut rng) = (config(), rng(2));
        let mut p = person(&mut rng);
        let number = PhoneNumber::parse("+4915112345678").unwrap();
        p.add_number(number.clone(), &mut rng).unwrap();
        let sent = p
            .authorize_number(&number, &config, t0(), &mut rng)
            .unwrap();
        let late = t0().plus_seconds(config.challenge_lifetime.as_secs() as i64);
        let refused = p
            .confirm_number(&number, &sent.otp, &config, late)
            .unwrap_err();
        assert_eq!(refused.reason, Reason::ChallengeExpired);
        assert!(!p.mobile().unwrap().verified);
    }

    #[test]
    fn the_sixth_sms_in_the_window_is_refused_with_the_seconds_to_wait() {
        let (config, mut rng) = (config(), rng(3));
        let mut p = person(&mut rng);
        for _ in 0..config.sms_rate_limit.max {
            p.admit_sms(&config, t0()).unwrap();
        }
        let refused = p.admit_sms(&config, t0()).unwrap_err();
        assert_eq!(refused.reason, Reason::TooManyRequests { retry_after: 600 });
    }
}
