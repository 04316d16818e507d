//! `vphone demo`: starts the sandbox in-process (or uses `--api`), then walks one phone
//! through every flow, one readable line per step, and ends with a summary.

use crate::api::{
    CreateDeviceChallenge, DeviceId, KeyPurpose, Otp, PhoneNumber, SmsMessage, UpdatePerson,
};
use crate::client::{ApiClient, ClientConfig, ClientError, Credentials};
use crate::phone::cli::{CliError, ConnectArgs, EXIT_CODES};
use crate::phone::{Confirmation, OtpSource, Phone, PhoneError, PhoneName, SmsFeed, person_named};
use crate::sandbox::{self, SandboxConfig, SandboxState};
use clap::Args;
use rand::Rng;
use serde::Serialize;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use vphone_keystore::{PresenceError, PresenceRequest, UserPresence};

/// `vphone demo`
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct DemoArgs {
    /// Print the steps and the summary as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// The mobile number to verify (default: a fresh random +49151 number, so real OTPs flow).
    #[arg(long)]
    pub number: Option<PhoneNumber>,
    /// Server selection and credentials (without --api or --target the sandbox runs
    /// in-process).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The in-process sandbox is an SMS feed for phones in the same process.
impl SmsFeed for SandboxState {
    fn subscribe(&self) -> broadcast::Receiver<SmsMessage> {
        self.subscribe_sms()
    }
    fn since(&self, number: &PhoneNumber, after: u64) -> Vec<SmsMessage> {
        self.sms_since(number, after)
    }
}

/// The biometric prompt of the demo: approves, and counts how often it was asked.
#[derive(Debug, Default)]
pub struct CountingApprove(AtomicUsize);

impl CountingApprove {
    /// How often the prompt was shown.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl UserPresence for CountingApprove {
    fn confirm(&self, _request: &PresenceRequest) -> Result<(), PresenceError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based position.
    pub index: usize,
    /// What the step does.
    pub step: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was sent and what the bank answered, or the error.
    pub detail: String,
    /// How long it took.
    pub ms: f64,
}

/// The whole walk.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// The server.
    pub api: String,
    /// The steps in order.
    pub steps: Vec<StepReport>,
    /// Steps that passed.
    pub passed: usize,
    /// Steps planned.
    pub total: usize,
    /// Wall time.
    pub total_ms: f64,
}

const STEPS: usize = 16;

struct Walk {
    json: bool,
    exit_code: Option<u8>,
    steps: Vec<StepReport>,
}

impl Walk {
    async fn step<F, T>(&mut self, step: &'static str, f: F) -> Result<T, ()>
    where
        F: Future<Output = Result<(T, String), StepError>>,
    {
        let started = Instant::now();
        let result = f.await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let index = self.steps.len() + 1;
        let (ok, detail, value) = match result {
            Ok((v, d)) => (true, d, Some(v)),
            Err(e) => {
                self.exit_code.get_or_insert(e.exit_code);
                (false, format!("FAILED: {}", e.message), None)
            }
        };
        if !self.json {
            let dots = ".".repeat(34usize.saturating_sub(step.len()));
            println!("[{index:>2}/{STEPS}] {step} {dots} {detail}   ({ms:.1} ms)");
            let _ = std::io::stdout().flush();
        }
        self.steps.push(StepReport {
            index,
            step,
            ok,
            detail,
            ms,
        });
        value.ok_or(())
    }
}

fn short(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    format!("{head}…")
}

/// Why a step failed, and the exit code that failure deserves.
struct StepError {
    message: String,
    exit_code: u8,
}

impl From<PhoneError> for StepError {
    fn from(e: PhoneError) -> Self {
        StepError {
            exit_code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<ClientError> for StepError {
    fn from(e: ClientError) -> Self {
        let code = CliError::Client(e);
        StepError {
            exit_code: code.exit_code(),
            message: code.to_string(),
        }
    }
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError {
            message,
            exit_code: 1,
        }
    }
}

fn random_number() -> PhoneNumber {
    let digits: u32 = rand::thread_rng().gen_range(0..100_000_000);
    // `+49151` and 8 digits is valid E.164 by construction.
    PhoneNumber::parse(&format!("+49151{digits:08}")).unwrap_or_else(|_| PhoneNumber::test_number())
}

/// Runs `vphone demo` on a fresh runtime.
/// With `--json`, stdout holds one JSON document whatever happens: the report, or
/// `{"error": {...}}` when the walk could not start.
pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let json = args.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(execute(args)));
    match &result {
        // A failed walk already printed its report.
        Err(CliError::DemoFailed { .. }) | Ok(()) => {}
        Err(e) if json => match serde_json::to_string_pretty(&e.to_json()) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print JSON: {e}"),
        },
        Err(_) => {}
    }
    result
}

