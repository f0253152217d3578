//! Building a profile from a JSON specification, for the payload types the baseline uses.
//!
//! A specification names the profile and lists payloads by Apple's own keys, leaving out the
//! bookkeeping a person gets wrong by hand (UUIDs, identifiers, versions):
//!
//! ```json
//! {"name": "year3-web", "display_name": "Year 3 web filter", "description": "...",
//!  "payloads": [{"type": "com.apple.webcontent-filter", "FilterType": "BuiltIn",
//!                "AutoFilterEnabled": true, "DenyListURLs": ["tiktok.com"]}]}
//! ```
//!
//! Only payload types Lanyard's policies use are accepted, so an operator's JSON cannot turn
//! into an arbitrary profile (VPNs, certificates for interception, ...) pushed to every iPad.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use plist::{Dictionary, Value};

use super::escrow::{ESCROW_PLACEHOLDER_DER, escrow_targets};
use super::{ProfileError, inspect, payload_label, to_xml};

/// What Lanyard knows about each payload type it builds.
struct Kind {
    payload_type: &'static str,
    /// Appended to the profile's identifier to make the payload's.
    suffix: &'static str,
    /// `PayloadDisplayName` when the specification gives none.
    display_name: &'static str,
    /// Keys the type cannot work without (checked after escrow linking).
    required: &'static [&'static str],
    /// Keys holding bytes, given in JSON as base64 strings.
    data: &'static [&'static str],
    /// When set, the only keys allowed besides the common `Payload*` ones.
    only: Option<&'static [&'static str]>,
}

const ESCROW: &str = "com.apple.security.FDERecoveryKeyEscrow";
const CERTIFICATE: &str = "com.apple.security.pkcs1";

/// A DER certificate, as FileVault escrow needs (see [`link_escrow`]).
const CERTIFICATE_KIND: Kind = Kind {
    payload_type: CERTIFICATE,
    suffix: "certificate",
    display_name: "Certificate",
    required: &["PayloadContent"],
    data: &["PayloadContent"],
    only: None,
};

const KINDS: &[Kind] = &[
    Kind {
        payload_type: "com.apple.webcontent-filter",
        suffix: "webcontent-filter",
        display_name: "Web content filter",
        required: &[],
        data: &[],
        only: None,
    },
    Kind {
        payload_type: "com.apple.applicationaccess",
        suffix: "applicationaccess",
        display_name: "Restrictions",
        required: &[],
        data: &[],
        only: None,
    },
    Kind {
        payload_type: "com.apple.mobiledevice.passwordpolicy",
        suffix: "passwordpolicy",
        display_name: "Passcode policy",
        required: &[],
        data: &[],
        only: None,
    },
    Kind {
        payload_type: "com.apple.MCX.FileVault2",
        suffix: "filevault",
        display_name: "FileVault",
        required: &["Enable"],
        data: &["Certificate"],
        only: None,
    },
    // com.apple.MCX covers many macOS settings; only its FileVault keys are wanted here.
    Kind {
        payload_type: "com.apple.MCX",
        suffix: "filevault-options",
        display_name: "FileVault options",
        required: &[],
        data: &[],
        only: Some(&["dontAllowFDEDisable", "dontAllowFDEEnable", "DestroyFVKeyOnStandby"]),
    },
    Kind {
        payload_type: ESCROW,
        suffix: "escrow",
        display_name: "FileVault recovery key escrow",
        required: &["Location", "EncryptCertPayloadUUID"],
        data: &[],
        only: None,
    },
    CERTIFICATE_KIND,
    Kind {
        payload_type: "com.apple.proxy.http.global",
        suffix: "proxy",
        display_name: "Global HTTP proxy",
        required: &[],
        data: &[],
        only: None,
    },
    Kind {
        payload_type: "com.apple.dnsSettings.managed",
        suffix: "dns",
        display_name: "Encrypted DNS",
        required: &["DNSSettings"],
        data: &[],
        only: None,
    },
];

/// The payload types [`from_json`] builds, for listing in the console and the API.
pub fn supported_payload_types() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.payload_type)
}

