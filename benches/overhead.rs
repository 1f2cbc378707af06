//! Where the sandbox's time goes, and how it scales. Run with `cargo bench -p rulebox-benches --bench
//! overhead`; `docs/performance.md` has the results and how to read them.
//!
//! Criterion groups (per-call latency):
//! - `call/bare-wasmtime`: a typed call of a function that returns at once, on an engine with no fuel
//!   and no epoch interruption: the floor;
//! - `call/bare-wasmtime-fuel-epoch`: the same call on an engine with fuel and epochs on, fuel and
//!   deadline set before each call: what the limits cost by themselves;
//! - `call/empty-rule`: a rule that implements the ABI and does nothing, through the runtime with every
//!   limit on (fuel reset, deadline, copying the event in, checking the result);
//! - `limits/<mode>`: every good example rule over every demo event of its kinds, through a minimal
//!   harness on raw wasmtime, with fuel and epoch interruption each on or off: what each limit costs;
//!   `limits/native` is the same rules compiled natively.
//!
//! Then timed runs printed as tables (throughput and p50/p99 come from many repetitions):
//! - the `call` subjects again, interleaved in one loop, plus `raw-abi-sequence` (the
//!   empty rule on raw wasmtime with only the ABI's calling sequence): the ratio to the bare call that
//!   the empty-rule target is judged on, robust to a noisy neighbour;
//! - the `limits` subjects again, interleaved the same way: the engine's own floor on the example set
//!   (raw wasmtime with no limits / native) and what fuel and epochs add to it;
//! - 8, 100 and 1,000 rules loaded (the good rules instantiated again and again), per event, and the
//!   resident memory each loaded rule adds;
//! - one versus two worker threads, each with its own instances;
//! - applying a 100-rule update: compiling cold versus instantiating from the host's precompiled
//!   artifacts ([`ModuleCache`]);
//! - wasmtime's pooling instance allocator against the default: instantiation time for 1,000 rules
//!   and per-event time.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;

use rulebox_benches::{
    BARE_CALL_WAT, NativeSet, Subject, empty_rule_wat, encoded_demo_events, interleave,
    print_timings,
};
use rulebox_example_artifacts::{ALL, Artifact, ArtifactKind};
use rulebox_runtime::{LoadedRule, ModuleCache, Runtime, SandboxThread};
use rulebox_sdk::{EventKind, EventKinds, RuleMetadata};
use wasmtime::{Config, Engine, Instance, Module, Store, TypedFunc};

fn good() -> Vec<&'static Artifact> {
    ALL.iter()
        .filter(|a| a.kind == ArtifactKind::Good)
        .collect()
}

/// A rule on raw wasmtime with only the limits asked for: the ABI's calling sequence and nothing else
/// (no result decoding, no checks beyond bounds).
struct RawRule {
    store: Store<()>,
    on_event: TypedFunc<u32, u64>,
    memory: wasmtime::Memory,
    input: usize,
    fuel: bool,
    epoch: bool,
    kinds: EventKinds,
}

impl RawRule {
    fn new(engine: &Engine, bytes: &[u8], fuel: bool, epoch: bool) -> RawRule {
        let module = Module::new(engine, bytes).expect("compiles");
        RawRule::from_module(engine, &module, fuel, epoch)
    }

    fn from_module(engine: &Engine, module: &Module, fuel: bool, epoch: bool) -> RawRule {
        let mut store = Store::new(engine, ());
        if fuel {
            store.set_fuel(u64::MAX / 2).expect("fuel on");
        }
        if epoch {
            store.set_epoch_deadline(1 << 40);
        }
        let instance = Instance::new(&mut store, module, &[]).expect("a good rule imports nothing");
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        let meta: TypedFunc<(), u64> = instance
            .get_typed_func(&mut store, "rulebox_metadata")
            .expect("metadata");
        let packed = meta.call(&mut store, ()).expect("metadata runs");
        let (ptr, len) = rulebox_sdk::abi::unpack(packed);
        let start = usize::try_from(ptr).expect("fits");
        let end = start + usize::try_from(len).expect("fits");
        let kinds = postcard::from_bytes::<RuleMetadata<'_>>(&memory.data(&store)[start..end])
            .expect("metadata decodes")
            .subscriptions;
        let input: TypedFunc<u32, u32> = instance
            .get_typed_func(&mut store, "rulebox_input")
            .expect("input");
        let input = input.call(&mut store, 64 << 10).expect("buffer");
        let on_event = instance
            .get_typed_func(&mut store, "rulebox_on_event")
            .expect("on_event");
        RawRule {
            store,
            on_event,
            memory,
            input: usize::try_from(input).expect("fits"),
            fuel,
            epoch,
            kinds,
        }
    }

