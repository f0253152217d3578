//! The Apple MDM protocol core, end to end against the real server: enrolment profile, SCEP
//! with Debian's `scepclient`, check-in, the command queue, inventory — on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;

use common::device::TOPIC;
use common::{Backend, TestServer, assert_error};
use lanyard_bench::sim::{Kind, SimDevice, SimIdentity};
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests!(
    a_device_enrols_and_obeys_commands,
    enrolment_tokens_guard_the_profile_and_scep,
    a_token_use_is_spent_exactly_when_a_certificate_is_issued,
    bad_device_input_changes_nothing,
    command_queue_rules,
    renewed_identity_keeps_the_enrolment,
    inventory_api_and_csv,
    bootstrap_token_round_trip,
    clear_passcode_uses_each_devices_own_unlock_token,
    commands_that_need_supervision_are_refused_before_queueing,
);

fn shared_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("LANYARD_SHARED_DIR") {
        return d.into();
    }
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        let candidate = dir.join("shared");
        if candidate.join("tools/validate_plist.py").exists() {
            return candidate;
        }
        if !dir.pop() {
            panic!("cannot find shared/tools/validate_plist.py above {}", env!("CARGO_MANIFEST_DIR"));
        }
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn new_token(s: &TestServer, max_uses: Option<i64>) -> (String, String) {
    let admin = s.admin().await;
    let (st, t) = s.post("/api/v1/enrollment-tokens", &admin, json!({"label": "Year 3 trolley", "max_uses": max_uses})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    (t["id"].as_str().unwrap().to_owned(), t["token"].as_str().unwrap().to_owned())
}

const PUBLIC: &str = "https://mdm.example-primary.sch.uk";

async fn a_device_enrols_and_obeys_commands(b: Backend) {
    // Behind a TLS-terminating proxy, as a school would run it: devices are told https.
    let opts = common::Options { env: vec![("LANYARD_PUBLIC_URL", PUBLIC.to_owned())], ..Default::default() };
    let s = TestServer::start_with(b, opts).await;
    let admin = s.admin().await;
    s.load_push_cert().await;
    let (token_id, token) = new_token(&s, Some(30)).await;

    // The enrolment profile: CMS-signed DER that openssl verifies against our CA.
    let resp = s.client.get(s.url(&format!("/mdm/enroll?token={token}"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-apple-aspen-config");
    let der = resp.bytes().await.unwrap();
    let dir = s.dir.path();
    std::fs::write(dir.join("enrol.mobileconfig"), &der).unwrap();
    let (ok, out) = run(Command::new("openssl")
        .args(["smime", "-verify", "-inform", "DER", "-in"])
        .arg(dir.join("enrol.mobileconfig"))
        .arg("-CAfile")
        .arg(dir.join("data/ca.pem"))
        .arg("-out")
        .arg(dir.join("enrol.plist")));
    assert!(ok, "openssl smime -verify: {out}");
    let (ok, out) =
        run(Command::new("python3").arg(shared_dir().join("tools/validate_plist.py")).arg("profile").arg(dir.join("enrol.plist")));
    assert!(ok, "validate_plist.py profile: {out}");
    let profile: plist::Dictionary = plist::from_file(dir.join("enrol.plist")).unwrap();
    let payloads = profile["PayloadContent"].as_array().unwrap();
    let by_type = |t: &str| payloads.iter().map(|p| p.as_dictionary().unwrap()).find(|p| p["PayloadType"].as_string() == Some(t)).unwrap();
    let scep = by_type("com.apple.security.scep");
    let scep_content = scep["PayloadContent"].as_dictionary().unwrap();
    assert_eq!(scep_content["Challenge"].as_string(), Some(token.as_str()));
    assert_eq!(scep_content["URL"].as_string(), Some(format!("{PUBLIC}/scep").as_str()));
    let mdm = by_type("com.apple.mdm");
    assert_eq!(mdm["Topic"].as_string(), Some(TOPIC));
    assert_eq!(mdm["ServerURL"].as_string(), Some(format!("{PUBLIC}/mdm/connect").as_str()));
    assert_eq!(mdm["CheckInURL"].as_string(), Some(format!("{PUBLIC}/mdm/checkin").as_str()));
    assert_eq!(mdm["IdentityCertificateUUID"], scep["PayloadUUID"]);
    assert_eq!(mdm["SignMessage"].as_boolean(), Some(true));
    assert_eq!(mdm["AccessRights"].as_signed_integer(), Some(8191));
    by_type("com.apple.security.root");

    // SCEP with Debian's scepclient; openssl verifies the issued identity.
    let (cert_path, key_path) = s.scepclient(&token, "device1").unwrap_or_else(|out| panic!("scepclient: {out}"));
    let (ok, out) = run(Command::new("openssl").arg("verify").arg("-CAfile").arg(dir.join("data/ca.pem")).arg(&cert_path));
    assert!(ok, "openssl verify: {out}");
    let (_, tokens) = s.get("/api/v1/enrollment-tokens", &admin).await;
    let t = tokens["items"].as_array().unwrap().iter().find(|t| t["id"] == token_id.as_str()).unwrap().clone();
    assert_eq!(t["uses"], 1, "a use is spent when SCEP issues a certificate");

    // The device, with the identity scepclient obtained.
    let cert = openssl::x509::X509::from_pem(&std::fs::read(&cert_path).unwrap()).unwrap();
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(&key_path).unwrap()).unwrap();
    let d = SimDevice::new(Kind::SupervisedIpad, TOPIC, cert, key);
    assert_eq!(s.checkin(&d, d.authenticate()).await.0, StatusCode::OK);
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["enrolled"], false, "enrolled only after TokenUpdate: {dev}");
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);

    // The first TokenUpdate queued the initial inventory; the device answers it. Once it has said
    // which OS it runs (one with DDM) and that it is supervised, Lanyard also turns DDM on and
    // asks for its Activation Lock bypass code.
    let answered = s.drain(&d).await;
    assert_eq!(answered, ["DeviceInformation", "SecurityInfo", "ProfileList", "DeclarativeManagement", "ActivationLockBypassCode"]);
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["enrolled"], true);
    assert_eq!(dev["serial_number"], d.serial.as_str());
    assert_eq!(dev["platform"], "iPadOS");
    assert_eq!(dev["product_name"], "iPad13,18");
    assert_eq!(dev["os_version"], "17.5");
    assert_eq!(dev["supervised"], true);
    assert_eq!(dev["encrypted"], true);
    assert_eq!(dev["passcode_present"], true);
    assert_eq!(dev["storage_capacity_gb"], 64.0);
    assert!(dev["enrolled_at"].is_string() && dev["last_seen_at"].is_string());
    assert_eq!(dev["last_results"]["DeviceInformation"]["status"], "acknowledged");

    // An operator's command: NotNow skips it for this connection, the next Idle offers it again.
    let (st, q) = s
        .post(
            &format!("/api/v1/devices/{}/commands", d.udid),
            &admin,
            json!({"request_type": "DeviceLock", "Message": "Please return this iPad to the office"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    let uuid = q["command_uuid"].as_str().unwrap().to_owned();
    let (_, cmd) = s.connect(&d, d.idle()).await;
    let (got, rt, body) = SimDevice::read_command(&cmd).unwrap();
    assert_eq!((got.as_str(), rt.as_str()), (uuid.as_str(), "DeviceLock"));
    assert_eq!(body["Message"].as_string(), Some("Please return this iPad to the office"));
    let (st, next) = s.connect(&d, d.report("NotNow", &uuid, Default::default())).await;
    assert_eq!((st, next.len()), (StatusCode::OK, 0), "after NotNow nothing else is pending");
    let (_, status) = s.get(&format!("/api/v1/commands/{uuid}"), &admin).await;
    assert_eq!(status["targets"][0]["status"], "not_now");
    let (_, again) = s.connect(&d, d.idle()).await;
    assert_eq!(SimDevice::read_command(&again).unwrap().0, uuid);
    let (_, next) = s.connect(&d, d.report("Acknowledged", &uuid, Default::default())).await;
    assert!(next.is_empty());
    let (_, status) = s.get(&format!("/api/v1/commands/{uuid}"), &admin).await;
    assert_eq!(status["request_type"], "DeviceLock");
    assert_eq!(status["targets"][0]["udid"], d.udid.as_str());
    assert_eq!(status["targets"][0]["status"], "acknowledged");
    assert_eq!(status["targets"][0]["result"]["Status"], "Acknowledged");
    assert!(status["targets"][0]["updated_at"].is_string());

    // CheckOut: unenrolled, history kept.
    assert_eq!(s.checkin(&d, d.check_out()).await.0, StatusCode::OK);
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["enrolled"], false);
    let (_, hist) = s.get(&format!("/api/v1/devices/{}/commands", d.udid), &admin).await;
    assert_eq!(hist["items"].as_array().unwrap().len(), 6, "the three of the inventory, DDM, the bypass code and the lock: {hist}");
    s.stop().await;
}

async fn enrolment_tokens_guard_the_profile_and_scep(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    // No push certificate yet: 503 saying how to load one.
    let (_, token) = new_token(&s, Some(1)).await;
    let resp = s.client.get(s.url(&format!("/mdm/enroll?token={token}"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.text().await.unwrap().contains("push-cert import"));
    s.load_push_cert().await;
    for bad in ["enr_unknown", "", "lny_notanenrolmenttoken"] {
        let resp = s.client.get(s.url(&format!("/mdm/enroll?token={bad}"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{bad}");
    }
    assert_eq!(s.client.get(s.url("/mdm/enroll")).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // A wrong challenge gets a SCEP failure and no certificate.
    let err = s.scepclient("enr_wrong-challenge", "wrong").unwrap_err();
    assert!(err.contains("badRequest"), "{err}");
    // The right one works once (max_uses 1), then the token is used up for SCEP and the profile.
    s.scepclient(&token, "first").unwrap_or_else(|out| panic!("{out}"));
    let err = s.scepclient(&token, "second").unwrap_err();
    assert!(err.contains("badRequest"), "{err}");
    let resp = s.client.get(s.url(&format!("/mdm/enroll?token={token}"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Revocation; tokens are stored hashed.
    let (id, live) = new_token(&s, None).await;
    assert_eq!(s.client.get(s.url(&format!("/mdm/enroll?token={live}"))).send().await.unwrap().status(), StatusCode::OK);
    let (st, _) = s.call(Method::DELETE, &format!("/api/v1/enrollment-tokens/{id}"), Some(&admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.client.get(s.url(&format!("/mdm/enroll?token={live}"))).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let (_, list) = s.get("/api/v1/enrollment-tokens", &admin).await;
    assert!(!list.to_string().contains(&live), "the secret is never listed");
    let auditor = s.operator("governor", "auditor").await;
    let (st, body) = s.post("/api/v1/enrollment-tokens", &auditor, json!({"label": "x"})).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    let (_, audit) = s.get("/api/v1/audit?action=enrollment_token.", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 3);
    s.stop().await;
}

/// A technician makes a token for 3 iPads and 8 ask at once: exactly 3 get an identity, each on
/// record, and the token shows 3 uses — no use is lost to a request that got no certificate.
async fn a_token_use_is_spent_exactly_when_a_certificate_is_issued(b: Backend) {
    use lanyard::protocol::scep::{MessageType, client::Requester};
    use openssl::{hash::MessageDigest, pkey::PKey, rsa::Rsa, symm::Cipher, x509::X509};
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    s.load_push_cert().await;
    let (id, token) = new_token(&s, Some(3)).await;
    let ca = X509::from_der(&s.client.get(s.url("/scep?operation=GetCACert")).send().await.unwrap().bytes().await.unwrap()).unwrap();
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let requester = Requester::new(key.clone(), &format!("ipad-{i}"), &token).unwrap();
        let msg = requester.pkcs_req(&ca, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq).unwrap();
        let send = s.client.post(s.url("/scep?operation=PKIOperation")).header("content-type", "application/x-pki-message").body(msg.der);
        asks.spawn(async move {
            let resp = send.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let rep = requester.decode_cert_rep(&resp.bytes().await.unwrap()).unwrap();
            (rep.is_success(), rep.fail_info, rep.certs)
        });
    }
    let answers = asks.join_all().await;
    let issued: Vec<_> = answers.iter().filter(|(ok, _, _)| *ok).collect();
    assert_eq!(issued.len(), 3, "{answers:?}");
    for (_, fail, _) in answers.iter().filter(|(ok, _, _)| !*ok) {
        assert_eq!(fail.as_deref(), Some("2"), "badRequest for the ones past the limit");
    }
    for (_, _, certs) in issued {
        let sha = hex::encode(openssl::sha::sha256(&certs[0].to_der().unwrap()));
        let rec = s.ctx.store.issued_cert(&sha).await.unwrap().expect("each identity handed out is on record");
        assert_eq!(rec.enrollment_token_id.map(|u| u.to_string()), Some(id.clone()));
    }
    let (_, list) = s.get("/api/v1/enrollment-tokens", &admin).await;
    let t = list["items"].as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap().clone();
    assert_eq!(t["uses"], 3, "{t}");
    assert_eq!(t["live"], false, "{t}");
    s.stop().await;
}

async fn bad_device_input_changes_nothing(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let a = s.enrolled_device(Kind::SupervisedIpad).await;
    let before = s.get(&format!("/api/v1/devices/{}", a.udid), &admin).await.1;
    let audit_before = lanyard::services::audit::verify_chain(s.ctx.store.as_ref()).await.unwrap().entries_checked;

    // Malformed plist, correctly signed.
    let junk = b"<plist><dict><key>MessageType".to_vec();
    let (st, _) = s.checkin(&a, junk.clone()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.connect(&a, junk).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Unknown MessageType.
    let unknown =
        String::from_utf8(a.authenticate()).unwrap().replace("<string>Authenticate</string>", "<string>Launch</string>").into_bytes();
    assert_eq!(s.checkin(&a, unknown).await.0, StatusCode::BAD_REQUEST);
    // Missing signature.
    let (st, _) = s.device_request("/mdm/connect", a.idle(), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Garbage signature.
    let (st, _) = s.device_request("/mdm/connect", a.idle(), Some("bm90IGEgc2lnbmF0dXJl".into())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A signature over a different body (forged for this one).
    let sig_other = a.sign(&a.check_out());
    let (st, _) = s.device_request("/mdm/checkin", a.token_update(), Some(sig_other)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A certificate from another CA.
    let (other_ca, other_key, _, _) = lanyard_mocks::test_push_certificate("com.apple.mgmt.External.other", 30);
    let foreign = SimDevice { udid: a.udid.clone(), ..SimDevice::new(Kind::SupervisedIpad, TOPIC, other_ca, other_key) };
    assert_eq!(s.connect(&foreign, foreign.idle()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.checkin(&foreign, foreign.check_out()).await.0, StatusCode::FORBIDDEN);
    // Device B replaying device A's certificate (and key) while claiming to be B, and the other way round.
    let b_dev = s.enrolled_device(Kind::Mac).await;
    let replay = SimDevice { udid: b_dev.udid.clone(), ..SimDevice::new(Kind::Mac, TOPIC, a.cert.clone(), a.key.clone()) };
    assert_eq!(s.connect(&replay, replay.idle()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.checkin(&replay, replay.check_out()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.checkin(&replay, replay.authenticate()).await.0, StatusCode::FORBIDDEN);
    // A fresh identity claiming an existing device without authenticating.
    let stranger = s.new_device(Kind::SupervisedIpad).await;
    let stranger = SimDevice { udid: a.udid.clone(), ..stranger };
    assert_eq!(s.connect(&stranger, stranger.idle()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.checkin(&stranger, stranger.check_out()).await.0, StatusCode::FORBIDDEN);
    // Oversized bodies.
    let big = vec![b'x'; 65 * 1024];
    assert_eq!(s.checkin(&a, big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let huge = vec![b'x'; 5 * 1024 * 1024];
    assert_eq!(s.device_request("/mdm/connect", huge, None).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing changed: A is still enrolled with the same record, B too, and no new audit entries.
    let after = s.get(&format!("/api/v1/devices/{}", a.udid), &admin).await.1;
    assert_eq!(before["enrolled"], after["enrolled"]);
    assert_eq!(after["enrolled"], true);
    assert_eq!(s.get(&format!("/api/v1/devices/{}", b_dev.udid), &admin).await.1["enrolled"], true);
    assert_eq!(s.drain(&a).await.len(), 0);
    let audit_after = lanyard::services::audit::verify_chain(s.ctx.store.as_ref()).await.unwrap().entries_checked;
    assert_eq!(audit_before, audit_after);
    s.stop().await;
}

async fn command_queue_rules(b: Backend) {
    let s = TestServer::start_with(b, common::Options { manual_clock: true, ..Default::default() }).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::Mac).await;
    let e = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let cmd_url = format!("/api/v1/devices/{}/commands", d.udid);

    // Validation names the field.
    let (st, body) = s.post(&cmd_url, &admin, json!({"request_type": "Reboot"})).await;
    assert_eq!(
        (assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY), body["field"].as_str()),
        ("invalid_field".into(), Some("request_type"))
    );
    let (st, body) = s.post(&cmd_url, &admin, json!({"request_type": "DeviceLock", "PIN": "12"})).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("PIN")));
    let (st, body) = s.post(&cmd_url, &admin, json!({"request_type": "DeviceLock", "Colour": "red"})).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Colour")));
    let (st, _) =
        s.post("/api/v1/devices/NOSUCHDEVICE/commands", &admin, json!({"request_type": "DeviceInformation", "Queries": ["UDID"]})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) =
        s.post("/api/v1/commands", &admin, json!({"targets": [d.udid, "NOSUCHDEVICE"], "command": {"request_type": "SecurityInfo"}})).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("targets[1]")));
    // Roles: an auditor reads devices but cannot command them.
    let auditor = s.operator("aud", "auditor").await;
    assert_eq!(s.get(&format!("/api/v1/devices/{}", d.udid), &auditor).await.0, StatusCode::OK);
    let (st, _) = s.post(&cmd_url, &auditor, json!({"request_type": "SecurityInfo"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Expiry: an expired command is never sent and shows as expired.
    let soon = (s.ctx.now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (_, exp) = s.post(&cmd_url, &admin, json!({"request_type": "RestartDevice", "expires_at": soon})).await;
    let exp_uuid = exp["command_uuid"].as_str().unwrap().to_owned();
    s.clock.as_ref().unwrap().advance(chrono::Duration::minutes(10));
    let admin = s.admin().await;
    assert!(s.connect(&d, d.idle()).await.1.is_empty(), "expired commands are never sent");
    let (_, st_json) = s.get(&format!("/api/v1/commands/{exp_uuid}"), &admin).await;
    assert_eq!(st_json["targets"][0]["status"], "expired");

    // One command to many devices; the oldest pending goes first; a duplicate report changes nothing.
    let (st, bulk) =
        s.post("/api/v1/commands", &admin, json!({"targets": [d.udid, e.udid], "command": {"request_type": "ProfileList"}})).await;
    assert_eq!(st, StatusCode::CREATED, "{bulk}");
    assert_eq!(bulk["targets"], 2);
    let first = bulk["command_uuid"].as_str().unwrap().to_owned();
    let (_, second) = s.post(&cmd_url, &admin, json!({"request_type": "SecurityInfo"})).await;
    let second = second["command_uuid"].as_str().unwrap().to_owned();
    let (_, c) = s.connect(&d, d.idle()).await;
    assert_eq!(SimDevice::read_command(&c).unwrap().0, first);
    let (_, _, ack) = d.answer(&c).unwrap();
    let (_, c2) = s.connect(&d, ack.clone()).await;
    assert_eq!(SimDevice::read_command(&c2).unwrap().0, second);
    let (_, after_dup) = s.connect(&d, ack).await;
    assert_eq!(SimDevice::read_command(&after_dup).unwrap().0, second, "a duplicate report only gets the next command again");
    let (_, view) = s.get(&format!("/api/v1/commands/{first}"), &admin).await;
    let mine = view["targets"].as_array().unwrap().iter().find(|t| t["udid"] == d.udid.as_str()).unwrap().clone();
    let other = view["targets"].as_array().unwrap().iter().find(|t| t["udid"] == e.udid.as_str()).unwrap().clone();
    assert_eq!((mine["status"].as_str(), other["status"].as_str()), (Some("acknowledged"), Some("queued")));
    let completed = mine["completed_at"].clone();
    // An Error ends delivery, keeps the error chain.
    let (_, _) = s.connect(&d, d.report("Error", &second, Default::default())).await;
    let (_, v) = s.get(&format!("/api/v1/commands/{second}"), &admin).await;
    assert_eq!(v["targets"][0]["status"], "error");
    assert_eq!(v["targets"][0]["result"]["ErrorChain"][0]["ErrorCode"], 12021);
    s.connect(&d, d.report("Acknowledged", &second, Default::default())).await;
    let (_, v) = s.get(&format!("/api/v1/commands/{second}"), &admin).await;
    assert_eq!(v["targets"][0]["status"], "error", "a late duplicate does not overwrite a result");
    let (_, view) = s.get(&format!("/api/v1/commands/{first}"), &admin).await;
    let mine = view["targets"].as_array().unwrap().iter().find(|t| t["udid"] == d.udid.as_str()).unwrap().clone();
    assert_eq!(mine["completed_at"], completed);

    // Cancel what has not been delivered.
    let (st, c) = s.call(Method::DELETE, &format!("/api/v1/commands/{first}"), Some(&admin), None).await;
    assert_eq!((st, c["cancelled"].as_u64()), (StatusCode::OK, Some(1)));
    assert!(s.connect(&e, e.idle()).await.1.is_empty());
    let (_, view) = s.get(&format!("/api/v1/commands/{first}"), &admin).await;
    let other = view["targets"].as_array().unwrap().iter().find(|t| t["udid"] == e.udid.as_str()).unwrap().clone();
    assert_eq!(other["status"], "cancelled");
    let (_, audit) = s.get("/api/v1/audit?action=command.", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 4, "{audit}");
    s.stop().await;
}

async fn renewed_identity_keeps_the_enrolment(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    // SCEP renewal records the new certificate as renewing the old one (see the SCEP tests);
    // here the device then simply uses it.
    let key = lanyard_bench::sim::new_key().unwrap();
    let renewed = s.ctx.issue_simulated_identity(&key, "Lanyard device identity").await.unwrap();
    let old_sha = lanyard::services::enrollment::cert_sha256(&d.cert).unwrap();
    let new_sha = lanyard::services::enrollment::cert_sha256(&renewed).unwrap();
    s.raw_sql(&[&format!("UPDATE issued_certificates SET renewed_from = '{old_sha}' WHERE sha256 = '{new_sha}'")]).await;
    // A command handed over under the old certificate is answered under the new one.
    let (_, q) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "SecurityInfo"})).await;
    let uuid = q["command_uuid"].as_str().unwrap();
    let (st, cmd) = s.connect(&d, d.idle()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(SimDevice::read_command(&cmd).unwrap().0, uuid);
    let (old_cert, old_key, udid) = (d.cert.clone(), d.key.clone(), d.udid.clone());
    let d2 = SimDevice { cert: renewed, key, ..d };
    let (_, _, answer) = d2.answer(&cmd).unwrap();
    let (st, next) = s.connect(&d2, answer).await;
    assert_eq!((st, next.len()), (StatusCode::OK, 0));
    let (_, view) = s.get(&format!("/api/v1/commands/{uuid}"), &admin).await;
    assert_eq!(view["targets"][0]["status"], "acknowledged", "{view}");
    let (_, q) = s.post(&format!("/api/v1/devices/{}/commands", d2.udid), &admin, json!({"request_type": "ProfileList"})).await;
    let (st, cmd) = s.connect(&d2, d2.idle()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(SimDevice::read_command(&cmd).unwrap().0, q["command_uuid"].as_str().unwrap());
    // The binding moved: the old certificate is no longer accepted.
    let old = SimDevice { udid, ..SimDevice::new(Kind::SupervisedIpad, TOPIC, old_cert, old_key) };
    assert_eq!(s.connect(&old, old.idle()).await.0, StatusCode::FORBIDDEN);
    // A certificate that renews nothing of this device's is refused.
    let key = lanyard_bench::sim::new_key().unwrap();
    let unrelated = s.ctx.issue_simulated_identity(&key, "Lanyard device identity").await.unwrap();
    let impostor = SimDevice { udid: d2.udid.clone(), ..SimDevice::new(Kind::SupervisedIpad, TOPIC, unrelated, key) };
    assert_eq!(s.connect(&impostor, impostor.idle()).await.0, StatusCode::FORBIDDEN);
    let dev = s.ctx.store.device(&d2.udid).await.unwrap().unwrap();
    assert_eq!(dev.cert_sha256.as_deref(), Some(new_sha.as_str()));
    s.stop().await;
}

async fn inventory_api_and_csv(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let pending = s.new_device(Kind::UnsupervisedIpad).await;
    assert_eq!(s.checkin(&pending, pending.authenticate()).await.0, StatusCode::OK);
    let token = {
        let (_, t) = s.post("/api/v1/api-tokens", &admin, json!({"name": "inventory audit", "role": "auditor"})).await;
        t["token"].as_str().unwrap().to_owned()
    };
    let (st, all) = s.get("/api/v1/devices", &token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    for key in [
        "udid",
        "serial_number",
        "model",
        "product_name",
        "os_version",
        "platform",
        "enrolled",
        "enrolled_at",
        "last_seen_at",
        "supervised",
        "encrypted",
        "passcode_present",
    ] {
        assert!(all["items"][0].get(key).is_some(), "device JSON lacks {key}");
    }
    let (_, macs) = s.get("/api/v1/devices?platform=macOS", &token).await;
    assert_eq!(macs["items"].as_array().unwrap().len(), 1);
    assert_eq!(macs["items"][0]["udid"], mac.udid.as_str());
    assert_eq!(macs["items"][0]["encrypted"], true, "FileVault on");
    let (_, enrolled) = s.get("/api/v1/devices?enrolled=true", &token).await;
    assert_eq!(enrolled["items"].as_array().unwrap().len(), 2);
    let (_, by_serial) = s.get(&format!("/api/v1/devices?q={}", &ipad.serial[..8].to_lowercase()), &token).await;
    assert_eq!(by_serial["items"][0]["udid"], ipad.udid.as_str());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let (_, stale) = s.get(&format!("/api/v1/devices?last_seen_before={future}"), &token).await;
    assert_eq!(stale["items"].as_array().unwrap().len(), 3);
    let (_, p1) = s.get("/api/v1/devices?limit=2", &token).await;
    let (_, p2) = s.get(&format!("/api/v1/devices?limit=2&cursor={}", p1["next_cursor"].as_str().unwrap()), &token).await;
    assert_eq!(p1["items"].as_array().unwrap().len() + p2["items"].as_array().unwrap().len(), 3);
    let (st, body) = s.get("/api/v1/devices?platform=Android", &token).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("platform")));

    for path in ["/api/v1/devices?format=csv", "/api/v1/devices.csv"] {
        let resp = s.client.get(s.url(path)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let csv = resp.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "one header row and three devices:\n{csv}");
        assert!(lines[0].starts_with("udid,serial_number,"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("udid,")).count(), 1);
        assert!(csv.contains(&mac.serial));
    }
    let (st, _) = s.get("/api/v1/devices/NOSUCH", &token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let technician = s.operator("tech", "technician").await;
    assert_eq!(s.get("/api/v1/devices", &technician).await.0, StatusCode::OK);
    s.stop().await;
}

async fn bootstrap_token_round_trip(b: Backend) {
    let s = TestServer::start(b.clone()).await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let set = |token: &[u8]| {
        let mut d = plist::Dictionary::new();
        d.insert("MessageType".into(), "SetBootstrapToken".into());
        d.insert("UDID".into(), mac.udid.clone().into());
        d.insert("BootstrapToken".into(), plist::Value::Data(token.to_vec()));
        let mut out = Vec::new();
        plist::to_writer_xml(&mut out, &plist::Value::Dictionary(d)).unwrap();
        out
    };
    assert_eq!(s.checkin(&mac, set(b"bootstrap-secret")).await.0, StatusCode::OK);
    let mut get = plist::Dictionary::new();
    get.insert("MessageType".into(), "GetBootstrapToken".into());
    get.insert("UDID".into(), mac.udid.clone().into());
    let mut body = Vec::new();
    plist::to_writer_xml(&mut body, &plist::Value::Dictionary(get)).unwrap();
    let (st, answer) = s.checkin(&mac, body).await;
    assert_eq!(st, StatusCode::OK);
    let v: plist::Dictionary = plist::from_bytes(&answer).unwrap();
    assert_eq!(v["BootstrapToken"].as_data(), Some(&b"bootstrap-secret"[..]));
    // Sealed at rest.
    let stored = s.ctx.store.device(&mac.udid).await.unwrap().unwrap();
    let sealed = stored.bootstrap_token_sealed.unwrap();
    assert!(!sealed.windows(16).any(|w| w == b"bootstrap-secret"));
    // A Mac sends no unlock token (only supervised iPads do: see clear_passcode_...).
    assert!(stored.unlock_token_sealed.is_none());
    // UserAuthenticate is not supported: 410.
    let mut ua = plist::Dictionary::new();
    ua.insert("MessageType".into(), "UserAuthenticate".into());
    ua.insert("UDID".into(), mac.udid.clone().into());
    ua.insert("UserID".into(), "A1B2".into());
    let mut body = Vec::new();
    plist::to_writer_xml(&mut body, &plist::Value::Dictionary(ua)).unwrap();
    assert_eq!(s.checkin(&mac, body).await.0, StatusCode::GONE);
    s.stop().await;
}

/// When Lanyard terminates TLS itself, a device may authenticate with its identity as the TLS
/// client certificate instead of Mdm-Signature; a certificate bound to another device is refused.
#[tokio::test]
async fn tls_client_certificate_authenticates_a_device() {
    let s = TestServer::start_with(Backend::Sqlite, common::Options { tls: true, ..Default::default() }).await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let other = s.enrolled_device(Kind::Mac).await;
    let ca = reqwest::Certificate::from_pem(&s.ctx.pki.ca_pem).unwrap();
    let as_device = |dev: &SimDevice| {
        let identity =
            reqwest::Identity::from_pkcs8_pem(&dev.cert.to_pem().unwrap(), &dev.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        reqwest::Client::builder().add_root_certificate(ca.clone()).identity(identity).build().unwrap()
    };
    let admin = s.admin().await;
    let (_, q) =
        s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "SecurityInfo", "push": false})).await;
    let resp = as_device(&d).put(s.url("/mdm/connect")).body(d.idle()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await.unwrap();
    assert_eq!(SimDevice::read_command(&body).unwrap().0, q["command_uuid"].as_str().unwrap());
    // Another device's certificate claiming this UDID: refused, and never with 401.
    let resp = as_device(&other).put(s.url("/mdm/connect")).body(d.idle()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // No certificate and no signature: 400.
    let resp = s.client.put(s.url("/mdm/connect")).body(d.idle()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

/// `LANYARD_POSTGRES_POOL` caps the server's connections to PostgreSQL: a burst of device and
/// API requests several times larger than the pool waits its turn, and every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_caps_the_servers_connections() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    let Backend::Postgres(url) = b.clone() else { unreachable!() };
    const POOL: i64 = 2;
    let opts = common::Options { env: vec![("LANYARD_POSTGRES_POOL", POOL.to_string())], ..Default::default() };
    let s = TestServer::start_with(b, opts).await;
    let admin = s.admin().await;
    let mut devices = Vec::new();
    for kind in [Kind::SupervisedIpad, Kind::Mac, Kind::UnsupervisedIpad, Kind::SupervisedIpad, Kind::Mac, Kind::SupervisedIpad] {
        devices.push(s.enrolled_device(kind).await);
    }
    let targets: Vec<&str> = devices.iter().map(|d| d.udid.as_str()).collect();
    let (st, body) = s.post("/api/v1/commands", &admin, json!({"targets": targets, "command": {"request_type": "SecurityInfo"}})).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");

    // Count the server's connections from one of our own while the burst runs.
    let mut watcher = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut most = 0i64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                        .fetch_one(&mut watcher)
                        .await
                        .unwrap();
                most = most.max(n);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            most
        })
    };
    let devices: Vec<std::sync::Arc<SimDevice>> = devices.into_iter().map(std::sync::Arc::new).collect();
    let mut burst = tokio::task::JoinSet::new();
    for d in &devices {
        let (d, client, connect) = (d.clone(), s.client.clone(), s.url("/mdm/connect"));
        burst.spawn(async move {
            let put = |body: Vec<u8>| client.put(&connect).header("Mdm-Signature", d.sign(&body)).body(body).send();
            // Idle -> the SecurityInfo -> Acknowledged -> nothing more; then Idles.
            let command = put(d.idle()).await.unwrap().bytes().await.unwrap();
            let (_, request_type, report) = d.answer(&command).expect("the queued command");
            assert_eq!(request_type, "SecurityInfo");
            assert_eq!(put(report).await.unwrap().status(), StatusCode::OK);
            for _ in 0..6 {
                assert_eq!(put(d.idle()).await.unwrap().status(), StatusCode::OK);
            }
        });
    }
    for _ in 0..12 {
        let list = s.client.get(s.url("/api/v1/devices")).bearer_auth(&admin).send();
        burst.spawn(async move { assert_eq!(list.await.unwrap().status(), StatusCode::OK) });
    }
    while let Some(r) = burst.join_next().await {
        r.expect("every request in the burst is answered");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watching.await.unwrap();
    assert!((1..=POOL).contains(&most), "the server held {most} connections to PostgreSQL with LANYARD_POSTGRES_POOL={POOL}");
    s.stop().await;
}

/// Issue 16, defect 1: ClearPasscode carries the unlock token the device gave at TokenUpdate,
/// filled in by Lanyard for each target; a device that gave none (not supervised) is refused
/// before anything is queued; the token never shows in a response, the audit log or the
/// command's stored fields.
async fn clear_passcode_uses_each_devices_own_unlock_token(b: Backend) {
    use base64::Engine as _;
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let a = s.enrolled_device(Kind::SupervisedIpad).await;
    let b2 = s.enrolled_device(Kind::SupervisedIpad).await;
    let loose = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let token_of = |d: &SimDevice| d.unlock_token().expect("a supervised iPad sends an unlock token");
    let b64 = |t: &[u8]| base64::engine::general_purpose::STANDARD.encode(t);
    let secrets = [b64(&token_of(&a)), b64(&token_of(&b2)), String::from_utf8_lossy(&token_of(&a)).into_owned()];
    let leaks = |what: &str, text: &str| {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{what} shows the unlock token: {text}");
        }
    };
    // Sealed at rest.
    let stored = s.ctx.store.device(&a.udid).await.unwrap().unwrap().unlock_token_sealed.expect("kept from TokenUpdate");
    assert!(!stored.windows(16).any(|w| w == b"sim-unlock-token"));
    assert!(s.ctx.store.device(&loose.udid).await.unwrap().unwrap().unlock_token_sealed.is_none());
    let delivered_token = |plist: &[u8]| {
        let (_, rt, cmd) = SimDevice::read_command(plist).expect("a command");
        assert_eq!(rt, "ClearPasscode");
        cmd.get("UnlockToken").and_then(|v| v.as_data()).map(|d| d.to_vec())
    };

    // One device: no UnlockToken in the request; the device gets its own.
    let (st, q) = s.post(&format!("/api/v1/devices/{}/commands", a.udid), &admin, json!({"request_type": "ClearPasscode"})).await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    leaks("the enqueue response", &q.to_string());
    let uuid = q["command_uuid"].as_str().unwrap().to_owned();
    let (_, next) = s.connect(&a, a.idle()).await;
    assert_eq!(delivered_token(&next), Some(token_of(&a)));
    let (_, _, report) = a.answer(&next).unwrap();
    assert!(s.connect(&a, report).await.1.is_empty());
    let (st, status) = s.get(&format!("/api/v1/commands/{uuid}"), &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(status["targets"][0]["status"], "acknowledged", "{status}");
    assert!(status["fields"].get("UnlockToken").is_none(), "{status}");
    leaks("the command's status", &status.to_string());
    let (_, history) = s.get(&format!("/api/v1/devices/{}/commands", a.udid), &admin).await;
    leaks("the device's commands", &history.to_string());

    // Many devices: one request, each device's command carries its own token.
    let (st, bulk) =
        s.post("/api/v1/commands", &admin, json!({"targets": [a.udid, b2.udid], "command": {"request_type": "ClearPasscode"}})).await;
    assert_eq!(st, StatusCode::CREATED, "{bulk}");
    assert_eq!((bulk["request_type"].as_str(), bulk["targets"].as_u64()), (Some("ClearPasscode"), Some(2)), "{bulk}");
    leaks("the bulk response", &bulk.to_string());
    for d in [&a, &b2] {
        let (_, next) = s.connect(d, d.idle()).await;
        assert_eq!(delivered_token(&next), Some(token_of(d)), "{}", d.udid);
        let (_, _, report) = d.answer(&next).unwrap();
        s.connect(d, report).await;
    }

    // Not supervised: no unlock token, so refused before anything is queued, alone or in bulk.
    let (st, e) = s.post(&format!("/api/v1/devices/{}/commands", loose.udid), &admin, json!({"request_type": "ClearPasscode"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "no_unlock_token", "{e}");
    assert!(e["error"].as_str().unwrap().contains("supervised"), "says why: {e}");
    let (st, e) =
        s.post("/api/v1/commands", &admin, json!({"targets": [a.udid, loose.udid], "command": {"request_type": "ClearPasscode"}})).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "no_unlock_token", "{e}");
    assert_eq!(e["udids"], json!([loose.udid]), "{e}");
    assert!(s.connect(&a, a.idle()).await.1.is_empty(), "nothing queued for the supervised device either");
    assert!(s.connect(&loose, loose.idle()).await.1.is_empty());

    // The audit log names the command but never the token.
    let (st, audit) = s.get("/api/v1/audit?action=command.enqueue", &admin).await;
    assert_eq!(st, StatusCode::OK, "{audit}");
    assert!(audit.to_string().contains("ClearPasscode"), "{audit}");
    leaks("the audit log", &audit.to_string());
    s.stop().await;
}

/// The request types a device has been sent or has waiting, from its command history.
async fn queued_types(s: &TestServer, token: &str, udid: &str) -> Vec<String> {
    let (st, page) = s.get(&format!("/api/v1/devices/{udid}/commands?limit=1000"), token).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().iter().map(|c| c["request_type"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Issue 16: a command Apple's schema says needs supervision is refused for an unsupervised
/// device before it is queued (422 `needs_supervision`, naming the devices), on every face;
/// a bulk request is refused whole; a device whose supervision is not known yet is not
/// refused; the legal hold still refuses first.
async fn commands_that_need_supervision_are_refused_before_queueing(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let dsl = s.operator("dsl", "dsl").await;
    let supervised = s.enrolled_device(Kind::SupervisedIpad).await;
    let loose = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let mac = s.enrolled_device(Kind::Mac).await;
    // Enrolled, but its DeviceInformation not answered yet: supervision unknown.
    let fresh = s.new_device(Kind::UnsupervisedIpad).await;
    assert_eq!(s.checkin(&fresh, fresh.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&fresh, fresh.token_update()).await.0, StatusCode::OK);
    let (_, d) = s.get(&format!("/api/v1/devices/{}", loose.udid), &admin).await;
    assert_eq!(d["supervised"], false, "{d}");
    let (_, d) = s.get(&format!("/api/v1/devices/{}", fresh.udid), &admin).await;
    assert!(d["supervised"].is_null(), "{d}");

    // RestartDevice needs supervision on iOS/iPadOS (not on macOS).
    let restart = json!({"request_type": "RestartDevice"});
    let (st, e) = s.post(&format!("/api/v1/devices/{}/commands", loose.udid), &admin, restart.clone()).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "needs_supervision", "{e}");
    assert_eq!(e["request_type"], "RestartDevice", "{e}");
    assert_eq!(e["devices"], json!([loose.udid]), "{e}");
    assert!(e["error"].as_str().unwrap().contains("supervis"), "{e}");
    assert!(!queued_types(&s, &admin, &loose.udid).await.contains(&"RestartDevice".to_owned()), "nothing was queued");
    for ok in [&supervised, &mac, &fresh] {
        let (st, r) = s.post(&format!("/api/v1/devices/{}/commands", ok.udid), &admin, restart.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "{}: {r}", ok.udid);
    }

    // A Settings item that needs supervision (DeviceName on iOS) is refused likewise.
    let rename = json!({"request_type": "Settings", "Settings": [{"Item": "DeviceName", "DeviceName": "Year 3 iPad 7"}]});
    let (st, e) = s.post(&format!("/api/v1/devices/{}/commands", loose.udid), &admin, rename.clone()).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "needs_supervision", "{e}");
    assert!(e["error"].as_str().unwrap().contains("DeviceName"), "{e}");
    let (st, r) = s.post(&format!("/api/v1/devices/{}/commands", supervised.udid), &admin, rename).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    // Commands that do not need supervision still go to any device.
    let (st, r) = s.post(&format!("/api/v1/devices/{}/commands", loose.udid), &admin, json!({"request_type": "DeviceLock"})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");

    // Bulk: the whole request is refused, naming the unsupervised targets only; nothing queued.
    let before = queued_types(&s, &admin, &supervised.udid).await.len();
    let targets = json!([supervised.udid, loose.udid, mac.udid, fresh.udid]);
    let (st, e) = s.post("/api/v1/commands", &admin, json!({"targets": targets, "command": {"request_type": "ShutDownDevice"}})).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "needs_supervision", "{e}");
    assert_eq!(e["devices"], json!([loose.udid]), "{e}");
    assert_eq!(queued_types(&s, &admin, &supervised.udid).await.len(), before, "nothing queued for the others either");
    let (_, audit) = s.get("/api/v1/audit?action=command.enqueue", &admin).await;
    assert!(
        audit["items"].as_array().unwrap().iter().all(|a| !a.to_string().contains("ShutDownDevice")),
        "a refused command is not recorded as queued: {audit}"
    );

    // The legal hold refuses first: DisableLostMode to a held, unsupervised iPad is 409.
    let (st, case) = s
        .post(
            "/api/v1/cases",
            &dsl,
            json!({"kind": "iioc", "summary": "Concern raised", "justification": "Reported under the IIOC procedure"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{case}");
    let (st, q) = s
        .post(
            &format!("/api/v1/cases/{}/devices", case["id"].as_str().unwrap()),
            &dsl,
            json!({"udid": loose.udid, "justification": "Device may hold evidence: quarantine until police advice"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    let (st, e) = s.post(&format!("/api/v1/devices/{}/commands", loose.udid), &admin, json!({"request_type": "DisableLostMode"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold", "{e}");

    // The OpenAPI document says so.
    let (_, doc) = s.get("/api/v1/openapi.json", &admin).await;
    for path in ["/api/v1/devices/{udid}/commands", "/api/v1/commands"] {
        assert_eq!(doc["paths"][path]["post"]["responses"]["422"]["$ref"], "#/components/responses/CommandUnprocessable", "{path}");
    }
    let err = &doc["components"]["schemas"]["NeedsSupervisionError"]["allOf"][1]["properties"];
    assert_eq!(err["code"]["enum"], json!(["needs_supervision"]));
    assert!(err["devices"].is_object(), "{err}");
    s.stop().await;
}
