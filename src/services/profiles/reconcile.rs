//! Reconcile: bring each device to its intended profiles.
//!
//! A device's intended profiles are those assigned to its groups, plus lesson-time profiles
//! whose window is open. Reconcile installs what is missing or outdated and removes what Lanyard
//! installed that is no longer intended. It never touches a profile Lanyard did not install
//! (the enrolment profile, anything a person installed by hand), and never removes anything from
//! a device on legal hold.
//!
//! What a device has is known from its answers: a ProfileList result replaces the list, an
//! acknowledged InstallProfile adds (and marks it Lanyard's, at that version), an acknowledged
//! RemoveProfile removes. Until a removal is acknowledged the profile counts as installed (fail
//! closed). A command still in the queue is not sent twice; one the device refused is tried
//! again after a back-off (15 minutes, then an hour, 4 hours, a day).
//!
//! Reconcile runs after enrolment (when the first ProfileList arrives), on membership and
//! assignment changes, when a profile gets a new version, on every profile command result, at
//! each timetable change, and from the periodic ProfileList refresh.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use plist::Value;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::protocol::command::{Command, InstallProfile, ProfileList, RemoveProfile};
use crate::protocol::report::{CommandReport, CommandStatus};
use crate::services::profiles::Profiles;
use crate::services::supervision::{KeyInForce, not_in_force};
use crate::store::{DeviceProfileRecord, ProfileCommandRecord, ProfileCommandState, RecordedResult, ScheduleRecord};

/// How far back reconcile reads the commands it queued.
const COMMAND_HISTORY: Duration = Duration::days(30);
/// Wait this long before trying a refused install or removal again, by how many times in a
/// row it was refused (1, 2, 3, 4+).
pub const RETRY_BACKOFF_MINUTES: [i64; 4] = [15, 60, 240, 1440];
/// Who reconcile's commands are queued as.
pub const RECONCILE_ACTOR: &str = "system:reconcile";

/// A profile a device should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intended {
    pub profile_id: Uuid,
    pub version: i64,
    pub identifier: String,
    /// Groups (and schedules) that give it.
    pub via: Vec<String>,
}

/// What one reconcile pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub devices: usize,
    pub installs: usize,
    pub removals: usize,
    /// Removals not queued because the device is on legal hold.
    pub held_back: usize,
    /// Devices that got commands.
    pub woken: Vec<String>,
}

/// A planned action for one device.
enum Plan {
    Install { profile_id: Uuid, version: i64, identifier: String },
    Remove { identifier: String, profile_id: Option<Uuid> },
}

/// How often in a row the latest commands of `action` on `identifier` were refused, and when
/// the last refusal was.
fn refusals(history: &[ProfileCommandState], action: &str, identifier: &str) -> (usize, Option<DateTime<Utc>>) {
    let mut count = 0;
    let mut last = None;
    for c in history.iter().rev().filter(|c| c.command.action == action && c.command.identifier == identifier) {
        match c.target_status.as_str() {
            "error" => {
                count += 1;
                last = last.or(c.command.finished_at.or(Some(c.command.queued_at)));
            }
            "acknowledged" => break,
            _ => {}
        }
    }
    (count, last)
}

fn backoff_elapsed(history: &[ProfileCommandState], action: &str, identifier: &str, now: DateTime<Utc>) -> bool {
    let (count, last) = refusals(history, action, identifier);
    match (count, last) {
        (0, _) | (_, None) => true,
        (n, Some(at)) => now - at >= Duration::minutes(RETRY_BACKOFF_MINUTES[(n - 1).min(RETRY_BACKOFF_MINUTES.len() - 1)]),
    }
}

/// The latest pending command on `identifier`, if any.
fn pending<'a>(history: &'a [ProfileCommandState], identifier: &str, now: DateTime<Utc>) -> Option<&'a ProfileCommandState> {
    history.iter().rev().find(|c| c.command.identifier == identifier && c.is_pending(now))
}

