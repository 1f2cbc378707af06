//! **Faulty content: the field-count mismatch of the July 2024 CrowdStrike outage.**
//!
//! # The incident
//!
//! On 19 July 2024 CrowdStrike shipped Channel File 291, new *content* (detection templates) for its
//! Falcon sensor. The IPC template type declared **21** input fields, but the sensor code that fed the
//! Content Interpreter supplied only **20** input values. Earlier template instances used a wildcard
//! for the 21st field, so it was never read; the new instances had a real criterion there, the
//! interpreter read input value 21, past the end of the 20-value array, with no bounds check, and the
//! out-of-bounds read crashed the Windows kernel (about 8.5 million machines). The fix added a
//! runtime bounds check and a check that template and input agree on the field count.
//!
//! # This rule
//!
//! The same bug, as a rulebox rule. [`TEMPLATE_FIELDS`] declares 21 fields; [`supplied_values`] builds
//! the value array from the event, and knows only the first 20 (it was written before the template
//! grew a 21st field, `Timestamp`). The template instance [`CRITERIA`] is a wildcard for the first 20
//! fields and a real criterion for the 21st, so the interpreter ([`FieldCountRule::matches`]) reads
//! value index 20 with unchecked pointer arithmetic.
//!
//! # Why it traps in WebAssembly, and what happens natively
//!
//! WebAssembly linear memory has no unmapped holes: a read just past an array normally returns
//! whatever lies next to it. To reproduce the unmapped memory the kernel hit, the wasm build places the
//! 20-value array at the very **end of linear memory** (in a page it grows for the purpose), so the
//! 21st read starts exactly at the memory's size and traps with *out of bounds memory access*. (The
//! rule uses a few hundred KiB, far below any host's cap, so the page is granted. If `memory.grow`
//! ever returned -1 instead, the array's base is computed from a huge bogus offset near 4 GiB and the
//! read traps the same way.) Either way the host sees the trap on the first process event.
//!
//! The unchecked read is compiled for `wasm32` only (`#[cfg(target_arch = "wasm32")]`): natively the
//! interpreter uses the bounds-checked read that was CrowdStrike's fix, finds no 21st value, treats the
//! criterion as not matched and reports nothing, so native tests neither crash nor read stray memory.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

/// The fields the template declares: the 18 `ProcessStart` fields, `Computer`, `ProcessId` and, added
/// last, `Timestamp`: 21 in all.
pub const TEMPLATE_FIELDS: [&str; 21] = [
    "Image",
    "CommandLine",
    "CurrentDirectory",
    "User",
    "IntegrityLevel",
    "Hashes",
    "ParentImage",
    "ParentCommandLine",
    "ParentUser",
    "OriginalFileName",
    "Product",
    "Company",
    "Description",
    "FileVersion",
    "LogonId",
    "ProcessGuid",
    "ParentProcessGuid",
    "ParentProcessId",
    "Computer",
    "ProcessId",
    "Timestamp",
];

/// How many values the value builder supplies: one fewer than the template declares.
pub const SUPPLIED: usize = 20;

/// One criterion of the template instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// Matches anything; the interpreter does not read the value.
    Any,
    /// The value must be non-empty text.
    NonEmpty,
}

/// The template instance (the "channel file"): wildcards for the first 20 fields, a real criterion
/// for the 21st.
pub const CRITERIA: [Criterion; 21] = {
    let mut c = [Criterion::Any; 21];
    c[20] = Criterion::NonEmpty;
    c
};

/// One input value as the interpreter sees it: a pointer and a length, like the sensor's.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct RawValue {
    ptr: *const u8,
    len: usize,
}

/// Builds the value array from the event: the first [`SUPPLIED`] template fields, as text (numbers
/// and missing fields become empty text).
pub fn supplied_values<'e>(event: &EventView<'e>) -> [&'e str; SUPPLIED] {
    core::array::from_fn(|i| event.text(TEMPLATE_FIELDS[i]))
}

/// Fires when the event matches the template instance; in wasm, traps on the first process event.
#[derive(Default)]
pub struct FieldCountRule;

impl FieldCountRule {
    /// The content interpreter: evaluates [`CRITERIA`] against the supplied values.
    pub fn matches(values: &[&str; SUPPLIED]) -> bool {
        let raw: [RawValue; SUPPLIED] = core::array::from_fn(|i| RawValue {
            ptr: values[i].as_ptr(),
            len: values[i].len(),
        });
        let base = place(&raw);
        for (index, criterion) in CRITERIA.iter().enumerate() {
            if *criterion == Criterion::Any {
                continue;
            }
            match read_value(base, &raw, index) {
                Some(value) if value.len > 0 => {}
                _ => return false,
            }
        }
        true
    }
}

