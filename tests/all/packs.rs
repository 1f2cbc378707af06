//! Rule packs (ABI 3): many rules in one module behave, rule by rule, as the same rules do one per
//! module: the same detections, the same fuel (within a documented bound), their own limits,
//! counters and quarantine; events in batches; updates of a pack's rule data.

use rulebox_example_artifacts::{ALL, ArtifactKind, EXAMPLE_PACK};
use rulebox_runtime::{BatchOutcome, Outcome, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::Event;

use crate::common::runtime;
use crate::faults::demo_events;

/// Detections as comparable `(event index, rule id, title, fields)`.
type Seen = Vec<(usize, String, String, Vec<(String, String)>)>;

fn seen(i: usize, outcome: &Outcome, into: &mut Seen) {
    for d in &outcome.detections {
        into.push((
            i,
            d.rule.id.clone(),
            d.detection.title.to_string(),
            d.detection
                .fields
                .iter()
                .map(|f| (f.name.to_string(), f.value.to_string()))
                .collect(),
        ));
    }
}

fn singles(rt: &Runtime, thread: &SandboxThread) -> RuleSet {
    let mut set = RuleSet::new(rt);
    for a in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
        set.load(thread, a.bytes, a.name)
            .expect("a good rule loads");
    }
    set
}

fn one_by_one(set: &mut RuleSet, thread: &SandboxThread, events: &[Event<'static>]) -> Seen {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let outcome = set.process(thread, e).expect("within limits");
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        seen(i, &outcome, &mut out);
    }
    out
}

fn sorted(mut s: Seen) -> Seen {
    s.sort();
    s
}

#[test]
fn the_example_pack_detects_what_the_example_rules_do_one_by_one_and_batched() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = demo_events();
        let expected = one_by_one(&mut singles(&rt, thread), thread, &events);
        assert!(expected.len() >= 8, "{expected:?}");

        let mut pack = RuleSet::new(&rt);
        let first = pack
            .load(thread, EXAMPLE_PACK.bytes, "example-pack")
            .unwrap();
        assert_eq!(first.pack.as_ref().unwrap().id, "example-pack");
        assert_eq!(pack.rules().count(), 8);
        assert_eq!(
            sorted(one_by_one(&mut pack, thread, &events)),
            sorted(expected.clone())
        );

        let mut batched = RuleSet::new(&rt);
        batched
            .load(thread, EXAMPLE_PACK.bytes, "example-pack")
            .unwrap();
        let mut out = BatchOutcome::default();
        batched.process_batch(thread, &events, &mut out);
        let mut got = Vec::new();
        for (i, o) in out.iter().enumerate() {
            seen(i, o.expect("accepted"), &mut got);
        }
        assert_eq!(sorted(got), sorted(expected));
        assert_eq!(batched.stats().events, events.len() as u64);
    });
}

/// How far a rule's fuel in a pack may be from its fuel as a one-rule module on the same event
/// (`docs/abi.md`, "Fuel, deadlines and memory in a pack"). On most events the difference is a
/// small constant: the pack's per-rule dispatch. On the events where the module's glue grows its
/// input buffer (its first event, or one larger than any before) the module pays for the growth,
/// which grows with the event's size, and the pack does not (its buffer grows on the pack's own
/// budget); and a rule that allocates does so in the pack's shared heap, whose state depends on
/// the other rules. On the small demo events all of it stays within this bound.
pub const PACK_FUEL_BOUND: u64 = 1_024;

/// The pack's per-rule dispatch costs at most this much fuel.
pub const PACK_DISPATCH_FUEL: i64 = 64;

