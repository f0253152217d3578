//! A mock of Apple School Manager's device service (Automated Device Enrollment, the "DEP API" at
//! `https://mdmenrollment.apple.com`) for Lanyard's tests and benchmarks: a real HTTP/1.1 server
//! on `127.0.0.1:<free port>` that answers as Apple documents and fails the ways Apple fails.
//!
//! * Server token: [`MockAde::token`] is the one token the mock accepts (random values shaped like
//!   Apple's `CK_…`, `CS_…`, `AT_…`, `AS_…`); [`smime_token_file`] wraps its JSON
//!   ([`MockAde::token_json`]) into the `.p7m` file exactly as the portal does.
//! * `GET /session` checks the OAuth 1.0a header (RFC 5849 HMAC-SHA1 over `{url}/session`, with
//!   `url` = [`MockAde::url`]): `400` for missing or duplicated parameters and other signature
//!   methods, `401` for a wrong key, token or signature, a reused nonce, a timestamp more than
//!   5 minutes off, or an expired token. Sessions live 30 minutes of mock clock: Apple does not
//!   document a lifetime, only that an expired one gets `401`.
//! * Every other request needs a live `X-ADM-Auth-Session` (`401` otherwise) and every request a
//!   `User-Agent` (`400 USER_AGENT_MISSING`). Endpoints: `GET /account`, `POST /server/devices`
//!   (fetch), `POST /devices/sync`, `POST /devices` (details), `POST /profile` (define),
//!   `GET /profile?profile_uuid=`, `PUT|POST /profile/devices` (assign), `DELETE
//!   /profile/devices` (clear). Errors are Apple's bare code strings as `text/plain`
//!   (`EXPIRED_CURSOR`, `CONFIG_URL_INVALID`, …).
//! * Devices are kept in assignment order with an append-only change log; cursors are indexes into
//!   them, so every request costs O(page), whatever the number of devices.
//! * Failure knobs: [`MockAde::fail_next`] (status codes with `Retry-After`, dropped connections),
//!   [`MockAde::expire_sessions`], [`MockAde::rotate_session`], [`MockAde::set_stuck_cursor`],
//!   [`MockAde::set_duplicates`], [`MockAde::set_assign_result`],
//!   [`MockAde::set_terms_not_signed`], [`MockAde::set_page_delay`], and a clock of its own
//!   ([`MockAde::advance_clock`]) for cursor, session and token expiry.
//!
//! Where Apple documents nothing (session lifetime, 429/503, the limit over 1000, …) the mock's
//! choice is said at the place it is made.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::X509;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Session lifetime in mock-clock minutes (the mock's choice: Apple documents none).
const SESSION_MINUTES: i64 = 30;
/// "The cursor passed to this endpoint should not be older than 7 days."
const CURSOR_MAX_AGE_DAYS: i64 = 7;
/// Accepted OAuth timestamp skew.
const TIMESTAMP_SKEW_SECONDS: i64 = 300;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Apple: "To avoid performance issues, limit requests to 1000 devices at a time." It does not say
/// what happens above; the mock answers `400 TOO_MANY_DEVICES` (its own code).
const MAX_DEVICES_PER_REQUEST: usize = 1000;
const MAX_BODY: usize = 16 << 20;
const SESSION_HEADER: &str = "x-adm-auth-session";
const JSON_TYPE: &str = "application/json;charset=UTF8";
const TEXT_TYPE: &str = "text/plain;charset=UTF8";

/// The four OAuth values of a server token and its expiry, as in the token file's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdeServerToken {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_secret: String,
    /// As Apple writes it: `2027-12-07T10:00:00Z`.
    pub access_token_expiry: String,
}

impl AdeServerToken {
    /// The JSON Apple puts between `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----`.
    pub fn to_json(&self) -> String {
        json!({
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "access_token": self.access_token,
            "access_secret": self.access_secret,
            "access_token_expiry": self.access_token_expiry,
        })
        .to_string()
    }
}

/// A device as Apple School Manager knows it (the profile fields are the mock's to keep).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockDevice {
    pub serial_number: String,
    pub model: String,
    pub description: String,
    pub color: String,
    pub asset_tag: Option<String>,
    /// `iOS`, `iPadOS`, `OSX`, `tvOS`, `visionOS`.
    pub os: String,
    /// `iPad`, `iPhone`, `iPod`, `Mac`, `AppleTV`, `Vision`.
    pub device_family: String,
    /// Email of the person who assigned it to this MDM server.
    pub device_assigned_by: String,
    /// ISO 8601, protocol version 8 and later.
    pub mdm_migration_deadline: Option<String>,
}

impl MockDevice {
    /// A school iPad with `serial`.
    pub fn ipad(serial: &str) -> MockDevice {
        MockDevice {
            serial_number: serial.to_owned(),
            model: "iPad (10th generation)".to_owned(),
            description: "IPAD 10.9 WI-FI 64GB SILVER".to_owned(),
            color: "SILVER".to_owned(),
            asset_tag: None,
            os: "iPadOS".to_owned(),
            device_family: "iPad".to_owned(),
            device_assigned_by: "it-admin@school.example".to_owned(),
            mdm_migration_deadline: None,
        }
    }
}

/// An injected failure for [`MockAde::fail_next`]; the request it hits changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer `status` with `body` (`text/plain`) and `Retry-After: retry_after` when given.
    /// `GET /session` is not hit (it passes and does not use up the failure).
    Status { status: u16, body: String, retry_after: Option<u64> },
    /// Like [`Failure::Status`], but `GET /session` is hit too.
    SessionStatus { status: u16, body: String, retry_after: Option<u64> },
    /// Close the connection without answering (`GET /session` is not hit).
    Disconnect,
}

impl Failure {
    /// `429` with `Retry-After` (Apple documents no 429 for this service: a defensive case).
    pub fn too_many_requests(retry_after: u64) -> Failure {
        Failure::Status { status: 429, body: "TOO_MANY_REQUESTS".to_owned(), retry_after: Some(retry_after) }
    }

    /// `503`, with `Retry-After` when given.
    pub fn unavailable(retry_after: Option<u64>) -> Failure {
        Failure::Status { status: 503, body: "SERVICE_UNAVAILABLE".to_owned(), retry_after }
    }

    /// `500`.
    pub fn internal_error() -> Failure {
        Failure::Status { status: 500, body: "INTERNAL_SERVER_ERROR".to_owned(), retry_after: None }
    }

    fn hits_session(&self) -> bool {
        matches!(self, Failure::SessionStatus { .. })
    }
}

