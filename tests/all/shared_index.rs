//! The shared prefilter index of a set of Sigma packs (`rulebox_runtime::IndexStatus`): one scan
//! of each event names every pack's candidates; the packs find exactly what they find alone; an
//! index that does not belong to the packs loaded is never used; one that faults stops and the
//! packs fall back on the same batch, missing nothing.

use std::collections::BTreeSet;

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{
    BatchOutcome, CompiledRule, IndexStatus, Limits, RuleSet, Runtime, SandboxThread, Upsert,
};
use rulebox_sdk::Event;

use crate::common::{process, runtime};

const RULES: usize = 60;

/// Rule `i`: a process start whose command line holds `needle-<i>-x`; every tenth also looks at
/// the parent's image, so that the packs scan more than one field.
fn rule(i: usize, version: &str) -> rulebox_sigma::Program<'static> {
    let extra = if i.is_multiple_of(10) {
        format!("\n        ParentImage|endswith: '\\parent{i}.exe'")
    } else {
        String::new()
    };
    rulebox_sigma::compile(&format!(
        "title: Needle {i}\nid: 5e1d0000-0000-4000-8000-{i:012}\nmodified: {version}\n\
         logsource: {{product: windows, category: process_creation}}\n\
         detection:\n    selection:\n        CommandLine|contains: 'needle-{i}-x'{extra}\n\
         \x20   condition: selection\nlevel: medium\n"
    ))
    .expect("the rule compiles")
}

/// The packs of `programs`, several of them (small packs).
fn packs(programs: &[rulebox_sigma::Program<'static>]) -> Vec<(String, Vec<u8>)> {
    let records: Vec<Vec<u8>> = programs
        .iter()
        .map(|p| rulebox_sigma::rule_record(p).expect("a record"))
        .collect();
    rulebox_sigma::split_packs(&records, "needles", 8 << 10)
}

fn index(packs: &[(String, Vec<u8>)]) -> Vec<u8> {
    rulebox_sigma::index_data("needles-index", packs.iter().map(|p| p.1.as_slice()))
        .expect("the index builds")
}

fn engine(rt: &Runtime) -> CompiledRule {
    rt.compile(SIGMA_EVAL.bytes, "sigma.wasm")
        .expect("the engine compiles")
}

fn set_of(rt: &Runtime, thread: &SandboxThread, packs: &[(String, Vec<u8>)]) -> RuleSet {
    let engine = engine(rt);
    let mut set = RuleSet::new(rt);
    for (id, data) in packs {
        set.upsert_with_data(thread, &engine, data, None)
            .unwrap_or_else(|r| panic!("pack {id} loads: {}", r.message));
    }
    set
}

fn events() -> Vec<Event<'static>> {
    vec![
        process("C:\\a.exe", "run needle-3-x and needle-41-x", "C:\\p.exe"),
        process("C:\\a.exe", "nothing to see", "C:\\p.exe"),
        process("C:\\a.exe", "NEEDLE-20-X", "C:\\parent20.exe"),
        process("C:\\a.exe", "needle-20-x", "C:\\other.exe"),
        crate::common::empty(rulebox_sdk::EventKind::FileCreate),
        process("C:\\a.exe", "needle-59-x needle-0-x", "C:\\parent0.exe"),
    ]
}

