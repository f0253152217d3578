//! The one context every face receives: the services, composed once at start.
//!
//! Each service ([`crate::services`]) holds what it needs (store handle, clock, the services it
//! builds on) and nothing else; this is the only place they are put together. A face reaches a
//! rule as `ctx.register.create_grant(..)` or `ctx.commands.queue_command(..)`.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pki::Pki;
use crate::protocol::signers::SignerCache;
use crate::services::ade::Ade;
use crate::services::audit::Audit;
use crate::services::auth::session_token::SessionKey;
use crate::services::commands::Commands;
use crate::services::ddm::Ddm;
use crate::services::devices::Devices;
use crate::services::enrollment::Enrollment;
use crate::services::hold::Hold;
use crate::services::operators::Operators;
use crate::services::profiles::Profiles;
use crate::services::push::{Push, Pusher};
use crate::services::register::Register;
use crate::services::safeguarding::Safeguarding;
use crate::services::supervision::Supervision;
use crate::store::DynStore;

pub struct Lanyard {
    pub config: Arc<Config>,
    /// The services' store. The faces ask the services, never this (`tests/architecture.rs`
    /// checks); tests read it to check what was stored.
    pub store: DynStore,
    pub pki: Arc<Pki>,
    /// Signs and checks session tokens (`data/jwt.key`).
    pub session_key: Arc<SessionKey>,
    pub clock: Arc<dyn Clock>,
    /// What devices and people are told to connect to.
    pub public_url: String,
    pub metrics: Arc<Metrics>,
    /// Device certificates that passed the full signature check (see `protocol::signers`).
    pub signers: Arc<SignerCache>,

    pub audit: Audit,
    pub hold: Hold,
    pub supervision: Supervision,
    pub push: Push,
    pub commands: Commands,
    pub register: Register,
    pub profiles: Profiles,
    pub safeguarding: Safeguarding,
    pub enrollment: Enrollment,
    pub operators: Operators,
    pub devices: Devices,
    pub ade: Ade,
    pub ddm: Ddm,
}

pub type Ctx = Arc<Lanyard>;

impl Lanyard {
    /// Compose the services, each from what it needs.
    pub fn new(config: Config, store: DynStore, pki: Pki, session_key: SessionKey, clock: Arc<dyn Clock>, public_url: String) -> Lanyard {
        let config = Arc::new(config);
        let pki = Arc::new(pki);
        let session_key = Arc::new(session_key);
        let metrics = Arc::new(Metrics::default());
        let signers = Arc::new(SignerCache::default());
        let audit = Audit { store: store.clone(), clock: clock.clone() };
        let hold = Hold { store: store.clone(), clock: clock.clone(), audit: audit.clone() };
        let supervision = Supervision { store: store.clone() };
        let push = Push {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            pki: pki.clone(),
            pusher: Arc::new(Pusher::default()),
            audit: audit.clone(),
        };
        let commands = Commands {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            hold: hold.clone(),
            supervision: supervision.clone(),
            push: push.clone(),
        };
        let register = Register { store: store.clone(), clock: clock.clone(), audit: audit.clone(), hold: hold.clone() };
        let ddm = Ddm {
            store: store.clone(),
            clock: clock.clone(),
            organization: Arc::from(config.organization.as_str()),
            commands: commands.clone(),
            hold: hold.clone(),
            push: push.clone(),
            audit: audit.clone(),
        };
        let profiles = Profiles {
            store: store.clone(),
            clock: clock.clone(),
            pki: pki.clone(),
            audit: audit.clone(),
            hold: hold.clone(),
            supervision: supervision.clone(),
            commands: commands.clone(),
            push: push.clone(),
            ddm: Arc::new(ddm.clone()),
        };
        let safeguarding = Safeguarding {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            pki: pki.clone(),
            audit: audit.clone(),
            commands: commands.clone(),
            register: register.clone(),
            profiles: profiles.clone(),
        };
        let enrollment = Enrollment {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            pki: pki.clone(),
            public_url: Arc::from(public_url.as_str()),
            audit: audit.clone(),
        };
        let operators = Operators {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            session_key: session_key.clone(),
            audit: audit.clone(),
        };
        let ade = Ade {
            store: store.clone(),
            clock: clock.clone(),
            config: config.clone(),
            pki: pki.clone(),
            audit: audit.clone(),
            client_config: crate::apple::ade::AdeConfig::default(),
            public_url: Arc::from(public_url.as_str()),
        };
        let devices = Devices {
            store: store.clone(),
            clock: clock.clone(),
            pki: pki.clone(),
            signers: signers.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            hold: hold.clone(),
            push: push.clone(),
            commands: commands.clone(),
            profiles: profiles.clone(),
            safeguarding: safeguarding.clone(),
            enrollment: enrollment.clone(),
            ddm: ddm.clone(),
            setup_timeout: config.ade_setup_timeout,
        };
        Lanyard {
            config,
            store,
            pki,
            session_key,
            clock,
            public_url,
            metrics,
            signers,
            audit,
            hold,
            supervision,
            push,
            commands,
            register,
            profiles,
            safeguarding,
            enrollment,
            operators,
            devices,
            ade,
            ddm,
        }
    }

    /// Whether the database answers and every migration is applied (`/readyz`).
    pub async fn readiness(&self) -> crate::store::Readiness {
        self.store.readiness().await
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}
