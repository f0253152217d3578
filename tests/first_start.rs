//! What a new user does: `lanyard serve` in an empty directory, with no configuration at all.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Backend;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_lanyard");

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn lanyard(dir: &std::path::Path, b: &Backend, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env_remove("LANYARD_ADMIN_PASSWORD").env("LANYARD_LISTEN", "127.0.0.1:0");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LANYARD_") && k != "LANYARD_LISTEN") {
        c.env_remove(k);
    }
    if let Backend::Postgres(url) = b {
        c.env("LANYARD_DATABASE_URL", url);
    }
    c
}

fn start(dir: &std::path::Path, b: &Backend) -> Running {
    let mut child = lanyard(dir, b, &["serve"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Running { child, lines }
}

impl Running {
    /// Lines printed up to and including the one containing `until`.
    fn read_until(&self, until: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line =
                self.lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("server never printed {until:?}; got {seen:?}"));
            let done = line.contains(until);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

backend_tests!(serve_in_an_empty_directory);

async fn serve_in_an_empty_directory(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &b);
    let printed = server.read_until("Device CA:");
    let printed = [printed, server.read_until("admin password:")].concat();
    let api_line = printed.iter().find(|l| l.contains("Lanyard API:")).unwrap();
    let port: u16 =
        api_line.rsplit(':').next().unwrap().trim_end_matches("/api/v1/ (OpenAPI at /api/v1/openapi.json)").parse().unwrap_or_else(|_| {
            let url = api_line.split_whitespace().nth(2).unwrap();
            url.split(':').nth(2).unwrap().split('/').next().unwrap().parse().unwrap()
        });
    let password = printed.iter().find(|l| l.contains("admin password:")).unwrap().rsplit(' ').next().unwrap().to_owned();
    assert!(api_line.starts_with("Lanyard API:     https://"), "TLS is on by default: {api_line}");

    // The data directory: private, with keys 0600 and the CA where the README says.
    let data = dir.path().join("data");
    assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
    for f in ["ca.key", "tls.key", "signing.key", "jwt.key", "seal.key"] {
        assert_eq!(std::fs::metadata(data.join(f)).unwrap().mode() & 0o777, 0o600, "{f}");
    }
    let ca = std::fs::read(data.join("ca.pem")).unwrap();
    if matches!(b, Backend::Sqlite) {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", data.join("lanyard.db").display()))
            .await
            .unwrap();
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
        assert_eq!(mode, "wal");
    }

    // Log in over real TLS with the printed password, make an auditor token, read the log with it.
    let client = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    let base = format!("https://localhost:{port}");
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = login["token"].as_str().unwrap_or_else(|| panic!("login failed: {login}"));
    let token: serde_json::Value = client
        .post(format!("{base}/api/v1/api-tokens"))
        .bearer_auth(jwt)
        .json(&json!({"name": "inventory audit", "role": "auditor"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let audit: serde_json::Value = client
        .get(format!("{base}/api/v1/audit"))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<_> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["api_token.create", "auth.login", "operator.create"]);
    let served_ca = client.get(format!("{base}/mdm/ca.pem")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served_ca.as_ref(), ca.as_slice());

    // SIGTERM drains and exits 0.
    assert!(server.sigterm().success());

    // A second start reuses everything and prints no password.
    let again = start(dir.path(), &b);
    let printed = again.read_until("Device CA:");
    assert!(printed.iter().all(|l| !l.contains("password") && !l.contains("Created")), "{printed:?}");
    assert_eq!(std::fs::read(data.join("ca.pem")).unwrap(), ca);
    assert!(again.sigterm().success());

    // The chain verifies from the command line, with the same configuration as serve.
    let out = lanyard(dir.path(), &b, &["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 entries"), "{}", String::from_utf8_lossy(&out.stdout));

    // Locked out? reset-password prints a new one that works.
    let out = lanyard(dir.path(), &b, &["admin", "reset-password", "admin"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("admin password: "), "{text}");
}

#[test]
fn init_sets_up_without_serving_and_help_explains() {
    let dir = tempfile::tempdir().unwrap();
    let out = lanyard(dir.path(), &Backend::Sqlite, &["init"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("admin password: "), "{text}");
    assert!(dir.path().join("data/ca.pem").exists() && dir.path().join("data/lanyard.db").exists());
    let again = lanyard(dir.path(), &Backend::Sqlite, &["init"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&again.stdout).contains("password"));

    let help = String::from_utf8_lossy(&Command::new(BIN).arg("--help").output().unwrap().stdout).into_owned();
    for cmd in ["serve", "init", "admin", "audit"] {
        assert!(help.contains(cmd), "{help}");
    }
    let help = String::from_utf8_lossy(&Command::new(BIN).args(["admin", "--help"]).output().unwrap().stdout).into_owned();
    assert!(help.contains("reset-password"), "{help}");
}

#[test]
fn invalid_configuration_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = lanyard(dir.path(), &Backend::Sqlite, &["init"]).env("LANYARD_TLS", "perhaps").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("LANYARD_TLS") && err.contains("tls"), "{err}");
    std::fs::write(dir.path().join("lanyard.toml"), "listen = \"nowhere\"\n").unwrap();
    let out = lanyard(dir.path(), &Backend::Sqlite, &["init"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen") && err.trim().lines().count() == 1, "{err}");
    assert!(!dir.path().join("data").exists(), "a bad configuration changes nothing");
}
