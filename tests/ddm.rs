//! Declarative Device Management end to end: a simulated iPad is turned on for DDM, fetches its
//! tokens, declaration items and declarations (each checked against Apple's schema), reports its
//! status (checked too), and the inventory and the API follow; a malformed report changes
//! nothing; a group's declarations reach its iPads by push (and only its iPads), conflicts are
//! reported, an OS update moves through the report and skips a device on legal hold — on
//! SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::push::PushRig;
use common::{Backend, Options, TestServer};
use lanyard_bench::sim::{Kind, SimDevice};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(an_ipad_turns_on_ddm_and_reports_its_status, a_group_change_reaches_its_ipads_and_an_os_update_moves_through_the_report);

/// A DeclarativeManagement check-in; the answer's JSON (or Null for an empty body).
async fn ddm(s: &TestServer, d: &SimDevice, endpoint: &str, data: Option<Vec<u8>>) -> (StatusCode, Value) {
    let (st, body) = s.checkin(d, d.declarative_management(endpoint, data)).await;
    (
        st,
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into()))
        },
    )
}

fn valid(s: &TestServer, mode: &str, v: &Value) {
    let file = s.dir.path().join(format!("{mode}-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, v.to_string()).unwrap();
    common::validate_plist(mode, &file).unwrap_or_else(|e| panic!("validate_plist.py {mode}: {e}\n{v}"));
}

async fn an_ipad_turns_on_ddm_and_reports_its_status(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    s.load_push_cert().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    // Its OS has DDM (iPadOS 17): Lanyard turned it on with the tokens in the command.
    let (_, cmds) = s.get(&format!("/api/v1/devices/{}/commands?limit=100", d.udid), &admin).await;
    assert!(cmds["items"].as_array().unwrap().iter().any(|c| c["request_type"] == "DeclarativeManagement"), "{cmds}");

    let (st, tokens) = ddm(&s, &d, "tokens", None).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    valid(&s, "ddm-tokens", &tokens);
    let (st, items) = ddm(&s, &d, "declaration-items", None).await;
    assert_eq!(st, StatusCode::OK, "{items}");
    valid(&s, "ddm-items", &items);
    assert_eq!(items["DeclarationsToken"], tokens["SyncTokens"]["DeclarationsToken"]);
    let mut fetched = 0;
    for (group, kind) in
        [("Activations", "activation"), ("Configurations", "configuration"), ("Assets", "asset"), ("Management", "management")]
    {
        for item in items["Declarations"][group].as_array().unwrap() {
            let id = item["Identifier"].as_str().unwrap();
            let (st, decl) = ddm(&s, &d, &format!("declaration/{kind}/{id}"), None).await;
            assert_eq!(st, StatusCode::OK, "{decl}");
            valid(&s, "declaration", &decl);
            assert_eq!(decl["ServerToken"], item["ServerToken"]);
            fetched += 1;
        }
    }
    assert_eq!(fetched, 5, "organisation, capabilities, properties, status subscriptions and their activation");
    assert_eq!(ddm(&s, &d, "declaration/configuration/nosuch", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(ddm(&s, &d, "somewhere-else", None).await.0, StatusCode::BAD_REQUEST);
    let (_, again) = ddm(&s, &d, "tokens", None).await;
    assert_eq!(again, tokens, "an unchanged set gives the same tokens and time");

    // A status report: the inventory follows at once; a failing declaration keeps its reason.
    let token_of = |id: &str| {
        ["Activations", "Configurations"]
            .iter()
            .flat_map(|g| items["Declarations"][g].as_array().unwrap().clone())
            .find(|i| i["Identifier"] == id)
            .unwrap()["ServerToken"]
            .clone()
    };
    let report = json!({"StatusItems": {
        "device": {"operating-system": {"version": "18.2", "build-version": "22C152"}, "power": {"battery-health": "normal"}},
        "passcode": {"is-present": true, "is-compliant": false},
        "softwareupdate": {"install-state": "none"},
        "management": {"declarations": {
            "activations": [{"identifier": "lanyard.activation", "server-token": token_of("lanyard.activation"), "active": true, "valid": "valid"}],
            "configurations": [{"identifier": "lanyard.status-subscriptions", "server-token": token_of("lanyard.status-subscriptions"), "active": false, "valid": "invalid",
                                "reasons": [{"code": "Error.ConfigurationCannotBeApplied", "description": "The configuration cannot be applied."}]}],
            "assets": [], "management": []}}
    }, "Errors": [], "FullReport": true});
    valid(&s, "status", &report);
    let (st, body) = ddm(&s, &d, "status", Some(report.to_string().into_bytes())).await;
    assert_eq!((st, body), (StatusCode::OK, Value::Null));
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(
        (dev["os_version"].as_str(), dev["build_version"].as_str(), dev["passcode_compliant"].as_bool()),
        (Some("18.2"), Some("22C152"), Some(false)),
        "{dev}"
    );
    let (st, view) = s.get(&format!("/api/v1/devices/{}/declarations", d.udid), &admin).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert!(view["enabled_at"].is_string() && view["requested_at"].is_string(), "{view}");
    let subs = view["declarations"].as_array().unwrap().iter().find(|x| x["identifier"] == "lanyard.status-subscriptions").unwrap();
    assert_eq!((subs["valid"].as_str(), subs["active"].as_bool()), (Some("invalid"), Some(false)), "{view}");
    assert_eq!(subs["reasons"][0], "Error.ConfigurationCannotBeApplied: The configuration cannot be applied.");
    let item = |name: &str| view["status"].as_array().unwrap().iter().find(|x| x["item"] == name).map(|x| x["value"].clone());
    assert_eq!(item("device.power.battery-health"), Some(json!("normal")));
    assert_eq!(item("softwareupdate.install-state"), Some(json!("none")));

    // Malformed: 400, nothing changes. An item Lanyard does not know is kept, not refused.
    for bad in [&b"{\"StatusItems\": 7}"[..], b"not json", b"[]"] {
        assert_eq!(ddm(&s, &d, "status", Some(bad.to_vec())).await.0, StatusCode::BAD_REQUEST);
    }
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.udid), &admin).await;
    assert_eq!(dev["os_version"], "18.2");
    let odd = json!({"StatusItems": {"vendor": {"something-new": 42}}, "Errors": []});
    assert_eq!(ddm(&s, &d, "status", Some(odd.to_string().into_bytes())).await.0, StatusCode::OK);
    let (_, view) = s.get(&format!("/api/v1/devices/{}/declarations", d.udid), &admin).await;
    assert!(view["status"].as_array().unwrap().iter().any(|x| x["item"] == "vendor.something-new" && x["value"] == 42), "{view}");

    // Another device's identity cannot speak for it.
    let other = s.enrolled_device(Kind::SupervisedIpad).await;
    let mut forged = SimDevice::new(Kind::SupervisedIpad, common::device::TOPIC, other.cert.clone(), other.key.clone());
    forged.udid = d.udid.clone();
    assert_eq!(ddm(&s, &forged, "tokens", None).await.0, StatusCode::FORBIDDEN);
    s.stop().await;
}

/// Every declaration the device's items list, fetched and checked against Apple's schema:
/// identifier -> document.
async fn sync(s: &TestServer, d: &SimDevice) -> (Value, std::collections::BTreeMap<String, Value>) {
    let (st, tokens) = ddm(s, d, "tokens", None).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    let (_, items) = ddm(s, d, "declaration-items", None).await;
    valid(s, "ddm-items", &items);
    let mut out = std::collections::BTreeMap::new();
    for (group, kind) in
        [("Activations", "activation"), ("Configurations", "configuration"), ("Assets", "asset"), ("Management", "management")]
    {
        for item in items["Declarations"][group].as_array().unwrap() {
            let id = item["Identifier"].as_str().unwrap();
            let (st, decl) = ddm(s, d, &format!("declaration/{kind}/{id}"), None).await;
            assert_eq!(st, StatusCode::OK, "{decl}");
            valid(s, "declaration", &decl);
            out.insert(id.to_owned(), decl);
        }
    }
    (tokens, out)
}

/// The `DeclarativeManagement` commands waiting for a device, as their SyncTokens.
async fn pending_ddm_commands(s: &TestServer, d: &SimDevice) -> Vec<Value> {
    let mut out = Vec::new();
    let (_, mut next) = s.connect(d, d.idle()).await;
    while !next.is_empty() {
        let (uuid, rt, cmd) = SimDevice::read_command(&next).unwrap();
        if rt == "DeclarativeManagement" {
            let data = cmd.get("Data").and_then(plist::Value::as_data).expect("the command carries its tokens");
            out.push(serde_json::from_slice(data).unwrap());
        }
        let report = d.report("Acknowledged", &uuid, plist::Dictionary::new());
        next = s.connect(d, report).await.1;
    }
    out
}

async fn status(s: &TestServer, d: &SimDevice, items: Value) {
    let report = json!({"StatusItems": items, "Errors": []});
    valid(s, "status", &report);
    let (st, body) = ddm(s, d, "status", Some(report.to_string().into_bytes())).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

/// The report's row for this device under the first update.
async fn report_row(s: &TestServer, tok: &str, udid: &str) -> Value {
    let (st, r) = s.get("/api/v1/os-updates/report", tok).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    r["updates"][0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["udid"] == udid)
        .cloned()
        .unwrap_or_else(|| panic!("{udid} not in {r}"))
}

async fn a_group_change_reaches_its_ipads_and_an_os_update_moves_through_the_report(b: Backend) {
    let rig = PushRig::start().await;
    let s = rig.server(b, Options::default()).await;
    let admin = s.admin().await;
    let tech = s.operator("tech", "technician").await;
    let dsl = s.operator("dsl", "dsl").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let other = s.enrolled_device(Kind::SupervisedIpad).await;
    let old = s.enrolled_device(Kind::SupervisedIpad).await;
    for dev in [&d, &other, &old] {
        sync(&s, dev).await;
    }
    // The old iPad says, by DDM, that it runs iPadOS 16: DDM yes, OS updates by deadline no.
    status(&s, &old, json!({"device": {"operating-system": {"version": "16.7.8", "build-version": "20H343"}}})).await;

    let (st, g) = s.post("/api/v1/groups", &tech, json!({"name": "Year 5 iPads", "kind": "static"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let (st, m) = s.post(&format!("/api/v1/groups/{gid}/members"), &tech, json!({"udids": [d.udid, old.udid]})).await;
    assert!(st.is_success(), "{m}");
    for dev in [&d, &other, &old] {
        pending_ddm_commands(&s, dev).await;
    }
    rig.mock.clear_received();
    let (before, _) = sync(&s, &d).await;
    let (other_before, _) = sync(&s, &other).await;

    // A declaration Apple's schema refuses: 422 naming the key, nothing stored.
    let path = format!("/api/v1/groups/{gid}/declarations");
    let bad = json!({"declarations": [{"type": "com.apple.configuration.passcode.settings", "identifier": "y5.passcode", "payload": {"MinimumLength": "six"}}]});
    let (st, e) = s.call(Method::PUT, &path, Some(&tech), Some(bad)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "declarations[0].payload.MinimumLength", "{e}");
    let (_, set) = s.get(&path, &tech).await;
    assert_eq!(set["declarations"], json!([]), "{set}");
    let auditor = s.operator("auditor", "auditor").await;
    let (st, _) = s.call(Method::PUT, &path, Some(&auditor), Some(json!({"declarations": []}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Passcode and software-update settings for the group: its iPads are re-tokened and pushed.
    let body = json!({"declarations": [
        {"type": "com.apple.configuration.passcode.settings", "identifier": "y5.passcode", "payload": {"MinimumLength": 6}},
        {"type": "com.apple.configuration.softwareupdate.settings", "identifier": "y5.updates",
         "payload": {"Notifications": true, "Deferrals": {"CombinedPeriodInDays": 14}, "Beta": {"ProgramEnrollment": "AlwaysOff"}}}
    ]});
    let (st, put) = s.call(Method::PUT, &path, Some(&tech), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{put}");
    assert_eq!((put["resync"]["devices"].as_u64(), put["resync"]["retokened"].as_u64()), (Some(2), Some(2)), "{put}");
    let token_hex = hex::encode(&d.push_token);
    let mut pushed = false;
    for _ in 0..50 {
        if rig.mock.received().iter().any(|p| p.token_hex == token_hex) {
            pushed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pushed, "the group's iPad was pushed");
    assert!(!rig.mock.received().iter().any(|p| p.token_hex == hex::encode(&other.push_token)), "a device outside the group is not");
    let cmds = pending_ddm_commands(&s, &d).await;
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    let (after, decls) = sync(&s, &d).await;
    assert_ne!(after["SyncTokens"]["DeclarationsToken"], before["SyncTokens"]["DeclarationsToken"]);
    assert_eq!(cmds[0]["SyncTokens"]["DeclarationsToken"], after["SyncTokens"]["DeclarationsToken"], "the command carries the new token");
    assert_eq!(decls["y5.passcode"]["Payload"]["MinimumLength"], 6);
    let activation = &decls[&format!("lanyard.group.{gid}")];
    assert_eq!(activation["Payload"]["StandardConfigurations"], json!(["y5.passcode", "y5.updates"]));
    assert!(pending_ddm_commands(&s, &other).await.is_empty(), "a device outside the group gets no command");
    assert_eq!(sync(&s, &other).await.0, other_before, "and keeps its tokens");
    let (_, audit) = s.get("/api/v1/audit?action=group.declarations.set", &admin).await;
    assert_eq!(audit["items"][0]["details"]["added"], json!(["y5.passcode", "y5.updates"]), "{audit}");

    // A second group of the same iPad disagrees about y5.passcode: reported, withheld.
    let (_, g2) = s.post("/api/v1/groups", &tech, json!({"name": "Staff-managed", "kind": "static"})).await;
    let gid2 = g2["id"].as_str().unwrap().to_owned();
    let clash = json!({"declarations": [{"type": "com.apple.configuration.passcode.settings", "identifier": "y5.passcode", "payload": {"MinimumLength": 8}}]});
    let (st, _) = s.call(Method::PUT, &format!("/api/v1/groups/{gid2}/declarations"), Some(&tech), Some(clash)).await;
    assert_eq!(st, StatusCode::OK);
    s.post(&format!("/api/v1/groups/{gid2}/members"), &tech, json!({"udids": [d.udid]})).await;
    let (_, view) = s.get(&format!("/api/v1/devices/{}/declarations", d.udid), &tech).await;
    assert_eq!(view["conflicts"][0]["identifier"], "y5.passcode", "{view}");
    assert!(!view["declarations"].as_array().unwrap().iter().any(|x| x["identifier"] == "y5.passcode"), "{view}");
    let (_, set) = s.get(&path, &tech).await;
    assert_eq!(set["conflicts"][0]["identifier"], "y5.passcode", "{set}");
    let (st, _) = s.call(Method::DELETE, &format!("/api/v1/groups/{gid2}/members/{}", d.udid), Some(&tech), None).await;
    assert!(st.is_success());
    let (_, view) = s.get(&format!("/api/v1/devices/{}/declarations", d.udid), &tech).await;
    assert_eq!(view["conflicts"], json!([]), "{view}");
    assert_eq!(pending_ddm_commands(&s, &d).await.len(), 2, "joining the clashing group changed its set, and leaving it");

    // A failing declaration shows its reason.
    let (_, decls) = sync(&s, &d).await;
    status(
        &s,
        &d,
        json!({"management": {"declarations": {"configurations": [
        {"identifier": "y5.updates", "server-token": decls["y5.updates"]["ServerToken"], "active": false, "valid": "invalid",
         "reasons": [{"code": "Error.ConfigurationCannotBeApplied", "description": "Deferrals need a supervised device."}]}]}}}),
    )
    .await;
    let (_, view) = s.get(&format!("/api/v1/devices/{}/declarations", d.udid), &tech).await;
    let upd = view["declarations"].as_array().unwrap().iter().find(|x| x["identifier"] == "y5.updates").unwrap();
    assert_eq!(
        (upd["valid"].as_str(), upd["reasons"][0].as_str()),
        (Some("invalid"), Some("Error.ConfigurationCannotBeApplied: Deferrals need a supervised device."))
    );

    // An OS update: a deadline in lessons is refused with one outside them offered.
    let periods: Vec<Value> = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        .iter()
        .map(|d| json!({"name": "School day", "weekday": d, "start": "09:00", "end": "15:00"}))
        .collect();
    let (st, t) = s.call(Method::PUT, "/api/v1/timetable", Some(&admin), Some(json!({"timezone": "UTC", "periods": periods}))).await;
    assert!(st.is_success(), "{t}");
    let tomorrow = (s.ctx.now() + chrono::Duration::days(1)).date_naive();
    let in_lessons = format!("{tomorrow}T10:30");
    let ask = json!({"group_id": gid, "target_os_version": "18.2", "deadline": in_lessons});
    let (st, e) = s.post("/api/v1/os-updates", &tech, ask).await;
    assert_eq!((st, e["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("deadline_in_lessons")), "{e}");
    assert_eq!(e["suggested_deadline"], format!("{tomorrow}T15:00:00"));
    let (st, e) = s.post("/api/v1/os-updates", &tech, json!({"group_id": gid, "target_os_version": "eighteen"})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("target_os_version")), "{e}");
    let ask = json!({"group_id": gid, "target_os_version": "18.2", "target_build_version": "22C152", "deadline": format!("{tomorrow}T15:00"), "details_url": "https://example.sch.uk/ipad-update"});
    let (st, u) = s.post("/api/v1/os-updates", &tech, ask).await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    assert_eq!(u["deadline"], format!("{tomorrow}T15:00:00"));
    let uid = u["id"].as_str().unwrap().to_owned();
    assert_eq!(pending_ddm_commands(&s, &d).await.len(), 1, "the update reaches the iPad");
    let (_, decls) = sync(&s, &d).await;
    let enforcement = &decls[u["declaration_identifier"].as_str().unwrap()];
    assert_eq!(enforcement["Type"], "com.apple.configuration.softwareupdate.enforcement.specific");
    assert_eq!(enforcement["Payload"]["TargetLocalDateTime"], format!("{tomorrow}T15:00:00"));

    // Its state moves through the report, from the device's own reports.
    assert_eq!(report_row(&s, &tech, &d.udid).await["state"], "pending");
    assert_eq!(report_row(&s, &tech, &old.udid).await["state"], "not_ddm_capable");
    assert!(report_row(&s, &tech, &old.udid).await["note"].as_str().unwrap().contains("needs iPadOS 17.0"));
    status(
        &s,
        &d,
        json!({"softwareupdate": {"install-state": "downloading", "pending-version": {"os-version": "18.2", "build-version": "22C152"}}}),
    )
    .await;
    let row = report_row(&s, &tech, &d.udid).await;
    assert_eq!((row["state"].as_str(), row["pending_version"].as_str()), (Some("downloading"), Some("18.2")), "{row}");
    status(&s, &d, json!({"softwareupdate": {"install-state": "failed", "failure-reason": {"count": 1, "reason": "Not enough free space", "timestamp": "2026-12-08T16:00:00Z"}}})).await;
    let row = report_row(&s, &tech, &d.udid).await;
    assert_eq!((row["state"].as_str(), row["failure_reason"].as_str()), (Some("failed"), Some("Not enough free space")), "{row}");
    status(&s, &d, json!({"device": {"operating-system": {"version": "18.2", "build-version": "22C152"}}, "softwareupdate": {"install-state": "none"}})).await;
    assert_eq!(report_row(&s, &tech, &d.udid).await["state"], "on_target");
    let (st, csv) = s.call(Method::GET, "/api/v1/os-updates/report?format=csv", Some(&tech), None).await;
    assert_eq!(st, StatusCode::OK);
    let csv = csv.as_str().unwrap_or_default().to_owned();
    assert!(csv.starts_with("update_id,group,target_os_version"), "{csv}");
    assert!(csv.contains(&format!("{},Year 5 iPads,18.2", uid)) && csv.contains("on_target"), "{csv}");

    // On legal hold: the update leaves the device, the report says held; the case only to the DSL.
    let (st, case) = s
        .post("/api/v1/cases", &dsl, json!({"kind": "iioc", "summary": "Concern raised by class teacher", "justification": "Reported under the IIOC procedure, section 11"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{case}");
    let (st, q) = s
        .post(
            &format!("/api/v1/cases/{}/devices", case["id"].as_str().unwrap()),
            &dsl,
            json!({"udid": old.udid, "justification": "Device may hold indecent images: quarantine until police advice", "phone_number": "01234 567890"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    let (_, view) = s.get(&format!("/api/v1/devices/{}/declarations", old.udid), &dsl).await;
    assert_eq!(view["withheld_os_updates"], json!([uid]), "{view}");
    assert!(
        !view["declarations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["type"] == "com.apple.configuration.softwareupdate.enforcement.specific")
    );
    let held = report_row(&s, &dsl, &old.udid).await;
    assert_eq!((held["state"].as_str(), held["case_id"].as_str()), (Some("held"), case["id"].as_str()), "{held}");
    let held = report_row(&s, &tech, &old.udid).await;
    assert_eq!(held["state"], "held");
    assert!(held.get("case_id").is_none(), "a technician does not see the case: {held}");

    // Cancelled: the declaration leaves the group's devices; the update stays listed as cancelled.
    let (st, c) = s.call(Method::DELETE, &format!("/api/v1/os-updates/{uid}"), Some(&tech), None).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert!(c["cancelled_at"].is_string());
    let (st, _) = s.call(Method::DELETE, &format!("/api/v1/os-updates/{uid}"), Some(&tech), None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, decls) = sync(&s, &d).await;
    assert!(!decls.values().any(|x| x["Type"] == "com.apple.configuration.softwareupdate.enforcement.specific"));
    let (_, list) = s.get("/api/v1/os-updates?include_cancelled=true", &tech).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = s.get("/api/v1/os-updates", &tech).await;
    assert_eq!(list, json!([]));
    s.stop().await;
}
