//! The command queue: a command stored once, and one small row per target device.
//!
//! Target states: `queued` (waiting), `sent` (handed to the device, no answer yet), `not_now`
//! (the device said NotNow; offered again at its next Idle), and the final `acknowledged`,
//! `error` (Error or CommandFormatError) and `cancelled`. `expired` is persisted by the sweeper;
//! until then a pending target past its expiry is reported as expired and never sent.

use chrono::{DateTime, Utc};

use std::sync::LazyLock;

use super::{NewAuditEntry, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRecord {
    pub seq: i64,
    pub uuid: String,
    pub request_type: String,
    pub payload: Vec<u8>,
    /// The command's fields as JSON text (Apple's key names), for display.
    pub fields: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRecord {
    pub udid: String,
    pub command_seq: i64,
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub queued_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub not_now_count: i64,
    pub result_plist: Option<Vec<u8>>,
    pub result_json: Option<String>,
}

/// A target joined with its command, for a device's command list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceCommandRow {
    pub uuid: String,
    pub request_type: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[sqlx(flatten)]
    pub target: TargetRecord,
}

#[derive(Debug, Clone)]
pub struct NewCommand {
    pub uuid: String,
    pub request_type: String,
    pub payload: Vec<u8>,
    pub fields: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The command to hand a device.
#[derive(Debug, Clone)]
pub struct NextCommand {
    pub seq: i64,
    pub uuid: String,
    pub request_type: String,
    pub payload: Vec<u8>,
    /// Queued under a safeguarding case: its delivery goes on the case's record.
    pub for_case: bool,
}

/// What a report changed.
#[derive(Debug, Clone)]
pub struct RecordedResult {
    pub request_type: String,
    pub command_seq: i64,
    /// Queued under a safeguarding case: its result goes on the case's record.
    pub for_case: bool,
    /// The school has live smart groups (read in the same statement: after a DeviceInformation
    /// answer their memberships are worked out again, and most schools have none).
    pub smart_groups: bool,
    /// The device, read in the same statement; its `pending` leaves out the answered command.
    pub session: crate::store::DeviceSession,
}

pub const PENDING: [&str; 3] = ["queued", "sent", "not_now"];

/// A device's answer to a command, as [`CommandStore::record_result`] stores it.
#[derive(Debug, Clone, Copy)]
pub struct DeviceAnswer<'a> {
    pub udid: &'a str,
    /// The certificate the answer was signed with: only the one bound to the device records.
    pub cert_sha256: &'a str,
    pub command_uuid: &'a str,
    /// `acknowledged`, `error` or `not_now`.
    pub status: &'a str,
    /// The report as the device sent it, and its JSON view.
    pub plist: &'a [u8],
    pub json: &'a str,
    pub at: DateTime<Utc>,
    /// The device information an acknowledged answer carries: recorded with the answer, in
    /// the same statement or transaction, if the command answered was a DeviceInformation.
    pub inventory: Option<&'a super::InventoryUpdate>,
}

impl DeviceAnswer<'_> {
    /// Whether the answer ends delivery (anything but NotNow).
    pub fn finished(&self) -> bool {
        self.status != "not_now"
    }
}

/// What [`RECORD_RESULT`] returns, in its order.
pub(crate) type RecordedRow = (i64, String, bool, bool, DateTime<Utc>, Option<DateTime<Utc>>, i64);

impl RecordedResult {
    pub(crate) fn from_row(udid: &str, row: RecordedRow) -> Self {
        let (command_seq, request_type, for_case, smart_groups, last_seen_at, last_push_at, pending) = row;
        let session = crate::store::DeviceSession { udid: udid.to_owned(), last_seen_at, last_push_at, pending };
        RecordedResult { request_type, command_seq, for_case, smart_groups, session }
    }
}

