//! The device face attacked as an outsider and a rogue device would (issue 23): hostile plists
//! before and after authentication, another device's UDID, a replayed Authenticate, a foreign
//! push topic, an older TokenUpdate or CheckOut replayed, and an operator cancelling a quarantine's lock — on SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::{Backend, TestServer, assert_error};
use lanyard_bench::sim::{Kind, SimDevice};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    hostile_plists_are_refused_and_the_server_keeps_serving,
    another_identity_cannot_take_over_an_enrolled_device,
    a_quarantined_device_cannot_be_taken_over_or_its_lock_cancelled,
    a_replayed_authenticate_changes_nothing,
    a_foreign_push_topic_is_refused,
    an_older_signed_token_update_or_check_out_is_refused,
    over_long_reported_strings_are_cut_and_over_long_udids_refused,
);

/// A check-in-shaped XML plist with `levels` of `open` inside its root dictionary.
fn nested_xml(open: &str, close: &str, levels: usize) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>Status</key><string>Idle</string><key>UDID</key><string>X</string><key>k</key>",
    );
    s.push_str(&open.repeat(levels));
    s.push_str(&close.repeat(levels));
    s.push_str("</dict></plist>");
    s.into_bytes()
}

use lanyard::protocol::hostile::chained_bplist;

async fn audit_actions(s: &TestServer, action: &str) -> Vec<Value> {
    let admin = s.admin().await;
    let (st, page) = s.get(&format!("/api/v1/audit?action={action}&limit=100"), &admin).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn queue(s: &TestServer, tok: &str, udid: &str, body: Value) -> String {
    let (st, q) = s.post(&format!("/api/v1/devices/{udid}/commands"), tok, body).await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    q["command_uuid"].as_str().unwrap().to_owned()
}

/// The request type of the next command the device is given, if any.
async fn next_request_type(s: &TestServer, d: &SimDevice) -> Option<String> {
    let (st, next) = s.connect(d, d.idle()).await;
    assert_eq!(st, StatusCode::OK);
    (!next.is_empty()).then(|| SimDevice::read_command(&next).unwrap().1)
}

/// A device with its own fresh identity from our CA that claims to be `victim`.
async fn impostor(s: &TestServer, victim: &SimDevice, same_serial: bool) -> SimDevice {
    let mut d = s.new_device(Kind::SupervisedIpad).await;
    d.udid = victim.udid.clone();
    if same_serial {
        d.serial = victim.serial.clone();
    }
    d
}

async fn hostile_plists_are_refused_and_the_server_keeps_serving(b: Backend) {
    let s = TestServer::start(b).await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    // The bodies that aborted the whole server: ~490 KB of <array>, 40,000 dicts, a 50,000-level
    // binary plist — all under the connect body limit.
    let hostile =
        [nested_xml("<array>", "</array>", 32_500), nested_xml("<dict><key>a</key>", "</dict>", 40_000), chained_bplist(50_000, 1)];
    for body in &hostile {
        // Unsigned: refused before the body is read as a plist.
        let (st, msg) = s.device_request("/mdm/connect", body.clone(), None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&msg));
        assert!(String::from_utf8_lossy(&msg).contains("Mdm-Signature"), "{}", String::from_utf8_lossy(&msg));
        // Signed by a real enrolled device: the parser refuses the nesting.
        let (st, msg) = s.connect(&d, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&msg));
        assert!(String::from_utf8_lossy(&msg).contains("nested more than 64 deep"), "{}", String::from_utf8_lossy(&msg));
    }
    // The check-in endpoint reads the same way (its body limit is smaller).
    let (st, msg) = s.checkin(&d, nested_xml("<array>", "</array>", 4_000)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&msg));
    // Still serving, and the device's enrolment is untouched.
    assert_eq!(s.connect(&d, d.idle()).await.0, StatusCode::OK);
    let admin = s.admin().await;
    let (st, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!((st, dev["enrolled"].as_bool()), (StatusCode::OK, Some(true)), "{dev}");
    s.stop().await;
}