#[test]
fn a_rules_fuel_in_a_pack_is_its_fuel_as_a_module_of_its_own() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = demo_events();
        let mut single = singles(&rt, thread);
        let mut pack = RuleSet::new(&rt);
        pack.load(thread, EXAMPLE_PACK.bytes, "example-pack")
            .unwrap();
        let mut diffs: Vec<i64> = Vec::new();
        for e in &events {
            let before: Vec<u64> = single.rules().map(|(_, _, s)| s.events).collect();
            single.process(thread, e).unwrap();
            pack.process(thread, e).unwrap();
            for (k, (info, _, s)) in single.rules().enumerate() {
                if s.events == before[k] {
                    continue;
                }
                let (_, _, p) = pack.rules().find(|(i, _, _)| i.id == info.id).unwrap();
                assert_eq!(p.events, s.events, "{} ran as often", info.id);
                let diff =
                    i64::try_from(p.last_fuel).unwrap() - i64::try_from(s.last_fuel).unwrap();
                assert!(
                    diff.unsigned_abs() <= PACK_FUEL_BOUND,
                    "{}: {} fuel in the pack, {} alone",
                    info.id,
                    p.last_fuel,
                    s.last_fuel
                );
                diffs.push(diff);
            }
        }
        assert!(diffs.len() >= events.len(), "{}", diffs.len());
        // The usual difference is one constant, the dispatch: the same for every rule and event.
        let mut counts = std::collections::BTreeMap::new();
        for d in &diffs {
            *counts.entry(*d).or_insert(0usize) += 1;
        }
        let (&usual, &n) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
        assert!(
            (0..=PACK_DISPATCH_FUEL).contains(&usual) && n * 2 >= diffs.len(),
            "differences: {counts:?}"
        );
    });
}

/// A runtime whose configuration gives the example pack's `office-spawns-shell` 500 fuel per
/// event: too little for its first process start.
fn office_shell_at_500_fuel() -> Runtime {
    crate::common::runtime_with(|c| {
        c.rules.insert(
            "office-spawns-shell".into(),
            rulebox_runtime::Limits {
                fuel_per_event: 500,
                ..Default::default()
            },
        );
    })
}

#[test]
fn a_rule_with_a_lower_fuel_limit_hits_it_alone() {
    let rt = office_shell_at_500_fuel();
    rt.clone().run_sandboxed(move |thread| {
        let events = demo_events();
        let expected = one_by_one(&mut singles(&runtime(), thread), thread, &events);
        let mut pack = RuleSet::new(&rt);
        pack.load(thread, EXAMPLE_PACK.bytes, "example-pack")
            .unwrap();
        let mut got = Vec::new();
        let mut records = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let outcome = pack.process(thread, e).unwrap();
            seen(i, &outcome, &mut got);
            for a in &outcome.alerts {
                if let rulebox_runtime::Alert::RuleQuarantined(r) = a {
                    records.push((i, r.clone()));
                }
            }
        }
        assert_eq!(records.len(), 1, "{records:?}");
        let (at, record) = &records[0];
        assert_eq!(record.rule_id, "office-spawns-shell");
        assert_eq!(record.reason, rulebox_runtime::Reason::OutOfFuel);
        assert_eq!(
            record.limits.fuel_per_event, 500,
            "the rule's own limit is in its record"
        );
        let first = events
            .iter()
            .position(|e| e.kind() == rulebox_sdk::EventKind::ProcessStart)
            .unwrap();
        assert_eq!(*at, first, "on the first event it runs on");
        // Every other rule detects exactly what it does alone.
        let others: Seen = expected
            .into_iter()
            .filter(|s| s.1 != "office-spawns-shell")
            .collect();
        assert_eq!(sorted(got), sorted(others));
        assert_eq!(pack.active_count(), 7);
        // Replay, with the rule's own limit from the record.
        let outcome =
            rulebox_runtime::replay(&runtime(), thread, record, EXAMPLE_PACK.bytes).unwrap();
        assert!(outcome.reproduced(), "{outcome:?}");
    });
}

#[test]
fn a_batch_with_a_fault_in_its_middle_event_names_that_event_and_goes_on() {
    use crate::common::process;
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        // The faulty rule subscribes to process starts; the batch has one, in the middle.
        let dns = |n: u32| {
            let mut e = Event::new(rulebox_sdk::EventData::DnsQuery(
                rulebox_sdk::DnsQuery::default(),
            ));
            e.pid = n;
            e
        };
        let mut events: Vec<Event<'static>> = (0..5).map(dns).collect();
        events.push(process("C:\\x.exe", "x #all#", ""));
        events.extend((6..11).map(dns));
        events.push(process("C:\\y.exe", "y #all#", ""));
        let data = pack_many_rules::data(20, Some(("null-deref", 10)), false);
        let mut set = crate::pack_faults::with_pack(&rt, thread, &data);
        let mut out = BatchOutcome::default();
        set.process_batch(thread, &events, &mut out);
        assert_eq!(out.len(), events.len());
        for (i, o) in out.iter().enumerate() {
            let o = o.unwrap();
            let quarantined: Vec<_> = o
                .alerts
                .iter()
                .filter_map(|a| match a {
                    rulebox_runtime::Alert::RuleQuarantined(r) => Some(r.clone()),
                    _ => None,
                })
                .collect();
            let small = o
                .detections
                .iter()
                .filter(|d| d.rule.id.starts_with("small-"))
                .count();
            if i == 5 {
                assert_eq!(quarantined.len(), 1);
                assert_eq!(quarantined[0].rule_id, "faulty-null-deref");
                let bytes = quarantined[0].event_bytes().unwrap().unwrap();
                assert_eq!(
                    Event::from_bytes(&bytes).unwrap(),
                    events[5],
                    "the exact event"
                );
                assert_eq!(
                    small, 20,
                    "every small rule, before and after it, saw the event"
                );
            } else {
                assert!(quarantined.is_empty(), "event {i}: {quarantined:?}");
            }
            if i == 11 {
                assert_eq!(small, 20, "the later event was processed");
            }
        }
        assert_eq!(set.stats().events, events.len() as u64);
    });
}

