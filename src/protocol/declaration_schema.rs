//! Checking a declaration against Apple's schema before Lanyard keeps it.
//!
//! The facts come from Apple's device-management schema, never from a list typed here:
//! `tools/declaration_schema.py` reads `declarative/declarations/**/*.yaml` and writes
//! `data-apple/declarations.json` (each type's kind, `apply`, the iOS and macOS versions that
//! introduced it, and its payload keys), embedded at build time. A test checks the file is up to
//! date whenever the schema is present. Hand-written because no crate reads Apple's YAML: the
//! check is the walk `validate_plist.py` does, over JSON.
//!
//! Checked, at any depth: unknown keys (a schema key `ANY` stands for any name), types
//! (`integer` passes for `real`; `data` and `date` are strings in JSON), required keys,
//! `rangelist` and numeric `range`. Every problem is reported with the path of the key it is
//! about (`Payload.Deferrals.CombinedPeriodInDays`), so a technician can find it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

/// The generated facts, as committed.
pub const SCHEMA_JSON: &str = include_str!("../../data-apple/declarations.json");

/// One declaration type, as Apple's schema describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeclarationType {
    /// `configuration`, `asset`, `activation` or `management`.
    pub kind: String,
    /// `single` (one per device), `multiple` or `combined` (the device merges them).
    pub apply: String,
    /// The iOS and macOS versions that introduced it; absent where it does not exist.
    pub introduced: BTreeMap<String, Option<String>>,
    pub keys: Vec<KeySchema>,
}

/// One payload key.
#[derive(Debug, Clone, Deserialize)]
pub struct KeySchema {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub rangelist: Option<Vec<Value>>,
    #[serde(default)]
    pub range: Option<Range>,
    #[serde(default)]
    pub subkeys: Vec<KeySchema>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// A problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Where: `Payload.MinimumLength`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

static TYPES: LazyLock<BTreeMap<String, DeclarationType>> =
    LazyLock::new(|| serde_json::from_str(SCHEMA_JSON).expect("data-apple/declarations.json is valid (checked by a test)"));

/// The schema of a declaration type, if Apple defines it.
pub fn declaration_type(name: &str) -> Option<&'static DeclarationType> {
    TYPES.get(name)
}

/// Every type Apple defines, with its schema.
pub fn all_types() -> impl Iterator<Item = (&'static str, &'static DeclarationType)> {
    TYPES.iter().map(|(k, v)| (k.as_str(), v))
}

/// Problems with `payload` as a declaration of `declaration_type`; empty when it is valid.
pub fn check(declaration_type: &str, payload: &Value) -> Vec<SchemaError> {
    let Some(schema) = TYPES.get(declaration_type) else {
        return vec![SchemaError { path: "Type".into(), message: format!("{declaration_type:?} is not a declaration type Apple defines") }];
    };
    let mut errors = Vec::new();
    match payload {
        Value::Object(map) => check_dict(&schema.keys, map, "Payload", &mut errors),
        _ => errors.push(SchemaError { path: "Payload".into(), message: format!("must be a dictionary, not {}", type_name(payload)) }),
    }
    errors
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a real number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a dictionary",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "any" => true,
        "string" | "data" | "date" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "real" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "dictionary" => v.is_object(),
        _ => true,
    }
}

fn check_dict(keys: &[KeySchema], map: &serde_json::Map<String, Value>, path: &str, errors: &mut Vec<SchemaError>) {
    let any = keys.iter().find(|k| k.key == "ANY");
    for (name, value) in map {
        let at = format!("{path}.{name}");
        match keys.iter().find(|k| k.key == *name).or(any) {
            Some(schema) => check_value(schema, value, &at, errors),
            None => {
                let known: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
                errors.push(SchemaError { path: at, message: format!("unknown key; this dictionary takes {}", known.join(", ")) });
            }
        }
    }
    for k in keys.iter().filter(|k| k.required && k.key != "ANY") {
        if !map.contains_key(&k.key) {
            errors.push(SchemaError { path: format!("{path}.{}", k.key), message: "is required".into() });
        }
    }
}

