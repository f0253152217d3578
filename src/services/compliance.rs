//! Is a device compliant with the school's baseline? One rule, used by the console's home page
//! and its device filters.
//!
//! An enrolled device is non-compliant when what it last reported shows: a passcode that does
//! not meet the passcode policy, an iPad or iPhone without a passcode (so without data
//! protection), or a Mac without FileVault. A device that has not reported yet is not counted
//! either way.

use crate::store::DeviceRecord;

/// Why this device is not compliant, in words; empty when it is (or has not reported).
pub fn compliance_problems(d: &DeviceRecord) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !d.enrolled {
        return out;
    }
    if d.passcode_compliant == Some(false) {
        out.push("passcode does not meet the policy");
    }
    match d.platform.as_str() {
        "macOS" => {
            if d.filevault_enabled == Some(false) {
                out.push("FileVault is off");
            }
        }
        _ => {
            if d.passcode_present == Some(false) {
                out.push("no passcode");
            } else if d.encrypted == Some(false) {
                out.push("data protection is off");
            }
        }
    }
    out
}

pub fn is_compliant(d: &DeviceRecord) -> bool {
    compliance_problems(d).is_empty()
}
