//! Two-person decisions: releasing a device (or closing the whole case) and disposing of
//! evidence. The DSL asks with a justification; a different DSL or headteacher approves with
//! their own. Only then does anything change.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Safeguarding;
use super::cases::required;
use crate::error::{Error, Result};
use crate::protocol::command::Command;
use crate::services::auth::{Principal, Role};
use crate::services::register::grants::NewGrant;
use crate::store::{CaseCommandRecord, CaseRequestRecord};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub udid: Option<String>,
    pub justification: String,
    pub advice_reference: String,
    #[serde(default)]
    pub restore_access: bool,
}

/// Asked as a release is asked: why, and the reference of the advice (police, LADO, other
/// agencies) that the evidence is no longer needed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisposeRequest {
    #[schema(max_length = 4000)]
    pub justification: String,
    /// The advice that the police and other agencies no longer need the evidence. Required; a
    /// missing one is refused naming `advice_reference`, not as a malformed body.
    #[serde(default)]
    #[schema(max_length = 500, value_type = String, required = true)]
    pub advice_reference: Option<String>,
    /// Optional: who confirmed it (kept for the requests made before `advice_reference`).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub confirmation: Option<String>,
}

pub fn request_json(r: CaseRequestRecord) -> Value {
    json!({
        "id": r.id, "case_id": r.case_id, "kind": r.kind, "udid": r.udid, "state": r.state,
        "requested_by": r.requested_by, "requested_at": r.requested_at, "justification": r.justification,
        "advice_reference": r.advice_reference, "restore_access": r.restore_access, "confirmation": r.confirmation,
        "decided_by": r.decided_by, "decided_at": r.decided_at, "decision_justification": r.decision_justification,
    })
}

/// A new, undecided request.
fn pending(case_id: Uuid, kind: &str, requested_by: String, at: chrono::DateTime<chrono::Utc>, justification: &str) -> CaseRequestRecord {
    CaseRequestRecord {
        id: Uuid::new_v4(),
        case_id,
        kind: kind.into(),
        udid: None,
        state: "pending".into(),
        requested_by,
        requested_at: at,
        justification: justification.to_owned(),
        advice_reference: None,
        restore_access: false,
        confirmation: None,
        decided_by: None,
        decided_at: None,
        decision_justification: None,
    }
}

/// Two-person requests must come from people, not scripts.
fn person(p: &Principal) -> Result<String> {
    match p.operator_id() {
        Some(_) => Ok(p.actor().name),
        None => Err(Error::Forbidden("releases and disposals are signed by a person: log in, do not use an API token".into())),
    }
}

impl Safeguarding {
    pub async fn request_release(&self, p: &Principal, case_id: Uuid, r: ReleaseRequest) -> Result<Value> {
        let who = person(p)?;
        let justification = required("justification", &r.justification, 4000)?;
        let advice = required("advice_reference", &r.advice_reference, 500)?;
        let case = self.store.case(case_id).await?.ok_or_else(|| Error::not_found("no such case"))?;
        if case.state != "open" {
            return Err(Error::conflict("case_closed", "this case is already closed"));
        }
        if let Some(udid) = &r.udid {
            if !self.store.case_devices(case_id).await?.iter().any(|d| &d.udid == udid && d.state == "held") {
                return Err(Error::unprocessable("udid", "this device is not held under this case"));
            }
        }
        let rec = CaseRequestRecord {
            udid: r.udid.clone(),
            advice_reference: Some(advice.clone()),
            restore_access: r.restore_access,
            ..pending(case_id, "release", who, self.clock.now(), &justification)
        };
        let actor = p.actor();
        let audit = self.audit.audit_entry(
            &actor,
            "case.release.request",
            Some(&format!("case:{case_id}")),
            json!({"request_id": rec.id, "number": case.number}),
        );
        self.store.put_case_request(&rec, audit).await?;
        self.case_event(
            case_id,
            &actor,
            "release_requested",
            r.udid.as_deref(),
            Some(&justification),
            json!({"request_id": rec.id, "advice_reference": advice, "restore_access": r.restore_access, "whole_case": r.udid.is_none()}),
        )
        .await?;
        Ok(request_json(rec))
    }

