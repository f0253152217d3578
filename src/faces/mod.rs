//! The faces Lanyard shows the world. Each turns its callers' requests into calls on the
//! services ([`crate::services`]) and never reaches the store itself.
//!
//! - [`device`]: what Apple devices call — MDM check-in and connect, SCEP, the enrolment profile.
//! - [`api`]: the operator API under `/api/v1` (JSON, OpenAPI at `/api/v1/openapi.json`).
//! - [`console`]: the web console for the DSL and the technicians.
//! - [`cli`]: the `lanyard` command.
//! - [`sweeper`]: the clock's face, which acts on time passing (timetables, expiry, re-pushes).
//!
//! [`server`] serves the first three over HTTP(S); [`peer`] and [`principal`] are what a request
//! tells a face about who sent it.

pub mod api;
pub mod cli;
pub mod console;
pub mod device;
pub mod peer;
pub mod principal;
pub mod server;
pub mod sweeper;
