//! rulebox's integration tests: one binary, one module per feature.

mod agent;
mod agent_hostile;
mod common;
mod config_doc;
mod differential;
mod fault_reasons;
mod faults;
mod fuzz_smoke;
mod host_calls;
mod impostor_ids;
mod july2024;
mod kept_quarantines;
mod load_rejects;
mod pack_faults;
mod pack_protocol;
mod packs;
mod result_checks;
mod rule_tests;
mod shared_index;
mod signed_packs;
mod starved_host;
mod update;
mod validator;
mod wasi;
mod wat;
