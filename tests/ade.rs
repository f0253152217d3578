//! Apple School Manager against a faithful mock of Apple's device service (`lanyard_mocks::ade`):
//! the server token made the way ASM makes it (S/MIME, CMS enveloped to Lanyard's certificate),
//! refused the ways a technician gets it wrong, and a device sync that survives Apple's failure
//! modes (429 with Retry-After, session expiry and rotation, expired and stuck cursors,
//! duplicate records, deletions, new terms to accept).

#[macro_use]
mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Backend, Options, TestServer};
use lanyard_bench::sim::Kind;
use lanyard_mocks::{AppleDeviceCa, Failure, MockAde, MockDevice, sign_machine_info, smime_token_file};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    a_server_token_is_opened_checked_and_stored,
    device_sync_survives_apples_failure_modes,
    profiles_are_defined_once_and_assigned_by_rules,
    an_ipad_from_asm_enrols_supervised_and_waits_for_its_profiles
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

/// `POST /mdm/ade/enroll` with a body; (status, content type, body).
async fn ade_enroll(s: &TestServer, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
    let resp =
        s.client.post(s.url("/mdm/ade/enroll")).header("content-type", "application/pkcs7-signature").body(body).send().await.unwrap();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (resp.status(), ct, resp.bytes().await.unwrap().to_vec())
}

/// The SCEP challenge inside a signed enrolment profile.
fn challenge_of(profile_der: &[u8]) -> String {
    let (content, _) = lanyard::protocol::cms::unwrap_signed_profile(profile_der).unwrap();
    let profile: plist::Dictionary = plist::from_bytes(&content).unwrap();
    let scep = profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_dictionary().unwrap())
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.security.scep"))
        .expect("a SCEP payload");
    scep["PayloadContent"].as_dictionary().unwrap()["Challenge"].as_string().unwrap().to_owned()
}

