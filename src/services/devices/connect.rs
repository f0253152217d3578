//! Command reports and the queue (`PUT /mdm/connect`).
//!
//! The device reports the result of the last command (or Idle); we store it, then hand it the
//! oldest pending command. A command answered NotNow is skipped for the rest of this
//! connection and offered again at the device's next Idle.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::command::Command;
use crate::protocol::report::{self, CommandReport, CommandStatus};
use crate::services::devices::Devices;
use crate::services::devices::auth::DeviceIdentity;
use crate::store::{DeviceAnswer, DeviceSession, RecordedResult};

/// Only write `last_seen_at` when it is older than this: the busiest path stays read-only.
const LAST_SEEN_RESOLUTION_SECS: i64 = 60;

impl Devices {
    /// Returns the next command's plist, or None for an empty 200.
    pub async fn connect(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        // Authenticate first: the signature covers the raw bytes, so nobody unauthenticated
        // reaches the parser.
        let identity = self.verify_device_signer(body, signature, tls_cert)?;
        let report = report::parse(body).map_err(|e| Error::BadRequest(format!("command report: {e}")))?;
        let udid = report.ids.udid.clone().unwrap_or_else(|| report.ids.device_id.clone());
        let now = self.clock.now();
        // Commands queued while this report is handled (a reconcile after a ProfileList, say)
        // go out in this same answer.
        let queued_before = self.metrics.commands_queued.get();
        // No user-channel commands yet: those reports are authenticated and answered empty.
        let answers_command = report.status != CommandStatus::Idle && !report.ids.is_user_channel();

        // Most answers come with the certificate bound to the device, and recording the result
        // checks that binding and reads the device in the same statement. Otherwise (an Idle,
        // a renewed certificate, a duplicate report) the device is looked up first.
        let json = answers_command.then(|| report.to_json().to_string());
        // A DeviceInformation answer's inventory is stored with the answer.
        let inventory = (answers_command && report.status == CommandStatus::Acknowledged)
            .then(|| crate::services::devices::inventory::device_information_update(&report, now))
            .flatten();
        let answer = json.as_deref().map(|json| DeviceAnswer {
            udid: &udid,
            cert_sha256: &identity.sha256,
            command_uuid: report.command_uuid.as_deref().unwrap_or_default(),
            status: status_of(&report),
            plist: body,
            json,
            at: now,
            inventory: inventory.as_ref(),
        });
        let first_try = match &answer {
            Some(a) => self.store.record_result(a).await?,
            None => None,
        };
        let (device, recorded, others_pending) = match first_try {
            Some(done) => {
                let device = done.session.clone();
                let others = device.pending;
                (device, Some(done), others)
            }
            None => {
                let device = self.connecting_device(&identity, &udid).await?;
                if report.ids.is_user_channel() {
                    return Ok(None);
                }
                // Bound just now (a renewal), or a duplicate or unknown command: None again.
                let recorded = match &answer {
                    Some(a) => self.store.record_result(a).await?,
                    None => None,
                };
                let others = device.pending - i64::from(recorded.is_some());
                (device, recorded, others)
            }
        };
        let answered_push = device.last_push_at.is_some_and(|p| p >= device.last_seen_at);
        if answered_push || (now - device.last_seen_at).num_seconds() >= LAST_SEEN_RESOLUTION_SECS {
            self.store.touch_device(&udid, now).await?;
        }
        match &recorded {
            Some(done) => self.after_result(&udid, &report, body, done, inventory.is_some(), now).await?,
            None if answers_command => {
                let command_uuid = report.command_uuid.as_deref().unwrap_or_default();
                tracing::debug!(udid, command_uuid, "report for no pending command (duplicate or unknown); ignored");
            }
            None => {}
        }

        // Ask for the next command only if one can be there: pending before this report
        // (besides the one it answered), or queued since. A command queued by another instance
        // meanwhile is not missed: queueing pushes the device.
        if others_pending <= 0 && self.metrics.commands_queued.get() == queued_before {
            return Ok(None);
        }
        let include_not_now = report.status == CommandStatus::Idle;
        let next = self.store.next_command(&udid, include_not_now, now).await?;
        if let Some(cmd) = &next {
            Metrics::add(&self.metrics.commands_delivered, 1);
            if cmd.for_case {
                self.safeguarding.on_case_command_sent(&udid, &cmd.uuid).await?;
            }
        }
        match next {
            Some(c) if c.request_type == "ClearPasscode" => Ok(Some(self.clear_passcode_for(&udid, &c.uuid).await?)),
            Some(c) => Ok(Some(c.payload)),
            None => Ok(None),
        }
    }

