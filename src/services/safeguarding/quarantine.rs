//! Quarantine: one request locks the device the right way for what it is, takes an evidence
//! snapshot, suspends its users' access and puts it on legal hold.
//!
//! - supervised iPad: Lost Mode (it also stops the device being used), then its location;
//! - unsupervised iPad or iPhone: DeviceLock with the school's message;
//! - Mac: DeviceLock with a generated 6-digit PIN, sealed and revealable to the DSL.
//!
//! Each evidence answer is stored exactly as the device sent it, with its SHA-256, and sealed
//! into the case; the custody log records when each command was sent and answered.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::cases::required;
use crate::error::{Error, Result};
use crate::protocol::command::{
    CertificateList, Command, DeviceInformation, DeviceLock, EnableLostMode, InstalledApplicationList, ProfileList,
};
use crate::services::auth::Actor;
use crate::services::commands::PushResult;
use crate::services::safeguarding::Safeguarding;
use crate::store::{CaseCommandRecord, CaseDeviceRecord, EvidenceRecord};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    pub udid: String,
    pub justification: String,
    pub message: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueuedCommand {
    pub command_uuid: String,
    pub request_type: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Quarantined {
    pub udid: String,
    pub case_id: Uuid,
    /// `lost_mode`, `device_lock` or `mac_lock`.
    #[schema(schema_with = crate::schema::enums::quarantine_method)]
    pub method: String,
    #[schema(inline)]
    pub commands: Vec<QueuedCommand>,
    pub evidence_requested: Vec<String>,
    pub grants_suspended: usize,
    pub push: PushResult,
}

/// How a device is locked when it is quarantined: `mac_lock` (DeviceLock with a PIN) for a Mac,
/// `lost_mode` for a supervised iPad or iPhone, `device_lock` otherwise. The console shows it
/// before the DSL confirms.
pub fn lock_method(device: &crate::store::DeviceRecord) -> &'static str {
    if device.platform == "macOS" {
        "mac_lock"
    } else if device.supervised == Some(true) {
        "lost_mode"
    } else {
        "device_lock"
    }
}

fn six_digit_pin() -> Result<String> {
    let mut b = [0u8; 4];
    openssl::rand::rand_bytes(&mut b).map_err(Error::internal)?;
    Ok(format!("{:06}", u32::from_le_bytes(b) % 1_000_000))
}

