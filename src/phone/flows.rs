//! The flows of API.md as methods of [`Phone`]. Each takes its inbox marker before the call
//! that sends an SMS, checks challenges before signing, and saves the profile when the
//! bank's state changed.

use super::error::StepContext;
use super::logic;
use super::outcome::{
    AddKeyOutcome, BindOutcome, ChangeOutcome, DeleteOutcome, RegisterOutcome, SignOutcome,
    SmsOutcome, Stopwatch, VerifyOutcome,
};
use super::{Inbox, Phone, PhoneError};
use crate::api::{
    AddKeyRequest, AnswerDeviceChallenge, AnswerSignatureChallenge, AnswerSmsChallenge,
    AuthorizeChangeRequest, BindingChallengeType, ChallengeId, ChangeRequest, ChangeRequestId,
    ChangeRequestStatus, ConfirmChangeRequest, ConfirmMobileNumber, CreateDeviceChallenge,
    CreateDeviceRequest, CreatePerson, CreateSmsChallenge, DeliveryMethod, Device, DeviceChallenge,
    DeviceId, DeviceKeys, DeviceListQuery, DeviceSignature, KeyId, KeyPurpose, KeyType,
    MobileNumber, MobileNumberRequest, Otp, Person, PersonId, PhoneNumber, PublicKeyHex,
    SignatureHex, UpdatePerson, now_utc,
};
use std::collections::BTreeMap;

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

/// A person with just a first and last name.
pub fn person_named(first_name: &str, last_name: &str) -> CreatePerson {
    CreatePerson {
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        email: None,
        salutation: None,
        birth_date: None,
        extra: BTreeMap::new(),
    }
}

impl Phone {
    fn person_id(&self) -> Result<PersonId, PhoneError> {
        self.profile
            .person_id
            .clone()
            .ok_or_else(|| PhoneError::NoPerson {
                name: self.name().to_string(),
            })
    }

    fn number_and_inbox(&self) -> Result<(PhoneNumber, &Inbox), PhoneError> {
        match (&self.profile.number, &self.inbox) {
            (Some(n), Some(i)) => Ok((n.clone(), i)),
            _ => Err(PhoneError::NoNumber {
                name: self.name().to_string(),
            }),
        }
    }

    fn inbox_ref(&self) -> Result<&Inbox, PhoneError> {
        self.number_and_inbox().map(|(_, i)| i)
    }

    fn bound_device(&self) -> Result<DeviceId, PhoneError> {
        match (&self.profile.device_id, self.profile.bound) {
            (Some(d), true) => Ok(d.clone()),
            _ => Err(PhoneError::NotBound {
                name: self.name().to_string(),
            }),
        }
    }

    fn sign(
        &self,
        purpose: KeyPurpose,
        message: &[u8],
        reason: &str,
        step: &'static str,
    ) -> Result<SignatureHex, PhoneError> {
        let hex = self
            .vault
            .sign(purpose, message, &*self.presence, reason)
            .map_err(|e| match PhoneError::from(e) {
                PhoneError::Presence { source, .. } => PhoneError::Presence { purpose, source },
                other => other,
            })?;
        SignatureHex::parse(&hex).map_err(|source| PhoneError::Value { step, source })
    }

