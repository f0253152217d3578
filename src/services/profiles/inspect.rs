//! Reading a profile someone hands us: XML, binary, or CMS-signed, checked for the structure a
//! device needs before Lanyard stores or sends it.
//!
//! Only the envelope is checked here (the keys every profile and payload must carry, unique
//! identifiers, a size limit), because a mistake there makes devices refuse the whole profile
//! or, worse, silently replace another profile. The keys of each payload type are Apple's to
//! define; `validate_plist.py` checks those against Apple's schema in tests.

use std::collections::HashMap;

use plist::Value;
use serde::Serialize;

use super::filtering::FilterPolicy;
use super::{
    ProfileError, check_size, kind, optional_str, parse_plist, payload_content, payload_label, required_str, to_xml, top_dictionary,
};

/// The largest profile accepted, signed or not. Baseline profiles are a few kilobytes; a
/// megabyte leaves room for certificates and long deny-lists while bounding memory per upload.
pub const MAX_PROFILE_BYTES: usize = 1024 * 1024;

/// What a profile is and holds, as read by [`inspect`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectedProfile {
    /// The top-level `PayloadIdentifier`: a device replaces an installed profile with the same
    /// identifier.
    pub identifier: String,
    /// The top-level `PayloadUUID`.
    pub uuid: String,
    /// `PayloadDisplayName`, if the profile has one.
    pub display_name: Option<String>,
    /// `PayloadDescription`, if the profile has one.
    pub description: Option<String>,
    /// The distinct payload types, in order of first appearance.
    pub payload_types: Vec<String>,
    /// One entry per payload, in order.
    pub payloads: Vec<PayloadSummary>,
    /// The profile as an XML plist (unwrapped if it was signed): the form Lanyard stores and
    /// signs again before sending. Not part of the JSON form.
    #[serde(skip)]
    pub xml: Vec<u8>,
    /// Whether the input was CMS-signed (and the signature verified; the signer's chain is not
    /// checked, as Lanyard signs again with its own identity).
    pub was_signed: bool,
    /// The web-filtering policy, if this is a filtering profile.
    pub filtering: Option<FilterPolicy>,
    /// Things worth fixing that do not stop the profile working, in plain words.
    pub warnings: Vec<String>,
}

/// One payload of an inspected profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadSummary {
    pub payload_type: String,
    pub identifier: String,
    pub uuid: String,
    pub display_name: Option<String>,
}

/// Reads and checks a profile: an XML or binary plist, or DER CMS signed data holding one.
///
/// A signed profile's signature is verified over its content (a broken signature is an
/// error, as the content may have been altered); its signer's chain is not, because profiles
/// arrive signed by whoever exported them.
pub fn inspect(bytes: &[u8]) -> Result<InspectedProfile, ProfileError> {
    check_size(bytes)?;
    // DER SignedData starts with a SEQUENCE tag; no XML or binary plist starts with `0`.
    let (plist, was_signed) = if bytes.first() == Some(&0x30) { (unwrap_signed(bytes)?, true) } else { (bytes.to_vec(), false) };
    let value = parse_plist(&plist)?;
    let mut inspected = check(&value)?;
    inspected.xml = to_xml(&value)?;
    inspected.was_signed = was_signed;
    Ok(inspected)
}

/// Verifies a CMS signature over its attached content and returns the content (the protocol
/// module's reader, which Lanyard also uses on what it signs itself).
fn unwrap_signed(der: &[u8]) -> Result<Vec<u8>, ProfileError> {
    use crate::protocol::cms::{CmsError, unwrap_signed_profile};
    match unwrap_signed_profile(der) {
        Ok((content, _signers)) => Ok(content),
        Err(CmsError::NotCms(why)) => Err(ProfileError::NotAProfile(format!("neither a property list nor DER CMS signed data ({why})"))),
        Err(CmsError::BadSignature(why)) => Err(ProfileError::BadSignature(why)),
        Err(CmsError::Openssl(e)) => Err(ProfileError::Openssl(e)),
    }
}