impl Safeguarding {
    pub async fn quarantine_device(&self, actor: &Actor, case_id: Uuid, req: QuarantineRequest) -> Result<Quarantined> {
        let justification = required("justification", &req.justification, 4000)?;
        let case = self.store.case(case_id).await?.ok_or_else(|| Error::not_found("no such case"))?;
        if case.state != "open" {
            return Err(Error::conflict("case_closed", format!("case {} is closed: open a new case to quarantine a device", case.number)));
        }
        let udid = req.udid.trim().to_owned();
        let device = self.store.device(&udid).await?.ok_or_else(|| Error::unprocessable("udid", format!("no device with UDID {udid}")))?;
        if self.store.case_devices(case_id).await?.iter().any(|d| d.udid == udid && d.state == "held") {
            return Err(Error::conflict("already_quarantined", format!("this device is already quarantined under case {}", case.number)));
        }
        let message = req.message.as_deref().map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).unwrap_or_else(|| {
            format!(
                "This device belongs to {}. It has been locked by the school: please hand it in to the school office.",
                self.config.organization
            )
        });
        let phone = req.phone_number.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned);

        let method = lock_method(&device);
        let (method, lock, pin) = if method == "mac_lock" {
            let pin = six_digit_pin()?;
            let lock =
                Command::DeviceLock(DeviceLock { message: Some(message.clone()), phone_number: phone.clone(), pin: Some(pin.clone()) });
            ("mac_lock", lock, Some(pin))
        } else if method == "lost_mode" {
            let lock =
                Command::EnableLostMode(EnableLostMode { message: Some(message.clone()), phone_number: phone.clone(), footnote: None });
            ("lost_mode", lock, None)
        } else {
            let lock = Command::DeviceLock(DeviceLock { message: Some(message.clone()), phone_number: phone.clone(), pin: None });
            ("device_lock", lock, None)
        };
        let mut evidence_cmds = vec![
            Command::DeviceInformation(DeviceInformation::inventory()),
            Command::SecurityInfo,
            Command::InstalledApplicationList(InstalledApplicationList::default()),
            Command::ProfileList(ProfileList::default()),
            Command::CertificateList(CertificateList::default()),
        ];
        if method == "lost_mode" {
            // Only answered in Lost Mode, so after the lock.
            evidence_cmds.push(Command::DeviceLocation);
        }

        // Hold first: from this moment nothing may erase or release the device.
        let grants = self.suspend_device_access(actor, case.number, &udid).await?;
        let pin_sealed = match &pin {
            Some(p) => Some(self.pki.sealer.seal(p.as_bytes()).map_err(Error::internal)?),
            None => None,
        };
        // The quarantine's audit entry commits with the hold itself.
        let audit = self.audit.audit_entry(
            actor,
            "case.quarantine",
            Some(&udid),
            json!({"case_id": case_id, "number": case.number, "method": method, "commands": 1 + evidence_cmds.len()}),
        );
        self.store
            .put_case_device(
                &CaseDeviceRecord {
                    case_id,
                    udid: udid.clone(),
                    state: "held".into(),
                    method: method.into(),
                    lock_pin_sealed: pin_sealed,
                    suspended_grants: json!(grants).to_string(),
                    added_by: actor.name.clone(),
                    added_at: self.clock.now(),
                    released_at: None,
                },
                audit,
            )
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => {
                    Error::conflict("already_quarantined", "this device was already quarantined under this case")
                }
                e => e.into(),
            })?;
        self.case_event(
            case_id,
            actor,
            "device_quarantined",
            Some(&udid),
            Some(&justification),
            json!({"method": method, "platform": device.platform, "supervised": device.supervised, "serial_number": device.serial_number, "message": message}),
        )
        .await?;
        if !grants.is_empty() {
            self.case_event(case_id, actor, "access_suspended", Some(&udid), None, json!({"grants": grants})).await?;
        }

        let mut commands = Vec::new();
        let lock_uuid = self.commands.queue_command(&actor.name, &lock, std::slice::from_ref(&udid), None).await?;
        self.store
            .put_case_command(&CaseCommandRecord {
                command_uuid: lock_uuid.clone(),
                case_id,
                udid: udid.clone(),
                request_type: lock.request_type().into(),
                purpose: "lock".into(),
                evidence_id: None,
            })
            .await?;
        commands.push(QueuedCommand { command_uuid: lock_uuid, request_type: lock.request_type().into() });
        let mut evidence_requested = Vec::new();
        for cmd in &evidence_cmds {
            let uuid = self.commands.queue_command(&actor.name, cmd, std::slice::from_ref(&udid), None).await?;
            let evidence_id = Uuid::new_v4();
            self.store
                .put_evidence(&EvidenceRecord {
                    id: evidence_id,
                    case_id,
                    udid: udid.clone(),
                    command_uuid: uuid.clone(),
                    request_type: cmd.request_type().into(),
                    requested_at: self.clock.now(),
                    received_at: None,
                    status: None,
                    sha256: None,
                    raw: None,
                    disposed_at: None,
                })
                .await?;
            self.store
                .put_case_command(&CaseCommandRecord {
                    command_uuid: uuid.clone(),
                    case_id,
                    udid: udid.clone(),
                    request_type: cmd.request_type().into(),
                    purpose: "evidence".into(),
                    evidence_id: Some(evidence_id),
                })
                .await?;
            evidence_requested.push(cmd.request_type().to_owned());
            commands.push(QueuedCommand { command_uuid: uuid, request_type: cmd.request_type().into() });
        }
        for c in &commands {
            self.case_event(
                case_id,
                actor,
                "command_queued",
                Some(&udid),
                None,
                json!({"command_uuid": c.command_uuid, "request_type": c.request_type}),
            )
            .await?;
        }
        // OS updates come off the device's declarations while it is held (the DeclarativeManagement
        // command is queued before the push below).
        self.profiles.ddm.devices_changed(std::slice::from_ref(&udid)).await?;
        let push = self.commands.push_in_background(vec![udid.clone()]).await;
        Ok(Quarantined { udid, case_id, method: method.into(), commands, evidence_requested, grants_suspended: grants.len(), push })
    }

    /// "Block access to all users": suspend every grant that gives someone this device directly,
    /// and the group grants of whoever holds it now. The holding record itself stays, so the
    /// register still shows who had the device when it was quarantined.
    async fn suspend_device_access(&self, actor: &Actor, case_number: i64, udid: &str) -> Result<Vec<Uuid>> {
        let now = self.clock.now();
        let holders = self.register.device_holders(udid, Some(now)).await?;
        let holder_ids: Vec<Uuid> = holders.holders.iter().map(|h| h.person.id).collect();
        let reason = format!("suspended: device quarantined under safeguarding case {case_number}");
        let ids: Vec<Uuid> =
            holders.access.iter().filter(|a| a.group_id.is_none() || holder_ids.contains(&a.person.id)).map(|a| a.grant_id).collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        // The store adds the grants it suspended to the entry, and writes it only if there were any.
        let audit = self.audit.audit_entry(actor, "register.grant.suspend", Some(udid), json!({"case_number": case_number}));
        let (suspended, _) = self.store.revoke_grants(&ids, now, &actor.name, &reason, &[], audit).await?;
        Ok(suspended)
    }

    /// A device answered a command: if it belongs to a case, log it on the case, and seal
    /// evidence exactly as received.
    pub async fn on_case_command_result(&self, udid: &str, command_uuid: &str, status: &str, raw: &[u8]) -> Result<()> {
        let Some(cc) = self.store.case_command(command_uuid).await? else { return Ok(()) };
        let device = Actor { name: format!("device:{udid}"), ip: None };
        let kind = match status {
            "acknowledged" => "command_acknowledged",
            "not_now" => "command_not_now",
            _ => "command_error",
        };
        self.case_event(
            cc.case_id,
            &device,
            kind,
            Some(udid),
            None,
            json!({"command_uuid": command_uuid, "request_type": cc.request_type}),
        )
        .await?;
        if let Some(evidence_id) = cc.evidence_id.filter(|_| status != "not_now") {
            let sha = hex::encode(openssl::sha::sha256(raw));
            if self.store.seal_evidence(evidence_id, status, raw, &sha, self.clock.now()).await? {
                self.case_event(
                    cc.case_id,
                    &device,
                    "evidence_received",
                    Some(udid),
                    None,
                    json!({"evidence_id": evidence_id, "request_type": cc.request_type, "sha256": sha, "bytes": raw.len(), "status": status}),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// A command for a case was handed to the device.
    pub async fn on_case_command_sent(&self, udid: &str, command_uuid: &str) -> Result<()> {
        let Some(cc) = self.store.case_command(command_uuid).await? else { return Ok(()) };
        let device = Actor { name: format!("device:{udid}"), ip: None };
        self.case_event(
            cc.case_id,
            &device,
            "command_sent",
            Some(udid),
            None,
            json!({"command_uuid": command_uuid, "request_type": cc.request_type}),
        )
        .await?;
        Ok(())
    }

    /// A device on hold sent CheckOut: its MDM profile was removed, perhaps by wiping it by
    /// hand. Flag it loudly on every case holding it.
    pub async fn on_checkout_during_hold(&self, udid: &str) -> Result<()> {
        let Some((case_id, number)) = self.store.legal_hold(udid).await? else { return Ok(()) };
        let device = Actor { name: format!("device:{udid}"), ip: None };
        let msg = format!(
            "ALERT: device {udid}, quarantined under case {number}, has left management (CheckOut): its MDM profile was removed — it may have been wiped by hand. Secure the device physically."
        );
        tracing::error!("{msg}");
        let audit = self.audit.audit_entry(&device, "legal_hold.checkout", Some(udid), json!({"case_id": case_id, "number": number}));
        self.case_event_audited(case_id, &device, "checkout_during_hold", Some(udid), None, json!({"alert": msg}), Some(audit)).await?;
        for role in ["dsl", "headteacher"] {
            self.store
                .add_notification(&crate::store::NotificationRecord {
                    id: Uuid::new_v4(),
                    role: role.into(),
                    at: self.clock.now(),
                    kind: "checkout_during_hold".into(),
                    case_id: Some(case_id),
                    message: msg.clone(),
                })
                .await?;
        }
        Ok(())
    }

    /// The Mac's lock PIN, revealed to a safeguarding role with a written justification.
    pub async fn reveal_lock_pin(&self, actor: &Actor, udid: &str, justification: &str) -> Result<Value> {
        let justification = required("justification", justification, 2000)?;
        let held = self.store.held_device(udid).await?.ok_or_else(|| Error::not_found("this device is not locked under an open case"))?;
        let sealed = held.lock_pin_sealed.ok_or_else(|| Error::not_found("this device was not locked with a PIN (only Macs are)"))?;
        let pin = String::from_utf8(self.pki.sealer.open(&sealed).map_err(Error::internal)?).map_err(Error::internal)?;
        self.case_event(held.case_id, actor, "lock_pin_revealed", Some(udid), Some(&justification), json!({})).await?;
        self.audit
            .audit(actor, "case.lock_pin.reveal", Some(udid), json!({"case_id": held.case_id, "justification": justification}))
            .await?;
        Ok(json!({"udid": udid, "pin": pin, "case_id": held.case_id}))
    }
}
