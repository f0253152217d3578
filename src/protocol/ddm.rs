//! Declarative Device Management documents (JSON): the declarations Lanyard serves, the
//! `tokens` and `declaration-items` answers, and the device's status report. Apple's schema is
//! `apple-device-management/declarative/` (declarationbase, protocol/, status/).
//!
//! A declaration's `ServerToken` is a hash of its type and payload, so it changes exactly when
//! the content does; the `DeclarationsToken` is a hash of the device's (identifier, server
//! token) pairs, so it changes exactly when the device's set does, and a device whose set is
//! unchanged stops after one `tokens` request.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::ProtocolError;

/// A status report larger than this is refused (Apple's are a few kilobytes).
pub const MAX_STATUS_BYTES: usize = 256 * 1024;
/// Status items nested deeper than this are refused.
pub const MAX_STATUS_DEPTH: usize = 16;

/// The four kinds of declaration, as `declaration-items` groups them and as the
/// `declaration/{kind}/{identifier}` endpoint names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Activation,
    Asset,
    Configuration,
    Management,
}

impl Kind {
    /// From the declaration type: `com.apple.activation.simple` is an activation.
    pub fn of(declaration_type: &str) -> Option<Kind> {
        let rest = declaration_type.strip_prefix("com.apple.")?;
        Some(match rest.split('.').next()? {
            "activation" => Kind::Activation,
            "asset" => Kind::Asset,
            "configuration" => Kind::Configuration,
            "management" => Kind::Management,
            _ => return None,
        })
    }

    /// As the endpoint path names it.
    pub fn path_name(self) -> &'static str {
        match self {
            Kind::Activation => "activation",
            Kind::Asset => "asset",
            Kind::Configuration => "configuration",
            Kind::Management => "management",
        }
    }
}

/// One declaration as served.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    pub declaration_type: String,
    pub identifier: String,
    pub server_token: String,
    pub payload: Map<String, Value>,
}

impl Declaration {
    /// A declaration whose server token is the hash of its type and payload.
    pub fn new(declaration_type: &str, identifier: &str, payload: Map<String, Value>) -> Declaration {
        let mut canonical = String::new();
        write_canonical(&json!({"Type": declaration_type, "Payload": Value::Object(payload.clone())}), &mut canonical);
        let server_token = hex::encode(&openssl::sha::sha256(canonical.as_bytes())[..16]);
        Declaration { declaration_type: declaration_type.to_owned(), identifier: identifier.to_owned(), server_token, payload }
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::of(&self.declaration_type)
    }

    /// The document the `declaration/...` endpoint answers.
    pub fn to_json(&self) -> Value {
        json!({"Type": self.declaration_type, "Identifier": self.identifier, "ServerToken": self.server_token, "Payload": self.payload})
    }
}

/// JSON with object keys in sorted order, whatever order the map keeps them in.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The token of a device's whole set: changes exactly when an identifier or server token does.
pub fn declarations_token(declarations: &[Declaration]) -> String {
    let mut pairs: Vec<(&str, &str)> = declarations.iter().map(|d| (d.identifier.as_str(), d.server_token.as_str())).collect();
    pairs.sort();
    let mut text = String::new();
    for (id, token) in pairs {
        text.push_str(id);
        text.push('\u{1f}');
        text.push_str(token);
        text.push('\u{1e}');
    }
    hex::encode(&openssl::sha::sha256(text.as_bytes())[..16])
}

/// The `tokens` answer. `changed_at`: when the set last changed (the `Timestamp`).
pub fn tokens_response(declarations: &[Declaration], changed_at: DateTime<Utc>) -> Value {
    json!({"SyncTokens": {
        "DeclarationsToken": declarations_token(declarations),
        "Timestamp": changed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }})
}

