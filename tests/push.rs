//! Push: APNs over HTTP/2 against a faithful mock, every status APNs answers, the sweeper that
//! keeps commands from stalling, the queue view, metrics, and push-certificate renewal.

#[macro_use]
mod common;

use common::device::TOPIC;
use common::push::PushRig;
use common::{Backend, Options, TestServer, assert_error};
use lanyard_bench::sim::Kind;
use lanyard_mocks::MockResponse;
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests!(
    enqueue_pushes_with_apples_headers,
    each_apns_status_is_handled,
    sweeper_repushes_quiet_devices,
    only_one_instance_pushes_each_device,
    renewal_keeps_devices_and_topic_change_is_refused,
    queue_view_and_metrics,
    an_older_database_keeps_its_push_history,
    a_requested_certificate_loads_without_its_key,
);

async fn enqueue_pushes_with_apples_headers(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b, Options::default()).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let (st, q) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "SecurityInfo"})).await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    assert_eq!(q["push"]["delivered"], 1, "{q}");
    let got = rig.mock.received();
    assert_eq!(got.len(), 1);
    let p = &got[0];
    assert_eq!(p.token_hex, hex::encode(&d.push_token));
    assert_eq!(p.topic, TOPIC);
    assert_eq!(p.push_type, "mdm");
    assert_eq!(p.priority, Some(10));
    assert_eq!(p.push_magic, d.push_magic);
    assert!(p.expiration.is_some_and(|e| e > chrono::Utc::now().timestamp()));
    // "push": false queues without waking.
    let (_, q) =
        s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "ProfileList", "push": false})).await;
    assert!(q.get("push").is_none());
    assert_eq!(rig.mock.count(), 1);
    // On demand, for one device or many.
    let (st, r) = s.post(&format!("/api/v1/devices/{}/push", d.udid), &admin, json!({})).await;
    assert_eq!((st, r["delivered"].as_u64()), (StatusCode::OK, Some(1)), "{r}");
    let e = s.enrolled_device(Kind::Mac).await;
    let (_, r) = s.post("/api/v1/push", &admin, json!({"targets": [d.udid, e.udid, "NOSUCH"]})).await;
    assert_eq!((r["delivered"].as_u64(), r["skipped"].as_u64()), (Some(2), Some(1)), "{r}");
    assert_eq!(rig.mock.count(), 4);
    let auditor = s.operator("aud", "auditor").await;
    assert_eq!(s.post("/api/v1/push", &auditor, json!({"targets": [d.udid]})).await.0, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn each_apns_status_is_handled(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b, Options::default()).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let token = hex::encode(&d.push_token);
    async fn push_now(s: &TestServer, admin: &str, udid: &str) -> serde_json::Value {
        s.post(&format!("/api/v1/devices/{udid}/push"), admin, json!({})).await.1
    }

    // 400: logged, reason kept.
    rig.mock.respond_to(&token, vec![MockResponse::error(400, "BadDeviceToken")]);
    let r = push_now(&s, &admin, &d.udid).await;
    assert_eq!(r["outcomes"]["bad_request:BadDeviceToken"], 1, "{r}");
    let (_, q) = s.get(&format!("/api/v1/devices/{}/queue", d.udid), &admin).await;
    assert_eq!(q["push"]["last_push_outcome"], "bad_request:BadDeviceToken");

    // 429 then 200: retried, delivered.
    rig.mock.respond_to(&token, vec![MockResponse::error(429, "TooManyRequests")]);
    let r = push_now(&s, &admin, &d.udid).await;
    assert_eq!(r["delivered"], 1, "{r}");
    // 5xx every time: bounded retries, then reported.
    rig.mock.respond_to(&token, vec![MockResponse::error(500, "InternalServerError"); 3]);
    let r = push_now(&s, &admin, &d.udid).await;
    assert_eq!(r["outcomes"]["retry_later:500"], 1, "{r}");

    // 403: a certificate problem, surfaced to admins until a push is delivered again.
    rig.mock.respond_to(&token, vec![MockResponse::error(403, "BadCertificate")]);
    push_now(&s, &admin, &d.udid).await;
    let (_, info) = s.get("/api/v1/push-cert", &admin).await;
    assert!(info["apns_error"].as_str().is_some_and(|e| e.contains("BadCertificate")), "{info}");
    let (_, q) = s.get(&format!("/api/v1/devices/{}/queue", d.udid), &admin).await;
    assert!(q["diagnosis"].to_string().contains("BadCertificate"), "{q}");
    assert_eq!(push_now(&s, &admin, &d.udid).await["delivered"], 1);
    assert!(s.get("/api/v1/push-cert", &admin).await.1["apns_error"].is_null());

    // 410: the token is dead; no more pushes until the next TokenUpdate.
    rig.mock.respond_to(&token, vec![MockResponse::unregistered(1_700_000_000)]);
    assert_eq!(push_now(&s, &admin, &d.udid).await["outcomes"]["unregistered"], 1);
    let before = rig.mock.count();
    let r = push_now(&s, &admin, &d.udid).await;
    assert_eq!((r["skipped"].as_u64(), r["delivered"].as_u64()), (Some(1), Some(0)), "{r}");
    assert_eq!(rig.mock.count(), before, "a dead token is not pushed");
    let (_, q) = s.get(&format!("/api/v1/devices/{}/queue", d.udid), &admin).await;
    assert_eq!(q["push"]["token_valid"], false);
    assert!(q["diagnosis"].to_string().contains("410"), "{q}");
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);
    assert_eq!(push_now(&s, &admin, &d.udid).await["delivered"], 1, "a TokenUpdate revives the token");
    s.stop().await;
}

