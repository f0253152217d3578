//! The one error type every operator-facing request path returns.
//!
//! Each variant maps to a status code and a stable machine-readable `code`; the JSON body is
//! always `{"error": "...", "code": "..."}` plus, for a few variants, extra fields a script can
//! act on. Internal errors are logged with their detail and answered with a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A conflict with a stable code (`username_taken`, `legal_hold`, ...) and optional extra fields.
    #[error("{message}")]
    Conflict { code: &'static str, message: String, extra: Map<String, Value> },
    #[error("request body is larger than the {limit} bytes allowed here")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{field}: {message}")]
    Unprocessable { field: String, message: String },
    /// 422 with a stable code and extra fields, e.g. every row and column an import got wrong.
    #[error("{message}")]
    Invalid { code: &'static str, field: String, message: String, extra: Map<String, Value> },
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict { code, message: message.into(), extra: Map::new() }
    }

    pub fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Unprocessable { field: field.into(), message: message.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unprocessable { .. } | Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict { code, .. } => code,
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Unprocessable { .. } => "invalid_field",
            Error::Invalid { code, .. } => code,
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// The JSON body as a script sees it.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.to_string()));
        body.insert("code".into(), json!(self.code()));
        match self {
            Error::Conflict { extra, .. } => body.extend(extra.clone()),
            Error::Unprocessable { field, .. } => {
                body.insert("field".into(), json!(field));
            }
            Error::Invalid { field, extra, .. } => {
                body.insert("field".into(), json!(field));
                body.extend(extra.clone());
            }
            _ => {}
        }
        Value::Object(body)
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Conflict(what) => Error::conflict("conflict", what),
            StoreError::NotFound => Error::not_found("not found"),
            StoreError::Database(e) => Error::Internal(anyhow::Error::new(e)),
            StoreError::Embedded(e) => Error::Internal(anyhow::Error::new(e)),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let Error::TooManyRequests { retry_after_secs, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