/// `n` small rules of the test engine (with `extra` lines), as rule data.
fn many(n: u32, extra: &str) -> String {
    format!("{}{extra}", pack_many_rules::data(n, None, true))
}

#[test]
fn a_pack_is_updated_by_its_rule_data_without_losing_an_event() {
    use crate::common::process;
    use rulebox_example_artifacts::MANY_RULES;
    use rulebox_runtime::Upsert;
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let compiled = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
        let mut set = RuleSet::new(&rt);
        let v1 = many(100, "");
        let Ok(Upsert::Pack(first)) = set.upsert_with_data(thread, &compiled, v1.as_bytes(), None)
        else {
            panic!("loads")
        };
        assert_eq!((first.added.len(), first.rules.len()), (100, 100));
        let hit = |set: &mut RuleSet, line: &str| -> Vec<String> {
            let o = set
                .process(thread, &process("C:\\p.exe", line, ""))
                .unwrap();
            o.detections
                .iter()
                .map(|d| format!("{} {}", d.rule.id, d.rule.version))
                .collect()
        };
        assert_eq!(hit(&mut set, "#7#"), ["small-7 1.0.0"]);
        // The same data again changes nothing.
        let Ok(Upsert::Pack(same)) = set.upsert_with_data(thread, &compiled, v1.as_bytes(), None)
        else {
            panic!()
        };
        assert!(same.unchanged);
        // Version 2 of one rule, one rule more, one rule fewer: a data load, no compile.
        let v2 = v1
            .replace("small 7\n", "small 7 2.0.0\n")
            .replace("small 99\n", "")
            + "small 100\n";
        let Ok(Upsert::Pack(second)) = set.upsert_with_data(thread, &compiled, v2.as_bytes(), None)
        else {
            panic!("the update loads")
        };
        assert!(!second.unchanged);
        assert_eq!(
            second
                .added
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["small-100"]
        );
        assert_eq!(
            second
                .removed
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["small-99"]
        );
        assert_eq!(second.replaced.len(), 99);
        assert_eq!(
            hit(&mut set, "#7# #99# #100#"),
            ["small-7 2.0.0", "small-100 1.0.0"]
        );
        assert_eq!(set.rules().count(), 100);
        assert_eq!(
            set.packs().count(),
            1,
            "the previous version is kept only as a fallback"
        );
        set.settle();
        assert_eq!(set.packs().count(), 1);
        // One rule removed: the others keep running.
        assert!(set.remove("small-7"));
        assert_eq!(hit(&mut set, "#7# #8#"), ["small-8 1.0.0"]);
        assert!(!set.is_active("small-7"));
        assert_eq!(set.stats().events, 3);
    });
}

