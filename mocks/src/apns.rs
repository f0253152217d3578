//! A mock APNs for tests and benchmarks: a real HTTP/2-over-TLS server on `127.0.0.1` that
//! checks requests the way Apple's provider API does.
//!
//! * TLS: its own throwaway CA ([`MockApns::ca_pem`] — give it to the client as extra CA), ALPN
//!   `h2` only, and a client certificate is required. The client certificate must be issued by
//!   the configured issuer (the push certificate's CA, see
//!   [`super::testing::test_push_certificate`]) and be within its validity, else every request
//!   on the connection gets `403 {"reason":"BadCertificate"}`; its `UID` is the only topic the
//!   connection may push to (`400 TopicDisallowed` otherwise, as Apple documents).
//! * Requests: `POST /3/device/<64+ hex digits>` with `apns-topic`, `apns-push-type: mdm`,
//!   optional `apns-priority` (1, 5, 10), `apns-expiration` (Unix seconds), `apns-id` (UUID),
//!   and a JSON body with an `"mdm"` string of at most 4 KiB. Malformed requests get Apple's
//!   status and reason (`405 MethodNotAllowed`, `404 BadPath`, `400 MissingDeviceToken`,
//!   `BadDeviceToken`, `MissingTopic`, `DuplicateHeaders`, `InvalidPushType`, `BadPriority`,
//!   `BadExpirationDate`, `BadMessageId`, `PayloadEmpty`, `413 PayloadTooLarge`). A body that is
//!   not JSON with an `"mdm"` string gets `400 BadPayload` (the mock's own reason: Apple does
//!   not document one for MDM payloads).
//! * Well-formed requests are recorded ([`MockApns::received`]) and answered `200` with an
//!   `apns-id`, unless a script ([`MockApns::respond_to`]) says otherwise for that token.
//! * Failure injection: [`MockApns::goaway_after`] (graceful HTTP/2 GOAWAY on every open
//!   connection), [`MockApns::drop_connections_after`] (abrupt close), and a per-request
//!   latency ([`MockApns::set_latency`]).
//!
//! [`bench_push`] measures [`super::apns::ApnsClient::push_many`] against it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Public};
use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_openssl::SslStream;
use tracing::debug;

use crate::certificates as testing;
use lanyard::apple::apns::{ApnsClient, ApnsConfig};
use lanyard::apple::push_certificate::{PushCertificate, topic_of};

/// Largest payload APNs accepts for non-VoIP pushes.
const MAX_PAYLOAD: usize = 4096;

/// Settings of a [`MockApns`].
#[derive(Clone)]
pub struct MockConfig {
    /// Client certificates must be issued (signed) by this CA.
    pub client_issuer: X509,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised per connection (Apple's is around 1000).
    pub max_concurrent_streams: u32,
    /// Delay before answering each request.
    pub latency: Option<Duration>,
    /// Whether to keep every accepted request for [`MockApns::received`] (the counters run
    /// either way).
    pub record: bool,
}

impl MockConfig {
    /// Defaults: 1000 streams per connection, no latency, recording on.
    pub fn new(client_issuer: X509) -> MockConfig {
        MockConfig { client_issuer, max_concurrent_streams: 1000, latency: None, record: true }
    }
}

/// A scripted answer for one request to a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockResponse {
    /// HTTP status.
    pub status: u16,
    /// `{"reason": …}` of the body (for errors; Apple's default for the status when `None`).
    pub reason: Option<String>,
    /// `Retry-After` header, seconds.
    pub retry_after: Option<u64>,
    /// `{"timestamp": …}` of the body (milliseconds since the epoch, for `410`).
    pub timestamp: Option<i64>,
}

impl MockResponse {
    /// `200`.
    pub fn ok() -> MockResponse {
        MockResponse { status: 200, reason: None, retry_after: None, timestamp: None }
    }

