//! rulebox's integration tests: one binary, one module per feature.

mod agent;
mod agent_hostile;
mod common;
mod differential;
mod faults;
mod fuzz_smoke;
mod july2024;
mod load_rejects;
mod rule_tests;
mod update;
mod validator;
mod wasi;
