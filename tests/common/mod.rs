//! Test harness: a real Lanyard server on a loopback port, on SQLite or PostgreSQL.
//!
//! Every backend-dependent test is written once and run on both by `backend_tests!`. PostgreSQL
//! tests need `LANYARD_TEST_POSTGRES_URL` (an admin URL; each test gets its own fresh database);
//! without it they are skipped, unless `LANYARD_REQUIRE_POSTGRES=1` (CI), where they fail.
#![allow(dead_code, unused_macros)]

use std::collections::BTreeMap;
use std::sync::Arc;

use lanyard::clock::{Clock, ManualClock, SystemClock};
use lanyard::config::Config;
use lanyard::context::Ctx;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub mod browser;
pub mod child;
pub mod device;
pub mod push;

pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// A restrictions profile (AirDrop off), as a technician would upload it.
pub const AIRDROP_PROFILE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>PayloadType</key><string>Configuration</string><key>PayloadVersion</key><integer>1</integer>
<key>PayloadIdentifier</key><string>uk.sch.test.restrictions</string><key>PayloadUUID</key><string>6C1D8E52-0000-4000-8000-000000000001</string>
<key>PayloadDisplayName</key><string>Test restrictions</string>
<key>PayloadContent</key><array><dict>
<key>PayloadType</key><string>com.apple.applicationaccess</string><key>PayloadVersion</key><integer>1</integer>
<key>PayloadIdentifier</key><string>uk.sch.test.restrictions.a</string><key>PayloadUUID</key><string>6C1D8E52-0000-4000-8000-000000000002</string>
<key>allowAirDrop</key><false/>
</dict></array></dict></plist>"#;

/// The same profile missing a payload's PayloadUUID.
pub fn airdrop_profile_broken() -> String {
    AIRDROP_PROFILE.replace("<key>PayloadUUID</key><string>6C1D8E52-0000-4000-8000-000000000002</string>", "")
}

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL database, or None (test skipped) when no server is configured.
    pub async fn postgres() -> Option<Backend> {
        let Ok(admin_url) = std::env::var("LANYARD_TEST_POSTGRES_URL") else {
            if std::env::var("LANYARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("LANYARD_REQUIRE_POSTGRES=1 but LANYARD_TEST_POSTGRES_URL is not set");
            }
            eprintln!("skipping the PostgreSQL run: LANYARD_TEST_POSTGRES_URL is not set (.ci/run sets it)");
            return None;
        };
        let name = format!("lanyard_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.expect("connect to the test PostgreSQL server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create test database");
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        Some(Backend::Postgres(format!("{base}/{name}")))
    }

    /// Drop this test's PostgreSQL database (after the test passed: a failed test's database
    /// stays for a look). Without this every run left a hundred databases behind.
    pub async fn drop_database(&self) {
        let (Backend::Postgres(url), Ok(admin_url)) = (self, std::env::var("LANYARD_TEST_POSTGRES_URL")) else { return };
        let Some((_, name)) = url.rsplit_once('/') else { return };
        if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut conn).await;
        }
    }

    pub fn database_url(&self, dir: &std::path::Path) -> String {
        match self {
            Backend::Sqlite => {
                format!("sqlite://{}", dir.join("data").join("lanyard.db").display())
            }
            Backend::Postgres(url) => url.clone(),
        }
    }
}

/// For each `async fn NAME(b: Backend)`, generate the tests `NAME::sqlite` and `NAME::postgres`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(b) = crate::common::Backend::postgres().await {
                        super::$name(b.clone()).await;
                        b.drop_database().await;
                    }
                }
            }
        )*
    };
}

