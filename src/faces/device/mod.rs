//! The device face: enrolment profile, SCEP, check-in and connect, as Apple's devices expect.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::context::Ctx;
use crate::error::Error;
use crate::faces::peer::PeerInfo;
use crate::protocol::scep;
use crate::services::devices::checkin::CheckinReply;

/// The routes devices call (documented in the API's OpenAPI document, though their handlers are
/// not annotated: see `faces::api::openapi`).
pub fn router() -> axum::Router<Ctx> {
    use axum::routing::{get, put};
    axum::Router::new()
        .route("/mdm/enroll", get(enroll))
        .route("/mdm/ade/enroll", get(ade_enroll).post(ade_enroll))
        .route("/mdm/checkin", put(checkin).post(checkin))
        .route("/mdm/connect", put(connect).post(connect))
        .route("/scep", get(scep_endpoint).post(scep_endpoint))
        .layer(axum::extract::DefaultBodyLimit::max(CONNECT_BODY_LIMIT))
}

pub const CHECKIN_BODY_LIMIT: usize = 64 * 1024;
pub const CONNECT_BODY_LIMIT: usize = 4 * 1024 * 1024;
pub const SCEP_BODY_LIMIT: usize = 64 * 1024;

/// Errors on the device face. A 401 would make a device unenrol, so it never gets one.
pub struct DeviceFaceError(Error);

impl From<Error> for DeviceFaceError {
    fn from(e: Error) -> Self {
        DeviceFaceError(e)
    }
}

impl IntoResponse for DeviceFaceError {
    fn into_response(self) -> Response {
        let status = match self.0.status() {
            StatusCode::UNAUTHORIZED => StatusCode::FORBIDDEN,
            s => s,
        };
        if status.is_server_error() {
            return self.0.into_response();
        }
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.0.to_string()).into_response()
    }
}

type DeviceResult<T> = Result<T, DeviceFaceError>;

/// Read the body within `limit`, answering 413 beyond it.
async fn body_within(req: Request, limit: usize) -> DeviceResult<Bytes> {
    axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| DeviceFaceError(Error::PayloadTooLarge { limit }))
}

fn signature(headers: &HeaderMap) -> Option<String> {
    headers.get("mdm-signature").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The TLS client certificate, when Lanyard terminates TLS and the device sent one.
fn client_cert(req: &Request) -> Option<std::sync::Arc<Vec<u8>>> {
    req.extensions().get::<ConnectInfo<PeerInfo>>().and_then(|ConnectInfo(p)| p.client_cert.clone())
}

fn plist_response(body: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/xml; charset=utf-8")], body).into_response()
}

/// `PUT /mdm/checkin`.
pub async fn checkin(State(ctx): State<Ctx>, headers: HeaderMap, req: Request) -> DeviceResult<Response> {
    let cert = client_cert(&req);
    let body = body_within(req, CHECKIN_BODY_LIMIT).await?;
    let reply = ctx.devices.checkin(&body, signature(&headers).as_deref(), cert.as_deref().map(|v| v.as_slice())).await?;
    Ok(match reply {
        CheckinReply::Ok => StatusCode::OK.into_response(),
        CheckinReply::Plist(p) => plist_response(p),
        CheckinReply::Gone => StatusCode::GONE.into_response(),
        CheckinReply::Json(j) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], j).into_response(),
    })
}

/// `PUT /mdm/connect`.
pub async fn connect(State(ctx): State<Ctx>, headers: HeaderMap, req: Request) -> DeviceResult<Response> {
    let cert = client_cert(&req);
    let body = body_within(req, CONNECT_BODY_LIMIT).await?;
    Ok(match ctx.devices.connect(&body, signature(&headers).as_deref(), cert.as_deref().map(|v| v.as_slice())).await? {
        Some(plist) => plist_response(plist),
        None => StatusCode::OK.into_response(),
    })
}

#[derive(Deserialize)]
pub struct EnrollQuery {
    token: Option<String>,
}

/// `GET /mdm/enroll?token=T`: the signed enrolment profile.
pub async fn enroll(State(ctx): State<Ctx>, Query(q): Query<EnrollQuery>) -> Result<Response, Error> {
    let token = q.token.ok_or_else(|| Error::Forbidden("an enrolment token is needed: /mdm/enroll?token=...".into()))?;
    let profile = ctx.enrollment.enrollment_profile(&token).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-apple-aspen-config"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"enrol.mobileconfig\""),
        ],
        profile,
    )
        .into_response())
}

/// The most a signed MachineInfo takes (a plist of a few hundred bytes and three certificates).
pub const MACHINE_INFO_BODY_LIMIT: usize = 64 * 1024;

