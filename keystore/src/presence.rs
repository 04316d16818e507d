//! The emulated biometric prompt that guards restricted keys, behind a small trait.

use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::time::Duration;

use crate::encode::KeyLabel;

/// What the user is asked to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRequest {
    /// The key that would sign, named as every command names it.
    pub key: KeyLabel,
    /// What would be signed, as a noun phrase: "device challenge 1f2e...".
    pub reason: String,
}

/// Why the user did not approve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The user said no.
    #[error("the user declined the biometric prompt")]
    Denied,
    /// The user did not answer in time.
    #[error("the biometric prompt timed out")]
    Timeout,
    /// No way to ask the user (e.g. no terminal); the reason says why.
    #[error("the biometric prompt is unavailable: {0}")]
    Unavailable(String),
}

/// Asks the user to confirm a use of a restricted key (the phone's biometric prompt).
pub trait UserPresence: Send + Sync {
    /// Returns `Ok(())` only if the user approved this request.
    fn confirm(&self, request: &PresenceRequest) -> Result<(), PresenceError>;
}

/// Approves every request at once (unattended test rigs and load tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysApprove;

impl UserPresence for AlwaysApprove {
    fn confirm(&self, _request: &PresenceRequest) -> Result<(), PresenceError> {
        Ok(())
    }
}

/// Denies every request (tests of the refusal path).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysDeny;

impl UserPresence for AlwaysDeny {
    fn confirm(&self, _request: &PresenceRequest) -> Result<(), PresenceError> {
        Err(PresenceError::Denied)
    }
}

/// Approves after sleeping for the given time, like a user reaching for the fingerprint reader.
#[derive(Debug, Clone, Copy)]
pub struct ApproveAfter(pub Duration);

impl UserPresence for ApproveAfter {
    fn confirm(&self, _request: &PresenceRequest) -> Result<(), PresenceError> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

type ScriptedIo = (Box<dyn BufRead + Send>, Box<dyn Write + Send>);

/// Asks on a terminal: "Approve <reason> with <key label>? [y/N]"; only y/yes approves.
pub struct TerminalPrompt {
    /// `None` means the process's stdin and stderr.
    io: Option<Mutex<ScriptedIo>>,
}

impl TerminalPrompt {
    /// Prompts on stderr and reads the answer from stdin.
    pub fn new() -> TerminalPrompt {
        TerminalPrompt { io: None }
    }

    /// Prompts on `writer` and reads the answer from `reader` (scripted tests, other UIs).
    pub fn with_io(
        reader: impl BufRead + Send + 'static,
        writer: impl Write + Send + 'static,
    ) -> TerminalPrompt {
        TerminalPrompt {
            io: Some(Mutex::new((Box::new(reader), Box::new(writer)))),
        }
    }

    fn ask(
        reader: &mut dyn BufRead,
        writer: &mut dyn Write,
        request: &PresenceRequest,
    ) -> Result<(), PresenceError> {
        let unavailable = |e: std::io::Error| PresenceError::Unavailable(e.to_string());
        write!(
            writer,
            "Approve {} with {}? [y/N] ",
            request.reason, request.key
        )
        .map_err(unavailable)?;
        writer.flush().map_err(unavailable)?;
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(unavailable)?;
        if n == 0 {
            return Err(PresenceError::Unavailable(
                "no answer: input closed".to_owned(),
            ));
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok(()),
            _ => Err(PresenceError::Denied),
        }
    }
}

impl Default for TerminalPrompt {
    fn default() -> Self {
        TerminalPrompt::new()
    }
}

impl std::fmt::Debug for TerminalPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = if self.io.is_some() {
            "scripted"
        } else {
            "stdio"
        };
        f.debug_struct("TerminalPrompt")
            .field("io", &target)
            .finish()
    }
}

impl UserPresence for TerminalPrompt {
    fn confirm(&self, request: &PresenceRequest) -> Result<(), PresenceError> {
        match &self.io {
            Some(io) => {
                let mut guard = io.lock().map_err(|_| {
                    PresenceError::Unavailable("prompt I/O lock poisoned".to_owned())
                })?;
                let (reader, writer) = &mut *guard;
                TerminalPrompt::ask(reader.as_mut(), writer.as_mut(), request)
            }
            None => {
                let stdin = std::io::stdin();
                let mut reader = stdin.lock();
                let mut writer = std::io::stderr();
                TerminalPrompt::ask(&mut reader, &mut writer, request)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::Arc;
    use std::time::Instant;

    fn request() -> PresenceRequest {
        PresenceRequest {
            key: KeyLabel {
                purpose: crate::KeyPurpose::Restricted,
                key_id: Some("c6dd1de6".to_owned()),
                fingerprint: "a6a9d8bc3e6ddcf1".to_owned(),
            },
            reason: "device challenge 9b1e".to_owned(),
        }
    }

    /// A writer the test can read back after the prompt has written to it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn terminal_prompt_approves_on_y_and_shows_the_reason() {
        let out = Shared::default();
        let prompt = TerminalPrompt::with_io(Cursor::new(b"y\n".to_vec()), out.clone());
        assert_eq!(prompt.confirm(&request()), Ok(()));
        let shown = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            shown,
            "Approve device challenge 9b1e with restricted key a6a9d8bc3e6ddcf1 (bank id c6dd1de6)? [y/N] "
        );
    }

    #[test]
    fn terminal_prompt_denies_on_n_and_on_empty_line() {
        let prompt = TerminalPrompt::with_io(Cursor::new(b"n\n\n".to_vec()), std::io::sink());
        assert_eq!(prompt.confirm(&request()), Err(PresenceError::Denied));
        assert_eq!(prompt.confirm(&request()), Err(PresenceError::Denied));
    }

    #[test]
    fn terminal_prompt_is_unavailable_when_input_is_closed() {
        let prompt = TerminalPrompt::with_io(Cursor::new(Vec::new()), std::io::sink());
        assert!(matches!(
            prompt.confirm(&request()),
            Err(PresenceError::Unavailable(_))
        ));
    }

    #[test]
    fn approve_after_waits_before_approving() {
        let start = Instant::now();
        assert_eq!(
            ApproveAfter(Duration::from_millis(30)).confirm(&request()),
            Ok(())
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn always_deny_denies_and_always_approve_approves() {
        assert_eq!(AlwaysDeny.confirm(&request()), Err(PresenceError::Denied));
        assert_eq!(AlwaysApprove.confirm(&request()), Ok(()));
    }
}
