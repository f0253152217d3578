//! Which ADE profile each device from Apple School Manager gets, and giving it to them.
//!
//! Each token has rules: a default profile, and rules by device family, model or a list of
//! serials, the first match winning. After each sync, every device ASM lists that has no profile
//! yet, or an older version of the one its rule names, is assigned it: the profile is defined
//! with Apple once per version of its settings (`POST /profile`), then assigned in batches of at
//! most 1000 (`PUT /profile/devices`). Each device's answer is kept; `FAILED`, `NOT_ACCESSIBLE`
//! and `THROTTLED` are tried again later. A device given a profile outside Lanyard (in ASM, or
//! by the previous MDM) is left alone unless assigned by hand.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::Ade;
use crate::apple::ade::{AdeClient, PAGE_LIMIT};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::store::{AdeAssignCandidate, AdeAssignResult};

/// A token's assignment rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRules {
    /// The profile of a device no rule matches.
    #[serde(default)]
    pub default_profile: Option<Uuid>,
    /// Tried in order; the first that matches names the profile.
    #[serde(default)]
    pub rules: Vec<AssignmentRule>,
}

/// One rule: every condition given must hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRule {
    pub profile: Uuid,
    /// ASM's `device_family`: `iPad`, `iPhone`, `Mac`, `AppleTV`...
    #[serde(default)]
    pub device_family: Option<String>,
    /// Part of ASM's model name, e.g. `iPad (10th generation)` or just `iPad Air`.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serials: Option<Vec<String>>,
}

/// What an assignment run did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct AssignReport {
    /// Serial -> Apple's answer (`SUCCESS`, `NOT_ACCESSIBLE`, `FAILED`, `THROTTLED`, or
    /// `NOT_IN_ASM` for a serial no token lists).
    pub devices: BTreeMap<String, String>,
    pub assigned: usize,
    pub failed: usize,
    /// Profiles defined with Apple in this run.
    pub defined: usize,
}

impl AssignmentRules {
    pub fn parse(text: Option<&str>) -> Result<AssignmentRules> {
        match text {
            None => Ok(AssignmentRules::default()),
            Some(t) => serde_json::from_str(t).map_err(Error::internal),
        }
    }

    /// True when these rules name the profile.
    pub fn names(&self, profile: Uuid) -> bool {
        self.default_profile == Some(profile) || self.rules.iter().any(|r| r.profile == profile)
    }

    /// The profile for a device.
    pub fn pick(&self, d: &AdeAssignCandidate) -> Option<Uuid> {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        let contains = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref().is_some_and(|h| h.to_lowercase().contains(&w.to_lowercase())))
        };
        self.rules
            .iter()
            .find(|r| {
                eq(&r.device_family, &d.device_family)
                    && contains(&r.model, &d.model)
                    && r.serials.as_ref().is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(&d.serial_number)))
            })
            .map(|r| r.profile)
            .or(self.default_profile)
    }
}

/// How long before a refused serial is tried again.
fn retry_after(result: &str, throttle_secs: Option<u64>) -> Duration {
    match result {
        "THROTTLED" => Duration::seconds(throttle_secs.unwrap_or(60).clamp(1, 3600) as i64),
        "NOT_ACCESSIBLE" => Duration::hours(24),
        _ => Duration::hours(1),
    }
}

impl Ade {
    pub async fn assignment_rules(&self, token: Uuid) -> Result<AssignmentRules> {
        let t = self.store.ade_token(token).await?.ok_or_else(|| Error::not_found(format!("no Apple School Manager token {token}")))?;
        AssignmentRules::parse(t.assignment.as_deref())
    }

    /// Set a token's rules; every profile they name must exist.
    pub async fn set_assignment_rules(&self, actor: &Actor, token: Uuid, rules: AssignmentRules) -> Result<AssignmentRules> {
        let known: Vec<Uuid> = self.store.ade_profiles().await?.iter().map(|p| p.id).collect();
        for (i, id) in rules.default_profile.iter().chain(rules.rules.iter().map(|r| &r.profile)).enumerate() {
            if !known.contains(id) {
                let field = if i == 0 && rules.default_profile.is_some() { "default_profile".to_owned() } else { "rules".to_owned() };
                return Err(Error::unprocessable(field, format!("no ADE profile {id}")));
            }
        }
        if let Some(i) = rules.rules.iter().position(|r| r.device_family.is_none() && r.model.is_none() && r.serials.is_none()) {
            return Err(Error::unprocessable(
                "rules",
                format!("rule {} has no condition: use default_profile for every other device", i + 1),
            ));
        }
        let text = serde_json::to_string(&rules).map_err(Error::internal)?;
        let audit = self.audit.audit_entry(actor, "ade.assignment.set", Some(&token.to_string()), json!(rules));
        if !self.store.set_ade_assignment(token, Some(&text), audit).await? {
            return Err(Error::not_found(format!("no Apple School Manager token {token}")));
        }
        Ok(rules)
    }

    /// The profile's uuid with Apple for this token, defining it (again) when its settings changed.
    async fn definition(
        &self,
        client: &AdeClient,
        token: Uuid,
        profile: Uuid,
        defined: &mut usize,
    ) -> Result<std::result::Result<String, String>> {
        let p = self.profile(profile).await?;
        let body = self.apple_json(&p.name, &p.settings);
        let hash = hex::encode(openssl::sha::sha256(body.to_string().as_bytes()));
        if let Some((_, _, uuid)) =
            self.store.ade_profile_definitions(token).await?.into_iter().find(|(id, h, _)| *id == profile && *h == hash)
        {
            return Ok(Ok(uuid));
        }
        let mut with_devices = body;
        with_devices["devices"] = json!([]);
        match client.define_profile(&with_devices).await {
            Ok(r) => match r.profile_uuid {
                Some(uuid) => {
                    self.store.put_ade_profile_definition(profile, token, &hash, &uuid, self.clock.now()).await?;
                    *defined += 1;
                    Ok(Ok(uuid))
                }
                None => Ok(Err("Apple defined the profile but returned no profile_uuid".into())),
            },
            Err(e) => Ok(Err(format!("Apple refused the ADE profile {:?}: {e}", p.name))),
        }
    }