/// The error text of a report, for the device's profile view.
fn report_error(report: &CommandReport) -> String {
    report.error_summary().unwrap_or_else(|| format!("the device answered {}", report.status))
}

impl Profiles {
    /// The profiles a device should have now: assigned to its groups, plus scheduled ones whose
    /// lesson window the timetable tick has opened.
    pub async fn intended_profiles(&self, udid: &str) -> Result<Vec<Intended>> {
        let schedules = self.store.list_schedules().await?;
        self.intended_profiles_with(udid, &schedules).await
    }

    /// [`Profiles::intended_profiles`] with the live schedules already read (once per batch).
    pub async fn intended_profiles_with(&self, udid: &str, schedules: &[ScheduleRecord]) -> Result<Vec<Intended>> {
        let groups = self.store.groups_of_device(udid).await?;
        let mut by_profile: BTreeMap<Uuid, Intended> = BTreeMap::new();
        let mut names: HashMap<Uuid, String> = HashMap::new();
        for g in &groups {
            let name = self.store.group(*g).await?.map(|g| g.name).unwrap_or_default();
            for pid in self.store.group_profile_ids(*g).await? {
                let Some(p) = self.store.profile(pid).await?.filter(|p| p.deleted_at.is_none()) else { continue };
                by_profile
                    .entry(p.id)
                    .or_insert_with(|| Intended { profile_id: p.id, version: p.version, identifier: p.identifier.clone(), via: Vec::new() })
                    .via
                    .push(format!("group {name}"));
            }
            names.insert(*g, name);
        }
        for s in schedules {
            if !s.active || !groups.contains(&s.group_id) {
                continue;
            }
            let Some(p) = self.store.profile(s.profile_id).await?.filter(|p| p.deleted_at.is_none()) else { continue };
            let name = names.get(&s.group_id).cloned().unwrap_or_default();
            by_profile
                .entry(p.id)
                .or_insert_with(|| Intended { profile_id: p.id, version: p.version, identifier: p.identifier.clone(), via: Vec::new() })
                .via
                .push(format!("lessons for group {name}"));
        }
        Ok(by_profile.into_values().collect())
    }

    /// Reconcile devices and push those that got commands; re-token the DDM sets of those whose
    /// declarations changed with it (group declarations follow membership like profiles).
    pub async fn reconcile_and_wake(&self, udids: &[String]) -> Result<()> {
        let report = self.reconcile_devices(udids).await?;
        self.wake(report.woken);
        self.ddm.devices_changed(udids).await?;
        Ok(())
    }

    /// Push devices in the background (their commands are queued either way; the sweeper
    /// re-pushes if this does not reach them).
    pub fn wake(&self, udids: Vec<String>) {
        if udids.is_empty() {
            return;
        }
        let push = self.push.clone();
        tokio::spawn(async move {
            if let Err(e) = push.push_devices(&udids).await {
                tracing::debug!(error = %e, devices = udids.len(), "could not push after reconcile; the sweeper will retry");
            }
        });
    }

