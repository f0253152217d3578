//! ADE profiles: what Setup Assistant does on a new iPad from Apple School Manager — supervised,
//! mandatory, not removable, waiting for Lanyard's DeviceConfigured, which panes it skips, whom to
//! call. Checked here the way Apple checks them (`POST /profile`'s 400 codes), so that a mistake
//! is a 422 naming the field before Apple is asked; written to Apple's JSON by [`apple_json`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Ade;
use crate::apple::ade::SKIP_KEYS;
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::store::AdeProfileRecord;

fn yes() -> bool {
    true
}

/// An ADE profile's settings, with the defaults a school wants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdeProfileSettings {
    /// Supervised: every restriction and the web filter apply. Default true.
    #[serde(default = "yes")]
    pub is_supervised: bool,
    /// The device cannot skip enrolment. Default true.
    #[serde(default = "yes")]
    pub is_mandatory: bool,
    /// Whether a pupil may remove management. Default false (needs `is_supervised`).
    #[serde(default)]
    pub is_mdm_removable: bool,
    /// Setup Assistant waits until Lanyard has sent the device's profiles (DeviceConfigured). Default true.
    #[serde(default = "yes")]
    pub await_device_configured: bool,
    /// Allow pairing with a computer (deprecated by Apple from iOS 13). Default false.
    #[serde(default)]
    pub allow_pairing: bool,
    /// Setup Assistant panes to skip: Apple's skip keys.
    #[serde(default)]
    pub skip_setup_items: Vec<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub support_phone_number: Option<String>,
    #[serde(default)]
    pub support_email_address: Option<String>,
    /// ISO 639 language (tvOS, macOS).
    #[serde(default)]
    pub language: Option<String>,
    /// ISO 3166 region (tvOS, macOS).
    #[serde(default)]
    pub region: Option<String>,
    /// Shared iPad.
    #[serde(default)]
    pub is_multi_user: bool,
}

/// `POST /api/v1/ade/profiles` and `PUT .../{id}`: a name and the settings. (Read through a
/// map, because serde's `flatten` would let a misspelt setting through unnoticed.)
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "serde_json::Map<String, Value>")]
pub struct AdeProfileInput {
    pub name: String,
    #[serde(flatten)]
    pub settings: AdeProfileSettings,
}

impl TryFrom<serde_json::Map<String, Value>> for AdeProfileInput {
    type Error = String;

    fn try_from(mut fields: serde_json::Map<String, Value>) -> std::result::Result<Self, String> {
        let name = match fields.remove("name") {
            Some(Value::String(n)) => n,
            Some(_) => return Err("name: expected a string".into()),
            None => return Err("missing field `name`".into()),
        };
        let settings = serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())?;
        Ok(AdeProfileInput { name, settings })
    }
}

/// A profile as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdeProfileInfo {
    pub id: Uuid,
    pub name: String,
    #[serde(flatten)]
    pub settings: AdeProfileSettings,
    /// The URL devices enrol at (Lanyard's ADE enrolment endpoint).
    pub url: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Apple's limits, as its 400 codes name them.
fn check(name: &str, s: &AdeProfileSettings) -> Result<()> {
    let len = |v: &Option<String>| v.as_deref().map(|t| t.chars().count()).unwrap_or(0);
    if name.trim().is_empty() || name.chars().count() > 125 {
        return Err(Error::unprocessable("name", "1 to 125 characters (Apple's CONFIG_NAME limit)"));
    }
    if !s.is_supervised && !s.is_mdm_removable {
        return Err(Error::unprocessable("is_mdm_removable", "false needs is_supervised true (Apple refuses it: FLAGS_INVALID)"));
    }
    if s.is_multi_user && !s.is_supervised {
        return Err(Error::unprocessable("is_multi_user", "Shared iPad needs is_supervised true"));
    }
    if let Some(bad) = s.skip_setup_items.iter().find(|k| !SKIP_KEYS.contains(&k.as_str())) {
        let near = SKIP_KEYS.iter().find(|k| k.eq_ignore_ascii_case(bad)).map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
        return Err(Error::unprocessable(
            "skip_setup_items",
            format!("{bad:?} is not one of Apple's skip keys{near}: {}", SKIP_KEYS.join(", ")),
        ));
    }
    if len(&s.department) > 125 {
        return Err(Error::unprocessable("department", "at most 125 characters"));
    }
    if len(&s.support_phone_number) > 50 {
        return Err(Error::unprocessable("support_phone_number", "at most 50 characters"));
    }
    if let Some(e) = &s.support_email_address {
        if e.chars().count() > 250 || !e.contains('@') {
            return Err(Error::unprocessable("support_email_address", "an email address of at most 250 characters"));
        }
    }
    if let Some(l) = &s.language {
        if !(2..=3).contains(&l.len()) || !l.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(Error::unprocessable("language", "an ISO 639 code such as \"en\""));
        }
    }
    if let Some(r) = &s.region {
        if r.len() != 2 || !r.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(Error::unprocessable("region", "an ISO 3166 code such as \"GB\""));
        }
    }
    Ok(())
}

impl Ade {
    /// The URL in every ADE profile: where a device posts its MachineInfo.
    pub fn ade_enroll_url(&self) -> String {
        format!("{}/mdm/ade/enroll", self.public_url.trim_end_matches('/'))
    }

