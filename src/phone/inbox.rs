//! The phone's SMS inbox: where one-time passwords arrive.
//!
//! Take a [`Marker`] *before* triggering the SMS, then [`Inbox::wait_for_otp`] returns the
//! newest code that arrived after it, so an older SMS is never reused:
//!
//! - an SMS the inbox has already seen (by its `message_id`) is never used again, so a
//!   duplicate that arrives late, after the next challenge began, is skipped;
//! - among the codes that arrived, the one sent last wins (highest `message_id`, then the
//!   latest arrival), so an older code delivered after a newer one is skipped.
//!
//! Servers that do not number their SMS (no `message_id`) get the latest arrival.

use super::otp_input::{OtpCommand, SmsKind, read_line_code};
use crate::api::{Otp, PhoneNumber, SmsMessage, SmsQuery};
use crate::client::{ApiClient, ClientError};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The longest single long-poll; longer waits poll again.
const MAX_POLL: Duration = Duration::from_secs(10);
/// How many message ids the inbox remembers to skip repeated deliveries.
const SEEN_IDS: usize = 256;

/// A position in the inbox: the sequence number of the last SMS seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Marker(pub u64);

/// An in-process source of SMS (the sandbox's outbox, or a test's own feed).
pub trait SmsFeed: Send + Sync {
    /// A live stream of every SMS sent from now on.
    fn subscribe(&self) -> broadcast::Receiver<SmsMessage>;
    /// Every SMS to `number` with a sequence number above `after`, oldest first.
    fn since(&self, number: &PhoneNumber, after: u64) -> Vec<SmsMessage>;
}

/// Where the phone's codes come from.
#[derive(Clone)]
pub enum OtpSource {
    /// The vphone sandbox's SMS outbox over HTTP (`GET /sandbox/sms`, long-poll).
    SandboxHttp(ApiClient),
    /// An in-process feed, e.g. a sandbox running in the same process.
    InProcess(Arc<dyn SmsFeed>),
    /// Always the same code (the real Solaris sandbox sends `212212` to test numbers).
    Static(Otp),
    /// Runs a command that prints the code (`--otp command:CMD`).
    Command(OtpCommand),
    /// Asks on the terminal, or reads the next line of stdin when it is not a terminal.
    Terminal,
}

impl OtpSource {
    /// Where a code comes from, as the demo's lines say it: only the outboxes are SMS.
    pub fn describe(&self) -> &'static str {
        match self {
            OtpSource::SandboxHttp(_) | OtpSource::InProcess(_) => "the SMS",
            OtpSource::Static(_) => "the fixed code",
            OtpSource::Command(_) => "the OTP command",
            OtpSource::Terminal => "the terminal",
        }
    }
}

impl fmt::Debug for OtpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OtpSource::SandboxHttp(_) => "SandboxHttp",
            OtpSource::InProcess(_) => "InProcess",
            OtpSource::Static(_) => "Static(<redacted>)",
            OtpSource::Command(_) => "Command(<command>)",
            OtpSource::Terminal => "Terminal",
        })
    }
}

/// Why no code was obtained.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// No SMS with a code reached the number in time.
    #[error(
        "no SMS with a 6-digit code reached {number} within {}; check that this is the person's verified number and that the server sends SMS (against the real Solaris sandbox use --otp static)",
        humantime::format_duration(*waited)
    )]
    Timeout {
        /// The number that waited.
        number: PhoneNumber,
        /// How long it waited.
        waited: Duration,
    },
    /// Codes are typed in (`--otp prompt`) and none was typed in time. Nothing says the SMS
    /// did not arrive.
    #[error(
        "no code was typed in for {number} within {}; run the command again and type the 6-digit code from the SMS before the time is up, or raise --otp-timeout",
        humantime::format_duration(*waited)
    )]
    NotTyped {
        /// The number whose code was asked for.
        number: PhoneNumber,
        /// How long the prompt waited.
        waited: Duration,
    },
    /// The `--otp command:CMD` failed (could not start, exited non-zero, printed no code).
    /// Its output is never quoted: it may hold the code.
    #[error("the OTP command gave no code: {0}")]
    Command(String),
    /// The `--otp command:CMD` was still running when the OTP timeout ended (it was killed).
    #[error(
        "the OTP command gave no code for {number} within {}; it was stopped (raise --otp-timeout if its SMS gateway is slow)",
        humantime::format_duration(*waited)
    )]
    CommandTimeout {
        /// The number whose code was asked for.
        number: PhoneNumber,
        /// How long it ran.
        waited: Duration,
    },
    /// The server has no vphone SMS outbox (it is not a vphone sandbox).
    #[error(
        "{server} has no vphone SMS outbox (GET /sandbox/sms answered HTTP {status}), so the phone cannot read its SMS there; use --otp prompt to type codes in, or --otp static for the test number +15550101"
    )]
    NoOutbox {
        /// The server's base URL.
        server: String,
        /// What it answered.
        status: u16,
    },
    /// Reading the sandbox's SMS outbox failed.
    #[error("reading the SMS outbox failed: {0}")]
    Outbox(#[from] ClientError),
    /// The in-process feed has shut down.
    #[error("the in-process SMS feed closed (did the sandbox stop?)")]
    Closed,
    /// The terminal could not be read or the entry was not 6 digits.
    #[error("reading the code from the terminal failed: {0}")]
    Terminal(String),
}