    /// Makes this phone belong to an existing person with an already verified number.
    pub fn adopt(&mut self, person_id: PersonId, number: PhoneNumber) -> Result<(), PhoneError> {
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
            .step("create person")?;
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
        let created = self
            .client
            .create_mobile_number(&person, &req)
            .await
            .step("add mobile number")?;
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
        let mark = inbox.marker().await.step("verify number: read inbox")?;
        let req = MobileNumberRequest {
            number: number.clone(),
        };
        self.client
            .authorize_mobile_number(&person, &req)
            .await
            .step("verify number: request SMS")?;
        clock.lap("request SMS");
        let token = inbox
            .wait_for_otp(mark, self.otp_timeout)
            .await
            .step("verify number: wait for SMS")?;
        clock.lap("wait for SMS");
        let mobile_number = self
            .client
            .confirm_mobile_number(&person, &ConfirmMobileNumber { number, token })
            .await
            .step("verify number: confirm OTP")?;
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
                    .step("register: read person")?;
                clock.lap("read person");
                p
            }
        };
        if self.profile.number.is_none() {
            self.add_number(number).await?;
            clock.lap("add number");
        }
        let verified = self.verify_number().await?;
        let mut timings = clock.finish();
        timings.steps.extend(verified.timings.steps);
        Ok(RegisterOutcome {
            person,
            mobile_number: verified.mobile_number,
            timings,
        })
    }

    /// Binds this phone: generates an unrestricted key if it has none, creates the device,
    /// reads the SMS OTP, signs it and answers the binding challenge.
    pub async fn bind(&mut self) -> Result<BindOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        if let (Some(device), true) = (&self.profile.device_id, self.profile.bound) {
            return Err(PhoneError::AlreadyBound {
                name: self.name().to_string(),
                device: device.to_string(),
            });
        }
        let person_id = self.person_id()?;
        self.inbox_ref()?;
        let purpose = KeyPurpose::Unrestricted;
        if self.vault.key(purpose).is_none() {
            self.vault.generate_key(purpose)?;
            // Saved before the bank hears of it, so a crash cannot lose a key the bank knows.
            self.save()?;
        }
        let key = self.vault.key(purpose).ok_or(PhoneError::Keystore(
            vphone_keystore::KeystoreError::NoKey(purpose),
        ))?;
        let public =
            PublicKeyHex::parse(&key.public_key_hex()).map_err(|source| PhoneError::Value {
                step: "bind: public key",
                source,
            })?;
        let fingerprint = key.fingerprint();
        let req = CreateDeviceRequest {
            person_id,
            key_type: KeyType::EcdsaP256,
            key: public,
            key_purpose: Some(purpose),
            name: self.name().to_string(),
            challenge_type: Some(BindingChallengeType::Sms),
            language: None,
            sms_challenge: None,
            device_data: None,
        };
        let inbox = self.inbox_ref()?;
        let mark = inbox.marker().await.step("bind: read inbox")?;
        let created = self
            .client
            .create_device(&req)
            .await
            .step("bind: create device")?;
        clock.lap("create device");
        self.profile.device_id = Some(created.id.clone());
        self.profile.bound = false;
        self.profile.set_key_id(purpose, None);
        self.save()?;
        let otp = self
            .inbox_ref()?
            .wait_for_otp(mark, self.otp_timeout)
            .await
            .step("bind: wait for SMS")?;
        clock.lap("wait for SMS");
        let signature = self.sign(
            purpose,
            logic::binding_message(&otp),
            "bind this phone",
            "bind: sign OTP",
        )?;
        clock.lap("sign OTP");
        let answer = AnswerSignatureChallenge {
            signature,
            device_data: None,
        };
        if let Err(source) = self
            .client
            .answer_signature_challenge(&created.challenge.id, &answer)
            .await
        {
            // A timeout may have lost only the bank's answer: the device lists once
            // verified, so ask before telling the user that binding failed.
            let verified =
                source.is_unavailable() && self.client.get_device(&created.id).await.is_ok();
            if !verified {
                return Err(PhoneError::Bank {
                    step: "bind: answer binding challenge",
                    source,
                });
            }
        }
        clock.lap("answer challenge");
        self.profile.bound = true;
        self.save()?;
        Ok(BindOutcome {
            device_id: created.id,
            challenge_id: created.challenge.id,
            key_id: None,
            key_purpose: purpose,
            fingerprint,
            timings: clock.finish(),
        })
    }

    /// Adds a key of `purpose` (default: the one the phone lacks), vouched for by a
    /// signature of an existing key over the new key's hex.
    pub async fn add_key(
        &mut self,
        purpose: Option<KeyPurpose>,
    ) -> Result<AddKeyOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let device = self.bound_device()?;
        let held = self.key_purposes();
        let purpose = match purpose.or_else(|| logic::missing_purpose(&held)) {
            Some(p) if !held.contains(&p) => p,
            other => {
                return Err(PhoneError::KeyExists {
                    name: self.name().to_string(),
                    purpose: other.unwrap_or(KeyPurpose::Restricted),
                });
            }
        };
        let signer =
            *held
                .first()
                .ok_or(PhoneError::Keystore(vphone_keystore::KeystoreError::NoKey(
                    KeyPurpose::Unrestricted,
                )))?;
        let new_key = self.vault.generate_key(purpose)?;
        let public = match PublicKeyHex::parse(&new_key.public_key_hex()) {
            Ok(p) => p,
            Err(source) => {
                self.vault.remove(purpose);
                return Err(PhoneError::Value {
                    step: "add key: public key",
                    source,
                });
            }
        };
        let signature = match self.sign(
            signer,
            logic::add_key_message(&public),
            "add a key to this phone",
            "add key: sign",
        ) {
            Ok(s) => s,
            Err(e) => {
                self.vault.remove(purpose);
                return Err(e);
            }
        };
        let req = AddKeyRequest {
            key: public,
            key_type: KeyType::EcdsaP256,
            key_purpose: purpose,
            device_signature: DeviceSignature {
                signature_key_purpose: signer,
                signature,
            },
        };
        let added = match self.client.add_key(&device, &req).await {
            Ok(a) => a.id,
            // A timeout may have lost only the bank's answer: if the device now lists a key
            // of this purpose, it is the one just sent (a purpose is unique per device).
            Err(source)
                if source.is_unavailable()
                    && let Some(id) = self.listed_key(&device, purpose).await =>
            {
                id
            }
            Err(source) => {
                // The bank does not know the key: forget it, so the vault matches the bank.
                self.vault.remove(purpose);
                return Err(PhoneError::Bank {
                    step: "add key",
                    source,
                });
            }
        };
        clock.lap("add key");
        self.profile.set_key_id(purpose, Some(added.clone()));
        self.save()?;
        Ok(AddKeyOutcome {
            key_id: added,
            key_purpose: purpose,
            signed_with: signer,
            timings: clock.finish(),
        })
    }

    /// The bank's id of the device's key of `purpose`, if it lists one (and answers).
    async fn listed_key(&self, device: &DeviceId, purpose: KeyPurpose) -> Option<KeyId> {
        let keys = self.client.list_keys(device).await.ok()?;
        keys.keys
            .into_iter()
            .find(|k| k.key_purpose == purpose)
            .map(|k| k.key_id)
    }

    /// The person's bound devices (`GET /v1/mfa/devices?filter[person_id]=...`).
    pub async fn devices(&self, include_deleted: bool) -> Result<Vec<Device>, PhoneError> {
        let query = DeviceListQuery {
            person_id: Some(self.person_id()?),
            include_deleted: include_deleted.then_some(true),
            page_size: None,
            page_number: None,
        };
        self.client.list_devices(&query).await.step("list devices")
    }

    /// This phone's device as the bank sees it.
    pub async fn device(&self) -> Result<Device, PhoneError> {
        let device = self.bound_device()?;
        self.client.get_device(&device).await.step("show device")
    }

    /// The device's keys as the bank sees them; records the bank's key ids.
    pub async fn keys(&mut self) -> Result<DeviceKeys, PhoneError> {
        let device = self.bound_device()?;
        let keys = self.client.list_keys(&device).await.step("list keys")?;
        let before = self.profile.clone();
        for k in &keys.keys {
            self.profile
                .set_key_id(k.key_purpose, Some(k.key_id.clone()));
        }
        if self.profile != before {
            self.save()?;
        }
        Ok(keys)
    }

    /// Deletes this phone's device at the bank and forgets its keys.
    pub async fn delete_device(&mut self) -> Result<DeleteOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let device = self
            .profile
            .device_id
            .clone()
            .ok_or_else(|| PhoneError::NotBound {
                name: self.name().to_string(),
            })?;
        self.client
            .delete_device(&device)
            .await
            .step("delete device")?;
        clock.lap("delete device");
        self.profile.device_id = None;
        self.profile.bound = false;
        for purpose in [KeyPurpose::Unrestricted, KeyPurpose::Restricted] {
            self.vault.remove(purpose);
            self.profile.set_key_id(purpose, None);
        }
        self.save()?;
        Ok(DeleteOutcome {
            device_id: device,
            timings: clock.finish(),
        })
    }

    /// Answers the device-signing challenge `id`: fetches it, checks it, picks its key,
    /// asks the user for a restricted key, signs `string_to_sign` and submits.
    pub async fn sign_challenge(&self, id: &ChallengeId) -> Result<SignOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        self.bound_device()?;
        let challenge = self
            .client
            .get_device_challenge(id)
            .await
            .step("sign: fetch challenge")?;
        clock.lap("fetch challenge");
        self.answer(challenge, clock).await
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
            .step("approve: create challenge")?;
        clock.lap("create challenge");
        logic::check_requested_purpose(&challenge, purpose)?;
        self.answer(challenge, clock).await
    }

    async fn answer(
        &self,
        challenge: DeviceChallenge,
        mut clock: Stopwatch,
    ) -> Result<SignOutcome, PhoneError> {
        let purpose = logic::plan_device_answer(&challenge, &self.key_purposes(), now_utc())?;
        let reason = format!("approve device challenge {}", challenge.id);
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
            .step("answer device challenge")?;
        clock.lap("answer challenge");
        Ok(SignOutcome {
            challenge_id: challenge.id,
            key_purpose: purpose,
            user_confirmed: logic::needs_presence(purpose),
            timings: clock.finish(),
        })
    }

    /// Asks the bank for an SMS challenge and answers it with the code from the inbox.
    pub async fn sms_challenge(&self) -> Result<SmsOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let person_id = self.person_id()?;
        let inbox = self.inbox_ref()?;
        let mark = inbox.marker().await.step("SMS challenge: read inbox")?;
        let challenge = self
            .client
            .create_sms_challenge(&CreateSmsChallenge {
                person_id,
                language: None,
            })
            .await
            .step("SMS challenge: create")?;
        clock.lap("create challenge");
        let code = inbox
            .wait_for_otp(mark, self.otp_timeout)
            .await
            .step("SMS challenge: wait for SMS")?;
        clock.lap("wait for SMS");
        self.client
            .answer_sms_challenge(&challenge.id, &AnswerSmsChallenge { code })
            .await
            .step("SMS challenge: answer")?;
        clock.lap("answer challenge");
        Ok(SmsOutcome {
            challenge_id: challenge.id,
            timings: clock.finish(),
        })
    }

    /// Changes the person (`PATCH /v1/persons/{id}`) and confirms the change request.
    pub async fn change_person(
        &self,
        update: &UpdatePerson,
        via: &Confirmation,
    ) -> Result<ChangeOutcome, PhoneError> {
        let person_id = self.person_id()?;
        let started = std::time::Instant::now();
        let cr = self
            .client
            .update_person(&person_id, update)
            .await
            .step("change person")?;
        let mut outcome = self.confirm_change(&cr.id, via).await?;
        outcome
            .timings
            .steps
            .insert(0, super::StepTime::new("request change", started.elapsed()));
        Ok(outcome)
    }

    /// Deletes the person's mobile number and confirms the change request.
    pub async fn delete_number(&mut self, via: &Confirmation) -> Result<ChangeOutcome, PhoneError> {
        let person_id = self.person_id()?;
        let started = std::time::Instant::now();
        let cr = self
            .client
            .delete_mobile_number(&person_id)
            .await
            .step("delete mobile number")?;
        let mut outcome = self.confirm_change(&cr.id, via).await?;
        outcome
            .timings
            .steps
            .insert(0, super::StepTime::new("request change", started.elapsed()));
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
                    .step("change request: authorize")?;
                clock.lap("authorize");
                let to_sign = cr.string_to_sign.ok_or(PhoneError::Unexpected {
                    step: "change request: authorize",
                    got: "no string_to_sign".to_owned(),
                    expected: "a string_to_sign for device signing",
                })?;
                logic::check_string_to_sign(id.as_str(), &to_sign)?;
                let purpose = logic::change_request_key(&self.key_purposes()).ok_or(
                    PhoneError::NotBound {
                        name: self.name().to_string(),
                    },
                )?;
                let reason = format!("confirm change request {id}");
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
                let mark = inbox.marker().await.step("change request: read inbox")?;
                self.client
                    .authorize_change_request(id, &authorize)
                    .await
                    .step("change request: authorize")?;
                clock.lap("authorize");
                let tan = inbox
                    .wait_for_otp(mark, self.otp_timeout)
                    .await
                    .step("change request: wait for SMS")?;
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
                    .step("change request: authorize")?;
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
            .step("change request: confirm")?;
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
