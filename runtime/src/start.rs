//! Instantiating a module under its load budgets: what both ABIs do first (a fresh store with the
//! limiter and the load budgets, instantiation, the start routine, the exports they share, the ABI
//! version check).

use std::sync::{Arc, Mutex};

use rulebox_sdk::abi::exports;
use wasmtime::{Instance, Memory, Store, TypedFunc, UpdateDeadline, WasmParams, WasmResults};

use crate::config::Limits;
use crate::deadline::Tick;
use crate::guest_log::LogBudget;
use crate::host::HostState;
use crate::limiter::RuleLimiter;
use crate::module::{CompiledRule, LoadError};
use crate::pack_call::PackCtl;
use crate::quarantine::{Fault, Reason};
use crate::rule::load_fault;
use crate::runtime::Runtime;

/// A module instantiated, its start routine run and its ABI version checked.
pub(crate) struct Started {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: Instance,
    pub(crate) memory: Memory,
    pub(crate) input: TypedFunc<u32, u32>,
    pub(crate) last_panic: Option<TypedFunc<(), u64>>,
}

/// The export `name` of `instance` with the signature `P -> R` (`expected` in messages).
pub(crate) fn export<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &'static str,
    expected: &'static str,
) -> Result<TypedFunc<P, R>, LoadError> {
    instance
        .get_func(&mut *store, name)
        .ok_or(LoadError::MissingExport(name))?
        .typed::<P, R>(&*store)
        .map_err(|e| LoadError::WrongExportType {
            name: name.into(),
            found: format!("{e:#}"),
            expected,
        })
}

/// A fresh store and instance of `compiled` under the load budgets of `limits` (its log labelled
/// `label`; with `pack`, the control table of a pack's calling sequence, empty until the pack is
/// armed): instantiation, the start routine (`_initialize`), and `rulebox_abi_version() == abi`.
pub(crate) fn start(
    runtime: &Runtime,
    compiled: &CompiledRule,
    limits: &Limits,
    label: Arc<str>,
    pack: Option<Box<PackCtl>>,
    abi: u32,
) -> Result<Started, LoadError> {
    let config = runtime.config();
    let log = Arc::new(Mutex::new(LogBudget::new(
        label,
        config.log_per_second,
        config.log_burst,
    )));
    let mut state = HostState::new(
        RuleLimiter::new(limits.memory_bytes, limits.table_elements),
        log,
        config.epoch_tick_ms,
    );
    state.pack = pack;
    let mut store = Store::new(runtime.engine(), state);
    store.limiter(|s| &mut s.limiter);
    // What one call of a WASI function may copy from the guest (`crate::wasi`).
    store.set_hostcall_fuel(crate::wasi::MAX_HOST_CALL_BYTES);
    store.set_fuel(limits.fuel_at_load).map_err(|e| {
        LoadError::StartFailed(Fault {
            reason: Reason::HostError,
            message: format!("{e:#}"),
            backtrace: None,
        })
    })?;
    // Deadlines count the thread's CPU time (`crate::deadline`): checked at every tick.
    store.data_mut().start_budget(limits.load_deadline_ms);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        Ok(match ctx.data_mut().budget.tick() {
            Tick::Continue => UpdateDeadline::Continue(1),
            Tick::Expired => UpdateDeadline::Interrupt,
        })
    });

    let inner = &compiled.inner;
    let instance = match inner.pre.instantiate(&mut store) {
        Ok(i) => i,
        Err(e) => return Err(load_fault(&e, &mut store)),
    };
    if inner.has_initialize {
        let init = export::<(), ()>(&mut store, &instance, exports::INITIALIZE, "func ()")?;
        if let Err(e) = init.call(&mut store, ()) {
            return Err(load_fault(&e, &mut store));
        }
    }
    let abi_version = export::<(), i32>(
        &mut store,
        &instance,
        exports::ABI_VERSION,
        "func () -> i32",
    )?;
    let input = export::<u32, u32>(&mut store, &instance, exports::INPUT, "func (i32) -> i32")?;
    let last_panic = if inner.has_last_panic {
        Some(export::<(), u64>(
            &mut store,
            &instance,
            exports::LAST_PANIC,
            "func () -> i64",
        )?)
    } else {
        None
    };
    let memory = instance
        .get_memory(&mut store, exports::MEMORY)
        .ok_or(LoadError::MissingExport(exports::MEMORY))?;
    let version = match abi_version.call(&mut store, ()) {
        Ok(v) => v,
        Err(e) => return Err(load_fault(&e, &mut store)),
    };
    if u32::try_from(version).ok() != Some(abi) {
        return Err(LoadError::AbiVersion {
            found: i64::from(version),
            expected: abi,
        });
    }
    Ok(Started {
        store,
        instance,
        memory,
        input,
        last_panic,
    })
}
