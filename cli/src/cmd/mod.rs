//! One module per command.

pub mod agent;
pub mod bench;
pub mod demo;
pub mod fleet;
pub mod policy;
pub mod release;
pub mod replay;
pub mod rollout;
pub mod run;
pub mod sigma;
pub mod store;
pub mod test;
pub mod validate;

/// Exit status: success, nothing quarantined or rejected.
pub const EXIT_OK: u8 = 0;
/// Exit status: a usage, input or I/O error stopped the command.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the command ran, and at least one rule was quarantined or rejected.
pub const EXIT_QUARANTINE: u8 = 2;