    /// A queued ClearPasscode holds no token (a secret, kept out of the queue and its fields):
    /// the plist this device is handed carries its own, unsealed only here. Queueing refused
    /// devices without one; if the token has gone since (the device re-enrolled without
    /// sending one), the command goes without it and the device answers with an error, which
    /// is recorded on the command as usual.
    async fn clear_passcode_for(&self, udid: &str, command_uuid: &str) -> Result<Vec<u8>> {
        let sealed = self.store.device(udid).await?.and_then(|d| d.unlock_token_sealed);
        let cmd = Command::ClearPasscode(Default::default());
        Ok(match sealed {
            Some(sealed) => cmd.with_unlock_token(self.pki.sealer.open(&sealed).map_err(Error::internal)?).to_plist(command_uuid),
            None => {
                tracing::warn!(udid, command_uuid, "ClearPasscode without an unlock token: the device has none on record any more");
                cmd.to_plist(command_uuid)
            }
        })
    }

    /// The device this certificate is bound to, which must be the one the report names; a
    /// certificate not bound to it goes through the full rules (another device's certificate,
    /// or a renewal that moves the binding).
    async fn connecting_device(&self, identity: &DeviceIdentity, udid: &str) -> Result<DeviceSession> {
        match self.store.device_session(&identity.sha256).await? {
            Some(session) if session.udid == udid => Ok(session),
            _ => {
                self.bind_identity(identity, udid).await?;
                self.store.device_session(&identity.sha256).await?.ok_or_else(|| Error::Forbidden("unknown device".into()))
            }
        }
    }

    /// What a recorded result sets off: metrics, the case record, the inventory, profiles.
    /// `inventory_stored`: the answer carried device information, stored with it if the
    /// command was a DeviceInformation.
    async fn after_result(
        &self,
        udid: &str,
        report: &CommandReport,
        body: &[u8],
        done: &RecordedResult,
        inventory_stored: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let command_uuid = report.command_uuid.as_deref().unwrap_or_default();
        let status = status_of(report);
        let counter = match report.status {
            CommandStatus::Acknowledged => &self.metrics.commands_acknowledged,
            CommandStatus::NotNow => &self.metrics.commands_not_now,
            _ => &self.metrics.commands_errored,
        };
        Metrics::add(counter, 1);
        if done.for_case {
            self.safeguarding.on_case_command_result(udid, command_uuid, status, body).await?;
        }
        let stored = inventory_stored && done.request_type == "DeviceInformation";
        if report.status == CommandStatus::Acknowledged && !stored {
            self.apply_inventory(udid, &done.request_type, report, now).await?;
        } else if let Some(err) = report.error_summary() {
            tracing::info!(udid, command_uuid, status, error = %err, "command failed on the device");
        }
        // Profiles: installed/removed state, ProfileList sync, reconcile, FileVault escrow,
        // smart groups. Any commands it queues go out in this same answer.
        self.profiles.profiles_after_report(udid, command_uuid, done, report).await;
        // What a device's details set off, decided from its row as just stored: turn DDM on for
        // an OS that has it, and ask a supervised device for its Activation Lock bypass code;
        // keep the bypass code an answer carries. Errors are logged, not given to the device
        // (its report is stored already; the next DeviceInformation tries again).
        let follow_up = async {
            if done.request_type == "DeviceInformation"
                && report.status == CommandStatus::Acknowledged
                && let Some(d) = self.store.device(udid).await?
            {
                self.ddm.enable_if_capable(&d).await?;
                self.ask_for_activation_lock_bypass(&d).await?;
            }
            self.activation_lock_after_report(udid, &done.request_type, report).await
        };
        if let Err(e) = follow_up.await {
            tracing::error!(udid, command_uuid, error = %e, "could not follow up a device's answer (DDM, Activation Lock)");
        }
        // A device waiting in Setup Assistant goes on once its profiles are in.
        if report.status.is_final() && matches!(done.request_type.as_str(), "ProfileList" | "InstallProfile" | "RemoveProfile") {
            self.continue_setup(udid).await;
        }
        Ok(())
    }
}

/// The target status a report leaves its command in.
fn status_of(report: &CommandReport) -> &'static str {
    match report.status {
        CommandStatus::Acknowledged => "acknowledged",
        CommandStatus::NotNow => "not_now",
        _ => "error",
    }
}
