//! Rule packs in signed releases: a bundle carrying an engine and its rule data, built by the vendor
//! tools, installed in a content store, activated with `RuleSet::activate` (the agent's one path),
//! and updated one rule at a time as a data load into the engine compiled once.

use std::path::Path;

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_release::{BundleOptions, KeyFile, ModuleSource, PackSource};
use rulebox_runtime::content::{
    ContentStore, Manifest, QuarantineEntry, QuarantineReason, Signed, VerifiedBundle, now_unix,
};
use rulebox_runtime::{Content, ModuleCache, Reason, RuleSet};
use rulebox_sdk::{Event, EventData, ProcessStart};
use rulebox_sigma::cases::load_cases;

use crate::common::{runtime, sigma_corpus};

/// A vendor key and the store of an endpoint that trusts it.
fn endpoint(dir: &Path) -> (KeyFile, ContentStore) {
    let key = rulebox_release::generate_key().unwrap();
    let mut root =
        rulebox_release::build_root(1, now_unix() + 86_400, &[key.public.as_str()], 1).unwrap();
    rulebox_release::sign_root(&mut root, &key).unwrap();
    let store =
        ContentStore::init(&dir.join("store"), &serde_json::to_vec(&root).unwrap()).unwrap();
    (key, store)
}

/// Builds release `release` of one pack (the Sigma engine with `data`) in `dir`, signed by `key`
/// directly (these tests are about the endpoint; the release gate has its own tests).
fn signed_pack_bundle(dir: &Path, release: u64, data: Vec<u8>, key: &KeyFile) -> Manifest {
    let packs = [PackSource {
        engine: ModuleSource::Bytes {
            name: "sigma.wasm".into(),
            bytes: SIGMA_EVAL.bytes.to_vec(),
        },
        data: vec![ModuleSource::Bytes {
            name: "sigma.01.rules".into(),
            bytes: data,
        }],
    }];
    let manifest = rulebox_release::build_bundle_with_packs(
        dir,
        &[],
        &packs,
        &BundleOptions::new(release, now_unix() + 86_400, "sigma"),
    )
    .unwrap();
    sign(dir, key);
    manifest
}

fn sign(dir: &Path, key: &KeyFile) {
    let path = dir.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    envelope.signatures.clear();
    rulebox_release::add_signature(&mut envelope, key).unwrap();
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
}

fn rule(id: &str, version: &str, image: &str) -> rulebox_sigma::Program<'static> {
    rulebox_sigma::compile(&format!(
        "title: Runs {image}\nid: {id}\ndate: {version}\n\
         logsource: {{product: windows, category: process_creation}}\n\
         detection:\n    selection:\n        Image|endswith: '\\{image}'\n    condition: selection\nlevel: high\n"
    ))
    .unwrap()
}

fn process(image: &str) -> Event<'static> {
    let mut p = ProcessStart::default();
    p.image = image.to_owned().into();
    Event::new(EventData::ProcessStart(p))
}

const A: &str = "5a1e0000-0000-4000-8000-00000000000a";
const B: &str = "5a1e0000-0000-4000-8000-00000000000b";

