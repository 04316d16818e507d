//! OTP generation and SMS delivery: every OTP becomes a message in the receiving number's
//! outbox (the last [`OUTBOX_CAPACITY`] per number), readable by polling, long-polling
//! (`GET /sandbox/sms`) or an in-process broadcast subscription.
//!
//! Fault rules (see [`super::faults`]) give an SMS a [`SmsFate`]: delivered late, never,
//! twice, or after the next SMS to its number. Held messages wait in the center until the
//! sandbox's clock reaches their time ([`SmsCenter::release_due`], called on every outbox read
//! and by a background pump, so a test that moves a `ManualClock` sees them on its next read).
//! Every SMS gets a `message_id` when the bank sends it and a `seq` when it reaches the
//! outbox, so a late or repeated delivery can be told apart from a new SMS.

use crate::api::{Language, Otp, PhoneNumber, SmsMessage, Timestamp};
use held::{Held, HeldQueue};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

mod held;

/// Messages kept per number; older ones are dropped.
pub const OUTBOX_CAPACITY: usize = 100;
/// The OTP of the test number, and of every number in static-OTP mode.
pub const STATIC_OTP: &str = "212212";
/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// At most this many SMS are held back by faults at once; beyond, an SMS a fault would hold
/// is delivered at once, so a load run with SMS faults keeps bounded memory.
pub const MAX_HELD: usize = 100_000;

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

/// What happens to one SMS on its way to the outbox, as the fault rules decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmsFate {
    /// Delivered now.
    #[default]
    Deliver,
    /// Delivered once the sandbox's clock has moved this much on (whole seconds, rounded up).
    Delay(Duration),
    /// Never delivered.
    Drop,
    /// Delivered now, and a copy once the clock has moved this much on (zero: right away).
    Duplicate(Duration),
    /// Held back, then delivered right after the next SMS to the same number (or after
    /// [`REORDER_HOLD`](super::faults::REORDER_HOLD) by the clock).
    Reorder,
}

