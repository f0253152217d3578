//! Commands Lanyard sends to devices: typed [`Command`]s, built from JSON fields that use
//! Apple's own key names ([`Command::from_json`]) and encoded as the XML plist a device fetches
//! from the connect endpoint ([`Command::to_plist`]).
//!
//! Field names, types, required keys and allowed values follow Apple's `mdm/commands/*.yaml`,
//! written out by hand per command. Every check names the offending field (`PIN`,
//! `Queries[2]`, `Settings[0].Enabled`) so the operator API can point at it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use plist::{Dictionary, Value};
use serde_json::{Map, Value as Json};

use super::value::{dict_to_json, to_xml};

/// A field of a command request that is missing, unknown, of the wrong type, or has a value
/// Apple does not allow. `field` is Apple's key name, with a path for nested values
/// (`ReturnToService.Enabled`, `Queries[3]`), or `request_type` for an unknown command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Which field is wrong.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Every `DeviceInformation` query name Apple's schema allows.
pub const DEVICE_INFORMATION_QUERIES: &[&str] = &[
    "UDID",
    "ProvisioningUDID",
    "OrganizationInfo",
    "MDMOptions",
    "LastCloudBackupDate",
    "AwaitingConfiguration",
    "iTunesStoreAccountIsActive",
    "iTunesStoreAccountHash",
    "DeviceName",
    "OSVersion",
    "SupplementalOSVersionExtra",
    "BuildVersion",
    "SupplementalBuildVersion",
    "ModelName",
    "Model",
    "ModelNumber",
    "IsAppleSilicon",
    "ProductName",
    "SerialNumber",
    "DeviceCapacity",
    "AvailableDeviceCapacity",
    "IMEI",
    "MEID",
    "ModemFirmwareVersion",
    "CellularTechnology",
    "BatteryLevel",
    "HasBattery",
    "IsSupervised",
    "IsMultiUser",
    "IsDeviceLocatorServiceEnabled",
    "IsActivationLockEnabled",
    "IsActivationLockSupported",
    "IsDoNotDisturbInEffect",
    "DeviceID",
    "EASDeviceIdentifier",
    "IsCloudBackupEnabled",
    "ActiveManagedUsers",
    "OSUpdateSettings",
    "LocalHostName",
    "HostName",
    "AutoSetupAdminAccounts",
    "SystemIntegrityProtectionEnabled",
    "SupportsLOMDevice",
    "IsMDMLostModeEnabled",
    "MaximumResidentUsers",
    "EstimatedResidentUsers",
    "QuotaSize",
    "ResidentUsers",
    "UserSessionTimeout",
    "TemporarySessionTimeout",
    "TemporarySessionOnly",
    "ManagedAppleIDDefaultDomains",
    "OnlineAuthenticationGracePeriod",
    "SkipLanguageAndLocaleSetupForNewUsers",
    "PushToken",
    "DiagnosticSubmissionEnabled",
    "AppAnalyticsEnabled",
    "TimeZone",
    "ICCID",
    "BluetoothMAC",
    "WiFiMAC",
    "EthernetMAC",
    "CurrentCarrierNetwork",
    "SIMCarrierNetwork",
    "SubscriberCarrierNetwork",
    "CarrierSettingsVersion",
    "PhoneNumber",
    "DataRoamingEnabled",
    "VoiceRoamingEnabled",
    "PersonalHotspotEnabled",
    "IsNetworkTethered",
    "IsRoaming",
    "SubscriberMCC",
    "SubscriberMNC",
    "CurrentMCC",
    "CurrentMNC",
    "ServiceSubscriptions",
    "PINRequiredForEraseDevice",
    "PINRequiredForDeviceLock",
    "SupportsiOSAppInstalls",
    "SoftwareUpdateDeviceID",
    "SoftwareUpdateSettings",
    "AccessibilitySettings",
    "DevicePropertiesAttestation",
    "EACSPreflight",
];

/// The queries [`DeviceInformation::inventory`] asks for: what the inventory records.
pub const INVENTORY_QUERIES: &[&str] = &[
    "UDID",
    "DeviceName",
    "SerialNumber",
    "Model",
    "ModelName",
    "ModelNumber",
    "ProductName",
    "OSVersion",
    "BuildVersion",
    "IsSupervised",
    "IsMultiUser",
    "IsAppleSilicon",
    "DeviceCapacity",
    "AvailableDeviceCapacity",
    "BatteryLevel",
    "WiFiMAC",
    "BluetoothMAC",
    "EthernetMAC",
    "IMEI",
    "MEID",
    "ICCID",
    "PhoneNumber",
    "IsActivationLockEnabled",
    "IsDeviceLocatorServiceEnabled",
    "IsMDMLostModeEnabled",
    "IsCloudBackupEnabled",
    "AwaitingConfiguration",
    "HostName",
    "LocalHostName",
    "TimeZone",
];

/// `InstalledApplicationList` `Items` values Apple's schema allows.
pub const INSTALLED_APPLICATION_ITEMS: &[&str] = &[
    "AdHocCodeSigned",
    "AppStoreVendable",
    "BetaApp",
    "BundleSize",
    "DeviceBasedVPP",
    "DistributorIdentifier",
    "DynamicSize",
    "ExternalVersionIdentifier",
    "HasUpdateAvailable",
    "Identifier",
    "Installing",
    "IsAppClip",
    "IsValidated",
    "Name",
    "ShortVersion",
    "Version",
];

/// `EraseDevice` `ObliterationBehavior` values.
pub const OBLITERATION_BEHAVIORS: &[&str] = &["Default", "DoNotObliterate", "ObliterateWithWarning", "Always"];

/// `DeviceInformation`: ask the device for the named properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInformation {
    /// `Queries`: names from [`DEVICE_INFORMATION_QUERIES`].
    pub queries: Vec<String>,
    /// `DeviceAttestationNonce`: asks for a fresh `DevicePropertiesAttestation`.
    pub device_attestation_nonce: Option<Vec<u8>>,
}

impl DeviceInformation {
    /// The queries the inventory needs ([`INVENTORY_QUERIES`]).
    pub fn inventory() -> Self {
        Self { queries: INVENTORY_QUERIES.iter().map(|q| (*q).to_owned()).collect(), device_attestation_nonce: None }
    }
}

/// `ProfileList`: list the installed configuration profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileList {
    /// `ManagedOnly`: only profiles this MDM installed.
    pub managed_only: Option<bool>,
}

/// `InstallProfile`: install a configuration profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallProfile {
    /// `Payload`: the profile, an XML or binary plist or a CMS-signed (DER) one.
    pub payload: Vec<u8>,
}

/// `RemoveProfile`: remove the profile with this `PayloadIdentifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveProfile {
    /// `Identifier`: the profile's top-level `PayloadIdentifier`.
    pub identifier: String,
}

/// `InstalledApplicationList`: list installed apps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledApplicationList {
    /// `Identifiers`: only these bundle identifiers.
    pub identifiers: Option<Vec<String>>,
    /// `ManagedAppsOnly`: only apps this MDM manages.
    pub managed_apps_only: Option<bool>,
    /// `Items`: which properties to return, from [`INSTALLED_APPLICATION_ITEMS`].
    pub items: Option<Vec<String>>,
}

