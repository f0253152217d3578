//! Operator sessions, end to end against the real server: what ends a session (logging out in
//! the console or through the API, a password reset, disabling, a role change), the login
//! lockout under concurrent guessing, and unknown usernames costing what known ones do.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Backend, TestServer, assert_error};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

backend_tests!(
    console_logout_ends_the_session,
    api_logout_ends_only_that_session,
    password_reset_disable_and_role_change_end_sessions,
    concurrent_wrong_passwords_for_one_account_are_capped,
    concurrent_wrong_passwords_from_one_address_are_capped,
    right_passwords_do_not_use_up_an_address,
    forged_and_expired_session_tokens_get_401,
);

/// A console client without a browser: keeps the cookies by hand, follows no redirects.
struct Console {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

impl Console {
    fn new(s: &TestServer) -> Console {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Console { http, base: s.base.clone(), cookies: vec![] }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let resp = req.header("cookie", cookie).send().await.unwrap();
        for v in resp.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
        let location = resp.headers().get(LOCATION).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        Page { status: resp.status(), location, body: resp.text().await.unwrap() }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let req = self.http.post(format!("{}{path}", self.base)).header("content-type", "application/x-www-form-urlencoded").body(body);
        self.send(req).await
    }

    async fn login(&mut self, username: &str, password: &str) {
        let page = self.get("/ui/login").await;
        let csrf = csrf(&page.body);
        let r = self.post("/ui/login", &[("csrf", &csrf), ("username", username), ("password", password), ("next", "/ui/")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "console login as {username}: {}", r.body);
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// The first `name="csrf" value="..."` on a page.
fn csrf(body: &str) -> String {
    let i = body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    body[i..].split('"').next().unwrap().to_owned()
}

/// The session JWT inside a console cookie (`<jwt>~<ts>~<mac>`).
fn jwt_of(cookie: &str) -> String {
    cookie.split('~').next().unwrap().to_owned()
}

async fn operator_id(s: &TestServer, admin: &str, username: &str) -> String {
    let (_, ops) = s.get("/api/v1/operators", admin).await;
    ops["items"].as_array().unwrap().iter().find(|o| o["username"] == username).unwrap()["id"].as_str().unwrap().to_owned()
}

async fn patch_operator(s: &TestServer, admin: &str, id: &str, body: Value) -> Value {
    let (st, body) = s.call(Method::PATCH, &format!("/api/v1/operators/{id}"), Some(admin), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

async fn whoami(s: &TestServer, token: &str) -> (StatusCode, Value) {
    s.get("/api/v1/auth/whoami", token).await
}

/// D8: after logging out of the console, a saved copy of the cookie opens no page and its JWT
/// answers no API call: the session is ended on the server, not only forgotten by the browser.
async fn console_logout_ends_the_session(b: Backend) {
    let s = TestServer::start(b).await;
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let home = c.get("/ui/").await;
    assert_eq!(home.status, StatusCode::OK);
    let saved = c.cookie("__Host-lanyard").expect("a session cookie");
    let jwt = jwt_of(&saved);
    assert_eq!(whoami(&s, &jwt).await.0, StatusCode::OK);
    // A second console session of the same operator, which logging out of the first leaves alone.
    let mut other = Console::new(&s);
    other.login("admin", ADMIN_PASSWORD).await;

    let r = c.post("/ui/logout", &[("csrf", &csrf(&home.body))]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.ends_with("why=logout"), "{}", r.location);
    assert!(c.cookie("__Host-lanyard").is_none(), "the cookie is cleared");

    // The saved cookie, put back, opens nothing.
    for path in ["/ui/", "/ui/devices", "/ui/audit"] {
        let mut replay = Console::new(&s);
        replay.cookies.push(("__Host-lanyard".into(), saved.clone()));
        let r = replay.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path} with a logged-out cookie: {}", r.body);
        assert!(r.location.starts_with("/ui/login"), "{}", r.location);
        assert!(r.location.ends_with("why=ended"), "{}", r.location);
    }
    let login = Console::new(&s).get("/ui/login?why=ended").await;
    assert!(login.body.contains("Your session has ended"), "{}", login.body);
    // A form posted with it does nothing.
    let mut replay = Console::new(&s);
    replay.cookies.push(("__Host-lanyard".into(), saved.clone()));
    let r = replay.post("/ui/enroll", &[("csrf", &csrf(&home.body)), ("label", "after logout")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(s.ctx.enrollment.list_enrollment_tokens().await.unwrap().is_empty());
    // Its JWT is refused as a bearer token.
    let (st, body) = whoami(&s, &jwt).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized");
    assert!(body["error"].as_str().unwrap().contains("session has ended"), "{body}");

    // The other session goes on.
    assert_eq!(other.get("/ui/").await.status, StatusCode::OK);

    // The logout is audited once, from the console.
    let admin = s.admin().await;
    let (_, log) = s.get("/api/v1/audit?action=auth.logout", &admin).await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    assert_eq!((items[0]["actor"].as_str(), items[0]["target"].as_str()), (Some("operator:admin"), Some("admin")));
    let (_, verify) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!(verify["ok"], true, "{verify}");
    s.stop().await;
}

/// D8: `POST /api/v1/auth/logout` ends the bearer's own session (and no other), is described in
/// the OpenAPI document, and refuses an API token, which has no session.
async fn api_logout_ends_only_that_session(b: Backend) {
    let s = TestServer::start(b).await;
    let first = s.admin().await;
    let second = s.admin().await;
    let (st, body) = s.call(Method::POST, "/api/v1/auth/logout", Some(&first), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, body) = whoami(&s, &first).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized");
    // Logging out again with the ended token is refused like any other use of it.
    let (st, body) = s.call(Method::POST, "/api/v1/auth/logout", Some(&first), None).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&s, &second).await.0, StatusCode::OK, "the operator's other session goes on");

    // An API token is not a session: 400 saying how to revoke it, and it keeps working.
    let (st, tok) = s.post("/api/v1/api-tokens", &second, json!({"name": "inventory", "role": "auditor"})).await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let token = tok["token"].as_str().unwrap();
    let (st, body) = s.call(Method::POST, "/api/v1/auth/logout", Some(token), None).await;
    assert_eq!(assert_error(st, &body, StatusCode::BAD_REQUEST), "bad_request");
    assert!(body["error"].as_str().unwrap().contains("DELETE /api/v1/api-tokens/"), "{body}");
    assert_eq!(whoami(&s, token).await.0, StatusCode::OK);
    let (st, body) = s.call(Method::POST, "/api/v1/auth/logout", None, None).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED);

    let (_, log) = s.get("/api/v1/audit?action=auth.logout", &second).await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    assert_eq!(items[0]["actor"], "operator:admin");

    // The OpenAPI document describes it.
    let (st, doc) = s.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let op = &doc["paths"]["/api/v1/auth/logout"]["post"];
    assert!(op["summary"].is_string(), "{op}");
    assert!(op["responses"]["204"].is_object(), "{op}");
    s.stop().await;
}

/// D9: a password reset, disabling or a role change ends the operator's sessions at once — API
/// and console alike, including a token issued in the same second just before the change —
/// and re-enabling an account does not bring its old sessions back. A change that changes
/// nothing ends nothing. Each change and its audit entry are written together.
async fn password_reset_disable_and_role_change_end_sessions(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin().await;
    let mut tok = s.operator("tess", "technician").await;
    let id = operator_id(&s, &admin, "tess").await;
    let mut c = Console::new(&s);
    c.login("tess", "tess-password-123").await;
    assert_eq!(c.get("/ui/devices").await.status, StatusCode::OK);

    // Nothing changes: the sessions go on.
    patch_operator(&s, &admin, &id, json!({"role": "technician", "disabled": false})).await;
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::OK);

    // A password reset by an admin, straight after the login (most likely in the same second).
    let fresh = s.login("tess", "tess-password-123").await;
    patch_operator(&s, &admin, &id, json!({"password": "a-new-long-password"})).await;
    for t in [&tok, &fresh] {
        let (st, body) = whoami(&s, t).await;
        assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized");
    }
    let r = c.get("/ui/devices").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location.ends_with("why=ended"), "{}", r.location);
    let (st, _) =
        s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "tess", "password": "tess-password-123"}))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the old password is gone");
    tok = s.login("tess", "a-new-long-password").await;
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::OK);

    // A role change.
    patch_operator(&s, &admin, &id, json!({"role": "auditor"})).await;
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::UNAUTHORIZED);
    tok = s.login("tess", "a-new-long-password").await;
    let (_, me) = whoami(&s, &tok).await;
    assert_eq!(me["role"], "auditor");

    // Disabled, then enabled again: the session from before stays ended.
    patch_operator(&s, &admin, &id, json!({"disabled": true})).await;
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::UNAUTHORIZED);
    patch_operator(&s, &admin, &id, json!({"disabled": false})).await;
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::UNAUTHORIZED, "re-enabling does not revive old sessions");
    tok = s.login("tess", "a-new-long-password").await;
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::OK);

    // The CLI's reset (`lanyard admin reset-password`) goes through the same service.
    let op = s.ctx.store.operator_by_username("tess").await.unwrap().unwrap();
    s.ctx
        .operators
        .update_operator(&lanyard::services::auth::Actor::cli(), op.id, None, None, Some("the-cli-reset-password"))
        .await
        .unwrap();
    assert_eq!(whoami(&s, &tok).await.0, StatusCode::UNAUTHORIZED);

    // The admin's own session was never touched; every change is audited, saying whether it
    // ended sessions, and the chain is whole.
    let (_, log) = s.get("/api/v1/audit?action=operator.update&limit=100", &admin).await;
    let ended: Vec<bool> =
        log["items"].as_array().unwrap().iter().rev().map(|e| e["details"]["sessions_ended"].as_bool().unwrap()).collect();
    assert_eq!(ended, vec![false, true, true, true, true, true], "{log}");
    let (_, verify) = s.get("/api/v1/audit/verify", &admin).await;
    assert_eq!(verify["ok"], true, "{verify}");

    // An update of no one writes nothing, audit entry included.
    let before = s.get("/api/v1/audit?limit=1", &admin).await.1["items"][0]["seq"].clone();
    let (st, _) = s
        .call(Method::PATCH, "/api/v1/operators/00000000-0000-0000-0000-000000000000", Some(&admin), Some(json!({"disabled": true})))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/audit?limit=1", &admin).await.1["items"][0]["seq"], before);
    s.stop().await;
}

