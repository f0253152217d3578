//! A simulated Apple device, for the integration tests and `lanyard bench`.
//!
//! It builds the plists a real iPad or Mac sends (check-in messages, command reports, answers
//! to DeviceInformation, SecurityInfo, ProfileList...) and signs them exactly as a device does:
//! a detached CMS signature over the body in the `Mdm-Signature` header. It does not speak
//! HTTP itself, so that tests and the load generator can use their own clients.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Duration;
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use plist::{Dictionary, Value};

use crate::context::Lanyard;
use crate::enrollment::cert_sha256;
use crate::error::{Error, Result};
use crate::store::IssuedCertRecord;

/// What kind of device to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A supervised school iPad.
    SupervisedIpad,
    /// An iPad enrolled by hand (not supervised).
    UnsupervisedIpad,
    /// A MacBook.
    Mac,
}

pub struct SimDevice {
    pub udid: String,
    pub serial: String,
    pub kind: Kind,
    pub topic: String,
    pub cert: X509,
    pub key: PKey<Private>,
    pub push_token: Vec<u8>,
    pub push_magic: String,
    /// What `SecurityInfo` reports (FileVault for a Mac, passcode for an iPad).
    pub encrypted: bool,
    /// The FileVault personal recovery key a Mac escrows, if any (encrypted to the server).
    pub escrowed_prk: Option<Vec<u8>>,
}

/// A fresh P-256 key (fast to make, so a benchmark can enrol many devices).
pub fn new_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(Error::internal)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(Error::internal)?).map_err(Error::internal)
}

fn dict(pairs: Vec<(&str, Value)>) -> Dictionary {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn to_xml(d: Dictionary) -> Vec<u8> {
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Value::Dictionary(d)).expect("a dictionary always serialises");
    out
}

impl SimDevice {
    /// A device with a random UDID and serial, identified by `cert`/`key`.
    pub fn new(kind: Kind, topic: &str, cert: X509, key: PKey<Private>) -> SimDevice {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut token = vec![0u8; 32];
        let _ = openssl::rand::rand_bytes(&mut token);
        SimDevice {
            udid: format!("{}{}", &id, &id[..8]).to_uppercase(),
            serial: format!("SIM{}", &id[..9]).to_uppercase(),
            kind,
            topic: topic.to_owned(),
            cert,
            key,
            push_token: token,
            push_magic: uuid::Uuid::new_v4().to_string().to_uppercase(),
            encrypted: true,
            escrowed_prk: None,
        }
    }