/// How [`NEXT_COMMAND`] and [`NEXT_COMMAND_NOT_DEFERRED`] begin.
macro_rules! next_command_head {
    () => {
        concat!(
            "UPDATE command_targets SET status = 'sent', \
               sent_at = CASE WHEN status = 'sent' THEN sent_at ELSE $3 END, \
               updated_at = CASE WHEN status = 'sent' THEN updated_at ELSE $3 END \
             WHERE udid = $1 AND command_seq = (SELECT t.command_seq FROM command_targets t \
               WHERE t.udid = $1 AND ",
            super::pending!("t."),
            " "
        )
    };
}

/// What [`NEXT_COMMAND`] and [`NEXT_COMMAND_NOT_DEFERRED`] return.
macro_rules! next_command_returning {
    () => {
        "RETURNING command_seq, \
           (SELECT c.uuid FROM commands c WHERE c.seq = command_targets.command_seq), \
           (SELECT c.request_type FROM commands c WHERE c.seq = command_targets.command_seq), \
           (SELECT c.payload FROM commands c WHERE c.seq = command_targets.command_seq), \
           EXISTS (SELECT 1 FROM case_commands cc JOIN commands c ON c.uuid = cc.command_uuid \
             WHERE c.seq = command_targets.command_seq)"
    };
}

/// Hand over the device's (`$1`) oldest pending target, deferred ones included, at `$3`,
/// skipping those expired at `$2`. See `next_command` in [`impl_command_store`].
pub(crate) const NEXT_COMMAND: &str = concat!(
    next_command_head!(),
    "AND (t.expires_at IS NULL OR t.expires_at > $2) ORDER BY t.command_seq LIMIT 1) ",
    next_command_returning!()
);

/// [`NEXT_COMMAND`] without the targets the device answered NotNow.
pub(crate) const NEXT_COMMAND_NOT_DEFERRED: &str = concat!(
    next_command_head!(),
    "AND t.status <> 'not_now' AND (t.expires_at IS NULL OR t.expires_at > $2) ORDER BY t.command_seq LIMIT 1) ",
    next_command_returning!()
);

/// Record the device's (`$1`, bound to certificate `$8`) answer to command `$2`: status `$3`,
/// the plist `$4` and its JSON `$5` at `$6`; `$7` is false for NotNow. See `record_result` in
/// [`impl_command_store`].
pub(crate) const RECORD_RESULT: &str = concat!(
    "UPDATE command_targets SET status = $3, result_plist = $4, result_json = $5, updated_at = $6, \
     completed_at = CASE WHEN $7 THEN $6 ELSE completed_at END, \
     not_now_count = not_now_count + CASE WHEN $7 THEN 0 ELSE 1 END \
     WHERE udid = $1 AND command_seq = (SELECT c.seq FROM commands c WHERE c.uuid = $2) AND ",
    super::pending!(""),
    " AND EXISTS (SELECT 1 FROM devices d WHERE d.udid = $1 AND d.cert_sha256 = $8) \
     RETURNING command_seq, (SELECT c.request_type FROM commands c WHERE c.seq = command_targets.command_seq), \
       EXISTS (SELECT 1 FROM case_commands cc WHERE cc.command_uuid = $2), \
       EXISTS (SELECT 1 FROM device_groups g WHERE g.kind = 'smart' AND g.deleted_at IS NULL), \
       (SELECT d.last_seen_at FROM devices d WHERE d.udid = $1), \
       (SELECT p.last_push_at FROM device_push p WHERE p.udid = $1), \
       (SELECT COUNT(*) FROM command_targets t WHERE t.udid = $1 AND ",
    super::pending!("t."),
    " AND t.command_seq <> command_targets.command_seq)"
);

/// [`RECORD_RESULT`] and, if the command answered is a DeviceInformation, [`UPDATE_INVENTORY`]
/// in one statement, for PostgreSQL (one round trip instead of two for every inventory
/// answer): `$1` the device, `$2`...`$23` the inventory, `$24`...`$30` RECORD_RESULT's
/// `$2`...`$8`. It returns RECORD_RESULT's row.
///
/// [`UPDATE_INVENTORY`]: super::inventory::UPDATE_INVENTORY
pub(crate) static RECORD_RESULT_WITH_INVENTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH recorded (command_seq, request_type, for_case, smart_groups, last_seen_at, last_push_at, pending) AS ({}), \
         inventory AS ({} AND EXISTS (SELECT 1 FROM recorded WHERE recorded.request_type = 'DeviceInformation')) \
         SELECT * FROM recorded",
        shift_params(RECORD_RESULT, 22),
        super::inventory::UPDATE_INVENTORY
    )
});

