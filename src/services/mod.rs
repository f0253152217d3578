//! The rules: one module per domain, in the school's words.
//!
//! Each face (the device face, the operator API, the console, the CLI) asks these modules what
//! to do; they ask the store ([`crate::store`]) to remember it and speak Apple's formats through
//! [`crate::protocol`] and [`crate::apple`]. A rule lives in exactly one function here, which
//! every face calls: the legal hold in [`hold`], AUP-before-access in
//! [`register::grants`], supervision in [`supervision`].

pub mod ade;
pub mod audit;
pub mod auth;
pub mod commands;
pub mod compliance;
pub mod csv;
pub mod ddm;
pub mod devices;
pub mod enrollment;
pub mod expiry;
pub mod hold;
pub mod operators;
pub mod profiles;
pub mod push;
pub mod register;
pub mod safeguarding;
pub mod supervision;
