//! The engine's WebAssembly stack: 256 KiB instead of the toolchain's 1 MiB.
//!
//! The stack is at the bottom of the linear memory (`--stack-first`), so it counts in every
//! instance's memory high-water mark, which `rulebox validate` holds to half the memory cap. The
//! evaluator's deepest stack is a condition or program nested `MAX_DEPTH` deep (64 levels: decoded,
//! checked and evaluated by recursion), far below 256 KiB; deeper data overflows the stack below
//! address 0, which traps (a refused pack, never memory of something else): `sigma/tests/pack.rs`
//! loads both in the sandbox.

const STACK_BYTES: u32 = 256 << 10;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size={STACK_BYTES}");
    }
}
