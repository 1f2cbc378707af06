//! The host/guest contract: ABI version 2 (one rule per module) and ABI version 3 (a rule pack: many
//! rules per module). `docs/abi.md` in the repository is the same text with more background; the two
//! must agree. A module built with [`export_rule!`](crate::export_rule) implements version 2, one
//! built with [`export_rules!`](crate::export_rules) or [`export_pack!`](crate::export_pack) version
//! 3; the host runs both.
//!
//! # Exports a rule module provides
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `memory` | memory | the rule's linear memory (32-bit, one memory) |
//! | `rulebox_abi_version` | `() -> i32` | [`ABI_VERSION`]; the host refuses any other value |
//! | `rulebox_metadata` | `() -> i64` | packed `(ptr, len)` of a postcard [`RuleMetadata`](crate::RuleMetadata) |
//! | `rulebox_input` | `(len: i32) -> i32` | pointer to a guest-owned buffer of at least `len` bytes, `0` if it cannot |
//! | `rulebox_on_event` | `(len: i32) -> i64` | evaluate the event in the first `len` bytes of the input buffer |
//! | `rulebox_last_panic` | `() -> i64` | optional: packed `(ptr, len)` of the last panic message, `0` if none |
//! | `_initialize` | `()` | optional (WASI reactors): called once, right after instantiation |
//!
//! A packed `(ptr, len)` is an `i64` whose low 32 bits are the pointer and whose high 32 bits are the
//! length: see [`pack`] and [`unpack`].
//!
//! # Calling sequence and memory layout
//!
//! ```text
//!  host                                     guest linear memory (owned by the guest)
//!  ────                                     ───────────────────────────────────────────────
//!  load:  rulebox_abi_version() == 2 ?
//!         rulebox_metadata() ──────────────► [ postcard RuleMetadata ]  (ptr, len) checked by host
//!  per event:
//!         encode Event once (crate::wire)
//!         p = rulebox_input(n) ─────────────► [ input buffer, capacity ≥ n ]  reused across events
//!         copy n bytes to p..p+n            ─► [ wire event (n bytes), read in place ]
//!         r = rulebox_on_event(n)
//!           r == 0          no detections
//!           r == u64::MAX   the guest could not decode the event (schema mismatch)
//!           else (ptr,len) ─────────────────► [ detections in the result format (len bytes) ]
//!         host checks ptr+len ≤ memory size, len ≤ its result cap, then every count, length,
//!         cap and text of the result (crate::decode_result)
//! ```
//!
//! The host never trusts a pointer or length from the guest: every one is bounds-checked against the
//! memory's current size and the host's own caps before a byte is read, and a result that does not
//! decode, is too large, or names another rule's id quarantines the rule.
//!
//! # The result format
//!
//! A rule's detections for one event are written by [`Detections`](crate::Detections) straight into
//! one byte buffer, and that buffer is what `rulebox_on_event` points the host at: no allocation per
//! detection in the guest and no second encoding step. All integers are little-endian.
//!
//! ```text
//!  result    := count: u32 (≥ 1)   detection × count          (nothing after the last one)
//!  detection := severity: u8 (0 informational … 4 critical)
//!               field count: u8 (≤ MAX_FIELDS = 64)
//!               title length: u16 (≤ MAX_TITLE_BYTES = 1,024)   title: UTF-8
//!               field × field count
//!  field     := name length: u16 (≤ MAX_FIELD_NAME_BYTES = 128)
//!               value length: u16 (≤ MAX_FIELD_VALUE_BYTES = 8,192)
//!               name: UTF-8   value: UTF-8
//! ```
//!
//! The rule id is not in the result: the host knows which rule it called, so a rule cannot report
//! under another rule's name. `Detections` keeps every text within the caps (it cuts an over-long
//! text at a character boundary and ends it with [`TRUNCATED_MARK`](crate::TRUNCATED_MARK), and drops
//! fields past the 64th), so an attacker who feeds a rule a 30 KB command line cannot get the rule
//! quarantined for reporting it. The host reads the result with
//! [`decode_result`](crate::decode_result), which checks every count, length, cap and text before it
//! believes a byte, and quarantines a rule whose result fails any check.
//!
//! # Imports a rule module may use
//!
//! | import | signature | meaning |
//! |---|---|---|
//! | `rulebox.log` | `(level: i32, ptr: i32, len: i32)` | log a UTF-8 message (level 0 error … 4 trace); rate-limited by the host, truncated at 1 KiB; the host only reads the memory |
//! | `wasi_snapshot_preview1.*` | WASI preview 1 | for `wasm32-wasip1` modules only: a context that grants nothing (no files, no environment, no sockets); stdout and stderr go to the host's log, rate-limited; `poll_oneoff` (sleeping) fails with `ENOTSUP` |
//!
//! A plain rule imports nothing. Any other import makes the host refuse the module at load.
//!
//! # ABI 3: rule packs
//!
//! One module (one instance) evaluates a set of rules on one copy of a batch of events per call.
//! The host knows each rule (its id, version, subscriptions, limits, counters, quarantine) exactly
//! as it knows a one-rule module; the pack only saves the copies and the calls.
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `memory`, `rulebox_input`, `rulebox_last_panic`, `_initialize` | | as in version 2 |
//! | `rulebox_abi_version` | `() -> i32` | [`PACK_ABI_VERSION`] |
//! | `rulebox_load` | `(len: i32) -> i64` | called once, right after instantiation: build the pack from the rule data in the first `len` bytes of the input buffer (`len` may be 0); returns packed `(ptr, len)` of a postcard [`LoadReply`](crate::LoadReply) |
//! | `rulebox_on_events` | `(len: i32) -> i64` | evaluate the batch ([`crate::batch`]) in the first `len` bytes of the input buffer; returns [`RESULT_NONE`] when done, [`RESULT_UNDECODABLE_EVENT`] if it cannot read it |
//!
//! | import | signature | meaning |
//! |---|---|---|
//! | `rulebox.event_begin` | `(event: i32) -> i32` | closes the open rule, if any; before any work on event `event` of the batch: `1` evaluate it, `0` skip it; the pack's own fuel and deadline for that event start here |
//! | `rulebox.rule_begin` | `(rule: i32) -> i32` | closes the open rule, if any; before rule `rule` runs on the current event: `1` run it (it is open, under its own fuel budget and deadline, from here), `0` skip it (quarantined, removed, not subscribed, or already evaluated) |
//! | `rulebox.rule_end` | `(ptr: i32, len: i32)` | closes the open rule with its detections in the result format above (`(u32::MAX, u32::MAX)`: it could not decode the event); needed only with detections: a rule without any is closed by the next `rule_begin` or `event_begin`, or by the return |
//!
//! ```text
//!  host                                      guest (one instance, one linear memory)
//!  ────                                      ─────────────────────────────────────────────────
//!  load:  rulebox_abi_version() == 3 ?
//!         p = rulebox_input(d); copy rule data ─► [ input buffer: rule data (d bytes) ]
//!         rulebox_load(d) ─────────────────────► [ postcard LoadReply: pack id, name, version,
//!                                                  one RuleMetadata per rule ] (checked by host)
//!  per batch (up to 4,096 events):
//!         p = rulebox_input(n); write batch ───► [ count | (offset, len) × count | events... ]
//!         rulebox_on_events(n)
//!           for each event e, in order:
//!             event_begin(e) ◄───────────────────  pack budget: fuel and deadline per event
//!             for each candidate rule r, increasing:
//!               rule_begin(r) ◄──────────────────  r's own fuel budget and deadline start;
//!                                                  r runs on a fresh EventView of event e
//!               rule_end(ptr, len) ◄─────────────► [ r's detections, result format ]
//!               (only with detections)             host checks and keeps them
//! ```
//!
//! The calling sequence is checked by the host: events begin in strictly increasing order and in
//! range; within an event, rules begin in strictly increasing order and in range, only after the
//! event began; `rule_end` only with a rule open. A step out of order is a *protocol violation*: a
//! fault of the pack as a whole (the pack stops; see `docs/abi.md`). A trap, a fuel or deadline
//! fault, a memory fault or a bad result while a rule is open is that rule's fault alone: the host
//! replaces the instance with a fresh one (same module, same data) and resumes with the next rule
//! of the same event. Anything outside every rule runs on the pack's own budget and is the pack's
//! fault.

