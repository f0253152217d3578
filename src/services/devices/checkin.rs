//! Check-in messages (`PUT /mdm/checkin`): Authenticate, TokenUpdate, CheckOut, bootstrap tokens,
//! and Declarative Device Management's requests ([`crate::services::ddm`]).

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::checkin::{self, CheckinMessage};
use crate::protocol::command::{Command, DeviceInformation, ProfileList};
use crate::services::devices::Devices;
use crate::services::devices::auth::Enrolment;
use crate::store::{AuthenticateRecord, TokenUpdateRecord};

/// What the device face answers.
pub enum CheckinReply {
    /// 200 with an empty body.
    Ok,
    /// 200 with a plist body.
    Plist(Vec<u8>),
    /// 410: we do not support this (UserAuthenticate).
    Gone,
    /// 200 with a JSON body (Declarative Device Management).
    Json(Vec<u8>),
}

/// The commands every new enrolment starts with, so the inventory fills in.
pub fn initial_inventory() -> Vec<Command> {
    vec![Command::DeviceInformation(DeviceInformation::inventory()), Command::SecurityInfo, Command::ProfileList(ProfileList::default())]
}

impl Devices {
    pub async fn checkin(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<CheckinReply> {
        // Authenticate first: the signature covers the raw bytes, so nobody unauthenticated
        // reaches the parser.
        let identity = self.verify_device_signer(body, signature, tls_cert)?;
        let msg = checkin::parse(body).map_err(|e| Error::BadRequest(format!("check-in: {e}")))?;
        let ids = msg.ids().clone();
        if ids.is_user_channel() {
            // Per-user channels (shared iPad, macOS users) ride on the device's enrolment.
            if let CheckinMessage::UserAuthenticate(_) = msg {
                return Ok(CheckinReply::Gone);
            }
            self.bind_identity(&identity, ids.udid.as_deref().unwrap_or(&ids.device_id)).await?;
            return Ok(CheckinReply::Ok);
        }
        let udid = ids.device_id.clone();
        let now = self.clock.now();
        match msg {
            CheckinMessage::Authenticate(a) => {
                self.ensure_served_topic(&a.topic).await?;
                let audit = match self.admit_authenticate(&identity, &a).await? {
                    Enrolment::AlreadyBound => return Ok(CheckinReply::Ok),
                    Enrolment::New => None,
                    // The re-enrolment and its audit entry commit together.
                    Enrolment::Reenrolment(reason) => {
                        let device = crate::services::auth::Actor { name: format!("device:{udid}"), ip: None };
                        Some(self.audit.audit_entry(&device, "device.reenrol", Some(&udid), serde_json::json!({"reason": reason})))
                    }
                };
                let token_id = self.store.issued_cert(&identity.sha256).await?.and_then(|c| c.enrollment_token_id);
                self.ensure_bound_serial(token_id, a.serial_number.as_deref()).await?;
                self.ensure_not_replayed(&identity, &udid, "Authenticate").await?;
                let platform = super::platform_of(a.product_name.as_deref(), a.model_name.as_deref(), a.model.as_deref());
                let cut = |field: &str, v: Option<String>| super::inventory::reported(&udid, field, v);
                self.store
                    .authenticate_device(
                        &AuthenticateRecord {
                            udid: udid.clone(),
                            serial_number: cut("SerialNumber", a.serial_number),
                            model: cut("Model", a.model),
                            model_name: cut("ModelName", a.model_name),
                            product_name: cut("ProductName", a.product_name),
                            device_name: cut("DeviceName", a.device_name),
                            os_version: cut("OSVersion", a.os_version),
                            build_version: cut("BuildVersion", a.build_version),
                            platform: platform.into(),
                            topic: a.topic,
                            imei: cut("IMEI", a.imei),
                            meid: cut("MEID", a.meid),
                            cert_sha256: identity.sha256.clone(),
                            enrollment_token_id: token_id,
                            at: now,
                            signed_at: identity.signed_at,
                        },
                        audit,
                    )
                    .await?;
                tracing::info!(udid, platform, "device authenticated");
                Ok(CheckinReply::Ok)
            }
            CheckinMessage::TokenUpdate(t) => {
                self.bind_identity(&identity, &udid).await?;
                self.ensure_served_topic(&t.topic).await?;
                self.ensure_not_replayed(&identity, &udid, "TokenUpdate").await?;
                let unlock = match &t.unlock_token {
                    Some(u) => Some(self.pki.sealer.seal(u).map_err(Error::internal)?),
                    None => None,
                };
                let record = TokenUpdateRecord {
                    udid: &udid,
                    token: &t.token,
                    push_magic: &t.push_magic,
                    unlock_token_sealed: unlock.as_deref(),
                    awaiting_configuration: t.awaiting_configuration,
                    at: now,
                };
                // A new enrolment starts with the commands that fill in its inventory, queued
                // in the TokenUpdate's own transaction.
                let first_commands: Vec<_> = initial_inventory().iter().map(|c| self.commands.new_command("system", c, None)).collect();
                if self.store.token_update(&record, &first_commands).await? {
                    Metrics::add(&self.metrics.commands_queued, first_commands.len() as u64);
                    tracing::info!(udid, "device enrolled");
                    // Profiles: forget an earlier enrolment's, work out smart groups; reconcile
                    // follows the first ProfileList answer.
                    self.profiles.profiles_device_enrolled(&udid).await;
                }
                Ok(CheckinReply::Ok)
            }
            CheckinMessage::CheckOut(_) => {
                self.bind_identity(&identity, &udid).await?;
                self.ensure_not_replayed(&identity, &udid, "CheckOut").await?;
                self.store.check_out(&udid, now).await?;
                self.safeguarding.on_checkout_during_hold(&udid).await?;
                tracing::info!(udid, "device checked out (MDM profile removed)");
                Ok(CheckinReply::Ok)
            }
            CheckinMessage::UserAuthenticate(_) => Ok(CheckinReply::Gone),
            CheckinMessage::DeclarativeManagement(m) => {
                self.bind_identity(&identity, &udid).await?;
                Ok(match self.ddm.declarative_management(&udid, &m.endpoint, m.data.as_deref()).await? {
                    Some(json) => CheckinReply::Json(json),
                    None => CheckinReply::Ok,
                })
            }
            CheckinMessage::SetBootstrapToken(s) => {
                self.bind_identity(&identity, &udid).await?;
                let sealed = match &s.bootstrap_token {
                    Some(t) => Some(self.pki.sealer.seal(t).map_err(Error::internal)?),
                    None => None,
                };
                self.store.set_bootstrap_token(&udid, sealed.as_deref()).await?;
                Ok(CheckinReply::Ok)
            }
            CheckinMessage::GetBootstrapToken(_) => {
                let device = self.bind_identity(&identity, &udid).await?.ok_or_else(|| Error::Forbidden("unknown device".into()))?;
                let token = match device.bootstrap_token_sealed {
                    Some(sealed) => self.pki.sealer.open(&sealed).map_err(Error::internal)?,
                    None => Vec::new(),
                };
                Ok(CheckinReply::Plist(checkin::bootstrap_token_response(&token)))
            }
            other => Err(Error::BadRequest(format!("check-in message type {} is not supported", other.message_type()))),
        }
    }
}

impl Devices {
    /// An identity issued against an ADE enrolment's one-time token authenticates only as the
    /// device whose signed MachineInfo earned it (its serial number).
    async fn ensure_bound_serial(&self, token_id: Option<uuid::Uuid>, serial: Option<&str>) -> Result<()> {
        let Some(id) = token_id else { return Ok(()) };
        let Some(bound) = self.store.enrollment_token(id).await?.and_then(|t| t.bound_serial) else { return Ok(()) };
        if serial.map(str::trim) != Some(bound.as_str()) {
            tracing::warn!(bound, serial, "Authenticate with an ADE identity issued for another device");
            return Err(Error::Forbidden(format!(
                "this identity was issued to the device with serial number {bound} at ADE enrolment; it cannot enrol another device"
            )));
        }
        Ok(())
    }

    /// A device must name the push topic of the certificate this server holds: a message for
    /// another server's topic (a device enrolled elsewhere, or a forged message) is refused.
    /// Before any push certificate is loaded there is nothing to push with, and nothing to check.
    async fn ensure_served_topic(&self, topic: &str) -> Result<()> {
        // Apple's topics are `com.apple.mgmt.External.` and a UUID: 60 characters.
        if topic.len() > 255 {
            return Err(Error::BadRequest("push topic is longer than any APNs topic (255 characters)".into()));
        }
        match self.push.served_topic().await? {
            Some(served) if served != topic => {
                tracing::warn!(topic, served, "check-in names a push topic this server does not serve");
                Err(Error::BadRequest(format!("push topic {topic:?} is not this server's ({served})")))
            }
            _ => Ok(()),
        }
    }
}
