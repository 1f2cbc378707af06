//! One loaded rule: its own store and instance, and the call that evaluates an event.

use std::borrow::Cow;
use std::sync::Arc;

use rulebox_sdk::abi::{self, exports};
use rulebox_sdk::{Detection, Field, ResultError, ResultReader, RuleMetadata};
use wasmtime::{Memory, Store, Trap, TypedFunc, WasmBacktrace};

use crate::config::Limits;
use crate::host::{HostState, HostTrap};
use crate::limiter::{MemoryLimitExceeded, TableLimitExceeded};
use crate::module::{CompiledRule, LoadError};
use crate::quarantine::{Fault, Reason};
use crate::rule_info::RuleInfo;
use crate::runtime::{Runtime, SandboxThread};
use crate::start::{Started, export, start};

/// Largest metadata a rule may return.
pub(crate) const MAX_METADATA_BYTES: u32 = 4096;

/// Longest trap message or backtrace kept (function names come from the module: untrusted).
const MAX_REPORT_TEXT: usize = 16 << 10;

pub(crate) fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(text.floor_char_boundary(max));
        text.push_str(" [truncated]");
    }
    text
}

/// Per-rule counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleStats {
    /// Events the rule was called for.
    pub events: u64,
    /// Detections it returned.
    pub detections: u64,
    /// Fuel used by the last event.
    pub last_fuel: u64,
    /// Most fuel any event used.
    pub max_fuel: u64,
    /// Fuel used over all events.
    pub total_fuel: u64,
    /// Largest memory the rule has had, in bytes.
    pub memory_high_water: u64,
    /// Budget strikes counted now (each `strike_decay_s` since the last takes one off).
    pub strikes: u32,
    /// When the last budget strike was counted.
    #[serde(skip)]
    pub last_strike: Option<std::time::Instant>,
    /// Log messages suppressed by the rate limit.
    pub log_suppressed: u64,
}

/// A rule instantiated in its own store, ready for events.
pub struct LoadedRule {
    info: Arc<RuleInfo>,
    compiled: CompiledRule,
    limits: Limits,
    /// `None` once released (a quarantined rule's memory is given back).
    instance: Option<Instance>,
    pub(crate) stats: RuleStats,
}

struct Instance {
    store: Store<HostState>,
    memory: Memory,
    input: TypedFunc<u32, u32>,
    on_event: TypedFunc<u32, u64>,
    last_panic: Option<TypedFunc<(), u64>>,
    /// The guest input buffer from the last `rulebox_input` call, reused while events fit.
    input_ptr: u32,
    input_cap: u32,
    /// Fuel left right after the last call returned (before any follow-up call such as reading a
    /// panic message), for the fuel statistics.
    fuel_left: u64,
}

/// Overwrites an owned string in place (keeping its allocation), or makes one.
fn overwrite(dst: &mut Cow<'static, str>, src: &str) {
    match dst {
        Cow::Owned(s) => {
            s.clear();
            s.push_str(src);
        }
        Cow::Borrowed(_) => *dst = Cow::Owned(src.to_owned()),
    }
}

/// Reads a result (`rulebox_sdk::ResultReader`: every check) and appends its detections to `out`,
/// each written into one taken from `spare` when there is one. On an error, `out` may hold part of
/// the result: the caller drops it.
pub(crate) fn read_result(
    bytes: &[u8],
    rule_id: &str,
    max_detections: u32,
    out: &mut Vec<Detection<'static>>,
    spare: &mut Vec<Detection<'static>>,
) -> Result<(), ResultError> {
    let mut reader = ResultReader::new(bytes, max_detections)?;
    while let Some((severity, title)) = reader.next_detection()? {
        let mut d = spare.pop().unwrap_or_else(|| Detection {
            rule_id: Cow::Owned(String::new()),
            title: Cow::Owned(String::new()),
            severity,
            fields: Vec::new(),
        });
        overwrite(&mut d.rule_id, rule_id);
        overwrite(&mut d.title, title);
        d.severity = severity;
        let mut used = 0;
        while let Some((name, value)) = reader.next_field()? {
            if let Some(f) = d.fields.get_mut(used) {
                overwrite(&mut f.name, name);
                overwrite(&mut f.value, value);
            } else {
                d.fields.push(Field {
                    name: Cow::Owned(name.to_owned()),
                    value: Cow::Owned(value.to_owned()),
                });
            }
            used += 1;
        }
        d.fields.truncate(used);
        out.push(d);
    }
    Ok(())
}