/// `CertificateList`: list installed certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateList {
    /// `ManagedOnly`: only certificates this MDM installed.
    pub managed_only: Option<bool>,
}

/// `DeviceLock`: lock the screen now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceLock {
    /// `Message`: shown on the Lock Screen.
    pub message: Option<String>,
    /// `PhoneNumber`: shown on the Lock Screen.
    pub phone_number: Option<String>,
    /// `PIN`: six digits, the Find My PIN that unlocks a Mac.
    pub pin: Option<String>,
}

/// `EnableLostMode`: put a supervised device into Lost Mode. Needs a `Message` or a
/// `PhoneNumber`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnableLostMode {
    /// `Message`: shown on the Lock Screen.
    pub message: Option<String>,
    /// `PhoneNumber`: shown on the Lock Screen.
    pub phone_number: Option<String>,
    /// `Footnote`: shown instead of "Slide to Unlock".
    pub footnote: Option<String>,
}

/// `RestartDevice`: restart the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartDevice {
    /// `NotifyUser` (macOS): let the user save work; restart once they agree.
    pub notify_user: Option<bool>,
    /// `RebuildKernelCache` (macOS).
    pub rebuild_kernel_cache: Option<bool>,
    /// `KextPaths` (macOS): kernel extensions to add to the cache.
    pub kext_paths: Option<Vec<String>>,
}

/// `ReturnToService` of an `EraseDevice`: re-enrol on its own after the erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnToService {
    /// `Enabled`.
    pub enabled: bool,
    /// `WiFiProfileData`: a Wi-Fi profile to join first.
    pub wifi_profile_data: Option<Vec<u8>>,
    /// `MDMProfileData`: the enrolment profile to install.
    pub mdm_profile_data: Option<Vec<u8>>,
}

/// `EraseDevice`: erase all content and settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EraseDevice {
    /// `PIN`: six digits, the Find My PIN that unlocks an erased Mac.
    pub pin: Option<String>,
    /// `PreserveDataPlan`: keep the eSIM data plan.
    pub preserve_data_plan: Option<bool>,
    /// `DisallowProximitySetup`: skip Quick Start on the next setup.
    pub disallow_proximity_setup: Option<bool>,
    /// `ObliterationBehavior` (macOS), from [`OBLITERATION_BEHAVIORS`].
    pub obliteration_behavior: Option<String>,
    /// `ReturnToService`.
    pub return_to_service: Option<ReturnToService>,
}

/// `ClearPasscode`: remove the passcode, with the token the device sent at `TokenUpdate`.
///
/// The operator never supplies the token: a queued ClearPasscode has none (`None`), so neither
/// its stored payload nor its `fields` hold the secret, and Lanyard fills in each device's own
/// token, unsealed, only in the plist it hands that device ([`Command::with_unlock_token`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClearPasscode {
    /// `UnlockToken`: the device's unlock token, set only when the command is delivered.
    pub unlock_token: Option<Vec<u8>>,
}

/// `Settings`: change device settings. Each item is a dictionary with an `Item` key naming the
/// setting (`DeviceName`, `Bluetooth`, `Wallpaper`, ...), checked against Apple's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `Settings`: the items, as they will be sent.
    pub settings: Vec<Dictionary>,
}

/// A command for a device, by its `RequestType`.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `DeviceInformation`.
    DeviceInformation(DeviceInformation),
    /// `SecurityInfo`.
    SecurityInfo,
    /// `ProfileList`.
    ProfileList(ProfileList),
    /// `InstallProfile`.
    InstallProfile(InstallProfile),
    /// `RemoveProfile`.
    RemoveProfile(RemoveProfile),
    /// `InstalledApplicationList`.
    InstalledApplicationList(InstalledApplicationList),
    /// `CertificateList`.
    CertificateList(CertificateList),
    /// `DeviceLock`.
    DeviceLock(DeviceLock),
    /// `EnableLostMode`.
    EnableLostMode(EnableLostMode),
    /// `DisableLostMode`.
    DisableLostMode,
    /// `DeviceLocation`: where is a device in Lost Mode.
    DeviceLocation,
    /// `PlayLostModeSound`.
    PlayLostModeSound,
    /// `RestartDevice`.
    RestartDevice(RestartDevice),
    /// `ShutDownDevice`.
    ShutDownDevice,
    /// `EraseDevice`.
    EraseDevice(EraseDevice),
    /// `ClearPasscode`.
    ClearPasscode(ClearPasscode),
    /// `Settings`.
    Settings(Settings),
    /// `DeviceConfigured`: let a device waiting in Setup Assistant (`AwaitingConfiguration`)
    /// go on.
    DeviceConfigured,
    /// `ActivationLockBypassCode`: the code a supervised device made to lift its Activation
    /// Lock (available for 15 days after supervision).
    ActivationLockBypassCode,
    /// `DeclarativeManagement`: turn Declarative Device Management on, or tell the device its
    /// declarations changed; `Data` is the `tokens` answer (JSON) when given.
    DeclarativeManagement(Option<Vec<u8>>),
}