async fn another_identity_cannot_take_over_an_enrolled_device(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let victim = s.enrolled_device(Kind::SupervisedIpad).await;
    queue(&s, &admin, &victim.udid, json!({"request_type": "DeviceLock", "Message": "Return to the office"})).await;

    // A device enrolled normally names the victim's UDID, with a made-up serial or the real one.
    for same_serial in [false, true] {
        let rogue = impostor(&s, &victim, same_serial).await;
        let (st, msg) = s.checkin(&rogue, rogue.authenticate()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&msg));
        // Nor can it go on as if it had.
        assert_eq!(s.checkin(&rogue, rogue.token_update()).await.0, StatusCode::FORBIDDEN);
        assert_eq!(s.connect(&rogue, rogue.idle()).await.0, StatusCode::FORBIDDEN);
    }
    let refused = audit_actions(&s, "device.takeover_refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["target"], victim.udid.as_str());

    // The real iPad still gets its lock, and is still enrolled.
    assert_eq!(next_request_type(&s, &victim).await.as_deref(), Some("DeviceLock"));
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", victim.udid), &admin).await;
    assert_eq!(dev["enrolled"], true);

    // A genuine re-enrolment: the iPad's MDM profile is removed (CheckOut), then it enrols
    // again with a new identity, same serial number: allowed and audited.
    assert_eq!(s.checkin(&victim, victim.check_out()).await.0, StatusCode::OK);
    let again = impostor(&s, &victim, true).await;
    assert_eq!(s.checkin(&again, again.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&again, again.token_update()).await.0, StatusCode::OK);
    assert_eq!(s.connect(&again, again.idle()).await.0, StatusCode::OK);
    let reenrolled = audit_actions(&s, "device.reenrol").await;
    assert_eq!(reenrolled.len(), 1, "{reenrolled:?}");
    // The old identity is finished with.
    assert_eq!(s.connect(&victim, victim.idle()).await.0, StatusCode::FORBIDDEN);

    // Even after CheckOut, a different serial number is not the same device.
    assert_eq!(s.checkin(&again, again.check_out()).await.0, StatusCode::OK);
    let other = impostor(&s, &victim, false).await;
    assert_eq!(s.checkin(&other, other.authenticate()).await.0, StatusCode::FORBIDDEN);

    // Retired by an operator, the record is gone and the UDID enrols as new.
    assert_eq!(s.call(Method::DELETE, &format!("/api/v1/devices/{}", victim.udid), Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.checkin(&other, other.authenticate()).await.0, StatusCode::OK);
    s.stop().await;
}

async fn a_quarantined_device_cannot_be_taken_over_or_its_lock_cancelled(b: Backend) {
    let s = TestServer::start(b).await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let tech = s.operator("tess", "technician").await;
    let admin = s.admin().await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let (st, case) = s
        .post("/api/v1/cases", &dsl, json!({"kind": "iioc", "summary": "Concern raised", "justification": "IIOC procedure, section 11"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{case}");
    let case_id = case["id"].as_str().unwrap().to_owned();
    let (st, q) = s
        .post(
            &format!("/api/v1/cases/{case_id}/devices"),
            &dsl,
            json!({"udid": ipad.udid, "justification": "Quarantine until police advice", "phone_number": "01234 567890"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    let lock = q["commands"][0]["command_uuid"].as_str().unwrap().to_owned();
    assert_eq!(q["commands"][0]["request_type"], "EnableLostMode");

    // D7: nobody may cancel the pending lock, whatever their role (a DSL cannot cancel
    // commands at all).
    for tok in [&tech, &admin] {
        let (st, body) = s.call(Method::DELETE, &format!("/api/v1/commands/{lock}"), Some(tok), None).await;
        assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "legal_hold");
    }
    // D3: a rogue enrolment naming the held iPad (even with its serial) is refused and put on the case.
    let rogue = impostor(&s, &ipad, true).await;
    assert_eq!(s.checkin(&rogue, rogue.authenticate()).await.0, StatusCode::FORBIDDEN);
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let refusals: Vec<&Value> = log["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "refused").collect();
    assert_eq!(refusals.len(), 3, "two cancellations and one enrolment: {log}");

    // The iPad is still locked as the quarantine asked.
    assert_eq!(next_request_type(&s, &ipad).await.as_deref(), Some("EnableLostMode"));
    s.stop().await;
}

async fn a_replayed_authenticate_changes_nothing(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let uuid = queue(&s, &admin, &d.udid, json!({"request_type": "DeviceLock", "Message": "Return to the office"})).await;
    // The device's own Authenticate, sent again (a replay, or a retry) with its bound identity.
    assert_eq!(s.checkin(&d, d.authenticate()).await.0, StatusCode::OK);
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["enrolled"], true, "{dev}");
    let (_, view) = s.get(&format!("/api/v1/commands/{uuid}"), &admin).await;
    assert_eq!(view["targets"][0]["status"], "queued", "{view}");
    assert_eq!(next_request_type(&s, &d).await.as_deref(), Some("DeviceLock"));
    s.stop().await;
}

async fn a_foreign_push_topic_is_refused(b: Backend) {
    let s = TestServer::start(b).await;
    s.load_push_cert().await;
    let mut d = s.new_device(Kind::SupervisedIpad).await;
    assert_eq!(s.checkin(&d, d.authenticate()).await.0, StatusCode::OK);
    d.topic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000".into();
    let (st, msg) = s.checkin(&d, d.token_update()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("push topic"));
    let fresh = s.new_device(Kind::SupervisedIpad).await;
    let mut foreign = fresh;
    foreign.topic = d.topic.clone();
    assert_eq!(s.checkin(&foreign, foreign.authenticate()).await.0, StatusCode::BAD_REQUEST);
    // With the right topic the enrolment completes.
    d.topic = common::device::TOPIC.into();
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);

    // A certificate for another topic, loaded on purpose: from that moment the old topic is
    // foreign here (the topic the check-ins compare with is never read from before the load).
    let other = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555";
    let (cert, key, _, _) = lanyard_mocks::test_push_certificate(other, 365);
    let (st, body) = s.upload_push_cert(&cert, &key, "?force=true").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, msg) = s.checkin(&d, d.token_update()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains(other), "{}", String::from_utf8_lossy(&msg));
    d.topic = other.into();
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);
    s.stop().await;
}

async fn an_older_signed_token_update_or_check_out_is_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let mut d = s.enrolled_device(Kind::SupervisedIpad).await;
    // What an eavesdropper behind a TLS-terminating proxy keeps: the device's signed messages.
    let (old_token_update, old_check_out) = (d.token_update(), d.check_out());
    let (old_tu_sig, old_co_sig) = (d.sign(&old_token_update), d.sign(&old_check_out));
    // CMS signing times have one-second resolution.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    d.push_token = b"a-newer-push-token-from-apns".to_vec();
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);

    for (body, sig) in [(old_token_update, old_tu_sig), (old_check_out, old_co_sig)] {
        let (st, msg) = s.device_request("/mdm/checkin", body, Some(sig)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&msg));
        assert!(String::from_utf8_lossy(&msg).contains("replayed"), "{}", String::from_utf8_lossy(&msg));
    }
    let rec = s.ctx.store.device(&d.udid).await.unwrap().unwrap();
    assert_eq!(rec.push_token.as_deref(), Some(&b"a-newer-push-token-from-apns"[..]), "the old push token was not put back");
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["enrolled"], true, "a replayed CheckOut did not unenrol it: {dev}");
    // The device's own messages, signed now, still work.
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);
    s.stop().await;
}

