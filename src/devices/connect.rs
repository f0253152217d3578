//! Command reports and the queue (`PUT /mdm/connect`).
//!
//! The device reports the result of the last command (or Idle); we store it, then hand it the
//! oldest pending command. A command answered NotNow is skipped for the rest of this
//! connection and offered again at the device's next Idle.

use std::sync::atomic::Ordering;

use crate::context::Lanyard;
use crate::error::{Error, Result};
use crate::mdm::report::{self, CommandStatus};
use crate::metrics::Metrics;

/// Only write `last_seen_at` when it is older than this: the busiest path stays read-only.
const LAST_SEEN_RESOLUTION_SECS: i64 = 60;

impl Lanyard {
    /// Returns the next command's plist, or None for an empty 200.
    pub async fn connect(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        let report = report::parse(body).map_err(|e| Error::BadRequest(format!("command report: {e}")))?;
        let identity = self.verify_device_signer(body, signature, tls_cert)?;
        let udid = report.ids.udid.clone().unwrap_or_else(|| report.ids.device_id.clone());
        let device = match self.store.device_session(&identity.sha256).await? {
            Some(session) if session.udid == udid => session,
            _ => {
                // Not bound to this device: the full rules (another device's certificate, or a
                // renewal that moves the binding).
                self.bind_identity(&identity, &udid, false).await?;
                self.store.device_session(&identity.sha256).await?.ok_or_else(|| Error::Forbidden("unknown device".into()))?
            }
        };
        if report.ids.is_user_channel() {
            // No user-channel commands yet.
            return Ok(None);
        }
        let now = self.now();
        let answered_push = device.last_push_at.is_some_and(|p| p >= device.last_seen_at);
        if answered_push || (now - device.last_seen_at).num_seconds() >= LAST_SEEN_RESOLUTION_SECS {
            self.store.touch_device(&udid, now).await?;
        }
        // Commands queued while this report is handled (a reconcile after a ProfileList, say)
        // go out in this same answer.
        let queued_before = self.metrics.commands_queued.load(Ordering::Relaxed);
        let mut answered_pending = false;
        if report.status != CommandStatus::Idle {
            let command_uuid = report.command_uuid.as_deref().unwrap_or_default();
            let status = match report.status {
                CommandStatus::Acknowledged => "acknowledged",
                CommandStatus::NotNow => "not_now",
                _ => "error",
            };
            let json = report.to_json();
            let plist = body.to_vec();
            let recorded = self.store.record_result(&udid, command_uuid, status, &plist, &json.to_string(), now).await?;
            answered_pending = recorded.is_some();
            match &recorded {
                None => tracing::debug!(udid, command_uuid, "report for no pending command (duplicate or unknown); ignored"),
                Some(done) => {
                    let counter = match report.status {
                        CommandStatus::Acknowledged => &self.metrics.commands_acknowledged,
                        CommandStatus::NotNow => &self.metrics.commands_not_now,
                        _ => &self.metrics.commands_errored,
                    };
                    Metrics::add(counter, 1);
                    if done.for_case {
                        self.on_case_command_result(&udid, command_uuid, status, &plist).await?;
                    }
                    if report.status == CommandStatus::Acknowledged {
                        self.apply_inventory(&udid, &done.request_type, &report, now).await?;
                    } else if let Some(err) = report.error_summary() {
                        tracing::info!(udid, command_uuid, status, error = %err, "command failed on the device");
                    }
                    // Profiles: installed/removed state, ProfileList sync, reconcile, FileVault
                    // escrow, smart groups. Any commands it queues go out in this same answer.
                    self.profiles_after_report(&udid, command_uuid, done, &report).await;
                }
            }
        }
        // Ask for the next command only if one can be there: pending before this report
        // (besides the one it answered), or queued since. A command queued by another instance
        // meanwhile is not missed: queueing pushes the device.
        let others_pending = device.pending - i64::from(answered_pending) > 0;
        if !others_pending && self.metrics.commands_queued.load(Ordering::Relaxed) == queued_before {
            return Ok(None);
        }
        let include_not_now = report.status == CommandStatus::Idle;
        let next = self.store.next_command(&udid, include_not_now, now).await?;
        if let Some(cmd) = &next {
            Metrics::add(&self.metrics.commands_delivered, 1);
            if cmd.for_case {
                self.on_case_command_sent(&udid, &cmd.uuid).await?;
            }
        }
        Ok(next.map(|c| c.payload))
    }
}
