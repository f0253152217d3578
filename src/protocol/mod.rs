//! Apple's wire formats, as Lanyard speaks them to devices.
//!
//! This module knows the shape of every message that crosses the device face and nothing about
//! storage, HTTP or policy (it uses no other part of Lanyard, so it is fuzzed on its own):
//!
//! - [`checkin`]: the messages a device sends to the check-in endpoint (`Authenticate`,
//!   `TokenUpdate`, `CheckOut`, ...), parsed from XML or binary plists.
//! - [`report`]: the body a device sends to the connect endpoint (`Idle`, `Acknowledged`,
//!   `NotNow`, ...), with typed views of the `DeviceInformation` and `SecurityInfo` answers.
//! - [`command`]: the commands Lanyard sends, built from Apple-named JSON fields and checked
//!   against Apple's schema, and encoded as the XML plist a device expects.
//! - [`cms`]: CMS (PKCS#7) signatures: the `Mdm-Signature` header that authenticates every
//!   device request, and signed configuration profiles.
//! - [`signers`]: the same check made cheaper for certificates that passed it before, reading
//!   the CMS structure with [`crate::protocol::der`].
//! - [`enrollment_profile`]: the enrolment profile (root CA, SCEP and MDM payloads).
//! - [`scep`]: SCEP's messages (the pkiMessage a device sends to get its identity, the CertRep
//!   Lanyard answers), the CMS parts the openssl crate lacks, and a SCEP client for tests.
//! - [`der`]: the little DER reading the two above need.
//! - [`ddm`]: Declarative Device Management's documents; [`declaration_schema`] checks a
//!   declaration against Apple's schema.
//!
//! Apple's key names are kept wherever a value crosses the wire; Rust field names are the same
//! names in snake_case (`PushMagic` is `push_magic`).

pub mod checkin;
pub mod cms;
pub mod command;
pub mod ddm;
pub mod declaration_schema;
pub mod der;
pub mod enrollment_profile;
#[doc(hidden)]
pub mod hostile;
pub mod machine_info;
pub mod report;
pub mod scep;
pub mod signers;
mod value;

#[cfg(test)]
mod testutil;

pub use checkin::{CheckinMessage, EnrollmentIds, bootstrap_token_response};
pub use cms::{CmsError, SignatureError};
pub use command::{Command, FieldError};
pub use enrollment_profile::{EnrollmentProfileParams, enrollment_profile};
pub use report::{CommandReport, CommandStatus};

/// Why a message from a device could not be understood.
///
/// Each variant names what was wrong so that the server can log it and answer the device with a
/// 400: the device sent something Lanyard cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The body is not a property list (neither XML nor binary).
    #[error("body is not a property list: {0}")]
    Malformed(String),
    /// The property list parsed but its root is not a dictionary.
    #[error("property list root is not a dictionary")]
    NotADictionary,
    /// A key the message type requires is absent.
    #[error("missing required key `{0}`")]
    MissingKey(String),
    /// A key is present but holds the wrong plist type.
    #[error("key `{key}` must be {expected}")]
    WrongType {
        /// Apple's name of the key.
        key: String,
        /// The plist type that was expected, e.g. `a string`.
        expected: &'static str,
    },
    /// A check-in `MessageType` this module does not know.
    #[error("unknown MessageType `{0}`")]
    UnknownMessageType(String),
    /// A command report `Status` this module does not know.
    #[error("unknown command Status `{0}`")]
    UnknownStatus(String),
}