/// `sql` with its parameters `$2` and up renumbered `by` higher (`$1` stays).
fn shift_params(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        match rest[..digits].parse::<usize>() {
            Ok(n) if n >= 2 => out.push_str(&(n + by).to_string()),
            _ => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[async_trait::async_trait]
pub trait CommandStore: Send + Sync {
    /// Store the command and queue it for every target, with the operator's audit entry if
    /// there is one, in one transaction.
    async fn enqueue(&self, cmd: &NewCommand, targets: &[String], audit: Option<NewAuditEntry>) -> StoreResult<i64>;
    /// The oldest pending command for the device, marked `sent`. `include_not_now` is true at
    /// Idle (commands the device deferred are offered again) and false after any other report.
    async fn next_command(&self, udid: &str, include_not_now: bool, now: DateTime<Utc>) -> StoreResult<Option<NextCommand>>;
    /// Record a device's answer, if it was signed with the certificate bound to the device.
    /// None if it was not, or there is no such pending target (unknown command, or a duplicate
    /// report of a finished one): nothing changes then.
    async fn record_result(&self, answer: &DeviceAnswer<'_>) -> StoreResult<Option<RecordedResult>>;
    async fn command(&self, uuid: &str) -> StoreResult<Option<CommandRecord>>;
    async fn command_targets(&self, seq: i64) -> StoreResult<Vec<TargetRecord>>;
    /// Newest first, before `before_seq`.
    async fn device_commands(&self, udid: &str, before_seq: Option<i64>, limit: i64) -> StoreResult<Vec<DeviceCommandRow>>;
    /// Cancel every target not yet handed to its device. Returns how many.
    async fn cancel_command(&self, seq: i64, now: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<u64>;
    /// Whether the device acknowledged an EraseDevice at or after `since`: it was wiped, so its
    /// old identity is gone.
    async fn erased_since(&self, udid: &str, since: DateTime<Utc>) -> StoreResult<bool>;
    /// The latest finished result of each request type for a device.
    async fn latest_results(&self, udid: &str) -> StoreResult<Vec<DeviceCommandRow>>;
    /// How many targets are pending for a device.
    async fn pending_count(&self, udid: &str, now: DateTime<Utc>) -> StoreResult<i64>;
}

/// Store a [`NewCommand`] and queue it for `$targets` (a `&[String]`) inside the caller's
/// transaction: how an operator's command and the first TokenUpdate's inventory commands are
/// queued. `$conn` is `&mut *tx`, `$db` the sqlx database type. Expands to an expression of
/// type `StoreResult<i64>` (the command's seq); use it inside a store macro's async method.
macro_rules! enqueue_in {
    ($conn:expr, $db:ty, $cmd:expr, $targets:expr) => {{
        let c: &$crate::store::NewCommand = $cmd;
        let targets: &[String] = $targets;
        let conn = $conn;
        async {
            let (seq,): (i64,) = sqlx::query_as(
                "INSERT INTO commands (uuid, request_type, payload, fields, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
            )
            .bind(&c.uuid)
            .bind(&c.request_type)
            .bind(&c.payload)
            .bind(&c.fields)
            .bind(&c.created_by)
            .bind(c.created_at)
            .bind(c.expires_at)
            .fetch_one(&mut *conn)
            .await
            .map_err($crate::store::conflict_or("command"))?;
            for chunk in targets.chunks(500) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO command_targets (udid, command_seq, status, expires_at, queued_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, udid| {
                    b.push_bind(udid.clone())
                        .push_bind(seq)
                        .push_bind("queued")
                        .push_bind(c.expires_at)
                        .push_bind(c.created_at)
                        .push_bind(c.created_at);
                });
                q.build().execute(&mut *conn).await?;
            }
            $crate::store::StoreResult::Ok(seq)
        }
        .await
    }};
}
pub(crate) use enqueue_in;

macro_rules! impl_command_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::CommandStore for $store {
            async fn enqueue(
                &self,
                c: &$crate::store::NewCommand,
                targets: &[String],
                audit: Option<$crate::store::NewAuditEntry>,
            ) -> $crate::store::StoreResult<i64> {
                let mut tx = self.pool.begin().await?;
                let seq = $crate::store::commands::enqueue_in!(&mut *tx, $db, c, targets)?;
                if let Some(e) = audit {
                    $crate::store::audit::append_audit_in!(&mut *tx, e)?;
                }
                tx.commit().await?;
                Ok(seq)
            }

            async fn next_command(
                &self,
                udid: &str,
                include_not_now: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::NextCommand>> {
                if let Some(db) = $crate::store::inline::InPlace::inline(self)
                    && let $crate::store::inline::Ran::Done(done) = db.next_command(udid, include_not_now, now)?
                {
                    return Ok(done);
                }
                // One statement: pick the oldest pending target and mark it sent (keeping the
                // first sent_at when it is handed over again). The service calls this only when
                // something is pending, so an Idle with nothing queued never writes.
                let sql = if include_not_now { $crate::store::commands::NEXT_COMMAND } else { $crate::store::commands::NEXT_COMMAND_NOT_DEFERRED };
                let Some((seq, uuid, request_type, payload, for_case)): Option<(i64, String, String, Vec<u8>, bool)> =
                    sqlx::query_as(sql).bind(udid).bind(now).bind(now).fetch_optional(&self.pool).await?
                else {
                    return Ok(None);
                };
                Ok(Some($crate::store::NextCommand { seq, uuid, request_type, payload, for_case }))
            }

            async fn record_result(
                &self,
                a: &$crate::store::commands::DeviceAnswer<'_>,
            ) -> $crate::store::StoreResult<Option<$crate::store::RecordedResult>> {
                if let Some(db) = $crate::store::inline::InPlace::inline(self)
                    && let $crate::store::inline::Ran::Done(done) = db.record_result(a)?
                {
                    return Ok(done);
                }
                // One statement, the only one most answers need: only a pending target of the
                // device the certificate is bound to changes, so a duplicate report (or one for
                // an unknown command, or with another certificate) returns nothing and changes
                // nothing. It also reads what the rest of the request needs: the device's
                // session (the other pending targets: the answered one is left out, as it may or
                // may not be seen as updated) and whether any smart group exists.
                let record = |sql: &'static str| {
                    sqlx::query_as::<_, $crate::store::commands::RecordedRow>(sql)
                        .bind(a.udid)
                        .bind(a.command_uuid)
                        .bind(a.status)
                        .bind(a.plist)
                        .bind(a.json)
                        .bind(a.at)
                        .bind(a.finished())
                        .bind(a.cert_sha256)
                };
                let row = match a.inventory {
                    None => record($crate::store::commands::RECORD_RESULT).fetch_optional(&self.pool).await?,
                    // PostgreSQL: both in one statement.
                    Some(i) if <$db as sqlx::Database>::NAME == "PostgreSQL" => {
                        let sql = $crate::store::commands::RECORD_RESULT_WITH_INVENTORY.as_str();
                        let q = $crate::store::inventory::bind_inventory!(sqlx::query_as::<_, $crate::store::commands::RecordedRow>(sql).bind(a.udid), i);
                        q.bind(a.command_uuid)
                            .bind(a.status)
                            .bind(a.plist)
                            .bind(a.json)
                            .bind(a.at)
                            .bind(a.finished())
                            .bind(a.cert_sha256)
                            .fetch_optional(&self.pool)
                            .await?
                    }
                    // SQLite has no UPDATE in WITH: both in one transaction.
                    Some(i) => {
                        let mut tx = self.pool.begin().await?;
                        let row = record($crate::store::commands::RECORD_RESULT).fetch_optional(&mut *tx).await?;
                        if row.as_ref().is_some_and(|r| r.1 == "DeviceInformation") {
                            let q = sqlx::query($crate::store::inventory::UPDATE_INVENTORY).bind(a.udid);
                            $crate::store::inventory::bind_inventory!(q, i).execute(&mut *tx).await?;
                        }
                        tx.commit().await?;
                        row
                    }
                };
                Ok(row.map(|r| $crate::store::RecordedResult::from_row(a.udid, r)))
            }

            async fn command(&self, uuid: &str) -> $crate::store::StoreResult<Option<$crate::store::CommandRecord>> {
                Ok(sqlx::query_as("SELECT * FROM commands WHERE uuid = $1").bind(uuid).fetch_optional(&self.pool).await?)
            }

            async fn command_targets(&self, seq: i64) -> $crate::store::StoreResult<Vec<$crate::store::TargetRecord>> {
                Ok(sqlx::query_as("SELECT * FROM command_targets WHERE command_seq = $1 ORDER BY udid").bind(seq).fetch_all(&self.pool).await?)
            }

            async fn device_commands(
                &self,
                udid: &str,
                before_seq: Option<i64>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DeviceCommandRow>> {
                Ok(sqlx::query_as(
                    "SELECT c.uuid, c.request_type, c.created_at, c.created_by, t.* FROM command_targets t \
                     JOIN commands c ON c.seq = t.command_seq WHERE t.udid = $1 AND t.command_seq < $2 \
                     ORDER BY t.command_seq DESC LIMIT $3",
                )
                .bind(udid)
                .bind(before_seq.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn erased_since(&self, udid: &str, since: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<bool> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT t.command_seq FROM command_targets t JOIN commands c ON c.seq = t.command_seq \
                     WHERE t.udid = $1 AND c.request_type = 'EraseDevice' AND t.status = 'acknowledged' AND t.completed_at >= $2 LIMIT 1",
                )
                .bind(udid)
                .bind(since)
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.is_some())
            }

            async fn cancel_command(
                &self,
                seq: i64,
                now: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE command_targets SET status = 'cancelled', updated_at = $2 WHERE command_seq = $1 AND status IN ('queued', 'not_now')",
                )
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let mut audit = audit;
                audit.details = $crate::store::audit::with_detail(&audit.details, "cancelled_targets", r.rows_affected().into());
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(r.rows_affected())
            }

            async fn latest_results(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::DeviceCommandRow>> {
                let rows: Vec<$crate::store::DeviceCommandRow> = sqlx::query_as(
                    "SELECT c.uuid, c.request_type, c.created_at, c.created_by, t.* FROM command_targets t \
                     JOIN commands c ON c.seq = t.command_seq WHERE t.udid = $1 AND t.result_json IS NOT NULL \
                     ORDER BY t.command_seq DESC LIMIT 200",
                )
                .bind(udid)
                .fetch_all(&self.pool)
                .await?;
                let mut seen = std::collections::HashSet::new();
                Ok(rows.into_iter().filter(|r| seen.insert(r.request_type.clone())).collect())
            }

            async fn pending_count(&self, udid: &str, now: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as(
                    concat!(
                        "SELECT COUNT(*) FROM command_targets WHERE udid = $1 AND ",
                        $crate::store::pending!(""),
                        " AND (expires_at IS NULL OR expires_at > $2)"
                    ),
                )
                .bind(udid)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(n)
            }
        }
    };
}
pub(crate) use impl_command_store;

#[cfg(test)]
mod tests {
    use super::shift_params;

    #[test]
    fn parameters_from_two_up_are_renumbered() {
        assert_eq!(shift_params("a = $1 AND b = $2 OR c = $12 AND d = '$' || $3", 22), "a = $1 AND b = $24 OR c = $34 AND d = '$' || $25");
        let combined = super::RECORD_RESULT_WITH_INVENTORY.as_str();
        assert!(combined.contains("$30") && !combined.contains("$31"), "RECORD_RESULT's $8 becomes $30");
    }
}