/// Turns a wasmtime error from a call into the guest into a typed fault.
pub(crate) fn classify(
    error: &wasmtime::Error,
    store: &mut Store<HostState>,
    last_panic: Option<&TypedFunc<(), u64>>,
    memory: Option<Memory>,
) -> Fault {
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| format!("{bt}"))
        .filter(|s| !s.is_empty());
    // The error's chain without the backtrace context (the backtrace has its own field).
    let parts: Vec<String> = error
        .chain()
        .map(|e| e.to_string())
        .filter(|text| backtrace.as_deref() != Some(text.as_str()))
        .collect();
    let backtrace = backtrace.map(|b| clip(b, MAX_REPORT_TEXT));
    let message = if parts.is_empty() {
        format!("{error:#}")
    } else {
        parts.join(": ")
    };
    let message = clip(message, MAX_REPORT_TEXT);
    let reason = if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => Reason::OutOfFuel,
            Trap::Interrupt => Reason::Deadline,
            Trap::StackOverflow => Reason::StackOverflow,
            Trap::MemoryOutOfBounds | Trap::TableOutOfBounds | Trap::HeapMisaligned => {
                Reason::OutOfBounds
            }
            Trap::IntegerDivisionByZero => Reason::DivisionByZero,
            Trap::UnreachableCodeReached => Reason::Unreachable,
            _ => Reason::Trap,
        }
    } else if error.downcast_ref::<MemoryLimitExceeded>().is_some() {
        Reason::MemoryLimit
    } else if error.downcast_ref::<TableLimitExceeded>().is_some() {
        Reason::TableLimit
    } else if let Some(trap) = error.downcast_ref::<HostTrap>() {
        let reason = match trap {
            HostTrap::Exit(_) => Reason::GuestExit,
            HostTrap::BadPointer { .. } => Reason::BadPointer,
        };
        return Fault {
            reason,
            message: trap.to_string(),
            backtrace,
        };
    } else if let Some(e) = error.downcast_ref::<wiggle::GuestError>() {
        return Fault {
            reason: Reason::BadPointer,
            message: wasi_pointer_message(e),
            backtrace,
        };
    } else {
        Reason::HostError
    };
    if reason == Reason::Unreachable
        && let Some(panic) = read_panic(store, last_panic, memory)
    {
        return Fault {
            reason: Reason::GuestPanic,
            message: format!("rule panicked: {panic}"),
            backtrace,
        };
    }
    Fault {
        reason,
        message,
        backtrace,
    }
}

/// What a WASI function of `wasmtime-wasi` refused the guest's pointer for, in words (its own
/// message is Rust debug text).
fn wasi_pointer_message(e: &wiggle::GuestError) -> String {
    use wiggle::GuestError as G;
    match e {
        G::InFunc {
            modulename,
            funcname,
            err,
            ..
        } => format!("{modulename}.{funcname}: {}", wasi_pointer_message(err)),
        G::PtrOutOfBounds(r) => format!(
            "the rule passed a WASI function a range outside its memory ({} bytes at {:#x})",
            r.len, r.start
        ),
        G::PtrNotAligned(r, align) => format!(
            "the rule passed a WASI function a pointer not aligned to {align} bytes ({:#x})",
            r.start
        ),
        G::PtrOverflow => {
            "the rule passed a WASI function a range that wraps around its memory".to_owned()
        }
        other => format!("the rule passed a WASI function a bad argument: {other}"),
    }
}

/// Asks the guest for its recorded panic message, with a small budget; never trusts the pointer.
fn read_panic(
    store: &mut Store<HostState>,
    last_panic: Option<&TypedFunc<(), u64>>,
    memory: Option<Memory>,
) -> Option<String> {
    let (func, memory) = (last_panic?, memory?);
    store.set_fuel(100_000).ok()?;
    store.data_mut().start_budget(100);
    store.set_epoch_deadline(1);
    let packed = func.call(&mut *store, ()).ok()?;
    let bytes = read_guest(store, memory, packed, 1024).ok()?;
    let text = String::from_utf8_lossy(bytes).into_owned();
    (!text.is_empty()).then_some(text)
}

