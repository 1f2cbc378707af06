//! Per-event latency of each example rule, sandboxed and native, from the same source.
//!
//! Run with `cargo bench -p rulebox-benches`. Each rule is measured over the demo events of the kinds
//! it subscribes to (a mix of attacks and ordinary activity), once natively (the rule's Rust code,
//! compiled for the host, reading the encoded event through `EventView`) and once in its sandbox with
//! every limit on (fuel, epoch deadline, memory cap); both start from the bytes the host encodes once
//! per event, so the difference is the sandbox alone. The sets run three ways: one module per rule
//! (`sandboxed`), the same rules as one rule pack called once per event (`pack`), and the pack called
//! once per batch of events (`pack-batched`, ABI 3 with batching: how an agent with queued events
//! runs it). At the end the bench prints the ratio sandboxed / native per rule, from the estimates of
//! this run, and then the two sets again with every subject interleaved in one loop
//! (`rulebox_benches::interleave`), the ratios that hold on a noisy machine, with the pack on raw
//! wasmtime with the same limits (`raw-pack-batched`: the engine's floor for ABI 3).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rulebox_benches::{
    NativeSet, RawPack, Subject, demo_events, encode, example_pack_set, good_rule_set, interleave,
    print_timings,
};
use rulebox_example_artifacts::EXAMPLE_PACK;
use rulebox_example_artifacts::{ALL, ArtifactKind, native};
use rulebox_runtime::{BatchOutcome, LoadedRule, Outcome, RuleSet, Runtime};
use rulebox_sdk::{Event, EventKinds, EventView};

fn bench(c: &mut Criterion, runtime: &Runtime, thread: &rulebox_runtime::SandboxThread) {
    let events = demo_events();
    let encoded = encode(&events);

    for artifact in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
        let compiled = runtime
            .compile(artifact.bytes, artifact.name)
            .expect("example rule compiles");
        let mut sandboxed =
            LoadedRule::load(runtime, thread, &compiled).expect("example rule loads");
        let kinds = sandboxed.info().subscriptions;
        let mine: Vec<usize> = (0..events.len())
            .filter(|&i| kinds.contains(events[i].kind()))
            .collect();
        assert!(!mine.is_empty(), "{} has no demo events", artifact.name);
        let mut group = c.benchmark_group(format!("rule/{}", artifact.name));
        group.throughput(Throughput::Elements(u64::try_from(mine.len()).unwrap_or(1)));
        let mut nat =
            native::new_native(artifact.name).expect("every good rule has a native build");
        let mut nat_out = nat.detections();
        group.bench_function(BenchmarkId::new("native", mine.len()), |b| {
            b.iter(|| {
                let mut n = 0;
                for &i in &mine {
                    let view = EventView::new(std::hint::black_box(&encoded[i].1)).expect("reads");
                    nat.on_view(&view, &mut nat_out);
                    n += nat_out.len();
                }
                n
            });
        });
        let mut out = Vec::new();
        group.bench_function(BenchmarkId::new("sandboxed", mine.len()), |b| {
            b.iter(|| {
                out.clear();
                for &i in &mine {
                    sandboxed
                        .evaluate(std::hint::black_box(&encoded[i].1), &mut out)
                        .expect("no fault");
                }
                out.len()
            });
        });
        group.finish();
    }

    // The whole example set: every good rule loaded, every demo event dispatched by kind; then the
    // same over only the events no rule fires on (most of an endpoint's traffic).
    let benign = benign_indices(&events);
    let benign_encoded: Vec<_> = benign.iter().map(|&i| encoded[i].clone()).collect();
    set_group(c, runtime, thread, SET, &encoded);
    set_group(c, runtime, thread, SET_BENIGN, &benign_encoded);
}

const SET: &str = "set/all-good-rules";
const SET_BENIGN: &str = "set/benign-events";

/// The indices of the demo events on which no good rule (run natively, in order) detects anything.
fn benign_indices(events: &[Event<'static>]) -> Vec<usize> {
    let mut natives: Vec<_> = native::NAMES
        .iter()
        .map(|n| native::new_native(n).expect("native"))
        .collect();
    (0..events.len())
        .filter(|&i| {
            natives
                .iter_mut()
                .all(|r| r.on_event(&events[i]).is_empty())
        })
        .collect()
}

fn set_group(
    c: &mut Criterion,
    runtime: &Runtime,
    thread: &rulebox_runtime::SandboxThread,
    name: &str,
    encoded: &[(rulebox_sdk::EventKind, Vec<u8>)],
) {
    let mut set = good_rule_set(runtime, thread);
    let mut natives = NativeSet::new();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(
        u64::try_from(encoded.len()).unwrap_or(1),
    ));
    group.bench_function(BenchmarkId::new("native", encoded.len()), |b| {
        b.iter(|| natives.run(encoded, false));
    });
    let mut outcome = Outcome::default();
    group.bench_function(BenchmarkId::new("sandboxed", encoded.len()), |b| {
        b.iter(|| per_event(&mut set, thread, encoded, &mut outcome));
    });
    let mut pack = example_pack_set(runtime, thread);
    group.bench_function(BenchmarkId::new("pack", encoded.len()), |b| {
        b.iter(|| per_event(&mut pack, thread, encoded, &mut outcome));
    });
    let mut batched = example_pack_set(runtime, thread);
    let mut out = BatchOutcome::default();
    group.bench_function(BenchmarkId::new("pack-batched", encoded.len()), |b| {
        b.iter(|| batch(&mut batched, thread, encoded, &mut out));
    });
    group.finish();
}

