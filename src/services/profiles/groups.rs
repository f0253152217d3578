//! Device groups: static (members added and removed by hand) and smart (members follow rules on
//! the device and on the register's current holder). Profiles are assigned to groups; a
//! device's intended profiles are the union over its groups.
//!
//! Membership is written to the register's `group_memberships` history (smart groups through
//! `record_group_membership` / `end_group_membership`, an operator's change to a static group
//! through `add_group_members` / `remove_group_member`, with its audit entry), so the register
//! can answer "who could use this device through a group grant at time T" for both kinds.
//!
//! Every operator change commits with its audit entry in one transaction; the reconcile that
//! follows (profile commands for the devices concerned) is the system's, as always.
//!
//! Smart rules (all given ones must hold):
//! `{"platform": "iPadOS" | [...], "model": "iPad13,*" | [...], "supervised": true,
//!   "ownership": "pupil" | "staff" | "shared" | [...], "year_group": "Y3" | [...],
//!   "key_stage": "KS2" | [...]}`.
//! Ownership comes from the register: a device held by a pupil is `pupil`, by anyone else
//! (staff, volunteers, governors, contractors, visitors — adults) `staff`, and a device nobody
//! holds is `shared`. `year_group` and `key_stage` are the pupil holder's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::changes::{ChangeKind, Proposal, require_change_fields};
use super::library::{ChangeOutcome, GroupRef};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::profiles::Profiles;
use crate::services::register::{KeyStage, parse_year_group};
use crate::services::supervision::SupervisionWarning;
use crate::store::{DeviceFilter, DeviceRecord, GroupRecord, HolderRow};

/// Who a device belongs to, for smart groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Pupil,
    Staff,
    Shared,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A smart group's rules as given: all given rules must hold. Each may be one value or a list.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SmartRulesInput)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesInput {
    /// iOS, iPadOS, macOS
    #[schema(schema_with = crate::schema::enums::one_or_many_strings)]
    platform: Option<OneOrMany<String>>,
    /// model number, model name or product name; trailing * is a prefix
    #[schema(schema_with = crate::schema::enums::one_or_many_strings)]
    model: Option<OneOrMany<String>>,
    supervised: Option<bool>,
    /// pupil, staff or shared (from the register's current holder)
    #[schema(schema_with = crate::schema::enums::one_or_many_ownership)]
    ownership: Option<OneOrMany<Ownership>>,
    /// N, R, Y1..Y13 of the pupil holder
    #[schema(schema_with = crate::schema::enums::one_or_many_strings)]
    year_group: Option<OneOrMany<String>>,
    /// EYFS, KS1..KS5 of the pupil holder
    #[schema(schema_with = crate::schema::enums::one_or_many_strings)]
    key_stage: Option<OneOrMany<String>>,
}

/// A smart group's rules, normalised (canonical platform names, year groups and key stages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SmartRules {
    /// iOS, iPadOS, macOS
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platform: Vec<String>,
    /// Matched against the model number, model name and product name, ignoring case; a
    /// trailing `*` matches a prefix (`iPad13,*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervised: Option<bool>,
    /// From the register's current holder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ownership: Vec<Ownership>,
    /// N, R, Y1..Y13 of the pupil holder
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub year_group: Vec<String>,
    /// EYFS, KS1..KS5 of the pupil holder
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_stage: Vec<String>,
}

/// What a smart group's rules look at.
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    pub platform: String,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub supervised: Option<bool>,
    pub holder: Option<HolderRow>,
}

impl DeviceFacts {
    pub fn of(d: &DeviceRecord, holder: Option<HolderRow>) -> DeviceFacts {
        DeviceFacts {
            platform: d.platform.clone(),
            model: d.model.clone(),
            model_name: d.model_name.clone(),
            product_name: d.product_name.clone(),
            supervised: d.supervised,
            holder,
        }
    }

    pub fn ownership(&self) -> Ownership {
        match self.holder.as_ref().map(|h| h.kind.as_str()) {
            None => Ownership::Shared,
            Some("pupil") => Ownership::Pupil,
            Some(_) => Ownership::Staff,
        }
    }
}

