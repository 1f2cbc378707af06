//! Shared helpers for the benchmarks in this folder (`rules.rs`, `overhead.rs`, `ab.rs`, `packs.rs`):
//! the demo events, the native and sandboxed example sets (one module per rule, or the example pack),
//! hand-written rule modules that isolate the cost of the sandbox from the cost of a rule, a rule
//! pack on raw wasmtime ([`RawPack`]), and interleaved timing.

use std::fmt::Write as _;

use rulebox_example_artifacts::native::{self, NativeRule};
use rulebox_example_artifacts::{ALL, ArtifactKind, DEMO_EVENTS, EXAMPLE_PACK};
use rulebox_runtime::events::EventReader;
use rulebox_runtime::{RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{Detections, Event, EventKind, EventKinds, EventView, RuleMetadata, Severity};

/// The demo events (`example-rules/events/demo.jsonl`: an intrusion plus ordinary activity).
pub fn demo_events() -> Vec<Event<'static>> {
    EventReader::new(std::io::BufReader::new(DEMO_EVENTS.as_bytes()))
        .filter_map(Result::ok)
        .map(|r| r.event)
        .collect()
}

/// `events` encoded once each, as the host does before handing an event to any rule.
///
/// # Panics
/// If an event does not encode.
pub fn encode(events: &[Event<'_>]) -> Vec<(EventKind, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.kind(), e.to_bytes().expect("encodes")))
        .collect()
}

/// The demo events, encoded.
pub fn encoded_demo_events() -> Vec<(EventKind, Vec<u8>)> {
    encode(&demo_events())
}

/// The good example rules compiled natively, each with its subscriptions (looked up once, as the
/// host's `RuleSet` does) and its own detection list: the baseline of every sandboxed figure.
pub struct NativeSet {
    rules: Vec<(Box<dyn NativeRule>, EventKinds, Detections)>,
}

impl NativeSet {
    /// Every good example rule.
    ///
    /// # Panics
    /// If a good rule has no native build.
    pub fn new() -> NativeSet {
        let rules = ALL
            .iter()
            .filter(|a| a.kind == ArtifactKind::Good)
            .map(|a| {
                let rule = native::new_native(a.name).expect("every good rule has a native build");
                let kinds = EventKinds::of(rule.meta().events);
                let out = rule.detections();
                (rule, kinds, out)
            })
            .collect();
        NativeSet { rules }
    }

    /// Runs each event through every rule subscribed to its kind; returns the detections made. With
    /// `view_per_rule`, each rule reads the event through an `EventView` of its own, as each sandbox
    /// must; otherwise the rules share one view per event (and the texts it has already checked).
    ///
    /// # Panics
    /// If an event does not decode.
    pub fn run(&mut self, events: &[(EventKind, Vec<u8>)], view_per_rule: bool) -> usize {
        let mut n = 0;
        for (kind, bytes) in events {
            let shared = EventView::new(std::hint::black_box(bytes)).expect("reads");
            for (rule, kinds, out) in &mut self.rules {
                if kinds.contains(*kind) {
                    if view_per_rule {
                        let own = EventView::new(std::hint::black_box(bytes)).expect("reads");
                        rule.on_view(&own, out);
                    } else {
                        rule.on_view(&shared, out);
                    }
                    n += out.len();
                }
            }
        }
        n
    }
}

impl Default for NativeSet {
    fn default() -> Self {
        NativeSet::new()
    }
}

/// A `RuleSet` with every good example rule loaded, sandboxed with the runtime's limits.
///
/// # Panics
/// If a good rule does not load.
pub fn good_rule_set(runtime: &Runtime, thread: &SandboxThread) -> RuleSet {
    let mut set = RuleSet::new(runtime);
    for artifact in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
        set.load(thread, artifact.bytes, artifact.name)
            .expect("a good example rule loads");
    }
    set
}

/// A `RuleSet` holding the example pack (every good example rule in one module), sandboxed with the
/// runtime's limits.
///
/// # Panics
/// If the pack does not load.
pub fn example_pack_set(runtime: &Runtime, thread: &SandboxThread) -> RuleSet {
    let mut set = RuleSet::new(runtime);
    set.load(thread, EXAMPLE_PACK.bytes, EXAMPLE_PACK.name)
        .expect("the example pack loads");
    set
}

/// A rule pack on raw wasmtime, with fuel and epoch interruption on and set as the runtime sets them
/// (the pack's budget per event, each rule's own between `rule_begin` and `rule_end`), and nothing
/// else: no check of the calling sequence, no result read, no statistics. The floor of ABI 3 with
/// these limits, which the runtime's pack path is compared with.
pub struct RawPack {
    store: wasmtime::Store<RawPackState>,
    on_events: wasmtime::TypedFunc<u32, u64>,
    memory: wasmtime::Memory,
    input: usize,
}

/// The store data of a [`RawPack`]: the pack's fuel saved while a rule runs, and the detections
/// seen (counted, not read).
#[derive(Default)]
pub struct RawPackState {
    saved: u64,
    results: u64,
}

