//! **Faulty content: a malformed result.**
//!
//! This module does not use `export_rule!`: it writes the ABI exports by hand (`rulebox_abi_version`,
//! `rulebox_metadata`, `rulebox_input`, `rulebox_on_event`, with the names and signatures of
//! [`rulebox_sdk::abi`]). Its metadata is valid (the SDK's [`RuleMetadata::from_meta`](rulebox_sdk::RuleMetadata::from_meta), encoded with
//! postcard) and it accepts events like any rule, but `rulebox_on_event` returns a packed `(ptr, len)`
//! of [`GARBAGE`]: 64 bytes of `0xFF`, in bounds of its memory but not a result in the format of
//! [`rulebox_sdk::abi`] (it claims 4,294,967,295 detections in 64 bytes). The host must reject the
//! result and quarantine the rule.
//!
//! The exports exist in the `wasm32` build only (`#[cfg(target_arch = "wasm32")]`); natively the crate
//! is just the metadata and the garbage, which the tests check really does not decode.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

#[cfg(all(target_arch = "wasm32", feature = "module"))]
use rulebox_sdk::RuleMetadata;
use rulebox_sdk::prelude::*;

/// The rule's metadata (valid).
pub const META: RuleMeta = RuleMeta {
    id: "faulty-garbage-result",
    name: "Faulty: returns garbage as its result",
    version: "1.0.0",
    severity: Severity::Low,
    events: &[EventKind::ProcessStart],
};

/// What `rulebox_on_event` points the host at: not a result.
pub static GARBAGE: [u8; 64] = [0xFF; 64];

#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod guest {
    use alloc::vec::Vec;
    use core::cell::UnsafeCell;

    use rulebox_sdk::abi::{ABI_VERSION, MAX_INPUT_LEN, pack};

    use super::{GARBAGE, META, RuleMetadata};

    struct Buffers {
        input: Vec<u8>,
        metadata: Vec<u8>,
    }

    struct Cell(UnsafeCell<Buffers>);

    // SAFETY: the module is built without threads; the host calls one export at a time and no export
    // calls another, so there is never more than one reference to the buffers.
    unsafe impl Sync for Cell {}

    static BUFFERS: Cell = Cell(UnsafeCell::new(Buffers {
        input: Vec::new(),
        metadata: Vec::new(),
    }));

    fn buffers() -> &'static mut Buffers {
        // SAFETY: see the `Sync` impl: one thread, one export at a time, and no caller keeps the
        // reference past its export.
        unsafe { &mut *BUFFERS.0.get() }
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "wasm32 pointers are 32 bits wide"
    )]
    fn ptr_of(bytes: &[u8]) -> u32 {
        bytes.as_ptr() as usize as u32
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "wasm32 buffer lengths fit in 32 bits"
    )]
    fn packed(bytes: &[u8]) -> u64 {
        pack(ptr_of(bytes), bytes.len() as u32)
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_abi_version() -> u32 {
        ABI_VERSION
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_metadata() -> u64 {
        let b = buffers();
        match postcard::to_allocvec(&RuleMetadata::from_meta(&META)) {
            Ok(bytes) => {
                b.metadata = bytes;
                packed(&b.metadata)
            }
            Err(_) => 0,
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_input(len: u32) -> u32 {
        if len > MAX_INPUT_LEN {
            return 0;
        }
        let b = buffers();
        b.input.resize(len as usize, 0);
        ptr_of(&b.input)
    }

    #[unsafe(no_mangle)]
    extern "C" fn rulebox_on_event(_len: u32) -> u64 {
        packed(&GARBAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_valid() {
        let meta = rulebox_sdk::RuleMetadata::from_meta(&META);
        let bytes = postcard::to_allocvec(&meta).unwrap();
        let back: rulebox_sdk::RuleMetadata<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, meta);
        assert!(back.subscriptions.contains(EventKind::ProcessStart));
        assert_eq!(back.subscriptions.iter().count(), 1);
    }

    #[test]
    fn garbage_does_not_decode_as_detections() {
        let decoded = rulebox_sdk::decode_result(&GARBAGE, META.id, u32::MAX);
        assert!(
            matches!(
                decoded,
                Err(rulebox_sdk::ResultError::BadCount {
                    count: u32::MAX,
                    len: 64
                })
            ),
            "{decoded:?}"
        );
    }
}