    fn call(&mut self, event: &[u8]) -> u64 {
        if self.fuel {
            self.store.set_fuel(10_000_000).expect("fuel on");
        }
        if self.epoch {
            self.store.set_epoch_deadline(1 << 40);
        }
        self.memory.data_mut(&mut self.store)[self.input..self.input + event.len()]
            .copy_from_slice(event);
        let len = u32::try_from(event.len()).expect("small");
        self.on_event.call(&mut self.store, len).expect("no trap")
    }
}

/// The limit modes of the raw-wasmtime measurements: criterion name, table name, fuel, epoch.
const LIMIT_MODES: [(&str, &str, bool, bool); 4] = [
    ("none", "wasmtime, no limits", false, false),
    ("epoch", "wasmtime, epoch", false, true),
    ("fuel", "wasmtime, fuel", true, false),
    ("fuel+epoch", "wasmtime, fuel+epoch", true, true),
];

/// Every good example rule on raw wasmtime with only the limits asked for ([`RawRule`]).
struct RawSet(Vec<RawRule>);

impl RawSet {
    fn new(fuel: bool, epoch: bool) -> RawSet {
        let engine = raw_engine(fuel, epoch);
        RawSet(
            good()
                .iter()
                .map(|a| RawRule::new(&engine, a.bytes, fuel, epoch))
                .collect(),
        )
    }

    /// Each event through every rule subscribed to its kind; the results folded together.
    fn run(&mut self, events: &[(EventKind, Vec<u8>)]) -> u64 {
        let mut n = 0u64;
        for (kind, bytes) in events {
            for r in &mut self.0 {
                if r.kinds.contains(*kind) {
                    n = n.wrapping_add(r.call(bytes));
                }
            }
        }
        n
    }
}

/// The bare-call baseline ([`BARE_CALL_WAT`]) instantiated on `engine`: its store and function.
fn bare_call(engine: &Engine) -> (Store<()>, TypedFunc<u32, u64>) {
    let module = Module::new(engine, BARE_CALL_WAT).expect("bare module");
    let mut store = Store::new(engine, ());
    let instance = Instance::new(&mut store, &module, &[]).expect("instance");
    let f = instance.get_typed_func(&mut store, "f").expect("f");
    (store, f)
}

fn raw_engine(fuel: bool, epoch: bool) -> Engine {
    let mut config = Config::new();
    config
        .consume_fuel(fuel)
        .epoch_interruption(epoch)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if std::env::var_os("RULEBOX_PERFMAP").is_some() {
        // For `perf record`: name the JIT code in /tmp/perf-PID.map.
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).expect("engine")
}

fn criterion_groups(c: &mut Criterion, runtime: &Runtime, thread: &SandboxThread) {
    let events = encoded_demo_events();
    let small = &events[0].1;

    // The floor: a bare typed call.
    let (mut store, f) = bare_call(&Engine::default());
    let mut group = c.benchmark_group("call");
    group.bench_function("bare-wasmtime", |b| {
        b.iter(|| {
            f.call(&mut store, std::hint::black_box(7))
                .expect("no trap")
        });
    });
    // The same bare call on an engine with fuel and epoch interruption on (as the runtime's), the
    // budget and deadline set before each call as the runtime does: what the limits themselves cost.
    let limited = raw_engine(true, true);
    let (mut lstore, lf) = bare_call(&limited);
    group.bench_function("bare-wasmtime-fuel-epoch", |b| {
        b.iter(|| {
            lstore.set_fuel(10_000_000).expect("fuel on");
            lstore.set_epoch_deadline(1 << 40);
            lf.call(&mut lstore, std::hint::black_box(7))
                .expect("no trap")
        });
    });
    let wat = empty_rule_wat("empty");
    let compiled = runtime
        .compile(&wat::parse_str(&wat).expect("wat"), "empty")
        .expect("empty rule compiles");
    let mut empty = LoadedRule::load(runtime, thread, &compiled).expect("loads");
    let mut out = Vec::new();
    group.bench_function("empty-rule", |b| {
        b.iter(|| {
            empty
                .evaluate(std::hint::black_box(small), &mut out)
                .expect("no fault")
        });
    });
    group.finish();

    // What each limit costs, on the real rules, next to the same rules compiled natively: the
    // engine's own floor (`none` / `native`) and what fuel and epochs add to it, in one run.
    let mut group = c.benchmark_group("limits");
    let mut natives = NativeSet::new();
    group.bench_function(BenchmarkId::new("native", events.len()), |b| {
        b.iter(|| natives.run(&events, false));
    });
    for (name, _, fuel, epoch) in LIMIT_MODES {
        let mut set = RawSet::new(fuel, epoch);
        group.bench_function(BenchmarkId::new(name, events.len()), |b| {
            b.iter(|| set.run(&events));
        });
    }
    group.finish();
}

