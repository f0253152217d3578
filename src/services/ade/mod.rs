//! Apple School Manager: the server tokens that let Lanyard read which devices the school's MDM
//! server in ASM was given, and the sync that keeps that list ([`sync`]).
//!
//! A token is uploaded as the `.p7m` ASM downloads, encrypted to Lanyard's ADE certificate
//! ([`Ade::public_key`]); Lanyard opens it, checks it with Apple (`GET /account`) and keeps its
//! four OAuth values sealed. A second token for the same MDM server renews the first (its devices
//! and sync state kept); tokens of other servers sit beside it.

pub mod assign;
pub mod profiles;
pub mod sync;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::apple::ade::{AdeClient, AdeConfig, AdeError, ServerToken};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::services::audit::Audit;
use crate::services::auth::Actor;
use crate::services::expiry;
use crate::store::{AdeDeviceFilter, AdeTokenCounts, AdeTokenRecord, DynStore};

/// Apple School Manager tokens and devices.
#[derive(Clone)]
pub struct Ade {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<crate::config::Config>,
    pub(crate) pki: Arc<crate::pki::Pki>,
    pub(crate) audit: Audit,
    /// How the client waits and retries (tests shorten it).
    pub(crate) client_config: AdeConfig,
    /// What devices are told to connect to (the ADE profiles' URL).
    pub(crate) public_url: Arc<str>,
}

/// A token as the API and console show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdeTokenInfo {
    pub id: Uuid,
    pub server_name: String,
    pub server_uuid: String,
    pub org_name: String,
    pub expires_at: DateTime<Utc>,
    pub days_left: i64,
    /// `ok`, `expiring` (30 days or fewer), `expired`, `terms_not_signed` (someone must accept
    /// Apple's new terms in ASM) or `error` (the last sync failed: `last_error`).
    pub status: String,
    pub warning: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub renewed_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// `idle` or `running`.
    pub sync_state: String,
    pub sync_started_at: Option<DateTime<Utc>>,
    /// Device records the running (or last) sync has applied.
    pub sync_devices: i64,
    /// Devices ASM lists for this server (including those it has since removed).
    pub devices: i64,
    /// Devices ASM no longer lists for this server.
    pub removed: i64,
    /// Devices among them enrolled in Lanyard (by serial number).
    pub enrolled: i64,
    /// Devices ASM moved to Lanyard from another MDM server with a deadline, not enrolled yet.
    pub migrating: i64,
    /// The nearest of their deadlines (as ASM gives it).
    pub next_migration_deadline: Option<String>,
}

/// The code a stored error starts with (`[terms_not_signed] ...`), so that the state survives.
pub(crate) fn stored_error(e: &AdeError) -> String {
    match e {
        AdeError::TermsNotSigned => format!("[terms_not_signed] {e}"),
        AdeError::Unauthorized(_) => format!("[unauthorized] {e}"),
        _ => e.to_string(),
    }
}

impl AdeTokenInfo {
    fn from_record(r: &AdeTokenRecord, counts: Option<&AdeTokenCounts>, now: DateTime<Utc>) -> AdeTokenInfo {
        let days_left = (r.expires_at - now).num_days();
        let (code, last_error) = match r.last_error.as_deref() {
            Some(e) if e.starts_with('[') => match e.split_once("] ") {
                Some((code, rest)) => (Some(code.trim_start_matches('[')), Some(rest.to_owned())),
                None => (None, Some(e.to_owned())),
            },
            other => (None, other.map(str::to_owned)),
        };
        let expiry_status = expiry::status(days_left, r.expires_at <= now);
        let status = match (expiry_status, code) {
            ("expired", _) => "expired",
            (_, Some("terms_not_signed")) => "terms_not_signed",
            (_, Some(_)) => "error",
            (s, None) if last_error.is_some() && s == "ok" => "error",
            (s, None) => s,
        };
        let renew = "download a new token in Apple School Manager (Preferences, the MDM server, Download Token) and upload it on Lanyard's Apple page or with POST /api/v1/ade/tokens";
        let warning = match status {
            "expired" => Some(format!("the Apple School Manager token for {} expired on {}: no device changes are read. To fix it, {renew}", r.server_name, r.expires_at.date_naive())),
            "expiring" => Some(format!("the Apple School Manager token for {} expires in {days_left} days ({}): {renew}", r.server_name, r.expires_at.date_naive())),
            "terms_not_signed" => Some("Apple School Manager has new terms and conditions: an administrator must sign in to Apple School Manager and accept them; syncing resumes by itself after".to_owned()),
            _ => None,
        };
        AdeTokenInfo {
            id: r.id,
            server_name: r.server_name.clone(),
            server_uuid: r.server_uuid.clone(),
            org_name: r.org_name.clone(),
            expires_at: r.expires_at,
            days_left,
            status: status.to_owned(),
            warning,
            created_at: r.created_at,
            created_by: r.created_by.clone(),
            renewed_at: r.renewed_at,
            last_sync_at: r.last_sync_at,
            last_error,
            last_error_at: r.last_error_at,
            sync_state: r.sync_state.clone(),
            sync_started_at: r.sync_started_at,
            sync_devices: r.sync_devices,
            devices: counts.map(|c| c.devices).unwrap_or(0),
            removed: counts.map(|c| c.removed).unwrap_or(0),
            enrolled: counts.map(|c| c.enrolled).unwrap_or(0),
            migrating: counts.map(|c| c.migrating).unwrap_or(0),
            next_migration_deadline: counts.and_then(|c| c.next_migration_deadline.clone()),
        }
    }
}