/// Every event through `set`, one call each; the detections made.
fn per_event(
    set: &mut RuleSet,
    thread: &rulebox_runtime::SandboxThread,
    encoded: &[(rulebox_sdk::EventKind, Vec<u8>)],
    outcome: &mut Outcome,
) -> usize {
    let mut n = 0;
    for (kind, bytes) in encoded {
        set.process_encoded(thread, *kind, bytes, outcome)
            .expect("within limits");
        n += outcome.detections.len();
    }
    n
}

/// Every event through `set` as one batch; the detections made.
fn batch(
    set: &mut RuleSet,
    thread: &rulebox_runtime::SandboxThread,
    encoded: &[(rulebox_sdk::EventKind, Vec<u8>)],
    out: &mut BatchOutcome,
) -> usize {
    set.process_encoded_batch(thread, encoded, out);
    out.iter()
        .map(|o| o.expect("within limits").detections.len())
        .sum()
}

/// The two sets again, native and sandboxed timed interleaved ([`interleave`]), so that their ratio
/// holds on a noisy machine: the figure the set target is judged on.
fn interleaved_sets(runtime: &Runtime, thread: &rulebox_runtime::SandboxThread) {
    const ROUNDS: usize = 300;
    let events = demo_events();
    let encoded = encode(&events);
    let benign: Vec<_> = benign_indices(&events)
        .into_iter()
        .map(|i| encoded[i].clone())
        .collect();
    for (name, encoded) in [(SET, &encoded), (SET_BENIGN, &benign)] {
        let units = u64::try_from(encoded.len()).unwrap_or(1);
        let mut set = good_rule_set(runtime, thread);
        let mut natives = NativeSet::new();
        let mut outcome = Outcome::default();
        let mut pack = example_pack_set(runtime, thread);
        let mut pack_outcome = Outcome::default();
        let mut batched = example_pack_set(runtime, thread);
        let mut out = BatchOutcome::default();
        let mut raw = RawPack::new(EXAMPLE_PACK.bytes);
        let mut subjects: Vec<Subject<'_>> = vec![
            (
                "native",
                Box::new(|| {
                    std::hint::black_box(natives.run(encoded, false));
                    units
                }),
            ),
            (
                "sandboxed",
                Box::new(|| {
                    std::hint::black_box(per_event(&mut set, thread, encoded, &mut outcome));
                    units
                }),
            ),
            (
                "pack",
                Box::new(|| {
                    std::hint::black_box(per_event(&mut pack, thread, encoded, &mut pack_outcome));
                    units
                }),
            ),
            (
                "pack-batched",
                Box::new(|| {
                    std::hint::black_box(batch(&mut batched, thread, encoded, &mut out));
                    units
                }),
            ),
            (
                "raw-pack-batched",
                Box::new(|| {
                    std::hint::black_box(raw.run(encoded));
                    units
                }),
            ),
        ];
        println!(
            "\n{name}, {ROUNDS} interleaved rounds of its {} events:",
            encoded.len()
        );
        let timings = interleave(ROUNDS, &mut subjects);
        print_timings("event", &timings);
        if let [_, _, _, batched, raw] = &timings[..] {
            println!(
                "{:<26} {:>14.2} {:>14.2}   (the runtime's share: pack-batched / raw-pack-batched)",
                "runtime / raw, batched",
                batched.p50_ns / raw.p50_ns,
                batched.best_ns / raw.best_ns
            );
        }
    }
}

fn print_ratios() {
    let events = demo_events();
    println!("\nper-event latency, sandboxed / native (same source, this run):");
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>7}",
        "rule", "events", "native ns", "sandbox ns", "ratio"
    );
    let mut groups: Vec<(String, usize)> = Vec::new();
    for artifact in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
        let Some(nat) = native::new_native(artifact.name) else {
            continue;
        };
        let n = events
            .iter()
            .filter(|e| EventKinds::of(nat.meta().events).contains(e.kind()))
            .count();
        groups.push((format!("rule/{}", artifact.name), n));
    }
    groups.push((SET.to_owned(), events.len()));
    groups.push((SET_BENIGN.to_owned(), benign_indices(&events).len()));
    for (group, n) in groups {
        for subject in ["sandboxed", "pack", "pack-batched"] {
            if let (Some(nat), Some(sb)) = (
                rulebox_benches::criterion_estimate(&group, "native", n),
                rulebox_benches::criterion_estimate(&group, subject, n),
            ) {
                let per = |x: f64| x / n as f64;
                let label = if subject == "sandboxed" {
                    group.clone()
                } else {
                    format!("{group} ({subject})")
                };
                println!(
                    "{:<28} {:>8} {:>12.1} {:>12.1} {:>7.2}",
                    label,
                    n,
                    per(nat),
                    per(sb),
                    sb / nat
                );
            }
            if !group.starts_with("set/") {
                break;
            }
        }
    }
}

fn main() {
    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        bench(&mut c, &rt, thread);
        c.final_summary();
        if !std::env::args().any(|a| a == "--list") {
            interleaved_sets(&rt, thread);
        }
    });
    print_ratios();
}
