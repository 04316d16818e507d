//! A vphone server run as a child process: started, its address read from the first line it
//! prints, and killed (SIGKILL) when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server process, killed when dropped.
pub struct Listening {
    child: Child,
    /// `http://ADDR`, as the server printed it.
    pub base: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listening {
    /// Runs `command` (its stdout piped, its stderr dropped) and waits (at most 30 s) for its
    /// first line, `"{banner} listening on {base}"`.
    pub fn start(mut command: Command, banner: &str) -> Listening {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Drains stdout to the end, so the server never writes into a closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{banner} printed no address"));
        let base = first
            .strip_prefix(&format!("{banner} listening on "))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        Listening { child, base }
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