impl RawPack {
    /// Instantiates `bytes` (a pack taking no rule data) on a fresh engine with fuel and epochs on.
    ///
    /// # Panics
    /// If the pack does not instantiate or load.
    pub fn new(bytes: &[u8]) -> RawPack {
        use wasmtime::{Caller, Config, Engine, Linker, Module, Store};
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).expect("engine");
        let module = Module::new(&engine, bytes).expect("compiles");
        let mut linker: Linker<RawPackState> = Linker::new(&engine);
        const FUEL: u64 = 10_000_000;
        const TICKS: u64 = 1 << 40;
        linker
            .func_wrap(
                "rulebox",
                "event_begin",
                |mut c: Caller<'_, RawPackState>, _e: u32| -> wasmtime::Result<u32> {
                    c.set_fuel(FUEL)?;
                    wasmtime::AsContextMut::as_context_mut(&mut c).set_epoch_deadline(TICKS);
                    Ok(1)
                },
            )
            .expect("event_begin");
        linker
            .func_wrap(
                "rulebox",
                "rule_begin",
                |mut c: Caller<'_, RawPackState>, _r: u32| -> wasmtime::Result<u32> {
                    let saved = c.get_fuel()?;
                    c.data_mut().saved = saved;
                    c.set_fuel(FUEL)?;
                    wasmtime::AsContextMut::as_context_mut(&mut c).set_epoch_deadline(TICKS);
                    Ok(1)
                },
            )
            .expect("rule_begin");
        linker
            .func_wrap(
                "rulebox",
                "rule_end",
                |mut c: Caller<'_, RawPackState>, _p: u32, len: u32| -> wasmtime::Result<()> {
                    let saved = c.data().saved;
                    c.data_mut().results += u64::from(len != 0);
                    c.set_fuel(saved)?;
                    wasmtime::AsContextMut::as_context_mut(&mut c).set_epoch_deadline(TICKS);
                    Ok(())
                },
            )
            .expect("rule_end");
        let mut store = Store::new(&engine, RawPackState::default());
        store.set_fuel(100_000_000).expect("fuel on");
        store.set_epoch_deadline(TICKS);
        let instance = linker
            .instantiate(&mut store, &module)
            .expect("instantiates");
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        let load: wasmtime::TypedFunc<u32, u64> = instance
            .get_typed_func(&mut store, "rulebox_load")
            .expect("load");
        load.call(&mut store, 0).expect("loads");
        let input: wasmtime::TypedFunc<u32, u32> = instance
            .get_typed_func(&mut store, "rulebox_input")
            .expect("input");
        let input = input.call(&mut store, 1 << 20).expect("buffer");
        let on_events = instance
            .get_typed_func(&mut store, "rulebox_on_events")
            .expect("on_events");
        RawPack {
            store,
            on_events,
            memory,
            input: usize::try_from(input).expect("fits"),
        }
    }

    /// One call over `events` as one batch; the number of results the rules returned so far.
    ///
    /// # Panics
    /// If the batch does not fit the buffer or the pack traps.
    pub fn run(&mut self, events: &[(EventKind, Vec<u8>)]) -> u64 {
        let bytes = || events.iter().map(|(_, b)| b.as_slice());
        let len = rulebox_sdk::batch::batch_len(bytes()).expect("a batch");
        self.store.set_fuel(10_000_000).expect("fuel on");
        self.store.set_epoch_deadline(1 << 40);
        let dest = &mut self.memory.data_mut(&mut self.store)[self.input..self.input + len];
        rulebox_sdk::batch::write_batch_to(bytes(), dest).expect("written");
        let len = u32::try_from(len).expect("small");
        self.on_events.call(&mut self.store, len).expect("no trap");
        self.store.data().results
    }
}

/// The WebAssembly text of a rule that implements the ABI and does nothing: `rulebox_on_event`
/// returns "no detections" without reading the event. Loaded through the runtime with every limit
/// on, it measures the host's per-call overhead (fuel and deadline set-up, copying the event in,
/// the call, checking the result) with no guest work at all.
pub fn empty_rule_wat(id: &str) -> String {
    let meta = RuleMetadata {
        schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
        id: id.into(),
        name: "empty rule (call overhead)".into(),
        version: "1.0.0".into(),
        severity: Severity::Low,
        subscriptions: EventKinds::all(),
    };
    let bytes = postcard::to_allocvec(&meta).expect("metadata encodes");
    let mut data = String::new();
    for b in &bytes {
        let _ = write!(data, "\\{b:02x}");
    }
    let len = bytes.len();
    // Metadata at 1024, the input buffer at 4096 (the first 64 KiB page holds both; events larger
    // than 60 KiB make `rulebox_input` grow nothing and return 0, which the host reports).
    format!(
        r#"(module
  (memory (export "memory") 2)
  (data (i32.const 1024) "{data}")
  (func (export "rulebox_abi_version") (result i32) i32.const {abi})
  (func (export "rulebox_metadata") (result i64)
    i64.const {packed})
  (func (export "rulebox_input") (param i32) (result i32)
    local.get 0
    i32.const 126976
    i32.gt_u
    if (result i32) i32.const 0 else i32.const 4096 end)
  (func (export "rulebox_on_event") (param i32) (result i64)
    i64.const 0))"#,
        packed = (u64::try_from(len).expect("small") << 32) | 1024,
        abi = rulebox_sdk::abi::ABI_VERSION,
    )
}

