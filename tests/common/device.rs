//! Playing a device against the test server: real CMS signatures over real plists.
#![allow(dead_code)]

use lanyard_bench::sim::{Kind, SimDevice, SimIdentity, new_key};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use reqwest::StatusCode;
use serde_json::json;

use super::TestServer;

pub const TOPIC: &str = "com.apple.mgmt.External.7d2b5c0e-4a55-4f39-9f6b-2d1b1c3e8a10";

impl TestServer {
    /// Enrol with Debian's `scepclient`, as a device's SCEP payload does; returns (cert.pem,
    /// key.pem) paths, or the client's output on failure.
    pub fn scepclient(&self, challenge: &str, name: &str) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let out = std::process::Command::new("scepclient")
            .args(["-server-url", &self.url("/scep"), "-challenge", challenge, "-cn", "Lanyard device identity", "-keySize", "2048"])
            .arg("-private-key")
            .arg(&key)
            .arg("-certificate")
            .arg(&cert)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scepclient: {e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() && cert.exists() { Ok((cert, key)) } else { Err(text) }
    }

    /// Load a push certificate shaped like Apple's (topic `TOPIC`), as an admin would.
    pub async fn load_push_cert(&self) {
        let (cert, key, _, _) = lanyard_mocks::test_push_certificate(TOPIC, 365);
        let (st, b) = self.upload_push_cert(&cert, &key, "").await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }

    /// `PUT /api/v1/push-cert` with a PEM pair; `query` e.g. `?force=true`.
    pub async fn upload_push_cert(&self, cert: &X509, key: &PKey<Private>, query: &str) -> (StatusCode, serde_json::Value) {
        let admin = self.admin().await;
        let body = json!({
            "cert_pem": String::from_utf8(cert.to_pem().unwrap()).unwrap(),
            "key_pem": String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        });
        self.call(reqwest::Method::PUT, &format!("/api/v1/push-cert{query}"), Some(&admin), Some(body)).await
    }

    /// A device with an identity from our CA, not yet authenticated.
    pub async fn new_device(&self, kind: Kind) -> SimDevice {
        let key = new_key().unwrap();
        let cert = self.ctx.issue_simulated_identity(&key, "Lanyard device identity").await.unwrap();
        SimDevice::new(kind, TOPIC, cert, key)
    }

    /// Send a check-in message signed by `d`.
    pub async fn checkin(&self, d: &SimDevice, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let sig = d.sign(&body);
        self.device_request("/mdm/checkin", body, Some(sig)).await
    }

    /// Send a command report signed by `d`; the answer is the next command or empty.
    pub async fn connect(&self, d: &SimDevice, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let sig = d.sign(&body);
        self.device_request("/mdm/connect", body, Some(sig)).await
    }

    pub async fn device_request(&self, path: &str, body: Vec<u8>, signature: Option<String>) -> (StatusCode, Vec<u8>) {
        let mut req = self.client.put(self.url(path)).header("content-type", "application/x-apple-aspen-mdm-checkin").body(body);
        if let Some(sig) = signature {
            req = req.header("Mdm-Signature", sig);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.bytes().await.unwrap().to_vec())
    }

    /// Authenticate + TokenUpdate, then answer everything queued until the queue is empty.
    pub async fn enrolled_device(&self, kind: Kind) -> SimDevice {
        let d = self.new_device(kind).await;
        assert_eq!(self.checkin(&d, d.authenticate()).await.0, StatusCode::OK);
        assert_eq!(self.checkin(&d, d.token_update()).await.0, StatusCode::OK);
        self.drain(&d).await;
        d
    }

    /// Idle, then acknowledge every command until the server has nothing more. Returns the
    /// request types answered.
    pub async fn drain(&self, d: &SimDevice) -> Vec<String> {
        let mut answered = Vec::new();
        let (st, mut next) = self.connect(d, d.idle()).await;
        assert_eq!(st, StatusCode::OK);
        while !next.is_empty() {
            let (_, rt, report) = d.answer(&next).expect("a command plist");
            answered.push(rt);
            let (st, n) = self.connect(d, report).await;
            assert_eq!(st, StatusCode::OK);
            next = n;
        }
        answered
    }
}
