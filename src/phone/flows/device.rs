//! The device at the bank: binding, adding a key, listing, deleting.

use crate::api::{
    AddKeyRequest, AnswerSignatureChallenge, BindingChallengeType, CreateDeviceRequest, Device,
    DeviceId, DeviceKeys, DeviceListQuery, DeviceSignature, KeyId, KeyPurpose, KeyType,
    PublicKeyHex,
};
use crate::client::ClientError;
use crate::phone::error::StepContext;
use crate::phone::logic;
use crate::phone::outcome::{AddKeyOutcome, BindOutcome, DeleteOutcome, Stopwatch};
use crate::phone::{Phone, PhoneError};

impl Phone {
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
        let mark = inbox
            .marker_for(crate::phone::SmsKind::Binding)
            .await
            .step(self.name(), "bind: read inbox")?;
        let created = self
            .client
            .create_device(&req)
            .await
            .step(self.name(), "bind: create device")?;
        clock.lap("create device");
        self.profile.device_id = Some(created.id.clone());
        self.profile.bound = false;
        self.profile.set_key_id(purpose, None);
        self.save()?;
        let otp = self
            .inbox_ref()?
            .wait_for_otp(mark, self.otp_timeout)
            .await
            .step(self.name(), "bind: wait for SMS")?;
        clock.lap("wait for SMS");
        let signature = self.sign(
            purpose,
            logic::binding_message(&otp),
            "binding this phone",
            "bind: sign OTP",
        )?;
        clock.lap("sign OTP");
        let answer = AnswerSignatureChallenge {
            signature,
            device_data: None,
        };
        let mut answer_lost = false;
        if let Err(source) = self
            .client
            .answer_signature_challenge(&created.challenge.id, &answer)
            .await
        {
            // A timeout may have lost only the bank's answer: the device lists once
            // verified, so ask before telling the user that binding failed. The client
            // resends a PUT once when a connection closes unanswered; if the first one was
            // applied, the resend meets `challenge_already_used`: the same question.
            let maybe_applied = source.is_unavailable()
                || source.code() == Some(crate::api::ErrorCode::ChallengeAlreadyUsed.as_str());
            let verified = maybe_applied && self.client.get_device(&created.id).await.is_ok();
            if !verified {
                return Err(PhoneError::Bank {
                    phone: self.name().to_string(),
                    step: "bind: answer binding challenge",
                    source,
                });
            }
            answer_lost = true;
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
            key: self.key_label(purpose),
            answer_lost,
            timings: clock.finish(),
        })
    }

    /// Adds a key of `purpose` (default: the one the phone lacks), vouched for by a
    /// signature of an existing key over the new key's hex.
    ///
    /// Durable like [`Phone::bind`]: the new key is saved, marked pending, before the bank
    /// hears of it. A success records it, a refusal forgets it, and a lost answer keeps it
    /// pending ([`PhoneError::KeyPending`]) until a later `add_key` or [`Phone::keys`] asks
    /// the bank.
    pub async fn add_key(
        &mut self,
        purpose: Option<KeyPurpose>,
    ) -> Result<AddKeyOutcome, PhoneError> {
        let mut clock = Stopwatch::start();
        let device = self.bound_device()?;
        // The keys before the request: if its answer is lost, the bank's id of the new key
        // is one not among them (a key of the same purpose may already be listed, e.g. an
        // orphan of an earlier attempt). Also settles a key left pending by an earlier run.
        let before = self
            .client
            .list_keys(&device)
            .await
            .step(self.name(), "add key: list keys")?;
        self.settle_pending_key(&before)?;
        clock.lap("list keys");
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
            "adding a key to this phone",
            "add key: sign",
        ) {
            Ok(s) => s,
            Err(e) => {
                self.vault.remove(purpose);
                return Err(e);
            }
        };
        // Saved before the bank hears of it, so a crash cannot lose a key the bank knows.
        self.profile.pending_key = Some(purpose);
        self.profile.pending_known_key_ids = before.keys.into_iter().map(|k| k.key_id).collect();
        if let Err(e) = self.save() {
            self.vault.remove(purpose);
            self.clear_pending_key();
            return Err(e);
        }
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
            // The bank may have acted and only its answer was lost: ask it.
            Err(source) if outcome_unknown(&source) => {
                match self.new_listed_key(&device, purpose).await {
                    Some(id) => id,
                    None => {
                        // Not listed (yet), or the list did not answer either: neither is a
                        // refusal, so the key stays pending for a later command to settle.
                        return Err(PhoneError::KeyPending {
                            name: self.name().to_string(),
                            purpose,
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                // The bank refused the key: forget it, so the vault matches the bank.
                self.vault.remove(purpose);
                self.clear_pending_key();
                self.save()?;
                return Err(PhoneError::Bank {
                    phone: self.name().to_string(),
                    step: "add key",
                    source,
                });
            }
        };
        clock.lap("add key");
        self.clear_pending_key();
        self.profile.set_key_id(purpose, Some(added.clone()));
        self.save()?;
        Ok(AddKeyOutcome {
            key_id: added,
            key_purpose: purpose,
            signed_with: signer,
            key: self.key_label(purpose),
            timings: clock.finish(),
        })
    }

    /// The bank's id of the pending key of `purpose`, if the device lists it now (and
    /// answers): a key of that purpose whose id was not there before the request.
    async fn new_listed_key(&self, device: &DeviceId, purpose: KeyPurpose) -> Option<KeyId> {
        let keys = self.client.list_keys(device).await.ok()?;
        logic::new_key_id(&keys.keys, purpose, &self.profile.pending_known_key_ids)
    }

    fn clear_pending_key(&mut self) {
        self.profile.pending_key = None;
        self.profile.pending_known_key_ids.clear();
    }

    /// Settles a pending key against the bank's list: kept and recorded if the bank lists
    /// it (as a key id new since the request), forgotten otherwise. Saves when something
    /// changed.
    fn settle_pending_key(&mut self, listed: &DeviceKeys) -> Result<(), PhoneError> {
        let Some(purpose) = self.profile.pending_key else {
            return Ok(());
        };
        match logic::new_key_id(&listed.keys, purpose, &self.profile.pending_known_key_ids) {
            Some(id) => self.profile.set_key_id(purpose, Some(id)),
            None => {
                self.vault.remove(purpose);
                self.profile.set_key_id(purpose, None);
            }
        }
        self.clear_pending_key();
        self.save()
    }

    /// The person's bound devices (`GET /v1/mfa/devices?filter[person_id]=...`).
    pub async fn devices(&self, include_deleted: bool) -> Result<Vec<Device>, PhoneError> {
        let query = DeviceListQuery {
            person_id: Some(self.person_id()?),
            include_deleted: include_deleted.then_some(true),
            page_size: None,
            page_number: None,
        };
        self.client
            .list_devices(&query)
            .await
            .step(self.name(), "list devices")
    }

    /// This phone's device as the bank sees it.
    pub async fn device(&self) -> Result<Device, PhoneError> {
        let device = self.bound_device()?;
        self.client
            .get_device(&device)
            .await
            .step(self.name(), "show device")
    }

    /// The device's keys as the bank sees them; records the bank's key ids and settles a
    /// pending key (see [`Phone::add_key`]).
    pub async fn keys(&mut self) -> Result<DeviceKeys, PhoneError> {
        let device = self.bound_device()?;
        let keys = self
            .client
            .list_keys(&device)
            .await
            .step(self.name(), "list keys")?;
        self.settle_pending_key(&keys)?;
        let before = self.profile.clone();
        // Only for keys the phone holds: a listed key of a purpose it lacks is not its own.
        for k in &keys.keys {
            if self.vault.key(k.key_purpose).is_some() {
                self.profile
                    .set_key_id(k.key_purpose, Some(k.key_id.clone()));
            }
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
        let already_deleted = match self.client.delete_device(&device).await {
            Ok(()) => false,
            // The bank no longer knows the device (deleted elsewhere): forget it here too, but
            // only once the bank's own list shows it deleted, so that a 404 from wrong
            // credentials never makes the phone drop keys that are still bound.
            Err(e) if e.status() == Some(404) && self.bank_lists_as_deleted(&device).await => true,
            Err(e) => return Err(e).step(self.name(), "delete device"),
        };
        clock.lap("delete device");
        self.profile.device_id = None;
        self.profile.bound = false;
        self.clear_pending_key();
        for purpose in [KeyPurpose::Unrestricted, KeyPurpose::Restricted] {
            self.vault.remove(purpose);
            self.profile.set_key_id(purpose, None);
        }
        self.save()?;
        Ok(DeleteOutcome {
            device_id: device,
            already_deleted,
            timings: clock.finish(),
        })
    }

    /// Whether the person's device list, deleted ones included, shows `device` as deleted.
    async fn bank_lists_as_deleted(&self, device: &DeviceId) -> bool {
        let Ok(person_id) = self.person_id() else {
            return false;
        };
        let query = DeviceListQuery {
            person_id: Some(person_id),
            include_deleted: Some(true),
            page_size: Some(100),
            page_number: None,
        };
        match self.client.list_devices(&query).await {
            Ok(devices) => devices
                .iter()
                .any(|d| &d.id == device && d.deleted_at.is_some()),
            Err(_) => false,
        }
    }
}

/// Whether a failed call may still have been carried out: no answer in time, a broken
/// connection, or a success status whose body did not parse.
fn outcome_unknown(e: &ClientError) -> bool {
    e.is_unavailable() || matches!(e, ClientError::Decode { .. })
}
