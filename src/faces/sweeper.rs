//! The sweeper: the clock's face. Every tick it opens and closes lesson-time windows, refreshes
//! smart groups, syncs Apple School Manager, lets go devices waiting too long in Setup Assistant,
//! expires commands past their time and re-pushes quiet devices, and once an hour
//! writes the push certificate's expiry warnings (30, 14, 7, 1 days) to the audit log. It calls the services as any face does.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::context::Ctx;

/// Run the sweeper until the process stops.
pub async fn run_sweeper(ctx: Ctx, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warned: Option<DateTime<Utc>> = None;
    let mut last_profiles_sweep: Option<DateTime<Utc>> = None;
    loop {
        tick.tick().await;
        // Lesson-time windows open and close on this tick.
        match ctx.profiles.timetable_tick().await {
            Ok(r) if r.changed > 0 || r.installs > 0 || r.removals > 0 => {
                tracing::info!(changed = r.changed, installs = r.installs, removals = r.removals, drifting = r.drifting, "timetable")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "timetable tick failed"),
        }
        if last_profiles_sweep.is_none_or(|t| ctx.now() - t >= crate::services::profiles::sweep::SMART_REFRESH_EVERY) {
            if let Err(e) = ctx.profiles.profiles_sweep().await {
                tracing::warn!(error = %e, "profiles sweep failed");
            }
            last_profiles_sweep = Some(ctx.now());
        }
        // Apple School Manager tokens due a sync (each in a task of its own).
        if let Err(e) = ctx.ade.sync_due().await {
            tracing::warn!(error = %e, "Apple School Manager sync check failed");
        }
        // Devices left waiting in Setup Assistant past ade_setup_timeout are let go.
        if let Err(e) = ctx.devices.release_overdue_setups().await {
            tracing::warn!(error = %e, "setup timeout check failed");
        }
        match ctx.push.sweep_once().await {
            Ok(r) if r.expired > 0 || r.repushed > 0 => {
                tracing::info!(expired = r.expired, repushed = r.repushed, delivered = r.delivered, "sweeper")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper tick failed"),
        }
        if last_warned.is_none_or(|t| ctx.now() - t >= chrono::Duration::hours(1)) {
            if let Err(e) = ctx.push.warn_push_cert_expiry().await {
                tracing::warn!(error = %e, "push certificate expiry check failed");
            }
            if let Err(e) = ctx.ade.warn_token_expiry().await {
                tracing::warn!(error = %e, "Apple School Manager token expiry check failed");
            }
            last_warned = Some(ctx.now());
        }
    }
}