/// Checks the envelope and summarises the profile (everything but `xml` and `was_signed`).
fn check(value: &Value) -> Result<InspectedProfile, ProfileError> {
    const AT: &str = "profile";
    let top = top_dictionary(value)?;
    if top.contains_key("EncryptedPayloadContent") {
        return Err(ProfileError::InvalidKey {
            at: AT.into(),
            key: "EncryptedPayloadContent",
            problem: "is present: an encrypted profile cannot be inspected; export it \
                      unencrypted"
                .into(),
        });
    }
    let payload_type = required_str(top, "PayloadType", AT)?;
    if payload_type != "Configuration" {
        return Err(ProfileError::InvalidKey {
            at: AT.into(),
            key: "PayloadType",
            problem: format!("must be \"Configuration\", not {payload_type:?}"),
        });
    }
    check_version(top, AT, true)?;
    let identifier = required_str(top, "PayloadIdentifier", AT)?;
    let uuid = required_str(top, "PayloadUUID", AT)?;
    let display_name = optional_str(top, "PayloadDisplayName", AT)?;
    let description = optional_str(top, "PayloadDescription", AT)?;
    let items = payload_content(top, AT)?;

    let mut warnings = Vec::new();
    if display_name.is_none_or(|n| n.trim().is_empty()) {
        warnings.push(
            "the profile has no PayloadDisplayName: devices and Apple Configurator will show it \
             without a name"
                .to_owned(),
        );
    }
    if items.is_empty() {
        warnings.push("the profile has no payloads: installing it changes nothing".to_owned());
    }

    // Where each UUID (compared ignoring case) and identifier was first seen.
    let mut uuids = HashMap::from([(uuid.to_ascii_uppercase(), "the profile".to_owned())]);
    let mut identifiers = HashMap::from([(identifier.to_owned(), "the profile".to_owned())]);
    let mut payloads = Vec::with_capacity(items.len());
    let mut payload_types: Vec<String> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = payload_label(index, item.as_dictionary());
        let dict = item.as_dictionary().ok_or_else(|| ProfileError::InvalidKey {
            at: at.clone(),
            key: "PayloadContent",
            problem: format!("item is {}, not a dictionary", kind(item)),
        })?;
        let payload_type = required_str(dict, "PayloadType", &at)?;
        let uuid = required_str(dict, "PayloadUUID", &at)?;
        let identifier = required_str(dict, "PayloadIdentifier", &at)?;
        check_version(dict, &at, false)?;
        let display_name = optional_str(dict, "PayloadDisplayName", &at)?;
        note_unique(&mut uuids, uuid.to_ascii_uppercase(), uuid, "PayloadUUID", &at)?;
        note_unique(&mut identifiers, identifier.to_owned(), identifier, "PayloadIdentifier", &at)?;
        if !payload_types.iter().any(|t| t == payload_type) {
            payload_types.push(payload_type.to_owned());
        }
        payloads.push(PayloadSummary {
            payload_type: payload_type.to_owned(),
            identifier: identifier.to_owned(),
            uuid: uuid.to_owned(),
            display_name: display_name.map(str::to_owned),
        });
    }

    Ok(InspectedProfile {
        identifier: identifier.to_owned(),
        uuid: uuid.to_owned(),
        display_name: display_name.map(str::to_owned),
        description: description.map(str::to_owned),
        payload_types,
        payloads,
        xml: Vec::new(),
        was_signed: false,
        filtering: FilterPolicy::from_profile(value),
        warnings,
    })
}

/// `PayloadVersion` must be an integer; the profile's must be 1 (the only format version).
fn check_version(dict: &plist::Dictionary, at: &str, must_be_one: bool) -> Result<(), ProfileError> {
    let invalid = |problem: String| ProfileError::InvalidKey { at: at.to_owned(), key: "PayloadVersion", problem };
    match dict.get("PayloadVersion") {
        None => Err(ProfileError::MissingKey { at: at.to_owned(), key: "PayloadVersion" }),
        Some(Value::Integer(n)) if !must_be_one || n.as_signed() == Some(1) => Ok(()),
        Some(Value::Integer(n)) => Err(invalid(format!("must be 1, not {n}"))),
        Some(other) => Err(invalid(format!("must be an integer, not {}", kind(other)))),
    }
}

