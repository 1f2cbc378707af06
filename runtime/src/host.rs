//! What the host gives a rule: its store state and the imports of the ABI.

use std::sync::{Arc, Mutex};

use rulebox_sdk::abi::imports;
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::deadline::Budget;
use crate::guest_log::{LogBudget, MAX_LOG_MESSAGE};
use crate::limiter::RuleLimiter;
use crate::pack_call::{self, PackCtl};

/// The data each rule's (or pack's) `Store` holds.
pub(crate) struct HostState {
    pub(crate) limiter: RuleLimiter,
    pub(crate) log: Arc<Mutex<LogBudget>>,
    /// WASI context, created on first use by a WASI module: grants nothing.
    wasi: Option<WasiP1Ctx>,
    /// For a rule pack: the calling sequence's state and results (`None` for a one-rule module).
    pub(crate) pack: Option<Box<PackCtl>>,
    /// The CPU-time budget of the current period (a call, a rule of a pack, a pack's own work on
    /// an event, a load), charged at every engine tick by the epoch callback.
    pub(crate) budget: Budget,
    /// The engine's tick, in milliseconds.
    pub(crate) tick_ms: u64,
}

impl HostState {
    pub(crate) fn new(limiter: RuleLimiter, log: Arc<Mutex<LogBudget>>, tick_ms: u64) -> HostState {
        HostState {
            limiter,
            log,
            wasi: None,
            pack: None,
            budget: Budget::start(0, tick_ms),
            tick_ms,
        }
    }

    /// Starts a budget period of `ms` milliseconds of CPU time (the caller sets the epoch deadline
    /// one tick ahead).
    #[inline]
    pub(crate) fn start_budget(&mut self, ms: u64) {
        self.budget = Budget::start(ms, self.tick_ms);
    }

    /// The instance's memory high-water mark and the log messages its rate limit suppressed.
    pub(crate) fn counters(&self) -> (u64, u64) {
        let high = u64::try_from(self.limiter.memory_high_water).unwrap_or(u64::MAX);
        let suppressed = self.log.lock().map(|l| l.suppressed_total).unwrap_or(0);
        (high, suppressed)
    }

    fn wasi(&mut self) -> &mut WasiP1Ctx {
        self.wasi.get_or_insert_with(|| {
            // No preopened directories, no environment, no arguments, no sockets, empty stdin;
            // stdout and stderr are written through the host's own `fd_write` (`crate::wasi`), to
            // the rule's rate-limited log.
            wasmtime_wasi::WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build_p1()
        })
    }
}

/// Why a host function stopped the guest: a fault of the rule, recovered by downcasting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostTrap {
    /// The guest called WASI `proc_exit`.
    #[error("the rule called proc_exit({0}): a rule returns from every call, it never exits")]
    Exit(u32),
    /// The guest passed a host function a range outside its memory.
    #[error(
        "the rule passed {function} a range outside its memory ({len} bytes at {ptr:#x}; the rule \
         has {memory} bytes)"
    )]
    BadPointer {
        /// The host function.
        function: &'static str,
        /// The start of the range.
        ptr: u32,
        /// Its length.
        len: u64,
        /// The size of the guest's memory.
        memory: u64,
    },
}

/// Builds the linker every rule is instantiated against.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(imports::MODULE, imports::LOG, log_import)?;
    linker.func_wrap(
        imports::MODULE,
        imports::EVENT_BEGIN,
        pack_call::event_begin,
    )?;
    linker.func_wrap(imports::MODULE, imports::RULE_BEGIN, pack_call::rule_begin)?;
    linker.func_wrap(imports::MODULE, imports::RULE_END, pack_call::rule_end)?;
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, HostState::wasi)?;
    crate::wasi::shadow(&mut linker)?;
    Ok(linker)
}

/// `rulebox.log(level, ptr, len)`: reads the message from the rule's memory, bounds-checked; a bad
/// pointer or length is ignored (and counted as a suppressed message), never trusted. In a pack, the
/// message is logged under the rule open at the time (or the pack's id between rules).
fn log_import(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let Some(Extern::Memory(memory)) = caller.get_export(rulebox_sdk::abi::exports::MEMORY) else {
        return;
    };
    let (ptr, len) = (ptr.cast_unsigned(), len.cast_unsigned());
    let (Ok(start), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return;
    };
    let len = len.min(MAX_LOG_MESSAGE);
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let Some(bytes) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
        if let Ok(mut log) = state.log.lock() {
            log.suppressed_total += 1;
        }
        return;
    };
    let message = String::from_utf8_lossy(bytes);
    // In a pack, the message is the open rule's, if one is open.
    let rule = state.pack.as_deref().and_then(|ctl| {
        ctl.open
            .map(|open| ctl.members[open.rule as usize].id.clone())
    });
    if let Ok(mut log) = state.log.lock() {
        match rule {
            Some(rule) => log.log_for(&rule, "log", level.cast_unsigned(), &message),
            None => log.log("log", level.cast_unsigned(), &message),
        }
    }
}
