//! The audit service: record every operator action and login, and prove the chain intact.

use std::sync::Arc;

use serde_json::Value;

use crate::clock::Clock;
use crate::error::Result;
use crate::services::auth::Actor;
use crate::store::DynStore;
use crate::store::audit::GENESIS_HASH;
use crate::store::{AuditEntry, NewAuditEntry, StoreResult};

/// The audit log: every operator action, hash-chained.
#[derive(Clone)]
pub struct Audit {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Audit {
    /// Append one entry on its own. Failure to audit fails the action: an unaudited change must
    /// not happen. For an action that writes, build the entry with [`Audit::audit_entry`] and
    /// hand it to the store method so that both commit in one transaction.
    pub async fn audit(&self, actor: &Actor, action: &str, target: Option<&str>, details: Value) -> Result<AuditEntry> {
        Ok(self.store.append_audit(self.audit_entry(actor, action, target, details)).await?)
    }

    /// The entry an operator write carries into its store transaction.
    pub fn audit_entry(&self, actor: &Actor, action: &str, target: Option<&str>, details: Value) -> NewAuditEntry {
        NewAuditEntry {
            at: self.clock.now(),
            actor: actor.name.clone(),
            ip: actor.ip.clone(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            details: details.to_string(),
        }
    }
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub ok: bool,
    pub entries_checked: i64,
    /// The first entry whose hash or link does not match.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

/// Walk the whole chain from the genesis hash, in pages, up to the head as it stood when the
/// walk began.
///
/// The head is read first. An entry and the head's move to it commit together, one append at
/// a time, so every entry up to that head has committed, and the walk checks exactly the chain
/// that head names, however many entries are appended while it runs (they are left for the
/// next walk). Reading the head last, as this once did, called every append made during the
/// walk a removed entry: a live server's chain "failed" verification whenever anyone worked.
pub async fn verify_chain(store: &dyn crate::store::Store) -> StoreResult<ChainReport> {
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut prev = GENESIS_HASH.to_owned();
    let mut last_seq = 0;
    let mut checked = 0;
    let fail = |seq: i64, checked: i64, problem: String| ChainReport {
        ok: false,
        entries_checked: checked,
        first_bad_seq: Some(seq),
        problem: Some(problem),
    };
    while last_seq < head_seq {
        // Never past the head, unless past a gap, which the first entry after it reports.
        let page = store.audit_chain(last_seq, (head_seq - last_seq).min(1000)).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            checked += 1;
            if e.seq != last_seq + 1 {
                return Ok(fail(last_seq + 1, checked, format!("entry {} is missing (next present is {})", last_seq + 1, e.seq)));
            }
            if e.prev_hash != prev {
                return Ok(fail(e.seq, checked, format!("entry {} does not link to the entry before it", e.seq)));
            }
            if e.compute_hash() != e.hash {
                return Ok(fail(e.seq, checked, format!("entry {} has been altered: its hash does not match its contents", e.seq)));
            }
            prev = e.hash;
            last_seq = e.seq;
        }
    }
    if head_seq != last_seq {
        return Ok(fail(
            last_seq + 1,
            checked,
            format!("the chain ends at entry {last_seq} but the head says {head_seq}: entries were removed"),
        ));
    }
    if head_seq > 0 && head_hash != prev {
        return Ok(fail(head_seq, checked, format!("entry {head_seq} is not the entry the head names: entries were replaced")));
    }
    Ok(ChainReport { ok: true, entries_checked: checked, first_bad_seq: None, problem: None })
}

/// What the faces read about audit, through this service rather than from the store.
impl Audit {
    /// Walk the whole chain (see [`verify_chain`]).
    pub async fn verify(&self) -> crate::error::Result<ChainReport> {
        Ok(verify_chain(self.store.as_ref()).await?)
    }

    pub async fn list_audit(&self, filter: &crate::store::AuditFilter) -> crate::error::Result<Vec<crate::store::AuditEntry>> {
        Ok(self.store.list_audit(filter).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::store::DynStore;

    fn entry(i: usize) -> NewAuditEntry {
        NewAuditEntry {
            at: chrono::Utc::now(),
            actor: "system".into(),
            ip: None,
            action: "test.append".into(),
            target: Some(i.to_string()),
            details: "{}".into(),
        }
    }

    /// Entries appended while `verify_chain` walks (the head moving on between its last page and
    /// its look at the head) are no sign of tampering: an intact chain verifies however the walk
    /// and the appends interleave.
    async fn verifies_while_the_head_moves(store: DynStore) {
        for i in 0..1500 {
            store.append_audit(entry(i)).await.unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let appender = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    store.append_audit(entry(i)).await.unwrap();
                    i += 1;
                }
                i
            })
        };
        let mut failures = Vec::new();
        for _ in 0..60 {
            let report = verify_chain(store.as_ref()).await.unwrap();
            if !report.ok {
                failures.push(format!("{report:?}"));
            }
        }
        stop.store(true, Ordering::Relaxed);
        let appended = appender.await.unwrap();
        assert!(appended > 0, "nothing was appended during the walks");
        assert!(
            failures.is_empty(),
            "{} of 60 walks called an intact chain tampered ({appended} appends meanwhile): {}",
            failures.len(),
            failures[0]
        );
        // And once the appends have stopped.
        assert!(verify_chain(store.as_ref()).await.unwrap().ok);
    }

    /// Reading the head first still catches what it must: an entry removed from the middle,
    /// the newest entry removed, and an entry the head does not name.
    #[tokio::test]
    async fn removals_are_still_caught() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = crate::store::connect(&url, 4).await.unwrap();
        for i in 0..5 {
            store.append_audit(entry(i)).await.unwrap();
        }
        assert!(verify_chain(store.as_ref()).await.unwrap().ok);
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let mut run = async |sql: &str| {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut db).await.unwrap();
            verify_chain(store.as_ref()).await.unwrap()
        };
        run("DROP TRIGGER audit_log_no_delete").await;
        let newest = run("DELETE FROM audit_log WHERE seq = 5").await;
        assert_eq!((newest.ok, newest.first_bad_seq), (false, Some(5)), "{newest:?}");
        let middle = run("DELETE FROM audit_log WHERE seq = 2").await;
        assert_eq!((middle.ok, middle.first_bad_seq), (false, Some(2)), "{middle:?}");
        let renamed = run("UPDATE audit_head SET seq = 1, hash = 'x' WHERE id = 1").await;
        assert_eq!((renamed.ok, renamed.first_bad_seq), (false, Some(1)), "{renamed:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifies_while_the_head_moves_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        verifies_while_the_head_moves(crate::store::connect(&url, 4).await.unwrap()).await;
    }

    /// With `LANYARD_TEST_POSTGRES_URL` (an admin URL), on a fresh database of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifies_while_the_head_moves_postgres() {
        let Ok(admin_url) = std::env::var("LANYARD_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("LANYARD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LANYARD_REQUIRE_POSTGRES=1 but LANYARD_TEST_POSTGRES_URL is not set"
            );
            return;
        };
        let name = format!("lanyard_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        verifies_while_the_head_moves(crate::store::connect(&format!("{base}/{name}"), 4).await.unwrap()).await;
    }
}
