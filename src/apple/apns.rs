//! The APNs client: wakes MDM-enrolled devices through Apple's HTTP/2 provider API.
//!
//! Each push is `POST /3/device/<hex token>` with `apns-topic: <push topic>`,
//! `apns-push-type: mdm`, `apns-priority: 10`, `apns-expiration: <now + 24 h>` and the body
//! `{"mdm":"<PushMagic>"}`, over TLS authenticated with the school's push certificate (ALPN
//! `h2`). MDM pushes always go to the production service, [`APNS_PRODUCTION_URL`].
//!
//! Connections: pushes are multiplexed as concurrent HTTP/2 streams over one connection; a
//! small pool (up to [`ApnsConfig::max_connections`]) opens more connections only when every
//! open one already carries [`ApnsConfig::max_streams_per_connection`] streams, or as many as the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` allows. The HTTP/2 layer never exceeds the server's
//! limit: streams beyond it wait their turn.
//!
//! Retries: `429` and `5xx` are retried with exponential backoff and jitter (honouring
//! `Retry-After`), up to [`ApnsConfig::max_attempts`] attempts in all. A lost connection or a
//! GOAWAY reconnects transparently and retries the in-flight request
//! ([`ApnsConfig::reconnect_retries`] times). `400`, `403` and `410` are final.
//!
//! Renewal: [`ApnsClient`] is cheap to build (it connects lazily); on a new push certificate
//! build a new one with [`ApnsClient::with_certificate`] and drop the old one, whose connections
//! close once their in-flight pushes finish.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use openssl::error::ErrorStack;
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tracing::{debug, warn};

use super::push_certificate::PushCertificate;

/// Apple's production APNs endpoint (the one MDM push certificates work with).
pub const APNS_PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's development APNs endpoint (not used by MDM; for completeness).
pub const APNS_SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_ID: HeaderName = HeaderName::from_static("apns-id");

/// Largest error body read from APNs (they are tiny JSON objects).
const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// Tunables of [`ApnsClient`]. `Default` suits Apple's production service.
#[derive(Clone, Debug)]
pub struct ApnsConfig {
    /// Attempts in all for a push answered `429` or `5xx` (or whose connection cannot be
    /// opened), including the first. At least 1.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled for each further one, with jitter (a random
    /// value between half and all of it).
    pub base_backoff: Duration,
    /// Upper bound on any single backoff, `Retry-After` included.
    pub max_backoff: Duration,
    /// How many times a push whose connection failed mid-request (connection lost, GOAWAY,
    /// stream refused, timeout) is sent again on a fresh connection.
    pub reconnect_retries: u32,
    /// Most connections open to APNs at once.
    pub max_connections: usize,
    /// Streams a connection should carry before the pool opens another connection (the
    /// server's own limit applies too, when lower).
    pub max_streams_per_connection: usize,
    /// Time allowed for TCP connect, TLS handshake and HTTP/2 preface.
    pub connect_timeout: Duration,
    /// Time allowed for one request, from sending to reading the whole response.
    pub request_timeout: Duration,
    /// How long APNs should keep trying to deliver (`apns-expiration` = now + this).
    pub expiration: Duration,
    /// `apns-priority`: 10 (immediately) or 5 (power-considerate).
    pub priority: u8,
    /// HTTP/2 PING interval on open connections, to notice dead ones; `None` disables it.
    pub keep_alive_interval: Option<Duration>,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            reconnect_retries: 1,
            max_connections: 4,
            max_streams_per_connection: 500,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            expiration: Duration::from_secs(24 * 3600),
            priority: 10,
            keep_alive_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// Why an [`ApnsClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    /// The base URL is not `https://host[:port]`.
    #[error("invalid APNs URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The push topic cannot be sent as an HTTP header value.
    #[error("the push topic {0:?} is not a valid HTTP header value")]
    InvalidTopic(String),
    /// The extra CA bundle holds no PEM certificate.
    #[error("the extra CA bundle holds no PEM certificate")]
    EmptyExtraCa,
    /// OpenSSL refused the TLS set-up (certificate, key, CA bundle).
    #[error("could not set up TLS for APNs: {0}")]
    Tls(#[from] ErrorStack),
}

/// What happened to one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// APNs accepted the push (`200`). Acceptance is not delivery: the device may be offline.
    Delivered {
        /// The `apns-id` APNs gave the notification.
        apns_id: Option<String>,
    },
    /// The request was refused (`400` and other `4xx` except those below), e.g.
    /// `BadDeviceToken`, `DeviceTokenNotForTopic`, `PayloadTooLarge`. Not retried.
    BadRequest {
        /// Apple's reason string.
        reason: String,
    },
    /// The push certificate is the problem: `403` (`BadCertificate`,
    /// `BadCertificateEnvironment`, `Forbidden`…) or a `400` about the topic
    /// (`TopicDisallowed`, `BadTopic`, `MissingTopic`). Every push will fail the same way
    /// until the certificate is fixed. Not retried.
    CertificateProblem {
        /// HTTP status (403, or 400 for topic reasons).
        status: u16,
        /// Apple's reason string.
        reason: String,
    },
    /// `410`: the token is no longer valid for the topic (`Unregistered`, `ExpiredToken`): stop
    /// pushing to it until the device sends a newer TokenUpdate.
    Unregistered {
        /// Apple's reason string.
        reason: String,
        /// When APNs learnt the token was invalid, milliseconds since the Unix epoch.
        timestamp: Option<i64>,
    },
    /// `429` or `5xx` still after every attempt: try again later.
    RetryLater {
        /// HTTP status of the last attempt.
        status: u16,
        /// Apple's reason string (`TooManyRequests`, `InternalServerError`,
        /// `ServiceUnavailable`, `Shutdown`).
        reason: String,
        /// The server's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// No answer from APNs: the connection could not be opened or was lost (after retrying).
    ConnectionFailed {
        /// What went wrong.
        error: String,
    },
}

impl PushOutcome {
    /// True for [`PushOutcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, PushOutcome::Delivered { .. })
    }

