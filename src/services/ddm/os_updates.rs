//! OS updates by deadline, through Declarative Device Management (Apple removed the MDM
//! software-update commands after OS 26).
//!
//! `POST /api/v1/os-updates` gives a group's devices a
//! `com.apple.configuration.softwareupdate.enforcement.specific` declaration: the target
//! version (and build), and the deadline in the school's local time, when the device installs
//! it whatever the user does. An iPad restarting mid-lesson is a lesson lost, so a deadline
//! inside lessons is refused with the first moment outside them offered instead (the end of
//! lessons on the next school day, from the timetable); `allow_during_lessons` overrides. With
//! no deadline Lanyard picks that moment itself.
//!
//! A device on legal hold gets no OS update (an update changes the evidence): the rule is
//! [`crate::services::hold::Hold::withholds_os_updates`], asked for every device's set. The
//! report ([`Ddm::os_update_report`]) says for each update and each device of its group where
//! it stands, from the device's own DDM status reports.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Ddm;
use super::groups::ResyncReport;
use crate::error::{Error, Result};
use crate::protocol::declaration_schema;
use crate::services::auth::Actor;
use crate::services::profiles::timetable::{Calendar, calendar_of};
use crate::store::{DeviceRecord, OsUpdateRecord};

/// The local time format of Apple's `TargetLocalDateTime`.
pub const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// `POST /api/v1/os-updates`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOsUpdate {
    pub group_id: Uuid,
    /// e.g. `18.2`.
    pub target_os_version: String,
    /// e.g. `22C152`; optional.
    #[serde(default)]
    pub target_build_version: Option<String>,
    /// The school's local time, `YYYY-MM-DDTHH:MM[:SS]`, no offset. Absent: the end of
    /// lessons on the next school day.
    #[serde(default)]
    pub deadline: Option<String>,
    /// An https page the device shows about the update.
    #[serde(default)]
    pub details_url: Option<String>,
    /// Accept a deadline inside lessons (refused otherwise, with a suggestion).
    #[serde(default)]
    pub allow_during_lessons: bool,
}

/// An OS update as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OsUpdateView {
    pub id: Uuid,
    pub group_id: Uuid,
    pub group_name: String,
    pub target_os_version: String,
    pub target_build_version: Option<String>,
    /// Local school time, as the device gets it (`TargetLocalDateTime`).
    pub deadline: String,
    pub details_url: Option<String>,
    /// The declaration's identifier on the devices.
    pub declaration_identifier: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// After POST or DELETE: what it did to the group's devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync: Option<ResyncReport>,
}

/// Where one device stands with one update.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OsUpdateDeviceState {
    pub udid: String,
    pub serial_number: Option<String>,
    pub device_name: Option<String>,
    pub platform: String,
    pub os_version: Option<String>,
    /// `on_target`, `pending`, `downloading`, `installing`, `failed`, `overdue`,
    /// `not_ddm_capable` or `held`.
    #[schema(schema_with = crate::schema::enums::os_update_state)]
    pub state: String,
    /// The device's `softwareupdate.install-state`, as it last said.
    pub install_state: Option<String>,
    /// The version it is getting ready to install (`softwareupdate.pending-version`).
    pub pending_version: Option<String>,
    /// Apple's reason for the last failure (`softwareupdate.failure-reason`).
    pub failure_reason: Option<String>,
    /// The case holding it: only for safeguarding roles (dsl, headteacher, admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<Uuid>,
    /// In words: what to do.
    pub note: String,
}

/// One update in the report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OsUpdateReportEntry {
    pub update: OsUpdateView,
    /// Devices per state.
    pub counts: BTreeMap<String, usize>,
    pub devices: Vec<OsUpdateDeviceState>,
}

/// `GET /api/v1/os-updates/report`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OsUpdateReport {
    pub generated_at: DateTime<Utc>,
    /// The school's local time now, against which deadlines are read.
    pub local_now: String,
    pub updates: Vec<OsUpdateReportEntry>,
}

