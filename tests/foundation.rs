//! The foundation, end to end against the real server: login, roles, operators, API tokens,
//! the audit log and its chain, errors, health — each on SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::{Backend, TestServer, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests!(
    login_and_roles,
    failed_logins_are_audited_and_locked_out,
    operators_are_managed_by_admins,
    api_tokens_for_scripts,
    audit_log_filters_and_pages,
    tampered_audit_row_is_caught,
    concurrent_actions_keep_one_chain,
    bad_requests_get_json_errors,
    health_and_ca,
);

async fn login_and_roles(b: Backend) {
    let s = TestServer::start(b).await;
    let (status, body) =
        s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "admin", "password": common::ADMIN_PASSWORD}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    assert!(body["expires_at"].is_string());
    let token = body["token"].as_str().unwrap();
    let (status, me) = s.get("/api/v1/auth/whoami", token).await;
    assert_eq!((status, me["actor"].as_str()), (StatusCode::OK, Some("operator:admin")));

    // A technician cannot read the audit log or manage operators; an auditor can read the log only.
    let tech = s.operator("tess", "technician").await;
    assert_error(s.get("/api/v1/audit", &tech).await.0, &s.get("/api/v1/audit", &tech).await.1, StatusCode::FORBIDDEN);
    let (st, body) = s.post("/api/v1/operators", &tech, json!({"username": "x1", "password": "long-enough-pass", "role": "admin"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::FORBIDDEN), "forbidden");
    assert!(body["error"].as_str().unwrap().contains("technician"), "{body}");
    let auditor = s.operator("gov", "auditor").await;
    assert_eq!(s.get("/api/v1/audit", &auditor).await.0, StatusCode::OK);
    let (st, body) = s.post("/api/v1/api-tokens", &auditor, json!({"name": "n", "role": "admin"})).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn failed_logins_are_audited_and_locked_out(b: Backend) {
    let s = TestServer::start(b).await;
    let bad = json!({"username": "admin", "password": "wrong password!"});
    for _ in 0..10 {
        let (st, body) = s.call(Method::POST, "/api/v1/auth/login", None, Some(bad.clone())).await;
        assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized");
    }
    // Now even the right password is refused until the lockout ends, with a clear message.
    let resp = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": common::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many failed logins"), "{body}");

    // Each failure is in the audit log (read with the CLI's reset path: an unlocked second admin).
    s.ctx.store.clear_login_failures("user:admin").await.unwrap();
    s.ctx.store.clear_login_failures("ip:127.0.0.1").await.unwrap();
    let admin = s.admin().await;
    let (_, page) = s.get("/api/v1/audit?action=auth.login_failed&limit=100", &admin).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 10, "{page}");
    assert_eq!(page["items"][0]["ip"], "127.0.0.1");
    let (_, page) = s.get("/api/v1/audit?action=auth.login_locked", &admin).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn operators_are_managed_by_admins(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let (st, op) =
        s.post("/api/v1/operators", &admin, json!({"username": "dsl.jones", "password": "a-good-long-password", "role": "dsl"})).await;
    assert_eq!(st, StatusCode::CREATED, "{op}");
    assert_eq!(op["role"], "dsl");
    assert!(op.get("password_hash").is_none());
    let (st, body) =
        s.post("/api/v1/operators", &admin, json!({"username": "dsl.jones", "password": "a-good-long-password", "role": "dsl"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "username_taken");
    let (st, body) = s.post("/api/v1/operators", &admin, json!({"username": "short", "password": "short", "role": "dsl"})).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY), "invalid_field");
    assert_eq!(body["field"], "password");
    let (st, body) =
        s.post("/api/v1/operators", &admin, json!({"username": "x", "password": "a-good-long-password", "role": "janitor"})).await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "role", "{body}");

    // The DSL logs in, then is disabled: the session stops working at once.
    let dsl = s.login("dsl.jones", "a-good-long-password").await;
    assert_eq!(s.get("/api/v1/auth/whoami", &dsl).await.0, StatusCode::OK);
    let id = op["id"].as_str().unwrap();
    let (st, body) = s.call(Method::PATCH, &format!("/api/v1/operators/{id}"), Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!((st, body["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    assert_eq!(s.get("/api/v1/auth/whoami", &dsl).await.0, StatusCode::UNAUTHORIZED);
    let (st, _) =
        s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "dsl.jones", "password": "a-good-long-password"}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Password change and re-enable.
    let (st, _) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/operators/{id}"),
            Some(&admin),
            Some(json!({"disabled": false, "password": "another-long-password"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.login("dsl.jones", "another-long-password").await;

    // The last admin cannot be disabled or demoted.
    let (_, list) = s.get("/api/v1/operators", &admin).await;
    let admin_id = list["items"].as_array().unwrap().iter().find(|o| o["username"] == "admin").unwrap()["id"].as_str().unwrap().to_owned();
    let (st, body) = s.call(Method::PATCH, &format!("/api/v1/operators/{admin_id}"), Some(&admin), Some(json!({"role": "auditor"}))).await;
    assert_eq!(assert_error(st, &body, StatusCode::CONFLICT), "last_admin");

    // Pagination: a page of one, then the next.
    let (_, p1) = s.get("/api/v1/operators?limit=1", &admin).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 1);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = s.get(&format!("/api/v1/operators?limit=1&cursor={cursor}"), &admin).await;
    assert_ne!(p1["items"][0]["username"], p2["items"][0]["username"]);

    // Every change is audited.
    let (_, audit) = s.get("/api/v1/audit?action=operator.", &admin).await;
    let actions: Vec<_> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions.iter().filter(|a| *a == "operator.update").count(), 2, "{actions:?}");
    assert!(actions.contains(&"operator.create".to_string()));
    s.stop().await;
}

async fn api_tokens_for_scripts(b: Backend) {
    let s = TestServer::start_with(b, common::Options { manual_clock: true, ..Default::default() }).await;
    let admin = s.admin().await;
    let (st, t) = s.post("/api/v1/api-tokens", &admin, json!({"name": "inventory audit script", "role": "auditor"})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    for k in ["id", "name", "role", "token", "expires_at"] {
        assert!(t.get(k).is_some(), "missing {k}: {t}");
    }
    let token = t["token"].as_str().unwrap().to_owned();
    // Usable exactly like a JWT, with the token's role.
    let (st, page) = s.get("/api/v1/audit", &token).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page["items"].is_array() && page.get("next_cursor").is_some());
    let (st, body) =
        s.post("/api/v1/operators", &token, json!({"username": "x", "password": "a-good-long-password", "role": "admin"})).await;
    assert_error(st, &body, StatusCode::FORBIDDEN);
    // Actions by a token are audited under the token's name.
    let (_, me) = s.get("/api/v1/auth/whoami", &token).await;
    assert_eq!(me["actor"], "token:inventory audit script");
    // Listed without the secret; stored hashed.
    let (_, list) = s.get("/api/v1/api-tokens", &admin).await;
    assert!(list["items"][0].get("token").is_none());
    let stored = s.ctx.store.list_api_tokens(10).await.unwrap();
    assert_ne!(stored[0].token_hash, token);
    assert!(!stored[0].token_hash.contains(&token));

    // Expiry.
    let expires = (s.ctx.now() + chrono::Duration::days(1)).to_rfc3339();
    let (_, short) = s.post("/api/v1/api-tokens", &admin, json!({"name": "short-lived", "role": "auditor", "expires_at": expires})).await;
    let short_token = short["token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/v1/audit", &short_token).await.0, StatusCode::OK);
    s.clock.as_ref().unwrap().advance(chrono::Duration::days(2));
    let (st, body) = s.get("/api/v1/audit", &short_token).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("expired"));
    // The admin's JWT has expired too (one hour); log in again.
    let admin = s.admin().await;

    // Revocation.
    let id = t["id"].as_str().unwrap();
    let (st, _) = s.call(Method::DELETE, &format!("/api/v1/api-tokens/{id}"), Some(&admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = s.get("/api/v1/audit", &token).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("revoked"));
    let (st, _) = s.call(Method::DELETE, &format!("/api/v1/api-tokens/{id}"), Some(&admin), None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, audit) = s.get("/api/v1/audit?action=api_token.", &admin).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");
    // A forged token is refused.
    let (st, _) = s.get("/api/v1/audit", "lny_forgedforgedforgedforgedforgedforgedforg").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn audit_log_filters_and_pages(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    for i in 0..5 {
        s.post("/api/v1/api-tokens", &admin, json!({"name": format!("t{i}"), "role": "auditor"})).await;
    }
    let (_, all) = s.get("/api/v1/audit?action=api_token.create", &admin).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["target"], "t4", "newest first");
    assert_eq!(items[0]["actor"], "operator:admin");
    assert_eq!(items[0]["details"]["role"], "auditor");
    let (_, p1) = s.get("/api/v1/audit?action=api_token.create&limit=2", &admin).await;
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = s.get(&format!("/api/v1/audit?action=api_token.create&limit=2&cursor={c}"), &admin).await;
    assert_eq!(p2["items"][0]["target"], "t2");
    let (_, by_target) = s.get("/api/v1/audit?target=t3", &admin).await;
    assert_eq!(by_target["items"].as_array().unwrap().len(), 1);
    let (_, by_actor) = s.get("/api/v1/audit?actor=system", &admin).await;
    assert_eq!(by_actor["items"][0]["action"], "operator.create", "the first admin was made by the system");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let (_, none) = s.get(&format!("/api/v1/audit?since={future}"), &admin).await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let (st, body) = s.get("/api/v1/audit?since=yesterday", &admin).await;
    assert_eq!(body["field"], "since", "{body}");
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, v) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!(v["ok"], true, "{v}");
    s.stop().await;
}

async fn tampered_audit_row_is_caught(b: Backend) {
    let s = TestServer::start(b.clone()).await;
    let admin = s.admin().await;
    s.post("/api/v1/api-tokens", &admin, json!({"name": "script", "role": "auditor"})).await;
    let verify = |s: &TestServer| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(["audit", "verify"])
            .env("LANYARD_DATA_DIR", s.dir.path().join("data"))
            .env("LANYARD_DATABASE_URL", s.backend.database_url(s.dir.path()))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = verify(&s);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");

    // The database refuses edits from any code path...
    let url = s.backend.database_url(s.dir.path());
    let refused = match &b {
        Backend::Sqlite => {
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query("UPDATE audit_log SET actor = 'x' WHERE seq = 2").execute(&mut c).await.is_err()
        }
        Backend::Postgres(_) => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query("UPDATE audit_log SET actor = 'x' WHERE seq = 2").execute(&mut c).await.is_err()
        }
    };
    assert!(refused, "audit_log must be append-only");

    // ...but someone with the database can drop the guard and turn the auditor token (entry 3)
    // into an admin one. verify names the edited entry.
    match &b {
        Backend::Sqlite => {
            s.raw_sql(&[
                "DROP TRIGGER audit_log_no_update",
                "UPDATE audit_log SET details = replace(details, 'auditor', 'admin') WHERE seq = 3",
            ])
            .await
        }
        Backend::Postgres(_) => {
            s.raw_sql(&[
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
                "UPDATE audit_log SET details = replace(details, 'auditor', 'admin') WHERE seq = 3",
            ])
            .await
        }
    }
    let (ok, out) = verify(&s);
    assert!(!ok, "verify must fail: {out}");
    assert!(out.contains("seq 3"), "{out}");
    let (_, v) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!((v["ok"].as_bool(), v["first_bad_seq"].as_i64()), (Some(false), Some(3)), "{v}");

    // Deleting the newest entry is caught too.
    match &b {
        Backend::Sqlite => {
            s.raw_sql(&["DROP TRIGGER audit_log_no_delete", "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"]).await
        }
        Backend::Postgres(_) => s.raw_sql(&["DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"]).await,
    }
    s.raw_sql(&["UPDATE audit_log SET details = '{\"role\":\"auditor\",\"id\":null}' WHERE seq = 2"]).await;
    let report = lanyard::services::audit::verify_chain(s.ctx.store.as_ref()).await.unwrap();
    assert!(!report.ok);
    s.stop().await;
}

