//! Declarative Device Management: the channel beside the command queue.
//!
//! Lanyard turns DDM on for a device (the `DeclarativeManagement` command) once its
//! DeviceInformation shows an OS that has it (iOS and iPadOS 15, macOS 13). The device then
//! asks, on the check-in URL, for its `tokens`, its `declaration-items` and each declaration,
//! and sends `status` reports unasked when its state changes.
//!
//! Every device's set starts with Lanyard's own declarations: the school as organisation, the
//! server's capabilities, and a status subscription (activated by a simple activation) to what
//! the school needs to know: OS version and build, passcode present and compliant, FileVault,
//! battery health, software-update state, pending version and failure reason, and the state of
//! each declaration. Each report updates the device's inventory at once and keeps every item's
//! last value with the time it came; unknown items are kept too; a malformed report is refused
//! with 400 and nothing changes.
//!
//! - [`sets`]: what each device's set is (Lanyard's own, the register's properties, the union
//!   of its groups', its OS updates), with conflicts between groups reported.
//! - [`groups`]: the declarations operators give groups, checked against Apple's schema, and
//!   re-tokening only the devices a change concerns.
//! - [`os_updates`]: OS updates by deadline, outside lessons, never on a held device, and the
//!   report of where each device stands.

pub mod groups;
pub mod os_updates;
pub mod sets;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::protocol::command::Command;
use crate::protocol::ddm::{self, Declaration};
use crate::services::commands::Commands;
use crate::store::{DdmDeclarationStatus, DdmState, DeviceRecord, DynStore, InventoryUpdate};
pub use sets::Conflict;

/// Who the DeclarativeManagement command is queued as.
pub const DDM_ACTOR: &str = "system:ddm";

/// The status items every device is subscribed to.
pub const SUBSCRIBED: &[&str] = &[
    "device.operating-system.version",
    "device.operating-system.build-version",
    "device.power.battery-health",
    "passcode.is-present",
    "passcode.is-compliant",
    "diskmanagement.filevault.enabled",
    "softwareupdate.install-state",
    "softwareupdate.pending-version",
    "softwareupdate.failure-reason",
    "management.declarations",
];

/// Declarative Device Management.
#[derive(Clone)]
pub struct Ddm {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) organization: Arc<str>,
    pub(crate) commands: Commands,
    pub(crate) hold: crate::services::hold::Hold,
    pub(crate) push: crate::services::push::Push,
    pub(crate) audit: crate::services::audit::Audit,
}

/// A declaration as `GET /api/v1/devices/{udid}/declarations` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeclarationView {
    pub identifier: String,
    #[serde(rename = "type")]
    pub declaration_type: String,
    pub server_token: String,
    /// What the device last said of it; null until it reports.
    pub active: Option<bool>,
    /// `valid`, `invalid` or `unknown`; null until it reports.
    pub valid: Option<String>,
    pub reasons: Vec<String>,
    /// The device reported on an older version of it.
    pub reported_on_older_version: bool,
    pub reported_at: Option<DateTime<Utc>>,
}

/// A status item's last value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusItemView {
    pub item: String,
    pub value: Value,
    pub at: DateTime<Utc>,
}

/// `GET /api/v1/devices/{udid}/declarations`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceDeclarations {
    pub udid: String,
    /// When Lanyard turned DDM on for it, and when it first answered.
    pub requested_at: Option<DateTime<Utc>>,
    pub enabled_at: Option<DateTime<Utc>>,
    pub declarations_token: String,
    pub declarations: Vec<DeclarationView>,
    /// Declarations two of its groups disagree about: withheld until they agree.
    pub conflicts: Vec<Conflict>,
    /// OS updates of its groups it does not get because it is on legal hold.
    pub withheld_os_updates: Vec<uuid::Uuid>,
    pub status: Vec<StatusItemView>,
}

/// Whether this OS has DDM: iOS and iPadOS 15, macOS 13.
pub fn supports_ddm(platform: &str, os_version: Option<&str>) -> bool {
    let major = os_version.and_then(|v| v.split('.').next()).and_then(|m| m.trim().parse::<u32>().ok());
    match (platform, major) {
        ("macOS", Some(m)) => m >= 13,
        (_, Some(m)) => m >= 15,
        _ => false,
    }
}

impl Ddm {
    /// The declarations this device should have ([`sets`]).
    pub async fn declarations_for(&self, udid: &str) -> Result<Vec<Declaration>> {
        Ok(self.device_set(udid).await?.declarations)
    }

    /// The `tokens` answer for this device. Its DeclarationsToken is written only when it
    /// changed, with the time (the answer's `Timestamp`): an unchanged device costs a read.
    async fn tokens(&self, udid: &str, state: Option<&DdmState>, declarations: &[Declaration]) -> Result<Value> {
        let token = ddm::declarations_token(declarations);
        let changed_at = match state {
            Some(s) if s.ddm_declarations_token.as_deref() == Some(token.as_str()) => {
                s.ddm_token_changed_at.unwrap_or_else(|| self.clock.now())
            }
            _ => {
                let now = self.clock.now();
                self.store.put_ddm_token(udid, &token, now).await?;
                now
            }
        };
        Ok(ddm::tokens_response(declarations, changed_at))
    }