/// The states a device can be in, in the order the report counts them.
pub const STATES: &[&str] = &["on_target", "pending", "downloading", "installing", "failed", "overdue", "not_ddm_capable", "held"];

/// `18.2.1` as numbers, for comparing versions.
fn version_parts(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.trim().parse().unwrap_or(0)).collect()
}

/// `have` is at least `want` (`18.2` reaches `18.2`; `18.10` is after `18.9`).
pub fn version_at_least(have: &str, want: &str) -> bool {
    let (mut a, mut b) = (version_parts(have), version_parts(want));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a >= b
}

/// The OS version Apple's enforcement declaration needs on this platform (from the schema).
pub fn enforcement_introduced(platform: &str) -> Option<String> {
    let os = if platform == "macOS" { "macOS" } else { "iOS" };
    declaration_schema::declaration_type(super::sets::ENFORCEMENT_TYPE)?.introduced.get(os).cloned().flatten()
}

/// Parse `YYYY-MM-DDTHH:MM[:SS]` (no offset).
pub fn parse_local(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, LOCAL_FORMAT).or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")).ok()
}

fn check_version(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty() && v.len() <= 20 && v.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if ok { Ok(()) } else { Err(Error::unprocessable(field, "expected a version such as 18.2 or 18.2.1")) }
}

impl Ddm {
    async fn school_calendar(&self) -> Result<Calendar> {
        Ok(self.store.timetable().await?.as_ref().map(calendar_of).unwrap_or_else(Calendar::no_lessons))
    }

    async fn os_update_view(&self, u: &OsUpdateRecord, resync: Option<ResyncReport>) -> Result<OsUpdateView> {
        let group_name = self.store.group(u.group_id).await?.map(|g| g.name).unwrap_or_default();
        Ok(OsUpdateView {
            id: u.id,
            group_id: u.group_id,
            group_name,
            target_os_version: u.target_os_version.clone(),
            target_build_version: u.target_build_version.clone(),
            deadline: u.deadline.clone(),
            details_url: u.details_url.clone(),
            declaration_identifier: super::sets::enforcement(u).identifier,
            created_by: u.created_by.clone(),
            created_at: u.created_at,
            cancelled_by: u.cancelled_by.clone(),
            cancelled_at: u.cancelled_at,
            resync,
        })
    }

