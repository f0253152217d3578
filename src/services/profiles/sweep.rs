//! The profiles' share of the sweeper: keep smart groups current, and ask devices for their
//! security state and profile list once a day (compliance and reconcile read the answers).
//! The timetable has its own tick ([`Profiles::timetable_tick`]), run every sweeper tick.

use chrono::Duration;
use serde::Serialize;

use super::reconcile::RECONCILE_ACTOR;
use crate::error::Result;
use crate::protocol::command::{Command, ProfileList};
use crate::services::profiles::Profiles;
use crate::services::push::SWEEP_BATCH;

/// How often a device is asked for SecurityInfo and ProfileList.
pub const CHECK_EVERY: Duration = Duration::hours(24);
/// How often the sweeper re-evaluates smart groups (the register's holders change without
/// the device saying anything).
pub const SMART_REFRESH_EVERY: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProfilesSweep {
    /// Devices whose smart-group memberships changed.
    pub regrouped: usize,
    /// Devices asked for SecurityInfo and ProfileList.
    pub checked: usize,
}

impl Profiles {
    /// Re-evaluate smart groups (reconciling devices that moved) and queue the daily checks.
    pub async fn profiles_sweep(&self) -> Result<ProfilesSweep> {
        let moved = self.refresh_smart_groups(None).await?;
        if !moved.is_empty() {
            self.reconcile_and_wake(&moved).await?;
        }
        let checked = self.request_periodic_checks().await?;
        Ok(ProfilesSweep { regrouped: moved.len(), checked })
    }

    /// Ask devices whose security state is a day old for SecurityInfo and ProfileList, at most
    /// a sweep batch at a time. The commands expire after a day, so an absent device does not
    /// pile them up.
    pub async fn request_periodic_checks(&self) -> Result<usize> {
        let now = self.clock.now();
        let due = self.store.devices_due_check(now - CHECK_EVERY, SWEEP_BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        self.store.mark_checked(&due, now).await?;
        let expires = Some(now + CHECK_EVERY);
        self.commands.queue_command(RECONCILE_ACTOR, &Command::SecurityInfo, &due, expires).await?;
        self.commands.queue_command(RECONCILE_ACTOR, &Command::ProfileList(ProfileList::default()), &due, expires).await?;
        self.wake(due.clone());
        Ok(due.len())
    }
}
