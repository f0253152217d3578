//! `GET /api/v1/audit` (filtered, newest first, paginated) and `GET /api/v1/audit/verify`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Page, Query, page_limit};
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::audit::ChainReport;
use crate::services::auth::{Permission, Principal};
use crate::store::AuditFilter;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// from (RFC 3339)
    since: Option<DateTime<Utc>>,
    /// before (RFC 3339)
    until: Option<DateTime<Utc>>,
    /// e.g. operator:admin, token:NAME, system
    actor: Option<String>,
    /// exact, or a prefix ending in '.' (matched literally: % and _ are not wildcards)
    action: Option<String>,
    /// exact target
    target: Option<String>,
    /// page size, 1-1000 (default 100); anything else is 422 naming `limit`
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// next_cursor from the previous page
    cursor: Option<String>,
}

/// One entry of the audit log.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
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

#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    summary = "The audit log, newest first",
    description = "Roles: admin, auditor, dsl, headteacher.",
    params(AuditQuery),
    responses((status = 200, description = "OK", body = Page<AuditItem>), (status = 422, response = Unprocessable))
)]
pub async fn list(State(ctx): State<Ctx>, p: Principal, Query(q): Query<AuditQuery>) -> Result<Json<Page<AuditItem>>> {
    p.require(Permission::ReadAudit)?;
    let before_seq = match q.cursor.as_deref() {
        Some(c) => Some(c.parse::<i64>().map_err(|_| Error::unprocessable("cursor", "not a cursor from this endpoint"))?),
        None => None,
    };
    let limit = page_limit(q.limit)?;
    let filter = AuditFilter { since: q.since, until: q.until, actor: q.actor, action: q.action, target: q.target, before_seq, limit };
    let rows = ctx.audit.list_audit(&filter).await?;
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

#[utoipa::path(
    get,
    path = "/audit/verify",
    tag = "audit",
    summary = "Walk the hash chain",
    description = "Roles: admin, auditor, dsl, headteacher.",
    responses((status = 200, description = "OK", body = ChainReport))
)]
pub async fn verify(State(ctx): State<Ctx>, p: Principal) -> Result<Json<ChainReport>> {
    p.require(Permission::ReadAudit)?;
    Ok(Json(ctx.audit.verify().await?))
}