    /// True when sending the same push later may succeed (`429`/`5xx`, connection failures).
    pub fn is_transient(&self) -> bool {
        matches!(self, PushOutcome::RetryLater { .. } | PushOutcome::ConnectionFailed { .. })
    }

    /// True when the device token should not be pushed to again until the device sends a new
    /// TokenUpdate (`410`, or `400 BadDeviceToken`).
    pub fn token_is_dead(&self) -> bool {
        match self {
            PushOutcome::Unregistered { .. } => true,
            PushOutcome::BadRequest { reason } => reason == "BadDeviceToken",
            _ => false,
        }
    }

    /// Apple's reason string (or the connection error), if the push was not delivered.
    pub fn reason(&self) -> Option<&str> {
        match self {
            PushOutcome::Delivered { .. } => None,
            PushOutcome::BadRequest { reason }
            | PushOutcome::CertificateProblem { reason, .. }
            | PushOutcome::Unregistered { reason, .. }
            | PushOutcome::RetryLater { reason, .. } => Some(reason),
            PushOutcome::ConnectionFailed { error } => Some(error),
        }
    }
}

/// An HTTP/2 APNs client authenticated with an MDM push certificate. Cloning is cheap and
/// clones share the connection pool.
#[derive(Clone)]
pub struct ApnsClient {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    endpoint: Endpoint,
    connector: SslConnector,
    topic: String,
    topic_header: HeaderValue,
    extra_ca_pem: Option<Vec<u8>>,
    config: ApnsConfig,
    pool: Pool,
}

/// Where APNs is.
struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    /// Host for DNS, SNI and certificate verification (IPv6 without brackets).
    host: String,
    port: u16,
}

impl std::fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsClient").field("url", &self.inner.base_url).field("topic", &self.inner.topic).finish_non_exhaustive()
    }
}

/// The MDM notification payload.
#[derive(Serialize)]
struct MdmPayload<'a> {
    mdm: &'a str,
}

/// APNs' error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    reason: Option<String>,
    timestamp: Option<i64>,
}

/// A response as read off the wire.
struct RawResponse {
    status: u16,
    apns_id: Option<String>,
    retry_after: Option<Duration>,
    body: Bytes,
}

/// How one attempt ended short of an HTTP response.
enum AttemptError {
    /// No connection could be opened.
    Connect(String),
    /// The connection failed while the request was in flight.
    Request(String),
}

