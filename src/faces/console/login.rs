//! `/ui/login` and `/ui/logout`: the API's login service behind a form.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{self, COOKIE_NAME, LOGIN_COOKIE, SessionState};
use super::{Form, Params, UiError, render_status};
use crate::context::Ctx;
use crate::error::Error;
use crate::faces::principal::client_ip;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    username: String,
    /// Why they are here (session ended, logged out).
    info: Option<&'static str>,
    error: Option<String>,
    locked: bool,
}

struct LoginQuery {
    next: Option<String>,
    why: Option<String>,
}

fn login_response(ctx: &Ctx, status: StatusCode, mut page: LoginPage) -> Response {
    let nonce = session::new_nonce();
    page.csrf = session::login_csrf(ctx, &nonce);
    let mut resp = render_status(status, &page);
    let cookie = format!("{LOGIN_COOKIE}={nonce}; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict");
    resp.headers_mut().append(SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    resp
}

pub async fn login_page(State(ctx): State<Ctx>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let q = Params::from_uri(&parts.uri);
    let q = LoginQuery { next: q.get("next").map(str::to_owned), why: q.get("why").map(str::to_owned) };
    if let Some(SessionState::Active(_)) = parts.extensions.get::<SessionState>() {
        return Redirect::to(&session::safe_next(q.next.as_deref())).into_response();
    }
    let page = LoginPage {
        csrf: String::new(),
        next: session::safe_next(q.next.as_deref()),
        username: String::new(),
        info: q.why.as_deref().map(session::ended_message),
        error: None,
        locked: false,
    };
    login_response(&ctx, StatusCode::OK, page)
}

pub async fn login_submit(State(ctx): State<Ctx>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ip = client_ip(&ctx, &parts);
    let nonce = session::cookie(&parts, LOGIN_COOKIE).unwrap_or("").to_owned();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return UiError::bad_form().into_response();
    };
    let mut username = String::new();
    let mut password = String::new();
    let mut csrf = String::new();
    let mut next = None;
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "username" => username = v.trim().to_owned(),
            "password" => password = v.into_owned(),
            "csrf" => csrf = v.into_owned(),
            "next" => next = Some(v.into_owned()),
            _ => {}
        }
    }
    let next = session::safe_next(next.as_deref());
    let expected = session::login_csrf(&ctx, &nonce);
    if nonce.is_empty() || !crate::services::auth::constant_time_eq(csrf.as_bytes(), expected.as_bytes()) {
        let page = LoginPage {
            csrf: String::new(),
            next,
            username,
            info: None,
            error: Some("The login form had expired, or your browser is not accepting cookies from Lanyard. Please try again.".into()),
            locked: false,
        };
        return login_response(&ctx, StatusCode::FORBIDDEN, page);
    }
    if username.is_empty() || password.is_empty() {
        let page = LoginPage {
            csrf: String::new(),
            next,
            username,
            info: None,
            error: Some("Enter your username and your password.".into()),
            locked: false,
        };
        return login_response(&ctx, StatusCode::UNPROCESSABLE_ENTITY, page);
    }
    match ctx.operators.login(&username, &password, ip.as_deref()).await {
        Ok(s) => {
            let mut resp = Redirect::to(&next).into_response();
            resp.headers_mut().append(SET_COOKIE, session::session_cookie(&ctx, &s.token, s.expires_at));
            resp.headers_mut().append(SET_COOKIE, session::clear_cookie(LOGIN_COOKIE));
            resp
        }
        Err(e) => {
            let (status, error, locked) = match &e {
                Error::TooManyRequests { message, .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "This account is locked for now because of too many failed logins ({}). \
                         An admin can unlock it straight away with `lanyard admin reset-password {username}`.",
                        message.trim_start_matches("too many failed logins; ")
                    ),
                    true,
                ),
                Error::Unauthorized(_) => {
                    (StatusCode::UNAUTHORIZED, "That username and password do not match. Please try again.".into(), false)
                }
                Error::Forbidden(_) => (StatusCode::FORBIDDEN, "This account is disabled. Ask an admin.".into(), false),
                other => {
                    tracing::error!(error = %other, "console login");
                    (StatusCode::INTERNAL_SERVER_ERROR, "Lanyard could not log you in because of an internal error.".into(), false)
                }
            };
            let page = LoginPage { csrf: String::new(), next, username, info: None, error: Some(error), locked };
            login_response(&ctx, status, page)
        }
    }
}

/// Log out: the session is ended in the database (audited in the same transaction), so the
/// cookie, or its JWT used as a bearer token, no longer works anywhere, then the cookie goes.
pub async fn logout(State(ctx): State<Ctx>, form: Form) -> Response {
    if let Err(e) = ctx.operators.logout(&form.session.principal, "console").await {
        return UiError::from(e).into_response();
    }
    let mut resp = Redirect::to("/ui/login?why=logout").into_response();
    resp.headers_mut().append(SET_COOKIE, session::clear_cookie(COOKIE_NAME));
    resp
}