/// The per-call subjects of the `call` group again, timed interleaved ([`interleave`]), plus
/// `raw-abi-sequence`: the empty rule on raw wasmtime with only the ABI's calling sequence (fuel and
/// deadline set, the event copied in, the call), what any host of this ABI pays without the
/// runtime's checks and statistics. This is the figure the empty-rule target is judged on; the
/// criterion means of the `call` group drift apart by ±30% on a busy VM.
fn interleaved_calls(runtime: &Runtime, thread: &SandboxThread) {
    const ROUNDS: usize = 400;
    const BATCH: u64 = 2_000;
    let events = encoded_demo_events();
    let small = &events[0].1;

    let (mut store, f) = bare_call(&Engine::default());

    let limited = raw_engine(true, true);
    let (mut lstore, lf) = bare_call(&limited);

    let wat = wat::parse_str(empty_rule_wat("empty")).expect("wat");
    let compiled = runtime.compile(&wat, "empty").expect("empty rule compiles");
    let mut empty = LoadedRule::load(runtime, thread, &compiled).expect("loads");
    let mut out = Vec::new();
    let mut raw = RawRule::new(&limited, &wat, true, true);

    let mut subjects: Vec<Subject<'_>> = vec![
        (
            "bare-wasmtime",
            Box::new(|| {
                for _ in 0..BATCH {
                    black_box(f.call(&mut store, black_box(7)).expect("no trap"));
                }
                BATCH
            }),
        ),
        (
            "bare-wasmtime-fuel-epoch",
            Box::new(|| {
                for _ in 0..BATCH {
                    lstore.set_fuel(10_000_000).expect("fuel on");
                    lstore.set_epoch_deadline(1 << 40);
                    black_box(lf.call(&mut lstore, black_box(7)).expect("no trap"));
                }
                BATCH
            }),
        ),
        (
            "empty-rule",
            Box::new(|| {
                for _ in 0..BATCH {
                    empty
                        .evaluate(black_box(small), &mut out)
                        .expect("no fault");
                }
                BATCH
            }),
        ),
        (
            "raw-abi-sequence",
            Box::new(|| {
                for _ in 0..BATCH {
                    black_box(raw.call(black_box(small)));
                }
                BATCH
            }),
        ),
    ];
    println!(
        "per call, {ROUNDS} interleaved rounds of {BATCH} calls (an event of {} bytes for the empty rule):",
        small.len()
    );
    print_timings("call", &interleave(ROUNDS, &mut subjects));
}

/// The `limits` group again, timed interleaved ([`interleave`]): the example set natively, then on
/// raw wasmtime with no limits, epochs, fuel, and both. `no limits` / `native` is the engine's floor
/// on this set as far as this harness goes: it still copies each event into each rule and calls it,
/// on the default `Config` with Cranelift at `OptLevel::Speed`, but checks and records nothing.
fn interleaved_limits() {
    const ROUNDS: usize = 200;
    let events = encoded_demo_events();
    let units = u64::try_from(events.len()).unwrap_or(1);
    let events_ref = &events;
    let mut shared = NativeSet::new();
    let mut apart = NativeSet::new();
    let mut subjects: Vec<Subject<'_>> = vec![
        (
            "native",
            Box::new(move || {
                black_box(shared.run(events_ref, false));
                units
            }),
        ),
        // Each rule reading the event through a view of its own, as each sandboxed rule must (a
        // shared view caches the texts one rule has checked for the next).
        (
            "native, a view per rule",
            Box::new(move || {
                black_box(apart.run(events_ref, true));
                units
            }),
        ),
    ];
    for (_, name, fuel, epoch) in LIMIT_MODES {
        let mut set = RawSet::new(fuel, epoch);
        subjects.push((
            name,
            Box::new(move || {
                black_box(set.run(events_ref));
                units
            }),
        ));
    }
    println!(
        "the example set per event, {ROUNDS} interleaved rounds of the {} demo events:",
        events.len()
    );
    print_timings("event", &interleave(ROUNDS, &mut subjects));
}

