//! The enrolment profile a device installs to join Lanyard: Lanyard's CA as a trusted root
//! (`com.apple.security.root`), a SCEP request for the device identity
//! (`com.apple.security.scep`, with the enrolment token as challenge), and the MDM payload
//! (`com.apple.mdm`) that ties the identity, the push topic and the server URLs together.
//!
//! [`enrollment_profile`] produces the unsigned XML plist; sign it with
//! [`super::cms::sign_profile`] so the device shows it as verified.

use plist::{Dictionary, Value};

use super::value::to_xml;

/// `AccessRights` granting everything (bits 1 to 4096).
pub const ALL_ACCESS_RIGHTS: i64 = 8191;

/// The SCEP `Key Usage`: digital signature (1) and key encipherment (4).
pub const SCEP_KEY_USAGE: i64 = 5;

/// What the enrolment profile needs to know about this Lanyard installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentProfileParams {
    /// The school or trust, shown as `PayloadOrganization`.
    pub org_name: String,
    /// The public base URL of the device face, e.g. `https://mdm.school.example`.
    pub base_url: String,
    /// The APNs topic of the MDM push certificate (its UID,
    /// `com.apple.mgmt.External.<uuid>`).
    pub topic: String,
    /// The SCEP challenge: the enrolment token.
    pub challenge: String,
    /// Lanyard's CA certificate (DER), installed as a trusted root.
    pub ca_cert_der: Vec<u8>,
    /// The SCEP server URL.
    pub scep_url: String,
    /// The MDM `ServerURL` (connect endpoint).
    pub server_url: String,
    /// The MDM `CheckInURL`.
    pub checkin_url: String,
    /// The profile's top-level `PayloadIdentifier`; payload identifiers are derived from it.
    pub identifier: String,
    /// The SCEP `Name` (the CA identifier sent with `GetCACert`).
    pub scep_name: String,
    /// The common name requested for the device identity certificate.
    pub identity_common_name: String,
    /// `UseDevelopmentAPNS`: push through the APNs sandbox.
    pub use_development_apns: bool,
}

impl EnrollmentProfileParams {
    /// Parameters for the URLs Lanyard serves under `base_url`: `/scep`, `/mdm/connect` and
    /// `/mdm/checkin`, with an identifier derived from the host name
    /// (`https://mdm.school.example` gives `example.school.mdm.lanyard.enrollment`).
    pub fn new(
        org_name: impl Into<String>,
        base_url: impl Into<String>,
        topic: impl Into<String>,
        challenge: impl Into<String>,
        ca_cert_der: Vec<u8>,
    ) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let identifier = format!("{}.lanyard.enrollment", reversed_host(&base_url));
        Self {
            org_name: org_name.into(),
            scep_url: format!("{base_url}/scep"),
            server_url: format!("{base_url}/mdm/connect"),
            checkin_url: format!("{base_url}/mdm/checkin"),
            base_url,
            topic: topic.into(),
            challenge: challenge.into(),
            ca_cert_der,
            identifier,
            scep_name: "lanyard".to_owned(),
            identity_common_name: "Lanyard device identity".to_owned(),
            use_development_apns: false,
        }
    }
}

/// `mdm.school.example` from `https://mdm.school.example:8443/x`, reversed by label:
/// `example.school.mdm`. Falls back to `lanyard` when there is no host.
fn reversed_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h).split(':').next().unwrap_or_default();
    let labels: Vec<String> = host
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect())
        .rev()
        .collect();
    if labels.is_empty() { "lanyard".to_owned() } else { labels.join(".") }
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn int(v: i64) -> Value {
    Value::Integer(v.into())
}

/// The keys every payload carries.
fn payload(kind: &str, identifier: String, uuid: &str, name: &str, org: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("PayloadType".into(), s(kind));
    d.insert("PayloadVersion".into(), int(1));
    d.insert("PayloadIdentifier".into(), Value::String(identifier));
    d.insert("PayloadUUID".into(), s(uuid));
    d.insert("PayloadDisplayName".into(), s(name));
    d.insert("PayloadOrganization".into(), s(org));
    d
}

