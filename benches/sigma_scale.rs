//! The whole SigmaHQ Windows set that rulebox compiles, sandboxed as Sigma packs with every limit
//! on, against `rsigma-eval` (0.23, with and without its cross-rule index) on the same rules and
//! the same events, in one run; and the per-event time with 2,500 rules loaded against 100.
//!
//! Run with `cargo bench -p rulebox-benches --bench sigma_scale` (quick: append
//! `-- --warm-up-time 1 --measurement-time 3`). Needs the SigmaHQ rules (`$RULEBOX_SIGMAHQ`, else
//! `<workspace>/../shared/corpus/sigmahq`) and the corpus events (`$RULEBOX_SIGMA_CORPUS`, else
//! `<workspace>/../shared/corpus/sigma`); says so and exits when either is absent.
//!
//! - **rulebox**: the compiled rules as the rule data of the Sigma engine (compiled once), split
//!   into packs ([`rulebox_sigma::split_packs`]), loaded into one `RuleSet` with the production
//!   limits (fuel, deadline, memory), the events handed over in one batch per pass
//!   (`process_batch`: each pack is crossed into once per batch) and the packs' shared prefilter
//!   index (`rulebox_sigma::index_data`: one scan of each event for every pack);
//!   **rulebox-own-prefilter** the same packs without the index, each scanning the event for its
//!   own rules; **rulebox-no-prefilter** the same packs with the engine's cross-rule prefilter
//!   switched off (`rulebox_sigma::without_prefilter`), so every rule of an event's kind runs on it.
//! - **rsigma**: `rsigma_eval::Engine` with every rule of the same files that it parses, each event
//!   given as the flat JSON of its Sigma fields and routed by logsource
//!   (`evaluate_with_logsource`, under every logsource rulebox gives the event to; see
//!   `sigma_common.rs`, shared with the `sigma_agree` bench); **rsigma-index** the same with its
//!   cross-rule Aho-Corasick index (`daachorse-index`) on.

mod sigma_common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rulebox_runtime::{BatchOutcome, Runtime};
use sigma_common::{Corpus, Prefilter, rsigma_engine, rsigma_pass, rulebox_pass, rulebox_set};

const GROUP: &str = "sigma_scale";

