//! The inventory: what DeviceInformation and SecurityInfo results tell us, and how a device
//! looks to the API and to an auditor's CSV.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::protocol::report::CommandReport;
use crate::services::devices::Devices;
use crate::store::{DeviceRecord, InventoryUpdate};

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub udid: String,
    pub serial_number: Option<String>,
    pub device_name: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub os_version: Option<String>,
    pub build_version: Option<String>,
    pub platform: String,
    pub enrolled: bool,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub unenrolled_at: Option<DateTime<Utc>>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub supervised: Option<bool>,
    pub encrypted: Option<bool>,
    pub passcode_present: Option<bool>,
    pub passcode_compliant: Option<bool>,
    pub filevault_enabled: Option<bool>,
    pub storage_capacity_gb: Option<f64>,
    pub storage_available_gb: Option<f64>,
    pub battery_level: Option<f64>,
    pub wifi_mac: Option<String>,
    pub bluetooth_mac: Option<String>,
    pub imei: Option<String>,
    pub meid: Option<String>,
    pub awaiting_configuration: bool,
    pub setup_flag: Option<String>,
    pub push_token_valid: bool,
    pub enrollment_token_id: Option<uuid::Uuid>,
    pub info_updated_at: Option<DateTime<Utc>>,
    pub security_updated_at: Option<DateTime<Utc>>,
}

impl From<DeviceRecord> for Device {
    fn from(d: DeviceRecord) -> Self {
        Device {
            push_token_valid: d.push_token.is_some() && d.push_token_invalid_at.is_none(),
            udid: d.udid,
            serial_number: d.serial_number,
            device_name: d.device_name,
            model: d.model,
            model_name: d.model_name,
            product_name: d.product_name,
            os_version: d.os_version,
            build_version: d.build_version,
            platform: d.platform,
            enrolled: d.enrolled,
            enrolled_at: d.enrolled_at,
            unenrolled_at: d.unenrolled_at,
            first_seen_at: d.first_seen_at,
            last_seen_at: d.last_seen_at,
            supervised: d.supervised,
            encrypted: d.encrypted,
            passcode_present: d.passcode_present,
            passcode_compliant: d.passcode_compliant,
            filevault_enabled: d.filevault_enabled,
            storage_capacity_gb: d.storage_capacity_gb,
            storage_available_gb: d.storage_available_gb,
            battery_level: d.battery_level,
            wifi_mac: d.wifi_mac,
            bluetooth_mac: d.bluetooth_mac,
            imei: d.imei,
            meid: d.meid,
            awaiting_configuration: d.awaiting_configuration,
            setup_flag: d.setup_flag.clone(),
            enrollment_token_id: d.enrollment_token_id,
            info_updated_at: d.info_updated_at,
            security_updated_at: d.security_updated_at,
        }
    }
}

/// The CSV columns, in order: one header row, then one row per device.
pub const CSV_COLUMNS: &[&str] = &[
    "udid",
    "serial_number",
    "device_name",
    "model",
    "model_name",
    "product_name",
    "platform",
    "os_version",
    "build_version",
    "enrolled",
    "enrolled_at",
    "last_seen_at",
    "supervised",
    "encrypted",
    "passcode_present",
    "passcode_compliant",
    "filevault_enabled",
    "storage_capacity_gb",
    "storage_available_gb",
    "battery_level",
    "wifi_mac",
    "imei",
];

impl Device {
    pub fn csv_row(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let b = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_default();
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_default();
        let t = |v: Option<DateTime<Utc>>| v.map(|x| x.to_rfc3339()).unwrap_or_default();
        let cells = [
            self.udid.clone(),
            opt(&self.serial_number),
            opt(&self.device_name),
            opt(&self.model),
            opt(&self.model_name),
            opt(&self.product_name),
            self.platform.clone(),
            opt(&self.os_version),
            opt(&self.build_version),
            self.enrolled.to_string(),
            t(self.enrolled_at),
            self.last_seen_at.to_rfc3339(),
            b(self.supervised),
            b(self.encrypted),
            b(self.passcode_present),
            b(self.passcode_compliant),
            b(self.filevault_enabled),
            f(self.storage_capacity_gb),
            f(self.storage_available_gb),
            f(self.battery_level),
            opt(&self.wifi_mac),
            opt(&self.imei),
        ];
        cells.iter().map(|c| crate::services::csv::csv_cell(c)).collect::<Vec<_>>().join(",")
    }
}

