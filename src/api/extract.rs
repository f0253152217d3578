//! Request extractors whose failures are our JSON errors, naming the field that was wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A JSON body. Syntax errors are 400, wrong or missing fields 422 naming the field, an
/// oversized body 413, a non-JSON content type 415.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json") || ct.ends_with("+json"));
        if !is_json {
            return Err(Error::UnsupportedMediaType("expected Content-Type: application/json".into()));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// Read a whole body, turning the body-limit failure into 413.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge { limit: API_BODY_LIMIT }
        } else {
            Error::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

pub const API_BODY_LIMIT: usize = 1024 * 1024;

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Error::BadRequest(format!("request body is not valid JSON: {inner}"));
        }
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        // serde names a missing field only in its message.
        let field = if path == "." { msg.split('`').nth(1).unwrap_or("body").to_owned() } else { path };
        Error::Unprocessable { field, message: msg }
    })
}

/// Query parameters, with 422 naming the parameter on error.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(q));
        serde_path_to_error::deserialize(de).map(Query).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = if path == "." { msg.split('`').nth(1).unwrap_or("query").to_owned() } else { path };
            Error::Unprocessable { field, message: msg }
        })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// A path segment that must be a UUID.
pub fn uuid_param(s: &str, what: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(s).map_err(|_| Error::not_found(format!("no such {what}: {s:?} is not an id")))
}

/// The JSON shape of every list endpoint.
#[derive(serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The page size when a list request names none.
pub const DEFAULT_PAGE_LIMIT: i64 = 100;
/// The largest page a list endpoint serves.
pub const MAX_PAGE_LIMIT: i64 = 1000;

/// A list request's `?limit=`: 1 to 1000, 100 if absent; anything else is 422 naming `limit`.
/// Every list endpoint that takes a limit checks it here.
pub fn page_limit(limit: Option<i64>) -> Result<i64, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Error::unprocessable("limit", format!("must be from 1 to {MAX_PAGE_LIMIT}, got {n}"))),
    }
}
