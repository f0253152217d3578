//! `GET /api/v1/audit` (filtered, newest first, paginated) and `GET /api/v1/audit/verify`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{Page, Query, page_limit};
use crate::audit::{ChainReport, verify_chain};
use crate::auth::{Permission, Principal};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::store::AuditFilter;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct AuditItem {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    ip: Option<String>,
    action: String,
    target: Option<String>,
    details: Value,
    prev_hash: String,
    hash: String,
}

pub async fn list(State(ctx): State<Ctx>, p: Principal, Query(q): Query<AuditQuery>) -> Result<Json<Page<AuditItem>>> {
    p.require(Permission::ReadAudit)?;
    let before_seq = match q.cursor.as_deref() {
        Some(c) => Some(c.parse::<i64>().map_err(|_| Error::unprocessable("cursor", "not a cursor from this endpoint"))?),
        None => None,
    };
    let limit = page_limit(q.limit)?;
    let filter = AuditFilter { since: q.since, until: q.until, actor: q.actor, action: q.action, target: q.target, before_seq, limit };
    let rows = ctx.store.list_audit(&filter).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.seq.to_string())).flatten();
    let items = rows
        .into_iter()
        .map(|e| AuditItem {
            details: e.details_json(),
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            ip: e.ip,
            action: e.action,
            target: e.target,
            prev_hash: e.prev_hash,
            hash: e.hash,
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

pub async fn verify(State(ctx): State<Ctx>, p: Principal) -> Result<Json<ChainReport>> {
    p.require(Permission::ReadAudit)?;
    Ok(Json(verify_chain(ctx.store.as_ref()).await?))
}