impl ApnsClient {
    /// A client for `base_url` (`https://api.push.apple.com`, or `https://127.0.0.1:PORT` for
    /// the mock) using `cert` as TLS client identity, trusting the system roots plus
    /// `extra_ca_pem` (PEM, one or more certificates). Default [`ApnsConfig`].
    ///
    /// Nothing is connected until the first push.
    pub fn new(base_url: &str, cert: &PushCertificate, extra_ca_pem: Option<&[u8]>) -> Result<ApnsClient, ApnsError> {
        Self::with_config(base_url, cert, extra_ca_pem, ApnsConfig::default())
    }

    /// [`ApnsClient::new`] with explicit tunables.
    pub fn with_config(
        base_url: &str,
        cert: &PushCertificate,
        extra_ca_pem: Option<&[u8]>,
        config: ApnsConfig,
    ) -> Result<ApnsClient, ApnsError> {
        let endpoint = parse_url(base_url)?;
        let connector = build_connector(cert, extra_ca_pem)?;
        let topic_header = HeaderValue::from_str(&cert.topic).map_err(|_| ApnsError::InvalidTopic(cert.topic.clone()))?;
        let config = ApnsConfig {
            max_attempts: config.max_attempts.max(1),
            max_connections: config.max_connections.max(1),
            max_streams_per_connection: config.max_streams_per_connection.max(1),
            ..config
        };
        Ok(ApnsClient {
            inner: Arc::new(Inner {
                base_url: base_url.to_owned(),
                endpoint,
                connector,
                topic: cert.topic.clone(),
                topic_header,
                extra_ca_pem: extra_ca_pem.map(<[u8]>::to_vec),
                config,
                pool: Pool::default(),
            }),
        })
    }

    /// A new client like this one (same URL, CA bundle and tunables) for a renewed or replaced
    /// push certificate. Keep using the old client until this succeeds, then drop it.
    pub fn with_certificate(&self, cert: &PushCertificate) -> Result<ApnsClient, ApnsError> {
        if cert.topic != self.inner.topic {
            warn!(
                old_topic = %self.inner.topic,
                new_topic = %cert.topic,
                "the new push certificate has a different topic: devices enrolled with the old \
                 topic cannot be woken with it (renew the certificate instead of replacing it)"
            );
        }
        Self::with_config(&self.inner.base_url, cert, self.inner.extra_ca_pem.as_deref(), self.inner.config.clone())
    }

    /// The push topic (`com.apple.mgmt.…`) sent as `apns-topic`.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The base URL this client pushes to.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The tunables in force.
    pub fn config(&self) -> &ApnsConfig {
        &self.inner.config
    }

    /// Connections currently open (for diagnostics).
    pub fn open_connections(&self) -> usize {
        self.inner.pool.live_count()
    }

    /// Sends one MDM push to the device with `device_token` (raw bytes, as the device reported
    /// them in TokenUpdate) carrying its `push_magic`.
    pub async fn push(&self, device_token: &[u8], push_magic: &str) -> PushOutcome {
        self.push_inner(device_token, push_magic).await.0
    }

