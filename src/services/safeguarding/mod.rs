//! Safeguarding: cases, remote quarantine with an evidence snapshot, two-person
//! release and disposal, and the chain-of-custody log a DSL hands to the police.

pub mod cases;
pub mod custody;
mod pdf;
pub mod quarantine;
pub mod release;

use crate::clock::Clock;
use crate::store::DynStore;
use std::sync::Arc;

/// Cases, quarantine, custody, two-person release and disposal.
#[derive(Clone)]
pub struct Safeguarding {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<crate::config::Config>,
    pub(crate) pki: Arc<crate::pki::Pki>,
    pub(crate) audit: crate::services::audit::Audit,
    pub(crate) commands: crate::services::commands::Commands,
    pub(crate) register: crate::services::register::Register,
    pub(crate) profiles: crate::services::profiles::Profiles,
}

/// What the faces read about safeguarding, through this service rather than from the store.
impl Safeguarding {
    pub async fn case(&self, id: uuid::Uuid) -> crate::error::Result<Option<crate::store::CaseRecord>> {
        Ok(self.store.case(id).await?)
    }

    pub async fn case_records(&self, state: Option<&str>, limit: i64) -> crate::error::Result<Vec<crate::store::CaseRecord>> {
        Ok(self.store.list_cases(state, limit).await?)
    }

    pub async fn case_evidence(&self, case_id: uuid::Uuid) -> crate::error::Result<Vec<crate::store::EvidenceRecord>> {
        Ok(self.store.case_evidence(case_id).await?)
    }

    pub async fn case_commands(&self, case_id: uuid::Uuid) -> crate::error::Result<Vec<crate::store::CaseCommandRecord>> {
        Ok(self.store.case_commands(case_id).await?)
    }
}

impl Safeguarding {
    pub async fn case_events(&self, case_id: uuid::Uuid) -> crate::error::Result<Vec<crate::store::CaseEvent>> {
        Ok(self.store.case_events(case_id).await?)
    }
}
