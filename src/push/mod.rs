//! Apple Push Notification service (APNs) for MDM.
//!
//! An MDM server never talks to a device directly: it asks APNs to wake the device up, and the
//! device then calls the server's check-in/command endpoints. This module holds everything on
//! the sending side of that wake-up:
//!
//! * [`cert`] — the school's MDM push certificate from Apple's Push Certificates Portal
//!   ([`PushCertificate`]): PEM and `.p12` import, the push topic (the subject's `UID`,
//!   `com.apple.mgmt.…`), expiry reporting.
//! * [`apns`] — [`ApnsClient`], an HTTP/2-over-TLS client that authenticates with the push
//!   certificate and sends `{"mdm":"<PushMagic>"}` notifications, many at once over a small pool
//!   of multiplexed connections, with bounded retries ([`PushOutcome`] tells the caller what
//!   happened to each push).
//! * [`mock`] — [`MockApns`], a real HTTP/2-over-TLS server that behaves like APNs (client
//!   certificate checks, Apple's status codes and reason strings, scriptable failures, GOAWAY
//!   and dropped connections), for tests and for [`bench_push`].
//! * [`testing`] — throwaway certificates shaped like Apple's, for tests and benchmarks.
//!
//! The module refers only to its own submodules and to external crates, so it can be built and
//! tested on its own.

pub mod apns;
pub mod cert;
pub mod mock;
pub mod testing;

pub use apns::{APNS_PRODUCTION_URL, APNS_SANDBOX_URL, ApnsClient, ApnsConfig, ApnsError, PushOutcome};
pub use cert::{MDM_TOPIC_PREFIX, PushCertError, PushCertificate, topic_of};
pub use mock::{BenchReport, MockApns, MockConfig, MockResponse, ReceivedPush, bench_push};
pub use testing::{issue_test_push_certificate, test_push_certificate};
