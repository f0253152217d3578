//! Configuration profiles: the school baseline, import and inspection, building from JSON, and
//! FileVault key escrow.
//!
//! - [`inspect`] reads a profile a technician uploads (XML, binary, or CMS-signed), checks the
//!   structure devices rely on, and says what it holds, including its web-filtering policy.
//! - [`filtering`] extracts that policy and diffs two versions of it, so that every change to a
//!   filter can be logged in words a governor can read (policy 7.3.1).
//! - [`from_json`] builds a profile for the payload types the baseline uses.
//! - [`BASELINE`] embeds the school baseline from `profiles/`; [`load_baseline`] reads the
//!   directory a technician may have edited.
//! - [`fill_escrow_certificate`] puts Lanyard's escrow certificate into a FileVault profile as
//!   it is sent, so recovery keys are encrypted to a key only Lanyard holds.
//!
//! Errors name the payload and the key, as a technician needs to find the mistake in the file.

mod baseline;
mod build;
mod escrow;
pub mod filtering;
mod inspect;
#[cfg(test)]
mod testutil;

use std::io::Cursor;
use std::path::PathBuf;

use plist::Value;

pub use baseline::{BASELINE, load_baseline};
pub use build::{SUPPORTED_PAYLOAD_TYPES, from_json};
pub use escrow::{ESCROW_PLACEHOLDER_DER, fill_escrow_certificate};
pub use filtering::{FilterDiff, FilterPolicy, diff};
pub use inspect::{InspectedProfile, MAX_PROFILE_BYTES, PayloadSummary, inspect};

/// Deepest nesting of arrays and dictionaries accepted in a profile. Real profiles stay under a
/// dozen levels; the limit keeps a hostile file from exhausting the stack when it is dropped.
const MAX_NESTING: usize = 64;

/// Why a profile was refused, or could not be built or changed.
///
/// `at` fields name where the problem is: `profile` for the outer dictionary, or a payload as
/// `payload 2 (com.apple.webcontent-filter "Web filter")` (counting from 1, as people do).
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The input is over [`MAX_PROFILE_BYTES`].
    #[error("profile is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Not an XML or binary property list, nor CMS signed data holding one.
    #[error("not a configuration profile: {0}")]
    NotAProfile(String),
    /// A signed profile whose signature does not match its content.
    #[error("the profile's signature does not verify: {0}")]
    BadSignature(String),
    /// A required key is absent.
    #[error("{at}: missing {key}")]
    MissingKey { at: String, key: &'static str },
    /// A key is present but has the wrong type or value.
    #[error("{at}: {key} {problem}")]
    InvalidKey {
        at: String,
        key: &'static str,
        problem: String,
    },
    /// A `PayloadUUID` or `PayloadIdentifier` used twice in one profile.
    #[error("{at}: {key} {value:?} is also used by {other}")]
    Duplicate {
        at: String,
        key: &'static str,
        value: String,
        other: String,
    },
    /// A payload type outside what the caller supports.
    #[error("{at}: payload type {payload_type:?} is not supported (supported: {supported})")]
    UnsupportedPayloadType {
        at: String,
        payload_type: String,
        supported: String,
    },
    /// A JSON profile specification that cannot be turned into a profile.
    #[error("profile specification: {0}")]
    Spec(String),
    /// The escrow certificate given is not a DER X.509 certificate.
    #[error("escrow certificate is not a DER X.509 certificate: {0}")]
    BadCertificate(String),
    /// A baseline file that failed to load; `error` says why.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ProfileError>,
    },
    /// A file or directory that could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Writing a plist failed (not expected for values this module builds).
    #[error("cannot write the profile as XML: {0}")]
    Write(String),
    /// openssl failed for a reason unrelated to the input.
    #[error("openssl error: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

/// Parses an XML or binary property list, within the size and nesting limits.
///
/// ASCII (OpenStep) plists are refused: devices do not accept them as profiles.
fn parse_plist(bytes: &[u8]) -> Result<Value, ProfileError> {
    check_size(bytes)?;
    if bytes.starts_with(b"bplist") {
        check_nesting(plist::stream::BinaryReader::new(Cursor::new(bytes)))?;
        Value::from_reader(Cursor::new(bytes))
    } else if looks_like_xml(bytes) {
        check_nesting(plist::stream::XmlReader::new(bytes))?;
        Value::from_reader_xml(bytes)
    } else {
        return Err(ProfileError::NotAProfile(
            "neither an XML nor a binary property list".into(),
        ));
    }
    .map_err(|e| ProfileError::NotAProfile(format!("unreadable property list: {e}")))
}

fn check_size(bytes: &[u8]) -> Result<(), ProfileError> {
    if bytes.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge {
            size: bytes.len(),
            limit: MAX_PROFILE_BYTES,
        });
    }
    Ok(())
}

/// XML starts with `<`, perhaps after a byte-order mark and white space.
fn looks_like_xml(bytes: &[u8]) -> bool {
    let rest = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// Walks the event stream once without building values, refusing deep nesting before
/// [`Value`] (whose drop is recursive) is built.
fn check_nesting<I>(events: I) -> Result<(), ProfileError>
where
    I: Iterator<Item = Result<plist::stream::OwnedEvent, plist::Error>>,
{
    use plist::stream::Event;
    let mut depth = 0usize;
    for event in events {
        match event {
            Ok(Event::StartArray(_) | Event::StartDictionary(_)) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ProfileError::NotAProfile(format!(
                        "arrays and dictionaries nested more than {MAX_NESTING} deep"
                    )));
                }
            }
            Ok(Event::EndCollection) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            // The real parse reports the error with its context.
            Err(_) => break,
        }
    }
    Ok(())
}

