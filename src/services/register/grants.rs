//! Access grants: a person may use a device, the devices of a group, or a named system (such as
//! "school Wi-Fi") from a time until a time. The policy's rule is enforced here: no grant without
//! a signature of the current AUP for the person's audience (409 `aup_not_signed` naming it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::aups::current_aups;
use super::people::is_leaver;
use super::status::{SignatureState, signature_status};
use super::{CLOCK_SKEW, audience_for, conflict, day_start, person_target, required_text};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::register::Register;
use crate::store::{GrantRecord, GroupMembership, PersonRecord};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub person_id: Uuid,
    pub udid: Option<String>,
    pub group_id: Option<Uuid>,
    pub system: Option<String>,
    /// Defaults to now; never in the past.
    pub from: Option<DateTime<Utc>>,
    /// Open-ended if absent; never after the person's end date.
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: Uuid,
    pub person_id: Uuid,
    /// `device`, `group` or `system`.
    #[schema(schema_with = crate::schema::enums::grant_kind)]
    pub kind: &'static str,
    pub udid: Option<String>,
    pub group_id: Option<Uuid>,
    pub system: Option<String>,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
    /// The signature on file when it was granted.
    pub signature_id: Option<Uuid>,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    /// When it stops: the earlier of `until` and `revoked_at`.
    pub ends_at: Option<DateTime<Utc>>,
    /// `live`, `future`, `expired` or `revoked`, now.
    #[schema(schema_with = crate::schema::enums::grant_status)]
    pub status: &'static str,
}

impl Grant {
    pub fn new(g: GrantRecord, now: DateTime<Utc>) -> Grant {
        let ends_at = g.ends_at();
        let status = if ends_at.is_some_and(|e| e <= now) {
            if g.revoked_at.is_some_and(|r| r <= now) { "revoked" } else { "expired" }
        } else if g.valid_from > now {
            "future"
        } else {
            "live"
        };
        Grant {
            kind: grant_kind(&g),
            ends_at,
            status,
            id: g.id,
            person_id: g.person_id,
            udid: g.udid,
            group_id: g.group_id,
            system: g.system,
            from: g.valid_from,
            until: g.valid_until,
            reason: g.reason,
            signature_id: g.signature_id,
            granted_by: g.granted_by,
            granted_at: g.granted_at,
            revoked_at: g.revoked_at,
            revoked_by: g.revoked_by,
            revoke_reason: g.revoke_reason,
        }
    }
}

pub fn grant_kind(g: &GrantRecord) -> &'static str {
    if g.udid.is_some() {
        "device"
    } else if g.group_id.is_some() {
        "group"
    } else {
        "system"
    }
}

/// Does `g` give access to device `udid` at `at`? A device grant for it, or a group grant whose
/// group held the device then (from `memberships`, the device's membership history).
pub fn covers(g: &GrantRecord, udid: &str, at: DateTime<Utc>, memberships: &[GroupMembership]) -> bool {
    if !g.live_at(at) {
        return false;
    }
    match (&g.udid, g.group_id) {
        (Some(u), _) => u == udid,
        (None, Some(gid)) => {
            memberships.iter().any(|m| m.group_id == gid && m.udid == udid && m.added_at <= at && m.removed_at.is_none_or(|r| r > at))
        }
        _ => false,
    }
}

impl Register {
    /// 409 unless `person` has a valid, unlapsed signature of the current AUP for their audience.
    /// Returns that signature's id.
    pub(crate) async fn require_current_signature(&self, person: &PersonRecord) -> Result<Uuid> {
        let now = self.clock.now();
        let audience = audience_for(person.kind, person.key_stage.as_deref());
        let aups = self.store.list_aups(audience).await?;
        let current = current_aups(&aups, now.date_naive());
        let Some(aup) = audience.and_then(|a| current.get(a)) else {
            let upcoming = aups.iter().max_by_key(|a| a.version);
            let audience = audience.unwrap_or("?");
            let message = match upcoming {
                Some(u) => format!(
                    "there is no AUP in effect for {audience} yet (version {} takes effect on {}); {} can be given access once it does and they have signed it",
                    u.version, u.effective_date, person.name
                ),
                None => format!(
                    "there is no AUP for {audience}: publish one with POST /api/v1/aups {{\"audience\": \"{audience}\", \"title\", \"text\", \"effective_date\"}}, then record {}'s signature with POST /api/v1/signatures",
                    person.name
                ),
            };
            return Err(conflict("no_current_aup", message, json!({"audience": audience, "aup_id": null})));
        };
        let sigs = self.store.signatures_for_person(person.id).await?;
        let valid: Vec<_> = sigs.iter().filter(|s| s.voided_at.is_none()).collect();
        let st = signature_status(person, &current, &valid, now);
        let what = format!("\"{}\" (the {} AUP, version {}, id {})", aup.title, aup.audience, aup.version, aup.id);
        let message = match st.state {
            SignatureState::Current => {
                return Ok(st.signature.map(|s| s.id).expect("current has a signature"));
            }
            SignatureState::Lapsed => format!(
                "{}'s signature of {what} is from {}, more than a year ago: record a new signature before granting access",
                person.name,
                st.signature.as_ref().map(|s| s.signed_at.date_naive().to_string()).unwrap_or_default()
            ),
            SignatureState::Outdated => format!(
                "{} has not signed the current AUP {what}, only an earlier one: record their signature before granting access",
                person.name
            ),
            SignatureState::NoAup | SignatureState::Unsigned => format!(
                "{} has not signed the AUP {what}: record their signature (POST /api/v1/signatures) before granting access",
                person.name
            ),
        };
        Err(conflict(
            "aup_not_signed",
            message,
            json!({
                "aup_id": aup.id,
                "audience": aup.audience,
                "version": aup.version,
                "title": aup.title,
                "signature_state": st.state,
            }),
        ))
    }