    /// Assign `profile` to these serials of `token` now, recording each answer.
    async fn assign_serials(
        &self,
        client: &AdeClient,
        token: Uuid,
        profile: Uuid,
        serials: &[String],
        report: &mut AssignReport,
    ) -> Result<std::result::Result<(), String>> {
        let uuid = match self.definition(client, token, profile, &mut report.defined).await? {
            Ok(u) => u,
            Err(e) => return Ok(Err(e)),
        };
        for chunk in serials.chunks(PAGE_LIMIT) {
            let answer = match client.assign_profile(&uuid, chunk).await {
                Ok(a) => a,
                Err(e) => return Ok(Err(format!("assigning the ADE profile: {e}"))),
            };
            let now = self.clock.now();
            let results: Vec<AdeAssignResult> = chunk
                .iter()
                .map(|serial| {
                    let result = answer.devices.get(serial).cloned().unwrap_or_else(|| "FAILED".to_owned());
                    let retry_at = (result != "SUCCESS").then(|| now + retry_after(&result, answer.retry_after_seconds));
                    AdeAssignResult { serial_number: serial.clone(), profile_id: profile, profile_uuid: uuid.clone(), result, retry_at }
                })
                .collect();
            for r in &results {
                if r.result == "SUCCESS" {
                    report.assigned += 1;
                } else {
                    report.failed += 1;
                }
                report.devices.insert(r.serial_number.clone(), r.result.clone());
            }
            self.store.record_ade_assignments(&results, now).await?;
        }
        Ok(Ok(()))
    }

    /// After a sync: give each device its rule's profile where it has none (or an older version).
    pub(crate) async fn assign_by_rules(&self, client: &AdeClient, token: Uuid) -> Result<std::result::Result<AssignReport, String>> {
        let rules = self.assignment_rules(token).await?;
        let mut report = AssignReport::default();
        if rules == AssignmentRules::default() {
            return Ok(Ok(report));
        }
        let now = self.clock.now();
        let definitions = self.store.ade_profile_definitions(token).await?;
        let ours = |uuid: &str| definitions.iter().find(|(_, _, u)| u == uuid).map(|(id, _, _)| *id);
        // Each device's rule's profile, with the profile ASM has for it now.
        let mut wanted: BTreeMap<Uuid, Vec<(String, Option<String>)>> = BTreeMap::new();
        for d in self.store.ade_assignment_candidates(token).await? {
            let Some(profile) = rules.pick(&d) else { continue };
            if d.assign_retry_at.is_some_and(|at| at > now) {
                continue;
            }
            let current = d.profile_uuid.filter(|u| !u.is_empty() && d.profile_status.as_deref() != Some("removed"));
            if current.as_deref().is_some_and(|u| ours(u).is_none()) {
                continue; // given a profile outside Lanyard: left alone
            }
            wanted.entry(profile).or_default().push((d.serial_number, current));
        }
        for (profile, devices) in wanted {
            let uuid = match self.definition(client, token, profile, &mut report.defined).await? {
                Ok(u) => u,
                Err(e) => return Ok(Err(e)),
            };
            // Those without this version of the profile.
            let todo: Vec<String> =
                devices.into_iter().filter(|(_, current)| current.as_deref() != Some(uuid.as_str())).map(|(s, _)| s).collect();
            if let Err(e) = self.assign_serials(client, token, profile, &todo, &mut report).await? {
                return Ok(Err(e));
            }
        }
        Ok(Ok(report))
    }

    /// Assign a profile to these serials by hand (whatever their rules say), across tokens.
    pub async fn assign_profile(&self, actor: &Actor, profile: Uuid, serials: Vec<String>) -> Result<AssignReport> {
        let p = self.profile(profile).await?;
        if serials.is_empty() || serials.len() > 10_000 {
            return Err(Error::unprocessable("serials", "1 to 10,000 serial numbers"));
        }
        let tokens = self.store.ade_device_tokens(&serials).await?;
        let mut report = AssignReport::default();
        let mut by_token: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
        for s in &serials {
            match tokens.iter().find(|(serial, _)| serial.eq_ignore_ascii_case(s)) {
                Some((serial, t)) => by_token.entry(*t).or_default().push(serial.clone()),
                None => {
                    report.devices.insert(s.clone(), "NOT_IN_ASM".into());
                    report.failed += 1;
                }
            }
        }
        for (token, serials) in by_token {
            let rec =
                self.store.ade_token(token).await?.ok_or_else(|| Error::not_found(format!("no Apple School Manager token {token}")))?;
            let client = self.client(self.secrets(&rec)?)?;
            if let Err(e) = self.assign_serials(&client, token, profile, &serials, &mut report).await? {
                return Err(Error::Unavailable(e));
            }
        }
        self.audit
            .audit(
                actor,
                "ade.profile.assign",
                Some(&profile.to_string()),
                json!({"name": p.name, "serials": serials, "assigned": report.assigned, "failed": report.failed}),
            )
            .await?;
        Ok(report)
    }
}
