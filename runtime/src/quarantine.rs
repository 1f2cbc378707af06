//! Why a rule stopped: typed reasons, the quarantine record, and the alert raised with it.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::rule_info::{PackInfo, RuleInfo};

/// Why a rule was refused at load or quarantined at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    // ---- run time ----
    /// The rule used its whole fuel budget on one event.
    OutOfFuel,
    /// A call into the rule ran past its wall-clock deadline.
    Deadline,
    /// The rule tried to grow its memory past its cap.
    MemoryLimit,
    /// The rule tried to grow a table past its cap.
    TableLimit,
    /// The rule exhausted its stack (unbounded recursion).
    StackOverflow,
    /// The rule read or wrote outside its linear memory.
    OutOfBounds,
    /// The rule divided an integer by zero.
    DivisionByZero,
    /// The rule executed `unreachable` (without a recorded panic message).
    Unreachable,
    /// The rule panicked (the message is in the record).
    GuestPanic,
    /// Any other WebAssembly trap.
    Trap,
    /// The rule's result is not a valid list of detections (bad pointer, does not decode, trailing
    /// bytes, another rule's id, fields over their caps).
    MalformedResult,
    /// The rule's result is larger than its cap (bytes or number of detections).
    OversizedResult,
    /// The rule's `rulebox_input` gave the host no buffer for the event (or batch), or one outside
    /// the rule's memory.
    BadInputBuffer,
    /// The rule could not decode the event the host gave it (an event-schema mismatch).
    UndecodableEvent,
    /// The rule called WASI `proc_exit`: a rule returns from every call, it never exits.
    GuestExit,
    /// The rule passed a host function (a WASI function) a pointer or length outside its memory,
    /// or a misaligned pointer.
    BadPointer,
    /// The host failed to run the rule (not a fault of the rule's: an error of the host or of the
    /// engine).
    HostError,
    /// A rule pack broke the calling sequence of ABI 3 (events or rules out of order or out of
    /// range, a rule ended that never began, a call that returned with a rule open): a fault of the
    /// pack as a whole.
    PackProtocol,
    // ---- load time ----
    /// The bytes are not a WebAssembly module (no `\0asm` header).
    NotWasm,
    /// The module is larger than the runtime accepts.
    ModuleTooLarge,
    /// The module does not validate or compile (truncated, corrupt, uses a disabled feature).
    InvalidModule,
    /// A required export is missing.
    MissingExport,
    /// An export has the wrong type or signature.
    WrongExportType,
    /// The module reports an ABI version this runtime does not implement.
    AbiVersion,
    /// The module was built against another event-schema version.
    SchemaVersion,
    /// The module imports something the runtime does not provide.
    ForbiddenImport,
    /// The module declares more memory than the rule's cap.
    MemoryOverCap,
    /// The module declares a larger table than the rule's cap.
    TableOverCap,
    /// The module's start routine ran out of fuel or time.
    StartTooLong,
    /// The module's start routine trapped.
    StartFailed,
    /// The rule's metadata is missing, does not decode, or is invalid.
    BadMetadata,
    /// Another loaded rule already has this rule's id.
    DuplicateId,
    /// A rule pack refused its rule data, or the data is over the runtime's cap.
    BadRuleData,
}

impl Reason {
    /// Whether a merely slow (not broken) event can cause this: fuel and deadline budgets. Such faults
    /// count as strikes, and quarantine only once the rule's strike allowance is used up.
    pub fn is_budget(self) -> bool {
        matches!(self, Reason::OutOfFuel | Reason::Deadline)
    }

    /// Whether this reason arises at load time (the module never ran an event).
    pub fn is_load_time(self) -> bool {
        matches!(
            self,
            Reason::NotWasm
                | Reason::ModuleTooLarge
                | Reason::InvalidModule
                | Reason::MissingExport
                | Reason::WrongExportType
                | Reason::AbiVersion
                | Reason::SchemaVersion
                | Reason::ForbiddenImport
                | Reason::MemoryOverCap
                | Reason::TableOverCap
                | Reason::StartTooLong
                | Reason::StartFailed
                | Reason::BadMetadata
                | Reason::DuplicateId
                | Reason::BadRuleData
        )
    }

    /// The snake_case name used in JSON and logs.
    pub fn name(self) -> &'static str {
        REASON_NAMES
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("unknown", |(_, n)| n)
    }

    /// The reason named `name` (its [`name`](Self::name)), if there is one.
    pub fn from_name(name: &str) -> Option<Reason> {
        REASON_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| *r)
    }
}

