//! `new-key`, `public-key`, `sign-message`, `otp` and `adopt`: the phone's parts for rigs
//! whose backend talks to the bank. Each prints its result alone on stdout, so a shell can
//! pipe it on; `--json` wraps it with the key's label.

use super::{CliError, Ctx, PresenceArg};
use crate::api::{DeviceId, KeyId, KeyPurpose, PersonId, PhoneNumber};
use crate::phone::{Adoption, Marker, PhoneError, PhoneName, SavedPhone};
use std::io::Read as _;
use std::time::Duration;
use vphone_keystore::{KeystoreError, PublicKeyFormat, SignatureFormat};

/// `PURPOSE=ID`, as `adopt --key-id` takes it.
#[derive(Debug, Clone)]
pub struct KeyIdArg {
    /// The key's purpose.
    pub purpose: KeyPurpose,
    /// The bank's id of the key.
    pub key_id: KeyId,
}

impl std::str::FromStr for KeyIdArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (purpose, id) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not PURPOSE=ID (e.g. restricted=<key id>)"))?;
        Ok(KeyIdArg {
            purpose: purpose.parse().map_err(|e| format!("{e}"))?,
            key_id: KeyId::from_user(id).map_err(|e| format!("{e}"))?,
        })
    }
}

/// Where `sign-message` takes its message from.
#[derive(Debug)]
pub(super) enum MessageArg {
    /// `--message TEXT`.
    Text(String),
    /// `--stdin`: every byte of standard input, signed as given (no newline is stripped).
    Stdin,
}

fn load(ctx: &Ctx<'_>, name: &PhoneName) -> Result<SavedPhone, CliError> {
    Ok(SavedPhone::load(
        &ctx.home,
        name.clone(),
        ctx.passphrase.clone(),
    )?)
}

/// The key a command means when `--purpose` is not given: unrestricted if held, else
/// restricted if held, else unrestricted (and the error names it).
fn default_purpose(saved: &SavedPhone, purpose: Option<KeyPurpose>) -> KeyPurpose {
    purpose.unwrap_or_else(|| {
        if saved.vault().key(KeyPurpose::Unrestricted).is_none()
            && saved.vault().key(KeyPurpose::Restricted).is_some()
        {
            KeyPurpose::Restricted
        } else {
            KeyPurpose::Unrestricted
        }
    })
}

/// A missing key gets the command that makes one; other errors pass through.
fn hint_missing_key(name: &PhoneName, e: PhoneError) -> CliError {
    match e {
        PhoneError::Keystore(KeystoreError::NoKey(purpose)) => CliError::Local(format!(
            "phone {name} holds no {purpose} key; make one with `vphone phone new-key {name} --purpose {purpose}`"
        )),
        other => CliError::Phone(other),
    }
}

/// `vphone phone new-key`: creates the phone if it does not exist (recording `--number` and
/// an `--api`/`--target` server), then makes and saves the key; prints its public key.
pub(super) fn new_key(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    purpose: KeyPurpose,
    number: Option<PhoneNumber>,
    format: PublicKeyFormat,
) -> Result<(), CliError> {
    let mut saved = if ctx.home.exists(name) {
        let mut saved = load(ctx, name)?;
        match (&saved.profile().number, number) {
            (Some(old), Some(new)) if old != &new => {
                return Err(CliError::Usage(format!(
                    "phone {name} already has number {old}; leave out --number, or pick another phone name"
                )));
            }
            (None, Some(new)) => saved.set_number(new)?,
            _ => {}
        }
        saved
    } else {
        let connect = &ctx.options.connect;
        let api_base = (connect.api.is_some() || connect.target.is_some())
            .then(|| connect.target().base_url().to_string());
        SavedPhone::create(
            &ctx.home,
            name.clone(),
            ctx.passphrase.clone(),
            number,
            api_base,
        )?
    };
    let label = Some(saved.new_key(purpose)?);
    let public_key = saved.public_key(purpose, format)?;
    let value = key_json(label, format, &public_key);
    ctx.emit(&value, || public_key.trim_end().to_owned());
    Ok(())
}