    /// Sends many pushes, `concurrency` at a time, multiplexed over the connection pool.
    /// Outcomes are in the order of `items` (`(device token, push magic)`).
    ///
    /// If APNs cannot be reached at all (connecting fails after every attempt), the pushes not
    /// yet started are not attempted and come back as [`PushOutcome::ConnectionFailed`].
    pub async fn push_many(&self, items: Vec<(Vec<u8>, String)>, concurrency: usize) -> Vec<PushOutcome> {
        let total = items.len();
        if total == 0 {
            return Vec::new();
        }
        let workers = concurrency.clamp(1, total);
        let items = Arc::new(items);
        let next = Arc::new(AtomicUsize::new(0));
        let unreachable: Arc<OnceLock<String>> = Arc::new(OnceLock::new());

        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let client = self.clone();
            let items = Arc::clone(&items);
            let next = Arc::clone(&next);
            let unreachable = Arc::clone(&unreachable);
            handles.push(tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((token, magic)) = items.get(i) else {
                        break;
                    };
                    let outcome = match unreachable.get() {
                        Some(error) => PushOutcome::ConnectionFailed { error: format!("not attempted: {error}") },
                        None => {
                            let (outcome, connect_error) = client.push_inner(token, magic).await;
                            if let Some(error) = connect_error {
                                let _ = unreachable.set(error);
                            }
                            outcome
                        }
                    };
                    done.push((i, outcome));
                }
                done
            }));
        }

        let mut results: Vec<Option<PushOutcome>> = vec![None; total];
        for handle in handles {
            match handle.await {
                Ok(done) => {
                    for (i, outcome) in done {
                        results[i] = Some(outcome);
                    }
                }
                Err(e) => warn!(error = %e, "APNs push worker failed"),
            }
        }
        results.into_iter().map(|o| o.unwrap_or_else(|| PushOutcome::ConnectionFailed { error: "push worker failed".to_owned() })).collect()
    }

    /// One push with its retries. The second value is set when APNs could not be connected to
    /// at all (so that a batch can stop trying).
    async fn push_inner(&self, token: &[u8], push_magic: &str) -> (PushOutcome, Option<String>) {
        let config = &self.inner.config;
        let token_hex = hex::encode(token);
        let body = match serde_json::to_vec(&MdmPayload { mdm: push_magic }) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                let outcome = PushOutcome::BadRequest { reason: format!("payload could not be encoded: {e}") };
                return (outcome, None);
            }
        };
        let mut attempt: u32 = 1;
        let mut reconnects: u32 = 0;
        loop {
            match self.attempt(&token_hex, body.clone()).await {
                Ok(response) => {
                    let outcome = classify(&response);
                    if let PushOutcome::RetryLater { status, reason, retry_after } = &outcome
                        && attempt < config.max_attempts
                    {
                        let delay = self.backoff(attempt, *retry_after);
                        debug!(
                            token = %short(&token_hex),
                            status,
                            reason = %reason,
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            "APNs asked to retry"
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    if !outcome.is_delivered() {
                        log_failure(&token_hex, push_magic, &outcome, attempt);
                    }
                    return (outcome, None);
                }
                Err(AttemptError::Connect(error)) => {
                    if attempt < config.max_attempts {
                        let delay = self.backoff(attempt, None);
                        debug!(
                            token = %short(&token_hex),
                            error = %error,
                            attempt,
                            "cannot connect to APNs; will retry"
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    let outcome = PushOutcome::ConnectionFailed { error: error.clone() };
                    log_failure(&token_hex, push_magic, &outcome, attempt);
                    return (outcome, Some(error));
                }
                Err(AttemptError::Request(error)) => {
                    if reconnects < config.reconnect_retries {
                        reconnects += 1;
                        debug!(
                            token = %short(&token_hex),
                            error = %error,
                            "APNs connection lost mid-request; retrying on a fresh connection"
                        );
                        continue;
                    }
                    let outcome = PushOutcome::ConnectionFailed { error };
                    log_failure(&token_hex, push_magic, &outcome, attempt);
                    return (outcome, None);
                }
            }
        }
    }

    /// One request on a pooled connection.
    async fn attempt(&self, token_hex: &str, body: Bytes) -> Result<RawResponse, AttemptError> {
        let lease = self.acquire().await.map_err(AttemptError::Connect)?;
        let request = self.build_request(token_hex, body).map_err(AttemptError::Request)?;
        let mut sender = lease.conn.sender.clone();
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            let headers = response.headers();
            let apns_id = headers.get(APNS_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let retry_after =
                headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the APNs response: {e}"))?
                .to_bytes();
            Ok(RawResponse { status, apns_id, retry_after, body })
        };
        let result = match tokio::time::timeout(self.inner.config.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err("APNs request timed out".to_owned()),
        };
        match result {
            Ok(response) => {
                if response.status == 503 {
                    // "Shutdown"/"ServiceUnavailable": this server is going away.
                    self.inner.pool.evict(lease.conn.id);
                }
                Ok(response)
            }
            Err(error) => {
                self.inner.pool.evict(lease.conn.id);
                Err(AttemptError::Request(error))
            }
        }
    }

    fn build_request(&self, token_hex: &str, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let inner = &self.inner;
        let path = PathAndQuery::try_from(format!("/3/device/{token_hex}")).map_err(|e| format!("bad device token path: {e}"))?;
        let uri = Uri::builder()
            .scheme(inner.endpoint.scheme.clone())
            .authority(inner.endpoint.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| format!("bad APNs URI: {e}"))?;
        let expiration = chrono::Utc::now().timestamp() + i64::try_from(inner.config.expiration.as_secs()).unwrap_or(i64::MAX / 2);
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(APNS_TOPIC, inner.topic_header.clone())
            .header(APNS_PUSH_TYPE, HeaderValue::from_static("mdm"))
            .header(APNS_PRIORITY, HeaderValue::from(u16::from(inner.config.priority)))
            .header(APNS_EXPIRATION, HeaderValue::from(expiration))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(|e| format!("could not build the APNs request: {e}"))
    }

    /// Exponential backoff with jitter, at least `retry_after`, at most `max_backoff`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let config = &self.inner.config;
        let exponential = config.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let half = exponential / 2;
        let jittered = half + half.mul_f64(random_unit());
        retry_after.map_or(jittered, |r| r.max(jittered)).min(config.max_backoff)
    }

    /// A connection with room for one more stream, opening one if needed.
    async fn acquire(&self) -> Result<Lease, String> {
        let pool = &self.inner.pool;
        let config = &self.inner.config;
        let started = Instant::now();
        for _ in 0..4 {
            let fallback = match pool.pick(config) {
                Pick::Use(lease) => return Ok(lease),
                Pick::Grow(fallback) => fallback,
            };
            let _guard = match pool.connecting.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    // Someone else is opening a connection: share an open one if there is one,
                    // else wait for theirs.
                    if let Some(lease) = fallback {
                        return Ok(lease);
                    }
                    let _wait = pool.connecting.lock().await;
                    if let Some(error) = pool.failure_since(started) {
                        return Err(error);
                    }
                    continue;
                }
            };
            // Holding the connect lock: look again, someone may have just finished connecting.
            drop(fallback);
            let fallback = match pool.pick(config) {
                Pick::Use(lease) => return Ok(lease),
                Pick::Grow(fallback) => fallback,
            };
            match self.connect().await {
                Ok((sender, server_limit)) => return Ok(pool.add(sender, server_limit)),
                Err(error) => {
                    warn!(url = %self.inner.base_url, error = %error, "cannot connect to APNs");
                    pool.record_failure(error.clone());
                    if let Some(lease) = fallback {
                        return Ok(lease);
                    }
                    return Err(error);
                }
            }
        }
        Err("APNs connections keep closing as soon as they open".to_owned())
    }

    /// Opens one TLS + HTTP/2 connection; also returns the server's current stream limit.
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Arc<AtomicUsize>), String> {
        let inner = &self.inner;
        let endpoint = &inner.endpoint;
        let open = async {
            let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| format!("TCP connect to {}:{}: {e}", endpoint.host, endpoint.port))?;
            let _ = tcp.set_nodelay(true);
            let ssl = inner.connector.configure().and_then(|c| c.into_ssl(&endpoint.host)).map_err(|e| format!("TLS set-up: {e}"))?;
            let mut tls = SslStream::new(ssl, tcp).map_err(|e| format!("TLS set-up: {e}"))?;
            if let Err(e) = Pin::new(&mut tls).connect().await {
                let verify = tls.ssl().verify_result();
                return Err(if verify.as_raw() == 0 {
                    format!("TLS handshake with {}: {e}", endpoint.host)
                } else {
                    format!("TLS handshake with {}: server certificate not trusted: {}", endpoint.host, verify.error_string())
                });
            }
            if tls.ssl().selected_alpn_protocol() != Some(b"h2".as_slice()) {
                return Err(format!("{} did not negotiate HTTP/2 (ALPN h2)", endpoint.host));
            }
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                // Until the server's SETTINGS arrive, open one stream at a time: never more
                // than it allows.
                .initial_max_send_streams(1);
            if let Some(interval) = inner.config.keep_alive_interval {
                builder.keep_alive_interval(interval).keep_alive_timeout(Duration::from_secs(20)).keep_alive_while_idle(true);
            }
            let (sender, connection) =
                builder.handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP/2 handshake: {}", error_chain(&e)))?;
            // Drive the connection, publishing the server's stream limit as it changes.
            let server_limit = Arc::new(AtomicUsize::new(1));
            let published = Arc::clone(&server_limit);
            let host = endpoint.host.clone();
            tokio::spawn(async move {
                let mut connection = std::pin::pin!(connection);
                let result = std::future::poll_fn(|cx| {
                    let poll = connection.as_mut().poll(cx);
                    published.store(connection.current_max_send_streams(), Ordering::Relaxed);
                    poll
                })
                .await;
                if let Err(e) = result {
                    debug!(host = %host, error = %error_chain(&e), "APNs connection ended");
                }
            });
            debug!(host = %endpoint.host, port = endpoint.port, "connected to APNs");
            Ok((sender, server_limit))
        };
        match tokio::time::timeout(inner.config.connect_timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(format!("connecting to {}:{} timed out", endpoint.host, endpoint.port)),
        }
    }
}

