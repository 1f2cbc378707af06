//! Two builds of the same content, measured side by side in one process: old against new.
//!
//! ```text
//! cargo bench -p rulebox-benches --bench ab -- --old OLD_DIR --new NEW_DIR [--rounds N]
//! ```
//!
//! `OLD_DIR` and `NEW_DIR` hold `*.wasm` rule modules with the same file names (for example the
//! `target/guest/wasm32-unknown-unknown/release/rule_*.wasm` of two builds, copied aside). Both sets
//! are loaded into one runtime with the production limits. Each round runs, for each side in turn
//! (the order alternating between rounds), every rule ten times over the demo events of its kinds,
//! one rule after another, through `LoadedRule::evaluate` (no `RuleSet`, no reuse of detections), so
//! that a noisy neighbour slows both sides alike. The bench prints, per rule and for the whole set
//! (each rule's time weighted by its calls, per demo event), the median and the best round of each
//! side, in ns per event, and the ratio new / old. These figures compare two builds; they are not
//! the set figures of `--bench rules`, which go through a `RuleSet`.
//!
//! Without `--old` and `--new` it prints how to run it and does nothing (so `make bench` passes over
//! it).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rulebox_runtime::{LoadedRule, Runtime, SandboxThread};
use rulebox_sdk::EventKind;

fn modules(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// One side: each rule loaded, with the events of its kinds.
struct Side {
    rules: Vec<(String, LoadedRule, Vec<usize>)>,
}

impl Side {
    fn load(
        runtime: &Runtime,
        thread: &SandboxThread,
        mods: &[(String, Vec<u8>)],
        events: &[(EventKind, Vec<u8>)],
    ) -> Side {
        let rules = mods
            .iter()
            .map(|(name, bytes)| {
                let compiled = runtime
                    .compile(bytes, name)
                    .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
                let rule = LoadedRule::load(runtime, thread, &compiled)
                    .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
                let kinds = rule.info().subscriptions;
                let mine = (0..events.len())
                    .filter(|&i| kinds.contains(events[i].0))
                    .collect();
                (name.clone(), rule, mine)
            })
            .collect();
        Side { rules }
    }

    /// Runs every rule over its events `reps` times; the time of each rule in ns per event.
    fn round(&mut self, events: &[(EventKind, Vec<u8>)], reps: usize) -> Vec<f64> {
        let mut out = Vec::new();
        self.rules
            .iter_mut()
            .map(|(name, rule, mine)| {
                let start = Instant::now();
                for _ in 0..reps {
                    for &i in mine.iter() {
                        out.clear();
                        rule.evaluate(std::hint::black_box(&events[i].1), &mut out)
                            .unwrap_or_else(|f| panic!("{name} faulted: {f:?}"));
                    }
                }
                start.elapsed().as_nanos() as f64 / (reps * mine.len().max(1)) as f64
            })
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(old_dir), Some(new_dir)) = (value("--old"), value("--new")) else {
        println!(
            "ab: skipped (usage: cargo bench -p rulebox-benches --bench ab -- --old OLD_DIR --new NEW_DIR [--rounds N])"
        );
        return;
    };
    let rounds: usize = match value("--rounds") {
        None => 200,
        Some(r) => match r.parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("--rounds wants a positive number, not {r:?}"),
        },
    };
    let (old_mods, new_mods) = (
        modules(&PathBuf::from(&old_dir)),
        modules(&PathBuf::from(&new_dir)),
    );
    let names: Vec<String> = old_mods.iter().map(|m| m.0.clone()).collect();
    assert_eq!(
        names,
        new_mods.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        "the two folders must hold modules of the same names"
    );
    assert!(!names.is_empty(), "no *.wasm in {old_dir}");
    let events = rulebox_benches::encoded_demo_events();

    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut old = Side::load(&rt, thread, &old_mods, &events);
        let mut new = Side::load(&rt, thread, &new_mods, &events);
        let n = old.rules.len();
        // Per rule, per round: ns per event.
        let (mut t_old, mut t_new) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        // Whole set per round, ns per event (weighted by the calls each rule makes).
        let (mut s_old, mut s_new) = (Vec::new(), Vec::new());
        // Each side's calls per rule: a new build may subscribe to other kinds.
        let calls_of = |side: &Side| -> Vec<usize> { side.rules.iter().map(|r| r.2.len()).collect() };
        let (calls, new_calls) = (calls_of(&old), calls_of(&new));
        let per_event = |t: &[f64], calls: &[usize]| {
            t.iter()
                .zip(calls)
                .map(|(ns, &c)| ns * c as f64)
                .sum::<f64>()
                / events.len() as f64
        };
        // Warm-up, then the rounds.
        old.round(&events, 20);
        new.round(&events, 20);
        for r in 0..rounds {
            let (a, b) = if r % 2 == 0 {
                let a = old.round(&events, 10);
                (a, new.round(&events, 10))
            } else {
                let b = new.round(&events, 10);
                (old.round(&events, 10), b)
            };
            s_old.push(per_event(&a, &calls));
            s_new.push(per_event(&b, &new_calls));
            for i in 0..n {
                t_old[i].push(a[i]);
                t_new[i].push(b[i]);
            }
        }
        println!(
            "{rounds} rounds, old and new alternating; ns per event (median, best round); events: old/new when the sides differ"
        );
        println!(
            "{:<34} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "rule", "events", "old p50", "new p50", "old best", "new best", "new/old"
        );
        for i in 0..n {
            let (mo, mn) = (median(t_old[i].clone()), median(t_new[i].clone()));
            println!(
                "{:<34} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8.3}",
                names[i],
                if calls[i] == new_calls[i] {
                    calls[i].to_string()
                } else {
                    format!("{}/{}", calls[i], new_calls[i])
                },
                mo,
                mn,
                min(&t_old[i]),
                min(&t_new[i]),
                mn / mo
            );
        }
        let (mo, mn) = (median(s_old.clone()), median(s_new.clone()));
        println!(
            "{:<34} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8.3}",
            "whole set (per event)",
            events.len(),
            mo,
            mn,
            min(&s_old),
            min(&s_new),
            mn / mo
        );
    });
}
