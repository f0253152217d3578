//! Small helpers over `plist::Value` shared by the protocol modules: reading a device's plist
//! body into a dictionary, typed key look-ups that name the key on failure, XML encoding, and a
//! JSON view of any plist value.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use plist::{Dictionary, Value};

use super::ProtocolError;

/// Parses an XML or binary plist body whose root must be a dictionary. (Devices send one of
/// the two; the ASCII/OpenStep format is not accepted.)
pub(crate) fn parse_dict(body: &[u8]) -> Result<Dictionary, ProtocolError> {
    let parsed = if body.starts_with(b"bplist") { Value::from_reader(Cursor::new(body)) } else { Value::from_reader_xml(body) };
    let value = parsed.map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    value.into_dictionary().ok_or(ProtocolError::NotADictionary)
}

/// Encodes a value as an XML plist document (with the XML declaration and DOCTYPE).
pub(crate) fn to_xml(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for I/O reasons, and the XML writer only rejects `Uid`
    // values, which exist in keyed archives and are never built by this module.
    value.to_writer_xml(&mut out).expect("encoding a plist without Uid values into memory cannot fail");
    out
}

/// Typed, error-naming look-ups in a dictionary received from a device.
pub(crate) trait DictExt {
    fn opt_string(&self, key: &str) -> Result<Option<String>, ProtocolError>;
    fn req_string(&self, key: &str) -> Result<String, ProtocolError>;
    fn opt_bool(&self, key: &str) -> Result<Option<bool>, ProtocolError>;
    fn opt_data(&self, key: &str) -> Result<Option<Vec<u8>>, ProtocolError>;
    fn req_data(&self, key: &str) -> Result<Vec<u8>, ProtocolError>;
    fn opt_dict(&self, key: &str) -> Result<Option<Dictionary>, ProtocolError>;

    /// Lenient look-ups for response bodies: a value of an unexpected type reads as absent.
    fn loose_string(&self, key: &str) -> Option<String>;
    fn loose_bool(&self, key: &str) -> Option<bool>;
    fn loose_int(&self, key: &str) -> Option<i64>;
    fn loose_real(&self, key: &str) -> Option<f64>;
    fn loose_dict(&self, key: &str) -> Option<&Dictionary>;
}

fn wrong(key: &str, expected: &'static str) -> ProtocolError {
    ProtocolError::WrongType { key: key.to_owned(), expected }
}

impl DictExt for Dictionary {
    fn opt_string(&self, key: &str) -> Result<Option<String>, ProtocolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(key, "a string")),
        }
    }

    fn req_string(&self, key: &str) -> Result<String, ProtocolError> {
        self.opt_string(key)?.ok_or_else(|| ProtocolError::MissingKey(key.to_owned()))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, ProtocolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong(key, "a boolean")),
        }
    }

    fn opt_data(&self, key: &str) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Data(d)) => Ok(Some(d.clone())),
            Some(_) => Err(wrong(key, "data")),
        }
    }

    fn req_data(&self, key: &str) -> Result<Vec<u8>, ProtocolError> {
        self.opt_data(key)?.ok_or_else(|| ProtocolError::MissingKey(key.to_owned()))
    }

    fn opt_dict(&self, key: &str) -> Result<Option<Dictionary>, ProtocolError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Dictionary(d)) => Ok(Some(d.clone())),
            Some(_) => Err(wrong(key, "a dictionary")),
        }
    }

    fn loose_string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_string).map(str::to_owned)
    }

    fn loose_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_boolean)
    }

    fn loose_int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Integer(i) => i.as_signed(),
            Value::Real(r) if r.fract() == 0.0 && r.is_finite() => Some(*r as i64),
            _ => None,
        }
    }

    fn loose_real(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Real(r) => Some(*r),
            Value::Integer(i) => i.as_signed().map(|i| i as f64),
            _ => None,
        }
    }

    fn loose_dict(&self, key: &str) -> Option<&Dictionary> {
        self.get(key).and_then(Value::as_dictionary)
    }
}

/// A JSON view of a plist value: data as standard base64, dates as RFC 3339 (UTC, seconds),
/// reals that JSON cannot hold (NaN, infinities) as `null`, keyed-archive UIDs as numbers.
pub(crate) fn plist_to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Array(items) => J::Array(items.iter().map(plist_to_json).collect()),
        Value::Dictionary(dict) => dict_to_json(dict),
        Value::Boolean(b) => J::Bool(*b),
        Value::Data(bytes) => J::String(BASE64.encode(bytes)),
        Value::Date(date) => {
            let time: chrono::DateTime<chrono::Utc> = std::time::SystemTime::from(*date).into();
            J::String(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        Value::Real(r) => serde_json::Number::from_f64(*r).map_or(J::Null, J::Number),
        Value::Integer(i) => match (i.as_signed(), i.as_unsigned()) {
            (Some(s), _) => J::from(s),
            (None, Some(u)) => J::from(u),
            (None, None) => J::Null,
        },
        Value::String(s) => J::String(s.clone()),
        Value::Uid(uid) => J::from(uid.get()),
        // `plist::Value` is non-exhaustive; a future variant has no agreed JSON form.
        _ => J::Null,
    }
}

/// [`plist_to_json`] for a dictionary, keeping its key order.
pub(crate) fn dict_to_json(dict: &Dictionary) -> serde_json::Value {
    serde_json::Value::Object(dict.iter().map(|(k, v)| (k.clone(), plist_to_json(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_view_covers_every_type() {
        let mut d = Dictionary::new();
        d.insert("s".into(), Value::String("x".into()));
        d.insert("b".into(), Value::Boolean(true));
        d.insert("d".into(), Value::Data(b"hi".to_vec()));
        d.insert("i".into(), Value::Integer((-3i64).into()));
        d.insert("r".into(), Value::Real(0.5));
        d.insert("nan".into(), Value::Real(f64::NAN));
        d.insert("t".into(), Value::Date(plist::Date::from_xml_format("2024-05-06T07:08:09Z").expect("date")));
        d.insert("a".into(), Value::Array(vec![Value::Boolean(false)]));
        let j = dict_to_json(&d);
        assert_eq!(j["s"], "x");
        assert_eq!(j["b"], true);
        assert_eq!(j["d"], "aGk=");
        assert_eq!(j["i"], -3);
        assert_eq!(j["r"], 0.5);
        assert!(j["nan"].is_null());
        assert_eq!(j["t"], "2024-05-06T07:08:09Z");
        assert_eq!(j["a"][0], false);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(parse_dict(b"\x00\x01garbage"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(parse_dict(b""), Err(ProtocolError::Malformed(_))));
        let array = to_xml(&Value::Array(vec![]));
        assert_eq!(parse_dict(&array), Err(ProtocolError::NotADictionary));
    }

    #[test]
    fn lenient_lookups() {
        let mut d = Dictionary::new();
        d.insert("n".into(), Value::Integer(7i64.into()));
        d.insert("r".into(), Value::Real(2.0));
        assert_eq!(d.loose_real("n"), Some(7.0));
        assert_eq!(d.loose_int("r"), Some(2));
        assert_eq!(d.loose_string("n"), None);
        assert_eq!(d.req_string("n"), Err(ProtocolError::WrongType { key: "n".into(), expected: "a string" }));
        assert_eq!(d.req_data("absent"), Err(ProtocolError::MissingKey("absent".into())));
    }
}
