//! A simulated Apple device, for the integration tests and `lanyard bench`.
//!
//! It builds the plists a real iPad or Mac sends (check-in messages, command reports, answers
//! to DeviceInformation, SecurityInfo, ProfileList...) and signs them exactly as a device does:
//! a detached CMS signature over the body in the `Mdm-Signature` header. It does not speak
//! HTTP itself, so that tests and the load generator can use their own clients.
//!
//! Like a real device it remembers its configuration profiles: InstallProfile verifies a
//! signed profile and installs it (replacing one with the same identifier), RemoveProfile
//! removes only what MDM installed, and ProfileList reports them all, the MDM enrolment profile
//! included. A Mac given a FileVault escrow payload encrypts its personal recovery key to the
//! escrow certificate in it (CMS) and reports that in SecurityInfo. Tests can make it refuse
//! request types ([`SimDevice::fail`]) and install profiles "by hand" ([`SimDevice::install_by_hand`]).

use std::collections::HashSet;
use std::sync::Mutex;

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

use lanyard::context::Lanyard;
use lanyard::error::{Error, Result};
use lanyard::services::enrollment::cert_sha256;
use lanyard::store::IssuedCertRecord;

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
    /// Set by hand, it overrides what the Mac escrows from a FileVault profile.
    pub escrowed_prk: Option<Vec<u8>>,
    /// A Mac's FileVault personal recovery key (what it escrows when a profile asks it to).
    pub recovery_key: Option<String>,
    /// What the device remembers between commands.
    pub state: Mutex<SimState>,
}

/// The identifier of the MDM enrolment profile a simulated device reports in ProfileList.
pub const SIM_ENROLLMENT_PROFILE: &str = "com.lanyard.sim.mdm-enrollment";

/// A profile installed on a simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimProfile {
    pub identifier: String,
    pub uuid: String,
    pub display_name: Option<String>,
    /// Installed by MDM (and so removable by MDM).
    pub managed: bool,
    /// It arrived CMS-signed and the signature verified.
    pub signed: bool,
    pub payload_types: Vec<String>,
}

/// A simulated device's memory.
#[derive(Debug, Default)]
pub struct SimState {
    /// Installed profiles, oldest first.
    pub profiles: Vec<SimProfile>,
    /// Request types answered with an Error.
    pub failing: HashSet<String>,
    /// What the Mac escrowed from a FileVault escrow payload (CMS to the escrow certificate).
    pub escrowed_prk: Option<Vec<u8>>,
    /// Every InstallProfile `Payload` received, as sent.
    pub install_payloads: Vec<Vec<u8>>,
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
            recovery_key: (kind == Kind::Mac).then(|| {
                let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
                hex.as_bytes()[..24].chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
            }),
            state: Mutex::new(SimState {
                profiles: vec![SimProfile {
                    identifier: SIM_ENROLLMENT_PROFILE.to_owned(),
                    uuid: uuid::Uuid::new_v4().to_string().to_uppercase(),
                    display_name: Some("MDM enrolment".to_owned()),
                    managed: false,
                    signed: true,
                    payload_types: vec!["com.apple.security.root".into(), "com.apple.security.scep".into(), "com.apple.mdm".into()],
                }],
                ..Default::default()
            }),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identifiers of the installed profiles, oldest first.
    pub fn installed_profiles(&self) -> Vec<String> {
        self.memory().profiles.iter().map(|p| p.identifier.clone()).collect()
    }

    pub fn profile(&self, identifier: &str) -> Option<SimProfile> {
        self.memory().profiles.iter().find(|p| p.identifier == identifier).cloned()
    }

    /// Install a profile as a person would, by hand: not managed, so MDM cannot remove it.
    pub fn install_by_hand(&self, identifier: &str, display_name: &str) {
        let mut m = self.memory();
        m.profiles.retain(|p| p.identifier != identifier);
        m.profiles.push(SimProfile {
            identifier: identifier.to_owned(),
            uuid: uuid::Uuid::new_v4().to_string().to_uppercase(),
            display_name: Some(display_name.to_owned()),
            managed: false,
            signed: false,
            payload_types: vec!["com.apple.wifi.managed".into()],
        });
    }

