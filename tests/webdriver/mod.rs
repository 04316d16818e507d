//! A small W3C WebDriver client for the browser tests: only the commands they use, over
//! reqwest, driving Debian's `chromium` through its `chromedriver`. No browser download:
//! both come from the system (`apt-get install chromium chromium-driver`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The key WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long `find` waits for an element to appear (WebDriver's implicit wait: the browser
/// polls, the test does not sleep).
pub const FIND_WAIT: Duration = Duration::from_secs(30);

/// WebDriver's code for the Tab key.
pub const TAB: &str = "\u{E004}";
/// WebDriver's code for the Enter key.
pub const ENTER: &str = "\u{E007}";

/// Where the browser and its driver are, or why the tests cannot run here.
pub fn tools() -> Result<(PathBuf, PathBuf), String> {
    let named = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    let chromium = match std::env::var_os("VPHONE_CHROMIUM") {
        Some(_) => named("VPHONE_CHROMIUM"),
        None => which("chromium").or_else(|| which("chromium-browser")),
    };
    let driver = match std::env::var_os("VPHONE_CHROMEDRIVER") {
        Some(_) => named("VPHONE_CHROMEDRIVER"),
        None => which("chromedriver"),
    };
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => Err(format!(
            "missing {}{}{}: install them with `apt-get install -y chromium chromium-driver` (or set VPHONE_CHROMIUM / VPHONE_CHROMEDRIVER)",
            if c.is_none() { "chromium" } else { "" },
            if c.is_none() && d.is_none() {
                " and "
            } else {
                ""
            },
            if d.is_none() { "chromedriver" } else { "" },
        )),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// One headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless session with a new
    /// empty profile, `width` x `height` pixels.
    pub async fn start(chromium: &Path, chromedriver: &Path, width: u32, height: u32) -> Browser {
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let stdout = driver.stdout.take().expect("chromedriver's stdout");
        let (tx, rx) = tokio::sync::oneshot::channel::<u16>();
        // Reads the port it chose, then keeps draining its output so it never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port = rest.trim_end_matches('.').trim().parse().unwrap_or(0);
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("chromedriver did not start within 20 s")
            .expect("chromedriver ended before saying its port");
        assert_ne!(port, 0, "chromedriver printed no port");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let base = format!("http://127.0.0.1:{port}");
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_owned();
        let browser = Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        };
        let wait = u64::try_from(FIND_WAIT.as_millis()).unwrap();
        browser
            .cmd(
                "POST",
                "/timeouts",
                json!({"implicit": wait, "pageLoad": 30000, "script": 30000}),
            )
            .await;
        browser
    }

    /// Sends one command; panics with the driver's message when it fails.
    pub async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        // Named in a failure's message: which selector or script it was.
        let body = body.to_string();
        let body = &body[..body.len().min(300)];
        let resp: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = resp["value"]["error"].as_str() {
            panic!(
                "webdriver {method} {path} {body}: {err}: {}",
                resp["value"]["message"]
            );
        }
        resp["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    /// The element `css` matches, waiting up to [`FIND_WAIT`] for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element for {css}: {v}"))
            .to_owned()
    }

    /// How many elements match `css` now (no waiting).
    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .exec(
                "return document.querySelectorAll(arguments[0]).length;",
                json!([css]),
            )
            .await;
        usize::try_from(v.as_u64().unwrap()).unwrap()
    }

    /// Clicks the element `css` matches.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Types `text` into the element `css` matches.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The visible text of the element `css` matches.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Presses and releases `key` on whatever has the focus.
    pub async fn press(&self, key: &str) {
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
    }

    /// Runs `script` in the page with `args`; returns its result.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until the page's CSS animations (the sheet sliding up) have finished, so a
    /// screenshot shows where things end up.
    pub async fn settle(&self) {
        self.cmd(
            "POST",
            "/execute/async",
            json!({"script": "const done = arguments[arguments.length - 1]; Promise.all(document.getAnimations().map((a) => a.finished)).then(() => done(true), () => done(false));", "args": []}),
        )
        .await;
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", Value::Null).await;
        save_png(&v, path);
    }

    /// Saves a PNG of the element `css` matches to `path`.
    pub async fn element_screenshot(&self, css: &str, path: &Path) {
        let id = self.find(css).await;
        let v = self
            .cmd("GET", &format!("/element/{id}/screenshot"), Value::Null)
            .await;
        save_png(&v, path);
    }

    /// Ends the session (closing the browser) and the driver.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.http.delete(self.session.clone()).send(),
        )
        .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    /// A failed test still ends its browser: close the session from a helper thread (no
    /// async in Drop), then stop the driver.
    fn drop(&mut self) {
        if matches!(self.driver.try_wait(), Ok(None)) {
            let session = self.session.clone();
            let closer = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let client = reqwest::Client::new();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        client.delete(session).send(),
                    )
                    .await;
                });
            });
            let _ = closer.join();
            let _ = self.driver.kill();
            let _ = self.driver.wait();
        }
    }
}

fn save_png(v: &Value, path: &Path) {
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, png).unwrap();
}