/// Runs the walk; `Ok` only if every step passed.
pub async fn execute(args: DemoArgs) -> Result<(), CliError> {
    let in_process = args.connect.api.is_none() && args.connect.target.is_none();
    let (client, sandbox, source) = if in_process {
        let handle = sandbox::spawn(SandboxConfig::default())
            .await
            .map_err(|e| CliError::Local(format!("cannot start the sandbox: {e}")))?;
        let base = handle
            .base_url()
            .parse()
            .map_err(|e| CliError::Local(format!("sandbox URL: {e}")))?;
        let client = ApiClient::new(
            ClientConfig::local(base, Credentials::sandbox_default())
                .with_timeout(args.connect.timeout),
        )?;
        let feed: Arc<dyn SmsFeed> = Arc::new(handle.state().clone());
        (client, Some(handle), OtpSource::InProcess(feed))
    } else {
        let target = args.connect.target();
        let client = args.connect.client(&target)?;
        let source = if target.is_local() {
            OtpSource::SandboxHttp(client.clone())
        } else {
            OtpSource::Static(Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits")))
        };
        (client, None, source)
    };
    let api = client.base_url().to_owned();
    if !args.json {
        match &sandbox {
            Some(_) => println!("vphone demo: sandbox started in-process at {api}"),
            None => println!("vphone demo: against {api}"),
        }
    }
    let started = Instant::now();
    let mut walk = Walk {
        json: args.json,
        exit_code: None,
        steps: Vec::new(),
    };
    let number = args.number.clone().unwrap_or_else(random_number);
    let _ = walk_all(&mut walk, client, source, number).await;
    if let Some(handle) = sandbox {
        handle.shutdown().await;
    }
    let passed = walk.steps.iter().filter(|s| s.ok).count();
    let walk_exit = walk.exit_code;
    let report = DemoReport {
        api,
        passed,
        total: STEPS,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        steps: walk.steps,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print JSON: {e}"),
        }
    } else {
        println!(
            "summary: {passed}/{STEPS} steps ok in {:.1} ms{}",
            report.total_ms,
            if passed == STEPS { "" } else { " — FAILED" }
        );
    }
    if passed == STEPS {
        Ok(())
    } else {
        Err(CliError::DemoFailed {
            failed: STEPS - passed,
            total: STEPS,
            exit_code: walk_exit.unwrap_or(1),
        })
    }
}