impl Command {
    /// Every `RequestType` [`Command::from_json`] accepts.
    pub const REQUEST_TYPES: &'static [&'static str] = &[
        "DeviceInformation",
        "SecurityInfo",
        "ProfileList",
        "InstallProfile",
        "RemoveProfile",
        "InstalledApplicationList",
        "CertificateList",
        "DeviceLock",
        "EnableLostMode",
        "DisableLostMode",
        "DeviceLocation",
        "PlayLostModeSound",
        "RestartDevice",
        "ShutDownDevice",
        "EraseDevice",
        "ClearPasscode",
        "Settings",
        "DeviceConfigured",
        "ActivationLockBypassCode",
        "DeclarativeManagement",
    ];

    /// Apple's `RequestType`.
    pub fn request_type(&self) -> &'static str {
        match self {
            Self::DeviceInformation(_) => "DeviceInformation",
            Self::SecurityInfo => "SecurityInfo",
            Self::ProfileList(_) => "ProfileList",
            Self::InstallProfile(_) => "InstallProfile",
            Self::RemoveProfile(_) => "RemoveProfile",
            Self::InstalledApplicationList(_) => "InstalledApplicationList",
            Self::CertificateList(_) => "CertificateList",
            Self::DeviceLock(_) => "DeviceLock",
            Self::EnableLostMode(_) => "EnableLostMode",
            Self::DisableLostMode => "DisableLostMode",
            Self::DeviceLocation => "DeviceLocation",
            Self::PlayLostModeSound => "PlayLostModeSound",
            Self::RestartDevice(_) => "RestartDevice",
            Self::ShutDownDevice => "ShutDownDevice",
            Self::EraseDevice(_) => "EraseDevice",
            Self::ClearPasscode(_) => "ClearPasscode",
            Self::Settings(_) => "Settings",
            Self::DeviceConfigured => "DeviceConfigured",
            Self::ActivationLockBypassCode => "ActivationLockBypassCode",
            Self::DeclarativeManagement(_) => "DeclarativeManagement",
        }
    }

    /// Builds a command from its `RequestType` and its fields in Apple's key names, as the
    /// operator API receives them: data (`Payload`, `UnlockToken`, `Image` ...) as standard
    /// base64, everything else in its natural JSON type. A `null` field counts as absent.
    pub fn from_json(request_type: &str, fields: &Map<String, Json>) -> Result<Command, FieldError> {
        let f = |allowed: &'static [&'static str]| Fields::new(request_type, fields, allowed);
        Ok(match request_type {
            "DeviceInformation" => {
                let f = f(&["Queries", "DeviceAttestationNonce"])?;
                let queries = f.req_strings("Queries")?;
                if queries.is_empty() {
                    return Err(FieldError::new("Queries", "must name at least one query"));
                }
                check_allowed(&queries, DEVICE_INFORMATION_QUERIES, "Queries", "query")?;
                Self::DeviceInformation(DeviceInformation { queries, device_attestation_nonce: f.data("DeviceAttestationNonce")? })
            }
            "SecurityInfo" => f(&[]).map(|_| Self::SecurityInfo)?,
            "ProfileList" => {
                let f = f(&["ManagedOnly"])?;
                Self::ProfileList(ProfileList { managed_only: f.bool("ManagedOnly")? })
            }
            "InstallProfile" => {
                let f = f(&["Payload"])?;
                let payload = f.req_data("Payload")?;
                check_profile_payload(&payload)?;
                Self::InstallProfile(InstallProfile { payload })
            }
            "RemoveProfile" => {
                let f = f(&["Identifier"])?;
                let identifier = f.req_string("Identifier")?;
                if identifier.trim().is_empty() {
                    return Err(FieldError::new("Identifier", "must not be empty"));
                }
                Self::RemoveProfile(RemoveProfile { identifier })
            }
            "InstalledApplicationList" => {
                let f = f(&["Identifiers", "ManagedAppsOnly", "Items"])?;
                let items = f.strings("Items")?;
                if let Some(items) = &items {
                    check_allowed(items, INSTALLED_APPLICATION_ITEMS, "Items", "item")?;
                }
                Self::InstalledApplicationList(InstalledApplicationList {
                    identifiers: f.strings("Identifiers")?,
                    managed_apps_only: f.bool("ManagedAppsOnly")?,
                    items,
                })
            }
            "CertificateList" => {
                let f = f(&["ManagedOnly"])?;
                Self::CertificateList(CertificateList { managed_only: f.bool("ManagedOnly")? })
            }
            "DeviceLock" => {
                let f = f(&["Message", "PhoneNumber", "PIN"])?;
                Self::DeviceLock(DeviceLock { message: f.string("Message")?, phone_number: f.string("PhoneNumber")?, pin: f.pin("PIN")? })
            }
            "EnableLostMode" => {
                let f = f(&["Message", "PhoneNumber", "Footnote"])?;
                let cmd = EnableLostMode {
                    message: f.string("Message")?,
                    phone_number: f.string("PhoneNumber")?,
                    footnote: f.string("Footnote")?,
                };
                if cmd.message.is_none() && cmd.phone_number.is_none() {
                    return Err(FieldError::new("Message", "EnableLostMode needs a Message or a PhoneNumber"));
                }
                Self::EnableLostMode(cmd)
            }
            "DisableLostMode" => f(&[]).map(|_| Self::DisableLostMode)?,
            "DeviceLocation" => f(&[]).map(|_| Self::DeviceLocation)?,
            "PlayLostModeSound" => f(&[]).map(|_| Self::PlayLostModeSound)?,
            "RestartDevice" => {
                let f = f(&["NotifyUser", "RebuildKernelCache", "KextPaths"])?;
                Self::RestartDevice(RestartDevice {
                    notify_user: f.bool("NotifyUser")?,
                    rebuild_kernel_cache: f.bool("RebuildKernelCache")?,
                    kext_paths: f.strings("KextPaths")?,
                })
            }
            "ShutDownDevice" => f(&[]).map(|_| Self::ShutDownDevice)?,
            "EraseDevice" => {
                let f = f(&["PIN", "PreserveDataPlan", "DisallowProximitySetup", "ObliterationBehavior", "ReturnToService"])?;
                let obliteration_behavior = f.string("ObliterationBehavior")?;
                if let Some(b) = &obliteration_behavior
                    && !OBLITERATION_BEHAVIORS.contains(&b.as_str())
                {
                    return Err(FieldError::new(
                        "ObliterationBehavior",
                        format!("unknown value `{b}`; allowed: {}", OBLITERATION_BEHAVIORS.join(", ")),
                    ));
                }
                let return_to_service = match f.object("ReturnToService")? {
                    None => None,
                    Some(rts) => {
                        let r = f.nested("ReturnToService", rts, &["Enabled", "WiFiProfileData", "MDMProfileData"])?;
                        Some(ReturnToService {
                            enabled: r.req_bool("Enabled")?,
                            wifi_profile_data: r.data("WiFiProfileData")?,
                            mdm_profile_data: r.data("MDMProfileData")?,
                        })
                    }
                };
                Self::EraseDevice(EraseDevice {
                    pin: f.pin("PIN")?,
                    preserve_data_plan: f.bool("PreserveDataPlan")?,
                    disallow_proximity_setup: f.bool("DisallowProximitySetup")?,
                    obliteration_behavior,
                    return_to_service,
                })
            }
            "ClearPasscode" => {
                // Lanyard fills in each device's own token when it delivers the command. An
                // `UnlockToken` sent by an older client is still accepted (and must be base64),
                // but ignored: it is never stored, and the device's own token is what is sent.
                let f = f(&["UnlockToken"])?;
                let _ignored = f.data("UnlockToken")?;
                Self::ClearPasscode(ClearPasscode { unlock_token: None })
            }
            "Settings" => {
                let f = f(&["Settings"])?;
                let items = f.req_array("Settings")?;
                if items.is_empty() {
                    return Err(FieldError::new("Settings", "must hold at least one item"));
                }
                let settings =
                    items.iter().enumerate().map(|(i, item)| settings_item(item, &format!("Settings[{i}]"))).collect::<Result<_, _>>()?;
                Self::Settings(Settings { settings })
            }
            "DeviceConfigured" => f(&[]).map(|_| Self::DeviceConfigured)?,
            "ActivationLockBypassCode" => f(&[]).map(|_| Self::ActivationLockBypassCode)?,
            "DeclarativeManagement" => Self::DeclarativeManagement(f(&["Data"])?.data("Data")?),
            other => {
                return Err(FieldError::new(
                    "request_type",
                    format!("unknown request type `{other}`; supported: {}", Self::REQUEST_TYPES.join(", ")),
                ));
            }
        })
    }

    /// The `Command` dictionary: `RequestType` followed by the command's keys.
    pub fn command_dict(&self) -> Dictionary {
        let mut d = DictBuilder::default();
        d.put("RequestType", Value::String(self.request_type().to_owned()));
        match self {
            Self::DeviceInformation(c) => {
                d.strings("Queries", Some(&c.queries));
                d.data("DeviceAttestationNonce", c.device_attestation_nonce.as_deref());
            }
            Self::ProfileList(c) => d.bool("ManagedOnly", c.managed_only),
            Self::InstallProfile(c) => d.data("Payload", Some(&c.payload)),
            Self::RemoveProfile(c) => d.string("Identifier", Some(&c.identifier)),
            Self::InstalledApplicationList(c) => {
                d.strings("Identifiers", c.identifiers.as_deref());
                d.bool("ManagedAppsOnly", c.managed_apps_only);
                d.strings("Items", c.items.as_deref());
            }
            Self::CertificateList(c) => d.bool("ManagedOnly", c.managed_only),
            Self::DeviceLock(c) => {
                d.string("Message", c.message.as_deref());
                d.string("PhoneNumber", c.phone_number.as_deref());
                d.string("PIN", c.pin.as_deref());
            }
            Self::EnableLostMode(c) => {
                d.string("Message", c.message.as_deref());
                d.string("PhoneNumber", c.phone_number.as_deref());
                d.string("Footnote", c.footnote.as_deref());
            }
            Self::RestartDevice(c) => {
                d.bool("NotifyUser", c.notify_user);
                d.bool("RebuildKernelCache", c.rebuild_kernel_cache);
                d.strings("KextPaths", c.kext_paths.as_deref());
            }
            Self::EraseDevice(c) => {
                d.string("PIN", c.pin.as_deref());
                d.bool("PreserveDataPlan", c.preserve_data_plan);
                d.bool("DisallowProximitySetup", c.disallow_proximity_setup);
                d.string("ObliterationBehavior", c.obliteration_behavior.as_deref());
                if let Some(r) = &c.return_to_service {
                    let mut rd = DictBuilder::default();
                    rd.bool("Enabled", Some(r.enabled));
                    rd.data("WiFiProfileData", r.wifi_profile_data.as_deref());
                    rd.data("MDMProfileData", r.mdm_profile_data.as_deref());
                    d.put("ReturnToService", Value::Dictionary(rd.0));
                }
            }
            Self::ClearPasscode(c) => d.data("UnlockToken", c.unlock_token.as_deref()),
            Self::DeclarativeManagement(data) => d.data("Data", data.as_deref()),
            Self::Settings(c) => d.put("Settings", Value::Array(c.settings.iter().cloned().map(Value::Dictionary).collect())),
            Self::SecurityInfo
            | Self::DisableLostMode
            | Self::DeviceLocation
            | Self::PlayLostModeSound
            | Self::ShutDownDevice
            | Self::DeviceConfigured
            | Self::ActivationLockBypassCode => {}
        }
        d.0
    }

    /// The XML plist the server sends: `{CommandUUID, Command: {RequestType, ...}}`.
    pub fn to_plist(&self, command_uuid: &str) -> Vec<u8> {
        let mut envelope = Dictionary::new();
        envelope.insert("CommandUUID".to_owned(), Value::String(command_uuid.to_owned()));
        envelope.insert("Command".to_owned(), Value::Dictionary(self.command_dict()));
        to_xml(&Value::Dictionary(envelope))
    }

    /// This command as delivered to one device: a `ClearPasscode` gets that device's unlock
    /// token; every other command is unchanged.
    pub fn with_unlock_token(self, token: Vec<u8>) -> Command {
        match self {
            Self::ClearPasscode(_) => Self::ClearPasscode(ClearPasscode { unlock_token: Some(token) }),
            other => other,
        }
    }

    /// The command's fields as JSON in Apple's key names, without `RequestType`: the inverse
    /// of [`Command::from_json`] (data as base64), for storing or showing a command.
    pub fn fields_json(&self) -> Map<String, Json> {
        let mut d = self.command_dict();
        d.remove("RequestType");
        match dict_to_json(&d) {
            Json::Object(map) => map,
            _ => Map::new(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.request_type())
    }
}

