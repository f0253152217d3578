//! Apple School Manager's device service (Automated Device Enrollment, once "DEP"):
//! <https://mdmenrollment.apple.com>. This module is the client, and nothing about Lanyard's
//! rules (when to sync, what to keep: `services::ade`):
//!
//! * [`ServerToken`] — the server token file ASM downloads: S/MIME text around a CMS
//!   EnvelopedData encrypted to the certificate the school uploaded; decrypted, MIME headers and
//!   the JSON between `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----`.
//! * [`AdeClient`] — an OAuth 1.0a-signed `GET /session` for the `X-ADM-Auth-Session` that every
//!   other call carries (renewed on 401, or a 403 `FORBIDDEN`, and the call retried once; a fresh
//!   one in a response is used from then on); 429 and 503 wait for `Retry-After` (or back off)
//!   and try again; 403 `T_C_NOT_SIGNED` and the 400 cursor codes (`EXPIRED_CURSOR`, ...) come
//!   back as [`AdeError`] variants the caller acts on.
//!
//! Apple documents no 429 or 503 for this service (only per-device `THROTTLED` when assigning
//! profiles, from protocol version 9); waiting on them is defensive. Error bodies are Apple's bare
//! code strings (`EXPIRED_CURSOR`), or quoted ones from Apple's simulator: both are read.
//! Written here rather than with an OAuth crate: the one signed call is a fixed-shape GET, a few
//! lines over OpenSSL's HMAC-SHA1, where a crate would add a second HTTP stack.

use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Apple's service.
pub const ADE_PRODUCTION_URL: &str = "https://mdmenrollment.apple.com";
/// The protocol version Lanyard speaks: 7 is the first that says `iPadOS` for iPads.
const PROTOCOL_VERSION: &str = "7";
const USER_AGENT: &str = concat!("Lanyard/", env!("CARGO_PKG_VERSION"));
/// Apple's largest page, and the most serials per profile request.
pub const PAGE_LIMIT: usize = 1000;

/// Apple's skip keys: the Setup Assistant panes an ADE profile may skip (`skip_setup_items`),
/// as Apple's schema lists them (`apple-device-management/other/skipkeys.yaml`).
pub const SKIP_KEYS: [&str; 45] = [
    "Accessibility",
    "ActionButton",
    "Android",
    "Appearance",
    "AppleID",
    "AppStore",
    "Biometric",
    "CameraButton",
    "DeviceToDeviceMigration",
    "Diagnostics",
    "DisplayTone",
    "EnableLockdownMode",
    "FileVault",
    "HomeButtonSensitivity",
    "iCloudDiagnostics",
    "iCloudStorage",
    "iMessageAndFaceTime",
    "Intelligence",
    "Keyboard",
    "Location",
    "MessagingActivationUsingPhoneNumber",
    "OnBoarding",
    "Passcode",
    "Payment",
    "Privacy",
    "Restore",
    "RestoreCompleted",
    "ScreenSaver",
    "Safety",
    "ScreenTime",
    "SIMSetup",
    "Siri",
    "SoftwareUpdate",
    "SpokenLanguage",
    "TapToSetup",
    "TermsOfAddress",
    "TOS",
    "TVHomeScreenSync",
    "TVProviderSignIn",
    "TVRoom",
    "UpdateCompleted",
    "Wallpaper",
    "WatchMigration",
    "Welcome",
    "Zoom",
];

// ---- the server token ------------------------------------------------------------------------

/// The four OAuth values and the expiry in a server token file.
#[derive(Clone, Serialize, Deserialize)]
pub struct ServerToken {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_secret: String,
    pub access_token_expiry: String,
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerToken")
            .field("consumer_key", &self.consumer_key)
            .field("expiry", &self.access_token_expiry)
            .finish_non_exhaustive()
    }
}