async fn sweeper_repushes_quiet_devices(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b, Options { manual_clock: true, ..Default::default() }).await;
    let clock = s.clock.clone().unwrap();
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let (_, q) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "SecurityInfo"})).await;
    assert_eq!(q["push"]["delivered"], 1);
    let sweep = || async { s.ctx.push.sweep_once().await.unwrap() };
    let minutes = |m| clock.advance(chrono::Duration::minutes(m));

    // The device stays quiet: re-pushed after 5 minutes, then 15, then 60 (backing off).
    minutes(1);
    assert_eq!(sweep().await.repushed, 0, "too soon");
    minutes(5);
    assert_eq!(sweep().await.repushed, 1);
    minutes(6);
    assert_eq!(sweep().await.repushed, 0, "second re-push waits 15 minutes");
    minutes(10);
    assert_eq!(sweep().await.repushed, 1);
    minutes(30);
    assert_eq!(sweep().await.repushed, 0, "third waits an hour");
    minutes(31);
    assert_eq!(sweep().await.repushed, 1);
    assert_eq!(rig.mock.count(), 4);
    let admin = s.admin().await;
    let (_, view) = s.get(&format!("/api/v1/devices/{}/queue", d.udid), &admin).await;
    assert_eq!(view["push"]["pushes_since_last_seen"], 4, "{view}");
    assert_eq!(view["pending"].as_array().unwrap().len(), 1);

    // It wakes up and takes the command: no more re-pushes.
    let answered = s.drain(&d).await;
    assert_eq!(answered, ["SecurityInfo"]);
    minutes(300);
    assert_eq!(sweep().await.repushed, 0);

    // Not seen for a day: pushed to check in, even with nothing queued.
    minutes(24 * 60);
    assert_eq!(sweep().await.repushed, 1);
    // The count of unanswered pushes started again when the device connected: 1, not 5.
    let admin = s.admin().await;
    let (_, view) = s.get(&format!("/api/v1/devices/{}/queue", d.udid), &admin).await;
    assert_eq!((view["push"]["pushes_since_last_seen"].as_i64(), view["push"]["pushes_sent"].as_i64()), (Some(1), Some(5)), "{view}");

    // Expired commands are persisted as expired.
    let admin = s.admin().await;
    let soon = (s.ctx.now() + chrono::Duration::minutes(1)).to_rfc3339();
    let (_, q) = s
        .post(
            &format!("/api/v1/devices/{}/commands", d.udid),
            &admin,
            json!({"request_type": "ProfileList", "expires_at": soon, "push": false}),
        )
        .await;
    minutes(2);
    assert_eq!(sweep().await.expired, 1);
    let uuid = q["command_uuid"].as_str().unwrap();
    let stored = s.ctx.store.command(uuid).await.unwrap().unwrap();
    assert_eq!(s.ctx.store.command_targets(stored.seq).await.unwrap()[0].status, "expired");
    s.stop().await;
}

