//! Filtering change control (policy 7.3.1: "all changes to the filtering policy are logged and
//! recorded", risk-assessed, "with consent from the leadership team").
//!
//! A change to a profile holding a web-content-filter, proxy or DNS-filter payload — a new
//! version, deletion, or assigning it to or taking it off a group — is proposed with a `reason`
//! and a `risk_assessment_ref`, and takes effect only when a second operator with the role
//! `dsl`, `headteacher` or `admin` (not the proposer) approves it. The record keeps the filter
//! before and after, so the log reads "added denylist: example.com". States: `proposed`, then
//! `approved` and at once `deployed`, or `rejected`. Every step is in the audit log, in the
//! same transaction as the step itself: a proposal with `filtering.propose`, a decision with
//! `filtering.approve` or `filtering.reject`, and a deployment (the new version, deletion or
//! assignment change, and the state `deployed`) with `filtering.deploy`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{FilterPolicy, diff};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::profiles::Profiles;
use crate::store::{FilteringChangeRecord, FilteringDeploy, GroupRecord, NewAuditEntry, ProfileRecord, ProfileVersionRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new version of the profile.
    Update,
    /// Deleting the profile (it comes off every device).
    Delete,
    /// Assigning it to a group.
    Assign,
    /// Taking it off a group.
    Unassign,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::Assign => "assign",
            ChangeKind::Unassign => "unassign",
        }
    }
}

/// What is proposed.
pub struct Proposal {
    pub kind: ChangeKind,
    pub group: Option<GroupRecord>,
    /// The new profile (an update).
    pub proposed_xml: Option<Vec<u8>>,
    /// The new filter (an update).
    pub after: Option<FilterPolicy>,
    pub reason: String,
    pub risk_assessment_ref: String,
}

/// A filtering change as the API, the CSV and the approver see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FilteringChange {
    pub id: Uuid,
    /// The same as `id` (what a proposal's 202 answer names).
    pub change_id: Uuid,
    #[schema(schema_with = crate::schema::enums::filtering_state)]
    pub state: String,
    #[schema(schema_with = crate::schema::enums::filtering_kind)]
    pub kind: String,
    pub profile_id: Uuid,
    pub profile_name: String,
    pub group_id: Option<Uuid>,
    pub group_name: Option<String>,
    /// The profile version the proposal was made against.
    pub base_version: i64,
    /// What changes, one plain line each: "added denylist: example.com".
    pub diff: Vec<String>,
    pub before: Option<FilterPolicy>,
    pub after: Option<FilterPolicy>,
    pub reason: String,
    pub risk_assessment_ref: String,
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The approver's (or rejecter's) written justification.
    pub justification: Option<String>,
    pub deployed_version: Option<i64>,
    pub deployed_at: Option<DateTime<Utc>>,
}

impl From<FilteringChangeRecord> for FilteringChange {
    fn from(r: FilteringChangeRecord) -> Self {
        let policy = |p: &Option<String>| p.as_deref().and_then(|p| serde_json::from_str(p).ok());
        FilteringChange {
            id: r.id,
            change_id: r.id,
            before: policy(&r.before_policy),
            after: policy(&r.after_policy),
            diff: serde_json::from_str(&r.diff).unwrap_or_default(),
            state: r.state,
            kind: r.kind,
            profile_id: r.profile_id,
            profile_name: r.profile_name,
            group_id: r.group_id,
            group_name: r.group_name,
            base_version: r.base_version,
            reason: r.reason,
            risk_assessment_ref: r.risk_assessment_ref,
            proposed_by: r.proposed_by,
            proposed_at: r.proposed_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            justification: r.decision_justification,
            deployed_version: r.deployed_version,
            deployed_at: r.deployed_at,
        }
    }
}

/// The CSV columns of `GET /api/v1/filtering/changes?format=csv`.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "proposed_at",
    "profile",
    "kind",
    "group",
    "state",
    "proposed_by",
    "reason",
    "risk_assessment_ref",
    "decided_by",
    "decided_at",
    "justification",
    "deployed_at",
    "deployed_version",
    "diff",
];

