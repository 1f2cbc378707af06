//! The whole SigmaHQ Windows set that rulebox compiles, as an endpoint gets it: a signed release of
//! rule packs, started cold and warm, its resident memory, and a one-rule update.
//!
//! Run with `cargo bench -p rulebox-benches --bench sigma_load`. Needs the SigmaHQ rules
//! (`$RULEBOX_SIGMAHQ`, else `<workspace>/../shared/corpus/sigmahq`) and the corpus events
//! (`$RULEBOX_SIGMA_CORPUS`, else `<workspace>/../shared/corpus/sigma`); prints SKIPPED and exits
//! when either is absent. `docs/performance.md` has the results. With `RULEBOX_SIGMA_LOAD_DIR=DIR`
//! the releases are built in DIR and kept, and a later run with the same DIR only measures.
//!
//! 1. **The release** (vendor side, not timed against a target): every rule file compiled as
//!    `rulebox sigma compile` does (the first of two rules with one id kept), the records split into
//!    packs by [`rulebox_sigma::split_packs`] (the CLI's call), the folder written as the CLI writes
//!    it (`sigma.wasm`, `sigma.NN.rules`), read by [`rulebox_release::pack_sources_in`] and built by
//!    [`rulebox_release::build_bundle_with_packs`] (what `rulebox bundle build --packs` runs), then
//!    signed with [`rulebox_release::add_signature`] (the signature `rulebox bundle sign` adds; the
//!    release gate's validation of every rule, which `bundle sign` requires first, is not run here)
//!    and installed in a content store. Releases 2–6 are the same set with one rule of the largest
//!    pack at a new version each.
//! 2. **Cold start**, in a child process (this binary run again, so that its resident memory is the
//!    endpoint's alone): a new `Runtime`, the store's boot decision (`ContentStore::begin_boot`:
//!    the release re-verified, signature and every file's SHA-256), `Content::from_bundle` through
//!    an empty `ModuleCache` (the engine compiled by wasmtime), `RuleSet::activate` (an instance
//!    per pack, its rule data decoded and its prefilter built in the guest) and the first event.
//!    **Warm start**: the same in a new child with the cache filled by the cold one.
//! 3. **Resident memory** of the child (`VmRSS`, and `VmHWM` reset once the events are read) at
//!    start, with the runtime, after activation and after the corpus events, and the packs' linear
//!    memory (each pack's memory high-water mark).
//! 4. **One-rule update**, in a third child started warm: releases 2–6 applied one after the other
//!    as the agent applies a delivered bundle (`ContentStore::install`, `begin_boot`,
//!    `Content::from_bundle`, `RuleSet::activate`), median of five; before and after each, the
//!    corpus events as one batch: every event evaluated, no evaluation missed, the same detections,
//!    and the updated rule firing at its new version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_release::{BundleOptions, KeyFile};
use rulebox_runtime::content::{BootDecision, ContentStore, Manifest, Signed, now_unix};
use rulebox_runtime::{
    BatchOutcome, Content, ModuleCache, Prepared, RuleSet, Runtime, RuntimeConfig, SandboxThread,
};
use rulebox_sdk::Event;
use rulebox_sigma::cases::load_cases;

/// The argument that makes this binary a child measuring one start.
const CHILD: &str = "--sigma-load-child";
/// How many one-rule updates are timed (releases 2 to `1 + UPDATES`).
const UPDATES: u64 = 5;
/// Boot attempts the store allows before it abandons a release: these starts never report GOOD.
const BOOT_ATTEMPTS: u32 = u32::MAX;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// The vendor side: the release and its one-rule updates.
// ---------------------------------------------------------------------------------------------

/// The compiled set: each rule's program, in file order.
fn compile_set(hq: &Path) -> (usize, Vec<rulebox_sigma::Program<'static>>) {
    let mut files = Vec::new();
    rulebox_benches::yml_files(hq, &mut files);
    let mut ids = std::collections::HashSet::new();
    let programs = files
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            let program = rulebox_sigma::compile(&text).ok()?;
            (rulebox_sigma::rule_record(&program).is_ok() && ids.insert(program.id.clone()))
                .then_some(program)
        })
        .collect();
    (files.len(), programs)
}

