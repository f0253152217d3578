//! The append-only audit log, stored as a hash chain.
//!
//! Each entry carries the SHA-256 of the previous entry's hash and its own fields, so editing or
//! deleting any row breaks every hash after it. Appends are serialised by updating the single
//! `audit_head` row first, which is a write lock on both backends.

use chrono::{DateTime, SecondsFormat, Utc};
use openssl::sha::Sha256;

use super::StoreResult;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub at: DateTime<Utc>,
    /// `operator:NAME`, `token:NAME`, `cli`, `system` or `device:UDID`.
    pub actor: String,
    pub ip: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// JSON text; hashed exactly as stored.
    pub details: String,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub ip: Option<String>,
    pub action: String,
    pub target: Option<String>,
    #[serde(skip)]
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The chain's hash: SHA-256 over the previous hash and every field, length-prefixed so that
    /// no two different entries can produce the same input.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        let at = self.at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let seq = self.seq.to_string();
        let fields: [&str; 8] = [
            &self.prev_hash,
            &seq,
            &at,
            &self.actor,
            self.ip.as_deref().unwrap_or(""),
            &self.action,
            self.target.as_deref().unwrap_or(""),
            &self.details,
        ];
        for f in fields {
            h.update(&(f.len() as u64).to_be_bytes());
            h.update(f.as_bytes());
        }
        hex::encode(h.finish())
    }

    pub fn details_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.details).unwrap_or(serde_json::Value::String(self.details.clone()))
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Cursor: only entries with a smaller sequence number.
    pub before_seq: Option<i64>,
    pub limit: i64,
}

#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditEntry>;
    /// Newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// Oldest first, for walking the chain.
    async fn audit_chain(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditEntry>>;
    /// The head row: (last sequence number, last hash).
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
    /// Append `entry` unless an entry was already appended under `(key, days)` (an expiry
    /// warning, written once per certificate and threshold). True when it was appended now.
    async fn append_audit_once(&self, key: &str, days: i64, entry: NewAuditEntry) -> StoreResult<bool>;
}

/// `details` (a JSON object's text) with one more field, for an entry whose details include what
/// the write inside the same transaction found (how many rows it changed).
pub fn with_detail(details: &str, key: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(details).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_owned(), value);
    }
    v.to_string()
}

/// Append one entry inside the caller's transaction, so that an operator's write and its audit
/// entry commit together or not at all (a crash between two transactions would leave a change
/// the log never recorded). `$conn` is `&mut *tx`; `$e` a [`NewAuditEntry`]. Expands to an
/// expression of type `StoreResult<AuditEntry>`; use it inside a store macro's async method.
macro_rules! append_audit_in {
    ($conn:expr, $e:expr) => {{
        let e: $crate::store::NewAuditEntry = $e;
        let conn = $conn;
        async {
            let (seq, prev_hash): (i64, String) =
                sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash").fetch_one(&mut *conn).await?;
            let mut entry = $crate::store::AuditEntry {
                seq,
                at: $crate::store::truncate_micros(e.at),
                actor: e.actor,
                ip: e.ip,
                action: e.action,
                target: e.target,
                details: e.details,
                prev_hash,
                hash: String::new(),
            };
            entry.hash = entry.compute_hash();
            sqlx::query(
                "INSERT INTO audit_log (seq, at, actor, ip, action, target, details, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(entry.seq)
            .bind(entry.at)
            .bind(&entry.actor)
            .bind(&entry.ip)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.details)
            .bind(&entry.prev_hash)
            .bind(&entry.hash)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&entry.hash).execute(&mut *conn).await?;
            $crate::store::StoreResult::Ok(entry)
        }
        .await
    }};
}
pub(crate) use append_audit_in;

macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AuditStore for $store {
            async fn append_audit(&self, e: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<$crate::store::AuditEntry> {
                let mut tx = self.pool.begin().await?;
                let entry = $crate::store::audit::append_audit_in!(&mut *tx, e)?;
                tx.commit().await?;
                Ok(entry)
            }

            async fn append_audit_once(&self, key: &str, days: i64, e: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let new = sqlx::query("INSERT INTO expiry_warnings (subject, days, logged_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(key)
                    .bind(days)
                    .bind(e.at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if new {
                    $crate::store::audit::append_audit_in!(&mut *tx, e)?;
                }
                tx.commit().await?;
                Ok(new)
            }

            async fn list_audit(&self, f: &$crate::store::AuditFilter) -> $crate::store::StoreResult<Vec<$crate::store::AuditEntry>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit_log WHERE 1 = 1");
                if let Some(v) = f.since {
                    q.push(" AND at >= ").push_bind(v);
                }
                if let Some(v) = f.until {
                    q.push(" AND at < ").push_bind(v);
                }
                if let Some(v) = &f.actor {
                    q.push(" AND actor = ").push_bind(v.clone());
                }
                if let Some(v) = &f.action {
                    // `operator.` matches every operator action.
                    if v.ends_with('.') {
                        q.push(" AND action LIKE ").push_bind(format!("{}%", $crate::store::like_escape(v))).push(" ESCAPE '\\'");
                    } else {
                        q.push(" AND action = ").push_bind(v.clone());
                    }
                }
                if let Some(v) = &f.target {
                    q.push(" AND target = ").push_bind(v.clone());
                }
                if let Some(v) = f.before_seq {
                    q.push(" AND seq < ").push_bind(v);
                }
                q.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit);
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn audit_chain(&self, after_seq: i64, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::AuditEntry>> {
                Ok(sqlx::query_as("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after_seq)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn audit_head(&self) -> $crate::store::StoreResult<(i64, String)> {
                Ok(sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
            }
        }
    };
}
pub(crate) use impl_audit_store;
