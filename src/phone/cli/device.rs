//! `bind`, `add-key`, `devices`, `keys` and `delete-device`: the phone's device at the bank.

use super::{CliError, Ctx, ms};
use crate::api::KeyPurpose;
use crate::phone::PhoneName;

/// `vphone phone bind`
pub(super) async fn bind(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let mut phone = ctx.open(name)?;
    let out = phone.bind().await?;
    ctx.emit(&out, || {
        format!(
            "phone {name}: bound as device {} with key {} ({})",
            out.device_id,
            out.fingerprint,
            ms(out.timings.total())
        )
    });
    Ok(())
}

/// `vphone phone add-key`
pub(super) async fn add_key(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    purpose: Option<KeyPurpose>,
) -> Result<(), CliError> {
    let mut phone = ctx.open(name)?;
    let out = phone.add_key(purpose).await?;
    ctx.emit(&out, || {
        format!(
            "phone {name}: added {} key {} (vouched for by the {} key, {})",
            out.key_purpose,
            out.key_id,
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
    let phone = ctx.open(name)?;
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

/// `vphone phone keys`
pub(super) async fn keys(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let mut phone = ctx.open(name)?;
    let keys = phone.keys().await?;
    ctx.emit(&keys, || {
        keys.keys
            .iter()
            .map(|k| {
                format!(
                    "{}  {}  used {}",
                    k.key_id,
                    k.key_purpose,
                    k.used_at.map_or("never".to_owned(), |t| t.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// `vphone phone delete-device`
pub(super) async fn delete(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let mut phone = ctx.open(name)?;
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
