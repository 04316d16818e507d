//! SMS into events: every SMS that reaches a hosted phone's number raises `sms_received`
//! for that phone. The embedded sandbox feeds them in-process; a vphone sandbox given with
//! `--api` is long-polled over HTTP (`GET /sandbox/sms`), one watcher per number; other
//! servers have no outbox, and their SMS raise no events.

use super::Bank;
use super::events::EventHub;
use super::phones::Hosted;
use crate::api::{PhoneNumber, SmsMessage, SmsQuery};
use crate::phone::{OtpSource, PhoneName};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long one HTTP long-poll of a remote outbox waits.
const REMOTE_POLL: Duration = Duration::from_secs(25);
/// The pause after a failed poll, so a server that is down is not hammered.
const RETRY_AFTER: Duration = Duration::from_secs(1);

type HostedMap = Arc<Mutex<BTreeMap<PhoneName, Arc<Hosted>>>>;

/// The SMS watchers of one control server.
pub struct SmsWatch {
    bank: Bank,
    events: EventHub,
    hosted: HostedMap,
    tasks: Mutex<HashMap<PhoneNumber, JoinHandle<()>>>,
}

impl SmsWatch {
    pub(super) fn new(bank: Bank, events: EventHub, hosted: HostedMap) -> SmsWatch {
        SmsWatch {
            bank,
            events,
            hosted,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the in-process watcher of the embedded sandbox, if there is one.
    pub(super) fn start_embedded(&self) -> Option<JoinHandle<()>> {
        let sandbox = self.bank.embedded.clone()?;
        let mut rx = sandbox.subscribe_sms();
        let (hosted, events) = (self.hosted.clone(), self.events.clone());
        Some(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(sms) => announce(&events, &hosted, &sms),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "SMS events fell behind; some were not announced"
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }))
    }

    /// Watches `number` at a remote vphone sandbox's outbox (a no-op with the embedded
    /// sandbox, for other servers, or when already watched). Returns once the watcher
    /// knows where the outbox ends, so an SMS triggered afterwards is announced.
    pub(super) async fn watch(&self, number: PhoneNumber) {
        if self.bank.embedded.is_some() || self.tasks.lock().contains_key(&number) {
            return;
        }
        let OtpSource::SandboxHttp(client) = &self.bank.source else {
            return;
        };
        let client = client.clone();
        let start = SmsQuery {
            number: number.clone(),
            after: 0,
            wait_ms: 0,
        };
        let mut cursor = match client.sandbox_sms(&start).await {
            Ok(list) => list.iter().map(|m| m.seq).max().unwrap_or(0),
            // Not a vphone sandbox: there is nothing to watch.
            Err(e) if matches!(e.status(), Some(404 | 405)) => return,
            Err(_) => 0,
        };
        let (hosted, events) = (self.hosted.clone(), self.events.clone());
        let watched = number.clone();
        let task = tokio::spawn(async move {
            loop {
                let query = SmsQuery {
                    number: watched.clone(),
                    after: cursor,
                    wait_ms: u64::try_from(REMOTE_POLL.as_millis()).unwrap_or(25_000),
                };
                match client.sandbox_sms(&query).await {
                    Ok(list) => {
                        for sms in list.iter().filter(|m| m.seq > cursor) {
                            announce(&events, &hosted, sms);
                        }
                        cursor = list.iter().map(|m| m.seq).fold(cursor, u64::max);
                    }
                    Err(e) if matches!(e.status(), Some(404 | 405)) => return,
                    Err(_) => tokio::time::sleep(RETRY_AFTER).await,
                }
            }
        });
        match self.tasks.lock().entry(number) {
            // Another request started one meanwhile; keep that one.
            std::collections::hash_map::Entry::Occupied(_) => task.abort(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(task);
            }
        }
    }

    /// Stops every remote watcher.
    pub(super) fn stop(&self) {
        for (_, task) in self.tasks.lock().drain() {
            task.abort();
        }
    }
}

/// Raises `sms_received` for each hosted phone of the receiving number (or once without a
/// phone, when none has it).
fn announce(events: &EventHub, hosted: &HostedMap, sms: &SmsMessage) {
    let owners: Vec<String> = hosted
        .lock()
        .values()
        .filter(|h| h.number().as_ref() == Some(&sms.number))
        .map(|h| h.name.to_string())
        .collect();
    let data = serde_json::json!({
        "seq": sms.seq, "number": sms.number, "text": sms.text, "sent_at": sms.sent_at,
    });
    if owners.is_empty() {
        events.publish(None, "sms_received", data.clone());
    }
    for owner in owners {
        events.publish(Some(&owner), "sms_received", data.clone());
    }
}