/// `body` (an XML plist dictionary) with `key` set to `value`.
fn with_key(body: &[u8], key: &str, value: plist::Value) -> Vec<u8> {
    let mut d: plist::Dictionary = plist::from_bytes(body).unwrap();
    d.insert(key.into(), value);
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &d).unwrap();
    out
}

async fn over_long_reported_strings_are_cut_and_over_long_udids_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let d = s.new_device(Kind::Mac).await;
    // Check-in bodies stop at 64 KiB; command reports (below) at 4 MiB.
    let body = with_key(&d.authenticate(), "DeviceName", "N".repeat(60_000).into());
    assert_eq!(s.checkin(&d, body).await.0, StatusCode::OK);
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["device_name"].as_str().map(str::len), Some(255), "the name is cut to 255 characters");

    // A DeviceInformation answer is cut the same way.
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);
    let uuid = queue(&s, &admin, &d.udid, json!({"request_type": "DeviceInformation", "Queries": ["DeviceName", "SerialNumber"]})).await;
    let mut answers = plist::Dictionary::new();
    answers.insert("DeviceName".into(), "é".repeat(1_900_000).into());
    answers.insert("SerialNumber".into(), d.serial.clone().into());
    loop {
        let (st, cmd) = s.connect(&d, d.idle()).await;
        assert_eq!(st, StatusCode::OK);
        let cmd: plist::Dictionary = plist::from_bytes(&cmd).expect("a command is queued");
        let this = cmd["CommandUUID"].as_string().unwrap().to_owned();
        let mut extra = plist::Dictionary::new();
        if this == uuid {
            extra.insert("QueryResponses".into(), plist::Value::Dictionary(answers.clone()));
        }
        s.connect(&d, d.report("Acknowledged", &this, extra)).await;
        if this == uuid {
            break;
        }
    }
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["device_name"].as_str().map(|n| n.chars().count()), Some(255), "{}", &dev["device_name"].to_string()[..80]);
    assert_eq!(dev["serial_number"], d.serial.as_str());

    // A UDID no device has is refused before anything is stored.
    let mut e = s.new_device(Kind::SupervisedIpad).await;
    e.udid = "U".repeat(10_000);
    let (st, msg) = s.checkin(&e, e.authenticate()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("UDID"), "{}", String::from_utf8_lossy(&msg));
    s.stop().await;
}