/// The bytes at a packed `(ptr, len)` in guest memory, after checking them against the memory's
/// current size and `max_len`.
pub(crate) fn read_guest(
    store: &Store<HostState>,
    memory: Memory,
    packed: u64,
    max_len: u32,
) -> Result<&[u8], String> {
    guest_slice(memory.data(store), packed, max_len)
}

/// The bytes at a packed `(ptr, len)` in `data` (a guest's whole memory), after checking them
/// against its size and `max_len`.
pub(crate) fn guest_slice(data: &[u8], packed: u64, max_len: u32) -> Result<&[u8], String> {
    let (ptr, len) = abi::unpack(packed);
    if len > max_len {
        return Err(format!("length {len} is over the cap of {max_len} bytes"));
    }
    let start = usize::try_from(ptr).map_err(|_| "pointer does not fit".to_owned())?;
    let len = usize::try_from(len).map_err(|_| "length does not fit".to_owned())?;
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| {
            format!(
                "range {ptr:#x}+{len} is outside the rule's {} bytes of memory",
                data.len()
            )
        })
}

/// Checks and reads a result other than [`abi::RESULT_NONE`] (the caller handles that one) at
/// `packed` in `memory` (the guest's whole memory), under `limits`: the result of ABI 2's
/// `rulebox_on_event` and of ABI 3's `rule_end` alike. Detections are appended to `out` (each
/// written into one taken from `spare` while there are any); on a fault nothing is appended.
pub(crate) fn check_result(
    memory: &[u8],
    packed: u64,
    rule_id: &str,
    limits: &Limits,
    out: &mut Vec<Detection<'static>>,
    spare: &mut Vec<Detection<'static>>,
) -> Result<(), Fault> {
    let malformed = |message: String| Fault {
        reason: Reason::MalformedResult,
        message,
        backtrace: None,
    };
    if packed == abi::RESULT_UNDECODABLE_EVENT {
        return Err(Fault {
            reason: Reason::UndecodableEvent,
            message: format!(
                "the rule could not decode the event (it expects event-schema version {})",
                abi::SCHEMA_VERSION
            ),
            backtrace: None,
        });
    }
    let (ptr, len) = abi::unpack(packed);
    if len == 0 {
        // The ABI has one way to say "no detections": 0. A zero-length result anywhere else is
        // not a result (a rule that returns garbage is quarantined, not believed).
        return Err(malformed(format!(
            "result ({ptr:#x}, 0) is empty but not 0: a result with no detections is 0, \
             a result is at least one detection"
        )));
    }
    if len > limits.max_result_bytes {
        return Err(Fault {
            reason: Reason::OversizedResult,
            message: format!(
                "result of {len} bytes is over the cap of {} bytes",
                limits.max_result_bytes
            ),
            backtrace: None,
        });
    }
    let bytes = guest_slice(memory, packed, limits.max_result_bytes)
        .map_err(|m| malformed(format!("result {m}")))?;
    // Every count, length, cap and text is checked; a result that fails any check adds nothing to
    // `out` (what was read goes back to `spare`).
    let before = out.len();
    let read = read_result(bytes, rule_id, limits.max_detections, out, spare);
    if let Err(e) = read {
        spare.extend(out.drain(before..));
        return Err(match e {
            ResultError::TooMany { .. } => Fault {
                reason: Reason::OversizedResult,
                message: e.to_string(),
                backtrace: None,
            },
            e => malformed(format!(
                "result does not decode as a list of detections: {e}"
            )),
        });
    }
    Ok(())
}

pub(crate) fn load_fault(error: &wasmtime::Error, store: &mut Store<HostState>) -> LoadError {
    let fault = classify(error, store, None, None);
    match fault.reason {
        Reason::OutOfFuel | Reason::Deadline => LoadError::StartTooLong(fault),
        Reason::MemoryLimit => LoadError::MemoryOverCap {
            declared: error
                .downcast_ref::<MemoryLimitExceeded>()
                .map_or(0, |e| u64::try_from(e.desired).unwrap_or(u64::MAX)),
            cap: store.data().limiter.memory_cap,
        },
        Reason::TableLimit => LoadError::TableOverCap {
            declared: error
                .downcast_ref::<TableLimitExceeded>()
                .map_or(0, |e| u64::try_from(e.desired).unwrap_or(u64::MAX)),
            cap: store.data().limiter.table_cap,
        },
        _ => LoadError::StartFailed(fault),
    }
}

