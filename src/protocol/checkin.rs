//! Check-in messages: what a device sends to the check-in endpoint (`CheckInURL`) to enrol
//! (`Authenticate`, `TokenUpdate`), to leave (`CheckOut`), and to store or fetch its bootstrap
//! token. [`parse`] turns a request body (XML or binary plist) into a [`CheckinMessage`].
//!
//! Keys follow Apple's `mdm/checkin/*.yaml`. Keys a device adds that this module does not model
//! are ignored, as Apple asks of servers; keys it needs and cannot find are errors naming them.

use plist::{Dictionary, Value};

use super::ProtocolError;
use super::value::{DictExt, parse_dict, to_xml};

/// Who sent a message: the device, and on a user channel the user. Every check-in message and
/// every command report carries these keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentIds {
    /// The key to file the enrolment under: the `UDID`, or for a User Enrollment (which hides
    /// the UDID) the `EnrollmentID`. Always present after parsing.
    pub device_id: String,
    /// `UDID`: the hardware identifier; absent on a User Enrollment.
    pub udid: Option<String>,
    /// `EnrollmentID`: a User Enrollment's stand-in for the UDID.
    pub enrollment_id: Option<String>,
    /// `EnrollmentUserID`: a User Enrollment's user on macOS.
    pub enrollment_user_id: Option<String>,
    /// `UserID`: the user's GUID on a macOS user channel; all `F`s on Shared iPad.
    pub user_id: Option<String>,
    /// `UserShortName`: the macOS short name, or the Managed Apple Account on Shared iPad.
    pub user_short_name: Option<String>,
    /// `UserLongName`: the user's full name on a macOS user channel.
    pub user_long_name: Option<String>,
}

/// The longest `UDID` or `EnrollmentID` accepted.
pub const MAX_DEVICE_ID_LEN: usize = 128;

impl EnrollmentIds {
    /// Reads the identifying keys; fails naming `UDID` when neither `UDID` nor `EnrollmentID`
    /// is present.
    pub(crate) fn from_dict(dict: &Dictionary) -> Result<Self, ProtocolError> {
        let udid = dict.opt_string("UDID")?;
        let enrollment_id = dict.opt_string("EnrollmentID")?;
        let device_id = udid.clone().or_else(|| enrollment_id.clone()).ok_or_else(|| ProtocolError::MissingKey("UDID".to_owned()))?;
        // A UDID is 25 or 40 characters, an EnrollmentID a UUID-like string: anything far
        // longer is not a device, and would become a key in every table.
        if device_id.len() > MAX_DEVICE_ID_LEN || device_id.chars().any(char::is_control) {
            let key = if udid.is_some() { "UDID" } else { "EnrollmentID" };
            return Err(ProtocolError::WrongType {
                key: key.to_owned(),
                expected: "a device identifier of at most 128 printable characters",
            });
        }
        Ok(Self {
            device_id,
            udid,
            enrollment_id,
            enrollment_user_id: dict.opt_string("EnrollmentUserID")?,
            user_id: dict.opt_string("UserID")?,
            user_short_name: dict.opt_string("UserShortName")?,
            user_long_name: dict.opt_string("UserLongName")?,
        })
    }

    /// True when the message comes over a user channel (a macOS user, or a Shared iPad user)
    /// rather than the device channel.
    pub fn is_user_channel(&self) -> bool {
        self.user_id.is_some() || self.enrollment_user_id.is_some()
    }
}

/// `Authenticate`: the first message of an enrolment. The device is not yet reachable by push;
/// the server answers 200 to accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// Which device is enrolling.
    pub ids: EnrollmentIds,
    /// `Topic`: the APNs topic of the MDM push certificate the profile named.
    pub topic: String,
    /// `SerialNumber`.
    pub serial_number: Option<String>,
    /// `Model` (macOS), e.g. `iMac14,2`.
    pub model: Option<String>,
    /// `ModelName`, e.g. `iPad`, `iMac`.
    pub model_name: Option<String>,
    /// `ProductName`, e.g. `iPad2,5`.
    pub product_name: Option<String>,
    /// `OSVersion`, e.g. `17.4`.
    pub os_version: Option<String>,
    /// `BuildVersion`, e.g. `21E219`.
    pub build_version: Option<String>,
    /// `DeviceName` (macOS).
    pub device_name: Option<String>,
    /// `IMEI` (cellular devices).
    pub imei: Option<String>,
    /// `MEID` (CDMA devices).
    pub meid: Option<String>,
    /// `Challenge`: data some enrolment flows echo back; not part of Apple's published schema.
    pub challenge: Option<Vec<u8>>,
}

