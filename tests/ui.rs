//! The web console, tested two ways against the real server on loopback:
//!
//! - in a real headless Chromium driven over WebDriver (log in, the enrolment QR code, a DSL
//!   quarantining a simulated device through the guided flow, an admin facing a legal hold, a
//!   technician kept out of safeguarding, a form without its CSRF token, uploading a profile and
//!   assigning it to a group, a filtering change proposed by one person and approved by
//!   another, raw evidence viewed with a justification), saving screenshots under
//!   `$CARGO_TARGET_DIR/ui-screenshots/`;
//! - over plain HTTP for the session rules (cookie flags, CSP, CSRF, idle timeout, expiry,
//!   disabled accounts, lockout), which need no browser, and for the profile, evidence, PIN
//!   and disposal forms (refusals in words, roles, CSRF, the audit log).

mod common;

use common::browser::Browser;
use common::{ADMIN_PASSWORD, Backend, Options, TestServer};
use lanyard_bench::sim::Kind;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::json;

/// A console client without a browser: keeps the cookies by hand, follows no redirects.
struct Console {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> String {
        self.headers.get(LOCATION).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
    /// The first `name="csrf" value="..."` on the page.
    fn csrf(&self) -> String {
        let i = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        self.body[i..].split('"').next().unwrap().to_owned()
    }
}

impl Console {
    fn new(s: &TestServer) -> Console {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Console { http, base: s.base.clone(), cookies: vec![] }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let resp = req.header("cookie", self.cookie_header()).send().await.unwrap();
        self.keep(&resp);
        Page { status: resp.status(), headers: resp.headers().clone(), body: resp.text().await.unwrap() }
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

    /// A `multipart/form-data` post, as a browser sends a form with a file input.
    async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Page {
        let boundary = "lanyard-test-boundary-7d2b5c0e";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
        }
        if let Some((name, file_name, bytes)) = file {
            body.extend(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                     Content-Type: application/x-apple-aspen-config\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend(bytes);
            body.extend(b"\r\n");
        }
        body.extend(format!("--{boundary}--\r\n").as_bytes());
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        self.send(req).await
    }

    async fn login(&mut self, username: &str, password: &str) -> Page {
        let page = self.get("/ui/login").await;
        let csrf = page.csrf();
        self.post("/ui/login", &[("csrf", &csrf), ("username", username), ("password", password), ("next", "/ui/")]).await
    }
}

async fn server() -> TestServer {
    TestServer::start_with(Backend::Sqlite, Options { manual_clock: false, ..Default::default() }).await
}

/// An operator with a role and a known password.
async fn operator(s: &TestServer, username: &str, role: &str) -> String {
    s.operator(username, role).await;
    format!("{username}-password-123")
}

/// A device on legal hold under case 1, quarantined by a DSL through the API.
async fn quarantined(s: &TestServer) -> (lanyard_bench::sim::SimDevice, String) {
    quarantined_as(s, Kind::SupervisedIpad).await
}

/// A device of `kind` on legal hold under case 1 (a Mac is locked with a PIN).
async fn quarantined_as(s: &TestServer, kind: Kind) -> (lanyard_bench::sim::SimDevice, String) {
    s.load_push_cert().await;
    let d = s.enrolled_device(kind).await;
    let dsl = s.operator("dsl-api", "dsl").await;
    let (st, case) = s
        .post("/api/v1/cases", &dsl, json!({"kind": "iioc", "summary": "Concern raised by a teacher", "justification": "IIOC procedure"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{case}");
    let case_id = case["id"].as_str().unwrap().to_owned();
    let (st, q) = s
        .post(&format!("/api/v1/cases/{case_id}/devices"), &dsl, json!({"udid": d.udid, "justification": "Quarantine until police advice"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    s.drain(&d).await;
    (d, case_id)
}

// ---------------------------------------------------------------- in the browser

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_home_logout_and_lockout() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    s.load_push_cert().await;
    let _d = s.enrolled_device(Kind::SupervisedIpad).await;

    b.login(&s.base, "admin", "not-the-password").await;
    let msg = b.text_of("#login-error").await;
    assert!(msg.contains("do not match"), "{msg}");

    b.login(&s.base, "admin", ADMIN_PASSWORD).await;
    b.find("#count-enrolled").await;
    assert_eq!(b.text_of("h1").await, "Home");
    assert_eq!(b.text_of("#count-enrolled").await, "1");
    assert_eq!(b.text_of("#count-seen-today").await, "1");
    assert_eq!(b.text_of("#count-non-compliant").await, "0");
    assert_eq!(b.text_of("#count-open-cases").await, "0");
    let shot = b.screenshot("home").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    // Keyboard: the first Tab lands on the skip link.
    b.execute("document.activeElement.blur()", vec![]).await;
    let v = b.execute("return getComputedStyle(document.querySelector('.skip')).position", vec![]).await;
    assert_eq!(v, json!("absolute"));

    // The devices page finds the device by serial, and the device page opens.
    b.goto(&format!("{}/ui/devices?q=SIM", s.base)).await;
    let count = b.text_of("#device-count").await;
    assert!(count.starts_with("1 device"), "{count}");
    b.click_css("#devices-table tbody a").await;
    b.find("#commands-table").await;

    // Log out.
    b.click_css(".who button").await;
    let info = b.text_of("main p.notice").await;
    assert!(info.contains("logged out"), "{info}");

    // Ten failures lock the account; the eleventh attempt says so in plain words.
    for _ in 0..10 {
        b.login(&s.base, "admin", "wrong-password-again").await;
        b.find("#login-error").await;
    }
    b.login(&s.base, "admin", ADMIN_PASSWORD).await;
    let msg = b.text_of("#login-error").await;
    assert!(msg.contains("locked"), "{msg}");
    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_enrol_page_shows_a_qr_code() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    s.load_push_cert().await;
    let pw = operator(&s, "tech", "technician").await;
    b.login(&s.base, "tech", &pw).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/enroll", s.base)).await;
    b.type_into("#label", "Year 3 trolley").await;
    b.type_into("#max_uses", "30").await;
    b.click_css("#make-token").await;
    let url = b.text_of("#enroll-url").await;
    assert!(url.starts_with(&format!("{}/mdm/enroll?token=enr_", s.ctx.public_url)), "{url}");
    // The QR code is an SVG drawn server-side, and it encodes exactly that URL.
    let qr = b.find("svg#enroll-qr").await;
    let svg = b.execute("return arguments[0].outerHTML", vec![Browser::element_arg(&qr).await]).await;
    // The modules drawn are those of a QR code of the URL shown (same path data).
    let expected = lanyard::faces::console::enroll::qr_svg(&url).unwrap();
    let path_data = |s: &str| s.split(" d=\"").nth(1).map(|d| d.split('"').next().unwrap().to_owned());
    let rendered = svg.as_str().unwrap();
    assert!(path_data(rendered).is_some_and(|d| d.len() > 100), "{rendered}");
    assert_eq!(path_data(rendered), path_data(&expected));
    let size = b
        .execute("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", vec![Browser::element_arg(&qr).await])
        .await;
    assert!(size[0].as_f64().unwrap() >= 200.0, "the QR code must be large enough to scan: {size}");
    // The link works: the device gets its enrolment profile.
    let resp = s.client.get(url.replace(&s.ctx.public_url, &s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    b.screenshot("enrol").await;
    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_dsl_quarantines_a_device_through_the_guided_flow() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    s.load_push_cert().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let pw = operator(&s, "dsl", "dsl").await;

    b.login(&s.base, "dsl", &pw).await;
    b.click_css("a[href='/ui/cases/quarantine']").await;
    // 1. Find the device by its serial number.
    b.type_into("#q", &d.serial).await;
    b.click_css("#find-device").await;
    b.click_css(&format!("[data-choose='{}']", d.udid)).await;
    // 2. No case is open yet: open one here, and say why.
    let new_case = b.find("#case-new").await;
    assert_eq!(b.attr(&new_case, "checked").await.as_deref(), Some("true"));
    b.click_css("#kind option[value='iioc']").await;
    b.type_into("#summary", "A pupil reported an image on this iPad").await;
    b.type_into("#case_justification", "IIOC procedure, section 11").await;
    b.type_into("#justification", "Quarantine until police advice has been sought").await;
    b.click_css("#to-confirm").await;
    // 3. The confirmation says what will happen, in words.
    let panel = b.text_of("#confirm-panel").await;
    assert!(panel.contains("Lost Mode"), "{panel}");
    assert!(panel.contains("legal hold"), "{panel}");
    assert!(panel.contains("Quarantine until police advice"), "{panel}");
    assert_eq!(s.ctx.store.legal_hold(&d.udid).await.unwrap(), None, "nothing happens before confirming");
    b.screenshot("quarantine-confirm").await;
    b.click_css("#confirm-quarantine").await;

    // 4. Watch: every command is listed, waiting for the device.
    b.find("#progress-table").await;
    let hold = b.text_of("#hold-banner").await;
    assert!(hold.contains("case 1"), "{hold}");
    let rows = b.find_all("#progress-table tbody tr").await;
    assert_eq!(rows.len(), 7, "lock + six evidence commands (with the location in Lost Mode)");
    assert!(b.find_all("#progress-table .status-done").await.is_empty());

    // The simulated iPad connects and answers everything; the page updates by itself.
    let answered = s.drain(&d).await;
    assert!(answered.contains(&"EnableLostMode".to_owned()), "{answered:?}");
    for rt in ["DeviceInformation", "SecurityInfo", "InstalledApplicationList", "ProfileList", "CertificateList", "DeviceLocation"] {
        assert!(answered.contains(&rt.to_owned()), "{rt} missing from {answered:?}");
    }
    b.wait_text("[data-live-summary]", "7 of 7 done", 30).await;
    assert_eq!(b.find_all("#progress-table .status-done").await.len(), 7);
    // Each evidence item shows its SHA-256 as it arrives.
    let hashes = b
        .execute(
            "return [...document.querySelectorAll('[data-field=sha256]')].map(e => e.textContent).filter(t => t.length == 64).length",
            vec![],
        )
        .await;
    assert_eq!(hashes, json!(6));
    b.screenshot("quarantine-done").await;

    // The custody report lists it all.
    b.click_css("a[href$='/custody']").await;
    let events = b.text_of("#custody-events").await;
    assert!(events.contains("device_quarantined"), "{events}");
    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_admin_sees_erase_disabled_under_hold_and_a_forged_post_is_refused() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    let (d, _case) = quarantined(&s).await;

    b.login(&s.base, "admin", ADMIN_PASSWORD).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/devices/{}", s.base, d.udid)).await;
    let banner = b.text_of("#hold-banner").await;
    assert!(banner.contains("legal hold under case 1"), "{banner}");
    let erase = b.find("#action-erase button[type=submit]").await;
    assert!(!b.enabled(&erase).await, "Erase must be disabled under legal hold");
    assert_eq!(b.text_of("#reason-erase").await, "Not available: on legal hold under case 1.");
    for key in ["clear_passcode", "leave_lost_mode", "return_to_service", "bypass_code"] {
        let btn = b.find(&format!("#action-{key} button[type=submit]")).await;
        assert!(!b.enabled(&btn).await, "{key} must be disabled");
    }
    let lock = b.find("#action-lock button[type=submit]").await;
    assert!(b.enabled(&lock).await, "locking is still allowed");
    b.screenshot("device-on-hold").await;

    // Forge it: enable the button in the page and submit anyway. The server refuses.
    b.execute(
        "const f = document.getElementById('action-erase'); f.querySelectorAll('[disabled]').forEach(e => e.disabled = false); \
         f.querySelector('#confirm-erase').checked = true; f.submit();",
        vec![],
    )
    .await;
    let title = b.text_of("h1").await;
    assert_eq!(title, "Refused: the device is on legal hold");
    let msg = b.text_of("main .notice").await;
    assert!(msg.contains("legal hold under case 1"), "{msg}");

    // And over plain HTTP with a valid session and CSRF token: 409, nothing queued.
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let page = c.get(&format!("/ui/devices/{}", d.udid)).await;
    let csrf = page.csrf();
    let r = c.post(&format!("/ui/devices/{}/actions", d.udid), &[("csrf", &csrf), ("action", "erase"), ("confirm", "on")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let admin = s.admin().await;
    let (_, cmds) = s.get(&format!("/api/v1/devices/{}/commands", d.udid), &admin).await;
    assert!(!cmds["items"].as_array().unwrap().iter().any(|c| c["request_type"] == "EraseDevice"), "{cmds}");
    // The refusals are on the audit log.
    let (_, audit) = s.get("/api/v1/audit?action=legal_hold.refused", &admin).await;
    assert!(audit["items"].as_array().unwrap().len() >= 2, "{audit}");
    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_technician_cannot_open_safeguarding_pages() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    let (d, case) = quarantined(&s).await;
    let pw = operator(&s, "tech", "technician").await;
    b.login(&s.base, "tech", &pw).await;
    b.find("#main").await;
    assert!(b.find_now("nav a[href='/ui/cases']").await.is_none(), "no Safeguarding link for a technician");
    for path in
        ["/ui/cases".to_owned(), "/ui/cases/quarantine".to_owned(), format!("/ui/cases/{case}"), format!("/ui/cases/{case}/custody")]
    {
        b.goto(&format!("{}{path}", s.base)).await;
        assert_eq!(b.text_of("h1").await, "Not allowed", "{path}");
        let msg = b.text_of("main .notice").await;
        assert!(msg.contains("technician role cannot work on safeguarding cases"), "{msg}");
    }
    // The device page shows no quarantine action either.
    b.goto(&format!("{}/ui/devices/{}", s.base, d.udid)).await;
    b.find("#hold-banner").await;
    assert!(b.find_now("#quarantine-link").await.is_none());
    b.quit().await;

    // Over HTTP: 403 for every safeguarding page and form.
    let mut c = Console::new(&s);
    c.login("tech", &pw).await;
    assert_eq!(c.get("/ui/cases").await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get(&format!("/ui/cases/{case}/devices/{}/progress.json", d.udid)).await.status, StatusCode::FORBIDDEN);
    let csrf = c.get("/ui/").await.csrf();
    let r = c.post("/ui/cases", &[("csrf", &csrf), ("kind", "other"), ("summary", "x"), ("case_justification", "y")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_form_without_its_csrf_token_is_refused() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    b.login(&s.base, "admin", ADMIN_PASSWORD).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/enroll", s.base)).await;
    b.type_into("#label", "Forged").await;
    b.execute("document.querySelector('form[action=\"/ui/enroll\"] input[name=csrf]').remove()", vec![]).await;
    b.click_css("#make-token").await;
    b.wait_for_text("h1", "This form could not be accepted").await;
    assert!(s.ctx.enrollment.list_enrollment_tokens().await.unwrap().is_empty(), "nothing was created");
    b.quit().await;
    s.stop().await;
}

// ---------------------------------------------------------------- over HTTP: the session rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_csp_and_csrf() {
    let s = server().await;
    let mut c = Console::new(&s);
    // Not logged in: pages redirect to the login page, which comes back afterwards.
    let r = c.get("/ui/devices?q=x").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/login?next=%2Fui%2Fdevices%3Fq%3Dx");

    let login = c.get("/ui/login").await;
    let csp = login.headers["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert!(!login.body.contains("<script>") && !login.body.contains("style="), "no inline script or style");

    // The login form has its own CSRF token.
    let r = c.post("/ui/login", &[("username", "admin"), ("password", ADMIN_PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/");
    let set: Vec<String> = r.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session = set.iter().find(|v| v.starts_with("__Host-lanyard=")).expect("session cookie");
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    assert!(!session.contains("Domain"), "{session}");

    let home = c.get("/ui/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.headers["cache-control"], "no-store");
    let csrf = home.csrf();

    // Every form POST needs the session's token: missing or wrong is 403 and nothing happens.
    let r = c.post("/ui/enroll", &[("label", "No token")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.post("/ui/enroll", &[("csrf", "AAAA"), ("label", "Wrong token")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let other = {
        let mut c2 = Console::new(&s);
        c2.login("admin", ADMIN_PASSWORD).await;
        c2.get("/ui/").await.csrf()
    };
    assert_ne!(other, csrf, "tokens are per session");
    let r = c.post("/ui/enroll", &[("csrf", &other), ("label", "Another session's token")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(s.ctx.enrollment.list_enrollment_tokens().await.unwrap().is_empty());
    let r = c.post("/ui/enroll", &[("csrf", &csrf), ("label", "Right token")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.ctx.enrollment.list_enrollment_tokens().await.unwrap().len(), 1);

    // Every POST route refuses a missing token (403), whatever the path.
    for path in [
        "/ui/logout",
        "/ui/devices/X/actions",
        "/ui/enroll/00000000-0000-0000-0000-000000000000/revoke",
        "/ui/register/people",
        "/ui/register/aups",
        "/ui/register/import",
        "/ui/cases",
        "/ui/cases/quarantine",
        "/ui/cases/quarantine/confirm",
    ] {
        let r = c.post(path, &[("x", "y")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }

    // Static assets are served from the binary.
    let css = c.get("/ui/static/lanyard.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains(":focus-visible"));

    // Log out: the cookie is cleared.
    let r = c.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(c.cookies.iter().all(|(k, _)| k != "__Host-lanyard"));
    assert_eq!(c.get("/ui/").await.status, StatusCode::SEE_OTHER);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_idle_timeout_expiry_and_disabled_accounts() {
    let s = TestServer::start_with(Backend::Sqlite, Options { manual_clock: true, ..Default::default() }).await;
    let clock = s.clock.clone().unwrap();
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(c.get("/ui/").await.status, StatusCode::OK);
    // Activity keeps it alive...
    clock.advance(chrono::Duration::minutes(25));
    assert_eq!(c.get("/ui/").await.status, StatusCode::OK);
    // ...but a poll does not count as activity.
    clock.advance(chrono::Duration::minutes(20));
    let poll = c.get("/ui/devices/X/status.json").await;
    assert_eq!(poll.status, StatusCode::OK);
    clock.advance(chrono::Duration::minutes(11));
    let r = c.get("/ui/devices").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().ends_with("&why=idle"), "{}", r.location());
    let login = c.get(&r.location()).await;
    assert!(login.body.contains("30 minutes without activity"), "{}", login.body);

    // Sessions last an hour at most, however active.
    c.login("admin", ADMIN_PASSWORD).await;
    for _ in 0..3 {
        clock.advance(chrono::Duration::minutes(15));
        assert_eq!(c.get("/ui/").await.status, StatusCode::OK);
    }
    clock.advance(chrono::Duration::minutes(15));
    let r = c.get("/ui/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().ends_with("&why=expired"), "{}", r.location());

    // A disabled operator's session stops at once.
    let pw = operator(&s, "tech", "technician").await;
    let mut t = Console::new(&s);
    t.login("tech", &pw).await;
    assert_eq!(t.get("/ui/devices").await.status, StatusCode::OK);
    let admin = s.admin().await;
    let (_, ops) = s.get("/api/v1/operators", &admin).await;
    let id = ops["items"].as_array().unwrap().iter().find(|o| o["username"] == "tech").unwrap()["id"].as_str().unwrap().to_owned();
    let (st, _) = s.call(reqwest::Method::PATCH, &format!("/api/v1/operators/{id}"), Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(st, StatusCode::OK);
    let r = t.get("/ui/devices").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().ends_with("&why=disabled"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_for_every_role() {
    let s = server().await;
    let (d, case) = quarantined(&s).await;
    let admin = s.admin().await;
    let (_, person) = s.post("/api/v1/people", &admin, json!({"kind": "staff", "name": "Ada Teacher"})).await;
    let pid = person["id"].as_str().unwrap().to_owned();
    let pages = vec![
        "/ui/".to_owned(),
        "/ui/devices".into(),
        "/ui/devices?sort=seen&dir=desc&compliance=no".into(),
        format!("/ui/devices/{}", d.udid),
        "/ui/profiles".into(),
        "/ui/register".into(),
        format!("/ui/register/people/{pid}"),
        "/ui/audit".into(),
    ];
    for (role, forbidden) in
        [("admin", vec![]), ("technician", vec!["/ui/audit"]), ("dsl", vec![]), ("headteacher", vec![]), ("auditor", vec![])]
    {
        let pw = if role == "admin" { ADMIN_PASSWORD.to_owned() } else { operator(&s, &format!("{role}1"), role).await };
        let user = if role == "admin" { "admin".to_owned() } else { format!("{role}1") };
        let mut c = Console::new(&s);
        c.login(&user, &pw).await;
        for p in &pages {
            let r = c.get(p).await;
            let want = if forbidden.contains(&p.as_str()) { StatusCode::FORBIDDEN } else { StatusCode::OK };
            assert_eq!(r.status, want, "{role} {p}: {}", &r.body[..r.body.len().min(400)]);
            // Every input has a label.
            for id in r.body.split("<input type=\"").skip(1).filter(|s| !s.starts_with("hidden")) {
                let id = id.split("id=\"").nth(1).map(|x| x.split('"').next().unwrap()).unwrap_or("");
                assert!(!id.is_empty() && r.body.contains(&format!("for=\"{id}\"")), "{role} {p}: an input without a label ({id})");
            }
        }
        let sg = c.get(&format!("/ui/cases/{case}")).await.status;
        let can = matches!(role, "admin" | "dsl" | "headteacher");
        assert_eq!(sg, if can { StatusCode::OK } else { StatusCode::FORBIDDEN }, "{role}");
    }
    // The audit page shows the chain check.
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let r = c.get("/ui/audit").await;
    assert!(r.body.contains("The log is intact"), "{}", r.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_needs_a_second_person_in_the_console() {
    let s = server().await;
    let (d, case) = quarantined(&s).await;
    let dsl_pw = operator(&s, "dsl1", "dsl").await;
    let head_pw = operator(&s, "head", "headteacher").await;
    let mut dsl = Console::new(&s);
    dsl.login("dsl1", &dsl_pw).await;
    let page = dsl.get(&format!("/ui/cases/{case}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let r = dsl
        .post(
            &format!("/ui/cases/{case}/release-requests"),
            &[("csrf", &csrf), ("udid", &d.udid), ("justification", "Police advise no further action"), ("advice_reference", "PC 1234/26")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, c) = s.get(&format!("/api/v1/cases/{case}"), &s.operator("dsl2", "dsl").await).await;
    let rid = c["requests"][0]["id"].as_str().unwrap().to_owned();
    // The requester cannot approve their own request: the button is disabled, and a forged post is refused.
    let page = dsl.get(&format!("/ui/cases/{case}")).await;
    assert!(page.body.contains("You made this request"));
    let r =
        dsl.post(&format!("/ui/cases/{case}/requests/{rid}"), &[("csrf", &csrf), ("decision", "approve"), ("justification", "me")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(s.ctx.store.legal_hold(&d.udid).await.unwrap().is_some());
    // The headteacher approves.
    let mut head = Console::new(&s);
    head.login("head", &head_pw).await;
    let csrf = head.get(&format!("/ui/cases/{case}")).await.csrf();
    let r = head
        .post(&format!("/ui/cases/{case}/requests/{rid}"), &[("csrf", &csrf), ("decision", "approve"), ("justification", "Agreed")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.ctx.store.legal_hold(&d.udid).await.unwrap().is_none());
    let answered = s.drain(&d).await;
    assert!(answered.contains(&"DisableLostMode".to_owned()), "{answered:?}");
    // The custody report page (and its PDF) render for the DSL.
    let r = dsl.get(&format!("/ui/cases/{case}/custody")).await;
    assert!(r.body.contains("release_approved"), "{}", r.body);
    let pdf = dsl.get(&format!("/ui/cases/{case}/custody.pdf")).await;
    assert_eq!(pdf.headers["content-type"], "application/pdf");
    s.stop().await;
}

// ---------------------------------------------------------------- profiles, evidence, PINs

/// The baseline KS2 filter with `site` added to its deny-list.
fn ks2_with_denied(site: &str) -> Vec<u8> {
    let (_, xml) = lanyard::services::profiles::BASELINE.iter().find(|(s, _)| *s == "ks2-web-filtered").unwrap();
    let mut v: plist::Value = plist::from_bytes(xml.as_bytes()).unwrap();
    let payload = v.as_dictionary_mut().unwrap().get_mut("PayloadContent").unwrap().as_array_mut().unwrap()[0].as_dictionary_mut().unwrap();
    payload.get_mut("DenyListURLs").unwrap().as_array_mut().unwrap().push(site.into());
    let mut out = Vec::new();
    v.to_writer_xml(&mut out).unwrap();
    out
}

/// The audit entries of `action` (a prefix), newest first.
async fn audit(s: &TestServer, action: &str) -> Vec<serde_json::Value> {
    let admin = s.admin().await;
    let (st, page) = s.get(&format!("/api/v1/audit?action={action}"), &admin).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_technician_uploads_a_profile_and_assigns_it_to_a_group() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    s.load_push_cert().await;
    let d = s.enrolled_device(Kind::SupervisedIpad).await;
    let pw = operator(&s, "tech", "technician").await;
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.mobileconfig");
    std::fs::write(&broken, common::airdrop_profile_broken()).unwrap();
    let good = dir.path().join("airdrop-off.mobileconfig");
    std::fs::write(&good, common::AIRDROP_PROFILE).unwrap();

    b.login(&s.base, "tech", &pw).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/profiles", s.base)).await;
    // A broken file is refused in plain words, naming the payload and the key; nothing is saved.
    b.upload("#upload-file", &broken).await;
    b.click_css("#upload-button").await;
    let err = b.wait_text("#form-error", "missing PayloadUUID", 15).await;
    assert!(err.contains("Payload 1 (com.apple.applicationaccess): missing PayloadUUID") && err.contains("Nothing was changed"), "{err}");
    assert!(s.ctx.store.profile_by_name("broken").await.unwrap().is_none());
    // The real file, named after the file.
    b.upload("#upload-file", &good).await;
    b.click_css("#upload-button").await;
    b.wait_text("#done", "Uploaded", 15).await;
    let p = s.ctx.store.profile_by_name("airdrop-off").await.unwrap().expect("the profile is saved");
    let pid = p.id.to_string();
    assert_eq!(b.text_of(&format!("#groups-{pid}")).await, "Not assigned to any group");

    // Make a group and put the iPad in it by its serial number.
    b.type_into("#group-name", "Year 3").await;
    b.click_css("#make-group").await;
    b.wait_text("#done", "The group is made", 15).await;
    let g = s.ctx.store.group_by_name("Year 3").await.unwrap().expect("the group is made");
    b.type_into(&format!("#gm-{}", g.id), &d.serial).await;
    b.click_css(&format!("#add-members-{}", g.id)).await;
    b.wait_text("#done", "Added to the group", 15).await;
    assert_eq!(s.ctx.store.group_members(g.id).await.unwrap(), vec![d.udid.clone()]);

    // Assign the profile to the group.
    b.click_css(&format!("#assign-open-{pid}")).await;
    b.click_css(&format!("#ag-{pid} option[value='{}']", g.id)).await;
    b.click_css(&format!("#assign-button-{pid}")).await;
    b.wait_text("#done", "Assigned", 15).await;
    assert_eq!(b.text_of(&format!("#groups-{pid}")).await, "Year 3");
    b.execute("document.getElementById('p-' + arguments[0]).scrollIntoView()", vec![json!(pid)]).await;
    b.screenshot("profiles").await;

    // The device page compares what its groups say with what it has: missing until the iPad
    // answers, then matching.
    let verdict = "#profiles-table tr[data-identifier='uk.sch.test.restrictions'] [data-field=verdict]";
    b.goto(&format!("{}/ui/devices/{}", s.base, d.udid)).await;
    assert_eq!(b.text_of(verdict).await, "Missing");
    let answered = s.drain(&d).await;
    assert!(answered.contains(&"InstallProfile".to_owned()), "{answered:?}");
    b.goto(&format!("{}/ui/devices/{}", s.base, d.udid)).await;
    assert_eq!(b.text_of(verdict).await, "Matching");
    let summary = b.text_of("#profile-summary").await;
    assert!(summary.starts_with("1 matching, 0 missing"), "{summary}");
    b.execute("document.getElementById('profiles').scrollIntoView()", vec![]).await;
    b.screenshot("device-profiles").await;
    b.quit().await;

    // Each step is in the audit log, under the technician's name, as through the API.
    for action in ["profile.create", "group.create", "group.members.add", "group.profile.assign"] {
        let items = audit(&s, action).await;
        assert!(items.iter().any(|e| e["action"] == action && e["actor"] == "operator:tech"), "{action}: {items:?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_filtering_change_is_proposed_then_approved_by_a_second_person() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    let dsl_pw = operator(&s, "dsl", "dsl").await;
    let ks2 = s.ctx.store.profile_by_name("ks2-web-filtered").await.unwrap().expect("baseline");
    let pid = ks2.id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ks2.mobileconfig");
    std::fs::write(&file, ks2_with_denied("example.com")).unwrap();

    // An admin proposes a new version of the KS2 filter, with a reason and a risk assessment.
    b.login(&s.base, "admin", ADMIN_PASSWORD).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/profiles", s.base)).await;
    assert!(b.text_of("#no-pending").await.contains("None"));
    b.click_css(&format!("#version-open-{pid}")).await;
    b.upload(&format!("#vf-{pid}"), &file).await;
    b.type_into(&format!("#vr-{pid}"), "Pupils found example.com").await;
    b.type_into(&format!("#vk-{pid}"), "RA-2026-014").await;
    b.click_css(&format!("#version-button-{pid}")).await;
    b.wait_text("#done", "only been proposed", 15).await;
    assert_eq!(s.ctx.store.profile(ks2.id).await.unwrap().unwrap().version, 1, "nothing is deployed yet");
    let changes = s.ctx.profiles.list_filtering_changes(Some("proposed"), None, None, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    let cid = changes[0].id.to_string();

    // The change in words: what is blocked now, before and after, why, and the risk assessment.
    assert_eq!(b.text_of(&format!("#diff-{cid}")).await, "Now blocked: example.com");
    let panel = b.text_of(&format!("#c-{cid}")).await;
    assert!(panel.contains("New version of ks2-web-filtered"), "{panel}");
    assert!(panel.contains("Pupils found example.com") && panel.contains("RA-2026-014"), "{panel}");
    let blocked = ks2_blocked_count(&s).await;
    let row = b
        .execute(
            "return [...document.querySelectorAll('#c-' + arguments[0] + ' table.before-after tbody tr')].map(r => [...r.children].map(c => c.textContent))",
            vec![json!(cid)],
        )
        .await;
    assert!(row.as_array().unwrap().contains(&json!(["Sites blocked", blocked.to_string(), (blocked + 1).to_string()])), "{row}");
    b.execute("document.getElementById('c-' + arguments[0]).scrollIntoView()", vec![json!(cid)]).await;
    b.screenshot("filtering-change-proposed").await;

    // The proposer cannot approve it: the buttons are disabled, and a forged post gets the
    // service's refusal.
    let approve = b.find(&format!("#approve-{cid}")).await;
    assert!(!b.enabled(&approve).await, "the proposer's approve button is disabled");
    assert!(b.text_of(&format!("#own-{cid}")).await.contains("a different person must approve"));
    b.execute(
        "const f = document.getElementById('decide-' + arguments[0]); f.querySelectorAll('[disabled]').forEach(e => e.disabled = false); \
         f.querySelector('textarea').value = 'I approve my own'; document.getElementById('approve-' + arguments[0]).click();",
        vec![json!(cid)],
    )
    .await;
    let err = b.wait_text("#form-error", "second person", 15).await;
    assert!(err.contains("proposed this change: a second person (dsl, headteacher or admin) must decide it"), "{err}");
    assert_eq!(s.ctx.profiles.filtering_change_view(changes[0].id).await.unwrap().state, "proposed");
    assert_eq!(s.ctx.store.profile(ks2.id).await.unwrap().unwrap().version, 1);

    // The DSL approves it: deployed as version 2.
    b.click_css(".who button").await;
    b.find("#username").await;
    b.login(&s.base, "dsl", &dsl_pw).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/profiles", s.base)).await;
    assert!(b.find_now(&format!("#own-{cid}")).await.is_none());
    b.type_into(&format!("#cj-{cid}"), "Risk assessed; consistent with policy 7.3.2").await;
    b.click_css(&format!("#approve-{cid}")).await;
    b.wait_text("#done", "Approved", 15).await;
    let p = s.ctx.store.profile(ks2.id).await.unwrap().unwrap();
    assert_eq!(p.version, 2);
    assert!(b.text_of(&format!("#filter-{pid}")).await.contains("example.com"));
    let row = b.text_of(&format!("#h-{cid}")).await;
    assert!(row.contains("Approved and deployed") && row.contains("operator:dsl"), "{row}");
    b.quit().await;

    let proposed = audit(&s, "filtering.propose").await;
    assert!(
        proposed.iter().any(|e| e["actor"] == "operator:admin" && e["details"]["risk_assessment_ref"] == "RA-2026-014"),
        "{proposed:?}"
    );
    let approved = audit(&s, "filtering.approve").await;
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["actor"], "operator:dsl");
    s.stop().await;
}

/// How many sites the live KS2 filter blocks.
async fn ks2_blocked_count(s: &TestServer) -> usize {
    let p = s.ctx.profiles.list_profile_views(Some("ks2-web-filtered")).await.unwrap();
    p[0].filtering.as_ref().unwrap().denied.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_dsl_views_raw_evidence_with_a_justification() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    let (d, case) = quarantined(&s).await;
    let case_id: uuid::Uuid = case.parse().unwrap();
    let pw = operator(&s, "dsl", "dsl").await;
    let evidence = s.ctx.store.case_evidence(case_id).await.unwrap();
    let item = evidence.iter().find(|e| e.request_type == "DeviceInformation").expect("device details are evidence");
    let sha = item.sha256.clone().expect("received");

    b.login(&s.base, "dsl", &pw).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/cases/{case}", s.base)).await;
    let table = b.text_of("#evidence-table").await;
    assert!(table.contains(&sha), "{table}");
    assert_eq!(b.find_all("#evidence-table tbody tr").await.len(), evidence.len());
    b.click_css(&format!("#view-open-{}", item.id)).await;
    b.type_into(&format!("#ej-{}", item.id), "The police asked for the serial number").await;
    b.click_css(&format!("#view-{}", item.id)).await;
    b.wait_for_text("h1", "Evidence: Read device details").await;
    let raw = b.text_of("#evidence-raw").await;
    assert!(raw.contains("<plist") && raw.contains(&d.serial), "{raw}");
    assert_eq!(b.text_of("#evidence-sha256").await, sha);
    let shown = b.text_of("#shown-sha256").await;
    assert!(shown.starts_with(&sha) && shown.contains("unchanged"), "{shown}");
    b.screenshot("evidence-raw").await;
    b.quit().await;

    // Recorded on the case's custody log and in the audit log, with the reason.
    let events = s.ctx.store.case_events(case_id).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "evidence_viewed"
            && e.actor == "operator:dsl"
            && e.justification.as_deref() == Some("The police asked for the serial number")),
        "{events:?}"
    );
    let viewed = audit(&s, "case.evidence.view").await;
    assert!(
        viewed.iter().any(|e| e["actor"] == "operator:dsl" && e["details"]["justification"] == "The police asked for the serial number"),
        "{viewed:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_console_forms_need_their_csrf_token_and_the_right_role() {
    let s = server().await;
    let (mac, case) = quarantined_as(&s, Kind::Mac).await;
    let case_id: uuid::Uuid = case.parse().unwrap();
    let item = s.ctx.store.case_evidence(case_id).await.unwrap().into_iter().find(|e| e.raw.is_some()).expect("evidence");
    let admin_token = s.admin().await;
    let (st, g) = s.post("/api/v1/groups", &admin_token, json!({"name": "Year 5", "kind": "static"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let camera = s.ctx.store.profile_by_name("pupil-camera-off").await.unwrap().unwrap().id.to_string();
    let profiles_before = s.ctx.store.list_profiles().await.unwrap().len();

    // Every new form refuses a post without the session's token (403) and does nothing.
    let mut admin = Console::new(&s);
    admin.login("admin", ADMIN_PASSWORD).await;
    let paths = [
        "/ui/profiles".to_owned(),
        "/ui/profiles/baseline".into(),
        "/ui/profiles/groups".into(),
        format!("/ui/profiles/groups/{gid}/members"),
        format!("/ui/profiles/groups/{gid}/members/{}/remove", mac.udid),
        format!("/ui/profiles/changes/{}", uuid::Uuid::new_v4()),
        format!("/ui/profiles/{camera}/versions"),
        format!("/ui/profiles/{camera}/delete"),
        format!("/ui/profiles/{camera}/groups"),
        format!("/ui/profiles/{camera}/groups/{gid}/remove"),
        format!("/ui/cases/{case}/dispose-requests"),
        format!("/ui/cases/{case}/evidence/{}", item.id),
        format!("/ui/cases/{case}/devices/{}/lock-pin", mac.udid),
    ];
    let fields = [
        ("name", "forged"),
        ("stem", "staff-web"),
        ("group_id", gid.as_str()),
        ("devices", mac.serial.as_str()),
        ("decision", "approve"),
        ("justification", "forged"),
        ("confirmation", "forged"),
        ("reason", "forged"),
        ("risk_assessment_ref", "forged"),
    ];
    for p in &paths {
        let r = admin.post(p, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}");
        assert!(r.body.contains("missing its security token"), "{p}: {}", r.body);
        let r = admin.post_multipart(p, &fields, Some(("file", "a.mobileconfig", common::AIRDROP_PROFILE.as_bytes()))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p} (multipart)");
    }
    assert_eq!(s.ctx.store.list_profiles().await.unwrap().len(), profiles_before);
    assert!(s.ctx.store.group_members(gid.parse().unwrap()).await.unwrap().is_empty());
    assert!(s.ctx.store.group_profile_ids(gid.parse().unwrap()).await.unwrap().is_empty());
    let events = s.ctx.store.case_events(case_id).await.unwrap();
    assert!(!events.iter().any(|e| ["evidence_viewed", "lock_pin_revealed", "disposal_requested"].contains(&e.kind.as_str())));
    for action in
        ["profile.", "group.members.", "group.profile.", "filtering.", "case.evidence.view", "case.lock_pin.reveal", "case.dispose.request"]
    {
        let items = audit(&s, action).await;
        assert!(!items.iter().any(|e| e["actor"] == "operator:admin"), "{action}: {items:?}");
    }

    // A technician, with a good token, is kept out of the evidence, the PIN and disposal, and
    // cannot decide a filtering change; an auditor cannot upload.
    let pw = operator(&s, "tech", "technician").await;
    let mut tech = Console::new(&s);
    tech.login("tech", &pw).await;
    let csrf = tech.get("/ui/").await.csrf();
    for p in [
        format!("/ui/cases/{case}/evidence/{}", item.id),
        format!("/ui/cases/{case}/devices/{}/lock-pin", mac.udid),
        format!("/ui/cases/{case}/dispose-requests"),
    ] {
        let r = tech.post(&p, &[("csrf", &csrf), ("justification", "curious"), ("confirmation", "nobody")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}");
        assert!(r.body.contains("technician role cannot work on safeguarding cases"), "{p}: {}", r.body);
    }
    let r = tech
        .post(
            &format!("/ui/profiles/changes/{}", uuid::Uuid::new_v4()),
            &[("csrf", &csrf), ("decision", "approve"), ("justification", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let gov_pw = operator(&s, "gov", "auditor").await;
    let mut gov = Console::new(&s);
    gov.login("gov", &gov_pw).await;
    let page = gov.get("/ui/profiles").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("upload-form"), "no upload form for an auditor");
    let r = gov
        .post_multipart(
            "/ui/profiles",
            &[("csrf", &page.csrf())],
            Some(("file", "airdrop.mobileconfig", common::AIRDROP_PROFILE.as_bytes())),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(s.ctx.store.list_profiles().await.unwrap().len(), profiles_before);
    let events = s.ctx.store.case_events(case_id).await.unwrap();
    assert!(!events.iter().any(|e| ["evidence_viewed", "lock_pin_revealed"].contains(&e.kind.as_str())), "{events:?}");

    // The DSL reveals the Mac's PIN with a reason (and not without one).
    let dsl_pw = operator(&s, "dsl", "dsl").await;
    let mut dsl = Console::new(&s);
    dsl.login("dsl", &dsl_pw).await;
    let page = dsl.get(&format!("/ui/cases/{case}")).await;
    assert!(page.body.contains("id=\"pin-form-1\""), "the case page offers the Mac's PIN");
    let csrf = page.csrf();
    let pin_path = format!("/ui/cases/{case}/devices/{}/lock-pin", mac.udid);
    let r = dsl.post(&pin_path, &[("csrf", &csrf), ("justification", "   ")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(audit(&s, "case.lock_pin.reveal").await.is_empty());
    let r = dsl.post(&pin_path, &[("csrf", &csrf), ("justification", "The police will examine the Mac")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pin = r.body.split("id=\"lock-pin\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()), "{pin}");
    let dsl_token = s.login("dsl", &dsl_pw).await;
    let (st, api) = s.get(&format!("/api/v1/devices/{}/lock-pin?justification=checking", mac.udid), &dsl_token).await;
    assert_eq!(st, StatusCode::OK, "{api}");
    assert_eq!(api["pin"], json!(pin), "the same PIN as the API's");
    let reveals = audit(&s, "case.lock_pin.reveal").await;
    assert!(
        reveals.iter().any(|e| e["actor"] == "operator:dsl" && e["details"]["justification"] == "The police will examine the Mac"),
        "{reveals:?}"
    );
    let events = s.ctx.store.case_events(case_id).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "lock_pin_revealed" && e.justification.as_deref() == Some("The police will examine the Mac")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_disposal_needs_a_closed_case_and_a_second_person() {
    let s = server().await;
    let (_d, case) = quarantined(&s).await;
    let case_id: uuid::Uuid = case.parse().unwrap();
    let dsl_pw = operator(&s, "dsl1", "dsl").await;
    let head_pw = operator(&s, "head", "headteacher").await;
    let mut dsl = Console::new(&s);
    dsl.login("dsl1", &dsl_pw).await;
    let mut head = Console::new(&s);
    head.login("head", &head_pw).await;
    let case_page = format!("/ui/cases/{case}");
    let dispose = [
        ("justification", "No further action; retention period over"),
        ("advice_reference", "TVP ref 43/998/26: no copy needed"),
        ("confirmation", "PC 1234, Thames Valley Police"),
    ];

    // Not while the case is open: no form, and a forged post gets the service's refusal.
    let page = dsl.get(&case_page).await;
    assert!(!page.body.contains("request-disposal"));
    let csrf = page.csrf();
    let r = dsl.post(&format!("{case_page}/dispose-requests"), &[&[("csrf", csrf.as_str())][..], &dispose[..]].concat()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("while the case is open"), "{}", r.body);

    // Release everything (which closes the case), two people.
    let r = dsl
        .post(
            &format!("{case_page}/release-requests"),
            &[("csrf", &csrf), ("udid", "all"), ("justification", "Police advise no further action"), ("advice_reference", "PC 1234/26")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rid = s.ctx.store.case_requests(case_id).await.unwrap()[0].id;
    let hcsrf = head.get(&case_page).await.csrf();
    let r =
        head.post(&format!("{case_page}/requests/{rid}"), &[("csrf", &hcsrf), ("decision", "approve"), ("justification", "Agreed")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.ctx.store.case(case_id).await.unwrap().unwrap().state, "closed");

    // Closed: the DSL asks; they cannot approve their own; the headteacher approves.
    let page = dsl.get(&case_page).await;
    assert!(page.body.contains("id=\"request-disposal\""), "the closed case offers disposal");
    assert!(page.body.contains("id=\"dis-adv\" name=\"advice_reference\" required"), "the form asks for the advice");
    // Without the advice it is refused, naming what is missing.
    let r =
        dsl.post(&format!("{case_page}/dispose-requests"), &[("csrf", csrf.as_str()), ("justification", "Retention period over")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("advice"), "{}", r.body);
    let r = dsl.post(&format!("{case_page}/dispose-requests"), &[&[("csrf", csrf.as_str())][..], &dispose[..]].concat()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().contains("done=dispose_requested"), "{}", r.location());
    let req = s.ctx.store.case_requests(case_id).await.unwrap().into_iter().find(|r| r.kind == "dispose").expect("the request");
    // The form sends the agencies' advice, as a release request does (issue 16, defect 2).
    assert_eq!(req.advice_reference.as_deref(), Some("TVP ref 43/998/26: no copy needed"));
    assert_eq!(req.confirmation.as_deref(), Some("PC 1234, Thames Valley Police"));
    let page = dsl.get(&case_page).await;
    assert!(page.body.contains("Approve the disposal") && page.body.contains("You made this request"));
    assert!(page.body.contains("Advice reference: TVP ref 43/998/26: no copy needed"), "the request shows its advice");
    let r =
        dsl.post(&format!("{case_page}/requests/{}", req.id), &[("csrf", &csrf), ("decision", "approve"), ("justification", "mine")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("A different person must approve: you made this request"), "{}", r.body);
    assert!(s.ctx.store.case_evidence(case_id).await.unwrap().iter().all(|e| e.disposed_at.is_none()), "nothing disposed of yet");
    let r = head
        .post(
            &format!("{case_page}/requests/{}", req.id),
            &[("csrf", &hcsrf), ("decision", "approve"), ("justification", "Confirmed with the police")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().contains("done=disposed"), "{}", r.location());
    let evidence = s.ctx.store.case_evidence(case_id).await.unwrap();
    assert!(!evidence.is_empty() && evidence.iter().all(|e| e.disposed_at.is_some()), "all disposed of");
    let page = dsl.get(&case_page).await;
    assert!(page.body.contains("Disposed of: its SHA-256 stays in the custody log."));
    assert!(!page.body.contains("id=\"request-disposal\""));
    let r = dsl.post(&format!("{case_page}/evidence/{}", evidence[0].id), &[("csrf", &csrf), ("justification", "one more look")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    let requested = audit(&s, "case.dispose.request").await;
    assert!(requested.iter().any(|e| e["actor"] == "operator:dsl1"), "{requested:?}");
    let approved = audit(&s, "case.dispose.approve").await;
    assert!(approved.iter().any(|e| e["actor"] == "operator:head"), "{approved:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_forms_show_refusals_in_words_and_are_audited() {
    let s = server().await;
    let tech_pw = operator(&s, "tech", "technician").await;
    let dsl_pw = operator(&s, "dsl", "dsl").await;
    let mut tech = Console::new(&s);
    tech.login("tech", &tech_pw).await;
    let csrf = tech.get("/ui/profiles").await.csrf();
    let count = || async { s.ctx.store.list_profiles().await.unwrap().len() };
    let before = count().await;

    // Refusals are shown on the page, in words, and nothing is saved.
    let r = tech.post_multipart("/ui/profiles", &[("csrf", &csrf), ("name", "no-file")], None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("The file: Choose the .mobileconfig file to upload."), "{}", r.body);
    let r = tech
        .post_multipart(
            "/ui/profiles",
            &[("csrf", &csrf)],
            Some(("file", "broken.mobileconfig", common::airdrop_profile_broken().as_bytes())),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("missing PayloadUUID") && r.body.contains("Nothing was changed."), "{}", r.body);
    let r = tech
        .post_multipart(
            "/ui/profiles",
            &[("csrf", &csrf), ("name", "no spaces please")],
            Some(("file", "a.mobileconfig", common::AIRDROP_PROFILE.as_bytes())),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Name: 1-100 letters"), "{}", r.body);
    assert_eq!(count().await, before);

    let r = tech
        .post_multipart(
            "/ui/profiles",
            &[("csrf", &csrf), ("name", "airdrop-off")],
            Some(("file", "a.mobileconfig", common::AIRDROP_PROFILE.as_bytes())),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with("/ui/profiles?done=uploaded#p-"), "{}", r.location());
    assert_eq!(count().await, before + 1);
    let r = tech
        .post_multipart(
            "/ui/profiles",
            &[("csrf", &csrf), ("name", "airdrop-again")],
            Some(("file", "a.mobileconfig", common::AIRDROP_PROFILE.as_bytes())),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already used by profile"), "{}", r.body);

    // A filtering profile's new version needs a reason and a risk assessment reference; then it
    // is only proposed.
    let ks2 = s.ctx.store.profile_by_name("ks2-web-filtered").await.unwrap().unwrap().id;
    let edited = ks2_with_denied("example.org");
    let path = format!("/ui/profiles/{ks2}/versions");
    let r =
        tech.post_multipart(&path, &[("csrf", &csrf), ("risk_assessment_ref", "RA-1")], Some(("file", "ks2.mobileconfig", &edited))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Reason for the change: This is required for a filtering change."), "{}", r.body);
    let r =
        tech.post_multipart(&path, &[("csrf", &csrf), ("reason", "Block example.org")], Some(("file", "ks2.mobileconfig", &edited))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Risk assessment reference: This is required for a filtering change."), "{}", r.body);
    assert!(s.ctx.profiles.list_filtering_changes(None, None, None, 10).await.unwrap().is_empty());
    let r = tech
        .post_multipart(
            &path,
            &[("csrf", &csrf), ("reason", "Block example.org"), ("risk_assessment_ref", "RA-2026-020")],
            Some(("file", "ks2.mobileconfig", &edited)),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with("/ui/profiles?done=proposed#c-"), "{}", r.location());
    let change = s.ctx.profiles.list_filtering_changes(Some("proposed"), None, None, 10).await.unwrap().remove(0);

    // The DSL rejects it (a reason is needed for that too): nothing changes.
    let mut dsl = Console::new(&s);
    dsl.login("dsl", &dsl_pw).await;
    let page = dsl.get("/ui/profiles").await;
    assert!(page.body.contains("Now blocked: example.org"), "{}", page.body);
    let dcsrf = page.csrf();
    let decide = format!("/ui/profiles/changes/{}", change.id);
    let r = dsl.post(&decide, &[("csrf", &dcsrf), ("decision", "reject")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Your reason for deciding: A written justification is required."), "{}", r.body);
    let r = dsl.post(&decide, &[("csrf", &dcsrf), ("decision", "reject"), ("justification", "Not risk assessed properly")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.ctx.profiles.filtering_change_view(change.id).await.unwrap().state, "rejected");
    assert_eq!(s.ctx.store.profile(ks2).await.unwrap().unwrap().version, 1);
    let page = dsl.get("/ui/profiles").await;
    assert!(page.body.contains("<strong>Rejected</strong>"), "the decision is in the recent changes");

    // Deleting a baseline profile offers it back from the baseline.
    let camera = s.ctx.store.profile_by_name("pupil-camera-off").await.unwrap().unwrap().id;
    let r = tech.post(&format!("/ui/profiles/{camera}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.ctx.store.profile_by_name("pupil-camera-off").await.unwrap().is_none());
    let page = tech.get("/ui/profiles").await;
    assert!(page.body.contains("id=\"baseline-pupil-camera-off\""), "offered from the baseline");
    let r = tech.post("/ui/profiles/baseline", &[("csrf", &csrf), ("stem", "pupil-camera-off")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s.ctx.store.profile_by_name("pupil-camera-off").await.unwrap().is_some());

    // The audit log has each console action, by whom, as the API path records it.
    for (action, actor) in [
        ("profile.create", "operator:tech"),
        ("filtering.propose", "operator:tech"),
        ("filtering.reject", "operator:dsl"),
        ("profile.delete", "operator:tech"),
    ] {
        let items = audit(&s, action).await;
        assert!(items.iter().any(|e| e["action"] == action && e["actor"] == actor), "{action}: {items:?}");
    }
    s.stop().await;
}

/// Issue 16, defect 1, in the console: "Remove the passcode" sends the device's own unlock
/// token; a device that never gave one has the action disabled with the reason, and a forged
/// post gets the service's refusal with nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_clears_a_passcode_with_the_devices_own_token() {
    let s = server().await;
    s.load_push_cert().await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let loose = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let why = "this device has not given Lanyard an unlock token (only supervised devices do, at enrolment)";

    let page = c.get(&format!("/ui/devices/{}", loose.udid)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(why), "the reason is shown: {}", page.body);
    assert!(page.body.contains("disabled aria-describedby=\"reason-clear_passcode\""), "the button is disabled");
    let csrf = page.csrf();
    let r = c.post(&format!("/ui/devices/{}/actions", loose.udid), &[("csrf", &csrf), ("action", "clear_passcode")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("unlock token"), "{}", r.body);
    assert!(s.connect(&loose, loose.idle()).await.1.is_empty(), "nothing queued");

    let page = c.get(&format!("/ui/devices/{}", ipad.udid)).await;
    assert!(!page.body.contains(why));
    assert!(!page.body.contains("disabled aria-describedby=\"reason-clear_passcode\""));
    let r = c.post(&format!("/ui/devices/{}/actions", ipad.udid), &[("csrf", &csrf), ("action", "clear_passcode")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, next) = s.connect(&ipad, ipad.idle()).await;
    let (_, rt, cmd) = lanyard_bench::sim::SimDevice::read_command(&next).expect("a command");
    assert_eq!(rt, "ClearPasscode");
    assert_eq!(cmd.get("UnlockToken").and_then(|v| v.as_data()).map(<[u8]>::to_vec), ipad.unlock_token());
    s.stop().await;
}

/// Re-issuing an iPad from the console: Return to Service with the school's Wi-Fi profile, and its
/// Activation Lock bypass code shown for a written reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_returns_an_ipad_to_service_and_shows_its_bypass_code() {
    let s = server().await;
    s.load_push_cert().await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let tech = s.operator("tech", "technician").await;
    let wifi = r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>PayloadContent</key><array><dict>
        <key>EncryptionType</key><string>WPA2</string><key>Password</key><string>correct horse battery</string>
        <key>SSID_STR</key><string>StMarys-Pupils</string><key>PayloadIdentifier</key><string>uk.sch.stmarys.wifi.pupils</string>
        <key>PayloadType</key><string>com.apple.wifi.managed</string><key>PayloadUUID</key><string>5B7A2C43-1D7E-4F21-9A0B-3C4D5E6F7081</string>
        <key>PayloadVersion</key><integer>1</integer></dict></array><key>PayloadDisplayName</key><string>School Wi-Fi</string>
        <key>PayloadIdentifier</key><string>uk.sch.stmarys.wifi</string><key>PayloadType</key><string>Configuration</string>
        <key>PayloadUUID</key><string>0E2F6A11-8C3B-4D5E-9F60-718293A4B5C6</string><key>PayloadVersion</key><integer>1</integer></dict></plist>"#;
    use base64::Engine as _;
    let (st, w) = s
        .post(
            "/api/v1/profiles",
            &tech,
            json!({"name": "school-wifi", "mobileconfig_base64": base64::engine::general_purpose::STANDARD.encode(wifi)}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let page = c.get(&format!("/ui/devices/{}", ipad.udid)).await;
    assert!(page.body.contains(&format!("<option value=\"{}\">school-wifi</option>", w["id"].as_str().unwrap())), "{}", page.body);
    let csrf = page.csrf();

    let url = format!("/ui/devices/{}/actions", ipad.udid);
    let r = c.post(&url, &[("csrf", &csrf), ("action", "bypass_code"), ("justification", "short")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a reason is needed: {}", r.body);
    let r = c.post(&url, &[("csrf", &csrf), ("action", "bypass_code"), ("justification", "re-issuing to Year 4")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(&ipad.activation_lock_bypass_code()), "{}", r.body);

    let r = c.post(&url, &[("csrf", &csrf), ("action", "return_to_service"), ("wifi_profile_id", w["id"].as_str().unwrap())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, next) = s.connect(&ipad, ipad.idle()).await;
    let (_, rt, cmd) = lanyard_bench::sim::SimDevice::read_command(&next).expect("a command");
    assert_eq!(rt, "EraseDevice");
    let rts = cmd["ReturnToService"].as_dictionary().unwrap();
    assert!(rts.get("WiFiProfileData").is_some() && rts.get("MDMProfileData").is_some(), "{rts:?}");

    // A trolley: serial numbers typed (or scanned), each erase followed to the end.
    let trolley = [s.enrolled_device(Kind::SupervisedIpad).await, s.enrolled_device(Kind::SupervisedIpad).await];
    let page = c.get("/ui/devices/return-to-service").await;
    assert!(page.body.contains("school-wifi"), "{}", page.body);
    let serials = format!("{}\n{}", trolley[0].serial, trolley[1].serial.to_lowercase());
    let r = c.post("/ui/devices/return-to-service", &[("csrf", &csrf), ("devices", &serials)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "the erase is confirmed first: {}", r.body);
    let r =
        c.post("/ui/devices/return-to-service", &[("csrf", &csrf), ("devices", &format!("{serials}\nNOSUCH")), ("confirm", "on")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(s.connect(&trolley[0], trolley[0].idle()).await.1.is_empty(), "all or nothing");
    let r = c
        .post(
            "/ui/devices/return-to-service",
            &[("csrf", &csrf), ("devices", &serials), ("confirm", "on"), ("wifi_profile_id", w["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let progress = r.location();
    assert!(progress.starts_with("/ui/devices/return-to-service/progress?c="), "{progress}");
    let page = c.get(&progress).await;
    assert_eq!(page.body.matches("Waiting to be sent").count(), 2, "{}", page.body);
    for d in &trolley {
        s.drain(d).await;
    }
    let json = c.get(&progress.replacen("/progress?", "/progress.json?", 1)).await;
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["done"], true, "{v}");
    assert!(v["items"].as_array().unwrap().iter().all(|i| i["fields"]["status"] == "Done"), "{v}");
    s.stop().await;
}

/// A declaration the device says is invalid is said plainly on its page, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_an_invalid_declaration_with_its_reason() {
    let s = server().await;
    s.load_push_cert().await;
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let report = json!({"StatusItems": {"management": {"declarations": {"configurations": [
        {"identifier": "lanyard.status-subscriptions", "server-token": "old", "active": false, "valid": "invalid",
         "reasons": [{"code": "Error.ConfigurationCannotBeApplied", "description": "The configuration cannot be applied."}]}]}}}});
    let (st, _) = s.checkin(&ipad, ipad.declarative_management("status", Some(report.to_string().into_bytes()))).await;
    assert_eq!(st, StatusCode::OK);
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let page = c.get(&format!("/ui/devices/{}", ipad.udid)).await;
    assert!(page.body.contains("Declaration lanyard.status-subscriptions is invalid on the device: Error.ConfigurationCannotBeApplied: The configuration cannot be applied."), "{}", page.body);
    assert!(page.body.contains("Declarative management"), "{}", page.body);
    s.stop().await;
}

/// Issue 16, defect 3, in the console: the import preview names the people it would create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_import_preview_names_who_it_would_create() {
    let s = server().await;
    let mut c = Console::new(&s);
    c.login("admin", ADMIN_PASSWORD).await;
    let csrf = c.get("/ui/register/import").await.csrf();
    let csv = "school_ref,kind,name,year_group\nMIS-100,pupil,Ava Archer,Y4\n";
    let r = c.post("/ui/register/import", &[("csrf", &csrf), ("csv", csv)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Preview: nothing has been changed yet"), "{}", r.body);
    for shown in ["New person", "name: Ava Archer", "school ref: MIS-100", "year group: Y4", "key stage: KS2", "kind: pupil"] {
        assert!(r.body.contains(shown), "the preview shows {shown:?}: {}", r.body);
    }
    assert!(!r.body.contains("(empty) →"), "a new person is not shown as changes from empty");
    assert!(s.ctx.store.all_people().await.unwrap().is_empty(), "nothing written yet");
    s.stop().await;
}

/// Issue 16 in the console: the profile's card lists the keys that need a supervised device;
/// assigning it to a group with an unsupervised iPad warns, naming it; the device page says per
/// key "not in force: device not supervised" and counts the iPad as not compliant (home page
/// too); an action that needs supervision is unavailable for it, and a forged post is refused
/// in words with nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_is_told_plainly_in_the_console() {
    let s = server().await;
    let admin = s.admin().await;
    let loose = s.enrolled_device(Kind::UnsupervisedIpad).await;
    let supervised = s.enrolled_device(Kind::SupervisedIpad).await;
    let (st, g) = s.post("/api/v1/groups", &admin, json!({"name": "Year 5 iPads", "kind": "static"})).await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let (st, r) = s.post(&format!("/api/v1/groups/{gid}/members"), &admin, json!({"udids": [loose.udid, supervised.udid]})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let rid = s.ctx.store.profile_by_name("pupil-ipad-restrictions").await.unwrap().unwrap().id;
    let loose_name = s.ctx.store.device(&loose.udid).await.unwrap().unwrap().device_name.unwrap();

    let tech_pw = operator(&s, "tech", "technician").await;
    let mut tech = Console::new(&s);
    tech.login("tech", &tech_pw).await;
    let page = tech.get("/ui/profiles").await;
    let card = page.body.split(&format!("id=\"p-{rid}\"")).nth(1).unwrap().split("</section>").next().unwrap();
    assert!(card.contains("Needs a supervised device") && card.contains("allowAirDrop"), "{card}");

    // Assign: the page says which devices will not apply it.
    let r = tech.post(&format!("/ui/profiles/{rid}/groups"), &[("csrf", &page.csrf()), ("group_id", &gid)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let warn = r.body.split("id=\"assign-warnings\"").nth(1).unwrap_or_else(|| panic!("no warning: {}", r.body));
    let warn = warn.split("</div>").next().unwrap();
    assert!(warn.contains(&loose_name) && warn.contains("not supervised") && warn.contains("allowAirDrop"), "{warn}");
    assert!(!warn.contains(&supervised.udid), "{warn}");
    s.drain(&loose).await;
    s.drain(&supervised).await;

    // The device page: per key, not in force; not compliant.
    let page = tech.get(&format!("/ui/devices/{}", loose.udid)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Not compliant:"), "{}", page.body);
    let profiles = page.body.split("id=\"profiles-table\"").nth(1).unwrap();
    assert!(profiles.contains("allowAirDrop: not in force: device not supervised"), "{profiles}");
    let ok = tech.get(&format!("/ui/devices/{}", supervised.udid)).await;
    assert!(!ok.body.contains("not in force"), "{}", ok.body);
    let home = tech.get("/ui/").await;
    assert!(home.body.contains("id=\"count-non-compliant\">1<"), "{}", home.body);
    let list = tech.get("/ui/devices?compliance=no").await;
    assert!(list.body.contains(&loose.udid) && !list.body.contains(&supervised.udid), "{}", list.body);

    // Restart needs a supervised iPad: the button is disabled with the reason, and a post
    // anyway is refused in words, with nothing queued.
    let restart = page.body.split("id=\"action-restart\"").nth(1).unwrap().split("</form>").next().unwrap();
    assert!(restart.contains("disabled") && restart.contains("Not available: this iPad is not supervised"), "{restart}");
    let r = tech.post(&format!("/ui/devices/{}/actions", loose.udid), &[("csrf", &page.csrf()), ("action", "restart")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("needs a supervised device") && r.body.contains("Nothing was queued"), "{}", r.body);
    let cmds = s.ctx.store.device_commands(&loose.udid, None, 100).await.unwrap();
    assert!(cmds.iter().all(|c| c.request_type != "RestartDevice"), "nothing queued");
    s.stop().await;
}

/// An admin with no push certificate gets one through the console alone: a vendor-signed
/// request made from uploaded files, downloaded, taken to (the stand-in for) Apple's portal, and
/// the certificate Apple returns loaded on its own. A technician cannot open the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_admin_requests_and_loads_the_push_certificate() {
    let Some(b) = Browser::start().await else { return };
    let s = server().await;
    let vendor = lanyard_mocks::test_vendor().unwrap();
    let portal = lanyard_mocks::PushPortal::new(vendor.apple_root.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let (cert, chain, key) =
        (file("vendor.pem", &vendor.cert_pem), file("chain.pem", &vendor.chain_pem), file("vendor.key", &vendor.key_pem));

    b.login(&s.base, "admin", ADMIN_PASSWORD).await;
    b.find("#main").await;
    b.goto(&format!("{}/ui/apple", s.base)).await;
    assert!(b.text_of("#push-cert-state").await.contains("No push certificate is loaded"));
    b.upload("#vendor_cert", &cert).await;
    b.upload("#vendor_chain", &chain).await;
    b.upload("#vendor_key", &key).await;
    b.click_css("#make-request").await;
    b.wait_text("#pending-request", "signed by", 15).await;
    assert!(b.text_of("#pending-request").await.contains("MDM Vendor: Test Trust"));
    b.screenshot("apple-push-request").await;

    // The download link gives the portal's file.
    let href = b.attr(&b.find("#download-request").await, "href").await.unwrap();
    let mut admin = Console::new(&s);
    admin.login("admin", ADMIN_PASSWORD).await;
    let download = admin.get(href.trim_start_matches(&s.base)).await;
    assert_eq!(download.status, StatusCode::OK);
    assert!(download.headers["content-disposition"].to_str().unwrap().contains("push-cert-request.b64"));
    let (topic, issued) = portal.create(&download.body).expect("the portal takes the downloaded request");

    b.upload("#cert", &file("MDM_ Lanyard_Certificate.pem", &issued)).await;
    b.click_css("#load-cert").await;
    b.wait_text("#push-cert-state", "Loaded, valid until", 15).await;
    assert!(b.source().await.contains(&topic));
    assert!(b.find_now("#pending-request").await.is_none(), "the request is done");
    b.screenshot("apple-push-loaded").await;
    b.quit().await;
    let items = audit(&s, "push_cert.load").await;
    assert!(items.iter().any(|e| e["actor"] == "operator:admin"), "{items:?}");

    let pw = operator(&s, "tech", "technician").await;
    let mut tech = Console::new(&s);
    tech.login("tech", &pw).await;
    assert_eq!(tech.get("/ui/apple").await.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

/// A technician-free path for the admin: Lanyard's key downloaded, the ASM token uploaded from
/// the Apple page, its devices synced, "Sync now"; a broken file is refused in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_connects_apple_school_manager() {
    let mock = lanyard_mocks::MockAde::start().await.unwrap();
    mock.add_devices((0..3).map(|i| lanyard_mocks::MockDevice::ipad(&format!("UIPAD{i:04}"))));
    let s = TestServer::start_with(Backend::Sqlite, Options { env: vec![("LANYARD_ADE_URL", mock.url())], ..Default::default() }).await;
    let mut admin = Console::new(&s);
    admin.login("admin", ADMIN_PASSWORD).await;
    let page = admin.get("/ui/apple").await;
    assert!(page.body.contains("No Apple School Manager token yet"));
    let key = admin.get("/ui/apple/ade/public-key").await;
    assert_eq!(key.status, StatusCode::OK);
    assert!(key.headers["content-disposition"].to_str().unwrap().contains("lanyard-ade.pem"));
    let csrf = page.csrf();
    let r = admin.post_multipart("/ui/apple/ade/tokens", &[("csrf", &csrf)], Some(("token", "token.p7m", b"not a token"))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("not a server token file"), "{}", r.body);
    let file = lanyard_mocks::smime_token_file(key.body.as_bytes(), &mock.token_json()).unwrap();
    let r = admin.post_multipart("/ui/apple/ade/tokens", &[("csrf", &csrf)], Some(("token", "token.p7m", &file))).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/ui/apple?done=token".to_owned()), "{}", r.body);
    let mut page = admin.get("/ui/apple?done=token").await;
    for _ in 0..100 {
        if page.body.contains("3 listed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = admin.get("/ui/apple").await;
    }
    assert!(page.body.contains(&mock.server_name()) && page.body.contains("3 listed, 0 enrolled"), "{}", page.body);
    let id = s.ctx.ade.tokens().await.unwrap()[0].id;
    let r = admin.post(&format!("/ui/apple/ade/tokens/{id}/sync"), &[("csrf", &csrf)]).await;
    assert_eq!(r.location(), "/ui/apple?done=syncing");
    let items = audit(&s, "ade.token.upload").await;
    assert!(items.iter().any(|e| e["actor"] == "operator:admin"), "{items:?}");

    // A technician's page: ADE profiles, the token's rules, the devices, assignment by hand.
    s.operator("tech", "technician").await;
    let mut tech = Console::new(&s);
    tech.login("tech", "tech-password-123").await;
    let page = tech.get("/ui/ade").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("href=\"/ui/ade\" aria-current=\"page\""), "in the navigation");
    assert!(page.body.contains("UIPAD0000") && page.body.contains("No ADE profile yet"), "{}", page.body);
    assert_eq!(tech.get("/ui/apple").await.status, StatusCode::FORBIDDEN, "the push certificate stays the admin's");
    let csrf = page.csrf();
    let r = tech
        .post("/ui/ade/profiles", &[("csrf", &csrf), ("name", "Pupil iPads"), ("is_supervised", "on"), ("skip_setup_items", "siri")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("Siri"), "Apple's spelling is suggested: {}", r.body);
    let r = tech
        .post(
            "/ui/ade/profiles",
            &[
                ("csrf", &csrf),
                ("name", "Pupil iPads"),
                ("is_supervised", "on"),
                ("is_mandatory", "on"),
                ("await_device_configured", "on"),
                ("skip_setup_items", "Siri, Privacy"),
                ("department", "IT office"),
            ],
        )
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/ui/ade?done=profile".to_owned()), "{}", r.body);
    let profile = s.ctx.ade.profiles().await.unwrap().remove(0);
    assert!(profile.settings.is_supervised && !profile.settings.is_mdm_removable && profile.settings.await_device_configured);
    assert_eq!(profile.settings.skip_setup_items, vec!["Siri", "Privacy"]);
    let rules = format!("/ui/ade/tokens/{id}/rules");
    let pid = profile.id.to_string();
    assert_eq!(tech.post(&rules, &[("csrf", &csrf), ("action", "default"), ("profile", &pid)]).await.status, StatusCode::SEE_OTHER);
    let r = tech.post(&rules, &[("csrf", &csrf), ("action", "add"), ("profile", &pid), ("serials", "UIPAD0001 UIPAD0002")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = s.ctx.ade.assignment_rules(id).await.unwrap();
    assert_eq!((set.default_profile, set.rules.len(), set.rules[0].serials.as_ref().map(Vec::len)), (Some(profile.id), 1, Some(2)));
    let page = tech.get("/ui/ade").await;
    assert!(page.body.contains("serial is one of UIPAD0001, UIPAD0002"), "{}", page.body);
    assert_eq!(tech.post(&rules, &[("csrf", &csrf), ("action", "remove"), ("index", "0")]).await.status, StatusCode::SEE_OTHER);
    assert!(s.ctx.ade.assignment_rules(id).await.unwrap().rules.is_empty());
    let r = tech.post("/ui/ade/assign", &[("csrf", &csrf), ("profile", &pid), ("serials", "UIPAD0000\nNOTINASM")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = tech.get(&r.location()).await;
    assert!(page.body.contains("UIPAD0000 SUCCESS") && page.body.contains("NOTINASM NOT_IN_ASM"), "{}", page.body);
    s.stop().await;
}