async fn walk_all(
    walk: &mut Walk,
    client: ApiClient,
    source: OtpSource,
    number: PhoneNumber,
) -> Result<(), ()> {
    let presence = Arc::new(CountingApprove::default());
    let name = PhoneName::parse("demo").map_err(|_| ())?;
    let mut phone = Phone::new(name, client.clone(), source)
        .with_presence(presence.clone())
        .with_otp_timeout(Duration::from_secs(20));
    let c = client.clone();
    walk.step("get token", async move {
        let life = c.authenticate().await?;
        Ok((
            (),
            format!(
                "POST /oauth2/token → 200 bearer token, lives {} s",
                life.as_secs()
            ),
        ))
    })
    .await?;
    let person = walk
        .step("create person", async {
            let p = phone.create_person(&person_named("Vera", "Phone")).await?;
            let line = format!("POST /v1/persons → 201 person {}", short(p.id.as_str()));
            Ok((p, line))
        })
        .await?;
    walk.step("add mobile number", async {
        let m = phone.add_number(number.clone()).await?;
        Ok((
            (),
            format!(
                "POST mobile_number {} → 201 verified={}",
                m.number.as_ref().unwrap_or(&number),
                m.verified
            ),
        ))
    })
    .await?;
    walk.step("verify number via SMS", async {
        let v = phone.verify_number().await?;
        let line = format!(
            "authorize → SMS in inbox ({:.1} ms) → confirm OTP → 201 verified={}",
            v.timings
                .get("wait for SMS")
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
            v.mobile_number.verified
        );
        Ok(((), line))
    })
    .await?;
    let device: DeviceId = walk
        .step("bind unrestricted key", async {
            let b = phone.bind().await?;
            let line = format!(
                "202 device {} challenge sent SMS → signed OTP → 204 verified",
                short(b.device_id.as_str())
            );
            Ok((b.device_id, line))
        })
        .await?;
    walk.step("add restricted key", async {
        let a = phone.add_key(Some(KeyPurpose::Restricted)).await?;
        let line = format!(
            "new key signed by the {} key → 201 key {}",
            a.signed_with,
            short(a.key_id.as_str())
        );
        Ok(((), line))
    })
    .await?;
    walk.step("list devices", async {
        let d = phone.devices(false).await?;
        if !d.iter().any(|d| d.id == device) {
            return Err(format!("the bound device {device} is not listed").into());
        }
        Ok((
            (),
            format!("GET /v1/mfa/devices → 200, {} bound device(s)", d.len()),
        ))
    })
    .await?;
    walk.step("list keys", async {
        let k = phone.keys().await?;
        let purposes: Vec<String> = k.keys.iter().map(|k| k.key_purpose.to_string()).collect();
        if k.keys.len() != 2 {
            return Err(format!("expected 2 keys, the bank lists {}", k.keys.len()).into());
        }
        Ok(((), format!("GET keys → 200: {}", purposes.join(", "))))
    })
    .await?;
    walk.step("device challenge, unrestricted", async {
        let s = phone.approve(Some(KeyPurpose::Unrestricted)).await?;
        let line = format!(
            "201 challenge {} → signed string_to_sign → 204",
            short(s.challenge_id.as_str())
        );
        Ok(((), line))
    })
    .await?;
    walk.step("device challenge, restricted", async {
        let before = presence.count();
        let s = phone.approve(Some(KeyPurpose::Restricted)).await?;
        if presence.count() != before + 1 {
            return Err("the biometric prompt was not shown".to_owned().into());
        }
        let line = format!(
            "201 challenge {} → biometric prompt approved → signed → 204",
            short(s.challenge_id.as_str())
        );
        Ok(((), line))
    })
    .await?;
    walk.step("SMS challenge", async {
        let s = phone.sms_challenge().await?;
        let line = format!(
            "201 challenge {} → SMS in inbox → code → 204",
            short(s.challenge_id.as_str())
        );
        Ok(((), line))
    })
    .await?;
    let change = |first: Option<&str>, last: Option<&str>| UpdatePerson {
        first_name: first.map(str::to_owned),
        last_name: last.map(str::to_owned),
        email: None,
    };
    let person_id = person.id.clone();
    for (step, update, via, check) in [
        (
            "change name, device signing",
            change(Some("Veronika"), None),
            Confirmation::DeviceSigning,
            ("Veronika", "Phone"),
        ),
        (
            "change name, SMS TAN",
            change(None, Some("Telefon")),
            Confirmation::Sms,
            ("Veronika", "Telefon"),
        ),
        (
            "change name, static TAN",
            change(Some("Vera"), None),
            Confirmation::Static(
                Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits")),
            ),
            ("Vera", "Telefon"),
        ),
    ] {
        let phone = &phone;
        let client = &client;
        let person_id = &person_id;
        walk.step(step, async move {
            let o = phone.change_person(&update, &via).await?;
            let p = client.get_person(person_id).await?;
            if (p.first_name.as_str(), p.last_name.as_str()) != check {
                return Err(format!(
                    "the change request completed but the person is {} {}",
                    p.first_name, p.last_name
                )
                .into());
            }
            let line = match o {
                crate::phone::PersonChange::Confirmed(o) => format!(
                    "PATCH → 202 → authorize {} → confirm → {} → person is {} {}",
                    o.delivery_method, o.status, p.first_name, p.last_name
                ),
                crate::phone::PersonChange::AppliedWithoutConfirmation { .. } => format!(
                    "PATCH → applied without confirmation → person is {} {}",
                    p.first_name, p.last_name
                ),
            };
            Ok(((), line))
        })
        .await?;
    }
    walk.step("delete device", async {
        let d = phone.delete_device().await?;
        Ok((
            (),
            format!("DELETE device {} → 204", short(d.device_id.as_str())),
        ))
    })
    .await?;
    let c = client.clone();
    walk.step("deleted device is refused", async move {
        let req = CreateDeviceChallenge {
            device_id: device,
            key_purpose: None,
            device_data: None,
        };
        match c.create_device_challenge(&req).await {
            Ok(ch) => {
                Err(format!("the bank issued challenge {} for a deleted device", ch.id).into())
            }
            Err(e) => match e.remote() {
                Some(r) => Ok((
                    (),
                    format!(
                        "POST challenge → {} {} (as it should)",
                        r.status,
                        r.code_str()
                    ),
                )),
                None => Err(e.into()),
            },
        }
    })
    .await?;
    Ok(())
}