async fn only_one_instance_pushes_each_device(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b.clone(), Options::default()).await;
    let admin = s.admin().await;
    let mut udids = Vec::new();
    for _ in 0..30 {
        udids.push(s.enrolled_device(Kind::SupervisedIpad).await.udid);
    }
    let (st, _) =
        s.post("/api/v1/commands", &admin, json!({"targets": udids, "command": {"request_type": "SecurityInfo", "push": false}})).await;
    assert_eq!(st, StatusCode::CREATED);
    // A second instance on the same database and data directory.
    let mut env = rig.env.clone();
    env.push(("LANYARD_DATA_DIR", s.dir.path().join("data").display().to_string()));
    env.push(("LANYARD_DATABASE_URL", s.backend.database_url(s.dir.path())));
    let s2 = TestServer::start_with(b, Options { env, ..Default::default() }).await;
    let (r1, r2) = tokio::join!(s.ctx.push.sweep_once(), s2.ctx.push.sweep_once());
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.repushed + r2.repushed, 30, "{r1:?} {r2:?}");
    assert_eq!(rig.mock.count(), 30, "each device pushed exactly once");
    let mut tokens: Vec<_> = rig.mock.received().into_iter().map(|p| p.token_hex).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 30);
    s2.stop().await;
    s.stop().await;
}

async fn renewal_keeps_devices_and_topic_change_is_refused(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b, Options::default()).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    // Renewal: a new certificate and key from Apple, same topic.
    let (cert, key) = rig.cert(TOPIC, 730);
    let (st, info) = s.upload_push_cert(&cert, &key, "").await;
    assert_eq!((st, info["topic"].as_str()), (StatusCode::OK, Some(TOPIC)), "{info}");
    assert!(info["days_left"].as_i64().unwrap() > 700);
    let (_, r) = s.post(&format!("/api/v1/devices/{}/push", d.udid), &admin, json!({})).await;
    assert_eq!(r["delivered"], 1, "the enrolled device is still reachable with the renewed certificate: {r}");
    let (_, audit) = s.get("/api/v1/audit?action=push_cert.load", &admin).await;
    assert_eq!(audit["items"][0]["details"]["renewal"], true);
    // Another topic would orphan the device: refused unless forced.
    let other = "com.apple.mgmt.External.00000000-1111-2222-3333-444444444444";
    let (cert2, key2) = rig.cert(other, 365);
    let (st, body) = s.upload_push_cert(&cert2, &key2, "").await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "topic_mismatch");
    assert_eq!(s.get("/api/v1/push-cert", &admin).await.1["topic"], TOPIC, "nothing changed");
    let (st, body) = s.upload_push_cert(&cert2, &key2, "?force=true").await;
    assert_eq!((st, body["topic"].as_str()), (StatusCode::OK, Some(other)));
    // Not an MDM push certificate, or a key that does not match: 422 naming the field.
    let (plain, plain_key, _, _) = lanyard_mocks::test_push_certificate("com.example.not-mdm", 30);
    let (st, body) = s.upload_push_cert(&plain, &plain_key, "?force=true").await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cert_pem")), "{body}");
    let (st, body) = s.upload_push_cert(&cert, &key2, "?force=true").await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("key_pem")), "{body}");
    // Expiring within 30 days: a warning everywhere an admin looks; expired: an error naming the steps.
    let (soon, soon_key) = rig.cert(TOPIC, 20);
    s.upload_push_cert(&soon, &soon_key, "?force=true").await;
    let (_, info) = s.get("/api/v1/push-cert", &admin).await;
    assert_eq!(info["status"], "expiring");
    assert!(info["warning"].as_str().unwrap().contains("identity.apple.com"));
    let (_, ready) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready["push_certificate"]["status"], "expiring");
    let (old, old_key) = rig.cert(TOPIC, -1);
    s.upload_push_cert(&old, &old_key, "").await;
    let (st, body) = s.post(&format!("/api/v1/devices/{}/push", d.udid), &admin, json!({})).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("expired") && body["error"].as_str().unwrap().contains("Renew"), "{body}");
    s.stop().await;
}