/// The packs of `programs` as the CLI cuts them.
fn packs_of(programs: &[rulebox_sigma::Program<'_>]) -> Vec<(String, Vec<u8>)> {
    let records: Vec<Vec<u8>> = programs
        .iter()
        .map(|p| rulebox_sigma::rule_record(p).expect("a compiled rule encodes"))
        .collect();
    let full =
        rulebox_validate::named::full_rows(&records, &rulebox_runtime::RuntimeConfig::default());
    rulebox_sigma::split_packs_with_rows(
        &records,
        "sigma",
        rulebox_sigma::MAX_PACK_DATA_BYTES,
        &full,
    )
    .into_iter()
    .map(|(id, data, _)| (id, data))
    .collect()
}

/// Writes `packs` as `rulebox sigma compile -o` does, builds the bundle from that folder as
/// `rulebox bundle build --packs` does and signs it with `key`.
fn signed_release(
    work: &Path,
    release: u64,
    packs: &[(String, Vec<u8>)],
    key: &KeyFile,
) -> PathBuf {
    let compiled = work.join(format!("compiled-{release}"));
    std::fs::create_dir_all(&compiled).expect("the compile folder");
    std::fs::write(compiled.join("sigma.wasm"), SIGMA_EVAL.bytes).expect("the engine is written");
    for (i, (_, data)) in packs.iter().enumerate() {
        std::fs::write(compiled.join(format!("sigma.{:02}.rules", i + 1)), data)
            .expect("the rule data is written");
    }
    let sources = rulebox_release::pack_sources_in(&compiled).expect("the packs are read");
    let bundle = work.join(format!("release-{release}"));
    rulebox_release::build_bundle_with_packs(
        &bundle,
        &[],
        &sources,
        &BundleOptions::new(release, now_unix() + 86_400, "sigma_load"),
    )
    .expect("the bundle builds");
    let path = bundle.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("manifest parses");
    rulebox_release::add_signature(&mut envelope, key).expect("signs");
    std::fs::write(&path, serde_json::to_vec(&envelope).expect("encodes")).expect("written");
    bundle
}

/// The rule of the largest pack whose version changes in each update: one with a corpus case (so
/// that it fires on the corpus events) and a ten-character version (so that its new version keeps
/// every record's size and no rule moves to another pack).
fn rule_to_update(
    programs: &[rulebox_sigma::Program<'_>],
    packs: &[(String, Vec<u8>)],
    case_ids: &[String],
) -> (String, usize) {
    let (largest, count) = packs
        .iter()
        .enumerate()
        .map(|(i, (_, data))| {
            let (_, records) = rulebox_sigma::split_data(data).expect("the pack frames");
            (i, records.len())
        })
        .max_by_key(|&(_, n)| n)
        .expect("at least one pack");
    let before: usize = packs[..largest]
        .iter()
        .map(|(_, d)| rulebox_sigma::split_data(d).map_or(0, |(_, r)| r.len()))
        .sum();
    let id = programs[before..before + count]
        .iter()
        .find(|p| p.version.len() == 10 && case_ids.contains(&p.id))
        .map(|p| p.id.clone())
        .expect("the largest pack holds a corpus rule with a dated version");
    (id, count)
}

/// The version of the updated rule in release `release`.
fn version_in(release: u64) -> String {
    format!("2099-01-{release:02}")
}

/// Builds the releases 1 to `1 + UPDATES` in `work` with their root (`root.json`), and writes the
/// id of the rule the updates change to `rule.txt`.
fn build_releases(hq: &Path, corpus: &Path, work: &Path) {
    let started = Instant::now();
    let (files, mut programs) = compile_set(hq);
    let compile_s = started.elapsed().as_secs_f64();
    let cases = load_cases(&corpus.join("cases")).expect("the corpus cases read");
    let case_ids: Vec<String> = cases
        .iter()
        .filter_map(|c| c.program.as_ref().ok().map(|p| p.id.clone()))
        .collect();
    let packs = packs_of(&programs);
    let (target, largest) = rule_to_update(&programs, &packs, &case_ids);
    let data_bytes: usize = packs.iter().map(|(_, d)| d.len()).sum();
    println!(
        "{files} SigmaHQ rule files: {} compiled by rulebox in {compile_s:.1} s; {} packs, {:.1} MiB of rule data, the largest {largest} rules",
        programs.len(),
        packs.len(),
        data_bytes as f64 / (1 << 20) as f64
    );
    let key = rulebox_release::generate_key().expect("a key");
    let mut root = rulebox_release::build_root(1, now_unix() + 86_400, &[key.public.as_str()], 1)
        .expect("a root");
    rulebox_release::sign_root(&mut root, &key).expect("the root signs");
    let started = Instant::now();
    signed_release(work, 1, &packs, &key);
    println!(
        "release 1 built in {:.1} s (the engine compiled once, every pack loaded to identify it)",
        started.elapsed().as_secs_f64()
    );
    for release in 2..=1 + UPDATES {
        let p = programs
            .iter_mut()
            .find(|p| p.id == target)
            .expect("the rule is in the set");
        p.version = version_in(release);
        let next = packs_of(&programs);
        let changed = packs.iter().zip(&next).filter(|(a, b)| a.1 != b.1).count();
        assert_eq!(
            (next.len(), changed),
            (packs.len(), 1),
            "a one-rule update changes one pack"
        );
        signed_release(work, release, &next, &key);
    }
    println!(
        "releases 2-{}: rule {target} of the largest pack at versions {} to {}",
        1 + UPDATES,
        version_in(2),
        version_in(1 + UPDATES)
    );
    std::fs::write(
        work.join("root.json"),
        serde_json::to_vec(&root).expect("encodes"),
    )
    .expect("the root is written");
    std::fs::write(work.join("rule.txt"), &target).expect("written");
}

fn parent(hq: &Path, corpus: &Path) {
    // `RULEBOX_SIGMA_LOAD_DIR` keeps the releases for another run (which then only measures).
    let temp;
    let work = match std::env::var_os("RULEBOX_SIGMA_LOAD_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            temp = tempfile::tempdir().expect("a temp dir");
            temp.path().to_path_buf()
        }
    };
    if !work.join("rule.txt").is_file() {
        std::fs::create_dir_all(&work).expect("the work folder");
        build_releases(hq, corpus, &work);
    } else {
        println!(
            "the releases of {} (built by an earlier run)",
            work.display()
        );
    }
    let target = std::fs::read_to_string(work.join("rule.txt")).expect("rule.txt");
    let store_dir = work.join("store");
    let cache = work.join("cache");
    for d in [&store_dir, &cache] {
        if d.exists() {
            std::fs::remove_dir_all(d).expect("an earlier run's store is removed");
        }
    }
    let root = std::fs::read(work.join("root.json")).expect("root.json");
    let mut store = ContentStore::init(&store_dir, &root).expect("the store");
    let started = Instant::now();
    store
        .install(&work.join("release-1"), now_unix())
        .expect("release 1 installs");
    println!(
        "release 1 installed in the store in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(store);
    let updates: Vec<PathBuf> = (2..=1 + UPDATES)
        .map(|r| work.join(format!("release-{r}")))
        .collect();

    let me = std::env::current_exe().expect("this bench's path");
    let run = |mode: &str, extra: &[&Path]| {
        let mut cmd = Command::new(&me);
        cmd.args([CHILD, mode])
            .arg(&store_dir)
            .arg(&cache)
            .arg(corpus)
            .arg(target.trim());
        cmd.args(extra);
        let out = cmd.output().expect("the child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "{mode} start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    println!("\n(load average {})", load_average());
    run("cold", &[]);
    run("warm", &[]);
    let paths: Vec<&Path> = updates.iter().map(PathBuf::as_path).collect();
    run("update", &paths);
    println!("(load average {})", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// The endpoint side, in a child process.
// ---------------------------------------------------------------------------------------------

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn print_memory(what: &str) {
    let (rss, hwm) = memory();
    println!("    resident {what:<38} {rss:>8.1} MiB (peak {hwm:.1} MiB)");
}

/// The release current in the store, as the agent starts it: the boot decision (re-verification).
fn boot(store: &mut ContentStore) -> rulebox_runtime::content::VerifiedBundle {
    match store.begin_boot(BOOT_ATTEMPTS).expect("the boot decision") {
        BootDecision::Start { bundle, .. } => bundle,
        _ => panic!("the store does not start its current release"),
    }
}

/// Detections of a pass over `events` as one batch: all of them, and the target rule's versions.
fn pass(
    set: &mut RuleSet,
    thread: &SandboxThread,
    events: &[Event<'_>],
    target: &str,
) -> (usize, Vec<String>) {
    let mut out = BatchOutcome::default();
    set.process_batch(thread, events, &mut out);
    let mut all = 0;
    let mut versions = Vec::new();
    for o in out.iter() {
        let o = o.expect("every event is evaluated");
        all += o.detections.len();
        versions.extend(
            o.detections
                .iter()
                .filter(|d| d.rule.id == target)
                .map(|d| d.rule.version.clone()),
        );
    }
    (all, versions)
}

/// The packs' linear memory: the sum of each pack's memory high-water mark, in MiB, and the
/// largest.
fn linear_memory(set: &RuleSet) -> (f64, f64, usize) {
    let mut per_pack: std::collections::BTreeMap<String, u64> = Default::default();
    for (info, _, stats) in set.rules() {
        if let Some(pack) = &info.pack {
            per_pack.insert(pack.id.clone(), stats.memory_high_water);
        }
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    (
        mib(per_pack.values().sum()),
        mib(per_pack.values().copied().max().unwrap_or(0)),
        per_pack.len(),
    )
}

fn child(args: &[String]) {
    let [mode, store_dir, cache_dir, corpus, target, updates @ ..] = args else {
        panic!("usage: {CHILD} cold|warm|update STORE CACHE CORPUS RULE [BUNDLE...]");
    };
    let events: Vec<Event<'static>> = load_cases(&Path::new(corpus).join("cases"))
        .expect("cases")
        .into_iter()
        .filter_map(|c| c.events.ok())
        .flatten()
        .collect();
    // From here on the peak counts what the start holds, not the reading of the corpus.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    println!(
        "{mode} start ({} corpus events){}:",
        events.len(),
        if reset {
            ""
        } else {
            " (peak not reset: /proc/self/clear_refs refused)"
        }
    );
    print_memory("at start (events read)");
    let total = Instant::now();
    let t = Instant::now();
    let runtime = Runtime::new(RuntimeConfig::default()).expect("the runtime");
    let t_runtime = t.elapsed();
    print_memory("with the runtime");
    let rt = runtime.clone();
    let (mode, store_dir, cache_dir, target) = (
        mode.clone(),
        PathBuf::from(store_dir),
        PathBuf::from(cache_dir),
        target.clone(),
    );
    let updates: Vec<PathBuf> = updates.iter().map(PathBuf::from).collect();
    runtime.run_sandboxed(move |thread| {
        let t = Instant::now();
        let mut store = ContentStore::open(&store_dir).expect("the store opens");
        let bundle = boot(&mut store);
        let t_verify = t.elapsed();
        let t = Instant::now();
        let cache = ModuleCache::open(&cache_dir);
        let content = Content::from_bundle(&rt, &bundle, Some(&cache), |_| false);
        let t_compile = t.elapsed();
        assert!(content.skipped().is_empty(), "{:?}", content.skipped());
        let t = Instant::now();
        let mut set = RuleSet::new(&rt);
        let activation = set.activate(thread, &content);
        let t_activate = t.elapsed();
        assert!(
            activation.refused.is_empty() && activation.mismatched.is_empty(),
            "every pack loads: {:?}",
            activation.refused.first().map(|r| &r.message)
        );
        let t = Instant::now();
        set.process(thread, &events[0]).expect("the first event");
        let t_first = t.elapsed();
        let total = total.elapsed();
        let stats = cache.stats();
        println!(
            "    {} rules in {} packs; module cache: {} hits, {} misses",
            activation.added.len(),
            content.packs().len(),
            stats.hits,
            stats.misses
        );
        for (what, d) in [
            ("runtime (wasmtime engine, linker)", t_runtime),
            ("boot decision: release re-verified", t_verify),
            ("engine: Content::from_bundle", t_compile),
            ("RuleSet::activate: instances, data loads", t_activate),
            ("the first event", t_first),
            ("total, to the first evaluated event", total),
        ] {
            println!("    {what:<45} {:>9.1} ms", ms(d));
        }
        print_memory("after activation");
        let (sum, largest, packs) = linear_memory(&set);
        println!(
            "    linear memory of the {packs} packs: {sum:.1} MiB (largest pack {largest:.1} MiB)"
        );
        let (detections, _) = pass(&mut set, thread, &events, &target);
        print_memory("after the corpus events");
        println!("    detections over the corpus events: {detections}");
        if mode == "cold" {
            attribution(&rt, thread, &content);
        }
        if mode == "update" {
            update(
                &rt, thread, &mut store, &cache, &mut set, &updates, &events, &target,
            );
        }
    });
}

/// Where a pack's load goes: the largest pack's data loaded into a fresh instance with its
/// prefilter and without it (`rulebox_sigma::without_prefilter`), off the set.
fn attribution(rt: &Runtime, thread: &SandboxThread, content: &Content) {
    let pack = content
        .packs()
        .iter()
        .max_by_key(|p| p.data().len())
        .expect("a pack");
    let plain = rulebox_sigma::without_prefilter(pack.data()).expect("the pack's data splits");
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut memory = (0, 0);
    for _ in 0..3 {
        for (data, times, mem) in [
            (pack.data(), &mut with, &mut memory.0),
            (plain.as_slice(), &mut without, &mut memory.1),
        ] {
            let t = Instant::now();
            let prepared = Prepared::load(rt, thread, pack.engine(), data, pack.limits())
                .expect("the pack loads");
            times.push(ms(t.elapsed()));
            let mut set = RuleSet::new(rt);
            set.upsert_prepared(prepared).expect("installs");
            *mem = set
                .rules()
                .next()
                .map_or(0, |(_, _, stats)| stats.memory_high_water);
        }
    }
    let (w, wo) = (median(with), median(without));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "    the largest pack ({} KiB of data), loaded alone, median of 3: {w:.1} ms and {:.1} MiB of linear memory with its prefilter, {wo:.1} ms and {:.1} MiB without it",
        pack.data().len() / 1024,
        mib(memory.0),
        mib(memory.1),
    );
}

/// Releases `bundles` applied one after the other as the agent applies a delivered bundle.
#[allow(clippy::too_many_arguments)]
fn update(
    rt: &Runtime,
    thread: &SandboxThread,
    store: &mut ContentStore,
    cache: &ModuleCache,
    set: &mut RuleSet,
    bundles: &[PathBuf],
    events: &[Event<'_>],
    target: &str,
) {
    let n = events.len() as u64;
    let (before, versions) = pass(set, thread, events, target);
    assert!(
        !versions.is_empty(),
        "the rule to update fires on the corpus"
    );
    let mut steps: [Vec<f64>; 6] = Default::default();
    for (i, bundle) in bundles.iter().enumerate() {
        let release = 2 + i as u64;
        let events_before = set.stats().events;
        let t = Instant::now();
        store
            .install(bundle, now_unix())
            .expect("the update installs");
        let install = t.elapsed();
        let t = Instant::now();
        let verified = boot(store);
        let verify = t.elapsed();
        let t = Instant::now();
        let content = Content::from_bundle(rt, &verified, Some(cache), |_| false);
        let compile = t.elapsed();
        // The changed pack's data load alone, off the set (what `activate` does first for it).
        let loaded: Vec<String> = set.packs().map(|p| p.data_hash.clone()).collect();
        let changed = content
            .packs()
            .iter()
            .find(|p| !loaded.iter().any(|h| h == p.data_hash()))
            .expect("one pack changed");
        let t = Instant::now();
        Prepared::load(
            rt,
            thread,
            changed.engine(),
            changed.data(),
            changed.limits(),
        )
        .expect("the new pack loads");
        let load = t.elapsed();
        let t = Instant::now();
        let activation = set.activate(thread, &content);
        let activate = t.elapsed();
        assert!(activation.refused.is_empty() && activation.removed.is_empty());
        assert!(activation.added.is_empty());
        let (after, versions) = pass(set, thread, events, target);
        assert_eq!(after, before, "the same detections after the update");
        assert!(
            !versions.is_empty() && versions.iter().all(|v| *v == version_in(release)),
            "the new version fires: {versions:?}"
        );
        assert_eq!(
            set.stats().events,
            events_before + n,
            "every event evaluated"
        );
        assert_eq!(set.stats().rules_missed, 0, "no evaluation missed");
        assert_eq!(set.stats().quarantined, 0);
        for (v, d) in steps.iter_mut().zip([
            install,
            verify,
            compile,
            load,
            activate,
            install + verify + compile + activate,
        ]) {
            v.push(ms(d));
        }
        println!(
            "    release {release}: {} rules replaced, {} unchanged",
            activation.replaced.len(),
            activation.unchanged.len()
        );
    }
    // The bookkeeping alone: the last release activated again, nothing to load.
    let verified = boot(store);
    let content = Content::from_bundle(rt, &verified, Some(cache), |_| false);
    let mut again = Vec::new();
    for _ in 0..bundles.len() {
        let t = Instant::now();
        let activation = set.activate(thread, &content);
        again.push(ms(t.elapsed()));
        assert!(activation.added.is_empty() && activation.replaced.is_empty());
    }
    println!("  one-rule update, median of {}:", bundles.len());
    for (what, v) in [
        "ContentStore::install (verify, copy, fsync)",
        "boot decision: release re-verified",
        "engine: Content::from_bundle (cache)",
        "the changed pack's data load (Prepared::load)",
        "RuleSet::activate: the swap, between batches",
        "total, delivered bundle to new rule running",
    ]
    .iter()
    .zip(steps)
    {
        println!("    {what:<46} {:>9.1} ms", median(v));
    }
    println!(
        "    {:<46} {:>9.1} ms",
        "RuleSet::activate of the same release again",
        median(again)
    );
    println!(
        "    each update: {n} events before and after, all evaluated, none missed, the same {before} detections, {target} firing at its new version"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(at) = args.iter().position(|a| a == CHILD) {
        child(&args[at + 1..]);
        return;
    }
    let (Some(hq), Some(corpus)) = (
        rulebox_benches::corpus_dir("RULEBOX_SIGMAHQ", "../../shared/corpus/sigmahq"),
        rulebox_benches::corpus_dir("RULEBOX_SIGMA_CORPUS", "../../shared/corpus/sigma"),
    ) else {
        println!(
            "SKIPPED: no SigmaHQ rules or Sigma corpus (set RULEBOX_SIGMAHQ and RULEBOX_SIGMA_CORPUS, or put them under ../shared/corpus)"
        );
        return;
    };
    parent(&hq, &corpus);
}
