//! OTP generation and SMS delivery: every OTP becomes a message in the receiving number's
//! outbox (the last [`OUTBOX_CAPACITY`] per number), readable by polling, long-polling
//! (`GET /sandbox/sms`) or an in-process broadcast subscription.

use crate::api::{Language, Otp, PhoneNumber, SmsMessage, Timestamp};
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// Messages kept per number; older ones are dropped.
pub const OUTBOX_CAPACITY: usize = 100;
/// The OTP of the test number, and of every number in static-OTP mode.
pub const STATIC_OTP: &str = "212212";
/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A fresh OTP: `212212` for the test number or in static mode, else 6 digits from a CSPRNG.
pub fn new_otp(number: &PhoneNumber, static_otp: bool) -> Otp {
    // thread_rng is a ChaCha CSPRNG seeded and periodically reseeded from the OS; the sandbox
    // itself draws from its own (optionally seeded) generator through the core.
    super::core::mint::otp(&mut rand::thread_rng(), number, static_otp)
}

/// The SMS text: the code appears once and no other run of six digits does.
pub fn sms_text(
    otp: &Otp,
    language: Language,
    lifetime: Duration,
    app_signature: Option<&str>,
) -> String {
    let minutes = lifetime.as_secs().div_ceil(60).clamp(1, 9999);
    let code = otp.expose();
    let mut text = match language {
        Language::De => format!(
            "Ihr vphone-Code lautet {code}. Er ist {minutes} Minute{} gueltig.",
            if minutes == 1 { "" } else { "n" }
        ),
        Language::Fr => format!(
            "Votre code vphone est {code}. Il expire dans {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        ),
        Language::En => format!(
            "Your vphone code is {code}. It expires in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        ),
    };
    if let Some(signature) = app_signature {
        text.push_str("\n\n");
        text.push_str(signature);
    }
    text
}

struct Outbox {
    messages: Mutex<VecDeque<SmsMessage>>,
    arrived: Notify,
}

/// All delivered SMS, by number.
pub struct SmsCenter {
    outboxes: DashMap<PhoneNumber, Arc<Outbox>>,
    seq: AtomicU64,
    broadcast: broadcast::Sender<SmsMessage>,
}

impl SmsCenter {
    /// An empty SMS center.
    pub fn new() -> Self {
        SmsCenter {
            outboxes: DashMap::new(),
            seq: AtomicU64::new(0),
            broadcast: broadcast::channel(4096).0,
        }
    }

    fn outbox(&self, number: &PhoneNumber) -> Arc<Outbox> {
        if let Some(o) = self.outboxes.get(number) {
            return o.clone();
        }
        self.outboxes
            .entry(number.clone())
            .or_insert_with(|| {
                Arc::new(Outbox {
                    messages: Mutex::new(VecDeque::new()),
                    arrived: Notify::new(),
                })
            })
            .clone()
    }

    /// Delivers a message and returns its sequence number.
    pub fn deliver(
        &self,
        number: &PhoneNumber,
        text: String,
        language: Language,
        at: Timestamp,
    ) -> u64 {
        let outbox = self.outbox(number);
        let message = {
            let mut messages = outbox.messages.lock();
            // Taken under the outbox lock so each number's messages are in seq order.
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let message = SmsMessage {
                seq,
                number: number.clone(),
                text,
                language,
                sent_at: at,
            };
            if messages.len() == OUTBOX_CAPACITY {
                messages.pop_front();
            }
            messages.push_back(message.clone());
            message
        };
        outbox.arrived.notify_waiters();
        let seq = message.seq;
        // No subscriber is fine.
        let _ = self.broadcast.send(message);
        seq
    }

    /// Messages to `number` with `seq > after`, oldest first.
    pub fn since(&self, number: &PhoneNumber, after: u64) -> Vec<SmsMessage> {
        let Some(outbox) = self.outboxes.get(number).map(|o| o.clone()) else {
            return Vec::new();
        };
        let messages = outbox.messages.lock();
        messages.iter().filter(|m| m.seq > after).cloned().collect()
    }

    /// Like [`SmsCenter::since`], waiting up to `wait` for a first message.
    pub async fn wait_since(
        &self,
        number: &PhoneNumber,
        after: u64,
        wait: Duration,
    ) -> Vec<SmsMessage> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let outbox = self.outbox(number);
        let found = loop {
            let notified = outbox.arrived.notified();
            tokio::pin!(notified);
            // Registered before looking, so a message delivered in between still wakes us.
            notified.as_mut().enable();
            let found = self.since(number, after);
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                break found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break self.since(number, after);
            }
        };
        // The route is open to anyone: an outbox made only to wait in goes again when nobody
        // else holds it and nothing was delivered to it, so polling made-up numbers costs nothing.
        drop(outbox);
        self.outboxes.remove_if(number, |_, o| {
            Arc::strong_count(o) == 1 && o.messages.lock().is_empty()
        });
        found
    }

    /// How many numbers have an outbox.
    pub fn outbox_count(&self) -> usize {
        self.outboxes.len()
    }

    /// Every future message, in-process.
    pub fn subscribe(&self) -> broadcast::Receiver<SmsMessage> {
        self.broadcast.subscribe()
    }

    /// Numbers the next message after `seq` at least (a restarted sandbox goes on from its
    /// stored sequence number, so `after=` markers taken before the restart stay valid).
    pub fn resume_after(&self, seq: u64) {
        self.seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

impl Default for SmsCenter {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `text` has a run of six or more digits (app signatures must not add a second code).
pub fn has_six_digit_run(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_digit())
        .any(|run| run.len() >= 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit_runs(text: &str) -> Vec<&str> {
        text.split(|c: char| !c.is_ascii_digit())
            .filter(|r| r.len() >= 6)
            .collect()
    }

    #[test]
    fn every_language_carries_the_code_once() {
        let otp = Otp::parse("123456").unwrap();
        for &language in Language::ALL {
            let text = sms_text(
                &otp,
                language,
                Duration::from_secs(300),
                Some("FA+9qCX9VSu"),
            );
            assert_eq!(digit_runs(&text), vec!["123456"], "{text}");
        }
    }

    #[test]
    fn the_test_number_and_static_mode_get_212212() {
        let test = PhoneNumber::test_number();
        let other = PhoneNumber::parse("+4915112345678").unwrap();
        assert_eq!(new_otp(&test, false).expose(), STATIC_OTP);
        assert_eq!(new_otp(&other, true).expose(), STATIC_OTP);
        let distinct: std::collections::HashSet<String> = (0..20)
            .map(|_| new_otp(&other, false).expose().to_owned())
            .collect();
        assert!(distinct.len() > 1);
    }

    #[tokio::test]
    async fn outboxes_are_bounded_and_long_polls_wake() {
        let center = Arc::new(SmsCenter::new());
        let n = PhoneNumber::test_number();
        for i in 0..(OUTBOX_CAPACITY + 5) {
            center.deliver(&n, format!("m{i}"), Language::En, crate::api::now_utc());
        }
        assert_eq!(center.since(&n, 0).len(), OUTBOX_CAPACITY);
        let last = center.last_seq();
        let waiter = {
            let center = center.clone();
            let n = n.clone();
            tokio::spawn(async move { center.wait_since(&n, last, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        center.deliver(&n, "late".into(), Language::En, crate::api::now_utc());
        let got = waiter.await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, last + 1);
    }

    #[tokio::test]
    async fn waiting_on_a_number_that_gets_nothing_leaves_no_outbox() {
        let center = SmsCenter::new();
        let n = PhoneNumber::test_number();
        for i in 0..50u64 {
            let nobody = PhoneNumber::parse(&format!("+49151{i:08}")).unwrap();
            let got = center
                .wait_since(&nobody, 0, Duration::from_millis(1))
                .await;
            assert!(got.is_empty());
        }
        assert_eq!(center.outbox_count(), 0);
        center.deliver(&n, "m".into(), Language::En, crate::api::now_utc());
        assert_eq!(
            center
                .wait_since(&n, 0, Duration::from_millis(1))
                .await
                .len(),
            1
        );
        assert_eq!(center.outbox_count(), 1, "a used outbox stays");
    }
}
