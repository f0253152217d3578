//! Lanyard: a mobile-device-management server for schools.
//!
//! It enrols school iPads and Macs over Apple's MDM protocol, pushes restriction profiles, keeps
//! the register of who may use which device, and lets the DSL quarantine a device without anyone
//! being able to destroy the evidence. See `README.md` and `../shared/DESIGN.md`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod der;
pub mod devices;
pub mod enrollment;
pub mod error;
pub mod logging;
pub mod mdm;
pub mod metrics;
pub mod operators;
pub mod pki;
pub mod profiles;
pub mod push;
pub mod push_cert;
pub mod pushing;
pub mod register;
pub mod safeguarding;
pub mod scep;
pub mod server;
pub mod setup;
pub mod store;
pub mod supervision;
pub mod ui;

use axum::Router;

use context::Ctx;

/// Every route of every face.
pub fn routes(ctx: Ctx) -> Router<Ctx> {
    api::router().merge(ui::router(ctx))
}