#[test]
fn a_pack_rule_replaced_by_a_bad_module_comes_back_on_the_same_event() {
    use crate::common::process;
    use rulebox_example_artifacts::MANY_RULES;
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let compiled = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
        let mut set = RuleSet::new(&rt);
        set.upsert_with_data(thread, &compiled, many(10, "").as_bytes(), None).unwrap();
        // A one-rule module claiming the id `small-3`, which traps on every event.
        let bad = crate::update::wat_rule("small-3", "9", None);
        let bad = rt.compile(&bad, "bad").unwrap();
        assert!(matches!(set.upsert(thread, &bad), Ok(rulebox_runtime::Upsert::Replaced { .. })));
        let outcome = set.process(thread, &process("C:\\p.exe", "#3# #4#", "")).unwrap();
        assert!(
            matches!(&outcome.alerts[..], [rulebox_runtime::Alert::RuleQuarantined(r), rulebox_runtime::Alert::PreviousVersionRestored { restored, .. }]
                if r.rule_version == "9" && restored.version == "1.0.0" && restored.pack.is_some()),
            "{:?}",
            outcome.alerts
        );
        let ids: Vec<_> = outcome.detections.iter().map(|d| d.rule.id.as_str()).collect();
        assert_eq!(ids, ["small-4", "small-3"], "the pack's small-3 saw the event that quarantined its replacement");
        let again = set.process(thread, &process("C:\\p.exe", "#3#", "")).unwrap();
        assert_eq!(again.detections.len(), 1);
        assert!(again.alerts.is_empty());
        assert!(set.is_active("small-3"));
    });
}

#[test]
fn a_pack_prepared_on_another_thread_is_installed_between_two_events() {
    use crate::common::process;
    use rulebox_example_artifacts::MANY_RULES;
    use rulebox_runtime::{Prepared, Upsert};
    let rt = runtime();
    let compiled = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
    let (c2, rt2) = (compiled.clone(), rt.clone());
    let prepared = rt
        .spawn_sandbox_thread("prepare", move |thread| {
            Prepared::load(&rt2, thread, &c2, many(2_500, "").as_bytes(), None)
        })
        .unwrap()
        .join()
        .unwrap()
        .expect("prepares");
    assert_eq!(prepared.rules().len(), 2_500);
    assert_eq!(prepared.pack().unwrap().rules, 2_500);
    let rt3 = rt.clone();
    rt.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt3);
        set.upsert_with_data(thread, &compiled, many(10, "").as_bytes(), None)
            .unwrap();
        assert_eq!(
            set.process(thread, &process("C:\\p.exe", "#2000#", ""))
                .unwrap()
                .detections
                .len(),
            0
        );
        let Ok(Upsert::Pack(update)) = set.upsert_prepared(prepared) else {
            panic!()
        };
        assert_eq!((update.added.len(), update.replaced.len()), (2_490, 10));
        let o = set
            .process(thread, &process("C:\\p.exe", "#2000# #3#", ""))
            .unwrap();
        assert_eq!(o.detections.len(), 2);
    });
}

