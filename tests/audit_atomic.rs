//! An operator's write and its audit entry commit in one transaction (issue 23 D1): when the
//! entry cannot be written, the write does not happen either. For each kind of audited write of
//! profiles, groups, filtering changes, schedules, enrolment tokens and the push certificate, a
//! trigger installed behind the server's back makes the append of that one action fail; the
//! request must fail and leave nothing changed; without the trigger it succeeds with exactly one
//! entry. On SQLite and PostgreSQL.

#[macro_use]
mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Backend, TestServer};
use lanyard::services::auth::Actor;
use lanyard::store::{AuditFilter, FileVaultKeyRecord};
use lanyard_bench::sim::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(an_unaudited_write_does_not_happen);

/// Make every append of `action` to the audit log fail (as a lost connection or a full disk
/// would, between the write and its entry), through a side connection.
async fn break_audit(s: &TestServer, action: &str) {
    assert!(action.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'));
    match &s.backend {
        Backend::Sqlite => {
            s.raw_sql(&[&format!(
                "CREATE TRIGGER audit_unavailable BEFORE INSERT ON audit_log WHEN NEW.action = '{action}' \
                 BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"
            )])
            .await
        }
        Backend::Postgres(_) => {
            s.raw_sql(&[
                "CREATE OR REPLACE FUNCTION audit_unavailable() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$",
                &format!(
                    "CREATE TRIGGER audit_unavailable BEFORE INSERT ON audit_log FOR EACH ROW WHEN (NEW.action = '{action}') \
                     EXECUTE FUNCTION audit_unavailable()"
                ),
            ])
            .await
        }
    }
}

async fn mend_audit(s: &TestServer) {
    match &s.backend {
        Backend::Sqlite => s.raw_sql(&["DROP TRIGGER audit_unavailable"]).await,
        Backend::Postgres(_) => s.raw_sql(&["DROP TRIGGER audit_unavailable ON audit_log"]).await,
    }
}

async fn entries(s: &TestServer, action: &str) -> usize {
    let filter = AuditFilter { action: Some(action.to_owned()), limit: 1000, ..Default::default() };
    s.ctx.store.list_audit(&filter).await.unwrap().len()
}

/// With `action`'s entry unwritable the request fails, and no entry of it appears. The caller
/// then checks that its write did not happen either.
async fn refused(s: &TestServer, action: &str, token: &str, method: Method, path: &str, body: Option<Value>) {
    let before = entries(s, action).await;
    break_audit(s, action).await;
    let (st, b) = s.call(method, path, Some(token), body).await;
    mend_audit(s).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{action} with its audit entry failing: {b}");
    assert_eq!(entries(s, action).await, before, "{action}");
}

/// The same request, audited: it succeeds with exactly one more entry of `action`.
async fn done(s: &TestServer, action: &str, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let before = entries(s, action).await;
    let (st, b) = s.call(method, path, Some(token), body).await;
    assert!(st.is_success(), "{action}: {st} {b}");
    assert_eq!(entries(s, action).await, before + 1, "{action}");
    b
}

async fn profile_by_name(s: &TestServer, name: &str) -> Option<lanyard::store::ProfileRecord> {
    s.ctx.store.profile_by_name(name).await.unwrap()
}

async fn change_state(s: &TestServer, id: &str) -> String {
    s.ctx.store.filtering_change(id.parse().unwrap()).await.unwrap().unwrap().state
}

async fn an_unaudited_write_does_not_happen(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let dsl = s.operator("dsl", "dsl").await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let mac = s.enrolled_device(Kind::Mac).await;
    let store = &s.ctx.store;

    // Enrolment tokens.
    let token = json!({"label": "Year 3 trolley"});
    refused(&s, "enrollment_token.create", &admin, Method::POST, "/api/v1/enrollment-tokens", Some(token.clone())).await;
    assert!(store.list_enrollment_tokens(10).await.unwrap().is_empty());
    let t = done(&s, "enrollment_token.create", &admin, Method::POST, "/api/v1/enrollment-tokens", Some(token)).await;
    let revoke = format!("/api/v1/enrollment-tokens/{}", t["id"].as_str().unwrap());
    refused(&s, "enrollment_token.revoke", &admin, Method::DELETE, &revoke, None).await;
    assert!(store.enrollment_token(t["id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap().revoked_at.is_none());
    done(&s, "enrollment_token.revoke", &admin, Method::DELETE, &revoke, None).await;

    // The push certificate.
    let (cert, key, _, _) = lanyard_mocks::test_push_certificate(common::device::TOPIC, 365);
    let pair = json!({"cert_pem": String::from_utf8(cert.to_pem().unwrap()).unwrap(),
                      "key_pem": String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap()});
    refused(&s, "push_cert.load", &admin, Method::PUT, "/api/v1/push-cert", Some(pair.clone())).await;
    assert!(store.push_cert().await.unwrap().is_none());
    done(&s, "push_cert.load", &admin, Method::PUT, "/api/v1/push-cert", Some(pair)).await;

    // The profile library.
    let upload = json!({"name": "airdrop-off", "mobileconfig_base64": B64.encode(common::AIRDROP_PROFILE)});
    refused(&s, "profile.create", &admin, Method::POST, "/api/v1/profiles", Some(upload.clone())).await;
    assert!(profile_by_name(&s, "airdrop-off").await.is_none());
    let p = done(&s, "profile.create", &admin, Method::POST, "/api/v1/profiles", Some(upload)).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let v2 = json!({"mobileconfig_base64": B64.encode(common::AIRDROP_PROFILE.replace("<false/>", "<true/>"))});
    refused(&s, "profile.update", &admin, Method::PUT, &format!("/api/v1/profiles/{pid}"), Some(v2.clone())).await;
    assert_eq!(profile_by_name(&s, "airdrop-off").await.unwrap().version, 1);
    assert_eq!(store.profile_versions(pid.parse().unwrap()).await.unwrap().len(), 1);
    done(&s, "profile.update", &admin, Method::PUT, &format!("/api/v1/profiles/{pid}"), Some(v2)).await;

    // Groups, members and assignments.
    let group = json!({"name": "Year 3", "kind": "static"});
    refused(&s, "group.create", &admin, Method::POST, "/api/v1/groups", Some(group.clone())).await;
    assert!(store.group_by_name("Year 3").await.unwrap().is_none());
    let g = done(&s, "group.create", &admin, Method::POST, "/api/v1/groups", Some(group)).await;
    let gid: uuid::Uuid = g["id"].as_str().unwrap().parse().unwrap();
    let gpath = format!("/api/v1/groups/{gid}");
    refused(&s, "group.update", &admin, Method::PATCH, &gpath, Some(json!({"name": "Year 3 iPads"}))).await;
    assert_eq!(store.group(gid).await.unwrap().unwrap().name, "Year 3");
    done(&s, "group.update", &admin, Method::PATCH, &gpath, Some(json!({"name": "Year 3 iPads"}))).await;
    let members = format!("{gpath}/members");
    refused(&s, "group.members.add", &admin, Method::POST, &members, Some(json!({"udids": [ipad.udid]}))).await;
    assert!(store.group_members(gid).await.unwrap().is_empty());
    done(&s, "group.members.add", &admin, Method::POST, &members, Some(json!({"udids": [ipad.udid]}))).await;
    let profiles = format!("{gpath}/profiles");
    refused(&s, "group.profile.assign", &admin, Method::POST, &profiles, Some(json!({"profile_id": pid}))).await;
    assert!(store.group_profile_ids(gid).await.unwrap().is_empty());
    done(&s, "group.profile.assign", &admin, Method::POST, &profiles, Some(json!({"profile_id": pid}))).await;

    // The timetable and schedules.
    let timetable = json!({"timezone": "UTC", "periods": [{"name": "P1", "weekday": "monday", "start": "09:00", "end": "10:00"}]});
    refused(&s, "timetable.update", &admin, Method::PUT, "/api/v1/timetable", Some(timetable.clone())).await;
    assert!(store.timetable().await.unwrap().is_none());
    done(&s, "timetable.update", &admin, Method::PUT, "/api/v1/timetable", Some(timetable)).await;
    let camera = profile_by_name(&s, "pupil-camera-off").await.unwrap().id;
    let schedule = json!({"profile_id": camera, "group_id": gid, "when": "lessons"});
    refused(&s, "schedule.create", &admin, Method::POST, "/api/v1/schedules", Some(schedule.clone())).await;
    assert!(store.list_schedules().await.unwrap().is_empty());
    let sc = done(&s, "schedule.create", &admin, Method::POST, "/api/v1/schedules", Some(schedule)).await;
    let spath = format!("/api/v1/schedules/{}", sc["id"].as_str().unwrap());
    refused(&s, "schedule.delete", &admin, Method::DELETE, &spath, None).await;
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);
    done(&s, "schedule.delete", &admin, Method::DELETE, &spath, None).await;

    // Filtering change control: a proposal, a decision, and the deployment after an approval.
    let ks2 = profile_by_name(&s, "ks2-web-filtered").await.unwrap().id;
    let propose = json!({"profile_id": ks2, "reason": "KS2 filter for Year 3", "risk_assessment_ref": "RA-1"});
    refused(&s, "filtering.propose", &admin, Method::POST, &profiles, Some(propose.clone())).await;
    assert!(store.list_filtering_changes(None, None, None, 10).await.unwrap().is_empty());
    let c = done(&s, "filtering.propose", &admin, Method::POST, &profiles, Some(propose)).await;
    let change = c["change_id"].as_str().unwrap().to_owned();
    let approve = format!("/api/v1/filtering/changes/{change}/approve");
    let why = json!({"justification": "Risk assessed"});
    refused(&s, "filtering.approve", &dsl, Method::POST, &approve, Some(why.clone())).await;
    assert_eq!(change_state(&s, &change).await, "proposed");
    // Approved (and recorded), but the deployment's entry fails: nothing is deployed.
    let approvals = entries(&s, "filtering.approve").await;
    refused(&s, "filtering.deploy", &dsl, Method::POST, &approve, Some(why)).await;
    assert_eq!(entries(&s, "filtering.approve").await, approvals + 1);
    assert_eq!(change_state(&s, &change).await, "approved");
    assert_eq!(store.group_profile_ids(gid).await.unwrap(), [pid.parse::<uuid::Uuid>().unwrap()], "ks2 not assigned");
    let ks1 = profile_by_name(&s, "ks1-web-allowlist").await.unwrap().id;
    let path = format!("/api/v1/profiles/{ks1}?reason=Unused&risk_assessment_ref=RA-2");
    let c = done(&s, "filtering.propose", &admin, Method::DELETE, &path, None).await;
    let reject = format!("/api/v1/filtering/changes/{}/reject", c["change_id"].as_str().unwrap());
    refused(&s, "filtering.reject", &dsl, Method::POST, &reject, Some(json!({"justification": "Still used"}))).await;
    assert_eq!(change_state(&s, c["change_id"].as_str().unwrap()).await, "proposed");
    done(&s, "filtering.reject", &dsl, Method::POST, &reject, Some(json!({"justification": "Still used"}))).await;

    // Taking things apart again.
    let unassign = format!("{profiles}/{pid}");
    refused(&s, "group.profile.unassign", &admin, Method::DELETE, &unassign, None).await;
    assert_eq!(store.group_profile_ids(gid).await.unwrap().len(), 1);
    done(&s, "group.profile.unassign", &admin, Method::DELETE, &unassign, None).await;
    let member = format!("{members}/{}", ipad.udid);
    refused(&s, "group.members.remove", &admin, Method::DELETE, &member, None).await;
    assert_eq!(store.group_members(gid).await.unwrap(), [ipad.udid.clone()]);
    done(&s, "group.members.remove", &admin, Method::DELETE, &member, None).await;
    refused(&s, "profile.delete", &admin, Method::DELETE, &format!("/api/v1/profiles/{pid}"), None).await;
    assert!(profile_by_name(&s, "airdrop-off").await.is_some());
    done(&s, "profile.delete", &admin, Method::DELETE, &format!("/api/v1/profiles/{pid}"), None).await;
    refused(&s, "group.delete", &admin, Method::DELETE, &gpath, None).await;
    assert!(store.group(gid).await.unwrap().unwrap().deleted_at.is_none());
    done(&s, "group.delete", &admin, Method::DELETE, &gpath, None).await;

    // A FileVault key a Mac escrows (the system's write, not an operator's: at the store).
    let now = chrono::Utc::now();
    let key =
        FileVaultKeyRecord { udid: mac.udid.clone(), key_sealed: b"sealed".to_vec(), device_key: None, escrowed_at: now, updated_at: now };
    let entry =
        || s.ctx.audit.audit_entry(&Actor::system(), "filevault.escrow", Some(&mac.udid), json!({"device_key": null, "replaced": false}));
    break_audit(&s, "filevault.escrow").await;
    assert!(store.put_filevault_key(&key, entry()).await.is_err());
    mend_audit(&s).await;
    assert!(store.filevault_key(&mac.udid).await.unwrap().is_none());
    store.put_filevault_key(&key, entry()).await.unwrap();
    assert_eq!(entries(&s, "filevault.escrow").await, 1);

    let (st, chain) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!((st, &chain["ok"]), (StatusCode::OK, &json!(true)), "{chain}");
    s.stop().await;
}
