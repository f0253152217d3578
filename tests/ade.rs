//! Apple School Manager against a faithful mock of Apple's device service (`lanyard_mocks::ade`):
//! the server token made the way ASM makes it (S/MIME, CMS enveloped to Lanyard's certificate),
//! refused the ways a technician gets it wrong, and a device sync that survives Apple's failure
//! modes (429 with Retry-After, session expiry and rotation, expired and stuck cursors,
//! duplicate records, deletions, new terms to accept).

#[macro_use]
mod common;

use common::{Backend, Options, TestServer};
use lanyard_bench::sim::Kind;
use lanyard_mocks::{Failure, MockAde, MockDevice, smime_token_file};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    a_server_token_is_opened_checked_and_stored,
    device_sync_survives_apples_failure_modes,
    profiles_are_defined_once_and_assigned_by_rules
);

async fn server(mock: &MockAde, b: Backend) -> TestServer {
    TestServer::start_with(b, Options { env: vec![("LANYARD_ADE_URL", mock.url())], ..Options::default() }).await
}

/// `POST /api/v1/ade/tokens` with a raw body.
async fn upload(s: &TestServer, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(s.url("/api/v1/ade/tokens"))
        .bearer_auth(token)
        .header("content-type", "application/pkcs7-mime")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn public_key(s: &TestServer, admin: &str) -> Vec<u8> {
    let resp = s.client.get(s.url("/api/v1/ade/public-key")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

async fn a_server_token_is_opened_checked_and_stored(b: Backend) {
    let mock = MockAde::start().await.unwrap();
    let s = server(&mock, b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    let pem = public_key(&s, &admin).await;
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(public_key(&s, &admin).await, pem, "one key pair, kept");
    let (st, _) = s.get("/api/v1/ade/public-key", &tech).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The wrong file, and a token encrypted to another MDM server's key: the reason, nothing stored.
    let (st, body) = upload(&s, &admin, b"MDM_Push.pem, not a token".to_vec()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("not a server token file"), "{body}");
    let (other_cert, _, _, _) = lanyard_mocks::test_push_certificate("com.example.other", 30);
    let (st, body) = upload(&s, &admin, smime_token_file(&other_cert.to_pem().unwrap(), &mock.token_json()).unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("another public key"), "{body}");
    // An expired token.
    let mut expired: Value = serde_json::from_str(&mock.token_json()).unwrap();
    expired["access_token_expiry"] = json!("2025-01-01T00:00:00Z");
    let (st, body) = upload(&s, &admin, smime_token_file(&pem, &expired.to_string()).unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("expired on 2025-01-01"), "{body}");
    // Apple refuses it (a token replaced by a newer download): checked before anything is stored.
    let mut forged: Value = serde_json::from_str(&mock.token_json()).unwrap();
    forged["access_secret"] = json!("AS_not-the-real-secret");
    let (st, body) = upload(&s, &admin, smime_token_file(&pem, &forged.to_string()).unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().unwrap().contains("Apple refused this token"), "{body}");
    mock.set_terms_not_signed(true);
    let (st, body) = upload(&s, &admin, smime_token_file(&pem, &mock.token_json()).unwrap()).await;
    assert!(st == StatusCode::UNPROCESSABLE_ENTITY && body["error"].as_str().unwrap().contains("accept them"), "{body}");
    mock.set_terms_not_signed(false);
    assert_eq!(s.get("/api/v1/ade/tokens", &admin).await.1["items"], json!([]), "nothing was stored");
    assert_eq!(upload(&s, &tech, b"x".to_vec()).await.0, StatusCode::FORBIDDEN);

    // The real file, as ASM downloads it.
    let file = smime_token_file(&pem, &mock.token_json()).unwrap();
    assert!(String::from_utf8_lossy(&file).contains("application/pkcs7-mime"), "made the way ASM makes it");
    let (st, t) = upload(&s, &admin, file.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert_eq!((t["server_uuid"].as_str(), t["org_name"].as_str()), (Some(mock.server_uuid().as_str()), Some(mock.org_name().as_str())));
    assert_eq!(t["server_name"], mock.server_name());
    assert_eq!(t["status"], "ok");
    assert!(t["expires_at"].as_str().is_some());
    // Uploading again (a renewal, as multipart from a form) keeps the one token.
    let boundary = "lanyard-ade-test-boundary";
    let mut form =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"token\"; filename=\"School_Token.p7m\"\r\n\r\n").into_bytes();
    form.extend(&file);
    form.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = s
        .client
        .post(s.url("/api/v1/ade/tokens"))
        .bearer_auth(&admin)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let renewed: Value = resp.json().await.unwrap();
    assert_eq!(renewed["id"], t["id"]);
    let (_, list) = s.get("/api/v1/ade/tokens", &tech).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, audit) = s.get("/api/v1/audit?action=ade.token.upload", &admin).await;
    assert_eq!(audit["items"][0]["details"]["renewal"], true);
    assert_eq!(audit["items"][1]["details"]["renewal"], false);
    // The secrets are sealed: no OAuth value in the database in the clear.
    let rec = s.ctx.store.ade_token(t["id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&rec.secrets_sealed).contains(&mock.token().access_secret));
    // Deleting it.
    let id = t["id"].as_str().unwrap();
    assert_eq!(s.call(Method::DELETE, &format!("/api/v1/ade/tokens/{id}"), Some(&tech), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.call(Method::DELETE, &format!("/api/v1/ade/tokens/{id}"), Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/api/v1/ade/tokens/{id}"), &admin).await.0, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Every device page: the whole list, following `next_cursor`.
async fn all_devices(s: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, page) = s.get(&format!("/api/v1/ade/devices?limit=1000{query}&cursor={cursor}"), token).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

async fn device_sync_survives_apples_failure_modes(b: Backend) {
    let mock = MockAde::start().await.unwrap();
    let s = server(&mock, b).await;
    s.load_push_cert().await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    // One of ASM's iPads is already enrolled in Lanyard.
    let enrolled = s.enrolled_device(Kind::SupervisedIpad).await;
    mock.add_devices((0..2500).map(|i| MockDevice::ipad(&format!("DMPX{i:06}"))));
    mock.add_devices([MockDevice::ipad(&enrolled.serial)]);
    let pem = public_key(&s, &admin).await;
    let (_, t) = upload(&s, &admin, smime_token_file(&pem, &mock.token_json()).unwrap()).await;
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();

    // The first sync, asked for from the API: 202 at once, then the progress to watch.
    let (st, started) = s.post(&format!("/api/v1/ade/tokens/{id}/sync"), &tech, json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{started}");
    let t = wait_synced(&s, &tech, id).await;
    assert_eq!((t["devices"].as_i64(), t["enrolled"].as_i64(), t["status"].as_str()), (Some(2501), Some(1), Some("ok")), "{t}");
    assert_eq!(mock.request_count("POST", "/server/devices"), 3, "pages of 1000");
    let devices = all_devices(&s, &tech, &format!("&token={id}")).await;
    assert_eq!(devices.len(), 2501);
    let mine = devices.iter().find(|d| d["serial_number"] == enrolled.serial.as_str()).unwrap();
    assert_eq!(mine["enrolled_udid"], enrolled.udid.as_str());
    assert_eq!(
        (mine["os"].as_str(), mine["device_family"].as_str(), mine["profile_status"].as_str()),
        (Some("iPadOS"), Some("iPad"), Some("empty"))
    );
    let found = all_devices(&s, &tech, "&q=dmpx00012").await;
    assert_eq!(found.len(), 10, "DMPX000120..129");

    // Changes: modified (twice, with duplicate records), deleted, added; Apple asks Lanyard to
    // wait once (429), and rotates the session on every answer.
    mock.set_duplicates(true);
    mock.rotate_session(true);
    mock.modify_device("DMPX000001", |d| d.asset_tag = Some("first".into()));
    mock.modify_device("DMPX000001", |d| d.asset_tag = Some("LIB-0001".into()));
    mock.delete_device("DMPX000002");
    mock.delete_device(&enrolled.serial);
    mock.add_devices([MockDevice::ipad("NEWPAD00001")]);
    mock.fail_next(1, Failure::too_many_requests(1));
    let started = std::time::Instant::now();
    s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After was honoured");
    let by_serial = |list: &[Value], serial: &str| list.iter().find(|d| d["serial_number"] == serial).cloned().unwrap();
    let devices = all_devices(&s, &tech, "").await;
    assert_eq!(devices.len(), 2502);
    assert_eq!(by_serial(&devices, "DMPX000001")["asset_tag"], "LIB-0001", "the latest op_date wins");
    assert!(by_serial(&devices, "DMPX000002")["removed_at"].is_string(), "deleted in ASM: flagged, kept");
    let gone = by_serial(&devices, &enrolled.serial);
    assert_eq!(gone["removed_but_enrolled"], true, "an enrolled device ASM dropped is flagged: {gone}");
    assert!(by_serial(&devices, "NEWPAD00001")["removed_at"].is_null());
    mock.set_duplicates(false);
    mock.rotate_session(false);

    // Sessions expire: a new one is taken and the call made again.
    let sessions = mock.request_count("GET", "/session");
    mock.expire_sessions();
    mock.add_devices([MockDevice::ipad("NEWPAD00002")]);
    s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert_eq!(mock.request_count("GET", "/session"), sessions + 1);
    assert_eq!(all_devices(&s, &tech, "&q=newpad").await.len(), 2);

    // A cursor older than Apple keeps (7 days): EXPIRED_CURSOR, then a full fetch.
    let fetches = mock.request_count("POST", "/server/devices");
    mock.advance_clock(chrono::Duration::days(8));
    let report = s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert_eq!(report.full_fetches, 1);
    assert_eq!(mock.request_count("POST", "/server/devices"), fetches + 3);
    let t = s.get(&format!("/api/v1/ade/tokens/{id}"), &tech).await.1;
    assert_eq!((t["status"].as_str(), t["devices"].as_i64()), (Some("ok"), Some(2503)), "{t}");

    // A cursor that never advances: broken with a full fetch, not looped on.
    mock.set_stuck_cursor(true);
    let fetches = mock.request_count("POST", "/server/devices");
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), s.ctx.ade.sync_token(id))
        .await
        .expect("no endless loop")
        .unwrap()
        .unwrap();
    assert_eq!((report.full_fetches, mock.request_count("POST", "/server/devices")), (1, fetches + 3));
    mock.set_stuck_cursor(false);

    // New terms in ASM: the token says so; the next sync after they are accepted clears it.
    mock.set_terms_not_signed(true);
    assert!(s.ctx.ade.sync_token(id).await.is_err());
    let t = s.get(&format!("/api/v1/ade/tokens/{id}"), &tech).await.1;
    assert_eq!(t["status"], "terms_not_signed", "{t}");
    assert!(t["warning"].as_str().unwrap().contains("accept"), "{t}");
    mock.set_terms_not_signed(false);
    s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert_eq!(s.get(&format!("/api/v1/ade/tokens/{id}"), &tech).await.1["status"], "ok");

    // Bad filters are refused with the field named.
    let (st, body) = s.get("/api/v1/ade/devices?profile_status=lost", &tech).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("profile_status")));
    let dsl = s.operator("dsl", "dsl").await;
    assert_eq!(s.get("/api/v1/ade/devices", &dsl).await.0, StatusCode::FORBIDDEN);
    s.stop().await;
}

/// Poll the token until its sync has finished.
async fn wait_synced(s: &TestServer, token: &str, id: uuid::Uuid) -> Value {
    for _ in 0..300 {
        let (_, t) = s.get(&format!("/api/v1/ade/tokens/{id}"), token).await;
        if t["sync_state"] == "idle" && (t["last_sync_at"].is_string() || t["last_error"].is_string()) {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the sync did not finish in 30 s");
}

async fn profiles_are_defined_once_and_assigned_by_rules(b: Backend) {
    let mock = MockAde::start().await.unwrap();
    let s = server(&mock, b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    mock.add_devices((0..2500).map(|i| MockDevice::ipad(&format!("DMPX{i:06}"))));
    mock.add_devices((0..5).map(|i| MockDevice { model: "iPad Air (5th generation)".into(), ..MockDevice::ipad(&format!("AIR{i:04}")) }));
    mock.set_assign_result("DMPX000003", "NOT_ACCESSIBLE");
    let pem = public_key(&s, &admin).await;
    let (_, t) = upload(&s, &admin, smime_token_file(&pem, &mock.token_json()).unwrap()).await;
    let token = t["id"].as_str().unwrap().to_owned();
    let id: uuid::Uuid = token.parse().unwrap();

    // Profiles, with a school's defaults, checked as Apple checks them.
    let (st, pupil) = s.post("/api/v1/ade/profiles", &tech, json!({"name": "Pupil iPads", "skip_setup_items": ["Siri", "Privacy"], "department": "IT office", "support_phone_number": "01632 960000"})).await;
    assert_eq!(st, StatusCode::CREATED, "{pupil}");
    assert_eq!(
        (
            pupil["is_supervised"].as_bool(),
            pupil["is_mandatory"].as_bool(),
            pupil["is_mdm_removable"].as_bool(),
            pupil["await_device_configured"].as_bool()
        ),
        (Some(true), Some(true), Some(false), Some(true))
    );
    assert!(pupil["url"].as_str().unwrap().ends_with("/mdm/ade/enroll"));
    for (body, field) in [
        (json!({"name": "x", "skip_setup_items": ["siri"]}), "skip_setup_items"),
        (json!({"name": "x", "is_supervised": false}), "is_mdm_removable"),
        (json!({"name": ""}), "name"),
    ] {
        let (st, e) = s.post("/api/v1/ade/profiles", &tech, body).await;
        assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{e}");
    }
    let (st, e) = s.post("/api/v1/ade/profiles", &tech, json!({"name": "x", "is_superviced": true})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "a typo is refused: {e}");
    assert_eq!(s.post("/api/v1/ade/profiles", &tech, json!({"name": "Pupil iPads"})).await.0, StatusCode::CONFLICT);
    let (_, staff) = s.post("/api/v1/ade/profiles", &tech, json!({"name": "Staff iPad Air", "is_mdm_removable": false})).await;
    let (pid, sid) = (pupil["id"].as_str().unwrap().to_owned(), staff["id"].as_str().unwrap().to_owned());

    // Rules: iPad Airs get the staff profile, everything else the pupil one.
    let rules_path = format!("/api/v1/ade/tokens/{token}/assignment");
    let (st, e) = s.call(Method::PUT, &rules_path, Some(&tech), Some(json!({"default_profile": pid, "rules": [{"profile": sid}]}))).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("rules")), "a rule without a condition: {e}");
    let (st, e) = s.call(Method::PUT, &rules_path, Some(&tech), Some(json!({"default_profile": uuid::Uuid::new_v4()}))).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("default_profile")), "{e}");
    let rules = json!({"default_profile": pid, "rules": [{"profile": sid, "model": "iPad Air"}]});
    let (st, set) = s.call(Method::PUT, &rules_path, Some(&tech), Some(rules.clone())).await;
    assert_eq!(st, StatusCode::OK, "{set}");
    assert_eq!(s.get(&rules_path, &tech).await.1["rules"][0]["model"], "iPad Air");

    // The sync assigns: each profile defined once, batches of at most 1000, each answer kept.
    let report = s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert_eq!((report.assigned, report.assign_failed), (2504, 1), "{report:?}");
    assert_eq!(mock.request_count("POST", "/profile"), 2);
    assert_eq!(mock.request_count("PUT", "/profile/devices"), 4, "2,500 in three batches, five iPad Airs in one");
    let defined = mock.profiles();
    let apple_pupil = defined.iter().find(|p| p["profile_name"] == "Pupil iPads").expect("defined with Apple");
    assert_eq!((apple_pupil["is_supervised"].as_bool(), apple_pupil["is_mdm_removable"].as_bool()), (Some(true), Some(false)));
    assert_eq!(apple_pupil["skip_setup_items"], json!(["Siri", "Privacy"]));
    assert_eq!(apple_pupil["department"], "IT office");
    assert!(apple_pupil["url"].as_str().unwrap().ends_with("/mdm/ade/enroll"));
    let pupil_uuid = apple_pupil["profile_uuid"].as_str().unwrap();
    assert_eq!(mock.assigned_profile("DMPX000000").as_deref(), Some(pupil_uuid));
    let staff_uuid = defined.iter().find(|p| p["profile_name"] == "Staff iPad Air").unwrap()["profile_uuid"].as_str().unwrap().to_owned();
    assert_eq!(mock.assigned_profile("AIR0003").as_deref(), Some(staff_uuid.as_str()));
    assert_eq!(mock.assigned_profile("DMPX000003"), None);
    let (_, listed) = s.get("/api/v1/ade/devices?q=DMPX000000", &tech).await;
    assert_eq!(
        (listed["items"][0]["profile_status"].as_str(), listed["items"][0]["profile_uuid"].as_str()),
        (Some("assigned"), Some(pupil_uuid))
    );

    // Nothing to do the next time: no profile defined again, nothing reassigned.
    let report = s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert_eq!((report.assigned, mock.request_count("POST", "/profile"), mock.request_count("PUT", "/profile/devices")), (0, 2, 4));

    // A changed profile is defined again and its devices moved to the new version.
    let (st, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/ade/profiles/{sid}"),
            Some(&tech),
            Some(json!({"name": "Staff iPad Air", "skip_setup_items": ["Location"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let report = s.ctx.ade.sync_token(id).await.unwrap().unwrap();
    assert_eq!((report.assigned, mock.request_count("POST", "/profile")), (5, 3), "{report:?}");
    assert_ne!(mock.assigned_profile("AIR0001").as_deref(), Some(staff_uuid.as_str()));

    // By hand, across whatever the rules say; a serial ASM does not list is named.
    let (st, r) = s.post(&format!("/api/v1/ade/profiles/{sid}/devices"), &tech, json!({"serials": ["DMPX000010", "NOT-OURS-1"]})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!((r["devices"]["DMPX000010"].as_str(), r["devices"]["NOT-OURS-1"].as_str()), (Some("SUCCESS"), Some("NOT_IN_ASM")));
    let (_, audit) = s.get("/api/v1/audit?action=ade.profile.assign", &admin).await;
    assert_eq!(audit["items"][0]["actor"], "operator:tech");

    // A profile the rules name cannot be deleted; an auditor cannot make one.
    let (st, e) = s.call(Method::DELETE, &format!("/api/v1/ade/profiles/{pid}"), Some(&tech), None).await;
    assert_eq!((st, e["code"].as_str()), (StatusCode::CONFLICT, Some("profile_in_use")), "{e}");
    let auditor = s.operator("audit", "auditor").await;
    assert_eq!(s.post("/api/v1/ade/profiles", &auditor, json!({"name": "y"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/api/v1/ade/profiles", &auditor).await.1["items"].as_array().unwrap().len(), 2);
    s.stop().await;
}