    pub async fn request_disposal(&self, p: &Principal, case_id: Uuid, r: DisposeRequest) -> Result<Value> {
        let who = person(p)?;
        let justification = required("justification", &r.justification, 4000)?;
        let advice = match r.advice_reference.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(Error::unprocessable(
                    "advice_reference",
                    "is required: the reference of the advice (police, LADO or other agencies) that the evidence is no longer needed",
                ));
            }
            Some(a) => required("advice_reference", a, 500)?,
        };
        let confirmation = match r.confirmation.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(required("confirmation", c, 1000)?),
        };
        let case = self.store.case(case_id).await?.ok_or_else(|| Error::not_found("no such case"))?;
        if case.state == "open" {
            return Err(Error::conflict(
                "case_open",
                "evidence cannot be disposed of while the case is open: release the devices and close the case first",
            ));
        }
        let rec = CaseRequestRecord {
            advice_reference: Some(advice.clone()),
            confirmation: confirmation.clone(),
            ..pending(case_id, "dispose", who, self.clock.now(), &justification)
        };
        let actor = p.actor();
        let audit = self.audit.audit_entry(
            &actor,
            "case.dispose.request",
            Some(&format!("case:{case_id}")),
            json!({"request_id": rec.id, "number": case.number}),
        );
        self.store.put_case_request(&rec, audit).await?;
        self.case_event(
            case_id,
            &actor,
            "disposal_requested",
            None,
            Some(&justification),
            json!({"request_id": rec.id, "advice_reference": advice, "confirmation": confirmation}),
        )
        .await?;
        Ok(request_json(rec))
    }

    /// The second signature. 409 `second_person_required` when the approver asked for it.
    pub async fn approve_case_request(&self, p: &Principal, id: Uuid, justification: &str, approve: bool) -> Result<Value> {
        let who = person(p)?;
        if !matches!(p.role, Role::Dsl | Role::Headteacher) {
            return Err(Error::Forbidden("the second signature must be a DSL or the headteacher".into()));
        }
        let justification = required("justification", justification, 4000)?;
        let req = self.store.case_request(id).await?.ok_or_else(|| Error::not_found("no such request"))?;
        let actor = p.actor();
        if req.requested_by == who {
            self.case_event(
                req.case_id,
                &actor,
                "refused",
                req.udid.as_deref(),
                None,
                json!({"action": "approve own request", "request_id": id}),
            )
            .await?;
            return Err(Error::conflict("second_person_required", "a different person must approve: you made this request"));
        }
        let state = if approve { "approved" } else { "rejected" };
        let audit = self.audit.audit_entry(
            &actor,
            &format!("case.{}.{}", req.kind, if approve { "approve" } else { "reject" }),
            Some(&format!("case:{}", req.case_id)),
            json!({"request_id": id}),
        );
        if !self.store.decide_case_request(id, state, &who, &justification, self.clock.now(), audit).await? {
            return Err(Error::conflict("already_decided", "this request has already been decided"));
        }
        let kind = format!("{}_{}", if req.kind == "release" { "release" } else { "disposal" }, state);
        self.case_event(
            req.case_id,
            &actor,
            &kind,
            req.udid.as_deref(),
            Some(&justification),
            json!({"request_id": id, "requested_by": req.requested_by}),
        )
        .await?;
        let mut out = json!({"id": id, "state": state, "kind": req.kind});
        if !approve {
            return Ok(out);
        }
        if req.kind == "dispose" {
            let n = self.store.dispose_evidence(req.case_id, self.clock.now()).await?;
            self.case_event(
                req.case_id,
                &actor,
                "evidence_disposed",
                None,
                None,
                json!({"items": n, "advice_reference": req.advice_reference, "confirmation": req.confirmation}),
            )
            .await?;
            out["disposed_items"] = json!(n);
            return Ok(out);
        }
        let released = self.release(&actor, &req).await?;
        if let Some(o) = out.as_object_mut() {
            o.extend(released);
        }
        Ok(out)
    }

    /// Lift the hold: DisableLostMode (or unlock instructions), restore access if asked, and
    /// close the case once nothing is held.
    async fn release(&self, actor: &crate::services::auth::Actor, req: &CaseRequestRecord) -> Result<serde_json::Map<String, Value>> {
        let case_id = req.case_id;
        let devices: Vec<_> = self
            .store
            .case_devices(case_id)
            .await?
            .into_iter()
            .filter(|d| d.state == "held" && req.udid.as_ref().is_none_or(|u| *u == d.udid))
            .collect();
        let now = self.clock.now();
        let (mut released, mut commands, mut instructions, mut restored, mut not_restored) = (vec![], vec![], vec![], vec![], vec![]);
        for d in &devices {
            self.store.release_case_device(case_id, &d.udid, now).await?;
            self.case_event(case_id, actor, "device_released", Some(&d.udid), None, json!({"method": d.method})).await?;
            match d.method.as_str() {
                "lost_mode" => {
                    let uuid = self.commands.queue_command(&actor.name, &Command::DisableLostMode, std::slice::from_ref(&d.udid), None).await?;
                    self.store
                        .put_case_command(&CaseCommandRecord {
                            command_uuid: uuid.clone(),
                            case_id,
                            udid: d.udid.clone(),
                            request_type: "DisableLostMode".into(),
                            purpose: "release".into(),
                            evidence_id: None,
                        })
                        .await?;
                    self.case_event(case_id, actor, "command_queued", Some(&d.udid), None, json!({"command_uuid": uuid, "request_type": "DisableLostMode"})).await?;
                    commands.push(json!({"udid": d.udid, "command_uuid": uuid, "request_type": "DisableLostMode"}));
                }
                "mac_lock" => instructions.push(json!({"udid": d.udid, "instructions": "Enter the 6-digit PIN on the Mac to unlock it: a DSL can reveal it at GET /api/v1/devices/{udid}/lock-pin?justification=... until the case is closed."})),
                _ => instructions.push(json!({"udid": d.udid, "instructions": "The iPad was locked with its passcode: its user unlocks it with the passcode as usual."})),
            }
            if req.restore_access {
                let ids: Vec<Uuid> = serde_json::from_str(&d.suspended_grants).unwrap_or_default();
                for gid in ids {
                    let Some(g) = self.store.grant_by_id(gid).await? else { continue };
                    let new = NewGrant {
                        person_id: g.person_id,
                        udid: g.udid.clone(),
                        group_id: g.group_id,
                        system: g.system.clone(),
                        from: None,
                        until: g.valid_until.filter(|u| *u > now),
                        reason: format!("restored after safeguarding release ({})", g.reason),
                    };
                    match self.register.create_grant(actor, new).await {
                        Ok(ng) => restored.push(json!({"suspended": gid, "restored_as": ng.id})),
                        Err(e) => not_restored.push(json!({"grant": gid, "why": e.to_string()})),
                    }
                }
                self.case_event(
                    case_id,
                    actor,
                    "access_restored",
                    Some(&d.udid),
                    None,
                    json!({"restored": restored, "not_restored": not_restored}),
                )
                .await?;
            }
            released.push(d.udid.clone());
        }
        let still_held = self.store.case_devices(case_id).await?.iter().any(|d| d.state == "held");
        let close = req.udid.is_none() || !still_held;
        if close {
            self.store.close_case(case_id, &actor.name, now).await?;
            self.case_event(case_id, actor, "case_closed", None, None, json!({"request_id": req.id})).await?;
        }
        // Profiles reconcile kept on the devices during the hold come off now (unless another
        // case still holds the device).
        let reconciled = self.profiles.reconcile_devices(&released).await?;
        // Its groups' OS updates reach it again (pushed by the DDM resync itself).
        self.profiles.ddm.devices_changed(&released).await?;
        let mut udids: Vec<String> = commands.iter().filter_map(|c| c["udid"].as_str().map(str::to_owned)).collect();
        udids.extend(reconciled.woken);
        udids.sort();
        udids.dedup();
        let push = if udids.is_empty() {
            Value::Null
        } else {
            serde_json::to_value(self.commands.push_in_background(udids).await).unwrap_or(Value::Null)
        };
        let mut m = serde_json::Map::new();
        m.insert("released".into(), json!(released));
        m.insert("commands".into(), json!(commands));
        m.insert("unlock_instructions".into(), json!(instructions));
        m.insert("access_restored".into(), json!(restored));
        m.insert("access_not_restored".into(), json!(not_restored));
        m.insert("case_state".into(), json!(if close { "closed" } else { "open" }));
        m.insert("push".into(), push);
        Ok(m)
    }
}
