//! Codes that come from outside the bank's SMS: a command the user names (`--otp
//! command:CMD`) and lines typed or piped in (`--otp prompt`). The code itself is never
//! logged, printed or put in an error message.

use super::inbox::InboxError;
use crate::api::{Otp, PhoneNumber};
use std::fmt;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The environment variable holding the number the code was sent to.
pub const OTP_NUMBER_ENV: &str = "VPHONE_OTP_NUMBER";
/// The environment variable holding what the SMS is for (see [`SmsKind::as_str`]).
pub const OTP_KIND_ENV: &str = "VPHONE_OTP_KIND";

/// The most bytes read from the command's stdout.
const MAX_OUTPUT: u64 = 4096;

/// What an SMS is for, told to an OTP command so it can find the right message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmsKind {
    /// Verifying the person's mobile number.
    VerifyNumber,
    /// Binding a device (the OTP is signed).
    Binding,
    /// An SMS challenge.
    SmsChallenge,
    /// A change request's TAN.
    ChangeRequest,
    /// Not said by the flow.
    #[default]
    Unknown,
}

impl SmsKind {
    /// The word in [`OTP_KIND_ENV`].
    pub fn as_str(self) -> &'static str {
        match self {
            SmsKind::VerifyNumber => "verify_number",
            SmsKind::Binding => "binding",
            SmsKind::SmsChallenge => "sms_challenge",
            SmsKind::ChangeRequest => "change_request",
            SmsKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for SmsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command that prints the code on its stdout, run by `sh -c`.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCommand(String);

impl OtpCommand {
    /// The command line (run by `sh -c`).
    pub fn new(command: impl Into<String>) -> OtpCommand {
        OtpCommand(command.into())
    }

    /// Runs the command for `number` and `kind`, waiting up to `timeout`; the first six-digit
    /// code on its stdout is the answer. A command still running at the deadline is killed.
    pub async fn run(
        &self,
        number: &PhoneNumber,
        kind: SmsKind,
        timeout: Duration,
    ) -> Result<Otp, InboxError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.0)
            .env(OTP_NUMBER_ENV, number.as_str())
            .env(OTP_KIND_ENV, kind.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| InboxError::Command(format!("cannot start `sh -c`: {e}")))?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| InboxError::Command("the command's stdout was not captured".into()))?;
        let work = async {
            let mut out = zeroize::Zeroizing::new(Vec::new());
            let mut limited = (&mut stdout).take(MAX_OUTPUT);
            limited
                .read_to_end(&mut out)
                .await
                .map_err(|e| InboxError::Command(format!("reading its output failed: {e}")))?;
            let status = child
                .wait()
                .await
                .map_err(|e| InboxError::Command(format!("waiting for it failed: {e}")))?;
            if !status.success() {
                return Err(InboxError::Command(format!(
                    "it exited with {status} (its output is not shown: it may hold the code)"
                )));
            }
            find_code(&String::from_utf8_lossy(&out))
                .ok_or_else(|| InboxError::Command("it printed no 6-digit code on stdout".into()))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            // Dropping the future drops the child, which kills it (kill_on_drop).
            Err(_) => Err(InboxError::CommandTimeout {
                number: number.clone(),
                waited: timeout,
            }),
        }
    }
}

impl fmt::Debug for OtpCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A command line may embed a token for the user's SMS gateway: not shown.
        f.write_str("OtpCommand(<command>)")
    }
}

/// The first standalone run of exactly six digits in `text`.
pub fn find_code(text: &str) -> Option<Otp> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let before = start.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i).copied();
            let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
            if i - start == 6 && !alnum(before) && !alnum(after) {
                return Otp::parse(&text[start..i]).ok();
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Reads one code: on a terminal after a prompt on stderr, else the next non-blank line of
/// stdin (so scripts can pipe codes in, one per line).
pub(crate) fn read_line_code(prompt: &str) -> Result<Otp, InboxError> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        let mut err = std::io::stderr();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
    }
    let mut lock = stdin.lock();
    loop {
        let mut line = zeroize::Zeroizing::new(String::new());
        let n = lock
            .read_line(&mut line)
            .map_err(|e| InboxError::Terminal(e.to_string()))?;
        if n == 0 {
            return Err(InboxError::Terminal(
                "stdin ended before a code was read (give one 6-digit code per line)".into(),
            ));
        }
        if !terminal && line.trim().is_empty() {
            continue;
        }
        return Otp::parse(line.trim())
            .map_err(|_| InboxError::Terminal("the line read is not a 6-digit code".to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_standalone_six_digits_are_the_code() {
        let code = |s: &str| find_code(s).map(|o| o.expose().to_owned());
        assert_eq!(code("123456\n").as_deref(), Some("123456"));
        assert_eq!(
            code("seq 1234567 then: Your code is 654321.").as_deref(),
            Some("654321")
        );
        assert_eq!(code("ab123456 1234567"), None);
        assert_eq!(code(""), None);
    }

    #[tokio::test]
    async fn a_command_gets_the_number_and_kind_and_its_code_is_read() {
        let number = PhoneNumber::parse("+15550199").unwrap();
        // The command proves it saw both variables by echoing a code built from them.
        let cmd = OtpCommand::new(
            r#"test "$VPHONE_OTP_NUMBER" = "+15550199" && test "$VPHONE_OTP_KIND" = binding && echo "code: 424242""#,
        );
        let otp = cmd
            .run(&number, SmsKind::Binding, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(otp.expose(), "424242");
        let err = cmd
            .run(&number, SmsKind::SmsChallenge, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, InboxError::Command(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_failing_command_never_shows_its_output() {
        let number = PhoneNumber::parse("+15550199").unwrap();
        let err = OtpCommand::new("echo 135790; exit 3")
            .run(&number, SmsKind::Unknown, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("135790"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        let err = OtpCommand::new("echo no code here")
            .run(&number, SmsKind::Unknown, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no 6-digit code"), "{err}");
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_stopped_at_the_otp_timeout() {
        let number = PhoneNumber::parse("+15550199").unwrap();
        // `exec` so the killed process is the one holding stdout open.
        let err = OtpCommand::new("exec sleep 30")
            .run(&number, SmsKind::Unknown, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, InboxError::CommandTimeout { .. }), "{err:?}");
        assert!(err.to_string().contains("200ms"), "{err}");
    }
}