/// Builds a plist dictionary, skipping absent optional values.
#[derive(Default)]
struct DictBuilder(Dictionary);

impl DictBuilder {
    fn put(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_owned(), value);
    }

    fn string(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.put(key, Value::String(v.to_owned()));
        }
    }

    fn bool(&mut self, key: &str, value: Option<bool>) {
        if let Some(v) = value {
            self.put(key, Value::Boolean(v));
        }
    }

    fn data(&mut self, key: &str, value: Option<&[u8]>) {
        if let Some(v) = value {
            self.put(key, Value::Data(v.to_vec()));
        }
    }

    fn strings(&mut self, key: &str, value: Option<&[String]>) {
        if let Some(v) = value {
            let items = v.iter().map(|s| Value::String(s.clone())).collect();
            self.put(key, Value::Array(items));
        }
    }
}

/// Reads the JSON fields of one command (or of a nested dictionary), naming the field in every
/// error.
struct Fields<'a> {
    map: &'a Map<String, Json>,
    /// Path of this dictionary (`""` for the command itself), for error field names.
    path: String,
}

impl<'a> Fields<'a> {
    /// Rejects keys the command does not take.
    fn new(request_type: &str, map: &'a Map<String, Json>, allowed: &[&str]) -> Result<Self, FieldError> {
        check_keys(map, allowed, "", request_type)?;
        Ok(Self { map, path: String::new() })
    }