    /// Answer every `request_type` command with an Error from now on.
    pub fn fail(&self, request_type: &str) {
        self.memory().failing.insert(request_type.to_owned());
    }

    /// Stop failing `request_type`.
    pub fn unfail(&self, request_type: &str) {
        self.memory().failing.remove(request_type);
    }

    /// The InstallProfile payloads received, as sent (signed DER from Lanyard).
    pub fn install_payloads(&self) -> Vec<Vec<u8>> {
        self.memory().install_payloads.clone()
    }

    /// InstallProfile as a device does it: verify a signed profile, read it, replace a profile
    /// with the same identifier, and escrow the FileVault key if the profile asks (a Mac).
    /// `Err` is the device's refusal.
    fn install(&self, payload: &[u8]) -> std::result::Result<(), String> {
        self.memory().install_payloads.push(payload.to_vec());
        let (plist_bytes, signed) = if payload.first() == Some(&0x30) {
            let (content, _) =
                lanyard::protocol::cms::unwrap_signed_profile(payload).map_err(|e| format!("The profile's signature is not valid: {e}"))?;
            (content, true)
        } else {
            (payload.to_vec(), false)
        };
        let v: Value = plist::from_bytes(&plist_bytes).map_err(|e| format!("The profile is not a property list: {e}"))?;
        let top = v.as_dictionary().ok_or("The profile is not a dictionary")?;
        let identifier = top.get("PayloadIdentifier").and_then(Value::as_string).ok_or("The profile has no PayloadIdentifier")?.to_owned();
        let uuid = top.get("PayloadUUID").and_then(Value::as_string).ok_or("The profile has no PayloadUUID")?.to_owned();
        let items: Vec<&Dictionary> = top
            .get("PayloadContent")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_dictionary).collect())
            .unwrap_or_default();
        let payload_types: Vec<String> =
            items.iter().filter_map(|d| d.get("PayloadType").and_then(Value::as_string)).map(str::to_owned).collect();
        let escrow = if self.kind == Kind::Mac { self.escrow_from(&items)? } else { None };
        let mut m = self.memory();
        if m.profiles.iter().any(|p| p.identifier == identifier && !p.managed) {
            return Err(format!("A profile with the identifier {identifier} was installed by the user and cannot be replaced"));
        }
        m.profiles.retain(|p| p.identifier != identifier);
        m.profiles.push(SimProfile {
            identifier,
            uuid,
            display_name: top.get("PayloadDisplayName").and_then(Value::as_string).map(str::to_owned),
            managed: true,
            signed,
            payload_types,
        });
        if escrow.is_some() {
            m.escrowed_prk = escrow;
        }
        Ok(())
    }

    /// The recovery key encrypted to the certificate a FileVault escrow payload points at.
    fn escrow_from(&self, items: &[&Dictionary]) -> std::result::Result<Option<Vec<u8>>, String> {
        let Some(escrow) =
            items.iter().find(|d| d.get("PayloadType").and_then(Value::as_string) == Some("com.apple.security.FDERecoveryKeyEscrow"))
        else {
            return Ok(None);
        };
        let Some(prk) = &self.recovery_key else { return Ok(None) };
        let wanted =
            escrow.get("EncryptCertPayloadUUID").and_then(Value::as_string).ok_or("escrow payload without EncryptCertPayloadUUID")?;
        let cert = items
            .iter()
            .find(|d| d.get("PayloadUUID").and_then(Value::as_string).is_some_and(|u| u.eq_ignore_ascii_case(wanted)))
            .and_then(|d| d.get("PayloadContent"))
            .and_then(Value::as_data)
            .ok_or("the escrow payload's certificate is missing")?;
        let cert = X509::from_der(cert).map_err(|e| format!("the escrow certificate is not a certificate: {e}"))?;
        let mut certs = openssl::stack::Stack::new().map_err(|e| e.to_string())?;
        certs.push(cert).map_err(|e| e.to_string())?;
        let cms = openssl::cms::CmsContentInfo::encrypt(
            &certs,
            prk.as_bytes(),
            openssl::symm::Cipher::aes_256_cbc(),
            openssl::cms::CMSOptions::BINARY,
        )
        .and_then(|c| c.to_der())
        .map_err(|e| format!("cannot encrypt the recovery key: {e}"))?;
        Ok(Some(cms))
    }

    /// RemoveProfile as a device does it: only a profile MDM installed.
    fn remove(&self, identifier: &str) -> std::result::Result<(), String> {
        let mut m = self.memory();
        match m.profiles.iter().position(|p| p.identifier == identifier) {
            None => Err(format!("The profile {identifier} is not installed")),
            Some(i) if !m.profiles[i].managed => Err(format!("The profile {identifier} was not installed by MDM")),
            Some(i) => {
                m.profiles.remove(i);
                Ok(())
            }
        }
    }

    /// The ProfileList answer: every installed profile.
    fn profile_list(&self) -> Value {
        let m = self.memory();
        Value::Array(
            m.profiles
                .iter()
                .map(|p| {
                    let content =
                        p.payload_types.iter().map(|t| Value::Dictionary(dict(vec![("PayloadType", t.clone().into())]))).collect();
                    let mut d = dict(vec![
                        ("PayloadIdentifier", p.identifier.clone().into()),
                        ("PayloadUUID", p.uuid.clone().into()),
                        ("PayloadVersion", 1.into()),
                        ("IsManaged", p.managed.into()),
                        ("IsEncrypted", false.into()),
                        ("HasRemovalPasscode", false.into()),
                        ("PayloadRemovalDisallowed", false.into()),
                        ("PayloadContent", Value::Array(content)),
                    ]);
                    if let Some(n) = &p.display_name {
                        d.insert("PayloadDisplayName".into(), n.clone().into());
                    }
                    Value::Dictionary(d)
                })
                .collect(),
        )
    }

    /// The `Mdm-Signature` header value for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let der = lanyard::protocol::cms::sign_detached(body, &self.cert, &self.key).expect("the key belongs to the certificate");
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
        self.token_update_awaiting(false)
    }

    /// A TokenUpdate; `awaiting`: sent from Setup Assistant by a device enrolled by ADE whose
    /// profile has `await_device_configured` (it waits for DeviceConfigured).
    pub fn token_update_awaiting(&self, awaiting: bool) -> Vec<u8> {
        let mut fields = vec![
            ("MessageType", "TokenUpdate".into()),
            ("UDID", self.udid.clone().into()),
            ("Topic", self.topic.clone().into()),
            ("Token", Value::Data(self.push_token.clone())),
            ("PushMagic", self.push_magic.clone().into()),
            ("AwaitingConfiguration", awaiting.into()),
        ];
        if let Some(token) = self.unlock_token() {
            fields.push(("UnlockToken", Value::Data(token)));
        }
        to_xml(dict(fields))
    }

    /// The unlock token this device sends at TokenUpdate: only a supervised iPad sends one (an
    /// iPad enrolled by hand and a Mac do not), each its own.
    pub fn unlock_token(&self) -> Option<Vec<u8>> {
        (self.kind == Kind::SupervisedIpad).then(|| format!("sim-unlock-token-{}", self.udid).into_bytes())
    }

    /// The Activation Lock bypass code this device made, in Apple's shape (groups of 5, 5, 4,
    /// 4, 4, 4 characters), its own.
    pub fn activation_lock_bypass_code(&self) -> String {
        let chars: Vec<char> = self.udid.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let mut out = String::new();
        let mut at = 0;
        for (i, len) in [5, 5, 4, 4, 4, 4].into_iter().enumerate() {
            if i > 0 {
                out.push('-');
            }
            out.extend(chars.iter().cycle().skip(at).take(len));
            at += len;
        }
        out
    }

    pub fn check_out(&self) -> Vec<u8> {
        to_xml(dict(vec![("MessageType", "CheckOut".into()), ("UDID", self.udid.clone().into()), ("Topic", self.topic.clone().into())]))
    }

    /// A `DeclarativeManagement` check-in to `endpoint` (`tokens`, `declaration-items`,
    /// `declaration/configuration/ID`, `status` with the report as `data`).
    pub fn declarative_management(&self, endpoint: &str, data: Option<Vec<u8>>) -> Vec<u8> {
        let mut fields =
            vec![("MessageType", "DeclarativeManagement".into()), ("UDID", self.udid.clone().into()), ("Endpoint", endpoint.into())];
        if let Some(d) = data {
            fields.push(("Data", Value::Data(d)));
        }
        to_xml(dict(fields))
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

    /// Answer a command as a real device of this kind would: Acknowledged with the answer keys,
    /// or Error when the device refuses (or was told to fail this request type).
    pub fn answer(&self, command_plist: &[u8]) -> Option<(String, String, Vec<u8>)> {
        let (uuid, rt, cmd) = Self::read_command(command_plist)?;
        if self.memory().failing.contains(&rt) {
            return Some((uuid.clone(), rt, self.report("Error", &uuid, Dictionary::new())));
        }
        let outcome = match rt.as_str() {
            "InstallProfile" => match cmd.get("Payload").and_then(Value::as_data) {
                Some(payload) => self.install(payload),
                None => Err("InstallProfile without a Payload".to_owned()),
            },
            "RemoveProfile" => match cmd.get("Identifier").and_then(Value::as_string) {
                Some(identifier) => self.remove(identifier),
                None => Err("RemoveProfile without an Identifier".to_owned()),
            },
            // The passcode is cleared only with this device's own unlock token.
            "ClearPasscode" => match (cmd.get("UnlockToken").and_then(Value::as_data), self.unlock_token()) {
                (Some(sent), Some(mine)) if sent == mine.as_slice() => Ok(()),
                (Some(_), _) => Err("The unlock token is not this device's".to_owned()),
                (None, _) => Err("ClearPasscode without an UnlockToken".to_owned()),
            },
            _ => Ok(()),
        };
        if let Err(why) = outcome {
            let chain = Value::Array(vec![Value::Dictionary(dict(vec![
                ("ErrorCode", 4001.into()),
                ("ErrorDomain", "MCProfileErrorDomain".into()),
                ("LocalizedDescription", why.clone().into()),
                ("USEnglishDescription", why.into()),
            ]))]);
            let mut d = dict(vec![("Status", "Error".into()), ("UDID", self.udid.clone().into()), ("CommandUUID", uuid.clone().into())]);
            d.insert("ErrorChain".into(), chain);
            return Some((uuid, rt, to_xml(d)));
        }
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
                        let escrowed = self.escrowed_prk.clone().or_else(|| self.memory().escrowed_prk.clone());
                        let mut d = dict(vec![
                            ("FDE_Enabled", self.encrypted.into()),
                            ("FDE_HasPersonalRecoveryKey", (escrowed.is_some() || self.recovery_key.is_some()).into()),
                            ("FDE_HasInstitutionalRecoveryKey", false.into()),
                            ("SystemIntegrityProtectionEnabled", true.into()),
                        ]);
                        if let Some(prk) = &escrowed {
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
            "ProfileList" => dict(vec![("ProfileList", self.profile_list())]),
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
            "ActivationLockBypassCode" => dict(vec![("ActivationLockBypassCode", self.activation_lock_bypass_code().into())]),
            _ => Dictionary::new(),
        };
        let report = self.report("Acknowledged", &uuid, extra);
        Some((uuid, rt, report))
    }
}

/// Device identities issued straight from the server's CA, for simulated devices: bring it into
/// scope (`use lanyard_bench::sim::SimIdentity`) to call it on a [`Lanyard`] context.
#[allow(async_fn_in_trait)]
pub trait SimIdentity {
    /// Issue a device identity as the SCEP service would, without the wire protocol: for the
    /// integration tests and the benchmark, which enrol many simulated devices quickly. The
    /// certificate is recorded in the store as issued (serial "simulated"), as SCEP records it.
    async fn issue_simulated_identity(&self, key: &PKey<Private>, common_name: &str) -> Result<X509>;
}

impl SimIdentity for Lanyard {
    async fn issue_simulated_identity(&self, key: &PKey<Private>, common_name: &str) -> Result<X509> {
        let mut name = X509NameBuilder::new().map_err(Error::internal)?;
        name.append_entry_by_nid(Nid::COMMONNAME, common_name).map_err(Error::internal)?;
        let name = name.build();
        let build = || -> std::result::Result<X509, openssl::error::ErrorStack> {
            let mut b = X509Builder::new()?;
            b.set_version(2)?;
            b.set_serial_number(&*lanyard::pki::random_serial().map_err(|_| openssl::error::ErrorStack::get())?)?;
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
