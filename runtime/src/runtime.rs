//! The shared [`Runtime`]: one wasmtime engine, its linker, the epoch ticker, and sandbox threads.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, Linker, OptLevel};

use crate::config::{ConfigError, RuntimeConfig};
use crate::host::HostState;
use crate::module::{CompiledRule, LoadError};

/// The engine every rule shares, with its configuration. Cheap to clone; `Send + Sync`.
///
/// Creating a runtime starts an epoch-ticker thread that bounds the CPU time of every call into a
/// rule ([`crate::deadline`]); it stops when the last clone of the runtime is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    // Dropping the sender stops the ticker.
    _ticker: mpsc::Sender<()>,
}

impl Runtime {
    /// A runtime with `config` (validated first).
    pub fn new(config: RuntimeConfig) -> Result<Runtime, ConfigError> {
        config.validate()?;
        let mut wasm = Config::new();
        wasm.consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .async_stack_size(config.max_wasm_stack.saturating_mul(2).max(2 << 20))
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64))
            // Never parse a module's DWARF, whatever the environment says: it is untrusted input.
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        if config.perf_map {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(|e| ConfigError::Engine(format!("{e:#}")))?;
        let linker =
            crate::host::linker(&engine).map_err(|e| ConfigError::Engine(format!("{e:#}")))?;

        let (tx, rx) = mpsc::channel::<()>();
        let tick = Duration::from_millis(config.epoch_tick_ms);
        let ticker_engine = engine.clone();
        std::thread::Builder::new()
            .name("rulebox-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                    // Each tick runs the epoch callback of every running guest, which charges
                    // its thread's CPU time to its deadline (`crate::deadline`).
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| ConfigError::Engine(format!("cannot start the epoch ticker: {e}")))?;

        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                _ticker: tx,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Compiles `bytes` and checks the module against the ABI (imports, exports, declared memory).
    /// Nothing runs yet. `source` names where the bytes came from, for records and messages.
    ///
    /// Thread-safe: many modules can be compiled in parallel.
    pub fn compile(&self, bytes: &[u8], source: &str) -> Result<CompiledRule, LoadError> {
        crate::module::compile(self, bytes, source)
    }

    /// Starts a thread that may run rules: its native stack is larger than the guest stack the engine
    /// allows ([`RuntimeConfig::sandbox_thread_stack`]), so a guest's deep recursion ends in a trap,
    /// never in a native stack overflow that would abort the process.
    pub fn spawn_sandbox_thread<F, T>(&self, name: &str, f: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce(&SandboxThread) -> T + Send + 'static,
        T: Send + 'static,
    {
        let stack = self.inner.config.sandbox_thread_stack();
        std::thread::Builder::new()
            .name(name.to_owned())
            .stack_size(stack)
            .spawn(move || {
                let thread = SandboxThread {
                    stack,
                    _not_send: PhantomData,
                };
                f(&thread)
            })
    }

    /// Runs `f` on a new sandbox thread and waits for it. A panic in `f` is re-raised here.
    pub fn run_sandboxed<F, T>(&self, f: F) -> T
    where
        F: FnOnce(&SandboxThread) -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.spawn_sandbox_thread("rulebox-sandbox", f) {
            Ok(handle) => match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => panic!("cannot start a sandbox thread: {e}"),
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Proof that the current thread was started by [`Runtime::spawn_sandbox_thread`], so its native stack
/// is large enough for guest code. Every call that runs guest code takes one. Not `Send`: it cannot
/// leave its thread.
#[derive(Debug)]
pub struct SandboxThread {
    stack: usize,
    _not_send: PhantomData<*const ()>,
}

impl SandboxThread {
    pub(crate) fn check(&self, runtime: &Runtime) {
        assert!(
            self.stack >= runtime.config().sandbox_thread_stack(),
            "this sandbox thread was started by a runtime with a smaller guest stack"
        );
    }
}
