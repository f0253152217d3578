//! Cases: opening one, reading it (every read is logged), appending actions, notifying the
//! headteacher about staff, and the governors' counts (no names).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::register::PersonKind;
use crate::services::safeguarding::Safeguarding;
use crate::store::{CaseEvent, CaseRecord, NewCaseEvent, NotificationRecord};

pub const KINDS: &[&str] = &[
    "iioc",
    "youth_produced_imagery",
    "child_sexual_exploitation",
    "filtering_breach",
    "cyberbullying",
    "online_hate",
    "radicalisation",
    "staff_misuse",
    "other",
];

pub const ACTION_KINDS: &[&str] = &["note", "police_contact", "lado_contact", "parent_contact", "ceop_report", "decision", "other"];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    #[schema(schema_with = crate::services::safeguarding::cases::case_kind_schema)]
    pub kind: String,
    pub summary: String,
    pub justification: String,
    #[serde(default)]
    pub people: Vec<Uuid>,
    pub police_reference: Option<String>,
    pub lado_referral: Option<String>,
    pub ceop_report: Option<String>,
}

/// A case as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Case {
    pub id: Uuid,
    pub number: i64,
    #[schema(schema_with = crate::services::safeguarding::cases::case_kind_schema)]
    pub kind: String,
    #[schema(schema_with = crate::schema::enums::case_state)]
    pub state: String,
    pub summary: String,
    pub justification: String,
    #[schema(value_type = Vec<String>)]
    pub people: Value,
    #[schema(value_type = Object)]
    pub references: Value,
    pub involves_staff: bool,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<CaseRecord> for Case {
    fn from(c: CaseRecord) -> Self {
        Case {
            id: c.id,
            number: c.number,
            kind: c.kind,
            state: c.state,
            summary: c.summary,
            justification: c.justification,
            people: serde_json::from_str(&c.people).unwrap_or(Value::Null),
            references: serde_json::from_str(&c.refs).unwrap_or(Value::Null),
            involves_staff: c.involves_staff,
            opened_by: c.opened_by,
            opened_at: c.opened_at,
            closed_by: c.closed_by,
            closed_at: c.closed_at,
        }
    }
}

/// A required free-text field: trimmed, non-empty, bounded.
pub fn required(field: &str, v: &str, max: usize) -> Result<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(Error::unprocessable(field, "is required: write down why"));
    }
    if t.len() > max {
        return Err(Error::unprocessable(field, format!("at most {max} characters")));
    }
    Ok(t.to_owned())
}

impl Safeguarding {
    /// Append one event to a case's custody log.
    pub async fn case_event(
        &self,
        case_id: Uuid,
        actor: &Actor,
        kind: &str,
        udid: Option<&str>,
        justification: Option<&str>,
        detail: Value,
    ) -> Result<CaseEvent> {
        self.case_event_audited(case_id, actor, kind, udid, justification, detail, None).await
    }

