//! Push bookkeeping: which devices to wake, what APNs answered, and what the sweeper claims.
//!
//! The figures live in `device_push`, one narrow row per device ever pushed, not in `devices`:
//! a push to a year group then rewrites a few pages of short rows instead of every device's
//! whole row twice. Every push is recorded before it is sent (`last_push_at`, the counts + 1).
//! `pushes_unanswered` is the number of pushes since the device was last seen. A device that
//! connects does not write here (that would be a second write on every device request): each
//! push notes the device's `last_seen_at` as `seen_at_push`, and the count holds only while the
//! device's `last_seen_at` is still that value ([`pushes_unanswered_next`]).
//!
//! The sweeper claims the devices it will push in one statement. On PostgreSQL, where several
//! instances may share the database, each claim first takes a transaction-scoped advisory lock,
//! so two instances never claim the same device; on SQLite the one writer already serialises them.

use chrono::{DateTime, Duration, Utc};

use super::StoreResult;

/// A device we can push: enrolled, with a token APNs has not rejected.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushTarget {
    pub udid: String,
    pub push_token: Vec<u8>,
    pub push_magic: String,
}

/// Figures for `/metrics` and the console's home page.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub pending_targets: i64,
    pub oldest_pending_queued_at: Option<DateTime<Utc>>,
    pub enrolled: i64,
    pub seen_last_hour: i64,
    pub seen_last_day: i64,
}

/// How long to wait before pushing a device again, by how many pushes it has left unanswered:
/// a few minutes at first, backing off to hours.
pub const REPUSH_BACKOFF_MINUTES: [i64; 4] = [5, 15, 60, 240];

/// Record one more push in an `INSERT INTO device_push (udid, last_push_at, seen_at_push, ..)
/// ... ON CONFLICT (udid) DO UPDATE`, where `excluded.seen_at_push` is the device's
/// `last_seen_at` now: the unanswered count goes on while the device has not been seen since the
/// previous push, and starts again at 1 when it has.
/// (A macro, so that it can be `concat!`ed into static SQL.)
macro_rules! pushes_unanswered_next {
    () => {
        " ON CONFLICT (udid) DO UPDATE SET last_push_at = excluded.last_push_at, seen_at_push = excluded.seen_at_push, \
         pushes_sent = device_push.pushes_sent + 1, \
         pushes_unanswered = CASE WHEN device_push.seen_at_push = excluded.seen_at_push \
           THEN device_push.pushes_unanswered + 1 ELSE 1 END"
    };
}
pub(crate) use pushes_unanswered_next;

/// The push bookkeeping of one device, for its queue view.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DevicePushRecord {
    pub last_push_at: DateTime<Utc>,
    pub last_push_outcome: Option<String>,
    /// Pushes since the device was last seen, while its `last_seen_at` is still `seen_at_push`.
    pub pushes_unanswered: i64,
    /// The device's `last_seen_at` when it was last pushed.
    pub seen_at_push: Option<DateTime<Utc>>,
    pub pushes_sent: i64,
}

/// The latest `last_push_at` that is due again, for each unanswered count (1, 2, 3, 4+).
pub fn backoff_thresholds(now: DateTime<Utc>) -> [DateTime<Utc>; 4] {
    REPUSH_BACKOFF_MINUTES.map(|m| now - Duration::minutes(m))
}

