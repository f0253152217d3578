//! `/ui/`: the figures a technician or DSL looks at first.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Duration;

use super::{Nav, Session, UiResult, devices::all_devices, render};
use crate::context::Ctx;
use crate::services::auth::Permission;
use crate::services::compliance::is_compliant;

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    nav: Nav,
    show_devices: bool,
    enrolled: usize,
    seen_today: usize,
    not_seen_week: usize,
    non_compliant: usize,
    pending_commands: i64,
    /// (css class, message)
    push_warning: Option<(&'static str, String)>,
    safeguarding: bool,
    open_cases: usize,
    devices_on_hold: i64,
    register: Option<RegisterFigures>,
}

struct RegisterFigures {
    ok: bool,
    with_access: usize,
    due_to_resign: usize,
    lapsed: usize,
    leavers_with_live_grants: usize,
    visitors_expiring: usize,
}

pub async fn home(State(ctx): State<Ctx>, s: Session) -> UiResult<Response> {
    let now = ctx.now();
    let show_devices = s.can(Permission::ReadDevices);
    let (mut enrolled, mut seen_today, mut not_seen_week, mut non_compliant) = (0, 0, 0, 0);
    let mut pending_commands = 0;
    let mut push_warning = None;
    if show_devices {
        let today = now.date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let devices = all_devices(&ctx).await?;
        // Settings of their profiles not in force because they are not supervised.
        let not_in_force = ctx.profiles.not_in_force_counts(&devices).await?;
        for d in devices {
            if !d.enrolled {
                continue;
            }
            enrolled += 1;
            if d.last_seen_at >= today {
                seen_today += 1;
            }
            if d.last_seen_at < now - Duration::days(7) {
                not_seen_week += 1;
            }
            if !is_compliant(&d) || not_in_force.contains_key(&d.udid) {
                non_compliant += 1;
            }
        }
        pending_commands = ctx.commands.queue_stats(now).await?.pending_targets;
        push_warning = match ctx.push.push_cert_info().await? {
            None => Some((
                "notice-warn",
                "No MDM push certificate is loaded, so no device can enrol yet. An admin gets it from Apple \
                 on the Apple page (/ui/apple)."
                    .to_owned(),
            )),
            Some(info) => match info.status {
                "expired" => Some(("notice-bad", super::sentence(info.warning.as_deref().unwrap_or("The push certificate has expired")))),
                "expiring" => {
                    Some(("notice-warn", super::sentence(info.warning.as_deref().unwrap_or("The push certificate expires soon"))))
                }
                _ => info.apns_error.map(|e| ("notice-bad", format!("Apple refused the push certificate: {e}"))),
            },
        };
    }
    let safeguarding = s.can(Permission::Safeguarding);
    let (mut open_cases, mut devices_on_hold) = (0, 0);
    if safeguarding {
        open_cases = ctx.safeguarding.case_records(Some("open"), 10_000).await?.len();
        devices_on_hold = ctx.hold.devices_on_hold().await?;
    }
    let register = if s.can(Permission::ReadRegister) {
        let r = ctx.register.register_report().await?;
        Some(RegisterFigures {
            ok: r.ok,
            with_access: r.with_access,
            due_to_resign: r.due_to_resign,
            lapsed: r.lapsed,
            leavers_with_live_grants: r.leavers_with_live_grants,
            visitors_expiring: r.visitors_expiring,
        })
    } else {
        None
    };
    Ok(render(&Home {
        nav: Nav::new(&s, "home"),
        show_devices,
        enrolled,
        seen_today,
        not_seen_week,
        non_compliant,
        pending_commands,
        push_warning,
        safeguarding,
        open_cases,
        devices_on_hold,
        register,
    }))
}
