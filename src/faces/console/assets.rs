//! The console's stylesheet and script, compiled into the binary.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::UiError;

pub const CSS: &str = include_str!("static/lanyard.css");
pub const JS: &str = include_str!("static/lanyard.js");

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ct) = match file.as_str() {
        "lanyard.css" => (CSS, "text/css; charset=utf-8"),
        "lanyard.js" => (JS, "text/javascript; charset=utf-8"),
        _ => {
            return UiError::new(axum::http::StatusCode::NOT_FOUND, "Not found", "There is no such file.").into_response();
        }
    };
    ([(CONTENT_TYPE, ct), (CACHE_CONTROL, "public, max-age=300")], body).into_response()
}