/// The ABI version of a one-rule module ([`export_rule!`](crate::export_rule)). Version 1
/// returned detections as a postcard list; version 2 returns them in the result format of this
/// module's docs, written in place by [`Detections`](crate::Detections).
pub const ABI_VERSION: u32 = 2;

/// The ABI version of a rule pack ([`export_rules!`](crate::export_rules),
/// [`export_pack!`](crate::export_pack)): many rules in one module, events in batches.
pub const PACK_ABI_VERSION: u32 = 3;

/// The metadata name of a rule pack that is a **shared prefilter index** (ABI 3,
/// `docs/abi.md`): its rules are those of other packs, which it never evaluates; per event it names
/// the rules worth running (`rule_begin`), which the host records instead of running and hands to
/// their own packs in the batch's candidate table ([`crate::batch`]). The host uses it only while
/// its version is the digest of the packs it covers.
pub const INDEX_PACK_NAME: &str = "rulebox prefilter index";

/// Longest detection title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Most matched fields in one detection.
pub const MAX_FIELDS: usize = 64;
/// Longest matched-field name, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 128;
/// Longest matched-field value, in bytes.
pub const MAX_FIELD_VALUE_BYTES: usize = 8192;

/// The version of the event schema (the wire layout of [`crate::wire`], which the body field lists of
/// [`Event`](crate::Event) define). A module built against another schema is refused at load, before
/// it can misread a field. Version 1 was a postcard encoding decoded whole; version 2 is read in place.
pub const SCHEMA_VERSION: u32 = 2;

