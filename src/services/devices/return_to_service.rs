//! Return to Service: erase an iPad so that it comes back enrolled, ready for its next pupil,
//! without anyone touching it (EraseDevice with `ReturnToService`, iOS and iPadOS 17 and later).
//!
//! The erased iPad joins Wi-Fi from the profile given (`WiFiProfileData`: a Wi-Fi profile of the
//! library) and re-enrols: through ADE when Apple School Manager lists its serial number for this
//! school (the cloud configuration brings it back supervised), otherwise with the enrolment
//! profile Lanyard puts in the command (`MDMProfileData`), whose SCEP challenge is a one-time
//! token bound to that serial and valid for a day.
//!
//! A request for a trolley is all or nothing: every device is checked first (exists, enrolled,
//! an iPhone or iPad on 17 or later, not on legal hold) and any refusal names each refused device
//! and queues nothing. Each device's erase is a command of its own, whose status is its progress
//! (`GET /api/v1/commands/{uuid}`). Every erase goes through [`Commands::enqueue_command`], where
//! the legal hold is checked for every face.
//!
//! [`Commands::enqueue_command`]: crate::services::commands::Commands::enqueue_command

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::commands::PushResult;
use crate::services::devices::Devices;

/// The most devices in one request (a few trolleys).
pub const MAX_DEVICES: usize = 500;
/// How long the enrolment profile in the command stays usable: an erase, Setup Assistant and
/// re-enrolment take minutes, but the iPad may be off until the next morning.
pub const PROFILE_HOURS: i64 = 24;

/// One device's erase.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReturnQueued {
    pub udid: String,
    pub serial_number: Option<String>,
    /// Its EraseDevice command: `GET /api/v1/commands/{uuid}` shows its progress.
    pub command_uuid: String,
    /// `ade` (Apple School Manager lists it: it re-enrols through ADE, supervised) or
    /// `enrolment_profile` (the command carries a one-time enrolment profile for it).
    pub re_enrols_by: String,
}

/// What a Return to Service request did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReturnToService {
    pub devices: Vec<ReturnQueued>,
    /// The Wi-Fi profile the erased devices join with, if one was given.
    pub wifi_profile: Option<String>,
    pub warnings: Vec<String>,
    pub push: Option<PushResult>,
}

/// A device refused, and why.
#[derive(Debug, Clone, Serialize)]
struct Refused {
    udid: String,
    reason: String,
}

impl Devices {
    /// Erase these devices with Return to Service; see the module comment.
    pub async fn return_to_service(
        &self,
        actor: &Actor,
        udids: Vec<String>,
        wifi_profile_id: Option<Uuid>,
        push: bool,
    ) -> Result<ReturnToService> {
        let mut unique = udids;
        unique.sort();
        unique.dedup();
        if unique.is_empty() {
            return Err(Error::unprocessable("udids", "name at least one device"));
        }
        if unique.len() > MAX_DEVICES {
            return Err(Error::unprocessable("udids", format!("at most {MAX_DEVICES} devices in one request")));
        }
        // The legal hold first, for the whole request, naming each held device.
        self.hold.ensure_command_allowed(actor, &unique, "EraseDevice").await?;
        let mut refused = Vec::new();
        let mut devices = Vec::new();
        for udid in &unique {
            let reason = match self.store.device(udid).await? {
                None => Some("no such device".to_owned()),
                Some(d) if !d.enrolled => Some("not enrolled: it would not come back".to_owned()),
                Some(d) if d.platform == "macOS" => Some("Return to Service is for iPhone and iPad; erase a Mac instead".to_owned()),
                Some(d) if !os_at_least(d.os_version.as_deref(), 17) => Some(format!(
                    "needs iOS or iPadOS 17 or later (it runs {})",
                    d.os_version.as_deref().unwrap_or("a version it has not reported")
                )),
                Some(d) if d.serial_number.is_none() => Some("its serial number is not known yet: update its details first".to_owned()),
                Some(d) => {
                    devices.push(d);
                    None
                }
            };
            if let Some(reason) = reason {
                refused.push(Refused { udid: udid.clone(), reason });
            }
        }
        if !refused.is_empty() {
            let message = if unique.len() == 1 {
                format!("this device cannot be returned to service: {}", refused[0].reason)
            } else {
                format!(
                    "{} of the {} devices cannot be returned to service; nothing was erased: see `refused`",
                    refused.len(),
                    unique.len()
                )
            };
            let mut extra = Map::new();
            extra.insert("refused".into(), json!(refused));
            return Err(Error::Invalid { code: "return_to_service_refused", field: "udids".into(), message, extra });
        }

        let (wifi_profile, wifi_data) = match wifi_profile_id {
            Some(id) => {
                let (name, data) = self.profiles.signed_wifi_profile(id).await?;
                (Some(name), Some(data))
            }
            None => (None, None),
        };
        let mut warnings = Vec::new();
        if wifi_data.is_none() {
            warnings.push(
                "no wifi_profile_id: an erased iPad forgets its networks, so without a Wi-Fi profile only one on Ethernet comes back by itself"
                    .to_owned(),
            );
        }

        let mut queued = Vec::new();
        for d in devices {
            let serial = d.serial_number.clone().unwrap_or_default();
            let by_ade = self.store.ade_device(&serial).await?.is_some_and(|a| a.removed_at.is_none());
            let mut rts = Map::new();
            rts.insert("Enabled".into(), json!(true));
            if let Some(w) = &wifi_data {
                rts.insert("WiFiProfileData".into(), json!(B64.encode(w)));
            }
            if !by_ade {
                let profile =
                    self.enrollment.bound_enrollment_profile(actor, &serial, &format!("Return to Service {serial}"), PROFILE_HOURS).await?;
                rts.insert("MDMProfileData".into(), json!(B64.encode(profile)));
            }
            let mut fields = Map::new();
            fields.insert("ReturnToService".into(), Value::Object(rts));
            let done = self.commands.enqueue_command(actor, vec![d.udid.clone()], "EraseDevice", &fields, None, false).await?;
            queued.push(ReturnQueued {
                udid: d.udid,
                serial_number: d.serial_number,
                command_uuid: done.command_uuid,
                re_enrols_by: if by_ade { "ade" } else { "enrolment_profile" }.to_owned(),
            });
        }
        self.audit
            .audit(
                actor,
                "device.return_to_service",
                None,
                json!({"devices": queued.len(), "udids": queued.iter().take(50).map(|q| &q.udid).collect::<Vec<_>>(), "wifi_profile": wifi_profile}),
            )
            .await?;
        let push = if push { Some(self.commands.push_in_background(queued.iter().map(|q| q.udid.clone()).collect()).await) } else { None };
        Ok(ReturnToService { devices: queued, wifi_profile, warnings, push })
    }
}

/// Whether `version` ("17.5.1") is at least `major`.
fn os_at_least(version: Option<&str>, major: u32) -> bool {
    version.and_then(|v| v.split('.').next()).and_then(|m| m.trim().parse::<u32>().ok()).is_some_and(|m| m >= major)
}

#[cfg(test)]
mod tests {
    #[test]
    fn os_versions_compare_by_major() {
        assert!(super::os_at_least(Some("17.0"), 17));
        assert!(super::os_at_least(Some("26.1"), 17));
        assert!(!super::os_at_least(Some("16.7.10"), 17));
        assert!(!super::os_at_least(None, 17));
        assert!(!super::os_at_least(Some("x"), 17));
    }
}
