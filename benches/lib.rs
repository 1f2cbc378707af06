//! Benchmarks live in `rules.rs` (criterion, `harness = false`); this library is empty.
