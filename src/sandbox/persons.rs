//! Persons and their mobile numbers, the prerequisites of device binding.

use super::auth::Caller;
use super::change_requests::{HeldChange, hold_change};
use super::error::{ApiError, ApiJson, ApiPath, path_id};
use super::state::{Inner, MobileEntry, PersonEntry, SandboxState};
use crate::api::{
    ConfirmMobileNumber, CreatePerson, MobileNumber, MobileNumberId, MobileNumberRequest, Person,
    PersonId, UpdatePerson,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

const MAX_NAME: usize = 200;

fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > MAX_NAME {
        return Err(ApiError::validation_error(format!(
            "`{field}` must be 1-{MAX_NAME} characters and not blank"
        ))
        .field(field));
    }
    Ok(())
}

const MAX_EMAIL: usize = 254;

/// A minimal e-mail check: 1-254 characters, no whitespace, exactly one `@` with text on
/// both sides. Deliverability is not the sandbox's business.
fn check_email(value: &str) -> Result<(), ApiError> {
    let well_formed = value.chars().count() <= MAX_EMAIL
        && !value.chars().any(char::is_whitespace)
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !well_formed {
        return Err(ApiError::validation_error(format!(
            "`email` must be an address like name@example.com: at most {MAX_EMAIL} characters, no spaces, one @ with text on both sides"
        ))
        .field("email"));
    }
    Ok(())
}

/// `POST /v1/persons`.
pub async fn create(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreatePerson>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("first_name", &body.first_name)?;
    check_name("last_name", &body.last_name)?;
    if let Some(email) = &body.email {
        check_email(email)?;
    }
    for reserved in ["id", "created_at"] {
        if body.extra.contains_key(reserved) {
            return Err(ApiError::validation_error(format!(
                "`{reserved}` is set by the bank; leave it out"
            ))
            .field(reserved));
        }
    }
    let id = PersonId::generate();
    let person = Person {
        id: id.clone(),
        first_name: body.first_name,
        last_name: body.last_name,
        email: body.email,
        salutation: body.salutation,
        birth_date: body.birth_date,
        created_at: Some(state.now()),
        extra: body.extra,
    };
    Inner::insert(
        &state.0.persons,
        caller.0,
        id,
        PersonEntry {
            person: person.clone(),
            mobile: None,
            devices: Vec::new(),
            bound: 0,
            sms_sent: Default::default(),
        },
    );
    Ok((StatusCode::CREATED, Json(person)))
}

/// `GET /v1/persons/{person_id}`.
pub async fn get(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Person>, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    let entry = state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    let person = entry.data.lock().person.clone();
    Ok(Json(person))
}

/// `PATCH /v1/persons/{person_id}`: held as a change request until confirmed.
pub async fn update(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdatePerson>,
) -> Result<impl IntoResponse, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    if body.is_empty() {
        return Err(ApiError::validation_error(
            "the update changes nothing; send at least one of first_name, last_name, email",
        ));
    }
    if let Some(v) = &body.first_name {
        check_name("first_name", v)?;
    }
    if let Some(v) = &body.last_name {
        check_name("last_name", v)?;
    }
    if let Some(v) = &body.email {
        check_email(v)?;
    }
    let request = hold_change(&state.0, caller.0, id, HeldChange::UpdatePerson(body));
    Ok((StatusCode::ACCEPTED, Json(request)))
}

fn mobile_view(m: &MobileEntry) -> MobileNumber {
    MobileNumber {
        id: m.id.clone(),
        number: Some(m.number.clone()),
        verified: m.verified,
    }
}

fn no_number() -> ApiError {
    ApiError::not_found(
        "the person has no mobile number; add one with POST /v1/persons/{person_id}/mobile_number",
    )
}