    /// A `DeclarativeManagement` check-in: the JSON answer, or None for an empty 200 (`status`).
    /// A status report is one transaction (which also marks DDM on); the other endpoints read
    /// the device's DDM state once and its set, and mark DDM on the first time (a write only
    /// then).
    pub async fn declarative_management(&self, udid: &str, endpoint: &str, data: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        if endpoint == "status" {
            self.status(udid, data.unwrap_or_default()).await?;
            return Ok(None);
        }
        let state = self.store.ddm_state(udid).await?;
        if state.as_ref().is_some_and(|s| s.ddm_enabled_at.is_none()) {
            self.store.mark_ddm_enabled(udid, self.clock.now()).await?;
        }
        let declarations = self.declarations_for(udid).await?;
        let answer = match endpoint {
            "tokens" => self.tokens(udid, state.as_ref(), &declarations).await?,
            "declaration-items" => ddm::declaration_items(&declarations),
            other => match other.strip_prefix("declaration/").and_then(|rest| rest.split_once('/')) {
                Some((kind, identifier)) => declarations
                    .iter()
                    .find(|d| d.identifier == identifier && d.kind().map(|k| k.path_name()) == Some(kind))
                    .map(Declaration::to_json)
                    .ok_or_else(|| Error::not_found(format!("no {kind} declaration {identifier:?} for this device")))?,
                None => return Err(Error::BadRequest(format!("unknown DeclarativeManagement endpoint {other:?}"))),
            },
        };
        Ok(Some(answer.to_string().into_bytes()))
    }

    /// Keep a status report and bring the inventory up to date with it.
    async fn status(&self, udid: &str, body: &[u8]) -> Result<()> {
        let report = ddm::parse_status(body).map_err(|e| Error::BadRequest(format!("DDM status: {e}")))?;
        let now = self.clock.now();
        let items: Vec<(String, String)> = report.items.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        let declarations: Vec<DdmDeclarationStatus> = report
            .declarations
            .iter()
            .map(|d| DdmDeclarationStatus {
                identifier: d.identifier.clone(),
                server_token: d.server_token.clone(),
                active: d.active,
                valid: d.valid.clone(),
                reasons: json!(d.reasons).to_string(),
                at: now,
            })
            .collect();
        let get = |name: &str| report.items.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let text = |name: &str| get(name).and_then(Value::as_str).map(str::to_owned);
        let flag = |name: &str| get(name).and_then(Value::as_bool);
        let inv = InventoryUpdate {
            os_version: text("device.operating-system.version"),
            build_version: text("device.operating-system.build-version"),
            passcode_present: flag("passcode.is-present"),
            passcode_compliant: flag("passcode.is-compliant"),
            filevault_enabled: flag("diskmanagement.filevault.enabled"),
            ..Default::default()
        };
        self.store.put_ddm_status(udid, &items, &declarations, &inv, now).await?;
        for (item, why) in &report.errors {
            tracing::info!(udid, item, why, "DDM: the device could not report a status item");
        }
        Ok(())
    }

    /// After a DeviceInformation answer: turn DDM on for a device whose OS has it, once.
    /// Decided from the device row (just written with the answer's inventory): only a device
    /// not asked before costs a write.
    pub(crate) async fn enable_if_capable(&self, d: &DeviceRecord) -> Result<()> {
        let udid = d.udid.as_str();
        if d.ddm_requested_at.is_some() || !supports_ddm(&d.platform, d.os_version.as_deref()) {
            return Ok(());
        }
        if !self.store.claim_ddm_request(udid, self.clock.now()).await? {
            return Ok(());
        }
        let declarations = self.declarations_for(udid).await?;
        let state = self.store.ddm_state(udid).await?;
        let tokens = self.tokens(udid, state.as_ref(), &declarations).await?;
        let cmd = Command::DeclarativeManagement(Some(tokens.to_string().into_bytes()));
        self.commands.queue_command(DDM_ACTOR, &cmd, &[udid.to_owned()], None).await?;
        Ok(())
    }

    /// What the device should have and what it last said.
    pub async fn device_declarations(&self, udid: &str) -> Result<DeviceDeclarations> {
        let Some(state) = self.store.ddm_state(udid).await? else {
            return Err(Error::not_found(format!("no device with UDID {udid}")));
        };
        let set = self.device_set(udid).await?;
        let declarations = set.declarations;
        let states = self.store.ddm_declaration_status(udid).await?;
        let views = declarations
            .iter()
            .map(|d| {
                let s = states.iter().find(|s| s.identifier == d.identifier);
                DeclarationView {
                    identifier: d.identifier.clone(),
                    declaration_type: d.declaration_type.clone(),
                    server_token: d.server_token.clone(),
                    active: s.and_then(|s| s.active),
                    valid: s.and_then(|s| s.valid.clone()),
                    reasons: s.and_then(|s| serde_json::from_str(&s.reasons).ok()).unwrap_or_default(),
                    reported_on_older_version: s.and_then(|s| s.server_token.as_deref()).is_some_and(|t| t != d.server_token),
                    reported_at: s.map(|s| s.at),
                }
            })
            .collect();
        let status = self
            .store
            .ddm_status(udid)
            .await?
            .into_iter()
            .map(|s| StatusItemView { value: serde_json::from_str(&s.value).unwrap_or(Value::Null), item: s.item, at: s.at })
            .collect();
        Ok(DeviceDeclarations {
            udid: udid.to_owned(),
            requested_at: state.ddm_requested_at,
            enabled_at: state.ddm_enabled_at,
            declarations_token: ddm::declarations_token(&declarations),
            declarations: views,
            conflicts: set.conflicts,
            withheld_os_updates: set.withheld_updates,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ddm_needs_ios_15_or_macos_13() {
        assert!(super::supports_ddm("iPadOS", Some("17.5")));
        assert!(super::supports_ddm("iOS", Some("15.0")));
        assert!(!super::supports_ddm("iPadOS", Some("14.8")));
        assert!(super::supports_ddm("macOS", Some("13.1")));
        assert!(!super::supports_ddm("macOS", Some("12.7")));
        assert!(!super::supports_ddm("iPadOS", None));
    }
}