    /// Queue what each device needs: one InstallProfile per profile version and one
    /// RemoveProfile per identifier, shared by every device that needs it.
    pub async fn reconcile_devices(&self, udids: &[String]) -> Result<ReconcileReport> {
        let now = self.clock.now();
        let mut report = ReconcileReport::default();
        let mut installs: BTreeMap<(Uuid, i64, String), Vec<String>> = BTreeMap::new();
        let mut removals: BTreeMap<(String, Option<Uuid>), Vec<String>> = BTreeMap::new();
        let mut seen = HashSet::new();
        let schedules = self.store.list_schedules().await?;
        for udid in udids {
            if !seen.insert(udid.as_str()) {
                continue;
            }
            let Some(device) = self.store.device(udid).await? else { continue };
            if !device.enrolled {
                continue;
            }
            report.devices += 1;
            for plan in self.plan_device(udid, &schedules, now, &mut report).await? {
                match plan {
                    Plan::Install { profile_id, version, identifier } => {
                        installs.entry((profile_id, version, identifier)).or_default().push(udid.clone())
                    }
                    Plan::Remove { identifier, profile_id } => removals.entry((identifier, profile_id)).or_default().push(udid.clone()),
                }
            }
        }
        let mut woken = std::collections::BTreeSet::new();
        for ((profile_id, version, identifier), targets) in installs {
            let Some(v) = self.store.profile_version(profile_id, version).await? else { continue };
            let payload = self.signed_for_devices(&v.xml)?;
            let cmd = Command::InstallProfile(InstallProfile { payload });
            self.queue_profile_command(&cmd, &targets, "install", &identifier, Some(profile_id), Some(version), now).await?;
            report.installs += targets.len();
            woken.extend(targets);
        }
        for ((identifier, profile_id), targets) in removals {
            let cmd = Command::RemoveProfile(RemoveProfile { identifier: identifier.clone() });
            self.queue_profile_command(&cmd, &targets, "remove", &identifier, profile_id, None, now).await?;
            report.removals += targets.len();
            woken.extend(targets);
        }
        report.woken = woken.into_iter().collect();
        if report.installs + report.removals > 0 {
            tracing::info!(
                devices = report.devices,
                installs = report.installs,
                removals = report.removals,
                "reconcile queued profile commands"
            );
        }
        Ok(report)
    }

    /// What one device needs.
    async fn plan_device(
        &self,
        udid: &str,
        schedules: &[ScheduleRecord],
        now: DateTime<Utc>,
        report: &mut ReconcileReport,
    ) -> Result<Vec<Plan>> {
        let intended = self.intended_profiles_with(udid, schedules).await?;
        let have: HashMap<String, DeviceProfileRecord> =
            self.store.device_profiles(udid).await?.into_iter().map(|r| (r.identifier.clone(), r)).collect();
        let history = self.store.profile_command_states(udid, now - COMMAND_HISTORY).await?;
        let mut plans = Vec::new();
        for p in &intended {
            let in_flight = pending(&history, &p.identifier, now);
            if in_flight.is_some_and(|c| c.command.action == "install" && c.command.version == Some(p.version)) {
                continue;
            }
            let removing = in_flight.is_some_and(|c| c.command.action == "remove");
            let current =
                have.get(&p.identifier).is_some_and(|r| r.lanyard && r.profile_id == Some(p.profile_id) && r.version == Some(p.version));
            if current && !removing {
                continue;
            }
            if !backoff_elapsed(&history, "install", &p.identifier, now) {
                continue;
            }
            plans.push(Plan::Install { profile_id: p.profile_id, version: p.version, identifier: p.identifier.clone() });
        }
        let wanted: HashSet<&str> = intended.iter().map(|p| p.identifier.as_str()).collect();
        // Lanyard's profiles on the device, and installs still on their way to it (a window
        // that closed before the device came to fetch its install), that are no longer wanted.
        let mut unwanted: BTreeMap<String, Option<Uuid>> = have
            .values()
            .filter(|r| r.lanyard && !wanted.contains(r.identifier.as_str()))
            .map(|r| (r.identifier.clone(), r.profile_id))
            .collect();
        for c in history.iter().filter(|c| c.is_pending(now) && c.command.action == "install") {
            if !wanted.contains(c.command.identifier.as_str()) {
                unwanted.entry(c.command.identifier.clone()).or_insert(c.command.profile_id);
            }
        }
        let mut held: Option<Option<(Uuid, i64)>> = None;
        for (identifier, profile_id) in unwanted {
            if pending(&history, &identifier, now).is_some_and(|c| c.command.action == "remove") {
                continue;
            }
            if held.is_none() {
                held = Some(self.store.legal_hold(udid).await?);
            }
            if let Some(Some((case_id, _))) = held {
                tracing::warn!(udid, %case_id, identifier, "device is on legal hold: not removing a profile that is no longer assigned");
                report.held_back += 1;
                continue;
            }
            if !backoff_elapsed(&history, "remove", &identifier, now) {
                continue;
            }
            plans.push(Plan::Remove { identifier, profile_id });
        }
        Ok(plans)
    }