/// One phone number's inbox.
pub struct Inbox {
    number: PhoneNumber,
    source: OtpSource,
    /// The highest sequence number seen so far, so markers cost one incremental poll.
    seen: AtomicU64,
    /// The `message_id`s of the latest SMS seen, newest last: a repeat of one is not new.
    seen_ids: Mutex<VecDeque<u64>>,
    /// What the SMS awaited is for, as the flow said when it took its marker.
    kind: Mutex<SmsKind>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("number", &self.number)
            .field("source", &self.source)
            .finish()
    }
}

impl Inbox {
    /// An inbox for `number` fed by `source`.
    pub fn new(number: PhoneNumber, source: OtpSource) -> Inbox {
        Inbox {
            number,
            source,
            seen: AtomicU64::new(0),
            seen_ids: Mutex::new(VecDeque::new()),
            kind: Mutex::new(SmsKind::Unknown),
        }
    }

    /// The number this inbox receives for.
    pub fn number(&self) -> &PhoneNumber {
        &self.number
    }

    /// Where codes come from.
    pub fn source(&self) -> &OtpSource {
        &self.source
    }

    fn note(&self, messages: &[SmsMessage]) {
        if let Some(max) = messages.iter().map(|m| m.seq).max() {
            self.seen.fetch_max(max, Ordering::Relaxed);
        }
        let mut ids = self.seen_ids.lock();
        for id in messages
            .iter()
            .filter(|m| m.number == self.number)
            .filter_map(|m| m.message_id)
        {
            if !ids.contains(&id) {
                if ids.len() == SEEN_IDS {
                    ids.pop_front();
                }
                ids.push_back(id);
            }
        }
    }

    /// The newest code among `messages` after `after` whose SMS this inbox has not seen
    /// before (see the module documentation); then notes them all as seen.
    fn fresh_code(&self, messages: &[SmsMessage], after: u64) -> Option<Otp> {
        let code = {
            let ids = self.seen_ids.lock();
            newest_code(messages, &self.number, after, |id| ids.contains(&id))
        };
        self.note(messages);
        code
    }

    /// The current end of the inbox before triggering an SMS of `kind` (an OTP command is
    /// told the kind).
    pub async fn marker_for(&self, kind: SmsKind) -> Result<Marker, InboxError> {
        *self.kind.lock() = kind;
        self.marker().await
    }

    /// The current end of the inbox. Take it before triggering an SMS.
    pub async fn marker(&self) -> Result<Marker, InboxError> {
        let after = self.seen.load(Ordering::Relaxed);
        match &self.source {
            OtpSource::SandboxHttp(client) => {
                let query = SmsQuery {
                    number: self.number.clone(),
                    after,
                    wait_ms: 0,
                };
                let messages = outbox(client, &query).await?;
                self.note(&messages);
            }
            OtpSource::InProcess(feed) => {
                let messages = feed.since(&self.number, after);
                self.note(&messages);
            }
            OtpSource::Static(_) | OtpSource::Command(_) | OtpSource::Terminal => {}
        }
        Ok(Marker(self.seen.load(Ordering::Relaxed)))
    }

    /// The highest sequence number this inbox has seen (a marker without asking the source).
    pub fn seen(&self) -> Marker {
        Marker(self.seen.load(Ordering::Relaxed))
    }

    /// The newest code that reached this number after `after`; if none has yet, the first
    /// to arrive within `timeout`. Sources without a history (static, typed) just answer.
    pub async fn newest_otp(&self, after: Marker, timeout: Duration) -> Result<Otp, InboxError> {
        let past = match &self.source {
            OtpSource::SandboxHttp(client) => {
                let query = SmsQuery {
                    number: self.number.clone(),
                    after: after.0,
                    wait_ms: 0,
                };
                outbox(client, &query).await?
            }
            OtpSource::InProcess(feed) => feed.since(&self.number, after.0),
            _ => Vec::new(),
        };
        self.note(&past);
        match newest_code(&past, &self.number, after.0, |_| false) {
            Some(code) => Ok(code),
            None => self.wait_for_otp(after, timeout).await,
        }
    }

