//! Supervision, told plainly: which profile keys and commands need a supervised device, and what
//! that means for a device that is not supervised.
//!
//! iPadOS ignores many restriction keys on an unsupervised device (AirDrop, Game Center, app
//! installation...), and refuses some commands (RestartDevice, Lost Mode...). The facts come
//! from Apple's device-management schema, never from a list typed here:
//! `tools/supervision_facts.py` reads `mdm/profiles/*.yaml` and `mdm/commands/*.yaml` and writes
//! `data-apple/supervision.json`, embedded at build time ([`facts`]). A test checks the file is
//! up to date whenever the schema is present (`../shared/apple-device-management`, or
//! `$LANYARD_APPLE_SCHEMA`). Apple's `iOS` covers iPadOS; Lanyard keeps `iOS` and `macOS`.
//!
//! - A profile's keys that need supervision: [`profile_needs`] (a key the profile sets to the
//!   schema's default is left out: it asks nothing the device would ignore).
//! - On a device: [`not_in_force`] — on a device known not to be supervised each such key is
//!   `not_in_force`; while its supervision is not reported yet (no DeviceInformation answer),
//!   `unknown`. A supervised device, or another system's key, has nothing to report.
//! - A command: [`command_needs`] (its request type, or a `Settings` item such as `DeviceName`).
//!   [`Supervision::ensure_supervised`] refuses it before queueing for devices known not to be
//!   supervised; a device whose supervision is unknown is not refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use plist::Value;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::protocol::command::Command;
use crate::store::DynStore;

/// What needs a supervised device, and refusing commands that do.
#[derive(Clone)]
pub struct Supervision {
    pub(crate) store: DynStore,
}

/// The generated facts, as committed.
pub const FACTS_JSON: &str = include_str!("../../data-apple/supervision.json");

/// What the reason says for a key on a device known not to be supervised.
pub const NOT_SUPERVISED: &str = "not in force: device not supervised";
/// ... and on a device whose supervision is not reported yet.
pub const SUPERVISION_UNKNOWN: &str = "may not be in force: supervision not reported yet";

/// An operating system as Apple's schema names it (`iOS` includes iPadOS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Os {
    #[serde(rename = "iOS")]
    Ios,
    #[serde(rename = "macOS")]
    MacOs,
}

impl Os {
    /// The schema's system for a device's platform (`iOS`, `iPadOS` or `macOS`).
    pub fn of_platform(platform: &str) -> Os {
        if platform == "macOS" { Os::MacOs } else { Os::Ios }
    }