    /// Create an OS update for a group (audited) and tell its devices.
    pub async fn create_os_update(&self, actor: &Actor, body: CreateOsUpdate) -> Result<OsUpdateView> {
        match self.store.group(body.group_id).await? {
            Some(g) if g.deleted_at.is_none() => {}
            _ => return Err(Error::unprocessable("group_id", format!("no group {}", body.group_id))),
        }
        let target = body.target_os_version.trim().to_owned();
        check_version("target_os_version", &target)?;
        let build = body.target_build_version.as_deref().map(str::trim).filter(|b| !b.is_empty()).map(str::to_owned);
        if build.as_deref().is_some_and(|b| b.len() > 20 || !b.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(Error::unprocessable("target_build_version", "expected a build such as 22C152"));
        }
        let details_url = body.details_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned);
        if let Some(u) = &details_url {
            let parsed = url_host(u);
            if !u.starts_with("https://") || parsed.is_none() || u.len() > 2000 {
                return Err(Error::unprocessable("details_url", "expected an https:// address"));
            }
        }
        let calendar = self.school_calendar().await?;
        let local_now = calendar.local(self.clock.now());
        let suggested = calendar.after_lessons_next_school_day(local_now.date());
        let deadline = match body.deadline.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => suggested,
            Some(d) => {
                let at = parse_local(d)
                    .ok_or_else(|| Error::unprocessable("deadline", "expected the school's local time as YYYY-MM-DDTHH:MM (no offset)"))?;
                if at <= local_now {
                    return Err(Error::unprocessable(
                        "deadline",
                        format!("must be in the future (it is {} now)", local_now.format("%Y-%m-%d %H:%M")),
                    ));
                }
                if calendar.in_lessons_local(at) && !body.allow_during_lessons {
                    let offer =
                        calendar.lessons_end(at.date()).map(|end| at.date().and_time(end)).filter(|o| !calendar.in_lessons_local(*o));
                    let offer = offer.unwrap_or(suggested);
                    let mut extra = Map::new();
                    extra.insert("suggested_deadline".into(), json!(offer.format(LOCAL_FORMAT).to_string()));
                    return Err(Error::Invalid {
                        code: "deadline_in_lessons",
                        field: "deadline".into(),
                        message: format!(
                            "{} is during lessons: devices restart to install, so a lesson would be lost. {} is outside lessons; send allow_during_lessons: true to keep your time",
                            at.format("%A %-d %B %H:%M"),
                            offer.format("%A %-d %B %H:%M")
                        ),
                        extra,
                    });
                }
                at
            }
        };
        let record = OsUpdateRecord {
            id: Uuid::new_v4(),
            group_id: body.group_id,
            target_os_version: target,
            target_build_version: build,
            deadline: deadline.format(LOCAL_FORMAT).to_string(),
            details_url,
            created_by: actor.name.clone(),
            created_at: self.clock.now(),
            cancelled_by: None,
            cancelled_at: None,
        };
        let declaration = super::sets::enforcement(&record);
        if let Some(e) = declaration_schema::check(&declaration.declaration_type, &Value::Object(declaration.payload.clone())).first() {
            return Err(Error::unprocessable("body", e.to_string()));
        }
        let audit = self.audit.audit_entry(
            actor,
            "os_update.create",
            Some(&record.id.to_string()),
            json!({"group_id": record.group_id, "target_os_version": record.target_os_version,
                   "target_build_version": record.target_build_version, "deadline": record.deadline}),
        );
        self.store.create_os_update(&record, audit).await?;
        let members = self.store.group_members(record.group_id).await?;
        let resync = self.resync(&members).await?;
        self.os_update_view(&record, Some(resync)).await
    }

    pub async fn list_os_updates(&self, with_cancelled: bool) -> Result<Vec<OsUpdateView>> {
        let mut out = Vec::new();
        for u in self.store.list_os_updates(with_cancelled).await? {
            out.push(self.os_update_view(&u, None).await?);
        }
        Ok(out)
    }

    pub async fn os_update(&self, id: Uuid) -> Result<OsUpdateView> {
        let u = self.store.os_update(id).await?.ok_or_else(|| Error::not_found(format!("no OS update {id}")))?;
        self.os_update_view(&u, None).await
    }

    /// Cancel an update (audited): its declaration leaves the group's devices.
    pub async fn cancel_os_update(&self, actor: &Actor, id: Uuid) -> Result<OsUpdateView> {
        let u = self.store.os_update(id).await?.ok_or_else(|| Error::not_found(format!("no OS update {id}")))?;
        let now = self.clock.now();
        let audit = self.audit.audit_entry(actor, "os_update.cancel", Some(&id.to_string()), json!({"group_id": u.group_id}));
        if !self.store.cancel_os_update(id, &actor.name, now, audit).await? {
            return Err(Error::conflict("already_cancelled", format!("OS update {id} was already cancelled")));
        }
        let members = self.store.group_members(u.group_id).await?;
        let resync = self.resync(&members).await?;
        let u = self.store.os_update(id).await?.unwrap_or(u);
        self.os_update_view(&u, Some(resync)).await
    }

    /// Where each live update stands on each device of its group. `show_cases`: the caller may
    /// see which case holds a device.
    pub async fn os_update_report(&self, show_cases: bool) -> Result<OsUpdateReport> {
        let now = self.clock.now();
        let calendar = self.school_calendar().await?;
        let local_now = calendar.local(now);
        let mut updates = Vec::new();
        for u in self.store.list_os_updates(false).await? {
            let members = self.store.group_members(u.group_id).await?;
            let devices = self.store.devices_of(&members).await?;
            let holds: BTreeMap<String, Uuid> = self.hold.legal_holds(&members).await?.into_iter().map(|(d, c, _)| (d, c)).collect();
            let items =
                ["softwareupdate.install-state", "softwareupdate.pending-version.os-version", "softwareupdate.failure-reason.reason"];
            let mut status: BTreeMap<(String, String), Value> = BTreeMap::new();
            for (udid, item, value) in self.store.ddm_status_of(&members, &items).await? {
                status.insert((udid, item), serde_json::from_str(&value).unwrap_or(Value::Null));
            }
            let states = self.store.ddm_states(&members).await?;
            let ddm_on: std::collections::HashSet<&str> =
                states.iter().filter(|(_, s)| s.ddm_enabled_at.is_some()).map(|(u, _)| u.as_str()).collect();
            let overdue = parse_local(&u.deadline).is_some_and(|d| d < local_now);
            let mut rows = Vec::with_capacity(devices.len());
            let mut counts: BTreeMap<String, usize> = STATES.iter().map(|s| ((*s).to_owned(), 0)).collect();
            for d in &devices {
                let get = |item: &str| status.get(&(d.udid.clone(), item.to_owned())).and_then(Value::as_str).map(str::to_owned);
                let row = device_state(
                    d,
                    &u,
                    DeviceFacts {
                        held_by: holds.get(&d.udid).copied(),
                        ddm_on: ddm_on.contains(d.udid.as_str()),
                        install_state: get("softwareupdate.install-state"),
                        pending_version: get("softwareupdate.pending-version.os-version"),
                        failure_reason: get("softwareupdate.failure-reason.reason"),
                        overdue,
                        show_cases,
                    },
                );
                *counts.entry(row.state.clone()).or_default() += 1;
                rows.push(row);
            }
            updates.push(OsUpdateReportEntry { update: self.os_update_view(&u, None).await?, counts, devices: rows });
        }
        Ok(OsUpdateReport { generated_at: now, local_now: local_now.format(LOCAL_FORMAT).to_string(), updates })
    }
}