    /// An error `status` with Apple's `reason`.
    pub fn error(status: u16, reason: &str) -> MockResponse {
        MockResponse { status, reason: Some(reason.to_owned()), retry_after: None, timestamp: None }
    }

    /// `410 Unregistered` with `timestamp` (milliseconds since the epoch).
    pub fn unregistered(timestamp: i64) -> MockResponse {
        MockResponse { timestamp: Some(timestamp), ..MockResponse::error(410, "Unregistered") }
    }

    /// This response with a `Retry-After: seconds` header.
    pub fn with_retry_after(mut self, seconds: u64) -> MockResponse {
        self.retry_after = Some(seconds);
        self
    }
}

/// A request the mock accepted (well-formed, good certificate and topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedPush {
    /// Device token from the path, lowercase hex.
    pub token_hex: String,
    /// `apns-topic`.
    pub topic: String,
    /// The body's `"mdm"` value.
    pub push_magic: String,
    /// `apns-push-type`.
    pub push_type: String,
    /// `apns-priority`, when sent.
    pub priority: Option<u8>,
    /// `apns-expiration`, when sent.
    pub expiration: Option<i64>,
    /// `apns-id` sent by the client, when sent.
    pub apns_id: Option<String>,
    /// The body as received.
    pub body: String,
    /// The status the mock answered (200, or a scripted one).
    pub status: u16,
    /// Which connection (numbered from 1 in accept order) carried it.
    pub connection: u64,
}

/// How connections end on [`MockApns::goaway_after`] / [`MockApns::drop_connections_after`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Disconnect {
    GoAway = 0,
    Abrupt = 1,
}

/// A running mock APNs. Stop it with [`MockApns::stop`] (dropping it aborts the server).
pub struct MockApns {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for MockApns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockApns").field("addr", &self.addr).finish_non_exhaustive()
    }
}

struct Shared {
    issuer: X509,
    issuer_key: PKey<Public>,
    max_streams: u32,
    record: bool,
    latency_us: AtomicU64,
    received: Mutex<Vec<ReceivedPush>>,
    /// Accepted (recorded) requests.
    accepted: AtomicUsize,
    /// Every request that reached the HTTP layer.
    requests: AtomicUsize,
    scripts: Mutex<HashMap<String, VecDeque<MockResponse>>>,
    has_scripts: AtomicBool,
    /// `accepted` value at which to disconnect everyone; `usize::MAX` for never.
    disconnect_at: AtomicUsize,
    disconnect_mode: AtomicU8,
    disconnect: watch::Sender<u64>,
    connections: AtomicU64,
    max_streams_seen: AtomicUsize,
}

/// What a connection's client certificate allows.
enum ClientIdentity {
    Valid { topic: Option<String> },
    Invalid(String),
}

