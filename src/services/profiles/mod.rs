//! Configuration profiles for schools: the baseline library, groups and assignment, reconcile,
//! filtering change control, lesson-time restrictions, FileVault escrow and compliance.
//!
//! The pure part (no database, no network):
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
//!
//! The [`Profiles`] service, one file per concern:
//!
//! - [`library`]: upload or build, versions, deletion, the baseline at first start, signing for
//!   devices.
//! - [`groups`]: static and smart groups, membership (written to the register's history),
//!   assigning profiles.
//! - [`reconcile`]: intended vs installed, the InstallProfile/RemoveProfile commands, the hook
//!   for device reports, and the per-device and per-profile views.
//! - [`changes`]: filtering change control (proposed, approved by a second person, deployed).
//! - [`timetable`]: the timetable, lesson-time schedules, their tick and drift.
//! - [`filevault`]: escrowed recovery keys, revealed with a justification.
//! - [`compliance`]: the per-device compliance report.
//! - [`sweep`]: the periodic work (smart groups, daily SecurityInfo/ProfileList).

mod baseline;
mod bplist;
mod build;
pub mod changes;
pub mod compliance;
mod escrow;
pub mod filevault;
pub mod filtering;
pub mod groups;
mod inspect;
pub mod library;
pub mod reconcile;
pub mod sweep;
#[cfg(test)]
mod testutil;
pub mod timetable;

use std::io::Cursor;
use std::path::PathBuf;

use plist::Value;

use crate::clock::Clock;
use crate::store::DynStore;
pub use baseline::{BASELINE, load_baseline};
pub use build::{from_json, supported_payload_types};
pub use escrow::{ESCROW_PLACEHOLDER_DER, fill_escrow_certificate};
pub use filtering::{FilterDiff, FilterPolicy, diff};
pub use inspect::{InspectedProfile, MAX_PROFILE_BYTES, PayloadSummary, inspect};
use std::sync::Arc;

/// Configuration profiles, groups, web filtering, timetables, FileVault escrow.
#[derive(Clone)]
pub struct Profiles {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) pki: Arc<crate::pki::Pki>,
    pub(crate) audit: crate::services::audit::Audit,
    pub(crate) hold: crate::services::hold::Hold,
    pub(crate) supervision: crate::services::supervision::Supervision,
    pub(crate) commands: crate::services::commands::Commands,
    pub(crate) push: crate::services::push::Push,
    /// Declarative Device Management: a membership change changes the devices' declaration sets.
    pub(crate) ddm: std::sync::Arc<dyn SetChanges>,
}

/// Told when devices' groups (or legal hold) changed, so that what else follows groups can
/// follow: Declarative Device Management's sets (implemented by `services::ddm::Ddm`, which
/// depends on this module and not the other way round).
#[async_trait::async_trait]
pub trait SetChanges: Send + Sync {
    async fn devices_changed(&self, udids: &[String]) -> crate::error::Result<()>;
}

/// Deepest nesting of arrays and dictionaries accepted in a profile. Real profiles stay under a
/// dozen levels; the limit keeps a hostile file from exhausting the stack when it is dropped.
const MAX_NESTING: usize = 64;

