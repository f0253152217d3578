//! An operator's write and its audit entry commit together or not at all (issue 23 D1): with the
//! audit log refusing every insert, commands, the register, safeguarding, operators and API
//! tokens change nothing —
//! on SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::{Backend, TestServer};
use lanyard_bench::sim::Kind;
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(a_write_whose_audit_entry_fails_does_not_happen);

/// Make every insert into the audit log fail, as a crash between the write and its entry would.
async fn break_the_audit_log(s: &TestServer) {
    match &s.backend {
        Backend::Sqlite => {
            s.raw_sql(&["CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"]).await
        }
        Backend::Postgres(_) => {
            s.raw_sql(&[
                "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_down()",
            ])
            .await
        }
    }
}

async fn mend_the_audit_log(s: &TestServer) {
    match &s.backend {
        Backend::Sqlite => s.raw_sql(&["DROP TRIGGER audit_down"]).await,
        Backend::Postgres(_) => s.raw_sql(&["DROP TRIGGER audit_down ON audit_log", "DROP FUNCTION audit_down()"]).await,
    }
}

async fn created(s: &TestServer, path: &str, tok: &str, body: Value) -> Value {
    let (st, b) = s.post(path, tok, body).await;
    assert!(st.is_success(), "POST {path}: {st} {b}");
    b
}

async fn a_write_whose_audit_entry_fails_does_not_happen(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let today = s.ctx.now().date_naive().to_string();
    let aup = created(
        &s,
        "/api/v1/aups",
        &admin,
        json!({"audience": "staff", "title": "Staff AUP", "text": "I will use school devices safely.", "effective_date": today}),
    )
    .await;
    let amy = created(&s, "/api/v1/people", &admin, json!({"kind": "staff", "name": "Amy Teacher"})).await;
    created(&s, "/api/v1/signatures", &admin, json!({"person_id": amy["id"], "aup_id": aup["id"], "method": "in_person"})).await;
    let grant = created(&s, "/api/v1/grants", &admin, json!({"person_id": amy["id"], "udid": ipad.udid, "reason": "class iPad"})).await;
    let queued = created(&s, &format!("/api/v1/devices/{}/commands", ipad.udid), &admin, json!({"request_type": "ProfileList"})).await;
    let (_, before) = s.get(&format!("/api/v1/devices/{}/commands", ipad.udid), &admin).await;

    break_the_audit_log(&s).await;
    let attempts: Vec<(Method, String, &str, Option<Value>)> = vec![
        (Method::POST, format!("/api/v1/devices/{}/commands", ipad.udid), &admin, Some(json!({"request_type": "SecurityInfo"}))),
        (Method::DELETE, format!("/api/v1/commands/{}", queued["command_uuid"].as_str().unwrap()), &admin, None),
        (Method::POST, "/api/v1/people".into(), &admin, Some(json!({"kind": "pupil", "name": "Ben Pupil", "year_group": "Year 5"}))),
        (Method::POST, format!("/api/v1/people/{}/leave", amy["id"].as_str().unwrap()), &admin, Some(json!({"date": today}))),
        (Method::POST, format!("/api/v1/grants/{}/revoke", grant["id"].as_str().unwrap()), &admin, Some(json!({"reason": "left"}))),
        (Method::POST, "/api/v1/assignments".into(), &admin, Some(json!({"person_id": amy["id"], "udid": ipad.udid}))),
        (
            Method::POST,
            "/api/v1/cases".into(),
            &dsl,
            Some(json!({"kind": "iioc", "summary": "Concern", "justification": "IIOC procedure"})),
        ),
    ];
    for (method, path, tok, body) in attempts {
        let (st, out) = s.call(method.clone(), &path, Some(tok), body).await;
        assert!(st.is_server_error(), "{method} {path} must fail when its audit entry cannot be written: {st} {out}");
    }
    mend_the_audit_log(&s).await;

    // Nothing above happened.
    let (_, after) = s.get(&format!("/api/v1/devices/{}/commands", ipad.udid), &admin).await;
    assert_eq!(after, before, "no command was queued or cancelled");
    let (_, people) = s.get("/api/v1/people?q=Ben", &admin).await;
    assert_eq!(people["items"].as_array().map(Vec::len), Some(0), "{people}");
    let (_, amy_now) = s.get(&format!("/api/v1/people/{}", amy["id"].as_str().unwrap()), &admin).await;
    assert!(amy_now["end_date"].is_null(), "Amy did not leave: {amy_now}");
    let grants = amy_now["grants"].as_array().unwrap();
    assert!(grants.iter().all(|g| g["revoked_at"].is_null()), "the grant stands: {amy_now}");
    assert_eq!(amy_now["assignments"].as_array().map(Vec::len), Some(0), "no holding was made: {amy_now}");
    let (_, cases) = s.get("/api/v1/cases", &dsl).await;
    assert_eq!(cases["items"].as_array().map(Vec::len), Some(0), "no case was opened: {cases}");
    let (_, operators) = s.get("/api/v1/operators", &admin).await;
    assert!(!operators.to_string().contains("new.tech"), "no operator was created: {operators}");
    let (_, tokens) = s.get("/api/v1/api-tokens", &admin).await;
    assert!(!tokens.to_string().contains("inventory-script"), "no API token was created: {tokens}");

    // With the log mended, the same actions work and the chain is whole.
    let case = created(&s, "/api/v1/cases", &dsl, json!({"kind": "iioc", "summary": "Concern", "justification": "IIOC procedure"})).await;
    let q = created(
        &s,
        &format!("/api/v1/cases/{}/devices", case["id"].as_str().unwrap()),
        &dsl,
        json!({"udid": ipad.udid, "justification": "Quarantine until police advice"}),
    )
    .await;
    assert_eq!(q["grants_suspended"], 1, "{q}");
    let (_, chain) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!(chain["ok"], true, "{chain}");
    let (_, log) = s.get("/api/v1/audit?action=register.grant.suspend&limit=10", &admin).await;
    assert_eq!(log["items"][0]["details"]["grants"], json!([grant["id"]]), "{log}");
    s.stop().await;
}
