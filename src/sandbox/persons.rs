//! Persons and their mobile numbers, the prerequisites of device binding.

use super::auth::Caller;
use super::change_requests::hold_change;
use super::core::change_requests::HeldChange;
use super::core::persons::{self as rules, MobileEntry};
use super::error::{ApiError, ApiJson, ApiPath, path_id};
use super::state::{Inner, SandboxState, restore};
use super::store::Write;
use super::text::check_text;
use crate::api::{
    ConfirmMobileNumber, CreatePerson, MobileNumber, MobileNumberRequest, Person, PersonId,
    UpdatePerson,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

/// Cap of names and of every other free-text person field, in characters.
const MAX_NAME: usize = 200;
/// Cap of `salutation`, in characters.
const MAX_SALUTATION: usize = 20;

fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    check_text(field, value, MAX_NAME)
}

/// Person fields of the bank's API besides those vphone models, each stored and returned as
/// sent: free text (at most [`MAX_NAME`] characters), ...
const PERSON_TEXT_FIELDS: &[&str] = &[
    "title",
    "birth_name",
    "birth_city",
    "birth_country",
    "nationality",
    "employment_status",
    "job_title",
    "business_purpose",
    "industry",
    "industry_key",
    "vat_number",
    "website_social_media",
    "business_trading_name",
    "nace_code",
    "language",
    "mobile_number",
    "annual_income_range",
    "fatca_crs_confirmed_at",
    "terms_conditions_signed_at",
    "data_terms_signed_at",
    "own_economic_interest_signed_at",
    "aml_confirmed_on",
];
/// ... booleans, ...
const PERSON_FLAG_FIELDS: &[&str] = &["fatca_relevant", "flagged_by_compliance"];
/// ... whole numbers, ...
const PERSON_NUMBER_FIELDS: &[&str] = &["expected_monthly_revenue_cents"];
/// ... and objects of free-text members.
const PERSON_OBJECT_FIELDS: &[(&str, &[&str])] = &[
    (
        "address",
        &[
            "line_1",
            "line_2",
            "postal_code",
            "city",
            "country",
            "state",
        ],
    ),
    (
        "contact_address",
        &[
            "line_1",
            "line_2",
            "postal_code",
            "city",
            "country",
            "state",
        ],
    ),
    ("tax_information", &["tax_assessment", "marital_status"]),
];

/// Checks the person fields vphone does not model: known ones of the right shape with clean
/// text are kept; any other field is refused, so a typo shows at once instead of vanishing.
fn check_person_extras(
    extra: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), ApiError> {
    use serde_json::Value;
    let wrong = |field: &str, what: &str| {
        Err(ApiError::validation_error(format!("`{field}` must be {what}")).field(field))
    };
    for (field, value) in extra {
        let f = field.as_str();
        if PERSON_TEXT_FIELDS.contains(&f) {
            match value {
                Value::String(v) => check_text(f, v, MAX_NAME)?,
                _ => return wrong(f, "a string"),
            }
        } else if PERSON_FLAG_FIELDS.contains(&f) {
            if !value.is_boolean() {
                return wrong(f, "true or false");
            }
        } else if PERSON_NUMBER_FIELDS.contains(&f) {
            if !value.is_i64() {
                return wrong(f, "a whole number");
            }
        } else if let Some((_, members)) = PERSON_OBJECT_FIELDS.iter().find(|(n, _)| *n == f) {
            let Value::Object(object) = value else {
                return wrong(f, "an object");
            };
            for (member, v) in object {
                let path = format!("{f}.{member}");
                if !members.contains(&member.as_str()) {
                    return Err(ApiError::validation_error(format!(
                        "`{path}` is not a member of `{f}`; known: {}",
                        members.join(", ")
                    ))
                    .field(path));
                }
                match v {
                    Value::String(text) => check_text(&path, text, MAX_NAME)?,
                    _ => return wrong(&path, "a string"),
                }
            }
        } else if f == "id" || f == "created_at" {
            return Err(ApiError::validation_error(format!(
                "`{f}` is set by the bank; leave it out"
            ))
            .field(f));
        } else {
            return Err(ApiError::validation_error(format!(
                "`{f}` is not a person field the sandbox knows; see the README (section Sandbox) for the fields it stores"
            ))
            .field(f));
        }
    }
    Ok(())
}

