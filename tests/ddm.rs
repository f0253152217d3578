//! Declarative Device Management end to end: a simulated iPad is turned on for DDM, fetches its
//! tokens, declaration items and declarations (each checked against Apple's schema), reports its
//! status (checked too), and the inventory and the API follow; a malformed report changes
//! nothing — on SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::{Backend, TestServer};
use lanyard_bench::sim::{Kind, SimDevice};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(an_ipad_turns_on_ddm_and_reports_its_status);

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
    assert_eq!(fetched, 4, "organisation, capabilities, status subscriptions and their activation");
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
