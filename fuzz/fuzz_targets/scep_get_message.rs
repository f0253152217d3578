//! `GET /scep?operation=PKIOperation&message=...`: the query decoded as the server decodes it
//! (form-style, `+` to space), then the message parameter's base64. Also: the input's bytes,
//! base64-encoded as clients send them and unescaped, always decode back to themselves.
#![no_main]
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let query = format!("operation=PKIOperation&message={}", String::from_utf8_lossy(data));
    if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(&query) {
        for (_, v) in pairs.iter().filter(|(k, _)| k == "message") {
            if let Ok(der) = lanyard::protocol::scep::decode_message_param(v) {
                let f = lanyard_fuzz::fixtures();
                let _ = lanyard::protocol::scep::parse_pki_message(&der, &f.ca, &f.ca_key);
            }
        }
    }
    // As the server reads it (src/api/mdm.rs): the raw parameter, decoded once with `+` kept.
    let sent = format!("operation=PKIOperation&message={}", STANDARD.encode(data));
    let raw = lanyard::faces::device::raw_query_param(&sent, "message").expect("message");
    let message = lanyard::faces::device::decode_keeping_plus(raw);
    assert_eq!(lanyard::protocol::scep::decode_message_param(&message).expect("base64 decodes"), data);
});