pub(crate) fn validate_metadata(meta: &RuleMetadata<'_>) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::BadMetadata(m));
    if meta.schema_version != abi::SCHEMA_VERSION {
        return Err(LoadError::SchemaVersion {
            found: meta.schema_version,
            expected: abi::SCHEMA_VERSION,
        });
    }
    validate_identity("", &meta.id, &meta.name, &meta.version)?;
    if meta.subscriptions.unknown_bits() != 0 {
        return bad(format!(
            "subscribes to unknown event kinds (bits {:#x})",
            meta.subscriptions.unknown_bits()
        ));
    }
    if meta.subscriptions.0 == 0 {
        return bad("subscribes to no event kind".to_owned());
    }
    Ok(())
}

/// The checks on an id, a name and a version (of a rule, or of a pack when `what` is `"pack "`).
pub(crate) fn validate_identity(
    what: &str,
    id: &str,
    name: &str,
    version: &str,
) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::BadMetadata(m));
    if id.is_empty() || id.len() > 128 {
        return bad(format!("{what}id must be 1 to 128 bytes, is {}", id.len()));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return bad(format!(
            "{what}id `{}` may hold only ASCII letters, digits and - _ . :",
            id.escape_debug()
        ));
    }
    if name.len() > 256 {
        return bad(format!("{what}name is {} bytes; at most 256", name.len()));
    }
    if version.is_empty() || version.len() > 64 {
        return bad(format!(
            "{what}version must be 1 to 64 bytes, is {}",
            version.len()
        ));
    }
    if name.chars().chain(version.chars()).any(char::is_control) {
        return bad(format!(
            "{what}name and version may not hold control characters"
        ));
    }
    Ok(())
}

/// The limits a module loads under, before its id (and so its own limits) is known: the most
/// generous of the configuration's and those `given` for it.
pub(crate) fn loading_limits(runtime: &Runtime, given: Option<&Limits>) -> Limits {
    let mut loading = runtime.config().loading_limits();
    if let Some(l) = given {
        loading.memory_bytes = loading.memory_bytes.max(l.memory_bytes);
        loading.table_elements = loading.table_elements.max(l.table_elements);
        loading.fuel_at_load = loading.fuel_at_load.max(l.fuel_at_load);
        loading.load_deadline_ms = loading.load_deadline_ms.max(l.load_deadline_ms);
    }
    loading
}

impl LoadedRule {
    /// Instantiates `compiled` in a fresh store: runs its start routine and reads its metadata, all
    /// under the load budgets of the rule's limits.
    pub fn load(
        runtime: &Runtime,
        thread: &SandboxThread,
        compiled: &CompiledRule,
    ) -> Result<LoadedRule, LoadError> {
        Self::load_with_limits(runtime, thread, compiled, None)
    }

    /// Like [`load`](Self::load), with `limits` (for example from a signed release manifest) in place
    /// of the runtime configuration's limits for this rule. They are validated like any configuration.
    pub fn load_with_limits(
        runtime: &Runtime,
        thread: &SandboxThread,
        compiled: &CompiledRule,
        limits: Option<&Limits>,
    ) -> Result<LoadedRule, LoadError> {
        thread.check(runtime);
        if compiled.is_pack() {
            return Err(LoadError::WrongAbi {
                found: compiled.abi_version(),
                expected: abi::ABI_VERSION,
                what: "one-rule module",
            });
        }
        if let Some(l) = limits {
            l.validate()
                .map_err(|e| LoadError::BadMetadata(format!("limits given for the rule: {e}")))?;
        }
        let loading = loading_limits(runtime, limits);
        let (mut instance, meta) = Self::instantiate(runtime, compiled, &loading, None)?;
        validate_metadata(&meta)?;
        let limits = limits
            .cloned()
            .unwrap_or_else(|| runtime.config().limits_for(&meta.id).clone());
        // Per-rule caps may be tighter than the defaults used while loading.
        let memory_now =
            u64::try_from(instance.memory.data_size(&instance.store)).unwrap_or(u64::MAX);
        if memory_now > limits.memory_bytes {
            return Err(LoadError::UnderRuleLimits {
                id: meta.id.into_owned(),
                version: meta.version.into_owned(),
                error: Box::new(LoadError::MemoryOverCap {
                    declared: memory_now,
                    cap: limits.memory_bytes,
                }),
                limits: Box::new(limits),
            });
        }
        {
            let state = instance.store.data_mut();
            state.limiter.memory_cap = limits.memory_bytes;
            state.limiter.table_cap = limits.table_elements;
        }
        let info = Arc::new(RuleInfo {
            id: meta.id.into_owned(),
            name: meta.name.into_owned(),
            version: meta.version.into_owned(),
            severity: meta.severity,
            subscriptions: meta.subscriptions,
            content_hash: compiled.content_hash().to_owned(),
            source: compiled.source().to_owned(),
            wasi: compiled.uses_wasi(),
            pack: None,
            index: 0,
        });
        if let Ok(mut log) = instance.store.data().log.lock() {
            log.set_rule(info.id.as_str().into());
        }
        Ok(LoadedRule {
            info,
            compiled: compiled.clone(),
            limits,
            instance: Some(instance),
            stats: RuleStats::default(),
        })
    }