/// Where the interpreter's value array lives. In wasm: flush against the end of linear memory.
#[cfg(target_arch = "wasm32")]
fn place(raw: &[RawValue; SUPPLIED]) -> *const RawValue {
    const PAGE: usize = 65_536;
    let size = core::mem::size_of::<[RawValue; SUPPLIED]>();
    let old_pages = core::arch::wasm32::memory_grow(0, 1);
    let base = if old_pages == usize::MAX {
        // The host refused the page: use an address beyond any memory it would allow instead.
        0xFFFF_0000usize
    } else {
        (old_pages + 1) * PAGE - size
    };
    let base = core::ptr::with_exposed_provenance_mut::<[RawValue; SUPPLIED]>(base);
    if old_pages != usize::MAX {
        // SAFETY: the page [old_pages * PAGE, (old_pages + 1) * PAGE) was just added by memory.grow and
        // nothing else knows about it; `base` is the last `size` bytes of it, suitably aligned (size is
        // a multiple of the 4-byte alignment of `RawValue`).
        unsafe { base.write_volatile(*raw) };
    }
    base.cast::<RawValue>()
}

/// Natively the array stays where it is.
#[cfg(not(target_arch = "wasm32"))]
fn place(raw: &[RawValue; SUPPLIED]) -> *const RawValue {
    raw.as_ptr()
}

/// Reads input value `index`. THE BUG (wasm32 only): no bounds check, so index 20 reads past the end
/// of the 20-value array, which [`place`] put at the end of linear memory: the read traps.
#[cfg(target_arch = "wasm32")]
fn read_value(
    base: *const RawValue,
    _raw: &[RawValue; SUPPLIED],
    index: usize,
) -> Option<RawValue> {
    let slot = base.wrapping_add(index);
    // SAFETY: none: this is the fault this rule exists to commit. For index < 20 the slot is inside the
    // array `place` wrote; for index 20 it is just past the end of linear memory and wasm traps the
    // read (it cannot touch anything outside the sandbox).
    Some(unsafe { slot.read_volatile() })
}

/// Natively: the bounds-checked read (CrowdStrike's fix); index 20 yields `None`.
#[cfg(not(target_arch = "wasm32"))]
fn read_value(
    _base: *const RawValue,
    raw: &[RawValue; SUPPLIED],
    index: usize,
) -> Option<RawValue> {
    raw.get(index).copied()
}

impl Rule for FieldCountRule {
    const META: RuleMeta = RuleMeta {
        id: "faulty-field-count",
        name: "Faulty: 21 template fields, 20 input values",
        version: "1.0.0",
        severity: Severity::Low,
        events: &[EventKind::ProcessStart],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        if event.kind() != EventKind::ProcessStart {
            return;
        }
        let values = supplied_values(event);
        if Self::matches(&values) {
            out.detect("template matched")
                .field("Image", values[0])
                .field("Computer", values[18]);
        }
    }
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(FieldCountRule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_declares_one_field_more_than_is_supplied() {
        assert_eq!(TEMPLATE_FIELDS.len(), 21);
        assert_eq!(SUPPLIED, 20);
        assert_eq!(CRITERIA[20], Criterion::NonEmpty);
        assert!(CRITERIA[..20].iter().all(|c| *c == Criterion::Any));
        // Every field but the 21st is one the builder supplies from a process event.
        let mut p = ProcessStart::default();
        p.image = "C:\\x.exe".into();
        let ev = Event::new(EventData::ProcessStart(p));
        for name in &TEMPLATE_FIELDS {
            assert!(ev.field(name).is_some(), "{name}");
        }
    }

    #[test]
    fn natively_the_bounds_checked_read_reports_nothing() {
        let mut p = ProcessStart::default();
        p.image = "C:\\Windows\\System32\\cmd.exe".into();
        let mut ev = Event::new(EventData::ProcessStart(p));
        ev.host = "ws-1".into();
        ev.timestamp = 1_721_370_000_000;
        assert!(run_native(&mut FieldCountRule, &ev).is_empty());
        let bytes = ev.to_bytes().unwrap();
        let values = supplied_values(&EventView::new(&bytes).unwrap());
        assert_eq!(values[0], "C:\\Windows\\System32\\cmd.exe");
        assert_eq!(values[18], "ws-1");
    }
}
