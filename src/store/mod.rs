//! Storage: small traits per concern, one implementation per backend (SQLite, PostgreSQL).
//!
//! The code above this module only sees `Arc<dyn Store>`. Each concern's queries are written
//! once, as a macro body in its own file, and instantiated for both backends; the backends only
//! differ in how they connect, migrate and lock. Both pass one end-to-end suite: every test in
//! `tests/` written with `backend_tests!` runs once on SQLite and once on PostgreSQL.

use std::sync::Arc;

pub mod ade;
pub mod audit;
mod checkpoint;
pub mod commands;
pub mod ddm;
pub mod devices;
pub mod inline;
pub mod inventory;
pub mod operators;
pub mod postgres;
pub mod profiles;
pub mod push;
pub mod register;
pub mod safeguarding;
pub mod sqlite;

pub use ade::{
    AdeAssignCandidate, AdeAssignResult, AdeDeviceFilter, AdeDeviceRecord, AdeDeviceRow, AdeEnrolmentRecord, AdePage, AdeProfileRecord,
    AdeStore, AdeTokenCounts, AdeTokenRecord, CursorMove,
};
pub use audit::{AuditEntry, AuditFilter, AuditStore, NewAuditEntry};
pub use commands::{CommandRecord, CommandStore, DeviceAnswer, DeviceCommandRow, NewCommand, NextCommand, RecordedResult, TargetRecord};
pub use ddm::{DdmDeclarationStatus, DdmState, DdmStatusItem, DdmStore, GroupDeclarationRecord, OsUpdateRecord};
pub use devices::{
    AuthenticateRecord, DeviceFilter, DeviceRecord, DeviceSession, DeviceStore, EnrollmentTokenRecord, InventoryUpdate, IssuedCertRecord,
    PushCertRecord, PushCertRequestRecord, TokenUpdateRecord,
};
pub use operators::{ApiTokenRecord, LoginAttempt, OperatorPatch, OperatorRecord, OperatorSession, OperatorStore};
pub use profiles::{
    DeviceProfileRecord, FileVaultKeyRecord, FilteringChangeRecord, FilteringDeploy, GroupRecord, HolderRow, ProfileCommandRecord,
    ProfileCommandState, ProfileRecord, ProfileStore, ProfileVersionRecord, ScheduleRecord, TimetableRecord,
};
pub use push::{DevicePushRecord, PushStore, PushTarget, QueueStats};
pub use register::{AssignmentRecord, AupRecord, GrantRecord, GroupMembership, PeopleFilter, PersonRecord, RegisterStore, SignatureRecord};
pub use safeguarding::{
    CaseCommandRecord, CaseDeviceRecord, CaseEvent, CaseRecord, CaseRequestRecord, EvidenceRecord, NewCaseEvent, NotificationRecord,
    SafeguardingStore,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the statements [`inline`] runs without sqlx.
    #[error("database error: {0}")]
    Embedded(#[from] rusqlite::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Map a unique-constraint violation to `Conflict(what)`.
pub(crate) fn conflict_or(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.to_owned()),
        _ => StoreError::Database(e),
    }
}

/// What `/readyz` reports about the database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub backend: &'static str,
    pub reachable: bool,
    pub migrations_applied: bool,
    pub detail: Option<String>,
}

#[async_trait::async_trait]
pub trait Health: Send + Sync {
    fn backend(&self) -> &'static str;
    async fn readiness(&self) -> Readiness;
    /// Close the pool (shutdown, and tests of `/readyz`).
    async fn close(&self);
}

/// Everything Lanyard stores.
pub trait Store:
    Health
    + OperatorStore
    + AuditStore
    + DeviceStore
    + CommandStore
    + RegisterStore
    + PushStore
    + SafeguardingStore
    + ProfileStore
    + AdeStore
    + DdmStore
    + Send
    + Sync
    + 'static
{
}
impl<T> Store for T where
    T: Health
        + OperatorStore
        + AuditStore
        + DeviceStore
        + CommandStore
        + RegisterStore
        + PushStore
        + SafeguardingStore
        + ProfileStore
        + AdeStore
        + DdmStore
        + Send
        + Sync
        + 'static
{
}

pub type DynStore = Arc<dyn Store>;

/// Connect to the configured database and apply migrations; `postgres_pool` connections if
/// it is PostgreSQL.
pub async fn connect(database_url: &str, postgres_pool: u32) -> anyhow::Result<DynStore> {
    if database_url.starts_with("postgres") {
        Ok(Arc::new(postgres::PgStore::connect(database_url, postgres_pool).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::connect(database_url).await?))
    }
}

pub use crate::clock::truncate_micros;

/// Finish an `IN (` the query ends with: one bind per udid, then `)`. Callers pass at most 500
/// at a time, well inside both backends' limits on binds.
pub(crate) fn close_in_list<DB: sqlx::Database>(q: &mut sqlx::QueryBuilder<DB>, udids: &[String])
where
    String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut sep = q.separated(", ");
    for u in udids {
        sep.push_bind(u.clone());
    }
    q.push(")");
}

/// Escape `%`, `_` and `\` so that user text matches literally in `LIKE ... ESCAPE '\'` (said
/// explicitly: SQLite has no default escape character, PostgreSQL's is the backslash).
pub(crate) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Readiness check shared by both backends: reachable, and every embedded migration applied.
/// SQL that holds for a pending target (queued, handed over, or deferred by NotNow), with
/// `$t` the table's alias and dot, or "". It is word for word the condition of the partial
/// index `command_targets_pending` (migration 0009): SQLite only uses a partial index for a
/// query that repeats its condition.
macro_rules! pending {
    ($t:literal) => {
        concat!("(", $t, "status IN ('queued', 'sent') OR ", $t, "status = 'not_now')")
    };
}
pub(crate) use pending;

macro_rules! impl_health {
    ($store:ty, $name:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Health for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn close(&self) {
                self.pool.close().await
            }

            async fn readiness(&self) -> $crate::store::Readiness {
                let applied: Result<Vec<(i64,)>, sqlx::Error> =
                    sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = TRUE").fetch_all(&self.pool).await;
                match applied {
                    Ok(rows) => {
                        let missing: Vec<i64> =
                            Self::MIGRATOR.iter().map(|m| m.version).filter(|v| !rows.iter().any(|(r,)| r == v)).collect();
                        $crate::store::Readiness {
                            backend: $name,
                            reachable: true,
                            migrations_applied: missing.is_empty(),
                            detail: (!missing.is_empty()).then(|| format!("migrations not applied: {missing:?}")),
                        }
                    }
                    Err(e) => $crate::store::Readiness {
                        backend: $name,
                        reachable: false,
                        migrations_applied: false,
                        detail: Some(e.to_string()),
                    },
                }
            }
        }
    };
}
pub(crate) use impl_health;