    pub fn words(self) -> &'static str {
        match self {
            Os::Ios => "iOS/iPadOS",
            Os::MacOs => "macOS",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyFacts {
    pub os: Vec<Os>,
    /// The schema's default (a plain value), when it gives one.
    #[serde(default)]
    pub default: Option<Json>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PayloadFacts {
    /// Systems on which the whole payload needs supervision.
    #[serde(default)]
    pub payload: Vec<Os>,
    /// Key paths (`AllowList/AllowListItem`) that need supervision.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyFacts>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CommandFacts {
    /// Systems on which the request type needs supervision.
    #[serde(default)]
    pub request: Vec<Os>,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyFacts>,
}

#[derive(Debug, Deserialize)]
pub struct Facts {
    /// The schema commit the facts were generated from.
    pub schema_commit: Option<String>,
    /// By payload type; `TopLevel` is the profile's outer dictionary, `CommonPayloadKeys` every
    /// payload's common keys.
    pub profiles: BTreeMap<String, PayloadFacts>,
    /// By request type.
    pub commands: BTreeMap<String, CommandFacts>,
}

static FACTS: LazyLock<Facts> =
    LazyLock::new(|| serde_json::from_str(FACTS_JSON).expect("data-apple/supervision.json is valid (a unit test parses it)"));

/// The facts from Apple's schema, parsed once.
pub fn facts() -> &'static Facts {
    &FACTS
}

/// A setting of a profile that needs a supervised device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct NeedsSupervision {
    /// The payload's `PayloadType` (`Configuration` for the profile's own keys).
    pub payload_type: String,
    /// The key, with a path for nested keys (`AllowList/AllowListItem`); null when the whole
    /// payload needs supervision.
    pub key: Option<String>,
    /// Where: `iOS` (iPhone and iPad) and/or `macOS`.
    pub os: Vec<Os>,
}

impl NeedsSupervision {
    /// The key, or the payload when the whole of it needs supervision.
    pub fn label(&self) -> String {
        match &self.key {
            Some(k) => k.clone(),
            None => format!("the whole {} payload", self.payload_type),
        }
    }
}

/// Whether a plist value equals the schema's default for its key.
fn is_default(v: &Value, default: Option<&Json>) -> bool {
    match (v, default) {
        (Value::Boolean(b), Some(Json::Bool(d))) => b == d,
        (Value::Integer(i), Some(Json::Number(n))) => i.as_signed().is_some_and(|i| Some(i) == n.as_i64()),
        (Value::Real(r), Some(Json::Number(n))) => n.as_f64() == Some(*r),
        (Value::String(s), Some(Json::String(d))) => s == d,
        _ => false,
    }
}

/// An array's item matches the schema's item name when it is not a `{"Item": ...}` dictionary
/// (a `Settings` item), or when its `Item` is that name.
fn item_named(v: &Value, name: &str) -> bool {
    match v.as_dictionary().and_then(|d| d.get("Item")).and_then(Value::as_string) {
        Some(item) => item == name,
        None => true,
    }
}

/// Whether `value` sets the key at `path` (below it) to something other than its default.
/// A dictionary step is a key (`ANY`: any key); an array step names its items.
fn sets(value: &Value, path: &[&str], default: Option<&Json>) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return !is_default(value, default);
    };
    match value {
        Value::Dictionary(d) if *first == "ANY" => d.values().any(|c| sets(c, rest, default)),
        Value::Dictionary(d) => d.get(first).is_some_and(|c| sets(c, rest, default)),
        Value::Array(items) => items.iter().filter(|i| item_named(i, first)).any(|i| sets(i, rest, default)),
        _ => false,
    }
}

fn keys_set(payload_type: &str, dict: &Value, facts: &PayloadFacts, out: &mut BTreeSet<NeedsSupervision>) {
    for (path, k) in &facts.keys {
        let steps: Vec<&str> = path.split('/').collect();
        if sets(dict, &steps, k.default.as_ref()) {
            out.insert(NeedsSupervision { payload_type: payload_type.to_owned(), key: Some(path.clone()), os: k.os.clone() });
        }
    }
}

/// The settings of a profile (its outer dictionary) that need a supervised device, by payload
/// type and key, sorted.
pub fn profile_needs(profile: &Value) -> Vec<NeedsSupervision> {
    let f = facts();
    let mut out = BTreeSet::new();
    let Some(top) = profile.as_dictionary() else { return Vec::new() };
    let outer_type = top.get("PayloadType").and_then(Value::as_string).unwrap_or("Configuration");
    if let Some(t) = f.profiles.get("TopLevel") {
        keys_set(outer_type, profile, t, &mut out);
    }
    for payload in top.get("PayloadContent").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let Some(ptype) = payload.as_dictionary().and_then(|d| d.get("PayloadType")).and_then(Value::as_string) else { continue };
        if let Some(common) = f.profiles.get("CommonPayloadKeys") {
            keys_set(ptype, payload, common, &mut out);
        }
        let Some(p) = f.profiles.get(ptype) else { continue };
        if !p.payload.is_empty() {
            out.insert(NeedsSupervision { payload_type: ptype.to_owned(), key: None, os: p.payload.clone() });
        }
        keys_set(ptype, payload, p, &mut out);
    }
    out.into_iter().collect()
}