#[test]
fn a_signed_bundle_of_the_corpus_sigma_rules_as_one_pack_installs_and_detects_every_case() {
    let Some(corpus) = sigma_corpus("a_signed_bundle_of_the_corpus_sigma_rules") else {
        return;
    };
    let cases = load_cases(&corpus.join("cases")).unwrap();
    let programs: Vec<_> = cases
        .iter()
        .map(|c| c.program.clone().expect("every corpus rule compiles"))
        .collect();
    assert_eq!(programs.len(), 162, "the corpus holds 162 rules");
    let data = rulebox_sigma::rule_data(&programs).unwrap();
    // Release 2 updates one rule: a new version of the first.
    let mut updated = programs.clone();
    updated[0].version = "2099-01-01".into();
    let data2 = rulebox_sigma::rule_data(&updated).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let (key, mut store) = endpoint(tmp.path());
    let bundle = tmp.path().join("release-1");
    let manifest = signed_pack_bundle(&bundle, 1, data, &key);
    let bundle2 = tmp.path().join("release-2");
    signed_pack_bundle(&bundle2, 2, data2, &key);
    assert_eq!(manifest.format, 2);
    assert_eq!((manifest.engines.len(), manifest.packs.len()), (1, 1));
    assert_eq!(manifest.packs[0].rules.len(), 162);
    assert!(manifest.rules.is_empty());
    store.install(&bundle, now_unix()).unwrap();
    // The store keeps the engine under modules/ and the rule data under data/.
    let release_dir = store.release_dir(1);
    assert!(release_dir.join(&manifest.engines[0].file).is_file());
    assert!(release_dir.join(&manifest.packs[0].file).is_file());
    let verified = store.load_release(1).unwrap();
    store.install(&bundle2, now_unix()).unwrap();
    let verified2 = store.load_release(2).unwrap();
    // The vendor side's full check: the engine loaded with the data reports what the entry says.
    let root_path = tmp.path().join("store/root.json");
    rulebox_release::verify_release(&bundle, &root_path, None, now_unix()).unwrap();

    let rt = runtime();
    let cache_dir = tmp.path().join("cache");
    rt.clone().run_sandboxed(move |thread| {
        let cache = ModuleCache::open(&cache_dir);
        let content = Content::from_bundle(&rt, &verified, Some(&cache), |_| false);
        assert_eq!(content.packs().len(), 1);
        assert!(content.skipped().is_empty(), "{:?}", content.skipped());
        let mut set = RuleSet::new(&rt);
        let activation = set.activate(thread, &content);
        assert_eq!(activation.added.len(), 162);
        assert!(activation.refused.is_empty() && activation.mismatched.is_empty());
        let mut failures = Vec::new();
        for (case, program) in cases.iter().zip(&programs) {
            let events = case.events.as_ref().expect("the case's events read");
            let mut own = 0u64;
            for event in events {
                let outcome = set.process(thread, event).unwrap();
                own += u64::from(outcome.detections.iter().any(|d| d.rule.id == program.id));
            }
            let needed = case.match_count.unwrap_or(1).max(1);
            if own < needed {
                failures.push(format!("{}: {own} of {needed} events fired", case.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(set.stats().quarantined, 0);

        // The one-rule update of the 162-rule pack: the engine from the cache, never compiled
        // again; the pack reloaded with its new data between two events.
        let before = cache.stats();
        let started = std::time::Instant::now();
        let content = Content::from_bundle(&rt, &verified2, Some(&cache), |_| false);
        let activation = set.activate(thread, &content);
        let took = started.elapsed();
        assert_eq!(cache.stats().misses, before.misses, "no wasmtime compile");
        assert!(activation.refused.is_empty() && activation.removed.is_empty());
        assert_eq!(activation.replaced.len(), 162);
        let first = &programs[0].id;
        let info = activation.replaced.iter().find(|r| r.id == *first).unwrap();
        assert_eq!(info.version, "2099-01-01");
        eprintln!(
            "one-rule update of the 162-rule signed pack (engine from the module cache, data load, \
             install): {:.1} ms",
            took.as_secs_f64() * 1e3
        );
        // It still fires on its own events.
        let events = cases[0].events.as_ref().unwrap();
        let fired = events.iter().any(|e| {
            set.process(thread, e)
                .unwrap()
                .detections
                .iter()
                .any(|d| d.rule.id == *first)
        });
        assert!(fired, "the updated rule runs");
    });
}

/// Release `n` of the two-rule pack: A on whoami.exe, and B at `b_version` on `b_image`.
fn two_rules(b_version: &str, b_image: &str) -> Vec<u8> {
    rulebox_sigma::rule_data(&[
        rule(A, "2024-01-01", "whoami.exe"),
        rule(B, b_version, b_image),
    ])
    .unwrap()
}

fn install(store: &mut ContentStore, dir: &Path, release: u64) -> VerifiedBundle {
    store.install(dir, now_unix()).unwrap();
    store.load_release(release).unwrap()
}

#[test]
fn a_one_rule_update_in_a_signed_release_is_a_data_load_with_no_compile_and_no_event_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, mut store) = endpoint(tmp.path());
    let first = tmp.path().join("r1");
    let second = tmp.path().join("r2");
    let m1 = signed_pack_bundle(&first, 1, two_rules("2024-01-01", "notepad.exe"), &key);
    let m2 = signed_pack_bundle(&second, 2, two_rules("2024-02-02", "calc.exe"), &key);
    assert_eq!(m1.engines, m2.engines, "the engine is the same module");
    assert_ne!(m1.packs[0].sha256, m2.packs[0].sha256);
    let v1 = install(&mut store, &first, 1);
    let v2 = install(&mut store, &second, 2);

    let rt = runtime();
    let cache_dir = tmp.path().join("cache");
    rt.clone().run_sandboxed(move |thread| {
        let cache = ModuleCache::open(&cache_dir);
        let mut set = RuleSet::new(&rt);
        let c1 = Content::from_bundle(&rt, &v1, Some(&cache), |_| false);
        set.activate(thread, &c1);
        let compiled_once = cache.stats();
        assert_eq!(compiled_once.misses, 1, "the engine compiled once");

        let stream = ["C:\\x\\whoami.exe", "C:\\x\\notepad.exe", "C:\\x\\calc.exe"];
        let mut fired: Vec<(usize, String)> = Vec::new();
        let mut run = |set: &mut RuleSet, round: usize| {
            for image in stream {
                let outcome = set.process(thread, &process(image)).unwrap();
                for d in &outcome.detections {
                    fired.push((round, format!("{} {image}", d.rule.id)));
                }
            }
        };
        run(&mut set, 1);
        // The update: the same engine (a cache hit, never a compile), one data load.
        let c2 = Content::from_bundle(&rt, &v2, Some(&cache), |_| false);
        let after = cache.stats();
        assert_eq!(after.misses, compiled_once.misses, "no wasmtime compile");
        assert_eq!(after.hits, compiled_once.hits + 1);
        let activation = set.activate(thread, &c2);
        assert!(activation.refused.is_empty() && activation.mismatched.is_empty());
        assert!(activation.removed.is_empty(), "{:?}", activation.removed);
        assert_eq!(
            activation.replaced.len(),
            2,
            "the pack reloaded with its new data"
        );
        let b = activation.replaced.iter().find(|r| r.id == B).unwrap();
        assert_eq!(b.version, "2024-02-02");
        run(&mut set, 2);
        // Every event of both rounds was evaluated: nothing lost across the update.
        assert_eq!(set.stats().events, 6);
        assert_eq!(set.stats().rules_missed, 0);
        let want: Vec<(usize, String)> = vec![
            (1, format!("{A} C:\\x\\whoami.exe")),
            (1, format!("{B} C:\\x\\notepad.exe")),
            (2, format!("{A} C:\\x\\whoami.exe")),
            (2, format!("{B} C:\\x\\calc.exe")),
        ];
        assert_eq!(fired, want);

        // The same release again: unchanged, same instance.
        let again = set.activate(thread, &c2);
        assert_eq!(again.unchanged.len(), 2);
        assert!(again.added.is_empty() && again.replaced.is_empty());
    });
}

#[test]
fn a_rule_quarantined_inside_a_signed_pack_stays_off_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, mut store) = endpoint(tmp.path());
    let first = tmp.path().join("r1");
    let m1 = signed_pack_bundle(&first, 1, two_rules("2024-01-01", "notepad.exe"), &key);
    let v1 = install(&mut store, &first, 1);
    let engine = m1.engines[0].sha256.clone();
    // What the agent recorded when B faulted before this start (the store's own list).
    let stored = vec![QuarantineEntry {
        rule_id: B.to_owned(),
        rule_version: "2024-01-01".to_owned(),
        content_hash: engine.clone(),
        reason: QuarantineReason::Known(Reason::OutOfFuel),
        at_unix_ms: 1,
    }];
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let content = Content::from_bundle(&rt, &v1, None, |_| false).with_quarantined(&stored);
        let mut set = RuleSet::new(&rt);
        set.activate(thread, &content);
        assert!(set.is_active(A));
        assert!(!set.is_active(B), "kept off after the restart");
        assert_eq!(set.quarantine_reason(B), Some(Reason::OutOfFuel));
        let outcome = set.process(thread, &process("C:\\x\\notepad.exe")).unwrap();
        assert!(outcome.detections.is_empty());
        let outcome = set.process(thread, &process("C:\\x\\whoami.exe")).unwrap();
        assert_eq!(outcome.detections.len(), 1, "the rest of its pack runs");
    });
}