/// Send `n` logins at once; (statuses, Retry-After of each 429).
async fn concurrent_logins(s: &TestServer, n: usize, username: impl Fn(usize) -> String) -> (Vec<StatusCode>, Vec<Option<u64>>) {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = s.client.clone();
        let url = s.url("/api/v1/auth/login");
        let body = json!({"username": username(i), "password": format!("wrong guess {i}")});
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = client.post(url).json(&body).send().await.unwrap();
            let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            (resp.status(), retry)
        }));
    }
    let mut statuses = Vec::new();
    let mut retries = Vec::new();
    for t in tasks {
        let (st, retry) = t.await.unwrap();
        statuses.push(st);
        retries.push(retry);
    }
    (statuses, retries)
}

fn assert_capped(statuses: &[StatusCode], retries: &[Option<u64>]) -> usize {
    let wrong = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let locked = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(wrong <= 10, "{wrong} wrong passwords were checked at once (at most 10 may be): {statuses:?}");
    assert!(wrong >= 1, "{statuses:?}");
    assert_eq!(wrong + locked, statuses.len(), "only 401 and 429: {statuses:?}");
    for (st, retry) in statuses.iter().zip(retries) {
        if *st == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry.is_some_and(|r| r >= 1), "a 429 without Retry-After: {retry:?}");
        }
    }
    wrong
}