/// The `declaration-items` answer.
pub fn declaration_items(declarations: &[Declaration]) -> Value {
    let mut groups: [(Kind, &str, Vec<Value>); 4] = [
        (Kind::Activation, "Activations", vec![]),
        (Kind::Asset, "Assets", vec![]),
        (Kind::Configuration, "Configurations", vec![]),
        (Kind::Management, "Management", vec![]),
    ];
    for d in declarations {
        if let Some((_, _, items)) = groups.iter_mut().find(|(k, _, _)| Some(*k) == d.kind()) {
            items.push(json!({"Identifier": d.identifier, "ServerToken": d.server_token}));
        }
    }
    let mut by_kind = Map::new();
    for (_, name, items) in groups {
        by_kind.insert(name.to_owned(), Value::Array(items));
    }
    json!({"Declarations": by_kind, "DeclarationsToken": declarations_token(declarations)})
}

/// A declaration's state as the device reports it (`management.declarations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarationState {
    pub identifier: String,
    pub server_token: Option<String>,
    pub active: Option<bool>,
    /// `valid`, `invalid` or `unknown`.
    pub valid: Option<String>,
    /// The reasons' codes and descriptions, in words.
    pub reasons: Vec<String>,
}

/// A device's status report.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Every leaf item by its dotted name (`device.operating-system.version`), as sent. The
    /// declarations' states are apart, in `declarations`.
    pub items: Vec<(String, Value)>,
    pub declarations: Vec<DeclarationState>,
    /// Items the device could not report, with its reasons.
    pub errors: Vec<(String, String)>,
    pub full_report: bool,
}

/// Reads a status report: a JSON object with `StatusItems` (nested objects), optional `Errors`
/// and `FullReport`. Refuses what is not that, too large or too deep.
pub fn parse_status(body: &[u8]) -> Result<StatusReport, ProtocolError> {
    if body.len() > MAX_STATUS_BYTES {
        return Err(ProtocolError::Malformed(format!("status report larger than {MAX_STATUS_BYTES} bytes")));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ProtocolError::Malformed(format!("status report is not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| ProtocolError::Malformed("status report is not a JSON object".into()))?;
    let items = match obj.get("StatusItems") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ProtocolError::Malformed("StatusItems is not an object".into())),
        None => return Err(ProtocolError::Malformed("status report without StatusItems".into())),
    };
    let full_report = match obj.get("FullReport") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ProtocolError::Malformed("FullReport is not a boolean".into())),
    };
    let mut report = StatusReport { items: Vec::new(), declarations: Vec::new(), errors: Vec::new(), full_report };
    flatten("", items, 0, &mut report)?;
    if let Some(errors) = obj.get("Errors") {
        let errors = errors.as_array().ok_or_else(|| ProtocolError::Malformed("Errors is not an array".into()))?;
        for e in errors {
            let item = e.get("StatusItem").and_then(Value::as_str).unwrap_or("?").to_owned();
            report.errors.push((item, reasons(e.get("Reasons")).join("; ")));
        }
    }
    Ok(report)
}

fn flatten(prefix: &str, m: &Map<String, Value>, depth: usize, out: &mut StatusReport) -> Result<(), ProtocolError> {
    if depth > MAX_STATUS_DEPTH {
        return Err(ProtocolError::Malformed(format!("status items nested deeper than {MAX_STATUS_DEPTH}")));
    }
    for (k, v) in m {
        let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if name == "management.declarations" {
            out.declarations.extend(declaration_states(v)?);
            continue;
        }
        match v {
            Value::Object(inner) => flatten(&name, inner, depth + 1, out)?,
            other => out.items.push((name, other.clone())),
        }
    }
    Ok(())
}

