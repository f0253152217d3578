//! The web console at `/ui/`: what the DSL, technicians and governors use.
//!
//! Server-rendered HTML from compiled askama templates (`src/ui/templates/`), one stylesheet and
//! one small progressive-enhancement script served from the binary (`src/ui/static/`); no
//! inline script or style, so the Content-Security-Policy is `default-src 'self'` with nothing
//! unsafe. Every page works without the script; with it, command status updates live and
//! dangerous buttons ask for confirmation.
//!
//! The console is another face on the same services as the API: handlers check the same
//! [`Permission`](crate::services::auth::Permission)s through the operator's
//! [`Principal`](crate::services::auth::Principal) and call the same service methods (`ctx.register`, `ctx.commands`, ...), so every rule
//! (legal hold, AUP before access, two people for a release) is enforced once, below both.
//! Sessions and CSRF are in [`session`].
//!
//! Pages: `/ui/login`, `/ui/` (home), `/ui/devices`, `/ui/devices/{udid}`, `/ui/enroll`,
//! `/ui/profiles`, `/ui/register`, `/ui/cases` (safeguarding roles only), `/ui/audit`.

use askama::Template;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::context::Ctx;
use crate::services::auth::Permission;

pub mod ade;
pub mod apple;
pub mod assets;
pub mod audit;
pub mod cases;
pub mod declarations;
pub mod devices;
pub mod enroll;
pub mod home;
pub mod login;
pub mod os_updates;
pub mod profiles;
pub mod register;
pub mod session;
pub mod trolley;

pub use session::{Form, Session};

pub fn router(ctx: Ctx) -> Router<Ctx> {
    Router::new()
        .route("/ui", get(|| async { axum::response::Redirect::permanent("/ui/") }))
        .route("/ui/", get(home::home))
        .route("/ui/login", get(login::login_page).post(login::login_submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/static/{file}", get(assets::asset))
        .route("/ui/devices", get(devices::list))
        .route("/ui/devices/return-to-service", get(trolley::page).post(trolley::submit))
        .route("/ui/devices/return-to-service/progress", get(trolley::progress))
        .route("/ui/devices/return-to-service/progress.json", get(trolley::progress_json))
        .route("/ui/devices/{udid}", get(devices::show))
        .route("/ui/devices/{udid}/status.json", get(devices::status_json))
        .route("/ui/devices/{udid}/actions", post(devices::action))
        .route("/ui/enroll", get(enroll::page).post(enroll::create))
        .route("/ui/ade", get(ade::page))
        .route("/ui/ade/profiles", post(ade::create_profile))
        .route("/ui/ade/profiles/{id}/delete", post(ade::delete_profile))
        .route("/ui/ade/tokens/{id}/rules", post(ade::rules))
        .route("/ui/ade/assign", post(ade::assign))
        .route("/ui/os-updates", get(os_updates::page).post(os_updates::create))
        .route("/ui/os-updates/report.csv", get(os_updates::csv))
        .route("/ui/os-updates/{id}/cancel", post(os_updates::cancel))
        .route("/ui/declarations", get(declarations::page))
        .route("/ui/declarations/{gid}", post(declarations::save))
        .route("/ui/apple", get(apple::page))
        .route("/ui/apple/push-cert", post(apple::load))
        .route("/ui/apple/push-cert/requests", post(apple::request))
        .route("/ui/apple/push-cert/requests/{id}/file", get(apple::download))
        .route("/ui/apple/ade/public-key", get(apple::ade_public_key))
        .route("/ui/apple/ade/tokens", post(apple::ade_upload))
        .route("/ui/apple/ade/tokens/{id}/sync", post(apple::ade_sync))
        .route("/ui/apple/ade/tokens/{id}/delete", post(apple::ade_delete))
        .route("/ui/enroll/{id}/revoke", post(enroll::revoke))
        .route("/ui/profiles", get(profiles::page).post(profiles::upload))
        .route("/ui/profiles/baseline", post(profiles::add_baseline))
        .route("/ui/profiles/groups", post(profiles::create_group))
        .route("/ui/profiles/groups/{gid}/members", post(profiles::add_members))
        .route("/ui/profiles/groups/{gid}/members/{udid}/remove", post(profiles::remove_member))
        .route("/ui/profiles/changes/{id}", post(profiles::decide))
        .route("/ui/profiles/{id}/versions", post(profiles::new_version))
        .route("/ui/profiles/{id}/delete", post(profiles::delete))
        .route("/ui/profiles/{id}/groups", post(profiles::assign))
        .route("/ui/profiles/{id}/groups/{gid}/remove", post(profiles::unassign))
        .route("/ui/register", get(register::page))
        .route("/ui/register/people", post(register::create_person))
        .route("/ui/register/people/{id}", get(register::person))
        .route("/ui/register/people/{id}/sign", post(register::sign))
        .route("/ui/register/people/{id}/grant", post(register::grant))
        .route("/ui/register/people/{id}/assign", post(register::assign))
        .route("/ui/register/people/{id}/leave", post(register::leave))
        .route("/ui/register/grants/{id}/revoke", post(register::revoke_grant))
        .route("/ui/register/assignments/{id}/end", post(register::end_assignment))
        .route("/ui/register/aups", post(register::publish_aup))
        .route("/ui/register/import", get(register::import_page).post(register::import))
        .route("/ui/cases", get(cases::list).post(cases::open))
        .route("/ui/cases/quarantine", get(cases::flow).post(cases::quarantine))
        .route("/ui/cases/quarantine/confirm", post(cases::confirm))
        .route("/ui/cases/{id}", get(cases::show))
        .route("/ui/cases/{id}/actions", post(cases::add_action))
        .route("/ui/cases/{id}/release-requests", post(cases::request_release))
        .route("/ui/cases/{id}/requests/{rid}", post(cases::decide))
        .route("/ui/cases/{id}/dispose-requests", post(cases::request_disposal))
        .route("/ui/cases/{id}/evidence/{item}", post(cases::view_evidence))
        .route("/ui/cases/{id}/devices/{udid}/lock-pin", post(cases::lock_pin))
        .route("/ui/cases/{id}/custody", get(cases::custody))
        .route("/ui/cases/{id}/custody.pdf", get(cases::custody_pdf))
        .route("/ui/cases/{id}/devices/{udid}", get(cases::watch))
        .route("/ui/cases/{id}/devices/{udid}/progress.json", get(cases::progress_json))
        .route("/ui/audit", get(audit::page))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .layer(DefaultBodyLimit::max(session::FORM_LIMIT))
        .layer(axum::middleware::from_fn_with_state(ctx, session::layer))
}

async fn not_found() -> UiError {
    UiError::new(StatusCode::NOT_FOUND, "Page not found", "There is no such page in the console.")
}

/// Query parameters, leniently: a page with a bad filter value shows everything rather than
/// an error. Empty values count as absent.
#[derive(Debug, Default, Clone)]
pub struct Params(pub std::collections::HashMap<String, String>);

impl Params {
    pub fn from_uri(uri: &axum::http::Uri) -> Params {
        let q = uri.query().unwrap_or("");
        Params(form_urlencoded::parse(q.as_bytes()).into_owned().filter(|(_, v)| !v.trim().is_empty()).collect())
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.trim())
    }

    pub fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or("").to_owned()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::from_uri(&parts.uri))
    }
}

