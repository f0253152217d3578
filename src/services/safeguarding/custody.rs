//! The chain-of-custody log: every event on a case in order, with the evidence hashes, as JSON
//! for scripts and as a printable report (HTML or PDF) a DSL can hand to the police.

use serde_json::{Value, json};
use uuid::Uuid;

use super::cases::{Case, required};
use super::pdf::{Column, Document};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::safeguarding::Safeguarding;
use crate::store::EvidenceRecord;

pub struct CustodyReport {
    pub case: Case,
    pub events: Vec<Value>,
    pub evidence: Vec<Value>,
}

fn evidence_json(e: &EvidenceRecord) -> Value {
    json!({
        "id": e.id, "udid": e.udid, "request_type": e.request_type, "command_uuid": e.command_uuid,
        "requested_at": e.requested_at, "received_at": e.received_at, "status": e.status, "sha256": e.sha256,
        "bytes": e.raw.as_ref().map(Vec::len), "disposed_at": e.disposed_at,
    })
}

impl Safeguarding {
    /// The custody log (the read is itself logged, before the events are read, so it appears).
    pub async fn custody(&self, actor: &Actor, case_id: Uuid, format: &str) -> Result<CustodyReport> {
        let c = self.store.case(case_id).await?.ok_or_else(|| Error::not_found("no such case"))?;
        self.case_event(case_id, actor, "custody_viewed", None, None, json!({"format": format})).await?;
        self.audit.audit(actor, "case.custody", Some(&format!("case:{case_id}")), json!({"number": c.number, "format": format})).await?;
        let events = self
            .store
            .case_events(case_id)
            .await?
            .into_iter()
            .map(|e| {
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                v["detail"] = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
                v
            })
            .collect();
        let evidence = self.store.case_evidence(case_id).await?.iter().map(evidence_json).collect();
        Ok(CustodyReport { case: c.into(), events, evidence })
    }

    pub async fn list_evidence(&self, actor: &Actor, case_id: Uuid) -> Result<Vec<Value>> {
        let c = self.store.case(case_id).await?.ok_or_else(|| Error::not_found("no such case"))?;
        self.case_event(case_id, actor, "evidence_listed", None, None, json!({})).await?;
        self.audit.audit(actor, "case.evidence.list", Some(&format!("case:{case_id}")), json!({"number": c.number})).await?;
        Ok(self.store.case_evidence(case_id).await?.iter().map(evidence_json).collect())
    }

