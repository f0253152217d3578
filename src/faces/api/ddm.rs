//! Declarative Device Management, as the operator API shows it.

use axum::Json;
use axum::extract::{Path, State};

use super::openapi::ErrorBody;
use crate::context::Ctx;
use crate::error::Result;
use crate::services::auth::{Permission, Principal};
use crate::services::ddm::DeviceDeclarations;

/// `GET /api/v1/devices/{udid}/declarations`.
#[utoipa::path(
    get,
    path = "/devices/{udid}/declarations",
    tag = "devices",
    summary = "The declarations a device should have, and what it last reported",
    description = "Roles: admin, technician, dsl, headteacher, auditor. Each declaration with its server token and the device's last state of it (active, valid, reasons in words; `reported_on_older_version` while the device has not caught up), and every status item's last value with the time it came. `requested_at`: when Lanyard turned DDM on (iOS and iPadOS 15, macOS 13 and later); `enabled_at`: when the device first answered.",
    params(("udid" = String, Path)),
    responses((status = 200, description = "OK", body = DeviceDeclarations), (status = 404, description = "no such device", body = ErrorBody))
)]
pub async fn device_declarations(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<Json<DeviceDeclarations>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ddm.device_declarations(&udid).await?))
}