/// The rule ids each event fired.
fn fired(set: &mut RuleSet, thread: &SandboxThread, events: &[Event<'_>]) -> Vec<BTreeSet<String>> {
    let mut out = BatchOutcome::default();
    set.process_batch(thread, events, &mut out);
    out.iter()
        .map(|o| {
            o.expect("the event is accepted")
                .detections
                .iter()
                .map(|d| d.rule.id.clone())
                .collect()
        })
        .collect()
}

fn id(i: usize) -> String {
    format!("5e1d0000-0000-4000-8000-{i:012}")
}

#[test]
fn the_shared_index_scans_once_and_the_packs_find_what_they_find_alone() {
    let rt = runtime();
    let r = rt.clone();
    rt.run_sandboxed(move |thread| {
        let programs: Vec<_> = (0..RULES).map(|i| rule(i, "2026-01-01")).collect();
        let packs = packs(&programs);
        assert!(packs.len() >= 3, "{} packs", packs.len());
        let mut alone = set_of(&r, thread, &packs);
        let mut shared = set_of(&r, thread, &packs);
        let up = shared
            .upsert_with_data(thread, &engine(&r), &index(&packs), None)
            .expect("the index loads");
        assert!(
            matches!(&up, Upsert::Pack(p) if p.rules.is_empty()),
            "an index brings no rules: {up:?}"
        );
        assert_eq!(shared.ids().count(), RULES, "and replaces none");
        assert_eq!(
            shared.index_status(),
            IndexStatus::Current {
                packs: packs.len(),
                rules: RULES
            }
        );
        let events = events();
        let a = fired(&mut alone, thread, &events);
        let b = fired(&mut shared, thread, &events);
        assert_eq!(a, b, "the same detections, event by event");
        assert_eq!(
            b[0],
            BTreeSet::from([id(3), id(41)]),
            "the candidates reached their packs"
        );
        assert_eq!(b[2], BTreeSet::from([id(20)]));
        assert!(
            b[3].is_empty(),
            "the index lets rule 20 through; its pack says no"
        );
        assert_eq!(b[5], BTreeSet::from([id(0), id(59)]));
        assert_eq!(shared.stats().index_scans, 5, "every process start, once");
        assert_eq!(shared.stats().index_faults, 0);
        // Packs none of whose rules the index names are not called.
        let calls = |s: &RuleSet| s.pack_stats().map(|(_, p)| p.events).sum::<u64>();
        assert!(
            calls(&shared) < calls(&alone),
            "pack events: {} with the index, {} without",
            calls(&shared),
            calls(&alone)
        );
        let (_, ix) = shared.index_pack().expect("the index");
        assert_eq!(ix.events, 5, "the index's own counters");
        // One event at a time takes the same path.
        for (k, e) in events.iter().enumerate() {
            let one = shared.process(thread, e).expect("accepted");
            let ids: BTreeSet<String> = one.detections.iter().map(|d| d.rule.id.clone()).collect();
            assert_eq!(ids, a[k], "event {k} alone");
        }
    });
}

#[test]
fn an_index_that_is_not_the_loaded_packs_is_not_used_and_nothing_is_missed() {
    let rt = runtime();
    let r = rt.clone();
    rt.run_sandboxed(move |thread| {
        let programs: Vec<_> = (0..RULES).map(|i| rule(i, "2026-01-01")).collect();
        let packs = packs(&programs);
        // Installed before its packs: stale, then current once they are all there.
        let engine = engine(&r);
        let mut set = RuleSet::new(&r);
        set.upsert_with_data(thread, &engine, &index(&packs), None)
            .expect("the index loads");
        assert!(
            matches!(set.index_status(), IndexStatus::Stale(ref why) if why.contains("not the first rule of a loaded pack")),
            "{:?}",
            set.index_status()
        );
        for (_, data) in &packs {
            set.upsert_with_data(thread, &engine, data, None)
                .expect("a pack loads");
        }
        assert!(matches!(set.index_status(), IndexStatus::Current { .. }));
        // One rule of the first pack updated (a new version, the same pack id): the index no
        // longer describes that pack, and every pack runs its own prefilter.
        let mut changed = programs.clone();
        changed[1] = rule(1, "2026-02-02");
        let new_packs = self::packs(&changed);
        assert_eq!(new_packs[0].0, packs[0].0);
        set.upsert_with_data(thread, &engine, &new_packs[0].1, None)
            .expect("the new pack loads");
        let status = set.index_status();
        assert!(
            matches!(&status, IndexStatus::Stale(why) if why.contains("2026-01-01") && why.contains("2026-02-02")),
            "{status:?}"
        );
        let scans = set.stats().index_scans;
        let fired_now = fired(&mut set, thread, &[process("a", "needle-1-x needle-51-x", "p")]);
        assert_eq!(fired_now[0], BTreeSet::from([id(1), id(51)]));
        assert_eq!(set.stats().index_scans, scans, "a stale index never runs");
        // Its rebuilt index is current again.
        set.upsert_with_data(thread, &engine, &index(&new_packs), None)
            .expect("the new index loads");
        assert!(matches!(set.index_status(), IndexStatus::Current { .. }));

        // An index of the same rules, in the same order, as one pack: every rule is where it says,
        // but its digest is of other rule data.
        let records: Vec<Vec<u8>> = changed
            .iter()
            .map(|p| rulebox_sigma::rule_record(p).unwrap())
            .collect();
        let whole = rulebox_sigma::split_packs(&records, "needles", 1 << 20);
        set.upsert_with_data(thread, &engine, &index(&whole), None)
            .expect("the other index loads");
        assert!(
            matches!(set.index_status(), IndexStatus::Stale(ref why) if why.contains("digest")),
            "{:?}",
            set.index_status()
        );
        // The same rules in the same packs, but one pack's data is not what the index was built
        // from (here: its own prefilter switched off): refused by the digest.
        let mut other = RuleSet::new(&r);
        for (k, (_, data)) in new_packs.iter().enumerate() {
            let data = if k == 0 {
                rulebox_sigma::without_prefilter(data).expect("splits")
            } else {
                data.clone()
            };
            other
                .upsert_with_data(thread, &engine, &data, None)
                .expect("a pack loads");
        }
        other
            .upsert_with_data(thread, &engine, &index(&new_packs), None)
            .expect("the index loads");
        assert!(
            matches!(other.index_status(), IndexStatus::Stale(ref why) if why.contains("digest")),
            "{:?}",
            other.index_status()
        );
    });
}

#[test]
fn a_faulting_index_stops_and_the_packs_fall_back_on_the_same_batch() {
    let rt = runtime();
    let r = rt.clone();
    rt.run_sandboxed(move |thread| {
        let programs: Vec<_> = (0..RULES).map(|i| rule(i, "2026-01-01")).collect();
        let packs = packs(&programs);
        let mut alone = set_of(&r, thread, &packs);
        let mut set = set_of(&r, thread, &packs);
        // Too little fuel for the index's own scan of one event.
        let starved = Limits {
            fuel_per_event: 50,
            ..r.config().limits.clone()
        };
        set.upsert_with_data(thread, &engine(&r), &index(&packs), Some(&starved))
            .expect("the index loads (its load has a budget of its own)");
        assert!(matches!(set.index_status(), IndexStatus::Current { .. }));
        let events = events();
        let want = fired(&mut alone, thread, &events);
        assert_eq!(fired(&mut set, thread, &events), want, "nothing missed");
        assert_eq!(set.stats().index_faults, 1);
        assert_eq!(set.stats().rules_missed, 0);
        let status = set.index_status();
        assert!(
            matches!(&status, IndexStatus::Stopped(why) if why.contains("event 0")),
            "{status:?}"
        );
        assert_eq!(fired(&mut set, thread, &events), want, "and after");
        assert_eq!(set.stats().index_faults, 1, "stopped for good");
        assert!(set.records().is_empty(), "no rule was quarantined");
        // Installed again, it starts afresh (and, with enough fuel, stays in use).
        set.upsert_with_data(thread, &engine(&r), &index(&packs), None)
            .expect("the index loads again");
        assert!(matches!(set.index_status(), IndexStatus::Current { .. }));
        assert_eq!(fired(&mut set, thread, &events), want);
        assert_eq!(set.stats().index_faults, 1);
        assert_eq!(set.stats().index_scans, 5, "scanned by the new one");
    });
}
