//! Lanyard's APNs client (`lanyard::apple::apns`) against the mock APNs: Apple's status codes
//! and reasons, retries and back-off, dropped connections.

use lanyard::apple::PushCertificate;
use lanyard::apple::apns::*;
use lanyard_mocks::certificates::{fixture, test_push_certificate};
use lanyard_mocks::{MockApns, MockConfig, MockResponse};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn fast_config() -> ApnsConfig {
    ApnsConfig {
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..ApnsConfig::default()
    }
}

async fn mock() -> MockApns {
    MockApns::start(&fixture().ca).await.expect("mock starts")
}

fn client_for(mock: &MockApns, cert: &PushCertificate, config: ApnsConfig) -> ApnsClient {
    ApnsClient::with_config(&mock.url(), cert, Some(&mock.ca_pem()), config).expect("client")
}

fn token(i: usize) -> Vec<u8> {
    let mut t = vec![0xa5u8; 32];
    t[..8].copy_from_slice(&(i as u64).to_be_bytes());
    t
}

fn batch(n: usize) -> Vec<(Vec<u8>, String)> {
    (0..n).map(|i| (token(i), format!("magic-{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_with_exact_headers_and_body() {
    let mock = mock().await;
    let push = &fixture().push;
    let client = client_for(&mock, push, fast_config());
    assert_eq!(client.topic(), push.topic);
    let tok = token(1);
    let before = chrono::Utc::now().timestamp();
    let outcome = client.push(&tok, "7F3A-push-magic-\"quoted\"").await;
    let PushOutcome::Delivered { apns_id: Some(id) } = &outcome else {
        panic!("expected Delivered with apns-id, got {outcome:?}");
    };
    assert!(uuid::Uuid::parse_str(id).is_ok(), "apns-id {id}");

    let received = mock.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.token_hex, hex::encode(&tok));
    assert_eq!(r.topic, push.topic);
    assert_eq!(r.push_type, "mdm");
    assert_eq!(r.priority, Some(10));
    assert_eq!(r.push_magic, "7F3A-push-magic-\"quoted\"");
    assert_eq!(r.body, r#"{"mdm":"7F3A-push-magic-\"quoted\""}"#);
    let expiration = r.expiration.expect("apns-expiration sent");
    assert!((before + 86_400..=before + 86_400 + 60).contains(&expiration));
    assert_eq!(r.status, 200);
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_status_is_handled() {
    let mock = mock().await;
    let client = client_for(&mock, &fixture().push, fast_config());
    let hex_of = |i| hex::encode(token(i));

    mock.respond_to(&hex_of(10), vec![MockResponse::error(400, "BadDeviceToken")]);
    mock.respond_to(&hex_of(11), vec![MockResponse::unregistered(1_700_000_000_123)]);
    mock.respond_to(&hex_of(12), vec![MockResponse::error(429, "TooManyRequests")]);
    mock.respond_to(&hex_of(13), vec![MockResponse::error(500, "InternalServerError"); 3]);
    mock.respond_to(&hex_of(14), vec![MockResponse::error(503, "ServiceUnavailable").with_retry_after(1); 3]);
    mock.respond_to(&hex_of(15), vec![MockResponse::error(413, "PayloadTooLarge")]);

    let bad = client.push(&token(10), "m").await;
    assert_eq!(bad, PushOutcome::BadRequest { reason: "BadDeviceToken".into() });
    assert!(bad.token_is_dead());

    let gone = client.push(&token(11), "m").await;
    assert_eq!(gone, PushOutcome::Unregistered { reason: "Unregistered".into(), timestamp: Some(1_700_000_000_123) });

    let started = Instant::now();
    assert!(client.push(&token(12), "m").await.is_delivered());

    let busy = client.push(&token(13), "m").await;
    assert_eq!(busy, PushOutcome::RetryLater { status: 500, reason: "InternalServerError".into(), retry_after: None });
    let unavailable = client.push(&token(14), "m").await;
    assert_eq!(
        unavailable,
        PushOutcome::RetryLater { status: 503, reason: "ServiceUnavailable".into(), retry_after: Some(Duration::from_secs(1)) }
    );
    // Backoff is bounded by max_backoff (Retry-After: 1 s is not slept in full).
    assert!(started.elapsed() < Duration::from_secs(2));

    let large = client.push(&token(15), "m").await;
    assert_eq!(large, PushOutcome::BadRequest { reason: "PayloadTooLarge".into() });

    let attempts: HashMap<String, usize> = mock.received().into_iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.token_hex).or_default() += 1;
        m
    });
    assert_eq!(attempts[&hex_of(10)], 1, "400 is not retried");
    assert_eq!(attempts[&hex_of(11)], 1, "410 is not retried");
    assert_eq!(attempts[&hex_of(12)], 2, "429 then 200");
    assert_eq!(attempts[&hex_of(13)], 3, "500 retried to max_attempts");
    assert_eq!(attempts[&hex_of(14)], 3, "503 retried to max_attempts");
    assert_eq!(attempts[&hex_of(15)], 1);
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_403() {
    let mock = mock().await;
    let topic = fixture().push.topic.clone();
    let (cert, key, _other_ca, _) = test_push_certificate(&topic, 365);
    let stranger = PushCertificate::from_x509(cert, key).expect("import");
    let client = client_for(&mock, &stranger, fast_config());
    let outcome = client.push(&token(1), "m").await;
    assert_eq!(outcome, PushOutcome::CertificateProblem { status: 403, reason: "BadCertificate".into() });
    assert_eq!(mock.requests(), 1, "403 is not retried");
    assert_eq!(mock.count(), 0, "rejected requests are not recorded");
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_mismatch_is_refused() {
    let mock = mock().await;
    let mut wrong = fixture().push.clone();
    wrong.topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
    let client = client_for(&mock, &wrong, fast_config());
    let outcome = client.push(&token(1), "m").await;
    assert_eq!(outcome, PushOutcome::CertificateProblem { status: 400, reason: "TopicDisallowed".into() });
    assert_eq!(mock.requests(), 1);
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_many_2000_over_one_connection() {
    let mock = mock().await;
    let client = client_for(&mock, &fixture().push, fast_config());
    let items = batch(2000);
    let outcomes = client.push_many(items.clone(), 200).await;
    assert_eq!(outcomes.len(), 2000);
    assert!(outcomes.iter().all(PushOutcome::is_delivered));
    assert_eq!(mock.count(), 2000);
    assert_eq!(mock.connections(), 1, "one HTTP/2 connection");
    let mut seen: HashMap<String, String> = HashMap::new();
    for r in mock.received() {
        assert!(seen.insert(r.token_hex.clone(), r.push_magic).is_none(), "token {} received twice", r.token_hex);
    }
    for (tok, magic) in &items {
        assert_eq!(seen.get(&hex::encode(tok)), Some(magic));
    }
    mock.stop().await;
}

async fn survives_disconnect(goaway: bool) {
    let mock = mock().await;
    mock.set_latency(Some(Duration::from_millis(2)));
    let client = client_for(&mock, &fixture().push, fast_config());
    assert!(client.push(&token(999_999), "warm-up").await.is_delivered());
    if goaway {
        mock.goaway_after(300);
    } else {
        mock.drop_connections_after(300);
    }
    let items = batch(1000);
    let outcomes = client.push_many(items.clone(), 100).await;
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.is_delivered()).collect();
    assert!(failed.is_empty(), "not delivered: {failed:?}");
    assert!(mock.connections() >= 2, "reconnected");
    let seen: std::collections::HashSet<String> = mock.received().into_iter().map(|r| r.token_hex).collect();
    for (tok, _) in &items {
        assert!(seen.contains(&hex::encode(tok)));
    }
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_mid_batch_reconnects_and_delivers_all() {
    survives_disconnect(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_mid_batch_reconnects_and_delivers_all() {
    survives_disconnect(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respects_server_max_concurrent_streams() {
    let mut config = MockConfig::new(fixture().ca.clone());
    config.max_concurrent_streams = 4;
    config.latency = Some(Duration::from_millis(5));
    let mock = MockApns::start_with(config).await.expect("mock");
    let client = client_for(&mock, &fixture().push, ApnsConfig { max_connections: 2, ..fast_config() });
    let outcomes = client.push_many(batch(60), 60).await;
    assert!(outcomes.iter().all(PushOutcome::is_delivered), "{outcomes:?}");
    assert!(mock.max_concurrent_streams_seen() <= 4);
    assert!(mock.connections() <= 2);
    assert_eq!(mock.count(), 60);
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_fast() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = ApnsClient::with_config(&format!("https://127.0.0.1:{port}"), &fixture().push, None, fast_config()).expect("client");
    let started = Instant::now();
    let outcomes = client.push_many(batch(500), 50).await;
    assert!(outcomes.iter().all(|o| matches!(o, PushOutcome::ConnectionFailed { .. })));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate_is_refused() {
    let mock = mock().await;
    // No extra CA: the mock's throwaway CA is not in the system roots.
    let client = ApnsClient::with_config(&mock.url(), &fixture().push, None, fast_config()).expect("client");
    match client.push(&token(1), "m").await {
        PushOutcome::ConnectionFailed { error } => {
            assert!(error.contains("not trusted"), "{error}")
        }
        other => panic!("expected ConnectionFailed, got {other:?}"),
    }
    assert_eq!(mock.requests(), 0);
    mock.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_replaces_the_client() {
    let mock = mock().await;
    let old = client_for(&mock, &fixture().push, fast_config());
    assert!(old.push(&token(1), "m").await.is_delivered());
    let renewed = old.with_certificate(&fixture().push).expect("renewed");
    drop(old);
    assert!(renewed.push(&token(2), "m").await.is_delivered());
    assert_eq!(renewed.topic(), fixture().push.topic);
    mock.stop().await;
}
