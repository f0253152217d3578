//! Binary plists (`bplist00`): every input is read as one, the magic put in front if missing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"bplist") {
        lanyard_fuzz::check_plist(data);
    } else {
        lanyard_fuzz::check_plist(&[b"bplist00", data].concat());
    }
});