/// D14: 60 wrong passwords for one account at once: at most 10 are checked (401), the rest are
/// refused before their password is looked at (429 with Retry-After), and the account is then
/// locked, the right password included.
async fn concurrent_wrong_passwords_for_one_account_are_capped(b: Backend) {
    let s = TestServer::start(b).await;
    let (statuses, retries) = concurrent_logins(&s, 60, |_| "admin".to_owned()).await;
    let wrong = assert_capped(&statuses, &retries);
    let (st, body) = s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "admin", "password": ADMIN_PASSWORD}))).await;
    assert_eq!(assert_error(st, &body, StatusCode::TOO_MANY_REQUESTS), "too_many_requests", "{body}");
    assert!(body["error"].as_str().unwrap().contains("too many failed logins"), "{body}");

    // The audit log agrees: one failure per password checked.
    s.ctx.store.clear_login_failures("user:admin").await.unwrap();
    s.ctx.store.clear_login_failures("ip:127.0.0.1").await.unwrap();
    let admin = s.admin().await;
    let (_, log) = s.get("/api/v1/audit?action=auth.login_failed&limit=100", &admin).await;
    assert_eq!(log["items"].as_array().unwrap().len(), wrong, "{log}");
    s.stop().await;
}

/// D14: 60 wrong passwords at once from one address, each for a different (unknown) username:
/// the address's count caps them at 10 just the same.
async fn concurrent_wrong_passwords_from_one_address_are_capped(b: Backend) {
    let s = TestServer::start(b).await;
    let (statuses, retries) = concurrent_logins(&s, 60, |i| format!("guess{i}")).await;
    assert_capped(&statuses, &retries);
    // The address stays locked for any username, even with the right password.
    let (st, _) = s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "admin", "password": ADMIN_PASSWORD}))).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

