//! `/ui/audit`: the audit log, filtered and paginated, with the hash chain verified.

use askama::Template;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};

use super::{Nav, Params, Session, UiResult, render, when};
use crate::context::Ctx;
use crate::services::auth::Permission;
use crate::store::AuditFilter;

struct Entry {
    seq: i64,
    at: String,
    actor: String,
    ip: String,
    action: String,
    target: String,
    details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    actor: String,
    action: String,
    target: String,
    since: String,
    until: String,
    entries: Vec<Entry>,
    next: Option<String>,
    first_page: String,
    chain_ok: bool,
    chain_checked: i64,
    chain_problem: String,
}

const PAGE: i64 = 50;

fn day(s: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(crate::services::register::day_start)
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ReadAudit)?;
    let (actor, action, target, since, until) = (p.text("actor"), p.text("action"), p.text("target"), p.text("since"), p.text("until"));
    let filter = AuditFilter {
        since: day(&since),
        // "Until" a day includes that day.
        until: day(&until).map(|d| d + chrono::Duration::days(1)),
        actor: (!actor.is_empty()).then(|| actor.clone()),
        action: (!action.is_empty()).then(|| action.clone()),
        target: (!target.is_empty()).then(|| target.clone()),
        before_seq: p.get("before").and_then(|b| b.parse().ok()),
        limit: PAGE,
    };
    let rows = ctx.audit.list_audit(&filter).await?;
    let query = |extra: Option<i64>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("actor", &actor), ("action", &action), ("target", &target), ("since", &since), ("until", &until)] {
            if !v.is_empty() {
                ser.append_pair(k, v);
            }
        }
        if let Some(b) = extra {
            ser.append_pair("before", &b.to_string());
        }
        format!("/ui/audit?{}", ser.finish())
    };
    let next = (rows.len() as i64 == PAGE).then(|| rows.last().map(|r| query(Some(r.seq)))).flatten();
    let entries = rows
        .into_iter()
        .map(|e| Entry {
            details: e.details_json().to_string(),
            seq: e.seq,
            at: when(e.at),
            actor: e.actor,
            ip: e.ip.unwrap_or_default(),
            action: e.action,
            target: e.target.unwrap_or_default(),
        })
        .collect();
    let chain = ctx.audit.verify().await?;
    Ok(render(&AuditPage {
        nav: Nav::new(&s, "audit"),
        first_page: query(None),
        actor,
        action,
        target,
        since,
        until,
        entries,
        next,
        chain_ok: chain.ok,
        chain_checked: chain.entries_checked,
        chain_problem: chain.problem.unwrap_or_default(),
    }))
}