async fn concurrent_actions_keep_one_chain(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (client, url, admin) = (s.client.clone(), s.url("/api/v1/api-tokens"), admin.clone());
        tasks.push(tokio::spawn(async move {
            client.post(url).bearer_auth(admin).json(&json!({"name": format!("c{i}"), "role": "auditor"})).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    let report = lanyard::services::audit::verify_chain(s.ctx.store.as_ref()).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.entries_checked >= 26);
    s.stop().await;
}

async fn bad_requests_get_json_errors(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let (st, body) = s.call(Method::GET, "/api/v1/audit", None, None).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized");
    let (st, body) = s.get("/api/v1/audit", "not-a-token").await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED);
    let raw = |body: &'static str, ct: &'static str| {
        s.client.post(s.url("/api/v1/api-tokens")).bearer_auth(&admin).header("content-type", ct).body(body).send()
    };
    let r = raw("{not json", "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "bad_request");
    let r = raw(r#"{"name":"x","role":"auditor","colour":"red"}"#, "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("colour"));
    let r = raw(r#"{"role":"auditor"}"#, "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["field"], "name");
    let r = raw(r#"{"name":"x","role":"auditor"}"#, "text/plain").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = format!(r#"{{"name":"{}","role":"auditor"}}"#, "x".repeat(2 * 1024 * 1024));
    // A fresh client: the server closes a connection whose oversized body it did not read.
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/api-tokens"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "payload_too_large");
    let (st, body) = s.get("/api/v1/no-such-thing", &admin).await;
    assert_eq!(assert_error(st, &body, StatusCode::NOT_FOUND), "not_found");
    let (st, body) = s.call(Method::PATCH, "/api/v1/operators/not-a-uuid", Some(&admin), Some(json!({}))).await;
    assert_error(st, &body, StatusCode::NOT_FOUND);
    // Nothing above changed anything: only the admin's login and nothing else in the log.
    let (_, log) = s.get("/api/v1/audit?action=api_token.create", &admin).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 0);
    s.stop().await;
}

async fn health_and_ca(b: Backend) {
    let s = TestServer::start(b.clone()).await;
    let (st, body) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((st, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, body) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["database"]["migrations_applied"], true);
    let expected_backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres(_) => "postgres",
    };
    assert_eq!(body["database"]["backend"], expected_backend);
    let pem = s.client.get(s.url("/mdm/ca.pem")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(pem.as_ref(), std::fs::read(s.dir.path().join("data/ca.pem")).unwrap().as_slice());
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"), "every response carries a request id");
    // The OpenAPI document is served and every path in it is routed.
    let (st, doc) = s.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let admin = s.admin().await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{udid}", "nosuchdevice")
                .replace("{uuid}", "00000000-0000-0000-0000-000000000000");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (st, body) = s.call(m, &concrete, Some(&admin), None).await;
            let unrouted = st == StatusCode::NOT_FOUND && body["error"].as_str().is_some_and(|e| e.starts_with("no such endpoint"));
            assert!(!unrouted && st != StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
        }
    }
    // Readiness reflects the database: close it and /readyz says so.
    s.ctx.store.close().await;
    let (st, body) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    s.stop().await;
}

/// TLS with HTTP/2 negotiated by ALPN, certificate chaining to the device CA.
#[tokio::test]
async fn tls_and_http2() {
    let s = TestServer::start_with(Backend::Sqlite, common::Options { tls: true, ..Default::default() }).await;
    assert!(s.base.starts_with("https://localhost:"));
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&s.ctx.pki.ca_pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    assert_eq!(h1.get(s.url("/healthz")).send().await.unwrap().version(), reqwest::Version::HTTP_11);
    // A client that does not trust our CA is refused by the TLS layer.
    assert!(reqwest::Client::new().get(s.url("/healthz")).send().await.is_err());
    s.stop().await;
}