/// The enrolment profile as an unsigned XML plist, with fresh payload UUIDs.
pub fn enrollment_profile(p: &EnrollmentProfileParams) -> Vec<u8> {
    let org = p.org_name.as_str();

    let mut root = payload("com.apple.security.root", format!("{}.ca", p.identifier), &new_uuid(), "Lanyard certificate authority", org);
    root.insert("PayloadDescription".into(), s("Trusts the certificate authority that issues device identities for this school."));
    root.insert("PayloadCertificateFileName".into(), s("lanyard-ca.cer"));
    root.insert("PayloadContent".into(), Value::Data(p.ca_cert_der.clone()));

    let scep_uuid = new_uuid();
    let mut scep_content = Dictionary::new();
    scep_content.insert("URL".into(), s(&p.scep_url));
    scep_content.insert("Name".into(), s(&p.scep_name));
    scep_content.insert("Subject".into(), Value::Array(vec![Value::Array(vec![Value::Array(vec![s("CN"), s(&p.identity_common_name)])])]));
    scep_content.insert("Challenge".into(), s(&p.challenge));
    scep_content.insert("Keysize".into(), int(2048));
    scep_content.insert("Key Type".into(), s("RSA"));
    scep_content.insert("Key Usage".into(), int(SCEP_KEY_USAGE));
    let mut scep = payload("com.apple.security.scep", format!("{}.scep", p.identifier), &scep_uuid, "Device identity", org);
    scep.insert("PayloadDescription".into(), s("Requests the certificate this device identifies itself with."));
    scep.insert("PayloadContent".into(), Value::Dictionary(scep_content));

    let mut mdm = payload("com.apple.mdm", format!("{}.mdm", p.identifier), &new_uuid(), "Device management", org);
    mdm.insert("PayloadDescription".into(), s("Lets the school manage this device."));
    mdm.insert("ServerURL".into(), s(&p.server_url));
    mdm.insert("CheckInURL".into(), s(&p.checkin_url));
    mdm.insert("Topic".into(), s(&p.topic));
    mdm.insert("IdentityCertificateUUID".into(), s(&scep_uuid));
    mdm.insert("SignMessage".into(), Value::Boolean(true));
    mdm.insert("CheckOutWhenRemoved".into(), Value::Boolean(true));
    mdm.insert("AccessRights".into(), int(ALL_ACCESS_RIGHTS));
    if p.use_development_apns {
        mdm.insert("UseDevelopmentAPNS".into(), Value::Boolean(true));
    }
    mdm.insert("ServerCapabilities".into(), Value::Array(vec![s("com.apple.mdm.per-user-connections"), s("com.apple.mdm.bootstraptoken")]));

    let mut top = Dictionary::new();
    top.insert("PayloadType".into(), s("Configuration"));
    top.insert("PayloadVersion".into(), int(1));
    top.insert("PayloadIdentifier".into(), s(&p.identifier));
    top.insert("PayloadUUID".into(), s(&new_uuid()));
    top.insert("PayloadDisplayName".into(), Value::String(format!("{org} device management")));
    top.insert("PayloadDescription".into(), Value::String(format!("Lets {org} manage this device (Lanyard).")));
    top.insert("PayloadOrganization".into(), s(org));
    top.insert("PayloadScope".into(), s("System"));
    top.insert("PayloadContent".into(), Value::Array(vec![Value::Dictionary(root), Value::Dictionary(scep), Value::Dictionary(mdm)]));
    to_xml(&Value::Dictionary(top))
}

#[cfg(test)]
mod tests {
    use std::process::Command as Process;

    use super::*;
    use crate::protocol::cms::{sign_profile, unwrap_signed_profile};
    use crate::protocol::testutil::{Leaf, make_ca, make_leaf, validate};
    use crate::protocol::value::parse_dict;

    const TOPIC: &str = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9";

    fn params(ca_der: Vec<u8>) -> EnrollmentProfileParams {
        EnrollmentProfileParams::new("Example Academy", "https://mdm.school.example/", TOPIC, "enrol-token-123", ca_der)
    }

    fn content(top: &Dictionary) -> Vec<Dictionary> {
        top.get("PayloadContent")
            .and_then(Value::as_array)
            .expect("PayloadContent")
            .iter()
            .map(|v| v.as_dictionary().expect("payload").clone())
            .collect()
    }