/// `rulebox_on_event` result: no detections.
pub const RESULT_NONE: u64 = 0;

/// `rulebox_on_event` result: the guest could not decode the event it was given.
pub const RESULT_UNDECODABLE_EVENT: u64 = u64::MAX;

/// The largest input buffer the guest glue will allocate (the host's own cap is lower).
pub const MAX_INPUT_LEN: u32 = 16 << 20;

/// Export names.
pub mod exports {
    /// `() -> i32`
    pub const ABI_VERSION: &str = "rulebox_abi_version";
    /// `() -> i64`
    pub const METADATA: &str = "rulebox_metadata";
    /// `(len: i32) -> i32`
    pub const INPUT: &str = "rulebox_input";
    /// `(len: i32) -> i64`
    pub const ON_EVENT: &str = "rulebox_on_event";
    /// `() -> i64`, optional
    pub const LAST_PANIC: &str = "rulebox_last_panic";
    /// `()`, optional (WASI reactors)
    pub const INITIALIZE: &str = "_initialize";
    /// `(len: i32) -> i64`, packs only
    pub const LOAD: &str = "rulebox_load";
    /// `(len: i32) -> i64`, packs only
    pub const ON_EVENTS: &str = "rulebox_on_events";
    /// The linear memory.
    pub const MEMORY: &str = "memory";
}

/// Import names.
pub mod imports {
    /// The module name of rulebox's own imports.
    pub const MODULE: &str = "rulebox";
    /// `(level: i32, ptr: i32, len: i32)`
    pub const LOG: &str = "log";
    /// `(event: i32) -> i32`, packs only
    pub const EVENT_BEGIN: &str = "event_begin";
    /// `(rule: i32) -> i32`, packs only
    pub const RULE_BEGIN: &str = "rule_begin";
    /// `(ptr: i32, len: i32)`, packs only
    pub const RULE_END: &str = "rule_end";
    /// The module name of WASI preview 1 imports.
    pub const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";
}

/// Packs a pointer and a length into one `u64`: pointer in the low half, length in the high half.
pub const fn pack(ptr: u32, len: u32) -> u64 {
    ((len as u64) << 32) | ptr as u64
}

/// Splits a packed value into `(ptr, len)`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "taking each 32-bit half is the point"
)]
pub const fn unpack(packed: u64) -> (u32, u32) {
    (packed as u32, (packed >> 32) as u32)
}

/// Log levels for [`log`](crate::log) and the `rulebox.log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    /// Something is wrong.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// Worth knowing.
    Info = 2,
    /// For the rule's author.
    Debug = 3,
    /// Very verbose.
    Trace = 4,
}

/// Support code for [`export_rule!`](crate::export_rule); not part of the public API.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
#[allow(
    clippy::cast_possible_truncation,
    reason = "wasm32 pointers and lengths are 32 bits wide"
)]
pub mod __private {
    use alloc::vec::Vec;
    use core::cell::UnsafeCell;

    use super::{MAX_INPUT_LEN, RESULT_NONE, RESULT_UNDECODABLE_EVENT, pack};
    use crate::{Detections, EventView, Rule, RuleMetadata};