    /// The `Mdm-Signature` header value for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let der = crate::mdm::cms::sign_detached(body, &self.cert, &self.key).expect("the key belongs to the certificate");
        B64.encode(der)
    }

    fn product(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        // (ProductName, ModelName, Model, OSVersion)
        match self.kind {
            Kind::SupervisedIpad | Kind::UnsupervisedIpad => ("iPad13,18", "iPad", "MPQ03B/A", "17.5"),
            Kind::Mac => ("Mac14,2", "MacBook Air", "Z15S", "14.5"),
        }
    }

    pub fn authenticate(&self) -> Vec<u8> {
        let (product, model_name, model, os) = self.product();
        to_xml(dict(vec![
            ("MessageType", "Authenticate".into()),
            ("UDID", self.udid.clone().into()),
            ("SerialNumber", self.serial.clone().into()),
            ("ProductName", product.into()),
            ("ModelName", model_name.into()),
            ("Model", model.into()),
            ("OSVersion", os.into()),
            ("BuildVersion", "21F79".into()),
            ("DeviceName", format!("{model_name} {}", &self.serial[3..7]).into()),
            ("Topic", self.topic.clone().into()),
        ]))
    }

    pub fn token_update(&self) -> Vec<u8> {
        to_xml(dict(vec![
            ("MessageType", "TokenUpdate".into()),
            ("UDID", self.udid.clone().into()),
            ("Topic", self.topic.clone().into()),
            ("Token", Value::Data(self.push_token.clone())),
            ("PushMagic", self.push_magic.clone().into()),
            ("UnlockToken", Value::Data(b"sim-unlock-token".to_vec())),
            ("AwaitingConfiguration", false.into()),
        ]))
    }

    pub fn check_out(&self) -> Vec<u8> {
        to_xml(dict(vec![("MessageType", "CheckOut".into()), ("UDID", self.udid.clone().into()), ("Topic", self.topic.clone().into())]))
    }

    pub fn idle(&self) -> Vec<u8> {
        to_xml(dict(vec![("Status", "Idle".into()), ("UDID", self.udid.clone().into())]))
    }

    /// A report of `status` for `command_uuid`, with extra answer keys.
    pub fn report(&self, status: &str, command_uuid: &str, extra: Dictionary) -> Vec<u8> {
        let mut d = dict(vec![("Status", status.into()), ("UDID", self.udid.clone().into()), ("CommandUUID", command_uuid.into())]);
        if status == "Error" || status == "CommandFormatError" {
            d.insert(
                "ErrorChain".into(),
                Value::Array(vec![Value::Dictionary(dict(vec![
                    ("ErrorCode", 12021.into()),
                    ("ErrorDomain", "MCMDMErrorDomain".into()),
                    ("LocalizedDescription", "Simulated failure".into()),
                ]))]),
            );
        }
        for (k, v) in extra {
            d.insert(k, v);
        }
        to_xml(d)
    }

    /// (CommandUUID, RequestType) of a command plist the server sent.
    pub fn read_command(plist_bytes: &[u8]) -> Option<(String, String, Dictionary)> {
        let v: Value = plist::from_bytes(plist_bytes).ok()?;
        let d = v.into_dictionary()?;
        let uuid = d.get("CommandUUID")?.as_string()?.to_owned();
        let cmd = d.get("Command")?.as_dictionary()?.clone();
        let rt = cmd.get("RequestType")?.as_string()?.to_owned();
        Some((uuid, rt, cmd))
    }

    /// Answer a command as a real device of this kind would: Acknowledged, with the answer keys.
    pub fn answer(&self, command_plist: &[u8]) -> Option<(String, String, Vec<u8>)> {
        let (uuid, rt, _cmd) = Self::read_command(command_plist)?;
        let (product, model_name, model, os) = self.product();
        let supervised = self.kind == Kind::SupervisedIpad;
        let extra = match rt.as_str() {
            "DeviceInformation" => {
                let mut q = dict(vec![
                    ("UDID", self.udid.clone().into()),
                    ("DeviceName", format!("{model_name} {}", &self.serial[3..7]).into()),
                    ("SerialNumber", self.serial.clone().into()),
                    ("ProductName", product.into()),
                    ("ModelName", model_name.into()),
                    ("Model", model.into()),
                    ("OSVersion", os.into()),
                    ("BuildVersion", "21F79".into()),
                    ("IsSupervised", supervised.into()),
                    ("DeviceCapacity", Value::Real(64.0)),
                    ("AvailableDeviceCapacity", Value::Real(41.5)),
                    ("WiFiMAC", "a4:83:e7:12:34:56".into()),
                    ("BluetoothMAC", "a4:83:e7:12:34:57".into()),
                ]);
                if self.kind != Kind::Mac {
                    q.insert("BatteryLevel".into(), Value::Real(0.87));
                }
                dict(vec![("QueryResponses", Value::Dictionary(q))])
            }
            "SecurityInfo" => {
                let info = match self.kind {
                    Kind::Mac => {
                        let mut d = dict(vec![
                            ("FDE_Enabled", self.encrypted.into()),
                            ("FDE_HasPersonalRecoveryKey", self.escrowed_prk.is_some().into()),
                            ("FDE_HasInstitutionalRecoveryKey", false.into()),
                            ("SystemIntegrityProtectionEnabled", true.into()),
                        ]);
                        if let Some(prk) = &self.escrowed_prk {
                            d.insert("FDE_PersonalRecoveryKeyCMS".into(), Value::Data(prk.clone()));
                            d.insert("FDE_PersonalRecoveryKeyDeviceKey".into(), self.serial.clone().into());
                        }
                        d
                    }
                    _ => dict(vec![
                        ("HardwareEncryptionCaps", 3.into()),
                        ("PasscodePresent", self.encrypted.into()),
                        ("PasscodeCompliant", self.encrypted.into()),
                        ("PasscodeCompliantWithProfiles", self.encrypted.into()),
                    ]),
                };
                dict(vec![("SecurityInfo", Value::Dictionary(info))])
            }
            "ProfileList" => dict(vec![("ProfileList", Value::Array(vec![]))]),
            "InstalledApplicationList" => dict(vec![(
                "InstalledApplicationList",
                Value::Array(vec![Value::Dictionary(dict(vec![
                    ("Identifier", "com.apple.Keynote".into()),
                    ("Name", "Keynote".into()),
                    ("ShortVersion", "14.0".into()),
                ]))]),
            )]),
            "CertificateList" => dict(vec![("CertificateList", Value::Array(vec![]))]),
            "DeviceLocation" => dict(vec![("Latitude", Value::Real(51.3)), ("Longitude", Value::Real(0.4))]),
            _ => Dictionary::new(),
        };
        let report = self.report("Acknowledged", &uuid, extra);
        Some((uuid, rt, report))
    }
}

impl Lanyard {
    /// Issue a device identity as the SCEP service would, without the wire protocol: for the
    /// integration tests and the benchmark, which enrol many simulated devices quickly.
    pub async fn issue_simulated_identity(&self, key: &PKey<Private>, common_name: &str) -> Result<X509> {
        let mut name = X509NameBuilder::new().map_err(Error::internal)?;
        name.append_entry_by_nid(Nid::COMMONNAME, common_name).map_err(Error::internal)?;
        let name = name.build();
        let build = || -> std::result::Result<X509, openssl::error::ErrorStack> {
            let mut b = X509Builder::new()?;
            b.set_version(2)?;
            b.set_serial_number(&*crate::pki::random_serial().map_err(|_| openssl::error::ErrorStack::get())?)?;
            b.set_subject_name(&name)?;
            b.set_issuer_name(self.pki.ca_cert.subject_name())?;
            b.set_pubkey(key)?;
            b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
            b.set_not_after(&*Asn1Time::days_from_now(365)?)?;
            b.append_extension(BasicConstraints::new().build()?)?;
            b.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
            b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
            b.sign(&self.pki.ca_key, MessageDigest::sha256())?;
            Ok(b.build())
        };
        let cert = build().map_err(Error::internal)?;
        let now = self.now();
        self.store
            .record_issued_cert(&IssuedCertRecord {
                sha256: cert_sha256(&cert)?,
                serial: "simulated".into(),
                subject: common_name.to_owned(),
                not_after: now + Duration::days(365),
                issued_at: now,
                enrollment_token_id: None,
                renewed_from: None,
            })
            .await?;
        Ok(cert)
    }
}
