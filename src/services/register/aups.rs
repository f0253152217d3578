//! Acceptable-use policies: versioned, immutable documents per audience, with the SHA-256 of the
//! text that people sign. A new version of an audience's AUP makes its earlier signers due to
//! re-sign once its effective date comes.

use std::collections::HashMap;

use chrono::{DateTime, Months, NaiveDate, Utc};
use openssl::sha::sha256;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{AUDIENCES, REVIEW_MONTHS, Register, required_text};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::store::{AupRecord, StoreError};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAup {
    #[schema(value_type = crate::services::register::schema::Audience)]
    pub audience: String,
    pub title: String,
    pub text: String,
    pub effective_date: NaiveDate,
    /// Defaults to a year after the effective date.
    pub review_due: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Aup {
    pub id: Uuid,
    #[schema(value_type = crate::services::register::schema::Audience)]
    pub audience: String,
    pub version: i64,
    pub title: String,
    pub text: String,
    /// SHA-256 (hex) of the UTF-8 text.
    pub sha256: String,
    pub effective_date: NaiveDate,
    pub review_due: NaiveDate,
    /// The version people of this audience must have signed today.
    pub current: bool,
    pub review_overdue: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Aup {
    pub fn new(r: AupRecord, current: &HashMap<String, AupRecord>, today: NaiveDate) -> Aup {
        Aup {
            current: current.get(&r.audience).is_some_and(|c| c.id == r.id),
            review_overdue: r.review_due <= today,
            id: r.id,
            audience: r.audience,
            version: r.version,
            title: r.title,
            text: r.text,
            sha256: r.sha256,
            effective_date: r.effective_date,
            review_due: r.review_due,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// The current version per audience: the highest version whose effective date has come.
pub fn current_aups(all: &[AupRecord], today: NaiveDate) -> HashMap<String, AupRecord> {
    let mut current: HashMap<String, AupRecord> = HashMap::new();
    for a in all.iter().filter(|a| a.effective_date <= today) {
        if current.get(&a.audience).is_none_or(|c| c.version < a.version) {
            current.insert(a.audience.clone(), a.clone());
        }
    }
    current
}

pub fn check_audience(field: &str, audience: &str) -> Result<()> {
    if AUDIENCES.contains(&audience) {
        Ok(())
    } else {
        Err(Error::unprocessable(field, format!("{audience:?} is not an audience; use one of {}", AUDIENCES.join(", "))))
    }
}

impl Register {
    /// Publish the next version of an audience's AUP.
    pub async fn publish_aup(&self, actor: &Actor, req: NewAup) -> Result<Aup> {
        let audience = req.audience.trim().to_ascii_lowercase();
        check_audience("audience", &audience)?;
        let title = required_text("title", &req.title, 200)?;
        if req.text.trim().is_empty() {
            return Err(Error::unprocessable("text", "must not be empty"));
        }
        let review_due = match req.review_due {
            Some(d) => d,
            None => req
                .effective_date
                .checked_add_months(Months::new(REVIEW_MONTHS))
                .ok_or_else(|| Error::unprocessable("effective_date", "out of range"))?,
        };
        if review_due <= req.effective_date {
            return Err(Error::unprocessable("review_due", "must be after the effective date"));
        }
        let now = self.clock.now();
        let mut rec = AupRecord {
            id: Uuid::new_v4(),
            audience,
            version: 0,
            title,
            sha256: hex::encode(sha256(req.text.as_bytes())),
            text: req.text,
            effective_date: req.effective_date,
            review_due,
            created_by: actor.name.clone(),
            created_at: now,
        };
        // Two publishers at once: the unique (audience, version) makes one of them try again.
        let mut tries = 0;
        loop {
            rec.version = self.store.next_aup_version(&rec.audience).await?;
            let audit = self.audit.audit_entry(
                actor,
                "register.aup.create",
                Some(&format!("aup:{}", rec.id)),
                json!({
                "id": rec.id,
                "audience": rec.audience,
                "version": rec.version,
                "title": rec.title,
                "sha256": rec.sha256,
                "effective_date": rec.effective_date,
                "review_due": rec.review_due,
                }),
            );
            match self.store.create_aup(&rec, audit).await {
                Ok(()) => break,
                Err(StoreError::Conflict(_)) if tries < 3 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
        self.aup(rec.id).await
    }

    pub async fn aup(&self, id: Uuid) -> Result<Aup> {
        let rec = self.store.aup_by_id(id).await?.ok_or_else(|| Error::not_found("no such AUP"))?;
        let today = self.today();
        let all = self.store.list_aups(Some(&rec.audience)).await?;
        Ok(Aup::new(rec, &current_aups(&all, today), today))
    }

    pub async fn list_aups(&self, audience: Option<&str>) -> Result<Vec<Aup>> {
        if let Some(a) = audience {
            check_audience("audience", a)?;
        }
        let today = self.today();
        let all = self.store.list_aups(audience).await?;
        let current = current_aups(&all, today);
        Ok(all.into_iter().map(|r| Aup::new(r, &current, today)).collect())
    }
}
