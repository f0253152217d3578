//! Activation Lock bypass codes: the code a supervised iPad (or Mac) makes so that its
//! organisation can lift Activation Lock after an erase without the pupil's Apple Account.
//!
//! A device gives it only within 15 days of supervision (Apple's schema), and makes a new one
//! when it is set up again after an erase. So Lanyard asks as soon as a DeviceInformation answer
//! says the device is supervised and it holds no code (at most once a day per device, decided
//! from the device row already read, so an answer costs no write), keeps
//! the answer sealed, and replaces it only with a different, non-empty code (Apple's rule: an
//! empty answer never erases the one held). An admin or technician reveals it with a written
//! justification, audited; never for a device on legal hold, whose code could let someone
//! re-use an erased piece of evidence.

use chrono::{DateTime, Duration, Utc};
use plist::Value;
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::protocol::command::Command;
use crate::protocol::report::{CommandReport, CommandStatus};
use crate::services::auth::Actor;
use crate::services::devices::Devices;
use crate::services::profiles::filevault::check_justification;
use crate::store::DeviceRecord;

/// Who the request for the code is queued as.
pub const ACTIVATION_LOCK_ACTOR: &str = "system:activation-lock";

/// A revealed bypass code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivationLockBypass {
    pub udid: String,
    pub serial_number: Option<String>,
    pub device_name: Option<String>,
    /// As the device gave it, e.g. `XXXXX-XXXXX-XXXX-XXXX-XXXX-XXXX`: type it at the Activation
    /// Lock screen in place of the Apple Account password (leave the account name empty).
    pub bypass_code: String,
    pub received_at: DateTime<Utc>,
}

impl Devices {
    /// After a DeviceInformation answer (stored in `d`): ask a supervised device that has given
    /// no code for it, at most once a day. Reads only, unless it asks.
    pub(crate) async fn ask_for_activation_lock_bypass(&self, d: &DeviceRecord) -> Result<()> {
        let now = self.clock.now();
        let asked_recently = d.activation_lock_requested_at.is_some_and(|at| at > now - Duration::days(1));
        if d.supervised != Some(true) || d.activation_lock_bypass_at.is_some() || asked_recently {
            return Ok(());
        }
        if self.store.claim_activation_lock_request(&d.udid, now, now - Duration::days(1)).await? {
            self.commands
                .queue_command(ACTIVATION_LOCK_ACTOR, &Command::ActivationLockBypassCode, std::slice::from_ref(&d.udid), None)
                .await?;
        }
        Ok(())
    }

    /// After a recorded answer: keep the code an ActivationLockBypassCode answer carries.
    pub(crate) async fn activation_lock_after_report(&self, udid: &str, request_type: &str, report: &CommandReport) -> Result<()> {
        if report.status != CommandStatus::Acknowledged {
            return Ok(());
        }
        let now = self.clock.now();
        match request_type {
            "ActivationLockBypassCode" => {
                let code = report.raw.get("ActivationLockBypassCode").and_then(Value::as_string).map(str::trim).unwrap_or_default();
                if code.is_empty() || code.len() > 256 {
                    tracing::info!(
                        udid,
                        "the device gave no Activation Lock bypass code (past 15 days of supervision?); the one held is kept"
                    );
                    return Ok(());
                }
                if let Some((sealed, _)) = self.store.activation_lock_bypass(udid).await?
                    && self.pki.sealer.open(&sealed).ok().as_deref() == Some(code.as_bytes())
                {
                    return Ok(());
                }
                let sealed = self.pki.sealer.seal(code.as_bytes()).map_err(Error::internal)?;
                self.store.put_activation_lock_bypass(udid, &sealed, now).await?;
                tracing::info!(udid, "Activation Lock bypass code kept (sealed)");
            }
            _ => {}
        }
        Ok(())
    }

    /// `GET /api/v1/devices/{udid}/activation-lock-bypass?justification=`: the code, audited
    /// with the reason; refused for a device on legal hold.
    pub async fn reveal_activation_lock_bypass(
        &self,
        actor: &Actor,
        udid: &str,
        justification: Option<&str>,
    ) -> Result<ActivationLockBypass> {
        let justification = check_justification(justification, "the bypass code")?;
        let device = self.store.device(udid).await?.ok_or_else(|| Error::not_found(format!("no device with UDID {udid}")))?;
        self.hold.ensure_not_on_hold(actor, udid, "activation_lock_bypass.reveal").await?;
        let (sealed, received_at) = self.store.activation_lock_bypass(udid).await?.ok_or_else(|| {
            Error::not_found(format!(
                "Lanyard holds no Activation Lock bypass code for {udid}: only a supervised device gives one, within 15 days of \
                 supervision (ask from Apple School Manager or Apple Configurator otherwise)"
            ))
        })?;
        let code = String::from_utf8(self.pki.sealer.open(&sealed).map_err(Error::internal)?).map_err(Error::internal)?;
        self.audit
            .audit(
                actor,
                "device.activation_lock_bypass.reveal",
                Some(udid),
                json!({"justification": justification, "serial_number": device.serial_number}),
            )
            .await?;
        tracing::info!(udid, actor = %actor.name, "Activation Lock bypass code revealed");
        Ok(ActivationLockBypass {
            udid: udid.to_owned(),
            serial_number: device.serial_number,
            device_name: device.device_name,
            bypass_code: code,
            received_at,
        })
    }
}