/// `management.declarations`: `{activations: [...], configurations: [...], assets, management}`.
fn declaration_states(v: &Value) -> Result<Vec<DeclarationState>, ProtocolError> {
    let m = v.as_object().ok_or_else(|| ProtocolError::Malformed("management.declarations is not an object".into()))?;
    let mut out = Vec::new();
    for (_, list) in m {
        let list = list.as_array().ok_or_else(|| ProtocolError::Malformed("management.declarations lists are arrays".into()))?;
        for d in list {
            let Some(identifier) = d.get("identifier").and_then(Value::as_str) else {
                return Err(ProtocolError::Malformed("a declaration's status has no identifier".into()));
            };
            out.push(DeclarationState {
                identifier: identifier.to_owned(),
                server_token: d.get("server-token").and_then(Value::as_str).map(str::to_owned),
                active: d.get("active").and_then(Value::as_bool),
                valid: d.get("valid").and_then(Value::as_str).map(str::to_owned),
                reasons: reasons(d.get("reasons")),
            });
        }
    }
    Ok(out)
}

fn reasons(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let code = r.get("code").or_else(|| r.get("Code")).and_then(Value::as_str).unwrap_or("?");
                    match r.get("description").or_else(|| r.get("Description")).and_then(Value::as_str) {
                        Some(d) => format!("{code}: {d}"),
                        None => code.to_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(t: &str, id: &str, payload: Value) -> Declaration {
        Declaration::new(t, id, payload.as_object().unwrap().clone())
    }

    #[test]
    fn tokens_follow_the_content() {
        let a = decl("com.apple.management.organization-info", "org", json!({"Name": "St Mary's", "Email": "it@example.sch.uk"}));
        let same = decl("com.apple.management.organization-info", "org", json!({"Email": "it@example.sch.uk", "Name": "St Mary's"}));
        let other = decl("com.apple.management.organization-info", "org", json!({"Name": "St Mary's Primary"}));
        assert_eq!(a.server_token, same.server_token, "key order does not matter");
        assert_ne!(a.server_token, other.server_token);
        assert_eq!(declarations_token(&[a.clone()]), declarations_token(&[same]));
        assert_ne!(declarations_token(&[a.clone()]), declarations_token(&[other]));
        let act = decl("com.apple.activation.simple", "act", json!({"StandardConfigurations": ["x"]}));
        assert_eq!(declarations_token(&[a.clone(), act.clone()]), declarations_token(&[act, a]), "order of the set does not matter");
    }

    #[test]
    fn items_are_grouped_by_kind() {
        let items = declaration_items(&[
            decl("com.apple.activation.simple", "act", json!({"StandardConfigurations": ["cfg"]})),
            decl("com.apple.configuration.management.status-subscriptions", "cfg", json!({"StatusItems": []})),
        ]);
        assert_eq!(items["Declarations"]["Activations"][0]["Identifier"], "act");
        assert_eq!(items["Declarations"]["Configurations"][0]["Identifier"], "cfg");
        assert_eq!(items["Declarations"]["Assets"], json!([]));
        assert!(items["DeclarationsToken"].is_string());
    }

    #[test]
    fn a_status_report_flattens_and_keeps_declaration_states() {
        let body = json!({"StatusItems": {
            "device": {"operating-system": {"version": "18.1", "build-version": "22B83"}},
            "passcode": {"is-compliant": true},
            "management": {"declarations": {"configurations": [
                {"identifier": "cfg", "server-token": "t", "active": false, "valid": "invalid",
                 "reasons": [{"code": "Error.ConfigurationCannotBeApplied", "description": "bad key"}]}]}}
        }, "Errors": [], "FullReport": true});
        let r = parse_status(body.to_string().as_bytes()).unwrap();
        assert!(r.full_report);
        assert!(r.items.contains(&("device.operating-system.version".into(), json!("18.1"))));
        assert!(r.items.contains(&("passcode.is-compliant".into(), json!(true))));
        assert_eq!(r.declarations[0].valid.as_deref(), Some("invalid"));
        assert_eq!(r.declarations[0].reasons, vec!["Error.ConfigurationCannotBeApplied: bad key"]);
        for bad in [&b"[]"[..], b"{}", b"{\"StatusItems\": 3}", b"not json", b"{\"StatusItems\":{}, \"FullReport\": 1}"] {
            assert!(parse_status(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{{\"StatusItems\":{}1{}}}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(parse_status(deep.as_bytes()).is_err());
    }
}