/// Stack for [`parse_plist`]'s thread. Dropping the deepest XML value that fits in
/// [`MAX_PROFILE_BYTES`] (about 140,000 levels) took under 16 MiB in a debug build; this is
/// four times that. It is address space reserved, not memory touched, for normal profiles.
const PARSE_STACK_BYTES: usize = 64 * 1024 * 1024;

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
    InvalidKey { at: String, key: &'static str, problem: String },
    /// A `PayloadUUID` or `PayloadIdentifier` used twice in one profile.
    #[error("{at}: {key} {value:?} is also used by {other}")]
    Duplicate { at: String, key: &'static str, value: String, other: String },
    /// A payload type outside what the caller supports.
    #[error("{at}: payload type {payload_type:?} is not supported (supported: {supported})")]
    UnsupportedPayloadType { at: String, payload_type: String, supported: String },
    /// A JSON profile specification that cannot be turned into a profile.
    #[error("profile specification: {0}")]
    Spec(String),
    /// The escrow certificate given is not a DER X.509 certificate.
    #[error("escrow certificate is not a DER X.509 certificate: {0}")]
    BadCertificate(String),
    /// A baseline file that failed to load; `error` says why.
    #[error("{}: {error}", path.display())]
    InFile { path: PathBuf, error: Box<ProfileError> },
    /// A file or directory that could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// Something that should not happen with any input: writing XML failed, or the parser
    /// thread could not start.
    #[error("internal error: {0}")]
    Internal(String),
    /// openssl failed for a reason unrelated to the input.
    #[error("openssl error: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

/// Parses an XML or binary property list, within the size and nesting limits.
///
/// ASCII (OpenStep) plists are refused: devices do not accept them as profiles.
///
/// Two hostile shapes fit in the size limit. A binary plist can share objects so that it
/// expands a millionfold; [`bplist::check`] refuses that before expansion. And a megabyte of
/// `<array>` is over 100,000 levels: the plist crate builds values without recursion, but
/// dropping one recurses per level, enough to overflow a normal thread's stack. So parsing
/// runs on a short-lived thread with a large stack, which also drops anything too deep (or
/// half-built, on a parse error) before control returns; a panic there becomes an error.
fn parse_plist(bytes: &[u8]) -> Result<Value, ProfileError> {
    check_size(bytes)?;
    let binary = bytes.starts_with(b"bplist");
    if !binary && !looks_like_xml(bytes) {
        return Err(ProfileError::NotAProfile("neither an XML nor a binary property list".into()));
    }
    if binary {
        bplist::check(bytes, MAX_NESTING)?;
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("plist-parse".into())
            .stack_size(PARSE_STACK_BYTES)
            .spawn_scoped(scope, || parse_bounded(bytes, binary))
            .map_err(|e| ProfileError::Internal(format!("cannot start the plist parser: {e}")))?
            .join()
            .map_err(|_| ProfileError::Internal("the plist parser panicked".into()))?
    })
}

fn parse_bounded(bytes: &[u8], binary: bool) -> Result<Value, ProfileError> {
    let value = if binary { Value::from_reader(Cursor::new(bytes)) } else { Value::from_reader_xml(bytes) }
        .map_err(|e| ProfileError::NotAProfile(format!("unreadable property list: {e}")))?;
    if nesting(&value) > MAX_NESTING {
        return Err(ProfileError::NotAProfile(format!("arrays and dictionaries nested more than {MAX_NESTING} deep")));
    }
    Ok(value)
}

/// How deeply arrays and dictionaries nest in `value`, computed without recursion.
fn nesting(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|c| (c, depth + 1))),
            Value::Dictionary(dict) => stack.extend(dict.values().map(|c| (c, depth + 1))),
            _ => continue,
        }
        deepest = deepest.max(depth + 1);
    }
    deepest
}

fn check_size(bytes: &[u8]) -> Result<(), ProfileError> {
    if bytes.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge { size: bytes.len(), limit: MAX_PROFILE_BYTES });
    }
    Ok(())
}

/// XML starts with `<`, perhaps after a byte-order mark and white space.
fn looks_like_xml(bytes: &[u8]) -> bool {
    let rest = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// Serialises a plist value as XML, the form devices and Apple Configurator read.
fn to_xml(value: &Value) -> Result<Vec<u8>, ProfileError> {
    let mut out = Vec::new();
    value.to_writer_xml(&mut out).map_err(|e| ProfileError::Internal(format!("cannot write XML: {e}")))?;
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
fn payload_label(index: usize, payload: Option<&plist::Dictionary>) -> String {
    let field = |key| payload.and_then(|d| d.get(key)).and_then(Value::as_string).filter(|s| !s.is_empty());
    let number = index + 1;
    match (field("PayloadType"), field("PayloadDisplayName")) {
        (Some(t), Some(name)) => format!("payload {number} ({t} {name:?})"),
        (Some(t), None) => format!("payload {number} ({t})"),
        (None, Some(name)) => format!("payload {number} ({name:?})"),
        (None, None) => format!("payload {number}"),
    }
}

/// A required, non-empty string key of a dictionary.
fn required_str<'a>(dict: &'a plist::Dictionary, key: &'static str, at: &str) -> Result<&'a str, ProfileError> {
    match dict.get(key) {
        None => Err(ProfileError::MissingKey { at: at.to_owned(), key }),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ProfileError::InvalidKey { at: at.to_owned(), key, problem: "is empty".into() })
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ProfileError::InvalidKey { at: at.to_owned(), key, problem: format!("must be a string, not {}", kind(other)) }),
    }
}