/// `POST /v1/persons/{person_id}/mobile_number`.
pub async fn add_mobile(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MobileNumberRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    let entry = state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    let mut person = entry.data.lock();
    if person.mobile.is_some() {
        return Err(ApiError::mobile_number_exists(
            "the person already has a mobile number; delete it first (a change request)",
        ));
    }
    let mobile = MobileEntry {
        id: MobileNumberId::generate(),
        number: body.number,
        verified: false,
        otp: None,
    };
    let view = mobile_view(&mobile);
    person.mobile = Some(mobile);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/persons/{person_id}/mobile_number`.
pub async fn get_mobile(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MobileNumber>, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    let entry = state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    let person = entry.data.lock();
    person
        .mobile
        .as_ref()
        .map(|m| Json(mobile_view(m)))
        .ok_or_else(no_number)
}

/// `POST /v1/persons/{person_id}/mobile_number/authorize`: sends an OTP.
pub async fn authorize_mobile(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MobileNumberRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    let entry = state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    let mut person = entry.data.lock();
    let mobile = person.mobile.as_mut().ok_or_else(no_number)?;
    if mobile.number != body.number {
        return Err(ApiError::mobile_number_mismatch(
            "this is not the person's mobile number; send the number that was added",
        )
        .field("number"));
    }
    if mobile.verified {
        return Err(ApiError::mobile_number_already_verified(
            "the mobile number is already verified; nothing to authorize",
        ));
    }
    state.0.admit_sms(&mut person)?;
    let Some(mobile) = person.mobile.as_mut() else {
        return Err(no_number());
    };
    let otp = state.0.send_otp(&mobile.number, None, None);
    mobile.otp = Some((otp, state.0.new_attempts()));
    let view = mobile_view(mobile);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `POST /v1/persons/{person_id}/mobile_number/confirm`.
pub async fn confirm_mobile(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ConfirmMobileNumber>,
) -> Result<impl IntoResponse, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    let entry = state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    let now = state.now();
    let max = state.0.config.max_failed_attempts;
    let mut person = entry.data.lock();
    let mobile = person.mobile.as_mut().ok_or_else(no_number)?;
    if mobile.number != body.number {
        return Err(ApiError::mobile_number_mismatch(
            "this is not the person's mobile number; send the number that was added",
        )
        .field("number"));
    }
    if mobile.verified {
        return Err(ApiError::mobile_number_already_verified(
            "the mobile number is already verified",
        ));
    }
    let Some((otp, attempts)) = mobile.otp.as_mut() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            crate::api::ErrorCode::AuthorizationRequired,
            "Authorization Required",
            "no OTP was sent yet; call POST .../mobile_number/authorize first",
        ));
    };
    attempts.check_open(now, "mobile number OTP")?;
    if !otp.matches(&body.token) {
        let left = attempts.record_failure(max, now);
        return Err(ApiError::invalid_otp(format!("the OTP is wrong; {left}")).field("token"));
    }
    attempts.complete(now);
    mobile.verified = true;
    let view = mobile_view(mobile);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `DELETE /v1/persons/{person_id}/mobile_number`: held as a change request.
pub async fn delete_mobile(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: PersonId = path_id(&id, "person")?;
    let entry = state.0.owned(&state.0.persons, caller.0, &id, "person")?;
    let Some(mobile_id) = entry.data.lock().mobile.as_ref().map(|m| m.id.clone()) else {
        return Err(no_number());
    };
    let request = hold_change(
        &state.0,
        caller.0,
        id,
        HeldChange::DeleteMobileNumber(mobile_id),
    );
    Ok((StatusCode::ACCEPTED, Json(request)))
}

/// Carries out a held change on a person; returns the held call's status and body.
pub(crate) fn apply(entry: &mut PersonEntry, change: &HeldChange) -> (u16, serde_json::Value) {
    match change {
        HeldChange::UpdatePerson(update) => {
            let person = &mut entry.person;
            if let Some(v) = &update.first_name {
                person.first_name.clone_from(v);
            }
            if let Some(v) = &update.last_name {
                person.last_name.clone_from(v);
            }
            if let Some(v) = &update.email {
                person.email = Some(v.clone());
            }
            (200, serde_json::to_value(&*person).unwrap_or_default())
        }
        HeldChange::DeleteMobileNumber(id) => {
            match entry.mobile.take_if(|m| m.id == *id) {
                Some(m) => (
                    200,
                    serde_json::to_value(mobile_view(&m)).unwrap_or_default(),
                ),
                None => (
                    404,
                    serde_json::to_value(
                        ApiError::not_found(
                            "the mobile number this change request was made for is gone; the person's current number is kept",
                        )
                        .body(),
                    )
                    .unwrap_or_default(),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_needs_one_at_with_text_around_it_and_no_spaces() {
        for good in [
            "a@b",
            "ada.lovelace+x@example.com",
            &format!("{}@b.c", "a".repeat(250)),
        ] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            " ",
            "ada",
            "@example.com",
            "ada@",
            "a@b@c",
            "ada @example.com",
            "ada@example.com ",
            "ada@exa\tmple.com",
            "ada@exa\u{a0}mple.com",
            &format!("{}@b.cd", "a".repeat(250)),
        ] {
            let e = check_email(bad).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.field.as_deref()),
                ("validation_error", Some("email")),
                "{bad:?}"
            );
        }
    }
}