/// What the report knows about one device besides its row.
pub struct DeviceFacts {
    pub held_by: Option<Uuid>,
    pub ddm_on: bool,
    pub install_state: Option<String>,
    pub pending_version: Option<String>,
    pub failure_reason: Option<String>,
    pub overdue: bool,
    pub show_cases: bool,
}

/// One device's state for one update: held first (it gets no update), then too old an OS,
/// then what the device last said.
pub fn device_state(d: &DeviceRecord, u: &OsUpdateRecord, f: DeviceFacts) -> OsUpdateDeviceState {
    let os = d.os_version.clone();
    let platform_name = if d.platform == "macOS" { "macOS" } else { "iPadOS" };
    let needs = enforcement_introduced(&d.platform);
    let capable = match (&os, &needs) {
        (Some(have), Some(need)) => version_at_least(have, need),
        _ => false,
    };
    let (state, note) = if f.held_by.is_some() {
        ("held", "on legal hold: it gets no OS update while the case is open (an update changes the evidence)".to_owned())
    } else if os.as_deref().is_some_and(|v| version_at_least(v, &u.target_os_version)) {
        ("on_target", format!("on {} or later", u.target_os_version))
    } else if !capable {
        let need = needs.unwrap_or_else(|| "a newer OS".into());
        let note = match &os {
            Some(v) => format!(
                "{platform_name} {v} cannot take an OS update by deadline (needs {platform_name} {need}): update it by hand once, or replace it if it cannot run {need}"
            ),
            None => format!("its OS version is not known yet: it needs {platform_name} {need} for OS updates by deadline"),
        };
        ("not_ddm_capable", note)
    } else if f.install_state.as_deref() == Some("failed") {
        ("failed", format!("the update failed: {}", f.failure_reason.clone().unwrap_or_else(|| "the device gave no reason".into())))
    } else if f.install_state.as_deref() == Some("installing") {
        ("installing", "installing now".to_owned())
    } else if matches!(f.install_state.as_deref(), Some("downloading") | Some("prepared")) {
        (
            "downloading",
            if f.install_state.as_deref() == Some("prepared") {
                "downloaded, ready to install".to_owned()
            } else {
                "downloading".to_owned()
            },
        )
    } else if f.overdue {
        ("overdue", format!("past the deadline {} and still on {}", u.deadline.replace('T', " "), os.clone().unwrap_or_default()))
    } else if !f.ddm_on {
        ("pending", "waiting for the device to turn Declarative Device Management on (it does at its next check-in)".to_owned())
    } else {
        ("pending", format!("will install by {}", u.deadline.replace('T', " ")))
    };
    OsUpdateDeviceState {
        udid: d.udid.clone(),
        serial_number: d.serial_number.clone(),
        device_name: d.device_name.clone(),
        platform: d.platform.clone(),
        os_version: os,
        state: state.to_owned(),
        install_state: f.install_state,
        pending_version: f.pending_version,
        failure_reason: f.failure_reason,
        case_id: if f.show_cases { f.held_by } else { None },
        note,
    }
}

