//! Clients of Apple's services: the Apple Push Notification service (APNs) for MDM, the push
//! certificate and its request, and Apple School Manager's device service (ADE).
//!
//! An MDM server never talks to a device directly: it asks APNs to wake the device up, and the
//! device then calls the server's check-in/command endpoints. This module holds the sending side
//! of that wake-up, and nothing about Lanyard's rules (when to push: `services::push`):
//!
//! * [`push_certificate`] — the school's MDM push certificate from Apple's Push Certificates
//!   Portal ([`PushCertificate`]): PEM and `.p12` import, the push topic (the subject's `UID`,
//!   `com.apple.mgmt.…`), expiry reporting.
//! * [`push_cert_request`] — the key and CSR Lanyard makes for the portal, and the vendor-signed
//!   request file (`PushCertRequestCSR`, `PushCertCertificateChain`, `PushCertSignature`).
//! * [`ade`] — [`ade::AdeClient`] for Apple School Manager's device service: the server token
//!   file (S/MIME), the OAuth 1.0a session, device fetch and sync, profiles.
//! * [`apns`] — [`ApnsClient`], an HTTP/2-over-TLS client that authenticates with the push
//!   certificate and sends `{"mdm":"<PushMagic>"}` notifications, many at once over a small pool
//!   of multiplexed connections, with bounded retries ([`PushOutcome`] tells the caller what
//!   happened to each push).
//!
//! A faithful mock of APNs, for tests and the load generator, is the `lanyard-mocks` crate
//! (`mocks/`): the server does not ship it. The module refers only to its own submodules and to
//! external crates, so it can be built and tested on its own.

pub mod ade;
pub mod apns;
pub mod push_cert_request;
pub mod push_certificate;

pub use apns::{APNS_PRODUCTION_URL, APNS_SANDBOX_URL, ApnsClient, ApnsConfig, ApnsError, PushOutcome};
pub use push_cert_request::{PushCertRequest, PushRequestError, VendorSigner};
pub use push_certificate::{MDM_TOPIC_PREFIX, PushCertError, PushCertificate, topic_of};
