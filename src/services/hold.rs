//! Legal hold: while a device is under an open case, nothing may destroy or release it.
//!
//! Every path that could (API, CLI, bulk commands, group membership, profile reconcile, the
//! sweeper, register reassignment) calls [`Hold::ensure_not_on_hold`] or
//! [`Hold::ensure_none_on_hold`] first. The refusal is the same for every role, admin
//! included, and is itself audited and written to the case's custody log.

use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::store::DynStore;
use crate::store::NewCaseEvent;
use std::sync::Arc;

/// The legal hold: the one check every destructive path calls.
#[derive(Clone)]
pub struct Hold {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: crate::services::audit::Audit,
}

/// Commands refused for a device on hold: they destroy evidence, or release the quarantine, or
/// unenrol it (removing a profile is refused outright while the hold lasts).
pub const FORBIDDEN_UNDER_HOLD: &[&str] = &["EraseDevice", "ClearPasscode", "DisableLostMode", "RemoveProfile"];

/// The 409 a refused action gets.
pub fn hold_error(case_id: Uuid, case_number: i64) -> Error {
    let mut e = Error::conflict("legal_hold", format!("device is on legal hold under case {case_id}"));
    if let Error::Conflict { extra, .. } = &mut e {
        extra.insert("case_id".into(), json!(case_id));
        extra.insert("case_number".into(), json!(case_number));
    }
    e
}

impl Hold {
    /// Refuse `action` on `udid` if the device is on legal hold; the refusal is audited and put
    /// on the case's custody log.
    pub async fn ensure_not_on_hold(&self, actor: &Actor, udid: &str, action: &str) -> Result<()> {
        match self.store.legal_hold(udid).await? {
            None => Ok(()),
            Some((case_id, number)) => {
                self.record_hold_refusal(actor, udid, case_id, action).await?;
                Err(hold_error(case_id, number))
            }
        }
    }

    /// The same for many devices at once (bulk commands, group changes): if any is held, the
    /// whole request is refused and nothing is done.
    pub async fn ensure_none_on_hold(&self, actor: &Actor, udids: &[String], action: &str) -> Result<()> {
        let held = self.store.legal_holds(udids).await?;
        let Some((_, case_id, number)) = held.first().cloned() else { return Ok(()) };
        for (udid, case, _) in &held {
            self.record_hold_refusal(actor, udid, *case, action).await?;
        }
        let mut e = hold_error(case_id, number);
        if let Error::Conflict { extra, message, .. } = &mut e {
            let devices: Vec<&String> = held.iter().map(|(u, _, _)| u).collect();
            *message = format!("{} of the devices are on legal hold (first under case {case_id}); nothing was done", held.len());
            extra.insert("devices_on_hold".into(), json!(devices));
        }
        Err(e)
    }

    /// Whether a command may be sent to a device: refused if it is one that would destroy
    /// evidence or release the quarantine.
    pub async fn ensure_command_allowed(&self, actor: &Actor, udids: &[String], request_type: &str) -> Result<()> {
        if FORBIDDEN_UNDER_HOLD.contains(&request_type) {
            if udids.len() == 1 {
                return self.ensure_not_on_hold(actor, &udids[0], request_type).await;
            }
            return self.ensure_none_on_hold(actor, udids, request_type).await;
        }
        Ok(())
    }

    /// The devices that get no OS update: those on legal hold (an update changes the evidence).
    /// Declarative Device Management asks here for every device's set, so an update never
    /// reaches a held device whichever face created it.
    pub async fn withholds_os_updates(&self, udids: &[String]) -> Result<std::collections::HashSet<String>> {
        Ok(self.store.legal_holds(udids).await?.into_iter().map(|(u, _, _)| u).collect())
    }

    pub(crate) async fn record_hold_refusal(&self, actor: &Actor, udid: &str, case_id: Uuid, action: &str) -> Result<()> {
        tracing::warn!(udid, %case_id, action, actor = %actor.name, "refused: device is on legal hold");
        let audit = self.audit.audit_entry(actor, "legal_hold.refused", Some(udid), json!({"case_id": case_id, "action": action}));
        let event = NewCaseEvent::new(case_id, self.clock.now(), &actor.name, "refused", Some(udid), None, json!({"action": action}));
        self.store.append_case_event(&event, Some(audit)).await?;
        Ok(())
    }
}

/// What the faces read about hold, through this service rather than from the store.
impl Hold {
    pub async fn legal_hold(&self, udid: &str) -> crate::error::Result<Option<(uuid::Uuid, i64)>> {
        Ok(self.store.legal_hold(udid).await?)
    }

    pub async fn legal_holds(&self, udids: &[String]) -> crate::error::Result<Vec<(String, uuid::Uuid, i64)>> {
        Ok(self.store.legal_holds(udids).await?)
    }

    pub async fn devices_on_hold(&self) -> crate::error::Result<i64> {
        Ok(self.store.devices_on_hold().await?)
    }
}
