//! Small helpers over `plist::Value` shared by the protocol modules: reading a device's plist
//! body into a dictionary, typed key look-ups that name the key on failure, XML encoding, and a
//! JSON view of any plist value.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use plist::{Dictionary, Value};

use super::ProtocolError;

/// How deeply arrays and dictionaries may nest in anything a device sends. Apple's messages
/// nest a handful of levels; profiles are held to the same 64.
pub(crate) const MAX_NESTING: usize = 64;

/// The most a device's plist may expand to, in rough bytes: 32 per value plus the bytes of its
/// strings and data, and at most this multiple of the body's own size. An honest XML plist
/// cannot come near it; a binary plist whose objects refer to one object many times can.
const EXPANSION_FACTOR: usize = 16;
const VALUE_COST: usize = 32;

/// Parses an XML or binary plist body whose root must be a dictionary. (Devices send one of
/// the two; the ASCII/OpenStep format is not accepted.)
///
/// The value is built here from the plist crate's event stream, without recursion, so that a
/// hostile body is refused before it costs anything: nesting beyond [`MAX_NESTING`] and
/// expansion beyond [`EXPANSION_FACTOR`] times the body are errors. (The crate's own builder
/// would accept 50,000 levels, and dropping such a value recurses once per level, enough to
/// overflow a worker thread's stack and abort the process.)
pub(crate) fn parse_dict(body: &[u8]) -> Result<Dictionary, ProtocolError> {
    let budget = body.len().saturating_mul(EXPANSION_FACTOR).max(64 * 1024);
    let value = if body.starts_with(b"bplist") {
        build(plist::stream::BinaryReader::new(Cursor::new(body)), budget)
    } else {
        build(plist::stream::XmlReader::new(body), budget)
    }?;
    value.into_dictionary().ok_or(ProtocolError::NotADictionary)
}

/// A container being filled: an array, or a dictionary and the key waiting for its value.
enum Open {
    Array(Vec<Value>),
    Dict(Dictionary, Option<String>),
}

fn malformed(why: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(why.into())
}

