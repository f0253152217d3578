//! Check-in messages (`Authenticate`, `TokenUpdate`, `CheckOut`, ...): what `PUT /mdm/checkin`
//! parses once the signature has passed. Whatever parses names a device of at most 128
//! printable characters.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = lanyard::protocol::checkin::parse(data) {
        let id = &msg.ids().device_id;
        assert!(id.len() <= lanyard::protocol::checkin::MAX_DEVICE_ID_LEN && !id.chars().any(char::is_control));
        assert!(lanyard_fuzz::plist_crate_reads(data).is_some(), "accepted what the plist crate refuses");
    }
});
