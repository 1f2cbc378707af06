//! rulebox's integration tests: one binary, one module per feature.

mod common;
mod differential;
mod faults;
mod load_rejects;
mod update;
mod wasi;
