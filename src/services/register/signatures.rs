//! AUP signatures: who signed which version, when, how, who recorded it, and for young pupils
//! the parent or carer who co-signed. A signature is never edited or deleted (the database
//! refuses it too); a mistake is corrected by recording the right signature and voiding the
//! wrong one with a reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{CLOCK_SKEW, KeyStage, PersonKind, audience_for, conflict, optional_text, person_target, required_text};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::register::Register;
use crate::store::SignatureRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignMethod {
    Paper,
    InPerson,
    Online,
}

impl SignMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Paper => "paper",
            SignMethod::InPerson => "in_person",
            SignMethod::Online => "online",
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSignature {
    pub person_id: Uuid,
    pub aup_id: Uuid,
    pub method: SignMethod,
    /// Defaults to now; never in the future.
    pub signed_at: Option<DateTime<Utc>>,
    /// The parent or carer who co-signed (required for EYFS, KS1 and KS2 pupils).
    pub co_signer: Option<String>,
}

/// A signature as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Signature)]
pub struct SignatureView {
    pub id: Uuid,
    pub person_id: Uuid,
    pub aup_id: Uuid,
    pub aup_audience: String,
    pub aup_version: i64,
    pub aup_title: String,
    #[schema(schema_with = crate::schema::enums::signature_method)]
    pub method: String,
    pub signed_at: DateTime<Utc>,
    pub co_signer: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    pub void: bool,
    pub voided_at: Option<DateTime<Utc>>,
    pub voided_by: Option<String>,
    pub void_reason: Option<String>,
}

impl From<SignatureRecord> for SignatureView {
    fn from(s: SignatureRecord) -> Self {
        SignatureView {
            void: s.voided_at.is_some(),
            id: s.id,
            person_id: s.person_id,
            aup_id: s.aup_id,
            aup_audience: s.aup_audience,
            aup_version: s.aup_version,
            aup_title: s.aup_title,
            method: s.method,
            signed_at: s.signed_at,
            co_signer: s.co_signer,
            recorded_by: s.recorded_by,
            recorded_at: s.recorded_at,
            voided_at: s.voided_at,
            voided_by: s.voided_by,
            void_reason: s.void_reason,
        }
    }
}

impl Register {
    pub async fn record_signature(&self, actor: &Actor, req: NewSignature) -> Result<SignatureView> {
        let now = self.clock.now();
        let person = self.person_field("person_id", req.person_id).await?;
        let aup = self
            .store
            .aup_by_id(req.aup_id)
            .await?
            .ok_or_else(|| Error::unprocessable("aup_id", format!("no such AUP: {}", req.aup_id)))?;
        let audience = audience_for(person.kind, person.key_stage.as_deref());
        if audience != Some(aup.audience.as_str()) {
            return Err(Error::unprocessable(
                "aup_id",
                format!(
                    "this is the {} AUP, but {} signs the {} AUP",
                    aup.audience,
                    person.name,
                    audience.unwrap_or("(no audience: give them a year group)")
                ),
            ));
        }
        let signed_at = crate::store::truncate_micros(req.signed_at.unwrap_or(now));
        if signed_at > now + CLOCK_SKEW {
            return Err(Error::unprocessable("signed_at", "must not be in the future"));
        }
        let co_signer = optional_text("co_signer", req.co_signer.as_deref(), 200)?;
        let young = person.kind == PersonKind::Pupil
            && person.key_stage.as_deref().and_then(KeyStage::parse).is_some_and(KeyStage::needs_co_signer);
        if young && co_signer.is_none() {
            return Err(Error::unprocessable(
                "co_signer",
                format!(
                    "{} is a {} pupil: EYFS, KS1 and KS2 pupils sign with a parent or carer; give their name",
                    person.name,
                    person.key_stage.as_deref().unwrap_or("")
                ),
            ));
        }
        let existing = self.store.signatures_for_person(person.id).await?;
        if let Some(dup) = existing.iter().find(|s| s.aup_id == aup.id && s.voided_at.is_none()) {
            return Err(conflict(
                "already_signed",
                format!(
                    "{} has already signed version {} of the {} AUP (signature {}); void it first to record a correction",
                    person.name, aup.version, aup.audience, dup.id
                ),
                json!({"signature_id": dup.id}),
            ));
        }
        let rec = SignatureRecord {
            id: Uuid::new_v4(),
            person_id: person.id,
            aup_id: aup.id,
            method: req.method.as_str().to_owned(),
            signed_at,
            co_signer,
            recorded_by: actor.name.clone(),
            recorded_at: now,
            voided_at: None,
            voided_by: None,
            void_reason: None,
            aup_audience: aup.audience.clone(),
            aup_version: aup.version,
            aup_title: aup.title.clone(),
        };
        let audit = self.audit.audit_entry(
            actor,
            "register.signature.create",
            Some(&person_target(person.id)),
            json!({
                "signature_id": rec.id,
                "person_id": person.id,
                "aup_id": aup.id,
                "audience": aup.audience,
                "version": aup.version,
                "sha256": aup.sha256,
                "method": rec.method,
                "signed_at": rec.signed_at,
                "co_signed": rec.co_signer.is_some(),
            }),
        );
        self.store.create_signature(&rec, audit).await?;
        Ok(rec.into())
    }

    /// Void a signature with a reason. Refused while it is the only signature behind someone's
    /// access: record the correct one first, or revoke the access.
    pub async fn void_signature(&self, actor: &Actor, id: Uuid, reason: &str) -> Result<SignatureView> {
        let reason = required_text("reason", reason, 500)?;
        let now = self.clock.now();
        let sig = self.store.signature_by_id(id).await?.ok_or_else(|| Error::not_found("no such signature"))?;
        if sig.voided_at.is_some() {
            return Err(conflict("already_void", format!("signature {id} was already voided"), json!({"signature_id": id})));
        }
        let others =
            self.store.signatures_for_person(sig.person_id).await?.into_iter().filter(|s| s.id != id && s.voided_at.is_none()).count();
        let open: Vec<Uuid> =
            self.store.grants_for_person(sig.person_id).await?.into_iter().filter(|g| g.open_at(now)).map(|g| g.id).collect();
        if others == 0 && !open.is_empty() {
            return Err(conflict(
                "signature_in_use",
                format!(
                    "this is the only signature behind {} access grant(s): record the correct signature first, or revoke the grants",
                    open.len()
                ),
                json!({"signature_id": id, "grants": open}),
            ));
        }
        let audit = self.audit.audit_entry(
            actor,
            "register.signature.void",
            Some(&person_target(sig.person_id)),
            json!({"signature_id": id, "aup_id": sig.aup_id, "reason": reason}),
        );
        if !self.store.void_signature(id, now, &actor.name, &reason, audit).await? {
            return Err(conflict("already_void", format!("signature {id} was already voided"), json!({"signature_id": id})));
        }
        let sig = self.store.signature_by_id(id).await?.ok_or_else(|| Error::not_found("no such signature"))?;
        Ok(sig.into())
    }
}
