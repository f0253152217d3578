//! "Who could use this iPad on 3 March?": for one device, who held it and who had access to it
//! (through a grant for the device, or for a group the device was in then) at a moment, or over
//! its whole history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::PersonKind;
use super::grants::grant_kind;
use crate::error::{Error, Result};
use crate::services::register::Register;
use crate::store::GrantRecord;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonRef {
    pub id: Uuid,
    pub name: String,
    pub kind: PersonKind,
    pub school_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Holding {
    pub assignment_id: Uuid,
    #[schema(inline)]
    pub person: PersonRef,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub assigned_by: String,
    pub ended_by: Option<String>,
}

/// A period in which someone had access to the device.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessPeriod {
    pub grant_id: Uuid,
    #[schema(inline)]
    pub person: PersonRef,
    /// `device` (a grant for this device) or `group` (a grant for a group it was in).
    #[schema(schema_with = crate::schema::enums::access_via)]
    pub via: &'static str,
    pub group_id: Option<Uuid>,
    /// The overlap of the grant and, for a group grant, the device's membership of the group.
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
    pub granted_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Holders {
    pub udid: String,
    /// The moment asked about; null for the whole history.
    pub at: Option<DateTime<Utc>>,
    /// Who held the device (at most one at a moment), oldest first.
    #[schema(inline)]
    pub holders: Vec<Holding>,
    /// Who had access to it, oldest first.
    #[schema(inline)]
    pub access: Vec<AccessPeriod>,
}

/// A grant and the stretch of it that reached the device: (grant, from, until).
type Period<'a> = (&'a GrantRecord, DateTime<Utc>, Option<DateTime<Utc>>);

fn contains(from: DateTime<Utc>, until: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    from <= at && until.is_none_or(|u| u > at)
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Register {
    pub async fn device_holders(&self, udid: &str, at: Option<DateTime<Utc>>) -> Result<Holders> {
        let assignments = self.store.assignments_for_udid(udid).await?;
        let memberships = self.store.memberships_for_udid(udid).await?;
        let mut group_ids: Vec<Uuid> = memberships.iter().map(|m| m.group_id).collect();
        group_ids.sort();
        group_ids.dedup();
        let device_grants = self.store.grants_for_udid(udid).await?;
        if assignments.is_empty() && memberships.is_empty() && device_grants.is_empty() && self.store.device(udid).await?.is_none() {
            // Neither enrolled nor ever in the register: most likely a mistyped UDID, which an
            // empty answer would hide.
            return Err(Error::not_found(format!("no device with UDID {udid}, and the register has no record of it")));
        }
        let group_grants = self.store.grants_for_groups(&group_ids).await?;

        let mut periods: Vec<Period> = Vec::new();
        for g in &device_grants {
            periods.push((g, g.valid_from, g.ends_at()));
        }
        for g in &group_grants {
            for m in memberships.iter().filter(|m| Some(m.group_id) == g.group_id) {
                periods.push((g, g.valid_from.max(m.added_at), earliest(g.ends_at(), m.removed_at)));
            }
        }
        periods.retain(|(_, from, until)| until.is_none_or(|u| u > *from));
        if let Some(t) = at {
            periods.retain(|(_, from, until)| contains(*from, *until, t));
        }
        periods.sort_by_key(|(_, from, _)| *from);

        let mut people: HashMap<Uuid, PersonRef> = HashMap::new();
        let ids = assignments.iter().map(|a| a.person_id).chain(periods.iter().map(|(g, _, _)| g.person_id));
        for id in ids {
            if people.contains_key(&id) {
                continue;
            }
            if let Some(p) = self.store.person_by_id(id).await? {
                people.insert(id, PersonRef { id, name: p.name, kind: p.kind, school_ref: p.school_ref });
            }
        }
        let person = |id: Uuid| {
            people.get(&id).cloned().unwrap_or(PersonRef { id, name: String::new(), kind: PersonKind::Visitor, school_ref: None })
        };
        let holders = assignments
            .iter()
            .filter(|a| at.is_none_or(|t| a.held_at(t)))
            .filter(|a| a.ended_at.is_none_or(|e| e > a.started_at))
            .map(|a| Holding {
                assignment_id: a.id,
                person: person(a.person_id),
                from: a.started_at,
                until: a.ended_at,
                assigned_by: a.assigned_by.clone(),
                ended_by: a.ended_by.clone(),
            })
            .collect();
        let access = periods
            .into_iter()
            .map(|(g, from, until)| AccessPeriod {
                grant_id: g.id,
                person: person(g.person_id),
                via: grant_kind(g),
                group_id: g.group_id,
                from,
                until,
                reason: g.reason.clone(),
                granted_by: g.granted_by.clone(),
                revoked_at: g.revoked_at,
                revoke_reason: g.revoke_reason.clone(),
            })
            .collect();
        Ok(Holders { udid: udid.to_owned(), at, holders, access })
    }
}