#[test]
fn the_validator_validates_a_pack_rule_by_rule_as_it_does_one_rule_modules() {
    use rulebox_validate::{CorpusSource, ModuleInput, Options, validate_modules};
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let options = Options {
        generated_per_kind: 16,
        corpus: CorpusSource::Skip("not used by this test".to_owned()),
        tests: vec![workspace.join("example-rules/rules")],
        ..Options::default()
    };
    let input = |name: &str, bytes: &[u8]| ModuleInput {
        source: name.to_owned(),
        bytes: bytes.to_vec(),
        limits: None,
        declared: None,
        data: Vec::new(),
    };
    let modules: Vec<ModuleInput> = ALL
        .iter()
        .filter(|a| a.kind == ArtifactKind::Good)
        .map(|a| input(a.name, a.bytes))
        .collect();
    let alone = validate_modules(modules, &options, &mut |_| {}).unwrap();
    // `rulebox test`: every rule's own cases, each rule of the pack run in the whole pack.
    let files: Vec<_> = rulebox_validate::cases::find_case_files(&options.tests)
        .unwrap()
        .iter()
        .map(|p| rulebox_validate::cases::read_case_file(p).unwrap())
        .collect();
    let total: usize = files.iter().map(|f| f.cases.len()).sum();
    let outcomes = rulebox_validate::run_tests(
        vec![input("example-pack", EXAMPLE_PACK.bytes)],
        files,
        rulebox_runtime::RuntimeConfig::default(),
    )
    .unwrap();
    assert_eq!(outcomes.len(), total);
    let failed: Vec<_> = outcomes.iter().filter(|o| o.problem.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(outcomes.iter().any(|o| o.detections > 0));
    let pack = validate_modules(
        vec![input("example-pack", EXAMPLE_PACK.bytes)],
        &options,
        &mut |_| {},
    )
    .unwrap();
    assert!(
        alone.passed && pack.passed,
        "{:?}",
        pack.rules.iter().map(|r| &r.failures).collect::<Vec<_>>()
    );
    assert_eq!(pack.rules.len(), 8, "one report per rule of the pack");
    for a in &alone.rules {
        let p = pack
            .rules
            .iter()
            .find(|p| p.rule_id == a.rule_id)
            .unwrap_or_else(|| panic!("{:?} has a report", a.rule_id));
        assert!(p.passed, "{:?}: {:?}", p.rule_id, p.failures);
        assert_eq!(
            (p.tests.cases, p.tests.passed),
            (a.tests.cases, a.tests.passed),
            "{:?}",
            p.rule_id
        );
        assert_eq!(p.events, a.events, "{:?} ran on the same events", p.rule_id);
        assert_eq!(
            p.detections, a.detections,
            "{:?} detected the same",
            p.rule_id
        );
        assert_eq!(p.fuel.budget, a.fuel.budget);
        // The worst event (a boundary event at the size cap) costs a module of its own the growth
        // of its input buffer, which a pack pays on its own budget: never more in the pack.
        assert!(
            p.fuel.max <= a.fuel.max + PACK_FUEL_BOUND,
            "{:?}: worst event {} fuel in the pack, {} alone",
            p.rule_id,
            p.fuel.max,
            a.fuel.max
        );
        assert!(
            p.fuel.p50.abs_diff(a.fuel.p50) <= PACK_FUEL_BOUND,
            "{:?}: median {} fuel in the pack, {} alone",
            p.rule_id,
            p.fuel.p50,
            a.fuel.p50
        );
    }
}

/// `RuleSet::activate` keeps what a release still has and removes the rest: with a 1,000-rule pack
/// in both releases and a one-rule module only in the first, the second leaves the pack's rules
/// unchanged (same instance) and removes the module's rule alone.
#[test]
fn activating_a_release_without_a_module_removes_its_rule_and_leaves_a_1000_rule_pack_unchanged() {
    use rulebox_example_artifacts::MANY_RULES;
    use rulebox_runtime::{Content, ContentPack, ContentRule};
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let engine = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
        let single = ALL
            .iter()
            .find(|a| a.kind == ArtifactKind::Good)
            .expect("a good example rule");
        let module = rt.compile(single.bytes, single.name).unwrap();
        let data: std::sync::Arc<[u8]> =
            pack_many_rules::data(1_000, None, true).into_bytes().into();
        let pack =
            || ContentPack::new(engine.clone(), data.clone(), None, Default::default(), None);
        let first = Content::new(Some(1), vec![ContentRule::new(module.clone(), None, None)])
            .with_pack(pack());
        let second = Content::new(Some(2), Vec::new()).with_pack(pack());
        let mut set = RuleSet::new(&rt);
        let one = set.activate(thread, &first);
        assert_eq!(one.added.len(), 1_001);
        let module_rule = one
            .added
            .iter()
            .find(|r| r.pack.is_none())
            .expect("the module's rule")
            .id
            .clone();
        let two = set.activate(thread, &second);
        assert_eq!(two.removed, std::slice::from_ref(&module_rule));
        assert_eq!(two.unchanged.len(), 1_000);
        assert!(two.added.is_empty() && two.replaced.is_empty() && two.refused.is_empty());
        assert_eq!(set.ids().count(), 1_000);
        assert!(!set.is_active(&module_rule));
        assert!(set.is_active("small-0") && set.is_active("small-999"));
    });
}

/// A pack whose new data drops a rule reports that rule as removed by the activation (the rule
/// went with the pack's old instance, inside the upsert, not in `activate`'s own sweep).
#[test]
fn a_rule_dropped_from_a_packs_data_is_reported_removed_by_the_activation() {
    use rulebox_example_artifacts::MANY_RULES;
    use rulebox_runtime::{Content, ContentPack};
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let engine = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
        let pack = |n: u32| {
            let data: std::sync::Arc<[u8]> =
                pack_many_rules::data(n, None, true).into_bytes().into();
            ContentPack::new(engine.clone(), data, None, Default::default(), None)
        };
        let mut set = RuleSet::new(&rt);
        let one = set.activate(
            thread,
            &Content::new(Some(1), Vec::new()).with_pack(pack(3)),
        );
        assert_eq!(one.added.len(), 3);
        let two = set.activate(
            thread,
            &Content::new(Some(2), Vec::new()).with_pack(pack(2)),
        );
        assert_eq!(two.removed, ["small-2".to_owned()]);
        assert_eq!(two.replaced.len(), 2, "{:?}", two.replaced);
        assert!(!set.is_active("small-2") && set.is_active("small-1"));
    });
}