/// `{"key", "format", "public_key"}`; a JWK is embedded as an object, not a string.
fn key_json(
    label: Option<vphone_keystore::KeyLabel>,
    format: PublicKeyFormat,
    public_key: &str,
) -> serde_json::Value {
    let key = match format {
        PublicKeyFormat::Jwk => serde_json::from_str(public_key)
            .unwrap_or_else(|_| serde_json::Value::String(public_key.to_owned())),
        _ => serde_json::Value::String(public_key.to_owned()),
    };
    serde_json::json!({"key": label, "format": format.as_str(), "public_key": key})
}

/// `vphone phone public-key`
pub(super) fn public_key(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    purpose: Option<KeyPurpose>,
    format: PublicKeyFormat,
) -> Result<(), CliError> {
    let saved = load(ctx, name)?;
    let purpose = default_purpose(&saved, purpose);
    let public_key = saved.public_key(purpose, format)?;
    let label = saved
        .key_labels()
        .into_iter()
        .find(|l| l.purpose == purpose);
    let value = key_json(label, format, &public_key);
    ctx.emit(&value, || public_key.trim_end().to_owned());
    Ok(())
}

/// `vphone phone sign-message`
pub(super) fn sign_message(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    purpose: KeyPurpose,
    message: MessageArg,
    format: SignatureFormat,
) -> Result<(), CliError> {
    let saved = load(ctx, name)?;
    let bytes = match message {
        MessageArg::Text(text) => text.into_bytes(),
        MessageArg::Stdin => {
            if purpose == KeyPurpose::Restricted && ctx.options.presence == PresenceArg::Prompt {
                return Err(CliError::Usage(
                    "--stdin and --presence prompt would both read standard input; pass the message with --message".to_owned(),
                ));
            }
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::Local(format!("cannot read the message from stdin: {e}")))?;
            bytes
        }
    };
    let signature = saved
        .sign_message(purpose, &bytes, format, &*ctx.presence)
        .map_err(|e| hint_missing_key(name, e))?;
    let label = saved
        .key_labels()
        .into_iter()
        .find(|l| l.purpose == purpose);
    let value =
        serde_json::json!({"key": label, "format": format.as_str(), "signature": signature});
    ctx.emit(&value, || signature.clone());
    Ok(())
}

/// `vphone phone otp`
pub(super) async fn otp(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    wait: Option<Duration>,
    since: Option<u64>,
    print_marker: bool,
) -> Result<(), CliError> {
    let phone = ctx.open(name).await?;
    if print_marker {
        let marker = phone.otp_marker().await?;
        let value = serde_json::json!({"marker": marker.0});
        ctx.emit(&value, || marker.0.to_string());
        return Ok(());
    }
    let wait = wait.unwrap_or(ctx.options.otp_timeout);
    let got = phone.otp(since.map(Marker), wait).await?;
    ctx.emit(&got, || got.code.expose().to_owned());
    Ok(())
}

/// `vphone phone adopt`
pub(super) fn adopt(
    ctx: &Ctx<'_>,
    name: &PhoneName,
    device_id: DeviceId,
    key_ids: Vec<KeyIdArg>,
    person_id: Option<PersonId>,
) -> Result<(), CliError> {
    let mut saved = load(ctx, name)?;
    let adoption = Adoption {
        device_id: Some(device_id.clone()),
        key_ids: key_ids.into_iter().map(|k| (k.purpose, k.key_id)).collect(),
        person_id,
    };
    saved
        .adopt(adoption)
        .map_err(|e| hint_missing_key(name, e))?;
    let labels = saved.key_labels();
    let value = serde_json::json!({"profile": saved.profile(), "keys": labels});
    ctx.emit(&value, || {
        let mut lines = vec![format!("phone {name}: adopted device {device_id}")];
        lines.extend(labels.iter().map(|l| format!("  {l}")));
        lines.join("\n")
    });
    Ok(())
}
