//! One typed method per API call (see API.md). Ids from a server are opaque text, so each
//! id in a path is percent-encoded as one segment ([`seg`]).

use super::{ApiClient, ClientError, transport_error};
use crate::api::{
    AddKeyRequest, AddKeyResponse, AnswerDeviceChallenge, AnswerSignatureChallenge,
    AnswerSmsChallenge, AuthorizeChangeRequest, ChallengeId, ChangeRequest, ChangeRequestId,
    ConfirmChangeRequest, ConfirmMobileNumber, CreateDeviceChallenge, CreateDeviceRequest,
    CreateDeviceResponse, CreatePerson, CreateSmsChallenge, Device, DeviceChallenge, DeviceId,
    DeviceKeys, DeviceListQuery, KeyDetail, KeyId, KeysAnswer, MobileNumber, MobileNumberRequest,
    Person, PersonId, PersonUpdate, RemoteError, SignatureChallenge, SmsChallenge, SmsMessage,
    SmsQuery, UpdatePerson,
};
use reqwest::Method;
use std::time::Duration;

const NO_BODY: Option<&()> = None;

/// `id` as one path segment: every byte but the unreserved ones (RFC 3986: letters, digits,
/// `-._~`) percent-encoded, so an opaque id can hold `/`, `?`, spaces or non-ASCII text.
pub(crate) fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ApiClient {
    /// `POST /v1/persons`.
    pub async fn create_person(&self, req: &CreatePerson) -> Result<Person, ClientError> {
        self.call(Method::POST, "/v1/persons", Some(req)).await
    }

    /// `GET /v1/persons/{id}`.
    pub async fn get_person(&self, id: &PersonId) -> Result<Person, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/persons/{}", seg(id.as_str())),
            NO_BODY,
        )
        .await
    }

    /// `PATCH /v1/persons/{id}`: answers a change request to authorize and confirm, or
    /// (some servers) the person, changed at once.
    pub async fn update_person(
        &self,
        id: &PersonId,
        req: &UpdatePerson,
    ) -> Result<PersonUpdate, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/v1/persons/{}", seg(id.as_str())),
            Some(req),
        )
        .await
    }

    /// `POST /v1/persons/{id}/mobile_number`.
    pub async fn create_mobile_number(
        &self,
        person: &PersonId,
        req: &MobileNumberRequest,
    ) -> Result<MobileNumber, ClientError> {
        let path = format!("/v1/persons/{}/mobile_number", seg(person.as_str()));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `GET /v1/persons/{id}/mobile_number`: the person's number, e.g. to continue after
    /// the answer to adding it was lost.
    pub async fn get_mobile_number(&self, person: &PersonId) -> Result<MobileNumber, ClientError> {
        let path = format!("/v1/persons/{}/mobile_number", seg(person.as_str()));
        self.call(Method::GET, &path, NO_BODY).await
    }

    /// `POST /v1/persons/{id}/mobile_number/authorize`: the bank sends an SMS OTP.
    pub async fn authorize_mobile_number(
        &self,
        person: &PersonId,
        req: &MobileNumberRequest,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/persons/{}/mobile_number/authorize",
            seg(person.as_str())
        );
        self.call_unit(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/persons/{id}/mobile_number/confirm` with the OTP.
    pub async fn confirm_mobile_number(
        &self,
        person: &PersonId,
        req: &ConfirmMobileNumber,
    ) -> Result<MobileNumber, ClientError> {
        let path = format!("/v1/persons/{}/mobile_number/confirm", seg(person.as_str()));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `DELETE /v1/persons/{id}/mobile_number`: answers a change request.
    pub async fn delete_mobile_number(
        &self,
        person: &PersonId,
    ) -> Result<ChangeRequest, ClientError> {
        let path = format!("/v1/persons/{}/mobile_number", seg(person.as_str()));
        self.call(Method::DELETE, &path, NO_BODY).await
    }

    /// `POST /v1/mfa/devices`: starts binding; the bank sends an SMS OTP.
    pub async fn create_device(
        &self,
        req: &CreateDeviceRequest,
    ) -> Result<CreateDeviceResponse, ClientError> {
        self.call(Method::POST, "/v1/mfa/devices", Some(req)).await
    }

    /// `GET /v1/mfa/devices` with filters and paging.
    pub async fn list_devices(&self, query: &DeviceListQuery) -> Result<Vec<Device>, ClientError> {
        let mut path = String::from("/v1/mfa/devices");
        let mut sep = '?';
        let mut push = |k: &str, v: &str| {
            path.push(sep);
            path.push_str(k);
            path.push('=');
            path.push_str(v);
            sep = '&';
        };
        // Brackets are percent-encoded; ids are encoded, booleans and numbers are URL-safe.
        if let Some(p) = &query.person_id {
            push("filter%5Bperson_id%5D", &seg(p.as_str()));
        }
        if let Some(d) = query.include_deleted {
            push(
                "filter%5Binclude_deleted%5D",
                if d { "true" } else { "false" },
            );
        }
        if let Some(s) = query.page_size {
            push("page%5Bsize%5D", &s.to_string());
        }
        if let Some(n) = query.page_number {
            push("page%5Bnumber%5D", &n.to_string());
        }
        self.call(Method::GET, &path, NO_BODY).await
    }

    /// `GET /v1/mfa/devices/{id}`.
    pub async fn get_device(&self, id: &DeviceId) -> Result<Device, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/mfa/devices/{}", seg(id.as_str())),
            NO_BODY,
        )
        .await
    }

    /// `DELETE /v1/mfa/devices/{id}`.
    pub async fn delete_device(&self, id: &DeviceId) -> Result<(), ClientError> {
        self.call_unit(
            Method::DELETE,
            &format!("/v1/mfa/devices/{}", seg(id.as_str())),
            NO_BODY,
        )
        .await
    }

    /// `GET /v1/mfa/challenges/signatures/{id}`: a binding challenge.
    pub async fn get_signature_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<SignatureChallenge, ClientError> {
        let path = format!("/v1/mfa/challenges/signatures/{}", seg(id.as_str()));
        self.call(Method::GET, &path, NO_BODY).await
    }

    /// `PUT /v1/mfa/challenges/signatures/{id}`: completes binding.
    pub async fn answer_signature_challenge(
        &self,
        id: &ChallengeId,
        req: &AnswerSignatureChallenge,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/mfa/challenges/signatures/{}", seg(id.as_str()));
        self.call_unit(Method::PUT, &path, Some(req)).await
    }

    /// `POST /v1/mfa/devices/{id}/keys`.
    pub async fn add_key(
        &self,
        device: &DeviceId,
        req: &AddKeyRequest,
    ) -> Result<AddKeyResponse, ClientError> {
        let path = format!("/v1/mfa/devices/{}/keys", seg(device.as_str()));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `GET /v1/mfa/devices/{id}/keys`, in any shape of [`KeysAnswer`].
    pub async fn list_keys(&self, device: &DeviceId) -> Result<DeviceKeys, ClientError> {
        let path = format!("/v1/mfa/devices/{}/keys", seg(device.as_str()));
        let answer: KeysAnswer = self.call(Method::GET, &path, NO_BODY).await?;
        Ok(answer.into_device_keys(device))
    }

    /// `GET /v1/mfa/devices/{id}/keys/{key_id}`.
    pub async fn get_key(&self, device: &DeviceId, key: &KeyId) -> Result<KeyDetail, ClientError> {
        let path = format!(
            "/v1/mfa/devices/{}/keys/{}",
            seg(device.as_str()),
            seg(key.as_str())
        );
        self.call(Method::GET, &path, NO_BODY).await
    }

    /// `POST /v1/mfa/challenges/devices`.
    pub async fn create_device_challenge(
        &self,
        req: &CreateDeviceChallenge,
    ) -> Result<DeviceChallenge, ClientError> {
        self.call(Method::POST, "/v1/mfa/challenges/devices", Some(req))
            .await
    }

    /// `GET /v1/mfa/challenges/devices/{id}`.
    pub async fn get_device_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<DeviceChallenge, ClientError> {
        let path = format!("/v1/mfa/challenges/devices/{}", seg(id.as_str()));
        self.call(Method::GET, &path, NO_BODY).await
    }

    /// `PUT /v1/mfa/challenges/devices/{id}`.
    pub async fn answer_device_challenge(
        &self,
        id: &ChallengeId,
        req: &AnswerDeviceChallenge,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/mfa/challenges/devices/{}", seg(id.as_str()));
        self.call_unit(Method::PUT, &path, Some(req)).await
    }

    /// `POST /v1/mfa/challenges/sms`: the bank sends an SMS OTP.
    pub async fn create_sms_challenge(
        &self,
        req: &CreateSmsChallenge,
    ) -> Result<SmsChallenge, ClientError> {
        self.call(Method::POST, "/v1/mfa/challenges/sms", Some(req))
            .await
    }

    /// `GET /v1/mfa/challenges/sms/{id}`.
    pub async fn get_sms_challenge(&self, id: &ChallengeId) -> Result<SmsChallenge, ClientError> {
        let path = format!("/v1/mfa/challenges/sms/{}", seg(id.as_str()));
        self.call(Method::GET, &path, NO_BODY).await
    }

    /// `PUT /v1/mfa/challenges/sms/{id}` with the code.
    pub async fn answer_sms_challenge(
        &self,
        id: &ChallengeId,
        req: &AnswerSmsChallenge,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/mfa/challenges/sms/{}", seg(id.as_str()));
        self.call_unit(Method::PUT, &path, Some(req)).await
    }

    /// `POST /v1/change_requests/{id}/authorize`.
    pub async fn authorize_change_request(
        &self,
        id: &ChangeRequestId,
        req: &AuthorizeChangeRequest,
    ) -> Result<ChangeRequest, ClientError> {
        let path = format!("/v1/change_requests/{}/authorize", seg(id.as_str()));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `POST /v1/change_requests/{id}/confirm`.
    pub async fn confirm_change_request(
        &self,
        id: &ChangeRequestId,
        req: &ConfirmChangeRequest,
    ) -> Result<ChangeRequest, ClientError> {
        let path = format!("/v1/change_requests/{}/confirm", seg(id.as_str()));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `GET /sandbox/sms`: the vphone sandbox's SMS outbox (not part of the bank's API;
    /// unauthenticated). Long-polls up to `query.wait_ms` when no message is newer than
    /// `query.after`.
    pub async fn sandbox_sms(&self, query: &SmsQuery) -> Result<Vec<SmsMessage>, ClientError> {
        let mut url = url::Url::parse(&self.url("/sandbox/sms"))
            .map_err(|e| ClientError::Config(format!("bad SMS outbox URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("number", query.number.as_str())
            .append_pair("after", &query.after.to_string())
            .append_pair("wait_ms", &query.wait_ms.to_string());
        let timeout = self.inner.timeout + Duration::from_millis(query.wait_ms);
        let shown = self.url("/sandbox/sms");
        let resp = self
            .inner
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_error(e, &shown, timeout))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(e, &shown, timeout))?;
        if !status.is_success() {
            return Err(ClientError::Api {
                request: "GET /sandbox/sms".to_owned(),
                remote: Box::new(RemoteError::from_body(status.as_u16(), &bytes)),
                retries: 0,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            request: "GET /sandbox/sms".to_owned(),
            status: status.as_u16(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::seg;

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(seg("abc-DEF_1.2~"), "abc-DEF_1.2~");
        assert_eq!(seg("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(seg("ü"), "%C3%BC");
    }
}
