//! `create`, `list` and `show`: a phone's life in its home directory.

use super::{CliError, Ctx, emit, ms, otp_source};
use crate::api::{KeyId, PersonId, PhoneNumber};
use crate::phone::{Home, Phone, PhoneError, PhoneName, ProfileError, SavedPhone, person_named};

/// `vphone phone list`
pub(super) fn list(home: &Home, json: bool) -> Result<(), CliError> {
    let names = home.list().map_err(PhoneError::from)?;
    let list: Vec<&str> = names.iter().map(PhoneName::as_str).collect();
    emit(json, &list, || {
        if list.is_empty() {
            format!("no phones in {}", home.root().display())
        } else {
            list.join("\n")
        }
    });
    Ok(())
}

/// `vphone phone create`
pub(super) async fn create(
    ctx: &Ctx<'_>,
    name: PhoneName,
    number: PhoneNumber,
    first_name: &str,
    last_name: &str,
    person_id: Option<PersonId>,
) -> Result<(), CliError> {
    let mut phone = if ctx.home.exists(&name) {
        // A phone whose setup stopped half-way (server down, SMS late) is finished by
        // running the same command again, instead of being stuck as "already exists".
        let saved = SavedPhone::load(&ctx.home, name.clone(), ctx.passphrase.clone())?;
        let p = saved.profile();
        if p.is_registered() || (person_id.is_some() && p.person_id.is_some()) {
            return Err(PhoneError::from(ProfileError::Exists {
                name: name.to_string(),
                path: ctx.home.path_of(&name),
            })
            .into());
        }
        // Until the bank knows the person, the phone may move to another server.
        let saved_api = p.person_id.as_ref().and(p.api_base.clone());
        let target = ctx.target(saved_api.as_deref());
        let client = ctx.options.connect.client(&target)?;
        let source = otp_source(&ctx.options.otp, &client, Some(&number)).await;
        let mut phone = saved.into_phone(client, source);
        phone.set_api_base();
        phone
    } else {
        let target = ctx.target(None);
        let client = ctx.options.connect.client(&target)?;
        let source = otp_source(&ctx.options.otp, &client, Some(&number)).await;
        Phone::create(
            &ctx.home,
            name.clone(),
            client,
            source,
            ctx.passphrase.clone(),
        )?
    }
    .with_presence(ctx.presence.clone())
    .with_otp_timeout(ctx.options.otp_timeout);
    match person_id {
        Some(person) => {
            phone.join_person(person, number)?;
            ctx.emit(phone.profile(), || {
                format!(
                    "phone {name}: joined person {} with number {}",
                    phone
                        .profile()
                        .person_id
                        .as_ref()
                        .map_or("", PersonId::as_str),
                    phone
                        .profile()
                        .number
                        .as_ref()
                        .map_or("", PhoneNumber::as_str)
                )
            });
        }
        None => {
            let number_shown = number.clone();
            let out = phone
                .register(person_named(first_name, last_name), number)
                .await
                .map_err(|source| CliError::Unfinished {
                    name: name.clone(),
                    source,
                })?;
            ctx.emit(&out, || {
                format!(
                    "phone {name}: person {} {}, number {} verified ({})",
                    out.person.id,
                    if out.person_created {
                        "created"
                    } else {
                        "created by an earlier run, read back"
                    },
                    number_shown,
                    ms(out.timings.total())
                )
            });
        }
    }
    Ok(())
}

/// `vphone phone show`; `--offline` reads only the file: no credentials, no network.
pub(super) async fn show(ctx: &Ctx<'_>, name: &PhoneName, offline: bool) -> Result<(), CliError> {
    let saved;
    let phone;
    let (p, vault, device) = if offline {
        saved = SavedPhone::load(&ctx.home, name.clone(), ctx.passphrase.clone())?;
        (saved.profile(), saved.vault(), None)
    } else {
        phone = ctx.open(name).await?;
        let device = if phone.profile().bound {
            Some(phone.device().await?)
        } else {
            None
        };
        (phone.profile(), phone.vault(), device)
    };
    // Keys as every command names them: purpose, the bank's key id once known, fingerprint.
    let keys: Vec<_> = vault
        .keys()
        .map(|k| k.label(p.key_id(k.purpose()).map(KeyId::as_str)))
        .collect();
    let value = serde_json::json!({"profile": p, "keys": keys, "device": device});
    ctx.emit(&value, || {
        let mut lines = vec![
            format!("phone     {}", p.name),
            format!(
                "person    {}",
                p.person_id.as_ref().map_or("-", PersonId::as_str)
            ),
            format!(
                "number    {}{}",
                p.number.as_ref().map_or("-", PhoneNumber::as_str),
                if p.number.is_some() && !p.number_verified && p.person_id.is_none() {
                    " (codes arrive here; verified, if at all, by someone else's backend)"
                        .to_owned()
                } else if p.number.is_some() && !p.number_verified {
                    format!(
                        " (not verified: run `vphone phone create {}` again)",
                        p.name
                    )
                } else {
                    String::new()
                }
            ),
            format!(
                "device    {}{}",
                p.device_id.as_ref().map_or("-", |d| d.as_str()),
                if p.bound { " (bound)" } else { "" }
            ),
            format!("api       {}", p.api_base.as_deref().unwrap_or("-")),
        ];
        for k in &keys {
            lines.push(format!(
                "key       {k}{}",
                if p.pending_key == Some(k.purpose) {
                    format!(" (pending: run `vphone phone keys {}` to settle)", p.name)
                } else {
                    String::new()
                }
            ));
        }
        lines.join("\n")
    });
    Ok(())
}