    fn instantiate(
        runtime: &Runtime,
        compiled: &CompiledRule,
        limits: &Limits,
        rule_id: Option<&str>,
    ) -> Result<(Instance, RuleMetadata<'static>), LoadError> {
        let label: Arc<str> = rule_id.unwrap_or(compiled.source()).into();
        let Started {
            mut store,
            instance,
            memory,
            input,
            last_panic,
        } = start(runtime, compiled, limits, label, None, abi::ABI_VERSION)?;
        let metadata =
            export::<(), u64>(&mut store, &instance, exports::METADATA, "func () -> i64")?;
        let on_event = export::<u32, u64>(
            &mut store,
            &instance,
            exports::ON_EVENT,
            "func (i32) -> i64",
        )?;
        let packed = match metadata.call(&mut store, ()) {
            Ok(p) => p,
            Err(e) => return Err(load_fault(&e, &mut store)),
        };
        let meta = {
            let bytes = read_guest(&store, memory, packed, MAX_METADATA_BYTES)
                .map_err(|m| LoadError::BadMetadata(format!("metadata {m}")))?;
            let (meta, rest) = crate::metadata::decode_rule(bytes)
                .map_err(|e| LoadError::BadMetadata(format!("metadata {e}")))?;
            if !rest.is_empty() {
                return Err(LoadError::BadMetadata(format!(
                    "{} trailing bytes after the metadata",
                    rest.len()
                )));
            }
            meta.into_owned()
        };
        Ok((
            Instance {
                store,
                memory,
                input,
                on_event,
                last_panic,
                input_ptr: 0,
                input_cap: 0,
                fuel_left: 0,
            },
            meta,
        ))
    }

    /// Replaces the instance with a fresh one (after a budget strike: the old one may have stopped
    /// half-way through updating its state).
    pub(crate) fn reset(&mut self, runtime: &Runtime) -> Result<(), LoadError> {
        let (instance, meta) =
            Self::instantiate(runtime, &self.compiled, &self.limits, Some(&self.info.id))?;
        if meta.id != self.info.id || meta.version != self.info.version {
            return Err(LoadError::BadMetadata(
                "metadata changed between instantiations".into(),
            ));
        }
        self.fold_instance_stats();
        self.instance = Some(instance);
        Ok(())
    }

    /// Drops the instance and its store, giving its memory back. The rule cannot run again.
    pub(crate) fn release(&mut self) {
        self.fold_instance_stats();
        self.instance = None;
    }

    /// Moves the live instance's counters into `stats` before the instance goes away.
    fn fold_instance_stats(&mut self) {
        let (high, suppressed) = self.instance_counters();
        self.stats.memory_high_water = self.stats.memory_high_water.max(high);
        self.stats.log_suppressed = self.stats.log_suppressed.saturating_add(suppressed);
    }

    fn instance_counters(&self) -> (u64, u64) {
        let Some(inst) = &self.instance else {
            return (0, 0);
        };
        inst.store.data().counters()
    }

    /// What the host knows about the rule.
    pub fn info(&self) -> &Arc<RuleInfo> {
        &self.info
    }

    /// The limits the rule runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The compiled module the rule was instantiated from.
    pub fn compiled(&self) -> &CompiledRule {
        &self.compiled
    }