/// The host of an https URL, if it has one.
fn url_host(u: &str) -> Option<&str> {
    let rest = u.strip_prefix("https://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains(' ')).then_some(host)
}

/// The report as CSV: one row per update and device.
pub fn report_csv(r: &OsUpdateReport) -> String {
    let mut out = String::new();
    crate::services::csv::write_row(
        &mut out,
        [
            "update_id",
            "group",
            "target_os_version",
            "deadline",
            "udid",
            "serial_number",
            "device_name",
            "platform",
            "os_version",
            "state",
            "install_state",
            "pending_version",
            "failure_reason",
            "case_id",
            "note",
        ],
    );
    for e in &r.updates {
        for d in &e.devices {
            let case = d.case_id.map(|c| c.to_string()).unwrap_or_default();
            let id = e.update.id.to_string();
            crate::services::csv::write_row(
                &mut out,
                [
                    id.as_str(),
                    &e.update.group_name,
                    &e.update.target_os_version,
                    &e.update.deadline,
                    &d.udid,
                    d.serial_number.as_deref().unwrap_or(""),
                    d.device_name.as_deref().unwrap_or(""),
                    &d.platform,
                    d.os_version.as_deref().unwrap_or(""),
                    &d.state,
                    d.install_state.as_deref().unwrap_or(""),
                    d.pending_version.as_deref().unwrap_or(""),
                    d.failure_reason.as_deref().unwrap_or(""),
                    &case,
                    &d.note,
                ],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(version_at_least("18.2", "18.2"));
        assert!(version_at_least("18.10", "18.9"));
        assert!(version_at_least("18.2.1", "18.2"));
        assert!(!version_at_least("18.1.9", "18.2"));
        assert!(!version_at_least("17.7", "18"));
    }

    #[test]
    fn enforcement_needs_ipados_17_or_macos_14() {
        assert_eq!(enforcement_introduced("iPadOS").as_deref(), Some("17.0"));
        assert_eq!(enforcement_introduced("macOS").as_deref(), Some("14.0"));
    }

    #[test]
    fn deadlines_are_local_times() {
        assert!(parse_local("2026-12-09T16:00").is_some());
        assert!(parse_local("2026-12-09T16:00:00").is_some());
        assert!(parse_local("2026-12-09T16:00:00Z").is_none());
        assert!(parse_local("tomorrow").is_none());
    }
}
