//! `/ui/enroll`: make an enrolment token and show its URL and a QR code to scan from a new iPad.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use qrcode::QrCode;
use qrcode::render::svg;

use super::{Form, Nav, Params, Session, UiError, UiResult, render, when, when_opt};
use crate::context::Ctx;
use crate::services::auth::Permission;
use crate::services::enrollment::NewEnrollmentToken;

struct TokenRow {
    id: String,
    label: String,
    uses: String,
    expires: String,
    created: String,
    live: bool,
}

#[derive(Template)]
#[template(path = "enroll.html")]
struct EnrollPage {
    nav: Nav,
    tokens: Vec<TokenRow>,
    created: Option<Created>,
    done: Option<&'static str>,
    push_cert_missing: bool,
}

struct Created {
    label: String,
    url: String,
    qr_svg: String,
    expires: String,
}

/// The QR code of `text` as an SVG element (no script, no inline style: CSP-safe).
pub fn qr_svg(text: &str) -> Result<String, UiError> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| UiError::from(crate::error::Error::internal(anyhow::anyhow!("QR code: {e}"))))?;
    let svg = code.render::<svg::Color>().min_dimensions(256, 256).quiet_zone(true).build();
    // Drop the XML declaration; give the image an accessible name.
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].replacen("<svg", "<svg role=\"img\" aria-label=\"QR code of the enrolment link\" id=\"enroll-qr\"", 1))
}

async fn page_with(ctx: &Ctx, s: &Session, created: Option<Created>, done: Option<&'static str>) -> UiResult {
    s.require(Permission::ManageDevices)?;
    let now = ctx.now();
    let tokens = ctx
        .enrollment
        .list_enrollment_tokens()
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            uses: match t.max_uses {
                Some(m) => format!("{} of {m}", t.uses),
                None => t.uses.to_string(),
            },
            expires: when_opt(t.expires_at),
            created: format!("{} by {}", when(t.created_at), t.created_by),
            live: t.live,
            label: t.label,
        })
        .collect();
    let _ = now;
    let push_cert_missing = ctx.push.push_cert_info().await?.is_none();
    Ok(render(&EnrollPage { nav: Nav::new(s, "enroll"), tokens, created, done, push_cert_missing }))
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    let done = match p.get("done") {
        Some("revoked") => Some("The enrolment link has been revoked: no new device can use it."),
        _ => None,
    };
    page_with(&ctx, &s, None, done).await
}

/// Create a token and show it once (the secret is not stored, so it cannot be shown again).
pub async fn create(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let label = form.get("label").ok_or_else(|| UiError::field("Label", "give the link a name, such as \"Year 3 trolley\""))?;
    let max_uses = match form.get("max_uses") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| UiError::field("How many devices", "enter a whole number"))?),
    };
    let hours = match form.get("expires_days") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| UiError::field("Days it lasts", "enter a whole number"))? * 24),
    };
    let t: NewEnrollmentToken = ctx.enrollment.create_enrollment_token(&s.actor(), label, max_uses, hours, None).await?;
    let created = Created { qr_svg: qr_svg(&t.enroll_url)?, url: t.enroll_url, label: t.label, expires: when_opt(t.expires_at) };
    page_with(&ctx, s, Some(created), None).await
}

pub async fn revoke(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let id = crate::faces::api::extract::uuid_param(&id, "enrolment link")?;
    ctx.enrollment.revoke_enrollment_token(&s.actor(), id).await?;
    Ok(Redirect::to("/ui/enroll?done=revoked").into_response())
}