    pub use crate::pack_glue::PackCell;

    struct Guest<R> {
        rule: R,
        input: Vec<u8>,
        /// The encoded metadata `rulebox_metadata` points at.
        metadata: Vec<u8>,
        detections: Detections,
    }

    /// The rule instance and its buffers, in a static.
    pub struct GuestCell<R>(UnsafeCell<Option<Guest<R>>>);

    // SAFETY: rule modules are built without the wasm threads proposal, so the module has exactly one
    // thread; the host calls one export at a time and no export calls another.
    unsafe impl<R> Sync for GuestCell<R> {}

    fn ptr_of(bytes: &[u8]) -> u32 {
        // wasm32 pointers are 32 bits wide.
        bytes.as_ptr() as usize as u32
    }

    impl<R: Rule> GuestCell<R> {
        /// An empty cell; the rule is created on first use.
        #[allow(
            clippy::new_without_default,
            reason = "used in a const context by the export macro"
        )]
        pub const fn new() -> Self {
            GuestCell(UnsafeCell::new(None))
        }

        fn with<T>(&self, f: impl FnOnce(&mut Guest<R>) -> T) -> T {
            // SAFETY: see the `Sync` impl: there is one thread and no export re-enters another, so this
            // is the only live reference to the cell's contents.
            let slot = unsafe { &mut *self.0.get() };
            let guest = slot.get_or_insert_with(|| Guest {
                rule: R::default(),
                input: Vec::new(),
                metadata: Vec::new(),
                detections: Detections::new(R::META.id, R::META.severity),
            });
            f(guest)
        }

        /// `rulebox_metadata`
        pub fn metadata(&self) -> u64 {
            self.with(|g| {
                let meta = RuleMetadata::from_meta(&R::META);
                g.metadata.clear();
                match postcard::to_extend(&meta, core::mem::take(&mut g.metadata)) {
                    Ok(out) => g.metadata = out,
                    Err(_) => return 0,
                }
                pack(ptr_of(&g.metadata), g.metadata.len() as u32)
            })
        }

        /// `rulebox_input`
        pub fn input(&self, len: u32) -> u32 {
            if len > MAX_INPUT_LEN {
                return 0;
            }
            self.with(|g| {
                g.input.resize(len as usize, 0);
                ptr_of(&g.input)
            })
        }

        /// `rulebox_on_event`
        pub fn on_event(&self, len: u32) -> u64 {
            self.with(|g| {
                let Guest {
                    rule,
                    input,
                    detections,
                    ..
                } = g;
                let Some(bytes) = input.get(..len as usize) else {
                    return RESULT_UNDECODABLE_EVENT;
                };
                let Ok(event) = EventView::new(bytes) else {
                    return RESULT_UNDECODABLE_EVENT;
                };
                detections.clear();
                rule.on_event(&event, detections);
                if detections.is_empty() {
                    return RESULT_NONE;
                }
                let result = detections.as_bytes();
                pack(ptr_of(result), result.len() as u32)
            })
        }
    }

    /// The last panic message, written by the SDK's panic handler.
    pub struct PanicSlot(UnsafeCell<([u8; 1024], usize)>);

    // SAFETY: as for `GuestCell`: one thread.
    unsafe impl Sync for PanicSlot {}

    /// The one panic slot.
    pub static PANIC: PanicSlot = PanicSlot(UnsafeCell::new(([0; 1024], 0)));

    impl PanicSlot {
        /// `rulebox_last_panic`
        pub fn get(&self) -> u64 {
            // SAFETY: one thread, and no other reference to the slot is live during an export.
            let (buf, len) = unsafe { &*self.0.get() };
            if *len == 0 {
                0
            } else {
                pack(ptr_of(buf), *len as u32)
            }
        }

        #[cfg(feature = "panic-handler")]
        fn record(&self, info: &core::panic::PanicInfo<'_>) {
            use core::fmt::Write;
            struct Truncating<'b>(&'b mut [u8], usize);
            impl Write for Truncating<'_> {
                fn write_str(&mut self, s: &str) -> core::fmt::Result {
                    for &b in s.as_bytes() {
                        if self.1 < self.0.len() {
                            self.0[self.1] = b;
                            self.1 += 1;
                        }
                    }
                    Ok(())
                }
            }
            // SAFETY: one thread; the panic handler never returns into code holding a reference.
            let (buf, len) = unsafe { &mut *self.0.get() };
            let mut w = Truncating(buf, 0);
            let _ = write!(w, "{info}");
            *len = w.1;
        }
    }

    #[cfg(feature = "allocator")]
    #[global_allocator]
    static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

    /// Records the message where `rulebox_last_panic` finds it, then traps.
    #[cfg(feature = "panic-handler")]
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        PANIC.record(info);
        core::arch::wasm32::unreachable()
    }

    #[link(wasm_import_module = "rulebox")]
    unsafe extern "C" {
        #[link_name = "log"]
        fn host_log(level: u32, ptr: *const u8, len: u32);
    }

    /// Calls the `rulebox.log` import.
    pub fn log(level: u32, message: &str) {
        // SAFETY: the host reads `len` bytes at `ptr` from this module's memory and keeps no reference.
        unsafe { host_log(level, message.as_ptr(), message.len() as u32) }
    }
}