/// The navigation bar and the session's CSRF token, which every page's forms need.
pub struct Nav {
    pub username: String,
    pub role: String,
    pub csrf: String,
    pub current: &'static str,
    pub devices: bool,
    pub enroll: bool,
    pub apple: bool,
    pub ade: bool,
    pub os_updates: bool,
    pub profiles: bool,
    pub register: bool,
    pub cases: bool,
    pub audit: bool,
}

impl Nav {
    pub fn new(s: &Session, current: &'static str) -> Nav {
        Nav {
            username: s.username.clone(),
            role: s.principal.role.to_string(),
            csrf: s.csrf.clone(),
            current,
            devices: s.can(Permission::ReadDevices),
            enroll: s.can(Permission::ManageDevices),
            apple: s.can(Permission::ManagePushCert),
            ade: s.can(Permission::ManageDevices),
            os_updates: s.can(Permission::ReadDevices),
            profiles: s.can(Permission::ReadProfiles),
            register: s.can(Permission::ReadRegister),
            cases: s.can(Permission::Safeguarding),
            audit: s.can(Permission::ReadAudit),
        }
    }

    /// `aria-current` for the nav link of this page.
    pub fn is(&self, page: &str) -> bool {
        self.current == page
    }
}

/// Render a template, or a plain 500 if the template itself fails.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

