//! Setting a phone up: the person, the mobile number, SMS verification.

use crate::api::{
    ConfirmMobileNumber, CreatePerson, ErrorCode, MobileNumber, MobileNumberRequest, Person,
    PersonId, PhoneNumber,
};
use crate::phone::error::StepContext;
use crate::phone::outcome::{RegisterOutcome, Stopwatch, VerifyOutcome};
use crate::phone::{Phone, PhoneError};

impl Phone {
    /// Makes this phone belong to an existing person with an already verified number.
    pub fn join_person(
        &mut self,
        person_id: PersonId,
        number: PhoneNumber,
    ) -> Result<(), PhoneError> {
        self.profile.person_id = Some(person_id);
        self.set_number(number);
        self.profile.number_verified = true;
        self.save()
    }

    /// Creates a person (`POST /v1/persons`) and makes this phone theirs.
    pub async fn create_person(&mut self, person: &CreatePerson) -> Result<Person, PhoneError> {
        let person = self
            .client
            .create_person(person)
            .await
            .step(self.name(), "create person")?;
        self.profile.person_id = Some(person.id.clone());
        self.save()?;
        Ok(person)
    }

    /// Gives the person `number` (`POST .../mobile_number`); it still needs verifying.
    pub async fn add_number(&mut self, number: PhoneNumber) -> Result<MobileNumber, PhoneError> {
        let person = self.person_id()?;
        let req = MobileNumberRequest {
            number: number.clone(),
        };
        let created = match self.client.create_mobile_number(&person, &req).await {
            Ok(created) => created,
            // Added by an earlier run whose answer was lost: read the number and continue
            // with it, if it is the one asked for.
            Err(e) if e.error_code() == Some(&ErrorCode::MobileNumberExists) => {
                let held = self
                    .client
                    .get_mobile_number(&person)
                    .await
                    .step(self.name(), "add mobile number: read the person's number")?;
                match &held.number {
                    Some(n) if n == &number => held,
                    other => {
                        return Err(PhoneError::NumberMismatch {
                            name: self.name().to_string(),
                            saved: other
                                .as_ref()
                                .map_or_else(|| "(not shown)".to_owned(), |n| n.to_string()),
                            given: number.to_string(),
                        });
                    }
                }
            }
            Err(e) => return Err(e).step(self.name(), "add mobile number"),
        };
        self.set_number(number);
        self.profile.number_verified = created.verified;
        self.save()?;
        Ok(created)
    }

    /// Verifies the person's number: asks for an SMS OTP, reads it, confirms it.
    pub async fn verify_number(&mut self) -> Result<VerifyOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let person = self.person_id()?;
        let (number, inbox) = self.number_and_inbox()?;
        let mark = inbox
            .marker_for(crate::phone::SmsKind::VerifyNumber)
            .await
            .step(self.name(), "verify number: read inbox")?;
        let req = MobileNumberRequest {
            number: number.clone(),
        };
        self.client
            .authorize_mobile_number(&person, &req)
            .await
            .step(self.name(), "verify number: request SMS")?;
        clock.lap("request SMS");
        let token = inbox
            .wait_for_otp(mark, self.otp_timeout)
            .await
            .step(self.name(), "verify number: wait for SMS")?;
        clock.lap("wait for SMS");
        let mobile_number = self
            .client
            .confirm_mobile_number(&person, &ConfirmMobileNumber { number, token })
            .await
            .step(self.name(), "verify number: confirm OTP")?;
        clock.lap("confirm OTP");
        self.profile.number_verified = true;
        self.save()?;
        Ok(VerifyOutcome {
            mobile_number,
            timings: clock.finish(),
        })
    }

    /// Creates a person, adds `number` and verifies it by SMS. Resumable: a phone whose
    /// setup stopped half-way (person created, number not yet added or verified) continues
    /// from where it stopped instead of creating a second person.
    pub async fn register(
        &mut self,
        person: CreatePerson,
        number: PhoneNumber,
    ) -> Result<RegisterOutcome, PhoneError> {
        let name = self.name().to_string();
        if let Some(person) = self.profile.person_id.as_ref()
            && self.profile.is_registered()
        {
            return Err(PhoneError::AlreadyRegistered {
                name,
                person: person.to_string(),
            });
        }
        if let Some(saved) = &self.profile.number
            && saved != &number
        {
            return Err(PhoneError::NumberMismatch {
                name,
                saved: saved.to_string(),
                given: number.to_string(),
            });
        }
        let mut clock = Stopwatch::start();
        let person_created = self.profile.person_id.is_none();
        let person = match self.profile.person_id.clone() {
            None => {
                let p = self.create_person(&person).await?;
                clock.lap("create person");
                p
            }
            Some(id) => {
                let p = self
                    .client
                    .get_person(&id)
                    .await
                    .step(self.name(), "register: read person")?;
                clock.lap("read person");
                p
            }
        };
        if self.profile.number.is_none() {
            let added = self.add_number(number).await?;
            clock.lap("add number");
            if added.verified {
                // An earlier run added and verified it; only its answers were lost.
                return Ok(RegisterOutcome {
                    person,
                    person_created,
                    mobile_number: added,
                    timings: clock.finish(),
                });
            }
        }
        let verified = self.verify_number().await?;
        let mut timings = clock.finish();
        timings.steps.extend(verified.timings.steps);
        Ok(RegisterOutcome {
            person,
            person_created,
            mobile_number: verified.mobile_number,
            timings,
        })
    }
}