/// `TokenUpdate`: the device (or a user channel) tells the server how to push to it. Sent after
/// `Authenticate` and whenever the push token changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUpdate {
    /// Which device, and which user for a user channel.
    pub ids: EnrollmentIds,
    /// `Topic`: the APNs topic.
    pub topic: String,
    /// `Token`: the APNs device token (raw bytes; hex-encode for the APNs URL path).
    pub token: Vec<u8>,
    /// `PushMagic`: the string to send in the push payload's `mdm` key.
    pub push_magic: String,
    /// `UnlockToken`: lets `ClearPasscode` remove the passcode (supervised devices).
    pub unlock_token: Option<Vec<u8>>,
    /// `AwaitingConfiguration`: the device waits in Setup Assistant for `DeviceConfigured`.
    pub awaiting_configuration: bool,
    /// `NotOnConsole`: a macOS user channel for a user not at the console.
    pub not_on_console: Option<bool>,
}

/// `CheckOut`: the MDM profile was removed (sent when `CheckOutWhenRemoved` is true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOut {
    /// Which device left.
    pub ids: EnrollmentIds,
    /// `Topic`: the APNs topic.
    pub topic: Option<String>,
}

/// `UserAuthenticate`: a macOS user channel asks to be let in. The first message carries no
/// `DigestResponse`; the server answers with a `DigestChallenge` (or an empty one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuthenticate {
    /// Which device and which user.
    pub ids: EnrollmentIds,
    /// `DigestResponse`: the answer to the server's `DigestChallenge`, on the second message.
    pub digest_response: Option<String>,
}

/// `SetBootstrapToken`: a supervised Mac escrows its bootstrap token. An absent token asks the
/// server to forget the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetBootstrapToken {
    /// Which device.
    pub ids: EnrollmentIds,
    /// `BootstrapToken`: the token; `None` means remove it.
    pub bootstrap_token: Option<Vec<u8>>,
    /// `AwaitingConfiguration`: sent from Setup Assistant.
    pub awaiting_configuration: bool,
}

/// `GetBootstrapToken`: a Mac asks for its escrowed bootstrap token; answer with
/// [`bootstrap_token_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetBootstrapToken {
    /// Which device.
    pub ids: EnrollmentIds,
    /// `AwaitingConfiguration`: sent from Setup Assistant.
    pub awaiting_configuration: bool,
}

/// `DeclarativeManagement`: the device talks to the declarative-management endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarativeManagement {
    /// Which device, and which user for a user channel.
    pub ids: EnrollmentIds,
    /// `Endpoint`: `tokens`, `declaration-items`, `status`, or `declaration/<type>/<id>`.
    pub endpoint: String,
    /// `Data`: the JSON body for the `status` endpoint.
    pub data: Option<Vec<u8>>,
}

/// `GetToken`: the device asks for a token for a service (`TokenServiceType`).
#[derive(Debug, Clone, PartialEq)]
pub struct GetToken {
    /// Which device, and which user for a user channel.
    pub ids: EnrollmentIds,
    /// `TokenServiceType`, e.g. `com.apple.maid`.
    pub token_service_type: String,
    /// `TokenParameters`, passed through as sent.
    pub token_parameters: Option<Dictionary>,
}

/// One message to the check-in endpoint, by its `MessageType`.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckinMessage {
    /// `Authenticate`.
    Authenticate(Authenticate),
    /// `TokenUpdate`.
    TokenUpdate(TokenUpdate),
    /// `CheckOut`.
    CheckOut(CheckOut),
    /// `UserAuthenticate`.
    UserAuthenticate(UserAuthenticate),
    /// `SetBootstrapToken`.
    SetBootstrapToken(SetBootstrapToken),
    /// `GetBootstrapToken`.
    GetBootstrapToken(GetBootstrapToken),
    /// `DeclarativeManagement`.
    DeclarativeManagement(DeclarativeManagement),
    /// `GetToken`.
    GetToken(GetToken),
}