/// The runtime configuration the benches use: the production defaults, with
/// [`perf_map`](rulebox_runtime::RuntimeConfig::perf_map) on when `RULEBOX_PERFMAP` is set, so that
/// `RULEBOX_PERFMAP=1 perf record target/release/deps/rules-*` names the rules' functions.
pub fn bench_config() -> rulebox_runtime::RuntimeConfig {
    rulebox_runtime::RuntimeConfig {
        perf_map: std::env::var_os("RULEBOX_PERFMAP").is_some(),
        ..Default::default()
    }
}

/// Criterion's point estimate (mean ns per iteration) of `group/function/param` from the run that
/// just finished, read from its `estimates.json`, so a bench can print ratios of one run.
pub fn criterion_estimate(group: &str, function: &str, param: usize) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join("criterion")
        .join(group.replace('/', "_"))
        .join(function)
        .join(param.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// One subject of [`interleave`]: a name, and a closure that runs one batch of work and returns
/// how many units (calls, events) it ran.
pub type Subject<'a> = (&'static str, Box<dyn FnMut() -> u64 + 'a>);

/// Median and best time per unit of one subject of [`interleave`], in ns.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The subject's name.
    pub name: &'static str,
    /// The median round.
    pub p50_ns: f64,
    /// The fastest round.
    pub best_ns: f64,
}

/// Times `subjects` interleaved: each round runs one batch of every subject, in an order shuffled
/// afresh each round (a fixed-seed xorshift, so runs are repeatable), so that a noisy neighbour
/// slows them alike and no subject always runs right after the same one (which would hand it that
/// one's warm caches). The ratios of the medians hold where criterion's separate runs drift apart by
/// tens of percent. `rounds / 10` extra rounds run first as a warm-up and are not counted.
///
/// # Panics
/// If `rounds` is 0.
pub fn interleave(rounds: usize, subjects: &mut [Subject<'_>]) -> Vec<Timing> {
    assert!(rounds > 0, "interleave needs at least one round");
    let n = subjects.len();
    let mut samples = vec![Vec::with_capacity(rounds); n];
    let warm_up = rounds / 10;
    let mut order: Vec<usize> = (0..n).collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..rounds + warm_up {
        // Fisher-Yates with xorshift64.
        for k in (1..n).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = usize::try_from(seed % (k as u64 + 1)).unwrap_or(0);
            order.swap(k, j);
        }
        for &i in &order {
            let start = std::time::Instant::now();
            let units = (subjects[i].1)().max(1);
            let ns = start.elapsed().as_nanos() as f64 / units as f64;
            if round >= warm_up {
                samples[i].push(ns);
            }
        }
    }
    subjects
        .iter()
        .zip(samples)
        .map(|((name, _), mut v)| {
            v.sort_by(f64::total_cmp);
            Timing {
                name,
                p50_ns: v[v.len() / 2],
                best_ns: v[0],
            }
        })
        .collect()
}

/// Prints `timings` as a table with each against the first (`base`).
pub fn print_timings(unit: &str, timings: &[Timing]) {
    let Some(base) = timings.first() else {
        return;
    };
    println!(
        "{:<26} {:>14} {:>14} {:>9} {:>9}",
        "subject",
        format!("p50 ns/{unit}"),
        format!("best ns/{unit}"),
        "p50/1st",
        "best/1st"
    );
    for t in timings {
        println!(
            "{:<26} {:>14.1} {:>14.1} {:>9.2} {:>9.2}",
            t.name,
            t.p50_ns,
            t.best_ns,
            t.p50_ns / base.p50_ns,
            t.best_ns / base.best_ns
        );
    }
}

/// The bare wasmtime baseline: one exported function with the same signature as
/// `rulebox_on_event`, returning at once.
pub const BARE_CALL_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "f") (param i32) (result i64) i64.const 0))"#;

/// The corpus folder named by the environment variable `var`, else `default` relative to this
/// crate (`../../shared/corpus/...`), if it is a folder.
pub fn corpus_dir(var: &str, default: &str) -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os(var) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default),
    };
    dir.is_dir().then_some(dir)
}

/// Every `.yml` under `dir` (recursively) appended to `out`, which is then sorted.
pub fn yml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            yml_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "yml") {
            out.push(path);
        }
    }
    out.sort();
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_empty_rule_is_valid_wat_with_its_metadata() {
        let wat = super::empty_rule_wat("empty-7");
        assert!(wat.contains("rulebox_on_event"));
        let bytes = wat::parse_str(&wat).expect("valid text");
        assert!(bytes.starts_with(b"\0asm"));
    }
}
