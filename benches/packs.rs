//! Rule packs at scale, on the host side. Run with `cargo bench -p rulebox-benches --bench packs`;
//! `docs/performance.md` has the results.
//!
//! - **Flat in the rule count**: the test engine pack (`example-rules/packs/many-rules`) with 100,
//!   1,000 and 2,500 small rules, over the same events (process starts naming a few rules by their
//!   markers, and the demo intrusion), batched: per-event time with every subscribed rule run, and
//!   with the engine's prefilter (which names only the rules an event can match). The host's cost
//!   per rule run is what grows with the rule count without a prefilter; with one, the host's side
//!   stays flat. Timed interleaved ([`interleave`]).
//! - **Updating one rule of a 2,500-rule pack**: preparing the new version off the hot path
//!   (`Prepared::load`: a fresh instance and a data load, no compile) and installing it
//!   (`RuleSet::upsert_prepared`: the swap the event stream waits for), and the same update done in
//!   place (`RuleSet::upsert_with_data`).

use std::time::Instant;

use rulebox_benches::{Subject, demo_events, encode, interleave, print_timings};
use rulebox_example_artifacts::MANY_RULES;
use rulebox_runtime::{BatchOutcome, CompiledRule, Prepared, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{Event, EventData, EventKind, ProcessStart};

/// The events: process starts naming two small rules each (spread over the first 100, so that every
/// pack size has them), then the demo intrusion.
fn events() -> Vec<(EventKind, Vec<u8>)> {
    let mut events: Vec<Event<'static>> = (0..40u32)
        .map(|i| {
            let mut p = ProcessStart::default();
            p.image = "C:\\Windows\\System32\\cmd.exe".into();
            p.command_line = format!("cmd /c tool #{}# #{}#", i % 100, (i * 7 + 3) % 100).into();
            Event::new(EventData::ProcessStart(p))
        })
        .collect();
    events.extend(demo_events());
    encode(&events)
}

fn pack_set(
    runtime: &Runtime,
    thread: &SandboxThread,
    compiled: &CompiledRule,
    n: u32,
    prefilter: bool,
) -> RuleSet {
    let mut set = RuleSet::new(runtime);
    let data = pack_many_rules::data(n, None, prefilter);
    set.add_module(thread, compiled, data.as_bytes(), None)
        .expect("the pack loads");
    set
}

fn flatness(runtime: &Runtime, thread: &SandboxThread, compiled: &CompiledRule) {
    const ROUNDS: usize = 60;
    let events = events();
    let units = u64::try_from(events.len()).unwrap_or(1);
    let events_ref = &events;
    for prefilter in [false, true] {
        let mut subjects: Vec<Subject<'_>> = Vec::new();
        for (name, n) in [
            ("100 rules", 100),
            ("1,000 rules", 1_000),
            ("2,500 rules", 2_500),
        ] {
            let mut set = pack_set(runtime, thread, compiled, n, prefilter);
            let mut out = BatchOutcome::default();
            subjects.push((
                name,
                Box::new(move || {
                    set.process_encoded_batch(thread, events_ref, &mut out);
                    let n: usize = out
                        .iter()
                        .map(|o| o.map_or(0, |o| o.detections.len()))
                        .sum();
                    std::hint::black_box(n);
                    units
                }),
            ));
        }
        println!(
            "\nthe test engine pack, batched, {} ({ROUNDS} interleaved rounds of {} events):",
            if prefilter {
                "with its prefilter"
            } else {
                "every subscribed rule run"
            },
            events.len()
        );
        let timings = interleave(ROUNDS, &mut subjects);
        print_timings("event", &timings);
        if let [hundred, _, most] = &timings[..] {
            println!(
                "2,500 rules / 100 rules per event: {:.2} (p50), {:.2} (best)",
                most.p50_ns / hundred.p50_ns,
                most.best_ns / hundred.best_ns
            );
        }
    }
}

fn update(runtime: &Runtime, thread: &SandboxThread, compiled: &CompiledRule) {
    const N: u32 = 2_500;
    const TIMES: usize = 5;
    let v1 = pack_many_rules::data(N, None, true);
    let mut set = RuleSet::new(runtime);
    set.upsert_with_data(thread, compiled, v1.as_bytes(), None)
        .expect("loads");
    let mut prepare = Vec::new();
    let mut install = Vec::new();
    let mut in_place = Vec::new();
    for i in 0..TIMES {
        // One rule at a new version each time.
        let data = v1.replace(&format!("small {i}\n"), &format!("small {i} 2.{i}.0\n"));
        let start = Instant::now();
        let prepared =
            Prepared::load(runtime, thread, compiled, data.as_bytes(), None).expect("prepares");
        prepare.push(start.elapsed());
        let start = Instant::now();
        set.upsert_prepared(prepared).expect("installs");
        install.push(start.elapsed());
        set.settle();
        let data = data.replace(
            &format!("small {i} 2.{i}.0\n"),
            &format!("small {i} 3.{i}.0\n"),
        );
        let start = Instant::now();
        set.upsert_with_data(thread, compiled, data.as_bytes(), None)
            .expect("updates");
        in_place.push(start.elapsed());
        set.settle();
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    println!(
        "\nupdating one rule of a {N}-rule pack (rule data {} KiB), median of {TIMES}:",
        v1.len() / 1024
    );
    println!(
        "  prepared off the hot path: {:.2} ms (Prepared::load, on any sandbox thread)",
        median(&mut prepare)
    );
    println!(
        "  installed: {:.2} ms (RuleSet::upsert_prepared: what the event stream waits for)",
        median(&mut install)
    );
    println!(
        "  in place: {:.2} ms (RuleSet::upsert_with_data on the set's thread)",
        median(&mut in_place)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let compiled = rt
            .compile(MANY_RULES.bytes, MANY_RULES.name)
            .expect("the test engine compiles");
        flatness(&rt, thread, &compiled);
        update(&rt, thread, &compiled);
    });
}
