//! `sign`, `approve`, `sms-challenge`, `change` and `confirm`: answering the bank.

use super::{CliError, Ctx, ViaArg, ms, options::confirmation};
use crate::api::{ChallengeId, ChangeRequestId, KeyPurpose, UpdatePerson};
use crate::phone::{ChangeOutcome, PersonChange, PhoneName};

/// `vphone phone sign`; `--purpose` tells a challenge that names no key which one to use.
pub(super) async fn sign(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    challenge: &ChallengeId,
    purpose: Option<KeyPurpose>,
) -> Result<(), CliError> {
    let phone = ctx.open(name).await?;
    let out = phone.sign_challenge_for(challenge, purpose).await?;
    ctx.emit(&out, || {
        format!(
            "phone {name}: challenge {} signed with the {} ({})",
            out.challenge_id,
            super::device::key_or_purpose(out.key.as_ref(), out.key_purpose),
            ms(out.timings.total())
        )
    });
    Ok(())
}

/// `vphone phone approve`
pub(super) async fn approve(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    purpose: Option<KeyPurpose>,
) -> Result<(), CliError> {
    let phone = ctx.open(name).await?;
    let out = phone.approve(purpose).await?;
    ctx.emit(&out, || {
        format!(
            "phone {name}: challenge {} approved with the {} ({})",
            out.challenge_id,
            super::device::key_or_purpose(out.key.as_ref(), out.key_purpose),
            ms(out.timings.total())
        )
    });
    Ok(())
}

/// `vphone phone sms-challenge`
pub(super) async fn sms_challenge(ctx: &Ctx<'_>, name: &PhoneName) -> Result<(), CliError> {
    let phone = ctx.open(name).await?;
    let out = phone.sms_challenge().await?;
    ctx.emit(&out, || {
        format!(
            "phone {name}: SMS challenge {} answered ({})",
            out.challenge_id,
            ms(out.timings.total())
        )
    });
    Ok(())
}

/// `vphone phone change`
pub(super) async fn change(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    update: &UpdatePerson,
    via: ViaArg,
) -> Result<(), CliError> {
    if update.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give --first-name, --last-name or --email".to_owned(),
        ));
    }
    let phone = ctx.open(name).await?;
    match phone.change_person(update, &confirmation(via)).await? {
        PersonChange::Confirmed(out) => print_change(ctx, name, &out),
        applied @ PersonChange::AppliedWithoutConfirmation { .. } => {
            ctx.emit(&applied, || {
                format!(
                    "phone {name}: the server applied the change without confirmation ({})",
                    ms(applied_time(&applied))
                )
            });
        }
    }
    Ok(())
}

/// `vphone phone confirm`
pub(super) async fn confirm(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    change_request: &ChangeRequestId,
    via: ViaArg,
) -> Result<(), CliError> {
    let phone = ctx.open(name).await?;
    let out = phone
        .confirm_change(change_request, &confirmation(via))
        .await?;
    print_change(ctx, name, &out);
    Ok(())
}

fn applied_time(change: &PersonChange) -> std::time::Duration {
    match change {
        PersonChange::Confirmed(out) => out.timings.total(),
        PersonChange::AppliedWithoutConfirmation { timings, .. } => timings.total(),
    }
}

fn print_change(ctx: &Ctx<'_>, name: &PhoneName, out: &ChangeOutcome) {
    ctx.emit(out, || {
        format!(
            "phone {name}: change request {} {} via {} ({})",
            out.change_request_id,
            out.status,
            out.delivery_method,
            ms(out.timings.total())
        )
    });
}
