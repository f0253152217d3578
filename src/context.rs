//! The one context every handler and service receives.

use std::sync::Arc;

use crate::auth::session_token::SessionKey;
use crate::clock::Clock;
use crate::config::Config;
use crate::pki::Pki;
use crate::store::DynStore;

pub struct Lanyard {
    pub config: Config,
    pub store: DynStore,
    pub pki: Pki,
    /// Signs and checks session tokens (`data/jwt.key`).
    pub session_key: SessionKey,
    pub clock: Arc<dyn Clock>,
    /// What devices and people are told to connect to.
    pub public_url: String,
    pub pusher: crate::pushing::Pusher,
    pub metrics: crate::metrics::Metrics,
    /// Device certificates that passed the full signature check (see `mdm::signers`).
    pub signers: crate::mdm::signers::SignerCache,
}

pub type Ctx = Arc<Lanyard>;

impl Lanyard {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}