impl FilteringChange {
    pub fn csv_row(&self) -> String {
        use crate::services::csv::csv_cell;
        let t = |v: Option<DateTime<Utc>>| v.map(|x| x.to_rfc3339()).unwrap_or_default();
        let cells = [
            self.id.to_string(),
            self.proposed_at.to_rfc3339(),
            self.profile_name.clone(),
            self.kind.clone(),
            self.group_name.clone().unwrap_or_default(),
            self.state.clone(),
            self.proposed_by.clone(),
            self.reason.clone(),
            self.risk_assessment_ref.clone(),
            self.decided_by.clone().unwrap_or_default(),
            t(self.decided_at),
            self.justification.clone().unwrap_or_default(),
            t(self.deployed_at),
            self.deployed_version.map(|v| v.to_string()).unwrap_or_default(),
            self.diff.join("; "),
        ];
        cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",")
    }
}

/// Longest reason, reference or justification accepted.
const MAX_TEXT: usize = 4000;

fn required_text(field: &str, value: Option<String>) -> Result<String> {
    let text = value.map(|v| v.trim().to_owned()).unwrap_or_default();
    if text.is_empty() {
        return Err(Error::unprocessable(field, format!("{field} is required for a filtering change")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(Error::unprocessable(field, format!("at most {MAX_TEXT} characters")));
    }
    Ok(text)
}

/// `reason` and `risk_assessment_ref`, both required for a filtering change (422 naming the
/// missing one).
pub fn require_change_fields(reason: Option<String>, risk_assessment_ref: Option<String>) -> Result<(String, String)> {
    Ok((required_text("reason", reason)?, required_text("risk_assessment_ref", risk_assessment_ref)?))
}

fn policy_of(v: &ProfileVersionRecord) -> Option<FilterPolicy> {
    v.filtering.as_deref().and_then(|f| serde_json::from_str(f).ok())
}

/// The lines a governor reads for a change.
fn diff_lines(
    kind: ChangeKind,
    profile: &str,
    group: Option<&str>,
    before: Option<&FilterPolicy>,
    after: Option<&FilterPolicy>,
) -> Vec<String> {
    let mut lines = match (kind, group) {
        (ChangeKind::Assign, Some(g)) => vec![format!("assign {profile} to group {g}")],
        (ChangeKind::Unassign, Some(g)) => vec![format!("take {profile} off group {g}")],
        (ChangeKind::Delete, _) => vec![format!("delete profile {profile}")],
        _ => Vec::new(),
    };
    let changes = diff(before, after).lines();
    if changes.is_empty() && kind == ChangeKind::Update {
        lines.push("no change to the filter mode or its sites (other settings of the profile changed)".to_owned());
    }
    lines.extend(changes);
    lines
}

/// Whether an assignment change of this profile is a filtering change.
pub fn is_filtering(v: &ProfileVersionRecord) -> bool {
    v.filtering.is_some()
}

impl Profiles {
    /// Record a proposal (state `proposed`) and audit it. Nothing changes on devices yet.
    pub async fn propose_filtering_change(&self, actor: &Actor, p: &ProfileRecord, proposal: Proposal) -> Result<FilteringChange> {
        let current = self.current_version(p).await?;
        let current_policy = policy_of(&current);
        let (before, after) = match proposal.kind {
            ChangeKind::Update => (current_policy, proposal.after),
            ChangeKind::Delete | ChangeKind::Unassign => (current_policy, None),
            ChangeKind::Assign => (None, current_policy),
        };
        let group_name = proposal.group.as_ref().map(|g| g.name.clone());
        let lines = diff_lines(proposal.kind, &p.name, group_name.as_deref(), before.as_ref(), after.as_ref());
        let now = self.clock.now();
        let rec = FilteringChangeRecord {
            id: Uuid::new_v4(),
            profile_id: p.id,
            profile_name: p.name.clone(),
            kind: proposal.kind.as_str().to_owned(),
            group_id: proposal.group.as_ref().map(|g| g.id),
            group_name,
            base_version: p.version,
            proposed_xml: proposal.proposed_xml,
            before_policy: before.as_ref().and_then(|b| serde_json::to_string(b).ok()),
            after_policy: after.as_ref().and_then(|a| serde_json::to_string(a).ok()),
            diff: serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into()),
            reason: proposal.reason,
            risk_assessment_ref: proposal.risk_assessment_ref,
            state: "proposed".into(),
            proposed_by: actor.name.clone(),
            proposed_at: now,
            decided_by: None,
            decided_at: None,
            decision_justification: None,
            deployed_version: None,
            deployed_at: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "filtering.propose",
            Some(&rec.id.to_string()),
            json!({"profile_id": p.id, "profile": p.name, "kind": rec.kind, "group": rec.group_name, "base_version": p.version,
                   "diff": lines, "reason": rec.reason, "risk_assessment_ref": rec.risk_assessment_ref}),
        );
        self.store.create_filtering_change(&rec, audit).await?;
        tracing::info!(change_id = %rec.id, profile = p.name, kind = rec.kind, "filtering change proposed; waiting for a second person");
        Ok(rec.into())
    }

    pub async fn filtering_change_view(&self, id: Uuid) -> Result<FilteringChange> {
        Ok(self.store.filtering_change(id).await?.ok_or_else(|| Error::not_found(format!("no filtering change {id}")))?.into())
    }

    /// The second person's checks, shared by approve and reject.
    async fn decidable_change(&self, actor: &Actor, id: Uuid, justification: Option<String>) -> Result<(FilteringChangeRecord, String)> {
        let justification = justification.map(|j| j.trim().to_owned()).unwrap_or_default();
        if justification.is_empty() {
            return Err(Error::unprocessable("justification", "a written justification is required"));
        }
        if justification.chars().count() > MAX_TEXT {
            return Err(Error::unprocessable("justification", format!("at most {MAX_TEXT} characters")));
        }
        let change = self.store.filtering_change(id).await?.ok_or_else(|| Error::not_found(format!("no filtering change {id}")))?;
        if change.state != "proposed" {
            return Err(Error::conflict("not_proposed", format!("this change is already {}", change.state)));
        }
        if change.proposed_by == actor.name {
            let mut e = Error::conflict(
                "second_person_required",
                format!("{} proposed this change: a second person (dsl, headteacher or admin) must decide it", change.proposed_by),
            );
            if let Error::Conflict { extra, .. } = &mut e {
                extra.insert("proposed_by".into(), json!(change.proposed_by));
            }
            return Err(e);
        }
        Ok((change, justification))
    }

    /// Approve a proposal and deploy it at once. Refused for the proposer (409
    /// `second_person_required`), without a justification (422), or when the profile changed
    /// since it was proposed (409 `stale_change`: propose again against the current version).
    pub async fn approve_filtering_change(&self, actor: &Actor, id: Uuid, justification: Option<String>) -> Result<FilteringChange> {
        let (change, justification) = self.decidable_change(actor, id, justification).await?;
        let profile = self.store.profile(change.profile_id).await?;
        let live = profile.as_ref().filter(|p| p.deleted_at.is_none());
        let Some(p) = live.filter(|p| p.version == change.base_version) else {
            return Err(Error::conflict(
                "stale_change",
                "the profile changed (or was deleted) after this change was proposed: reject it and propose again",
            ));
        };
        let group = match change.group_id {
            Some(g) => Some(
                self.store
                    .group(g)
                    .await?
                    .filter(|g| g.deleted_at.is_none())
                    .ok_or_else(|| Error::conflict("stale_change", "the group was deleted after this change was proposed"))?,
            ),
            None => None,
        };
        if change.kind == "update" {
            let xml = change.proposed_xml.as_deref().unwrap_or_default();
            let inspected = super::inspect(xml).map_err(|e| Error::internal(anyhow::anyhow!("stored proposal: {e}")))?;
            if let Some(other) = self.store.profile_by_identifier(&inspected.identifier).await?.filter(|o| o.id != p.id) {
                return Err(Error::conflict(
                    "identifier_taken",
                    format!("PayloadIdentifier {:?} is now used by profile {:?}", inspected.identifier, other.name),
                ));
            }
        }
        let now = self.clock.now();
        let audit = self.audit.audit_entry(
            actor,
            "filtering.approve",
            Some(&id.to_string()),
            json!({"profile_id": p.id, "profile": p.name, "kind": change.kind, "proposed_by": change.proposed_by,
                   "justification": justification, "diff": serde_json::from_str::<serde_json::Value>(&change.diff).unwrap_or_default()}),
        );
        if !self.store.decide_filtering_change(id, "approved", &actor.name, &justification, now, audit).await? {
            return Err(Error::conflict("not_proposed", "this change was decided by someone else meanwhile"));
        }
        self.deploy_filtering_change(actor, &change, p, group.as_ref()).await?;
        self.filtering_change_view(id).await
    }

    /// Make an approved change real (its write, the state `deployed` and `filtering.deploy`
    /// in one transaction), and reconcile the devices it concerns.
    async fn deploy_filtering_change(
        &self,
        actor: &Actor,
        change: &FilteringChangeRecord,
        p: &ProfileRecord,
        group: Option<&GroupRecord>,
    ) -> Result<()> {
        let deploy_entry = |version: Option<i64>| -> NewAuditEntry {
            self.audit.audit_entry(
                actor,
                "filtering.deploy",
                Some(&change.id.to_string()),
                json!({"profile_id": p.id, "profile": p.name, "kind": change.kind, "version": version, "group": change.group_name}),
            )
        };
        let now = self.clock.now();
        let by = actor.name.as_str();
        let group_of = |kind: &str| group.ok_or_else(|| Error::internal(anyhow::anyhow!("{kind} without a group")));
        let deployed = match change.kind.as_str() {
            "update" => {
                let xml = change.proposed_xml.as_deref().unwrap_or_default();
                let inspected = super::inspect(xml).map_err(|e| Error::internal(anyhow::anyhow!("stored proposal: {e}")))?;
                let version = p.version + 1;
                let v = ProfileVersionRecord {
                    profile_id: p.id,
                    version,
                    xml: inspected.xml.clone(),
                    sha256: hex::encode(openssl::sha::sha256(&inspected.xml)),
                    identifier: inspected.identifier.clone(),
                    payload_uuid: inspected.uuid.clone(),
                    display_name: inspected.display_name.clone(),
                    payload_types: serde_json::to_string(&inspected.payload_types).unwrap_or_else(|_| "[]".into()),
                    filtering: inspected.filtering.as_ref().and_then(|f| serde_json::to_string(f).ok()),
                    change_id: Some(change.id),
                    created_by: change.proposed_by.clone(),
                    created_at: now,
                };
                let write = FilteringDeploy::NewVersion(&v);
                let deployed =
                    self.store.deploy_filtering_change(change.id, write, Some(version), now, deploy_entry(Some(version))).await?;
                if deployed {
                    self.reconcile_profile(p.id).await?;
                }
                deployed
            }
            "delete" => {
                // The devices to take it off, worked out before it leaves its groups and schedules.
                let affected = self.devices_concerned_by(p.id).await?;
                let write = FilteringDeploy::Delete { profile_id: p.id, by };
                let deployed = self.store.deploy_filtering_change(change.id, write, None, now, deploy_entry(None)).await?;
                if deployed {
                    self.reconcile_and_wake(&affected).await?;
                }
                deployed
            }
            "assign" | "unassign" => {
                let g = group_of(&change.kind)?;
                let (write, version) = if change.kind == "assign" {
                    (FilteringDeploy::Assign { group_id: g.id, profile_id: p.id, by }, Some(p.version))
                } else {
                    (FilteringDeploy::Unassign { group_id: g.id, profile_id: p.id }, None)
                };
                let deployed = self.store.deploy_filtering_change(change.id, write, version, now, deploy_entry(version)).await?;
                if deployed {
                    let members = self.store.group_members(g.id).await?;
                    self.reconcile_and_wake(&members).await?;
                }
                deployed
            }
            other => return Err(Error::internal(anyhow::anyhow!("unknown filtering change kind {other}"))),
        };
        if !deployed {
            return Err(Error::conflict("not_approved", "this change was deployed by another request meanwhile"));
        }
        Ok(())
    }

    /// Reject a proposal: nothing changes. The proposer cannot reject their own either (they
    /// are not the second person); a justification is required.
    pub async fn reject_filtering_change(&self, actor: &Actor, id: Uuid, justification: Option<String>) -> Result<FilteringChange> {
        let (change, justification) = self.decidable_change(actor, id, justification).await?;
        let audit = self.audit.audit_entry(
            actor,
            "filtering.reject",
            Some(&id.to_string()),
            json!({"profile_id": change.profile_id, "profile": change.profile_name, "kind": change.kind,
                   "proposed_by": change.proposed_by, "justification": justification}),
        );
        if !self.store.decide_filtering_change(id, "rejected", &actor.name, &justification, self.clock.now(), audit).await? {
            return Err(Error::conflict("not_proposed", "this change was decided by someone else meanwhile"));
        }
        self.filtering_change_view(id).await
    }

    pub async fn list_filtering_changes(
        &self,
        state: Option<&str>,
        profile_id: Option<Uuid>,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<FilteringChange>> {
        if let Some(s) = state
            && !["proposed", "approved", "rejected", "deployed"].contains(&s)
        {
            return Err(Error::unprocessable("state", "expected proposed, approved, rejected or deployed"));
        }
        Ok(self.store.list_filtering_changes(state, profile_id, before, limit).await?.into_iter().map(FilteringChange::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn policy(mode: &str, allowed: &[&str], denied: &[&str]) -> FilterPolicy {
        FilterPolicy {
            mode: mode.into(),
            allowed: allowed.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            denied: denied.iter().map(|s| s.to_string()).collect(),
            plugin: None,
            proxy: None,
            dns: None,
        }
    }

    #[test]
    fn lines_say_what_changes() {
        let before = policy("auto_filter", &[], &["tiktok.com"]);
        let after = policy("auto_filter", &[], &["tiktok.com", "example.com"]);
        assert_eq!(diff_lines(ChangeKind::Update, "ks2", None, Some(&before), Some(&after)), ["added denylist: example.com"]);
        let same = diff_lines(ChangeKind::Update, "ks2", None, Some(&before), Some(&before));
        assert!(same[0].starts_with("no change to the filter"), "{same:?}");
        let assign = diff_lines(ChangeKind::Assign, "ks2", Some("Year 3"), None, Some(&before));
        assert_eq!(assign, ["assign ks2 to group Year 3", "filter mode: none -> auto_filter", "added denylist: tiktok.com"]);
        let delete = diff_lines(ChangeKind::Delete, "ks2", None, Some(&before), None);
        assert_eq!(delete[0], "delete profile ks2");
        assert!(delete.contains(&"removed denylist: tiktok.com".to_owned()));
    }

    #[test]
    fn reason_and_risk_reference_are_required() {
        let e = require_change_fields(None, Some("RA-1".into())).unwrap_err();
        assert!(matches!(&e, Error::Unprocessable { field, .. } if field == "reason"), "{e}");
        let e = require_change_fields(Some("why".into()), Some("  ".into())).unwrap_err();
        assert!(matches!(&e, Error::Unprocessable { field, .. } if field == "risk_assessment_ref"), "{e}");
        assert_eq!(require_change_fields(Some(" why ".into()), Some("RA-1".into())).unwrap(), ("why".into(), "RA-1".into()));
    }
}