/// Keys a payload specification may set among Apple's `Payload*` bookkeeping keys; the rest
/// (`PayloadType`, `PayloadVersion`, ...) are Lanyard's to set.
const SETTABLE_PAYLOAD_KEYS: &[&str] = &["PayloadUUID", "PayloadIdentifier", "PayloadDisplayName", "PayloadDescription"];

/// The outer specification. Unknown fields are refused, so a typo is not silently dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// Short name: the last part of the identifier `uk.sch.lanyard.profile.<name>`.
    name: String,
    display_name: String,
    description: Option<String>,
    /// Overrides the identifier built from `name`.
    identifier: Option<String>,
    /// Keeps the profile's UUID across rebuilds; a fresh one otherwise.
    uuid: Option<String>,
    /// `PayloadOrganization`; `Lanyard` otherwise.
    organization: Option<String>,
    /// `PayloadRemovalDisallowed` (honoured on supervised devices); true unless given.
    removal_disallowed: Option<bool>,
    payloads: Vec<Map<String, Json>>,
}

/// Builds an XML profile from a JSON specification (see the module documentation).
///
/// Each payload is `{"type": "<PayloadType>", ...Apple's keys...}`; `PayloadUUID`,
/// `PayloadIdentifier` and `PayloadDisplayName` are filled in unless given. `<data>` keys (a
/// certificate's `PayloadContent`, FileVault's `Certificate`) take base64. An escrow payload
/// without `EncryptCertPayloadUUID` is linked to the profile's only certificate payload, or
/// to a placeholder certificate added for [`super::fill_escrow_certificate`] to fill at send
/// time.
pub fn from_json(spec: &Json) -> Result<Vec<u8>, ProfileError> {
    let spec = Spec::deserialize(spec).map_err(|e| ProfileError::Spec(e.to_string()))?;
    let name_ok = spec.name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !name_ok {
        return Err(ProfileError::Spec(format!(
            "name {:?} must be letters, digits, '.', '_' or '-', starting with a letter or digit",
            spec.name
        )));
    }
    if spec.display_name.trim().is_empty() {
        return Err(ProfileError::Spec("display_name is empty".into()));
    }
    if spec.payloads.is_empty() {
        return Err(ProfileError::Spec("payloads is empty".into()));
    }
    let identifier = spec.identifier.clone().unwrap_or_else(|| format!("uk.sch.lanyard.profile.{}", spec.name));
    let organization = spec.organization.as_deref().unwrap_or("Lanyard");

    let mut payloads = Vec::with_capacity(spec.payloads.len() + 1);
    for (index, item) in spec.payloads.iter().enumerate() {
        let payload = build_payload(index, item, &payloads, &identifier, organization)?;
        payloads.push(payload);
    }
    link_escrow(&mut payloads, &identifier, organization)?;
    for (index, (kind, payload)) in payloads.iter().enumerate() {
        for &key in kind.required {
            if !payload.contains_key(key) {
                return Err(ProfileError::MissingKey { at: payload_label(index, Some(payload)), key });
            }
        }
    }

    let mut top = Dictionary::new();
    top.insert("PayloadDisplayName".into(), spec.display_name.into());
    if let Some(description) = spec.description {
        top.insert("PayloadDescription".into(), description.into());
    }
    top.insert("PayloadIdentifier".into(), identifier.into());
    top.insert("PayloadOrganization".into(), organization.into());
    top.insert("PayloadRemovalDisallowed".into(), spec.removal_disallowed.unwrap_or(true).into());
    top.insert("PayloadScope".into(), "System".into());
    top.insert("PayloadType".into(), "Configuration".into());
    let uuid = spec.uuid.unwrap_or_else(new_uuid);
    top.insert("PayloadUUID".into(), uuid.into());
    top.insert("PayloadVersion".into(), 1.into());
    let content = payloads.into_iter().map(|(_, p)| Value::Dictionary(p)).collect();
    top.insert("PayloadContent".into(), Value::Array(content));

    let profile = Value::Dictionary(top);
    // An escrow payload pointing at a given certificate UUID must find it.
    escrow_targets(&profile)?;
    let xml = to_xml(&profile)?;
    // The same checks as an upload: catches duplicate UUIDs or identifiers given by the spec.
    inspect(&xml)?;
    Ok(xml)
}