async fn queue_view_and_metrics(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b, Options::default()).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::Mac).await;
    let (_, q) =
        s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "DeviceLock", "PIN": "123456"})).await;
    let uuid = q["command_uuid"].as_str().unwrap().to_owned();
    let (st, view) = s.get(&format!("/api/v1/devices/{}/queue", d.udid), &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(view["pending"][0]["command_uuid"], uuid.as_str());
    assert_eq!(view["pending"][0]["request_type"], "DeviceLock");
    assert_eq!(view["push"]["last_push_outcome"], "delivered");
    assert_eq!(view["push"]["pushes_since_last_seen"], 1);
    assert!(view["diagnosis"].to_string().contains("Pushed 1 time"), "{view}");
    // The command line shows the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(["queue", "show", &d.udid])
        .env("LANYARD_DATA_DIR", s.dir.path().join("data"))
        .env("LANYARD_DATABASE_URL", s.backend.database_url(s.dir.path()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("DeviceLock") && text.contains(&uuid) && text.contains("Pushed 1 time"), "{text}");
    // The device fetches it; metrics count what happened.
    let (_, cmd) = s.connect(&d, d.idle()).await;
    let (_, _, ack) = d.answer(&cmd).unwrap();
    s.connect(&d, ack).await;
    // The Mac's five commands: the three of its inventory, DeclarativeManagement (macOS 14 has
    // DDM) and the lock.
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "lanyard_pushes_total{outcome=\"delivered\"} 1",
        "lanyard_commands_total{event=\"queued\"} 5",
        "lanyard_commands_total{event=\"acknowledged\"} 5",
        "lanyard_commands_total{event=\"delivered\"} 5",
        "lanyard_queue_oldest_pending_seconds 0",
        "lanyard_devices_seen{window=\"1h\"} 1",
        "lanyard_push_batch_seconds_count 1",
        "route=\"/api/v1/devices/{udid}/commands\",status=\"201\"",
        "lanyard_push_certificate_days_left 36",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
    assert!(!metrics.contains(&d.udid), "no UDIDs in metric labels");
    let (st, _) = s.get("/api/v1/devices/NOSUCH/queue", &admin).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Migration 0012 moved the push figures out of `devices` into `device_push`: a school's
/// database from before it keeps each device's push history, and a device that was never
/// pushed gets no row.
async fn an_older_database_keeps_its_push_history(b: Backend) {
    use sqlx::migrate::Migrator;
    let dir = tempfile::tempdir().unwrap();
    let url = match &b {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display()),
        Backend::Postgres(url) => url.clone(),
    };
    let folder = match &b {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres(_) => "migrations/postgres",
    };
    let mut old = Migrator::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder)).await.unwrap();
    old.migrations = old.migrations.iter().filter(|m| m.version <= 11).cloned().collect::<Vec<_>>().into();
    let seen = chrono::Utc::now() - chrono::Duration::hours(2);
    let pushed = seen + chrono::Duration::minutes(30);
    let insert = "INSERT INTO devices (udid, platform, enrolled, first_seen_at, last_seen_at, authenticated_at, \
                  last_push_at, last_push_outcome, pushes_unanswered, pushes_sent) VALUES ($1, 'iPadOS', TRUE, $2, $2, $2, $3, $4, $5, $6)";
    macro_rules! fill {
        ($pool:expr) => {{
            let pool = $pool;
            old.run(&pool).await.unwrap();
            sqlx::query(insert)
                .bind("PUSHED")
                .bind(seen)
                .bind(Some(pushed))
                .bind(Some("delivered"))
                .bind(3_i64)
                .bind(7_i64)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(insert)
                .bind("NEVER")
                .bind(seen)
                .bind(None::<chrono::DateTime<chrono::Utc>>)
                .bind(None::<&str>)
                .bind(0_i64)
                .bind(0_i64)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }};
    }
    match &b {
        Backend::Sqlite => fill!(sqlx::SqlitePool::connect(&url).await.unwrap()),
        Backend::Postgres(_) => fill!(sqlx::PgPool::connect(&url).await.unwrap()),
    }
    let url = url.trim_end_matches("?mode=rwc").to_owned();
    let s = TestServer::start_with(b, Options { env: vec![("LANYARD_DATABASE_URL", url)], ..Default::default() }).await;
    let admin = s.admin().await;
    let (st, view) = s.get("/api/v1/devices/PUSHED/queue", &admin).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    let push = &view["push"];
    assert_eq!(
        (push["last_push_outcome"].as_str(), push["pushes_sent"].as_i64(), push["pushes_since_last_seen"].as_i64()),
        (Some("delivered"), Some(7), Some(3)),
        "{view}"
    );
    assert_eq!(
        push["last_push_at"].as_str().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp()),
        Some(pushed.timestamp())
    );
    let (_, view) = s.get("/api/v1/devices/NEVER/queue", &admin).await;
    assert_eq!((view["push"]["last_push_at"].clone(), view["push"]["pushes_sent"].as_i64()), (serde_json::Value::Null, Some(0)), "{view}");
    s.stop().await;
}