    /// Fields of a nested dictionary found under `key`.
    fn nested(&self, key: &str, map: &'a Map<String, Json>, allowed: &[&str]) -> Result<Fields<'a>, FieldError> {
        let path = self.field(key);
        check_keys(map, allowed, &path, key)?;
        Ok(Fields { map, path })
    }

    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value under `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, FieldError> {
        value.ok_or_else(|| FieldError::new(self.field(key), "required"))
    }

    fn string(&self, key: &str) -> Result<Option<String>, FieldError> {
        self.get(key).map(|v| want_string(v, &self.field(key))).transpose()
    }

    fn req_string(&self, key: &str) -> Result<String, FieldError> {
        let v = self.string(key)?;
        self.required(key, v)
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        self.get(key).map(|v| want_bool(v, &self.field(key))).transpose()
    }

    fn req_bool(&self, key: &str) -> Result<bool, FieldError> {
        let v = self.bool(key)?;
        self.required(key, v)
    }

    fn data(&self, key: &str) -> Result<Option<Vec<u8>>, FieldError> {
        self.get(key).map(|v| want_data(v, &self.field(key))).transpose()
    }

    fn req_data(&self, key: &str) -> Result<Vec<u8>, FieldError> {
        let v = self.data(key)?;
        self.required(key, v)
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, FieldError> {
        self.get(key).map(|v| want_strings(v, &self.field(key))).transpose()
    }

    fn req_strings(&self, key: &str) -> Result<Vec<String>, FieldError> {
        let v = self.strings(key)?;
        self.required(key, v)
    }

    fn req_array(&self, key: &str) -> Result<&'a Vec<Json>, FieldError> {
        let v = self.get(key);
        let v = self.required(key, v)?;
        v.as_array().ok_or_else(|| FieldError::new(self.field(key), "must be an array"))
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Json>>, FieldError> {
        self.get(key).map(|v| v.as_object().ok_or_else(|| FieldError::new(self.field(key), "must be an object"))).transpose()
    }

    /// A Find My PIN: exactly six digits.
    fn pin(&self, key: &str) -> Result<Option<String>, FieldError> {
        let pin = self.string(key)?;
        if let Some(p) = &pin
            && !(p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(FieldError::new(self.field(key), "must be exactly six digits"));
        }
        Ok(pin)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// Fails on the first key of `map` not in `allowed`.
fn check_keys(map: &Map<String, Json>, allowed: &[&str], path: &str, owner: &str) -> Result<(), FieldError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if allowed.is_empty() => Err(FieldError::new(join(path, k), format!("unknown key: {owner} takes no fields"))),
        Some(k) => Err(FieldError::new(join(path, k), format!("unknown key for {owner}; allowed: {}", allowed.join(", ")))),
    }
}

/// Fails on the first value not in `allowed`, naming it as `field[i]`.
fn check_allowed(values: &[String], allowed: &[&str], field: &str, what: &str) -> Result<(), FieldError> {
    for (i, v) in values.iter().enumerate() {
        if !allowed.contains(&v.as_str()) {
            return Err(FieldError::new(format!("{field}[{i}]"), format!("unknown {what} `{v}`; allowed: {}", allowed.join(", "))));
        }
    }
    Ok(())
}

/// An `InstallProfile` payload must be a plist dictionary or DER CMS signed data.
fn check_profile_payload(payload: &[u8]) -> Result<(), FieldError> {
    if payload.first() == Some(&0x30) {
        return Ok(()); // DER SEQUENCE: a signed profile, checked by the device.
    }
    match Value::from_reader(std::io::Cursor::new(payload)) {
        Ok(Value::Dictionary(d)) if d.contains_key("PayloadType") => Ok(()),
        Ok(_) => Err(FieldError::new("Payload", "not a configuration profile (no top-level PayloadType)")),
        Err(e) => Err(FieldError::new("Payload", format!("not a profile: neither a plist nor CMS signed data ({e})"))),
    }
}

fn want_string(v: &Json, field: &str) -> Result<String, FieldError> {
    v.as_str().map(str::to_owned).ok_or_else(|| FieldError::new(field, "must be a string"))
}

fn want_bool(v: &Json, field: &str) -> Result<bool, FieldError> {
    v.as_bool().ok_or_else(|| FieldError::new(field, "must be a boolean"))
}

fn want_int(v: &Json, field: &str) -> Result<i64, FieldError> {
    v.as_i64().ok_or_else(|| FieldError::new(field, "must be an integer"))
}

fn want_data(v: &Json, field: &str) -> Result<Vec<u8>, FieldError> {
    let text = v.as_str().ok_or_else(|| FieldError::new(field, "must be a base64 string"))?;
    BASE64.decode(text.trim()).map_err(|e| FieldError::new(field, format!("must be standard base64: {e}")))
}

fn want_strings(v: &Json, field: &str) -> Result<Vec<String>, FieldError> {
    let items = v.as_array().ok_or_else(|| FieldError::new(field, "must be an array of strings"))?;
    items.iter().enumerate().map(|(i, item)| want_string(item, &format!("{field}[{i}]"))).collect()
}

// ---------------------------------------------------------------------------------------------
// Settings: one dictionary shape per `Item`, from Apple's settings.yaml.

/// The plist type of a value in a Settings item.
#[derive(Clone, Copy)]
enum Kind {
    String,
    /// An integer, limited to `allowed` unless that is empty.
    Integer(&'static [i64]),
    Boolean,
    /// Bytes, given as base64 in JSON.
    Data,
    Strings,
    Dict(&'static [Key]),
    /// A dictionary of any keys and values (an app's managed configuration).
    AnyDict,
}

#[derive(Clone, Copy)]
struct Key {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Key {
    Key { name, kind, required: true }
}

const fn opt(name: &'static str, kind: Kind) -> Key {
    Key { name, kind, required: false }
}

const INT: Kind = Kind::Integer(&[]);
const GRACE_PERIODS: &[i64] = &[0, 60, 300, 900, 3600, 14400];

const ENABLED: &[Key] = &[req("Enabled", Kind::Boolean)];

const APP_ATTRIBUTES: &[Key] = &[
    opt("VPNUUID", Kind::String),
    opt("ContentFilterUUID", Kind::String),
    opt("DNSProxyUUID", Kind::String),
    opt("RelayUUID", Kind::String),
    opt("AssociatedDomains", Kind::Strings),
    opt("AssociatedDomainsEnableDirectDownloads", Kind::Boolean),
    opt("Removable", Kind::Boolean),
    opt("TapToPayScreenLock", Kind::Boolean),
    opt("CellularSliceUUID", Kind::String),
    opt("Hideable", Kind::Boolean),
    opt("Lockable", Kind::Boolean),
];

const ORGANIZATION_INFO: &[Key] = &[
    req("OrganizationName", Kind::String),
    opt("OrganizationShortName", Kind::String),
    opt("OrganizationAddress", Kind::String),
    opt("OrganizationPhone", Kind::String),
    opt("OrganizationEmail", Kind::String),
    opt("OrganizationMagic", Kind::String),
];

const MDM_OPTIONS: &[Key] = &[
    opt("ActivationLockAllowedWhileSupervised", Kind::Boolean),
    opt("BootstrapTokenAllowed", Kind::Boolean),
    opt("PromptUserToAllowBootstrapTokenForAuthentication", Kind::Boolean),
];

const PASSCODE_POLICY: &[Key] = &[opt("PasscodeLockGracePeriod", Kind::Integer(GRACE_PERIODS)), opt("AutoLockTime", INT)];

const SHARED_DEVICE_CONFIGURATION: &[Key] = &[
    opt("QuotaSize", INT),
    opt("ResidentUsers", INT),
    opt("UserSessionTimeout", INT),
    opt("TemporarySessionTimeout", INT),
    opt("TemporarySessionOnly", Kind::Boolean),
    opt("ManagedAppleIDDefaultDomains", Kind::Strings),
    opt("OnlineAuthenticationGracePeriod", INT),
    opt("SkipLanguageAndLocaleSetupForNewUsers", Kind::Boolean),
    opt("AwaitUserConfiguration", Kind::Dict(ENABLED)),
    opt("PasscodePolicy", Kind::Dict(PASSCODE_POLICY)),
];

const ACCESSIBILITY_SETTINGS: &[Key] = &[
    opt("BoldTextEnabled", Kind::Boolean),
    opt("IncreaseContrastEnabled", Kind::Boolean),
    opt("ReduceMotionEnabled", Kind::Boolean),
    opt("ReduceTransparencyEnabled", Kind::Boolean),
    opt("TextSize", Kind::Integer(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])),
    opt("TouchAccommodationsEnabled", Kind::Boolean),
    opt("VoiceOverEnabled", Kind::Boolean),
    opt("ZoomEnabled", Kind::Boolean),
    opt("GrayscaleEnabled", Kind::Boolean),
];

/// Each Settings `Item` and the keys it takes besides `Item`.
const SETTINGS_ITEMS: &[(&str, &[Key])] = &[
    ("Wallpaper", &[req("Image", Kind::Data), req("Where", Kind::Integer(&[1, 2, 3]))]),
    ("DataRoaming", ENABLED),
    ("VoiceRoaming", ENABLED),
    ("PersonalHotspot", ENABLED),
    ("Bluetooth", ENABLED),
    ("ApplicationConfiguration", &[req("Identifier", Kind::String), opt("Configuration", Kind::AnyDict)]),
    ("ApplicationAttributes", &[req("Identifier", Kind::String), opt("Attributes", Kind::Dict(APP_ATTRIBUTES))]),
    ("DeviceName", &[req("DeviceName", Kind::String)]),
    ("HostName", &[req("HostName", Kind::String)]),
    ("OrganizationInfo", &[opt("OrganizationInfo", Kind::Dict(ORGANIZATION_INFO))]),
    ("MDMOptions", &[req("MDMOptions", Kind::Dict(MDM_OPTIONS))]),
    ("MaximumResidentUsers", &[req("MaximumResidentUsers", INT)]),
    ("SharedDeviceConfiguration", SHARED_DEVICE_CONFIGURATION),
    ("DiagnosticSubmission", ENABLED),
    ("AppAnalytics", ENABLED),
    ("PasscodeLockGracePeriod", &[req("PasscodeLockGracePeriod", Kind::Integer(GRACE_PERIODS))]),
    ("TimeZone", &[req("TimeZone", Kind::String)]),
    ("SoftwareUpdateSettings", &[req("RecommendationCadence", Kind::Integer(&[0, 1, 2]))]),
    ("AccessibilitySettings", ACCESSIBILITY_SETTINGS),
];

/// Checks one Settings item and converts it to the plist dictionary to send (`Item` first,
/// then its keys in Apple's order).
fn settings_item(item: &Json, field: &str) -> Result<Dictionary, FieldError> {
    let map = item.as_object().ok_or_else(|| FieldError::new(field, "must be an object with an Item key"))?;
    let item_field = join(field, "Item");
    let name = map.get("Item").ok_or_else(|| FieldError::new(&item_field, "required"))?;
    let name = want_string(name, &item_field)?;
    let Some((_, keys)) = SETTINGS_ITEMS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = SETTINGS_ITEMS.iter().map(|(n, _)| *n).collect();
        return Err(FieldError::new(item_field, format!("unknown setting `{name}`; allowed: {}", known.join(", "))));
    };
    let mut out = Dictionary::new();
    out.insert("Item".to_owned(), Value::String(name.clone()));
    let rest: Map<String, Json> = map.iter().filter(|(k, _)| k.as_str() != "Item").map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in convert_dict(&rest, keys, field, &format!("the {name} setting"))? {
        out.insert(k, v);
    }
    Ok(out)
}

/// Converts a JSON object to a plist dictionary following `keys`.
fn convert_dict(map: &Map<String, Json>, keys: &[Key], path: &str, owner: &str) -> Result<Dictionary, FieldError> {
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    check_keys(map, &names, path, owner)?;
    let mut out = Dictionary::new();
    for key in keys {
        let field = join(path, key.name);
        match map.get(key.name).filter(|v| !v.is_null()) {
            Some(v) => {
                out.insert(key.name.to_owned(), convert(v, key.kind, &field, key.name)?);
            }
            None if key.required => return Err(FieldError::new(field, "required")),
            None => {}
        }
    }
    Ok(out)
}

fn convert(v: &Json, kind: Kind, field: &str, name: &str) -> Result<Value, FieldError> {
    Ok(match kind {
        Kind::String => Value::String(want_string(v, field)?),
        Kind::Integer(allowed) => {
            let n = want_int(v, field)?;
            if !allowed.is_empty() && !allowed.contains(&n) {
                return Err(FieldError::new(field, format!("value {n} not allowed; allowed: {allowed:?}")));
            }
            Value::Integer(n.into())
        }
        Kind::Boolean => Value::Boolean(want_bool(v, field)?),
        Kind::Data => Value::Data(want_data(v, field)?),
        Kind::Strings => Value::Array(want_strings(v, field)?.into_iter().map(Value::String).collect()),
        Kind::Dict(keys) => {
            let map = v.as_object().ok_or_else(|| FieldError::new(field, "must be an object"))?;
            Value::Dictionary(convert_dict(map, keys, field, name)?)
        }
        Kind::AnyDict => {
            if !v.is_object() {
                return Err(FieldError::new(field, "must be an object"));
            }
            json_to_plist(v, field)?
        }
    })
}

/// Any JSON value as plist; JSON `null` has no plist form.
fn json_to_plist(v: &Json, field: &str) -> Result<Value, FieldError> {
    Ok(match v {
        Json::Null => return Err(FieldError::new(field, "null has no plist form")),
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Integer(i.into()),
            (None, Some(u), _) => Value::Integer(u.into()),
            (None, None, Some(f)) => Value::Real(f),
            _ => return Err(FieldError::new(field, "number out of range")),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            Value::Array(items.iter().enumerate().map(|(i, item)| json_to_plist(item, &format!("{field}[{i}]"))).collect::<Result<_, _>>()?)
        }
        Json::Object(map) => {
            let mut d = Dictionary::new();
            for (k, item) in map {
                d.insert(k.clone(), json_to_plist(item, &join(field, k))?);
            }
            Value::Dictionary(d)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::testutil::{run_validator, validate};
    use crate::protocol::value::parse_dict;

    const UUID: &str = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0";

    fn fields(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn build(request_type: &str, v: Json) -> Command {
        Command::from_json(request_type, &fields(v)).unwrap_or_else(|e| panic!("{request_type}: {e}"))
    }

    fn err(request_type: &str, v: Json) -> FieldError {
        match Command::from_json(request_type, &fields(v)) {
            Ok(c) => panic!("{request_type} accepted: {c:?}"),
            Err(e) => e,
        }
    }

    fn small_profile() -> Vec<u8> {
        let mut p = Dictionary::new();
        p.insert("PayloadType".into(), Value::String("Configuration".into()));
        p.insert("PayloadVersion".into(), Value::Integer(1i64.into()));
        p.insert("PayloadIdentifier".into(), Value::String("org.example.test".into()));
        p.insert("PayloadUUID".into(), Value::String(UUID.into()));
        p.insert("PayloadDisplayName".into(), Value::String("Test".into()));
        p.insert("PayloadContent".into(), Value::Array(vec![]));
        to_xml(&Value::Dictionary(p))
    }

    /// One command of every request type, with its optional keys filled in where it has any.
    fn one_of_each() -> Vec<Command> {
        let profile = BASE64.encode(small_profile());
        let cmds = vec![
            Command::DeviceInformation(DeviceInformation::inventory()),
            build("DeviceInformation", json!({"Queries": DEVICE_INFORMATION_QUERIES, "DeviceAttestationNonce": "AAEC"})),
            build("SecurityInfo", json!({})),
            build("ProfileList", json!({"ManagedOnly": true})),
            build("InstallProfile", json!({"Payload": profile})),
            build("RemoveProfile", json!({"Identifier": "org.example.wifi"})),
            build(
                "InstalledApplicationList",
                json!({"Identifiers": ["com.apple.Pages"], "ManagedAppsOnly": false,
                       "Items": ["Name", "Version", "Identifier"]}),
            ),
            build("CertificateList", json!({"ManagedOnly": false})),
            build(
                "DeviceLock",
                json!({"Message": "Return to the library", "PhoneNumber": "01632 960000",
                       "PIN": "123456"}),
            ),
            build("EnableLostMode", json!({"Message": "Lost", "PhoneNumber": "01632 960000", "Footnote": "School"})),
            build("DisableLostMode", json!({})),
            build("DeviceLocation", json!({})),
            build("PlayLostModeSound", json!({})),
            build("RestartDevice", json!({"NotifyUser": true, "RebuildKernelCache": false, "KextPaths": ["/x"]})),
            build("ShutDownDevice", json!({})),
            build(
                "EraseDevice",
                json!({"PIN": "654321", "PreserveDataPlan": true, "DisallowProximitySetup": true,
                       "ObliterationBehavior": "DoNotObliterate",
                       "ReturnToService": {"Enabled": true, "MDMProfileData": profile,
                                           "WiFiProfileData": profile}}),
            ),
            // As delivered: with the device's own token (the queued command has none).
            build("ClearPasscode", json!({})).with_unlock_token(b"DATA".to_vec()),
            build(
                "Settings",
                json!({"Settings": [
                    {"Item": "DeviceName", "DeviceName": "Room 4 iPad 12"},
                    {"Item": "Bluetooth", "Enabled": true},
                    {"Item": "Wallpaper", "Image": "iVBORw0KGgo=", "Where": 3},
                    {"Item": "DataRoaming", "Enabled": false},
                    {"Item": "VoiceRoaming", "Enabled": false},
                    {"Item": "PersonalHotspot", "Enabled": false},
                    {"Item": "ApplicationConfiguration", "Identifier": "com.example.app",
                     "Configuration": {"server": "https://x", "n": 3, "r": 1.5,
                                       "list": [true, "a"]}},
                    {"Item": "ApplicationAttributes", "Identifier": "com.example.app",
                     "Attributes": {"Removable": false, "AssociatedDomains": ["example.org"]}},
                    {"Item": "HostName", "HostName": "room4-ipad12"},
                    {"Item": "OrganizationInfo",
                     "OrganizationInfo": {"OrganizationName": "Example School"}},
                    {"Item": "MDMOptions", "MDMOptions": {"BootstrapTokenAllowed": true}},
                    {"Item": "MaximumResidentUsers", "MaximumResidentUsers": 4},
                    {"Item": "SharedDeviceConfiguration", "QuotaSize": 8,
                     "PasscodePolicy": {"PasscodeLockGracePeriod": 60},
                     "ManagedAppleIDDefaultDomains": ["pupils.example.org"]},
                    {"Item": "DiagnosticSubmission", "Enabled": false},
                    {"Item": "AppAnalytics", "Enabled": false},
                    {"Item": "PasscodeLockGracePeriod", "PasscodeLockGracePeriod": 300},
                    {"Item": "TimeZone", "TimeZone": "Europe/London"},
                    {"Item": "SoftwareUpdateSettings", "RecommendationCadence": 2},
                    {"Item": "AccessibilitySettings", "TextSize": 7, "BoldTextEnabled": true},
                ]}),
            ),
            build("DeviceConfigured", json!({})),
            build("ActivationLockBypassCode", json!({})),
            build("DeclarativeManagement", json!({"Data": "eyJTeW5jVG9rZW5zIjp7fX0="})),
        ];
        // Every request type is covered.
        for rt in Command::REQUEST_TYPES {
            assert!(cmds.iter().any(|c| c.request_type() == *rt), "no test command for {rt}");
        }
        cmds
    }

    #[test]
    fn every_command_passes_apples_schema() {
        for cmd in one_of_each() {
            let plist = cmd.to_plist(UUID);
            validate("command", &plist, "plist");
        }
    }

    #[test]
    fn validator_catches_what_apple_does_not_allow() {
        // Guards the test above: the validator run really rejects a bad command.
        let mut cmd = Command::DeviceLock(DeviceLock::default()).command_dict();
        cmd.insert("Colour".into(), Value::String("red".into()));
        let mut envelope = Dictionary::new();
        envelope.insert("CommandUUID".into(), Value::String(UUID.into()));
        envelope.insert("Command".into(), Value::Dictionary(cmd));
        let (ok, text) = run_validator("command", &to_xml(&Value::Dictionary(envelope)), "plist");
        assert!(!ok, "{text}");
        assert!(text.contains("Command.Colour: unknown key"), "{text}");
    }

    #[test]
    fn minimal_commands_pass_apples_schema() {
        let minimal = [
            Command::ProfileList(ProfileList::default()),
            Command::DeviceLock(DeviceLock::default()),
            Command::EraseDevice(EraseDevice::default()),
            Command::RestartDevice(RestartDevice::default()),
            Command::InstalledApplicationList(InstalledApplicationList::default()),
            Command::CertificateList(CertificateList::default()),
        ];
        for cmd in minimal {
            validate("command", &cmd.to_plist(UUID), "plist");
        }
    }

    #[test]
    fn envelope_shape() {
        let cmd = build("DeviceLock", json!({"Message": "hi", "PIN": "000000"}));
        assert_eq!(cmd.request_type(), "DeviceLock");
        let xml = cmd.to_plist(UUID);
        assert!(xml.starts_with(b"<?xml"));
        let d = parse_dict(&xml).expect("plist");
        let keys: Vec<&String> = d.keys().collect();
        assert_eq!(keys, ["CommandUUID", "Command"]);
        assert_eq!(d.get("CommandUUID").and_then(Value::as_string), Some(UUID));
        let c = d.get("Command").and_then(Value::as_dictionary).expect("Command");
        assert_eq!(c.get("RequestType").and_then(Value::as_string), Some("DeviceLock"));
        assert_eq!(c.get("Message").and_then(Value::as_string), Some("hi"));
        assert_eq!(c.get("PIN").and_then(Value::as_string), Some("000000"));
        assert!(c.get("PhoneNumber").is_none());
    }

    #[test]
    fn payload_is_sent_as_data() {
        let profile = small_profile();
        let cmd = build("InstallProfile", json!({"Payload": BASE64.encode(&profile)}));
        let d = parse_dict(&cmd.to_plist(UUID)).expect("plist");
        let payload = d.get("Command").and_then(Value::as_dictionary).and_then(|c| c.get("Payload")).and_then(Value::as_data);
        assert_eq!(payload, Some(profile.as_slice()));
        // A signed profile (DER) is accepted as is.
        assert!(Command::from_json("InstallProfile", &fields(json!({"Payload": "MIIB"}))).is_ok());
    }

    #[test]
    fn fields_json_round_trips() {
        for cmd in one_of_each() {
            let again =
                Command::from_json(cmd.request_type(), &cmd.fields_json()).unwrap_or_else(|e| panic!("{}: {e}", cmd.request_type()));
            // A ClearPasscode's token is never taken from fields: it comes back as queued.
            let queued = match cmd {
                Command::ClearPasscode(_) => Command::ClearPasscode(ClearPasscode::default()),
                other => other,
            };
            assert_eq!(again, queued);
        }
    }

    #[test]
    fn clear_passcode_takes_no_token_from_the_operator() {
        let queued = build("ClearPasscode", json!({}));
        assert_eq!(queued, Command::ClearPasscode(ClearPasscode { unlock_token: None }));
        assert!(queued.fields_json().is_empty(), "nothing secret to store");
        // An older client's UnlockToken is accepted but ignored: never stored, never sent.
        assert_eq!(build("ClearPasscode", json!({"UnlockToken": "REFUQQ=="})), queued);
        let d = parse_dict(&queued.to_plist(UUID)).expect("plist");
        assert!(d.get("Command").and_then(Value::as_dictionary).unwrap().get("UnlockToken").is_none());
        // Delivered: the device's own token, as data.
        let sent = queued.with_unlock_token(b"device token".to_vec());
        let d = parse_dict(&sent.to_plist(UUID)).expect("plist");
        let token = d.get("Command").and_then(Value::as_dictionary).and_then(|c| c.get("UnlockToken")).and_then(Value::as_data);
        assert_eq!(token, Some(&b"device token"[..]));
        // Other commands are unchanged by it.
        let lock = build("DeviceLock", json!({}));
        assert_eq!(lock.clone().with_unlock_token(b"x".to_vec()), lock);
    }

    #[test]
    fn inventory_queries_are_allowed() {
        let inv = DeviceInformation::inventory();
        for q in &inv.queries {
            assert!(DEVICE_INFORMATION_QUERIES.contains(&q.as_str()), "{q}");
        }
        for q in ["SerialNumber", "OSVersion", "IsSupervised", "WiFiMAC"] {
            assert!(inv.queries.iter().any(|x| x == q), "{q}");
        }
    }

    #[test]
    fn unknown_request_type_names_request_type() {
        let e = err("Reboot", json!({}));
        assert_eq!(e.field, "request_type");
        assert!(e.message.contains("Reboot"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(&str, Json, &str, &str)> = vec![
            ("DeviceLock", json!({"PIN": "12345"}), "PIN", "six digits"),
            ("DeviceLock", json!({"PIN": "12345a"}), "PIN", "six digits"),
            ("DeviceLock", json!({"PIN": 123456}), "PIN", "string"),
            ("DeviceLock", json!({"Mesage": "typo"}), "Mesage", "unknown key"),
            ("DeviceLock", json!({"Message": 5}), "Message", "string"),
            ("EraseDevice", json!({"PIN": "1234567"}), "PIN", "six digits"),
            ("EraseDevice", json!({"ObliterationBehavior": "Sometimes"}), "ObliterationBehavior", "Sometimes"),
            ("EraseDevice", json!({"ReturnToService": {}}), "ReturnToService.Enabled", "required"),
            ("EraseDevice", json!({"ReturnToService": {"Enabled": true, "Extra": 1}}), "ReturnToService.Extra", "unknown key"),
            ("EraseDevice", json!({"ReturnToService": []}), "ReturnToService", "object"),
            ("EraseDevice", json!({"PreserveDataPlan": "yes"}), "PreserveDataPlan", "boolean"),
            ("EnableLostMode", json!({"Footnote": "x"}), "Message", "PhoneNumber"),
            ("DeviceInformation", json!({}), "Queries", "required"),
            ("DeviceInformation", json!({"Queries": []}), "Queries", "at least"),
            ("DeviceInformation", json!({"Queries": "UDID"}), "Queries", "array"),
            ("DeviceInformation", json!({"Queries": ["UDID", "ShoeSize"]}), "Queries[1]", "ShoeSize"),
            ("DeviceInformation", json!({"Queries": ["UDID", 7]}), "Queries[1]", "string"),
            ("InstallProfile", json!({}), "Payload", "required"),
            ("InstallProfile", json!({"Payload": "***"}), "Payload", "base64"),
            ("InstallProfile", json!({"Payload": "aGVsbG8="}), "Payload", "not a profile"),
            ("RemoveProfile", json!({}), "Identifier", "required"),
            ("RemoveProfile", json!({"Identifier": " "}), "Identifier", "empty"),
            ("ClearPasscode", json!({"UnlockToken": "***"}), "UnlockToken", "base64"),
            ("SecurityInfo", json!({"Queries": []}), "Queries", "takes no fields"),
            ("InstalledApplicationList", json!({"Items": ["Name", "Colour"]}), "Items[1]", "Colour"),
            ("Settings", json!({}), "Settings", "required"),
            ("Settings", json!({"Settings": []}), "Settings", "at least"),
            ("Settings", json!({"Settings": [5]}), "Settings[0]", "object"),
            ("Settings", json!({"Settings": [{}]}), "Settings[0].Item", "required"),
            ("Settings", json!({"Settings": [{"Item": "Volume"}]}), "Settings[0].Item", "Volume"),
            ("Settings", json!({"Settings": [{"Item": "Bluetooth"}]}), "Settings[0].Enabled", "required"),
            ("Settings", json!({"Settings": [{"Item": "Bluetooth", "Enabled": true, "On": 1}]}), "Settings[0].On", "unknown key"),
            ("Settings", json!({"Settings": [{"Item": "Wallpaper", "Image": "AA==", "Where": 4}]}), "Settings[0].Where", "not allowed"),
            (
                "Settings",
                json!({"Settings": [{"Item": "DeviceName", "DeviceName": "a"},
                                    {"Item": "MDMOptions", "MDMOptions": {"Bogus": true}}]}),
                "Settings[1].MDMOptions.Bogus",
                "unknown key",
            ),
            (
                "Settings",
                json!({"Settings": [{"Item": "ApplicationConfiguration", "Identifier": "x",
                                     "Configuration": {"a": null}}]}),
                "Settings[0].Configuration.a",
                "null",
            ),
        ];
        for (rt, v, field, needle) in cases {
            let e = err(rt, v.clone());
            assert_eq!(e.field, field, "{rt} {v}: {e}");
            assert!(e.message.contains(needle) || e.field.contains(needle), "{rt} {v}: `{e}` lacks `{needle}`");
        }
    }

    #[test]
    fn null_counts_as_absent() {
        let cmd = build("DeviceLock", json!({"Message": null, "PIN": null}));
        assert_eq!(cmd, Command::DeviceLock(DeviceLock::default()));
    }
}
