//! The user-access register end to end against the real server, on SQLite and PostgreSQL: the
//! policy's rule (no access without a signed, current AUP), new AUP versions and lapsed
//! signatures, leavers, "who could use this iPad at T", the MIS import, the report's
//! must-be-zero counts, roles and the audit trail.

#[macro_use]
mod common;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::{Backend, TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(
    no_grant_without_current_signature,
    new_aup_version_makes_people_due,
    leaver_access_ends_and_history_stays,
    holders_at_a_time_across_reassignments,
    csv_import_is_all_or_nothing,
    report_must_be_zero_counts,
    roles_read_and_write,
    every_write_is_audited,
    import_dry_run_shows_who_it_would_create,
    a_person_can_leave_on_their_start_date,
    due_list_includes_people_without_access,
);

async fn manual(b: Backend) -> TestServer {
    TestServer::start_with(b, common::Options { manual_clock: true, ..Default::default() }).await
}

fn now(s: &TestServer) -> DateTime<Utc> {
    s.ctx.now()
}

/// Move the clock on; sessions last an hour, so log in again.
async fn advance(s: &TestServer, by: Duration) -> String {
    s.clock.as_ref().unwrap().advance(by);
    s.admin().await
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap().with_timezone(&Utc)
}

fn today(s: &TestServer) -> String {
    now(s).date_naive().to_string()
}

fn day(s: &TestServer, days: i64) -> String {
    (now(s).date_naive() + Duration::days(days)).to_string()
}

async fn ok(s: &TestServer, path: &str, tok: &str, body: Value) -> Value {
    let (st, b) = s.post(path, tok, body).await;
    assert!(st.is_success(), "POST {path}: {st} {b}");
    b
}

async fn person(s: &TestServer, tok: &str, body: Value) -> Value {
    let (st, b) = s.post("/api/v1/people", tok, body).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b
}

async fn aup(s: &TestServer, tok: &str, audience: &str, title: &str, effective: &str) -> Value {
    let (st, b) = s
        .post(
            "/api/v1/aups",
            tok,
            json!({"audience": audience, "title": title, "text": format!("{title}: I will use school devices kindly and safely."), "effective_date": effective}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b
}

async fn sign(s: &TestServer, tok: &str, person: &Value, aup: &Value) -> Value {
    let (st, b) = s
        .post(
            "/api/v1/signatures",
            tok,
            json!({"person_id": person["id"], "aup_id": aup["id"], "method": "in_person", "co_signer": "A. Parent"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b
}

async fn grant(s: &TestServer, tok: &str, body: Value) -> (StatusCode, Value) {
    s.post("/api/v1/grants", tok, body).await
}

/// A signed member of staff with a system grant.
async fn signed_staff(s: &TestServer, tok: &str, name: &str, staff_aup: &Value) -> Value {
    let p = person(s, tok, json!({"kind": "staff", "name": name})).await;
    sign(s, tok, &p, staff_aup).await;
    p
}

async fn import(s: &TestServer, tok: &str, csv: &str, dry_run: bool) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(s.url(&format!("/api/v1/register/import?dry_run={dry_run}")))
        .bearer_auth(tok)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap())
}

async fn people_named(s: &TestServer, tok: &str, q: &str) -> Vec<Value> {
    let (st, page) = s.get(&format!("/api/v1/people?q={q}"), tok).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn report(s: &TestServer, tok: &str) -> Value {
    let (st, r) = s.get("/api/v1/register/report", tok).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    r
}

/// Run SQL behind the server's back, returning the database's refusal instead of panicking.
async fn try_sql(s: &TestServer, sql: &str) -> Result<(), String> {
    match &s.backend {
        Backend::Sqlite => {
            let url = s.backend.database_url(s.dir.path());
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.map(|_| ()).map_err(|e| e.to_string())
        }
        Backend::Postgres(url) => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

async fn no_grant_without_current_signature(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let amy = person(&s, &admin, json!({"kind": "pupil", "name": "Amy Able", "school_ref": "UPN-1", "year_group": "Year 4"})).await;
    assert_eq!((&amy["year_group"], &amy["key_stage"], &amy["audience"]), (&json!("Y4"), &json!("KS2"), &json!("pupil_ks2")));
    let wifi = json!({"person_id": amy["id"], "system": "school Wi-Fi", "reason": "class iPads"});

    // No AUP for KS2 at all: refused, saying how to publish one.
    let (st, body) = grant(&s, &admin, wifi.clone()).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "no_current_aup");
    assert!(body["error"].as_str().unwrap().contains("POST /api/v1/aups"), "{body}");

    let text = "KS2 pupils' AUP: I will ask before going online.";
    let (st, ks2) = s
        .post("/api/v1/aups", &admin, json!({"audience": "pupil_ks2", "title": "KS2 Pupil AUP", "text": text, "effective_date": today(&s)}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ks2}");
    assert_eq!(ks2["version"], 1);
    assert_eq!(ks2["sha256"], hex::encode(openssl::sha::sha256(text.as_bytes())));
    let year_on = now(&s).date_naive() + chrono::Months::new(12);
    assert_eq!(ks2["review_due"], year_on.to_string(), "reviewed a year after it takes effect");
    assert_eq!(ks2["current"], true);

    // An AUP exists, but Amy has not signed it: 409 naming the AUP.
    let (st, body) = grant(&s, &admin, wifi.clone()).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "aup_not_signed");
    assert_eq!(body["aup_id"], ks2["id"]);
    assert!(body["error"].as_str().unwrap().contains("KS2 Pupil AUP"), "{body}");
    let (st, _) = s.get(&format!("/api/v1/people/{}", amy["id"].as_str().unwrap()), &admin).await;
    assert_eq!(st, StatusCode::OK);

    // A KS2 pupil signs with a parent or carer.
    let (st, body) = s.post("/api/v1/signatures", &admin, json!({"person_id": amy["id"], "aup_id": ks2["id"], "method": "paper"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY), "invalid_field");
    assert_eq!(body["field"], "co_signer");
    let (st, sig) = s
        .post("/api/v1/signatures", &admin, json!({"person_id": amy["id"], "aup_id": ks2["id"], "method": "paper", "co_signer": "Mr Able"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sig}");
    assert_eq!(sig["recorded_by"], "operator:admin");
    assert_eq!(sig["aup_version"], 1);
    let (st, body) = s
        .post(
            "/api/v1/signatures",
            &admin,
            json!({"person_id": amy["id"], "aup_id": ks2["id"], "method": "online", "co_signer": "Mr Able"}),
        )
        .await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "already_signed");

    // Now access can be granted, and it records the signature it rests on.
    let (st, g) = grant(&s, &admin, wifi.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert_eq!((g["status"].as_str(), g["kind"].as_str()), (Some("live"), Some("system")));
    assert_eq!(g["signature_id"], sig["id"]);

    // A staff member cannot sign the pupils' AUP.
    let staff = person(&s, &admin, json!({"kind": "staff", "name": "Bea Teacher"})).await;
    let (st, body) = s.post("/api/v1/signatures", &admin, json!({"person_id": staff["id"], "aup_id": ks2["id"], "method": "online"})).await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "aup_id");

    // Exactly one target; no backdating.
    let (st, body) = grant(&s, &admin, json!({"person_id": amy["id"], "udid": "X", "system": "Y", "reason": "r"})).await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, body) = grant(&s, &admin, json!({"person_id": amy["id"], "udid": "X", "reason": "r", "from": "2020-01-01T00:00:00Z"})).await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "from");

    // The only signature behind live access cannot be voided; a signature is never edited.
    let (st, body) =
        s.post(&format!("/api/v1/signatures/{}/void", sig["id"].as_str().unwrap()), &admin, json!({"reason": "wrong pupil"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "signature_in_use");
    assert!(try_sql(&s, "UPDATE signatures SET method = 'online'").await.is_err());
    assert!(try_sql(&s, "DELETE FROM signatures").await.is_err());
    assert!(try_sql(&s, "UPDATE aups SET text = 'something else'").await.is_err());

    // Once the access is revoked, the mistake can be voided, with its reason kept.
    ok(
        &s,
        &format!("/api/v1/grants/{}/revoke", g["id"].as_str().unwrap()),
        &admin,
        json!({"reason": "signature recorded against the wrong pupil"}),
    )
    .await;
    let void = ok(&s, &format!("/api/v1/signatures/{}/void", sig["id"].as_str().unwrap()), &admin, json!({"reason": "wrong pupil"})).await;
    assert_eq!((void["void"].as_bool(), void["void_reason"].as_str()), (Some(true), Some("wrong pupil")));
    let (st, body) = grant(&s, &admin, wifi).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "aup_not_signed");
    s.stop().await;
}

async fn new_aup_version_makes_people_due(b: Backend) {
    let s = manual(b).await;
    let admin = s.admin().await;
    let v1 = aup(&s, &admin, "staff", "Staff AUP 2025", &today(&s)).await;
    let sam = signed_staff(&s, &admin, "Sam Staff", &v1).await;
    let (st, g) = grant(&s, &admin, json!({"person_id": sam["id"], "system": "school Wi-Fi", "reason": "teaching"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let (_, due) = s.get("/api/v1/register/due", &admin).await;
    assert_eq!(due["items"], json!([]), "{due}");

    // A new version: Sam is due to re-sign it, and new access needs it.
    let v2 = aup(&s, &admin, "staff", "Staff AUP 2026", &today(&s)).await;
    assert_eq!(v2["version"], 2);
    let (_, due) = s.get("/api/v1/register/due", &admin).await;
    let items = due["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{due}");
    assert_eq!(items[0]["person"]["id"], sam["id"]);
    assert_eq!(items[0]["state"], "outdated");
    assert_eq!(items[0]["must_sign"]["id"], v2["id"]);
    assert_eq!(items[0]["signature"]["version"], 1);
    let r = report(&s, &admin).await;
    assert_eq!((r["with_access"].as_u64(), r["due_to_resign"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(r["without_current_signature"], 0);
    let (st, body) = grant(&s, &admin, json!({"person_id": sam["id"], "udid": "IPAD-1", "reason": "class set"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "aup_not_signed");
    assert_eq!(body["aup_id"], v2["id"]);
    assert!(body["error"].as_str().unwrap().contains("Staff AUP 2026"), "{body}");
    let (_, aups) = s.get("/api/v1/aups?audience=staff", &admin).await;
    let current: Vec<_> = aups["items"].as_array().unwrap().iter().filter(|a| a["current"] == true).map(|a| a["version"].clone()).collect();
    assert_eq!(current, vec![json!(2)]);

    sign(&s, &admin, &sam, &v2).await;
    let (_, due) = s.get("/api/v1/register/due", &admin).await;
    assert_eq!(due["items"], json!([]), "{due}");

    // A version that takes effect later changes nothing yet.
    let v3 = aup(&s, &admin, "staff", "Staff AUP 2027", &day(&s, 30)).await;
    assert_eq!(v3["current"], false);
    let (_, due) = s.get("/api/v1/register/due", &admin).await;
    assert_eq!(due["items"], json!([]), "{due}");

    // A new starter without access is due too (she must sign before she gets any);
    // `everyone=false` lists only people with access.
    let newbie = person(&s, &admin, json!({"kind": "volunteer", "name": "Nia New"})).await;
    assert_eq!(newbie["audience"], "staff");
    for q in ["", "?everyone=true"] {
        let (_, due) = s.get(&format!("/api/v1/register/due{q}"), &admin).await;
        let states: Vec<_> = due["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["person"]["name"].clone(), i["state"].clone(), i["has_access"].clone()))
            .collect();
        assert_eq!(states, vec![(json!("Nia New"), json!("unsigned"), json!(false))], "{q}");
    }
    let (_, due) = s.get("/api/v1/register/due?everyone=false", &admin).await;
    assert_eq!(due["items"], json!([]), "{due}");

    // A year on (v3 has not taken effect... it has after 30 days: advance to just before),
    // the signature lapses (policy: reviewed at least annually).
    let admin = advance(&s, Duration::days(20)).await;
    let (_, due) = s.get("/api/v1/register/due?everyone=false", &admin).await;
    assert_eq!(due["items"], json!([]), "{due}");
    let admin = advance(&s, Duration::days(15)).await;
    let (_, due) = s.get("/api/v1/register/due?everyone=false", &admin).await;
    assert_eq!(due["items"][0]["state"], "outdated", "v3 is now in effect: {due}");
    assert_eq!(due["items"][0]["must_sign"]["id"], v3["id"]);
    sign(&s, &admin, &sam, &v3).await;
    let admin = advance(&s, Duration::days(366)).await;
    let (_, due) = s.get("/api/v1/register/due?everyone=false", &admin).await;
    assert_eq!(due["items"][0]["state"], "lapsed", "{due}");
    let r = report(&s, &admin).await;
    assert_eq!(r["lapsed"], 1, "{r}");
    assert_eq!(r["without_current_signature"], 0, "{r}");
    assert_eq!(r["aups_review_overdue"], 1, "{r}");
    let (st, body) = grant(&s, &admin, json!({"person_id": sam["id"], "udid": "IPAD-1", "reason": "class set"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "aup_not_signed");
    assert!(body["error"].as_str().unwrap().contains("more than a year ago"), "{body}");
    s.stop().await;
}

async fn leaver_access_ends_and_history_stays(b: Backend) {
    let s = manual(b).await;
    let admin = s.admin().await;
    let staff_aup = aup(&s, &admin, "staff", "Staff AUP", &today(&s)).await;
    let lee = signed_staff(&s, &admin, "Lee Leaving", &staff_aup).await;
    let lid = lee["id"].as_str().unwrap().to_owned();
    let (_, g1) = grant(&s, &admin, json!({"person_id": lid, "udid": "IPAD-LEE", "reason": "1:1 iPad"})).await;
    let (_, g2) = grant(&s, &admin, json!({"person_id": lid, "system": "school Wi-Fi", "reason": "staff"})).await;
    let a = ok(&s, "/api/v1/assignments", &admin, json!({"person_id": lid, "udid": "IPAD-LEE"})).await;
    let during = now(&s) + Duration::hours(1);

    // Leaving in three days: everything ends at 00:00 UTC that day, not before.
    let leave_date = day(&s, 3);
    let out = ok(&s, &format!("/api/v1/people/{lid}/leave"), &admin, json!({"date": leave_date, "reason": "moved school"})).await;
    assert_eq!(out["access_ends_at"], format!("{leave_date}T00:00:00Z"));
    assert_eq!(out["grants_ended"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(out["assignments_ended"], json!([a["id"]]));
    assert_eq!(out["person"]["leaver"], false);
    let (_, detail) = s.get(&format!("/api/v1/people/{lid}"), &admin).await;
    assert_eq!(detail["devices_held"], json!(["IPAD-LEE"]));
    assert!(detail["grants"].as_array().unwrap().iter().all(|g| g["status"] == "live"));

    let admin = advance(&s, Duration::days(4)).await;
    let (_, detail) = s.get(&format!("/api/v1/people/{lid}"), &admin).await;
    assert_eq!(detail["leaver"], true);
    assert_eq!(detail["end_date"], leave_date);
    assert_eq!(detail["devices_held"], json!([]));
    let grants = detail["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 2, "the records stay: {detail}");
    for g in grants {
        assert_eq!(g["status"], "revoked", "{g}");
        assert_eq!(g["revoke_reason"], "leaver: moved school");
    }
    assert!(grants.iter().any(|g| g["id"] == g1["id"]) && grants.iter().any(|g| g["id"] == g2["id"]));
    assert_eq!(detail["assignments"][0]["status"], "ended");
    assert_eq!(detail["assignments"][0]["until"], format!("{leave_date}T00:00:00Z"));
    let history: Vec<_> = detail["history"].as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap().to_owned()).collect();
    for action in [
        "register.person.create",
        "register.signature.create",
        "register.grant.create",
        "register.assignment.create",
        "register.person.leave",
    ] {
        assert!(history.iter().any(|h| h == action), "{action} in {history:?}");
    }

    // The device's history still says Lee held it while they were here.
    let (_, h) = s.get(&format!("/api/v1/devices/IPAD-LEE/holders?at={}", iso(during)), &admin).await;
    assert_eq!(h["holders"][0]["person"]["name"], "Lee Leaving", "{h}");
    let (_, h) = s.get(&format!("/api/v1/devices/IPAD-LEE/holders?at={}", iso(now(&s))), &admin).await;
    assert_eq!((h["holders"].as_array().unwrap().len(), h["access"].as_array().unwrap().len()), (0, 0), "{h}");

    // A leaver gets nothing new; the leavers filter finds them.
    let (st, body) = grant(&s, &admin, json!({"person_id": lid, "system": "school Wi-Fi", "reason": "r"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "person_left");
    let (_, leavers) = s.get("/api/v1/people?leavers=true", &admin).await;
    assert_eq!(leavers["items"].as_array().unwrap().len(), 1);
    assert_eq!(leavers["items"][0]["id"], lid);
    let (_, current) = s.get("/api/v1/people?leavers=false", &admin).await;
    assert!(current["items"].as_array().unwrap().iter().all(|p| p["id"] != lid));

    // Leaving today takes effect at once.
    let pat = signed_staff(&s, &admin, "Pat Prompt", &staff_aup).await;
    let pid = pat["id"].as_str().unwrap();
    grant(&s, &admin, json!({"person_id": pid, "udid": "IPAD-PAT", "reason": "1:1"})).await;
    ok(&s, "/api/v1/assignments", &admin, json!({"person_id": pid, "udid": "IPAD-PAT"})).await;
    let out = ok(&s, &format!("/api/v1/people/{pid}/leave"), &admin, json!({"date": today(&s)})).await;
    assert_eq!(time(&out["access_ends_at"]), now(&s));
    let (_, detail) = s.get(&format!("/api/v1/people/{pid}"), &admin).await;
    assert_eq!(detail["leaver"], true);
    assert_eq!(detail["grants"][0]["status"], "revoked");
    assert_eq!(detail["devices_held"], json!([]));
    let r = report(&s, &admin).await;
    assert_eq!(r["leavers_with_live_grants"], 0, "{r}");
    assert_eq!(r["with_access"], 0, "{r}");
    s.stop().await;
}

async fn holders_at_a_time_across_reassignments(b: Backend) {
    let s = manual(b).await;
    let admin = s.admin().await;
    let staff_aup = aup(&s, &admin, "staff", "Staff AUP", &today(&s)).await;
    let ann = signed_staff(&s, &admin, "Ann First", &staff_aup).await;
    let ben = signed_staff(&s, &admin, "Ben Second", &staff_aup).await;
    let cat = signed_staff(&s, &admin, "Cat Group", &staff_aup).await;
    let dan = signed_staff(&s, &admin, "Dan Nogrant", &staff_aup).await;
    let udid = "00008030-001A2B3C4D5E6F";
    let group = uuid::Uuid::new_v4();
    let t0 = now(&s);
    s.ctx.store.record_group_membership(group, udid, t0).await.unwrap();
    for p in [&ann, &ben] {
        let (st, g) = grant(&s, &admin, json!({"person_id": p["id"], "udid": udid, "reason": "class set"})).await;
        assert_eq!(st, StatusCode::CREATED, "{g}");
    }
    let (st, g) = grant(&s, &admin, json!({"person_id": cat["id"], "group_id": group, "reason": "Year 5 iPads"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let (st, body) = s.post("/api/v1/assignments", &admin, json!({"person_id": dan["id"], "udid": udid})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "no_grant");

    // Ann holds it from t0.
    let a1 = ok(&s, "/api/v1/assignments", &admin, json!({"person_id": ann["id"], "udid": udid})).await;
    let admin = advance(&s, Duration::days(1)).await;
    let t1 = now(&s);
    // Ben cannot take it while Ann holds it...
    let (st, body) = s.post("/api/v1/assignments", &admin, json!({"person_id": ben["id"], "udid": udid})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "device_held");
    assert_eq!(body["assignment_id"], a1["id"]);
    assert!(body["error"].as_str().unwrap().contains("Ann First"), "{body}");
    // ...until her holding ends.
    let ended = ok(&s, &format!("/api/v1/assignments/{}/end", a1["id"].as_str().unwrap()), &admin, json!({})).await;
    assert_eq!(ended["status"], "ended");
    ok(&s, "/api/v1/assignments", &admin, json!({"person_id": ben["id"], "udid": udid})).await;
    let admin = advance(&s, Duration::days(1)).await;
    let t2 = now(&s);
    let (_, h) = s.get(&format!("/api/v1/devices/{udid}/holders"), &admin).await;
    let b2 = h["holders"][1]["assignment_id"].as_str().unwrap().to_owned();
    // End with no body at all: now.
    let resp = s.client.post(s.url(&format!("/api/v1/assignments/{b2}/end"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Cat holds it through her group grant.
    ok(&s, "/api/v1/assignments", &admin, json!({"person_id": cat["id"], "udid": udid})).await;
    advance(&s, Duration::days(1)).await;
    let t3 = now(&s);
    s.ctx.store.end_group_membership(group, udid, t3).await.unwrap();
    let admin = advance(&s, Duration::hours(1)).await;

    let at = |t: DateTime<Utc>| format!("/api/v1/devices/{udid}/holders?at={}", iso(t));
    let names = |v: &Value, key: &str| -> Vec<String> {
        v[key].as_array().unwrap().iter().map(|x| x["person"]["name"].as_str().unwrap().to_owned()).collect()
    };
    let (_, h) = s.get(&at(t0 - Duration::hours(1)), &admin).await;
    assert_eq!(names(&h, "holders"), Vec::<String>::new(), "{h}");
    assert_eq!(names(&h, "access"), Vec::<String>::new(), "{h}");
    let (_, h) = s.get(&at(t0 + Duration::hours(3)), &admin).await;
    assert_eq!(names(&h, "holders"), vec!["Ann First"], "{h}");
    let mut access = names(&h, "access");
    access.sort();
    assert_eq!(access, vec!["Ann First", "Ben Second", "Cat Group"], "{h}");
    let via: Vec<_> = h["access"].as_array().unwrap().iter().filter(|a| a["via"] == "group").map(|a| a["group_id"].clone()).collect();
    assert_eq!(via, vec![json!(group)]);
    // The moment of a hand-over belongs to the new holder.
    let (_, h) = s.get(&at(t1), &admin).await;
    assert_eq!(names(&h, "holders"), vec!["Ben Second"], "{h}");
    let (_, h) = s.get(&at(t1 - Duration::seconds(1)), &admin).await;
    assert_eq!(names(&h, "holders"), vec!["Ann First"], "{h}");
    let (_, h) = s.get(&at(t2 + Duration::hours(2)), &admin).await;
    assert_eq!(names(&h, "holders"), vec!["Cat Group"], "{h}");
    // Out of the group, the group grant no longer reaches the device.
    let (_, h) = s.get(&at(t3 + Duration::minutes(30)), &admin).await;
    let mut access = names(&h, "access");
    access.sort();
    assert_eq!(access, vec!["Ann First", "Ben Second"], "{h}");

    // The full history, oldest first.
    let (_, h) = s.get(&format!("/api/v1/devices/{udid}/holders"), &admin).await;
    assert_eq!(h["at"], Value::Null);
    assert_eq!(names(&h, "holders"), vec!["Ann First", "Ben Second", "Cat Group"], "{h}");
    assert_eq!(h["holders"][0]["until"], h["holders"][1]["from"]);
    let cat_access: Vec<_> = h["access"].as_array().unwrap().iter().filter(|a| a["via"] == "group").collect();
    assert_eq!(cat_access.len(), 1);
    assert_eq!(time(&cat_access[0]["until"]), t3, "{h}");
    // An enrolled device nobody was ever given is simply empty.
    let fresh = s.enrolled_device(lanyard_bench::sim::Kind::SupervisedIpad).await;
    let (st, h) = s.get(&format!("/api/v1/devices/{}/holders", fresh.udid), &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((h["holders"].clone(), h["access"].clone()), (json!([]), json!([])));
    // A UDID neither enrolled nor in the register is a mistake worth saying so (a typo would
    // otherwise look like "nobody ever had it").
    let (st, h) = s.get("/api/v1/devices/NEVER-SEEN/holders", &admin).await;
    assert_eq!(assert_error(st, &h, StatusCode::NOT_FOUND), "not_found", "{h}");
    s.stop().await;
}

async fn csv_import_is_all_or_nothing(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    person(&s, &admin, json!({"kind": "pupil", "name": "Mo Mover", "school_ref": "MIS-1", "year_group": "Y3"})).await;
    person(&s, &admin, json!({"kind": "staff", "name": "Una Changed", "school_ref": "MIS-4", "start_date": "2024-09-01"})).await;
    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let (_, before) = s.get("/api/v1/people", &admin).await;
    assert_eq!(count(&before), 2);

    // A file with bad rows is rejected whole; every error names its row and column.
    let bad = "school_ref,kind,name,year_group,start_date,leaving_date\n\
               MIS-1,pupil,Mo Mover,Y4,,\n\
               MIS-2,pupil,Nell New,Y15,,\n\
               MIS-3,staff,Ola Other,,31/02/2026,\n\
               MIS-5,,No Kind,,,\n\
               MIS-6,visitor,Vic Visitor,Y2,,\n";
    let (st, body) = import(&s, &admin, bad, false).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY), "invalid_csv");
    let errs: Vec<(u64, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["column"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        errs,
        vec![(3, "year_group".to_owned()), (4, "start_date".to_owned()), (5, "kind".to_owned()), (6, "year_group".to_owned()),],
        "{body}"
    );
    assert_eq!((body["row"].as_u64(), body["column"].as_str()), (Some(3), Some("year_group")));
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("Row 3") && msg.contains("year_group") && msg.contains("nothing was imported"), "{msg}");
    let (_, after) = s.get("/api/v1/people", &admin).await;
    assert_eq!(after, before, "a rejected file changes nothing");
    let (_, audit) = s.get("/api/v1/audit?action=register.import.apply", &admin).await;
    assert_eq!(count(&audit), 0);

    // Unknown columns are refused rather than silently dropped; so is a file that is not CSV.
    let (st, body) = import(&s, &admin, "school_ref,kind,name,leavingdate\n", true).await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((body["row"].as_u64(), body["column"].as_str()), (Some(1), Some("leavingdate")));
    let (st, body) = s.post("/api/v1/register/import", &admin, json!({"rows": []})).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE), "unsupported_media_type");

    // A good file: the dry run says what would change and writes nothing.
    let good = "\u{feff}School Ref,Kind,Name,Year Group,Start Date,Leaving Date\r\n\
                MIS-1,pupil,Mo Mover,Y4,,\r\n\
                MIS-2,staff,\"Nell New, Jr\",,01/09/2026,\r\n\
                MIS-3,visitor,Vic Visitor,,,\r\n\
                MIS-4,staff,Una Changed,,2024-09-01,\r\n";
    let (st, dry) = import(&s, &admin, good, true).await;
    assert_eq!(st, StatusCode::OK, "{dry}");
    assert_eq!((dry["created"].as_u64(), dry["updated"].as_u64(), dry["unchanged"].as_u64()), (Some(2), Some(1), Some(1)), "{dry}");
    let actions: Vec<_> =
        dry["rows"].as_array().unwrap().iter().map(|r| (r["row"].as_u64().unwrap(), r["action"].as_str().unwrap().to_owned())).collect();
    assert_eq!(actions, vec![(2, "updated".into()), (3, "created".into()), (4, "created".into()), (5, "unchanged".into())]);
    assert_eq!(dry["rows"][0]["changes"]["year_group"], json!({"from": "Y3", "to": "Y4"}));
    let (_, after) = s.get("/api/v1/people", &admin).await;
    assert_eq!(after, before, "a dry run changes nothing");

    let (st, applied) = import(&s, &admin, good, false).await;
    assert_eq!(st, StatusCode::OK, "{applied}");
    assert_eq!((applied["created"].as_u64(), applied["updated"].as_u64(), applied["unchanged"].as_u64()), (Some(2), Some(1), Some(1)));
    let mo = &people_named(&s, &admin, "MIS-1").await[0];
    assert_eq!((mo["year_group"].as_str(), mo["key_stage"].as_str()), (Some("Y4"), Some("KS2")));
    let nell = &people_named(&s, &admin, "mis-2").await[0];
    assert_eq!((nell["name"].as_str(), nell["start_date"].as_str()), (Some("Nell New, Jr"), Some("2026-09-01")));
    let vic = &people_named(&s, &admin, "Vic").await[0];
    assert_eq!(vic["end_date"], day(&s, 30), "visitors end after 30 days by default");
    let (_, again) = import(&s, &admin, good, false).await;
    assert_eq!((again["created"].as_u64(), again["updated"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(0), Some(4)), "{again}");

    // A leaving date in the file ends that person's access.
    let staff_aup = aup(&s, &admin, "staff", "Staff AUP", &today(&s)).await;
    sign(&s, &admin, nell, &staff_aup).await;
    let (st, g) = grant(&s, &admin, json!({"person_id": nell["id"], "system": "school Wi-Fi", "reason": "staff"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let leaving = format!("school_ref,kind,name,leaving_date\nMIS-2,staff,\"Nell New, Jr\",{}\n", today(&s));
    let (st, out) = import(&s, &admin, &leaving, false).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["rows"][0]["grants_ended"], json!([g["id"]]), "{out}");
    let r = report(&s, &admin).await;
    assert_eq!((r["leavers_with_live_grants"].as_u64(), r["with_access"].as_u64()), (Some(0), Some(0)), "{r}");

    // The export is CSV that imports back unchanged.
    let resp = s.client.get(s.url("/api/v1/register/export.csv")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("school_ref,kind,name,year_group,key_stage,start_date,leaving_date,notes,id,"), "{csv}");
    assert!(csv.contains("\"Nell New, Jr\""), "{csv}");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let (st, back) = import(&s, &admin, &csv, true).await;
    assert_eq!(st, StatusCode::OK, "{back}");
    assert_eq!(back["unchanged"], 4, "{back}");
    s.stop().await;
}

async fn report_must_be_zero_counts(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let staff_aup = aup(&s, &admin, "staff", "Staff AUP", &today(&s)).await;
    let visitor_aup = aup(&s, &admin, "visitor", "Visitor AUP", &today(&s)).await;
    let kim = signed_staff(&s, &admin, "Kim Keeps", &staff_aup).await;
    let (st, _) = grant(&s, &admin, json!({"person_id": kim["id"], "system": "library PCs", "reason": "staff"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let gone = signed_staff(&s, &admin, "Gil Gone", &staff_aup).await;
    grant(&s, &admin, json!({"person_id": gone["id"], "system": "school Wi-Fi", "reason": "staff"})).await;
    ok(&s, &format!("/api/v1/people/{}/leave", gone["id"].as_str().unwrap()), &admin, json!({"date": today(&s)})).await;
    let vic = person(&s, &admin, json!({"kind": "visitor", "name": "Val Visiting", "end_date": day(&s, 5)})).await;
    sign(&s, &admin, &vic, &visitor_aup).await;
    let (st, vg) = grant(&s, &admin, json!({"person_id": vic["id"], "system": "guest Wi-Fi", "reason": "supply teacher"})).await;
    assert_eq!(st, StatusCode::CREATED, "{vg}");
    assert_eq!(vg["until"], format!("{}T00:00:00Z", day(&s, 5)), "a grant ends by the person's end date");
    person(&s, &admin, json!({"kind": "staff", "name": "Nat Neversigned"})).await;
    let still = signed_staff(&s, &admin, "Sid Still", &staff_aup).await;
    grant(&s, &admin, json!({"person_id": still["id"], "udid": "IPAD-SID", "reason": "1:1"})).await;

    // After normal use the must-be-zero counts are zero.
    let r = report(&s, &admin).await;
    assert_eq!(r["without_current_signature"], 0, "{r}");
    assert_eq!(r["leavers_with_live_grants"], 0, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["with_access"], 3, "{r}");
    assert_eq!(r["lapsed"], 0, "{r}");
    assert_eq!(r["visitors_expiring"], 1, "{r}");
    assert_eq!(r["visitors_expiring_people"][0]["name"], "Val Visiting");

    // Behind the server's back: a grant moved to someone who never signed...
    s.raw_sql(&["UPDATE grants SET person_id = (SELECT id FROM people WHERE name = 'Nat Neversigned') WHERE system = 'library PCs'"]).await;
    let r = report(&s, &admin).await;
    assert_eq!(r["without_current_signature"], 1, "{r}");
    assert_eq!(r["ok"], false);
    // ...and a person marked as gone without their access ending.
    s.raw_sql(&["UPDATE people SET end_date = '2020-01-01' WHERE name = 'Sid Still'"]).await;
    let r = report(&s, &admin).await;
    assert_eq!(r["leavers_with_live_grants"], 1, "{r}");
    let (_, due) = s.get("/api/v1/register/due", &admin).await;
    assert!(due["items"].as_array().unwrap().iter().any(|i| i["person"]["name"] == "Nat Neversigned" && i["state"] == "unsigned"), "{due}");
    s.stop().await;
}

async fn roles_read_and_write(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let auditor = s.operator("gov.reader", "auditor").await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let tech = s.operator("tech.tom", "technician").await;
    let head = s.operator("head.hana", "headteacher").await;

    // Technicians write people and grants; they do not record signatures.
    let p = person(&s, &tech, json!({"kind": "pupil", "name": "Ria Role", "key_stage": "KS3"})).await;
    assert_eq!(p["audience"], "pupil_ks3");
    let pid = p["id"].as_str().unwrap().to_owned();
    // The DSL publishes the AUP and records the signature (no co-signer needed in KS3)...
    let (st, ks3) =
        s.post("/api/v1/aups", &dsl, json!({"audience": "pupil_ks3", "title": "KS3 AUP", "text": "t", "effective_date": today(&s)})).await;
    assert_eq!(st, StatusCode::CREATED, "{ks3}");
    let sig_req = json!({"person_id": pid, "aup_id": ks3["id"], "method": "online"});
    let (st, body) = s.post("/api/v1/signatures", &tech, sig_req.clone()).await;
    assert_eq!(assert_error(st, &body, StatusCode::FORBIDDEN), "forbidden");
    let (st, sig) = s.post("/api/v1/signatures", &dsl, sig_req).await;
    assert_eq!(st, StatusCode::CREATED, "{sig}");
    assert_eq!(sig["recorded_by"], "operator:dsl.jones");
    // ...but creates no people and grants nothing.
    let (st, body) = s.post("/api/v1/people", &dsl, json!({"kind": "staff", "name": "X"})).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    let g = json!({"person_id": pid, "system": "school Wi-Fi", "reason": "KS3"});
    let (st, body) = s.post("/api/v1/grants", &dsl, g.clone()).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    let (st, body) = s.post("/api/v1/grants", &tech, g).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");

    // The auditor reads everything and changes nothing.
    let ipad = s.enrolled_device(lanyard_bench::sim::Kind::SupervisedIpad).await;
    for path in [
        "/api/v1/people".to_owned(),
        format!("/api/v1/people/{pid}"),
        "/api/v1/aups".into(),
        "/api/v1/register/due".into(),
        "/api/v1/register/report".into(),
        "/api/v1/register/export.csv".into(),
        format!("/api/v1/devices/{}/holders", ipad.udid),
    ] {
        for tok in [&auditor, &dsl, &head, &tech] {
            let resp = s.client.get(s.url(&path)).bearer_auth(tok).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        }
    }
    for (path, body) in [
        ("/api/v1/people".to_owned(), json!({"kind": "staff", "name": "X"})),
        (format!("/api/v1/people/{pid}/leave"), json!({"date": today(&s)})),
        ("/api/v1/aups".into(), json!({"audience": "staff", "title": "t", "text": "t", "effective_date": today(&s)})),
        ("/api/v1/signatures".into(), json!({"person_id": pid, "aup_id": ks3["id"], "method": "paper"})),
        ("/api/v1/grants".into(), json!({"person_id": pid, "system": "s", "reason": "r"})),
        ("/api/v1/assignments".into(), json!({"person_id": pid, "udid": "IPAD-1"})),
    ] {
        let (st, b) = s.post(&path, &auditor, body).await;
        assert_eq!(assert_error(st, &b, StatusCode::FORBIDDEN), "forbidden", "POST {path}");
    }
    let (st, b) = import(&s, &auditor, "school_ref,kind,name\n", true).await;
    assert_error(st, &b, StatusCode::FORBIDDEN);
    let resp =
        s.client.patch(s.url(&format!("/api/v1/people/{pid}"))).bearer_auth(&auditor).json(&json!({"name": "Y"})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Nothing the auditor tried reached the database.
    let (_, people) = s.get("/api/v1/people", &admin).await;
    assert_eq!(people["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn every_write_is_audited(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let staff_aup = aup(&s, &admin, "staff", "Staff AUP", &today(&s)).await;
    let p = signed_staff(&s, &admin, "Ada Audit", &staff_aup).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let resp = s
        .client
        .patch(s.url(&format!("/api/v1/people/{pid}")))
        .bearer_auth(&admin)
        .json(&json!({"notes": "prefers Mac", "school_ref": "STAFF-7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let second = sign(&s, &admin, &p, &aup(&s, &admin, "staff", "Staff AUP v2", &today(&s)).await).await;
    let (_, g) = grant(&s, &admin, json!({"person_id": pid, "udid": "MAC-7", "reason": "laptop"})).await;
    let a = ok(&s, "/api/v1/assignments", &admin, json!({"person_id": pid, "udid": "MAC-7"})).await;
    ok(&s, &format!("/api/v1/assignments/{}/end", a["id"].as_str().unwrap()), &admin, json!({})).await;
    let first_sig = s.get(&format!("/api/v1/people/{pid}"), &admin).await.1["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] != second["id"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&s, &format!("/api/v1/signatures/{first_sig}/void"), &admin, json!({"reason": "duplicate paper form"})).await;
    let revoked =
        ok(&s, &format!("/api/v1/grants/{}/revoke", g["id"].as_str().unwrap()), &admin, json!({"reason": "laptop returned"})).await;
    assert_eq!(revoked["status"], "revoked");
    let (st, _) = import(&s, &admin, "school_ref,kind,name\nSTAFF-8,governor,Gus Governor\n", false).await;
    assert_eq!(st, StatusCode::OK);
    ok(&s, &format!("/api/v1/people/{pid}/leave"), &admin, json!({"date": today(&s)})).await;

    let (_, page) = s.get("/api/v1/audit?action=register.&limit=1000", &admin).await;
    let items = page["items"].as_array().unwrap();
    let actions: std::collections::BTreeSet<_> = items.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    for a in [
        "register.person.create",
        "register.person.update",
        "register.person.leave",
        "register.aup.create",
        "register.signature.create",
        "register.signature.void",
        "register.grant.create",
        "register.grant.revoke",
        "register.assignment.create",
        "register.assignment.end",
        "register.import.apply",
    ] {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }
    assert!(items.iter().all(|e| e["actor"] == "operator:admin"));
    let update = items.iter().find(|e| e["action"] == "register.person.update").unwrap();
    assert_eq!(update["target"], format!("person:{pid}"));
    assert_eq!(update["details"]["changes"]["school_ref"], json!({"from": null, "to": "STAFF-7"}));
    assert_eq!(update["details"]["changes"]["notes"], "changed", "free text stays out of the permanent log");
    let void = items.iter().find(|e| e["action"] == "register.signature.void").unwrap();
    assert_eq!(void["details"]["reason"], "duplicate paper form");
    let (_, chain) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!(chain["ok"], true, "{chain}");
    s.stop().await;
}

/// Issue 16, defect 3: for a row that creates a person, the dry run shows what would be created,
/// field by field in the shape it uses for changes (`{"from": null, "to": ...}`).
async fn import_dry_run_shows_who_it_would_create(b: Backend) {
    let s = manual(b).await;
    let admin = s.admin().await;
    let csv = "school_ref,kind,name,year_group,start_date,notes\n\
               MIS-100,pupil,Ava Archer,Y4,2026-09-01,\n\
               MIS-200,staff,Sam Smith,,01/09/2026,Supply cover\n";
    let (st, out) = import(&s, &admin, csv, true).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!((out["dry_run"].as_bool(), out["created"].as_u64()), (Some(true), Some(2)), "{out}");
    let ava = &out["rows"][0];
    assert_eq!((ava["action"].as_str(), ava["school_ref"].as_str()), (Some("created"), Some("MIS-100")));
    assert_eq!(
        ava["changes"],
        json!({
            "kind": {"from": null, "to": "pupil"},
            "name": {"from": null, "to": "Ava Archer"},
            "school_ref": {"from": null, "to": "MIS-100"},
            "year_group": {"from": null, "to": "Y4"},
            "key_stage": {"from": null, "to": "KS2"},
            "start_date": {"from": null, "to": "2026-09-01"},
        }),
        "{out}"
    );
    let sam = &out["rows"][1];
    assert_eq!(
        sam["changes"],
        json!({
            "kind": {"from": null, "to": "staff"},
            "name": {"from": null, "to": "Sam Smith"},
            "school_ref": {"from": null, "to": "MIS-200"},
            "start_date": {"from": null, "to": "2026-09-01"},
            "notes": {"from": null, "to": "Supply cover"},
        }),
        "{out}"
    );
    assert!(people_named(&s, &admin, "Ava").await.is_empty(), "a dry run writes nothing");

    // Applied, the same rows are reported the same way; the audit log names no one.
    let (st, applied) = import(&s, &admin, csv, false).await;
    assert_eq!(st, StatusCode::OK, "{applied}");
    assert_eq!(applied["rows"][0]["changes"], ava["changes"]);
    let (_, audit) = s.get("/api/v1/audit?action=register.person.create", &admin).await;
    let text = audit.to_string();
    assert!(text.contains("MIS-100") && !text.contains("Ava Archer") && !text.contains("Supply cover"), "{audit}");
    // An update still shows only what changes.
    let (_, again) = import(&s, &admin, "school_ref,kind,name,year_group\nMIS-100,pupil,Ava Archer,Y5\n", true).await;
    assert_eq!(again["rows"][0]["action"], "updated");
    assert_eq!(again["rows"][0]["changes"], json!({"year_group": {"from": "Y4", "to": "Y5"}}));
    s.stop().await;
}

/// Issue 16, defect 4: a person can leave on their start date (a supply teacher for one day);
/// a leaving date of today or earlier ends their access now. The same rule holds for an end
/// date set by PATCH.
async fn a_person_can_leave_on_their_start_date(b: Backend) {
    let s = manual(b).await;
    let admin = s.admin().await;
    let staff_aup = aup(&s, &admin, "staff", "Staff AUP", &today(&s)).await;

    // Arrived today, leaves today: their grant ends now.
    let sue = person(&s, &admin, json!({"kind": "staff", "name": "Sue Supply", "start_date": today(&s)})).await;
    sign(&s, &admin, &sue, &staff_aup).await;
    let (st, g) = grant(&s, &admin, json!({"person_id": sue["id"], "system": "school Wi-Fi", "reason": "supply cover"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let (st, out) = s.post(&format!("/api/v1/people/{}/leave", sue["id"].as_str().unwrap()), &admin, json!({"date": today(&s)})).await;
    assert_eq!(st, StatusCode::OK, "leaving on the start date: {out}");
    assert_eq!(time(&out["access_ends_at"]), now(&s));
    assert_eq!(out["grants_ended"], json!([g["id"]]));
    assert_eq!(out["person"]["leaver"], true);
    let (_, detail) = s.get(&format!("/api/v1/people/{}", sue["id"].as_str().unwrap()), &admin).await;
    assert_eq!(detail["grants"][0]["status"], "revoked", "{detail}");

    // Started last week, leaving dated on the start date (already past): ends now too.
    let pip = person(&s, &admin, json!({"kind": "staff", "name": "Pip Past", "start_date": day(&s, -7)})).await;
    sign(&s, &admin, &pip, &staff_aup).await;
    grant(&s, &admin, json!({"person_id": pip["id"], "system": "school Wi-Fi", "reason": "cover"})).await;
    let (st, out) = s.post(&format!("/api/v1/people/{}/leave", pip["id"].as_str().unwrap()), &admin, json!({"date": day(&s, -7)})).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(time(&out["access_ends_at"]), now(&s));
    assert_eq!(out["grants_ended"].as_array().unwrap().len(), 1, "{out}");

    // Before the start date is still refused, naming the field.
    let fay = person(&s, &admin, json!({"kind": "staff", "name": "Fay Future", "start_date": day(&s, 10)})).await;
    let fid = fay["id"].as_str().unwrap();
    let (st, e) = s.post(&format!("/api/v1/people/{fid}/leave"), &admin, json!({"date": day(&s, 9)})).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("date")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("on or after the start date"), "{e}");
    // On a future start date: access ends at 00:00 UTC that day.
    let (st, out) = s.post(&format!("/api/v1/people/{fid}/leave"), &admin, json!({"date": day(&s, 10)})).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["access_ends_at"], format!("{}T00:00:00Z", day(&s, 10)));

    // PATCH and create follow the same rule.
    let (st, p) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/people/{fid}"),
            Some(&admin),
            Some(json!({"start_date": day(&s, 20), "end_date": day(&s, 20)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let (st, e) =
        s.call(reqwest::Method::PATCH, &format!("/api/v1/people/{fid}"), Some(&admin), Some(json!({"end_date": day(&s, 19)}))).await;
    assert_eq!((st, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("end_date")), "{e}");
    let (st, p) = s
        .post("/api/v1/people", &admin, json!({"kind": "visitor", "name": "Vic Visit", "start_date": day(&s, 2), "end_date": day(&s, 2)}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    s.stop().await;
}

/// Issue 16, defect 5: the due list names everyone who must sign the current version of their
/// AUP, with or without a grant today, and says why; leavers are not due.
async fn due_list_includes_people_without_access(b: Backend) {
    let s = manual(b).await;
    let admin = s.admin().await;
    let v1 = aup(&s, &admin, "staff", "Staff AUP 2025", &today(&s)).await;
    let sam = signed_staff(&s, &admin, "Sam Signed", &v1).await;
    let (st, g) = grant(&s, &admin, json!({"person_id": sam["id"], "system": "school Wi-Fi", "reason": "teaching"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let olly = signed_staff(&s, &admin, "Olly Older", &v1).await;
    let nia = person(&s, &admin, json!({"kind": "staff", "name": "Nia Never"})).await;
    let lee = person(&s, &admin, json!({"kind": "staff", "name": "Lee Left", "start_date": day(&s, -30)})).await;
    ok(&s, &format!("/api/v1/people/{}/leave", lee["id"].as_str().unwrap()), &admin, json!({"date": day(&s, -1)})).await;

    // Nia has never signed and holds nothing, but must sign before she gets anything.
    let items = due_reasons(&s, &admin, "").await;
    let names: Vec<_> = items.iter().map(|i| (i.0.as_str(), i.1.as_str(), i.2)).collect();
    assert_eq!(names, vec![("Nia Never", "unsigned", false)], "{items:?}");
    assert!(items[0].3.contains("never signed") && items[0].3.contains("Staff AUP 2025"), "{items:?}");

    // A new version: every earlier signer is due, with or without access.
    aup(&s, &admin, "staff", "Staff AUP 2026", &today(&s)).await;
    let items = due_reasons(&s, &admin, "").await;
    let names: Vec<_> = items.iter().map(|i| (i.0.as_str(), i.1.as_str(), i.2)).collect();
    assert_eq!(
        names,
        vec![("Nia Never", "unsigned", false), ("Olly Older", "outdated", false), ("Sam Signed", "outdated", true)],
        "{items:?}"
    );
    assert!(items[1].3.contains("version 1") && items[1].3.contains("version 2"), "superseded: {items:?}");
    // Only those with access, when asked.
    let only = due_reasons(&s, &admin, "?everyone=false").await;
    assert_eq!(only.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), vec!["Sam Signed"]);

    // Signed the current version over a year ago: expired.
    let (_, v2) = s.get("/api/v1/aups?audience=staff", &admin).await;
    let v2 = v2["items"].as_array().unwrap().iter().find(|a| a["version"] == 2).unwrap().clone();
    sign(&s, &admin, &olly, &v2).await;
    let admin = advance(&s, Duration::days(366)).await;
    let items = due_reasons(&s, &admin, "").await;
    let olly_item = items.iter().find(|i| i.0 == "Olly Older").expect("Olly is due again");
    assert_eq!(olly_item.1, "lapsed");
    assert!(olly_item.3.contains("expired"), "{olly_item:?}");
    assert!(items.iter().all(|i| i.0 != "Lee Left"), "leavers are not due: {items:?}");
    let _ = (nia, g);
    s.stop().await;
}

/// The due list as (name, state, has_access, reason), sorted by name.
async fn due_reasons(s: &TestServer, admin: &str, q: &str) -> Vec<(String, String, bool, String)> {
    let (st, due) = s.get(&format!("/api/v1/register/due{q}"), admin).await;
    assert_eq!(st, StatusCode::OK, "{due}");
    let mut items: Vec<(String, String, bool, String)> = due["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["person"]["name"].as_str().unwrap().to_owned(),
                i["state"].as_str().unwrap().to_owned(),
                i["has_access"].as_bool().unwrap(),
                i["reason"].as_str().unwrap_or_else(|| panic!("each item says why: {i}")).to_owned(),
            )
        })
        .collect();
    items.sort();
    items
}