/// Counting attempts before the password is checked must not count the right ones: a school
/// behind one address logs in all day after a few mistakes.
async fn right_passwords_do_not_use_up_an_address(b: Backend) {
    let s = TestServer::start(b).await;
    for i in 0..9 {
        let (st, _) =
            s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": format!("typo{i}"), "password": "wrong"}))).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..15 {
        s.admin().await;
    }
    // A disabled account's right password is not a failure either.
    let admin = s.admin().await;
    s.operator("leaver", "technician").await;
    let id = operator_id(&s, &admin, "leaver").await;
    patch_operator(&s, &admin, &id, json!({"disabled": true})).await;
    for _ in 0..3 {
        let (st, _) =
            s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "leaver", "password": "leaver-password-123"}))).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    s.admin().await;
    // The tenth failure from the address locks it.
    let (st, _) = s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "typo9", "password": "wrong"}))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "admin", "password": ADMIN_PASSWORD}))).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

/// D15: a wrong password for an unknown username costs one password check, as for a known one
/// (it used to cost a fresh hash as well: twice as long). Timed in pairs, side by side and in
/// turns, so that a busy machine slows both alike, and judged by the median pair: a
/// known-username login against an unknown one takes about 1 (0.6 to 1.6 allowed); it was
/// about 2 before, and would be far below 1 if the unknown username's check were skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_username_takes_as_long_as_a_known_one() {
    let s = TestServer::start(Backend::Sqlite).await;
    let mut ratios = Vec::new();
    // Nine wrong passwords for admin: one short of the lockout.
    for round in 0..9 {
        let unknown_name = format!("nobody{round}");
        let (unknown, known) = if round % 2 == 0 {
            let u = timed_wrong_login(&s, &unknown_name).await;
            (u, timed_wrong_login(&s, "admin").await)
        } else {
            let k = timed_wrong_login(&s, "admin").await;
            (timed_wrong_login(&s, &unknown_name).await, k)
        };
        ratios.push(unknown.as_secs_f64() / known.as_secs_f64());
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        (0.6..1.6).contains(&median),
        "an unknown username took {median:.2} times as long as a known one (median of {ratios:?}); it should be about 1"
    );
    s.stop().await;
}