#[test]
fn a_packs_own_fuel_is_counted_per_event_without_its_rules_fuel_and_kept_across_a_renewal() {
    use crate::common::process;
    let own = |set: &RuleSet| {
        let all: Vec<_> = set.pack_stats().map(|(_, s)| s).collect();
        assert_eq!(all.len(), 1, "one pack");
        all[0]
    };
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let rules_fuel = |set: &RuleSet| {
            set.rules()
                .filter(|(info, _, _)| info.id.starts_with("small-"))
                .map(|(_, _, s)| s.total_fuel)
                .sum::<u64>()
        };
        let data = pack_many_rules::data(20, None, false);
        let mut set = crate::pack_faults::with_pack(&rt, thread, &data);
        assert_eq!(own(&set), rulebox_runtime::PackStats::default());
        let mut out = BatchOutcome::default();

        // Same length, one marker apart: every small rule fires on `#all#` and none on the other,
        // so the rules' work differs and the pack's own walk hardly does.
        let quiet = [process("C:\\x.exe", "x #nop#", "")];
        let loud = [process("C:\\x.exe", "x #all#", "")];
        set.process_batch(thread, &quiet, &mut out);
        let (q, q_rules) = (own(&set), rules_fuel(&set));
        assert_eq!(q.events, 1);
        assert!(q.own_fuel > 0 && q.max_own_fuel == q.own_fuel, "{q:?}");
        // The first event also pays for the pack's buffers; from the second on, the same event
        // costs the same fuel, to the instruction.
        set.process_batch(thread, &quiet, &mut out);
        let second = own(&set).own_fuel - q.own_fuel;
        let q_rules = rules_fuel(&set) - q_rules;
        set.process_batch(thread, &quiet, &mut out);
        assert_eq!(own(&set).events, 3);
        assert_eq!(
            own(&set).own_fuel - q.own_fuel - second,
            second,
            "fuel counts instructions: the same event costs the same"
        );
        assert!(second <= q.own_fuel);
        let (before, before_rules) = (own(&set), rules_fuel(&set));
        set.process_batch(thread, &loud, &mut out);
        let detections = out.iter().next().unwrap().unwrap().detections.len();
        assert_eq!(detections, 20, "every small rule fired");
        let loud_own = own(&set).own_fuel - before.own_fuel;
        let loud_rules = rules_fuel(&set) - before_rules;
        assert!(
            loud_rules > q_rules + 4 * loud_own.abs_diff(second),
            "the rules' extra work on the loud event ({loud_rules} against {q_rules}) is not \
             counted as the pack's ({loud_own} against {second})"
        );
    });

    // A fault replaces the instance; the pack's counters carry over.
    let rt = office_shell_at_500_fuel();
    rt.clone().run_sandboxed(move |thread| {
        // The other kinds first, so that the first instance completes events before the fault.
        let (mut events, starts): (Vec<_>, Vec<_>) = demo_events()
            .into_iter()
            .partition(|e| e.kind() != rulebox_sdk::EventKind::ProcessStart);
        events.extend(starts);
        let mut set = RuleSet::new(&rt);
        set.load(thread, EXAMPLE_PACK.bytes, "example-pack")
            .unwrap();
        let union = |k: rulebox_sdk::EventKind| {
            set.rules()
                .any(|(info, _, _)| info.subscriptions.contains(k))
        };
        let first = events
            .iter()
            .position(|e| e.kind() == rulebox_sdk::EventKind::ProcessStart)
            .unwrap();
        let sent_before = events[..first].iter().filter(|e| union(e.kind())).count();
        let sent = events.iter().filter(|e| union(e.kind())).count();
        assert!(
            sent_before > 0,
            "events before the fault, in the first instance"
        );
        for e in &events[..first] {
            set.process(thread, e).unwrap();
        }
        let kept = own(&set);
        assert_eq!(kept.events, sent_before as u64);
        assert_eq!(kept.renewals, 0);
        for e in &events[first..] {
            set.process(thread, e).unwrap();
        }
        let after = own(&set);
        assert_eq!(after.renewals, 1, "{after:?}");
        assert_eq!(
            after.events, sent as u64,
            "every event counted once, those of the replaced instance kept: {after:?}"
        );
        assert!(after.own_fuel > kept.own_fuel && after.max_own_fuel >= kept.max_own_fuel);
    });
}
