//! `bind`, `add-key`, `devices`, `keys` and `delete-device`: the phone's device at the bank.

use super::{CliError, Ctx, ms};
use crate::api::KeyPurpose;
use crate::phone::PhoneName;
use vphone_keystore::KeyLabel;

/// `vphone phone bind`
pub(super) async fn bind(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let mut phone = ctx.open(name).await?;
    let out = phone.bind().await?;
    ctx.emit(&out, || {
        let lost = if out.answer_lost {
            "; the bank's answer to the binding was lost, so the phone read the device back: it is bound"
        } else {
            ""
        };
        format!(
            "phone {name}: bound as device {} with {} ({}){lost}",
            out.device_id,
            bound_key(out.key.as_ref(), out.key_purpose),
            ms(out.timings.total())
        )
    });
    Ok(())
}

/// The key a phone bound with, for `bind`'s line: its label with the bank's key id when the
/// phone has it. The bank's answers to a binding name no key id (only the device's key list
/// does), so right after binding it usually has not; the line says where to read it.
fn bound_key(label: Option<&KeyLabel>, purpose: KeyPurpose) -> String {
    match label {
        Some(l) if l.key_id.is_none() => format!(
            "{} key {} (the bank's key id is listed by `vphone phone keys`)",
            l.purpose, l.fingerprint
        ),
        _ => key_or_purpose(label, purpose),
    }
}

/// The key's label, or just its purpose if the phone no longer holds it.
pub(super) fn key_or_purpose(label: Option<&KeyLabel>, purpose: KeyPurpose) -> String {
    label.map_or_else(|| format!("{purpose} key"), ToString::to_string)
}

/// `vphone phone add-key`
pub(super) async fn add_key(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    purpose: Option<KeyPurpose>,
) -> Result<(), CliError> {
    let mut phone = ctx.open(name).await?;
    let out = phone.add_key(purpose).await?;
    ctx.emit(&out, || {
        format!(
            "phone {name}: added {} (vouched for by the {} key, {})",
            key_or_purpose(out.key.as_ref(), out.key_purpose),
            out.signed_with,
            ms(out.timings.total())
        )
    });
    Ok(())
}

/// `vphone phone devices`
pub(super) async fn devices(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    include_deleted: bool,
) -> Result<(), CliError> {
    let phone = ctx.open(name).await?;
    let devices = phone.devices(include_deleted).await?;
    ctx.emit(&devices, || {
        if devices.is_empty() {
            return "no bound devices".to_owned();
        }
        devices
            .iter()
            .map(|d| {
                format!(
                    "{}  {}  created {}{}",
                    d.id,
                    d.name,
                    d.created_at
                        .map_or_else(|| "(not given)".to_owned(), |t| t.to_string()),
                    d.deleted_at
                        .map(|t| format!("  deleted {t}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// `vphone phone keys`: the bank's list, each key also named by the fingerprint of the
/// phone's key it is (when the phone holds it), as every other command names keys.
pub(super) async fn keys(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let mut phone = ctx.open(name).await?;
    let keys = phone.keys().await?;
    let ours = |k: &crate::api::KeySummary| {
        phone
            .key_label(k.key_purpose)
            .filter(|l| l.key_id.as_deref() == Some(k.key_id.as_str()))
    };
    let mut value = serde_json::to_value(&keys).unwrap_or_default();
    if let Some(listed) = value.get_mut("keys").and_then(|v| v.as_array_mut()) {
        for (json, k) in listed.iter_mut().zip(&keys.keys) {
            if let (Some(obj), Some(label)) = (json.as_object_mut(), ours(k)) {
                obj.insert("fingerprint".to_owned(), label.fingerprint.into());
            }
        }
    }
    ctx.emit(&value, || {
        keys.keys
            .iter()
            .map(|k| {
                let label = ours(k).map_or_else(
                    || {
                        format!(
                            "{} key not held by this phone (bank id {})",
                            k.key_purpose, k.key_id
                        )
                    },
                    |l| l.to_string(),
                );
                let used = match k.used_at {
                    Some(Some(t)) => t.to_string(),
                    Some(None) => "never".to_owned(),
                    None => "(not given)".to_owned(),
                };
                format!("{label}  used {used}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// `vphone phone delete-device`
pub(super) async fn delete(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let mut phone = ctx.open(name).await?;
    let out = phone.delete_device().await?;
    ctx.emit(&out, || {
        if out.already_deleted {
            format!(
                "phone {name}: device {} was already deleted at the bank; forgot it and its keys here ({})",
                out.device_id,
                ms(out.timings.total())
            )
        } else {
            format!(
                "phone {name}: device {} deleted ({})",
                out.device_id,
                ms(out.timings.total())
            )
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(key_id: Option<&str>) -> KeyLabel {
        KeyLabel {
            purpose: KeyPurpose::Unrestricted,
            key_id: key_id.map(str::to_owned),
            fingerprint: "a6a9d8bc3e6ddcf1".to_owned(),
        }
    }

    #[test]
    fn bind_names_the_banks_key_id_when_the_phone_has_it_and_where_to_read_it_otherwise() {
        let unrestricted = KeyPurpose::Unrestricted;
        assert_eq!(
            bound_key(Some(&label(None)), unrestricted),
            "unrestricted key a6a9d8bc3e6ddcf1 (the bank's key id is listed by `vphone phone keys`)"
        );
        assert_eq!(
            bound_key(Some(&label(Some("c6dd"))), unrestricted),
            "unrestricted key a6a9d8bc3e6ddcf1 (bank id c6dd)"
        );
        assert_eq!(bound_key(None, unrestricted), "unrestricted key");
    }
}
