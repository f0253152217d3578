//! Device assignments: which person holds which device, from when to when — so that activity
//! on a device "can be traced to individual users" (policy 7.3.4). A device has at most one
//! holder at a time (shared devices have none), and holding one needs a live grant covering it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::grants::covers;
use super::people::is_leaver;
use super::{CLOCK_SKEW, conflict, person_target};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::register::Register;
use crate::store::{AssignmentRecord, StoreError};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAssignment {
    pub person_id: Uuid,
    pub udid: String,
    /// Defaults to now; never in the past.
    pub from: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndAssignment {
    /// Defaults to now; never in the past.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assignment {
    pub id: Uuid,
    pub person_id: Uuid,
    pub udid: String,
    /// The grant that covered the device when the holding began.
    pub grant_id: Option<Uuid>,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub assigned_by: String,
    pub ended_by: Option<String>,
    /// `current`, `future` or `ended`, now.
    #[schema(schema_with = crate::schema::enums::assignment_status)]
    pub status: &'static str,
}

impl Assignment {
    pub fn new(a: AssignmentRecord, now: DateTime<Utc>) -> Assignment {
        let status = if a.ended_at.is_some_and(|e| e <= now) {
            "ended"
        } else if a.started_at > now {
            "future"
        } else {
            "current"
        };
        Assignment {
            status,
            id: a.id,
            person_id: a.person_id,
            udid: a.udid,
            grant_id: a.grant_id,
            from: a.started_at,
            until: a.ended_at,
            assigned_by: a.assigned_by,
            ended_by: a.ended_by,
        }
    }
}

impl Register {
    pub async fn create_assignment(&self, actor: &Actor, req: NewAssignment) -> Result<Assignment> {
        let now = self.clock.now();
        let person = self.person_field("person_id", req.person_id).await?;
        let udid = req.udid.trim();
        if udid.is_empty() || udid.len() > 100 {
            return Err(Error::unprocessable("udid", "1 to 100 characters"));
        }
        self.hold.ensure_not_on_hold(actor, udid, "assign to a person").await?;
        let from = crate::store::truncate_micros(req.from.unwrap_or(now));
        if from < now - CLOCK_SKEW {
            return Err(Error::unprocessable("from", "must not be in the past: the register records a holding from when it is made"));
        }
        let from = from.max(now);
        if is_leaver(&person, now.date_naive()) {
            return Err(conflict(
                "person_left",
                format!("{} has left: a leaver cannot hold a device", person.name),
                json!({"person_id": person.id}),
            ));
        }
        let memberships = self.store.memberships_for_udid(udid).await?;
        let grant = self.store.grants_for_person(person.id).await?.into_iter().find(|g| covers(g, udid, from, &memberships));
        let Some(grant) = grant else {
            return Err(conflict(
                "no_grant",
                format!(
                    "{} has no live grant covering device {udid} at {}: grant access to the device or one of its groups first (POST /api/v1/grants)",
                    person.name,
                    from.to_rfc3339()
                ),
                json!({"person_id": person.id, "udid": udid}),
            ));
        };
        if let Some(held) = self.store.assignments_for_udid(udid).await?.into_iter().find(|a| a.ended_at.is_none_or(|e| e > from)) {
            return Err(self.device_held(udid, &held).await);
        }
        let rec = AssignmentRecord {
            id: Uuid::new_v4(),
            person_id: person.id,
            udid: udid.to_owned(),
            grant_id: Some(grant.id),
            started_at: from,
            ended_at: None,
            assigned_by: actor.name.clone(),
            ended_by: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "register.assignment.create",
            Some(&person_target(person.id)),
            json!({
                "assignment_id": rec.id,
                "person_id": person.id,
                "udid": rec.udid,
                "from": rec.started_at,
                "grant_id": grant.id,
            }),
        );
        if let Err(e) = self.store.create_assignment(&rec, audit).await {
            return Err(match e {
                StoreError::Conflict(_) => match self.store.assignments_for_udid(udid).await?.into_iter().find(|a| a.ended_at.is_none()) {
                    Some(held) => self.device_held(udid, &held).await,
                    None => Error::conflict("device_held", format!("device {udid} is held")),
                },
                e => e.into(),
            });
        }
        Ok(Assignment::new(rec, now))
    }

    async fn device_held(&self, udid: &str, held: &AssignmentRecord) -> Error {
        let name = match self.store.person_by_id(held.person_id).await {
            Ok(Some(p)) => p.name,
            _ => "someone".into(),
        };
        conflict(
            "device_held",
            format!(
                "device {udid} is held by {name} from {}{}: end that holding first (POST /api/v1/assignments/{}/end)",
                held.started_at.to_rfc3339(),
                held.ended_at.map(|e| format!(" until {}", e.to_rfc3339())).unwrap_or_default(),
                held.id
            ),
            json!({"assignment_id": held.id, "person_id": held.person_id}),
        )
    }

    pub async fn end_assignment(&self, actor: &Actor, id: Uuid, at: Option<DateTime<Utc>>) -> Result<Assignment> {
        let now = self.clock.now();
        let a = self.store.assignment_by_id(id).await?.ok_or_else(|| Error::not_found("no such assignment"))?;
        self.hold.ensure_not_on_hold(actor, &a.udid, "end a holding").await?;
        let at = crate::store::truncate_micros(at.unwrap_or(now));
        if at < now - CLOCK_SKEW {
            return Err(Error::unprocessable("at", "must not be in the past: the register records a holding's end when it happens"));
        }
        let at = at.max(now);
        if let Some(e) = a.ended_at.filter(|e| *e <= at) {
            return Err(conflict(
                "assignment_ended",
                format!("this holding already ended at {}", e.to_rfc3339()),
                json!({"assignment_id": id}),
            ));
        }
        if at < a.started_at {
            return Err(Error::unprocessable("at", format!("before the holding starts ({})", a.started_at.to_rfc3339())));
        }
        let audit = self.audit.audit_entry(
            actor,
            "register.assignment.end",
            Some(&person_target(a.person_id)),
            json!({"assignment_id": id, "person_id": a.person_id, "udid": a.udid, "at": at}),
        );
        if !self.store.end_assignment(id, at, &actor.name, audit).await? {
            return Err(conflict("assignment_ended", "this holding has already ended", json!({"assignment_id": id})));
        }
        let a = self.store.assignment_by_id(id).await?.ok_or_else(|| Error::not_found("no such assignment"))?;
        Ok(Assignment::new(a, now))
    }
}
