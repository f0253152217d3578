//! The console's OS updates page (`/ui/os-updates`): every live update with where each device
//! of its group stands (the report, also as CSV), a form to update a group by a deadline
//! (refused during lessons, with a time outside them offered), and cancelling. Reading takes
//! `ReadDevices`; creating and cancelling `ManageDevices`. The same services as
//! `/api/v1/os-updates`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};

use super::session::{Form, Session};
use super::{Nav, Params, UiError, UiResult, render};
use crate::context::Ctx;
use crate::faces::api::extract::uuid_param;
use crate::services::auth::Permission;
use crate::services::ddm::os_updates::{CreateOsUpdate, OsUpdateReport, STATES, report_csv};

#[derive(Template)]
#[template(path = "os_updates.html")]
struct OsUpdatesPage {
    nav: Nav,
    done: Option<String>,
    report: OsUpdateReport,
    groups: Vec<(String, String)>,
    can_manage: bool,
}

impl OsUpdatesPage {
    /// "3 on target, 1 failed": the non-zero counts in the report's order.
    fn summary(&self, counts: &std::collections::BTreeMap<String, usize>) -> String {
        let words: Vec<String> =
            STATES.iter().filter_map(|s| counts.get(*s).filter(|n| **n > 0).map(|n| format!("{n} {}", s.replace('_', " ")))).collect();
        if words.is_empty() { "no devices in the group".to_owned() } else { words.join(", ") }
    }
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ReadDevices)?;
    let report = ctx.ddm.os_update_report(s.can(Permission::Safeguarding)).await?;
    let groups = ctx.profiles.list_group_views().await?.into_iter().map(|g| (g.id.to_string(), g.name)).collect();
    let done = p.get("done").map(|d| match d {
        "created" => "OS update saved: the group's devices are told now and install by the deadline.".to_owned(),
        "cancelled" => "OS update cancelled: it leaves the group's devices.".to_owned(),
        _ => "Done.".to_owned(),
    });
    Ok(render(&OsUpdatesPage { nav: Nav::new(&s, "os-updates"), done, report, groups, can_manage: s.can(Permission::ManageDevices) }))
}

/// `GET /ui/os-updates/report.csv`.
pub async fn csv(State(ctx): State<Ctx>, s: Session) -> UiResult {
    s.require(Permission::ReadDevices)?;
    let report = ctx.ddm.os_update_report(s.can(Permission::Safeguarding)).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"os-updates.csv\"")],
        report_csv(&report),
    )
        .into_response())
}

/// `POST /ui/os-updates`.
pub async fn create(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let group_id = form.get("group_id").and_then(|g| g.parse().ok()).ok_or_else(|| UiError::field("Group", "choose one"))?;
    let target = form.get("target_os_version").ok_or_else(|| UiError::field("Target version", "type one, e.g. 18.2"))?;
    let body = CreateOsUpdate {
        group_id,
        target_os_version: target.to_owned(),
        target_build_version: form.get("target_build_version").map(str::to_owned),
        deadline: form.get("deadline").map(str::to_owned),
        details_url: form.get("details_url").map(str::to_owned),
        allow_during_lessons: form.checked("allow_during_lessons"),
    };
    ctx.ddm.create_os_update(&s.actor(), body).await?;
    Ok(Redirect::to("/ui/os-updates?done=created").into_response())
}

/// `POST /ui/os-updates/{id}/cancel`.
pub async fn cancel(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    ctx.ddm.cancel_os_update(&s.actor(), uuid_param(&id, "OS update")?).await?;
    Ok(Redirect::to("/ui/os-updates?done=cancelled").into_response())
}
