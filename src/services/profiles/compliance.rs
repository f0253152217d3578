//! The compliance report (policy 7.5/7.10 encryption off site, 9.5 passcodes): per enrolled
//! device, from the device's own SecurityInfo and what Lanyard knows it has installed.
//!
//! A device is compliant when its own security state passes the console's rule
//! ([`crate::services::compliance::compliance_problems`]: FileVault on a Mac; a passcode, and so
//! data protection, on an iPad or iPhone; a passcode that meets the policy), every profile
//! intended for it is installed at the current version, and a Mac with FileVault on has its
//! recovery key escrowed to Lanyard. A device that has not yet reported its security state is
//! not compliant here (unknown is not safe; the summary counts it as `security_unknown`).
//!
//! Nor is a device on which settings of its intended profiles are not in force because it is
//! not supervised (Apple's schema says they need supervision: [`crate::services::supervision`]); each
//! such key is listed in `not_in_force`. While a device has not reported whether it is
//! supervised those keys are `unknown`, and the device is not compliant here either, for the
//! same reason (the summary counts it as `supervision_unknown`).
//! SecurityInfo is asked for again every day (the profiles sweep), so the report stays current.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::services::compliance::compliance_problems;
use crate::services::csv::csv_cell;
use crate::services::profiles::Profiles;
use crate::services::supervision::{self, NeedsSupervision, ProfileKeyInForce};
use crate::store::DeviceFilter;
use crate::store::{DeviceRecord, ScheduleRecord};
use uuid::Uuid;

/// A device not seen for this long is counted as stale in the summary.
pub const STALE_AFTER: Duration = Duration::days(7);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComplianceRow {
    pub udid: String,
    pub serial_number: Option<String>,
    pub device_name: Option<String>,
    pub platform: String,
    pub compliant: bool,
    /// FileVault (Mac) or data protection (iPad/iPhone); null until reported.
    pub encrypted: Option<bool>,
    pub filevault_enabled: Option<bool>,
    /// Macs only.
    pub recovery_key_escrowed: Option<bool>,
    pub passcode_present: Option<bool>,
    pub passcode_compliant: Option<bool>,
    pub profiles_installed: bool,
    /// Intended profiles not installed at their current version, by name.
    pub missing_profiles: Vec<String>,
    /// From DeviceInformation (`IsSupervised`); null until the device reports it.
    pub supervised: Option<bool>,
    /// Settings of its intended profiles that need a supervised device: `not_in_force` (the
    /// device is not supervised) or `unknown` (not reported yet), per profile and key.
    #[schema(inline)]
    pub not_in_force: Vec<ProfileKeyInForce>,
    pub last_seen_at: DateTime<Utc>,
    pub security_updated_at: Option<DateTime<Utc>>,
    /// Why it is not compliant, in plain words.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ComplianceSummary {
    pub devices: usize,
    pub compliant: usize,
    pub non_compliant: usize,
    pub not_encrypted: usize,
    pub passcode_not_compliant: usize,
    pub missing_profiles: usize,
    pub recovery_key_not_escrowed: usize,
    pub security_unknown: usize,
    /// Not seen for 7 days (their state may be out of date).
    pub not_seen_7_days: usize,
    /// Not supervised, with settings of their intended profiles not in force.
    pub not_supervised: usize,
    /// Supervision not reported yet, with settings of their intended profiles that need it.
    pub supervision_unknown: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComplianceReport {
    pub generated_at: DateTime<Utc>,
    #[schema(inline)]
    pub summary: ComplianceSummary,
    #[schema(inline)]
    pub items: Vec<ComplianceRow>,
}

pub const CSV_COLUMNS: &[&str] = &[
    "udid",
    "serial_number",
    "device_name",
    "platform",
    "compliant",
    "encrypted",
    "filevault_enabled",
    "recovery_key_escrowed",
    "passcode_present",
    "passcode_compliant",
    "profiles_installed",
    "missing_profiles",
    "last_seen_at",
    "security_updated_at",
    "reasons",
];

impl ComplianceRow {
    pub fn csv_row(&self) -> String {
        let b = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_default();
        let cells = [
            self.udid.clone(),
            self.serial_number.clone().unwrap_or_default(),
            self.device_name.clone().unwrap_or_default(),
            self.platform.clone(),
            self.compliant.to_string(),
            b(self.encrypted),
            b(self.filevault_enabled),
            b(self.recovery_key_escrowed),
            b(self.passcode_present),
            b(self.passcode_compliant),
            self.profiles_installed.to_string(),
            self.missing_profiles.join("; "),
            self.last_seen_at.to_rfc3339(),
            self.security_updated_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            self.reasons.join("; "),
        ];
        cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",")
    }
}

