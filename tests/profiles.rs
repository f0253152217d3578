//! Profiles for schools, end to end against simulated devices: the baseline library, uploads
//! and versions, signed sending (checked with openssl), groups and reconcile, legal hold,
//! filtering change control, lesson-time schedules on a fake clock, FileVault escrow, and the
//! compliance report — each on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use common::{Backend, Options, TestServer, assert_error};
use lanyard::store::{CaseDeviceRecord, CaseRecord, NewAuditEntry};
use lanyard_bench::sim::{Kind, SIM_ENROLLMENT_PROFILE, SimDevice};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    baseline_library_uploads_and_versions,
    sent_profiles_are_signed_and_verify_with_openssl,
    reconcile_installs_and_removes_only_lanyards_profiles,
    smart_groups_follow_the_device_and_the_register,
    legal_hold_keeps_profiles_on_the_device,
    filtering_changes_need_a_second_person,
    lesson_time_profiles_follow_the_timetable,
    filevault_key_is_escrowed_and_revealed_with_justification,
    compliance_report_json_and_csv,
    supervision_is_told_plainly,
);

const BASELINE: [&str; 8] = [
    "ks1-web-allowlist",
    "ks2-web-filtered",
    "mac-filevault",
    "passcode-pupil",
    "passcode-staff",
    "pupil-camera-off",
    "pupil-ipad-restrictions",
    "staff-web",
];

// ---- helpers ----

/// `../shared/tools/validate_plist.py`, found above the crate.
fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/tools/validate_plist.py"))
        .find(|p| p.is_file())
        .expect("shared/tools/validate_plist.py above the crate")
}

