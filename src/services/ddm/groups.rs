//! The declarations a group's devices get (`GET/PUT /api/v1/groups/{id}/declarations`), and
//! bringing devices up to date when a set changes.
//!
//! A PUT replaces the group's set whole: each declaration is checked against Apple's schema
//! (errors name the bad key), identifiers are unique and not Lanyard's own (`lanyard.`), an
//! activation names only configurations of the same group, and the management declarations
//! (organisation, capabilities, properties) and OS updates stay Lanyard's: OS updates go
//! through `POST /api/v1/os-updates`, where the legal hold and the report apply. The change is
//! audited with what was added, changed and removed.
//!
//! [`Ddm::resync`] then re-tokens only the devices concerned (this group's members): a device
//! whose set changed gets a `DeclarativeManagement` command carrying its new tokens (devices
//! with the same tokens share one command) and a push; a device whose set did not change costs
//! nothing more.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::sets::{Conflict, ENFORCEMENT_TYPE, RESERVED_PREFIX};
use super::{DDM_ACTOR, Ddm};
use crate::error::{Error, Result};
use crate::protocol::command::Command;
use crate::protocol::ddm::{self, Declaration, Kind};
use crate::protocol::declaration_schema;
use crate::services::auth::Actor;
use crate::store::GroupDeclarationRecord;

/// At most this many declarations in one group.
pub const MAX_GROUP_DECLARATIONS: usize = 200;
/// A declaration's payload larger than this (as JSON) is refused.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// One declaration as an operator writes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarationInput {
    /// Apple's declaration type, e.g. `com.apple.configuration.passcode.settings`.
    #[serde(rename = "type")]
    pub declaration_type: String,
    /// Unique in the group; letters, digits, `.`, `-`, `_`; not starting `lanyard.`.
    pub identifier: String,
    /// The declaration's Payload, as Apple's schema describes it.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// `PUT /api/v1/groups/{id}/declarations`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGroupDeclarations {
    pub declarations: Vec<DeclarationInput>,
}

/// One of a group's declarations.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupDeclarationView {
    #[serde(rename = "type")]
    pub declaration_type: String,
    pub identifier: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub server_token: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// What a change of sets did to the devices concerned.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ResyncReport {
    /// Devices concerned.
    pub devices: usize,
    /// Of those, with DDM on.
    pub ddm_devices: usize,
    /// Of those, whose set changed: each got a DeclarativeManagement command and a push.
    pub retokened: usize,
    /// Conflicts on any of the devices (each once).
    pub conflicts: Vec<Conflict>,
}

/// `GET/PUT /api/v1/groups/{id}/declarations`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupDeclarations {
    pub group_id: Uuid,
    pub group_name: String,
    pub declarations: Vec<GroupDeclarationView>,
    /// Conflicts between this group and another group of the same devices: those
    /// declarations are withheld from the devices until the groups agree.
    pub conflicts: Vec<Conflict>,
    /// After a PUT: what it did to the group's devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync: Option<ResyncReport>,
}

fn view(r: &GroupDeclarationRecord) -> GroupDeclarationView {
    GroupDeclarationView {
        declaration_type: r.declaration_type.clone(),
        identifier: r.identifier.clone(),
        payload: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
        server_token: r.server_token.clone(),
        updated_by: r.updated_by.clone(),
        updated_at: r.updated_at,
    }
}

