//! Stand-ins for Apple's services that cannot run in a test: the Apple Push Notification service
//! ([`apns`]), Apple School Manager's device service ([`ade`]), Apple's Push Certificates Portal
//! ([`push_portal`]), and the throwaway certificates shaped like Apple's that they need
//! ([`certificates`]).
//!
//! A mock here is a real server on a local port that speaks Apple's protocol and fails the ways
//! Apple fails (status codes, reason strings, dropped connections), so that Lanyard's client code
//! is tested against behaviour, not against a yes-machine. The server does not ship this crate:
//! only its tests and the load generator (`lanyard-bench`) use it.

pub mod ade;
pub mod apns;
pub mod certificates;
pub mod device_identity;
pub mod push_portal;

pub use ade::{AdeServerToken, Failure, MockAde, MockDevice, oauth_header, smime_token_file};
pub use apns::{BenchReport, MockApns, MockConfig, MockResponse, ReceivedPush, bench_push};
pub use certificates::{issue_test_push_certificate, push_certificate_for_key, test_push_certificate, try_test_push_certificate};
pub use device_identity::{AppleDeviceCa, machine_info_plist, sign_machine_info};
pub use push_portal::{PushPortal, TestVendor, test_vendor};
