//! The whole SigmaHQ Windows set that rulebox compiles, sandboxed as Sigma packs with every limit
//! on, against `rsigma-eval` (0.23, with and without its cross-rule index) on the same rules and
//! the same events, in one run; and the per-event time with 2,500 rules loaded against 100.
//!
//! Run with `cargo bench -p rulebox-benches --bench sigma_scale` (quick: append
//! `-- --warm-up-time 1 --measurement-time 3`, and set `RULEBOX_SCALE_NO_INDEX=1` to leave out
//! rsigma's indexed engine, whose index build takes minutes). Needs the SigmaHQ rules (`$RULEBOX_SIGMAHQ`, else
//! `<workspace>/../shared/corpus/sigmahq`) and the corpus events (`$RULEBOX_SIGMA_CORPUS`, else
//! `<workspace>/../shared/corpus/sigma`); says so and exits when either is absent.
//!
//! - **rulebox**: the compiled rules as the rule data of the Sigma engine (compiled once), split
//!   into packs ([`rulebox_sigma::split_packs`]), loaded into one `RuleSet` with the production
//!   limits (fuel, deadline, memory), the events handed over in one batch per pass
//!   (`process_batch`: each pack is crossed into once per batch); **rulebox-no-prefilter** the
//!   same packs with the engine's cross-rule prefilter switched off
//!   (`rulebox_sigma::without_prefilter`), so every rule of an event's kind runs on it.
//! - **rsigma**: `rsigma_eval::Engine` with every rule of the same files that it parses, each event
//!   given as the flat JSON of its Sigma fields and routed by logsource
//!   (`evaluate_with_logsource`, the event's Sigma category and product; registry events under
//!   their own category and `registry_event`); **rsigma-index** the same with its cross-rule
//!   Aho-Corasick index (`daachorse-index`) on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rsigma_eval::{Engine, JsonEvent};
use rsigma_parser::LogSource;
use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{BatchOutcome, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{Event, EventKind};
use rulebox_sigma::cases::load_cases;
use serde_json::{Map, Value};

const GROUP: &str = "sigma_scale";

fn dir(var: &str, default: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os(var) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default),
    };
    dir.is_dir().then_some(dir)
}

/// Every `.yml` under `dir`, sorted.
fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            rule_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "yml") {
            out.push(path);
        }
    }
    out.sort();
}

/// A rule both engines load: its text and rulebox's compiled program.
struct Rule {
    text: String,
    program: rulebox_sigma::Program<'static>,
}

/// The Sigma categories of an event kind, for rsigma's logsource routing.
fn categories(kind: EventKind) -> &'static [&'static str] {
    use EventKind as K;
    match kind {
        K::ProcessStart => &["process_creation"],
        K::ProcessAccess => &["process_access"],
        K::FileCreate => &["file_event"],
        K::FileDelete => &["file_delete"],
        K::FileRename => &["file_rename"],
        K::FileWrite => &["file_change"],
        K::RegistryAdd => &["registry_add", "registry_event"],
        K::RegistrySet => &["registry_set", "registry_event"],
        K::RegistryDelete => &["registry_delete", "registry_event"],
        K::RegistryRename => &["registry_rename", "registry_event"],
        K::NetworkConnect => &["network_connection"],
        K::DnsQuery => &["dns_query"],
        K::PipeCreate | K::PipeConnect => &["pipe_created"],
        K::ImageLoad => &["image_load"],
        _ => &[],
    }
}

/// An event as rsigma reads it: the flat JSON of its Sigma fields (the kind's fields and the
/// extra ones), and the logsources it is routed under.
fn for_rsigma(event: &Event<'_>) -> (Value, Vec<LogSource>) {
    let mut flat = Map::new();
    if let Ok(Value::Object(data)) = serde_json::to_value(&event.data)
        && let Some(Value::Object(fields)) = data.into_iter().next().map(|(_, v)| v)
    {
        flat.extend(fields);
    }
    for f in &event.extra {
        flat.insert(f.name.to_string(), Value::String(f.value.to_string()));
    }
    let windows = |category: Option<&str>| LogSource {
        product: Some("windows".into()),
        category: category.map(str::to_owned),
        ..LogSource::default()
    };
    let sources = match categories(event.kind()) {
        [] => vec![windows(None)],
        cats => cats.iter().map(|c| windows(Some(c))).collect(),
    };
    (Value::Object(flat), sources)
}

/// How the rules are cut into packs.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// As `rulebox sigma compile` does ([`rulebox_sigma::split_packs`]: by kind, then size).
    Shipped,
    /// The layout before packs were cut by kind, kept to measure against: the rules in their
    /// given order, a new pack whenever the next rule would take one over the size cap.
    Mixed,
}