    /// The newest code that reached this number after `after` from an SMS not seen before,
    /// waiting up to `timeout` for one.
    pub async fn wait_for_otp(&self, after: Marker, timeout: Duration) -> Result<Otp, InboxError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let timed_out = || InboxError::Timeout {
            number: self.number.clone(),
            waited: timeout,
        };
        match &self.source {
            OtpSource::Static(otp) => Ok(otp.clone()),
            OtpSource::Command(command) => {
                let kind = *self.kind.lock();
                command.run(&self.number, kind, timeout).await
            }
            OtpSource::SandboxHttp(client) => {
                let mut cursor = after.0;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let query = SmsQuery {
                        number: self.number.clone(),
                        after: cursor,
                        wait_ms: u64::try_from(left.min(MAX_POLL).as_millis()).unwrap_or(0),
                    };
                    let messages = outbox(client, &query).await?;
                    if let Some(otp) = self.fresh_code(&messages, cursor) {
                        return Ok(otp);
                    }
                    cursor = messages
                        .iter()
                        .map(|m| m.seq)
                        .max()
                        .unwrap_or(cursor)
                        .max(cursor);
                    if Instant::now() >= deadline {
                        return Err(timed_out());
                    }
                }
            }
            OtpSource::InProcess(feed) => {
                // Subscribe before looking back, so nothing falls between the two.
                let mut live = feed.subscribe();
                let past = feed.since(&self.number, after.0);
                if let Some(otp) = self.fresh_code(&past, after.0) {
                    return Ok(otp);
                }
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, live.recv()).await {
                        Err(_) => return Err(timed_out()),
                        Ok(Ok(sms)) if sms.number == self.number => {
                            let one = std::slice::from_ref(&sms);
                            if let Some(otp) = self.fresh_code(one, after.0) {
                                return Ok(otp);
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                            let past = feed.since(&self.number, after.0);
                            if let Some(otp) = self.fresh_code(&past, after.0) {
                                return Ok(otp);
                            }
                        }
                        Ok(Err(broadcast::error::RecvError::Closed)) => {
                            return Err(InboxError::Closed);
                        }
                    }
                }
            }
            OtpSource::Terminal => wait_typed(&self.number, timeout, read_line_code).await,
        }
    }
}

/// Asks for the code with `read` (which blocks, e.g. on the terminal), waiting up to
/// `timeout` for it.
async fn wait_typed(
    number: &PhoneNumber,
    timeout: Duration,
    read: impl FnOnce(&str) -> Result<Otp, InboxError> + Send + 'static,
) -> Result<Otp, InboxError> {
    let prompt = format!("Enter the 6-digit code sent to {number}: ");
    let typed = tokio::task::spawn_blocking(move || read(&prompt));
    match tokio::time::timeout(timeout, typed).await {
        Err(_) => Err(InboxError::NotTyped {
            number: number.clone(),
            waited: timeout,
        }),
        Ok(Err(join)) => Err(InboxError::Terminal(join.to_string())),
        Ok(Ok(result)) => result,
    }
}

/// Reads the sandbox's outbox; a server without one (404, 405) gets its own error, since
/// the next step is another `--otp`, not a retry.
async fn outbox(client: &ApiClient, query: &SmsQuery) -> Result<Vec<SmsMessage>, InboxError> {
    client
        .sandbox_sms(query)
        .await
        .map_err(|e| match e.status() {
            Some(status @ (404 | 405)) => InboxError::NoOutbox {
                server: client.base_url().to_owned(),
                status,
            },
            _ => InboxError::Outbox(e),
        })
}

