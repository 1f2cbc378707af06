//! Fuzz target `pack_calls`: the body is `rulebox_tests::fuzz::pack_calls` (shared with the smoke run in
//! `tests/all/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rulebox_tests::fuzz::pack_calls(data);
});
