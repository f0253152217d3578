//! Re-issuing an iPad: its Activation Lock bypass code is fetched and kept sealed, revealed with a
//! reason to the roles that re-issue devices; Return to Service erases it so that it comes back
//! enrolled (a Wi-Fi profile and, without ADE, a one-time enrolment profile in the command), one
//! device or a trolley, all or nothing — on SQLite and PostgreSQL.

#[macro_use]
mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Backend, TestServer, assert_error};
use lanyard_bench::sim::{Kind, SimDevice};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(a_supervised_ipads_bypass_code_is_kept_and_revealed_with_a_reason, a_trolley_returns_to_service);

async fn commands_of(s: &TestServer, token: &str, d: &SimDevice) -> Vec<String> {
    let (_, page) = s.get(&format!("/api/v1/devices/{}/commands?limit=100", d.udid), token).await;
    page["items"].as_array().unwrap().iter().map(|c| c["request_type"].as_str().unwrap().to_owned()).collect()
}

async fn a_supervised_ipads_bypass_code_is_kept_and_revealed_with_a_reason(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    s.load_push_cert().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let loose = s.enrolled_device(Kind::UnsupervisedIpad).await;
    // Asked as soon as it said it is supervised; an unsupervised iPad is never asked.
    assert!(commands_of(&s, &admin, &d).await.contains(&"ActivationLockBypassCode".to_owned()));
    assert!(!commands_of(&s, &admin, &loose).await.contains(&"ActivationLockBypassCode".to_owned()));
    // Kept sealed.
    let (sealed, _) = s.ctx.store.activation_lock_bypass(&d.udid).await.unwrap().expect("kept");
    assert!(!String::from_utf8_lossy(&sealed).contains(&d.activation_lock_bypass_code()));

    let path = |udid: &str, why: &str| format!("/api/v1/devices/{udid}/activation-lock-bypass?justification={why}");
    let (st, e) = s.get(&path(&d.udid, ""), &tech).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")), "{e}");
    for role in ["dsl", "headteacher", "auditor"] {
        let t = s.operator(&format!("{role}1"), role).await;
        assert_eq!(s.get(&path(&d.udid, "re-issuing%20to%20Year%204"), &t).await.0, StatusCode::FORBIDDEN, "{role}");
    }
    let resp = s.client.get(s.url(&path(&d.udid, "re-issuing%20to%20Year%204"))).bearer_auth(&tech).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let code: Value = resp.json().await.unwrap();
    assert_eq!(code["bypass_code"], d.activation_lock_bypass_code(), "{code}");
    let (_, audit) = s.get("/api/v1/audit?action=device.activation_lock_bypass.reveal", &admin).await;
    assert_eq!(audit["items"][0]["details"]["justification"], "re-issuing to Year 4", "{audit}");
    assert_eq!(audit["items"][0]["actor"], "operator:tech");
    let (st, e) = s.get(&path(&loose.udid, "re-issuing%20to%20Year%204"), &tech).await;
    assert_eq!(assert_error(st, &e, StatusCode::NOT_FOUND), "not_found");
    assert!(e["error"].as_str().unwrap().contains("only a supervised device"), "{e}");

    // Not asked again once held.
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{}/commands", d.udid),
            &tech,
            json!({"request_type": "DeviceInformation", "Queries": ["IsSupervised"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(!s.drain(&d).await.contains(&"ActivationLockBypassCode".to_owned()));
    s.stop().await;
}

/// The EraseDevice command a device is handed next, as a dictionary (validated against Apple's
/// schema), acknowledged.
async fn next_erase(s: &TestServer, d: &SimDevice) -> plist::Dictionary {
    let (_, next) = s.connect(d, d.idle()).await;
    let file = s.dir.path().join(format!("erase-{}.plist", d.udid));
    std::fs::write(&file, &next).unwrap();
    common::validate_plist("command", &file).unwrap_or_else(|e| panic!("validate_plist.py command: {e}"));
    let (uuid, rt, cmd) = SimDevice::read_command(&next).expect("a command");
    assert_eq!(rt, "EraseDevice");
    // The iPad acknowledges, then erases itself.
    assert_eq!(s.connect(d, d.report("Acknowledged", &uuid, plist::Dictionary::new())).await.0, StatusCode::OK);
    cmd
}

const WIFI_PROFILE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
<key>PayloadContent</key><array><dict>
  <key>AutoJoin</key><true/><key>EncryptionType</key><string>WPA2</string><key>HIDDEN_NETWORK</key><false/>
  <key>Password</key><string>correct horse battery</string><key>SSID_STR</key><string>StMarys-Pupils</string>
  <key>PayloadIdentifier</key><string>uk.sch.stmarys.wifi.pupils</string><key>PayloadType</key><string>com.apple.wifi.managed</string>
  <key>PayloadUUID</key><string>5B7A2C43-1D7E-4F21-9A0B-3C4D5E6F7081</string><key>PayloadVersion</key><integer>1</integer>
</dict></array>
<key>PayloadDisplayName</key><string>School Wi-Fi</string><key>PayloadIdentifier</key><string>uk.sch.stmarys.wifi</string>
<key>PayloadType</key><string>Configuration</string><key>PayloadUUID</key><string>0E2F6A11-8C3B-4D5E-9F60-718293A4B5C6</string>
<key>PayloadVersion</key><integer>1</integer>
</dict></plist>"#;

async fn a_trolley_returns_to_service(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    s.load_push_cert().await;
    let trolley = [s.enrolled_device(Kind::SupervisedIpad).await, s.enrolled_device(Kind::SupervisedIpad).await];
    let mac = s.enrolled_device(Kind::Mac).await;
    // The school's Wi-Fi profile, as Apple Configurator exports it.
    let (st, wifi) =
        s.post("/api/v1/profiles", &tech, json!({"name": "school-wifi", "mobileconfig_base64": B64.encode(WIFI_PROFILE)})).await;
    assert_eq!(st, StatusCode::CREATED, "{wifi}");
    let (_, other) = s
        .post("/api/v1/profiles", &tech, json!({"name": "camera-off", "display_name": "Camera off", "payloads": [{"type": "com.apple.applicationaccess", "allowCamera": false}]}))
        .await;

    // Roles that do not re-issue devices, and bad requests, change nothing.
    for role in ["dsl", "headteacher", "auditor"] {
        let t = s.operator(&format!("{role}1"), role).await;
        assert_eq!(s.post(&format!("/api/v1/devices/{}/return-to-service", trolley[0].udid), &t, json!({})).await.0, StatusCode::FORBIDDEN);
        assert_eq!(s.post("/api/v1/devices/return-to-service", &t, json!({"udids": [trolley[0].udid]})).await.0, StatusCode::FORBIDDEN);
    }
    let udids: Vec<&str> = trolley.iter().map(|d| d.udid.as_str()).collect();
    let (st, e) = s.post("/api/v1/devices/return-to-service", &tech, json!({"udids": udids, "wifi_profile_id": other["id"]})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("wifi_profile_id")), "{e}");
    let (st, e) = s.post("/api/v1/devices/return-to-service", &tech, json!({"udids": [udids[0], udids[1], mac.udid, "NOSUCH"]})).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "return_to_service_refused");
    let refused: Vec<&str> = e["refused"].as_array().unwrap().iter().map(|r| r["udid"].as_str().unwrap()).collect();
    assert_eq!(refused.len(), 2, "the Mac and the unknown device are named: {e}");
    assert!(refused.contains(&mac.udid.as_str()) && refused.contains(&"NOSUCH"), "{e}");
    for d in &trolley {
        assert!(s.connect(d, d.idle()).await.1.is_empty(), "nothing was queued");
    }

    // The trolley: each iPad erased with Return to Service, the Wi-Fi profile and, as ASM does not
    // list them, a one-time enrolment profile bound to its serial number.
    let (st, r) = s.post("/api/v1/devices/return-to-service", &tech, json!({"udids": udids, "wifi_profile_id": wifi["id"]})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["devices"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["wifi_profile"], "school-wifi");
    for d in &trolley {
        let q = r["devices"].as_array().unwrap().iter().find(|q| q["udid"] == d.udid.as_str()).expect("each device named");
        assert_eq!((q["serial_number"].as_str(), q["re_enrols_by"].as_str()), (Some(d.serial.as_str()), Some("enrolment_profile")), "{r}");
        let (_, status) = s.get(&format!("/api/v1/commands/{}", q["command_uuid"].as_str().unwrap()), &tech).await;
        assert_eq!(status["request_type"], "EraseDevice", "{status}");
        let cmd = next_erase(&s, d).await;
        let rts = cmd["ReturnToService"].as_dictionary().unwrap();
        assert_eq!(rts["Enabled"].as_boolean(), Some(true));
        let (wifi_plist, _) = lanyard::protocol::cms::unwrap_signed_profile(rts["WiFiProfileData"].as_data().unwrap()).unwrap();
        assert!(String::from_utf8_lossy(&wifi_plist).contains("StMarys-Pupils"));
        let (mdm, _) = lanyard::protocol::cms::unwrap_signed_profile(rts["MDMProfileData"].as_data().unwrap()).unwrap();
        assert!(String::from_utf8_lossy(&mdm).contains("com.apple.mdm"));
    }
    let (_, tokens) = s.get("/api/v1/enrollment-tokens", &admin).await;
    let labels: Vec<&str> = tokens["items"].as_array().unwrap().iter().filter_map(|t| t["label"].as_str()).collect();
    for d in &trolley {
        assert!(labels.contains(&format!("Return to Service {}", d.serial).as_str()), "{tokens}");
    }
    let (_, audit) = s.get("/api/v1/audit?action=device.return_to_service", &admin).await;
    assert_eq!(audit["items"][0]["details"]["devices"], 2, "{audit}");

    // One device, no body: warned that without Wi-Fi it only comes back on Ethernet.
    let (st, r) = s.post(&format!("/api/v1/devices/{}/return-to-service", mac.udid), &tech, json!({})).await;
    assert_eq!(assert_error(st, &r, StatusCode::UNPROCESSABLE_ENTITY), "return_to_service_refused");
    let resp = s.client.post(s.url(&format!("/api/v1/devices/{}/return-to-service", udids[0]))).bearer_auth(&tech).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let r: Value = resp.json().await.unwrap();
    assert!(r["warnings"][0].as_str().unwrap().contains("Wi-Fi"), "{r}");
    let cmd = next_erase(&s, &trolley[0]).await;
    assert!(cmd["ReturnToService"].as_dictionary().unwrap().get("WiFiProfileData").is_none());
    s.stop().await;
}
