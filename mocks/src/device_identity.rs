//! A device's Apple-issued identity, as a test stands in for it: a throwaway "Apple Root CA" and
//! "Apple iPhone Device CA" under it, an identity per device, and the MachineInfo that Setup
//! Assistant sends to an ADE profile's URL: the plist (Apple's keys, `other/machineinfo.yaml`)
//! as CMS SignedData with the content attached, the device CA sent along, as a device sends it.

use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::X509;

use crate::certificates::self_signed_ca;
use crate::push_portal::issue;

/// Apple's side of device identities.
pub struct AppleDeviceCa {
    /// What Lanyard's `ade_device_ca_file` holds (Apple's root).
    pub root: X509,
    device_ca: X509,
    device_ca_key: PKey<Private>,
}

impl AppleDeviceCa {
    pub fn new() -> Result<AppleDeviceCa, ErrorStack> {
        let root_key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let root = self_signed_ca("Test Apple Root CA", &root_key)?;
        let device_ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let device_ca = issue(&root, &root_key, "Test Apple iPhone Device CA", &device_ca_key, true)?;
        Ok(AppleDeviceCa { root, device_ca, device_ca_key })
    }

    /// The root, PEM, for `ade_device_ca_file`.
    pub fn root_pem(&self) -> Vec<u8> {
        self.root.to_pem().expect("a certificate encodes")
    }

    /// The MachineInfo a device with this serial and UDID sends: a fresh identity each call
    /// (`sign_with` another CA's identity to play a forger).
    pub fn machine_info(&self, serial: &str, udid: &str) -> Result<Vec<u8>, ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let cert = issue(&self.device_ca, &self.device_ca_key, udid, &key, false)?;
        sign_machine_info(&machine_info_plist(serial, udid), &cert, &key, &self.device_ca)
    }
}

/// The MachineInfo plist of an iPad (XML).
pub fn machine_info_plist(serial: &str, udid: &str) -> Vec<u8> {
    let mut d = plist::Dictionary::new();
    for (k, v) in [
        ("UDID", udid),
        ("SERIAL", serial),
        ("PRODUCT", "iPad13,18"),
        ("VERSION", "22A3354"),
        ("OS_VERSION", "18.0"),
        ("LANGUAGE", "en-GB"),
    ] {
        d.insert(k.into(), plist::Value::String(v.into()));
    }
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &plist::Value::Dictionary(d)).expect("a dictionary serialises");
    out
}

/// `plist` as the device signs it: content attached, signer and `intermediate` included.
pub fn sign_machine_info(plist: &[u8], cert: &X509, key: &PKey<Private>, intermediate: &X509) -> Result<Vec<u8>, ErrorStack> {
    lanyard::protocol::cms::sign_profile(plist, cert, key, std::slice::from_ref(intermediate)).map_err(|e| match e {
        lanyard::protocol::cms::CmsError::Openssl(e) => e,
        _ => ErrorStack::get(),
    })
}