    /// One evidence item exactly as the device sent it; viewing needs a written justification.
    pub async fn view_evidence(&self, actor: &Actor, case_id: Uuid, item: Uuid, justification: &str) -> Result<(EvidenceRecord, Vec<u8>)> {
        let justification = required("justification", justification, 2000)?;
        let e = self
            .store
            .evidence(item)
            .await?
            .filter(|e| e.case_id == case_id)
            .ok_or_else(|| Error::not_found("no such evidence item on this case"))?;
        self.case_event(
            case_id,
            actor,
            "evidence_viewed",
            Some(&e.udid),
            Some(&justification),
            json!({"evidence_id": item, "request_type": e.request_type, "sha256": e.sha256}),
        )
        .await?;
        self.audit
            .audit(
                actor,
                "case.evidence.view",
                Some(&format!("case:{case_id}")),
                json!({"evidence_id": item, "justification": justification}),
            )
            .await?;
        if e.disposed_at.is_some() {
            return Err(Error::conflict("evidence_disposed", "this evidence was disposed of (its hash is kept in the custody log)"));
        }
        let raw = e.raw.clone().ok_or_else(|| Error::conflict("evidence_pending", "the device has not sent this item yet"))?;
        Ok((e, raw))
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SHA-256 column's share of the PDF's evidence table: wide enough for 64 hex digits on one
/// line (a unit test in pdf.rs checks).
pub(super) const SHA_COLUMN_SHARE: f32 = 0.61;

/// A case's references (police, LADO, CEOP) as "police reference: 123/45; ...".
fn references(v: &Value) -> String {
    match v.as_object() {
        Some(o) if !o.is_empty() => o.iter().map(|(k, v)| format!("{}: {}", k.replace('_', " "), text(v))).collect::<Vec<_>>().join("; "),
        Some(_) => "none".into(),
        None => text(v),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl CustodyReport {
    pub fn json(&self) -> Value {
        json!({"case": self.case, "events": self.events, "evidence": self.evidence})
    }

    pub fn html(&self, org: &str) -> String {
        let c = &self.case;
        let mut h = String::from(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chain of custody</title><style>body{font:13px/1.4 sans-serif;margin:2em;color:#111}table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:4px;vertical-align:top;text-align:left}code{font-size:11px;word-break:break-all}@media print{body{margin:0}}</style></head><body>",
        );
        h += &format!("<h1>Chain of custody — safeguarding case {}</h1><p>{}</p>", c.number, esc(org));
        h += &format!(
            "<table><tr><th>Case id</th><td><code>{}</code></td></tr><tr><th>Kind</th><td>{}</td></tr><tr><th>State</th><td>{}</td></tr><tr><th>Opened</th><td>{} by {}</td></tr><tr><th>Closed</th><td>{}</td></tr><tr><th>References</th><td>{}</td></tr><tr><th>Summary</th><td>{}</td></tr></table>",
            c.id,
            esc(&c.kind),
            esc(&c.state),
            c.opened_at.to_rfc3339(),
            esc(&c.opened_by),
            c.closed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            esc(&text(&c.references)),
            esc(&c.summary)
        );
        h += "<h2>Evidence</h2><p>Each item is stored exactly as the device sent it; its SHA-256 lets anyone check it has not changed.</p><table><tr><th>Item</th><th>Device</th><th>Received</th><th>SHA-256</th></tr>";
        for e in &self.evidence {
            h += &format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}{}</td><td><code>{}</code></td></tr>",
                esc(&text(&e["request_type"])),
                esc(&text(&e["udid"])),
                esc(&text(&e["received_at"])),
                if e["disposed_at"].is_null() { String::new() } else { format!(" (disposed {})", esc(&text(&e["disposed_at"]))) },
                esc(&text(&e["sha256"]))
            );
        }
        h += "</table><h2>Events, in order</h2><table><tr><th>#</th><th>When (UTC)</th><th>What</th><th>Who</th><th>Device</th><th>Justification and detail</th></tr>";
        for e in &self.events {
            h += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}<br><code>{}</code></td></tr>",
                esc(&text(&e["seq"])),
                esc(&text(&e["at"])),
                esc(&text(&e["kind"])),
                esc(&text(&e["actor"])),
                esc(&text(&e["udid"])),
                esc(&text(&e["justification"])),
                esc(&e["detail"].to_string())
            );
        }
        h += "</table></body></html>";
        h
    }

    /// The printable report as a PDF: what the HTML shows, with the case and page number on
    /// every page (src/safeguarding/pdf.rs).
    pub fn pdf(&self, org: &str) -> Vec<u8> {
        let c = &self.case;
        let title = format!("Chain of custody — safeguarding case {}", c.number);
        let mut d = Document::new(&title, &[format!("{org} — {title}"), format!("Case id {}", c.id)]);
        d.title(&title);
        d.paragraph(org);
        d.fields(vec![
            ("Case id".into(), c.id.to_string()),
            ("Kind".into(), c.kind.clone()),
            ("State".into(), c.state.clone()),
            ("Opened".into(), format!("{} by {}", c.opened_at.to_rfc3339(), c.opened_by)),
            ("Closed".into(), c.closed_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
            ("References".into(), references(&c.references)),
            ("Summary".into(), c.summary.clone()),
        ]);
        d.heading("Evidence");
        d.paragraph("Each item is stored exactly as the device sent it; its SHA-256 lets anyone check it has not changed.");
        if self.evidence.is_empty() {
            d.paragraph("No evidence has been taken on this case.");
        } else {
            let rest = (1.0 - SHA_COLUMN_SHARE) / 3.0;
            d.table(
                vec![
                    Column::new("Item", rest),
                    Column::new("Device", rest),
                    Column::new("Received", rest),
                    Column::new("SHA-256", SHA_COLUMN_SHARE),
                ],
                self.evidence
                    .iter()
                    .map(|e| {
                        let disposed =
                            if e["disposed_at"].is_null() { String::new() } else { format!(" (disposed {})", text(&e["disposed_at"])) };
                        vec![text(&e["request_type"]), text(&e["udid"]), text(&e["received_at"]) + &disposed, text(&e["sha256"])]
                    })
                    .collect(),
            );
        }
        d.heading("Events, in order");
        d.table(
            vec![
                Column::new("#", 0.05),
                Column::new("When (UTC)", 0.16),
                Column::new("What", 0.14),
                Column::new("Who", 0.12),
                Column::new("Device", 0.15),
                Column::new("Justification and detail", 0.38),
            ],
            self.events
                .iter()
                .map(|e| {
                    let mut why = text(&e["justification"]);
                    if e["detail"].as_object().is_some_and(|o| !o.is_empty()) {
                        if !why.is_empty() {
                            why.push('\n');
                        }
                        why += &e["detail"].to_string();
                    }
                    vec![text(&e["seq"]), text(&e["at"]), text(&e["kind"]), text(&e["actor"]), text(&e["udid"]), why]
                })
                .collect(),
        );
        d.render()
    }
}
