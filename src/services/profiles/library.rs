//! The profile library: upload or build, every change a new version, old versions readable,
//! soft deletion, the baseline loaded at first start, and the signed form devices are sent.
//!
//! A change to a filtering profile does not happen here: it becomes a proposal
//! ([`super::changes`]) that a second person must approve.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::changes::{ChangeKind, FilteringChange, Proposal};
use super::{BASELINE, FilterPolicy, InspectedProfile, ProfileError, fill_escrow_certificate, from_json, inspect};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::profiles::Profiles;
use crate::services::supervision::{NeedsSupervision, stored_profile_needs};
use crate::store::{NewAuditEntry, ProfileRecord, ProfileVersionRecord};

/// Who made the baseline profiles at first start.
pub const BASELINE_CREATOR: &str = "system (baseline)";

/// What an upload or a build request holds.
#[derive(Debug, Clone)]
pub enum ProfileSource {
    /// A `.mobileconfig`: XML, binary plist, or CMS-signed.
    Bytes(Vec<u8>),
    /// A JSON specification for [`from_json`] (`{"display_name", "payloads": [...]}`).
    Spec(Value),
}

/// A profile as the API shows it (its current version).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub name: String,
    pub version: i64,
    pub identifier: String,
    pub display_name: Option<String>,
    pub payload_types: Vec<String>,
    /// The web-filtering policy, for a filtering profile (changes to it need approval).
    pub filtering: Option<FilterPolicy>,
    pub baseline: bool,
    pub sha256: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Things worth fixing in the uploaded file (only in the answer to an upload).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The settings it holds that a device applies only when supervised (from Apple's schema),
    /// by payload type and key, with the systems concerned: an unsupervised device ignores them.
    pub needs_supervision: Vec<NeedsSupervision>,
}

/// One version, without its XML (download it from `/mobileconfig?version=N`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    pub version: i64,
    pub identifier: String,
    pub payload_uuid: String,
    pub display_name: Option<String>,
    pub payload_types: Vec<String>,
    pub filtering: Option<FilterPolicy>,
    pub sha256: String,
    /// The filtering change that made it, if one did.
    pub change_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<&ProfileVersionRecord> for VersionSummary {
    fn from(v: &ProfileVersionRecord) -> Self {
        VersionSummary {
            version: v.version,
            identifier: v.identifier.clone(),
            payload_uuid: v.payload_uuid.clone(),
            display_name: v.display_name.clone(),
            payload_types: serde_json::from_str(&v.payload_types).unwrap_or_default(),
            filtering: v.filtering.as_deref().and_then(|f| serde_json::from_str(f).ok()),
            sha256: v.sha256.clone(),
            change_id: v.change_id,
            created_by: v.created_by.clone(),
            created_at: v.created_at,
        }
    }
}

/// A profile with its history and where it is used.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileDetail {
    #[serde(flatten)]
    pub profile: Profile,
    #[schema(inline)]
    pub versions: Vec<VersionSummary>,
    /// Groups it is assigned to.
    #[schema(inline)]
    pub groups: Vec<GroupRef>,
    /// Lesson-time schedules applying it.
    pub schedules: Vec<Uuid>,
    /// Filtering changes waiting for a second person.
    pub pending_changes: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupRef {
    pub id: Uuid,
    pub name: String,
}

/// The answer to a change: done at once, or proposed for approval (filtering profiles).
#[derive(Debug)]
pub enum ChangeOutcome<T> {
    Done(T),
    Proposed(Box<FilteringChange>),
}

/// Names are what scripts and the baseline use to find a profile: short and URL-safe.
pub fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(Error::unprocessable("name", "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"));
    }
    Ok(name.to_owned())
}