    /// Record what a command is for, then queue it (so its answer always finds the record).
    #[allow(clippy::too_many_arguments)]
    async fn queue_profile_command(
        &self,
        cmd: &Command,
        targets: &[String],
        action: &str,
        identifier: &str,
        profile_id: Option<Uuid>,
        version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let uuid = Uuid::new_v4().to_string();
        let rows: Vec<ProfileCommandRecord> = targets
            .iter()
            .map(|udid| ProfileCommandRecord {
                command_uuid: uuid.clone(),
                udid: udid.clone(),
                action: action.to_owned(),
                identifier: identifier.to_owned(),
                profile_id,
                version,
                queued_at: now,
                outcome: None,
                error: None,
                finished_at: None,
            })
            .collect();
        self.store.record_profile_commands(&rows).await?;
        self.commands.queue_command_as(&uuid, RECONCILE_ACTOR, cmd, targets, None, None).await
    }

    /// A device answered a command: keep Lanyard's view of its profiles, escrow a FileVault
    /// key, keep smart groups current, and reconcile. Called for every recorded result; errors
    /// are logged, never returned to the device (its report is already stored).
    pub async fn profiles_after_report(&self, udid: &str, command_uuid: &str, done: &RecordedResult, report: &CommandReport) {
        let request_type = done.request_type.as_str();
        if let Err(e) = self.profiles_after_report_inner(udid, command_uuid, done, report).await {
            tracing::error!(udid, command_uuid, request_type, error = %e, "profiles: could not process a device's report");
        }
    }

