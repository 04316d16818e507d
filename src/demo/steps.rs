//! The demo's sixteen steps, each naming the earlier steps it needs. The notes after the
//! calls say what the answers meant; statuses come only from the transcript.

use super::CountingApprove;
use super::walk::Walk;
use crate::api::{CreateDeviceChallenge, DeviceId, KeyPurpose, Otp, PhoneNumber, UpdatePerson};
use crate::client::ApiClient;
use crate::phone::{Confirmation, OtpSource, Phone, PhoneName, person_named};
use std::sync::Arc;
use std::time::Duration;

/// Steps planned.
pub(super) const STEPS: usize = 16;

const TOKEN: &str = "get token";
const PERSON: &str = "create person";
const NUMBER: &str = "add mobile number";
const VERIFY: &str = "verify number via SMS";
const BIND: &str = "bind unrestricted key";
const RESTRICTED: &str = "add restricted key";
const CHALLENGE_U: &str = "device challenge, unrestricted";
const DELETE: &str = "delete device";

fn short(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    if head.len() < id.len() {
        format!("{head}…")
    } else {
        head
    }
}

/// Walks every step; each runs unless a step it needs did not pass.
pub(super) async fn walk_all(
    walk: &mut Walk,
    client: ApiClient,
    source: OtpSource,
    number: PhoneNumber,
    otp_timeout: Duration,
) {
    let presence = Arc::new(CountingApprove::default());
    let Ok(name) = PhoneName::parse("demo") else {
        return;
    };
    let from = source.describe();
    let mut phone = Phone::new(name, client.clone(), source)
        .with_presence(presence.clone())
        .with_otp_timeout(otp_timeout);
    let c = client.clone();
    walk.step(TOKEN, &[], true, async move {
        let note = match c.authenticate().await? {
            Some(life) => format!("bearer token, lives {} s", life.as_secs()),
            None => "bearer token, lifetime not stated by the server".to_owned(),
        };
        Ok(((), note))
    })
    .await;
    let person = walk
        .step(PERSON, &[TOKEN], true, async {
            let p = phone.create_person(&person_named("Vera", "Phone")).await?;
            let line = format!("person {}", short(p.id.as_str()));
            Ok((p.id, line))
        })
        .await;
    walk.step(NUMBER, &[PERSON], false, async {
        phone.add_number(number.clone()).await?;
        Ok(((), format!("number {number}")))
    })
    .await;
    walk.step(VERIFY, &[NUMBER], false, async {
        let v = phone.verify_number().await?;
        let waited = v.timings.get("wait for SMS").unwrap_or_default();
        let line = format!(
            "code from {from} after {:.1} ms, number {number} verified",
            waited.as_secs_f64() * 1e3,
        );
        Ok(((), line))
    })
    .await;
    let device: Option<DeviceId> = walk
        .step(BIND, &[VERIFY], false, async {
            let b = phone.bind().await?;
            let line = format!(
                "OTP from {from} signed; device {} bound",
                short(b.device_id.as_str())
            );
            Ok((b.device_id, line))
        })
        .await;
    let restricted = walk
        .step(RESTRICTED, &[BIND], false, async {
            let a = phone.add_key(Some(KeyPurpose::Restricted)).await?;
            let line = format!(
                "new key signed by the {} key; key {}",
                a.signed_with,
                short(a.key_id.as_str())
            );
            Ok(((), line))
        })
        .await
        .is_some();
    walk.step("list devices", &[BIND], false, async {
        let d = phone.devices(false).await?;
        let Some(device) = &device else {
            return Err("no bound device to look for".to_owned().into());
        };
        if !d.iter().any(|d| &d.id == device) {
            return Err(format!("the bound device {device} is not listed").into());
        }
        Ok(((), format!("{} bound device(s), ours among them", d.len())))
    })
    .await;
    walk.step("list keys", &[BIND], false, async {
        let k = phone.keys().await?;
        let expected = if restricted { 2 } else { 1 };
        if k.keys.len() != expected {
            return Err(format!(
                "expected {expected} key(s), the bank lists {}",
                k.keys.len()
            )
            .into());
        }
        Ok(((), format!("{} key(s) listed", k.keys.len())))
    })
    .await;
    walk.step(CHALLENGE_U, &[BIND], false, async {
        let s = phone.approve(Some(KeyPurpose::Unrestricted)).await?;
        let line = format!(
            "challenge {} signed with the {} key",
            short(s.challenge_id.as_str()),
            s.key_purpose
        );
        Ok(((), line))
    })
    .await;
    walk.step(
        "device challenge, restricted",
        &[RESTRICTED],
        false,
        async {
            let before = presence.count();
            let s = phone.approve(Some(KeyPurpose::Restricted)).await?;
            if presence.count() != before + 1 {
                return Err("the biometric prompt was not shown".to_owned().into());
            }
            let line = format!(
                "challenge {}: biometric prompt approved, signed with the {} key",
                short(s.challenge_id.as_str()),
                s.key_purpose
            );
            Ok(((), line))
        },
    )
    .await;
    walk.step("SMS challenge", &[VERIFY], false, async {
        let s = phone.sms_challenge().await?;
        let line = format!(
            "challenge {} answered with the code from {from}",
            short(s.challenge_id.as_str())
        );
        Ok(((), line))
    })
    .await;
    change_steps(walk, &phone, &client, person).await;
    let deleted = walk
        .step(DELETE, &[BIND], false, async {
            let d = phone.delete_device().await?;
            Ok((
                (),
                format!("device {} deleted", short(d.device_id.as_str())),
            ))
        })
        .await
        .is_some();
    let c = client.clone();
    walk.step(
        "deleted device is refused",
        &[DELETE, CHALLENGE_U],
        false,
        async move {
            let Some(device) = device.filter(|_| deleted) else {
                return Err("no deleted device to try".to_owned().into());
            };
            let req = CreateDeviceChallenge {
                device_id: device,
                key_purpose: None,
                device_data: None,
            };
            match c.create_device_challenge(&req).await {
                Ok(ch) => {
                    Err(format!("the bank issued challenge {} for a deleted device", ch.id).into())
                }
                Err(e) if e.remote().is_some_and(|r| (400..500).contains(&r.status)) => {
                    let code = e.code().filter(|c| !c.is_empty()).unwrap_or("no code");
                    Ok(((), format!("refused ({code}), as it should be")))
                }
                Err(e) => Err(e.into()),
            }
        },
    )
    .await;
}