    /// The rule's counters.
    pub fn stats(&self) -> RuleStats {
        let mut stats = self.stats.clone();
        let (high, suppressed) = self.instance_counters();
        stats.memory_high_water = stats.memory_high_water.max(high);
        stats.log_suppressed = stats.log_suppressed.saturating_add(suppressed);
        stats
    }

    /// Runs the rule on one encoded event. Detections are appended to `out`; nothing is appended when
    /// the rule faults. The caller decides what a fault means (strike or quarantine).
    pub fn evaluate(
        &mut self,
        event: &[u8],
        out: &mut Vec<Detection<'static>>,
    ) -> Result<(), Fault> {
        self.evaluate_reusing(event, out, &mut Vec::new())
    }

    /// Like [`evaluate`](Self::evaluate), writing each detection into one taken from `spare` (whose
    /// strings are overwritten in place) while there are any, so that steady-state reporting
    /// allocates nothing. On a fault, what was taken goes back to `spare`.
    #[inline(always)]
    pub(crate) fn evaluate_reusing(
        &mut self,
        event: &[u8],
        out: &mut Vec<Detection<'static>>,
        spare: &mut Vec<Detection<'static>>,
    ) -> Result<(), Fault> {
        let fuel = self.limits.fuel_per_event;
        let result = self.call(event, fuel);
        let used = fuel.saturating_sub(self.instance.as_ref().map_or(0, |i| i.fuel_left));
        self.stats.events += 1;
        self.stats.last_fuel = used;
        self.stats.max_fuel = self.stats.max_fuel.max(used);
        self.stats.total_fuel = self.stats.total_fuel.saturating_add(used);
        let packed = result?;
        // Most events fire nothing: keep that path short (reading a result is out of line).
        if packed == abi::RESULT_NONE {
            return Ok(());
        }
        let before = out.len();
        self.decode_result(packed, out, spare)?;
        self.stats.detections += u64::try_from(out.len() - before).unwrap_or(u64::MAX);
        Ok(())
    }

    /// One call of `rulebox_on_event` on `event` with `fuel`; the guest's packed result.
    ///
    /// The common path (the guest's input buffer already large enough) is kept short; asking the
    /// guest for a larger buffer, and every error, are out of line.
    #[inline]
    fn call(&mut self, event: &[u8], fuel: u64) -> Result<u64, Fault> {
        let Some(inst) = self.instance.as_mut() else {
            return Err(host_fault("the rule was released after its quarantine"));
        };
        inst.fuel_left = fuel;
        if let Err(e) = inst.store.set_fuel(fuel) {
            return Err(host_fault(&format!("{e:#}")));
        }
        inst.store.data_mut().start_budget(self.limits.deadline_ms);
        inst.store.set_epoch_deadline(1);
        let Ok(len) = u32::try_from(event.len()) else {
            return Err(host_fault("event larger than 4 GiB"));
        };
        if len > inst.input_cap || inst.input_ptr == 0 {
            inst.grow_input(len)?;
        }
        // The guest's pointer is checked against its memory before the host writes a byte.
        let data = inst.memory.data_mut(&mut inst.store);
        let start = inst.input_ptr as usize;
        match start
            .checked_add(event.len())
            .and_then(|end| data.get_mut(start..end))
        {
            Some(dest) => dest.copy_from_slice(event),
            None => return Err(inst.input_outside_memory(len)),
        }
        match inst.on_event.call(&mut inst.store, len) {
            Ok(packed) => {
                inst.fuel_left = inst.store.get_fuel().unwrap_or(0);
                Ok(packed)
            }
            Err(e) => Err(inst.fail(e)),
        }
    }

    /// Checks and reads a result other than [`abi::RESULT_NONE`] (the caller handles that one).
    #[inline(never)]
    fn decode_result(
        &self,
        packed: u64,
        out: &mut Vec<Detection<'static>>,
        spare: &mut Vec<Detection<'static>>,
    ) -> Result<(), Fault> {
        let memory = match &self.instance {
            Some(inst) => inst.memory.data(&inst.store),
            None => &[],
        };
        check_result(memory, packed, &self.info.id, &self.limits, out, spare)
    }
}

