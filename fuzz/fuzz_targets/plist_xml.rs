//! XML plists as a device sends them to `/mdm/checkin` and `/mdm/connect`, and as profiles.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Binary plists have their own target.
    if data.starts_with(b"bplist") {
        return;
    }
    lanyard_fuzz::check_plist(data);
});