/// `POST /mdm/ade/enroll` (the body is the CMS-signed MachineInfo), or `GET` with it base64 in
/// `x-apple-aspen-deviceinfo` (Setup Assistant after web authentication): the signed
/// enrolment profile for an iPad Apple School Manager lists for this school.
pub async fn ade_enroll(State(ctx): State<Ctx>, headers: HeaderMap, req: Request) -> DeviceResult<Response> {
    let der = match headers.get("x-apple-aspen-deviceinfo") {
        Some(v) => {
            use base64::Engine as _;
            let text = v.to_str().map_err(|_| Error::BadRequest("x-apple-aspen-deviceinfo is not text".into()))?;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| Error::BadRequest(format!("x-apple-aspen-deviceinfo is not base64: {e}")))?
        }
        None => body_within(req, MACHINE_INFO_BODY_LIMIT).await?.to_vec(),
    };
    if der.is_empty() {
        return Err(Error::BadRequest("no MachineInfo: POST the CMS-signed MachineInfo Setup Assistant sends".into()).into());
    }
    let profile = ctx.enrollment.ade_enrollment_profile(der).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-apple-aspen-config")], profile).into_response())
}

#[derive(Deserialize)]
pub struct ScepQuery {
    operation: Option<String>,
    message: Option<String>,
}

/// `GET|POST /scep?operation=...` (RFC 8894).
pub async fn scep_endpoint(State(ctx): State<Ctx>, Query(q): Query<ScepQuery>, req: Request) -> DeviceResult<Response> {
    let is_post = req.method() == axum::http::Method::POST;
    let raw_message = req.uri().query().and_then(|query| raw_query_param(query, "message")).map(decode_keeping_plus);
    match q.operation.as_deref() {
        Some("GetCACaps") => Ok(([(header::CONTENT_TYPE, scep::CONTENT_TYPE_CA_CAPS)], scep::CA_CAPS).into_response()),
        Some("GetCACert") => {
            let der = scep::ca_cert_response(&ctx.pki.ca_cert).map_err(Error::internal)?;
            Ok(([(header::CONTENT_TYPE, scep::CONTENT_TYPE_CA_CERT)], der).into_response())
        }
        Some("PKIOperation") => {
            let der = if is_post {
                body_within(req, SCEP_BODY_LIMIT).await?.to_vec()
            } else {
                // The parameter as sent, not as `Query` decoded it: see `raw_query_param`.
                let m = raw_message.or(q.message).ok_or_else(|| Error::BadRequest("PKIOperation by GET needs ?message=".into()))?;
                scep::decode_message_param(&m).map_err(|e| Error::BadRequest(format!("message: {e}")))?
            };
            let reply = ctx.enrollment.scep_pki_operation(der).await?;
            Ok(Response::builder()
                .header(header::CONTENT_TYPE, reply.content_type)
                .body(Body::from(reply.body))
                .map_err(Error::internal)?)
        }
        Some(other) => Err(Error::BadRequest(format!("unknown SCEP operation {other:?}")).into()),
        None => Err(Error::BadRequest("SCEP needs ?operation=".into()).into()),
    }
}

/// The value of parameter `name` in a query string exactly as sent, still percent-encoded.
///
/// A SCEP client puts standard base64 in `?message=` and most leave its `+` unescaped.
/// Form-style decoding (what `Query` does) turns each `+` into a space; `decode_message_param`
/// maps spaces back, but only after trimming the value, so a message whose base64 began or
/// ended with `+` (about one request in a hundred without padding) lost that character and was
/// refused with 400 (found by `tests/parsers_proptest.rs`). The raw value keeps every `+`;
/// `decode_message_param` undoes any percent-encoding itself.
pub fn raw_query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.split_once('=').filter(|(key, _)| *key == name).map(|(_, value)| value))
}

/// Percent-decodes a query value once, as `Query` would, except that a `+` stays a `+`.
/// (Some clients escape the base64 twice; `decode_message_param` undoes a second layer.)
pub fn decode_keeping_plus(raw: &str) -> String {
    let escaped = raw.replace('+', "%2B");
    form_urlencoded::parse(format!("v={escaped}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_query_param_keeps_plus_signs() {
        assert_eq!(raw_query_param("operation=PKIOperation&message=+AB+/CD+", "message"), Some("+AB+/CD+"));
        assert_eq!(raw_query_param("message=a%2Bb&message=second", "message"), Some("a%2Bb"));
        assert_eq!(raw_query_param("operation=GetCACaps", "message"), None);
        assert_eq!(raw_query_param("message", "message"), None);
        assert_eq!(raw_query_param("", "message"), None);
        assert_eq!(decode_keeping_plus("a+b%2Bc%252B%3D+"), "a+b+c%2B=+");
    }

    /// The case the property tests found: base64 ending in `+`, sent without padding, as
    /// form decoding and the trim in `decode_message_param` used to lose it.
    #[test]
    fn a_message_ending_in_plus_decodes_whole() {
        let query = "operation=PKIOperation&message=MIIBAAA+";
        let sent = [0x30, 0x82, 0x01, 0x00, 0x00, 0x3e];
        let raw = decode_keeping_plus(raw_query_param(query, "message").expect("message"));
        assert_eq!(scep::decode_message_param(&raw).expect("base64"), sent);
        // What `Query` passes on (the last `+` became a space) decodes the same too, now that
        // `decode_message_param` keeps spaces.
        let form: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
        assert_eq!(form[1].1, "MIIBAAA ");
        assert_eq!(scep::decode_message_param(&form[1].1).expect("base64"), sent);
    }
}