/// A fault that the host, not the rule, is responsible for.
#[cold]
pub(crate) fn host_fault(message: &str) -> Fault {
    Fault {
        reason: Reason::HostError,
        message: message.to_owned(),
        backtrace: None,
    }
}

impl Instance {
    /// Asks the guest for an input buffer of `len` bytes (`rulebox_input`), and keeps it.
    #[cold]
    #[inline(never)]
    fn grow_input(&mut self, len: u32) -> Result<(), Fault> {
        let ptr = match self.input.call(&mut self.store, len) {
            Ok(p) => {
                self.fuel_left = self.store.get_fuel().unwrap_or(0);
                p
            }
            Err(e) => return Err(self.fail(e)),
        };
        if ptr == 0 {
            return Err(Fault {
                reason: Reason::BadInputBuffer,
                message: format!("rulebox_input({len}) returned a null buffer"),
                backtrace: None,
            });
        }
        self.input_ptr = ptr;
        self.input_cap = len;
        Ok(())
    }

    /// The fault for an input buffer that does not lie inside the guest's memory.
    #[cold]
    #[inline(never)]
    fn input_outside_memory(&self, len: u32) -> Fault {
        Fault {
            reason: Reason::BadInputBuffer,
            message: format!(
                "rulebox_input returned {:#x}, which with {len} bytes is outside the rule's {} bytes of memory",
                self.input_ptr,
                self.memory.data_size(&self.store)
            ),
            backtrace: None,
        }
    }

    /// Classifies a call that failed, after noting the fuel it left.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, e: wasmtime::Error) -> Fault {
        self.fuel_left = self.store.get_fuel().unwrap_or(0);
        let memory = self.memory;
        classify(&e, &mut self.store, self.last_panic.as_ref(), Some(memory))
    }
}

impl std::fmt::Debug for LoadedRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedRule")
            .field("info", &self.info)
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use rulebox_sdk::{Detections, Severity};

    use super::*;

    fn result(build: impl FnOnce(&mut Detections)) -> Vec<u8> {
        let mut list = Detections::new("unused", Severity::Low);
        build(&mut list);
        list.as_bytes().to_vec()
    }

    #[test]
    fn reused_detections_are_overwritten_exactly() {
        let mut spare = Vec::new();
        let mut out = Vec::new();
        // A big detection first, then recycled into a smaller one and back.
        let big = result(|l| {
            l.detect("a long title here")
                .field("One", "1111111111")
                .field("Two", "2")
                .field("Three", "3");
        });
        let small = result(|l| {
            l.detect("t").severity(Severity::Critical).field("N", "v");
            l.detect("second");
        });
        read_result(&big, "rule-a", 64, &mut out, &mut spare).unwrap();
        let fresh = decode_result_owned(&big, "rule-a");
        assert_eq!(out, fresh);
        spare.append(&mut out);
        read_result(&small, "rule-b", 64, &mut out, &mut spare).unwrap();
        assert_eq!(out, decode_result_owned(&small, "rule-b"));
        assert!(spare.is_empty(), "the spare detection was used");
        spare.append(&mut out);
        read_result(&big, "rule-a", 64, &mut out, &mut spare).unwrap();
        assert_eq!(out, fresh);
    }

    fn decode_result_owned(bytes: &[u8], id: &str) -> Vec<Detection<'static>> {
        rulebox_sdk::decode_result(bytes, id, 64)
            .unwrap()
            .into_iter()
            .map(Detection::into_owned)
            .collect()
    }

    #[test]
    fn a_bad_result_after_good_detections_is_an_error() {
        let mut bytes = result(|l| {
            l.detect("ok").field("A", "b");
            l.detect("bad").field("C", "d");
        });
        let last = bytes.len() - 1;
        bytes[last] = 0xFF; // the second detection's last value is no longer UTF-8
        let (mut out, mut spare) = (Vec::new(), Vec::new());
        let err = read_result(&bytes, "r", 64, &mut out, &mut spare).unwrap_err();
        assert_eq!(
            err,
            ResultError::NotUtf8 {
                what: "field value"
            }
        );
        // The caller drops what was read; the good first detection was read before the error.
        assert_eq!(out.len(), 1);
        let err = read_result(&bytes[..4], "r", 64, &mut out, &mut spare).unwrap_err();
        assert!(matches!(err, ResultError::BadCount { .. }), "{err:?}");
    }
}
