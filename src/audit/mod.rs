//! The audit service: record every operator action and login, and prove the chain intact.

use serde_json::Value;

use crate::auth::Actor;
use crate::context::Lanyard;
use crate::error::Result;
use crate::store::audit::GENESIS_HASH;
use crate::store::{AuditEntry, NewAuditEntry, StoreResult};

impl Lanyard {
    /// Append one entry on its own. Failure to audit fails the action: an unaudited change must
    /// not happen. For an action that writes, build the entry with [`Lanyard::audit_entry`] and
    /// hand it to the store method so that both commit in one transaction.
    pub async fn audit(&self, actor: &Actor, action: &str, target: Option<&str>, details: Value) -> Result<AuditEntry> {
        Ok(self.store.append_audit(self.audit_entry(actor, action, target, details)).await?)
    }

    /// The entry an operator write carries into its store transaction.
    pub fn audit_entry(&self, actor: &Actor, action: &str, target: Option<&str>, details: Value) -> NewAuditEntry {
        NewAuditEntry {
            at: self.now(),
            actor: actor.name.clone(),
            ip: actor.ip.clone(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            details: details.to_string(),
        }
    }
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    pub ok: bool,
    pub entries_checked: i64,
    /// The first entry whose hash or link does not match.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

/// Walk the whole chain from the genesis hash, in pages.
pub async fn verify_chain(store: &dyn crate::store::Store) -> StoreResult<ChainReport> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut last_seq = 0;
    let mut checked = 0;
    let fail = |seq: i64, checked: i64, problem: String| ChainReport {
        ok: false,
        entries_checked: checked,
        first_bad_seq: Some(seq),
        problem: Some(problem),
    };
    loop {
        let page = store.audit_chain(last_seq, 1000).await?;
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
    let (head_seq, head_hash) = store.audit_head().await?;
    if head_seq != last_seq || (head_seq > 0 && head_hash != prev) {
        return Ok(fail(
            last_seq + 1,
            checked,
            format!("the chain ends at entry {last_seq} but the head says {head_seq}: entries were removed"),
        ));
    }
    Ok(ChainReport { ok: true, entries_checked: checked, first_bad_seq: None, problem: None })
}