/// Why a server token file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(
        "this is not a server token file from Apple School Manager: download it in ASM (Preferences, your MDM server, Download Token) \
         and upload the .p7m file as it is"
    )]
    NotSmime,
    #[error(
        "this server token was encrypted to another public key, so Lanyard cannot open it: it was downloaded for another MDM server, \
         or before Lanyard's public key (GET /api/v1/ade/public-key) was uploaded to this one. Upload Lanyard's key to the MDM server \
         in Apple School Manager, then download the token again"
    )]
    WrongKey,
    #[error("the token file opened, but holds no -----BEGIN MESSAGE----- block with the token in it")]
    NoMessage,
    #[error("the token in the file is not the JSON Apple writes: {0}")]
    BadJson(String),
}

impl ServerToken {
    /// Opens a token file with Lanyard's ADE key pair.
    pub fn from_file(file: &[u8], cert: &X509, key: &PKey<Private>) -> Result<ServerToken, TokenFileError> {
        let p7 = Pkcs7::from_smime(file)
            .map(|(p7, _)| p7)
            .or_else(|_| Pkcs7::from_der(file))
            .or_else(|_| Pkcs7::from_pem(file))
            .map_err(|_| TokenFileError::NotSmime)?;
        let inner = p7.decrypt(key, cert, Pkcs7Flags::empty()).map_err(|_| TokenFileError::WrongKey)?;
        let _ = openssl::error::ErrorStack::get();
        Self::from_message(&String::from_utf8_lossy(&inner))
    }

    /// The JSON between the message markers (or the whole body after the MIME headers).
    pub fn from_message(text: &str) -> Result<ServerToken, TokenFileError> {
        let json = match (text.find("-----BEGIN MESSAGE-----"), text.find("-----END MESSAGE-----")) {
            (Some(a), Some(b)) if b > a => &text[a + "-----BEGIN MESSAGE-----".len()..b],
            _ => text.split_once("\r\n\r\n").or_else(|| text.split_once("\n\n")).map(|(_, body)| body).unwrap_or(text),
        };
        let json = json.trim();
        if !json.starts_with('{') {
            return Err(TokenFileError::NoMessage);
        }
        let token: ServerToken = serde_json::from_str(json).map_err(|e| TokenFileError::BadJson(e.to_string()))?;
        for (name, v) in [
            ("consumer_key", &token.consumer_key),
            ("consumer_secret", &token.consumer_secret),
            ("access_token", &token.access_token),
            ("access_secret", &token.access_secret),
        ] {
            if v.trim().is_empty() {
                return Err(TokenFileError::BadJson(format!("{name} is empty")));
            }
        }
        Ok(token)
    }

    /// `access_token_expiry` as an instant (Apple writes `2027-12-07T10:00:00Z`).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let s = self.access_token_expiry.trim();
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|t| t.and_utc()))
            .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc()))
    }
}

// ---- OAuth 1.0a --------------------------------------------------------------------------------

/// RFC 3986 percent-encoding of everything but the unreserved characters (RFC 5849 §3.6).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Authorization` header of `GET url` (the session endpoint), signed HMAC-SHA1 with the
/// token's consumer and access secrets.
pub fn oauth_header(url: &str, token: &ServerToken, timestamp: i64, nonce: &str) -> String {
    let timestamp = timestamp.to_string();
    let mut params = [
        ("oauth_consumer_key", token.consumer_key.as_str()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", timestamp.as_str()),
        ("oauth_token", token.access_token.as_str()),
        ("oauth_version", "1.0"),
    ];
    params.sort();
    let normalized = params.iter().map(|(k, v)| format!("{}={}", pct(k), pct(v))).collect::<Vec<_>>().join("&");
    let base = format!("GET&{}&{}", pct(url), pct(&normalized));
    let key = format!("{}&{}", pct(&token.consumer_secret), pct(&token.access_secret));
    let signature = hmac_sha1(key.as_bytes(), base.as_bytes());
    format!(
        "OAuth realm=\"ADM\", oauth_consumer_key=\"{}\", oauth_token=\"{}\", oauth_signature_method=\"HMAC-SHA1\", oauth_signature=\"{}\", \
         oauth_timestamp=\"{timestamp}\", oauth_nonce=\"{}\", oauth_version=\"1.0\"",
        pct(&token.consumer_key),
        pct(&token.access_token),
        pct(&B64.encode(signature)),
        pct(nonce)
    )
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let pkey = PKey::hmac(key).and_then(|k| {
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &k)?;
        signer.update(data)?;
        signer.sign_to_vec()
    });
    pkey.unwrap_or_default()
}