/// `birth_date` is an ISO date, `YYYY-MM-DD`, that exists in the calendar.
fn check_birth_date(value: &str) -> Result<(), ApiError> {
    let refused = || {
        ApiError::validation_error("`birth_date` must be an ISO date like 1815-12-10")
            .field("birth_date")
    };
    // `[year]` also parses a sign (`+1815-12-10`, `-1815-12-10`), which `YYYY-MM-DD` (the
    // README and the OpenAPI document) does not allow.
    if !value.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(refused());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format)
        .map(|_| ())
        .map_err(|_| refused())
}

const MAX_EMAIL: usize = 254;

/// A minimal e-mail check: 1-254 characters, no whitespace, exactly one `@` with text on
/// both sides. Deliverability is not the sandbox's business.
fn check_email(value: &str) -> Result<(), ApiError> {
    check_text("email", value, MAX_EMAIL)?;
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
    if let Some(salutation) = &body.salutation {
        check_text("salutation", salutation, MAX_SALUTATION)?;
    }
    if let Some(birth_date) = &body.birth_date {
        check_birth_date(birth_date)?;
    }
    check_person_extras(&body.extra)?;
    let entry = rules::create(body, state.now(), &mut state.0.rng());
    let person = entry.person.clone();
    state
        .0
        .commit(&[Write::Person(state.0.partner_name(caller.0), &entry)])?;
    Inner::insert(&state.0.persons, caller.0, person.id.clone(), entry);
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
    let request = hold_change(&state.0, caller.0, id, HeldChange::UpdatePerson(body))?;
    Ok((StatusCode::ACCEPTED, Json(request)))
}

pub(crate) fn mobile_view(m: &MobileEntry) -> MobileNumber {
    MobileNumber {
        id: m.id.clone(),
        number: Some(m.number.clone()),
        verified: m.verified,
    }
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
    let saved = state.0.saved(&*person);
    let view = mobile_view(person.add_number(body.number, &mut state.0.rng())?);
    let committed = state
        .0
        .commit(&[Write::Person(state.0.partner_name(caller.0), &person)]);
    if committed.is_err() {
        restore(&mut *person, saved);
    }
    committed?;
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
    let view = mobile_view(entry.data.lock().mobile()?);
    Ok(Json(view))
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
    let (_, view) = {
        let mut person = entry.data.lock();
        let saved = state.0.saved(&*person);
        let send = person
            .authorize_number(
                &body.number,
                &state.0.config,
                state.now(),
                &mut state.0.rng(),
            )
            .map_err(|r| state.0.refused(r))?;
        let seq = state.0.send_otp(&send, None, None);
        let committed = state.0.commit(&[
            Write::Person(state.0.partner_name(caller.0), &person),
            Write::SmsSeq(seq),
        ]);
        if committed.is_err() {
            // The SMS went out (its OTP is void now), and counts against the rate limit.
            let sent = std::mem::take(&mut person.sms_sent);
            restore(&mut *person, saved);
            person.sms_sent = sent;
        }
        committed?;
        (send, mobile_view(person.mobile()?))
    };
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
    let mut person = entry.data.lock();
    let saved = state.0.saved(&*person);
    // A wrong OTP counts as a failed attempt, which is kept like any change.
    let confirmed = person
        .confirm_number(&body.number, &body.token, &state.0.config, state.now())
        .map(mobile_view);
    let committed = state
        .0
        .commit(&[Write::Person(state.0.partner_name(caller.0), &person)]);
    if committed.is_err() {
        restore(&mut *person, saved);
    }
    committed?;
    let view = confirmed?;
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
    let mobile_id = entry.data.lock().mobile()?.id.clone();
    let request = hold_change(
        &state.0,
        caller.0,
        id,
        HeldChange::DeleteMobileNumber(mobile_id),
    )?;
    Ok((StatusCode::ACCEPTED, Json(request)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birth_date_is_yyyy_mm_dd_of_a_real_day_without_a_sign() {
        for good in ["1815-12-10", "0000-01-01", "2000-02-29", "9999-12-31"] {
            assert!(check_birth_date(good).is_ok(), "{good}");
        }
        for bad in [
            "+1815-12-10",
            "-1815-12-10",
            "815-12-10",
            "12345-01-01",
            "1815-2-10",
            "1815-02-29",
            "1815-12-10T00:00:00Z",
            " 1815-12-10",
            "",
        ] {
            let e = check_birth_date(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("birth_date"), "{bad:?}");
        }
    }

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
