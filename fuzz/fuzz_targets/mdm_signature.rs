//! The `Mdm-Signature` header. The input is a body and a signature (split at a length in its
//! first two bytes), or, from byte 0x80 on, a header string checked over the fixture body.
//! Both checks run: the full CMS verification and the signer cache (warmed with the genuine
//! signature, so its fast path is reached). Whatever verifies must be the fixture device's
//! signature over the fixture body: nothing else was ever signed by a key the CA certified.
#![no_main]
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lanyard::protocol::signers::SignerCache;
use lanyard_fuzz::{SIGNATURE_DER, SIGNED_BODY, fixtures};

fn cache() -> &'static SignerCache {
    static C: OnceLock<SignerCache> = OnceLock::new();
    C.get_or_init(|| {
        let c = SignerCache::new(16);
        c.verify(SIGNED_BODY, &STANDARD.encode(SIGNATURE_DER), &fixtures().ca).expect("the fixture signature verifies");
        c
    })
}

fn device_sha256() -> [u8; 32] {
    openssl::sha::sha256(&fixtures().device.to_der().expect("der"))
}

fn check(body: &[u8], header: &str) {
    let ca = &fixtures().ca;
    let full = lanyard::protocol::cms::verify_mdm_signature(body, header, ca);
    if let Ok(signer) = &full {
        assert_eq!(openssl::sha::sha256(&signer.to_der().expect("der")), device_sha256());
        assert_eq!(body, SIGNED_BODY, "a signature verified over a body the device never signed");
    }
    if let Ok(signer) = cache().verify(body, header, ca) {
        assert_eq!(signer.sha256, device_sha256());
        assert_eq!(body, SIGNED_BODY, "the cache accepted a body the device never signed");
        assert!(full.is_ok(), "the cache accepted what the full check refuses: {:?}", full.err());
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data {
        [mode, rest @ ..] if *mode >= 0x80 => check(SIGNED_BODY, &String::from_utf8_lossy(rest)),
        [hi, lo, rest @ ..] => {
            let split = (usize::from(*hi) << 8 | usize::from(*lo)).min(rest.len());
            let (body, der) = rest.split_at(split);
            check(body, &STANDARD.encode(der));
        }
        _ => {}
    }
});
