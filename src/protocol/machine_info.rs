//! MachineInfo: what a device in Setup Assistant tells the ADE profile's URL about itself before
//! it enrols (`UDID`, `SERIAL`, `PRODUCT`, `VERSION`, ...; Apple's schema is
//! `apple-device-management/other/machineinfo.yaml`). It arrives as the content of a CMS
//! SignedData made with the device's Apple-issued identity: [`super::cms::verify_attached`]
//! checks that, this module reads the plist inside.

use super::ProtocolError;
use super::value::{DictExt, parse_dict};

/// A device's MachineInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub udid: String,
    pub serial: String,
    /// e.g. `iPad13,18`.
    pub product: String,
    /// The build, e.g. `22A3354`.
    pub version: String,
    /// e.g. `18.0` (iOS 17 and later).
    pub os_version: Option<String>,
    pub language: Option<String>,
    pub imei: Option<String>,
    pub meid: Option<String>,
}

/// Reads a MachineInfo plist (XML or binary).
pub fn parse(body: &[u8]) -> Result<MachineInfo, ProtocolError> {
    let d = parse_dict(body)?;
    let udid = d.req_string("UDID")?;
    let serial = d.req_string("SERIAL")?;
    if udid.trim().is_empty() || serial.trim().is_empty() {
        return Err(ProtocolError::Malformed("MachineInfo: UDID and SERIAL must not be empty".into()));
    }
    Ok(MachineInfo {
        udid,
        serial: serial.trim().to_owned(),
        product: d.req_string("PRODUCT")?,
        version: d.req_string("VERSION")?,
        os_version: d.opt_string("OS_VERSION")?,
        language: d.opt_string("LANGUAGE")?,
        imei: d.opt_string("IMEI")?,
        meid: d.opt_string("MEID")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apples_keys_and_names_a_missing_one() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>
            <key>UDID</key><string>00008101-000A1B2C3D4E5F60</string><key>SERIAL</key><string>DMPXA1B2C3D4</string>
            <key>PRODUCT</key><string>iPad13,18</string><key>VERSION</key><string>22A3354</string>
            <key>OS_VERSION</key><string>18.0</string><key>LANGUAGE</key><string>en</string></dict></plist>"#;
        let m = parse(xml).unwrap();
        assert_eq!((m.serial.as_str(), m.product.as_str(), m.os_version.as_deref()), ("DMPXA1B2C3D4", "iPad13,18", Some("18.0")));
        let e = parse(br#"<plist version="1.0"><dict><key>UDID</key><string>x</string></dict></plist>"#).unwrap_err();
        assert!(e.to_string().contains("SERIAL"), "{e}");
        assert!(parse(b"not a plist").is_err());
    }
}