/// The mock device service. Dropping it stops the server.
pub struct MockAde {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MockAde {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockAde {
    /// Starts a mock on `127.0.0.1:<free port>` with a fresh token, no devices and no profiles.
    pub async fn start() -> io::Result<MockAde> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new(format!("http://{addr}")).map_err(io::Error::other)?));
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(MockAde { state, addr, task })
    }

    /// `http://127.0.0.1:PORT`, what a client uses instead of `https://mdmenrollment.apple.com`
    /// (and signs `{url}/session` with).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server token this mock accepts.
    pub fn token(&self) -> AdeServerToken {
        lock(&self.state).token.clone()
    }

    /// [`Self::token`] as the JSON inside the portal's `.p7m` (see [`smime_token_file`]).
    pub fn token_json(&self) -> String {
        lock(&self.state).token.to_json()
    }

    pub fn server_uuid(&self) -> String {
        lock(&self.state).account.server_uuid.clone()
    }

    pub fn server_name(&self) -> String {
        lock(&self.state).account.server_name.clone()
    }

    pub fn org_name(&self) -> String {
        lock(&self.state).account.org_name.clone()
    }

    /// The `GET /account` answer.
    pub fn account(&self) -> Value {
        lock(&self.state).account_json()
    }

    /// The mock's clock (wall clock plus everything [`Self::advance_clock`] added).
    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.state).now()
    }

    /// Assigns `devices` to this MDM server in ASM: an `added` change each (a device already
    /// assigned is replaced and gets `modified`).
    pub fn add_devices(&self, devices: impl IntoIterator<Item = MockDevice>) {
        let mut st = lock(&self.state);
        for d in devices {
            st.add_device(d);
        }
    }

    /// Edits an assigned device (`modified` change); no-op for a serial not assigned.
    pub fn modify_device(&self, serial: &str, f: impl FnOnce(&mut MockDevice)) {
        let mut st = lock(&self.state);
        let Some(&i) = st.index.get(serial) else { return };
        if !st.devices[i].assigned {
            return;
        }
        let mut device = (*st.devices[i].snap.device).clone();
        f(&mut device);
        device.serial_number = serial.to_owned();
        st.devices[i].snap.device = Arc::new(device);
        st.record(i, "modified");
    }

    /// Unassigns the device from this server in ASM (`deleted` change); no-op if not assigned.
    pub fn delete_device(&self, serial: &str) {
        let mut st = lock(&self.state);
        let Some(&i) = st.index.get(serial) else { return };
        if st.devices[i].assigned {
            st.devices[i].assigned = false;
            st.record(i, "deleted");
        }
    }

    /// What Apple does when the device downloads its profile in Setup Assistant: `profile_status`
    /// `pushed`, `profile_push_time`, a `modified` change. No-op without an assigned profile.
    pub fn mark_pushed(&self, serial: &str) {
        let mut st = lock(&self.state);
        let Some(&i) = st.index.get(serial) else { return };
        if !st.devices[i].assigned || st.devices[i].snap.profile.uuid.is_none() {
            return;
        }
        let now = st.now();
        let p = &mut st.devices[i].snap.profile;
        p.status = "pushed";
        p.push_time = Some(now);
        st.record(i, "modified");
    }

    /// The device as `POST /devices` would show it (`None` if not assigned).
    pub fn device(&self, serial: &str) -> Option<Value> {
        let st = lock(&self.state);
        let &i = st.index.get(serial)?;
        st.devices[i].assigned.then(|| Value::Object(st.devices[i].snap.to_json()))
    }

    /// Moves the mock's clock forward (cursor age, session and token expiry).
    pub fn advance_clock(&self, by: chrono::Duration) {
        lock(&self.state).offset += by;
    }

    /// The next `n` requests fail with `failure` (queued after failures already pending). Unless
    /// the failure is [`Failure::SessionStatus`], `GET /session` passes without using one up.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        lock(&self.state).failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Every session issued so far stops working: the next request with one gets `401`.
    pub fn expire_sessions(&self) {
        lock(&self.state).sessions.clear();
    }

    /// With `on`, each authenticated answer carries a fresh `X-ADM-Auth-Session`. The session it
    /// replaces stops working once the new one has been used, or after one more request with
    /// the old one (for requests already in flight), so a client that ignores the header gets
    /// `401` on its third request and must re-authenticate.
    pub fn rotate_session(&self, on: bool) {
        lock(&self.state).rotate = on;
    }

    /// With `on`, `POST /devices/sync` answers with the cursor it was given and `more_to_follow:
    /// true` forever (the loop other MDMs have hit).
    pub fn set_stuck_cursor(&self, on: bool) {
        lock(&self.state).stuck_cursor = on;
    }

    /// With `on`, each sync record is followed by the previous record of the same serial (older
    /// `op_date`), as Apple warns "this service may return the same device more than once".
    pub fn set_duplicates(&self, on: bool) {
        lock(&self.state).duplicates = on;
    }

    /// `serial`'s answer in `POST /profile` and `PUT|POST /profile/devices` from now on
    /// (`NOT_ACCESSIBLE`, `FAILED`, `THROTTLED`), without assigning; `SUCCESS` restores the
    /// normal behaviour.
    pub fn set_assign_result(&self, serial: &str, result: &str) {
        let mut st = lock(&self.state);
        if result == "SUCCESS" {
            st.assign_overrides.remove(serial);
        } else {
            st.assign_overrides.insert(serial.to_owned(), result.to_owned());
        }
    }

    /// `retry_after_seconds` sent with `THROTTLED` results (default 1: Apple gives no typical
    /// value, and tests should not wait).
    pub fn set_throttle_retry_after(&self, seconds: u64) {
        lock(&self.state).throttle_retry_after = seconds;
    }

    /// With `on`, every request (`GET /session` too) gets `403 T_C_NOT_SIGNED`.
    pub fn set_terms_not_signed(&self, on: bool) {
        lock(&self.state).terms_not_signed = on;
    }

    /// Defined profiles in definition order, each with its `profile_uuid`.
    pub fn profiles(&self) -> Vec<Value> {
        let st = lock(&self.state);
        st.profile_order.iter().filter_map(|u| st.profiles.get(u).cloned()).collect()
    }

    /// The `profile_uuid` assigned to an assigned device.
    pub fn assigned_profile(&self, serial: &str) -> Option<String> {
        let st = lock(&self.state);
        let &i = st.index.get(serial)?;
        st.devices[i].assigned.then(|| st.devices[i].snap.profile.uuid.clone()).flatten()
    }

    /// `empty`, `assigned`, `pushed` or `removed` for an assigned device.
    pub fn device_profile_status(&self, serial: &str) -> Option<String> {
        let st = lock(&self.state);
        let &i = st.index.get(serial)?;
        st.devices[i].assigned.then(|| st.devices[i].snap.profile.status.to_owned())
    }

    /// `(method, path)` of every request received, failed ones included.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.state).requests.clone()
    }

    pub fn request_count(&self, method: &str, path: &str) -> usize {
        lock(&self.state).requests.iter().filter(|(m, p)| m == method && p == path).count()
    }

    /// Latency added before every answer.
    pub fn set_page_delay(&self, d: Duration) {
        lock(&self.state).page_delay = d;
    }
}

/// Writes the server-token file as Apple School Manager does: the token JSON between
/// `-----BEGIN MESSAGE-----` lines in a MIME text part, encrypted (CMS EnvelopedData, AES-256-CBC)
/// to `recipient_cert_pem`, as an S/MIME message (headers, blank line, base64).
pub fn smime_token_file(recipient_cert_pem: &[u8], token_json: &str) -> Result<Vec<u8>, ErrorStack> {
    let cert = X509::from_pem(recipient_cert_pem)?;
    let mut certs = Stack::new()?;
    certs.push(cert)?;
    let inner = format!(
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n{token_json}\r\n-----END MESSAGE-----\r\n"
    );
    let der = Pkcs7::encrypt(&certs, inner.as_bytes(), Cipher::aes_256_cbc(), Pkcs7Flags::BINARY)?.to_der()?;
    let mut out = String::from(concat!(
        "Content-Type: application/pkcs7-mime; name=\"smime.p7m\"; smime-type=enveloped-data\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n",
        "Content-Description: S/MIME Encrypted Message\r\n",
        "\r\n",
    ));
    let b64 = B64.encode(der);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    Ok(out.into_bytes())
}

