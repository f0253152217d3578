//! Command results (`PUT /mdm/connect`): the report, and every view the server takes of it
//! (JSON, DeviceInformation inventory, SecurityInfo, the error summary).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(report) = lanyard::protocol::report::parse(data) {
        let theirs = lanyard_fuzz::plist_crate_reads(data);
        assert!(theirs.is_some_and(|t| lanyard_fuzz::same(&t, &report.raw)), "read differently from the plist crate");
        let _ = report.to_json().to_string();
        let _ = report.device_information();
        let _ = report.security_info();
        let _ = report.error_summary();
    }
});
