//! Safeguarding end to end against the real server with simulated devices: quarantine per
//! platform with sealed evidence, legal hold on every path and for every role, two-person
//! release and disposal, CheckOut during hold, the custody log, and who may see cases.

#[macro_use]
mod common;

use common::{Backend, TestServer, assert_error};
use lanyard_bench::sim::{Kind, SimDevice};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    quarantine_locks_each_platform_and_seals_evidence,
    legal_hold_refuses_every_forbidden_action,
    release_takes_two_people,
    checkout_during_hold_is_flagged,
    cases_are_for_safeguarding_roles_only,
    disposal_is_asked_like_a_release,
);

fn today(s: &TestServer) -> String {
    s.ctx.now().date_naive().to_string()
}

async fn open_case(s: &TestServer, tok: &str, kind: &str) -> Value {
    let (st, c) = s
        .post("/api/v1/cases", tok, json!({"kind": kind, "summary": "Concern raised by class teacher", "justification": "Reported under the IIOC procedure, section 11"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    c
}

async fn quarantine(s: &TestServer, tok: &str, case: &Value, udid: &str) -> Value {
    let (st, q) = s
        .post(
            &format!("/api/v1/cases/{}/devices", case["id"].as_str().unwrap()),
            tok,
            json!({"udid": udid, "justification": "Device may hold indecent images: quarantine until police advice", "phone_number": "01234 567890"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    q
}

/// Answer every queued command; return (request type, exact report body) for each.
async fn answer_all(s: &TestServer, d: &SimDevice) -> Vec<(String, Vec<u8>)> {
    let mut sent = Vec::new();
    let (_, mut next) = s.connect(d, d.idle()).await;
    while !next.is_empty() {
        let (_, rt, report) = d.answer(&next).unwrap();
        sent.push((rt, report.clone()));
        next = s.connect(d, report).await.1;
    }
    sent
}

fn types(q: &Value) -> Vec<String> {
    q["commands"].as_array().unwrap().iter().map(|c| c["request_type"].as_str().unwrap().to_owned()).collect()
}

async fn quarantine_locks_each_platform_and_seals_evidence(b: Backend) {
    let s = TestServer::start(b).await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let loose = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let case = open_case(&s, &dsl, "iioc").await;
    assert_eq!((case["state"].as_str(), case["kind"].as_str()), (Some("open"), Some("iioc")));
    let evidence = ["DeviceInformation", "SecurityInfo", "InstalledApplicationList", "ProfileList", "CertificateList"];

    let q = quarantine(&s, &dsl, &case, &ipad.udid).await;
    assert_eq!(q["method"], "lost_mode");
    let mut want = vec!["EnableLostMode".to_string()];
    want.extend(evidence.iter().map(|s| s.to_string()));
    want.push("DeviceLocation".into());
    assert_eq!(types(&q), want);
    assert_eq!(q["evidence_requested"].as_array().unwrap().len(), 6);

    let q2 = quarantine(&s, &dsl, &case, &loose.udid).await;
    assert_eq!(q2["method"], "device_lock");
    assert_eq!(types(&q2)[0], "DeviceLock");
    assert!(!types(&q2).contains(&"DeviceLocation".to_string()));
    // The hold refuses ClearPasscode first, before "no unlock token" (this iPad has none).
    let admin = s.admin().await;
    let (st, e) = s.post(&format!("/api/v1/devices/{}/commands", loose.udid), &admin, json!({"request_type": "ClearPasscode"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold", "{e}");

    let q3 = quarantine(&s, &dsl, &case, &mac.udid).await;
    assert_eq!(q3["method"], "mac_lock");
    assert_eq!(types(&q3)[0], "DeviceLock");

    // The devices obey; the Mac's lock carries a 6-digit PIN that only a justified request reveals.
    let (_, lock) = s.connect(&mac, mac.idle()).await;
    let (_, rt, cmd) = SimDevice::read_command(&lock).unwrap();
    assert_eq!(rt, "DeviceLock");
    let pin = cmd["PIN"].as_string().unwrap().to_owned();
    assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()));
    let (st, body) = s.get(&format!("/api/v1/devices/{}/lock-pin", mac.udid), &dsl).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")));
    let (st, body) =
        s.get(&format!("/api/v1/devices/{}/lock-pin?justification=Police%20asked%20to%20examine%20the%20Mac", mac.udid), &dsl).await;
    assert_eq!((st, body["pin"].as_str()), (StatusCode::OK, Some(pin.as_str())));
    let (_, _, ack) = mac.answer(&lock).unwrap();
    s.connect(&mac, ack).await;

    let ipad_sent = answer_all(&s, &ipad).await;
    assert_eq!(ipad_sent.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), want);
    answer_all(&s, &loose).await;
    answer_all(&s, &mac).await;

    // Evidence: each item stored as received, with the SHA-256 of exactly those bytes.
    let case_id = case["id"].as_str().unwrap();
    let (_, items) = s.get(&format!("/api/v1/cases/{case_id}/evidence"), &dsl).await;
    let items = items["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 6 + 5 + 5);
    for (rt, body) in ipad_sent.iter().filter(|(t, _)| t != "EnableLostMode") {
        let item = items.iter().find(|i| i["udid"] == ipad.udid.as_str() && i["request_type"] == rt.as_str()).unwrap();
        assert_eq!(item["sha256"].as_str().unwrap(), hex::encode(openssl::sha::sha256(body)), "{rt}");
        assert!(item["received_at"].is_string());
    }
    let item = items.iter().find(|i| i["udid"] == ipad.udid.as_str() && i["request_type"] == "InstalledApplicationList").unwrap();
    let url = format!("/api/v1/cases/{case_id}/evidence/{}", item["id"].as_str().unwrap());
    let (st, body) = s.get(&url, &dsl).await;
    assert_eq!((st, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")), "viewing needs a reason");
    let resp = s.client.get(s.url(&format!("{url}?justification=Requested%20by%20PC%20Smith"))).bearer_auth(&dsl).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let raw = resp.bytes().await.unwrap();
    assert_eq!(hex::encode(openssl::sha::sha256(&raw)), item["sha256"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&raw).contains("com.apple.Keynote"));

    // The case shows each command acknowledged.
    let (_, c) = s.get(&format!("/api/v1/cases/{case_id}"), &dsl).await;
    let dev = c["devices"].as_array().unwrap().iter().find(|d| d["udid"] == ipad.udid.as_str()).unwrap().clone();
    assert!(dev["commands"].as_array().unwrap().iter().all(|c| c["status"] == "acknowledged"), "{dev}");
    assert_eq!(dev["state"], "held");

    // The custody log lists every step in order, with the hashes; HTML and PDF for printing.
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let kinds: Vec<&str> = log["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "created");
    for k in [
        "device_quarantined",
        "command_queued",
        "command_sent",
        "command_acknowledged",
        "evidence_received",
        "lock_pin_revealed",
        "evidence_viewed",
        "viewed",
        "custody_viewed",
    ] {
        assert!(kinds.contains(&k), "custody log lacks {k}: {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "evidence_received").count(), 16);
    let seqs: Vec<i64> = log["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let html = s
        .client
        .get(s.url(&format!("/api/v1/cases/{case_id}/custody?format=html")))
        .bearer_auth(&dsl)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Chain of custody") && html.contains(item["sha256"].as_str().unwrap()));
    let pdf = s.client.get(s.url(&format!("/api/v1/cases/{case_id}/custody.pdf"))).bearer_auth(&dsl).send().await.unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    // The PDF's text (poppler's pdftotext reads it) holds the hash; tests/custody_pdf.rs checks more.
    let path = s.dir.path().join("custody.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let text = std::process::Command::new("pdftotext").arg(&path).arg("-").output().expect("pdftotext (poppler-utils) is installed");
    assert!(String::from_utf8_lossy(&text.stdout).contains(item["sha256"].as_str().unwrap()));

    // Governors' report: counts only.
    let auditor = s.operator("governor", "auditor").await;
    let (st, r) = s.get("/api/v1/cases/report", &auditor).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((r["open_cases"].as_i64(), r["devices_on_hold"].as_i64()), (Some(1), Some(3)));
    assert_eq!(r["by_kind_and_month"][0]["kind"], "iioc");
    assert!(!r.to_string().contains("Concern raised"), "no case text in the report");
    s.stop().await;
}

async fn legal_hold_refuses_every_forbidden_action(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let tech = s.operator("tess", "technician").await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let other = s.enrolled_device(Kind::SupervisedIpad).await;
    let case = open_case(&s, &dsl, "iioc").await;
    let case_id = case["id"].as_str().unwrap().to_owned();
    quarantine(&s, &dsl, &case, &d.udid).await;
    answer_all(&s, &d).await;

    let cmd_url = format!("/api/v1/devices/{}/commands", d.udid);
    let forbidden = [
        json!({"request_type": "EraseDevice"}),
        json!({"request_type": "ClearPasscode"}),
        json!({"request_type": "ClearPasscode", "UnlockToken": "dW5sb2Nr"}),
        json!({"request_type": "DisableLostMode"}),
        json!({"request_type": "RemoveProfile", "Identifier": "example.school.mdm.lanyard.enrollment"}),
    ];
    for who in [&admin, &tech] {
        for body in &forbidden {
            let (st, e) = s.post(&cmd_url, who, body.clone()).await;
            assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold", "{body}");
            assert_eq!(e["case_id"], case_id.as_str());
            assert_eq!(e["error"], format!("device is on legal hold under case {case_id}"));
        }
    }
    // A bulk command including it is refused whole: nothing is queued for the other device either.
    let (st, e) =
        s.post("/api/v1/commands", &admin, json!({"targets": [other.udid, d.udid], "command": {"request_type": "EraseDevice"}})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    assert!(s.connect(&other, other.idle()).await.1.is_empty());
    // Return to Service, alone or in a trolley (which names it and queues nothing), and its
    // Activation Lock bypass code.
    let (st, e) = s.post(&format!("/api/v1/devices/{}/return-to-service", d.udid), &tech, json!({})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    let (st, e) = s.post("/api/v1/devices/return-to-service", &tech, json!({"udids": [other.udid, d.udid]})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    assert_eq!(e["devices_on_hold"], json!([d.udid]), "{e}");
    assert!(s.connect(&other, other.idle()).await.1.is_empty());
    let (st, e) =
        s.get(&format!("/api/v1/devices/{}/activation-lock-bypass?justification=re-issuing%20to%20Year%204", d.udid), &admin).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    // Deleting the device record, and reassigning it in the register.
    let (st, e) = s.call(Method::DELETE, &format!("/api/v1/devices/{}", d.udid), Some(&admin), None).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold");
    let staff_aup = {
        let (st, a) = s
            .post(
                "/api/v1/aups",
                &admin,
                json!({"audience": "staff", "title": "Staff AUP", "text": "I will...", "effective_date": today(&s)}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        a
    };
    let (_, p) = s.post("/api/v1/people", &admin, json!({"kind": "staff", "name": "Mr Teacher"})).await;
    s.post("/api/v1/signatures", &admin, json!({"person_id": p["id"], "aup_id": staff_aup["id"], "method": "paper"})).await;
    s.post(
        "/api/v1/grants",
        &admin,
        json!({"person_id": p["id"], "udid": d.udid, "from": s.ctx.now().to_rfc3339(), "reason": "class teacher"}),
    )
    .await;
    let (st, e) = s.post("/api/v1/assignments", &admin, json!({"person_id": p["id"], "udid": d.udid})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "legal_hold", "{e}");
    // Allowed things still work: reading, and harmless commands.
    assert_eq!(s.post(&cmd_url, &tech, json!({"request_type": "DeviceInformation", "Queries": ["UDID"]})).await.0, StatusCode::CREATED);
    let (st, _) = s.call(Method::DELETE, &format!("/api/v1/devices/{}", other.udid), Some(&admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "a device not on hold can be retired");

    // Every refusal is audited and on the case's custody log.
    let (_, audit) = s.get("/api/v1/audit?action=legal_hold.refused&limit=100", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2 * forbidden.len() + 1 + 3 + 1 + 1, "{audit}");
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let refused = log["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "refused").count();
    assert_eq!(refused, 2 * forbidden.len() + 3 + 3);
    s.stop().await;
}

async fn release_takes_two_people(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let head = s.operator("head.smith", "headteacher").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    // Someone holds the device under a grant, which quarantine suspends.
    let (_, aup) = s
        .post("/api/v1/aups", &admin, json!({"audience": "staff", "title": "Staff AUP", "text": "I will...", "effective_date": today(&s)}))
        .await;
    let (_, p) = s.post("/api/v1/people", &admin, json!({"kind": "staff", "name": "Mrs Holder"})).await;
    s.post("/api/v1/signatures", &admin, json!({"person_id": p["id"], "aup_id": aup["id"], "method": "paper"})).await;
    let (st, g) = s
        .post(
            "/api/v1/grants",
            &admin,
            json!({"person_id": p["id"], "udid": d.udid, "from": s.ctx.now().to_rfc3339(), "reason": "teaching iPad"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let (st, a) = s.post("/api/v1/assignments", &admin, json!({"person_id": p["id"], "udid": d.udid})).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");

    let case = open_case(&s, &dsl, "youth_produced_imagery").await;
    let case_id = case["id"].as_str().unwrap().to_owned();
    let q = quarantine(&s, &dsl, &case, &d.udid).await;
    assert_eq!(q["grants_suspended"], 1);
    let (_, holders) = s.get(&format!("/api/v1/devices/{}/holders", d.udid), &admin).await;
    assert!(holders["access"].as_array().unwrap().iter().all(|a| !a["revoked_at"].is_null()), "access blocked: {holders}");
    answer_all(&s, &d).await;

    // The DSL asks; the same DSL cannot approve; an admin is not a second signatory.
    let (st, req) = s
        .post(
            &format!("/api/v1/cases/{case_id}/release-requests"),
            &dsl,
            json!({"justification": "Police advise no further action", "advice_reference": "Kent Police ref 46/12345/26", "restore_access": true}),
        )
        .await;
    assert_eq!((st, req["state"].as_str()), (StatusCode::CREATED, Some("pending")), "{req}");
    let rid = req["id"].as_str().unwrap();
    let (st, e) = s.post(&format!("/api/v1/release-requests/{rid}/approve"), &dsl, json!({"justification": "I agree with myself"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "second_person_required");
    let (st, _) = s.post(&format!("/api/v1/release-requests/{rid}/approve"), &admin, json!({"justification": "ok"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, e) = s.post(&format!("/api/v1/release-requests/{rid}/approve"), &head, json!({"justification": ""})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")));
    // Still on hold.
    let (st, _) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "DisableLostMode"})).await;
    assert_eq!(st, StatusCode::CONFLICT);

    // The headteacher approves: DisableLostMode is queued, access restored, hold lifted, case closed.
    let (st, r) = s
        .post(&format!("/api/v1/release-requests/{rid}/approve"), &head, json!({"justification": "Police advice received and recorded"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "approved");
    assert_eq!(r["case_state"], "closed");
    assert_eq!(r["commands"][0]["request_type"], "DisableLostMode");
    assert_eq!(r["access_restored"].as_array().unwrap().len(), 1, "{r}");
    let (_, next) = s.connect(&d, d.idle()).await;
    assert_eq!(SimDevice::read_command(&next).unwrap().1, "DisableLostMode");
    let (_, c) = s.get(&format!("/api/v1/cases/{case_id}"), &dsl).await;
    assert_eq!(c["state"], "closed");
    let (st, _) = s.post(&format!("/api/v1/devices/{}/commands", d.udid), &admin, json!({"request_type": "RestartDevice"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s.post(&format!("/api/v1/release-requests/{rid}/approve"), &head, json!({"justification": "again"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "decided once");

    // Evidence stays until a separate two-person disposal.
    let (_, items) = s.get(&format!("/api/v1/cases/{case_id}/evidence"), &dsl).await;
    assert!(items["items"].as_array().unwrap().iter().all(|i| i["disposed_at"].is_null() && i["bytes"].as_u64().unwrap_or(0) > 0));
    let (st, dr) = s
        .post(
            &format!("/api/v1/cases/{case_id}/evidence/dispose-requests"),
            &dsl,
            json!({"justification": "No longer needed", "advice_reference": "Kent Police ref 46/12345/26", "confirmation": "DC Jones (Kent Police) confirmed by phone on 1 March that no copy is needed"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{dr}");
    let did = dr["id"].as_str().unwrap();
    let (st, e) = s.post(&format!("/api/v1/dispose-requests/{did}/approve"), &dsl, json!({"justification": "me again"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "second_person_required");
    let (st, r) = s
        .post(
            &format!("/api/v1/cases/{case_id}/evidence/dispose-requests/{did}/approve"),
            &head,
            json!({"justification": "Confirmed with police"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, items) = s.get(&format!("/api/v1/cases/{case_id}/evidence"), &dsl).await;
    assert!(items["items"].as_array().unwrap().iter().all(|i| !i["disposed_at"].is_null() && !i["sha256"].is_null()), "hashes kept");
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let kinds: Vec<&str> = log["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in [
        "release_requested",
        "release_approved",
        "device_released",
        "access_restored",
        "case_closed",
        "disposal_requested",
        "disposal_approved",
        "evidence_disposed",
    ] {
        assert!(kinds.contains(&k), "custody log lacks {k}: {kinds:?}");
    }
    s.stop().await;
}

async fn checkout_during_hold_is_flagged(b: Backend) {
    let s = TestServer::start(b).await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let case = open_case(&s, &dsl, "iioc").await;
    quarantine(&s, &dsl, &case, &d.udid).await;
    // Someone wipes the iPad by hand: it checks out.
    assert_eq!(s.checkin(&d, d.check_out()).await.0, StatusCode::OK);
    let case_id = case["id"].as_str().unwrap();
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let alert =
        log["events"].as_array().unwrap().iter().find(|e| e["kind"] == "checkout_during_hold").cloned().expect("flagged on the case");
    assert!(alert["detail"]["alert"].as_str().unwrap().contains("wiped"));
    let (_, n) = s.get("/api/v1/notifications", &dsl).await;
    assert_eq!(n["items"][0]["kind"], "checkout_during_hold");
    let admin = s.admin().await;
    let (_, audit) = s.get("/api/v1/audit?action=legal_hold.checkout", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn cases_are_for_safeguarding_roles_only(b: Backend) {
    let s = TestServer::start(b).await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let head = s.operator("head.smith", "headteacher").await;
    let tech = s.operator("tess", "technician").await;
    let auditor = s.operator("gov", "auditor").await;
    let admin = s.admin().await;
    // A case about a member of staff notifies the headteacher.
    let (_, staff) = s.post("/api/v1/people", &admin, json!({"kind": "staff", "name": "Mr Suspect"})).await;
    let (st, case) = s
        .post(
            "/api/v1/cases",
            &dsl,
            json!({"kind": "iioc", "summary": "s", "justification": "j", "people": [staff["id"]], "police_reference": "46/1/26"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{case}");
    assert_eq!(case["involves_staff"], true);
    assert_eq!(case["references"]["police_reference"], "46/1/26");
    let (_, n) = s.get("/api/v1/notifications", &head).await;
    assert_eq!(n["items"][0]["kind"], "staff_case");
    let id = case["id"].as_str().unwrap();
    for tok in [&tech, &auditor] {
        assert_eq!(s.get("/api/v1/cases", tok).await.0, StatusCode::FORBIDDEN);
        assert_eq!(s.get(&format!("/api/v1/cases/{id}"), tok).await.0, StatusCode::FORBIDDEN);
        assert_eq!(s.get(&format!("/api/v1/cases/{id}/custody"), tok).await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            s.post("/api/v1/cases", tok, json!({"kind": "other", "summary": "s", "justification": "j"})).await.0,
            StatusCode::FORBIDDEN
        );
    }
    for tok in [&dsl, &head, &admin] {
        assert_eq!(s.get(&format!("/api/v1/cases/{id}"), tok).await.0, StatusCode::OK);
    }
    let (st, e) = s.post("/api/v1/cases", &dsl, json!({"kind": "gossip", "summary": "s", "justification": "j"})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("kind")));
    let (st, e) = s.post("/api/v1/cases", &dsl, json!({"kind": "other", "summary": "s", "justification": " "})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("justification")));
    // Actions are appended with who, when and why; reads are logged.
    let (st, a) = s
        .post(
            &format!("/api/v1/cases/{id}/actions"),
            &head,
            json!({"kind": "police_contact", "text": "Rang 101, ref 46/1/26", "justification": "Policy 11.4"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (_, log) = s.get(&format!("/api/v1/cases/{id}/custody"), &dsl).await;
    let events = log["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "action" && e["actor"] == "operator:head.smith" && e["justification"] == "Policy 11.4"));
    assert_eq!(events.iter().filter(|e| e["kind"] == "viewed").count(), 3);
    assert!(events.iter().any(|e| e["kind"] == "headteacher_notified"));
    // The audit log says a case exists, never what it is about.
    let (_, audit) = s.get("/api/v1/audit?action=case.open", &admin).await;
    assert!(!audit.to_string().contains("Mr Suspect") && !audit.to_string().contains("46/1/26"));
    s.stop().await;
}

/// Issue 16, defect 2: a disposal request takes a release request's fields (`justification`,
/// `advice_reference`: the advice that other agencies no longer need the evidence), the advice
/// is required and named when missing, `confirmation` is optional, and approval takes two people.
async fn disposal_is_asked_like_a_release(b: Backend) {
    let s = TestServer::start(b).await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let head = s.operator("head.smith", "headteacher").await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let case = open_case(&s, &dsl, "iioc").await;
    let case_id = case["id"].as_str().unwrap().to_owned();
    quarantine(&s, &dsl, &case, &d.udid).await;
    answer_all(&s, &d).await;
    let (st, rel) = s
        .post(
            &format!("/api/v1/cases/{case_id}/release-requests"),
            &dsl,
            json!({"justification": "Police advise no further action", "advice_reference": "Kent Police ref 46/12345/26"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rel}");
    let (st, r) = s
        .post(&format!("/api/v1/release-requests/{}/approve", rel["id"].as_str().unwrap()), &head, json!({"justification": "Agreed"}))
        .await;
    assert_eq!((st, r["case_state"].as_str()), (StatusCode::OK, Some("closed")), "{r}");

    let url = format!("/api/v1/cases/{case_id}/evidence/dispose-requests");
    // The agencies' advice is required, and the refusal names it.
    let (st, e) = s.post(&url, &dsl, json!({"justification": "Retention period over"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::UNPROCESSABLE_ENTITY), "invalid_field", "{e}");
    assert_eq!(e["field"], "advice_reference", "{e}");
    let (st, e) = s.post(&url, &dsl, json!({"justification": "Retention period over", "advice_reference": "  "})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("advice_reference")), "{e}");

    // Asked as a release is asked; no confirmation needed.
    let (st, dr) = s
        .post(
            &url,
            &dsl,
            json!({"justification": "Retention period over; police need no copy", "advice_reference": "Kent Police ref 46/12345/26: no copy needed"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{dr}");
    assert_eq!((dr["kind"].as_str(), dr["state"].as_str()), (Some("dispose"), Some("pending")), "{dr}");
    assert_eq!(dr["advice_reference"], "Kent Police ref 46/12345/26: no copy needed");
    assert_eq!(dr["justification"], "Retention period over; police need no copy");
    assert!(dr["confirmation"].is_null(), "{dr}");
    let did = dr["id"].as_str().unwrap();
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let asked = log["events"].as_array().unwrap().iter().find(|e| e["kind"] == "disposal_requested").expect("disposal_requested");
    assert!(asked.to_string().contains("46/12345/26"), "the custody log keeps the advice: {asked}");

    // Still two people.
    let (st, e) = s.post(&format!("/api/v1/dispose-requests/{did}/approve"), &dsl, json!({"justification": "me again"})).await;
    assert_eq!(assert_error(st, &e, StatusCode::CONFLICT), "second_person_required");
    let (st, r) = s.post(&format!("/api/v1/dispose-requests/{did}/approve"), &head, json!({"justification": "Advice seen"})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, items) = s.get(&format!("/api/v1/cases/{case_id}/evidence"), &dsl).await;
    assert!(items["items"].as_array().unwrap().iter().all(|i| !i["disposed_at"].is_null()), "{items}");
    s.stop().await;
}