    async fn profiles_after_report_inner(
        &self,
        udid: &str,
        command_uuid: &str,
        done: &RecordedResult,
        report: &CommandReport,
    ) -> Result<()> {
        let request_type = done.request_type.as_str();
        if !report.status.is_final() {
            return Ok(());
        }
        let acknowledged = report.status == CommandStatus::Acknowledged;
        let now = self.clock.now();
        match request_type {
            "InstallProfile" | "RemoveProfile" => {
                let Some(pc) = self.store.profile_command(command_uuid, udid).await? else {
                    return Ok(()); // an operator's own InstallProfile/RemoveProfile
                };
                let error = (!acknowledged).then(|| report_error(report));
                let outcome = if acknowledged { "acknowledged" } else { "error" };
                self.store.finish_profile_command(command_uuid, udid, outcome, error.as_deref(), now).await?;
                match (pc.action.as_str(), acknowledged) {
                    ("install", true) => {
                        let v = match (pc.profile_id, pc.version) {
                            (Some(p), Some(v)) => self.store.profile_version(p, v).await?,
                            _ => None,
                        };
                        if v.as_ref().is_some_and(|v| v.payload_types.contains("com.apple.security.FDERecoveryKeyEscrow")) {
                            // A Mac escrows its recovery key once it has the escrow payload: ask.
                            self.commands.queue_command(RECONCILE_ACTOR, &Command::SecurityInfo, &[udid.to_owned()], None).await?;
                        }
                        self.store
                            .put_device_profile(&DeviceProfileRecord {
                                udid: udid.to_owned(),
                                identifier: pc.identifier.clone(),
                                payload_uuid: v.as_ref().map(|v| v.payload_uuid.clone()),
                                display_name: v.as_ref().and_then(|v| v.display_name.clone()),
                                profile_id: pc.profile_id,
                                version: pc.version,
                                lanyard: true,
                                updated_at: now,
                            })
                            .await?;
                    }
                    ("remove", true) => self.store.remove_device_profile(udid, &pc.identifier).await?,
                    ("remove", false) => {
                        // Fail closed: it stays installed as far as Lanyard knows. Ask what the
                        // device really has, in case it was already gone.
                        tracing::warn!(
                            udid,
                            identifier = pc.identifier,
                            error = error.as_deref().unwrap_or(""),
                            "device refused to remove a profile; it stays"
                        );
                        self.commands
                            .queue_command(RECONCILE_ACTOR, &Command::ProfileList(ProfileList::default()), &[udid.to_owned()], None)
                            .await?;
                    }
                    _ => {
                        tracing::warn!(
                            udid,
                            identifier = pc.identifier,
                            error = error.as_deref().unwrap_or(""),
                            "device refused to install a profile"
                        );
                    }
                }
                self.reconcile_devices(&[udid.to_owned()]).await?;
            }
            "ProfileList" if acknowledged => {
                let list = profile_list(report, udid, now);
                self.store.sync_device_profiles(udid, &list).await?;
                self.reconcile_devices(&[udid.to_owned()]).await?;
            }
            "SecurityInfo" if acknowledged => self.escrow_filevault_key(udid, report).await?,
            "DeviceInformation" if acknowledged && done.smart_groups && !self.refresh_smart_groups(Some(udid)).await?.is_empty() => {
                self.reconcile_devices(&[udid.to_owned()]).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A device's first TokenUpdate: forget profiles recorded for an earlier enrolment (removing
    /// the MDM profile removed them) and work out its smart groups. Reconcile follows when its
    /// first ProfileList arrives.
    pub async fn profiles_device_enrolled(&self, udid: &str) {
        let result = async {
            self.store.clear_device_profiles(udid).await?;
            self.refresh_smart_groups(Some(udid)).await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(udid, error = %e, "profiles: could not prepare a new enrolment");
        }
    }
}

/// The profiles a ProfileList answer lists.
fn profile_list(report: &CommandReport, udid: &str, now: DateTime<Utc>) -> Vec<DeviceProfileRecord> {
    let items = report.raw.get("ProfileList").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out: Vec<DeviceProfileRecord> = items
        .iter()
        .filter_map(Value::as_dictionary)
        .filter_map(|d| {
            let identifier = d.get("PayloadIdentifier")?.as_string()?.to_owned();
            Some(DeviceProfileRecord {
                udid: udid.to_owned(),
                identifier,
                payload_uuid: d.get("PayloadUUID").and_then(Value::as_string).map(str::to_owned),
                display_name: d.get("PayloadDisplayName").and_then(Value::as_string).map(str::to_owned),
                profile_id: None,
                version: None,
                lanyard: false,
                updated_at: now,
            })
        })
        .collect();
    out.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    out.dedup_by(|a, b| a.identifier == b.identifier);
    out
}

/// A device's profiles as the API shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceProfiles {
    pub udid: String,
    /// From the device's DeviceInformation (`IsSupervised`); null until it reports.
    pub supervised: Option<bool>,
    #[schema(inline)]
    pub groups: Vec<super::library::GroupRef>,
    pub on_legal_hold: bool,
    #[schema(inline)]
    pub intended: Vec<IntendedView>,
    #[schema(inline)]
    pub installed: Vec<InstalledView>,
    #[schema(inline)]
    pub pending: Vec<PendingView>,
    /// The latest refusal per profile, when it has not since succeeded.
    #[schema(inline)]
    pub failed: Vec<PendingView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntendedView {
    pub profile_id: Uuid,
    pub name: String,
    pub version: i64,
    pub identifier: String,
    pub via: Vec<String>,
    /// `installed`, `outdated`, `pending_install`, `install_failed` or `missing`.
    #[schema(schema_with = crate::schema::enums::intended_state)]
    pub state: String,
    /// Its settings that need a supervised device, when this device is not supervised
    /// (`not_in_force`) or has not said yet (`unknown`); empty on a supervised device.
    pub not_in_force: Vec<KeyInForce>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstalledView {
    pub identifier: String,
    pub display_name: Option<String>,
    /// Lanyard installed it (only these are ever removed by Lanyard).
    pub managed_by_lanyard: bool,
    pub profile_id: Option<Uuid>,
    pub name: Option<String>,
    pub version: Option<i64>,
    pub intended: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingView {
    pub command_uuid: String,
    #[schema(schema_with = crate::schema::enums::profile_action)]
    pub action: String,
    pub identifier: String,
    pub profile_id: Option<Uuid>,
    pub version: Option<i64>,
    pub status: String,
    pub queued_at: DateTime<Utc>,
    pub error: Option<String>,
}

impl From<&ProfileCommandState> for PendingView {
    fn from(c: &ProfileCommandState) -> Self {
        PendingView {
            command_uuid: c.command.command_uuid.clone(),
            action: c.command.action.clone(),
            identifier: c.command.identifier.clone(),
            profile_id: c.command.profile_id,
            version: c.command.version,
            status: c.target_status.clone(),
            queued_at: c.command.queued_at,
            error: c.command.error.clone(),
        }
    }
}

/// A device's state for one profile, for the per-profile status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceProfileState {
    pub udid: String,
    pub device_name: Option<String>,
    pub intended: bool,
    /// `installed`, `outdated`, `pending_install`, `pending_removal`, `install_failed`,
    /// `removal_failed`, `missing` (intended, nothing queued yet), `kept_legal_hold` (no longer
    /// intended, kept because the device is on legal hold) or `removal_due`.
    #[schema(schema_with = crate::schema::enums::device_profile_state)]
    pub state: String,
    pub installed_version: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileStatus {
    pub profile_id: Uuid,
    pub name: String,
    pub version: i64,
    pub counts: BTreeMap<String, usize>,
    #[schema(inline)]
    pub devices: Vec<DeviceProfileState>,
}

/// The state of one profile on one device, from what Lanyard knows.
fn state_of(
    intended: bool,
    version: i64,
    installed: Option<&DeviceProfileRecord>,
    history: &[ProfileCommandState],
    identifier: &str,
    held: bool,
    now: DateTime<Utc>,
) -> (String, Option<String>) {
    let in_flight = pending(history, identifier, now);
    let last = history.iter().rev().find(|c| c.command.identifier == identifier && !c.is_pending(now));
    let last_error = last.filter(|c| c.target_status == "error").and_then(|c| c.command.error.clone());
    let state = match (intended, installed, in_flight) {
        (_, _, Some(c)) if c.command.action == "install" => "pending_install",
        (_, _, Some(_)) => "pending_removal",
        (true, Some(r), None) if r.lanyard && r.version == Some(version) => "installed",
        (true, _, None) if last.is_some_and(|c| c.target_status == "error" && c.command.action == "install") => "install_failed",
        (true, Some(r), None) if r.lanyard => "outdated",
        (true, _, None) => "missing",
        (false, Some(_), None) if last.is_some_and(|c| c.target_status == "error" && c.command.action == "remove") => "removal_failed",
        (false, Some(_), None) if held => "kept_legal_hold",
        (false, Some(_), None) => "removal_due",
        (false, None, None) => "not_installed",
    };
    (state.to_owned(), last_error)
}

impl Profiles {
    /// `GET /api/v1/devices/{udid}/profiles`: intended vs installed vs pending.
    pub async fn device_profiles_view(&self, udid: &str) -> Result<DeviceProfiles> {
        let device = self.store.device(udid).await?.ok_or_else(|| Error::not_found(format!("no device with UDID {udid}")))?;
        let now = self.clock.now();
        let intended = self.intended_profiles(udid).await?;
        let mut not_in_force_of = HashMap::new();
        for i in &intended {
            let needs = self.supervision.profile_version_needs(i.profile_id, i.version).await?;
            not_in_force_of.insert(i.profile_id, not_in_force(&needs, &device.platform, device.supervised));
        }
        let installed = self.store.device_profiles(udid).await?;
        let history = self.store.profile_command_states(udid, now - COMMAND_HISTORY).await?;
        let held = self.store.legal_hold(udid).await?.is_some();
        let mut names: HashMap<Uuid, String> = HashMap::new();
        for id in intended.iter().map(|i| i.profile_id).chain(installed.iter().filter_map(|r| r.profile_id)) {
            if let std::collections::hash_map::Entry::Vacant(e) = names.entry(id)
                && let Some(p) = self.store.profile(id).await?
            {
                e.insert(p.name);
            }
        }
        let intended_views = intended
            .iter()
            .map(|i| {
                let r = installed.iter().find(|r| r.identifier == i.identifier);
                let (state, _) = state_of(true, i.version, r, &history, &i.identifier, held, now);
                IntendedView {
                    profile_id: i.profile_id,
                    name: names.get(&i.profile_id).cloned().unwrap_or_default(),
                    version: i.version,
                    identifier: i.identifier.clone(),
                    via: i.via.clone(),
                    state,
                    not_in_force: not_in_force_of.remove(&i.profile_id).unwrap_or_default(),
                }
            })
            .collect();
        let wanted: HashSet<&str> = intended.iter().map(|i| i.identifier.as_str()).collect();
        let installed_views = installed
            .iter()
            .map(|r| InstalledView {
                identifier: r.identifier.clone(),
                display_name: r.display_name.clone(),
                managed_by_lanyard: r.lanyard,
                profile_id: r.profile_id,
                name: r.profile_id.and_then(|p| names.get(&p).cloned()),
                version: r.version,
                intended: wanted.contains(r.identifier.as_str()),
                updated_at: r.updated_at,
            })
            .collect();
        let pending_views = history.iter().filter(|c| c.is_pending(now)).map(PendingView::from).collect();
        let mut failed = Vec::new();
        let mut done: HashSet<(&str, &str)> = HashSet::new();
        for c in history.iter().rev().filter(|c| !c.is_pending(now)) {
            if done.insert((c.command.identifier.as_str(), c.command.action.as_str())) && c.target_status == "error" {
                failed.push(PendingView::from(c));
            }
        }
        Ok(DeviceProfiles {
            udid: udid.to_owned(),
            supervised: device.supervised,
            groups: self.device_group_refs(udid).await?,
            on_legal_hold: held,
            intended: intended_views,
            installed: installed_views,
            pending: pending_views,
            failed,
        })
    }

    /// `GET /api/v1/profiles/{id}/status`: each concerned device's state.
    pub async fn profile_status(&self, id: Uuid) -> Result<ProfileStatus> {
        let p = self.store.profile(id).await?.ok_or_else(|| Error::not_found(format!("no profile {id}")))?;
        let now = self.clock.now();
        let udids = self.devices_concerned_by(id).await?;
        let rows: HashMap<String, DeviceProfileRecord> =
            self.store.profile_device_rows(id).await?.into_iter().map(|r| (r.udid.clone(), r)).collect();
        let history = self.store.profile_command_states_for_profile(id, now - COMMAND_HISTORY).await?;
        let mut devices = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for udid in udids {
            let Some(device) = self.store.device(&udid).await? else { continue };
            let intended = self.intended_profiles(&udid).await?.iter().any(|i| i.profile_id == id);
            let own: Vec<ProfileCommandState> = history.iter().filter(|c| c.command.udid == udid).cloned().collect();
            let held = self.store.legal_hold(&udid).await?.is_some();
            let installed = rows.get(&udid);
            let (state, last_error) = state_of(intended, p.version, installed, &own, &p.identifier, held, now);
            let (state, last_error) = match (installed, state.as_str()) {
                // Before an identifier change, the device's copy is under the old identifier.
                (Some(r), _) if r.identifier != p.identifier => state_of(intended, p.version, Some(r), &own, &r.identifier, held, now),
                _ => (state, last_error),
            };
            *counts.entry(state.clone()).or_default() += 1;
            devices.push(DeviceProfileState {
                udid: udid.clone(),
                device_name: device.device_name,
                intended,
                state,
                installed_version: installed.and_then(|r| r.version),
                last_error,
            });
        }
        Ok(ProfileStatus { profile_id: p.id, name: p.name, version: p.version, counts, devices })
    }
}