fn valid_identifier(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Check an operator's set: the first problem found, naming the declaration and key.
pub fn check_declarations(input: &[DeclarationInput]) -> Result<()> {
    if input.len() > MAX_GROUP_DECLARATIONS {
        return Err(Error::unprocessable("declarations", format!("at most {MAX_GROUP_DECLARATIONS} declarations in one group")));
    }
    let mut seen = BTreeSet::new();
    for (i, d) in input.iter().enumerate() {
        let at = |what: &str| format!("declarations[{i}].{what}");
        if !valid_identifier(&d.identifier) {
            return Err(Error::unprocessable(at("identifier"), "1 to 200 letters, digits, '.', '-' or '_'"));
        }
        if d.identifier.starts_with(RESERVED_PREFIX) {
            return Err(Error::unprocessable(at("identifier"), format!("identifiers starting {RESERVED_PREFIX:?} are Lanyard's own")));
        }
        if !seen.insert(d.identifier.as_str()) {
            return Err(Error::unprocessable(at("identifier"), format!("{:?} is given twice", d.identifier)));
        }
        if d.declaration_type == ENFORCEMENT_TYPE {
            return Err(Error::unprocessable(
                at("type"),
                "OS updates by deadline are made with POST /api/v1/os-updates, so that the legal hold and the OS update report apply",
            ));
        }
        let Some(schema) = declaration_schema::declaration_type(&d.declaration_type) else {
            return Err(Error::unprocessable(at("type"), format!("{:?} is not a declaration type Apple defines", d.declaration_type)));
        };
        if schema.kind == "management" {
            return Err(Error::unprocessable(
                at("type"),
                "management declarations are Lanyard's own: the organisation comes from the configuration, properties from the register",
            ));
        }
        if d.payload.to_string().len() > MAX_PAYLOAD_BYTES {
            return Err(Error::unprocessable(at("payload"), format!("larger than {MAX_PAYLOAD_BYTES} bytes")));
        }
        if let Some(e) = declaration_schema::check(&d.declaration_type, &d.payload).into_iter().next() {
            return Err(Error::unprocessable(format!("declarations[{i}].{}", e.path.replacen("Payload", "payload", 1)), e.message));
        }
    }
    for (i, d) in input.iter().enumerate() {
        if Kind::of(&d.declaration_type) != Some(Kind::Activation) {
            continue;
        }
        let names = d.payload.get("StandardConfigurations").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        for (j, name) in names.enumerate() {
            let ok = input.iter().any(|c| c.identifier == name && Kind::of(&c.declaration_type) == Some(Kind::Configuration));
            if !ok {
                return Err(Error::unprocessable(
                    format!("declarations[{i}].payload.StandardConfigurations[{j}]"),
                    format!("{name:?} is not a configuration of this group"),
                ));
            }
        }
    }
    Ok(())
}

impl Ddm {
    async fn group_name(&self, group_id: Uuid) -> Result<String> {
        match self.store.group(group_id).await? {
            Some(g) if g.deleted_at.is_none() => Ok(g.name),
            _ => Err(Error::not_found(format!("no group {group_id}"))),
        }
    }

    /// A group's declarations, and the conflicts on its devices.
    pub async fn group_declarations(&self, group_id: Uuid) -> Result<GroupDeclarations> {
        let group_name = self.group_name(group_id).await?;
        let records = self.store.group_declarations(group_id).await?;
        let members = self.store.group_members(group_id).await?;
        let sets = self.device_sets(&members).await?;
        Ok(GroupDeclarations {
            group_id,
            group_name,
            declarations: records.iter().map(view).collect(),
            conflicts: involving(group_id, sets.values().flat_map(|s| s.conflicts.iter())),
            resync: None,
        })
    }

    /// Replace a group's declarations (audited), then bring its devices up to date.
    pub async fn put_group_declarations(&self, actor: &Actor, group_id: Uuid, body: PutGroupDeclarations) -> Result<GroupDeclarations> {
        let group_name = self.group_name(group_id).await?;
        check_declarations(&body.declarations)?;
        let now = self.clock.now();
        let before = self.store.group_declarations(group_id).await?;
        let records: Vec<GroupDeclarationRecord> = body
            .declarations
            .iter()
            .map(|d| {
                let payload = d.payload.as_object().cloned().unwrap_or_default();
                let server_token = Declaration::new(&d.declaration_type, &d.identifier, payload).server_token;
                GroupDeclarationRecord {
                    group_id,
                    identifier: d.identifier.clone(),
                    declaration_type: d.declaration_type.clone(),
                    payload: d.payload.to_string(),
                    server_token,
                    updated_by: actor.name.clone(),
                    updated_at: now,
                }
            })
            .collect();
        let old: BTreeMap<&str, &str> = before.iter().map(|r| (r.identifier.as_str(), r.server_token.as_str())).collect();
        let new: BTreeMap<&str, &str> = records.iter().map(|r| (r.identifier.as_str(), r.server_token.as_str())).collect();
        let added: Vec<&str> = new.keys().filter(|k| !old.contains_key(*k)).copied().collect();
        let removed: Vec<&str> = old.keys().filter(|k| !new.contains_key(*k)).copied().collect();
        let changed: Vec<&str> = new.iter().filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| *k).collect();
        let audit = self.audit.audit_entry(
            actor,
            "group.declarations.set",
            Some(&group_id.to_string()),
            json!({"group": group_name, "count": records.len(), "added": added, "changed": changed, "removed": removed}),
        );
        self.store.put_group_declarations(group_id, &records, audit).await?;
        let members = self.store.group_members(group_id).await?;
        let report = self.resync(&members).await?;
        Ok(GroupDeclarations {
            group_id,
            group_name,
            declarations: records.iter().map(view).collect(),
            conflicts: involving(group_id, report.conflicts.iter()),
            resync: Some(report),
        })
    }

    /// Re-token these devices: each one with DDM on whose set changed gets its new tokens in a
    /// DeclarativeManagement command (one command per distinct token) and a push.
    pub async fn resync(&self, udids: &[String]) -> Result<ResyncReport> {
        let mut report = ResyncReport { devices: udids.len(), ..Default::default() };
        if udids.is_empty() {
            return Ok(report);
        }
        let states = self.store.ddm_states(udids).await?;
        let on: Vec<String> = states.iter().filter(|(_, s)| s.ddm_requested_at.is_some()).map(|(u, _)| u.clone()).collect();
        report.ddm_devices = on.len();
        let sets = self.device_sets(&on).await?;
        let now = self.clock.now();
        let mut changed: Vec<(String, String)> = Vec::new();
        let mut by_token: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut conflicts: BTreeMap<(String, Vec<Uuid>), Conflict> = BTreeMap::new();
        for (udid, state) in states.iter().filter(|(_, s)| s.ddm_requested_at.is_some()) {
            let Some(set) = sets.get(udid) else { continue };
            for c in &set.conflicts {
                conflicts.entry((c.identifier.clone(), c.groups.clone())).or_insert_with(|| c.clone());
            }
            let token = ddm::declarations_token(&set.declarations);
            if state.ddm_declarations_token.as_deref() != Some(token.as_str()) {
                by_token.entry(token.clone()).or_default().push(udid.clone());
                changed.push((udid.clone(), token));
            }
        }
        report.conflicts = conflicts.into_values().collect();
        report.retokened = changed.len();
        if changed.is_empty() {
            return Ok(report);
        }
        self.store.put_ddm_tokens(&changed, now).await?;
        let timestamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        for (token, devices) in &by_token {
            let tokens = json!({"SyncTokens": {"DeclarationsToken": token, "Timestamp": timestamp}});
            let cmd = Command::DeclarativeManagement(Some(tokens.to_string().into_bytes()));
            self.commands.queue_command(DDM_ACTOR, &cmd, devices, None).await?;
        }
        let woken: Vec<String> = changed.into_iter().map(|(u, _)| u).collect();
        let push = self.push.clone();
        tokio::spawn(async move {
            if let Err(e) = push.push_devices(&woken).await {
                tracing::debug!(error = %e, devices = woken.len(), "could not push after a DDM change; the sweeper will retry");
            }
        });
        Ok(report)
    }
}