/// A profile problem as a 422 naming the field, or 413 when it is too large.
pub fn profile_error(field: &str, e: ProfileError) -> Error {
    match e {
        ProfileError::TooLarge { limit, .. } => Error::PayloadTooLarge { limit },
        ProfileError::Internal(_) | ProfileError::Openssl(_) => Error::internal(anyhow::anyhow!("{e}")),
        other => Error::unprocessable(field, other.to_string()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// Inspect what was uploaded or build it from its specification.
pub fn read_source(source: &ProfileSource) -> Result<InspectedProfile> {
    match source {
        ProfileSource::Bytes(bytes) => {
            if bytes.is_empty() {
                return Err(Error::unprocessable("mobileconfig", "the body is empty: send the .mobileconfig file"));
            }
            inspect(bytes).map_err(|e| profile_error("mobileconfig", e))
        }
        ProfileSource::Spec(spec) => {
            let xml = from_json(spec).map_err(|e| profile_error("payloads", e))?;
            inspect(&xml).map_err(|e| profile_error("payloads", e))
        }
    }
}

/// The version record for inspected content.
fn version_record(
    profile_id: Uuid,
    version: i64,
    p: &InspectedProfile,
    by: &str,
    at: DateTime<Utc>,
    change: Option<Uuid>,
) -> ProfileVersionRecord {
    ProfileVersionRecord {
        profile_id,
        version,
        sha256: sha256_hex(&p.xml),
        xml: p.xml.clone(),
        identifier: p.identifier.clone(),
        payload_uuid: p.uuid.clone(),
        display_name: p.display_name.clone(),
        payload_types: serde_json::to_string(&p.payload_types).unwrap_or_else(|_| "[]".into()),
        filtering: p.filtering.as_ref().and_then(|f| serde_json::to_string(f).ok()),
        change_id: change,
        created_by: by.to_owned(),
        created_at: at,
    }
}

/// A new profile's record and its first version.
fn new_profile_records(
    by: &str,
    name: &str,
    inspected: &InspectedProfile,
    baseline: bool,
    now: DateTime<Utc>,
) -> (ProfileRecord, ProfileVersionRecord) {
    let id = Uuid::new_v4();
    let p = ProfileRecord {
        id,
        name: name.to_owned(),
        identifier: inspected.identifier.clone(),
        version: 1,
        baseline,
        created_by: by.to_owned(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        deleted_by: None,
    };
    let v = version_record(id, 1, inspected, by, now, None);
    (p, v)
}

pub fn profile_view(p: &ProfileRecord, v: &ProfileVersionRecord) -> Profile {
    let s = VersionSummary::from(v);
    Profile {
        id: p.id,
        name: p.name.clone(),
        version: p.version,
        identifier: p.identifier.clone(),
        display_name: s.display_name,
        payload_types: s.payload_types,
        filtering: s.filtering,
        baseline: p.baseline,
        sha256: s.sha256,
        created_by: p.created_by.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        deleted_at: p.deleted_at,
        warnings: Vec::new(),
        needs_supervision: stored_profile_needs(&v.sha256, &v.xml).as_ref().clone(),
    }
}

impl Profiles {
    /// A live profile, or 404.
    pub async fn live_profile(&self, id: Uuid) -> Result<ProfileRecord> {
        self.store.profile(id).await?.filter(|p| p.deleted_at.is_none()).ok_or_else(|| Error::not_found(format!("no profile {id}")))
    }

    /// The current version of a profile.
    pub async fn current_version(&self, p: &ProfileRecord) -> Result<ProfileVersionRecord> {
        self.store
            .profile_version(p.id, p.version)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("profile {} has no version {}", p.id, p.version)))
    }

    pub async fn profile_view_of(&self, p: &ProfileRecord) -> Result<Profile> {
        let v = self.current_version(p).await?;
        Ok(profile_view(p, &v))
    }

    /// Refuse an identifier another live profile uses: a device would let one replace the other.
    async fn ensure_identifier_free(&self, identifier: &str, except: Option<Uuid>) -> Result<()> {
        if let Some(other) = self.store.profile_by_identifier(identifier).await?.filter(|o| Some(o.id) != except) {
            let mut e = Error::conflict(
                "identifier_taken",
                format!(
                    "PayloadIdentifier {identifier:?} is already used by profile {:?}: a device would let one replace the other",
                    other.name
                ),
            );
            if let Error::Conflict { extra, .. } = &mut e {
                extra.insert("profile_id".into(), json!(other.id));
            }
            return Err(e);
        }
        Ok(())
    }

    /// Store a new profile (version 1). Not assigned to any group, so it reaches no device yet.
    pub async fn create_profile(&self, actor: &Actor, name: &str, source: ProfileSource) -> Result<Profile> {
        let name = check_name(name)?;
        if self.store.profile_by_name(&name).await?.is_some() {
            return Err(Error::conflict(
                "profile_name_taken",
                format!("a profile named {name:?} exists: PUT /api/v1/profiles/{{id}} makes a new version"),
            ));
        }
        let inspected = read_source(&source)?;
        self.ensure_identifier_free(&inspected.identifier, None).await?;
        let now = self.clock.now();
        let (p, v) = new_profile_records(&actor.name, &name, &inspected, false, now);
        let audit = self.audit.audit_entry(
            actor,
            "profile.create",
            Some(&p.id.to_string()),
            json!({"name": p.name, "version": 1, "identifier": p.identifier, "payload_types": inspected.payload_types,
                   "filtering": inspected.filtering.is_some(), "sha256": v.sha256, "was_signed": inspected.was_signed}),
        );
        self.insert_profile(&p, &v, Some(audit)).await?;
        let mut view = profile_view(&p, &v);
        view.warnings = inspected.warnings;
        Ok(view)
    }

    /// Store a new profile and its first version, with the operator's audit entry (None: the
    /// baseline).
    async fn insert_profile(&self, p: &ProfileRecord, v: &ProfileVersionRecord, audit: Option<NewAuditEntry>) -> Result<()> {
        self.store.create_profile(p, v, audit).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => Error::conflict("profile_name_taken", format!("a profile named {:?} exists", p.name)),
            other => other.into(),
        })
    }

    /// Load the baseline (`profiles/*.mobileconfig`, embedded) on a fresh installation: only
    /// when no profile was ever stored, so edits and deletions are never undone. Returns how
    /// many were loaded. Not audited: nobody did it; the profiles' creator says where they
    /// came from.
    pub async fn load_baseline_profiles(&self) -> Result<usize> {
        if self.store.count_profiles().await? > 0 {
            return Ok(0);
        }
        let now = self.clock.now();
        for (stem, xml) in BASELINE {
            let inspected = inspect(xml.as_bytes()).map_err(|e| Error::internal(anyhow::anyhow!("baseline {stem}: {e}")))?;
            let (p, v) = new_profile_records(BASELINE_CREATOR, stem, &inspected, true, now);
            match self.insert_profile(&p, &v, None).await {
                Ok(_) => {}
                // Another instance starting at the same moment is loading it.
                Err(Error::Conflict { .. }) => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        tracing::info!(profiles = BASELINE.len(), "loaded the baseline profiles (not assigned to any group yet)");
        Ok(BASELINE.len())
    }

    /// A new version of a profile. A filtering profile (before or after) becomes a proposal
    /// that needs `reason`, `risk_assessment_ref` and a second person's approval.
    pub async fn update_profile(
        &self,
        actor: &Actor,
        id: Uuid,
        source: ProfileSource,
        reason: Option<String>,
        risk_assessment_ref: Option<String>,
    ) -> Result<ChangeOutcome<Profile>> {
        let p = self.live_profile(id).await?;
        let current = self.current_version(&p).await?;
        let inspected = read_source(&source)?;
        if sha256_hex(&inspected.xml) == current.sha256 {
            return Err(Error::conflict("no_change", format!("this is the same profile as version {}: nothing to change", p.version)));
        }
        self.ensure_identifier_free(&inspected.identifier, Some(p.id)).await?;
        let before: Option<FilterPolicy> = current.filtering.as_deref().and_then(|f| serde_json::from_str(f).ok());
        if before.is_some() || inspected.filtering.is_some() {
            let (reason, risk) = super::changes::require_change_fields(reason, risk_assessment_ref)?;
            let proposal = Proposal {
                kind: ChangeKind::Update,
                group: None,
                proposed_xml: Some(inspected.xml.clone()),
                after: inspected.filtering.clone(),
                reason,
                risk_assessment_ref: risk,
            };
            let change = self.propose_filtering_change(actor, &p, proposal).await?;
            return Ok(ChangeOutcome::Proposed(Box::new(change)));
        }
        let now = self.clock.now();
        let v = version_record(p.id, p.version + 1, &inspected, &actor.name, now, None);
        let audit = self.audit.audit_entry(
            actor,
            "profile.update",
            Some(&p.id.to_string()),
            json!({"name": p.name, "version": v.version, "identifier": v.identifier, "sha256": v.sha256, "reason": reason}),
        );
        self.store.add_profile_version(&v, now, audit).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => {
                Error::conflict("profile_changed", "the profile changed while this request ran: try again")
            }
            other => other.into(),
        })?;
        self.reconcile_profile(p.id).await?;
        let p = self.live_profile(id).await?;
        let mut view = profile_view(&p, &v);
        view.warnings = inspected.warnings;
        Ok(ChangeOutcome::Done(view))
    }

    /// Delete a profile: it leaves every group and schedule, and reconcile removes it from the
    /// devices Lanyard installed it on. Its versions stay readable. A filtering profile's
    /// deletion is a filtering change, proposed for approval.
    pub async fn delete_profile(
        &self,
        actor: &Actor,
        id: Uuid,
        reason: Option<String>,
        risk_assessment_ref: Option<String>,
    ) -> Result<ChangeOutcome<()>> {
        let p = self.live_profile(id).await?;
        let current = self.current_version(&p).await?;
        if current.filtering.is_some() {
            let (reason, risk) = super::changes::require_change_fields(reason, risk_assessment_ref)?;
            let proposal =
                Proposal { kind: ChangeKind::Delete, group: None, proposed_xml: None, after: None, reason, risk_assessment_ref: risk };
            let change = self.propose_filtering_change(actor, &p, proposal).await?;
            return Ok(ChangeOutcome::Proposed(Box::new(change)));
        }
        // The devices to take it off, worked out before it leaves its groups and schedules.
        let affected = self.devices_concerned_by(p.id).await?;
        let audit = self.audit.audit_entry(
            actor,
            "profile.delete",
            Some(&p.id.to_string()),
            json!({"name": p.name, "version": p.version, "reason": reason}),
        );
        if !self.store.delete_profile(p.id, &actor.name, self.clock.now(), audit).await? {
            // Deleted by another request meanwhile (which recorded it).
            return Err(Error::not_found(format!("no profile {id}")));
        }
        self.reconcile_and_wake(&affected).await?;
        Ok(ChangeOutcome::Done(()))
    }

    /// Devices that have or should have a profile: members of the groups it is assigned to or
    /// scheduled for, and devices Lanyard installed it on.
    pub async fn devices_concerned_by(&self, profile_id: Uuid) -> Result<Vec<String>> {
        let mut udids = Vec::new();
        for g in self.store.profile_group_ids(profile_id).await? {
            udids.extend(self.store.group_members(g).await?);
        }
        for s in self.store.list_schedules().await?.into_iter().filter(|s| s.profile_id == profile_id) {
            udids.extend(self.store.group_members(s.group_id).await?);
        }
        udids.extend(self.store.profile_device_rows(profile_id).await?.into_iter().map(|r| r.udid));
        udids.sort();
        udids.dedup();
        Ok(udids)
    }

    /// Reconcile every device a profile concerns (after a new version or an assignment change).
    pub async fn reconcile_profile(&self, profile_id: Uuid) -> Result<()> {
        let udids = self.devices_concerned_by(profile_id).await?;
        self.reconcile_and_wake(&udids).await
    }

    pub async fn list_profile_views(&self, name: Option<&str>) -> Result<Vec<Profile>> {
        let profiles = match name {
            Some(n) => self.store.profile_by_name(n.trim()).await?.into_iter().collect(),
            None => self.store.list_profiles().await?,
        };
        let mut out = Vec::with_capacity(profiles.len());
        for p in &profiles {
            out.push(self.profile_view_of(p).await?);
        }
        Ok(out)
    }

    pub async fn profile_detail(&self, id: Uuid) -> Result<ProfileDetail> {
        let p = self.store.profile(id).await?.ok_or_else(|| Error::not_found(format!("no profile {id}")))?;
        let versions = self.store.profile_versions(id).await?;
        let current =
            versions.iter().find(|v| v.version == p.version).ok_or_else(|| Error::internal(anyhow::anyhow!("no current version")))?;
        let mut groups = Vec::new();
        for g in self.store.profile_group_ids(id).await? {
            if let Some(g) = self.store.group(g).await? {
                groups.push(GroupRef { id: g.id, name: g.name });
            }
        }
        let schedules = self.store.list_schedules().await?.into_iter().filter(|s| s.profile_id == id).map(|s| s.id).collect();
        let pending_changes =
            self.store.list_filtering_changes(Some("proposed"), Some(id), None, 1000).await?.into_iter().map(|c| c.id).collect();
        Ok(ProfileDetail {
            profile: profile_view(&p, current),
            versions: versions.iter().map(VersionSummary::from).collect(),
            groups,
            schedules,
            pending_changes,
        })
    }

    /// A version's XML as stored (the current one unless `version` is given).
    pub async fn profile_xml(&self, id: Uuid, version: Option<i64>) -> Result<(ProfileRecord, ProfileVersionRecord)> {
        let p = self.store.profile(id).await?.ok_or_else(|| Error::not_found(format!("no profile {id}")))?;
        let version = version.unwrap_or(p.version);
        let v =
            self.store.profile_version(id, version).await?.ok_or_else(|| {
                Error::not_found(format!("profile {:?} has no version {version} (it is at version {})", p.name, p.version))
            })?;
        Ok((p, v))
    }

    /// The library's Wi-Fi profiles (id, name), for choosing the network of Return to Service.
    pub async fn wifi_profiles(&self) -> Result<Vec<(Uuid, String)>> {
        let mut out = Vec::new();
        for p in self.store.list_profiles().await?.into_iter().filter(|p| p.deleted_at.is_none()) {
            if let Some(v) = self.store.profile_version(p.id, p.version).await?
                && v.payload_types.contains("\"com.apple.wifi.managed\"")
            {
                out.push((p.id, p.name));
            }
        }
        Ok(out)
    }

    /// A Wi-Fi profile of the library as devices receive it, for Return to Service (the network
    /// an erased iPad joins to come back): 422 `wifi_profile_id` when it is not one.
    pub async fn signed_wifi_profile(&self, id: Uuid) -> Result<(String, Vec<u8>)> {
        let p = self.store.profile(id).await?.filter(|p| p.deleted_at.is_none());
        let Some(p) = p else { return Err(Error::unprocessable("wifi_profile_id", format!("no profile {id}"))) };
        let v = self.store.profile_version(id, p.version).await?.ok_or_else(|| Error::not_found(format!("profile {id} has no version")))?;
        if !v.payload_types.contains("\"com.apple.wifi.managed\"") {
            return Err(Error::unprocessable(
                "wifi_profile_id",
                format!(
                    "profile {:?} has no Wi-Fi payload (com.apple.wifi.managed): name the profile that joins the school's network",
                    p.name
                ),
            ));
        }
        Ok((p.name, self.signed_for_devices(&v.xml)?))
    }

    /// The profile as devices receive it: Lanyard's escrow certificate filled in, then signed
    /// (CMS, DER) with the profile-signing identity and the CA in the chain.
    pub fn signed_for_devices(&self, xml: &[u8]) -> Result<Vec<u8>> {
        let escrow = self.pki.escrow_cert.to_der().map_err(Error::internal)?;
        let filled = fill_escrow_certificate(xml, &escrow).map_err(|e| Error::internal(anyhow::anyhow!("{e}")))?;
        crate::protocol::cms::sign_profile(&filled, &self.pki.signing_cert, &self.pki.signing_key, std::slice::from_ref(&self.pki.ca_cert))
            .map_err(Error::internal)
    }
}