// ---- Apple's objects -------------------------------------------------------------------------

/// `GET /account`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct AccountDetail {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub server_uuid: String,
    #[serde(default)]
    pub admin_id: Option<String>,
    #[serde(default)]
    pub org_name: String,
    #[serde(default)]
    pub org_email: Option<String>,
    #[serde(default)]
    pub org_type: Option<String>,
    #[serde(default)]
    pub org_version: Option<String>,
}

/// A device record from `POST /server/devices` or `POST /devices/sync`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct AdeDevice {
    pub serial_number: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub asset_tag: Option<String>,
    #[serde(default)]
    pub profile_status: Option<String>,
    #[serde(default)]
    pub profile_uuid: Option<String>,
    #[serde(default)]
    pub profile_assign_time: Option<String>,
    #[serde(default)]
    pub profile_push_time: Option<String>,
    #[serde(default)]
    pub device_assigned_date: Option<String>,
    #[serde(default)]
    pub device_assigned_by: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub device_family: Option<String>,
    #[serde(default)]
    pub op_type: Option<String>,
    #[serde(default)]
    pub op_date: Option<String>,
    #[serde(default)]
    pub mdm_migration_deadline: Option<String>,
}

/// One page of devices.
#[derive(Debug, Clone, Deserialize)]
pub struct DevicePage {
    #[serde(default)]
    pub devices: Vec<AdeDevice>,
    pub cursor: String,
    #[serde(default)]
    pub more_to_follow: bool,
    #[serde(default)]
    pub fetched_until: Option<String>,
}

/// The answer to defining or assigning a profile: each serial's result (`SUCCESS`,
/// `NOT_ACCESSIBLE`, `FAILED`, `THROTTLED`).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ProfileResult {
    #[serde(default)]
    pub profile_uuid: Option<String>,
    #[serde(default)]
    pub devices: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

// ---- errors ----------------------------------------------------------------------------------

/// What went wrong talking to Apple.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdeError {
    #[error(
        "Apple refused the server token ({0}): it has expired or been replaced by a newer download. Download a new token in Apple School \
         Manager and upload it to Lanyard"
    )]
    Unauthorized(String),
    #[error("Apple School Manager has new terms and conditions: an administrator must sign in to Apple School Manager and accept them")]
    TermsNotSigned,
    #[error("Apple refused access (ACCESS_DENIED): this MDM server's token does not allow that request")]
    AccessDenied,
    /// One of the 400 cursor codes: `EXPIRED_CURSOR`, `INVALID_CURSOR`, `EXHAUSTED_CURSOR`, `CURSOR_REQUIRED`.
    #[error("Apple refused the cursor: {0}")]
    Cursor(String),
    #[error("Apple's service is busy (HTTP {status}) and still was after {attempts} tries")]
    Busy { status: u16, attempts: u32 },
    #[error("Apple answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("could not reach Apple's device service: {0}")]
    Transport(String),
    #[error("Apple's answer could not be read: {0}")]
    Decode(String),
}

/// The code in an error body, without the quotes the simulator adds.
fn error_code(body: &[u8]) -> String {
    String::from_utf8_lossy(body).trim().trim_matches('"').trim().to_owned()
}

// ---- the client ------------------------------------------------------------------------------

/// How long to wait and how often to try.
#[derive(Debug, Clone)]
pub struct AdeConfig {
    /// Tries of one call when Apple answers 429 or 503 (or the connection fails).
    pub attempts: u32,
    /// The longest wait between tries, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// The first back-off when no `Retry-After` is given; doubled each try.
    pub first_backoff: Duration,
    pub request_timeout: Duration,
}