/// A reference OAuth 1.0a `Authorization` header for `GET {url}` (`url` = `{mock.url()}/session`),
/// in Apple's parameter order, for tests. Lanyard has its own client.
pub fn oauth_header(url: &str, token: &AdeServerToken, timestamp: i64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    let params: Vec<(String, String)> = [
        ("oauth_consumer_key", token.consumer_key.as_str()),
        ("oauth_token", &token.access_token),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", &ts),
        ("oauth_nonce", nonce),
        ("oauth_version", "1.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signature = oauth_signature("GET", url, &params, &token.consumer_secret, &token.access_secret).unwrap_or_default();
    format!(
        "OAuth realm=\"ADM\", oauth_consumer_key=\"{}\", oauth_token=\"{}\", oauth_signature_method=\"HMAC-SHA1\", \
         oauth_signature=\"{}\", oauth_timestamp=\"{ts}\", oauth_nonce=\"{}\", oauth_version=\"1.0\"",
        pct(&token.consumer_key),
        pct(&token.access_token),
        pct(&signature),
        pct(nonce)
    )
}

// ---------------------------------------------------------------------------------------------
// OAuth 1.0a (RFC 5849)

/// RFC 5849 §3.6 percent-encoding: everything but `ALPHA DIGIT - . _ ~`, upper-case hex.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn pct_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                if !h.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// base64(HMAC-SHA1(pct(cs)&pct(as), METHOD&pct(url)&pct(sorted encoded params))).
fn oauth_signature(
    method: &str,
    url: &str,
    params: &[(String, String)],
    consumer_secret: &str,
    access_secret: &str,
) -> Result<String, ErrorStack> {
    let mut enc: Vec<(String, String)> = params.iter().map(|(k, v)| (pct(k), pct(v))).collect();
    enc.sort();
    let normalized = enc.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let base = format!("{method}&{}&{}", pct(url), pct(&normalized));
    let key = PKey::hmac(format!("{}&{}", pct(consumer_secret), pct(access_secret)).as_bytes())?;
    let mut signer = Signer::new(MessageDigest::sha1(), &key)?;
    signer.update(base.as_bytes())?;
    Ok(B64.encode(signer.sign_to_vec()?))
}

/// The parameters of an `Authorization: OAuth …` header, decoded; `None` if malformed or a
/// parameter repeats (both `400` per Apple).
fn parse_oauth_header(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim_start();
    if rest.len() < 6 || !rest[..6].eq_ignore_ascii_case("oauth ") {
        return None;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for part in rest[6..].split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        let (k, v) = (pct_decode(k.trim(), false)?, pct_decode(v, false)?);
        if params.iter().any(|(pk, _)| *pk == k) {
            return None;
        }
        params.push((k, v));
    }
    Some(params)
}

// ---------------------------------------------------------------------------------------------
// State

struct Account {
    server_uuid: String,
    server_name: String,
    admin_id: String,
    org_name: String,
    org_email: String,
    org_phone: String,
    org_address: String,
    org_id: String,
    org_id_hash: String,
}

#[derive(Clone)]
struct ProfileState {
    uuid: Option<String>,
    status: &'static str,
    assign_time: Option<DateTime<Utc>>,
    push_time: Option<DateTime<Utc>>,
}

impl ProfileState {
    const EMPTY: ProfileState = ProfileState { uuid: None, status: "empty", assign_time: None, push_time: None };
}

/// A device's state as the service reports it (also what a change record keeps).
#[derive(Clone)]
struct Snapshot {
    device: Arc<MockDevice>,
    assigned_date: DateTime<Utc>,
    profile: ProfileState,
}

impl Snapshot {
    fn to_json(&self) -> Map<String, Value> {
        let d = &*self.device;
        let mut m = Map::new();
        m.insert("serial_number".into(), d.serial_number.clone().into());
        m.insert("model".into(), d.model.clone().into());
        m.insert("description".into(), d.description.clone().into());
        m.insert("color".into(), d.color.clone().into());
        if let Some(tag) = &d.asset_tag {
            m.insert("asset_tag".into(), tag.clone().into());
        }
        m.insert("profile_status".into(), self.profile.status.into());
        if let Some(u) = &self.profile.uuid {
            m.insert("profile_uuid".into(), u.clone().into());
        }
        if let Some(t) = self.profile.assign_time {
            m.insert("profile_assign_time".into(), rfc3339(t).into());
        }
        if let Some(t) = self.profile.push_time {
            m.insert("profile_push_time".into(), rfc3339(t).into());
        }
        m.insert("device_assigned_date".into(), rfc3339(self.assigned_date).into());
        m.insert("device_assigned_by".into(), d.device_assigned_by.clone().into());
        m.insert("os".into(), d.os.clone().into());
        m.insert("device_family".into(), d.device_family.clone().into());
        if let Some(deadline) = &d.mdm_migration_deadline {
            m.insert("mdm_migration_deadline".into(), deadline.clone().into());
        }
        m
    }
}

struct DeviceRec {
    snap: Snapshot,
    assigned: bool,
}

struct Change {
    op: &'static str,
    date: DateTime<Utc>,
    snap: Snapshot,
}

struct Cursor {
    issued: DateTime<Utc>,
    /// Where a sync with this cursor starts in the change log.
    log_pos: usize,
    /// For fetch cursors: the fetch they belong to and the next device index.
    fetch: Option<(u64, usize)>,
}

struct Session {
    expires: DateTime<Utc>,
    used: bool,
    /// With rotation: the session that replaced this one, and whether the one grace request with
    /// this session has been spent.
    replaced_by: Option<String>,
    grace_spent: bool,
}

struct State {
    base_url: String,
    offset: TimeDelta,
    token: AdeServerToken,
    account: Account,
    devices: Vec<DeviceRec>,
    index: HashMap<String, usize>,
    log: Vec<Change>,
    /// Change-log indexes per serial, ascending.
    serial_log: HashMap<String, Vec<usize>>,
    cursors: HashMap<String, Cursor>,
    completed_fetches: HashSet<u64>,
    next_fetch: u64,
    sessions: HashMap<String, Session>,
    nonces: HashSet<String>,
    profiles: HashMap<String, Value>,
    profile_order: Vec<String>,
    assign_overrides: HashMap<String, String>,
    throttle_retry_after: u64,
    failures: VecDeque<Failure>,
    rotate: bool,
    stuck_cursor: bool,
    duplicates: bool,
    terms_not_signed: bool,
    page_delay: Duration,
    requests: Vec<(String, String)>,
}

fn random_hex(n: usize, upper: bool) -> String {
    let mut buf = vec![0u8; n];
    if openssl::rand::rand_bytes(&mut buf).is_err() {
        // Not reachable in practice; fall back to something unique enough for a mock.
        let t = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = t[i % 8] ^ (i as u8);
        }
    }
    let mut s = String::with_capacity(n * 2);
    for b in buf {
        let _ = if upper { write!(s, "{b:02X}") } else { write!(s, "{b:02x}") };
    }
    s
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One answer; `session` is a rotated `X-ADM-Auth-Session` to send back.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Bytes,
    retry_after: Option<u64>,
    session: Option<String>,
}

impl Reply {
    /// Apple's error answer: the bare code as `text/plain`.
    fn text(status: u16, body: &str) -> Reply {
        Reply { status, content_type: TEXT_TYPE, body: Bytes::from(body.to_owned()), retry_after: None, session: None }
    }

    fn json(v: &Value) -> Reply {
        Reply { status: 200, content_type: JSON_TYPE, body: Bytes::from(v.to_string()), retry_after: None, session: None }
    }

    fn bad(code: &str) -> Reply {
        Reply::text(400, code)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(self.body));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(v) = self.session.and_then(|s| HeaderValue::from_str(&s).ok()) {
            r.headers_mut().insert(SESSION_HEADER, v);
        }
        r
    }
}

type Handled = Result<Reply, Reply>;

fn parse_object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>, Reply> {
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Reply::bad("MALFORMED_REQUEST_BODY")),
    }
}

/// An optional array of strings (`None`/`null` → empty).
fn string_list(v: Option<&Value>) -> Result<Vec<String>, Reply> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map(str::to_owned).ok_or_else(|| Reply::bad("MALFORMED_REQUEST_BODY"))).collect()
        }
        Some(_) => Err(Reply::bad("MALFORMED_REQUEST_BODY")),
    }
}

/// `limit`: default 100; Apple documents a maximum of 1000 but no error for more, so the mock
/// clamps to 1..=1000.
fn parse_limit(v: Option<&Value>) -> Result<usize, Reply> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(v) => match v.as_i64() {
            Some(n) => Ok(n.clamp(1, MAX_LIMIT as i64) as usize),
            None => Err(Reply::bad("MALFORMED_REQUEST_BODY")),
        },
    }
}

fn is_http_url(s: &str) -> bool {
    let lower = s.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Apple's Define Profile checks, in the mock's order.
fn validate_profile(p: &Map<String, Value>) -> Result<(), Reply> {
    match p.get("profile_name") {
        None | Some(Value::Null) => return Err(Reply::bad("CONFIG_NAME_REQUIRED")),
        Some(Value::String(s)) if s.is_empty() => return Err(Reply::bad("CONFIG_NAME_REQUIRED")),
        Some(Value::String(s)) if s.chars().count() <= 125 => {}
        Some(_) => return Err(Reply::bad("CONFIG_NAME_INVALID")),
    }
    match p.get("url") {
        None | Some(Value::Null) => return Err(Reply::bad("CONFIG_URL_REQUIRED")),
        Some(Value::String(s)) if s.is_empty() => return Err(Reply::bad("CONFIG_URL_REQUIRED")),
        Some(Value::String(s)) if s.len() <= 2000 && is_http_url(s) => {}
        Some(_) => return Err(Reply::bad("CONFIG_URL_INVALID")),
    }
    match p.get("configuration_web_url") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.len() <= 2000 && is_http_url(s) => {}
        Some(_) => return Err(Reply::bad("CONFIG_URL_INVALID")),
    }
    const FLAGS: [&str; 9] = [
        "allow_pairing",
        "is_supervised",
        "is_multi_user",
        "is_mandatory",
        "await_device_configured",
        "is_mdm_removable",
        "auto_advance_setup",
        "do_not_use_profile_from_backup",
        "is_return_to_service",
    ];
    let mut flags = HashMap::new();
    for k in FLAGS {
        match p.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => {
                flags.insert(k, *b);
            }
            Some(_) => return Err(Reply::bad("MALFORMED_REQUEST_BODY")),
        }
    }
    if flags.get("is_mdm_removable") == Some(&false) && flags.get("is_supervised") != Some(&true) {
        return Err(Reply::bad("FLAGS_INVALID"));
    }
    for (key, max, code) in [
        ("department", 125, "DEPARTMENT_INVALID"),
        ("support_phone_number", 50, "SUPPORT_PHONE_INVALID"),
        ("support_email_address", 250, "SUPPORT_EMAIL_INVALID"),
        ("org_magic", 256, "MAGIC_INVALID"),
    ] {
        match p.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.chars().count() <= max => {
                if key == "support_email_address" && !s.is_empty() && !s.contains('@') {
                    return Err(Reply::bad(code));
                }
            }
            Some(_) => return Err(Reply::bad(code)),
        }
    }
    let language_ok = match p.get("language") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()),
        Some(_) => false,
    };
    let region_ok = match p.get("region") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()),
        Some(_) => false,
    };
    if !language_ok || !region_ok {
        return Err(Reply::bad("LOCALE_INVALID"));
    }
    for key in ["skip_setup_items", "anchor_certs", "supervising_host_certs", "devices"] {
        string_list(p.get(key))?;
    }
    Ok(())
}