/// [`profile_needs`] of a stored version's XML, remembered by its SHA-256 (versions never
/// change).
pub fn stored_profile_needs(sha256: &str, xml: &[u8]) -> Arc<Vec<NeedsSupervision>> {
    static SEEN: LazyLock<Mutex<HashMap<String, Arc<Vec<NeedsSupervision>>>>> = LazyLock::new(Default::default);
    if let Some(n) = SEEN.lock().unwrap_or_else(|e| e.into_inner()).get(sha256) {
        return n.clone();
    }
    // Stored XML was checked when it was uploaded (size, nesting).
    let needs = Arc::new(Value::from_reader_xml(xml).map(|v| profile_needs(&v)).unwrap_or_default());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.len() > 10_000 {
        seen.clear();
    }
    seen.insert(sha256.to_owned(), needs.clone());
    needs
}

/// A setting of an intended profile that is not (or may not be) in force on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInForce {
    pub payload_type: String,
    /// Null: the whole payload.
    pub key: Option<String>,
    /// `not_in_force` (the device is not supervised) or `unknown` (its supervision is not
    /// reported yet).
    #[schema(schema_with = crate::schema::enums::key_in_force_state)]
    pub state: &'static str,
    /// In words: "not in force: device not supervised".
    #[schema(schema_with = crate::services::supervision::key_in_force_reason_schema)]
    pub reason: &'static str,
}

impl KeyInForce {
    pub fn label(&self) -> String {
        match &self.key {
            Some(k) => k.clone(),
            None => format!("the whole {} payload", self.payload_type),
        }
    }
}

/// What of `needs` is not in force on a device of `platform` whose supervision is `supervised`.
pub fn not_in_force(needs: &[NeedsSupervision], platform: &str, supervised: Option<bool>) -> Vec<KeyInForce> {
    if supervised == Some(true) {
        return Vec::new();
    }
    let os = Os::of_platform(platform);
    let (state, reason) = if supervised.is_none() { ("unknown", SUPERVISION_UNKNOWN) } else { ("not_in_force", NOT_SUPERVISED) };
    needs
        .iter()
        .filter(|n| n.os.contains(&os))
        .map(|n| KeyInForce { payload_type: n.payload_type.clone(), key: n.key.clone(), state, reason })
        .collect()
}

/// Something a command asks that needs a supervised device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandNeed {
    /// `RestartDevice`, or `Settings item DeviceName`.
    pub what: String,
    pub os: Vec<Os>,
}

/// What of a command needs a supervised device: its request type, or keys it carries (the items
/// of a `Settings` command). DeviceInformation queries that only a supervised device answers
/// are not counted: an unsupervised device leaves them out of its answer.
pub fn command_needs(cmd: &Command) -> Vec<CommandNeed> {
    let Some(f) = facts().commands.get(cmd.request_type()) else { return Vec::new() };
    let mut out = Vec::new();
    if !f.request.is_empty() {
        out.push(CommandNeed { what: cmd.request_type().to_owned(), os: f.request.clone() });
    }
    if !f.keys.is_empty() {
        let dict = Value::Dictionary(cmd.command_dict());
        for (path, k) in &f.keys {
            let steps: Vec<&str> = path.split('/').collect();
            if sets(&dict, &steps, k.default.as_ref()) {
                let what = match steps.as_slice() {
                    ["Settings", item] => format!("Settings item {item}"),
                    _ => path.clone(),
                };
                out.push(CommandNeed { what, os: k.os.clone() });
            }
        }
    }
    out
}

/// The systems on which a request type itself needs supervision (for the console's buttons).
pub fn request_needs(request_type: &str) -> &'static [Os] {
    facts().commands.get(request_type).map(|c| c.request.as_slice()).unwrap_or_default()
}

