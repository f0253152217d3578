//! First start and every start: data directory, PKI, database, the first admin.

use std::sync::Arc;

use anyhow::Result;

use crate::clock::Clock;
use crate::config::Config;
use crate::context::{Ctx, Lanyard};
use crate::pki::Pki;
use crate::services::auth::session_token::SessionKey;
use crate::services::operators::FirstAdmin;

pub struct Prepared {
    pub ctx: Ctx,
    pub first_admin: Option<FirstAdmin>,
    /// Files created in the data directory on this start.
    pub created: Vec<String>,
}

/// Make or load everything Lanyard needs, apply migrations, create the first admin.
pub async fn prepare(config: Config, public_url: String, clock: Arc<dyn Clock>) -> Result<Prepared> {
    let (mut pki, created) = Pki::load_or_create(&config.data_dir, &config.hostname, &config.organization)?;
    // An operator's certificate in the certs directory is served instead of the self-made one.
    if config.tls
        && let Some(own) = crate::pki::operator_tls(&config.certs_dir)?
    {
        pki.tls_cert_path = own.cert_path;
        pki.tls_key_path = own.key_path;
        pki.tls_from_certs_dir = true;
    }
    let store = crate::store::connect(&config.database_url, config.postgres_pool).await?;
    let session_key = SessionKey::new(&pki.jwt_key)?;
    let ctx = Arc::new(Lanyard::new(config, store, pki, session_key, clock, public_url));
    // The hash a login for an unknown username is checked against, made now rather than by the
    // first such login (which would take twice as long as a known username's).
    tokio::task::spawn_blocking(|| {
        crate::services::auth::password::dummy_hash();
    });
    let first_admin = ctx.operators.ensure_first_admin().await?;
    // The school baseline (profiles/*.mobileconfig), on a fresh installation only.
    ctx.profiles.load_baseline_profiles().await?;
    Ok(Prepared { ctx, first_admin, created })
}