/// A device ASM lists, with the enrolled device of the same serial.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdeDeviceInfo {
    pub serial_number: String,
    pub token_id: Uuid,
    pub model: Option<String>,
    pub description: Option<String>,
    pub color: Option<String>,
    pub asset_tag: Option<String>,
    pub os: Option<String>,
    pub device_family: Option<String>,
    /// ASM's: `empty`, `assigned`, `pushed` or `removed`.
    pub profile_status: Option<String>,
    pub profile_uuid: Option<String>,
    pub profile_assign_time: Option<String>,
    pub profile_push_time: Option<String>,
    pub device_assigned_date: Option<String>,
    pub device_assigned_by: Option<String>,
    /// Set when ASM moves the device to Lanyard from another MDM server, with a deadline.
    pub mdm_migration_deadline: Option<String>,
    /// When ASM stopped listing it for this server (deleted, released, moved elsewhere).
    pub removed_at: Option<DateTime<Utc>>,
    /// The UDID of the enrolled device with this serial number, if any.
    pub enrolled_udid: Option<String>,
    /// True when ASM removed it but it is still enrolled: someone should look.
    pub removed_but_enrolled: bool,
    /// Moved to Lanyard from another MDM server (`mdm_migration_deadline`) and not enrolled in
    /// Lanyard yet: it re-enrols through ADE before the deadline, without an erase.
    pub migrating: bool,
    pub updated_at: DateTime<Utc>,
}

impl Ade {
    /// Lanyard's ADE key pair, made on first use (RSA 2048, the key sealed).
    pub async fn keypair(&self) -> Result<(X509, PKey<Private>)> {
        if self.store.ade_keypair().await?.is_none() {
            let org = self.config.organization.clone();
            let (cert, key) =
                tokio::task::spawn_blocking(move || make_keypair(&org)).await.map_err(Error::internal)?.map_err(Error::internal)?;
            let sealed = self.pki.sealer.seal(&key.private_key_to_pem_pkcs8().map_err(Error::internal)?).map_err(Error::internal)?;
            let pem = String::from_utf8_lossy(&cert.to_pem().map_err(Error::internal)?).into_owned();
            self.store.put_ade_keypair_if_absent(&pem, &sealed, self.clock.now()).await?;
        }
        let (pem, sealed) = self.store.ade_keypair().await?.ok_or_else(|| Error::internal(anyhow::anyhow!("ADE key pair vanished")))?;
        let key = PKey::private_key_from_pem(&self.pki.sealer.open(&sealed).map_err(Error::internal)?).map_err(Error::internal)?;
        Ok((X509::from_pem(pem.as_bytes()).map_err(Error::internal)?, key))
    }

    /// The certificate (PEM) the school uploads in ASM when adding Lanyard as an MDM server.
    pub async fn public_key(&self) -> Result<String> {
        let (cert, _) = self.keypair().await?;
        Ok(String::from_utf8_lossy(&cert.to_pem().map_err(Error::internal)?).into_owned())
    }