    /// Apple's JSON for a profile (without `devices`).
    pub fn apple_json(&self, name: &str, s: &AdeProfileSettings) -> Value {
        let mut v = json!({
            "profile_name": name,
            "url": self.ade_enroll_url(),
            "is_supervised": s.is_supervised,
            "is_mandatory": s.is_mandatory,
            "is_mdm_removable": s.is_mdm_removable,
            "await_device_configured": s.await_device_configured,
            "allow_pairing": s.allow_pairing,
            "is_multi_user": s.is_multi_user,
            "skip_setup_items": s.skip_setup_items,
        });
        for (k, val) in [
            ("department", &s.department),
            ("support_phone_number", &s.support_phone_number),
            ("support_email_address", &s.support_email_address),
            ("language", &s.language),
            ("region", &s.region),
        ] {
            if let Some(val) = val {
                v[k] = json!(val);
            }
        }
        // A device trusts Lanyard's self-made TLS certificate only if the profile says so.
        if self.config.tls && crate::pki::operator_tls(&self.config.certs_dir).ok().flatten().is_none() {
            if let Ok(der) = self.pki.ca_cert.to_der() {
                v["anchor_certs"] = json!([base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der)]);
            }
        }
        v
    }

    fn profile_info(&self, r: &AdeProfileRecord) -> Result<AdeProfileInfo> {
        Ok(AdeProfileInfo {
            id: r.id,
            name: r.name.clone(),
            settings: serde_json::from_str(&r.settings).map_err(Error::internal)?,
            url: self.ade_enroll_url(),
            created_at: r.created_at,
            created_by: r.created_by.clone(),
            updated_at: r.updated_at,
        })
    }

    pub async fn create_profile(&self, actor: &Actor, input: AdeProfileInput) -> Result<AdeProfileInfo> {
        check(&input.name, &input.settings)?;
        let now = self.clock.now();
        let rec = AdeProfileRecord {
            id: Uuid::new_v4(),
            name: input.name.trim().to_owned(),
            settings: serde_json::to_string(&input.settings).map_err(Error::internal)?,
            created_at: now,
            created_by: actor.name.clone(),
            updated_at: now,
        };
        let audit = self.audit.audit_entry(
            actor,
            "ade.profile.create",
            Some(&rec.id.to_string()),
            json!({"name": rec.name, "settings": input.settings}),
        );
        self.store.create_ade_profile(&rec, audit).await?;
        self.profile_info(&rec)
    }

    pub async fn profiles(&self) -> Result<Vec<AdeProfileInfo>> {
        self.store.ade_profiles().await?.iter().map(|r| self.profile_info(r)).collect()
    }

    pub async fn profile(&self, id: Uuid) -> Result<AdeProfileInfo> {
        let r = self.store.ade_profile(id).await?.ok_or_else(|| Error::not_found(format!("no ADE profile {id}")))?;
        self.profile_info(&r)
    }

    /// Change a profile: the next sync defines it with Apple again and moves its devices to it.
    pub async fn update_profile(&self, actor: &Actor, id: Uuid, input: AdeProfileInput) -> Result<AdeProfileInfo> {
        check(&input.name, &input.settings)?;
        let old = self.store.ade_profile(id).await?.ok_or_else(|| Error::not_found(format!("no ADE profile {id}")))?;
        let rec = AdeProfileRecord {
            name: input.name.trim().to_owned(),
            settings: serde_json::to_string(&input.settings).map_err(Error::internal)?,
            updated_at: self.clock.now(),
            ..old
        };
        let audit = self.audit.audit_entry(
            actor,
            "ade.profile.update",
            Some(&id.to_string()),
            json!({"name": rec.name, "settings": input.settings}),
        );
        if !self.store.update_ade_profile(&rec, audit).await? {
            return Err(Error::not_found(format!("no ADE profile {id}")));
        }
        self.profile_info(&rec)
    }

    /// Delete a profile no token's rules name. Devices already given it keep it in ASM.
    pub async fn delete_profile(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let p = self.profile(id).await?;
        for t in self.store.ade_tokens().await? {
            let rules = super::assign::AssignmentRules::parse(t.assignment.as_deref())?;
            if rules.names(id) {
                return Err(Error::conflict(
                    "profile_in_use",
                    format!("the ADE profile {:?} is in the assignment rules of {}: change those first", p.name, t.server_name),
                ));
            }
        }
        let audit = self.audit.audit_entry(actor, "ade.profile.delete", Some(&id.to_string()), json!({"name": p.name}));
        if !self.store.delete_ade_profile(id, audit).await? {
            return Err(Error::not_found(format!("no ADE profile {id}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: Value) -> AdeProfileSettings {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_what_a_school_wants_and_apples_limits_are_checked() {
        let s = settings(json!({}));
        assert!(s.is_supervised && s.is_mandatory && !s.is_mdm_removable && s.await_device_configured && !s.allow_pairing);
        assert!(check("Pupil iPads", &s).is_ok());
        let field = |r: Result<()>| match r {
            Err(Error::Unprocessable { field, message }) => format!("{field}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(field(check("", &s)).starts_with("name"));
        assert!(field(check("x", &settings(json!({"is_supervised": false})))).starts_with("is_mdm_removable"));
        let e = field(check("x", &settings(json!({"skip_setup_items": ["siri"]}))));
        assert!(e.contains("did you mean Siri?"), "{e}");
        assert!(field(check("x", &settings(json!({"support_email_address": "helpdesk"})))).starts_with("support_email_address"));
        assert!(field(check("x", &settings(json!({"region": "gb"})))).starts_with("region"));
        assert!(serde_json::from_value::<AdeProfileSettings>(json!({"is_superviced": true})).is_err(), "a typo is refused, not ignored");
    }
}
