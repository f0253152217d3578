//! A small W3C WebDriver client (JSON over HTTP with reqwest) driving Debian's headless
//! Chromium through `chromedriver`, which each test starts on a free loopback port.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` a browser test prints a note and
//! passes — unless `LANYARD_REQUIRE_BROWSER=1` (CI), where it fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct Element(pub String);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where test artefacts (screenshots) go: `$CARGO_TARGET_DIR/ui-screenshots`, else `target/ui-screenshots`.
pub fn artefact_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// A fresh headless Chromium, or None when it is not installed (and not required).
    pub async fn start() -> Option<Browser> {
        let have = std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
        if !have {
            if std::env::var("LANYARD_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("LANYARD_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)");
            }
            eprintln!("skipping a browser test: install Debian's chromium and chromium-driver to run it (.ci/run does)");
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut b = Browser { driver, base, session: String::new(), http, _profile: profile };
        let v = b.cmd(reqwest::Method::POST, "/session", Some(caps)).await;
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned();
        Some(b)
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" { format!("{}{path}", self.base) } else { format!("{}/session/{}{path}", self.base, self.session) };
        let mut req = self.http.request(method, url);
        // WebDriver wants a JSON body on every POST.
        req = req.json(&body.unwrap_or(json!({})));
        let resp = req.send().await.expect("webdriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn try_cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let resp = self.http.request(method, url).json(&body).send().await.expect("webdriver request");
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.expect("webdriver JSON");
        if ok { Ok(v["value"].clone()) } else { Err(v["value"].clone()) }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    pub async fn title(&self) -> String {
        self.cmd(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or("").to_owned()
    }

    pub async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or("").to_owned()
    }

    /// The element, or None if it is not on the page now.
    pub async fn find_now(&self, css: &str) -> Option<Element> {
        self.try_cmd(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css}))
            .await
            .ok()
            .map(|v| Element(v[ELEMENT_KEY].as_str().unwrap().to_owned()))
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array().unwrap().iter().map(|e| Element(e[ELEMENT_KEY].as_str().unwrap().to_owned())).collect()
    }

    /// Wait up to 10 s for the element.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_now(css).await {
                return e;
            }
            if Instant::now() > deadline {
                let src = self.source().await;
                panic!("no element {css} on {} after 10 s; page:\n{}", self.url().await, &src[..src.len().min(4000)]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, e: &Element) {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/click", e.0), None).await;
    }

    pub async fn click_css(&self, css: &str) {
        let e = self.find(css).await;
        self.click(&e).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{}/clear", e.0), None).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({"text": text}))).await;
    }

    /// Choose a file in a file input (`<input type=file>`), as a person picking it would.
    pub async fn upload(&self, css: &str, file: &std::path::Path) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({"text": file.display().to_string()}))).await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.cmd(reqwest::Method::GET, &format!("/element/{}/text", e.0), None).await.as_str().unwrap_or("").to_owned()
    }

    /// The text of the first element matching `css`. If the page changes between finding the
    /// element and reading it (a navigation in flight), find it again.
    pub async fn text_of(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css).await;
            match self.try_cmd(reqwest::Method::GET, &format!("/element/{}/text", e.0), json!({})).await {
                Ok(v) => return v.as_str().unwrap_or("").to_owned(),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(err) => panic!("cannot read the text of {css}: {err}"),
            }
        }
    }

    /// Wait until the first element matching `css` reads `expected` (after a click that
    /// navigates, the old page may still be showing for a moment).
    pub async fn wait_for_text(&self, css: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.text_of(css).await;
            if got == expected {
                return;
            }
            if Instant::now() > deadline {
                panic!("{css} reads {got:?}, expected {expected:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn enabled(&self, e: &Element) -> bool {
        self.cmd(reqwest::Method::GET, &format!("/element/{}/enabled", e.0), None).await.as_bool().unwrap()
    }

    pub async fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd(reqwest::Method::GET, &format!("/element/{}/attribute/{name}", e.0), None).await.as_str().map(str::to_owned)
    }

    /// Run a script in the page (for a test that plays a forger).
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    pub async fn element_arg(e: &Element) -> Value {
        json!({ELEMENT_KEY: e.0})
    }

    /// Accept a `confirm()` dialog if one is open.
    pub async fn accept_alert(&self) -> bool {
        self.try_cmd(reqwest::Method::POST, "/alert/accept", json!({})).await.is_ok()
    }

    /// Wait until `css`'s text contains `want` (up to `secs`). The element may belong to the
    /// page a click is navigating away from, and go stale under us: then look again.
    pub async fn wait_text(&self, css: &str, want: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = match self.find_now(css).await {
                Some(e) => self
                    .try_cmd(reqwest::Method::GET, &format!("/element/{}/text", e.0), json!({}))
                    .await
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                None => String::new(),
            };
            if t.contains(want) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("{css} never contained {want:?} (last: {t:?}) on {}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Save a PNG screenshot under the artefact directory and return its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let path = artefact_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Log in through the form.
    pub async fn login(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/ui/login")).await;
        self.type_into("#username", username).await;
        self.type_into("#password", password).await;
        self.click_css("#login-button").await;
        // Wait for the form's answer to arrive: a `goto` issued while the POST is still in
        // flight would be overtaken by its redirect.
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.url().await.ends_with("/ui/login") && self.find_now("#login-error").await.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn quit(mut self) {
        let _ = self.try_cmd(reqwest::Method::DELETE, "", json!({})).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close the browser through chromedriver first (a test that panicked did not quit), so
        // no Chromium is left behind, then stop the driver.
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            let addr = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let req =
                    format!("DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.session);
                let _ = s.write_all(req.as_bytes());
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