/// The previous layout's packs ([`Layout::Mixed`]).
fn mixed_packs(records: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut packs: Vec<Vec<u8>> = Vec::new();
    for r in records {
        match packs.last_mut() {
            Some(p) if p.len() + r.len() <= rulebox_sigma::MAX_PACK_DATA_BYTES => {
                p.extend_from_slice(r)
            }
            _ => packs.push(r.clone()),
        }
    }
    packs
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let id = format!("mixed-{:02}", i + 1);
            let mut data = Vec::with_capacity(body.len() + 32);
            rulebox_sigma_eval::push_header(&mut data, &id);
            data.extend_from_slice(&body);
            (id, data)
        })
        .collect()
}

fn rulebox_set(
    runtime: &Runtime,
    thread: &SandboxThread,
    rules: &[Rule],
    prefilter: bool,
    layout: Layout,
) -> RuleSet {
    let engine = runtime
        .compile(SIGMA_EVAL.bytes, "sigma.wasm")
        .expect("the engine compiles");
    let records: Vec<Vec<u8>> = rules
        .iter()
        .map(|r| rulebox_sigma::rule_record(&r.program).expect("record"))
        .collect();
    let mut set = RuleSet::new(runtime);
    let packs = match layout {
        Layout::Shipped => {
            rulebox_sigma::split_packs(&records, "sigma", rulebox_sigma::MAX_PACK_DATA_BYTES)
        }
        Layout::Mixed => mixed_packs(&records),
    };
    if prefilter {
        let name = if layout == Layout::Mixed {
            "mixed"
        } else {
            "by kind"
        };
        println!("{} rules in {} packs ({name})", rules.len(), packs.len());
    }
    for (id, data) in packs {
        let data = if prefilter {
            data
        } else {
            rulebox_sigma::without_prefilter(&data).expect("the pack's data splits")
        };
        set.add_module(thread, &engine, &data, None)
            .unwrap_or_else(|r| panic!("pack {id} loads: {}: {}", r.reason, r.message));
    }
    set
}

