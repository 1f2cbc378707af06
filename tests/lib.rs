//! rulebox's integration tests live in `all/`. This library holds the fuzz target bodies
//! ([`fuzz`]), shared by the cargo-fuzz crate in `fuzz/` (long runs, nightly) and by the
//! deterministic smoke runs in `all/fuzz_smoke.rs` (part of `cargo test`).

pub mod fuzz;