pub fn render_status<T: Template>(status: StatusCode, t: &T) -> Response {
    let mut r = render(t);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// A console error: an HTML page with the status, a title and a plain-English message.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

impl UiError {
    pub fn new(status: StatusCode, title: &str, message: &str) -> UiError {
        UiError { status, title: title.to_owned(), message: message.to_owned() }
    }

    pub fn bad_form() -> UiError {
        UiError::new(StatusCode::BAD_REQUEST, "This form could not be read", "Go back, reload the page and try again.")
    }

    /// The field the form got wrong, e.g. a missing required field.
    pub fn field(label: &str, problem: &str) -> UiError {
        UiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Please check what you entered", &format!("{label}: {problem}."))
    }
}

/// First letter upper case, for messages that come from the services in lower case.
pub fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => {
            let mut out: String = f.to_uppercase().collect();
            out.push_str(c.as_str());
            if !out.ends_with('.') && !out.ends_with('?') && !out.ends_with(')') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}

impl From<crate::error::Error> for UiError {
    fn from(e: crate::error::Error) -> UiError {
        use crate::error::Error as E;
        let status = e.status();
        let (title, message) = match &e {
            E::Conflict { code: "legal_hold", extra, .. } => {
                let case = extra.get("case_number").and_then(|n| n.as_i64()).map(|n| n.to_string()).unwrap_or_default();
                (
                    "Refused: the device is on legal hold",
                    format!(
                        "This device is on legal hold under case {case}, so nothing was done. While the case is open nobody, \
                         admin included, can erase it, clear its passcode, take it out of Lost Mode, remove its profiles or \
                         reassign it. The refusal has been recorded on the case."
                    ),
                )
            }
            E::Invalid { code: "needs_supervision", message, .. } => ("Refused: the device is not supervised", sentence(message)),
            E::Internal(_) => {
                ("Something went wrong", "Lanyard could not do that because of an internal error. It has been logged.".into())
            }
            E::Forbidden(m) => ("Not allowed", format!("{} Ask an admin if you need this.", sentence(m))),
            E::NotFound(m) => ("Not found", sentence(m)),
            E::TooManyRequests { message, .. } => ("Too many attempts", sentence(message)),
            E::Unprocessable { field, message } => {
                ("Please check what you entered", format!("{}: {}", field.replace('_', " "), sentence(message)))
            }
            E::Conflict { .. } => ("That could not be done", sentence(&e.to_string())),
            _ => ("That could not be done", sentence(&e.to_string())),
        };
        UiError { status, title: title.to_owned(), message }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> UiError {
        UiError::from(crate::error::Error::from(e))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        render_status(self.status, &ErrorPage { status: self.status.as_u16(), title: &self.title, message: &self.message })
    }
}

pub type UiResult<T = Response> = Result<T, UiError>;

/// "3 Mar 2026 10:04" (UTC, as everything Lanyard stores).
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%-d %b %Y %H:%M").to_string()
}

pub fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(when).unwrap_or_else(|| "—".into())
}

/// "5 minutes ago", "3 days ago".
pub fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds();
    let (n, unit) = match s {
        i64::MIN..=59 => return "just now".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A plain-English name for a command, for people who are not technicians.
pub fn command_words(request_type: &str) -> &'static str {
    match request_type {
        "DeviceInformation" => "Read device details",
        "SecurityInfo" => "Read security settings",
        "ProfileList" => "List installed profiles",
        "InstallProfile" => "Install a profile",
        "RemoveProfile" => "Remove a profile",
        "InstalledApplicationList" => "List installed apps",
        "CertificateList" => "List certificates",
        "DeviceLock" => "Lock the screen",
        "EnableLostMode" => "Lock in Lost Mode",
        "DisableLostMode" => "Take out of Lost Mode",
        "DeviceLocation" => "Find its location",
        "PlayLostModeSound" => "Play a sound",
        "RestartDevice" => "Restart",
        "ShutDownDevice" => "Shut down",
        "EraseDevice" => "Erase everything",
        "ClearPasscode" => "Remove the passcode",
        "Settings" => "Change settings",
        "DeviceConfigured" => "Finish set-up",
        "ActivationLockBypassCode" => "Keep its Activation Lock bypass code",
        "DeclarativeManagement" => "Declarative management",
        _ => "Command",
    }
}

/// A command status in words, and whether it is finished.
pub fn status_words(status: &str) -> (&'static str, bool) {
    match status {
        "queued" => ("Waiting to be sent", false),
        "sent" => ("Sent, waiting for the device", false),
        "not_now" => ("Device busy, will retry", false),
        "acknowledged" => ("Done", true),
        "error" => ("Failed on the device", true),
        "expired" => ("Expired before delivery", true),
        "cancelled" => ("Cancelled", true),
        _ => ("Unknown", true),
    }
}