/// Check a file with `../shared/tools/validate_plist.py MODE FILE` (Apple's schema).
pub fn validate_plist(mode: &str, file: &std::path::Path) -> Result<String, String> {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/tools/validate_plist.py"))
        .find(|p| p.is_file())
        .expect("shared/tools/validate_plist.py above the crate");
    let out = std::process::Command::new("python3").arg(tool).arg(mode).arg(file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

pub struct TestServer {
    /// Where the tests reach the server.
    pub base: String,
    pub ctx: Ctx,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub clock: Option<Arc<ManualClock>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct Options {
    pub tls: bool,
    pub manual_clock: bool,
    pub env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options { tls: false, manual_clock: false, env: vec![] }
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, opts: Options) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("LANYARD_DATA_DIR".into(), dir.path().join("data").display().to_string());
        env.insert("LANYARD_DATABASE_URL".into(), backend.database_url(dir.path()));
        env.insert("LANYARD_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("LANYARD_HOSTNAME".into(), "localhost".into());
        env.insert("LANYARD_TLS".into(), opts.tls.to_string());
        env.insert("LANYARD_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into());
        env.insert("LANYARD_ORGANIZATION".into(), "Test Primary School".into());
        // Never Apple's real push service from a test: a closed local port unless a mock is given.
        env.insert("LANYARD_APNS_URL".into(), "https://127.0.0.1:9".into());
        for (k, v) in &opts.env {
            env.insert(k.to_string(), v.clone());
        }
        let config = Config::from_sources(Some(std::path::Path::new("/nonexistent-lanyard.toml")).filter(|p| p.exists()), &env).unwrap();
        let listeners = lanyard::faces::server::bind(&config.listen).await.unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let public_url = config.effective_public_url(Some(addr));
        // Where the tests reach the server (the public URL may name a proxy in front of it).
        let local = format!("{}://localhost:{}", if opts.tls { "https" } else { "http" }, addr.port());
        let manual = opts.manual_clock.then(|| Arc::new(ManualClock::new(chrono::Utc::now())));
        let clock: Arc<dyn Clock> = match &manual {
            Some(m) => m.clone(),
            None => Arc::new(SystemClock),
        };
        let prepared = lanyard::setup::prepare(config, public_url.clone(), clock).await.unwrap();
        let ctx = prepared.ctx;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lanyard::faces::server::serve(
            ctx.clone(),
            listeners,
            Box::pin(async move {
                let _ = stopped.await;
            }),
        ));
        // A connection idle for a while may have been closed by the server by the time it is
        // reused; the tests are about the server, not about retrying stale connections.
        let mut client = reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_millis(300));
        if opts.tls {
            let ca = reqwest::Certificate::from_pem(&ctx.pki.ca_pem).unwrap();
            client = client.add_root_certificate(ca);
        }
        TestServer { base: local, ctx, backend, dir, client: client.build().unwrap(), clock: manual, stop: Some(stop), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stop serving and wait for the drain.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(serde_json::json!({"username": username, "password": password})))
            .await;
        assert_eq!(status, StatusCode::OK, "login as {username}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Create an operator with `role` and return a session token for them.
    pub async fn operator(&self, username: &str, role: &str) -> String {
        let admin = self.admin().await;
        let pw = format!("{username}-password-123");
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/operators",
                Some(&admin),
                Some(serde_json::json!({"username": username, "password": pw, "role": role})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        self.login(username, &pw).await
    }

    /// One JSON request: (status, JSON body or Null).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let build = || {
            let mut req = self.client.request(method.clone(), self.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            req
        };
        let resp = match build().send().await {
            Ok(r) => r,
            // Under heavy load a pooled keep-alive connection can be closed under a GET; a GET
            // is safe to send again. Anything else must not be retried behind the test's back.
            Err(e) if method == Method::GET && e.is_request() => build().send().await.unwrap(),
            Err(e) => panic!("{method} {path}: {e:?}"),
        };
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Run SQL directly against the database, behind the server's back.
    pub async fn raw_sql(&self, statements: &[&str]) {
        match &self.backend {
            Backend::Sqlite => {
                let url = self.backend.database_url(self.dir.path());
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
                for s in statements {
                    sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&mut conn).await.unwrap();
                }
            }
            Backend::Postgres(url) => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
                for s in statements {
                    sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&mut conn).await.unwrap();
                }
            }
        }
    }
}

/// Assert the uniform error shape and return its code.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    assert!(body["error"].is_string(), "error body must have `error`: {body}");
    body["code"].as_str().unwrap_or_else(|| panic!("error body must have `code`: {body}")).to_owned()
}