#[async_trait::async_trait]
impl crate::services::profiles::SetChanges for Ddm {
    async fn devices_changed(&self, udids: &[String]) -> Result<()> {
        self.resync(udids).await.map(drop)
    }
}

/// The conflicts one group takes part in, each once.
fn involving<'a>(group_id: Uuid, all: impl Iterator<Item = &'a Conflict>) -> Vec<Conflict> {
    let mut out: Vec<Conflict> = Vec::new();
    for c in all.filter(|c| c.groups.contains(&group_id)) {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(t: &str, id: &str, payload: Value) -> DeclarationInput {
        DeclarationInput { declaration_type: t.into(), identifier: id.into(), payload }
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Unprocessable { field, .. } => field,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_declaration_and_key() {
        let bad = [input("com.apple.configuration.passcode.settings", "p", json!({"MinimumLength": "six"}))];
        assert_eq!(field_of(check_declarations(&bad).unwrap_err()), "declarations[0].payload.MinimumLength");
        let reserved = [input("com.apple.configuration.passcode.settings", "lanyard.p", json!({}))];
        assert_eq!(field_of(check_declarations(&reserved).unwrap_err()), "declarations[0].identifier");
        let update = [input(ENFORCEMENT_TYPE, "u", json!({"TargetOSVersion": "18.2", "TargetLocalDateTime": "2026-12-09T16:00:00"}))];
        assert_eq!(field_of(check_declarations(&update).unwrap_err()), "declarations[0].type");
        let org = [input("com.apple.management.organization-info", "o", json!({"Name": "x"}))];
        assert_eq!(field_of(check_declarations(&org).unwrap_err()), "declarations[0].type");
        let dangling = [input("com.apple.activation.simple", "a", json!({"StandardConfigurations": ["nope"]}))];
        assert_eq!(field_of(check_declarations(&dangling).unwrap_err()), "declarations[0].payload.StandardConfigurations[0]");
        let twice = [
            input("com.apple.configuration.passcode.settings", "p", json!({})),
            input("com.apple.configuration.passcode.settings", "p", json!({})),
        ];
        assert_eq!(field_of(check_declarations(&twice).unwrap_err()), "declarations[1].identifier");
        let good = [
            input("com.apple.configuration.passcode.settings", "p", json!({"MinimumLength": 6})),
            input("com.apple.configuration.softwareupdate.settings", "su", json!({"Beta": {"ProgramEnrollment": "AlwaysOff"}})),
            input(
                "com.apple.activation.simple",
                "a",
                json!({"StandardConfigurations": ["p"], "Predicate": "@property(year_group) == 'Y6'"}),
            ),
        ];
        check_declarations(&good).unwrap();
    }
}