impl Profiles {
    /// For the console: how many settings of its intended profiles are not in force on each
    /// enrolled device known not to be supervised (devices with none are left out). Devices
    /// whose supervision is unknown are not counted, as the console counts nothing it has not
    /// been told.
    pub async fn not_in_force_counts(&self, devices: &[DeviceRecord]) -> Result<HashMap<String, usize>> {
        let mut out = HashMap::new();
        let mut schedules: Option<Vec<ScheduleRecord>> = None;
        let mut needs: HashMap<(Uuid, i64), Arc<Vec<NeedsSupervision>>> = HashMap::new();
        for d in devices.iter().filter(|d| d.enrolled && d.supervised == Some(false)) {
            if schedules.is_none() {
                schedules = Some(self.store.list_schedules().await?);
            }
            let intended = self.intended_profiles_with(&d.udid, schedules.as_deref().unwrap_or_default()).await?;
            let mut n = 0;
            for i in &intended {
                let key = (i.profile_id, i.version);
                if let std::collections::hash_map::Entry::Vacant(e) = needs.entry(key) {
                    e.insert(self.supervision.profile_version_needs(i.profile_id, i.version).await?);
                }
                n += crate::services::supervision::not_in_force(&needs[&key], &d.platform, d.supervised).len();
            }
            if n > 0 {
                out.insert(d.udid.clone(), n);
            }
        }
        Ok(out)
    }