fn check_value(schema: &KeySchema, value: &Value, path: &str, errors: &mut Vec<SchemaError>) {
    if !type_matches(&schema.value_type, value) {
        errors.push(SchemaError { path: path.to_owned(), message: format!("must be {}, not {}", schema.value_type, type_name(value)) });
        return;
    }
    if let Some(list) = &schema.rangelist {
        let ok = match value {
            Value::Array(items) => items.iter().all(|i| list.contains(i)),
            other => list.contains(other),
        };
        if !ok {
            let allowed: Vec<String> = list.iter().map(Value::to_string).collect();
            errors.push(SchemaError { path: path.to_owned(), message: format!("must be one of {}", allowed.join(", ")) });
        }
    }
    if let (Some(range), Some(n)) = (&schema.range, value.as_f64()) {
        if range.min.is_some_and(|m| n < m) || range.max.is_some_and(|m| n > m) {
            let bound = |b: Option<f64>| b.map(|b| b.to_string()).unwrap_or_else(|| "…".into());
            errors.push(SchemaError {
                path: path.to_owned(),
                message: format!("must be between {} and {}", bound(range.min), bound(range.max)),
            });
        }
    }
    match value {
        Value::Object(map) if !schema.subkeys.is_empty() => check_dict(&schema.subkeys, map, path, errors),
        Value::Array(items) if !schema.subkeys.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                // Several item shapes: an element matching any one passes.
                let mut best: Option<Vec<SchemaError>> = None;
                for shape in &schema.subkeys {
                    let mut found = Vec::new();
                    check_value(shape, item, &at, &mut found);
                    if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                        best = Some(found);
                    }
                }
                errors.extend(best.unwrap_or_default());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_valid_passcode_declaration_passes() {
        let errors = check("com.apple.configuration.passcode.settings", &json!({"MinimumLength": 6, "RequireAlphanumericPasscode": true}));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn each_problem_names_its_key() {
        let errors = check(
            "com.apple.configuration.passcode.settings",
            &json!({"MinimumLength": "six", "MaximumFailedAttempts": 99, "RequirePasscod": true}),
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"Payload.MinimumLength"), "{errors:?}");
        assert!(paths.contains(&"Payload.MaximumFailedAttempts"), "{errors:?}");
        assert!(paths.contains(&"Payload.RequirePasscod"), "{errors:?}");
        assert!(errors.iter().any(|e| e.message.contains("must be integer")), "{errors:?}");
    }

    #[test]
    fn nested_keys_required_keys_and_rangelists_are_checked() {
        let ok = check(
            "com.apple.configuration.softwareupdate.settings",
            &json!({"Deferrals": {"CombinedPeriodInDays": 30}, "AutomaticActions": {"Download": "AlwaysOn"}}),
        );
        assert!(ok.is_empty(), "{ok:?}");
        let bad = check(
            "com.apple.configuration.softwareupdate.settings",
            &json!({"Deferrals": {"CombinedPeriodInDays": 300}, "AutomaticActions": {"Download": "Sometimes"}}),
        );
        let paths: Vec<&str> = bad.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["Payload.AutomaticActions.Download", "Payload.Deferrals.CombinedPeriodInDays"], "{bad:?}");
        let missing = check("com.apple.configuration.softwareupdate.enforcement.specific", &json!({"TargetOSVersion": "18.1"}));
        assert_eq!(missing, [SchemaError { path: "Payload.TargetLocalDateTime".into(), message: "is required".into() }]);
        let unknown = check("com.apple.configuration.made-up", &json!({}));
        assert_eq!(unknown[0].path, "Type");
    }

    #[test]
    fn arrays_check_each_element() {
        let errors = check("com.apple.activation.simple", &json!({"StandardConfigurations": ["a", 7]}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "Payload.StandardConfigurations[1]");
    }

    /// The committed file is what the generator makes from the schema (skipped where the schema
    /// is not, e.g. in CI's clean clone).
    #[test]
    fn the_generated_schema_is_up_to_date() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let schema = std::env::var_os("LANYARD_APPLE_SCHEMA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo.join("../shared/apple-device-management"));
        if !schema.join("declarative/declarations").is_dir() {
            eprintln!("skipping: no Apple schema at {} (set LANYARD_APPLE_SCHEMA)", schema.display());
            return;
        }
        let out = std::process::Command::new("python3")
            .arg(repo.join("tools/declaration_schema.py"))
            .arg("--schema")
            .arg(&schema)
            .args(["--out", "-"])
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "tools/declaration_schema.py failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout) == SCHEMA_JSON,
            "data-apple/declarations.json is out of date with {}: run python3 tools/declaration_schema.py and commit it",
            schema.display()
        );
        assert!(declaration_type("com.apple.configuration.passcode.settings").is_some());
    }
}
