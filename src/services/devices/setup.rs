//! Setup Assistant: `DeviceConfigured`.
//!
//! A device enrolled by ADE with an ADE profile's `await_device_configured` tells Lanyard, in
//! its TokenUpdate (`AwaitingConfiguration`), that it waits in Setup Assistant. Lanyard lets it
//! go on once the profiles its groups give it are in: after the first ProfileList answer (which
//! starts reconcile) and every profile install or removal, [`Devices::continue_setup`] looks
//! whether anything is still on its way; when nothing is, it queues `DeviceConfigured`. A
//! profile the device refused does not keep it waiting (it is retried later, as on any device).
//! A device still waiting after `ade_setup_timeout` is let go anyway by the sweeper
//! ([`Devices::release_overdue_setups`]), so a pupil is never left at a spinning Setup
//! Assistant; the audit log says which happened and how many profiles were in.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::command::Command;
use crate::services::auth::Actor;
use crate::services::devices::Devices;
use crate::services::profiles::reconcile::DeviceProfiles;
use crate::store::DeviceRecord;

/// Who `DeviceConfigured` is queued as.
pub const SETUP_ACTOR: &str = "system:setup";

/// How far a device waiting in Setup Assistant has got: `installed` of `intended` profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SetupProgress {
    pub installed: usize,
    pub intended: usize,
    /// Profile commands still on their way to the device.
    pub pending: usize,
    /// Profiles the device refused (they do not hold it back).
    pub failed: usize,
    /// Since its enrolment.
    pub waiting_since: Option<DateTime<Utc>>,
}

impl SetupProgress {
    /// Nothing left on its way, and every intended profile in or refused.
    pub fn is_done(&self) -> bool {
        self.pending == 0 && self.installed + self.failed >= self.intended
    }

    /// "setting up: 2 of 3 profiles".
    pub fn words(&self) -> String {
        format!("setting up: {} of {} profiles", self.installed, self.intended)
    }
}

/// A waiting device's progress from its profiles view; None when it is not waiting.
pub fn progress(d: &DeviceRecord, view: &DeviceProfiles) -> Option<SetupProgress> {
    if !(d.enrolled && d.awaiting_configuration) {
        return None;
    }
    let count = |state: &str| view.intended.iter().filter(|i| i.state == state).count();
    Some(SetupProgress {
        installed: count("installed"),
        intended: view.intended.len(),
        pending: view.pending.len(),
        failed: count("install_failed"),
        waiting_since: d.enrolled_at,
    })
}

impl Devices {
    /// Where a device waiting in Setup Assistant has got; None when it is not waiting.
    pub async fn setup_progress(&self, udid: &str) -> Result<Option<SetupProgress>> {
        let Some(d) = self.store.device(udid).await? else { return Ok(None) };
        if !(d.enrolled && d.awaiting_configuration) {
            return Ok(None);
        }
        let view = self.profiles.device_profiles_view(udid).await?;
        Ok(progress(&d, &view))
    }

    /// After a profile answer: let the device out of Setup Assistant if its profiles are in.
    /// Errors are logged (the device's report is stored already); the sweeper is the backstop.
    pub(crate) async fn continue_setup(&self, udid: &str) {
        let result = async {
            match self.setup_progress(udid).await? {
                Some(p) if p.is_done() => self.release_setup(udid, "profiles_installed", &p).await,
                _ => Ok(false),
            }
        }
        .await;
        if let Err(e) = result {
            tracing::error!(udid, error = %e, "setup: could not check a device waiting in Setup Assistant");
        }
    }

    /// Let go every device that has waited longer than `ade_setup_timeout`. Returns how many.
    pub async fn release_overdue_setups(&self) -> Result<usize> {
        let timeout = chrono::Duration::from_std(self.setup_timeout).map_err(Error::internal)?;
        let overdue = self.store.devices_awaiting_configuration(self.clock.now() - timeout, 500).await?;
        let mut released = Vec::new();
        for udid in overdue {
            let p = self.setup_progress(&udid).await?.unwrap_or_default();
            if self.release_setup(&udid, "timed_out", &p).await? {
                tracing::warn!(udid, installed = p.installed, intended = p.intended, "setup: timed out waiting for profiles; let go");
                released.push(udid);
            }
        }
        let n = released.len();
        if n > 0 {
            self.commands.push_in_background(released).await;
        }
        Ok(n)
    }

    /// Queue DeviceConfigured once (with its audit entry). False if it was let go already.
    async fn release_setup(&self, udid: &str, reason: &str, p: &SetupProgress) -> Result<bool> {
        let cmd = self.commands.new_command(SETUP_ACTOR, &Command::DeviceConfigured, None);
        let actor = Actor { name: SETUP_ACTOR.into(), ip: None };
        let audit = self.audit.audit_entry(
            &actor,
            "device.setup_released",
            Some(udid),
            json!({"reason": reason, "installed": p.installed, "intended": p.intended, "failed": p.failed, "command_uuid": cmd.uuid}),
        );
        let flag = match reason {
            "timed_out" => Some(format!("timed out after {} of {} profiles", p.installed, p.intended)),
            _ if p.installed >= p.intended => None,
            _ => Some(format!("{} of {} profiles; {} refused", p.installed, p.intended, p.failed)),
        };
        if !self.store.release_setup(udid, &cmd, flag.as_deref(), audit).await? {
            return Ok(false);
        }
        // Counted as queued, so a connect answering now hands it over in the same answer.
        Metrics::add(&self.metrics.commands_queued, 1);
        tracing::info!(udid, reason, installed = p.installed, intended = p.intended, "setup: DeviceConfigured queued");
        Ok(true)
    }
}