impl Default for AdeConfig {
    fn default() -> Self {
        AdeConfig {
            attempts: 5,
            max_wait: Duration::from_secs(120),
            first_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(60),
        }
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A client for one server token.
pub struct AdeClient {
    base: String,
    host: String,
    port: u16,
    tls: bool,
    token: ServerToken,
    config: AdeConfig,
    connector: SslConnector,
    session: std::sync::Mutex<Option<String>>,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// One HTTP answer.
struct Answer {
    status: u16,
    session: Option<String>,
    retry_after: Option<u64>,
    body: Bytes,
}

impl AdeClient {
    /// A client of `base_url` (Apple's, or a mock's); `extra_ca_pem` is trusted besides the
    /// system's roots.
    pub fn new(base_url: &str, token: ServerToken, extra_ca_pem: Option<&[u8]>, config: AdeConfig) -> Result<AdeClient, AdeError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().map_err(|_| AdeError::Transport(format!("not a URL: {base}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(AdeError::Transport(format!("not an http(s) URL: {base}"))),
        };
        let host = uri.host().ok_or_else(|| AdeError::Transport(format!("no host in {base}")))?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connector = (|| {
            let mut b = SslConnector::builder(SslMethod::tls_client())?;
            b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
            if let Some(pem) = extra_ca_pem {
                for ca in X509::stack_from_pem(pem)? {
                    b.cert_store_mut().add_cert(ca)?;
                }
            }
            Ok::<_, openssl::error::ErrorStack>(b.build())
        })()
        .map_err(|e| AdeError::Transport(format!("TLS set-up: {e}")))?;
        Ok(AdeClient { base, host, port, tls, token, config, connector, session: std::sync::Mutex::new(None), conn: Mutex::new(None) })
    }

    pub async fn account(&self) -> Result<AccountDetail, AdeError> {
        self.call_json(http::Method::GET, "/account", None).await
    }

    /// `POST /server/devices`: every device assigned to this server, a page at a time.
    pub async fn fetch_devices(&self, cursor: Option<&str>, limit: usize) -> Result<DevicePage, AdeError> {
        let mut body = serde_json::json!({"limit": limit});
        if let Some(c) = cursor {
            body["cursor"] = Value::String(c.to_owned());
        }
        self.call_json(http::Method::POST, "/server/devices", Some(body)).await
    }

    /// `POST /devices/sync`: what changed since `cursor`.
    pub async fn sync_devices(&self, cursor: &str, limit: usize) -> Result<DevicePage, AdeError> {
        self.call_json(http::Method::POST, "/devices/sync", Some(serde_json::json!({"cursor": cursor, "limit": limit}))).await
    }

    /// `POST /profile`: define a profile (Apple's JSON), returning its uuid.
    pub async fn define_profile(&self, profile: &Value) -> Result<ProfileResult, AdeError> {
        self.call_json(http::Method::POST, "/profile", Some(profile.clone())).await
    }

    /// `PUT /profile/devices`: assign a profile to at most [`PAGE_LIMIT`] serials.
    pub async fn assign_profile(&self, profile_uuid: &str, serials: &[String]) -> Result<ProfileResult, AdeError> {
        self.call_json(http::Method::PUT, "/profile/devices", Some(serde_json::json!({"profile_uuid": profile_uuid, "devices": serials})))
            .await
    }

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, AdeError> {
        let bytes = self.call(method, path, body.map(|b| Bytes::from(b.to_string()))).await?;
        serde_json::from_slice(&bytes).map_err(|e| AdeError::Decode(format!("{path}: {e}")))
    }

    /// One call with a session: renewed once on 401 (or 403 `FORBIDDEN`), retried on 429 and 503.
    async fn call(&self, method: http::Method, path: &str, body: Option<Bytes>) -> Result<Bytes, AdeError> {
        let mut renewed = false;
        loop {
            let session = match self.current_session() {
                Some(s) => s,
                None => self.new_session().await?,
            };
            let answer = self.send_retrying(method.clone(), path, Some(&session), None, body.clone()).await?;
            if let Some(fresh) = &answer.session {
                self.set_session(Some(fresh.clone()));
            }
            let code = error_code(&answer.body);
            match answer.status {
                200..=299 => return Ok(answer.body),
                401 | 403 if !renewed && (answer.status == 401 || code == "FORBIDDEN") => {
                    renewed = true;
                    self.set_session(None);
                }
                401 => return Err(AdeError::Unauthorized(format!("HTTP 401 {code}"))),
                _ => return Err(classify(answer.status, code)),
            }
        }
    }

    fn current_session(&self) -> Option<String> {
        self.session.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_session(&self, s: Option<String>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// `GET /session` with the OAuth signature.
    async fn new_session(&self) -> Result<String, AdeError> {
        let url = format!("{}/session", self.base);
        let mut nonce = [0u8; 16];
        openssl::rand::rand_bytes(&mut nonce).map_err(|e| AdeError::Transport(e.to_string()))?;
        let auth = oauth_header(&url, &self.token, Utc::now().timestamp(), &hex::encode(nonce));
        let answer = self.send_retrying(http::Method::GET, "/session", None, Some(&auth), None).await?;
        let code = error_code(&answer.body);
        match answer.status {
            200..=299 => {
                #[derive(Deserialize)]
                struct Session {
                    auth_session_token: String,
                }
                let s: Session = serde_json::from_slice(&answer.body).map_err(|e| AdeError::Decode(format!("/session: {e}")))?;
                self.set_session(Some(s.auth_session_token.clone()));
                Ok(s.auth_session_token)
            }
            401 => Err(AdeError::Unauthorized(format!("HTTP 401 {code}"))),
            s => Err(classify(s, code)),
        }
    }

    /// Send, waiting and trying again on 429, 503 and broken connections.
    async fn send_retrying(
        &self,
        method: http::Method,
        path: &str,
        session: Option<&str>,
        authorization: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Answer, AdeError> {
        let mut backoff = self.config.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result =
                tokio::time::timeout(self.config.request_timeout, self.send(method.clone(), path, session, authorization, body.clone()))
                    .await
                    .unwrap_or_else(|_| Err(AdeError::Transport(format!("{path}: no answer in {:?}", self.config.request_timeout))));
            let wait = match &result {
                Ok(a) if a.status == 429 || a.status == 503 => {
                    if attempt >= self.config.attempts {
                        return Err(AdeError::Busy { status: a.status, attempts: attempt });
                    }
                    a.retry_after.map(Duration::from_secs).unwrap_or(backoff)
                }
                Err(AdeError::Transport(_)) if attempt < self.config.attempts => backoff,
                _ => return result,
            };
            let wait = wait.min(self.config.max_wait);
            tracing::info!(path, attempt, wait_secs = wait.as_secs_f64(), "Apple's device service asked to wait; trying again");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.config.max_wait);
        }
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        session: Option<&str>,
        authorization: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Answer, AdeError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(
                http::header::HOST,
                if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
                    self.host.clone()
                } else {
                    format!("{}:{}", self.host, self.port)
                },
            )
            .header(http::header::USER_AGENT, USER_AGENT)
            .header("X-Server-Protocol-Version", PROTOCOL_VERSION)
            .header(http::header::ACCEPT, "application/json");
        if let Some(s) = session {
            req = req.header("X-ADM-Auth-Session", s);
        }
        if let Some(a) = authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json;charset=UTF8");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| AdeError::Transport(e.to_string()))?;
        let mut guard = self.conn.lock().await;
        let mut sender = match guard.take() {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.connect().await?,
            },
            None => self.connect().await?,
        };
        let resp = sender.send_request(req).await.map_err(|e| AdeError::Transport(format!("{path}: {e}")))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let session = header("X-ADM-Auth-Session");
        let retry_after = header("Retry-After").and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.into_body().collect().await.map_err(|e| AdeError::Transport(format!("{path}: {e}")))?.to_bytes();
        *guard = Some(sender);
        Ok(Answer { status, session, retry_after, body })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, AdeError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| AdeError::Transport(format!("connecting to {}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if self.tls {
            let ssl = self
                .connector
                .configure()
                .and_then(|c| c.into_ssl(&self.host))
                .map_err(|e| AdeError::Transport(format!("TLS set-up: {e}")))?;
            let mut tls = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| AdeError::Transport(format!("TLS set-up: {e}")))?;
            Pin::new(&mut tls).connect().await.map_err(|e| AdeError::Transport(format!("TLS handshake with {}: {e}", self.host)))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| AdeError::Transport(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A non-2xx answer other than the session's 401.
fn classify(status: u16, code: String) -> AdeError {
    match (status, code.as_str()) {
        (403, c) if c.contains("T_C_NOT_SIGNED") => AdeError::TermsNotSigned,
        (403, c) if c.contains("ACCESS_DENIED") => AdeError::AccessDenied,
        (400, c) if c.ends_with("_CURSOR") || c == "CURSOR_REQUIRED" => AdeError::Cursor(c.to_owned()),
        (s, _) => AdeError::Status { status: s, body: code.chars().take(200).collect() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ServerToken {
        ServerToken {
            consumer_key: "CK_00fadb3d36c6094cf479838455321b7c".into(),
            consumer_secret: "CS_secret".into(),
            access_token: "AT_O2109279022Oe03b641fd6f07d7face7894211d521fd8bef09c3O137392".into(),
            access_secret: "AS_secret".into(),
            access_token_expiry: "2027-12-07T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_oauth_signature_is_rfc_5849_hmac_sha1() {
        // Recomputed independently: base string and key as RFC 5849 §3.4 builds them.
        let t = token();
        let h = oauth_header("https://mdmenrollment.apple.com/session", &t, 137131200, "4572616e48616d6d65724c61686176");
        let base = "GET&https%3A%2F%2Fmdmenrollment.apple.com%2Fsession&oauth_consumer_key%3DCK_00fadb3d36c6094cf479838455321b7c%26\
                    oauth_nonce%3D4572616e48616d6d65724c61686176%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131200%26\
                    oauth_token%3DAT_O2109279022Oe03b641fd6f07d7face7894211d521fd8bef09c3O137392%26oauth_version%3D1.0";
        let expected = pct(&B64.encode(hmac_sha1(b"CS_secret&AS_secret", base.as_bytes())));
        assert!(h.starts_with("OAuth realm=\"ADM\", oauth_consumer_key=\"CK_00fadb3d36c6094cf479838455321b7c\""), "{h}");
        assert!(h.contains(&format!("oauth_signature=\"{expected}\"")), "{h}");
        assert_eq!(
            hmac_sha1(b"key", b"The quick brown fox jumps over the lazy dog"),
            hex::decode("de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9").unwrap()
        );
    }

    #[test]
    fn the_token_is_read_from_the_message_markers_and_expiry_parsed() {
        let json = serde_json::to_string(&token()).unwrap();
        let mime = format!(
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n{json}\r\n-----END MESSAGE-----\r\n"
        );
        let t = ServerToken::from_message(&mime).unwrap();
        assert_eq!(t.consumer_key, "CK_00fadb3d36c6094cf479838455321b7c");
        assert_eq!(t.expires_at().unwrap().to_rfc3339(), "2027-12-07T10:00:00+00:00");
        assert!(matches!(ServerToken::from_message("Content-Type: text/plain\r\n\r\nhello"), Err(TokenFileError::NoMessage)));
        assert!(matches!(
            ServerToken::from_message("-----BEGIN MESSAGE-----{\"consumer_key\":1}-----END MESSAGE-----"),
            Err(TokenFileError::BadJson(_))
        ));
    }

    #[test]
    fn skip_keys_are_apples() {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/apple-device-management/other/skipkeys.yaml"))
            .expect("Apple's schema beside the repository (../shared)");
        let listed: Vec<&str> = yaml.lines().filter_map(|l| l.strip_prefix("- key: ")).map(str::trim).collect();
        assert_eq!(listed, SKIP_KEYS.to_vec());
    }

    #[test]
    fn error_bodies_bare_or_quoted_name_the_code() {
        assert!(matches!(classify(400, error_code(b"EXPIRED_CURSOR")), AdeError::Cursor(c) if c == "EXPIRED_CURSOR"));
        assert!(matches!(classify(400, error_code(b"\"INVALID_CURSOR\"\n")), AdeError::Cursor(c) if c == "INVALID_CURSOR"));
        assert!(matches!(classify(403, error_code(b"T_C_NOT_SIGNED")), AdeError::TermsNotSigned));
        assert!(matches!(classify(400, error_code(b"CONFIG_NAME_REQUIRED")), AdeError::Status { status: 400, .. }));
    }
}