fn main() {
    let Some(Corpus {
        files,
        refused,
        rules,
        events,
        cases,
        rsigma_events: json,
        ..
    }) = Corpus::load()
    else {
        return;
    };
    let n = events.len();
    println!(
        "{files} SigmaHQ rule files: {} compiled by rulebox ({refused} refused, over the size cap or duplicate ids); {n} events of {} cases",
        rules.len(),
        cases.len()
    );

    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    let all = rules.len();
    runtime.run_sandboxed(move |thread| {
        let mut set = rulebox_set(&rt, thread, &rules, Prefilter::Shared);
        let mut set_own = rulebox_set(&rt, thread, &rules, Prefilter::PerPack);
        let mut set_off = rulebox_set(&rt, thread, &rules, Prefilter::Off);
        println!(
            "rulebox: {} packs, shared index {:?}",
            set.packs().count(),
            set.index_status()
        );
        let small = rules.len().min(100);
        let large = rules.len().min(2500);
        let mut set_small = rulebox_set(&rt, thread, &rules[..small], Prefilter::Shared);
        let mut set_large = rulebox_set(&rt, thread, &rules[..large], Prefilter::Shared);
        let mut set_small_off = rulebox_set(&rt, thread, &rules[..small], Prefilter::Off);
        let mut set_large_off = rulebox_set(&rt, thread, &rules[..large], Prefilter::Off);
        let (plain, rs_refused) = rsigma_engine(&rules, false);
        let (indexed, _) = rsigma_engine(&rules, true);
        println!(
            "rsigma loads {} of them ({rs_refused} refused)",
            plain.rule_count()
        );
        let mut out = BatchOutcome::default();
        let ours = rulebox_pass(&mut set, thread, &events, &mut out);
        let ours_own = rulebox_pass(&mut set_own, thread, &events, &mut out);
        let ours_off = rulebox_pass(&mut set_off, thread, &events, &mut out);
        assert_eq!(ours, ours_off, "the prefilter changes no detection");
        assert_eq!(ours, ours_own, "the shared index changes no detection");
        println!(
            "detections per pass: rulebox {ours} (each pack's own prefilter {ours_own}, without a prefilter {ours_off}), rsigma {}, rsigma-index {}",
            rsigma_pass(&plain, &json),
            rsigma_pass(&indexed, &json)
        );

        // Rule runs of that one pass (each set has seen exactly one): how many rules the
        // prefilter lets through per event, and the rules it lets through most without a detection.
        let runs = |set: &rulebox_runtime::RuleSet| -> Vec<(u64, u64, String, u64)> {
            set.rules()
                .map(|(info, _, stats)| {
                    (
                        stats.events,
                        stats.detections,
                        info.id.clone(),
                        stats.total_fuel,
                    )
                })
                .collect()
        };
        let (with, own, without) = (runs(&set), runs(&set_own), runs(&set_off));
        let total = |v: &[(u64, u64, String, u64)]| v.iter().map(|r| r.0).sum::<u64>();
        println!(
            "rule runs per event: {:.1} with the shared index, {:.1} with each pack's own prefilter, {:.1} without",
            total(&with) as f64 / n as f64,
            total(&own) as f64 / n as f64,
            total(&without) as f64 / n as f64
        );
        let mut idle: Vec<_> = with.iter().filter(|r| r.1 == 0 && r.0 > 0).collect();
        idle.sort_by_key(|r| std::cmp::Reverse(r.0));
        println!(
            "  runs without a detection: {} of them; most let through:",
            idle.iter().map(|r| r.0).sum::<u64>()
        );
        for r in idle.iter().take(15) {
            println!("    {:>4} {}", r.0, r.2);
        }
        let mut by_fuel: Vec<_> = with.iter().collect();
        by_fuel.sort_by_key(|r| std::cmp::Reverse(r.3));
        println!(
            "  rules' fuel per event: {:.0}; the rules that use most:",
            with.iter().map(|r| r.3).sum::<u64>() as f64 / n as f64
        );
        for r in by_fuel.iter().take(15) {
            println!("    {:>9} fuel in {:>4} runs {}", r.3, r.0, r.2);
        }
        // The packs' own work outside every rule (the batch walk and the prefilter), deterministic
        // like the rules' fuel: the cost a shared scan would cut.
        for (name, s) in [
            ("with the shared index", &set),
            ("with each pack's own prefilter", &set_own),
            ("without a prefilter", &set_off),
        ] {
            let packs: Vec<_> = s.pack_stats().map(|(_, p)| p).collect();
            println!(
                "packs' own fuel per event {name}: {:.0} ({} packs, {:.1} packs per event)",
                packs.iter().map(|p| p.own_fuel).sum::<u64>() as f64 / n as f64,
                packs.len(),
                packs.iter().map(|p| p.events).sum::<u64>() as f64 / n as f64
            );
        }

        if let Some((_, ix)) = set.index_pack() {
            println!(
                "the shared index's own fuel per event: {:.0}, at most {} (on {} events)",
                ix.own_fuel as f64 / n as f64,
                ix.max_own_fuel,
                ix.events
            );
        }

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
        group.bench_function(BenchmarkId::new("rulebox-own-prefilter", all), |b| {
            b.iter(|| rulebox_pass(&mut set_own, thread, std::hint::black_box(&events), &mut out));
        });
        group.bench_function(BenchmarkId::new("rsigma", all), |b| {
            b.iter(|| rsigma_pass(&plain, std::hint::black_box(&json)));
        });
        group.bench_function(BenchmarkId::new("rsigma-index", all), |b| {
            b.iter(|| rsigma_pass(&indexed, std::hint::black_box(&json)));
        });
        group.bench_function(BenchmarkId::new("rulebox-no-prefilter", all), |b| {
            b.iter(|| rulebox_pass(&mut set_off, thread, std::hint::black_box(&events), &mut out));
        });
        for (name, n, set) in [
            ("rulebox", small, &mut set_small),
            ("rulebox", large, &mut set_large),
            ("rulebox-no-prefilter", small, &mut set_small_off),
            ("rulebox-no-prefilter", large, &mut set_large_off),
        ] {
            // A set of 2,500 rules or fewer (narrowed by RULEBOX_SIGMAHQ_ONLY) is measured above.
            if n == all {
                continue;
            }
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| rulebox_pass(set, thread, std::hint::black_box(&events), &mut out));
            });
        }
        group.finish();
        c.final_summary();

        let est = |f: &str, p: usize| rulebox_benches::criterion_estimate(GROUP, f, p);
        let rate = |ns: f64| n as f64 / (ns / 1e9);
        if let (Some(ours), Some(own), Some(off), Some(theirs), Some(index)) = (
            est("rulebox", all),
            est("rulebox-own-prefilter", all),
            est("rulebox-no-prefilter", all),
            est("rsigma", all),
            est("rsigma-index", all),
        ) {
            println!("\n{all} rules over {n} events (this run):");
            println!("  rulebox (sandboxed)       {:>12.0} events/s", rate(ours));
            println!("  rulebox, own prefilters   {:>12.0} events/s", rate(own));
            println!("  rulebox, no prefilter     {:>12.0} events/s", rate(off));
            println!("  rsigma                    {:>12.0} events/s", rate(theirs));
            println!("  rsigma-index              {:>12.0} events/s", rate(index));
            println!("  rulebox / rsigma speed:       {:.2}x", theirs / ours);
            println!("  rulebox / rsigma-index speed: {:.2}x", index / ours);
            println!("  shared index speed-up:        {:.2}x", own / ours);
            println!("  prefilter speed-up:           {:.2}x", off / ours);
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