struct ConnState {
    id: u64,
    identity: ClientIdentity,
    in_flight: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockApns {
    /// Starts a mock on `127.0.0.1:<free port>` accepting client certificates issued by
    /// `client_issuer`, with default [`MockConfig`].
    pub async fn start(client_issuer: &X509) -> io::Result<MockApns> {
        Self::start_with(MockConfig::new(client_issuer.clone())).await
    }

    /// Starts a mock with explicit settings.
    pub async fn start_with(config: MockConfig) -> io::Result<MockApns> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (ca, ca_key) = testing::test_ca("Lanyard Mock APNs CA").map_err(io::Error::other)?;
        let (server_cert, server_key) = testing::test_server_certificate(&ca, &ca_key, ip).map_err(io::Error::other)?;
        let acceptor = build_acceptor(&server_cert, &server_key).map_err(io::Error::other)?;
        let issuer_key = config.client_issuer.public_key().map_err(io::Error::other)?;
        let ca_pem = ca.to_pem().map_err(io::Error::other)?;

        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            issuer: config.client_issuer,
            issuer_key,
            max_streams: config.max_concurrent_streams.max(1),
            record: config.record,
            latency_us: AtomicU64::new(duration_us(config.latency)),
            received: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            scripts: Mutex::new(HashMap::new()),
            has_scripts: AtomicBool::new(false),
            disconnect_at: AtomicUsize::new(usize::MAX),
            disconnect_mode: AtomicU8::new(Disconnect::GoAway as u8),
            disconnect: watch::channel(0).0,
            connections: AtomicU64::new(0),
            max_streams_seen: AtomicUsize::new(0),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::new(acceptor), Arc::clone(&shared), shutdown_rx));
        debug!(%addr, "mock APNs listening");
        Ok(MockApns { shared, addr, ca_pem, shutdown, task: Some(task) })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mock's CA certificate, PEM: the client must trust it.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_pem.clone()
    }

    /// Scripts the answers to the next requests for `token_hex` (case-insensitive), consumed in
    /// order; afterwards the token gets `200` again. Replaces any earlier script for the token.
    pub fn respond_to(&self, token_hex: &str, script: Vec<MockResponse>) {
        let mut scripts = lock(&self.shared.scripts);
        scripts.insert(token_hex.to_ascii_lowercase(), script.into());
        self.shared.has_scripts.store(true, Ordering::Release);
    }

    /// After `n_requests` more accepted requests, sends a graceful GOAWAY on every open
    /// connection (in-flight requests are answered; clients must reconnect). Happens once.
    pub fn goaway_after(&self, n_requests: usize) {
        self.arm_disconnect(n_requests, Disconnect::GoAway);
    }

    /// After `n_requests` more accepted requests, closes every open connection at once, without
    /// answering in-flight requests. Happens once.
    pub fn drop_connections_after(&self, n_requests: usize) {
        self.arm_disconnect(n_requests, Disconnect::Abrupt);
    }

    fn arm_disconnect(&self, n_requests: usize, mode: Disconnect) {
        let shared = &self.shared;
        shared.disconnect_mode.store(mode as u8, Ordering::SeqCst);
        let at = shared.accepted.load(Ordering::SeqCst).saturating_add(n_requests.max(1));
        shared.disconnect_at.store(at, Ordering::SeqCst);
    }

    /// Sets the delay before each answer (`None`: answer at once).
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.shared.latency_us.store(duration_us(latency), Ordering::Relaxed);
    }

    /// Every accepted request so far, in arrival order (empty when recording is off).
    pub fn received(&self) -> Vec<ReceivedPush> {
        lock(&self.shared.received).clone()
    }

    /// Forgets the recorded requests (the counters keep running).
    pub fn clear_received(&self) {
        lock(&self.shared.received).clear();
    }

    /// Number of accepted requests (whatever the answer).
    pub fn count(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Number of requests that reached the HTTP layer, rejected ones included.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Number of TLS connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Most requests seen in flight at once on a single connection.
    pub fn max_concurrent_streams_seen(&self) -> usize {
        self.shared.max_streams_seen.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes connections gracefully (GOAWAY, in-flight requests answered,
    /// at most 2 s), and waits for the server to finish.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockApns {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn duration_us(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn build_acceptor(cert: &X509, key: &PKey<openssl::pkey::Private>) -> Result<SslAcceptor, openssl::error::ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate(cert)?;
    b.set_private_key(key)?;
    b.check_private_key()?;
    b.set_alpn_select_callback(|_, offered| openssl::ssl::select_next_proto(b"\x02h2", offered).ok_or(AlpnError::ALERT_FATAL));
    // A client certificate is required, but any issuer passes the handshake: the issuer is
    // checked per request so that a wrong one gets APNs' 403 rather than a TLS alert.
    b.set_verify_callback(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT, |_, _| true);
    Ok(b.build())
}

async fn accept_loop(listener: TcpListener, acceptor: Arc<SslAcceptor>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    conns.spawn(serve_connection(
                        tcp,
                        Arc::clone(&acceptor),
                        Arc::clone(&shared),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    debug!(error = %e, "mock APNs accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), drain).await.is_err() {
        conns.shutdown().await;
    }
}

async fn serve_connection(tcp: TcpStream, acceptor: Arc<SslAcceptor>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let Ok(ssl) = Ssl::new(acceptor.context()) else {
        return;
    };
    let Ok(mut tls) = SslStream::new(ssl, tcp) else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(10), Pin::new(&mut tls).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!(error = %e, "mock APNs TLS handshake failed");
            return;
        }
        Err(_) => return,
    }
    if tls.ssl().selected_alpn_protocol() != Some(b"h2".as_slice()) {
        debug!("mock APNs: client did not negotiate h2");
        return;
    }
    let identity = check_client(tls.ssl().peer_certificate(), &shared);
    let id = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let state = Arc::new(ConnState { id, identity, in_flight: AtomicUsize::new(0) });

    let mut disconnect = shared.disconnect.subscribe();
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |request| handle(request, Arc::clone(&service_shared), Arc::clone(&state)));
    let connection =
        http2::Builder::new(TokioExecutor::new()).max_concurrent_streams(shared.max_streams).serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);

    let mode = tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, connection = id, "mock APNs connection ended");
            }
            return;
        }
        changed = disconnect.changed() => match changed {
            Ok(()) if shared.disconnect_mode.load(Ordering::SeqCst) == Disconnect::Abrupt as u8 => {
                Disconnect::Abrupt
            }
            _ => Disconnect::GoAway,
        },
        _ = shutdown.changed() => Disconnect::GoAway,
    };
    match mode {
        Disconnect::Abrupt => {
            debug!(connection = id, "mock APNs dropping connection");
            // Dropping the connection closes the socket with requests unanswered.
        }
        Disconnect::GoAway => {
            debug!(connection = id, "mock APNs sending GOAWAY");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

/// Checks the client certificate once per connection.
fn check_client(peer: Option<X509>, shared: &Shared) -> ClientIdentity {
    let identity = client_identity(peer, shared);
    // A failed signature check leaves errors on OpenSSL's thread-local queue, where the next
    // TLS read on this thread would find them and fail: drain it.
    let _ = openssl::error::ErrorStack::get();
    identity
}

fn client_identity(peer: Option<X509>, shared: &Shared) -> ClientIdentity {
    let Some(cert) = peer else {
        return ClientIdentity::Invalid("no client certificate".to_owned());
    };
    let same_issuer = cert.issuer_name().try_cmp(shared.issuer.subject_name()).map(|o| o.is_eq()).unwrap_or(false);
    if !same_issuer || !cert.verify(&shared.issuer_key).unwrap_or(false) {
        return ClientIdentity::Invalid("client certificate not issued by the push CA".to_owned());
    }
    let in_validity = Asn1Time::days_from_now(0).map(|now| cert.not_before() <= now && now <= cert.not_after()).unwrap_or(false);
    if !in_validity {
        return ClientIdentity::Invalid("client certificate expired or not yet valid".to_owned());
    }
    ClientIdentity::Valid { topic: topic_of(&cert).ok() }
}

/// Counts a request in flight on its connection for as long as it lives.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(conn: &Arc<ConnState>, shared: &Shared) -> InFlight {
        let now = conn.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_streams_seen.fetch_max(now, Ordering::Relaxed);
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(request: Request<Incoming>, shared: Arc<Shared>, conn: Arc<ConnState>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _in_flight = InFlight::enter(&conn, &shared);
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let latency = shared.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let apns_id = request.headers().get("apns-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let answer = match accept(request, &conn).await {
        Ok(push) => answer_accepted(push, &shared),
        Err(rejection) => rejection,
    };
    let apns_id = answer.apns_id.clone().or(apns_id).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok(answer.into_response(apns_id))
}

/// An answer before it becomes an HTTP response.
struct Answer {
    status: u16,
    reason: Option<String>,
    retry_after: Option<u64>,
    timestamp: Option<i64>,
    apns_id: Option<String>,
}

impl Answer {
    fn reject(status: u16, reason: &str) -> Answer {
        Answer { status, reason: Some(reason.to_owned()), retry_after: None, timestamp: None, apns_id: None }
    }

    fn into_response(self, apns_id: String) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut builder = Response::builder().status(status);
        if let Ok(value) = HeaderValue::from_str(&apns_id) {
            builder = builder.header("apns-id", value);
        }
        if let Some(seconds) = self.retry_after {
            builder = builder.header(RETRY_AFTER, seconds);
        }
        let body = if status == StatusCode::OK {
            Bytes::new()
        } else {
            builder = builder.header(CONTENT_TYPE, "application/json");
            let reason = self.reason.unwrap_or_else(|| default_reason(self.status).to_owned());
            let mut json = serde_json::json!({ "reason": reason });
            if let Some(ts) = self.timestamp {
                json["timestamp"] = ts.into();
            }
            Bytes::from(json.to_string())
        };
        builder.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

/// Apple's usual reason for a status, for scripts that give none.
fn default_reason(status: u16) -> &'static str {
    match status {
        400 => "BadDeviceToken",
        403 => "Forbidden",
        404 => "BadPath",
        405 => "MethodNotAllowed",
        410 => "Unregistered",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalServerError",
    }
}

/// A request that passed every check.
struct Accepted {
    token_hex: String,
    topic: String,
    push_magic: String,
    push_type: String,
    priority: Option<u8>,
    expiration: Option<i64>,
    apns_id: Option<String>,
    body: String,
    connection: u64,
}

/// Validates a request as APNs would; `Err` is the rejection to send.
async fn accept(request: Request<Incoming>, conn: &ConnState) -> Result<Accepted, Answer> {
    if request.method() != Method::POST {
        return Err(Answer::reject(405, "MethodNotAllowed"));
    }
    let Some(token) = request.uri().path().strip_prefix("/3/device/") else {
        return Err(Answer::reject(404, "BadPath"));
    };
    if token.is_empty() {
        return Err(Answer::reject(400, "MissingDeviceToken"));
    }
    if token.len() < 64 || token.len() % 2 != 0 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Answer::reject(400, "BadDeviceToken"));
    }
    let token_hex = token.to_ascii_lowercase();
    let allowed_topic = match &conn.identity {
        ClientIdentity::Valid { topic } => topic.as_deref(),
        ClientIdentity::Invalid(why) => {
            debug!(connection = conn.id, why = %why, "mock APNs: bad client certificate");
            return Err(Answer::reject(403, "BadCertificate"));
        }
    };

    let headers = request.headers();
    for name in ["apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-id", "apns-collapse-id"] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(Answer::reject(400, "DuplicateHeaders"));
        }
    }
    let Some(topic) = header_str(headers, "apns-topic") else {
        return Err(Answer::reject(400, "MissingTopic"));
    };
    if Some(topic) != allowed_topic {
        return Err(Answer::reject(400, "TopicDisallowed"));
    }
    let push_type = header_str(headers, "apns-push-type").unwrap_or_default();
    if push_type != "mdm" {
        return Err(Answer::reject(400, "InvalidPushType"));
    }
    let priority = match header_str(headers, "apns-priority") {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(p @ (1 | 5 | 10)) => Some(p),
            _ => return Err(Answer::reject(400, "BadPriority")),
        },
    };
    let expiration = match header_str(headers, "apns-expiration") {
        None => None,
        Some(e) => match e.parse::<i64>() {
            Ok(e) if e >= 0 => Some(e),
            _ => return Err(Answer::reject(400, "BadExpirationDate")),
        },
    };
    let apns_id = match header_str(headers, "apns-id") {
        None => None,
        Some(id) => match uuid::Uuid::try_parse(id) {
            Ok(_) if id.len() == 36 => Some(id.to_ascii_lowercase()),
            _ => return Err(Answer::reject(400, "BadMessageId")),
        },
    };
    let (topic, push_type) = (topic.to_owned(), push_type.to_owned());

    let body = match Limited::new(request.into_body(), MAX_PAYLOAD).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Answer::reject(413, "PayloadTooLarge"));
        }
        Err(_) => return Err(Answer::reject(400, "BadPayload")),
    };
    if body.is_empty() {
        return Err(Answer::reject(400, "PayloadEmpty"));
    }
    let push_magic =
        serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("mdm").and_then(|m| m.as_str()).map(str::to_owned));
    let Some(push_magic) = push_magic else {
        return Err(Answer::reject(400, "BadPayload"));
    };
    Ok(Accepted {
        token_hex,
        topic,
        push_magic,
        push_type,
        priority,
        expiration,
        apns_id,
        body: String::from_utf8_lossy(&body).into_owned(),
        connection: conn.id,
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Answers an accepted request (script or 200), records it, and fires a pending disconnect.
fn answer_accepted(push: Accepted, shared: &Shared) -> Answer {
    let scripted = if shared.has_scripts.load(Ordering::Acquire) {
        lock(&shared.scripts).get_mut(&push.token_hex).and_then(VecDeque::pop_front)
    } else {
        None
    };
    let response = scripted.unwrap_or_else(MockResponse::ok);
    let apns_id = push.apns_id.clone();
    if shared.record {
        lock(&shared.received).push(ReceivedPush {
            token_hex: push.token_hex,
            topic: push.topic,
            push_magic: push.push_magic,
            push_type: push.push_type,
            priority: push.priority,
            expiration: push.expiration,
            apns_id: push.apns_id,
            body: push.body,
            status: response.status,
            connection: push.connection,
        });
    }
    let accepted = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
    if accepted == shared.disconnect_at.load(Ordering::SeqCst)
        && shared.disconnect_at.compare_exchange(accepted, usize::MAX, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    {
        shared.disconnect.send_modify(|epoch| *epoch += 1);
    }
    Answer { status: response.status, reason: response.reason, retry_after: response.retry_after, timestamp: response.timestamp, apns_id }
}

// ---- benchmark ------------------------------------------------------------------------------

/// The result of [`bench_push`].
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Pushes sent.
    pub pushes: usize,
    /// Pushes answered `200`.
    pub delivered: usize,
    /// Pushes not delivered.
    pub failed: usize,
    /// Requests the mock accepted during the run (retries included).
    pub received: usize,
    /// Concurrent pushes in flight.
    pub concurrency: usize,
    /// TLS connections the client opened.
    pub connections: u64,
    /// Wall-clock time of `push_many`.
    pub elapsed: Duration,
    /// `pushes / elapsed`.
    pub pushes_per_sec: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pushes in {:.2} s = {:.0} pushes/s ({} delivered, {} failed, {} received by the \
             mock, concurrency {}, {} connection(s))",
            self.pushes,
            self.elapsed.as_secs_f64(),
            self.pushes_per_sec,
            self.delivered,
            self.failed,
            self.received,
            self.concurrency,
            self.connections
        )
    }
}