    /// `GET /api/v1/compliance`: every enrolled device.
    pub async fn compliance_report(&self) -> Result<ComplianceReport> {
        let now = self.clock.now();
        let escrowed: HashSet<String> = self.store.escrowed_udids().await?.into_iter().collect();
        let mut filter = DeviceFilter { enrolled: Some(true), limit: 1000, ..Default::default() };
        let mut items = Vec::new();
        let mut names: BTreeMap<uuid::Uuid, String> = BTreeMap::new();
        let mut needs: HashMap<(uuid::Uuid, i64), Arc<Vec<NeedsSupervision>>> = HashMap::new();
        let schedules = self.store.list_schedules().await?;
        loop {
            let page = self.store.list_devices(&filter).await?;
            let last = page.last().map(|d| d.udid.clone());
            for d in page {
                let mac = d.platform == "macOS";
                let encrypted = if mac { d.filevault_enabled.or(d.encrypted) } else { d.encrypted };
                let passcode_compliant =
                    if mac { d.passcode_compliant } else { d.passcode_compliant.or(d.passcode_present.filter(|p| !p)) };
                // The device's own security state: the console's rule, so both say the same.
                let mut reasons: Vec<String> = compliance_problems(&d).into_iter().map(str::to_owned).collect();
                if encrypted.is_none() {
                    reasons.push("security state not reported yet".to_owned());
                }
                let recovery_key_escrowed = mac.then(|| escrowed.contains(&d.udid));
                if mac && d.filevault_enabled == Some(true) && recovery_key_escrowed == Some(false) {
                    reasons.push("FileVault recovery key not escrowed to Lanyard".to_owned());
                }
                let intended = self.intended_profiles_with(&d.udid, &schedules).await?;
                let have = self.store.device_profiles(&d.udid).await?;
                let mut missing = Vec::new();
                for i in &intended {
                    let ok = have.iter().any(|r| r.lanyard && r.profile_id == Some(i.profile_id) && r.version == Some(i.version));
                    if !ok {
                        let name = match names.get(&i.profile_id) {
                            Some(n) => n.clone(),
                            None => {
                                let n = self.store.profile(i.profile_id).await?.map(|p| p.name).unwrap_or_default();
                                names.insert(i.profile_id, n.clone());
                                n
                            }
                        };
                        missing.push(name);
                    }
                }
                if !missing.is_empty() {
                    reasons.push(format!("required profiles not installed: {}", missing.join(", ")));
                }
                // Settings a device applies only when supervised: not in force on this one
                // (not supervised), or perhaps not (not reported yet; unknown is not safe).
                let mut not_in_force = Vec::new();
                if d.supervised != Some(true) {
                    for i in &intended {
                        let key = (i.profile_id, i.version);
                        if let std::collections::hash_map::Entry::Vacant(e) = needs.entry(key) {
                            e.insert(self.supervision.profile_version_needs(i.profile_id, i.version).await?);
                        }
                        let keys = supervision::not_in_force(&needs[&key], &d.platform, d.supervised);
                        if keys.is_empty() {
                            continue;
                        }
                        let name = match names.get(&i.profile_id) {
                            Some(n) => n.clone(),
                            None => {
                                let n = self.store.profile(i.profile_id).await?.map(|p| p.name).unwrap_or_default();
                                names.insert(i.profile_id, n.clone());
                                n
                            }
                        };
                        let labels: Vec<String> = keys.iter().map(|k| k.label()).collect();
                        reasons.push(match d.supervised {
                            Some(false) => format!("{name}: {} {}", labels.join(", "), supervision::NOT_SUPERVISED),
                            _ => format!("{name}: {} {}", labels.join(", "), supervision::SUPERVISION_UNKNOWN),
                        });
                        not_in_force.extend(keys.into_iter().map(|key| ProfileKeyInForce {
                            profile_id: i.profile_id,
                            profile: name.clone(),
                            key,
                        }));
                    }
                }
                items.push(ComplianceRow {
                    compliant: reasons.is_empty(),
                    udid: d.udid,
                    serial_number: d.serial_number,
                    device_name: d.device_name,
                    platform: d.platform,
                    encrypted,
                    filevault_enabled: d.filevault_enabled,
                    recovery_key_escrowed,
                    passcode_present: d.passcode_present,
                    passcode_compliant,
                    profiles_installed: missing.is_empty(),
                    missing_profiles: missing,
                    supervised: d.supervised,
                    not_in_force,
                    last_seen_at: d.last_seen_at,
                    security_updated_at: d.security_updated_at,
                    reasons,
                });
            }
            match last {
                Some(u) => filter.after_udid = Some(u),
                None => break,
            }
        }
        let mut s = ComplianceSummary { devices: items.len(), ..Default::default() };
        for r in &items {
            if r.compliant {
                s.compliant += 1;
            } else {
                s.non_compliant += 1;
            }
            match r.encrypted {
                Some(false) => s.not_encrypted += 1,
                None => s.security_unknown += 1,
                Some(true) => {}
            }
            if r.passcode_compliant == Some(false) {
                s.passcode_not_compliant += 1;
            }
            if !r.profiles_installed {
                s.missing_profiles += 1;
            }
            if r.filevault_enabled == Some(true) && r.recovery_key_escrowed == Some(false) {
                s.recovery_key_not_escrowed += 1;
            }
            if now - r.last_seen_at > STALE_AFTER {
                s.not_seen_7_days += 1;
            }
            if !r.not_in_force.is_empty() {
                match r.supervised {
                    Some(false) => s.not_supervised += 1,
                    _ => s.supervision_unknown += 1,
                }
            }
        }
        Ok(ComplianceReport { generated_at: now, summary: s, items })
    }
}