/// The three name changes, each checked by reading the person back.
async fn change_steps(
    walk: &mut Walk,
    phone: &Phone,
    client: &ApiClient,
    person: Option<crate::api::PersonId>,
) {
    let change = |first: Option<&str>, last: Option<&str>| UpdatePerson {
        first_name: first.map(str::to_owned),
        last_name: last.map(str::to_owned),
        email: None,
    };
    let static_tan = Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits"));
    // What the person's name should be; updated only by changes that passed.
    let mut name = ("Vera".to_owned(), "Phone".to_owned());
    for (step, needs, update, via) in [
        (
            "change name, device signing",
            BIND,
            change(Some("Veronika"), None),
            Confirmation::DeviceSigning,
        ),
        (
            "change name, SMS TAN",
            VERIFY,
            change(None, Some("Telefon")),
            Confirmation::Sms,
        ),
        (
            "change name, static TAN",
            PERSON,
            change(Some("Vera"), None),
            Confirmation::Static(static_tan.clone()),
        ),
    ] {
        let mut expected = name.clone();
        if let Some(first) = &update.first_name {
            expected.0 = first.clone();
        }
        if let Some(last) = &update.last_name {
            expected.1 = last.clone();
        }
        let person = &person;
        let want = expected.clone();
        let done = walk
            .step(step, &[needs], false, async move {
                let Some(person) = person else {
                    return Err("no person to change".to_owned().into());
                };
                let o = phone.change_person(&update, &via).await?;
                let p = client.get_person(person).await?;
                if (p.first_name.as_str(), p.last_name.as_str()) != (&want.0[..], &want.1[..]) {
                    return Err(format!(
                        "the change request completed but the person is {} {}",
                        p.first_name, p.last_name
                    )
                    .into());
                }
                let line = match o {
                    crate::phone::PersonChange::Confirmed(o) => format!(
                        "confirmed by {}, {}; the person is now {} {}",
                        o.delivery_method, o.status, p.first_name, p.last_name
                    ),
                    crate::phone::PersonChange::AppliedWithoutConfirmation { .. } => format!(
                        "applied without confirmation; the person is now {} {}",
                        p.first_name, p.last_name
                    ),
                };
                Ok(((), line))
            })
            .await;
        if done.is_some() {
            name = expected;
        }
    }
}
