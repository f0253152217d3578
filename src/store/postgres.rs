//! The shared backend: PostgreSQL, for several Lanyard instances behind a load balancer.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    pub(crate) const MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

    /// `max_connections`: the `postgres_pool` setting.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        // No ping before each query (sqlx's default): it is a round trip of its own to the
        // connection, as dear as the query; a broken connection still fails the query and
        // sqlx's check when a connection is given back closes it.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // Several instances may start at once: migrations take sqlx's advisory lock.
        Self::MIGRATOR.run(&pool).await?;
        tracing::info!(connections = max_connections, "PostgreSQL connection pool");
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

super::impl_health!(PgStore, "postgres");
super::operators::impl_operator_store!(PgStore, Postgres);
super::audit::impl_audit_store!(PgStore, Postgres);
super::devices::impl_device_store!(PgStore, Postgres);
super::commands::impl_command_store!(PgStore, Postgres);
super::register::impl_register_store!(PgStore, Postgres);
// One sweeper claim at a time across every instance sharing the database (see store::push).
super::push::impl_push_store!(PgStore, Postgres, "SELECT pg_advisory_xact_lock(7308895159027526516)");
super::safeguarding::impl_safeguarding_store!(PgStore, Postgres);
super::profiles::impl_profile_store!(PgStore, Postgres);
super::ade::impl_ade_store!(PgStore, Postgres);
super::ddm::impl_ddm_store!(PgStore, Postgres);