impl State {
    fn new(base_url: String) -> Result<State, ErrorStack> {
        let now = Utc::now().trunc_subsecs(0);
        let expiry = now + TimeDelta::days(365);
        let token = AdeServerToken {
            consumer_key: format!("CK_{}", random_hex(16, false)),
            consumer_secret: format!("CS_{}", random_hex(64, false)),
            access_token: format!("AT_O{}O{}O{}", now.timestamp(), random_hex(20, false), now.timestamp_subsec_millis() + 100_000),
            access_secret: format!("AS_{}", random_hex(64, false)),
            access_token_expiry: rfc3339(expiry),
        };
        let org_id = format!("{}", 1_000_000 + u32::from_str_radix(&random_hex(3, false), 16).unwrap_or(0));
        let digest = openssl::hash::hash(MessageDigest::sha256(), org_id.as_bytes())?;
        let account = Account {
            server_uuid: random_hex(16, true),
            server_name: "Lanyard".to_owned(),
            admin_id: "it-admin@school.example".to_owned(),
            org_name: "Example School District".to_owned(),
            org_email: "it@school.example".to_owned(),
            org_phone: "+1 555 0100".to_owned(),
            org_address: "1 School Road, Springfield".to_owned(),
            org_id,
            org_id_hash: digest.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
        };
        Ok(State {
            base_url,
            offset: TimeDelta::zero(),
            token,
            account,
            devices: Vec::new(),
            index: HashMap::new(),
            log: Vec::new(),
            serial_log: HashMap::new(),
            cursors: HashMap::new(),
            completed_fetches: HashSet::new(),
            next_fetch: 0,
            sessions: HashMap::new(),
            nonces: HashSet::new(),
            profiles: HashMap::new(),
            profile_order: Vec::new(),
            assign_overrides: HashMap::new(),
            throttle_retry_after: 1,
            failures: VecDeque::new(),
            rotate: false,
            stuck_cursor: false,
            duplicates: false,
            terms_not_signed: false,
            page_delay: Duration::ZERO,
            requests: Vec::new(),
        })
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// The date of a new change for `serial`: now, but later than the serial's previous change so
    /// that "the latest op_date wins" resolves (dates have whole seconds, as Apple's do).
    fn change_date(&self, serial: &str) -> DateTime<Utc> {
        let now = self.now().trunc_subsecs(0);
        match self.serial_log.get(serial).and_then(|l| l.last()) {
            Some(&last) => now.max(self.log[last].date + TimeDelta::seconds(1)),
            None => now,
        }
    }

    /// Appends a change record for device `i` (its current state).
    fn record(&mut self, i: usize, op: &'static str) {
        let serial = self.devices[i].snap.device.serial_number.clone();
        let date = self.change_date(&serial);
        if op == "added" {
            self.devices[i].snap.assigned_date = date;
        }
        self.log.push(Change { op, date, snap: self.devices[i].snap.clone() });
        self.serial_log.entry(serial).or_default().push(self.log.len() - 1);
    }

    fn add_device(&mut self, d: MockDevice) {
        let serial = d.serial_number.clone();
        let snap = Snapshot { device: Arc::new(d), assigned_date: self.now(), profile: ProfileState::EMPTY };
        match self.index.get(&serial) {
            Some(&i) if self.devices[i].assigned => {
                self.devices[i].snap.device = snap.device;
                self.record(i, "modified");
            }
            Some(&i) => {
                self.devices[i] = DeviceRec { snap, assigned: true };
                self.record(i, "added");
            }
            None => {
                self.devices.push(DeviceRec { snap, assigned: true });
                self.index.insert(serial, self.devices.len() - 1);
                self.record(self.devices.len() - 1, "added");
            }
        }
    }

    fn assigned_index(&self, serial: &str) -> Option<usize> {
        self.index.get(serial).copied().filter(|&i| self.devices[i].assigned)
    }

    fn new_cursor(&mut self, log_pos: usize, fetch: Option<(u64, usize)>) -> String {
        let id = random_hex(16, false);
        self.cursors.insert(id.clone(), Cursor { issued: self.now(), log_pos, fetch });
        id
    }

    fn take_failure(&mut self, is_session: bool) -> Option<Failure> {
        if self.failures.front().is_some_and(|f| !is_session || f.hits_session()) { self.failures.pop_front() } else { None }
    }

    fn account_json(&self) -> Value {
        let a = &self.account;
        let url = |uri: &str, methods: &[&str], limit: Option<(u32, u32)>| {
            let mut u = json!({ "uri": uri, "http_method": methods });
            if let Some((default, maximum)) = limit {
                u["limit"] = json!({ "default": default, "maximum": maximum });
            }
            u
        };
        json!({
            "server_name": a.server_name,
            "server_uuid": a.server_uuid,
            "admin_id": a.admin_id,
            "facilitator_id": a.admin_id,
            "org_name": a.org_name,
            "org_email": a.org_email,
            "org_phone": a.org_phone,
            "org_address": a.org_address,
            "org_id": a.org_id,
            "org_id_hash": a.org_id_hash,
            "org_type": "edu",
            "org_version": "v2",
            "urls": [
                url("/account", &["GET"], None),
                url("/server/devices", &["POST"], Some((100, 1000))),
                url("/devices/sync", &["POST"], Some((100, 1000))),
                url("/devices", &["POST"], None),
                url("/profile", &["GET", "POST"], None),
                url("/profile/devices", &["PUT", "POST", "DELETE"], Some((1000, 1000))),
            ],
        })
    }

    // -- dispatch ------------------------------------------------------------------------------

    fn dispatch(&mut self, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        if headers.get(USER_AGENT).is_none_or(|v| v.as_bytes().iter().all(u8::is_ascii_whitespace)) {
            return Reply::bad("USER_AGENT_MISSING");
        }
        // X-Server-Protocol-Version is accepted and not enforced: the mock answers the newest
        // shape (iPadOS as `iPadOS`, `mdm_migration_deadline`, `retry_after_seconds`).
        if self.terms_not_signed {
            return Reply::text(403, "T_C_NOT_SIGNED");
        }
        let allowed: &[Method] = match path {
            "/session" | "/account" => &[Method::GET],
            "/server/devices" | "/devices/sync" | "/devices" => &[Method::POST],
            "/profile" => &[Method::GET, Method::POST],
            "/profile/devices" => &[Method::PUT, Method::POST, Method::DELETE],
            _ => return Reply::text(404, "NOT_FOUND"),
        };
        if !allowed.contains(method) {
            return Reply::text(405, "METHOD_NOT_ALLOWED");
        }
        if path == "/session" {
            return self.session(headers, query).unwrap_or_else(|e| e);
        }
        let rotated = match self.authenticate(headers) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let result = match (path, method.as_str()) {
            ("/account", _) => Ok(Reply::json(&self.account_json())),
            ("/server/devices", _) => self.fetch(body),
            ("/devices/sync", _) => self.sync(body),
            ("/devices", _) => self.details(body),
            ("/profile", "GET") => self.get_profile(query),
            ("/profile", _) => self.define_profile(body),
            ("/profile/devices", "DELETE") => self.clear_profile(body),
            _ => self.assign_profile(body),
        };
        let mut reply = result.unwrap_or_else(|e| e);
        reply.session = rotated;
        reply
    }

    fn session(&mut self, headers: &HeaderMap, query: &str) -> Handled {
        let unauthorized = || Reply::text(401, "Unauthorized");
        let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(|| Reply::bad("Bad Request"))?;
        let params = parse_oauth_header(header).ok_or_else(|| Reply::bad("Bad Request"))?;
        const KNOWN: [&str; 8] = [
            "realm",
            "oauth_consumer_key",
            "oauth_token",
            "oauth_signature_method",
            "oauth_signature",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_version",
        ];
        if params.iter().any(|(k, _)| !KNOWN.contains(&k.as_str())) {
            return Err(Reply::bad("Bad Request"));
        }
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        let (Some(ck), Some(tok), Some(method), Some(sig), Some(ts), Some(nonce)) = (
            get("oauth_consumer_key"),
            get("oauth_token"),
            get("oauth_signature_method"),
            get("oauth_signature"),
            get("oauth_timestamp"),
            get("oauth_nonce"),
        ) else {
            return Err(Reply::bad("Bad Request"));
        };
        if method != "HMAC-SHA1" || get("oauth_version").is_some_and(|v| v != "1.0") || nonce.is_empty() {
            return Err(Reply::bad("Bad Request"));
        }
        let ts: i64 = ts.parse().map_err(|_| Reply::bad("Bad Request"))?;
        if ck != self.token.consumer_key || tok != self.token.access_token {
            return Err(unauthorized());
        }
        // Within 5 minutes of the mock clock or of the wall clock: once a test has advanced the
        // mock clock a client signing with the real time could otherwise never authenticate.
        let skew = |t: DateTime<Utc>| (t.timestamp() - ts).abs() <= TIMESTAMP_SKEW_SECONDS;
        if !skew(self.now()) && !skew(Utc::now()) {
            return Err(unauthorized());
        }
        let mut signed: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "realm" && k != "oauth_signature").cloned().collect();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(k), Some(v)) = (pct_decode(k, true), pct_decode(v, true)) else {
                return Err(Reply::bad("Bad Request"));
            };
            signed.push((k, v));
        }
        let url = format!("{}/session", self.base_url);
        let expected = oauth_signature("GET", &url, &signed, &self.token.consumer_secret, &self.token.access_secret)
            .map_err(|_| Reply::text(500, "INTERNAL_SERVER_ERROR"))?;
        if expected.len() != sig.len() || !openssl::memcmp::eq(expected.as_bytes(), sig.as_bytes()) {
            return Err(unauthorized());
        }
        if !self.nonces.insert(nonce.to_owned()) {
            return Err(unauthorized());
        }
        let expired = DateTime::parse_from_rfc3339(&self.token.access_token_expiry).map_or(true, |e| e <= self.now());
        if expired {
            return Err(unauthorized());
        }
        let id = self.new_session();
        Ok(Reply::json(&json!({ "auth_session_token": id })))
    }

    fn new_session(&mut self) -> String {
        let now = self.now();
        let id = format!("{}O1O{}", now.timestamp_millis(), random_hex(20, true));
        let s = Session { expires: now + TimeDelta::minutes(SESSION_MINUTES), used: false, replaced_by: None, grace_spent: false };
        self.sessions.insert(id.clone(), s);
        id
    }

    /// Checks `X-ADM-Auth-Session`; `Ok(Some(new))` when the answer must carry a rotated one.
    fn authenticate(&mut self, headers: &HeaderMap) -> Result<Option<String>, Reply> {
        let unauthorized = || Reply::text(401, "Unauthorized");
        let id = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?.to_owned();
        let now = self.now();
        let (expires, replaced_by, grace_spent) = match self.sessions.get(&id) {
            Some(s) => (s.expires, s.replaced_by.clone(), s.grace_spent),
            None => return Err(unauthorized()),
        };
        if expires <= now {
            self.sessions.remove(&id);
            return Err(unauthorized());
        }
        if let Some(new) = replaced_by {
            let new_used = self.sessions.get(&new).is_none_or(|s| s.used);
            if new_used || grace_spent {
                self.sessions.remove(&id);
                return Err(unauthorized());
            }
            if let Some(s) = self.sessions.get_mut(&id) {
                s.grace_spent = true;
            }
            return Ok(Some(new));
        }
        // The session this one replaced dies on first use of this one.
        if let Some(s) = self.sessions.get_mut(&id) {
            s.used = true;
        }
        if !self.rotate {
            return Ok(None);
        }
        let new = self.new_session();
        if let Some(s) = self.sessions.get_mut(&id) {
            s.replaced_by = Some(new.clone());
        }
        Ok(Some(new))
    }

    // -- devices -------------------------------------------------------------------------------

    fn lookup_cursor(&self, v: Option<&Value>) -> Result<Option<(String, &Cursor)>, Reply> {
        let s = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => s,
            Some(_) => return Err(Reply::bad("MALFORMED_REQUEST_BODY")),
        };
        match self.cursors.get(s) {
            Some(c) => Ok(Some((s.clone(), c))),
            None => Err(Reply::bad("INVALID_CURSOR")),
        }
    }

    fn page_json(&self, devices: Vec<Value>, cursor: String, more: bool) -> Reply {
        Reply::json(&json!({
            "devices": devices,
            "cursor": cursor,
            "more_to_follow": more,
            "fetched_until": rfc3339(self.now()),
        }))
    }

    /// `POST /server/devices`: every assigned device, in assignment order, `limit` at a time.
    fn fetch(&mut self, body: &[u8]) -> Handled {
        let req = parse_object(body, true)?;
        let limit = parse_limit(req.get("limit"))?;
        let (chain, start, log_pos) = match self.lookup_cursor(req.get("cursor"))? {
            None => {
                self.next_fetch += 1;
                (self.next_fetch, 0, self.log.len())
            }
            Some((_, c)) => match c.fetch {
                Some((chain, next)) if !self.completed_fetches.contains(&chain) => (chain, next, c.log_pos),
                // A finished fetch's cursors, and sync cursors: "the cursor had returned all
                // devices in previous calls".
                _ => return Err(Reply::bad("EXHAUSTED_CURSOR")),
            },
        };
        let mut page = Vec::with_capacity(limit.min(self.devices.len()));
        let mut i = start;
        while i < self.devices.len() && page.len() < limit {
            if self.devices[i].assigned {
                page.push(Value::Object(self.devices[i].snap.to_json()));
            }
            i += 1;
        }
        while i < self.devices.len() && !self.devices[i].assigned {
            i += 1;
        }
        let more = i < self.devices.len();
        if !more {
            self.completed_fetches.insert(chain);
        }
        let cursor = self.new_cursor(log_pos, Some((chain, i)));
        Ok(self.page_json(page, cursor, more))
    }

    /// `POST /devices/sync`: the change records after the cursor.
    fn sync(&mut self, body: &[u8]) -> Handled {
        let req = parse_object(body, false)?;
        let limit = parse_limit(req.get("limit"))?;
        let (id, c) = self.lookup_cursor(req.get("cursor"))?.ok_or_else(|| Reply::bad("CURSOR_REQUIRED"))?;
        if self.now() - c.issued > TimeDelta::days(CURSOR_MAX_AGE_DAYS) {
            return Err(Reply::bad("EXPIRED_CURSOR"));
        }
        let start = c.log_pos;
        let end = (start + limit).min(self.log.len());
        let mut page = Vec::with_capacity(end - start);
        for i in start..end {
            page.push(self.change_json(i));
            if self.duplicates {
                let earlier = self.serial_log.get(&*self.log[i].snap.device.serial_number).and_then(|l| {
                    let at = l.partition_point(|&j| j < i);
                    at.checked_sub(1).map(|k| l[k])
                });
                if let Some(j) = earlier {
                    page.push(self.change_json(j));
                }
            }
        }
        if self.stuck_cursor {
            return Ok(self.page_json(page, id, true));
        }
        let more = end < self.log.len();
        let cursor = self.new_cursor(end, None);
        Ok(self.page_json(page, cursor, more))
    }

    fn change_json(&self, i: usize) -> Value {
        let c = &self.log[i];
        let mut m = c.snap.to_json();
        m.insert("op_type".into(), c.op.into());
        m.insert("op_date".into(), rfc3339(c.date).into());
        Value::Object(m)
    }

    fn serials(req: &Map<String, Value>) -> Result<Vec<String>, Reply> {
        let serials = string_list(req.get("devices"))?;
        if serials.is_empty() {
            return Err(Reply::bad("DEVICE_ID_REQUIRED"));
        }
        if serials.len() > MAX_DEVICES_PER_REQUEST {
            return Err(Reply::bad("TOO_MANY_DEVICES"));
        }
        Ok(serials)
    }

    /// `POST /devices`: details per serial with `response_status`.
    fn details(&mut self, body: &[u8]) -> Handled {
        let req = parse_object(body, false)?;
        let mut out = Map::new();
        for s in Self::serials(&req)? {
            let v = match self.assigned_index(&s) {
                Some(i) => {
                    let mut m = self.devices[i].snap.to_json();
                    m.insert("response_status".into(), "SUCCESS".into());
                    m
                }
                None => {
                    let mut m = Map::new();
                    m.insert("response_status".into(), "NOT_ACCESSIBLE".into());
                    m
                }
            };
            out.insert(s, Value::Object(v));
        }
        Ok(Reply::json(&json!({ "devices": out })))
    }

    // -- profiles ------------------------------------------------------------------------------

    fn define_profile(&mut self, body: &[u8]) -> Handled {
        let mut req = parse_object(body, false)?;
        validate_profile(&req)?;
        let serials = string_list(req.remove("devices").as_ref())?;
        if serials.len() > MAX_DEVICES_PER_REQUEST {
            return Err(Reply::bad("TOO_MANY_DEVICES"));
        }
        let uuid = random_hex(16, true);
        req.insert("profile_uuid".into(), uuid.clone().into());
        self.profiles.insert(uuid.clone(), Value::Object(req));
        self.profile_order.push(uuid.clone());
        Ok(self.assign_reply(uuid, serials))
    }

    fn get_profile(&self, query: &str) -> Handled {
        let uuid = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "profile_uuid")
            .and_then(|(_, v)| pct_decode(v, true))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Reply::bad("PROFILE_UUID_REQUIRED"))?;
        self.profiles.get(&uuid).map(Reply::json).ok_or_else(|| Reply::text(404, "NOT_FOUND"))
    }

    /// `PUT|POST /profile/devices`.
    fn assign_profile(&mut self, body: &[u8]) -> Handled {
        let req = parse_object(body, false)?;
        let uuid = match req.get("profile_uuid") {
            None | Some(Value::Null) => return Err(Reply::bad("PROFILE_UUID_REQUIRED")),
            Some(Value::String(s)) if s.is_empty() => return Err(Reply::bad("PROFILE_UUID_REQUIRED")),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Reply::bad("MALFORMED_REQUEST_BODY")),
        };
        let serials = Self::serials(&req)?;
        if !self.profiles.contains_key(&uuid) {
            return Err(Reply::text(404, "NOT_FOUND"));
        }
        Ok(self.assign_reply(uuid, serials))
    }

    /// Assigns `uuid` to `serials`; the Define/Assign answer.
    fn assign_reply(&mut self, uuid: String, serials: Vec<String>) -> Reply {
        let now = self.now();
        let mut results = Map::new();
        let mut throttled = false;
        for s in serials {
            if results.contains_key(&s) {
                continue;
            }
            let result = if let Some(r) = self.assign_overrides.get(&s) {
                throttled |= r == "THROTTLED";
                r.clone()
            } else if let Some(i) = self.assigned_index(&s) {
                let p = &mut self.devices[i].snap.profile;
                *p = ProfileState { uuid: Some(uuid.clone()), status: "assigned", assign_time: Some(now), push_time: None };
                self.record(i, "modified");
                "SUCCESS".to_owned()
            } else {
                "NOT_ACCESSIBLE".to_owned()
            };
            results.insert(s, result.into());
        }
        let mut v = json!({ "profile_uuid": uuid, "devices": results });
        if throttled {
            v["retry_after_seconds"] = self.throttle_retry_after.into();
        }
        Reply::json(&v)
    }

    /// `DELETE /profile/devices` (`profile_uuid` in the body is ignored, as Apple's seems to be).
    fn clear_profile(&mut self, body: &[u8]) -> Handled {
        let req = parse_object(body, false)?;
        let mut results = Map::new();
        for s in Self::serials(&req)? {
            if results.contains_key(&s) {
                continue;
            }
            let result = match self.assigned_index(&s) {
                Some(i) => {
                    let p = &mut self.devices[i].snap.profile;
                    *p = ProfileState { uuid: None, status: "removed", assign_time: None, push_time: p.push_time };
                    self.record(i, "modified");
                    "SUCCESS"
                }
                None => "NOT_ACCESSIBLE",
            };
            results.insert(s, result.into());
        }
        Ok(Reply::json(&json!({ "devices": results })))
    }
}