    pub(crate) fn client(&self, token: ServerToken) -> Result<AdeClient> {
        let extra_ca = match &self.config.ade_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| Error::internal(anyhow::anyhow!("ade_ca_file {}: {e}", path.display())))?),
            None => None,
        };
        AdeClient::new(&self.config.ade_url, token, extra_ca.as_deref(), self.client_config.clone())
            .map_err(|e| Error::internal(anyhow::anyhow!("{e}")))
    }

    pub(crate) fn secrets(&self, rec: &AdeTokenRecord) -> Result<ServerToken> {
        let plain = self.pki.sealer.open(&rec.secrets_sealed).map_err(Error::internal)?;
        serde_json::from_slice(&plain).map_err(Error::internal)
    }

    /// Upload a server token file: opened, checked with Apple, stored sealed. Nothing is stored
    /// when any step fails.
    pub async fn upload_token(&self, actor: &Actor, file: &[u8]) -> Result<AdeTokenInfo> {
        let (cert, key) = self.keypair().await?;
        let token = ServerToken::from_file(file, &cert, &key).map_err(|e| Error::unprocessable("token", e.to_string()))?;
        let now = self.clock.now();
        let expires_at = token.expires_at().ok_or_else(|| {
            Error::unprocessable("token", format!("the token's expiry ({:?}) is not a date Lanyard can read", token.access_token_expiry))
        })?;
        if expires_at <= now {
            return Err(Error::unprocessable(
                "token",
                format!(
                    "this server token expired on {}: download a new one in Apple School Manager and upload that",
                    expires_at.date_naive()
                ),
            ));
        }
        let account = self.client(token.clone())?.account().await.map_err(|e| match e {
            AdeError::Transport(_) | AdeError::Busy { .. } => {
                Error::Unavailable(format!("Apple's device service could not be reached to check the token, so nothing was stored: {e}"))
            }
            other => Error::unprocessable("token", format!("Apple refused this token, so nothing was stored: {other}")),
        })?;
        if account.server_uuid.trim().is_empty() {
            return Err(Error::unprocessable("token", "Apple's account details name no MDM server (server_uuid): nothing was stored"));
        }
        let secrets = serde_json::to_vec(&token).map_err(Error::internal)?;
        let rec = AdeTokenRecord {
            id: Uuid::new_v4(),
            server_uuid: account.server_uuid.clone(),
            server_name: account.server_name.clone(),
            org_name: account.org_name.clone(),
            org_email: account.org_email.clone(),
            admin_id: account.admin_id.clone(),
            secrets_sealed: self.pki.sealer.seal(&secrets).map_err(Error::internal)?,
            expires_at,
            created_at: now,
            created_by: actor.name.clone(),
            renewed_at: None,
            cursor: None,
            cursor_at: None,
            fetch_cursor: None,
            fetch_generation: 0,
            sync_state: "idle".into(),
            sync_started_at: None,
            sync_devices: 0,
            last_sync_at: None,
            last_error: None,
            last_error_at: None,
            assignment: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "ade.token.upload",
            None,
            json!({"server_name": rec.server_name, "server_uuid": rec.server_uuid, "org_name": rec.org_name, "expires_at": expires_at}),
        );
        let (id, _) = self.store.put_ade_token(&rec, audit).await?;
        self.token(id).await
    }

    /// Each token with its device counts. The tokens are read first: a sync shown as finished
    /// has its devices in the counts read after it.
    pub async fn tokens(&self) -> Result<Vec<AdeTokenInfo>> {
        let records = self.store.ade_tokens().await?;
        let counts = self.store.ade_token_counts().await?;
        let now = self.clock.now();
        Ok(records.iter().map(|r| AdeTokenInfo::from_record(r, counts.iter().find(|c| c.token_id == r.id), now)).collect())
    }

    pub async fn token(&self, id: Uuid) -> Result<AdeTokenInfo> {
        self.tokens().await?.into_iter().find(|t| t.id == id).ok_or_else(|| Error::not_found(format!("no Apple School Manager token {id}")))
    }

    /// Forget a token and the device list it brought (enrolled devices are not touched).
    pub async fn delete_token(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let t = self.token(id).await?;
        let audit = self.audit.audit_entry(
            actor,
            "ade.token.delete",
            Some(&id.to_string()),
            json!({"server_name": t.server_name, "devices": t.devices}),
        );
        if !self.store.delete_ade_token(id, audit).await? {
            return Err(Error::not_found(format!("no Apple School Manager token {id}")));
        }
        Ok(())
    }

    pub async fn devices(&self, filter: &AdeDeviceFilter) -> Result<Vec<AdeDeviceInfo>> {
        Ok(self
            .store
            .ade_devices(filter)
            .await?
            .into_iter()
            .map(|r| AdeDeviceInfo {
                removed_but_enrolled: r.removed_at.is_some() && r.enrolled_udid.is_some(),
                migrating: r.device.mdm_migration_deadline.is_some() && r.removed_at.is_none() && r.enrolled_udid.is_none(),
                serial_number: r.device.serial_number,
                token_id: r.token_id,
                model: r.device.model,
                description: r.device.description,
                color: r.device.color,
                asset_tag: r.device.asset_tag,
                os: r.device.os,
                device_family: r.device.device_family,
                profile_status: r.device.profile_status,
                profile_uuid: r.device.profile_uuid,
                profile_assign_time: r.device.profile_assign_time,
                profile_push_time: r.device.profile_push_time,
                device_assigned_date: r.device.device_assigned_date,
                device_assigned_by: r.device.device_assigned_by,
                mdm_migration_deadline: r.device.mdm_migration_deadline,
                removed_at: r.removed_at,
                enrolled_udid: r.enrolled_udid,
                updated_at: r.updated_at,
            })
            .collect())
    }

    /// Each token's expiry warning, once per threshold, in the audit log (the sweeper, hourly).
    pub async fn warn_token_expiry(&self) -> Result<()> {
        for t in self.tokens().await? {
            if let (Some(w), "expiring" | "expired") = (&t.warning, t.status.as_str()) {
                let key = format!("ade_token:{}:{}", t.id, t.expires_at.timestamp());
                self.audit.expiry_warning("ade.token.expiry_warning", &key, &t.id.to_string(), t.days_left, w).await?;
            }
        }
        Ok(())
    }
}

/// A self-signed certificate for the ADE key (ASM only reads its public key).
fn make_keypair(organization: &str) -> std::result::Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "Lanyard Apple School Manager key")?;
    if !organization.trim().is_empty() {
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, organization.trim())?;
    }
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*crate::pki::random_serial().map_err(|_| openssl::error::ErrorStack::get())?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(3650)?)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}