/// Records `norm` as seen at `at`, or fails naming where it was seen first.
fn note_unique(seen: &mut HashMap<String, String>, norm: String, value: &str, key: &'static str, at: &str) -> Result<(), ProfileError> {
    if let Some(other) = seen.get(&norm) {
        return Err(ProfileError::Duplicate { at: at.to_owned(), key, value: value.to_owned(), other: other.clone() });
    }
    seen.insert(norm, at.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
    use openssl::stack::Stack;

    use super::*;
    use crate::services::profiles::BASELINE;
    use crate::services::profiles::testutil::{self_signed, validate};

    fn baseline(stem: &str) -> &'static str {
        BASELINE.iter().find(|(s, _)| *s == stem).map(|(_, xml)| *xml).expect("baseline profile")
    }

    /// A minimal valid profile whose payloads are the given `(type, uuid, identifier)`.
    fn profile(payloads: &[(&str, &str, &str)]) -> plist::Dictionary {
        let items = payloads
            .iter()
            .map(|(t, u, i)| {
                let mut d = plist::Dictionary::new();
                d.insert("PayloadType".into(), (*t).into());
                d.insert("PayloadUUID".into(), (*u).into());
                d.insert("PayloadIdentifier".into(), (*i).into());
                d.insert("PayloadVersion".into(), 1.into());
                Value::Dictionary(d)
            })
            .collect();
        let mut top = plist::Dictionary::new();
        top.insert("PayloadType".into(), "Configuration".into());
        top.insert("PayloadVersion".into(), 1.into());
        top.insert("PayloadIdentifier".into(), "uk.sch.test".into());
        top.insert("PayloadUUID".into(), "TOP-UUID".into());
        top.insert("PayloadDisplayName".into(), "Test".into());
        top.insert("PayloadContent".into(), Value::Array(items));
        top
    }

    fn inspect_dict(d: plist::Dictionary) -> Result<InspectedProfile, ProfileError> {
        inspect(&to_xml(&Value::Dictionary(d)).expect("xml"))
    }

    #[test]
    fn reads_a_baseline_profile() {
        let p = inspect(baseline("ks1-web-allowlist").as_bytes()).expect("inspect");
        assert_eq!(p.identifier, "uk.sch.lanyard.baseline.ks1-web-allowlist");
        assert_eq!(p.payload_types, ["com.apple.webcontent-filter"]);
        assert_eq!(p.payloads.len(), 1);
        assert!(!p.was_signed);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.filtering.as_ref().map(|f| f.mode.as_str()), Some("allow_list"));
        // The normalised XML reads back the same.
        assert_eq!(inspect(&p.xml).expect("again").payloads, p.payloads);
    }

    #[test]
    fn reads_binary_plists() {
        let value = Value::from_reader_xml(baseline("mac-filevault").as_bytes()).expect("parse");
        let mut binary = Vec::new();
        value.to_writer_binary(&mut binary).expect("binary");
        let p = inspect(&binary).expect("inspect");
        assert_eq!(p.payloads.len(), 4);
        assert!(p.filtering.is_none());
        assert!(p.xml.starts_with(b"<?xml"));
    }

    #[test]
    fn verifies_and_unwraps_signed_profiles() {
        let (cert, key) = self_signed("Lanyard test signer");
        let xml = baseline("pupil-camera-off").as_bytes();
        let none = Stack::new().expect("stack");
        let der = Pkcs7::sign(&cert, &key, &none, xml, Pkcs7Flags::BINARY).and_then(|p7| p7.to_der()).expect("sign");
        let p = inspect(&der).expect("inspect signed");
        assert!(p.was_signed);
        assert_eq!(p.identifier, "uk.sch.lanyard.baseline.pupil-camera-off");
        let out = validate(&der, Some("iOS")).expect("validator accepts the signed profile");
        assert!(out.contains("signed"), "{out}");

        // Alter one byte of the signed content: the signature no longer verifies.
        let mut tampered = der.clone();
        let at = tampered.windows(b"Pupil camera off".len()).position(|w| w == b"Pupil camera off").expect("content is attached");
        tampered[at] = b'p';
        let e = inspect(&tampered).unwrap_err();
        assert!(matches!(e, ProfileError::BadSignature(_)), "{e}");

        let e = inspect(&[0x30, 0x03, 0x02, 0x01, 0x01]).unwrap_err();
        assert!(matches!(e, ProfileError::NotAProfile(_)), "{e}");
    }

    #[test]
    fn names_the_payload_and_key_that_are_missing() {
        let mut top =
            profile(&[("com.apple.applicationaccess", "U1", "uk.sch.test.a"), ("com.apple.webcontent-filter", "U2", "uk.sch.test.b")]);
        if let Some(Value::Array(items)) = top.get_mut("PayloadContent")
            && let Some(Value::Dictionary(d)) = items.get_mut(1)
        {
            d.remove("PayloadUUID");
            d.insert("PayloadDisplayName".into(), "Web filter".into());
        }
        let e = inspect_dict(top).unwrap_err();
        assert_eq!(e.to_string(), "payload 2 (com.apple.webcontent-filter \"Web filter\"): missing PayloadUUID");
    }

    #[test]
    fn refuses_duplicate_uuids_and_identifiers() {
        let e = inspect_dict(profile(&[
            ("com.apple.applicationaccess", "ab-1", "uk.sch.test.a"),
            ("com.apple.applicationaccess", "AB-1", "uk.sch.test.b"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload 2 (com.apple.applicationaccess): PayloadUUID \"AB-1\" is also used by \
             payload 1 (com.apple.applicationaccess)"
        );

        let e = inspect_dict(profile(&[
            ("com.apple.applicationaccess", "U1", "uk.sch.test.a"),
            ("com.apple.applicationaccess", "U2", "uk.sch.test.a"),
        ]))
        .unwrap_err();
        assert!(matches!(e, ProfileError::Duplicate { key: "PayloadIdentifier", .. }), "{e}");

        // The profile's own identifier and UUID count too.
        let e = inspect_dict(profile(&[("com.apple.applicationaccess", "top-uuid", "uk.sch.test.a")])).unwrap_err();
        assert!(e.to_string().contains("also used by the profile"), "{e}");
        let e = inspect_dict(profile(&[("com.apple.applicationaccess", "U1", "uk.sch.test")])).unwrap_err();
        assert!(matches!(e, ProfileError::Duplicate { key: "PayloadIdentifier", .. }), "{e}");
    }

    #[test]
    fn checks_the_outer_dictionary() {
        let ok = profile(&[("com.apple.applicationaccess", "U1", "uk.sch.test.a")]);
        inspect_dict(ok.clone()).expect("valid");

        let mut d = ok.clone();
        d.insert("PayloadType".into(), "com.apple.applicationaccess".into());
        let e = inspect_dict(d).unwrap_err();
        assert!(e.to_string().starts_with("profile: PayloadType must be"), "{e}");

        let mut d = ok.clone();
        d.insert("PayloadVersion".into(), 2.into());
        let e = inspect_dict(d).unwrap_err();
        assert_eq!(e.to_string(), "profile: PayloadVersion must be 1, not 2");

        let mut d = ok.clone();
        d.insert("PayloadVersion".into(), "1".into());
        let e = inspect_dict(d).unwrap_err();
        assert_eq!(e.to_string(), "profile: PayloadVersion must be an integer, not a string");

        for key in ["PayloadIdentifier", "PayloadUUID", "PayloadContent"] {
            let mut d = ok.clone();
            d.remove(key);
            let e = inspect_dict(d).unwrap_err();
            assert_eq!(e.to_string(), format!("profile: missing {key}"));
        }

        let mut d = ok.clone();
        d.insert("PayloadContent".into(), Value::Array(vec!["x".into()]));
        let e = inspect_dict(d).unwrap_err();
        assert_eq!(e.to_string(), "payload 1: PayloadContent item is a string, not a dictionary");

        let mut d = ok.clone();
        d.remove("PayloadDisplayName");
        let p = inspect_dict(d).expect("a missing name is only a warning");
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);

        let mut d = ok;
        d.insert("EncryptedPayloadContent".into(), Value::Data(vec![1, 2]));
        let e = inspect_dict(d).unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");

        let e = inspect(b"<plist version=\"1.0\"><array/></plist>").unwrap_err();
        assert!(e.to_string().contains("not a dictionary"), "{e}");
        let e = inspect(b"hello").unwrap_err();
        assert!(matches!(e, ProfileError::NotAProfile(_)), "{e}");
        let e = inspect(b"<plist><dict><key>a</key>").unwrap_err();
        assert!(matches!(e, ProfileError::NotAProfile(_)), "{e}");
    }

    #[test]
    fn refuses_oversized_input_even_when_signed() {
        let mut big = vec![0x30];
        big.resize(MAX_PROFILE_BYTES + 1, 0);
        assert!(matches!(inspect(&big), Err(ProfileError::TooLarge { .. })));
    }

    #[test]
    fn serialises_to_json_without_the_xml() {
        let p = inspect(baseline("ks2-web-filtered").as_bytes()).expect("inspect");
        let json = serde_json::to_value(&p).expect("json");
        assert!(json.get("xml").is_none());
        assert_eq!(json["filtering"]["mode"], "auto_filter");
        assert_eq!(json["payloads"][0]["payload_type"], "com.apple.webcontent-filter");
    }
}
