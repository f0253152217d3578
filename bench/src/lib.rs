//! Lanyard's load generator and simulated devices, kept out of the server crate so that the
//! server binary does not ship them.
//!
//! - [`bench`]: the load generator, the `lanyard-bench` binary (which `lanyard bench ...` runs,
//!   see `BENCHMARKS.md`);
//! - [`sim`]: a simulated iPad or Mac, for the load generator and the server's integration tests.

pub mod bench;
pub mod sim;