const REASON_NAMES: &[(Reason, &str)] = &[
    (Reason::OutOfFuel, "out_of_fuel"),
    (Reason::Deadline, "deadline"),
    (Reason::MemoryLimit, "memory_limit"),
    (Reason::TableLimit, "table_limit"),
    (Reason::StackOverflow, "stack_overflow"),
    (Reason::OutOfBounds, "out_of_bounds"),
    (Reason::DivisionByZero, "division_by_zero"),
    (Reason::Unreachable, "unreachable"),
    (Reason::GuestPanic, "guest_panic"),
    (Reason::Trap, "trap"),
    (Reason::MalformedResult, "malformed_result"),
    (Reason::OversizedResult, "oversized_result"),
    (Reason::BadInputBuffer, "bad_input_buffer"),
    (Reason::UndecodableEvent, "undecodable_event"),
    (Reason::GuestExit, "guest_exit"),
    (Reason::BadPointer, "bad_pointer"),
    (Reason::HostError, "host_error"),
    (Reason::PackProtocol, "pack_protocol"),
    (Reason::NotWasm, "not_wasm"),
    (Reason::ModuleTooLarge, "module_too_large"),
    (Reason::InvalidModule, "invalid_module"),
    (Reason::MissingExport, "missing_export"),
    (Reason::WrongExportType, "wrong_export_type"),
    (Reason::AbiVersion, "abi_version"),
    (Reason::SchemaVersion, "schema_version"),
    (Reason::ForbiddenImport, "forbidden_import"),
    (Reason::MemoryOverCap, "memory_over_cap"),
    (Reason::TableOverCap, "table_over_cap"),
    (Reason::StartTooLong, "start_too_long"),
    (Reason::StartFailed, "start_failed"),
    (Reason::BadMetadata, "bad_metadata"),
    (Reason::DuplicateId, "duplicate_id"),
    (Reason::BadRuleData, "bad_rule_data"),
];

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault of a running rule: the reason, the trap message and the wasm backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The typed reason.
    pub reason: Reason,
    /// The trap or error message.
    pub message: String,
    /// The WebAssembly backtrace, when the fault was a trap.
    pub backtrace: Option<String>,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// Everything needed to understand and replay why a rule stopped. Written as JSON by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuarantineRecord {
    /// Record format version.
    pub format: u32,
    /// The rule's id (empty when the module was refused before its metadata could be read).
    pub rule_id: String,
    /// The rule's version (empty when unknown).
    pub rule_version: String,
    /// SHA-256 of the module bytes, hex.
    pub content_hash: String,
    /// Where the module came from (a path, or a label for built-in content).
    pub source: String,
    /// The typed reason.
    pub reason: Reason,
    /// The trap or error message.
    pub message: String,
    /// The WebAssembly backtrace, when the fault was a trap.
    pub backtrace: Option<String>,
    /// The exact event bytes (the wire format of `rulebox_sdk::wire`, base64) that triggered the fault;
    /// none for load-time rejects.
    pub event: Option<String>,
    /// The triggering event as JSON, for people (the bytes above are what replay uses).
    pub event_json: Option<serde_json::Value>,
    /// The limits the rule ran under (replay uses the same).
    pub limits: Limits,
    /// The guest stack limit in force, in bytes (replay uses the same).
    #[serde(default = "default_stack")]
    pub max_wasm_stack: usize,
    /// The epoch tick in force, in milliseconds (replay uses the same).
    #[serde(default = "default_tick")]
    pub epoch_tick_ms: u64,
    /// Budget strikes the rule had used, including this fault when it was one.
    pub strikes: u32,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The runtime's version.
    pub runtime_version: String,
    /// For a rule of a pack, or a pack itself: which pack, its rule data, and the limits of the
    /// instance (replay uses the same). Absent for a one-rule module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackRecord>,
}

/// The pack side of a [`QuarantineRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PackRecord {
    /// The pack's id.
    pub id: String,
    /// The pack's version.
    pub version: String,
    /// SHA-256 of the pack's rule data, hex (that of no bytes for a pack without data).
    pub data_hash: String,
    /// The rule's index in the pack; `None` when the record is about the pack itself (a fault in
    /// its shared code, a protocol violation, a load-time refusal): then every rule of the pack
    /// stopped with it.
    pub rule_index: Option<u32>,
    /// How many rules the pack has (0 when it was refused before its metadata was read).
    pub rules: u32,
    /// The limits of the pack's instance: its memory and table caps, its load budgets, and its own
    /// fuel and deadline per event for the work outside every rule.
    pub limits: Limits,
}