fn rsigma_engine(rules: &[Rule], index: bool) -> (Engine, usize) {
    let mut engine = Engine::new();
    let mut refused = 0;
    for r in rules {
        match rsigma_parser::parse_sigma_yaml(&r.text) {
            Ok(c) => {
                if engine.add_collection(&c).is_err() {
                    refused += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    if index {
        engine.set_cross_rule_ac(true);
    }
    (engine, refused)
}

fn rulebox_pass(
    set: &mut RuleSet,
    thread: &SandboxThread,
    events: &[Event<'_>],
    out: &mut BatchOutcome,
) -> usize {
    set.process_batch(thread, events, out);
    out.iter()
        .map(|o| o.map_or(0, |o| o.detections.len()))
        .sum()
}

fn rsigma_pass(engine: &Engine, events: &[(Value, Vec<LogSource>)]) -> usize {
    let mut hits = 0;
    for (json, sources) in events {
        let event = JsonEvent::borrow(json);
        for ls in sources {
            hits += engine.evaluate_with_logsource(&event, ls).len();
        }
    }
    hits
}

fn main() {
    let (Some(hq), Some(corpus)) = (
        dir("RULEBOX_SIGMAHQ", "../../shared/corpus/sigmahq"),
        dir("RULEBOX_SIGMA_CORPUS", "../../shared/corpus/sigma"),
    ) else {
        println!(
            "SKIPPED: no SigmaHQ rules or Sigma corpus (set RULEBOX_SIGMAHQ and RULEBOX_SIGMA_CORPUS, or put them under ../shared/corpus)"
        );
        return;
    };
    let mut files = Vec::new();
    rule_files(&hq, &mut files);
    let mut ids = HashSet::new();
    let mut refused = 0;
    let rules: Vec<Rule> = files
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            match rulebox_sigma::compile(&text) {
                // A program over the size cap is refused by `sigma compile` too.
                Ok(program)
                    if rulebox_sigma::rule_record(&program).is_ok()
                        && ids.insert(program.id.clone()) =>
                {
                    Some(Rule { text, program })
                }
                _ => {
                    refused += 1;
                    None
                }
            }
        })
        .collect();
    let events: Vec<Event<'static>> = load_cases(&corpus.join("cases"))
        .expect("cases")
        .into_iter()
        .filter_map(|c| c.events.ok())
        .flatten()
        .collect();
    let json: Vec<(Value, Vec<LogSource>)> = events.iter().map(for_rsigma).collect();
    let n = events.len();
    println!(
        "{} SigmaHQ rule files: {} compiled by rulebox ({refused} refused, over the size cap or duplicate ids); {n} events",
        files.len(),
        rules.len()
    );

    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    let all = rules.len();
    runtime.run_sandboxed(move |thread| {
        let (shipped, mixed) = (Layout::Shipped, Layout::Mixed);
        let mut set = rulebox_set(&rt, thread, &rules, true, shipped);
        let mut set_mixed = rulebox_set(&rt, thread, &rules, true, mixed);
        let mut set_off = rulebox_set(&rt, thread, &rules, false, shipped);
        let small = rules.len().min(100);
        let large = rules.len().min(2500);
        let mut set_small = rulebox_set(&rt, thread, &rules[..small], true, shipped);
        let mut set_large = rulebox_set(&rt, thread, &rules[..large], true, shipped);
        let mut set_small_off = rulebox_set(&rt, thread, &rules[..small], false, shipped);
        let mut set_large_off = rulebox_set(&rt, thread, &rules[..large], false, shipped);
        let (plain, rs_refused) = rsigma_engine(&rules, false);
        // Building rsigma's cross-rule index takes minutes (its `add_collection` rebuilds it):
        // `RULEBOX_SCALE_NO_INDEX=1` leaves that subject out of a quick run.
        let index = std::env::var_os("RULEBOX_SCALE_NO_INDEX").is_none();
        let indexed = index.then(|| rsigma_engine(&rules, true).0);
        println!(
            "rsigma loads {} of them ({rs_refused} refused)",
            plain.rule_count()
        );
        let mut out = BatchOutcome::default();
        let ours = rulebox_pass(&mut set, thread, &events, &mut out);
        let ours_off = rulebox_pass(&mut set_off, thread, &events, &mut out);
        assert_eq!(ours, ours_off, "the prefilter changes no detection");
        let ours_mixed = rulebox_pass(&mut set_mixed, thread, &events, &mut out);
        assert_eq!(ours, ours_mixed, "the layout changes no detection");
        println!(
            "detections per pass: rulebox {ours} (without the prefilter {ours_off}), rsigma {}, rsigma-index {}",
            rsigma_pass(&plain, &json),
            indexed
                .as_ref()
                .map_or("not run".into(), |e| rsigma_pass(e, &json).to_string())
        );

        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3))
            .sample_size(10)
            .configure_from_args();
        let mut group = c.benchmark_group(GROUP);
        group.throughput(Throughput::Elements(u64::try_from(n).unwrap_or(1)));
        group.bench_function(BenchmarkId::new("rulebox", all), |b| {
            b.iter(|| rulebox_pass(&mut set, thread, std::hint::black_box(&events), &mut out));
        });
        group.bench_function(BenchmarkId::new("rulebox-mixed-packs", all), |b| {
            b.iter(|| rulebox_pass(&mut set_mixed, thread, std::hint::black_box(&events), &mut out));
        });
        group.bench_function(BenchmarkId::new("rsigma", all), |b| {
            b.iter(|| rsigma_pass(&plain, std::hint::black_box(&json)));
        });
        if let Some(indexed) = &indexed {
            group.bench_function(BenchmarkId::new("rsigma-index", all), |b| {
                b.iter(|| rsigma_pass(indexed, std::hint::black_box(&json)));
            });
        }
        group.bench_function(BenchmarkId::new("rulebox-no-prefilter", all), |b| {
            b.iter(|| rulebox_pass(&mut set_off, thread, std::hint::black_box(&events), &mut out));
        });
        for (name, n, set) in [
            ("rulebox", small, &mut set_small),
            ("rulebox", large, &mut set_large),
            ("rulebox-no-prefilter", small, &mut set_small_off),
            ("rulebox-no-prefilter", large, &mut set_large_off),
        ] {
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| rulebox_pass(set, thread, std::hint::black_box(&events), &mut out));
            });
        }
        group.finish();
        c.final_summary();

        let est = |f: &str, p: usize| rulebox_benches::criterion_estimate(GROUP, f, p);
        let rate = |ns: f64| n as f64 / (ns / 1e9);
        if let (Some(ours), Some(off), Some(theirs)) = (
            est("rulebox", all),
            est("rulebox-no-prefilter", all),
            est("rsigma", all),
        ) {
            println!("\n{all} rules over {n} events (this run):");
            println!("  rulebox (sandboxed)       {:>12.0} events/s", rate(ours));
            println!("  rulebox, no prefilter     {:>12.0} events/s", rate(off));
            println!("  rsigma                    {:>12.0} events/s", rate(theirs));
            println!("  rulebox / rsigma speed:       {:.2}x", theirs / ours);
            // Only if it ran in this run (an estimate left by an earlier run is not this run's).
            if let Some(index) = est("rsigma-index", all).filter(|_| indexed.is_some()) {
                println!("  rsigma-index              {:>12.0} events/s", rate(index));
                println!("  rulebox / rsigma-index speed: {:.2}x", index / ours);
            }
            println!("  prefilter speed-up:           {:.2}x", off / ours);
            if let Some(m) = est("rulebox-mixed-packs", all) {
                println!("  packs by kind / mixed packs:  {:.2}x faster", m / ours);
            }
        }
        for name in ["rulebox", "rulebox-no-prefilter"] {
            if let (Some(s), Some(l)) = (est(name, small), est(name, large)) {
                println!(
                    "  {name}: per-event time, {large} rules / {small} rules: {:.2}x",
                    l / s
                );
            }
        }
    });
}
