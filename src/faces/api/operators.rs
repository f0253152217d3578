//! Operators (`/api/v1/operators`) and API tokens (`/api/v1/api-tokens`); admins only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::created;
use super::extract::{self, Page, Query, page_limit, uuid_param};
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::Result;
use crate::services::auth::{Permission, Principal, Role};
use crate::services::operators::{ApiToken, NewApiToken, Operator};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    username: String,
    #[schema(min_length = 12)]
    password: String,
    #[schema(value_type = crate::services::auth::schema::Role)]
    role: Role,
}

#[utoipa::path(
    post,
    path = "/operators",
    tag = "operators",
    summary = "Create an operator",
    description = "Roles: admin.",
    request_body = CreateOperator,
    responses((status = 201, description = "OK", body = Operator), (status = 422, response = Unprocessable))
)]
pub async fn create(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<CreateOperator>,
) -> Result<(StatusCode, Json<Operator>)> {
    p.require(Permission::ManageOperators)?;
    Ok(created(ctx.operators.create_operator(&p.actor(), &req.username, &req.password, req.role).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// page size, 1-1000 (default 100); anything else is 422 naming `limit`
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// next_cursor from the previous page
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/operators",
    tag = "operators",
    summary = "List operators",
    description = "Roles: admin.",
    params(ListQuery),
    responses((status = 200, description = "OK", body = Page<Operator>), (status = 422, response = Unprocessable))
)]
pub async fn list(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ListQuery>) -> Result<Json<Page<Operator>>> {
    p.require(Permission::ManageOperators)?;
    let limit = page_limit(q.limit)?;
    let rows = ctx.operators.list_operators(q.cursor.as_deref(), limit).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.username.clone())).flatten();
    Ok(Json(Page { items: rows.into_iter().map(Operator::from).collect(), next_cursor }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOperator {
    #[schema(value_type = Option<crate::services::auth::schema::Role>)]
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/operators/{id}",
    tag = "operators",
    summary = "Change an operator's role, disabled flag or password",
    description = "Roles: admin.",
    params(("id" = String, Path)),
    request_body = UpdateOperator,
    responses((status = 200, description = "OK", body = Operator), (status = 422, response = Unprocessable))
)]
pub async fn update(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<UpdateOperator>,
) -> Result<Json<Operator>> {
    p.require(Permission::ManageOperators)?;
    let id = uuid_param(&id, "operator")?;
    Ok(Json(ctx.operators.update_operator(&p.actor(), id, req.role, req.disabled, req.password.as_deref()).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    #[schema(value_type = crate::services::auth::schema::Role)]
    role: Role,
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(
    post,
    path = "/api-tokens",
    tag = "auth",
    summary = "Create a long-lived API token (shown once)",
    description = "Roles: admin.",
    request_body = CreateToken,
    responses((status = 201, description = "OK", body = NewApiToken), (status = 422, response = Unprocessable))
)]
pub async fn create_token(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<CreateToken>,
) -> Result<(StatusCode, Json<NewApiToken>)> {
    p.require(Permission::ManageApiTokens)?;
    Ok(created(ctx.operators.create_api_token(&p.actor(), &req.name, req.role, req.expires_at).await?))
}

#[utoipa::path(
    get,
    path = "/api-tokens",
    tag = "auth",
    summary = "List API tokens (without secrets)",
    description = "Roles: admin.",
    responses((status = 200, description = "OK", body = Page<ApiToken>))
)]
pub async fn list_tokens(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<ApiToken>>> {
    p.require(Permission::ManageApiTokens)?;
    let rows = ctx.operators.list_api_tokens(1000).await?;
    Ok(Json(Page { items: rows.into_iter().map(ApiToken::from).collect(), next_cursor: None }))
}

#[utoipa::path(
    delete,
    path = "/api-tokens/{id}",
    tag = "auth",
    summary = "Revoke an API token",
    description = "Roles: admin.",
    params(("id" = String, Path)),
    responses((status = 204, description = "OK"))
)]
pub async fn revoke_token(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageApiTokens)?;
    ctx.operators.revoke_api_token(&p.actor(), uuid_param(&id, "API token")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