    pub async fn create_grant(&self, actor: &Actor, req: NewGrant) -> Result<Grant> {
        let now = self.clock.now();
        let person = self.person_field("person_id", req.person_id).await?;
        let udid = req.udid.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let system = req.system.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let targets = [udid.is_some(), req.group_id.is_some(), system.is_some()];
        if targets.iter().filter(|t| **t).count() != 1 {
            return Err(Error::unprocessable(
                "udid",
                "give exactly one of udid (a device), group_id (a device group) or system (e.g. \"school Wi-Fi\")",
            ));
        }
        if udid.is_some_and(|u| u.len() > 100) {
            return Err(Error::unprocessable("udid", "at most 100 characters"));
        }
        if system.is_some_and(|s| s.chars().count() > 100) {
            return Err(Error::unprocessable("system", "at most 100 characters"));
        }
        let reason = required_text("reason", &req.reason, 500)?;
        let from = crate::store::truncate_micros(req.from.unwrap_or(now));
        if from < now - CLOCK_SKEW {
            return Err(Error::unprocessable("from", "must not be in the past: the register records access from when it is granted"));
        }
        let from = from.max(now);
        if is_leaver(&person, now.date_naive()) {
            return Err(conflict(
                "person_left",
                format!(
                    "{} left on {}: a leaver cannot be given access",
                    person.name,
                    person.end_date.map(|d| d.to_string()).unwrap_or_default()
                ),
                json!({"person_id": person.id}),
            ));
        }
        // A grant never outlasts the person: it ends by their end date.
        let cap = person.end_date.map(day_start);
        let until = match (req.until.map(crate::store::truncate_micros), cap) {
            (Some(u), Some(c)) => Some(u.min(c)),
            (u, c) => u.or(c),
        };
        if let Some(u) = until.filter(|u| *u <= from) {
            let (field, msg) = if cap == Some(u) {
                ("from", format!("starts after {}'s end date {}", person.name, person.end_date.map(|d| d.to_string()).unwrap_or_default()))
            } else {
                ("until", "must be after from".to_owned())
            };
            return Err(Error::unprocessable(field, msg));
        }
        let signature_id = self.require_current_signature(&person).await?;
        let rec = GrantRecord {
            id: Uuid::new_v4(),
            person_id: person.id,
            udid: udid.map(str::to_owned),
            group_id: req.group_id,
            system: system.map(str::to_owned),
            valid_from: from,
            valid_until: until,
            reason,
            signature_id: Some(signature_id),
            granted_by: actor.name.clone(),
            granted_at: now,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "register.grant.create",
            Some(&person_target(person.id)),
            json!({
                "grant_id": rec.id,
                "person_id": person.id,
                "kind": grant_kind(&rec),
                "udid": rec.udid,
                "group_id": rec.group_id,
                "system": rec.system,
                "from": rec.valid_from,
                "until": rec.valid_until,
                "reason": rec.reason,
                "signature_id": signature_id,
            }),
        );
        self.store.create_grant(&rec, audit).await?;
        Ok(Grant::new(rec, now))
    }

    /// Revoke a grant now. The person's holdings that no other live grant covers end too.
    pub async fn revoke_grant(&self, actor: &Actor, id: Uuid, reason: &str) -> Result<RevokeOutcome> {
        let reason = required_text("reason", reason, 500)?;
        let now = self.clock.now();
        let g = self.store.grant_by_id(id).await?.ok_or_else(|| Error::not_found("no such grant"))?;
        // The holdings that no other grant covers once this one is revoked end with it.
        let remaining: Vec<_> = self.store.grants_for_person(g.person_id).await?.into_iter().filter(|r| r.id != id).collect();
        let mut uncovered = Vec::new();
        for a in self.store.assignments_for_person(g.person_id).await? {
            if a.ended_at.is_some_and(|e| e <= now) || a.started_at > now {
                continue;
            }
            let memberships = self.store.memberships_for_udid(&a.udid).await?;
            if !remaining.iter().any(|r| covers(r, &a.udid, now, &memberships)) {
                uncovered.push(a.id);
            }
        }
        let audit = self.audit.audit_entry(
            actor,
            "register.grant.revoke",
            Some(&person_target(g.person_id)),
            json!({"grant_id": id, "person_id": g.person_id, "reason": reason}),
        );
        let (revoked, ended) = self.store.revoke_grants(&[id], now, &actor.name, &reason, &uncovered, audit).await?;
        if revoked.is_empty() {
            return Err(conflict(
                "grant_ended",
                format!("this grant already ended at {}", g.ends_at().map(|e| e.to_rfc3339()).unwrap_or_default()),
                json!({"grant_id": id}),
            ));
        }
        let g = self.store.grant_by_id(id).await?.ok_or_else(|| Error::not_found("no such grant"))?;
        Ok(RevokeOutcome { grant: Grant::new(g, now), assignments_ended: ended })
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RevokeOutcome {
    #[serde(flatten)]
    pub grant: Grant,
    /// Holdings ended because no other live grant covers the device.
    pub assignments_ended: Vec<Uuid>,
}