/// Serialises a plist value as XML, the form devices and Apple Configurator read.
fn to_xml(value: &Value) -> Result<Vec<u8>, ProfileError> {
    let mut out = Vec::new();
    value
        .to_writer_xml(&mut out)
        .map_err(|e| ProfileError::Write(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// How the validator and Apple's schema name a plist type, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "an array",
        Value::Dictionary(_) => "a dictionary",
        Value::Boolean(_) => "a boolean",
        Value::Data(_) => "data",
        Value::Date(_) => "a date",
        Value::Real(_) => "a real",
        Value::Integer(_) => "an integer",
        Value::String(_) => "a string",
        Value::Uid(_) => "a UID",
        _ => "an unknown type",
    }
}

/// `payload 2 (com.apple.webcontent-filter "Web filter")`: how errors name the payload at
/// `index` (counting from 0 in `PayloadContent`, shown counting from 1).
fn payload_label(index: usize, payload: &Value) -> String {
    let dict = payload.as_dictionary();
    let field = |key| {
        dict.and_then(|d| d.get(key))
            .and_then(Value::as_string)
            .filter(|s| !s.is_empty())
    };
    let number = index + 1;
    match (field("PayloadType"), field("PayloadDisplayName")) {
        (Some(t), Some(name)) => format!("payload {number} ({t} {name:?})"),
        (Some(t), None) => format!("payload {number} ({t})"),
        (None, Some(name)) => format!("payload {number} ({name:?})"),
        (None, None) => format!("payload {number}"),
    }
}

/// A required, non-empty string key of a dictionary.
fn required_str<'a>(
    dict: &'a plist::Dictionary,
    key: &'static str,
    at: &str,
) -> Result<&'a str, ProfileError> {
    match dict.get(key) {
        None => Err(ProfileError::MissingKey {
            at: at.to_owned(),
            key,
        }),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ProfileError::InvalidKey {
            at: at.to_owned(),
            key,
            problem: "is empty".into(),
        }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ProfileError::InvalidKey {
            at: at.to_owned(),
            key,
            problem: format!("must be a string, not {}", kind(other)),
        }),
    }
}

/// An optional string key: absent is fine, any other type is an error.
fn optional_str<'a>(
    dict: &'a plist::Dictionary,
    key: &'static str,
    at: &str,
) -> Result<Option<&'a str>, ProfileError> {
    match dict.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ProfileError::InvalidKey {
            at: at.to_owned(),
            key,
            problem: format!("must be a string, not {}", kind(other)),
        }),
    }
}

/// The `PayloadContent` array of a profile's outer dictionary.
fn payload_content<'a>(
    top: &'a plist::Dictionary,
    at: &str,
) -> Result<&'a Vec<Value>, ProfileError> {
    match top.get("PayloadContent") {
        None => Err(ProfileError::MissingKey {
            at: at.to_owned(),
            key: "PayloadContent",
        }),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ProfileError::InvalidKey {
            at: at.to_owned(),
            key: "PayloadContent",
            problem: format!("must be an array, not {}", kind(other)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_type_and_display_name() {
        let mut d = plist::Dictionary::new();
        assert_eq!(payload_label(0, &Value::Dictionary(d.clone())), "payload 1");
        d.insert("PayloadType".into(), "com.apple.webcontent-filter".into());
        assert_eq!(
            payload_label(1, &Value::Dictionary(d.clone())),
            "payload 2 (com.apple.webcontent-filter)"
        );
        d.insert("PayloadDisplayName".into(), "Web filter".into());
        assert_eq!(
            payload_label(1, &Value::Dictionary(d)),
            "payload 2 (com.apple.webcontent-filter \"Web filter\")"
        );
        assert_eq!(payload_label(4, &Value::from("x")), "payload 5");
    }

    #[test]
    fn refuses_ascii_plists_and_deep_nesting() {
        let e = parse_plist(b"{ a = b; }").unwrap_err();
        assert!(matches!(e, ProfileError::NotAProfile(_)), "{e}");

        let depth = MAX_NESTING + 1;
        let xml = format!(
            "<plist version=\"1.0\">{}{}</plist>",
            "<array>".repeat(depth),
            "</array>".repeat(depth)
        );
        let e = parse_plist(xml.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");

        let ok = format!(
            "<plist version=\"1.0\">{}{}</plist>",
            "<array>".repeat(MAX_NESTING),
            "</array>".repeat(MAX_NESTING)
        );
        parse_plist(ok.as_bytes()).expect("nesting at the limit is fine");
    }

    #[test]
    fn size_limit_applies_before_parsing() {
        let big = vec![b' '; MAX_PROFILE_BYTES + 1];
        let e = parse_plist(&big).unwrap_err();
        assert!(
            matches!(e, ProfileError::TooLarge { size, .. } if size == MAX_PROFILE_BYTES + 1),
            "{e}"
        );
    }
}