/// Resident set size of this process, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Loads `n` rules, cycling through the good example rules.
fn load_n(runtime: &Runtime, thread: &SandboxThread, n: usize) -> Vec<LoadedRule> {
    let compiled: Vec<_> = good()
        .iter()
        .map(|a| runtime.compile(a.bytes, a.name).expect("compiles"))
        .collect();
    (0..n)
        .map(|i| LoadedRule::load(runtime, thread, &compiled[i % compiled.len()]).expect("loads"))
        .collect()
}

/// Runs every event through every rule subscribed to it, `rounds` times; returns per-event times.
fn run_events(
    rules: &mut [LoadedRule],
    events: &[(EventKind, Vec<u8>)],
    rounds: usize,
) -> Vec<f64> {
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(rounds * events.len());
    for _ in 0..rounds {
        for (kind, bytes) in events {
            let start = Instant::now();
            for r in rules.iter_mut() {
                if r.info().subscriptions.contains(*kind) {
                    out.clear();
                    r.evaluate(bytes, &mut out).expect("no fault");
                }
            }
            times.push(start.elapsed().as_nanos() as f64);
        }
    }
    times
}

/// The value at `per_mille`/1000 of a sorted, non-empty sample.
fn percentile(sorted: &[f64], per_mille: usize) -> f64 {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

fn summary(mut times: Vec<f64>) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    (mean, percentile(&times, 500), percentile(&times, 990))
}

fn scale(runtime: &Runtime, thread: &SandboxThread) {
    let events = encoded_demo_events();
    println!(
        "\nrules loaded: per-event latency over the demo events (every rule subscribed to the event runs)"
    );
    println!(
        "{:>6} {:>12} {:>10} {:>10} {:>14}",
        "rules", "mean ns", "p50 ns", "p99 ns", "RSS/rule KiB"
    );
    let mut base = None;
    for n in [8usize, 100, 1000] {
        let before = rss();
        let mut rules = load_n(runtime, thread, n);
        // Touch every instance once so its pages are resident, as in steady state.
        let _ = run_events(&mut rules, &events, 1);
        let after = rss();
        let rounds = (20_000 / n).max(5);
        let (mean, p50, p99) = summary(run_events(&mut rules, &events, rounds));
        let per_rule_kib = after.saturating_sub(before) as f64 / n as f64 / 1024.0;
        println!("{n:>6} {mean:>12.0} {p50:>10.0} {p99:>10.0} {per_rule_kib:>14.1}");
        if n == 8 {
            base = Some(mean);
        } else if let Some(b) = base {
            println!(
                "{:>6} per-event time / 8 rules: {:.1}x for {:.1}x the rules",
                "",
                mean / b,
                n as f64 / 8.0
            );
        }
        drop(rules);
    }
}

fn threads(runtime: &Runtime) {
    let events = encoded_demo_events();
    let rounds = 2_000;
    let total = rounds * events.len();
    println!(
        "\nworker threads: {total} events per thread, each thread with its own 8 rule instances"
    );
    let mut one = 0.0;
    for n in [1usize, 2] {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let rt = runtime.clone();
                let events = events.clone();
                let barrier = barrier.clone();
                runtime
                    .spawn_sandbox_thread(&format!("bench-{i}"), move |thread| {
                        let mut rules = load_n(&rt, thread, 8);
                        let _ = run_events(&mut rules, &events, 1);
                        barrier.wait();
                        let start = Instant::now();
                        let _ = run_events(&mut rules, &events, rounds);
                        start.elapsed()
                    })
                    .expect("thread")
            })
            .collect();
        barrier.wait();
        let wall = Instant::now();
        let per_thread: Vec<Duration> = handles
            .into_iter()
            .map(|h| h.join().expect("joins"))
            .collect();
        let elapsed = wall
            .elapsed()
            .max(per_thread.iter().copied().max().unwrap_or_default());
        let throughput = (n * total) as f64 / elapsed.as_secs_f64();
        if n == 1 {
            one = throughput;
        }
        println!(
            "{n} thread(s): {:>10.0} events/s ({:.2}x one thread)",
            throughput,
            throughput / one
        );
    }
}

