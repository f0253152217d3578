//! Console sessions without a server-side session store.
//!
//! Logging in calls [`Operators::login`](crate::services::operators::Operators::login) (the API's rules: lockout, audit, disabled accounts) and
//! puts the one-hour session JWT it returns in a cookie, followed by the time of the last
//! activity and a MAC over both:
//!
//! ```text
//! __Host-lanyard = <jwt> "~" <last activity, unix seconds> "~" <HMAC(jwt key, "ui-idle", jwt~ts)>
//! ```
//!
//! Every request checks the JWT exactly as a bearer token is checked (signature, expiry, the
//! operator still exists and is enabled, the session was not logged out and the operator's
//! password, role or account has not changed since: one query) and refuses a session idle for
//! more than [`IDLE_MINUTES`]; each page view re-stamps the activity time. Nothing lives in
//! memory, so several instances behind a load balancer share nothing but the database, where
//! logging out records the session as ended.
//!
//! The cookie is `HttpOnly`, `Secure`, `SameSite=Strict`, `Path=/` (the `__Host-` prefix makes
//! browsers insist on all of that). Every form carries a CSRF token,
//! `HMAC(jwt key, "ui-csrf", the session's jti)`, compared in constant time; a POST without it
//! or with a wrong one is refused with 403 before anything is done. The login form has its own
//! token, tied to a short-lived pre-login cookie.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};

use super::UiError;
use crate::context::{Ctx, Lanyard};
use crate::faces::principal::client_ip;
use crate::services::auth::principal::SessionRefused;
use crate::services::auth::session_token::{Claims, TokenError};
use crate::services::auth::{Permission, Principal, constant_time_eq};

/// The session cookie. `__Host-`: Secure, no Domain, Path=/ — or the browser drops it.
pub const COOKIE_NAME: &str = "__Host-lanyard";
/// The pre-login cookie the login form's CSRF token is tied to.
pub const LOGIN_COOKIE: &str = "__Host-lanyard-login";
/// A session with no page view for this long is over.
pub const IDLE_MINUTES: i64 = 30;
/// The largest form body the console accepts (a CSV import is the biggest).
pub const FORM_LIMIT: usize = 8 * 1024 * 1024;

/// A logged-in operator, as every console handler sees them.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub username: String,
    pub claims: Claims,
    /// The token every form of this session must carry.
    pub csrf: String,
    jwt: String,
}

/// Why a session ended, in words, for the login page (`?why=` carries only the code).
pub fn ended_message(code: &str) -> &'static str {
    match code {
        "idle" => "You were logged out after 30 minutes without activity.",
        "expired" => "Your session has ended (sessions last an hour).",
        "disabled" => "This account can no longer log in. Ask an admin.",
        "error" => "Lanyard could not check your session.",
        "logout" => "You have logged out.",
        "ended" => "Your session has ended: it was logged out, or your password, role or account was changed. Please log in again.",
        _ => "Please log in.",
    }
}

/// What the session middleware found.
#[derive(Debug, Clone)]
pub enum SessionState {
    Active(Box<Session>),
    /// There was a cookie, but it is no longer good; the reason's code (see [`ended_message`]).
    Ended(&'static str),
    None,
}

impl Session {
    pub fn can(&self, p: Permission) -> bool {
        self.principal.role.allows(p)
    }

    /// 403 naming what the role may not do (the API's rule and message).
    pub fn require(&self, p: Permission) -> Result<(), UiError> {
        self.principal.require(p).map_err(UiError::from)
    }

    pub fn actor(&self) -> crate::services::auth::Actor {
        self.principal.actor()
    }
}

fn mac(ctx: &Lanyard, purpose: &str, data: &[u8]) -> String {
    B64.encode(ctx.session_key.derive(purpose, data))
}

/// The CSRF token of the session whose JWT id is `jti`.
pub fn csrf_token(ctx: &Lanyard, jti: &str) -> String {
    mac(ctx, "ui-csrf", jti.as_bytes())
}

/// The cookie value for `jwt`, active at `at`.
fn cookie_value(ctx: &Lanyard, jwt: &str, at: DateTime<Utc>) -> String {
    let stamped = format!("{jwt}~{}", at.timestamp());
    let m = mac(ctx, "ui-idle", stamped.as_bytes());
    format!("{stamped}~{m}")
}

/// `Set-Cookie` for a session, expiring with its JWT.
pub fn session_cookie(ctx: &Lanyard, jwt: &str, expires_at: DateTime<Utc>) -> HeaderValue {
    let now = ctx.now();
    let max_age = (expires_at - now).num_seconds().max(0);
    let v = format!("{COOKIE_NAME}={}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict", cookie_value(ctx, jwt, now));
    HeaderValue::from_str(&v).expect("cookie is ASCII")
}

pub fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")).expect("ASCII")
}

