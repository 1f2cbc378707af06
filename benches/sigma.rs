//! Events per second of the whole compiled Sigma corpus over the corpus events, sandboxed and native.
//!
//! Run with `cargo bench -p rulebox-benches --bench sigma` (quick: append
//! `-- --warm-up-time 1 --measurement-time 2`). Needs the corpus (`$RULEBOX_SIGMA_CORPUS`, else
//! `<workspace>/../shared/corpus/sigma`); says so and exits when it is absent. Every rule is compiled
//! once; the sandboxed run dispatches every event to every subscribed rule module through a `RuleSet`
//! (fuel, deadline, memory cap on), the native run evaluates the same compiled programs with the
//! evaluator's Rust code (the same source as the module). At the end the bench prints both rates and
//! the ratio, from this run's estimates.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{Outcome, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{Event, EventKind, EventView};
use rulebox_sigma::Evaluator;
use rulebox_sigma::cases::load_cases;

const GROUP: &str = "sigma/corpus";

fn corpus() -> Option<PathBuf> {
    let dir = match std::env::var_os("RULEBOX_SIGMA_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma"),
    };
    let cases = dir.join("cases");
    cases.is_dir().then_some(cases)
}

fn bench(
    c: &mut Criterion,
    runtime: &Runtime,
    thread: &SandboxThread,
    dir: &std::path::Path,
) -> usize {
    let cases = load_cases(dir).expect("cases");
    let programs: Vec<_> = cases
        .iter()
        .filter_map(|c| c.program.clone().ok())
        .collect();
    let events: Vec<Event<'static>> = cases
        .iter()
        .filter_map(|c| c.events.clone().ok())
        .flatten()
        .collect();
    let encoded = rulebox_benches::encode(&events);

    let mut set = RuleSet::new(runtime);
    for p in &programs {
        let module = rulebox_sigma::build_module(p, SIGMA_EVAL.bytes).expect("module");
        set.load(thread, &module, &p.id).expect("loads");
    }
    // Native: the same programs, dispatched by kind as the host does.
    let mut natives: Vec<Evaluator<'static>> = programs
        .iter()
        .cloned()
        .map(|p| Evaluator::new(p).expect("compiled programs check"))
        .collect();
    let by_kind: Vec<Vec<usize>> = EventKind::ALL
        .iter()
        .map(|k| {
            (0..natives.len())
                .filter(|&i| natives[i].kinds().contains(*k))
                .collect()
        })
        .collect();

    let n = events.len();
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(u64::try_from(n).unwrap_or(1)));
    group.bench_function(BenchmarkId::new("native", n), |b| {
        b.iter(|| {
            let mut hits = 0;
            for (kind, bytes) in &encoded {
                let view = EventView::new(std::hint::black_box(bytes)).expect("reads");
                for &i in &by_kind[*kind as usize] {
                    hits += usize::from(natives[i].matches(&view));
                }
            }
            hits
        });
    });
    let mut outcome = Outcome::default();
    group.bench_function(BenchmarkId::new("sandboxed", n), |b| {
        b.iter(|| {
            let mut hits = 0;
            for (kind, bytes) in &encoded {
                set.process_encoded(thread, *kind, std::hint::black_box(bytes), &mut outcome)
                    .expect("within limits");
                hits += outcome.detections.len();
            }
            hits
        });
    });
    group.finish();
    // Both paths must agree on what fires, or the comparison means nothing.
    let native_hits: usize = events
        .iter()
        .map(|e| {
            by_kind[e.kind() as usize]
                .iter()
                .filter(|&&i| natives[i].matches_event(e))
                .count()
        })
        .sum();
    let mut sandbox_hits = 0;
    for (kind, bytes) in &encoded {
        set.process_encoded(thread, *kind, bytes, &mut outcome)
            .expect("within limits");
        sandbox_hits += outcome.detections.len();
    }
    assert_eq!(native_hits, sandbox_hits, "native and sandboxed disagree");
    println!(
        "{} rules, {n} events, {native_hits} detections per pass",
        programs.len()
    );
    n
}

fn main() {
    let Some(dir) = corpus() else {
        println!(
            "SKIPPED: no Sigma corpus (set RULEBOX_SIGMA_CORPUS or put it at ../shared/corpus/sigma)"
        );
        return;
    };
    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    let n = runtime.run_sandboxed(move |thread| {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        let n = bench(&mut c, &rt, thread, &dir);
        c.final_summary();
        n
    });
    if let (Some(nat), Some(sb)) = (
        rulebox_benches::criterion_estimate(GROUP, "native", n),
        rulebox_benches::criterion_estimate(GROUP, "sandboxed", n),
    ) {
        let rate = |ns: f64| n as f64 / (ns / 1e9);
        println!("\nwhole Sigma corpus over its {n} events (this run):");
        println!("  native     {:>12.0} events/s", rate(nat));
        println!("  sandboxed  {:>12.0} events/s", rate(sb));
        println!("  sandboxed / native time ratio: {:.2}", sb / nat);
    }
}