/// Exports a [`Rule`](crate::Rule) type as a rulebox rule module (see the crate docs for a full example).
///
/// On `wasm32` targets this defines the ABI exports listed in [`crate::abi`]; on every other target it
/// expands to nothing, so the same crate builds natively for tests and benchmarks.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static GUEST: $crate::abi::__private::GuestCell<$rule> =
                $crate::abi::__private::GuestCell::new();

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_abi_version() -> u32 {
                $crate::abi::ABI_VERSION
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_metadata() -> u64 {
                GUEST.metadata()
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_input(len: u32) -> u32 {
                GUEST.input(len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_on_event(len: u32) -> u64 {
                GUEST.on_event(len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_last_panic() -> u64 {
                $crate::abi::__private::PANIC.get()
            }
        };
    };
}

/// Exports a [`Pack`](crate::Pack) type as a rule pack module (ABI 3): an engine whose rules are
/// data, or any set of rules evaluated in one sandbox. See [`Pack`](crate::Pack).
///
/// On `wasm32` targets this defines the exports of ABI 3 ([`crate::abi`]); on every other target it
/// expands to nothing.
#[macro_export]
macro_rules! export_pack {
    ($pack:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static GUEST: $crate::abi::__private::PackCell<$pack> =
                $crate::abi::__private::PackCell::new();

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_abi_version() -> u32 {
                $crate::abi::PACK_ABI_VERSION
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_input(len: u32) -> u32 {
                GUEST.input(len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_load(len: u32) -> u64 {
                GUEST.load(len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_on_events(len: u32) -> u64 {
                GUEST.on_events(len)
            }

            #[unsafe(no_mangle)]
            extern "C" fn rulebox_last_panic() -> u64 {
                $crate::abi::__private::PANIC.get()
            }
        };
    };
}

/// Exports several [`Rule`](crate::Rule) types as one rule pack module (ABI 3): one sandbox
/// evaluates them all on one copy of each event, and each keeps its own metadata, state, fuel
/// budget, counters and quarantine.
///
/// `export_rules!(A, B, C)` names the pack after the crate (package name, description and
/// version); `export_rules!(pack: PACK; A, B, C)` takes a [`PackMeta`](crate::PackMeta) constant.
/// Rule index `i` is the `i`th type given. On targets other than `wasm32` it expands to nothing.
#[macro_export]
macro_rules! export_rules {
    (pack: $meta:expr; $($rule:ty),+ $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Rules;
            impl $crate::StaticRules for Rules {
                const PACK: $crate::PackMeta = $meta;
                fn rules() -> $crate::__alloc::vec::Vec<$crate::__alloc::boxed::Box<dyn $crate::DynRule>> {
                    $crate::__alloc::vec![
                        $($crate::__alloc::boxed::Box::new(<$rule as ::core::default::Default>::default())),+
                    ]
                }
            }
            $crate::export_pack!($crate::RuleList<Rules>);
        };
    };
    ($($rule:ty),+ $(,)?) => {
        $crate::export_rules!(
            pack: $crate::PackMeta::from_package(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_DESCRIPTION"),
                env!("CARGO_PKG_VERSION"),
            );
            $($rule),+
        );
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        for (p, l) in [(0, 0), (1, 2), (u32::MAX, 7), (12, u32::MAX)] {
            assert_eq!(unpack(pack(p, l)), (p, l));
        }
        assert_eq!(unpack(RESULT_UNDECODABLE_EVENT), (u32::MAX, u32::MAX));
    }
}