/// Builds one value from plist events, within [`MAX_NESTING`] and `budget`; the events must
/// end with it.
fn build(events: impl Iterator<Item = Result<plist::stream::OwnedEvent, plist::Error>>, budget: usize) -> Result<Value, ProtocolError> {
    use plist::stream::Event;
    let mut open: Vec<Open> = Vec::new();
    let mut root = None;
    let mut spent = 0usize;
    for event in events {
        let event = event.map_err(|e| malformed(e.to_string()))?;
        // The document must end with its root value: a second root, a stray close tag or a
        // mismatched `</plist>` is an error, not something to ignore.
        if root.is_some() {
            return Err(malformed("data after the root value"));
        }
        spent += VALUE_COST
            + match &event {
                Event::String(s) => s.len(),
                Event::Data(d) => d.len(),
                _ => 0,
            };
        if spent > budget {
            return Err(malformed(format!("the property list expands to more than {budget} bytes")));
        }
        let value = match event {
            Event::StartArray(_) | Event::StartDictionary(_) if open.len() >= MAX_NESTING => {
                return Err(malformed(format!("arrays and dictionaries nested more than {MAX_NESTING} deep")));
            }
            Event::StartArray(_) => {
                open.push(Open::Array(Vec::new()));
                continue;
            }
            Event::StartDictionary(_) => {
                open.push(Open::Dict(Dictionary::new(), None));
                continue;
            }
            Event::EndCollection => match open.pop() {
                Some(Open::Array(items)) => Value::Array(items),
                Some(Open::Dict(dict, None)) => Value::Dictionary(dict),
                Some(Open::Dict(_, Some(key))) => return Err(malformed(format!("dictionary key `{key}` has no value"))),
                None => return Err(malformed("a collection ends that never started")),
            },
            Event::Boolean(b) => Value::Boolean(b),
            Event::Data(d) => Value::Data(d.into_owned()),
            Event::Date(d) => Value::Date(d),
            Event::Integer(i) => Value::Integer(i),
            Event::Real(r) => Value::Real(r),
            Event::String(s) => Value::String(s.into_owned()),
            Event::Uid(u) => Value::Uid(u),
            _ => return Err(malformed("a property list value of an unknown kind")),
        };
        match open.last_mut() {
            None => root = Some(value),
            Some(Open::Array(items)) => items.push(value),
            Some(Open::Dict(dict, pending)) => match pending.take() {
                Some(key) => {
                    dict.insert(key, value);
                }
                None => match value {
                    Value::String(key) => *pending = Some(key),
                    _ => return Err(malformed("a dictionary key is not a string")),
                },
            },
        }
    }
    root.ok_or_else(|| malformed(if open.is_empty() { "empty property list" } else { "the property list ends inside a collection" }))
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

    use crate::protocol::hostile::chained_bplist;

    fn nested_xml(open: &str, close: &str, levels: usize) -> Vec<u8> {
        let mut s = String::from("<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>k</key>");
        s.push_str(&open.repeat(levels));
        s.push_str(&close.repeat(levels));
        s.push_str("</dict></plist>");
        s.into_bytes()
    }

    fn refused_as_too_deep(r: Result<Dictionary, ProtocolError>) -> bool {
        matches!(r, Err(ProtocolError::Malformed(m)) if m.contains("nested more than 64 deep"))
    }

    #[test]
    fn hostile_nesting_is_refused_without_recursion() {
        // The shapes that aborted the server (issue 23, D2), on this test's small stack.
        assert!(refused_as_too_deep(parse_dict(&nested_xml("<array>", "</array>", 32_500))));
        assert!(refused_as_too_deep(parse_dict(&nested_xml("<dict><key>a</key>", "</dict>", 40_000))));
        assert!(refused_as_too_deep(parse_dict(&chained_bplist(50_000, 1))));
        // Unclosed, too: the error comes before the end.
        assert!(refused_as_too_deep(parse_dict(nested_xml("<array>", "", 100_000).as_slice())));
    }

    #[test]
    fn nesting_limit_is_exact() {
        // The root dictionary is one level: 63 arrays inside it make 64.
        assert!(parse_dict(&nested_xml("<array>", "</array>", 63)).is_ok());
        assert!(refused_as_too_deep(parse_dict(&nested_xml("<array>", "</array>", 64))));
    }

    #[test]
    fn shared_objects_cannot_expand_without_bound() {
        // 40 arrays each holding the next twice: a trillion values from a few hundred bytes.
        let body = chained_bplist(40, 2);
        assert!(body.len() < 1024);
        // The shape is a valid binary plist (checked on a small instance).
        assert!(parse_dict(&chained_bplist(4, 2)).is_err_and(|e| e == ProtocolError::NotADictionary));
        let err = build(plist::stream::BinaryReader::new(Cursor::new(&body)), 64 * 1024).unwrap_err();
        assert!(err.to_string().contains("expands to more than"), "{err}");
    }

    #[test]
    fn structure_errors_are_malformed() {
        let cases: [&[u8]; 4] = [
            b"<?xml version=\"1.0\"?><plist><dict><key>a</key></dict></plist>",
            b"<?xml version=\"1.0\"?><plist><dict><key>a</key><string>x</string>",
            b"<?xml version=\"1.0\"?><plist><dict><integer>1</integer><string>x</string></dict></plist>",
            b"<?xml version=\"1.0\"?><plist></plist>",
        ];
        for body in cases {
            assert!(matches!(parse_dict(body), Err(ProtocolError::Malformed(_))), "{}", String::from_utf8_lossy(body));
        }
    }

    /// Found by tests/parsers_proptest.rs (`plist_xml_mutations_agree_with_the_plist_crate`):
    /// the builder stopped at the end of the root value and never looked further, so a second
    /// root, a stray close tag or text that is no XML at all after `</dict>` was accepted and
    /// the body read as its first dictionary. The plist crate refuses all of these.
    #[test]
    fn data_after_the_root_is_refused() {
        let head = "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>a</key><string>x</string></dict>";
        assert!(parse_dict(format!("{head}</plist>").as_bytes()).is_ok());
        assert!(parse_dict(format!("{head}\n </plist>\n").as_bytes()).is_ok());
        for tail in ["<dict><key>b</key><string>y</string></dict></plist>", "<string>y</string></plist>", "</dict></plist>", "junk"] {
            let body = format!("{head}{tail}");
            assert!(matches!(parse_dict(body.as_bytes()), Err(ProtocolError::Malformed(_))), "accepted {body}");
            assert!(Value::from_reader_xml(body.as_bytes()).is_err(), "the plist crate accepts {body}");
        }
    }

    #[test]
    fn same_values_as_the_plist_crate() {
        let mut d = Dictionary::new();
        d.insert("s".into(), Value::String("x".into()));
        d.insert("a".into(), Value::Array(vec![Value::Integer(1.into()), Value::Dictionary(Dictionary::new())]));
        d.insert("d".into(), Value::Data(vec![0, 1, 2]));
        d.insert("r".into(), Value::Real(1.5));
        d.insert("t".into(), Value::Boolean(true));
        let value = Value::Dictionary(d.clone());
        assert_eq!(parse_dict(&to_xml(&value)).unwrap(), d);
        let mut binary = Vec::new();
        value.to_writer_binary(&mut binary).unwrap();
        assert_eq!(parse_dict(&binary).unwrap(), d);
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
