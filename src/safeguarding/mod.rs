//! Safeguarding: cases, remote quarantine with an evidence snapshot, legal hold, two-person
//! release and disposal, and the chain-of-custody log a DSL hands to the police.

pub mod cases;
pub mod custody;
pub mod hold;
mod pdf;
pub mod quarantine;
pub mod release;

pub use hold::{FORBIDDEN_UNDER_HOLD, hold_error};