impl CheckinMessage {
    /// Apple's `MessageType` for this message.
    pub fn message_type(&self) -> &'static str {
        match self {
            Self::Authenticate(_) => "Authenticate",
            Self::TokenUpdate(_) => "TokenUpdate",
            Self::CheckOut(_) => "CheckOut",
            Self::UserAuthenticate(_) => "UserAuthenticate",
            Self::SetBootstrapToken(_) => "SetBootstrapToken",
            Self::GetBootstrapToken(_) => "GetBootstrapToken",
            Self::DeclarativeManagement(_) => "DeclarativeManagement",
            Self::GetToken(_) => "GetToken",
        }
    }

    /// Who sent the message.
    pub fn ids(&self) -> &EnrollmentIds {
        match self {
            Self::Authenticate(m) => &m.ids,
            Self::TokenUpdate(m) => &m.ids,
            Self::CheckOut(m) => &m.ids,
            Self::UserAuthenticate(m) => &m.ids,
            Self::SetBootstrapToken(m) => &m.ids,
            Self::GetBootstrapToken(m) => &m.ids,
            Self::DeclarativeManagement(m) => &m.ids,
            Self::GetToken(m) => &m.ids,
        }
    }
}

/// Parses a check-in request body (XML or binary plist).
///
/// Fails with [`ProtocolError::UnknownMessageType`] for a `MessageType` not listed in
/// [`CheckinMessage`], and with an error naming the key when a required key is missing or has
/// the wrong type.
pub fn parse(body: &[u8]) -> Result<CheckinMessage, ProtocolError> {
    let d = parse_dict(body)?;
    let message_type = d.req_string("MessageType")?;
    let awaiting = |d: &Dictionary| d.opt_bool("AwaitingConfiguration").map(|b| b == Some(true));
    Ok(match message_type.as_str() {
        "Authenticate" => CheckinMessage::Authenticate(Authenticate {
            ids: EnrollmentIds::from_dict(&d)?,
            topic: d.req_string("Topic")?,
            serial_number: d.opt_string("SerialNumber")?,
            model: d.opt_string("Model")?,
            model_name: d.opt_string("ModelName")?,
            product_name: d.opt_string("ProductName")?,
            os_version: d.opt_string("OSVersion")?,
            build_version: d.opt_string("BuildVersion")?,
            device_name: d.opt_string("DeviceName")?,
            imei: d.opt_string("IMEI")?,
            meid: d.opt_string("MEID")?,
            challenge: d.opt_data("Challenge")?,
        }),
        "TokenUpdate" => CheckinMessage::TokenUpdate(TokenUpdate {
            ids: EnrollmentIds::from_dict(&d)?,
            topic: d.req_string("Topic")?,
            token: d.req_data("Token")?,
            push_magic: d.req_string("PushMagic")?,
            unlock_token: d.opt_data("UnlockToken")?,
            awaiting_configuration: awaiting(&d)?,
            not_on_console: d.opt_bool("NotOnConsole")?,
        }),
        "CheckOut" => CheckinMessage::CheckOut(CheckOut { ids: EnrollmentIds::from_dict(&d)?, topic: d.opt_string("Topic")? }),
        "UserAuthenticate" => CheckinMessage::UserAuthenticate(UserAuthenticate {
            ids: EnrollmentIds::from_dict(&d)?,
            digest_response: d.opt_string("DigestResponse")?,
        }),
        "SetBootstrapToken" => CheckinMessage::SetBootstrapToken(SetBootstrapToken {
            ids: EnrollmentIds::from_dict(&d)?,
            bootstrap_token: d.opt_data("BootstrapToken")?,
            awaiting_configuration: awaiting(&d)?,
        }),
        "GetBootstrapToken" => CheckinMessage::GetBootstrapToken(GetBootstrapToken {
            ids: EnrollmentIds::from_dict(&d)?,
            awaiting_configuration: awaiting(&d)?,
        }),
        "DeclarativeManagement" => CheckinMessage::DeclarativeManagement(DeclarativeManagement {
            ids: EnrollmentIds::from_dict(&d)?,
            endpoint: d.req_string("Endpoint")?,
            data: d.opt_data("Data")?,
        }),
        "GetToken" => CheckinMessage::GetToken(GetToken {
            ids: EnrollmentIds::from_dict(&d)?,
            token_service_type: d.req_string("TokenServiceType")?,
            token_parameters: d.opt_dict("TokenParameters")?,
        }),
        _ => return Err(ProtocolError::UnknownMessageType(message_type)),
    })
}