/// `at` plus `d`, rounded up to whole seconds (the resolution of the sandbox's clock).
fn later(at: Timestamp, d: Duration) -> Timestamp {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    at.plus_seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

struct Outbox {
    messages: Mutex<VecDeque<SmsMessage>>,
    arrived: Notify,
}

/// All delivered SMS, by number.
pub struct SmsCenter {
    outboxes: crate::sandbox::state::Map<PhoneNumber, Arc<Outbox>>,
    seq: AtomicU64,
    /// Message ids handed out when the bank sends an SMS.
    sent: AtomicU64,
    /// SMS held back by a fault, by due time and by number.
    held: Mutex<HeldQueue>,
    /// `held.len()`, read without the lock on every outbox read.
    held_count: AtomicUsize,
    broadcast: broadcast::Sender<SmsMessage>,
}

impl SmsCenter {
    /// An empty SMS center.
    pub fn new() -> Self {
        SmsCenter {
            outboxes: Default::default(),
            seq: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            held: Mutex::new(HeldQueue::default()),
            held_count: AtomicUsize::new(0),
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

    /// Delivers a message now and returns its sequence number.
    pub fn deliver(
        &self,
        number: &PhoneNumber,
        text: String,
        language: Language,
        at: Timestamp,
    ) -> u64 {
        let message_id = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        self.put(number, text, language, at, message_id)
    }

    /// Sends a message at `at` to meet `fate`: into the outbox now, later, twice or never.
    /// Returns its message id.
    pub fn send(
        &self,
        number: &PhoneNumber,
        text: String,
        language: Language,
        at: Timestamp,
        fate: SmsFate,
    ) -> u64 {
        let message_id = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let hold = |due: Timestamp, after_next: bool, text: String| {
            let mut held = self.held.lock();
            if held.len() >= MAX_HELD {
                drop(held);
                tracing::warn!(
                    held = MAX_HELD,
                    "too many SMS held back by faults; this one is delivered now"
                );
                self.put(number, text, language, at, message_id);
                return;
            }
            held.push(Held {
                due,
                after_next,
                number: number.clone(),
                text,
                language,
                sent_at: at,
                message_id,
            });
            self.held_count.store(held.len(), Ordering::Release);
        };
        match fate {
            SmsFate::Deliver => {
                self.put(number, text, language, at, message_id);
            }
            SmsFate::Drop => {}
            SmsFate::Delay(d) => hold(later(at, d), false, text),
            SmsFate::Duplicate(d) if d.is_zero() => {
                self.put(number, text.clone(), language, at, message_id);
                self.put(number, text, language, at, message_id);
            }
            SmsFate::Duplicate(d) => {
                self.put(number, text.clone(), language, at, message_id);
                hold(later(at, d), false, text);
            }
            SmsFate::Reorder => hold(later(at, super::faults::REORDER_HOLD), true, text),
        }
        message_id
    }

    /// Delivers every held message whose time has come by `now`, oldest first.
    pub fn release_due(&self, now: Timestamp) {
        if self.held_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let due = {
            let mut held = self.held.lock();
            let due = held.take_due(now);
            self.held_count.store(held.len(), Ordering::Release);
            due
        };
        for h in due {
            self.put(&h.number, h.text, h.language, h.sent_at, h.message_id);
        }
    }

    /// How many messages are held back by faults.
    pub fn held(&self) -> usize {
        self.held_count.load(Ordering::Acquire)
    }

    /// Puts a message in its outbox, then the messages held to follow the next one there.
    fn put(
        &self,
        number: &PhoneNumber,
        text: String,
        language: Language,
        at: Timestamp,
        message_id: u64,
    ) -> u64 {
        let seq = self.append(SmsMessage {
            seq: 0,
            number: number.clone(),
            text,
            language,
            sent_at: at,
            message_id: Some(message_id),
        });
        if self.held_count.load(Ordering::Acquire) > 0 {
            let followers = {
                let mut held = self.held.lock();
                let go = held.take_followers(number);
                self.held_count.store(held.len(), Ordering::Release);
                go
            };
            for h in followers {
                // Not `put`: a follower releases nobody, so two reordered SMS keep their order.
                self.append(SmsMessage {
                    seq: 0,
                    number: h.number,
                    text: h.text,
                    language: h.language,
                    sent_at: h.sent_at,
                    message_id: Some(h.message_id),
                });
            }
        }
        seq
    }

    /// Appends `message` to its number's outbox with the next sequence number, wakes the
    /// long-polls and tells the subscribers; returns the sequence number.
    fn append(&self, mut message: SmsMessage) -> u64 {
        let outbox = self.outbox(&message.number);
        let (seq, copy) = {
            let mut messages = outbox.messages.lock();
            // Taken under the outbox lock so each number's messages are in seq order.
            message.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let seq = message.seq;
            if messages.len() == OUTBOX_CAPACITY {
                messages.pop_front();
            }
            // A copy only if there are subscribers. Counted under the lock: one that
            // subscribes after this and then reads the outbox (as the phone's inbox does)
            // reads it after the lock is released, so it finds the message there. One that
            // only listens hears what is sent after it subscribed, as before.
            let copy = (self.broadcast.receiver_count() > 0).then(|| message.clone());
            messages.push_back(message);
            (seq, copy)
        };
        outbox.arrived.notify_waiters();
        if let Some(copy) = copy {
            let _ = self.broadcast.send(copy);
        }
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
    /// stored sequence number, so `after=` markers taken before the restart stay valid), and
    /// its next message id too (so a phone never takes a new SMS for one it has seen).
    pub fn resume_after(&self, seq: u64) {
        self.seq.fetch_max(seq, Ordering::Relaxed);
        self.sent.fetch_max(seq, Ordering::Relaxed);
    }

    /// The highest sequence number or message id handed out: what a restarted sandbox must
    /// number after ([`SmsCenter::resume_after`]).
    pub fn high_water(&self) -> u64 {
        self.seq
            .load(Ordering::Relaxed)
            .max(self.sent.load(Ordering::Relaxed))
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

    #[test]
    fn subscribers_hear_what_is_sent_after_they_subscribe_and_the_outbox_keeps_the_rest() {
        let center = SmsCenter::new();
        let n = PhoneNumber::test_number();
        let now = crate::api::now_utc();
        // No subscriber: no copy is made, and the outbox still has it.
        center.deliver(&n, "before".into(), Language::En, now);
        let mut rx = center.subscribe();
        let after = center.last_seq();
        center.deliver(&n, "after".into(), Language::En, now);
        let heard = rx.try_recv().unwrap();
        assert_eq!((heard.text.as_str(), heard.seq), ("after", after + 1));
        assert!(
            rx.try_recv().is_err(),
            "nothing sent before it subscribed is heard"
        );
        let kept: Vec<String> = center.since(&n, 0).into_iter().map(|m| m.text).collect();
        assert_eq!(kept, ["before", "after"]);
        // With no subscriber left, the outbox still takes what is sent.
        drop(rx);
        center.deliver(&n, "unheard".into(), Language::En, now);
        assert_eq!(center.since(&n, after + 1).len(), 1);
    }

    /// (message_id, code) of every message in the outbox of `n`, in arrival order.
    fn arrivals(center: &SmsCenter, n: &PhoneNumber) -> Vec<(u64, String)> {
        center
            .since(n, 0)
            .iter()
            .map(|m| (m.message_id.unwrap(), m.text.clone()))
            .collect()
    }

    #[test]
    fn faults_deliver_late_never_twice_or_after_the_next_sms() {
        let center = SmsCenter::new();
        let n = PhoneNumber::parse("+4915112345678").unwrap();
        let other = PhoneNumber::parse("+4915187654321").unwrap();
        let t0 = crate::api::now_utc();
        let send = |text: &str, fate| center.send(&n, text.into(), Language::En, t0, fate);
        assert_eq!(send("dropped", SmsFate::Drop), 1);
        send("twice", SmsFate::Duplicate(Duration::ZERO));
        assert_eq!(
            arrivals(&center, &n),
            [(2, "twice".into()), (2, "twice".into())]
        );
        send("late", SmsFate::Delay(Duration::from_millis(1500)));
        send("held", SmsFate::Reorder);
        send("copy later", SmsFate::Duplicate(Duration::from_secs(5)));
        // "copy later" released "held" right after it; "late" and the copy wait.
        assert_eq!(center.held(), 2);
        let got = arrivals(&center, &n);
        assert_eq!(got[2..], [(5, "copy later".into()), (4, "held".into())]);
        // 1.5 s rounds up to 2 s of the clock.
        center.release_due(t0.plus_seconds(1));
        assert_eq!(arrivals(&center, &n).len(), 4);
        center.release_due(t0.plus_seconds(2));
        assert_eq!(arrivals(&center, &n)[4], (3, "late".into()));
        center.release_due(t0.plus_seconds(5));
        assert_eq!(arrivals(&center, &n)[5], (5, "copy later".into()));
        assert_eq!(center.held(), 0);
        // A reordered SMS waits for its own number only, and at most REORDER_HOLD.
        send("alone", SmsFate::Reorder);
        center.send(&other, "other".into(), Language::En, t0, SmsFate::Deliver);
        assert_eq!(center.held(), 1);
        let hold = i64::try_from(super::super::faults::REORDER_HOLD.as_secs()).unwrap();
        center.release_due(t0.plus_seconds(hold));
        assert_eq!(arrivals(&center, &n).last().unwrap().1, "alone");
    }

    #[test]
    fn held_sms_are_bounded() {
        let center = SmsCenter::new();
        let n = PhoneNumber::parse("+4915112345678").unwrap();
        let t0 = crate::api::now_utc();
        let late = SmsFate::Delay(Duration::from_secs(60));
        for _ in 0..=MAX_HELD {
            center.send(&n, "m".into(), Language::En, t0, late);
        }
        assert_eq!(center.held(), MAX_HELD);
        assert_eq!(
            center.since(&n, 0).len(),
            1,
            "the one over the bound goes at once"
        );
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
