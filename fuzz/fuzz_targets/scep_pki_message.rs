//! SCEP pkiMessages (`POST /scep?operation=PKIOperation`): the signed, encrypted request,
//! through the OpenSSL FFI. Seeds: `fuzz/seeds/scep_pki_message` (PKCSReqs to the fixture CA).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = lanyard_fuzz::fixtures();
    if let Ok(req) = lanyard::protocol::scep::parse_pki_message(data, &f.ca, &f.ca_key) {
        assert!(!req.transaction_id.is_empty() && req.transaction_id.len() <= 256);
        assert!(!req.sender_nonce.is_empty() && req.sender_nonce.len() <= 256);
        if req.message_type.carries_csr() {
            assert!(req.csr.is_some());
        }
        // The answer is built from what was parsed; it must not fail on it either.
        let _ = lanyard::protocol::scep::cert_rep_failure(&req, lanyard::protocol::scep::FailInfo::BadRequest, &f.ca, &f.ca_key);
    }
});