/// The path a school takes with no certificate at all: Lanyard's request, Apple's portal, the
/// certificate loaded alone; then a renewal where Create is chosen by mistake, then Renew; and the
/// expiry warnings written to the audit log once per threshold.
async fn a_requested_certificate_loads_without_its_key(b: Backend) {
    let s = TestServer::start_with(b, Options { manual_clock: true, ..Options::default() }).await;
    let admin = s.admin().await;
    let vendor = lanyard_mocks::test_vendor().unwrap();
    let portal = lanyard_mocks::PushPortal::new(vendor.apple_root.clone()).unwrap();
    let (st, body) = s.get("/api/v1/push-cert", &admin).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("POST /api/v1/push-cert/requests"), "{body}");

    // No vendor certificate: a bare CSR, which the portal will not take, and the steps.
    let (st, bare) = s.post("/api/v1/push-cert/requests", &admin, json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{bare}");
    assert_eq!((bare["signed"].as_bool(), bare["request_file"].as_str()), (Some(false), None));
    assert!(bare["csr_pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert_eq!(bare["next_steps"].as_array().unwrap().len(), 3);
    assert!(portal.create(bare["csr_pem"].as_str().unwrap()).unwrap_err().contains("not signed"));
    // A vendor certificate without Apple's intermediate: refused before the portal refuses it.
    let pem = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let (st, body) = s
        .post(
            "/api/v1/push-cert/requests",
            &admin,
            json!({"vendor_cert_pem": pem(&vendor.cert_pem), "vendor_key_pem": pem(&vendor.key_pem)}),
        )
        .await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("vendor_chain_pem")), "{body}");
    assert!(body.to_string().contains("Worldwide Developer Relations"), "{body}");
    let (st, body) = s.post("/api/v1/push-cert/requests", &admin, json!({"vendor_cert_pem": pem(&vendor.cert_pem)})).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("vendor_key_pem")), "{body}");
    let signed_body = json!({"vendor_cert_pem": pem(&vendor.cert_pem), "vendor_chain_pem": pem(&vendor.chain_pem), "vendor_key_pem": pem(&vendor.key_pem)});
    let clock = s.clock.clone().unwrap();
    clock.advance(chrono::Duration::minutes(5));
    let (st, request) = s.post("/api/v1/push-cert/requests", &admin, signed_body.clone()).await;
    assert_eq!((st, request["signed"].as_bool()), (StatusCode::CREATED, Some(true)), "{request}");
    assert!(request["vendor_subject"].as_str().unwrap().contains("MDM Vendor: Test Trust"));
    let (_, body) = s.get("/api/v1/push-cert", &admin).await;
    assert!(body["error"].as_str().unwrap().contains(request["id"].as_str().unwrap()), "the 404 names the pending request: {body}");
    let (st, again) = s.get(&format!("/api/v1/push-cert/requests/{}", request["id"].as_str().unwrap()), &admin).await;
    assert_eq!((st, &again["request_file"]), (StatusCode::OK, &request["request_file"]));
    // A technician may not make requests.
    let tech = s.operator("tech", "technician").await;
    assert_eq!(s.post("/api/v1/push-cert/requests", &tech, json!({})).await.0, StatusCode::FORBIDDEN);

    // Apple's portal issues a certificate for the request's key; it loads on its own.
    let (topic, cert_pem) = portal.create(request["request_file"].as_str().unwrap()).unwrap();
    let put = |cert: Vec<u8>| {
        let admin = admin.clone();
        let s = &s;
        async move { s.call(Method::PUT, "/api/v1/push-cert", Some(&admin), Some(json!({"cert_pem": pem(&cert)}))).await }
    };
    let (st, info) = put(cert_pem.clone()).await;
    assert_eq!((st, info["topic"].as_str()), (StatusCode::OK, Some(topic.as_str())), "{info}");
    assert!(info["pending_request"].is_null(), "the request is done: {info}");
    let (_, audit) = s.get("/api/v1/audit?action=push_cert.load", &admin).await;
    assert_eq!(audit["items"][0]["details"]["request"], request["id"]);
    // The request is used: the same certificate alone no longer finds a key (the bare CSR's request is still pending).
    let (st, body) = put(cert_pem).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cert_pem")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("not issued for any"), "{body}");
    // Not a push certificate at all: said plainly.
    let (st, body) = put(vendor.cert_pem.clone()).await;
    assert!(st == StatusCode::UNPROCESSABLE_ENTITY && body["error"].as_str().unwrap().contains("not an MDM push certificate"), "{body}");

    // A year on: the renewal request. Create by mistake gives a new topic, refused with the way out.
    clock.advance(chrono::Duration::minutes(5));
    let (_, renewal) = s.post("/api/v1/push-cert/requests", &admin, signed_body).await;
    let (_, info) = s.get("/api/v1/push-cert", &admin).await;
    assert_eq!(info["pending_request"]["id"], renewal["id"], "{info}");
    let file = renewal["request_file"].as_str().unwrap();
    let (_, wrong) = portal.create(file).unwrap();
    let (st, body) = put(wrong).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "topic_mismatch");
    assert!(body["error"].as_str().unwrap().contains("choose Renew"), "{body}");
    let (st, info) = put(portal.renew(file, &topic).unwrap()).await;
    assert_eq!((st, info["topic"].as_str()), (StatusCode::OK, Some(topic.as_str())), "{info}");
    assert_eq!(s.get("/api/v1/audit?action=push_cert.load", &admin).await.1["items"][0]["details"]["renewal"], true);

    // Expiry warnings: once per threshold, in the audit log.
    // (Logging in again each time: a session does not last the months the clock jumps.)
    let warnings =
        || async { s.get("/api/v1/audit?action=push_cert.expiry_warning", &s.admin().await).await.1["items"].as_array().unwrap().clone() };
    s.ctx.push.warn_push_cert_expiry().await.unwrap();
    assert!(warnings().await.is_empty(), "a year left: no warning");
    clock.advance(chrono::Duration::days(340));
    s.ctx.push.warn_push_cert_expiry().await.unwrap();
    s.ctx.push.warn_push_cert_expiry().await.unwrap();
    let w = warnings().await;
    assert_eq!(w.len(), 1, "written once: {w:?}");
    assert_eq!(w[0]["details"]["threshold"], 30);
    assert_eq!(w[0]["actor"], "system");
    clock.advance(chrono::Duration::days(16));
    s.ctx.push.warn_push_cert_expiry().await.unwrap();
    let w = warnings().await;
    assert_eq!((w.len(), &w[0]["details"]["threshold"]), (2, &json!(14)), "{w:?}");
    assert!(w[0]["details"]["warning"].as_str().unwrap().contains("Renew"));
    s.stop().await;
}