    fn str_of<'a>(d: &'a Dictionary, key: &str) -> &'a str {
        d.get(key).and_then(Value::as_string).unwrap_or_default()
    }

    #[test]
    fn params_derive_urls_and_identifier() {
        let p = params(vec![]);
        assert_eq!(p.base_url, "https://mdm.school.example");
        assert_eq!(p.scep_url, "https://mdm.school.example/scep");
        assert_eq!(p.server_url, "https://mdm.school.example/mdm/connect");
        assert_eq!(p.checkin_url, "https://mdm.school.example/mdm/checkin");
        assert_eq!(p.identifier, "example.school.mdm.lanyard.enrollment");
        assert_eq!(reversed_host("https://u@h.example:8443/p"), "example.h");
        assert_eq!(reversed_host("nonsense"), "nonsense");
        assert_eq!(reversed_host(""), "lanyard");
    }

    #[test]
    fn profile_has_root_scep_and_mdm() {
        let ca = make_ca("Lanyard Test CA");
        let ca_der = ca.cert.to_der().expect("der");
        let xml = enrollment_profile(&params(ca_der.clone()));
        let top = parse_dict(&xml).expect("plist");
        assert_eq!(str_of(&top, "PayloadType"), "Configuration");
        assert_eq!(str_of(&top, "PayloadScope"), "System");
        assert_eq!(str_of(&top, "PayloadOrganization"), "Example Academy");
        let items = content(&top);
        let kinds: Vec<&str> = items.iter().map(|d| str_of(d, "PayloadType")).collect();
        assert_eq!(kinds, ["com.apple.security.root", "com.apple.security.scep", "com.apple.mdm"]);
        let (root, scep, mdm) = (&items[0], &items[1], &items[2]);
        assert_eq!(root.get("PayloadContent").and_then(Value::as_data), Some(ca_der.as_slice()));
        let sc = scep.get("PayloadContent").and_then(Value::as_dictionary).expect("scep content");
        assert_eq!(str_of(sc, "URL"), "https://mdm.school.example/scep");
        assert_eq!(str_of(sc, "Challenge"), "enrol-token-123");
        assert_eq!(sc.get("Keysize").and_then(Value::as_signed_integer), Some(2048));
        assert_eq!(sc.get("Key Usage").and_then(Value::as_signed_integer), Some(5));
        assert_eq!(str_of(sc, "Key Type"), "RSA");
        assert_eq!(str_of(mdm, "IdentityCertificateUUID"), str_of(scep, "PayloadUUID"));
        assert_eq!(str_of(mdm, "Topic"), TOPIC);
        assert_eq!(str_of(mdm, "ServerURL"), "https://mdm.school.example/mdm/connect");
        assert_eq!(mdm.get("SignMessage").and_then(Value::as_boolean), Some(true));
        assert_eq!(mdm.get("AccessRights").and_then(Value::as_signed_integer), Some(8191));
        assert!(mdm.get("UseDevelopmentAPNS").is_none());

        // Every UUID is fresh, per payload and per call.
        let again = parse_dict(&enrollment_profile(&params(ca_der))).expect("plist");
        assert_ne!(str_of(&top, "PayloadUUID"), str_of(&again, "PayloadUUID"));
        let mut uuids: Vec<&str> = items.iter().map(|d| str_of(d, "PayloadUUID")).collect();
        uuids.push(str_of(&top, "PayloadUUID"));
        uuids.sort_unstable();
        uuids.dedup();
        assert_eq!(uuids.len(), 4);
    }

    #[test]
    fn profile_passes_apples_schema() {
        let ca = make_ca("Lanyard Test CA");
        let mut p = params(ca.cert.to_der().expect("der"));
        p.use_development_apns = true;
        validate("profile", &enrollment_profile(&p), "mobileconfig");
    }

    #[test]
    fn signed_profile_verifies_with_openssl_and_schema() {
        let ca = make_ca("Lanyard Test CA");
        let signer = make_leaf(&ca, "Lanyard profile signing", Leaf::Signer);
        let xml = enrollment_profile(&params(ca.cert.to_der().expect("der")));
        let der = sign_profile(&xml, &signer.cert, &signer.key, std::slice::from_ref(&ca.cert)).expect("sign");

        let (inner, _) = unwrap_signed_profile(&der).expect("unwrap");
        assert_eq!(inner, xml);
        validate("profile", &der, "mobileconfig");

        let dir = tempfile::tempdir().expect("tempdir");
        let ca_pem = dir.path().join("ca.pem");
        let file = dir.path().join("enroll.mobileconfig");
        std::fs::write(&ca_pem, ca.cert.to_pem().expect("pem")).expect("write");
        std::fs::write(&file, &der).expect("write");
        let out = Process::new("openssl")
            .args(["smime", "-verify", "-inform", "DER", "-in"])
            .arg(&file)
            .arg("-CAfile")
            .arg(&ca_pem)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl smime -verify failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, xml);
    }
}
