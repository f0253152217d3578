//! The embedded default backend: one SQLite file in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The device path's statements, without sqlx's thread hand-overs (none in memory).
    inline: Option<super::inline::InlineSqlite>,
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

    pub(crate) fn inline(&self) -> Option<&super::inline::InlineSqlite> {
        self.inline.as_ref()
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