/// Maps an APNs response to an outcome (before retries).
fn classify(response: &RawResponse) -> PushOutcome {
    let status = response.status;
    if status == 200 {
        return PushOutcome::Delivered { apns_id: response.apns_id.clone() };
    }
    let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    let reason = body.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        403 => PushOutcome::CertificateProblem { status, reason },
        400 if matches!(reason.as_str(), "TopicDisallowed" | "BadTopic" | "MissingTopic") => {
            PushOutcome::CertificateProblem { status, reason }
        }
        410 => PushOutcome::Unregistered { reason, timestamp: body.timestamp },
        429 | 500..=599 => PushOutcome::RetryLater { status, reason, retry_after: response.retry_after },
        _ => PushOutcome::BadRequest { reason },
    }
}

fn log_failure(token_hex: &str, push_magic: &str, outcome: &PushOutcome, attempts: u32) {
    let status = match outcome {
        PushOutcome::CertificateProblem { status, .. } | PushOutcome::RetryLater { status, .. } => Some(*status),
        PushOutcome::BadRequest { .. } => Some(400),
        PushOutcome::Unregistered { .. } => Some(410),
        _ => None,
    };
    warn!(
        token = %short(token_hex),
        push_magic = %short(push_magic),
        status = status.unwrap_or(0),
        reason = outcome.reason().unwrap_or(""),
        attempts,
        "APNs push failed"
    );
}