/// Read one cookie from the request.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Check the session cookie. Polls (`.json`) check it but do not count as activity.
async fn load(ctx: &Ctx, parts: &Parts) -> SessionState {
    let Some(raw) = cookie(parts, COOKIE_NAME) else { return SessionState::None };
    let mut it = raw.rsplitn(3, '~');
    let (Some(m), Some(ts), Some(jwt)) = (it.next(), it.next(), it.next()) else {
        return SessionState::Ended("invalid");
    };
    let expected = mac(ctx, "ui-idle", format!("{jwt}~{ts}").as_bytes());
    if !constant_time_eq(m.as_bytes(), expected.as_bytes()) {
        return SessionState::Ended("invalid");
    }
    let now = ctx.now();
    let Some(last) = ts.parse::<i64>().ok().and_then(|t| DateTime::from_timestamp(t, 0)) else {
        return SessionState::Ended("invalid");
    };
    if now - last > chrono::Duration::minutes(IDLE_MINUTES) {
        return SessionState::Ended("idle");
    }
    let claims = match ctx.session_key.verify(jwt, now) {
        Ok(c) => c,
        Err(TokenError::Expired) => {
            return SessionState::Ended("expired");
        }
        Err(_) => return SessionState::Ended("invalid"),
    };
    match ctx.operators.session_principal(&claims, client_ip(ctx, parts)).await {
        Ok(principal) => SessionState::Active(Box::new(Session {
            csrf: csrf_token(ctx, &claims.jti),
            username: claims.name.clone(),
            principal,
            claims,
            jwt: jwt.to_owned(),
        })),
        Err(SessionRefused::Malformed) => SessionState::Ended("invalid"),
        Err(SessionRefused::Gone | SessionRefused::Disabled) => SessionState::Ended("disabled"),
        Err(SessionRefused::Ended) => SessionState::Ended("ended"),
        Err(SessionRefused::Failed(e)) => {
            tracing::error!(error = %e, "checking a console session");
            SessionState::Ended("error")
        }
    }
}

/// Security headers on every console response.
fn harden(resp: &mut Response, static_asset: bool) {
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !static_asset {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
    }
}

/// The console's middleware: find the session, run the handler, re-stamp the session's
/// activity on page views, and add the security headers.
pub async fn layer(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let static_asset = path.starts_with("/ui/static/");
    let state = if static_asset { SessionState::None } else { load(&ctx, &parts).await };
    parts.extensions.insert(state.clone());
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if let SessionState::Active(s) = &state {
        let handler_set_cookie = resp.headers().get_all(SET_COOKIE).iter().any(|v| v.as_bytes().starts_with(COOKIE_NAME.as_bytes()));
        let poll = path.ends_with(".json");
        if !handler_set_cookie && !poll {
            let exp = DateTime::from_timestamp(s.claims.exp, 0).unwrap_or_else(|| ctx.now());
            resp.headers_mut().append(SET_COOKIE, session_cookie(&ctx, &s.jwt, exp));
        }
    }
    harden(&mut resp, static_asset);
    resp
}

/// Where to go after logging in: only a console path of ours.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\') && !n.contains("://") => n.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

/// Not logged in: a page view goes to the login page (and comes back after); a form post is
/// refused, since it cannot be replayed after logging in.
pub struct NotLoggedIn {
    method: Method,
    path_and_query: String,
    why: Option<&'static str>,
}