fn update(runtime: &Runtime) {
    const N: usize = 100;
    let rules = good();
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = ModuleCache::open(dir.path());
    // Fill the cache (what the first install of each module does on a host).
    for a in &rules {
        cache.compile(runtime, a.bytes, a.name).expect("compiles");
    }
    let start = Instant::now();
    for i in 0..N {
        let a = rules[i % rules.len()];
        runtime.compile(a.bytes, a.name).expect("compiles");
    }
    let cold = start.elapsed();
    let start = Instant::now();
    for i in 0..N {
        let a = rules[i % rules.len()];
        cache.compile(runtime, a.bytes, a.name).expect("compiles");
    }
    let warm = start.elapsed();
    println!("\napplying a {N}-rule update (compile only; instantiation is the same either way)");
    println!(
        "cold compile: {:.1} ms; from precompiled artifacts: {:.1} ms ({:.1}% of cold)",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        100.0 * warm.as_secs_f64() / cold.as_secs_f64()
    );
}

fn main() {
    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    let only_criterion = std::env::args().any(|a| a == "--list");
    runtime.run_sandboxed(move |thread| {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        criterion_groups(&mut c, &rt, thread);
        c.final_summary();
        if !only_criterion {
            interleaved_calls(&rt, thread);
            interleaved_limits();
            scale(&rt, thread);
        }
    });
    if !only_criterion {
        threads(&runtime);
        update(&runtime);
        pooling();
    }
}

/// wasmtime's pooling instance allocator against its default (on-demand mmap per instance): time to
/// instantiate 1,000 rules (the 8 good rules again and again, one store each, as the runtime does),
/// and per-event time over the demo events once they are loaded. Fuel and epochs on in both.
fn pooling() {
    const COPIES: usize = 125;
    let events = encoded_demo_events();
    println!(
        "\ninstance allocator: on-demand (the runtime's) vs pooling, 1,000 rules, fuel and epochs on"
    );
    let mut per_event = Vec::new();
    for pooled in [false, true] {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        if pooled {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            let n = u32::try_from(COPIES * good().len() + 8).expect("small");
            pool.total_core_instances(n)
                .total_memories(n)
                .total_tables(n)
                .max_memory_size(16 << 20);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = match Engine::new(&config) {
            Ok(e) => e,
            Err(e) => {
                println!("  pooling: engine refused on this machine: {e:#}");
                continue;
            }
        };
        let modules: Vec<Module> = good()
            .iter()
            .map(|a| Module::new(&engine, a.bytes).expect("compiles"))
            .collect();
        let start = Instant::now();
        let mut rules = Vec::with_capacity(COPIES * modules.len());
        for _ in 0..COPIES {
            for m in &modules {
                rules.push(RawRule::from_module(&engine, m, true, true));
            }
        }
        let load = start.elapsed();
        // Per event over the first 8 rules (one of each), as in the 8-rule set.
        let set = &mut rules[..modules.len()];
        let rounds = 2_000;
        let start = Instant::now();
        for _ in 0..rounds {
            for (kind, bytes) in &events {
                for r in set.iter_mut().filter(|r| r.kinds.contains(*kind)) {
                    std::hint::black_box(r.call(bytes));
                }
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (rounds * events.len()) as f64;
        per_event.push(ns);
        println!(
            "  {:<10} instantiate: {:>8.1} µs per rule; 8-rule set: {:>6.0} ns per event",
            if pooled { "pooling" } else { "on-demand" },
            load.as_secs_f64() * 1e6 / rules.len() as f64,
            ns
        );
    }
    if let [a, b] = per_event[..] {
        println!("  per-event time, pooling / on-demand: {:.2}", b / a);
    }
}