/// The XML plist body that answers `GetBootstrapToken`: `{BootstrapToken: <data>}`.
pub fn bootstrap_token_response(token: &[u8]) -> Vec<u8> {
    let mut d = Dictionary::new();
    d.insert("BootstrapToken".into(), Value::Data(token.to_vec()));
    to_xml(&Value::Dictionary(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testutil::{fixture, validate};

    const TOPIC: &str = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9";

    #[test]
    fn authenticate_ios_fixture() {
        let msg = parse(&fixture("Authenticate.1.plist")).expect("parse");
        let CheckinMessage::Authenticate(a) = msg else {
            panic!("not Authenticate: {msg:?}");
        };
        assert_eq!(a.ids.device_id, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69");
        assert_eq!(a.ids.udid.as_deref(), Some(a.ids.device_id.as_str()));
        assert!(!a.ids.is_user_channel());
        assert_eq!(a.topic, TOPIC);
        assert_eq!(a.serial_number.as_deref(), Some("F5JM992LF193"));
        assert_eq!(a.product_name.as_deref(), Some("iPad2,5"));
        assert_eq!(a.os_version.as_deref(), Some("9.3.5"));
        assert_eq!(a.build_version.as_deref(), Some("13G36"));
        assert_eq!(a.model, None);
        assert_eq!(a.device_name, None);
    }

    #[test]
    fn authenticate_macos_fixture() {
        let msg = parse(&fixture("Authenticate.2.plist")).expect("parse");
        assert_eq!(msg.message_type(), "Authenticate");
        let CheckinMessage::Authenticate(a) = msg else {
            panic!("not Authenticate");
        };
        assert_eq!(a.ids.device_id, "66ADE930-5FDF-5EC4-8429-15640684C489");
        assert_eq!(a.device_name.as_deref(), Some("Fruit"));
        assert_eq!(a.model.as_deref(), Some("iMac14,2"));
        assert_eq!(a.model_name.as_deref(), Some("iMac"));
        assert_eq!(a.serial_number.as_deref(), Some("C02MT66KFLHH"));
        assert_eq!(a.challenge.as_deref(), Some(&b"apple"[..]));
    }

    #[test]
    fn token_update_fixtures() {
        let CheckinMessage::TokenUpdate(t) = parse(&fixture("TokenUpdate.1.plist")).expect("1") else {
            panic!("not TokenUpdate");
        };
        assert_eq!(t.ids.device_id, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69");
        assert_eq!(t.push_magic, "CEFDF0BD-E342-4A27-8742-E930EA116B0A");
        assert_eq!(t.token.len(), 32);
        assert_eq!(hex::encode(&t.token), "47e8eec062c2f729ec1703c1b3e18f1971d85f00be76445d34080baa701b5f51");
        assert!(t.unlock_token.as_ref().is_some_and(|u| u.len() > 1000));
        assert!(!t.awaiting_configuration);
        assert_eq!(t.topic, TOPIC);

        let CheckinMessage::TokenUpdate(t) = parse(&fixture("TokenUpdate.2.plist")).expect("2") else {
            panic!("not TokenUpdate");
        };
        assert_eq!(t.ids.device_id, "66ADE930-5FDF-5EC4-8429-15640684C489");
        assert_eq!(t.unlock_token, None);
    }

    #[test]
    fn every_checkin_fixture_parses() {
        let dir = crate::protocol::testutil::shared_dir().join("fixtures/nanomdm");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "plist") {
                continue;
            }
            let body = std::fs::read(&path).expect("read");
            let dict = parse_dict(&body).expect("fixture is a plist dictionary");
            if dict.contains_key("MessageType") {
                parse(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "only {seen} check-in fixtures found");
    }

    #[test]
    fn binary_plists_parse_too() {
        let xml = fixture("TokenUpdate.2.plist");
        let value = plist::Value::from_reader(std::io::Cursor::new(&xml)).expect("xml");
        let mut binary = Vec::new();
        value.to_writer_binary(&mut binary).expect("binary");
        assert!(binary.starts_with(b"bplist"));
        assert_eq!(parse(&binary).expect("binary"), parse(&xml).expect("xml"));
    }

    fn plist_of(pairs: &[(&str, Value)]) -> Vec<u8> {
        let mut d = Dictionary::new();
        for (k, v) in pairs {
            d.insert((*k).to_owned(), v.clone());
        }
        to_xml(&Value::Dictionary(d))
    }

    fn s(v: &str) -> Value {
        Value::String(v.to_owned())
    }

    #[test]
    fn user_channel_and_user_enrollment() {
        let body = plist_of(&[
            ("MessageType", s("TokenUpdate")),
            ("Topic", s(TOPIC)),
            ("EnrollmentID", s("ENR-1")),
            ("EnrollmentUserID", s("USR-1")),
            ("Token", Value::Data(vec![1, 2, 3])),
            ("PushMagic", s("magic")),
            ("AwaitingConfiguration", Value::Boolean(true)),
        ]);
        let CheckinMessage::TokenUpdate(t) = parse(&body).expect("parse") else {
            panic!("not TokenUpdate");
        };
        assert_eq!(t.ids.device_id, "ENR-1");
        assert_eq!(t.ids.udid, None);
        assert!(t.ids.is_user_channel());
        assert!(t.awaiting_configuration);
    }

    #[test]
    fn other_message_types() {
        let udid = ("UDID", s("U1"));
        let m = parse(&plist_of(&[("MessageType", s("CheckOut")), ("Topic", s(TOPIC)), udid.clone()])).expect("CheckOut");
        assert!(matches!(m, CheckinMessage::CheckOut(ref c) if c.ids.device_id == "U1"));

        let m =
            parse(&plist_of(&[("MessageType", s("SetBootstrapToken")), ("BootstrapToken", Value::Data(b"tok".to_vec())), udid.clone()]))
                .expect("SetBootstrapToken");
        assert!(matches!(m, CheckinMessage::SetBootstrapToken(ref b)
            if b.bootstrap_token.as_deref() == Some(&b"tok"[..])));

        let m = parse(&plist_of(&[("MessageType", s("GetBootstrapToken")), ("AwaitingConfiguration", Value::Boolean(true)), udid.clone()]))
            .expect("GetBootstrapToken");
        assert!(matches!(m, CheckinMessage::GetBootstrapToken(ref g) if g.awaiting_configuration));

        let m = parse(&plist_of(&[("MessageType", s("UserAuthenticate")), ("UserID", s("GUID")), udid.clone()])).expect("UserAuthenticate");
        assert!(matches!(m, CheckinMessage::UserAuthenticate(ref u)
            if u.digest_response.is_none() && u.ids.is_user_channel()));

        let m = parse(&plist_of(&[("MessageType", s("DeclarativeManagement")), ("Endpoint", s("tokens")), udid.clone()]))
            .expect("DeclarativeManagement");
        assert!(matches!(m, CheckinMessage::DeclarativeManagement(ref d) if d.endpoint == "tokens"));

        let m = parse(&plist_of(&[("MessageType", s("GetToken")), ("TokenServiceType", s("com.apple.maid")), udid])).expect("GetToken");
        assert_eq!(m.message_type(), "GetToken");
        assert_eq!(m.ids().device_id, "U1");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse(&plist_of(&[("MessageType", s("Reboot")), ("UDID", s("U"))])).unwrap_err();
        assert_eq!(e, ProtocolError::UnknownMessageType("Reboot".into()));

        let e = parse(&plist_of(&[("UDID", s("U"))])).unwrap_err();
        assert_eq!(e, ProtocolError::MissingKey("MessageType".into()));

        let e = parse(&plist_of(&[("MessageType", s("TokenUpdate")), ("Topic", s(TOPIC)), ("UDID", s("U")), ("PushMagic", s("m"))]))
            .unwrap_err();
        assert_eq!(e, ProtocolError::MissingKey("Token".into()));
        assert!(e.to_string().contains("Token"));

        let e = parse(&plist_of(&[
            ("MessageType", s("TokenUpdate")),
            ("Topic", s(TOPIC)),
            ("UDID", s("U")),
            ("PushMagic", s("m")),
            ("Token", s("not data")),
        ]))
        .unwrap_err();
        assert!(matches!(e, ProtocolError::WrongType { ref key, .. } if key == "Token"));

        let e = parse(&plist_of(&[("MessageType", s("Authenticate")), ("Topic", s(TOPIC))])).unwrap_err();
        assert_eq!(e, ProtocolError::MissingKey("UDID".into()));

        assert!(matches!(parse(b"<plist><dict><key>x"), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn bootstrap_token_answer() {
        let body = bootstrap_token_response(b"secret");
        let d = parse_dict(&body).expect("plist");
        assert_eq!(d.opt_data("BootstrapToken"), Ok(Some(b"secret".to_vec())));
        assert_eq!(d.len(), 1);
        assert!(body.starts_with(b"<?xml"));
    }

    #[test]
    fn fixtures_agree_with_apples_schema() {
        // The same validator the server's output is held to accepts the captured check-ins,
        // so the fixtures and the tool agree on what a device sends.
        for name in ["Authenticate.1.plist", "TokenUpdate.2.plist"] {
            validate("checkin", &fixture(name), "plist");
        }
    }
}
