//! Change requests, confirmed by device signing, SMS TAN or static TAN.

use crate::api::{
    AuthorizeChangeRequest, ChangeRequest, ChangeRequestId, ChangeRequestStatus,
    ConfirmChangeRequest, DeliveryMethod, Otp, PersonUpdate, UpdatePerson,
};
use crate::phone::error::StepContext;
use crate::phone::logic;
use crate::phone::outcome::{ChangeOutcome, PersonChange, StepTime, Stopwatch};
use crate::phone::{Phone, PhoneError};

/// How a change request is confirmed.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// Sign `string_to_sign` with the bound device.
    DeviceSigning,
    /// A TAN sent by SMS to the person's verified number.
    Sms,
    /// A static TAN (the Solaris sandbox accepts `212212`).
    Static(Otp),
}

impl Confirmation {
    /// The wire word for this method.
    pub fn delivery_method(&self) -> DeliveryMethod {
        match self {
            Confirmation::DeviceSigning => DeliveryMethod::DeviceSigning,
            Confirmation::Sms => DeliveryMethod::MobileNumber,
            Confirmation::Static(_) => DeliveryMethod::Static,
        }
    }
}

impl Phone {
    /// Changes the person (`PATCH /v1/persons/{id}`) and confirms the change request; a
    /// server that applies the change at once (answering the person) needs no confirmation.
    pub async fn change_person(
        &self,
        update: &UpdatePerson,
        via: &Confirmation,
    ) -> Result<PersonChange, PhoneError> {
        let person_id = self.person_id()?;
        if matches!(via, Confirmation::Sms) {
            // Read the inbox before the PATCH (as bind does before creating the device), so a
            // phone whose OTP source cannot deliver leaves no held change behind.
            self.inbox_ref()?
                .marker()
                .await
                .step(self.name(), "change person: read inbox")?;
        }
        let started = std::time::Instant::now();
        let answer = self
            .client
            .update_person(&person_id, update)
            .await
            .step(self.name(), "change person")?;
        match answer {
            PersonUpdate::Held(cr) => Ok(PersonChange::Confirmed(
                self.confirm_requested_change(&cr.id, via, started).await?,
            )),
            PersonUpdate::Applied(person) => Ok(PersonChange::AppliedWithoutConfirmation {
                person,
                timings: crate::phone::Timings {
                    steps: vec![StepTime::new("request change", started.elapsed())],
                },
            }),
        }
    }

    /// Deletes the person's mobile number and confirms the change request.
    pub async fn delete_number(&mut self, via: &Confirmation) -> Result<ChangeOutcome, PhoneError> {
        let person_id = self.person_id()?;
        let started = std::time::Instant::now();
        let cr = self
            .client
            .delete_mobile_number(&person_id)
            .await
            .step(self.name(), "delete mobile number")?;
        self.confirm_requested_change(&cr.id, via, started).await
    }

    /// Confirms a change request this phone just asked for at `requested`, timing the
    /// request as the first step of the outcome.
    async fn confirm_requested_change(
        &self,
        id: &ChangeRequestId,
        via: &Confirmation,
        requested: std::time::Instant,
    ) -> Result<ChangeOutcome, PhoneError> {
        let request_time = requested.elapsed();
        let mut outcome = self.confirm_change(id, via).await?;
        outcome
            .timings
            .steps
            .insert(0, StepTime::new("request change", request_time));
        Ok(outcome)
    }

    /// Authorizes change request `id` by `via` and confirms it.
    pub async fn confirm_change(
        &self,
        id: &ChangeRequestId,
        via: &Confirmation,
    ) -> Result<ChangeOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let method = via.delivery_method();
        let mut authorize = AuthorizeChangeRequest {
            delivery_method: method,
            person_id: None,
            device_id: None,
            device_data: None,
        };
        let confirm = match via {
            Confirmation::DeviceSigning => {
                let device_id = self.bound_device()?;
                authorize.device_id = Some(device_id.clone());
                let cr = self
                    .client
                    .authorize_change_request(id, &authorize)
                    .await
                    .step(self.name(), "change request: authorize")?;
                clock.lap("authorize");
                let to_sign = cr.string_to_sign.ok_or(PhoneError::Unexpected {
                    step: "change request: authorize",
                    got: "no string_to_sign".to_owned(),
                    expected: "a string_to_sign for device signing",
                })?;
                logic::check_string_to_sign(id.as_str(), &to_sign).map_err(|p| self.refuse(p))?;
                let purpose = logic::change_request_key(&self.key_purposes()).ok_or(
                    PhoneError::NotBound {
                        name: self.name().to_string(),
                    },
                )?;
                let reason = format!("change request {id}");
                let signature = self.sign(
                    purpose,
                    logic::challenge_message(&to_sign),
                    &reason,
                    "change request: sign",
                )?;
                clock.lap("sign");
                ConfirmChangeRequest {
                    person_id: None,
                    tan: None,
                    device_id: Some(device_id),
                    signature: Some(signature),
                    device_data: None,
                }
            }
            Confirmation::Sms => {
                let person_id = self.person_id()?;
                authorize.person_id = Some(person_id.clone());
                let inbox = self.inbox_ref()?;
                let mark = inbox
                    .marker_for(crate::phone::SmsKind::ChangeRequest)
                    .await
                    .step(self.name(), "change request: read inbox")?;
                self.client
                    .authorize_change_request(id, &authorize)
                    .await
                    .step(self.name(), "change request: authorize")?;
                clock.lap("authorize");
                let tan = inbox
                    .wait_for_otp(mark, self.otp_timeout)
                    .await
                    .step(self.name(), "change request: wait for SMS")?;
                clock.lap("wait for SMS");
                ConfirmChangeRequest {
                    person_id: Some(person_id),
                    tan: Some(tan),
                    device_id: None,
                    signature: None,
                    device_data: None,
                }
            }
            Confirmation::Static(tan) => {
                let person_id = self.person_id()?;
                authorize.person_id = Some(person_id.clone());
                self.client
                    .authorize_change_request(id, &authorize)
                    .await
                    .step(self.name(), "change request: authorize")?;
                clock.lap("authorize");
                ConfirmChangeRequest {
                    person_id: Some(person_id),
                    tan: Some(tan.clone()),
                    device_id: None,
                    signature: None,
                    device_data: None,
                }
            }
        };
        let done: ChangeRequest = self
            .client
            .confirm_change_request(id, &confirm)
            .await
            .step(self.name(), "change request: confirm")?;
        clock.lap("confirm");
        if done.status != ChangeRequestStatus::Completed {
            return Err(PhoneError::Unexpected {
                step: "change request: confirm",
                got: done.status.to_string(),
                expected: "COMPLETED",
            });
        }
        Ok(ChangeOutcome {
            change_request_id: done.id,
            status: done.status,
            delivery_method: method,
            response_code: done.response_code,
            timings: clock.finish(),
        })
    }
}
