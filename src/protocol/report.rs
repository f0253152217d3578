//! Command reports: the body a device sends to the connect endpoint (`ServerURL`). It says
//! whether the device is `Idle` (asking for work) or reports the outcome of a command
//! (`Acknowledged`, `Error`, `CommandFormatError`, `NotNow`), with the command's answer keys.
//!
//! [`parse`] keeps the whole dictionary ([`CommandReport::raw`]) so results can be stored as
//! sent; [`DeviceInformation`] and [`SecurityInfo`] are typed views of the two answers the
//! inventory reads.

use plist::Dictionary;

use super::ProtocolError;
use super::checkin::EnrollmentIds;
use super::value::{DictExt, dict_to_json, parse_dict};

/// The `Status` of a command report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandStatus {
    /// `Idle`: no result; the device asks for its next command.
    Idle,
    /// `Acknowledged`: the command ran; its answer keys are in the report.
    Acknowledged,
    /// `Error`: the command failed; see `ErrorChain`.
    Error,
    /// `CommandFormatError`: the device could not understand the command.
    CommandFormatError,
    /// `NotNow`: the device cannot run the command now (e.g. locked); offer it again later.
    NotNow,
}

impl CommandStatus {
    /// Apple's spelling of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Acknowledged => "Acknowledged",
            Self::Error => "Error",
            Self::CommandFormatError => "CommandFormatError",
            Self::NotNow => "NotNow",
        }
    }

    /// Parses Apple's spelling of a status.
    pub fn from_apple(s: &str) -> Option<Self> {
        Some(match s {
            "Idle" => Self::Idle,
            "Acknowledged" => Self::Acknowledged,
            "Error" => Self::Error,
            "CommandFormatError" => Self::CommandFormatError,
            "NotNow" => Self::NotNow,
            _ => return None,
        })
    }

    /// True when the status ends delivery of the command (`Acknowledged`, `Error`,
    /// `CommandFormatError`); `NotNow` and `Idle` do not.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Acknowledged | Self::Error | Self::CommandFormatError)
    }
}

impl std::fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a report's `ErrorChain`, outermost error first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorChainItem {
    /// `ErrorCode`.
    pub error_code: Option<i64>,
    /// `ErrorDomain`, e.g. `MCProfileErrorDomain`.
    pub error_domain: Option<String>,
    /// `LocalizedDescription`, in the device's language.
    pub localized_description: Option<String>,
    /// `USEnglishDescription`.
    pub us_english_description: Option<String>,
}

/// A device's report to the connect endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReport {
    /// Which device (and on a user channel, which user) reports.
    pub ids: EnrollmentIds,
    /// `Status`.
    pub status: CommandStatus,
    /// `CommandUUID`: the command reported on; required unless the status is `Idle`.
    pub command_uuid: Option<String>,
    /// `RequestType`, which devices echo for some commands.
    pub request_type: Option<String>,
    /// `ErrorChain`, present with `Error` and `CommandFormatError`.
    pub error_chain: Option<Vec<ErrorChainItem>>,
    /// The whole dictionary as sent, answer keys included.
    pub raw: Dictionary,
}

/// Parses a connect-endpoint body (XML or binary plist).
///
/// `Status` and the device's `UDID` (or `EnrollmentID`) are required, and so is `CommandUUID`
/// for every status but `Idle`. An unknown status is [`ProtocolError::UnknownStatus`].
pub fn parse(body: &[u8]) -> Result<CommandReport, ProtocolError> {
    let raw = parse_dict(body)?;
    let status_text = raw.req_string("Status")?;
    let status = CommandStatus::from_apple(&status_text).ok_or(ProtocolError::UnknownStatus(status_text))?;
    let ids = EnrollmentIds::from_dict(&raw)?;
    let command_uuid = raw.opt_string("CommandUUID")?;
    if command_uuid.is_none() && status != CommandStatus::Idle {
        return Err(ProtocolError::MissingKey("CommandUUID".to_owned()));
    }
    let error_chain = match raw.get("ErrorChain") {
        None => None,
        Some(plist::Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(plist::Value::as_dictionary)
                .map(|e| ErrorChainItem {
                    error_code: e.loose_int("ErrorCode"),
                    error_domain: e.loose_string("ErrorDomain"),
                    localized_description: e.loose_string("LocalizedDescription"),
                    us_english_description: e.loose_string("USEnglishDescription"),
                })
                .collect(),
        ),
        Some(_) => {
            return Err(ProtocolError::WrongType { key: "ErrorChain".to_owned(), expected: "an array" });
        }
    };
    Ok(CommandReport { ids, status, command_uuid, request_type: raw.opt_string("RequestType")?, error_chain, raw })
}