/// One payload dictionary: bookkeeping keys first, then the specification's keys.
fn build_payload(
    index: usize,
    item: &Map<String, Json>,
    built: &[(&'static Kind, Dictionary)],
    identifier: &str,
    organization: &str,
) -> Result<(&'static Kind, Dictionary), ProfileError> {
    let label = format!("payload {}", index + 1);
    let payload_type = match item.get("type") {
        Some(Json::String(t)) => t.as_str(),
        Some(_) => {
            return Err(ProfileError::Spec(format!("{label}: type must be a string")));
        }
        None => return Err(ProfileError::Spec(format!("{label}: missing type"))),
    };
    let kind = KINDS.iter().find(|k| k.payload_type == payload_type).ok_or_else(|| ProfileError::UnsupportedPayloadType {
        at: label.clone(),
        payload_type: payload_type.to_owned(),
        supported: supported_payload_types().collect::<Vec<_>>().join(", "),
    })?;
    let label = format!("{label} ({payload_type})");

    let mut settings = Dictionary::new();
    for (key, value) in item.iter().filter(|(k, _)| *k != "type") {
        let settable = SETTABLE_PAYLOAD_KEYS.contains(&key.as_str()) || kind.data.contains(&key.as_str());
        if key.starts_with("Payload") && !settable {
            return Err(ProfileError::Spec(format!("{label}: {key} is set by Lanyard and cannot be given")));
        }
        if SETTABLE_PAYLOAD_KEYS.contains(&key.as_str()) && !value.is_string() {
            return Err(ProfileError::Spec(format!("{label}: {key} must be a string")));
        }
        if let Some(only) = kind.only
            && !settable
            && !only.contains(&key.as_str())
        {
            return Err(ProfileError::Spec(format!("{label}: {key} is not allowed here (allowed: {})", only.join(", "))));
        }
        let value = if kind.data.contains(&key.as_str()) {
            data_value(value, &label, key)?
        } else {
            json_to_plist(value, &format!("{label}: {key}"))?
        };
        settings.insert(key.clone(), value);
    }

    let mut payload = Dictionary::new();
    let given = |key: &str| settings.get(key).and_then(Value::as_string).map(str::to_owned);
    let display_name = given("PayloadDisplayName").unwrap_or_else(|| kind.display_name.into());
    payload.insert("PayloadDisplayName".into(), display_name.into());
    if let Some(description) = given("PayloadDescription") {
        payload.insert("PayloadDescription".into(), description.into());
    }
    let payload_identifier = given("PayloadIdentifier").unwrap_or_else(|| {
        // A second payload of a type gets `.2`, and so on, keeping identifiers unique.
        let earlier = built.iter().filter(|(k, _)| k.payload_type == kind.payload_type);
        match earlier.count() {
            0 => format!("{identifier}.{}", kind.suffix),
            n => format!("{identifier}.{}.{}", kind.suffix, n + 1),
        }
    });
    payload.insert("PayloadIdentifier".into(), payload_identifier.into());
    payload.insert("PayloadOrganization".into(), organization.into());
    payload.insert("PayloadType".into(), kind.payload_type.into());
    let uuid = given("PayloadUUID").unwrap_or_else(new_uuid);
    payload.insert("PayloadUUID".into(), uuid.into());
    payload.insert("PayloadVersion".into(), 1.into());
    for (key, value) in settings {
        if !SETTABLE_PAYLOAD_KEYS.contains(&key.as_str()) {
            payload.insert(key, value);
        }
    }
    Ok((kind, payload))
}

/// Points escrow payloads without `EncryptCertPayloadUUID` at the certificate they need.
fn link_escrow(payloads: &mut Vec<(&'static Kind, Dictionary)>, identifier: &str, organization: &str) -> Result<(), ProfileError> {
    let certificates: Vec<String> = payloads
        .iter()
        .filter(|(k, _)| k.payload_type == CERTIFICATE)
        .filter_map(|(_, p)| p.get("PayloadUUID").and_then(Value::as_string))
        .map(str::to_owned)
        .collect();
    let needs_link: Vec<usize> = payloads
        .iter()
        .enumerate()
        .filter(|(_, (k, p))| k.payload_type == ESCROW && !p.contains_key("EncryptCertPayloadUUID"))
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = needs_link.first() else {
        return Ok(());
    };
    let cert_uuid = match certificates.as_slice() {
        [only] => only.clone(),
        [] => {
            let uuid = new_uuid();
            let mut cert = Dictionary::new();
            cert.insert("PayloadDisplayName".into(), "Lanyard escrow certificate".into());
            cert.insert(
                "PayloadDescription".into(),
                "Placeholder: Lanyard puts its escrow certificate here when it sends the \
                 profile."
                    .into(),
            );
            cert.insert("PayloadIdentifier".into(), format!("{identifier}.escrow-certificate").into());
            cert.insert("PayloadOrganization".into(), organization.into());
            cert.insert("PayloadType".into(), CERTIFICATE.into());
            cert.insert("PayloadUUID".into(), uuid.clone().into());
            cert.insert("PayloadVersion".into(), 1.into());
            cert.insert("PayloadContent".into(), Value::Data(ESCROW_PLACEHOLDER_DER.to_vec()));
            payloads.push((&CERTIFICATE_KIND, cert));
            uuid
        }
        _ => {
            let (_, payload) = &payloads[first];
            return Err(ProfileError::InvalidKey {
                at: payload_label(first, Some(payload)),
                key: "EncryptCertPayloadUUID",
                problem: "is needed: the profile has several certificate payloads, so say \
                          which one the recovery key is encrypted to"
                    .into(),
            });
        }
    };
    for index in needs_link {
        if let Some((_, escrow)) = payloads.get_mut(index) {
            escrow.insert("EncryptCertPayloadUUID".into(), cert_uuid.clone().into());
        }
    }
    Ok(())
}

/// A `<data>` key: base64 in JSON.
fn data_value(value: &Json, label: &str, key: &str) -> Result<Value, ProfileError> {
    let text = value.as_str().ok_or_else(|| ProfileError::Spec(format!("{label}: {key} must be a base64 string")))?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64.decode(compact).map(Value::Data).map_err(|e| ProfileError::Spec(format!("{label}: {key} is not base64: {e}")))
}

/// JSON to plist: strings, booleans, integers, reals, arrays and objects map directly; null
/// has no plist form.
fn json_to_plist(value: &Json, path: &str) -> Result<Value, ProfileError> {
    Ok(match value {
        Json::Null => {
            return Err(ProfileError::Spec(format!("{path} is null; leave the key out instead")));
        }
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Integer(i.into()),
            (None, Some(u), _) => Value::Integer(u.into()),
            (None, None, Some(f)) => Value::Real(f),
            (None, None, None) => {
                return Err(ProfileError::Spec(format!("{path}: {n} is not a number")));
            }
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            Value::Array(items.iter().enumerate().map(|(i, v)| json_to_plist(v, &format!("{path}[{i}]"))).collect::<Result<_, _>>()?)
        }
        Json::Object(map) => Value::Dictionary(
            map.iter().map(|(k, v)| Ok((k.clone(), json_to_plist(v, &format!("{path}.{k}"))?))).collect::<Result<_, ProfileError>>()?,
        ),
    })
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::services::profiles::testutil::{self_signed, validate};
    use crate::services::profiles::{fill_escrow_certificate, inspect};

    /// Builds `spec`, checks it against Apple's schema (for `os` too, if given) and inspects it.
    fn build_valid(spec: &Json, os: Option<&str>) -> crate::services::profiles::InspectedProfile {
        let xml = from_json(spec).expect("build");
        if let Err(out) = validate(&xml, None) {
            panic!("built profile fails validate_plist.py:\n{out}");
        }
        if let Some(os) = os
            && let Err(out) = validate(&xml, Some(os))
        {
            panic!("built profile fails validate_plist.py --os {os}:\n{out}");
        }
        inspect(&xml).expect("inspect")
    }

    #[test]
    fn builds_every_supported_type_and_they_validate() {
        let ipad = json!({
            "name": "year3",
            "display_name": "Year 3 iPads",
            "description": "Web filter, restrictions and passcode for Year 3.",
            "payloads": [
                {"type": "com.apple.webcontent-filter", "FilterType": "BuiltIn",
                 "AutoFilterEnabled": true, "PermittedURLs": ["https://www.kiddle.co/"],
                 "DenyListURLs": ["tiktok.com"]},
                {"type": "com.apple.webcontent-filter", "FilterType": "BuiltIn",
                 "AllowListBookmarks": [{"URL": "https://www.bbc.co.uk/bitesize",
                                         "Title": "BBC Bitesize"}]},
                {"type": "com.apple.applicationaccess", "allowCamera": false,
                 "allowAirDrop": false},
                {"type": "com.apple.mobiledevice.passwordpolicy", "forcePIN": true,
                 "minLength": 4, "maxInactivity": 5},
                {"type": "com.apple.proxy.http.global", "ProxyType": "Manual",
                 "ProxyServer": "proxy.school.example", "ProxyServerPort": 8080},
                {"type": "com.apple.dnsSettings.managed",
                 "DNSSettings": {"DNSProtocol": "TLS", "ServerName": "dns.school.example",
                                 "ServerAddresses": ["192.0.2.53"]}}
            ]
        });
        let p = build_valid(&ipad, Some("iOS"));
        assert_eq!(p.identifier, "uk.sch.lanyard.profile.year3");
        assert_eq!(p.payloads.len(), 6);
        let ids: Vec<&str> = p.payloads.iter().map(|s| s.identifier.as_str()).collect();
        assert_eq!(ids[0], "uk.sch.lanyard.profile.year3.webcontent-filter");
        assert_eq!(ids[1], "uk.sch.lanyard.profile.year3.webcontent-filter.2");
        assert_eq!(p.payloads[2].display_name.as_deref(), Some("Restrictions"));
        let filter = p.filtering.expect("a filtering profile");
        assert_eq!(filter.mode, "allow_list+auto_filter+dns+proxy");
        assert_eq!(filter.dns.as_deref(), Some("TLS dns.school.example (192.0.2.53)"));

        let mac = json!({
            "name": "staff-mac",
            "display_name": "Staff Mac encryption",
            "payloads": [
                {"type": "com.apple.MCX.FileVault2", "Enable": "On", "Defer": true,
                 "ShowRecoveryKey": false},
                {"type": "com.apple.MCX", "dontAllowFDEDisable": true},
                {"type": "com.apple.security.FDERecoveryKeyEscrow",
                 "Location": "Lanyard (your school's MDM server)"}
            ]
        });
        let p = build_valid(&mac, Some("macOS"));
        // A placeholder certificate was added and the escrow payload points at it.
        assert_eq!(p.payloads.len(), 4);
        assert_eq!(p.payloads[3].payload_type, CERTIFICATE);
        let xml = String::from_utf8(p.xml.clone()).expect("utf-8");
        assert!(xml.contains(&p.payloads[3].uuid));
        let (cert, _) = self_signed("escrow");
        let filled = fill_escrow_certificate(&p.xml, &cert.to_der().expect("der")).expect("fill");
        validate(&filled, Some("macOS")).expect("filled profile validates");
    }

    #[test]
    fn links_escrow_to_a_given_certificate_and_decodes_base64() {
        let (cert, _) = self_signed("escrow");
        let der = cert.to_der().expect("der");
        let spec = json!({
            "name": "fv",
            "display_name": "FileVault",
            "uuid": "11111111-2222-3333-4444-555555555555",
            "payloads": [
                {"type": "com.apple.MCX.FileVault2", "Enable": "On", "Defer": true},
                {"type": "com.apple.security.pkcs1", "PayloadUUID": "CERT-1",
                 "PayloadContent": BASE64.encode(&der)},
                {"type": "com.apple.security.FDERecoveryKeyEscrow", "Location": "Lanyard"}
            ]
        });
        let p = build_valid(&spec, Some("macOS"));
        assert_eq!(p.uuid, "11111111-2222-3333-4444-555555555555");
        assert_eq!(p.payloads.len(), 3);
        assert_eq!(p.payloads[1].uuid, "CERT-1");
        let value = plist::Value::from_reader_xml(p.xml.as_slice()).expect("plist");
        let items = value.as_dictionary().and_then(|d| d.get("PayloadContent")).and_then(Value::as_array).expect("payloads");
        let get = |i: usize, k: &str| items[i].as_dictionary().and_then(|d| d.get(k)).cloned();
        assert_eq!(get(1, "PayloadContent"), Some(Value::Data(der)));
        assert_eq!(get(2, "EncryptCertPayloadUUID"), Some("CERT-1".into()));
    }

    #[test]
    fn lists_the_supported_types() {
        let types: Vec<&str> = supported_payload_types().collect();
        assert_eq!(types.len(), 9);
        assert!(types.contains(&CERTIFICATE) && types.contains(&ESCROW));
    }

    #[test]
    fn refuses_what_it_should() {
        let base = |payloads: Json| json!({"name": "t", "display_name": "T", "payloads": payloads});

        let e = from_json(&base(json!([{"type": "com.apple.vpn.managed"}]))).unwrap_err();
        assert!(
            matches!(&e, ProfileError::UnsupportedPayloadType { payload_type, .. }
                if payload_type == "com.apple.vpn.managed"),
            "{e}"
        );
        assert!(e.to_string().contains("com.apple.vpn.managed"), "{e}");

        let e = from_json(&base(json!([{"type": "com.apple.MCX.FileVault2"}]))).unwrap_err();
        assert_eq!(e.to_string(), "payload 1 (com.apple.MCX.FileVault2 \"FileVault\"): missing Enable");

        let e = from_json(&base(json!([{"type": "com.apple.MCX", "EnergySaver": {}}]))).unwrap_err();
        assert!(e.to_string().contains("EnergySaver is not allowed"), "{e}");

        let e = from_json(&base(json!([{"type": "com.apple.applicationaccess", "PayloadVersion": 2}]))).unwrap_err();
        assert!(e.to_string().contains("PayloadVersion is set by Lanyard"), "{e}");

        let e = from_json(&base(json!([{"type": "com.apple.applicationaccess", "allowCamera": null}]))).unwrap_err();
        assert!(e.to_string().contains("allowCamera is null"), "{e}");

        let e = from_json(&base(json!([
            {"type": "com.apple.applicationaccess", "PayloadUUID": "SAME"},
            {"type": "com.apple.applicationaccess", "PayloadUUID": "same"}
        ])))
        .unwrap_err();
        assert!(matches!(e, ProfileError::Duplicate { .. }), "{e}");

        let e = from_json(&base(json!([{"type": "com.apple.applicationaccess", "PayloadUUID": 5}]))).unwrap_err();
        assert!(e.to_string().contains("PayloadUUID must be a string"), "{e}");

        let e = from_json(&base(json!([
            {"type": "com.apple.security.FDERecoveryKeyEscrow", "Location": "L",
             "EncryptCertPayloadUUID": "NOWHERE"}
        ])))
        .unwrap_err();
        assert!(e.to_string().contains("PayloadUUID of no payload"), "{e}");

        let e = from_json(&base(json!([
            {"type": "com.apple.security.pkcs1", "PayloadContent": "AAAA"},
            {"type": "com.apple.security.pkcs1", "PayloadContent": "AAAA"},
            {"type": "com.apple.security.FDERecoveryKeyEscrow", "Location": "L"}
        ])))
        .unwrap_err();
        assert!(e.to_string().contains("several certificate payloads"), "{e}");

        let e = from_json(&base(json!([{"type": "com.apple.security.pkcs1", "PayloadContent": "not base64!"}]))).unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");

        for bad in [
            json!({"name": "t", "display_name": "T", "payloads": []}),
            json!({"name": "../x", "display_name": "T", "payloads": [{"type": "com.apple.MCX"}]}),
            json!({"name": "t", "display_name": " ", "payloads": [{"type": "com.apple.MCX"}]}),
            json!({"name": "t", "display_name": "T", "payload": []}),
            json!({"display_name": "T", "payloads": []}),
            json!([1, 2]),
            json!({"name": "t", "display_name": "T", "payloads": [{"FilterType": "BuiltIn"}]}),
        ] {
            let e = from_json(&bad).unwrap_err();
            assert!(matches!(e, ProfileError::Spec(_)), "{bad}: {e}");
        }
    }
}