/// The longest value kept for a string a device reports about itself, in characters. Apple's
/// values are far shorter (a serial number is 10–12 characters, a device name is limited to 255
/// bytes in Settings); a longer one is cut to this with a warning, so that one device cannot fill
/// the database or every page that lists it.
pub fn reported_max_len(field: &str) -> usize {
    match field {
        "DeviceName" => 255,
        "SerialNumber" | "IMEI" | "MEID" | "WiFiMAC" | "BluetoothMAC" | "OSVersion" | "BuildVersion" => 64,
        _ => 128,
    }
}

/// A reported string, cut to [`reported_max_len`] (at a character boundary) with a warning.
pub fn reported(udid: &str, field: &str, value: Option<String>) -> Option<String> {
    let mut v = value?;
    let max = reported_max_len(field);
    if let Some((cut, _)) = v.char_indices().nth(max) {
        tracing::warn!(udid = %udid.chars().take(64).collect::<String>(), field, length = v.chars().count(), max, "device reported an over-long value; keeping the first {max} characters");
        v.truncate(cut);
    }
    Some(v)
}

/// What an acknowledged DeviceInformation answer sets in the device record; None if the
/// report holds no `QueryResponses`. Strings are cut by [`reported`].
pub fn device_information_update(report: &CommandReport, now: DateTime<Utc>) -> Option<InventoryUpdate> {
    let i = report.device_information()?;
    let platform = super::platform_of(i.product_name.as_deref(), i.model_name.as_deref(), i.model.as_deref());
    let gb = |v: Option<f64>| v.map(|x| (x * 100.0).round() / 100.0);
    let udid = report.ids.device_id.as_str();
    let cut = |field: &str, v: Option<String>| reported(udid, field, v);
    Some(InventoryUpdate {
        serial_number: cut("SerialNumber", i.serial_number),
        model: cut("Model", i.model),
        model_name: cut("ModelName", i.model_name),
        product_name: cut("ProductName", i.product_name.clone()),
        device_name: cut("DeviceName", i.device_name),
        os_version: cut("OSVersion", i.os_version),
        build_version: cut("BuildVersion", i.build_version),
        platform: i.product_name.as_ref().map(|_| platform.to_owned()),
        imei: cut("IMEI", i.imei),
        meid: cut("MEID", i.meid),
        wifi_mac: cut("WiFiMAC", i.wifi_mac),
        bluetooth_mac: cut("BluetoothMAC", i.bluetooth_mac),
        supervised: i.is_supervised,
        storage_capacity_gb: gb(i.device_capacity),
        storage_available_gb: gb(i.available_device_capacity),
        battery_level: i.battery_level,
        info_updated_at: Some(now),
        ..Default::default()
    })
}

impl Devices {
    /// Fold an acknowledged DeviceInformation or SecurityInfo into the device record.
    pub async fn apply_inventory(&self, udid: &str, request_type: &str, report: &CommandReport, now: DateTime<Utc>) -> Result<()> {
        let mut inv = InventoryUpdate::default();
        match request_type {
            "DeviceInformation" => match device_information_update(report, now) {
                Some(update) => inv = update,
                None => return Ok(()),
            },
            "SecurityInfo" => {
                let Some(s) = report.security_info() else {
                    return Ok(());
                };
                // Data protection on iOS needs hardware encryption and a passcode; on a Mac,
                // FileVault. HardwareEncryptionCaps bit 1 is block-level, bit 2 file-level.
                let device = self.store.device(udid).await?;
                let is_mac = device.as_ref().is_some_and(|d| d.platform == "macOS") || s.filevault_enabled.is_some();
                let encrypted = if is_mac {
                    s.filevault_enabled
                } else {
                    match (s.hardware_encryption_caps, s.passcode_present) {
                        (Some(caps), Some(pc)) => Some(caps & 0b11 != 0 && pc),
                        (_, Some(false)) => Some(false),
                        _ => None,
                    }
                };
                inv = InventoryUpdate {
                    passcode_present: s.passcode_present,
                    passcode_compliant: s.passcode_compliant,
                    filevault_enabled: s.filevault_enabled,
                    encrypted,
                    security_updated_at: Some(now),
                    ..inv
                };
            }
            _ => return Ok(()),
        }
        self.store.update_inventory(udid, &inv).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::services::csv::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-12.5"), "-12.5");
    }
}
