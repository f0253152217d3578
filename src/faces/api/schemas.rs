//! OpenAPI schemas for the API's types whose modules do not derive `ToSchema` themselves yet
//! (`devices`, `commands`, `store`): the same fields, under the type's name. A
//! test below serializes each real type and checks that its fields are exactly the schema's, so a
//! field added to one and not the other fails the build's tests. Once a module derives
//! `ToSchema` on its own type, its mirror here goes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A device as the API shows it.
// Mirrors `crate::services::devices::Device`.
#[derive(ToSchema)]
#[schema(as = Device)]
#[allow(dead_code)]
pub struct DeviceSchema {
    udid: String,
    serial_number: Option<String>,
    device_name: Option<String>,
    model: Option<String>,
    model_name: Option<String>,
    product_name: Option<String>,
    os_version: Option<String>,
    build_version: Option<String>,
    #[schema(schema_with = crate::schema::enums::platform)]
    platform: String,
    enrolled: bool,
    enrolled_at: Option<DateTime<Utc>>,
    unenrolled_at: Option<DateTime<Utc>>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    supervised: Option<bool>,
    encrypted: Option<bool>,
    passcode_present: Option<bool>,
    passcode_compliant: Option<bool>,
    filevault_enabled: Option<bool>,
    storage_capacity_gb: Option<f64>,
    storage_available_gb: Option<f64>,
    battery_level: Option<f64>,
    wifi_mac: Option<String>,
    bluetooth_mac: Option<String>,
    imei: Option<String>,
    meid: Option<String>,
    /// Enrolled through Automated Device Enrolment and waiting for DeviceConfigured.
    awaiting_configuration: bool,
    /// Let out of Setup Assistant before all its profiles were in: what happened (e.g. "timed
    /// out after 1 of 2 profiles"); null when setup went as planned.
    setup_flag: Option<String>,
    push_token_valid: bool,
    /// The enrolment token it enrolled with.
    enrollment_token_id: Option<Uuid>,
    /// When DeviceInformation last answered.
    info_updated_at: Option<DateTime<Utc>>,
    /// When SecurityInfo last answered.
    security_updated_at: Option<DateTime<Utc>>,
}

/// One device: the full record, with the number of commands pending and the last result of each
/// request type.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceDetail {
    #[serde(flatten)]
    device: DeviceSchema,
    /// By request type: the last command of that type the device answered.
    #[schema(inline)]
    last_results: std::collections::BTreeMap<String, LastResult>,
    pending_commands: i64,
    /// While the device waits in Setup Assistant (ADE, `AwaitingConfiguration`): how many of its
    /// profiles are in; null otherwise. DeviceConfigured follows when nothing is left on its way.
    setup: Option<crate::services::devices::setup::SetupProgress>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct LastResult {
    command_uuid: String,
    status: String,
    received_at: DateTime<Utc>,
    /// the device's report as JSON
    result: Option<Value>,
}

/// A notification for a role.
// Mirrors `crate::store::NotificationRecord`.
#[derive(ToSchema)]
#[schema(as = Notification)]
#[allow(dead_code)]
pub struct NotificationSchema {
    id: Uuid,
    role: String,
    at: DateTime<Utc>,
    kind: String,
    case_id: Option<Uuid>,
    message: String,
}

/// A command, queued.
// Mirrors `crate::services::commands::Enqueued`.
#[derive(ToSchema)]
#[schema(as = Enqueued)]
#[allow(dead_code)]
pub struct EnqueuedSchema {
    command_uuid: String,
    request_type: String,
    targets: u64,
    /// the push that followed (absent with `"push": false`)
    #[schema(required = false)]
    push: crate::services::commands::PushResult,
}

/// One target of a command.
// Mirrors `crate::services::commands::TargetStatus`.
#[derive(ToSchema)]
#[schema(as = TargetStatus)]
#[allow(dead_code)]
pub struct TargetStatusSchema {
    udid: String,
    #[schema(schema_with = crate::schema::enums::target_state)]
    status: String,
    queued_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    not_now_count: i64,
    /// the device's report as JSON
    result: Option<Value>,
}

/// One of a device's commands: its state on this device, and the command.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceCommand {
    #[serde(flatten)]
    target: TargetStatusSchema,
    command_uuid: String,
    request_type: String,
    created_by: String,
    created_at: DateTime<Utc>,
}

/// A command's status per device.
// Mirrors `crate::services::commands::CommandStatusView`.
#[derive(ToSchema)]
#[schema(as = CommandStatus)]
#[allow(dead_code)]
pub struct CommandStatusSchema {
    command_uuid: String,
    request_type: String,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    /// Apple's fields as queued (never the unlock token).
    fields: Value,
    targets: Vec<TargetStatusSchema>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;
    use utoipa::PartialSchema;

    use super::*;

    /// The property names of an object schema.
    fn properties(schema: &Value) -> BTreeSet<String> {
        schema["properties"].as_object().expect("an object schema").keys().cloned().collect()
    }

    fn keys(v: impl serde::Serialize) -> BTreeSet<String> {
        serde_json::to_value(v).unwrap().as_object().unwrap().keys().cloned().collect()
    }

    fn schema<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn mirrors_have_the_real_types_fields() {
        let now = Utc::now();
        let device = crate::services::devices::Device {
            udid: "u".into(),
            serial_number: None,
            device_name: None,
            model: None,
            model_name: None,
            product_name: None,
            os_version: None,
            build_version: None,
            platform: "iPadOS".into(),
            enrolled: true,
            enrolled_at: None,
            unenrolled_at: None,
            first_seen_at: now,
            last_seen_at: now,
            supervised: None,
            encrypted: None,
            passcode_present: None,
            passcode_compliant: None,
            filevault_enabled: None,
            storage_capacity_gb: None,
            storage_available_gb: None,
            battery_level: None,
            wifi_mac: None,
            bluetooth_mac: None,
            imei: None,
            meid: None,
            awaiting_configuration: false,
            setup_flag: None,
            push_token_valid: true,
            enrollment_token_id: None,
            info_updated_at: None,
            security_updated_at: None,
        };
        assert_eq!(keys(&device), properties(&schema::<DeviceSchema>()), "Device");

        let n = crate::store::NotificationRecord {
            id: Uuid::nil(),
            role: "dsl".into(),
            at: now,
            kind: "k".into(),
            case_id: None,
            message: "m".into(),
        };
        assert_eq!(keys(&n), properties(&schema::<NotificationSchema>()), "NotificationRecord");

        let target = || crate::services::commands::TargetStatus {
            udid: "u".into(),
            status: "queued".into(),
            queued_at: now,
            sent_at: None,
            completed_at: None,
            updated_at: now,
            not_now_count: 0,
            result: None,
        };
        assert_eq!(keys(target()), properties(&schema::<TargetStatusSchema>()), "TargetStatus");
        let status = crate::services::commands::CommandStatusView {
            command_uuid: "c".into(),
            request_type: "r".into(),
            created_by: "c".into(),
            created_at: now,
            expires_at: None,
            fields: json!({}),
            targets: vec![target()],
        };
        assert_eq!(keys(&status), properties(&schema::<CommandStatusSchema>()), "CommandStatusView");
        let enqueued = crate::services::commands::Enqueued {
            command_uuid: "c".into(),
            request_type: "r".into(),
            targets: 1,
            push: Some(crate::services::commands::PushResult::InProgress { in_progress: true }),
        };
        assert_eq!(keys(&enqueued), properties(&schema::<EnqueuedSchema>()), "Enqueued");
    }
}
