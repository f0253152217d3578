//! Request extractors whose failures are our JSON errors, naming the field that was wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::Error;

/// A JSON body, read with [`parse_json`]. Syntax errors are 400; a repeated key, wrong or
/// missing fields 422 naming the field; an oversized body 413; a non-JSON content type 415.
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

/// Parse a JSON body in two passes. The first reads the document into a tree, refusing any key
/// that one object names twice, at any depth (serde would otherwise keep the last, so
/// `{"request_type":"ProfileList","request_type":"EraseDevice"}` would queue an erase), and
/// anything after the document. Only what it refuses as JSON is 400: a document that passes is
/// valid, so every failure of the second, typed pass (a wrong type, an unknown enum value, a
/// missing or unknown field) is 422 naming the field's path (`command.PIN`, `targets[0]`).
/// Nesting is bounded by serde_json's recursion limit (128).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value = parse_unique(bytes)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        // serde names a missing field only in its message, and the path is then its parent's.
        let field = match msg.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            Some(missing) if path == "." => missing.to_owned(),
            Some(missing) => format!("{path}.{missing}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        Error::Unprocessable { field, message: msg }
    })
}

/// The first pass of [`parse_json`]: the document as a tree, every object's keys distinct.
fn parse_unique(bytes: &[u8]) -> Result<Value, Error> {
    let mut path = Vec::new();
    let mut duplicate = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Unique { path: &mut path, duplicate: &mut duplicate }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some((field, key))) => {
            Err(Error::Unprocessable { field, message: format!("duplicate key `{key}`: a JSON object may name each field once") })
        }
        (Err(e), None) => Err(Error::BadRequest(format!("request body is not valid JSON: {e}"))),
    }
}

/// Where the first pass is in the document: object keys and array indexes.
enum Segment {
    Key(String),
    Index(usize),
}

/// A path as `serde_path_to_error` writes one: `a.b[0].c`, or `.` for the whole body.
fn render_path(path: &[Segment]) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let mut out = String::new();
    let mut separator = "";
    for s in path {
        match s {
            Segment::Key(k) => {
                out.push_str(separator);
                out.push_str(k);
            }
            Segment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
        separator = ".";
    }
    out
}

/// Deserializes any JSON value into a [`Value`], failing at the first key an object repeats and
/// leaving its path and the key in `duplicate`.
struct Unique<'a> {
    path: &'a mut Vec<Segment>,
    duplicate: &'a mut Option<(String, String)>,
}

impl Unique<'_> {
    fn child(&mut self) -> Unique<'_> {
        Unique { path: &mut *self.path, duplicate: &mut *self.duplicate }
    }
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            self.path.push(Segment::Index(out.len()));
            let next = seq.next_element_seed(self.child())?;
            self.path.pop();
            match next {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.path.push(Segment::Key(key.clone()));
                *self.duplicate = Some((render_path(self.path), key));
                return Err(A::Error::custom("duplicate key"));
            }
            self.path.push(Segment::Key(key.clone()));
            let v = map.next_value_seed(self.child())?;
            self.path.pop();
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
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
#[derive(serde::Serialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::register::people::PersonFields;

    fn refused<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (u16, String, String) {
        match parse_json::<T>(body.as_bytes()) {
            Ok(v) => panic!("{body} was accepted as {v:?}"),
            Err(e) => {
                let field = match &e {
                    Error::Unprocessable { field, .. } => field.clone(),
                    _ => String::new(),
                };
                (e.status().as_u16(), field, e.to_string())
            }
        }
    }

    #[test]
    fn repeated_keys_are_named_with_their_path() {
        let (st, field, msg) = refused::<Map<String, Value>>(r#"{"request_type":"ProfileList","request_type":"EraseDevice"}"#);
        assert_eq!((st, field.as_str()), (422, "request_type"));
        assert!(msg.contains("duplicate key `request_type`"), "{msg}");
        let (st, field, _) = refused::<Value>(r#"{"a":[1,{"b":{"c":1,"d":2,"c":3}}]}"#);
        assert_eq!((st, field.as_str()), (422, "a[1].b.c"));
        let (_, field, _) = refused::<Value>(r#"[{"x":1},{"x":1,"x":1}]"#);
        assert_eq!(field, "[1].x");
        // Siblings may share a key; so may an object and the one inside it.
        assert!(parse_json::<Value>(br#"[{"x":1},{"x":{"x":2}}]"#).is_ok());
    }

    #[test]
    fn wrong_types_are_422_naming_the_field() {
        let (st, field, msg) = refused::<PersonFields>(r#"{"kind":5,"name":"x"}"#);
        assert_eq!((st, field.as_str()), (422, "kind"));
        assert!(msg.contains("invalid type: integer `5`"), "{msg}");
        let (st, field, msg) = refused::<PersonFields>(r#"{"kind":"alien","name":"x"}"#);
        assert_eq!((st, field.as_str()), (422, "kind"));
        assert!(msg.contains("unknown variant `alien`") && msg.contains("`pupil`"), "{msg}");
        let (st, field, _) = refused::<PersonFields>(r#"{"name":"x"}"#);
        assert_eq!((st, field.as_str()), (422, "kind"));
        let (st, field, msg) = refused::<PersonFields>(r#"{"kind":"staff","name":"x","colour":"red"}"#);
        assert_eq!((st, field.as_str()), (422, "colour"));
        assert!(msg.contains("unknown field `colour`"), "{msg}");
        let (st, field, _) = refused::<PersonFields>(r#""staff""#);
        assert_eq!((st, field.as_str()), (422, "body"));
        // A missing field inside another is named with its parent's path.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Vec<PersonFields>,
        }
        let (_, field, _) = refused::<Outer>(r#"{"inner":[{"kind":"staff","name":"a"},{"kind":"staff"}]}"#);
        assert_eq!(field, "inner[1].name");
    }

    #[test]
    fn only_what_is_not_json_is_400() {
        for body in ["", "{", r#"{"a":1} x"#, "{}{}", r#"{"a":1,}"#, "nul", "\"\\ud800\"", &"[".repeat(129), &"[".repeat(50_000)] {
            let (st, _, msg) = refused::<Value>(body);
            assert_eq!(st, 400, "{body:?}");
            assert!(msg.contains("not valid JSON"), "{msg}");
        }
        let nested = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(parse_json::<Value>(nested.as_bytes()).is_ok());
        assert!(parse_json::<Value>(b" {\"a\": 1} \n").is_ok(), "whitespace around the document is fine");
    }

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None).unwrap(), 100);
        assert_eq!(page_limit(Some(1)).unwrap(), 1);
        assert_eq!(page_limit(Some(1000)).unwrap(), 1000);
        for bad in [0, -1, 1001, i64::MIN, i64::MAX] {
            match page_limit(Some(bad)) {
                Err(Error::Unprocessable { field, .. }) => assert_eq!(field, "limit"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