async fn timed_wrong_login(s: &TestServer, username: &str) -> Duration {
    let t = Instant::now();
    let r = s.ctx.operators.login(username, "not the password", None).await;
    let took = t.elapsed();
    assert!(matches!(r, Err(lanyard::error::Error::Unauthorized(_))), "{username}: {:?}", r.err());
    took
}

/// A session token made with HMAC over `digest` and `key`, with `header` and `claims` as given.
fn hand_signed(header: &str, claims: &[u8], digest: openssl::hash::MessageDigest, key: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let pkey = openssl::pkey::PKey::hmac(key).unwrap();
    let mut signer = openssl::sign::Signer::new(digest, &pkey).unwrap();
    signer.update(input.as_bytes()).unwrap();
    format!("{input}.{}", b64.encode(signer.sign_to_vec().unwrap()))
}

/// Session tokens are HS256 with this server's key and nothing else: the claims of a real
/// session signed with another key, with HS512 or RS256 over the right key, with `alg: none`,
/// or changed after signing, get 401; so does the real token once it has expired, by the
/// server's clock, from its `exp` second on; a fresh login works again.
async fn forged_and_expired_session_tokens_get_401(b: Backend) {
    use base64::Engine;
    use lanyard::services::auth::session_token::{Claims, SessionKey};
    use openssl::hash::MessageDigest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let s = TestServer::start_with(b, common::Options { manual_clock: true, ..Default::default() }).await;
    let clock = s.clock.clone().unwrap();
    let token = s.admin().await;
    assert_eq!(whoami(&s, &token).await.0, StatusCode::OK);
    let claims_json = b64.decode(token.split('.').nth(1).unwrap()).unwrap();
    let claims: Claims = serde_json::from_slice(&claims_json).unwrap();
    let key = s.ctx.pki.jwt_key.clone();
    // The helper signs as the server does: the same claims, HS256, the server's key.
    let hs256 = hand_signed(r#"{"alg":"HS256","typ":"JWT"}"#, &claims_json, MessageDigest::sha256(), &key);
    assert_eq!(whoami(&s, &hs256).await.0, StatusCode::OK);

    let mut raised = claims.clone();
    raised.role = "auditor".into();
    let parts: Vec<&str> = token.split('.').collect();
    let cases = [
        ("another key", SessionKey::new(&[7u8; 32]).unwrap().issue(&claims), "token signature does not match"),
        ("HS512", hand_signed(r#"{"alg":"HS512","typ":"JWT"}"#, &claims_json, MessageDigest::sha512(), &key), "malformed token"),
        ("HS384", hand_signed(r#"{"alg":"HS384","typ":"JWT"}"#, &claims_json, MessageDigest::sha384(), &key), "malformed token"),
        (
            "RS256 over the HMAC key",
            hand_signed(r#"{"alg":"RS256","typ":"JWT"}"#, &claims_json, MessageDigest::sha256(), &key),
            "malformed token",
        ),
        ("alg none", format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]), "malformed token"),
        (
            "claims changed after signing",
            format!("{}.{}.{}", parts[0], b64.encode(serde_json::to_vec(&raised).unwrap()), parts[2]),
            "token signature does not match",
        ),
    ];
    for (what, forged, why) in &cases {
        let (st, body) = whoami(&s, forged).await;
        assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized", "{what}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(why) && msg.contains("log in again"), "{what}: {body}");
    }

    // Good until the second before `exp`, refused from `exp` on (no leeway).
    let exp = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap();
    clock.set(exp - chrono::Duration::seconds(1));
    assert_eq!(whoami(&s, &token).await.0, StatusCode::OK);
    clock.set(exp);
    let (st, body) = whoami(&s, &token).await;
    assert_eq!(assert_error(st, &body, StatusCode::UNAUTHORIZED), "unauthorized");
    assert!(body["error"].as_str().unwrap().contains("token has expired; log in again"), "{body}");
    let fresh = s.admin().await;
    assert_eq!(whoami(&s, &fresh).await.0, StatusCode::OK);
    s.stop().await;
}