    /// [`Safeguarding::case_event`] with the operator's audit entry, stored in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn case_event_audited(
        &self,
        case_id: Uuid,
        actor: &Actor,
        kind: &str,
        udid: Option<&str>,
        justification: Option<&str>,
        detail: Value,
        audit: Option<crate::store::NewAuditEntry>,
    ) -> Result<CaseEvent> {
        Ok(self
            .store
            .append_case_event(&NewCaseEvent::new(case_id, self.clock.now(), &actor.name, kind, udid, justification, detail), audit)
            .await?)
    }

    pub async fn open_case(&self, actor: &Actor, req: NewCase) -> Result<Case> {
        if !KINDS.contains(&req.kind.as_str()) {
            return Err(Error::unprocessable("kind", format!("one of {}", KINDS.join(", "))));
        }
        let summary = required("summary", &req.summary, 4000)?;
        let justification = required("justification", &req.justification, 4000)?;
        let mut staff_named = false;
        for (i, id) in req.people.iter().enumerate() {
            let p = self
                .store
                .person_by_id(*id)
                .await?
                .ok_or_else(|| Error::unprocessable(format!("people[{i}]"), "no such person in the register"))?;
            staff_named |= p.kind == PersonKind::Staff;
        }
        let involves_staff = req.kind == "staff_misuse" || (req.kind == "iioc" && staff_named);
        let mut refs = serde_json::Map::new();
        for (k, v) in
            [("police_reference", &req.police_reference), ("lado_referral", &req.lado_referral), ("ceop_report", &req.ceop_report)]
        {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                refs.insert(k.into(), json!(v));
            }
        }
        let mut rec = CaseRecord {
            id: Uuid::new_v4(),
            number: 0,
            kind: req.kind.clone(),
            state: "open".into(),
            summary,
            justification: justification.clone(),
            people: json!(req.people).to_string(),
            refs: Value::Object(refs).to_string(),
            involves_staff,
            opened_by: actor.name.clone(),
            opened_at: self.clock.now(),
            closed_by: None,
            closed_at: None,
        };
        // The audit log records that a case exists, never what it is about; the store adds its number.
        let audit = self.audit.audit_entry(actor, "case.open", Some(&format!("case:{}", rec.id)), json!({"kind": rec.kind}));
        rec.number = self.store.create_case(&rec, audit).await?;
        self.case_event(rec.id, actor, "created", None, Some(&justification), json!({"kind": rec.kind, "number": rec.number})).await?;
        if involves_staff {
            let message = format!(
                "Case {} ({}) concerns a member of staff: the policy requires the headteacher to be informed.",
                rec.number, rec.kind
            );
            self.store
                .add_notification(&NotificationRecord {
                    id: Uuid::new_v4(),
                    role: "headteacher".into(),
                    at: self.clock.now(),
                    kind: "staff_case".into(),
                    case_id: Some(rec.id),
                    message: message.clone(),
                })
                .await?;
            self.case_event(rec.id, &Actor::system(), "headteacher_notified", None, None, json!({"message": message})).await?;
            tracing::warn!(case = rec.number, "safeguarding case about staff: headteacher notified");
        }
        Ok(rec.into())
    }

    async fn case_record(&self, id: Uuid) -> Result<CaseRecord> {
        self.store.case(id).await?.ok_or_else(|| Error::not_found("no such case"))
    }

    /// Read a case; the read itself goes on the custody log and the audit log.
    pub async fn view_case(&self, actor: &Actor, id: Uuid) -> Result<Value> {
        let c = self.case_record(id).await?;
        self.case_event(id, actor, "viewed", None, None, json!({})).await?;
        self.audit.audit(actor, "case.view", Some(&format!("case:{id}")), json!({"number": c.number})).await?;
        let now = self.clock.now();
        let mut devices = Vec::new();
        let commands = self.store.case_commands(id).await?;
        for d in self.store.case_devices(id).await? {
            let mut cmds = Vec::new();
            for cc in commands.iter().filter(|cc| cc.udid == d.udid) {
                let status = match self.store.command(&cc.command_uuid).await? {
                    Some(cmd) => self
                        .store
                        .command_targets(cmd.seq)
                        .await?
                        .into_iter()
                        .find(|t| t.udid == d.udid)
                        .map(|t| (crate::services::commands::effective_status(&t, now), t.completed_at)),
                    None => None,
                };
                cmds.push(json!({
                    "command_uuid": cc.command_uuid,
                    "request_type": cc.request_type,
                    "purpose": cc.purpose,
                    "status": status.as_ref().map(|s| s.0.clone()),
                    "completed_at": status.and_then(|s| s.1),
                }));
            }
            devices.push(json!({
                "udid": d.udid, "state": d.state, "method": d.method, "added_by": d.added_by, "added_at": d.added_at,
                "released_at": d.released_at, "commands": cmds,
                "grants_suspended": serde_json::from_str::<Value>(&d.suspended_grants).unwrap_or(Value::Null),
            }));
        }
        let requests: Vec<Value> = self.store.case_requests(id).await?.into_iter().map(super::release::request_json).collect();
        let mut v = serde_json::to_value(Case::from(c)).map_err(Error::internal)?;
        v["devices"] = json!(devices);
        v["requests"] = json!(requests);
        Ok(v)
    }

    pub async fn list_cases(&self, actor: &Actor, state: Option<&str>) -> Result<Vec<Case>> {
        if let Some(s) = state {
            if s != "open" && s != "closed" {
                return Err(Error::unprocessable("state", "open or closed"));
            }
        }
        self.audit.audit(actor, "case.list", None, json!({"state": state})).await?;
        Ok(self.store.list_cases(state, 1000).await?.into_iter().map(Case::from).collect())
    }

    /// Append an action (a note, a contact with police/LADO/parents, a decision). Nothing on a
    /// case is ever edited: a correction is another action.
    pub async fn add_case_action(&self, actor: &Actor, id: Uuid, kind: &str, text: &str, justification: &str) -> Result<CaseEvent> {
        let c = self.case_record(id).await?;
        if !ACTION_KINDS.contains(&kind) {
            return Err(Error::unprocessable("kind", format!("one of {}", ACTION_KINDS.join(", "))));
        }
        let text = required("text", text, 8000)?;
        let justification = required("justification", justification, 4000)?;
        let audit = self.audit.audit_entry(actor, "case.action", Some(&format!("case:{id}")), json!({"number": c.number, "action": kind}));
        let e = self
            .case_event_audited(id, actor, "action", None, Some(&justification), json!({"action": kind, "text": text}), Some(audit))
            .await?;
        Ok(e)
    }

    /// Counts by kind and month, open cases, devices on hold: for governors, with no names.
    pub async fn cases_report(&self) -> Result<Value> {
        let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
        let (mut open, mut closed) = (0, 0);
        for (kind, state, opened_at) in self.store.all_cases_brief().await? {
            *by.entry((opened_at.format("%Y-%m").to_string(), kind)).or_default() += 1;
            if state == "open" { open += 1 } else { closed += 1 }
        }
        let rows: Vec<Value> = by.into_iter().map(|((month, kind), count)| json!({"month": month, "kind": kind, "count": count})).collect();
        Ok(json!({
            "by_kind_and_month": rows,
            "open_cases": open,
            "closed_cases": closed,
            "devices_on_hold": self.store.devices_on_hold().await?,
        }))
    }
}

/// The OpenAPI schema of a case's kind.
pub fn case_kind_schema() -> utoipa::openapi::schema::Object {
    crate::schema::string_enum(KINDS, None)
}