impl CommandReport {
    /// A JSON view of the whole report as sent: data as base64, dates as RFC 3339.
    pub fn to_json(&self) -> serde_json::Value {
        dict_to_json(&self.raw)
    }

    /// The `QueryResponses` of a `DeviceInformation` answer, if the report holds one.
    pub fn device_information(&self) -> Option<DeviceInformation> {
        self.raw.loose_dict("QueryResponses").map(DeviceInformation::from_query_responses)
    }

    /// The `SecurityInfo` of a `SecurityInfo` answer, if the report holds one.
    pub fn security_info(&self) -> Option<SecurityInfo> {
        self.raw.loose_dict("SecurityInfo").map(SecurityInfo::from_dict)
    }

    /// A one-line summary of the error chain for logs and the console, e.g.
    /// `MCProfileErrorDomain 1009: The profile is not signed.`
    pub fn error_summary(&self) -> Option<String> {
        let chain = self.error_chain.as_ref()?;
        let parts: Vec<String> = chain
            .iter()
            .map(|e| {
                let text = e.us_english_description.as_deref().or(e.localized_description.as_deref()).unwrap_or("no description");
                match (&e.error_domain, e.error_code) {
                    (Some(d), Some(c)) => format!("{d} {c}: {text}"),
                    (Some(d), None) => format!("{d}: {text}"),
                    (None, Some(c)) => format!("{c}: {text}"),
                    (None, None) => text.to_owned(),
                }
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The inventory's view of a `DeviceInformation` answer (`QueryResponses`). Every field is
/// optional: a device answers only the queries it was asked and supports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInformation {
    /// `UDID`.
    pub udid: Option<String>,
    /// `DeviceName`.
    pub device_name: Option<String>,
    /// `Model`, e.g. `MK2K3B/A`.
    pub model: Option<String>,
    /// `ModelName`, e.g. `iPad`.
    pub model_name: Option<String>,
    /// `ModelNumber`.
    pub model_number: Option<String>,
    /// `ProductName`, e.g. `iPad13,18`.
    pub product_name: Option<String>,
    /// `SerialNumber`.
    pub serial_number: Option<String>,
    /// `OSVersion`.
    pub os_version: Option<String>,
    /// `BuildVersion`.
    pub build_version: Option<String>,
    /// `IsSupervised`.
    pub is_supervised: Option<bool>,
    /// `IsMultiUser` (Shared iPad).
    pub is_multi_user: Option<bool>,
    /// `IsAppleSilicon` (macOS).
    pub is_apple_silicon: Option<bool>,
    /// `DeviceCapacity`, in GB.
    pub device_capacity: Option<f64>,
    /// `AvailableDeviceCapacity`, in GB.
    pub available_device_capacity: Option<f64>,
    /// `BatteryLevel`, 0.0 to 1.0 (-1.0 when unknown).
    pub battery_level: Option<f64>,
    /// `WiFiMAC`.
    pub wifi_mac: Option<String>,
    /// `BluetoothMAC`.
    pub bluetooth_mac: Option<String>,
    /// `EthernetMAC`.
    pub ethernet_mac: Option<String>,
    /// `IMEI`.
    pub imei: Option<String>,
    /// `MEID`.
    pub meid: Option<String>,
    /// `ICCID`.
    pub iccid: Option<String>,
    /// `PhoneNumber`.
    pub phone_number: Option<String>,
    /// `IsActivationLockEnabled`.
    pub is_activation_lock_enabled: Option<bool>,
    /// `IsDeviceLocatorServiceEnabled` (Find My).
    pub is_device_locator_service_enabled: Option<bool>,
    /// `IsMDMLostModeEnabled`.
    pub is_mdm_lost_mode_enabled: Option<bool>,
    /// `IsCloudBackupEnabled`.
    pub is_cloud_backup_enabled: Option<bool>,
    /// `AwaitingConfiguration`.
    pub awaiting_configuration: Option<bool>,
    /// `HostName` (macOS).
    pub host_name: Option<String>,
    /// `LocalHostName` (macOS).
    pub local_host_name: Option<String>,
    /// `TimeZone`.
    pub time_zone: Option<String>,
}

impl DeviceInformation {
    /// Reads the typed fields from a `QueryResponses` dictionary; values of an unexpected type
    /// read as absent.
    pub fn from_query_responses(q: &Dictionary) -> Self {
        Self {
            udid: q.loose_string("UDID"),
            device_name: q.loose_string("DeviceName"),
            model: q.loose_string("Model"),
            model_name: q.loose_string("ModelName"),
            model_number: q.loose_string("ModelNumber"),
            product_name: q.loose_string("ProductName"),
            serial_number: q.loose_string("SerialNumber"),
            os_version: q.loose_string("OSVersion"),
            build_version: q.loose_string("BuildVersion"),
            is_supervised: q.loose_bool("IsSupervised"),
            is_multi_user: q.loose_bool("IsMultiUser"),
            is_apple_silicon: q.loose_bool("IsAppleSilicon"),
            device_capacity: q.loose_real("DeviceCapacity"),
            available_device_capacity: q.loose_real("AvailableDeviceCapacity"),
            battery_level: q.loose_real("BatteryLevel"),
            wifi_mac: q.loose_string("WiFiMAC"),
            bluetooth_mac: q.loose_string("BluetoothMAC"),
            ethernet_mac: q.loose_string("EthernetMAC"),
            imei: q.loose_string("IMEI"),
            meid: q.loose_string("MEID"),
            iccid: q.loose_string("ICCID"),
            phone_number: q.loose_string("PhoneNumber"),
            is_activation_lock_enabled: q.loose_bool("IsActivationLockEnabled"),
            is_device_locator_service_enabled: q.loose_bool("IsDeviceLocatorServiceEnabled"),
            is_mdm_lost_mode_enabled: q.loose_bool("IsMDMLostModeEnabled"),
            is_cloud_backup_enabled: q.loose_bool("IsCloudBackupEnabled"),
            awaiting_configuration: q.loose_bool("AwaitingConfiguration"),
            host_name: q.loose_string("HostName"),
            local_host_name: q.loose_string("LocalHostName"),
            time_zone: q.loose_string("TimeZone"),
        }
    }
}

/// The inventory's view of a `SecurityInfo` answer. Every field is optional: which keys a
/// device reports depends on its platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityInfo {
    /// `HardwareEncryptionCaps`: bit 1 block-level, bit 2 file-level encryption (iOS).
    pub hardware_encryption_caps: Option<i64>,
    /// `PasscodePresent`.
    pub passcode_present: Option<bool>,
    /// `PasscodeCompliant`: the passcode meets every requirement, account ones included.
    pub passcode_compliant: Option<bool>,
    /// `PasscodeCompliantWithProfiles`: the passcode meets the installed profiles.
    pub passcode_compliant_with_profiles: Option<bool>,
    /// `PasscodeLockGracePeriod`, in seconds.
    pub passcode_lock_grace_period: Option<i64>,
    /// `PasscodeLockGracePeriodEnforced`, in seconds.
    pub passcode_lock_grace_period_enforced: Option<i64>,
    /// `AutoLockTime`, in seconds.
    pub auto_lock_time: Option<i64>,
    /// `FDE_Enabled`: FileVault is on (macOS).
    pub filevault_enabled: Option<bool>,
    /// `FDE_HasPersonalRecoveryKey`.
    pub filevault_has_personal_recovery_key: Option<bool>,
    /// `FDE_HasInstitutionalRecoveryKey`.
    pub filevault_has_institutional_recovery_key: Option<bool>,
    /// `SystemIntegrityProtectionEnabled` (macOS).
    pub system_integrity_protection_enabled: Option<bool>,
    /// `FirewallSettings.FirewallEnabled` (macOS).
    pub firewall_enabled: Option<bool>,
    /// `ManagementStatus.EnrolledViaDEP`: enrolled through Automated Device Enrollment.
    pub enrolled_via_dep: Option<bool>,
    /// `ManagementStatus.UserApprovedEnrollment`.
    pub user_approved_enrollment: Option<bool>,
    /// `ManagementStatus.IsUserEnrollment`.
    pub is_user_enrollment: Option<bool>,
    /// `ManagementStatus.IsActivationLockManageable`.
    pub is_activation_lock_manageable: Option<bool>,
    /// `SecureBoot.SecureBootLevel` (macOS), e.g. `full`.
    pub secure_boot_level: Option<String>,
    /// `RemoteDesktopEnabled` (macOS).
    pub remote_desktop_enabled: Option<bool>,
    /// `AuthenticatedRootVolumeEnabled` (macOS).
    pub authenticated_root_volume_enabled: Option<bool>,
    /// `BootstrapTokenAllowedForAuthentication` (macOS): `allowed`, `disallowed`,
    /// `not supported`.
    pub bootstrap_token_allowed_for_authentication: Option<String>,
    /// `IsRecoveryLockEnabled` (macOS).
    pub is_recovery_lock_enabled: Option<bool>,
}

impl SecurityInfo {
    /// Reads the typed fields from the `SecurityInfo` dictionary of an answer; values of an
    /// unexpected type read as absent.
    pub fn from_dict(s: &Dictionary) -> Self {
        let management = s.loose_dict("ManagementStatus");
        let from_management = |key: &str| management.and_then(|m| m.loose_bool(key));
        Self {
            hardware_encryption_caps: s.loose_int("HardwareEncryptionCaps"),
            passcode_present: s.loose_bool("PasscodePresent"),
            passcode_compliant: s.loose_bool("PasscodeCompliant"),
            passcode_compliant_with_profiles: s.loose_bool("PasscodeCompliantWithProfiles"),
            passcode_lock_grace_period: s.loose_int("PasscodeLockGracePeriod"),
            passcode_lock_grace_period_enforced: s.loose_int("PasscodeLockGracePeriodEnforced"),
            auto_lock_time: s.loose_int("AutoLockTime"),
            filevault_enabled: s.loose_bool("FDE_Enabled"),
            filevault_has_personal_recovery_key: s.loose_bool("FDE_HasPersonalRecoveryKey"),
            filevault_has_institutional_recovery_key: s.loose_bool("FDE_HasInstitutionalRecoveryKey"),
            system_integrity_protection_enabled: s.loose_bool("SystemIntegrityProtectionEnabled"),
            firewall_enabled: s.loose_dict("FirewallSettings").and_then(|f| f.loose_bool("FirewallEnabled")),
            enrolled_via_dep: from_management("EnrolledViaDEP"),
            user_approved_enrollment: from_management("UserApprovedEnrollment"),
            is_user_enrollment: from_management("IsUserEnrollment"),
            is_activation_lock_manageable: from_management("IsActivationLockManageable"),
            secure_boot_level: s.loose_dict("SecureBoot").and_then(|b| b.loose_string("SecureBootLevel")),
            remote_desktop_enabled: s.loose_bool("RemoteDesktopEnabled"),
            authenticated_root_volume_enabled: s.loose_bool("AuthenticatedRootVolumeEnabled"),
            bootstrap_token_allowed_for_authentication: s.loose_string("BootstrapTokenAllowedForAuthentication"),
            is_recovery_lock_enabled: s.loose_bool("IsRecoveryLockEnabled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use plist::Value;

    use super::*;
    use crate::protocol::testutil::fixture;
    use crate::protocol::value::to_xml;

    fn body(pairs: Vec<(&str, Value)>) -> Vec<u8> {
        let mut d = Dictionary::new();
        for (k, v) in pairs {
            d.insert(k.to_owned(), v);
        }
        to_xml(&Value::Dictionary(d))
    }

    fn s(v: &str) -> Value {
        Value::String(v.to_owned())
    }

    #[test]
    fn device_information_fixture() {
        let r = parse(&fixture("DeviceInformation.1.plist")).expect("parse");
        assert_eq!(r.status, CommandStatus::Acknowledged);
        assert_eq!(r.ids.device_id, "66ADE930-5FDF-5EC4-8429-15640684C489");
        assert_eq!(r.command_uuid.as_deref(), Some("76eda240-5488-4989-8339-f2ae160113c4"));
        assert_eq!(r.request_type.as_deref(), Some("DeviceInformation"));
        assert_eq!(r.error_chain, None);
        let info = r.device_information().expect("QueryResponses");
        assert_eq!(info.host_name.as_deref(), Some("fruit.example.com"));
        assert_eq!(info.udid.as_deref(), Some(r.ids.device_id.as_str()));
        assert_eq!(info.serial_number, None);
        assert!(r.security_info().is_none());

        let j = r.to_json();
        assert_eq!(j["Status"], "Acknowledged");
        assert_eq!(j["QueryResponses"]["HostName"], "fruit.example.com");
    }

    #[test]
    fn idle_needs_no_command_uuid() {
        let r = parse(&body(vec![("Status", s("Idle")), ("UDID", s("U1"))])).expect("idle");
        assert_eq!(r.status, CommandStatus::Idle);
        assert_eq!(r.command_uuid, None);
        assert!(!r.status.is_final());
    }

    #[test]
    fn statuses_round_trip() {
        for st in [
            CommandStatus::Idle,
            CommandStatus::Acknowledged,
            CommandStatus::Error,
            CommandStatus::CommandFormatError,
            CommandStatus::NotNow,
        ] {
            assert_eq!(CommandStatus::from_apple(st.as_str()), Some(st));
            assert_eq!(st.to_string(), st.as_str());
        }
        assert!(CommandStatus::Error.is_final());
        assert!(!CommandStatus::NotNow.is_final());
    }

    #[test]
    fn error_report_with_chain() {
        let mut item = Dictionary::new();
        item.insert("ErrorCode".into(), Value::Integer(1009i64.into()));
        item.insert("ErrorDomain".into(), s("MCProfileErrorDomain"));
        item.insert("LocalizedDescription".into(), s("Le profil ..."));
        item.insert("USEnglishDescription".into(), s("The profile is not signed."));
        let r = parse(&body(vec![
            ("Status", s("Error")),
            ("UDID", s("U1")),
            ("CommandUUID", s("C1")),
            ("ErrorChain", Value::Array(vec![Value::Dictionary(item.clone())])),
            ("Stamp", Value::Data(vec![0xff, 0x00])),
            ("When", Value::Date(plist::Date::from_xml_format("2025-01-02T03:04:05Z").expect("date"))),
        ]))
        .expect("error report");
        assert_eq!(r.status, CommandStatus::Error);
        let chain = r.error_chain.as_ref().expect("chain");
        assert_eq!(chain[0].error_code, Some(1009));
        assert_eq!(r.error_summary().as_deref(), Some("MCProfileErrorDomain 1009: The profile is not signed."));
        let j = r.to_json();
        assert_eq!(j["ErrorChain"][0]["ErrorCode"], 1009);
        assert_eq!(j["Stamp"], "/wA=");
        assert_eq!(j["When"], "2025-01-02T03:04:05Z");
    }

    #[test]
    fn report_errors_name_the_key() {
        let e = parse(&body(vec![("UDID", s("U1"))])).unwrap_err();
        assert_eq!(e, ProtocolError::MissingKey("Status".into()));

        let e = parse(&body(vec![("Status", s("Maybe")), ("UDID", s("U1"))])).unwrap_err();
        assert_eq!(e, ProtocolError::UnknownStatus("Maybe".into()));

        let e = parse(&body(vec![("Status", s("Acknowledged")), ("UDID", s("U1"))])).unwrap_err();
        assert_eq!(e, ProtocolError::MissingKey("CommandUUID".into()));

        let e = parse(&body(vec![("Status", s("Idle"))])).unwrap_err();
        assert_eq!(e, ProtocolError::MissingKey("UDID".into()));

        let e =
            parse(&body(vec![("Status", s("Error")), ("UDID", s("U1")), ("CommandUUID", s("C1")), ("ErrorChain", s("oops"))])).unwrap_err();
        assert!(matches!(e, ProtocolError::WrongType { ref key, .. } if key == "ErrorChain"));

        assert!(matches!(parse(b"{}"), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn typed_device_information() {
        let mut q = Dictionary::new();
        q.insert("DeviceName".into(), s("Room 4 iPad 12"));
        q.insert("SerialNumber".into(), s("DMPXX123"));
        q.insert("IsSupervised".into(), Value::Boolean(true));
        q.insert("DeviceCapacity".into(), Value::Real(64.0));
        q.insert("AvailableDeviceCapacity".into(), Value::Integer(20i64.into()));
        q.insert("BatteryLevel".into(), Value::Real(0.75));
        q.insert("WiFiMAC".into(), s("aa:bb:cc:dd:ee:ff"));
        q.insert("IMEI".into(), Value::Boolean(true)); // wrong type: read as absent
        let r = parse(&body(vec![
            ("Status", s("Acknowledged")),
            ("UDID", s("U1")),
            ("CommandUUID", s("C1")),
            ("QueryResponses", Value::Dictionary(q)),
        ]))
        .expect("parse");
        let info = r.device_information().expect("info");
        assert_eq!(info.device_name.as_deref(), Some("Room 4 iPad 12"));
        assert_eq!(info.is_supervised, Some(true));
        assert_eq!(info.device_capacity, Some(64.0));
        assert_eq!(info.available_device_capacity, Some(20.0));
        assert_eq!(info.battery_level, Some(0.75));
        assert_eq!(info.wifi_mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(info.imei, None);
    }

    #[test]
    fn typed_security_info() {
        let mut mgmt = Dictionary::new();
        mgmt.insert("EnrolledViaDEP".into(), Value::Boolean(true));
        mgmt.insert("UserApprovedEnrollment".into(), Value::Boolean(true));
        let mut fw = Dictionary::new();
        fw.insert("FirewallEnabled".into(), Value::Boolean(false));
        let mut si = Dictionary::new();
        si.insert("HardwareEncryptionCaps".into(), Value::Integer(3i64.into()));
        si.insert("PasscodePresent".into(), Value::Boolean(true));
        si.insert("PasscodeCompliant".into(), Value::Boolean(false));
        si.insert("FDE_Enabled".into(), Value::Boolean(true));
        si.insert("ManagementStatus".into(), Value::Dictionary(mgmt));
        si.insert("FirewallSettings".into(), Value::Dictionary(fw));
        let r = parse(&body(vec![
            ("Status", s("Acknowledged")),
            ("UDID", s("U1")),
            ("CommandUUID", s("C1")),
            ("SecurityInfo", Value::Dictionary(si)),
        ]))
        .expect("parse");
        let info = r.security_info().expect("security info");
        assert_eq!(info.hardware_encryption_caps, Some(3));
        assert_eq!(info.passcode_present, Some(true));
        assert_eq!(info.passcode_compliant, Some(false));
        assert_eq!(info.filevault_enabled, Some(true));
        assert_eq!(info.enrolled_via_dep, Some(true));
        assert_eq!(info.user_approved_enrollment, Some(true));
        assert_eq!(info.firewall_enabled, Some(false));
        assert_eq!(info.is_user_enrollment, None);
    }
}