fn validate(bytes: &[u8], os: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.mobileconfig");
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new("python3").arg(validator()).args(["--os", os, "profile"]).arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

async fn raw(s: &TestServer, token: &str, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp =
        s.client.request(method, s.url(path)).bearer_auth(token).header("content-type", content_type).body(body).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

async fn get_bytes(s: &TestServer, token: &str, path: &str) -> (StatusCode, String, Vec<u8>) {
    let resp = s.client.get(s.url(path)).bearer_auth(token).send().await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

async fn profile(s: &TestServer, token: &str, name: &str) -> Value {
    let (st, page) = s.get(&format!("/api/v1/profiles?name={name}"), token).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{name}: {page}");
    page["items"][0].clone()
}

async fn profile_id(s: &TestServer, token: &str, name: &str) -> String {
    profile(s, token, name).await["id"].as_str().unwrap().to_owned()
}

async fn identifier(s: &TestServer, token: &str, name: &str) -> String {
    profile(s, token, name).await["identifier"].as_str().unwrap().to_owned()
}

async fn static_group(s: &TestServer, token: &str, name: &str, members: &[&SimDevice]) -> String {
    let (st, g) = s.post("/api/v1/groups", token, json!({"name": name, "kind": "static"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let id = g["id"].as_str().unwrap().to_owned();
    if !members.is_empty() {
        let udids: Vec<&str> = members.iter().map(|d| d.udid.as_str()).collect();
        let (st, r) = s.post(&format!("/api/v1/groups/{id}/members"), token, json!({"udids": udids})).await;
        assert_eq!(st, StatusCode::OK, "{r}");
    }
    id
}

async fn assign(s: &TestServer, token: &str, group: &str, profile: &str) -> (StatusCode, Value) {
    s.post(&format!("/api/v1/groups/{group}/profiles"), token, json!({"profile_id": profile})).await
}

async fn delete(s: &TestServer, token: &str, path: &str) -> (StatusCode, Value) {
    s.call(Method::DELETE, path, Some(token), None).await
}

/// A device that reports `encrypted` in SecurityInfo, enrolled and drained.
async fn enrol(s: &TestServer, kind: Kind, encrypted: bool) -> SimDevice {
    let mut d = s.new_device(kind).await;
    d.encrypted = encrypted;
    assert_eq!(s.checkin(&d, d.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&d, d.token_update()).await.0, StatusCode::OK);
    s.drain(&d).await;
    d
}

/// Open a safeguarding case holding `udid` (what the safeguarding API will do).
async fn put_on_hold(s: &TestServer, udid: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    let now = s.ctx.now();
    s.ctx
        .store
        .create_case(
            &CaseRecord {
                id,
                number: 0,
                kind: "indecent_image".into(),
                state: "open".into(),
                summary: "test case".into(),
                justification: "test".into(),
                people: "[]".into(),
                refs: "{}".into(),
                involves_staff: false,
                opened_by: "operator:dsl".into(),
                opened_at: now,
                closed_by: None,
                closed_at: None,
            },
            audit(s, "case.open", &id.to_string()),
        )
        .await
        .unwrap();
    s.ctx
        .store
        .put_case_device(
            &CaseDeviceRecord {
                case_id: id,
                udid: udid.to_owned(),
                state: "held".into(),
                method: "lost_mode".into(),
                lock_pin_sealed: None,
                suspended_grants: "[]".into(),
                added_by: "operator:dsl".into(),
                added_at: now,
                released_at: None,
            },
            audit(s, "case.device.add", udid),
        )
        .await
        .unwrap();
    id
}

/// The audit entry a test writes with a record it puts straight into the store.
fn audit(s: &TestServer, action: &str, target: &str) -> NewAuditEntry {
    NewAuditEntry {
        at: s.ctx.now(),
        actor: "operator:dsl".into(),
        ip: None,
        action: action.into(),
        target: Some(target.into()),
        details: "{}".into(),
    }
}

/// The identifiers Lanyard asked a device to remove, from its command history.
async fn removals_sent(s: &TestServer, token: &str, udid: &str) -> Vec<String> {
    let (_, page) = s.get(&format!("/api/v1/devices/{udid}/commands?limit=1000"), token).await;
    let mut out = Vec::new();
    for c in page["items"].as_array().unwrap().iter().filter(|c| c["request_type"] == "RemoveProfile") {
        let (_, cmd) = s.get(&format!("/api/v1/commands/{}", c["command_uuid"].as_str().unwrap()), token).await;
        out.push(cmd["fields"]["Identifier"].as_str().unwrap().to_owned());
    }
    out
}

/// The ks2 filter with `site` added to its deny-list, as XML.
fn with_denied(xml: &[u8], site: &str) -> Vec<u8> {
    let mut v: plist::Value = plist::from_bytes(xml).unwrap();
    let payload = v.as_dictionary_mut().unwrap().get_mut("PayloadContent").unwrap().as_array_mut().unwrap()[0].as_dictionary_mut().unwrap();
    payload.get_mut("DenyListURLs").unwrap().as_array_mut().unwrap().push(site.into());
    let mut out = Vec::new();
    v.to_writer_xml(&mut out).unwrap();
    out
}

// ---- the library ----

async fn baseline_library_uploads_and_versions(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    let auditor = s.operator("gov", "auditor").await;

    // The baseline is loaded at first start, by file stem, and each one validates as served.
    let (st, page) = s.get("/api/v1/profiles", &auditor).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, BASELINE);
    for p in page["items"].as_array().unwrap() {
        assert_eq!(p["baseline"], true);
        assert_eq!(p["version"], 1);
        let (st, ct, xml) = get_bytes(&s, &auditor, &format!("/api/v1/profiles/{}/mobileconfig", p["id"].as_str().unwrap())).await;
        assert_eq!((st, ct.as_str()), (StatusCode::OK, "application/x-apple-aspen-config"));
        let os = if p["name"] == "mac-filevault" { "macOS" } else { "iOS" };
        if let Err(out) = validate(&xml, os) {
            panic!("{} as served fails validate_plist.py:\n{out}", p["name"]);
        }
    }
    let ks2 = profile(&s, &tech, "ks2-web-filtered").await;
    assert_eq!(ks2["filtering"]["mode"], "auto_filter");
    assert!(ks2["filtering"]["denied"].as_array().unwrap().iter().any(|d| d == "tiktok.com"));
    assert_eq!(profile(&s, &tech, "pupil-camera-off").await["filtering"], Value::Null);
    // Loading again (a restart) adds nothing.
    assert_eq!(s.ctx.profiles.load_baseline_profiles().await.unwrap(), 0);

    // Upload a raw .mobileconfig.
    let airdrop = common::AIRDROP_PROFILE.as_bytes();
    let (st, p) =
        raw(&s, &tech, Method::POST, "/api/v1/profiles?name=airdrop-off", "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!((p["name"].as_str(), p["version"].as_i64()), (Some("airdrop-off"), Some(1)));
    assert_eq!(p["payload_types"], json!(["com.apple.applicationaccess"]));
    assert_eq!(p["filtering"], Value::Null);
    let id = p["id"].as_str().unwrap().to_owned();

    // JSON with base64, of a profile already signed (verified and unwrapped).
    let signed = s.ctx.profiles.signed_for_devices(&airdrop.to_vec().replace_id()).unwrap();
    let (st, p2) = s.post("/api/v1/profiles", &tech, json!({"name": "signed-upload", "mobileconfig_base64": B64.encode(&signed)})).await;
    assert_eq!(st, StatusCode::CREATED, "{p2}");
    assert_eq!(p2["identifier"], "uk.sch.test.other");

    // Built from JSON.
    let spec = json!({"name": "built-camera", "display_name": "Camera off (built)",
                      "payloads": [{"type": "com.apple.applicationaccess", "allowCamera": false}]});
    let (st, p3) = s.post("/api/v1/profiles", &tech, spec).await;
    assert_eq!(st, StatusCode::CREATED, "{p3}");
    assert_eq!(p3["identifier"], "uk.sch.lanyard.profile.built-camera");

    // Refusals name the payload and the key; names and identifiers are unique.
    let broken = common::airdrop_profile_broken();
    let (st, e) = raw(&s, &tech, Method::POST, "/api/v1/profiles?name=broken", "application/octet-stream", broken.into_bytes()).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "invalid_field");
    assert_eq!(e["field"], "mobileconfig");
    assert!(e["error"].as_str().unwrap().contains("payload 1 (com.apple.applicationaccess): missing PayloadUUID"), "{e}");
    let (st, e) =
        raw(&s, &tech, Method::POST, "/api/v1/profiles?name=airdrop-off", "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "profile_name_taken");
    let (st, e) = raw(&s, &tech, Method::POST, "/api/v1/profiles?name=copy", "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "identifier_taken");
    let (st, e) = raw(&s, &tech, Method::POST, "/api/v1/profiles", "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")));
    let (st, _) = raw(&s, &tech, Method::POST, "/api/v1/profiles?name=x", "text/plain", b"hello".to_vec()).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (st, _) = raw(&s, &auditor, Method::POST, "/api/v1/profiles?name=nope", "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Every change is a new version; old versions stay readable.
    let v2 = String::from_utf8(airdrop.to_vec()).unwrap().replace("<false/>", "<true/>");
    let (st, up) =
        raw(&s, &tech, Method::PUT, &format!("/api/v1/profiles/{id}"), "application/x-apple-aspen-config", v2.into_bytes()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    assert_eq!(up["version"], 2);
    let (st, e) =
        raw(&s, &tech, Method::PUT, &format!("/api/v1/profiles/{id}"), "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!(st, StatusCode::OK, "going back is a change too: {e}");
    assert_eq!(e["version"], 3);
    let (st, e) =
        raw(&s, &tech, Method::PUT, &format!("/api/v1/profiles/{id}"), "application/x-apple-aspen-config", airdrop.to_vec()).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "no_change");
    let (_, detail) = s.get(&format!("/api/v1/profiles/{id}"), &auditor).await;
    assert_eq!(detail["versions"].as_array().unwrap().len(), 3, "{detail}");
    let (_, _, old) = get_bytes(&s, &auditor, &format!("/api/v1/profiles/{id}/mobileconfig?version=2")).await;
    assert!(String::from_utf8(old).unwrap().contains("<true/>"));
    let (st, _, _) = get_bytes(&s, &auditor, &format!("/api/v1/profiles/{id}/mobileconfig?version=9")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Deleting keeps the history.
    assert_eq!(delete(&s, &tech, &format!("/api/v1/profiles/{id}")).await.0, StatusCode::NO_CONTENT);
    let (_, page) = s.get("/api/v1/profiles?name=airdrop-off", &tech).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    let (st, detail) = s.get(&format!("/api/v1/profiles/{id}"), &tech).await;
    assert_eq!(st, StatusCode::OK);
    assert!(detail["deleted_at"].is_string(), "{detail}");
    assert_eq!(s.ctx.profiles.load_baseline_profiles().await.unwrap(), 0);

    let (_, audit) = s.get("/api/v1/audit?action=profile.", &admin).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "profile.create").count(), 3, "{actions:?}");
    assert!(actions.contains(&"profile.update") && actions.contains(&"profile.delete"), "{actions:?}");
    s.stop().await;
}

/// Give the test upload a different identifier and UUIDs than the raw one.
trait ReplaceId {
    fn replace_id(self) -> Vec<u8>;
}

impl ReplaceId for Vec<u8> {
    fn replace_id(self) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replace("uk.sch.test.restrictions", "uk.sch.test.other")
            .replace("000000000001", "000000000011")
            .replace("000000000002", "000000000012")
            .into_bytes()
    }
}

async fn sent_profiles_are_signed_and_verify_with_openssl(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let g = static_group(&s, &admin, "Signed", &[&ipad, &mac]).await;
    assert_eq!(assign(&s, &admin, &g, &profile_id(&s, &admin, "pupil-camera-off").await).await.0, StatusCode::CREATED);
    assert_eq!(assign(&s, &admin, &g, &profile_id(&s, &admin, "mac-filevault").await).await.0, StatusCode::CREATED);
    s.drain(&ipad).await;
    s.drain(&mac).await;

    let ca = s.dir.path().join("data/ca.pem");
    let escrow_der = s.ctx.pki.escrow_cert.to_der().unwrap();
    for d in [&ipad, &mac] {
        let payloads = d.install_payloads();
        assert_eq!(payloads.len(), 2, "both profiles were sent");
        for (i, der) in payloads.iter().enumerate() {
            assert_eq!(der[0], 0x30, "CMS signed data (DER)");
            let dir = tempfile::tempdir().unwrap();
            let (input, out) = (dir.path().join("payload.der"), dir.path().join("content.xml"));
            std::fs::write(&input, der).unwrap();
            let verify = std::process::Command::new("openssl")
                .args(["smime", "-verify", "-inform", "DER", "-in"])
                .arg(&input)
                .arg("-CAfile")
                .arg(&ca)
                .arg("-out")
                .arg(&out)
                .output()
                .unwrap();
            assert!(verify.status.success(), "openssl smime -verify: {}", String::from_utf8_lossy(&verify.stderr));
            assert!(String::from_utf8_lossy(&verify.stderr).contains("Verification successful"));
            let content = std::fs::read(&out).unwrap();
            let v: plist::Value = plist::from_bytes(&content).unwrap();
            let id = v.as_dictionary().unwrap().get("PayloadIdentifier").unwrap().as_string().unwrap().to_owned();
            assert!(id.starts_with("uk.sch.lanyard.baseline."), "{id}");
            // Schema-valid as signed (the validator unwraps CMS).
            let os = if id.ends_with("mac-filevault") { "macOS" } else { "iOS" };
            if let Err(e) = validate(der, os) {
                panic!("sent profile {i} fails validate_plist.py: {e}");
            }
            // The FileVault profile carries Lanyard's escrow certificate, not the placeholder.
            if id.ends_with("mac-filevault") {
                let certs: Vec<Vec<u8>> = v.as_dictionary().unwrap()["PayloadContent"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p.as_dictionary())
                    .filter(|p| p.get("PayloadType").and_then(|t| t.as_string()) == Some("com.apple.security.pkcs1"))
                    .map(|p| p["PayloadContent"].as_data().unwrap().to_vec())
                    .collect();
                assert_eq!(certs, std::slice::from_ref(&escrow_der));
            }
        }
        assert!(d.installed_profiles().iter().all(|p| d.profile(p).unwrap().signed), "the device saw verified profiles");
    }
    s.stop().await;
}

// ---- groups and reconcile ----

async fn reconcile_installs_and_removes_only_lanyards_profiles(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let other = s.enrolled_device(Kind::SupervisedIpad).await;
    // Someone installed a profile by hand; Lanyard learns of it from the next ProfileList.
    d.install_by_hand("com.example.home-airdrop", "Home Wi-Fi");
    let (st, _) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "ProfileList"})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(s.drain(&d).await, ["ProfileList"]);
    let restrictions = profile_id(&s, &tech, "pupil-ipad-restrictions").await;
    let camera = profile_id(&s, &tech, "pupil-camera-off").await;
    let (restrictions_ident, camera_ident) =
        (identifier(&s, &tech, "pupil-ipad-restrictions").await, identifier(&s, &tech, "pupil-camera-off").await);

    let g = static_group(&s, &tech, "Year 3 trolley", &[&d]).await;
    let (st, a) = assign(&s, &tech, &g, &restrictions).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(assign(&s, &tech, &g, &camera).await.0, StatusCode::CREATED);
    assert_eq!(assign(&s, &tech, &g, &camera).await.0, StatusCode::OK, "assigning twice changes nothing");
    let answered = s.drain(&d).await;
    assert_eq!(answered.iter().filter(|r| *r == "InstallProfile").count(), 2, "{answered:?}");
    let installed = d.installed_profiles();
    for ident in [&restrictions_ident, &camera_ident] {
        assert!(installed.contains(ident), "{installed:?}");
    }
    assert!(s.drain(&other).await.is_empty(), "a device outside the group gets nothing");

    // The device view: intended vs installed vs pending.
    let (st, view) = s.get(&format!("/api/v1/devices/{}/profiles", d.udid), &tech).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["intended"].as_array().unwrap().len(), 2, "{view}");
    assert!(view["intended"].as_array().unwrap().iter().all(|i| i["state"] == "installed"), "{view}");
    let by_hand = view["installed"].as_array().unwrap().iter().find(|i| i["identifier"] == "com.example.home-airdrop").unwrap();
    assert_eq!(by_hand["managed_by_lanyard"], false);
    assert!(view["installed"].as_array().unwrap().iter().any(|i| i["identifier"] == SIM_ENROLLMENT_PROFILE));
    assert_eq!(view["pending"].as_array().unwrap().len(), 0);
    let (_, status) = s.get(&format!("/api/v1/profiles/{camera}/status"), &tech).await;
    assert_eq!(status["counts"]["installed"], 1, "{status}");

    // Taking a profile off the group removes it; nothing else is touched.
    assert_eq!(delete(&s, &tech, &format!("/api/v1/groups/{g}/profiles/{camera}")).await.0, StatusCode::NO_CONTENT);
    s.drain(&d).await;
    let installed = d.installed_profiles();
    assert!(!installed.contains(&camera_ident), "{installed:?}");
    assert!(installed.contains(&restrictions_ident) && installed.contains(&"com.example.home-airdrop".to_owned()), "{installed:?}");

    // A new version reaches the device.
    let (_, _, xml) = get_bytes(&s, &tech, &format!("/api/v1/profiles/{restrictions}/mobileconfig")).await;
    let v2 = String::from_utf8(xml).unwrap().replacen("<false/>", "<true/>", 1);
    let (st, up) =
        raw(&s, &tech, Method::PUT, &format!("/api/v1/profiles/{restrictions}"), "application/x-apple-aspen-config", v2.into_bytes()).await;
    assert_eq!((st, up["version"].as_i64()), (StatusCode::OK, Some(2)), "{up}");
    assert_eq!(s.drain(&d).await, ["InstallProfile"]);
    let (_, view) = s.get(&format!("/api/v1/devices/{}/profiles", d.udid), &tech).await;
    assert_eq!(view["intended"][0]["version"], 2);
    assert_eq!(view["intended"][0]["state"], "installed", "{view}");

    // Lost behind Lanyard's back (a person removed it): the next ProfileList puts it back.
    d.state.lock().unwrap().profiles.retain(|p| p.identifier != restrictions_ident);
    let (st, _) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "ProfileList"})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(s.drain(&d).await, ["ProfileList", "InstallProfile"]);
    assert!(d.installed_profiles().contains(&restrictions_ident));

    // Leaving the group removes the group's profiles; membership history is kept.
    assert_eq!(delete(&s, &tech, &format!("/api/v1/groups/{g}/members/{}", d.udid)).await.0, StatusCode::NO_CONTENT);
    s.drain(&d).await;
    assert_eq!(d.installed_profiles(), [SIM_ENROLLMENT_PROFILE.to_owned(), "com.example.home-airdrop".to_owned()]);
    let history = s.ctx.store.memberships_for_udid(&d.udid).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].group_id.to_string(), g);
    assert!(history[0].removed_at.is_some());
    // Lanyard never asked to remove a profile it did not install.
    let removed = removals_sent(&s, &admin, &d.udid).await;
    assert!(removed.iter().all(|i| i.starts_with("uk.sch.lanyard.baseline.")), "{removed:?}");

    // Refusals: unknown devices and groups, smart groups' members, roles.
    let (st, e) = s.post(&format!("/api/v1/groups/{g}/members"), &tech, json!({"udids": [d.udid, "NOSUCH"]})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("udids[1]")), "{e}");
    let auditor = s.operator("gov", "auditor").await;
    assert_eq!(s.post("/api/v1/groups", &auditor, json!({"name": "x", "kind": "static"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.post("/api/v1/groups", &tech, json!({"name": "Year 3 trolley", "kind": "static"})).await.0, StatusCode::CONFLICT);
    let (_, audit) = s.get("/api/v1/audit?action=group.", &admin).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["group.create", "group.members.add", "group.members.remove", "group.profile.assign", "group.profile.unassign"] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    s.stop().await;
}

async fn smart_groups_follow_the_device_and_the_register(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let supervised = s.enrolled_device(Kind::SupervisedIpad).await;
    let unsupervised = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let passcode = profile_id(&s, &admin, "passcode-pupil").await;
    let passcode_ident = identifier(&s, &admin, "passcode-pupil").await;

    let (st, e) = s.post("/api/v1/groups", &admin, json!({"name": "bad", "kind": "smart", "rules": {"platform": "Android"}})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("rules.platform")), "{e}");
    let (st, e) = s.post("/api/v1/groups", &admin, json!({"name": "bad", "kind": "smart"})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("rules")), "{e}");

    let (st, g) = s
        .post(
            "/api/v1/groups",
            &admin,
            json!({"name": "Supervised iPads", "kind": "smart", "rules": {"platform": "iPadOS", "supervised": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert_eq!(g["members"], json!([supervised.udid]), "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    assert_eq!(assign(&s, &admin, &gid, &passcode).await.0, StatusCode::CREATED);
    s.drain(&supervised).await;
    s.drain(&unsupervised).await;
    assert!(supervised.installed_profiles().contains(&passcode_ident));
    assert!(!unsupervised.installed_profiles().contains(&passcode_ident));
    let (st, e) = s.post(&format!("/api/v1/groups/{gid}/members"), &admin, json!({"udids": [mac.udid]})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "smart_group");

    // A device enrolling later joins as soon as it says it is supervised, and gets the profile
    // in the same session.
    let late = s.new_device(Kind::SupervisedIpad).await;
    assert_eq!(s.checkin(&late, late.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&late, late.token_update()).await.0, StatusCode::OK);
    assert_eq!(
        s.drain(&late).await,
        ["DeviceInformation", "SecurityInfo", "ProfileList", "InstallProfile", "DeclarativeManagement", "ActivationLockBypassCode"]
    );
    assert!(late.installed_profiles().contains(&passcode_ident));
    assert_eq!(s.checkin(&late, late.check_out()).await.0, StatusCode::OK);

    // Ownership and year group come from the register's current holder.
    let (st, y3) = s
        .post(
            "/api/v1/groups",
            &admin,
            json!({"name": "Year 3 pupils' iPads", "kind": "smart", "rules": {"ownership": "pupil", "year_group": "Y3"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{y3}");
    assert_eq!(y3["members"], json!([]));
    let y3id = y3["id"].as_str().unwrap().to_owned();
    let (_, shared) = s.post("/api/v1/groups", &admin, json!({"name": "Shared", "kind": "smart", "rules": {"ownership": "shared"}})).await;
    assert_eq!(shared["members"].as_array().unwrap().len(), 3, "nobody holds any device yet (the unenrolled one is out): {shared}");

    let (st, pupil) = s.post("/api/v1/people", &admin, json!({"kind": "pupil", "name": "Ada Pupil", "year_group": "Y3"})).await;
    assert_eq!(st, StatusCode::CREATED, "{pupil}");
    let today = s.ctx.now().date_naive().to_string();
    let (st, aup) = s
        .post(
            "/api/v1/aups",
            &admin,
            json!({"audience": "pupil_ks2", "title": "KS2 AUP", "text": "I will be kind online.", "effective_date": today}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{aup}");
    let (st, sig) = s
        .post(
            "/api/v1/signatures",
            &admin,
            json!({"person_id": pupil["id"], "aup_id": aup["id"], "method": "paper", "co_signer": "A Parent"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sig}");
    let (st, grant) =
        s.post("/api/v1/grants", &admin, json!({"person_id": pupil["id"], "udid": unsupervised.udid, "reason": "class iPad"})).await;
    assert_eq!(st, StatusCode::CREATED, "{grant}");
    let (st, held) = s.post("/api/v1/assignments", &admin, json!({"person_id": pupil["id"], "udid": unsupervised.udid})).await;
    assert_eq!(st, StatusCode::CREATED, "{held}");

    let sweep = s.ctx.profiles.profiles_sweep().await.unwrap();
    assert_eq!(sweep.regrouped, 1, "{sweep:?}");
    let (_, y3) = s.get(&format!("/api/v1/groups/{y3id}"), &admin).await;
    assert_eq!(y3["members"], json!([unsupervised.udid]), "{y3}");
    let (_, shared) = s.get(&format!("/api/v1/groups/{}", shared["id"].as_str().unwrap()), &admin).await;
    assert_eq!(shared["members"].as_array().unwrap().len(), 2, "{shared}");
    // Smart memberships are in the register's history too.
    let history = s.ctx.store.memberships_for_udid(&unsupervised.udid).await.unwrap();
    assert!(history.iter().any(|m| m.group_id.to_string() == y3id && m.removed_at.is_none()), "{history:?}");
    assert!(history.iter().any(|m| m.group_id.to_string() == shared["id"].as_str().unwrap() && m.removed_at.is_some()));

    // Changing the rules re-evaluates at once.
    let (st, g) = s
        .call(Method::PATCH, &format!("/api/v1/groups/{gid}"), Some(&admin), Some(json!({"rules": {"platform": ["iPadOS", "macOS"]}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 3, "{g}");
    s.stop().await;
}

async fn legal_hold_keeps_profiles_on_the_device(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let camera = profile_id(&s, &admin, "pupil-camera-off").await;
    let camera_ident = identifier(&s, &admin, "pupil-camera-off").await;
    let g = static_group(&s, &admin, "Year 6", &[&d]).await;
    assign(&s, &admin, &g, &camera).await;
    s.drain(&d).await;
    assert!(d.installed_profiles().contains(&camera_ident));

    let case_id = put_on_hold(&s, &d.udid).await;
    // Taking the device out of the group is refused for every role, naming the case.
    let (st, e) = delete(&s, &admin, &format!("/api/v1/groups/{g}/members/{}", d.udid)).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    assert_eq!(e["case_id"], case_id.to_string());
    let (st, e) = delete(&s, &admin, &format!("/api/v1/groups/{g}")).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    let events = s.ctx.store.case_events(case_id).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "refused").count(), 2, "refusals are on the custody log");

    // Taking the profile off the group: reconcile leaves it on the held device.
    assert_eq!(delete(&s, &admin, &format!("/api/v1/groups/{g}/profiles/{camera}")).await.0, StatusCode::NO_CONTENT);
    let answered = s.drain(&d).await;
    assert!(!answered.contains(&"RemoveProfile".to_owned()), "{answered:?}");
    assert!(d.installed_profiles().contains(&camera_ident));
    let (_, status) = s.get(&format!("/api/v1/profiles/{camera}/status"), &admin).await;
    assert_eq!(status["devices"][0]["state"], "kept_legal_hold", "{status}");
    let (_, view) = s.get(&format!("/api/v1/devices/{}/profiles", d.udid), &admin).await;
    assert_eq!(view["on_legal_hold"], true);

    // Releasing the device (the DSL asks, the headteacher signs) lifts the hold, and reconcile
    // catches up at once.
    let dsl = s.operator("dsl", "dsl").await;
    let head = s.operator("head", "headteacher").await;
    let (st, req) = s
        .post(
            &format!("/api/v1/cases/{case_id}/release-requests"),
            &dsl,
            json!({"justification": "Police advice received: no further action", "advice_reference": "KP-2026-77"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{req}");
    let (st, done) = s
        .post(&format!("/api/v1/release-requests/{}/approve", req["id"].as_str().unwrap()), &head, json!({"justification": "Agreed"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["case_state"], "closed", "{done}");
    assert_eq!(s.drain(&d).await, ["DisableLostMode", "RemoveProfile"]);
    assert!(!d.installed_profiles().contains(&camera_ident));
    s.stop().await;
}

// ---- filtering change control ----

async fn filtering_changes_need_a_second_person(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    let dsl = s.operator("dsl", "dsl").await;
    let head = s.operator("head", "headteacher").await;
    let auditor = s.operator("gov", "auditor").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let ks2 = profile_id(&s, &tech, "ks2-web-filtered").await;
    let ks2_ident = identifier(&s, &tech, "ks2-web-filtered").await;
    let (_, _, xml) = get_bytes(&s, &tech, &format!("/api/v1/profiles/{ks2}/mobileconfig")).await;
    let edited = with_denied(&xml, "example.com");
    let put = |q: &str| format!("/api/v1/profiles/{ks2}{q}");
    let ct = "application/x-apple-aspen-config";

    // No reason, or no risk assessment: 422 naming the field.
    let (st, e) = raw(&s, &tech, Method::PUT, &put(""), ct, edited.clone()).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")), "{e}");
    let (st, e) = raw(&s, &tech, Method::PUT, &put("?reason=Block%20example"), ct, edited.clone()).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("risk_assessment_ref")), "{e}");

    // Proposed, not deployed.
    let (st, change) =
        raw(&s, &tech, Method::PUT, &put("?reason=Pupils%20found%20example.com&risk_assessment_ref=RA-2026-014"), ct, edited.clone()).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{change}");
    assert_eq!(change["state"], "proposed");
    let change_id = change["change_id"].as_str().unwrap().to_owned();
    assert_eq!(change["diff"], json!(["added denylist: example.com"]), "{change}");
    assert_eq!(profile(&s, &tech, "ks2-web-filtered").await["version"], 1, "not deployed without approval");

    // Someone else proposes too (JSON body this time), against the same version.
    let (st, stale) = s
        .call(
            Method::PUT,
            &put(""),
            Some(&admin),
            Some(json!({"mobileconfig_base64": B64.encode(with_denied(&xml, "example.org")), "reason": "Also block example.org",
                        "risk_assessment_ref": "RA-2026-015"})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{stale}");
    let stale_id = stale["change_id"].as_str().unwrap().to_owned();

    // Who may decide: not a technician, not the proposer, not without a justification.
    let approve = |id: &str| format!("/api/v1/filtering/changes/{id}/approve");
    let (st, _) = s.post(&approve(&change_id), &tech, json!({"justification": "fine"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, e) = s.post(&approve(&stale_id), &admin, json!({"justification": "my own"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "second_person_required");
    let (st, e) = s.post(&format!("/api/v1/filtering/changes/{stale_id}/reject"), &admin, json!({"justification": "withdrawn"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "second_person_required");
    let (st, e) = s.post(&approve(&change_id), &dsl, json!({})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")), "{e}");
    let (_, token) = s.post("/api/v1/api-tokens", &admin, json!({"name": "dsl script", "role": "dsl"})).await;
    let (st, _) = s.post(&approve(&change_id), token["token"].as_str().unwrap(), json!({"justification": "scripted"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a second person is a person, not an API token");

    // The DSL approves: deployed as version 2.
    let (st, done) = s.post(&approve(&change_id), &dsl, json!({"justification": "Risk assessed; consistent with policy 7.3.2"})).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!((done["state"].as_str(), done["deployed_version"].as_i64()), (Some("deployed"), Some(2)), "{done}");
    assert_eq!(done["decided_by"], "operator:dsl");
    let p = profile(&s, &tech, "ks2-web-filtered").await;
    assert_eq!(p["version"], 2);
    assert!(p["filtering"]["denied"].as_array().unwrap().iter().any(|x| x == "example.com"));
    let (st, e) = s.post(&approve(&change_id), &head, json!({"justification": "again"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "not_proposed");
    // The other proposal was made against version 1: it cannot be deployed over version 2.
    let (st, e) = s.post(&approve(&stale_id), &head, json!({"justification": "ok"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "stale_change");
    let (st, r) =
        s.post(&format!("/api/v1/filtering/changes/{stale_id}/reject"), &head, json!({"justification": "superseded by RA-2026-014"})).await;
    assert_eq!((st, r["state"].as_str()), (StatusCode::OK, Some("rejected")), "{r}");

    // Assigning a filter to a group is a filtering change too; approved, it reaches the device.
    let g = static_group(&s, &tech, "Year 4", &[&d]).await;
    let (st, e) = assign(&s, &tech, &g, &ks2).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")), "{e}");
    let (st, a) = s
        .post(
            &format!("/api/v1/groups/{g}/profiles"),
            &tech,
            json!({"profile_id": ks2, "reason": "KS2 filter for Year 4", "risk_assessment_ref": "RA-2026-016"}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{a}");
    assert_eq!(a["diff"][0], "assign ks2-web-filtered to group Year 4");
    assert!(s.drain(&d).await.is_empty(), "nothing reaches the device before approval");
    let (st, _) = s.post(&approve(a["change_id"].as_str().unwrap()), &head, json!({"justification": "Approved at SLT meeting"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.drain(&d).await, ["InstallProfile"]);
    assert!(d.installed_profiles().contains(&ks2_ident));
    let (st, e) = delete(&s, &tech, &format!("/api/v1/groups/{g}")).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "filtering_assigned");
    let (st, un) =
        delete(&s, &tech, &format!("/api/v1/groups/{g}/profiles/{ks2}?reason=Move%20to%20KS3&risk_assessment_ref=RA-2026-017")).await;
    assert_eq!((st, un["kind"].as_str()), (StatusCode::ACCEPTED, Some("unassign")), "{un}");
    let (st, del) = delete(&s, &tech, &format!("/api/v1/profiles/{ks2}")).await;
    assert_eq!(
        (st, del["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")),
        "deleting a filter is a filtering change: {del}"
    );

    // The log governors ask for: JSON and CSV, every state, the diff in words.
    let (st, log) = s.get("/api/v1/filtering/changes", &auditor).await;
    assert_eq!(st, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{log}");
    let states: Vec<&str> = items.iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["proposed", "deployed", "rejected", "deployed"], "newest first");
    assert_eq!(items[3]["reason"], "Pupils found example.com");
    assert_eq!(items[3]["risk_assessment_ref"], "RA-2026-014");
    assert_eq!(items[3]["justification"], "Risk assessed; consistent with policy 7.3.2");
    let (_, proposed) = s.get("/api/v1/filtering/changes?state=proposed", &tech).await;
    assert_eq!(proposed["items"].as_array().unwrap().len(), 1);
    let (st, ct, csv) = get_bytes(&s, &auditor, "/api/v1/filtering/changes?format=csv").await;
    assert_eq!((st, ct.as_str()), (StatusCode::OK, "text/csv; charset=utf-8"));
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,proposed_at,profile,kind,group,state,proposed_by,reason,risk_assessment_ref,decided_by"), "{csv}");
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(csv.contains("added denylist: example.com"), "{csv}");
    let (st, _) = s.get("/api/v1/filtering/changes", &s.operator("nobody", "auditor").await).await;
    assert_eq!(st, StatusCode::OK);

    // Every step is in the audit log.
    let (_, audit) = s.get("/api/v1/audit?action=filtering.", &admin).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "filtering.propose").count(), 4, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "filtering.approve").count(), 2);
    assert_eq!(actions.iter().filter(|a| **a == "filtering.deploy").count(), 2);
    assert_eq!(actions.iter().filter(|a| **a == "filtering.reject").count(), 1);
    s.stop().await;
}

// ---- lesson-time restrictions ----

/// The next Monday after today (real time), at `h:m` UTC.
fn next_monday(h: u32, m: u32) -> DateTime<Utc> {
    let today = Utc::now().date_naive();
    let ahead = 7 - i64::from(today.weekday().num_days_from_monday());
    let monday = today + Duration::days(ahead);
    Utc.from_utc_datetime(&monday.and_hms_opt(h, m, 0).unwrap())
}

async fn lesson_time_profiles_follow_the_timetable(b: Backend) {
    let s = TestServer::start_with(b, Options { manual_clock: true, ..Default::default() }).await;
    let clock = s.clock.clone().unwrap();
    let monday = next_monday(8, 55);
    clock.set(monday);
    let admin = s.admin().await;
    let d1 = s.enrolled_device(Kind::SupervisedIpad).await;
    let d2 = s.enrolled_device(Kind::SupervisedIpad).await;
    let camera = profile_id(&s, &admin, "pupil-camera-off").await;
    let camera_ident = identifier(&s, &admin, "pupil-camera-off").await;
    let g = static_group(&s, &admin, "Year 5 iPads", &[&d1, &d2]).await;

    let (st, e) = s
        .call(
            Method::PUT,
            "/api/v1/timetable",
            Some(&admin),
            Some(json!({"periods": [{"name": "P1", "weekday": "funday", "start": "09:00", "end": "10:00"}]})),
        )
        .await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("periods[0].weekday")), "{e}");
    let term = json!([{"start": (monday - Duration::days(7)).date_naive().to_string(), "end": (monday + Duration::days(30)).date_naive().to_string()}]);
    let (st, tt) = s
        .call(
            Method::PUT,
            "/api/v1/timetable",
            Some(&admin),
            Some(json!({"timezone": "UTC", "terms": term,
                        "periods": [{"name": "Period 1", "weekday": "monday", "start": "09:00", "end": "10:00"},
                                    {"name": "Period 1", "weekday": "tuesday", "start": "09:00", "end": "10:00"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tt}");
    assert_eq!(tt["in_lessons_now"], false);
    let (st, sched) = s.post("/api/v1/schedules", &admin, json!({"profile_id": camera, "group_id": g, "when": "lessons"})).await;
    assert_eq!(st, StatusCode::CREATED, "{sched}");
    assert_eq!(sched["active"], false);

    // Before the lesson: nothing.
    let r = s.ctx.profiles.timetable_tick().await.unwrap();
    assert_eq!((r.changed, r.installs), (0, 0), "{r:?}");
    assert!(s.drain(&d1).await.is_empty());

    // 09:01: the window opens; the profile is installed; until then the drift shows it.
    clock.set(monday + Duration::minutes(6));
    let r = s.ctx.profiles.timetable_tick().await.unwrap();
    assert_eq!((r.changed, r.installs, r.in_lessons), (1, 2, true), "{r:?}");
    let admin = s.admin().await;
    let (_, drift) = s.get("/api/v1/schedules/drift", &admin).await;
    assert_eq!(drift["items"].as_array().unwrap().len(), 2, "{drift}");
    assert_eq!(drift["items"][0]["intended"], "installed");
    assert_eq!(drift["items"][0]["pending"], "install");
    assert_eq!(drift["items"][0]["since"].as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap()), Some(monday + Duration::minutes(5)));
    assert_eq!(drift["items"][0]["drift_seconds"], 60);
    s.drain(&d1).await;
    s.drain(&d2).await;
    assert!(d1.installed_profiles().contains(&camera_ident) && d2.installed_profiles().contains(&camera_ident));
    let (_, drift) = s.get("/api/v1/schedules/drift", &admin).await;
    assert_eq!(drift["items"].as_array().unwrap().len(), 0, "{drift}");
    assert_eq!(s.ctx.profiles.timetable_tick().await.unwrap().changed, 0, "a tick inside the window changes nothing");

    // 10:01: the window closes. One device refuses the removal: it keeps the restriction
    // (fail closed) and the drift says so, and since when.
    d2.fail("RemoveProfile");
    clock.set(monday + Duration::minutes(66));
    let r = s.ctx.profiles.timetable_tick().await.unwrap();
    assert_eq!((r.changed, r.removals, r.in_lessons), (1, 2, false), "{r:?}");
    s.drain(&d1).await;
    s.drain(&d2).await;
    assert!(!d1.installed_profiles().contains(&camera_ident));
    assert!(d2.installed_profiles().contains(&camera_ident), "removal failed: the restriction stays");
    let admin = s.admin().await;
    let (_, drift) = s.get("/api/v1/schedules/drift", &admin).await;
    let items = drift["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{drift}");
    assert_eq!(items[0]["udid"], d2.udid.as_str());
    assert_eq!((items[0]["intended"].as_str(), items[0]["actual"].as_str()), (Some("removed"), Some("installed")));
    assert!(items[0]["last_error"].as_str().is_some(), "{drift}");
    assert_eq!(items[0]["since"].as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap()), Some(monday + Duration::minutes(65)));
    assert_eq!(items[0]["drift_seconds"], 60);
    let (_, view) = s.get(&format!("/api/v1/devices/{}/profiles", d2.udid), &admin).await;
    assert!(view["installed"].as_array().unwrap().iter().any(|i| i["identifier"] == camera_ident.as_str()), "{view}");
    assert_eq!(view["failed"][0]["action"], "remove", "{view}");

    // Not asked again every tick: after the back-off, asked again; this time it works.
    clock.set(monday + Duration::minutes(71));
    s.ctx.profiles.timetable_tick().await.unwrap();
    assert!(s.drain(&d2).await.is_empty(), "inside the back-off");
    d2.unfail("RemoveProfile");
    clock.set(monday + Duration::minutes(82));
    let r = s.ctx.profiles.timetable_tick().await.unwrap();
    assert_eq!(r.removals, 1, "{r:?}");
    assert!(s.drain(&d2).await.contains(&"RemoveProfile".to_owned()));
    assert!(!d2.installed_profiles().contains(&camera_ident));
    let admin = s.admin().await;
    let (_, drift) = s.get("/api/v1/schedules/drift", &admin).await;
    assert_eq!(drift["items"].as_array().unwrap().len(), 0, "{drift}");

    // Tuesday 09:00 it comes back; outside term it does not.
    clock.set(monday + Duration::days(1) + Duration::minutes(5));
    assert_eq!(s.ctx.profiles.timetable_tick().await.unwrap().installs, 2);
    clock.set(monday + Duration::days(1) + Duration::minutes(65));
    assert_eq!(s.ctx.profiles.timetable_tick().await.unwrap().removals, 2);
    clock.set(monday + Duration::days(35) + Duration::minutes(6));
    assert_eq!(s.ctx.profiles.timetable_tick().await.unwrap().changed, 0, "after the end of term");

    let admin = s.admin().await;
    let (_, audit) = s.get("/api/v1/audit?action=schedule.", &admin).await;
    assert_eq!(audit["items"][0]["action"], "schedule.create");
    s.stop().await;
}

// ---- FileVault ----

async fn filevault_key_is_escrowed_and_revealed_with_justification(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    let dsl = s.operator("dsl", "dsl").await;
    let head = s.operator("head", "headteacher").await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let prk = mac.recovery_key.clone().unwrap();
    let url = |q: &str| format!("/api/v1/devices/{}/filevault-key{q}", mac.udid);

    let (st, _) = s.get(&url("?justification=Pupil%20forgot%20password%20on%20trip"), &dsl).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing escrowed yet");

    // The FileVault profile carries the escrow certificate; the Mac escrows its key to it and
    // Lanyard asks for SecurityInfo at once.
    let g = static_group(&s, &tech, "Staff Macs", &[&mac]).await;
    assert_eq!(assign(&s, &tech, &g, &profile_id(&s, &tech, "mac-filevault").await).await.0, StatusCode::CREATED);
    let answered = s.drain(&mac).await;
    assert_eq!(answered, ["InstallProfile", "SecurityInfo"]);
    let stored = s.ctx.store.filevault_key(&mac.udid).await.unwrap().expect("escrowed");
    assert!(!stored.key_sealed.windows(prk.len()).any(|w| w == prk.as_bytes()), "sealed at rest");
    assert_eq!(stored.device_key.as_deref(), Some(mac.serial.as_str()));

    // Only admin and dsl, only with a justification.
    for token in [&tech, &head, &s.operator("gov", "auditor").await] {
        assert_eq!(s.get(&url("?justification=Pupil%20forgot%20password%20on%20trip"), token).await.0, StatusCode::FORBIDDEN);
    }
    let (st, e) = s.get(&url(""), &dsl).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")), "{e}");
    let (st, _) = s.get(&url("?justification=%20%20"), &dsl).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, key) = s.get(&url("?justification=Staff%20member%20locked%20out%20on%20school%20trip"), &dsl).await;
    assert_eq!(st, StatusCode::OK, "{key}");
    assert_eq!(key["recovery_key"], prk.as_str());
    assert_eq!(key["serial_number"], mac.serial.as_str());
    let (st, key) = s.get(&url("?justification=Hardware%20repair%20ticket%204711"), &admin).await;
    assert_eq!((st, key["recovery_key"].as_str()), (StatusCode::OK, Some(prk.as_str())));

    // Audited with the justification; the key itself never is.
    let (_, audit) = s.get("/api/v1/audit?action=filevault.", &admin).await;
    let items = audit["items"].as_array().unwrap();
    let reveals: Vec<&Value> = items.iter().filter(|e| e["action"] == "filevault.reveal").collect();
    assert_eq!(reveals.len(), 2);
    assert_eq!(reveals[1]["actor"], "operator:dsl");
    assert_eq!(reveals[1]["details"]["justification"], "Staff member locked out on school trip");
    assert_eq!(items.iter().filter(|e| e["action"] == "filevault.escrow").count(), 1);
    assert!(!audit.to_string().contains(&prk), "the key is not in the audit log");

    // The same key reported again is not stored or audited again.
    let (st, _) = s.post(&format!("/api/v1/devices/{}/commands", mac.udid), &admin, json!({"request_type": "SecurityInfo"})).await;
    assert_eq!(st, StatusCode::CREATED);
    s.drain(&mac).await;
    let (_, audit) = s.get("/api/v1/audit?action=filevault.escrow", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);

    // On a device under a case, revealing the key is on the custody log too.
    let case_id = put_on_hold(&s, &mac.udid).await;
    assert_eq!(s.get(&url("?justification=Police%20request%20ref%20KP-123"), &dsl).await.0, StatusCode::OK);
    let events = s.ctx.store.case_events(case_id).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "filevault_key_revealed" && e.justification.as_deref() == Some("Police request ref KP-123")));
    s.stop().await;
}

// ---- compliance ----

async fn compliance_report_json_and_csv(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let good = enrol(&s, Kind::SupervisedIpad, true).await;
    let no_passcode = enrol(&s, Kind::SupervisedIpad, false).await;
    let refuses = enrol(&s, Kind::SupervisedIpad, true).await;
    let mac = enrol(&s, Kind::Mac, true).await;
    refuses.fail("InstallProfile");
    let g = static_group(&s, &admin, "Pupil iPads", &[&good, &no_passcode, &refuses]).await;
    assert_eq!(assign(&s, &admin, &g, &profile_id(&s, &admin, "passcode-pupil").await).await.0, StatusCode::CREATED);
    for d in [&good, &no_passcode, &refuses, &mac] {
        s.drain(d).await;
    }

    let auditor = s.operator("gov", "auditor").await;
    let (st, report) = s.get("/api/v1/compliance", &auditor).await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["summary"]["devices"], 4, "{report}");
    assert_eq!(report["summary"]["compliant"], 1, "{report}");
    assert_eq!(report["summary"]["non_compliant"], 3, "{report}");
    assert_eq!(report["summary"]["not_encrypted"], 1);
    assert_eq!(report["summary"]["missing_profiles"], 1);
    assert_eq!(report["summary"]["recovery_key_not_escrowed"], 1);
    let row = |d: &SimDevice| report["items"].as_array().unwrap().iter().find(|r| r["udid"] == d.udid.as_str()).unwrap().clone();
    assert_eq!(row(&good)["compliant"], true, "{}", row(&good));
    assert_eq!(row(&good)["passcode_compliant"], true);
    assert_eq!(row(&no_passcode)["encrypted"], false);
    assert_eq!(row(&refuses)["missing_profiles"], json!(["passcode-pupil"]));
    assert_eq!(row(&mac)["filevault_enabled"], true);
    assert_eq!(row(&mac)["recovery_key_escrowed"], false);
    assert!(row(&mac)["reasons"][0].as_str().unwrap().contains("not escrowed"));
    assert!(row(&good)["last_seen_at"].is_string());

    let resp = s.client.get(s.url("/api/v1/compliance?format=csv")).bearer_auth(&auditor).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(resp.headers()["x-non-compliant"], "3");
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "udid,serial_number,device_name,platform,compliant,encrypted,filevault_enabled,recovery_key_escrowed,passcode_present,passcode_compliant,profiles_installed,missing_profiles,last_seen_at,security_updated_at,reasons"
    );
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines.iter().any(|l| l.starts_with(&good.udid) && l.contains(",true,true,")), "{csv}");
    let (st, e) = s.get("/api/v1/compliance?format=xml", &auditor).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("format")));

    // The daily check asks devices for their security state and profiles again.
    assert_eq!(s.ctx.profiles.request_periodic_checks().await.unwrap(), 0, "everyone reported just now");
    s.stop().await;
}

/// Whether `list` (a `needs_supervision` or `not_in_force` array) names `key` of `payload_type`.
fn names_key(list: &Value, payload_type: &str, key: &str) -> bool {
    list.as_array().unwrap_or_else(|| panic!("not an array: {list}")).iter().any(|e| e["payload_type"] == payload_type && e["key"] == key)
}

/// Issue 16: iPadOS ignores many restriction keys on an unsupervised device. From Apple's
/// schema, Lanyard lists the keys of a profile that need supervision, warns when a profile is
/// assigned to a group with unsupervised members, and reports those keys as not in force (and
/// the device as not compliant) — and says "unknown" while supervision is not reported yet.
async fn supervision_is_told_plainly(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let auditor = s.operator("gov", "auditor").await;

    // The profile lists the keys that need supervision, from the schema: AirDrop and Game
    // Center yes, the camera no; PayloadRemovalDisallowed (the profile's own) too.
    let restrictions = profile(&s, &auditor, "pupil-ipad-restrictions").await;
    let needs = &restrictions["needs_supervision"];
    for key in ["allowAirDrop", "allowGameCenter", "allowAccountModification", "allowEraseContentAndSettings"] {
        assert!(names_key(needs, "com.apple.applicationaccess", key), "{key}: {needs}");
    }
    assert!(names_key(needs, "Configuration", "PayloadRemovalDisallowed"), "{needs}");
    let airdrop = needs.as_array().unwrap().iter().find(|e| e["key"] == "allowAirDrop").unwrap();
    assert_eq!(airdrop["os"], json!(["iOS"]), "{airdrop}");
    let camera = profile(&s, &auditor, "pupil-camera-off").await;
    assert!(!names_key(&camera["needs_supervision"], "com.apple.applicationaccess", "allowCamera"), "{camera}");
    let rid = restrictions["id"].as_str().unwrap().to_owned();
    let (st, detail) = s.get(&format!("/api/v1/profiles/{rid}"), &auditor).await;
    assert_eq!(st, StatusCode::OK, "{detail}");
    assert!(names_key(&detail["needs_supervision"], "com.apple.applicationaccess", "allowAirDrop"), "{detail}");
    // An upload says so at once; a key set to its default asks nothing of the device.
    let (st, up) = raw(
        &s,
        &admin,
        Method::POST,
        "/api/v1/profiles?name=airdrop-off",
        "application/x-apple-aspen-config",
        common::AIRDROP_PROFILE.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{up}");
    assert_eq!(up["needs_supervision"], json!([{"payload_type": "com.apple.applicationaccess", "key": "allowAirDrop", "os": ["iOS"]}]));
    let allowed = common::AIRDROP_PROFILE
        .replace("<key>allowAirDrop</key><false/>", "<key>allowAirDrop</key><true/>")
        .replace("uk.sch.test.restrictions", "uk.sch.test.airdrop-on")
        .replace("-000000000001", "-000000000011")
        .replace("-000000000002", "-000000000012");
    let (st, up) =
        raw(&s, &admin, Method::POST, "/api/v1/profiles?name=airdrop-on", "application/x-apple-aspen-config", allowed.into_bytes()).await;
    assert_eq!(st, StatusCode::CREATED, "{up}");
    assert_eq!(up["needs_supervision"], json!([]), "{up}");

    // Assigning it to a group with an unsupervised iPad warns, naming that iPad (not the
    // supervised one, nor the Mac: these keys need supervision on iPadOS only).
    let supervised = enrol(&s, Kind::SupervisedIpad, true).await;
    let loose = enrol(&s, Kind::UnsupervisedIpad, true).await;
    let mac = enrol(&s, Kind::Mac, true).await;
    let g = static_group(&s, &admin, "Year 4 iPads", &[&supervised, &loose, &mac]).await;
    let (st, a) = assign(&s, &admin, &g, &rid).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!((a["assigned"].as_bool(), a["profile_id"].as_str()), (Some(true), Some(rid.as_str())), "existing fields stay");
    let warnings = a["warnings"].as_array().unwrap_or_else(|| panic!("warnings: {a}"));
    assert_eq!(warnings.len(), 1, "{a}");
    assert_eq!(warnings[0]["code"], "needs_supervision");
    assert_eq!(warnings[0]["devices"], json!([loose.udid]), "{a}");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(message.contains(&loose.udid) && message.contains("allowAirDrop") && message.contains("not supervised"), "{message}");
    // A profile that needs no supervision warns of nothing.
    let camera_only = common::AIRDROP_PROFILE
        .replace("<key>allowAirDrop</key><false/>", "<key>allowCamera</key><false/>")
        .replace("uk.sch.test.restrictions", "uk.sch.test.camera")
        .replace("-000000000001", "-000000000021")
        .replace("-000000000002", "-000000000022");
    let (st, up) =
        raw(&s, &admin, Method::POST, "/api/v1/profiles?name=camera-only", "application/x-apple-aspen-config", camera_only.into_bytes())
            .await;
    assert_eq!(st, StatusCode::CREATED, "{up}");
    let (st, a) = assign(&s, &admin, &g, up["id"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["warnings"], json!([]), "{a}");
    for d in [&supervised, &loose, &mac] {
        s.drain(d).await;
    }

    // The device's profiles say, per key, that it is not in force.
    let (st, view) = s.get(&format!("/api/v1/devices/{}/profiles", loose.udid), &auditor).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["supervised"], false, "{view}");
    let intended = view["intended"].as_array().unwrap().iter().find(|i| i["profile_id"] == rid.as_str()).unwrap().clone();
    assert_eq!(intended["state"], "installed", "the device took it: {intended}");
    let nif = &intended["not_in_force"];
    assert!(names_key(nif, "com.apple.applicationaccess", "allowAirDrop"), "{intended}");
    let entry = nif.as_array().unwrap().iter().find(|e| e["key"] == "allowAirDrop").unwrap();
    assert_eq!((entry["state"].as_str(), entry["reason"].as_str()), (Some("not_in_force"), Some("not in force: device not supervised")));
    let (_, view) = s.get(&format!("/api/v1/devices/{}/profiles", supervised.udid), &auditor).await;
    assert!(view["intended"].as_array().unwrap().iter().all(|i| i["not_in_force"] == json!([])), "{view}");

    // The compliance report counts the unsupervised iPad as not compliant, per key.
    let (st, report) = s.get("/api/v1/compliance", &auditor).await;
    assert_eq!(st, StatusCode::OK, "{report}");
    let row = |d: &SimDevice| report["items"].as_array().unwrap().iter().find(|r| r["udid"] == d.udid.as_str()).unwrap().clone();
    let r = row(&loose);
    assert_eq!((r["compliant"].as_bool(), r["supervised"].as_bool()), (Some(false), Some(false)), "{r}");
    assert_eq!(r["profiles_installed"], true, "installed, but not in force: {r}");
    assert!(names_key(&r["not_in_force"], "com.apple.applicationaccess", "allowAirDrop"), "{r}");
    let e = r["not_in_force"].as_array().unwrap().iter().find(|e| e["key"] == "allowAirDrop").unwrap().clone();
    assert_eq!(
        (e["profile"].as_str(), e["reason"].as_str()),
        (Some("pupil-ipad-restrictions"), Some("not in force: device not supervised"))
    );
    let reasons: Vec<&str> = r["reasons"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert!(reasons.iter().any(|x| x.contains("allowAirDrop") && x.contains("not in force: device not supervised")), "{reasons:?}");
    assert_eq!(row(&supervised)["compliant"], true, "{}", row(&supervised));
    assert_eq!(row(&supervised)["not_in_force"], json!([]));
    assert_eq!(row(&mac)["not_in_force"], json!([]), "{}", row(&mac));
    assert_eq!(report["summary"]["not_supervised"], 1, "{report}");
    assert_eq!(report["summary"]["supervision_unknown"], 0, "{report}");
    let csv = s.client.get(s.url("/api/v1/compliance?format=csv")).bearer_auth(&auditor).send().await.unwrap().text().await.unwrap();
    let line = csv.lines().find(|l| l.starts_with(&loose.udid)).unwrap();
    assert!(line.contains("not in force: device not supervised"), "{line}");

    // A device whose supervision is not reported yet is "unknown", in the warning and the
    // report; the report does not count it as compliant (unknown is not safe).
    let fresh = s.new_device(Kind::UnsupervisedIpad).await;
    assert_eq!(s.checkin(&fresh, fresh.authenticate()).await.0, StatusCode::OK);
    assert_eq!(s.checkin(&fresh, fresh.token_update()).await.0, StatusCode::OK);
    let g2 = static_group(&s, &admin, "New iPads", &[&fresh]).await;
    let (st, a) = assign(&s, &admin, &g2, &rid).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["warnings"][0]["code"], "supervision_unknown", "{a}");
    assert_eq!(a["warnings"][0]["devices"], json!([fresh.udid]), "{a}");
    let (_, report) = s.get("/api/v1/compliance", &auditor).await;
    let r = report["items"].as_array().unwrap().iter().find(|r| r["udid"] == fresh.udid.as_str()).unwrap().clone();
    assert!(r["supervised"].is_null(), "{r}");
    assert_eq!(r["compliant"], false, "{r}");
    let e = r["not_in_force"].as_array().unwrap().iter().find(|e| e["key"] == "allowAirDrop").unwrap().clone();
    assert_eq!(e["state"], "unknown", "{e}");
    assert_eq!(report["summary"]["supervision_unknown"], 1, "{report}");
    assert_eq!(report["summary"]["not_supervised"], 1, "{report}");

    // The OpenAPI document has the new fields.
    let (_, doc) = s.get("/api/v1/openapi.json", &admin).await;
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Profile"]["properties"]["needs_supervision"].is_object());
    assert!(schemas["Assigned"]["properties"]["warnings"].is_object());
    assert!(schemas["Assigned"]["properties"]["assigned"].is_object(), "existing fields stay");
    assert!(schemas["DeviceProfiles"]["properties"]["intended"]["items"]["properties"]["not_in_force"].is_object());
    let report = &schemas["ComplianceReport"]["properties"];
    assert!(report["items"]["items"]["properties"]["not_in_force"].is_object());
    assert!(report["summary"]["properties"]["supervision_unknown"].is_object());
    s.stop().await;
}