impl SmartRules {
    /// Parse and normalise rules from JSON; errors name the rule (`rules.platform`).
    pub fn parse(value: &Value) -> Result<SmartRules> {
        let input: RulesInput = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = if path == "." { "rules".to_owned() } else { format!("rules.{path}") };
            Error::unprocessable(field, msg)
        })?;
        let mut rules = SmartRules { supervised: input.supervised, ..Default::default() };
        for p in input.platform.map(OneOrMany::into_vec).unwrap_or_default() {
            let canonical = ["iOS", "iPadOS", "macOS"]
                .into_iter()
                .find(|c| c.eq_ignore_ascii_case(p.trim()))
                .ok_or_else(|| Error::unprocessable("rules.platform", format!("{p:?}: expected iOS, iPadOS or macOS")))?;
            rules.platform.push(canonical.to_owned());
        }
        for m in input.model.map(OneOrMany::into_vec).unwrap_or_default() {
            let m = m.trim();
            if m.is_empty() || m == "*" {
                return Err(Error::unprocessable("rules.model", "a model must name something (e.g. \"iPad13,*\" or \"MacBook Air\")"));
            }
            rules.model.push(m.to_owned());
        }
        rules.ownership = input.ownership.map(OneOrMany::into_vec).unwrap_or_default();
        for y in input.year_group.map(OneOrMany::into_vec).unwrap_or_default() {
            let (year, _) = parse_year_group(&y)
                .ok_or_else(|| Error::unprocessable("rules.year_group", format!("{y:?} is not a year group (N, R, Y1..Y13)")))?;
            rules.year_group.push(year);
        }
        for k in input.key_stage.map(OneOrMany::into_vec).unwrap_or_default() {
            let ks = KeyStage::parse(&k)
                .ok_or_else(|| Error::unprocessable("rules.key_stage", format!("{k:?} is not a key stage (EYFS, KS1..KS5)")))?;
            rules.key_stage.push(ks.as_str().to_owned());
        }
        if rules == SmartRules::default() {
            return Err(Error::unprocessable(
                "rules",
                "give at least one rule: platform, model, supervised, ownership, year_group or key_stage",
            ));
        }
        for v in [&mut rules.platform, &mut rules.model, &mut rules.year_group, &mut rules.key_stage] {
            v.dedup();
        }
        Ok(rules)
    }

    pub fn matches(&self, d: &DeviceFacts) -> bool {
        if !self.platform.is_empty() && !self.platform.contains(&d.platform) {
            return false;
        }
        if !self.model.is_empty() {
            let names = [&d.model, &d.model_name, &d.product_name];
            let hit = self.model.iter().any(|pattern| names.iter().filter_map(|n| n.as_deref()).any(|n| model_matches(pattern, n)));
            if !hit {
                return false;
            }
        }
        if let Some(s) = self.supervised
            && d.supervised != Some(s)
        {
            return false;
        }
        if !self.ownership.is_empty() && !self.ownership.contains(&d.ownership()) {
            return false;
        }
        let pupil = d.holder.as_ref().filter(|h| h.kind == "pupil");
        if !self.year_group.is_empty() {
            let year = pupil.and_then(|h| h.year_group.as_deref()).and_then(parse_year_group).map(|(y, _)| y);
            if !year.is_some_and(|y| self.year_group.contains(&y)) {
                return false;
            }
        }
        if !self.key_stage.is_empty() {
            let ks = pupil.and_then(|h| {
                h.key_stage
                    .as_deref()
                    .and_then(KeyStage::parse)
                    .or_else(|| h.year_group.as_deref().and_then(parse_year_group).map(|(_, k)| k))
            });
            if !ks.is_some_and(|k| self.key_stage.iter().any(|s| s == k.as_str())) {
                return false;
            }
        }
        true
    }
}

fn model_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()),
        None => name.eq_ignore_ascii_case(pattern),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    Static,
    Smart,
}

/// A group as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    #[schema(schema_with = crate::schema::enums::group_kind)]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<SmartRules>,
    pub members: Vec<String>,
    #[schema(inline)]
    pub profiles: Vec<GroupProfile>,
    pub schedules: Vec<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupProfile {
    pub id: Uuid,
    pub name: String,
    pub version: i64,
}