/// What a device is called in a message: its name and UDID.
fn device_words(name: Option<&str>, udid: &str) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{n} ({udid})"),
        _ => udid.to_owned(),
    }
}

/// `a, b, c and 4 more`.
fn list_words(items: &[String], max: usize) -> String {
    let shown = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max { format!("{shown} and {} more", items.len() - max) } else { shown }
}

/// A warning in the answer to assigning a profile: some members will not apply some of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupervisionWarning {
    /// `needs_supervision` (members known not to be supervised) or `supervision_unknown`
    /// (members whose supervision is not reported yet).
    #[schema(schema_with = crate::schema::enums::warning_code)]
    pub code: &'static str,
    pub message: String,
    /// The members concerned, by UDID.
    pub devices: Vec<String>,
    /// The profile's settings they will not (or may not) apply.
    pub keys: Vec<NeedsSupervision>,
}

/// A profile's key on a device, for the compliance report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileKeyInForce {
    pub profile_id: Uuid,
    pub profile: String,
    #[serde(flatten)]
    pub key: KeyInForce,
}

impl Supervision {
    /// The settings of a profile version that need supervision (none if the version is gone).
    pub async fn profile_version_needs(&self, profile_id: Uuid, version: i64) -> Result<Arc<Vec<NeedsSupervision>>> {
        Ok(match self.store.profile_version(profile_id, version).await? {
            Some(v) => stored_profile_needs(&v.sha256, &v.xml),
            None => Arc::new(Vec::new()),
        })
    }

    /// Refuse a command that needs supervision if any target is known not to be supervised
    /// (422 `needs_supervision`, naming them): the whole request, before anything is queued.
    /// Targets whose supervision is not reported yet are not refused.
    pub async fn ensure_supervised(&self, cmd: &Command, udids: &[String]) -> Result<()> {
        let needs = command_needs(cmd);
        if needs.is_empty() {
            return Ok(());
        }
        let mut refused = Vec::new();
        let mut names = Vec::new();
        let mut systems = BTreeSet::new();
        let mut what = BTreeSet::new();
        for (udid, platform, supervised, name) in self.store.device_supervision(udids).await? {
            let os = Os::of_platform(&platform);
            let applicable: Vec<&CommandNeed> = needs.iter().filter(|n| n.os.contains(&os)).collect();
            if supervised == Some(false) && !applicable.is_empty() {
                systems.insert(os);
                what.extend(applicable.iter().map(|n| n.what.clone()));
                names.push(device_words(name.as_deref(), &udid));
                refused.push(udid);
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        refused.sort();
        names.sort();
        let what: Vec<String> = what.into_iter().collect();
        let on: Vec<&str> = systems.iter().map(|o| o.words()).collect();
        let message = if udids.len() == 1 {
            format!(
                "{} needs a supervised device on {}, and {} is not supervised, so it would ignore it. Nothing was queued.",
                what.join(" and "),
                on.join(" and "),
                names[0]
            )
        } else {
            format!(
                "{} needs a supervised device on {}, and {} of the {} targets are not supervised: {}. Nothing was queued, for any target.",
                what.join(" and "),
                on.join(" and "),
                refused.len(),
                udids.len(),
                list_words(&names, 10)
            )
        };
        let mut extra = serde_json::Map::new();
        extra.insert("request_type".into(), json!(cmd.request_type()));
        extra.insert("needs_supervision".into(), json!(what));
        extra.insert("devices".into(), json!(refused));
        Err(Error::Invalid { code: "needs_supervision", field: "request_type".into(), message, extra })
    }

    /// What assigning a profile means for a group's members: warnings naming the members that
    /// will not apply some of its settings (not supervised), or may not (not reported yet).
    pub async fn supervision_warnings(&self, needs: &[NeedsSupervision], udids: &[String]) -> Result<Vec<SupervisionWarning>> {
        if needs.is_empty() || udids.is_empty() {
            return Ok(Vec::new());
        }
        /// The members concerned (UDIDs, names in words) and the keys they will not apply.
        type Concerned = (Vec<String>, Vec<String>, BTreeSet<NeedsSupervision>);
        let mut found: BTreeMap<&'static str, Concerned> = BTreeMap::new();
        for (udid, platform, supervised, name) in self.store.device_supervision(udids).await? {
            let os = Os::of_platform(&platform);
            let keys: Vec<&NeedsSupervision> = needs.iter().filter(|n| n.os.contains(&os)).collect();
            let code = match supervised {
                Some(true) => continue,
                Some(false) => "needs_supervision",
                None => "supervision_unknown",
            };
            if keys.is_empty() {
                continue;
            }
            let e = found.entry(code).or_default();
            e.0.push(udid.clone());
            e.1.push(device_words(name.as_deref(), &udid));
            e.2.extend(keys.into_iter().cloned());
        }
        let mut out = Vec::new();
        for (code, (mut devices, mut names, keys)) in found {
            devices.sort();
            names.sort();
            let labels: Vec<String> = keys.iter().map(NeedsSupervision::label).collect();
            let n = devices.len();
            let message = if code == "needs_supervision" {
                format!(
                    "{n} device{} in the group {} not supervised, so {} not apply {} of this profile (they need a supervised \
                     device): {}. Devices: {}.",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "it will" } else { "they will" },
                    if labels.len() == 1 { "this setting" } else { "these settings" },
                    list_words(&labels, 12),
                    list_words(&names, 10)
                )
            } else {
                format!(
                    "{n} device{} in the group {} not reported whether {} supervised yet, so {} may not apply: {}. Devices: {}.",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "has" } else { "have" },
                    if n == 1 { "it is" } else { "they are" },
                    if labels.len() == 1 { "this setting" } else { "these settings" },
                    list_words(&labels, 12),
                    list_words(&names, 10)
                )
            };
            out.push(SupervisionWarning { code, message, devices, keys: keys.into_iter().collect() });
        }
        // Known problems first.
        out.sort_by_key(|w| w.code != "needs_supervision");
        Ok(out)
    }
}

