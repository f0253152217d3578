//! Lanyard: a mobile-device-management server for schools.
//!
//! It enrols school iPads and Macs over Apple's MDM protocol, pushes restriction profiles, keeps
//! the register of who may use which device, and lets the DSL quarantine a device without anyone
//! being able to destroy the evidence. See `README.md` and `../shared/DESIGN.md`.

pub mod apple;
pub mod clock;
pub mod config;
pub mod context;
pub mod error;
pub mod faces;
pub mod logging;
pub mod metrics;
pub mod pki;
pub mod protocol;
pub mod schema;
pub mod services;
pub mod setup;
pub mod store;

use axum::Router;

use context::Ctx;

/// Every route of every face.
pub fn routes(ctx: Ctx) -> Router<Ctx> {
    faces::api::router().merge(faces::device::router()).merge(faces::console::router(ctx))
}