impl QuarantineRecord {
    /// The current record format. Format 2 added [`pack`](Self::pack); a format-1 record reads as
    /// one without it.
    pub const FORMAT: u32 = 2;

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per kind of record; all are needed"
    )]
    pub(crate) fn new(
        info: Option<&RuleInfo>,
        content_hash: &str,
        source: &str,
        fault: &Fault,
        event: Option<&[u8]>,
        config: &crate::config::RuntimeConfig,
        limits: &Limits,
        strikes: u32,
    ) -> QuarantineRecord {
        let event_json = event.and_then(|bytes| {
            rulebox_sdk::Event::from_bytes(bytes)
                .ok()
                .and_then(|e| serde_json::to_value(&e).ok())
        });
        QuarantineRecord {
            format: Self::FORMAT,
            rule_id: info.map(|i| i.id.clone()).unwrap_or_default(),
            rule_version: info.map(|i| i.version.clone()).unwrap_or_default(),
            content_hash: content_hash.to_owned(),
            source: source.to_owned(),
            reason: fault.reason,
            message: fault.message.clone(),
            backtrace: fault.backtrace.clone(),
            event: event.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            event_json,
            limits: limits.clone(),
            max_wasm_stack: config.max_wasm_stack,
            epoch_tick_ms: config.epoch_tick_ms,
            strikes,
            at_unix_ms: now_unix_ms(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
            pack: None,
        }
    }

    /// The record with its pack side set.
    pub(crate) fn in_pack(mut self, pack: PackRecord) -> QuarantineRecord {
        self.pack = Some(pack);
        self
    }

    /// The triggering event's exact bytes, if the record has them.
    pub fn event_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        self.event
            .as_deref()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
            .transpose()
    }

    /// A short name for files: `<rule id, pack id or hash prefix>-<reason>`.
    pub fn file_stem(&self) -> String {
        let who = if self.rule_id.is_empty()
            && let Some(pack) = &self.pack
            && !pack.id.is_empty()
        {
            sanitize(&format!("pack-{}", pack.id))
        } else if self.rule_id.is_empty() {
            self.content_hash
                .get(..12)
                .unwrap_or(&self.content_hash)
                .to_owned()
        } else {
            sanitize(&self.rule_id)
        };
        format!("{who}-{}", self.reason)
    }
}

/// `text` with everything but ASCII letters, digits, `-` and `_` replaced by `_`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn default_stack() -> usize {
    crate::config::RuntimeConfig::default().max_wasm_stack
}

fn default_tick() -> u64 {
    crate::config::RuntimeConfig::default().epoch_tick_ms
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A security signal about the rules themselves, delivered in the same stream as detections.
///
/// Silencing a rule is never silent: an attacker who crafts events that make a rule fault would blind
/// it, so every quarantine and every budget strike is an alert carrying the triggering event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Alert {
    /// A rule was quarantined (or refused at load); it will not run again until a new version arrives.
    /// When the record's [`pack`](QuarantineRecord::pack) has no `rule_index`, a whole rule pack
    /// stopped (or was refused): every one of its rules.
    RuleQuarantined(Arc<QuarantineRecord>),
    /// A new version of a rule was quarantined and the version it replaced in a hot update was
    /// restored in its place.
    PreviousVersionRestored {
        /// Why the new version was quarantined.
        quarantined: Arc<QuarantineRecord>,
        /// The version running again.
        restored: Arc<RuleInfo>,
    },
    /// A rule pack's shared code (the work outside every rule: walking the batch, a prefilter) hit
    /// the pack's own fuel or time budget on an event. The instance was replaced by a fresh one and
    /// the pack goes on with the next event; the rules that had not yet run on this event did not
    /// see it (`rules_missed`, also counted in [`SetStats`](crate::SetStats)). The pack stops once
    /// its strikes reach its allowance.
    PackStrike {
        /// The pack.
        pack: Arc<PackInfo>,
        /// The fault.
        fault: Fault,
        /// Strikes used so far, including this one.
        strike: u32,
        /// Strikes allowed before the pack stops.
        allowed: u32,
        /// Rules of the pack that were to run on the event and did not.
        rules_missed: u32,
    },
    /// A rule hit its fuel or time budget on an event and was reset; it keeps running until its strike
    /// allowance is used up.
    BudgetStrike {
        /// The rule.
        rule: Arc<RuleInfo>,
        /// The fault.
        fault: Fault,
        /// Strikes used so far, including this one.
        strike: u32,
        /// Strikes allowed before quarantine.
        allowed: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_match_their_json_form() {
        for (reason, name) in REASON_NAMES {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::String((*name).into())
            );
            assert_eq!(reason.name(), *name);
            assert_eq!(Reason::from_name(name), Some(*reason));
        }
        assert_eq!(Reason::from_name("no_such_reason"), None);
    }
}
