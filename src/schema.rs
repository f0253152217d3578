//! Helpers for the OpenAPI schemas the services' types derive (`#[derive(utoipa::ToSchema)]`):
//! strings with a fixed set of values, and schema types written by hand. The document itself is
//! `faces::api::openapi`; this module depends on nothing in Lanyard, so every layer may use it.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A string that is one of `values`.
pub fn string_enum(values: &[&str], description: Option<&str>) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).description(description).build()
}

/// A string that is one of `values`, or null.
pub fn nullable_string_enum(values: &[&str], description: Option<&str>) -> Object {
    let mut all: Vec<serde_json::Value> = values.iter().map(|v| serde_json::Value::from(*v)).collect();
    all.push(serde_json::Value::Null);
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(all))
        .description(description)
        .build()
}

/// A schema type for `#[schema(value_type = ...)]`, written by hand.
macro_rules! hand_schema {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::Schema::Object($schema).into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    };
}
pub(crate) use hand_schema;

/// The string enums of fields the code keeps as strings, for `#[schema(schema_with = ...)]`.
pub mod enums {
    use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, OneOf, OneOfBuilder, Schema, Type};

    use super::{nullable_string_enum, string_enum};

    pub fn signature_method() -> Object {
        string_enum(&["paper", "in_person", "online"], None)
    }
    pub fn grant_kind() -> Object {
        string_enum(&["device", "group", "system"], None)
    }
    pub fn grant_status() -> Object {
        string_enum(&["live", "future", "expired", "revoked"], Some("now"))
    }
    pub fn assignment_status() -> Object {
        string_enum(&["current", "future", "ended"], Some("now"))
    }
    pub fn access_via() -> Object {
        string_enum(&["device", "group"], Some("`device` (a grant for this device) or `group` (a grant for a group it was in)"))
    }
    pub fn import_action() -> Object {
        string_enum(&["created", "updated", "unchanged"], None)
    }
    pub fn case_state() -> Object {
        string_enum(&["open", "closed"], None)
    }
    pub fn quarantine_method() -> Object {
        string_enum(&["lost_mode", "device_lock", "mac_lock"], None)
    }
    pub fn push_cert_status() -> Object {
        string_enum(&["ok", "expiring", "expired"], Some("`expiring`: within 30 days"))
    }
    pub fn filtering_state() -> Object {
        string_enum(&["proposed", "approved", "rejected", "deployed"], None)
    }
    pub fn filtering_kind() -> Object {
        string_enum(&["update", "delete", "assign", "unassign"], None)
    }
    pub fn group_kind() -> Object {
        string_enum(&["static", "smart"], None)
    }
    pub fn os_update_state() -> Object {
        string_enum(
            &["on_target", "pending", "downloading", "installing", "failed", "overdue", "not_ddm_capable", "held"],
            Some("where the device stands with the update"),
        )
    }
    pub fn timezone() -> Object {
        string_enum(&["Europe/London", "UTC"], None)
    }
    pub fn schedule_when() -> Object {
        string_enum(&["lessons"], None)
    }
    pub fn drift_intended() -> Object {
        string_enum(&["installed", "removed"], Some("what the timetable wants: `installed` (lessons on) or `removed`"))
    }
    pub fn drift_actual() -> Object {
        string_enum(&["installed", "not_installed"], Some("what Lanyard knows the device has"))
    }
    pub fn drift_pending() -> Object {
        nullable_string_enum(&["install", "remove"], Some("a command on its way"))
    }
    pub fn intended_state() -> Object {
        string_enum(&["installed", "outdated", "pending_install", "install_failed", "missing"], None)
    }
    pub fn profile_action() -> Object {
        string_enum(&["install", "remove"], None)
    }
    pub fn device_profile_state() -> Object {
        string_enum(
            &[
                "installed",
                "outdated",
                "pending_install",
                "pending_removal",
                "install_failed",
                "removal_failed",
                "missing",
                "kept_legal_hold",
                "removal_due",
                "not_installed",
            ],
            Some(
                "`missing`: intended, nothing queued yet; `kept_legal_hold`: no longer intended, kept because the device is on legal hold",
            ),
        )
    }
    pub fn key_in_force_state() -> Object {
        string_enum(
            &["not_in_force", "unknown"],
            Some(
                "`not_in_force`: the device is not supervised; `unknown`: it has not reported whether it is (no DeviceInformation answer yet)",
            ),
        )
    }
    pub fn warning_code() -> Object {
        string_enum(&["needs_supervision", "supervision_unknown"], None)
    }
    pub fn platform() -> Object {
        string_enum(&["iOS", "iPadOS", "macOS"], None)
    }
    pub fn due_state() -> Object {
        string_enum(
            &["lapsed", "outdated", "no_aup", "unsigned"],
            Some(
                "Why they are due, as a code: unsigned (never signed), outdated (signed an earlier version, superseded, or another audience's AUP), lapsed (signed the current version over a year ago: expired), no_aup (their audience has no AUP in effect).",
            ),
        )
    }
    fn one_or_many(one: Object) -> OneOf {
        let many = ArrayBuilder::new().items(one.clone()).build();
        OneOfBuilder::new().item(one).item(many).item(ObjectBuilder::new().schema_type(Type::Null)).build()
    }
    pub fn one_or_many_strings() -> Schema {
        Schema::OneOf(one_or_many(ObjectBuilder::new().schema_type(Type::String).build()))
    }
    pub fn one_or_many_ownership() -> Schema {
        Schema::OneOf(one_or_many(string_enum(&["pupil", "staff", "shared"], None)))
    }
    pub fn target_state() -> Object {
        string_enum(&["queued", "sent", "acknowledged", "error", "not_now", "expired", "cancelled"], None)
    }
}