#[test]
fn a_pack_whose_data_is_not_what_its_signed_entry_declares_is_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, mut store) = endpoint(tmp.path());
    let first = tmp.path().join("r1");
    signed_pack_bundle(&first, 1, two_rules("2024-01-01", "notepad.exe"), &key);
    // The manifest claims another version of B than the data holds, re-signed.
    let path = first.join("manifest.json");
    let mut envelope: Signed<Manifest> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    envelope.signed.packs[0].rules[1].version = "2099-01-01".into();
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    sign(&first, &key);
    let err = rulebox_release::verify_release(
        &first,
        &tmp.path().join("store/root.json"),
        None,
        now_unix(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("2099-01-01"), "{err}");
    let verified = install(&mut store, &first, 1);
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let content = Content::from_bundle(&rt, &verified, None, |_| false);
        let mut set = RuleSet::new(&rt);
        let activation = set.activate(thread, &content);
        assert_eq!(activation.mismatched.len(), 1);
        let m = &activation.mismatched[0];
        assert_eq!(
            (m.declared.id.as_str(), m.declared.version.as_str()),
            (B, "2099-01-01")
        );
        assert_eq!(m.found_version, "2024-01-01");
        assert_eq!(set.ids().count(), 0, "no rule of the pack runs");
    });
}