impl IntoResponse for NotLoggedIn {
    fn into_response(self) -> Response {
        if self.method == Method::GET || self.method == Method::HEAD {
            if self.path_and_query.ends_with(".json") || self.path_and_query.contains(".json?") {
                return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "log in again", "code": "unauthorized"})))
                    .into_response();
            }
            let mut to = format!("/ui/login?next={}", urlencode(&self.path_and_query));
            if let Some(why) = self.why {
                to.push_str("&why=");
                to.push_str(why);
            }
            let mut resp = Redirect::to(&to).into_response();
            if self.why.is_some() {
                resp.headers_mut().append(SET_COOKIE, clear_cookie(COOKIE_NAME));
            }
            return resp;
        }
        let why = self.why.map(ended_message).unwrap_or("You are not logged in.");
        UiError::new(StatusCode::FORBIDDEN, "Please log in again", &format!("{why} Nothing was done: log in and try again."))
            .into_response()
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl FromRequestParts<Ctx> for Session {
    type Rejection = NotLoggedIn;

    async fn from_request_parts(parts: &mut Parts, _ctx: &Ctx) -> Result<Self, NotLoggedIn> {
        let reject = |why| NotLoggedIn {
            method: parts.method.clone(),
            path_and_query: parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/ui/".into()),
            why,
        };
        match parts.extensions.get::<SessionState>() {
            Some(SessionState::Active(s)) => Ok((**s).clone()),
            Some(SessionState::Ended(why)) => Err(reject(Some(why))),
            _ => Err(reject(None)),
        }
    }
}

/// A submitted form (URL-encoded or multipart) whose CSRF token matched the session's.
pub struct Form {
    pub session: Session,
    fields: HashMap<String, String>,
    files: HashMap<String, (String, Vec<u8>)>,
}

impl Form {
    /// A field, trimmed; empty or absent is `None`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// A field as typed (not trimmed), or "".
    pub fn raw(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }

    /// A field holding a list typed or scanned (serial numbers, skip keys): the entries between
    /// commas and white space, empty ones left out.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.raw(name).split(|c: char| c == ',' || c.is_whitespace()).filter(|v| !v.is_empty()).map(str::to_owned).collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        matches!(self.get(name), Some("on" | "true" | "yes" | "1"))
    }

    /// An uploaded file: (file name, bytes). An empty file input is `None`.
    pub fn file(&self, name: &str) -> Option<&(String, Vec<u8>)> {
        self.files.get(name).filter(|(_, b)| !b.is_empty())
    }
}

fn csrf_refused() -> UiError {
    UiError::new(
        StatusCode::FORBIDDEN,
        "This form could not be accepted",
        "The form was missing its security token, or the token did not match your session, so nothing was done. \
         Go back, reload the page and try again.",
    )
}

impl FromRequest<Ctx> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, ctx: &Ctx) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, ctx).await.map_err(IntoResponse::into_response)?;
        let ct = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let req = Request::from_parts(parts, body);
        let mut fields = HashMap::new();
        let mut files = HashMap::new();
        let too_large = || {
            UiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "That is too large",
                "The form or file sent is larger than Lanyard accepts (8 MiB).",
            )
            .into_response()
        };
        if ct.starts_with("multipart/form-data") {
            let mut mp = Multipart::from_request(req, ctx).await.map_err(|_| csrf_refused().into_response())?;
            loop {
                let field = match mp.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                    Err(_) => return Err(UiError::bad_form().into_response()),
                };
                let name = field.name().unwrap_or("").to_owned();
                match field.file_name().map(str::to_owned) {
                    Some(file_name) => {
                        let bytes = field.bytes().await.map_err(|_| too_large())?;
                        files.insert(name, (file_name, bytes.to_vec()));
                    }
                    None => {
                        let text = field.text().await.map_err(|_| UiError::bad_form().into_response())?;
                        fields.insert(name, text);
                    }
                }
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            let bytes = axum::body::to_bytes(req.into_body(), FORM_LIMIT).await.map_err(|_| too_large())?;
            for (k, v) in form_urlencoded::parse(&bytes) {
                fields.insert(k.into_owned(), v.into_owned());
            }
        } else {
            return Err(csrf_refused().into_response());
        }
        let presented = fields.get("csrf").map(String::as_str).unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), session.csrf.as_bytes()) {
            tracing::warn!(user = %session.username, "console form refused: CSRF token missing or wrong");
            return Err(csrf_refused().into_response());
        }
        Ok(Form { session, fields, files })
    }
}

/// The login form's token: a MAC of the pre-login cookie's random value.
pub fn login_csrf(ctx: &Lanyard, nonce: &str) -> String {
    mac(ctx, "ui-login", nonce.as_bytes())
}

pub fn new_nonce() -> String {
    let mut b = [0u8; 24];
    openssl::rand::rand_bytes(&mut b).expect("random bytes");
    B64.encode(b)
}
