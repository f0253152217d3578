//! The PKCS#10 request inside a SCEP PKCSReq: each input is a CSR, encrypted to the fixture CA
//! and signed as a device does, then parsed (CSR and challengePassword through the OpenSSL
//! FFI), and when it parses, issued a certificate. Seed: `fixtures/csr.der`.
#![no_main]
use std::sync::{Mutex, OnceLock};

use lanyard::protocol::scep::MessageType;
use lanyard::protocol::scep::client::Requester;
use openssl::hash::MessageDigest;
use openssl::symm::Cipher;

fn requester() -> &'static Mutex<Requester> {
    static R: OnceLock<Mutex<Requester>> = OnceLock::new();
    R.get_or_init(|| {
        let f = lanyard_fuzz::fixtures();
        Mutex::new(Requester::new(f.device_key.clone(), "fuzz-device", "enr_fuzz-challenge").expect("requester"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = lanyard_fuzz::fixtures();
    let der = {
        let mut r = requester().lock().unwrap_or_else(|p| p.into_inner());
        r.csr_der = data.to_vec();
        r.pkcs_req(&f.ca, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq).expect("a PKCSReq around any bytes").der
    };
    let req = match lanyard::protocol::scep::parse_pki_message(&der, &f.ca, &f.ca_key) {
        Ok(req) => req,
        Err(_) => return,
    };
    assert_eq!(req.message_data, data);
    if let Some(csr) = &req.csr {
        let _ = lanyard::services::enrollment::identity::issue_certificate(csr, &f.ca, &f.ca_key, 1);
    }
});