/// The first 8 characters and an ellipsis: enough to correlate, not the secret.
fn short(s: &str) -> String {
    let head: String = s.chars().take(8).collect();
    if head.len() < s.len() { format!("{head}…") } else { head }
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn parse_url(url: &str) -> Result<Endpoint, ApnsError> {
    let invalid = |reason: &str| ApnsError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
    let uri: Uri = url.trim().trim_end_matches('/').parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme() != Some(&Scheme::HTTPS) {
        return Err(invalid("must start with https://"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(invalid("must not have a path"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("must not carry credentials"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok(Endpoint { scheme: Scheme::HTTPS, port: authority.port_u16().unwrap_or(443), authority, host })
}

fn build_connector(cert: &PushCertificate, extra_ca_pem: Option<&[u8]>) -> Result<SslConnector, ApnsError> {
    // The builder starts from the system's default trust store and verifies the peer.
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_certificate(&cert.cert)?;
    builder.set_private_key(&cert.key)?;
    builder.check_private_key()?;
    builder.set_alpn_protos(b"\x02h2")?;
    if let Some(pem) = extra_ca_pem {
        let cas = X509::stack_from_pem(pem)?;
        if cas.is_empty() {
            return Err(ApnsError::EmptyExtraCa);
        }
        for ca in cas {
            builder.cert_store_mut().add_cert(ca)?;
        }
    }
    Ok(builder.build())
}

// ---- connection pool ------------------------------------------------------------------------

/// The open connections, least-loaded first when picking.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    /// Held while opening a connection, so that a burst of pushes opens one, not hundreds.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct PoolState {
    conns: Vec<Arc<Conn>>,
    last_failure: Option<(Instant, String)>,
}

struct Conn {
    id: u64,
    sender: SendRequest<Full<Bytes>>,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` as last seen (1 until it arrives).
    server_limit: Arc<AtomicUsize>,
    /// Requests leased on this connection and not yet finished.
    in_flight: AtomicUsize,
}

/// One request's claim on a connection.
struct Lease {
    conn: Arc<Conn>,
}

impl Lease {
    fn new(conn: Arc<Conn>) -> Lease {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease { conn }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Pick {
    /// Use this connection.
    Use(Lease),
    /// Open another connection; the lease, if any, is the least-loaded open one to fall back to.
    Grow(Option<Lease>),
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self, config: &ApnsConfig) -> Pick {
        let mut state = self.lock();
        state.conns.retain(|c| !c.sender.is_closed());
        let Some(best) = state.conns.iter().min_by_key(|c| c.in_flight.load(Ordering::Relaxed)).cloned() else {
            return Pick::Grow(None);
        };
        let load = best.in_flight.load(Ordering::Relaxed);
        let server_limit = best.server_limit.load(Ordering::Relaxed);
        // 1 is the limit we assume until the server's SETTINGS arrive: not the server's word.
        let target = if server_limit > 1 { config.max_streams_per_connection.min(server_limit) } else { config.max_streams_per_connection };
        let full = state.conns.len() >= config.max_connections;
        let lease = Lease::new(best);
        if load < target || full { Pick::Use(lease) } else { Pick::Grow(Some(lease)) }
    }

    fn add(&self, sender: SendRequest<Full<Bytes>>, server_limit: Arc<AtomicUsize>) -> Lease {
        let conn =
            Arc::new(Conn { id: self.next_id.fetch_add(1, Ordering::Relaxed), sender, server_limit, in_flight: AtomicUsize::new(0) });
        let lease = Lease::new(Arc::clone(&conn));
        let mut state = self.lock();
        state.conns.push(conn);
        state.last_failure = None;
        lease
    }

    fn evict(&self, id: u64) {
        self.lock().conns.retain(|c| c.id != id);
    }

    fn record_failure(&self, error: String) {
        self.lock().last_failure = Some((Instant::now(), error));
    }

    /// The last connect error, if it happened after `since`.
    fn failure_since(&self, since: Instant) -> Option<String> {
        match &self.lock().last_failure {
            Some((at, error)) if *at >= since => Some(error.clone()),
            _ => None,
        }
    }

    fn live_count(&self) -> usize {
        let mut state = self.lock();
        state.conns.retain(|c| !c.sender.is_closed());
        state.conns.len()
    }
}

#[cfg(test)]
mod tests {
    //! The client's own rules; the client against the mock APNs is tested in `mocks/tests`.
    use super::*;
    use crate::apple::PushCertificate;

    /// A self-signed certificate with an MDM topic: enough for the client to be built.
    fn own_push() -> PushCertificate {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, nid::Nid, pkey::PKey, rsa::Rsa, x509::X509, x509::X509Name};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_nid(Nid::USERID, "com.apple.mgmt.External.test").unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "APSP:test").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        PushCertificate::from_x509(b.build(), key).expect("an MDM push certificate")
    }

    #[test]
    fn urls_are_checked() {
        let push = &own_push();
        for bad in ["http://api.push.apple.com", "api.push.apple.com", "https://api.push.apple.com/3/device", "https://user@host"] {
            assert!(matches!(ApnsClient::new(bad, push, None), Err(ApnsError::InvalidUrl { .. })), "{bad}");
        }
        let ok = parse_url("https://[::1]:2197/").expect("ipv6");
        assert_eq!((ok.host.as_str(), ok.port), ("::1", 2197));
        let prod = parse_url(APNS_PRODUCTION_URL).expect("prod");
        assert_eq!((prod.host.as_str(), prod.port), ("api.push.apple.com", 443));
        assert!(matches!(ApnsClient::new(APNS_PRODUCTION_URL, push, Some(b"no pem here")), Err(ApnsError::EmptyExtraCa)));
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let client = ApnsClient::with_config(
            APNS_PRODUCTION_URL,
            &own_push(),
            None,
            ApnsConfig { base_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1), ..ApnsConfig::default() },
        )
        .expect("client");
        for _ in 0..20 {
            let first = client.backoff(1, None);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = client.backoff(3, None);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            assert_eq!(client.backoff(10, None), Duration::from_secs(1));
            assert_eq!(client.backoff(1, Some(Duration::from_millis(700))), Duration::from_millis(700));
        }
        assert_eq!(short("abcdef0123456789"), "abcdef01…");
        assert_eq!(short("abc"), "abc");
    }
}