#[async_trait::async_trait]
pub trait PushStore: Send + Sync {
    /// The pushable devices among `udids`.
    async fn push_targets(&self, udids: &[String]) -> StoreResult<Vec<PushTarget>>;
    /// This device's push bookkeeping; None when it has never been pushed.
    async fn device_push(&self, udid: &str) -> StoreResult<Option<DevicePushRecord>>;
    /// Record that these devices are being pushed now.
    async fn mark_pushed(&self, udids: &[String], at: DateTime<Utc>) -> StoreResult<()>;
    /// Record APNs' answer for these devices; `token_dead` (410) stops pushes until the next TokenUpdate.
    async fn record_push_outcome(&self, udids: &[String], outcome: &str, token_dead: bool, at: DateTime<Utc>) -> StoreResult<()>;
    /// Claim up to `limit` devices due a re-push: pending commands and no connection since the
    /// last push (after the backoff), or not seen for a day. Claimed devices are marked pushed.
    async fn claim_repush(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<PushTarget>>;
    /// Persist `expired` on pending targets past their expiry; at most `limit`.
    async fn expire_due(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
    async fn set_push_cert_error(&self, error: Option<&str>, at: DateTime<Utc>) -> StoreResult<()>;
    async fn push_cert_error(&self) -> StoreResult<Option<(String, DateTime<Utc>)>>;
    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<QueueStats>;
}

macro_rules! impl_push_store {
    // `$claim_lock`: a statement run first in the sweeper's claim transaction.
    ($store:ty, $db:ty, $claim_lock:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::PushStore for $store {
            async fn push_targets(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<$crate::store::PushTarget>> {
                let mut out = Vec::with_capacity(udids.len());
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT udid, push_token, push_magic FROM devices WHERE enrolled = TRUE AND push_token IS NOT NULL \
                         AND push_magic IS NOT NULL AND push_token_invalid_at IS NULL AND udid IN (",
                    );
                    $crate::store::close_in_list(&mut q, chunk);
                    out.extend(q.build_query_as::<$crate::store::PushTarget>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn device_push(&self, udid: &str) -> $crate::store::StoreResult<Option<$crate::store::push::DevicePushRecord>> {
                Ok(sqlx::query_as(
                    "SELECT last_push_at, last_push_outcome, pushes_unanswered, seen_at_push, pushes_sent FROM device_push WHERE udid = $1",
                )
                .bind(udid)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn mark_pushed(&self, udids: &[String], at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                // One statement per 500 devices, each its own transaction: a push to the whole
                // school must not hold SQLite's write lock while devices check in.
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO device_push (udid, last_push_at, seen_at_push, pushes_unanswered, pushes_sent) SELECT d.udid, ",
                    );
                    q.push_bind(at).push(", d.last_seen_at, 1, 1 FROM devices d WHERE d.udid IN (");
                    $crate::store::close_in_list(&mut q, chunk);
                    q.push($crate::store::push::pushes_unanswered_next!());
                    q.build().execute(&self.pool).await?;
                }
                Ok(())
            }

            async fn record_push_outcome(
                &self,
                udids: &[String],
                outcome: &str,
                token_dead: bool,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                // Per 500 devices, as in mark_pushed. An outcome the row already holds (the
                // usual "delivered") is not written again.
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE device_push SET last_push_outcome = ");
                    q.push_bind(outcome.to_owned());
                    q.push(" WHERE (last_push_outcome IS NULL OR last_push_outcome <> ").push_bind(outcome.to_owned());
                    q.push(") AND udid IN (");
                    $crate::store::close_in_list(&mut q, chunk);
                    q.build().execute(&self.pool).await?;
                    if token_dead {
                        let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE devices SET push_token_invalid_at = ");
                        q.push_bind(at).push(" WHERE udid IN (");
                        $crate::store::close_in_list(&mut q, chunk);
                        q.build().execute(&self.pool).await?;
                    }
                }
                Ok(())
            }

            async fn claim_repush(&self, now: chrono::DateTime<chrono::Utc>, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::PushTarget>> {
                let [t1, t2, t3, t4] = $crate::store::push::backoff_thresholds(now);
                let day_ago = now - chrono::Duration::hours(24);
                const CLAIM: &str = concat!(
                    "INSERT INTO device_push (udid, last_push_at, seen_at_push, pushes_unanswered, pushes_sent) \
                     SELECT d.udid, $1, d.last_seen_at, 1, 1 FROM devices d LEFT JOIN device_push p ON p.udid = d.udid \
                     WHERE d.enrolled = TRUE AND d.push_token IS NOT NULL \
                       AND d.push_magic IS NOT NULL AND d.push_token_invalid_at IS NULL \
                       AND (p.last_push_at IS NULL OR p.last_push_at <= CASE \
                         WHEN p.seen_at_push IS DISTINCT FROM d.last_seen_at OR p.pushes_unanswered <= 1 THEN $2 \
                         WHEN p.pushes_unanswered = 2 THEN $3 WHEN p.pushes_unanswered = 3 THEN $4 ELSE $5 END) \
                       AND ((p.last_push_at IS NULL OR d.last_seen_at <= p.last_push_at) AND EXISTS (SELECT 1 FROM command_targets t \
                             WHERE t.udid = d.udid AND t.status IN ('queued', 'sent') AND (t.expires_at IS NULL OR t.expires_at > $1)) \
                            OR d.last_seen_at < $6) \
                     ORDER BY p.last_push_at NULLS FIRST LIMIT $7",
                    $crate::store::push::pushes_unanswered_next!(),
                    " RETURNING udid"
                );
                let mut tx = self.pool.begin().await?;
                let lock: &str = $claim_lock;
                if !lock.is_empty() {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let claimed: Vec<(String,)> = sqlx::query_as(CLAIM)
                    .bind(now)
                    .bind(t1)
                    .bind(t2)
                    .bind(t3)
                    .bind(t4)
                    .bind(day_ago)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let udids: Vec<String> = claimed.into_iter().map(|(u,)| u).collect();
                self.push_targets(&udids).await
            }

            async fn expire_due(&self, now: chrono::DateTime<chrono::Utc>, limit: i64) -> $crate::store::StoreResult<u64> {
                let r = sqlx::query(
                    concat!(
                        "UPDATE command_targets SET status = 'expired', updated_at = $1 WHERE (udid, command_seq) IN \
                         (SELECT udid, command_seq FROM command_targets WHERE ",
                        $crate::store::pending!(""),
                        " AND expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)"
                    ),
                )
                .bind(now)
                .bind(limit)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }

            async fn set_push_cert_error(&self, error: Option<&str>, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE push_certificate SET last_error = $1, last_error_at = $2 WHERE id = 1")
                    .bind(error)
                    .bind(error.map(|_| at))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn push_cert_error(&self) -> $crate::store::StoreResult<Option<(String, chrono::DateTime<chrono::Utc>)>> {
                let row: Option<(Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
                    sqlx::query_as("SELECT last_error, last_error_at FROM push_certificate WHERE id = 1").fetch_optional(&self.pool).await?;
                Ok(row.and_then(|(e, at)| e.zip(at)))
            }

            async fn queue_stats(&self, now: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<$crate::store::QueueStats> {
                let (pending, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
                    concat!(
                        "SELECT COUNT(*), MIN(queued_at) FROM command_targets WHERE ",
                        $crate::store::pending!(""),
                        " AND (expires_at IS NULL OR expires_at > $1)"
                    ),
                )
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                let (enrolled, hour, day): (i64, i64, i64) = sqlx::query_as(
                    "SELECT COALESCE(SUM(CASE WHEN enrolled THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN last_seen_at >= $1 THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN last_seen_at >= $2 THEN 1 ELSE 0 END), 0) FROM devices",
                )
                .bind(now - chrono::Duration::hours(1))
                .bind(now - chrono::Duration::hours(24))
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::QueueStats {
                    pending_targets: pending,
                    oldest_pending_queued_at: oldest,
                    enrolled,
                    seen_last_hour: hour,
                    seen_last_day: day,
                })
            }
        }
    };
}
pub(crate) use impl_push_store;
