//! The embedded default backend: one SQLite file in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

/// The size SQLite cuts its write-ahead log back to once a checkpoint has copied it into the
/// database. Without a limit the file never shrinks: SQLite reuses it from the start, at
/// the largest it ever grew to, and it grows whenever readers keep checkpoints from
/// finishing during a burst of writes (`lanyard bench`'s 90,000-device enrolment left a
/// 3.8 GB log beside a 200 MB database, for good). Every connection that writes needs it:
/// the one whose write starts the log again is the one that cuts it.
pub(crate) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The device path's statements, without sqlx's thread hand-overs (none in memory).
    pub(super) inline: Option<super::inline::InlineSqlite>,
}

impl SqliteStore {
    pub(crate) const MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Replaced once connected by `patient_busy_handler`: the same 10 s, shorter sleeps.
            .busy_timeout(Duration::from_secs(10))
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
            .foreign_keys(true);
        // No ping before each query (sqlx's default): it is a round trip of its own to the
        // connection, as dear as the query; a broken connection still fails the query and
        // sqlx's check when a connection is given back closes it.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    super::inline::patient_busy_handler(conn.lock_handle().await?.as_raw_handle());
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await?;
        Self::MIGRATOR.run(&pool).await?;
        let file = opts.get_filename();
        let in_memory = file.as_os_str() == ":memory:" || url.contains("mode=memory");
        let inline = (!in_memory).then(|| super::inline::InlineSqlite::new(file.to_path_buf()));
        Ok(SqliteStore { pool, inline })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

super::impl_health!(SqliteStore, "sqlite");
super::operators::impl_operator_store!(SqliteStore, Sqlite);
super::audit::impl_audit_store!(SqliteStore, Sqlite);
super::devices::impl_device_store!(SqliteStore, Sqlite);
super::commands::impl_command_store!(SqliteStore, Sqlite);
super::register::impl_register_store!(SqliteStore, Sqlite);
super::push::impl_push_store!(SqliteStore, Sqlite, "");
super::safeguarding::impl_safeguarding_store!(SqliteStore, Sqlite);
super::profiles::impl_profile_store!(SqliteStore, Sqlite);
super::ade::impl_ade_store!(SqliteStore, Sqlite);
super::ddm::impl_ddm_store!(SqliteStore, Sqlite);

/// Test helper: writes 80 MB in one transaction (the log grows past [`WAL_SIZE_LIMIT`]), then
/// checkpoints it. Returns the log's size after the burst.
#[cfg(test)]
pub(crate) async fn write_a_burst_and_checkpoint(store: &SqliteStore, wal: &std::path::Path) -> u64 {
    sqlx::query("CREATE TABLE IF NOT EXISTS burst (b BLOB)").execute(&store.pool).await.unwrap();
    let mut tx = store.pool.begin().await.unwrap();
    for _ in 0..80 {
        sqlx::query("INSERT INTO burst VALUES (zeroblob(1048576))").execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let grown = std::fs::metadata(wal).unwrap().len();
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&store.pool).await.unwrap();
    grown
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of writes grows the log; once it is checkpointed, the next write cuts the file
    /// back to the limit instead of keeping it at its largest.
    #[tokio::test]
    async fn the_log_is_cut_back_after_a_burst_of_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("burst.db").display())).await.unwrap();
        let wal = dir.path().join("burst.db-wal");
        let grown = write_a_burst_and_checkpoint(&store, &wal).await;
        assert!(grown > WAL_SIZE_LIMIT as u64, "the burst did not grow the log: {grown} bytes");
        sqlx::query("DELETE FROM burst").execute(&store.pool).await.unwrap();
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= WAL_SIZE_LIMIT as u64, "the log stayed at {after} bytes after it was checkpointed");
    }
}