// ---------------------------------------------------------------------------------------------
// Server

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Dropping the set (when the task is aborted) aborts the connections.
    let mut conns = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                let state = Arc::clone(&state);
                conns.spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&state)));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        while conns.try_join_next().is_some() {}
    }
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, io::Error> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY).collect().await.map(|b| b.to_bytes());
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let (reply, delay) = {
        let mut st = lock(&state);
        st.requests.push((parts.method.to_string(), path.clone()));
        let delay = st.page_delay;
        let reply = match st.take_failure(path == "/session") {
            Some(Failure::Disconnect) => return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "injected disconnect")),
            Some(Failure::Status { status, body, retry_after } | Failure::SessionStatus { status, body, retry_after }) => {
                Reply { retry_after, ..Reply::text(status, &body) }
            }
            None => match &body {
                Ok(b) => st.dispatch(&parts.method, &path, &query, &parts.headers, b),
                Err(_) => Reply::bad("MALFORMED_REQUEST_BODY"),
            },
        };
        (reply, delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(reply.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::nid::Nid;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    use tokio::net::TcpStream;

    struct Answer {
        status: u16,
        headers: HeaderMap,
        body: String,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or(Value::Null)
        }
    }

    async fn call(base: &str, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Answer {
        let addr = base.trim_start_matches("http://").to_owned();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder().method(method).uri(path).header("host", addr);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let resp = sender.send_request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// A minimal rotation-aware client.
    struct Client {
        base: String,
        token: AdeServerToken,
        session: Option<String>,
    }

    impl Client {
        fn new(mock: &MockAde) -> Client {
            Client { base: mock.url(), token: mock.token(), session: None }
        }

        fn auth(&self) -> String {
            oauth_header(&format!("{}/session", self.base), &self.token, Utc::now().timestamp(), &random_hex(16, false))
        }

        async fn login(&mut self) -> Answer {
            let a =
                call(&self.base, "GET", "/session", &[("user-agent", "lanyard-test/1".into()), ("authorization", self.auth())], "").await;
            if a.status == 200 {
                self.session = a.json()["auth_session_token"].as_str().map(str::to_owned);
            }
            a
        }

        async fn req(&mut self, method: &str, path: &str, body: &str) -> Answer {
            let mut h = vec![
                ("user-agent", "lanyard-test/1".to_owned()),
                ("x-server-protocol-version", "7".to_owned()),
                ("content-type", JSON_TYPE.to_owned()),
            ];
            if let Some(s) = &self.session {
                h.push(("x-adm-auth-session", s.clone()));
            }
            let a = call(&self.base, method, path, &h, body).await;
            if let Some(s) = a.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                self.session = Some(s.to_owned());
            }
            a
        }

        async fn fetch_all(&mut self, limit: usize) -> (Vec<Value>, String, Vec<bool>) {
            let (mut devices, mut cursor, mut mores) = (Vec::new(), None::<String>, Vec::new());
            loop {
                let body = match &cursor {
                    Some(c) => json!({ "limit": limit, "cursor": c }),
                    None => json!({ "limit": limit }),
                };
                let a = self.req("POST", "/server/devices", &body.to_string()).await;
                assert_eq!(a.status, 200, "{}", a.body);
                let v = a.json();
                devices.extend(v["devices"].as_array().unwrap().iter().cloned());
                cursor = v["cursor"].as_str().map(str::to_owned);
                mores.push(v["more_to_follow"].as_bool().unwrap());
                if !mores.last().unwrap() {
                    return (devices, cursor.unwrap(), mores);
                }
            }
        }
    }

    fn ipads(n: usize) -> Vec<MockDevice> {
        (0..n).map(|i| MockDevice::ipad(&format!("DMP{i:09}"))).collect()
    }

    #[tokio::test]
    async fn oauth_signature_nonce_and_token_checks() {
        let mock = MockAde::start().await.unwrap();
        let token = mock.token();
        assert!(token.consumer_key.starts_with("CK_") && token.access_token.starts_with("AT_"));
        let url = format!("{}/session", mock.url());
        let ua = ("user-agent", "t".to_owned());
        let now = Utc::now().timestamp();
        let good = oauth_header(&url, &token, now, "nonce1");
        let a = call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", good.clone())], "").await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.json()["auth_session_token"].as_str().is_some_and(|s| !s.is_empty()));
        // Replayed nonce.
        let a = call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", good)], "").await;
        assert_eq!(a.status, 401);
        // Wrong secret → wrong signature; wrong key; stale timestamp.
        let wrong = AdeServerToken { access_secret: "AS_nope".into(), ..token.clone() };
        let h = oauth_header(&url, &wrong, now, "nonce2");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", h)], "").await.status, 401);
        let wrong = AdeServerToken { consumer_key: "CK_nope".into(), ..token.clone() };
        let h = oauth_header(&url, &wrong, now, "nonce3");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", h)], "").await.status, 401);
        let h = oauth_header(&url, &token, now - 3600, "nonce4");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", h)], "").await.status, 401);
        // Signed for another URL.
        let h = oauth_header("https://mdmenrollment.apple.com/session", &token, now, "nonce5");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", h)], "").await.status, 401);
        // Other method, missing parameter, no header: 400.
        let h = oauth_header(&url, &token, now, "nonce6").replace("HMAC-SHA1", "PLAINTEXT");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", h)], "").await.status, 400);
        let h = oauth_header(&url, &token, now, "nonce7").replace("oauth_nonce=\"nonce7\", ", "");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua.clone(), ("authorization", h)], "").await.status, 400);
        assert_eq!(call(&mock.url(), "GET", "/session", std::slice::from_ref(&ua), "").await.status, 400);
        // No User-Agent.
        let h = oauth_header(&url, &token, now, "nonce8");
        let a = call(&mock.url(), "GET", "/session", &[("authorization", h)], "").await;
        assert_eq!((a.status, a.body.as_str()), (400, "USER_AGENT_MISSING"));
        // No session on another endpoint.
        assert_eq!(call(&mock.url(), "GET", "/account", std::slice::from_ref(&ua), "").await.status, 401);
        // Expired token (mock clock past access_token_expiry).
        mock.advance_clock(TimeDelta::days(400));
        let h = oauth_header(&url, &token, Utc::now().timestamp(), "nonce9");
        assert_eq!(call(&mock.url(), "GET", "/session", &[ua, ("authorization", h)], "").await.status, 401);
    }

    #[tokio::test]
    async fn sessions_expire_and_account() {
        let mock = MockAde::start().await.unwrap();
        let mut c = Client::new(&mock);
        assert_eq!(c.login().await.status, 200);
        let a = c.req("GET", "/account", "").await;
        assert_eq!(a.status, 200);
        assert!(a.headers[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
        let v = a.json();
        assert_eq!(v["server_uuid"], mock.server_uuid().as_str());
        assert_eq!((v["org_type"].as_str(), v["org_version"].as_str()), (Some("edu"), Some("v2")));
        mock.advance_clock(TimeDelta::minutes(31));
        assert_eq!(c.req("GET", "/account", "").await.status, 401);
        assert_eq!(c.login().await.status, 200);
        assert_eq!(c.req("GET", "/account", "").await.status, 200);
        mock.expire_sessions();
        assert_eq!(c.req("GET", "/account", "").await.status, 401);
    }

    #[tokio::test]
    async fn rotation_breaks_clients_that_ignore_it() {
        let mock = MockAde::start().await.unwrap();
        mock.rotate_session(true);
        let mut c = Client::new(&mock);
        c.login().await;
        let s0 = c.session.clone().unwrap();
        for _ in 0..3 {
            let before = c.session.clone();
            assert_eq!(c.req("GET", "/account", "").await.status, 200);
            assert_ne!(c.session, before);
        }
        // The first session is dead now that its successor has been used.
        c.session = Some(s0);
        assert_eq!(c.req("GET", "/account", "").await.status, 401);

        // A client ignoring the header: one grace request, then 401.
        let mut c = Client::new(&mock);
        c.login().await;
        let s = c.session.clone().unwrap();
        let ignore = |c: &mut Client| c.session = Some(s.clone());
        assert_eq!(c.req("GET", "/account", "").await.status, 200);
        ignore(&mut c);
        assert_eq!(c.req("GET", "/account", "").await.status, 200);
        ignore(&mut c);
        assert_eq!(c.req("GET", "/account", "").await.status, 401);
    }

    #[tokio::test]
    async fn fetch_pages_and_cursor_errors() {
        let mock = MockAde::start().await.unwrap();
        mock.add_devices(ipads(2500));
        let mut c = Client::new(&mock);
        c.login().await;
        let (devices, last, mores) = c.fetch_all(1000).await;
        assert_eq!(mores, [true, true, false]);
        assert_eq!(devices.len(), 2500);
        let serials: HashSet<_> = devices.iter().map(|d| d["serial_number"].as_str().unwrap().to_owned()).collect();
        assert_eq!(serials.len(), 2500);
        let d = &devices[0];
        assert_eq!((d["os"].as_str(), d["profile_status"].as_str()), (Some("iPadOS"), Some("empty")));
        assert!(d.get("asset_tag").is_none() && d.get("profile_uuid").is_none());
        let a = c.req("POST", "/server/devices", &json!({ "cursor": last }).to_string()).await;
        assert_eq!((a.status, a.body.as_str()), (400, "EXHAUSTED_CURSOR"));
        assert!(a.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
        let a = c.req("POST", "/server/devices", r#"{"cursor":"deadbeef"}"#).await;
        assert_eq!((a.status, a.body.as_str()), (400, "INVALID_CURSOR"));
        // Default limit 100, over 1000 clamped.
        let a = c.req("POST", "/server/devices", "{}").await;
        assert_eq!(a.json()["devices"].as_array().unwrap().len(), 100);
        let a = c.req("POST", "/server/devices", r#"{"limit":5000}"#).await;
        assert_eq!(a.json()["devices"].as_array().unwrap().len(), 1000);
        let a = c.req("POST", "/server/devices", "{not json").await;
        assert_eq!((a.status, a.body.as_str()), (400, "MALFORMED_REQUEST_BODY"));
    }

    #[tokio::test]
    async fn sync_changes_duplicates_and_cursor_errors() {
        let mock = MockAde::start().await.unwrap();
        mock.add_devices(ipads(3));
        let mut c = Client::new(&mock);
        c.login().await;
        let (_, cursor, _) = c.fetch_all(100).await;
        mock.modify_device("DMP000000000", |d| d.asset_tag = Some("A-17".into()));
        mock.delete_device("DMP000000001");
        mock.add_devices([MockDevice::ipad("NEW1")]);
        let a = c.req("POST", "/devices/sync", &json!({ "cursor": cursor }).to_string()).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        let ops: Vec<(&str, &str)> = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["serial_number"].as_str().unwrap(), d["op_type"].as_str().unwrap()))
            .collect();
        assert_eq!(ops, [("DMP000000000", "modified"), ("DMP000000001", "deleted"), ("NEW1", "added")]);
        assert_eq!(v["devices"][0]["asset_tag"], "A-17");
        assert_eq!(v["more_to_follow"], false);
        let next = v["cursor"].as_str().unwrap().to_owned();
        let a = c.req("POST", "/devices/sync", &json!({ "cursor": next }).to_string()).await;
        assert_eq!(a.json()["devices"].as_array().unwrap().len(), 0);

        // Duplicates: the older record of the same serial follows the newer.
        mock.set_duplicates(true);
        let a = c.req("POST", "/devices/sync", &json!({ "cursor": cursor, "limit": 1 }).to_string()).await;
        let v = a.json();
        let d = v["devices"].as_array().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0]["op_type"].as_str(), d[1]["op_type"].as_str()), (Some("modified"), Some("added")));
        assert!(d[1]["op_date"].as_str().unwrap() < d[0]["op_date"].as_str().unwrap());
        assert_eq!(v["more_to_follow"], true);
        mock.set_duplicates(false);

        let a = c.req("POST", "/devices/sync", "{}").await;
        assert_eq!((a.status, a.body.as_str()), (400, "CURSOR_REQUIRED"));
        let a = c.req("POST", "/devices/sync", r#"{"cursor":"00ff"}"#).await;
        assert_eq!((a.status, a.body.as_str()), (400, "INVALID_CURSOR"));

        // Stuck cursor: same cursor, more_to_follow forever.
        mock.set_stuck_cursor(true);
        for _ in 0..3 {
            let v = c.req("POST", "/devices/sync", &json!({ "cursor": next }).to_string()).await.json();
            assert_eq!((v["cursor"].as_str(), v["more_to_follow"].as_bool()), (Some(next.as_str()), Some(true)));
        }
        mock.set_stuck_cursor(false);

        mock.advance_clock(TimeDelta::days(8));
        c.login().await;
        let a = c.req("POST", "/devices/sync", &json!({ "cursor": cursor }).to_string()).await;
        assert_eq!((a.status, a.body.as_str()), (400, "EXPIRED_CURSOR"));
    }

    #[tokio::test]
    async fn injected_failures_and_terms() {
        let mock = MockAde::start().await.unwrap();
        mock.add_devices(ipads(2));
        mock.fail_next(1, Failure::too_many_requests(7));
        let mut c = Client::new(&mock);
        assert_eq!(c.login().await.status, 200, "GET /session does not use up a Status failure");
        let a = c.req("POST", "/server/devices", "{}").await;
        assert_eq!(a.status, 429);
        assert_eq!(a.headers[RETRY_AFTER], "7");
        assert_eq!(c.req("POST", "/server/devices", "{}").await.status, 200);
        mock.fail_next(1, Failure::SessionStatus { status: 503, body: "SERVICE_UNAVAILABLE".into(), retry_after: Some(2) });
        assert_eq!(c.login().await.status, 503);
        assert_eq!(c.login().await.status, 200);
        assert_eq!(mock.request_count("GET", "/session"), 3);
        assert_eq!(mock.request_count("POST", "/server/devices"), 2);

        mock.set_terms_not_signed(true);
        let a = c.login().await;
        assert_eq!((a.status, a.body.as_str()), (403, "T_C_NOT_SIGNED"));
        let a = c.req("GET", "/account", "").await;
        assert_eq!((a.status, a.body.as_str()), (403, "T_C_NOT_SIGNED"));
        mock.set_terms_not_signed(false);
        assert_eq!(c.req("GET", "/account", "").await.status, 200);
    }

    #[tokio::test]
    async fn define_profile_validation() {
        let mock = MockAde::start().await.unwrap();
        let mut c = Client::new(&mock);
        c.login().await;
        let base = json!({ "profile_name": "Students", "url": "https://mdm.school.example/ade/enroll" });
        let cases: Vec<(Value, &str)> = vec![
            (json!({ "url": "https://x.example" }), "CONFIG_NAME_REQUIRED"),
            (json!({ "profile_name": "x".repeat(126), "url": "https://x.example" }), "CONFIG_NAME_INVALID"),
            (json!({ "profile_name": "P" }), "CONFIG_URL_REQUIRED"),
            (json!({ "profile_name": "P", "url": "ftp://x.example" }), "CONFIG_URL_INVALID"),
            (json!({ "profile_name": "P", "url": "https://x.example", "is_mdm_removable": false }), "FLAGS_INVALID"),
            (json!({ "profile_name": "P", "url": "https://x.example", "department": "d".repeat(126) }), "DEPARTMENT_INVALID"),
            (json!({ "profile_name": "P", "url": "https://x.example", "support_phone_number": "1".repeat(51) }), "SUPPORT_PHONE_INVALID"),
            (json!({ "profile_name": "P", "url": "https://x.example", "skip_setup_items": ["Siri", 3] }), "MALFORMED_REQUEST_BODY"),
        ];
        for (body, code) in cases {
            let a = c.req("POST", "/profile", &body.to_string()).await;
            assert_eq!((a.status, a.body.as_str()), (400, code), "{body}");
        }
        let a = c.req("POST", "/profile", "[]").await;
        assert_eq!((a.status, a.body.as_str()), (400, "MALFORMED_REQUEST_BODY"));
        assert!(mock.profiles().is_empty());

        let mut ok = base.clone();
        ok["is_mdm_removable"] = false.into();
        ok["is_supervised"] = true.into();
        ok["skip_setup_items"] = json!(["Siri", "Location"]);
        let a = c.req("POST", "/profile", &ok.to_string()).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let uuid = a.json()["profile_uuid"].as_str().unwrap().to_owned();
        assert!(uuid.len() == 32 && uuid.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        let got = c.req("GET", &format!("/profile?profile_uuid={uuid}"), "").await.json();
        assert_eq!((got["profile_name"].as_str(), got["profile_uuid"].as_str()), (Some("Students"), Some(uuid.as_str())));
        assert_eq!(c.req("GET", "/profile?profile_uuid=ABC", "").await.status, 404);
        assert_eq!(mock.profiles().len(), 1);
    }

    #[tokio::test]
    async fn assign_and_clear_profiles() {
        let mock = MockAde::start().await.unwrap();
        mock.add_devices(ipads(3));
        let mut c = Client::new(&mock);
        c.login().await;
        let (_, cursor, _) = c.fetch_all(100).await;
        let body = json!({ "profile_name": "P", "url": "https://mdm.example/enroll", "devices": ["DMP000000000", "GONE"] });
        let v = c.req("POST", "/profile", &body.to_string()).await.json();
        let uuid = v["profile_uuid"].as_str().unwrap().to_owned();
        assert_eq!(v["devices"], json!({ "DMP000000000": "SUCCESS", "GONE": "NOT_ACCESSIBLE" }));
        assert_eq!(mock.assigned_profile("DMP000000000").as_deref(), Some(uuid.as_str()));
        assert_eq!(mock.device_profile_status("DMP000000000").as_deref(), Some("assigned"));

        mock.set_assign_result("DMP000000002", "THROTTLED");
        let body = json!({ "profile_uuid": uuid, "devices": ["DMP000000001", "DMP000000002", "NOPE"] }).to_string();
        let a = c.req("PUT", "/profile/devices", &body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        assert_eq!(v["devices"], json!({ "DMP000000001": "SUCCESS", "DMP000000002": "THROTTLED", "NOPE": "NOT_ACCESSIBLE" }));
        assert_eq!(v["retry_after_seconds"], 1);
        assert_eq!(mock.assigned_profile("DMP000000002"), None);
        mock.set_assign_result("DMP000000002", "SUCCESS");
        let a = c.req("POST", "/profile/devices", &json!({ "profile_uuid": uuid, "devices": ["DMP000000002"] }).to_string()).await;
        assert_eq!(a.json()["devices"]["DMP000000002"], "SUCCESS");
        assert!(a.json().get("retry_after_seconds").is_none());

        let a = c.req("PUT", "/profile/devices", r#"{"devices":["DMP000000001"]}"#).await;
        assert_eq!((a.status, a.body.as_str()), (400, "PROFILE_UUID_REQUIRED"));
        let a = c.req("PUT", "/profile/devices", &json!({ "profile_uuid": uuid, "devices": [] }).to_string()).await;
        assert_eq!((a.status, a.body.as_str()), (400, "DEVICE_ID_REQUIRED"));
        let many: Vec<String> = (0..1001).map(|i| format!("S{i}")).collect();
        let a = c.req("PUT", "/profile/devices", &json!({ "profile_uuid": uuid, "devices": many }).to_string()).await;
        assert_eq!(a.status, 400);
        let a = c.req("PUT", "/profile/devices", r#"{"profile_uuid":"FFFF","devices":["DMP000000001"]}"#).await;
        assert_eq!(a.status, 404);

        // Assignments show up in sync as `modified`, with the profile.
        let v = c.req("POST", "/devices/sync", &json!({ "cursor": cursor }).to_string()).await.json();
        let d = v["devices"].as_array().unwrap();
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|d| d["op_type"] == "modified" && d["profile_uuid"] == uuid.as_str() && d["profile_status"] == "assigned"));

        let v = c.req("DELETE", "/profile/devices", r#"{"devices":["DMP000000001","NOPE"]}"#).await.json();
        assert_eq!(v["devices"], json!({ "DMP000000001": "SUCCESS", "NOPE": "NOT_ACCESSIBLE" }));
        assert_eq!(mock.device_profile_status("DMP000000001").as_deref(), Some("removed"));
        assert_eq!(mock.assigned_profile("DMP000000001"), None);

        let v = c.req("POST", "/devices", r#"{"devices":["DMP000000000","NOPE"]}"#).await.json();
        assert_eq!(v["devices"]["DMP000000000"]["response_status"], "SUCCESS");
        assert_eq!(v["devices"]["DMP000000000"]["profile_uuid"], uuid.as_str());
        assert_eq!(v["devices"]["NOPE"]["response_status"], "NOT_ACCESSIBLE");
    }

    #[tokio::test]
    async fn fifty_thousand_devices_fetch_and_assign() {
        let mock = MockAde::start().await.unwrap();
        mock.add_devices(ipads(50_000));
        let started = std::time::Instant::now();
        let mut c = Client::new(&mock);
        c.login().await;
        let (devices, _, _) = c.fetch_all(1000).await;
        assert_eq!(devices.len(), 50_000);
        let body = json!({ "profile_name": "P", "url": "https://mdm.example/enroll" });
        let uuid = c.req("POST", "/profile", &body.to_string()).await.json()["profile_uuid"].as_str().unwrap().to_owned();
        for chunk in devices.chunks(1000) {
            let serials: Vec<&str> = chunk.iter().map(|d| d["serial_number"].as_str().unwrap()).collect();
            let a = c.req("PUT", "/profile/devices", &json!({ "profile_uuid": uuid, "devices": serials }).to_string()).await;
            assert_eq!(a.status, 200);
        }
        assert_eq!(mock.assigned_profile("DMP000049999").as_deref(), Some(uuid.as_str()));
        let elapsed = started.elapsed();
        eprintln!("50,000 devices fetched and assigned in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(60));
    }

    fn recipient() -> (PKey<openssl::pkey::Private>, X509) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "Lanyard ADE token recipient").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&openssl::bn::BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (key, b.build())
    }

    #[tokio::test]
    async fn smime_token_file_round_trip() {
        let mock = MockAde::start().await.unwrap();
        let (key, cert) = recipient();
        let file = smime_token_file(&cert.to_pem().unwrap(), &mock.token_json()).unwrap();
        let text = String::from_utf8(file.clone()).unwrap();
        assert!(text.starts_with("Content-Type: application/pkcs7-mime;"));
        assert!(text.contains("smime-type=enveloped-data") && text.contains("Content-Transfer-Encoding: base64\r\n"));
        let (p7, _) = Pkcs7::from_smime(&file).unwrap();
        let inner = String::from_utf8(p7.decrypt(&key, &cert, Pkcs7Flags::empty()).unwrap()).unwrap();
        assert!(inner.starts_with("Content-Type: text/plain;charset=UTF-8\r\n"));
        let json = inner.split("-----BEGIN MESSAGE-----").nth(1).and_then(|r| r.split("-----END MESSAGE-----").next()).unwrap();
        let v: Value = serde_json::from_str(json.trim()).unwrap();
        let t = mock.token();
        assert_eq!(v["consumer_key"], t.consumer_key.as_str());
        assert_eq!(v["access_secret"], t.access_secret.as_str());
        assert!(DateTime::parse_from_rfc3339(v["access_token_expiry"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn percent_encoding_is_rfc5849() {
        assert_eq!(pct("a b+c/~"), "a%20b%2Bc%2F~");
        assert_eq!(pct_decode("a%20b%2Bc", false).as_deref(), Some("a b+c"));
        assert_eq!(pct_decode("%+1", false), None);
        // RFC 5849 §3.4.1.1's example uses the same algorithm (different secrets/values).
        let p = parse_oauth_header("OAuth realm=\"ADM\", oauth_nonce=\"a%2Fb\"").unwrap();
        assert_eq!(p[1], ("oauth_nonce".to_owned(), "a/b".to_owned()));
        assert!(parse_oauth_header("OAuth a=\"1\", a=\"2\"").is_none());
    }
}