/// What adding members did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MembersAdded {
    pub group_id: Uuid,
    pub added: Vec<String>,
    /// Already members: nothing recorded for them.
    pub already_members: Vec<String>,
}

/// What assigning a profile did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assigned {
    pub group_id: Uuid,
    pub profile_id: Uuid,
    /// False when it was already assigned.
    pub assigned: bool,
    /// Members that will not (`needs_supervision`) or may not (`supervision_unknown`) apply
    /// some of its settings, because they need a supervised device.
    pub warnings: Vec<SupervisionWarning>,
}

fn check_group_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::unprocessable("name", "1-100 characters, no control characters"));
    }
    Ok(name.to_owned())
}

/// A membership that is already open (recorded by another request or instance) is fine.
fn tolerate_conflict(r: crate::store::StoreResult<()>) -> Result<()> {
    match r {
        Ok(()) | Err(crate::store::StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn rules_of(g: &GroupRecord) -> Option<SmartRules> {
    g.rules.as_deref().and_then(|r| serde_json::from_str(r).ok())
}

impl Profiles {
    /// A live group, or 404.
    pub async fn live_group(&self, id: Uuid) -> Result<GroupRecord> {
        self.store.group(id).await?.filter(|g| g.deleted_at.is_none()).ok_or_else(|| Error::not_found(format!("no group {id}")))
    }

    pub async fn group_view(&self, g: &GroupRecord) -> Result<Group> {
        let mut profiles = Vec::new();
        for pid in self.store.group_profile_ids(g.id).await? {
            if let Some(p) = self.store.profile(pid).await? {
                profiles.push(GroupProfile { id: p.id, name: p.name, version: p.version });
            }
        }
        let schedules = self.store.list_schedules().await?.into_iter().filter(|s| s.group_id == g.id).map(|s| s.id).collect();
        Ok(Group {
            id: g.id,
            name: g.name.clone(),
            kind: g.kind.clone(),
            rules: rules_of(g),
            members: self.store.group_members(g.id).await?,
            profiles,
            schedules,
            created_by: g.created_by.clone(),
            created_at: g.created_at,
            updated_at: g.updated_at,
        })
    }

    pub async fn list_group_views(&self) -> Result<Vec<Group>> {
        let mut out = Vec::new();
        for g in self.store.list_groups().await? {
            out.push(self.group_view(&g).await?);
        }
        Ok(out)
    }

    /// Create a group; a smart group's members are worked out at once.
    pub async fn create_group(&self, actor: &Actor, name: &str, kind: GroupKind, rules: Option<&Value>) -> Result<Group> {
        let name = check_group_name(name)?;
        let rules = match (kind, rules) {
            (GroupKind::Smart, Some(r)) => Some(SmartRules::parse(r)?),
            (GroupKind::Smart, None) => return Err(Error::unprocessable("rules", "a smart group needs rules")),
            (GroupKind::Static, Some(v)) if !v.is_null() => {
                return Err(Error::unprocessable("rules", "a static group has no rules: its members are added by hand"));
            }
            (GroupKind::Static, _) => None,
        };
        if self.store.group_by_name(&name).await?.is_some() {
            return Err(Error::conflict("group_name_taken", format!("a group named {name:?} exists")));
        }
        let now = self.clock.now();
        let g = GroupRecord {
            id: Uuid::new_v4(),
            name: name.clone(),
            kind: if kind == GroupKind::Smart { "smart" } else { "static" }.to_owned(),
            rules: rules.as_ref().and_then(|r| serde_json::to_string(r).ok()),
            created_by: actor.name.clone(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            deleted_by: None,
        };
        let audit =
            self.audit.audit_entry(actor, "group.create", Some(&g.id.to_string()), json!({"name": g.name, "kind": g.kind, "rules": rules}));
        self.store.create_group(&g, audit).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => Error::conflict("group_name_taken", format!("a group named {name:?} exists")),
            other => other.into(),
        })?;
        if kind == GroupKind::Smart {
            self.refresh_smart_groups(None).await?;
        }
        self.group_view(&g).await
    }

    /// Rename a group or change a smart group's rules. Devices on legal hold that would leave
    /// the group (and so perhaps lose profiles) make the whole change refused.
    pub async fn update_group(&self, actor: &Actor, id: Uuid, name: Option<&str>, rules: Option<&Value>) -> Result<Group> {
        let g = self.live_group(id).await?;
        let name = match name {
            Some(n) => check_group_name(n)?,
            None => g.name.clone(),
        };
        if name != g.name && self.store.group_by_name(&name).await?.is_some() {
            return Err(Error::conflict("group_name_taken", format!("a group named {name:?} exists")));
        }
        let new_rules = match rules {
            Some(r) if g.kind == "smart" => Some(SmartRules::parse(r)?),
            Some(_) => return Err(Error::unprocessable("rules", "a static group has no rules")),
            None => rules_of(&g),
        };
        if let (Some(new), true) = (&new_rules, rules.is_some()) {
            let desired = self.smart_evaluation(None).await?.map(|(facts, _)| facts).unwrap_or_default();
            let members: BTreeSet<String> = self.store.group_members(g.id).await?.into_iter().collect();
            let leaving: Vec<String> = members.iter().filter(|u| !desired.get(*u).is_some_and(|f| new.matches(f))).cloned().collect();
            self.hold.ensure_none_on_hold(actor, &leaving, "change smart group rules").await?;
        }
        let rules_json = new_rules.as_ref().and_then(|r| serde_json::to_string(r).ok());
        let audit = self.audit.audit_entry(
            actor,
            "group.update",
            Some(&g.id.to_string()),
            json!({"name": name, "previous_name": g.name, "rules": new_rules}),
        );
        if !self.store.update_group(g.id, &name, rules_json.as_deref(), self.clock.now(), audit).await? {
            return Err(Error::not_found(format!("no group {id}")));
        }
        if g.kind == "smart" {
            self.refresh_smart_groups(None).await?;
        }
        self.group_view(&self.live_group(id).await?).await
    }

    /// Delete a group: its memberships end (history kept), its assignments and schedules go,
    /// and its devices lose the profiles no other group gives them. Refused if a member is on
    /// legal hold, or while a filtering profile is assigned (take it off through change
    /// control first).
    pub async fn delete_group(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let g = self.live_group(id).await?;
        for pid in self.store.group_profile_ids(g.id).await? {
            if let Some(p) = self.store.profile(pid).await? {
                let v = self.current_version(&p).await?;
                if v.filtering.is_some() {
                    return Err(Error::conflict(
                        "filtering_assigned",
                        format!(
                            "the filtering profile {:?} is assigned to this group: take it off with DELETE /api/v1/groups/{}/profiles/{} (a filtering change) first",
                            p.name, g.id, p.id
                        ),
                    ));
                }
            }
        }
        let members = self.store.group_members(g.id).await?;
        self.hold.ensure_none_on_hold(actor, &members, "delete group").await?;
        let audit =
            self.audit.audit_entry(actor, "group.delete", Some(&g.id.to_string()), json!({"name": g.name, "members": members.len()}));
        if !self.store.delete_group(g.id, &actor.name, self.clock.now(), audit).await? {
            // Deleted by another request meanwhile (which recorded it).
            return Err(Error::not_found(format!("no group {id}")));
        }
        self.reconcile_and_wake(&members).await
    }

    /// Add devices to a static group.
    pub async fn add_group_members(&self, actor: &Actor, id: Uuid, udids: Vec<String>) -> Result<MembersAdded> {
        let g = self.live_group(id).await?;
        if g.kind != "static" {
            return Err(Error::conflict("smart_group", "a smart group's members follow its rules: change the rules instead"));
        }
        if udids.is_empty() {
            return Err(Error::unprocessable("udids", "at least one device is needed"));
        }
        if udids.len() > crate::services::commands::MAX_TARGETS {
            return Err(Error::unprocessable(
                "udids",
                format!("at most {} devices in one request", crate::services::commands::MAX_TARGETS),
            ));
        }
        let existing: BTreeSet<String> = self.store.existing_udids(&udids).await?.into_iter().collect();
        if let Some((i, missing)) = udids.iter().enumerate().find(|(_, u)| !existing.contains(*u)) {
            return Err(Error::unprocessable(format!("udids[{i}]"), format!("no device with UDID {missing}")));
        }
        let members: BTreeSet<String> = self.store.group_members(g.id).await?.into_iter().collect();
        let mut wanted: Vec<String> = udids;
        wanted.sort();
        wanted.dedup();
        let (already, added): (Vec<String>, Vec<String>) = wanted.into_iter().partition(|u| members.contains(u));
        if !added.is_empty() {
            let sample: Vec<&String> = added.iter().take(50).collect();
            let audit = self.audit.audit_entry(
                actor,
                "group.members.add",
                Some(&g.id.to_string()),
                json!({"name": g.name, "added": added.len(), "udids": sample}),
            );
            // A membership another request opened a moment ago is fine (as before): it is not
            // opened twice, and if every one was, nothing is recorded here.
            self.store.add_group_members(g.id, &added, self.clock.now(), audit).await?;
            self.reconcile_and_wake(&added).await?;
        }
        Ok(MembersAdded { group_id: g.id, added, already_members: already })
    }

    /// Take a device out of a static group. Refused while the device is on legal hold (it would
    /// lose the group's profiles, and the register's group access).
    pub async fn remove_group_member(&self, actor: &Actor, id: Uuid, udid: &str) -> Result<()> {
        let g = self.live_group(id).await?;
        if g.kind != "static" {
            return Err(Error::conflict("smart_group", "a smart group's members follow its rules: change the rules instead"));
        }
        if !self.store.group_members(g.id).await?.iter().any(|m| m == udid) {
            return Err(Error::not_found(format!("device {udid} is not in group {:?}", g.name)));
        }
        self.hold.ensure_not_on_hold(actor, udid, "remove from group").await?;
        let audit = self.audit.audit_entry(actor, "group.members.remove", Some(&g.id.to_string()), json!({"name": g.name, "udid": udid}));
        if !self.store.remove_group_member(g.id, udid, self.clock.now(), audit).await? {
            // Removed by another request meanwhile (which recorded it).
            return Err(Error::not_found(format!("device {udid} is not in group {:?}", g.name)));
        }
        self.reconcile_and_wake(&[udid.to_owned()]).await
    }

    /// Assign a profile to a group. A filtering profile's assignment is a filtering change,
    /// proposed for a second person's approval.
    pub async fn assign_group_profile(
        &self,
        actor: &Actor,
        group_id: Uuid,
        profile_id: Uuid,
        reason: Option<String>,
        risk_assessment_ref: Option<String>,
    ) -> Result<ChangeOutcome<Assigned>> {
        let g = self.live_group(group_id).await?;
        let p = self.live_profile(profile_id).await.map_err(|_| Error::unprocessable("profile_id", format!("no profile {profile_id}")))?;
        if self.store.group_profile_ids(g.id).await?.contains(&p.id) {
            let warnings = self.assignment_warnings(&p, g.id).await?;
            return Ok(ChangeOutcome::Done(Assigned { group_id: g.id, profile_id: p.id, assigned: false, warnings }));
        }
        if self.current_version(&p).await?.filtering.is_some() {
            let (reason, risk) = require_change_fields(reason, risk_assessment_ref)?;
            let proposal =
                Proposal { kind: ChangeKind::Assign, group: Some(g), proposed_xml: None, after: None, reason, risk_assessment_ref: risk };
            return Ok(ChangeOutcome::Proposed(Box::new(self.propose_filtering_change(actor, &p, proposal).await?)));
        }
        let audit = self.audit.audit_entry(
            actor,
            "group.profile.assign",
            Some(&g.id.to_string()),
            json!({"group": g.name, "profile_id": p.id, "profile": p.name}),
        );
        if !self.store.assign_profile(g.id, p.id, &actor.name, self.clock.now(), audit).await? {
            // Assigned by another request meanwhile (which recorded it).
            let warnings = self.assignment_warnings(&p, g.id).await?;
            return Ok(ChangeOutcome::Done(Assigned { group_id: g.id, profile_id: p.id, assigned: false, warnings }));
        }
        let members = self.store.group_members(g.id).await?;
        self.reconcile_and_wake(&members).await?;
        let warnings = self.assignment_warnings(&p, g.id).await?;
        Ok(ChangeOutcome::Done(Assigned { group_id: g.id, profile_id: p.id, assigned: true, warnings }))
    }

    /// The supervision warnings for a profile (its current version) given to a group's members.
    async fn assignment_warnings(&self, p: &crate::store::ProfileRecord, group_id: Uuid) -> Result<Vec<SupervisionWarning>> {
        let needs = self.supervision.profile_version_needs(p.id, p.version).await?;
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        let members = self.store.group_members(group_id).await?;
        self.supervision.supervision_warnings(&needs, &members).await
    }

    /// Take a profile off a group (a filtering change for a filtering profile). Reconcile
    /// removes it from members no other group gives it to, except devices on legal hold.
    pub async fn unassign_group_profile(
        &self,
        actor: &Actor,
        group_id: Uuid,
        profile_id: Uuid,
        reason: Option<String>,
        risk_assessment_ref: Option<String>,
    ) -> Result<ChangeOutcome<()>> {
        let g = self.live_group(group_id).await?;
        if !self.store.group_profile_ids(g.id).await?.contains(&profile_id) {
            return Err(Error::not_found(format!("profile {profile_id} is not assigned to group {:?}", g.name)));
        }
        let p = self.live_profile(profile_id).await?;
        if self.current_version(&p).await?.filtering.is_some() {
            let (reason, risk) = require_change_fields(reason, risk_assessment_ref)?;
            let proposal =
                Proposal { kind: ChangeKind::Unassign, group: Some(g), proposed_xml: None, after: None, reason, risk_assessment_ref: risk };
            return Ok(ChangeOutcome::Proposed(Box::new(self.propose_filtering_change(actor, &p, proposal).await?)));
        }
        let audit = self.audit.audit_entry(
            actor,
            "group.profile.unassign",
            Some(&g.id.to_string()),
            json!({"group": g.name, "profile_id": p.id, "profile": p.name}),
        );
        if !self.store.unassign_profile(g.id, p.id, audit).await? {
            // Taken off by another request meanwhile (which recorded it).
            return Err(Error::not_found(format!("profile {profile_id} is not assigned to group {:?}", g.name)));
        }
        let members = self.store.group_members(g.id).await?;
        self.reconcile_and_wake(&members).await?;
        Ok(ChangeOutcome::Done(()))
    }

    /// The facts the enrolled devices (all, or one) and the rules of the smart groups; None
    /// if the school has no smart groups (then no device can be in one).
    async fn smart_evaluation(&self, only: Option<&str>) -> Result<Option<(HashMap<String, DeviceFacts>, Vec<(Uuid, SmartRules)>)>> {
        let smart: Vec<_> = self.store.list_groups().await?.into_iter().filter(|g| g.kind == "smart").collect();
        if smart.is_empty() {
            // No smart groups: no live smart memberships either, and nothing to work out (this
            // runs after every DeviceInformation answer).
            return Ok(None);
        }
        let groups = smart.iter().filter_map(|g| rules_of(g).map(|r| (g.id, r))).collect();
        let now = self.clock.now();
        let mut holders: HashMap<String, HolderRow> = HashMap::new();
        for h in self.store.current_holders(now).await? {
            holders.entry(h.udid.clone()).or_insert(h);
        }
        let mut devices = Vec::new();
        match only {
            Some(udid) => devices.extend(self.store.device(udid).await?.filter(|d| d.enrolled)),
            None => {
                let mut filter = DeviceFilter { enrolled: Some(true), limit: 1000, ..Default::default() };
                loop {
                    let page = self.store.list_devices(&filter).await?;
                    let last = page.last().map(|d| d.udid.clone());
                    devices.extend(page);
                    match last {
                        Some(u) => filter.after_udid = Some(u),
                        None => break,
                    }
                }
            }
        }
        let facts = devices.iter().map(|d| (d.udid.clone(), DeviceFacts::of(d, holders.get(&d.udid).cloned()))).collect();
        Ok(Some((facts, groups)))
    }

    /// Bring smart groups' memberships up to date (all enrolled devices, or one), writing the
    /// changes to the membership history. Returns the devices whose memberships changed.
    /// Enrolled devices only: a device that unenrols leaves its smart groups.
    pub async fn refresh_smart_groups(&self, only: Option<&str>) -> Result<Vec<String>> {
        let Some((facts, groups)) = self.smart_evaluation(only).await? else {
            return Ok(Vec::new());
        };
        let current: BTreeSet<(Uuid, String)> =
            self.store.smart_memberships().await?.into_iter().filter(|(_, u)| only.is_none_or(|o| o == u)).collect();
        let mut desired = BTreeSet::new();
        for (udid, f) in &facts {
            for (gid, rules) in &groups {
                if rules.matches(f) {
                    desired.insert((*gid, udid.clone()));
                }
            }
        }
        let now = self.clock.now();
        let mut changed: BTreeMap<String, ()> = BTreeMap::new();
        for (g, u) in desired.difference(&current) {
            // Another instance may have recorded it a moment ago.
            tolerate_conflict(self.store.record_group_membership(*g, u, now).await)?;
            changed.insert(u.clone(), ());
        }
        for (g, u) in current.difference(&desired) {
            self.store.end_group_membership(*g, u, now).await?;
            changed.insert(u.clone(), ());
        }
        if !changed.is_empty() {
            tracing::info!(devices = changed.len(), "smart group memberships changed");
        }
        Ok(changed.into_keys().collect())
    }

    /// The groups a device is in, by name (for the device's profile view).
    pub async fn device_group_refs(&self, udid: &str) -> Result<Vec<GroupRef>> {
        let mut out = Vec::new();
        for g in self.store.groups_of_device(udid).await? {
            if let Some(g) = self.store.group(g).await? {
                out.push(GroupRef { id: g.id, name: g.name });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipad(supervised: bool, holder: Option<(&str, Option<&str>)>) -> DeviceFacts {
        DeviceFacts {
            platform: "iPadOS".into(),
            model: Some("MPQ03B/A".into()),
            model_name: Some("iPad".into()),
            product_name: Some("iPad13,18".into()),
            supervised: Some(supervised),
            holder: holder.map(|(kind, year)| HolderRow {
                udid: "U".into(),
                kind: kind.into(),
                year_group: year.map(str::to_owned),
                key_stage: None,
            }),
        }
    }

    #[test]
    fn rules_parse_normalise_and_name_the_bad_rule() {
        let r = SmartRules::parse(&json!({"platform": "ipados", "year_group": ["3", "Year 4"], "key_stage": "ks2"})).unwrap();
        assert_eq!(r.platform, ["iPadOS"]);
        assert_eq!(r.year_group, ["Y3", "Y4"]);
        assert_eq!(r.key_stage, ["KS2"]);
        let e = SmartRules::parse(&json!({"platform": "android"})).unwrap_err();
        assert!(matches!(&e, Error::Unprocessable { field, .. } if field == "rules.platform"), "{e}");
        let e = SmartRules::parse(&json!({"colour": "red"})).unwrap_err();
        assert!(matches!(&e, Error::Unprocessable { field, .. } if field.starts_with("rules")), "{e}");
        let e = SmartRules::parse(&json!({"ownership": "teacher"})).unwrap_err();
        assert!(matches!(&e, Error::Unprocessable { field, .. } if field == "rules.ownership"), "{e}");
        assert!(SmartRules::parse(&json!({})).is_err());
    }

    #[test]
    fn rules_match_device_and_holder() {
        let r = SmartRules::parse(&json!({"platform": "iPadOS", "supervised": true, "ownership": "pupil", "key_stage": "KS2"})).unwrap();
        assert!(r.matches(&ipad(true, Some(("pupil", Some("Y3"))))));
        assert!(!r.matches(&ipad(false, Some(("pupil", Some("Y3"))))), "not supervised");
        assert!(!r.matches(&ipad(true, Some(("pupil", Some("Y1"))))), "KS1");
        assert!(!r.matches(&ipad(true, Some(("staff", None)))), "staff device");
        let shared = SmartRules::parse(&json!({"ownership": ["shared"], "model": "iPad13,*"})).unwrap();
        assert!(shared.matches(&ipad(false, None)));
        assert!(!shared.matches(&ipad(false, Some(("visitor", None)))));
        let staff = SmartRules::parse(&json!({"ownership": "staff"})).unwrap();
        assert!(staff.matches(&ipad(true, Some(("volunteer", None)))));
        let model = SmartRules::parse(&json!({"model": "MacBook Air"})).unwrap();
        assert!(!model.matches(&ipad(true, None)));
    }
}
