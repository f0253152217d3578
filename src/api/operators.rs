//! Operators (`/api/v1/operators`) and API tokens (`/api/v1/api-tokens`); admins only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::created;
use super::extract::{self, Page, Query, page_limit, uuid_param};
use crate::auth::{Permission, Principal, Role};
use crate::context::Ctx;
use crate::error::Result;
use crate::operators::{ApiToken, NewApiToken, Operator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    username: String,
    password: String,
    role: Role,
}

pub async fn create(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<CreateOperator>,
) -> Result<(StatusCode, Json<Operator>)> {
    p.require(Permission::ManageOperators)?;
    Ok(created(ctx.create_operator(&p.actor(), &req.username, &req.password, req.role).await?))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ListQuery>) -> Result<Json<Page<Operator>>> {
    p.require(Permission::ManageOperators)?;
    let limit = page_limit(q.limit)?;
    let rows = ctx.store.list_operators(q.cursor.as_deref(), limit).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.username.clone())).flatten();
    Ok(Json(Page { items: rows.into_iter().map(Operator::from).collect(), next_cursor }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOperator {
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
}

pub async fn update(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<UpdateOperator>,
) -> Result<Json<Operator>> {
    p.require(Permission::ManageOperators)?;
    let id = uuid_param(&id, "operator")?;
    Ok(Json(ctx.update_operator(&p.actor(), id, req.role, req.disabled, req.password.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
}

pub async fn create_token(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<CreateToken>,
) -> Result<(StatusCode, Json<NewApiToken>)> {
    p.require(Permission::ManageApiTokens)?;
    Ok(created(ctx.create_api_token(&p.actor(), &req.name, req.role, req.expires_at).await?))
}

pub async fn list_tokens(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<ApiToken>>> {
    p.require(Permission::ManageApiTokens)?;
    let rows = ctx.store.list_api_tokens(1000).await?;
    Ok(Json(Page { items: rows.into_iter().map(ApiToken::from).collect(), next_cursor: None }))
}

pub async fn revoke_token(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageApiTokens)?;
    ctx.revoke_api_token(&p.actor(), uuid_param(&id, "API token")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