/// An optional string key: absent is fine, any other type is an error.
fn optional_str<'a>(dict: &'a plist::Dictionary, key: &'static str, at: &str) -> Result<Option<&'a str>, ProfileError> {
    match dict.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ProfileError::InvalidKey { at: at.to_owned(), key, problem: format!("must be a string, not {}", kind(other)) }),
    }
}

/// A profile's outer dictionary.
fn top_dictionary(profile: &Value) -> Result<&plist::Dictionary, ProfileError> {
    profile.as_dictionary().ok_or_else(|| ProfileError::NotAProfile(format!("the property list is {}, not a dictionary", kind(profile))))
}

/// The `PayloadContent` array of a profile's outer dictionary.
fn payload_content<'a>(top: &'a plist::Dictionary, at: &str) -> Result<&'a Vec<Value>, ProfileError> {
    match top.get("PayloadContent") {
        None => Err(ProfileError::MissingKey { at: at.to_owned(), key: "PayloadContent" }),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ProfileError::InvalidKey {
            at: at.to_owned(),
            key: "PayloadContent",
            problem: format!("must be an array, not {}", kind(other)),
        }),
    }
}

/// What the faces read about profiles, through this service rather than from the store.
impl Profiles {
    pub async fn group_members(&self, group_id: uuid::Uuid) -> crate::error::Result<Vec<String>> {
        Ok(self.store.group_members(group_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_type_and_display_name() {
        let mut d = plist::Dictionary::new();
        assert_eq!(payload_label(0, Some(&d)), "payload 1");
        d.insert("PayloadType".into(), "com.apple.webcontent-filter".into());
        assert_eq!(payload_label(1, Some(&d)), "payload 2 (com.apple.webcontent-filter)");
        d.insert("PayloadDisplayName".into(), "Web filter".into());
        assert_eq!(payload_label(1, Some(&d)), "payload 2 (com.apple.webcontent-filter \"Web filter\")");
        assert_eq!(payload_label(4, None), "payload 5");
    }

    #[test]
    fn refuses_ascii_plists_and_deep_nesting() {
        let e = parse_plist(b"{ a = b; }").unwrap_err();
        assert!(matches!(e, ProfileError::NotAProfile(_)), "{e}");

        let depth = MAX_NESTING + 1;
        let xml = format!("<plist version=\"1.0\">{}{}</plist>", "<array>".repeat(depth), "</array>".repeat(depth));
        let e = parse_plist(xml.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");

        let ok = format!("<plist version=\"1.0\">{}{}</plist>", "<array>".repeat(MAX_NESTING), "</array>".repeat(MAX_NESTING));
        parse_plist(ok.as_bytes()).expect("nesting at the limit is fine");

        // As deep as fits in the size limit: refused, without overflowing the stack. Closed
        // and unclosed, so the parser's error path drops a deep half-built value too.
        let levels = (MAX_PROFILE_BYTES - 100) / 15;
        let closed = format!("<plist version=\"1.0\">{}{}</plist>", "<array>".repeat(levels), "</array>".repeat(levels));
        let e = parse_plist(closed.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
        let unclosed = format!("<plist version=\"1.0\">{}", "<array>".repeat(levels * 2));
        let e = parse_plist(unclosed.as_bytes()).unwrap_err();
        assert!(matches!(e, ProfileError::NotAProfile(_)), "{e}");
    }

    #[test]
    fn size_limit_applies_before_parsing() {
        let big = vec![b' '; MAX_PROFILE_BYTES + 1];
        let e = parse_plist(&big).unwrap_err();
        assert!(matches!(e, ProfileError::TooLarge { size, .. } if size == MAX_PROFILE_BYTES + 1), "{e}");
    }
}