/// A technician's path for a new iPad from ASM: Setup Assistant posts its signed MachineInfo,
/// gets the enrolment profile only as a device ASM lists for the school, enrols with a one-time
/// challenge bound to its serial, waits in Setup Assistant while its group's profiles go on,
/// and is let go with DeviceConfigured; one that never gets its profiles is let go after the
/// timeout. Forged, foreign, replayed and unlisted MachineInfos get nothing.
async fn an_ipad_from_asm_enrols_supervised_and_waits_for_its_profiles(b: Backend) {
    let mock = MockAde::start().await.unwrap();
    let apple = AppleDeviceCa::new().unwrap();
    let anchors = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(anchors.path(), apple.root_pem()).unwrap();
    let opts = Options {
        env: vec![("LANYARD_ADE_URL", mock.url()), ("LANYARD_ADE_DEVICE_CA_FILE", anchors.path().display().to_string())],
        manual_clock: true,
        ..Options::default()
    };
    let s = TestServer::start_with(b, opts).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    s.load_push_cert().await;
    let (serial, udid) = ("DMPXADE00001", "00008101-000A1B2C3D4E5F60");
    // The second is moving here from another MDM server, with a deadline.
    let migrating = MockDevice { mdm_migration_deadline: Some("2026-12-31T00:00:00Z".into()), ..MockDevice::ipad("DMPXADE00002") };
    mock.add_devices([MockDevice::ipad(serial), migrating]);
    let pem = public_key(&s, &admin).await;
    let (_, t) = upload(&s, &admin, smime_token_file(&pem, &mock.token_json()).unwrap()).await;
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(s.post(&format!("/api/v1/ade/tokens/{id}/sync"), &admin, json!({})).await.0, StatusCode::ACCEPTED);
    let t = wait_synced(&s, &admin, id).await;
    assert_eq!((t["migrating"].as_i64(), t["next_migration_deadline"].as_str()), (Some(1), Some("2026-12-31T00:00:00Z")), "{t}");
    let listed = all_devices(&s, &admin, "").await;
    let flags: Vec<(bool, &str)> =
        listed.iter().map(|d| (d["migrating"].as_bool().unwrap(), d["serial_number"].as_str().unwrap())).collect();
    assert_eq!(flags, vec![(false, serial), (true, "DMPXADE00002")]);

    // Supervised iPads get the pupil restrictions.
    let (st, g) = s
        .post(
            "/api/v1/groups",
            &tech,
            json!({"name": "Supervised iPads", "kind": "smart", "rules": {"platform": ["iPadOS"], "supervised": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let spec = json!({"name": "pupil-ipad", "display_name": "Pupil iPad", "payloads": [{"type": "com.apple.applicationaccess", "allowAirDrop": false}]});
    let (st, p) = s.post("/api/v1/profiles", &tech, spec).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let (st, a) = s.post(&format!("/api/v1/groups/{}/profiles", g["id"].as_str().unwrap()), &tech, json!({"profile_id": p["id"]})).await;
    assert!(st.is_success(), "{a}");

    // What Setup Assistant sends is Apple's MachineInfo.
    let plist_file = s.dir.path().join("machineinfo.plist");
    std::fs::write(&plist_file, lanyard_mocks::machine_info_plist(serial, udid)).unwrap();
    common::validate_plist("machineinfo", &plist_file).unwrap_or_else(|e| panic!("validate_plist.py machineinfo: {e}"));

    // Refused, each with its reason: not CMS; signed under another root; a serial ASM does not
    // list for this school; and (below) the same message twice.
    let (st, _, body) = ade_enroll(&s, b"<plist/>".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    let stranger = AppleDeviceCa::new().unwrap();
    let (st, _, body) = ade_enroll(&s, stranger.machine_info(serial, udid).unwrap()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("does not chain to Apple's root"), "{}", String::from_utf8_lossy(&body));
    let (st, _, body) = ade_enroll(&s, apple.machine_info("NOTOURS00001", udid).unwrap()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("not assigned to this school's MDM server"), "{}", String::from_utf8_lossy(&body));
    // A device identity the device CA did not issue, with the real intermediate sent along.
    let (forged_cert, forged_key) = lanyard_mocks::certificates::test_ca("Not an iPad").unwrap();
    let forged = sign_machine_info(&lanyard_mocks::machine_info_plist(serial, udid), &forged_cert, &forged_key, &forged_cert).unwrap();
    assert_eq!(ade_enroll(&s, forged).await.0, StatusCode::FORBIDDEN);

    // The real one: a signed enrolment profile whose challenge is single-use.
    let machine_info = apple.machine_info(serial, udid).unwrap();
    let (st, ct, profile) = ade_enroll(&s, machine_info.clone()).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&profile));
    assert_eq!(ct, "application/x-apple-aspen-config");
    let challenge = challenge_of(&profile);
    assert_eq!(ade_enroll(&s, machine_info).await.0, StatusCode::FORBIDDEN, "a replayed MachineInfo");
    // Setup Assistant after web authentication sends it in a header.
    let resp = s
        .client
        .get(s.url("/mdm/ade/enroll"))
        .header("x-apple-aspen-deviceinfo", B64.encode(apple.machine_info("DMPXADE00002", "00008101-0000000000000002").unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let second_challenge = challenge_of(&resp.bytes().await.unwrap());
    assert_ne!(challenge, second_challenge);

    let (cert, key) = s.scepclient(&challenge, "ade-ipad").unwrap_or_else(|out| panic!("scepclient: {out}"));
    assert!(s.scepclient(&challenge, "ade-again").is_err(), "the challenge is spent");
    let cert = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(key).unwrap()).unwrap();
    let mut d = lanyard_bench::sim::SimDevice::new(Kind::SupervisedIpad, common::device::TOPIC, cert, key);
    d.udid = udid.into();
    // The identity authenticates only as the iPad it was issued to.
    d.serial = "DMPXADE00002".into();
    let (st, body) = s.checkin(&d, d.authenticate()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&body));
    d.serial = serial.into();
    assert_eq!(s.checkin(&d, d.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&d, d.token_update_awaiting(true)).await.0, StatusCode::OK);
    let (_, dev) = s.get(&format!("/api/v1/devices/{udid}"), &tech).await;
    assert_eq!(dev["awaiting_configuration"], true, "{dev}");
    assert_eq!(dev["setup"]["installed"], 0, "{dev}");

    // Its inventory (supervised), then its profile, then DeviceConfigured: in that order.
    let answered = s.drain(&d).await;
    let install = answered.iter().position(|r| r == "InstallProfile").unwrap_or_else(|| panic!("{answered:?}"));
    let configured = answered.iter().position(|r| r == "DeviceConfigured").unwrap_or_else(|| panic!("{answered:?}"));
    assert!(install < configured, "{answered:?}");
    assert_eq!(answered.iter().filter(|r| *r == "DeviceConfigured").count(), 1, "{answered:?}");
    let (_, dev) = s.get(&format!("/api/v1/devices/{udid}"), &tech).await;
    assert_eq!((dev["supervised"].as_bool(), dev["awaiting_configuration"].as_bool()), (Some(true), Some(false)), "{dev}");
    assert!(dev["setup"].is_null(), "{dev}");
    let (_, audit) = s.get("/api/v1/audit?action=device.setup_released", &admin).await;
    let entry = &audit["items"][0];
    assert_eq!(
        (entry["details"]["reason"].as_str(), entry["details"]["installed"].as_i64()),
        (Some("profiles_installed"), Some(1)),
        "{audit}"
    );
    let (_, audit) = s.get("/api/v1/audit?action=ade.enrol", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");

    // The second iPad enrols but never answers: let go once ade_setup_timeout (15 minutes) is up.
    let (cert, key) = s.scepclient(&second_challenge, "ade-ipad-2").unwrap_or_else(|out| panic!("scepclient: {out}"));
    let cert = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(key).unwrap()).unwrap();
    let mut d2 = lanyard_bench::sim::SimDevice::new(Kind::SupervisedIpad, common::device::TOPIC, cert, key);
    (d2.udid, d2.serial) = ("00008101-0000000000000002".into(), "DMPXADE00002".into());
    assert_eq!(s.checkin(&d2, d2.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&d2, d2.token_update_awaiting(true)).await.0, StatusCode::OK);
    let (_, t) = s.get(&format!("/api/v1/ade/tokens/{id}"), &admin).await;
    assert_eq!(t["migrating"], 0, "enrolled without an erase, it has migrated: {t}");
    assert_eq!(s.ctx.devices.release_overdue_setups().await.unwrap(), 0, "not yet");
    s.clock.as_ref().unwrap().advance(chrono::Duration::minutes(16));
    assert_eq!(s.ctx.devices.release_overdue_setups().await.unwrap(), 1);
    assert_eq!(s.ctx.devices.release_overdue_setups().await.unwrap(), 0, "once");
    let (_, audit) = s.get("/api/v1/audit?action=device.setup_released", &admin).await;
    assert_eq!(audit["items"][0]["details"]["reason"], "timed_out", "{audit}");
    let (_, dev) = s.get("/api/v1/devices/00008101-0000000000000002", &tech).await;
    assert_eq!(dev["setup_flag"], "timed out after 0 of 0 profiles", "{dev}");
    assert!(dev["setup"].is_null(), "{dev}");
    assert!(s.drain(&d2).await.contains(&"DeviceConfigured".to_owned()));
    let (_, dev) = s.get(&format!("/api/v1/devices/{udid}"), &tech).await;
    assert!(dev["setup_flag"].is_null(), "the first went as planned: {dev}");

    // Returned to service, the first iPad comes back through ADE: no enrolment profile is sent.
    let (st, r) = s.post(&format!("/api/v1/devices/{udid}/return-to-service"), &tech, json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["devices"][0]["re_enrols_by"], "ade", "{r}");
    let (_, next) = s.connect(&d, d.idle()).await;
    let (_, rt, cmd) = lanyard_bench::sim::SimDevice::read_command(&next).expect("a command");
    assert_eq!(rt, "EraseDevice");
    let rts = cmd["ReturnToService"].as_dictionary().unwrap();
    assert_eq!((rts["Enabled"].as_boolean(), rts.get("MDMProfileData").is_none()), (Some(true), true), "{rts:?}");
    s.stop().await;
}