/// Concurrency used by [`bench_push`].
pub const BENCH_CONCURRENCY: usize = 1000;

/// Measures [`ApnsClient::push_many`] of `n` pushes against a local [`MockApns`] (throwaway
/// push certificate, TLS and HTTP/2 as in production), after a short warm-up. Must run inside
/// a Tokio multi-threaded runtime.
pub async fn bench_push(n: usize) -> io::Result<BenchReport> {
    bench_push_with(n, BENCH_CONCURRENCY, ApnsConfig::default()).await
}

/// [`bench_push`] with explicit concurrency and client tunables.
pub async fn bench_push_with(n: usize, concurrency: usize, config: ApnsConfig) -> io::Result<BenchReport> {
    let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
    let (cert, key, ca, _) = testing::try_test_push_certificate(&topic, 365).map_err(io::Error::other)?;
    let push = PushCertificate::from_x509(cert, key).map_err(io::Error::other)?;
    let mut mock_config = MockConfig::new(ca);
    mock_config.record = false;
    let mock = MockApns::start_with(mock_config).await?;
    let client = ApnsClient::with_config(&mock.url(), &push, Some(&mock.ca_pem()), config).map_err(io::Error::other)?;

    let token = |i: usize| {
        let mut t = vec![0x5au8; 32];
        t[..8].copy_from_slice(&(i as u64).to_be_bytes());
        t
    };
    let warm_up: Vec<_> = (0..n.min(1000)).map(|i| (token(usize::MAX - i), "warm-up".to_owned())).collect();
    client.push_many(warm_up, concurrency).await;
    let before = mock.count();

    let items: Vec<(Vec<u8>, String)> = (0..n).map(|i| (token(i), uuid::Uuid::new_v4().to_string())).collect();
    let started = Instant::now();
    let outcomes = client.push_many(items, concurrency).await;
    let elapsed = started.elapsed();
    let delivered = outcomes.iter().filter(|o| o.is_delivered()).count();
    let report = BenchReport {
        pushes: n,
        delivered,
        failed: n - delivered,
        received: mock.count() - before,
        concurrency,
        connections: mock.connections(),
        elapsed,
        pushes_per_sec: n as f64 / elapsed.as_secs_f64().max(1e-9),
    };
    drop(client);
    mock.stop().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::fixture;
    use hyper::client::conn::http2::SendRequest;
    use openssl::ssl::SslConnector;

    /// A raw HTTP/2 client with the fixture identity, to send what ApnsClient never would.
    async fn raw_client(mock: &MockApns, alpn: &[u8]) -> Result<SendRequest<Full<Bytes>>, String> {
        let push = &fixture().push;
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        b.set_certificate(&push.cert).map_err(|e| e.to_string())?;
        b.set_private_key(&push.key).map_err(|e| e.to_string())?;
        b.set_alpn_protos(alpn).map_err(|e| e.to_string())?;
        let ca = X509::from_pem(&mock.ca_pem()).map_err(|e| e.to_string())?;
        b.cert_store_mut().add_cert(ca).map_err(|e| e.to_string())?;
        let connector = b.build();
        let tcp = TcpStream::connect(mock.addr()).await.map_err(|e| e.to_string())?;
        let ssl = connector.configure().and_then(|c| c.into_ssl("127.0.0.1")).map_err(|e| e.to_string())?;
        let mut tls = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
        Pin::new(&mut tls).connect().await.map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn send(
        sender: &mut SendRequest<Full<Bytes>>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut b = Request::builder().method(method).uri(format!("https://127.0.0.1{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let request = b.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
        let response = sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Method, path, headers, body, expected status and reason.
    type Case<'a> = (Method, String, Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_requests_get_apples_reasons() {
        let mock = MockApns::start(&fixture().ca).await.expect("mock");
        let mut h2 = raw_client(&mock, b"\x02h2").await.expect("connect");
        let topic = fixture().push.topic.as_str();
        let token = "ab".repeat(32);
        let path = format!("/3/device/{token}");
        let good: Vec<(&str, &str)> = vec![("apns-topic", topic), ("apns-push-type", "mdm"), ("apns-priority", "10")];
        let body = r#"{"mdm":"magic"}"#;

        let cases: Vec<Case> = vec![
            (Method::GET, path.clone(), good.clone(), body, 405, "MethodNotAllowed"),
            (Method::POST, "/3/other/x".into(), good.clone(), body, 404, "BadPath"),
            (Method::POST, "/3/device/".into(), good.clone(), body, 400, "MissingDeviceToken"),
            (Method::POST, "/3/device/abcd".into(), good.clone(), body, 400, "BadDeviceToken"),
            (Method::POST, format!("/3/device/{}", "zz".repeat(32)), good.clone(), body, 400, "BadDeviceToken"),
            (Method::POST, path.clone(), good[1..].to_vec(), body, 400, "MissingTopic"),
            (
                Method::POST,
                path.clone(),
                vec![("apns-topic", "com.apple.mgmt.other"), ("apns-push-type", "mdm")],
                body,
                400,
                "TopicDisallowed",
            ),
            (Method::POST, path.clone(), vec![("apns-topic", topic), ("apns-push-type", "alert")], body, 400, "InvalidPushType"),
            (
                Method::POST,
                path.clone(),
                vec![("apns-topic", topic), ("apns-topic", topic), ("apns-push-type", "mdm")],
                body,
                400,
                "DuplicateHeaders",
            ),
            (
                Method::POST,
                path.clone(),
                vec![("apns-topic", topic), ("apns-push-type", "mdm"), ("apns-priority", "7")],
                body,
                400,
                "BadPriority",
            ),
            (
                Method::POST,
                path.clone(),
                vec![("apns-topic", topic), ("apns-push-type", "mdm"), ("apns-expiration", "soon")],
                body,
                400,
                "BadExpirationDate",
            ),
            (
                Method::POST,
                path.clone(),
                vec![("apns-topic", topic), ("apns-push-type", "mdm"), ("apns-id", "nope")],
                body,
                400,
                "BadMessageId",
            ),
            (Method::POST, path.clone(), good.clone(), "", 400, "PayloadEmpty"),
            (Method::POST, path.clone(), good.clone(), r#"{"aps":{}}"#, 400, "BadPayload"),
        ];
        for (method, path, headers, body, status, reason) in cases {
            let (got, json) = send(&mut h2, method.clone(), &path, &headers, body).await;
            assert_eq!((got, json["reason"].as_str()), (status, Some(reason)), "{method} {path} {headers:?} {body:?}");
        }
        let big = format!(r#"{{"mdm":"{}"}}"#, "x".repeat(5000));
        let (got, json) = send(&mut h2, Method::POST, &path, &good, &big).await;
        assert_eq!((got, json["reason"].as_str()), (413, Some("PayloadTooLarge")));
        assert_eq!(mock.count(), 0, "nothing malformed is recorded");

        // A well-formed one with a client-chosen apns-id is echoed back.
        let id = "123e4567-e89b-12d3-a456-426655440000";
        let mut headers = good.clone();
        headers.push(("apns-id", id));
        let (got, _) = send(&mut h2, Method::POST, &path, &headers, body).await;
        assert_eq!(got, 200);
        let received = mock.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].apns_id.as_deref(), Some(id));
        assert_eq!(received[0].push_magic, "magic");
        mock.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_only() {
        let mock = MockApns::start(&fixture().ca).await.expect("mock");
        assert!(raw_client(&mock, b"\x08http/1.1").await.is_err());
        assert_eq!(mock.connections(), 0);
        mock.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scripts_are_consumed_in_order() {
        let mock = MockApns::start(&fixture().ca).await.expect("mock");
        let mut h2 = raw_client(&mock, b"\x02h2").await.expect("connect");
        let token = "CD".repeat(32);
        mock.respond_to(&token, vec![MockResponse::error(429, "TooManyRequests").with_retry_after(3), MockResponse::unregistered(42)]);
        let headers = [("apns-topic", fixture().push.topic.as_str()), ("apns-push-type", "mdm")];
        let path = format!("/3/device/{token}");
        let body = r#"{"mdm":"m"}"#;
        let (s1, j1) = send(&mut h2, Method::POST, &path, &headers, body).await;
        let (s2, j2) = send(&mut h2, Method::POST, &path, &headers, body).await;
        let (s3, _) = send(&mut h2, Method::POST, &path, &headers, body).await;
        assert_eq!((s1, j1["reason"].as_str()), (429, Some("TooManyRequests")));
        assert_eq!((s2, j2["timestamp"].as_i64()), (410, Some(42)));
        assert_eq!(s3, 200);
        let statuses: Vec<u16> = mock.received().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![429, 410, 200]);
        assert_eq!(mock.received()[0].token_hex, token.to_ascii_lowercase());
        mock.stop().await;
    }
}