/// The code of the newest SMS to `number` after `after` that carries one, skipping SMS whose
/// `message_id` is `seen`: the one sent last (highest `message_id`), then the latest arrival.
pub fn newest_code(
    messages: &[SmsMessage],
    number: &PhoneNumber,
    after: u64,
    seen: impl Fn(u64) -> bool,
) -> Option<Otp> {
    messages
        .iter()
        .filter(|m| m.seq > after && &m.number == number)
        .filter(|m| m.message_id.is_none_or(|id| !seen(id)))
        .filter_map(|m| m.code().map(|code| ((m.message_id, m.seq), code)))
        .max_by_key(|(order, _)| *order)
        .map(|(_, code)| code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Language, now_utc};

    fn sms(seq: u64, number: &PhoneNumber, text: &str) -> SmsMessage {
        SmsMessage {
            seq,
            number: number.clone(),
            text: text.to_owned(),
            language: Language::En,
            sent_at: now_utc(),
            message_id: Some(seq),
        }
    }

    /// An SMS that arrives as `seq` but was sent as `message_id`.
    fn sent_as(seq: u64, message_id: u64, number: &PhoneNumber, text: &str) -> SmsMessage {
        SmsMessage {
            message_id: Some(message_id),
            ..sms(seq, number, text)
        }
    }

    #[derive(Default)]
    struct Feed {
        log: Mutex<Vec<SmsMessage>>,
        tx: Option<broadcast::Sender<SmsMessage>>,
    }

    impl Feed {
        fn new() -> Feed {
            Feed {
                log: Mutex::new(Vec::new()),
                tx: Some(broadcast::channel(16).0),
            }
        }
        fn send(&self, m: SmsMessage) {
            self.log.lock().push(m.clone());
            if let Some(tx) = &self.tx {
                let _ = tx.send(m);
            }
        }
    }

    impl SmsFeed for Feed {
        fn subscribe(&self) -> broadcast::Receiver<SmsMessage> {
            self.tx.as_ref().unwrap().subscribe()
        }
        fn since(&self, number: &PhoneNumber, after: u64) -> Vec<SmsMessage> {
            let log = self.log.lock();
            log.iter()
                .filter(|m| &m.number == number && m.seq > after)
                .cloned()
                .collect()
        }
    }

    #[test]
    fn the_newest_code_after_the_marker_wins_and_other_numbers_are_ignored() {
        let me = PhoneNumber::parse("+15550101").unwrap();
        let other = PhoneNumber::parse("+15550202").unwrap();
        let msgs = [
            sms(1, &me, "old 111111"),
            sms(2, &other, "not mine 222222"),
            sms(3, &me, "no code here"),
            sms(4, &me, "new 444444"),
            sms(5, &other, "not mine 555555"),
        ];
        let none = |_| false;
        assert_eq!(newest_code(&msgs, &me, 1, none).unwrap().expose(), "444444");
        assert_eq!(
            newest_code(&msgs[..1], &me, 0, none).unwrap().expose(),
            "111111"
        );
        assert!(newest_code(&msgs, &me, 4, none).is_none());
    }

    #[test]
    fn an_older_code_delivered_later_and_a_repeat_are_skipped() {
        let me = PhoneNumber::parse("+15550101").unwrap();
        // Sent as 7 and 8, delivered 8 first: the newer code wins though it came first.
        let reordered = [
            sent_as(10, 8, &me, "new 888888"),
            sent_as(11, 7, &me, "old 777777"),
        ];
        assert_eq!(
            newest_code(&reordered, &me, 9, |_| false).unwrap().expose(),
            "888888"
        );
        // A late copy of an SMS already seen is not a new code.
        let repeat = [sent_as(12, 7, &me, "old 777777")];
        assert!(newest_code(&repeat, &me, 11, |id| id == 7).is_none());
    }

    #[tokio::test]
    async fn an_old_sms_is_never_reused() {
        let me = PhoneNumber::parse("+15550303").unwrap();
        let feed = Arc::new(Feed::new());
        feed.send(sms(1, &me, "Your code 111111"));
        let inbox = Inbox::new(me.clone(), OtpSource::InProcess(feed.clone()));
        let mark = inbox.marker().await.unwrap();
        assert_eq!(mark, Marker(1));
        let sender = feed.clone();
        let number = me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            sender.send(sms(2, &number, "Your code 222222"));
        });
        let otp = inbox
            .wait_for_otp(mark, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(otp.expose(), "222222");
    }

    #[tokio::test]
    async fn a_code_not_typed_in_time_is_not_blamed_on_the_sms() {
        let me = PhoneNumber::parse("+15550505").unwrap();
        // A terminal that never yields a line (until the test ends and hangs up).
        let (hang_up, line) = std::sync::mpsc::channel::<()>();
        let reader = move |_: &str| {
            let _ = line.recv();
            Err(InboxError::Terminal("hung up".into()))
        };
        let err = wait_typed(&me, Duration::from_millis(50), reader)
            .await
            .unwrap_err();
        assert!(matches!(err, InboxError::NotTyped { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("no code was typed in for +15550505 within 50ms"),
            "{text}"
        );
        assert!(text.contains("--otp-timeout"), "{text}");
        assert!(!text.contains("no SMS"), "{text}");
        drop(hang_up);
    }

    #[tokio::test]
    async fn waiting_too_long_names_the_number_and_the_time() {
        let me = PhoneNumber::parse("+15550404").unwrap();
        let inbox = Inbox::new(me, OtpSource::InProcess(Arc::new(Feed::new())));
        let err = inbox
            .wait_for_otp(Marker(0), Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("+15550404") && err.contains("50ms"), "{err}");
    }
}