/// The OpenAPI schema of why a key is not in force.
pub fn key_in_force_reason_schema() -> utoipa::openapi::schema::Object {
    crate::schema::string_enum(&[NOT_SUPERVISED, SUPERVISION_UNKNOWN], None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(payload: &str) -> Value {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>
<key>PayloadType</key><string>Configuration</string><key>PayloadRemovalDisallowed</key><true/>
<key>PayloadContent</key><array>{payload}</array></dict></plist>"#
        );
        Value::from_reader_xml(xml.as_bytes()).unwrap()
    }

    fn keys(needs: &[NeedsSupervision]) -> Vec<(String, Option<String>)> {
        needs.iter().map(|n| (n.payload_type.clone(), n.key.clone())).collect()
    }

    #[test]
    fn the_generated_facts_parse_and_say_what_apple_says() {
        let f = facts();
        assert!(f.schema_commit.as_deref().is_some_and(|c| c.len() == 40), "{:?}", f.schema_commit);
        let access = &f.profiles["com.apple.applicationaccess"];
        assert_eq!(access.keys["allowAirDrop"].os, [Os::Ios]);
        assert_eq!(access.keys["allowAirDrop"].default, Some(json!(true)));
        assert!(!access.keys.contains_key("allowCamera"), "the camera restriction works unsupervised");
        assert!(access.keys.values().any(|k| k.os.contains(&Os::MacOs)), "some keys need supervision on macOS too");
        assert_eq!(f.profiles["com.apple.app.lock"].payload, [Os::Ios]);
        assert_eq!(f.commands["RestartDevice"].request, [Os::Ios]);
        assert!(f.commands["EnableRemoteDesktop"].request == [Os::MacOs]);
        assert!(!f.commands.contains_key("DeviceLock"));
        assert!(f.commands["Settings"].keys.contains_key("Settings/DeviceName"));
    }

    #[test]
    fn a_profile_lists_what_it_sets_that_needs_supervision() {
        let p = profile(
            "<dict><key>PayloadType</key><string>com.apple.applicationaccess</string>
             <key>allowAirDrop</key><false/><key>allowGameCenter</key><true/><key>allowCamera</key><false/></dict>
             <dict><key>PayloadType</key><string>com.apple.airplay</string>
             <key>AllowList</key><array><dict><key>DeviceID</key><string>AA:BB</string></dict></array></dict>
             <dict><key>PayloadType</key><string>com.apple.app.lock</string></dict>",
        );
        let needs = profile_needs(&p);
        let s = |t: &str, k: Option<&str>| (t.to_owned(), k.map(str::to_owned));
        assert_eq!(
            keys(&needs),
            [
                s("Configuration", Some("PayloadRemovalDisallowed")),
                s("com.apple.airplay", Some("AllowList")),
                s("com.apple.app.lock", None),
                s("com.apple.applicationaccess", Some("allowAirDrop")),
            ],
            "allowGameCenter is at its default; allowCamera does not need supervision"
        );
        // Not in force on an unsupervised iPad, unknown before it reports, nothing when
        // supervised; on a Mac these need no supervision.
        let ipad = not_in_force(&needs, "iPadOS", Some(false));
        assert_eq!(ipad.len(), 4);
        assert!(ipad.iter().all(|k| k.state == "not_in_force" && k.reason == NOT_SUPERVISED));
        assert!(not_in_force(&needs, "iPadOS", None).iter().all(|k| k.state == "unknown"));
        assert!(not_in_force(&needs, "iPadOS", Some(true)).is_empty());
        assert!(not_in_force(&needs, "macOS", Some(false)).is_empty());
    }

    #[test]
    fn commands_that_need_supervision() {
        let cmd = |rt: &str, fields: Json| Command::from_json(rt, fields.as_object().unwrap()).unwrap();
        let restart = command_needs(&cmd("RestartDevice", json!({})));
        assert_eq!(restart, [CommandNeed { what: "RestartDevice".into(), os: vec![Os::Ios] }]);
        assert!(command_needs(&cmd("DeviceLock", json!({}))).is_empty());
        let rename = command_needs(&cmd("Settings", json!({"Settings": [{"Item": "DeviceName", "DeviceName": "Year 3 iPad"}]})));
        assert_eq!(rename, [CommandNeed { what: "Settings item DeviceName".into(), os: vec![Os::Ios] }]);
        let roaming = command_needs(&cmd("Settings", json!({"Settings": [{"Item": "DataRoaming", "Enabled": false}]})));
        assert!(roaming.is_empty(), "{roaming:?}");
        let info = command_needs(&cmd("DeviceInformation", json!({"Queries": ["IsSupervised", "UDID"]})));
        assert!(info.is_empty());
        assert_eq!(request_needs("DisableLostMode"), [Os::Ios]);
    }

    /// The committed file is what the generator makes from the schema (skipped where the schema
    /// is not, e.g. in CI's clean clone).
    #[test]
    fn the_generated_facts_are_up_to_date() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let schema = std::env::var_os("LANYARD_APPLE_SCHEMA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo.join("../shared/apple-device-management"));
        if !schema.join("mdm/profiles").is_dir() {
            eprintln!("skipping: no Apple schema at {} (set LANYARD_APPLE_SCHEMA)", schema.display());
            return;
        }
        let out = std::process::Command::new("python3")
            .arg(repo.join("tools/supervision_facts.py"))
            .arg("--schema")
            .arg(&schema)
            .args(["--out", "-"])
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "tools/supervision_facts.py failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout) == FACTS_JSON,
            "data-apple/supervision.json is out of date with {}: run python3 tools/supervision_facts.py and commit it",
            schema.display()
        );
    }
}
