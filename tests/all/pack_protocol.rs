//! A rule pack that breaks ABI 3's calling sequence (events or rules out of order or out of range, a
//! rule ended that never began, a call returning with a rule open, a bad return value, a fault of
//! its own code between rules) is stopped as a whole, with one record naming the pack and the
//! exact event; every other module keeps running. A bad result pointer is the open rule's fault
//! alone.

use rulebox_example_artifacts::HOSTILE_PACK;
use rulebox_runtime::{
    Alert, BatchOutcome, LoadError, LoadedPack, LoadedRule, Reason, RuleSet, RuleState, Runtime,
    SandboxThread,
};
use rulebox_sdk::Event;

use crate::common::{process, runtime, runtime_with};
use crate::pack_faults::{load_good, run};

const RULES: u32 = 5;

fn hostile(rt: &Runtime, thread: &SandboxThread, data: &str) -> RuleSet {
    let mut set = RuleSet::new(rt);
    load_good(&mut set, thread);
    let compiled = rt.compile(HOSTILE_PACK.bytes, "hostile-pack").unwrap();
    set.add_module(thread, &compiled, data.as_bytes(), None)
        .unwrap_or_else(|r| panic!("{}", r.message));
    set
}

/// Normal events, then one with `word` in its command line, then normal ones again.
fn events_with(word: &str) -> Vec<Event<'static>> {
    let ok = |n: usize| process(&format!("C:\\{n}.exe"), "x #all#", "");
    let mut events: Vec<_> = (0..3).map(ok).collect();
    events.push(process("C:\\bad.exe", &format!("x #all# {word}"), ""));
    events.extend((4..7).map(ok));
    events.extend(crate::faults::demo_events());
    events
}

/// Sends the events with `word` at index 3 through the hostile pack and the good example rules, in
/// one batch: the pack stops there with one record about itself; its rules ran on the events
/// before, none after; the good rules saw every event.
fn assert_pack_stops(rt: Runtime, word: &'static str, reason: Reason, needle: &'static str) {
    rt.clone().run_sandboxed(move |thread| {
        let events = events_with(word);
        let mut set = hostile(&rt, thread, &format!("rules {RULES}"));
        let got = run(&mut set, thread, &events, events.len());
        assert_eq!(got.records.len(), 1, "{:?}", got.records);
        let (at, record) = &got.records[0];
        assert_eq!(*at, 3, "the record names the event");
        assert_eq!(record.reason, reason, "{}", record.message);
        assert!(
            record.message.contains(needle),
            "`{}` should mention `{needle}`",
            record.message
        );
        assert!(
            record.message.contains("hostile-pack"),
            "{}",
            record.message
        );
        assert_eq!(record.rule_id, "", "a record about the pack, not a rule");
        let pack = record.pack.as_ref().unwrap();
        assert_eq!(
            (pack.id.as_str(), pack.rule_index, pack.rules),
            ("hostile-pack", None, RULES)
        );
        let bytes = record.event_bytes().unwrap().unwrap();
        assert_eq!(Event::from_bytes(&bytes).unwrap(), events[3]);
        for i in 0..RULES {
            let id = format!("good-{i}");
            assert_eq!(set.quarantine_reason(&id), Some(reason), "{id}");
        }
        let by_pack = |from: usize, to: usize| {
            got.seen
                .iter()
                .filter(|s| s.1.starts_with("good-") && (from..to).contains(&s.0))
                .count()
        };
        assert_eq!(
            by_pack(0, 3),
            3 * RULES as usize,
            "its rules ran before the fault"
        );
        assert_eq!(by_pack(4, events.len()), 0, "and never after");
        assert_eq!(set.active_count(), 8, "the good example rules keep running");
        assert!(
            got.seen
                .iter()
                .any(|s| s.0 > 3 && !s.1.starts_with("good-")),
            "they saw later events"
        );
        // The record replays.
        let outcome = rulebox_runtime::replay_with_data(
            &rt,
            thread,
            record,
            HOSTILE_PACK.bytes,
            format!("rules {RULES}").as_bytes(),
        )
        .unwrap();
        assert!(outcome.reproduced(), "{outcome:?}");
    });
}

#[test]
fn an_event_begun_twice_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@event-twice@",
        Reason::PackProtocol,
        "increasing order",
    );
}

#[test]
fn an_event_out_of_range_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@event-out-of-range@",
        Reason::PackProtocol,
        "out of range",
    );
}

#[test]
fn rules_out_of_order_stop_the_pack() {
    assert_pack_stops(
        runtime(),
        "@rules-backwards@",
        Reason::PackProtocol,
        "increasing order",
    );
}

#[test]
fn a_rule_out_of_range_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@rule-out-of-range@",
        Reason::PackProtocol,
        "out of range",
    );
}

#[test]
fn rule_end_without_rule_begin_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@end-without-begin@",
        Reason::PackProtocol,
        "no rule open",
    );
}

#[test]
fn rule_end_twice_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@end-twice@",
        Reason::PackProtocol,
        "no rule open",
    );
}

#[test]
fn a_bad_return_value_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@bad-return@",
        Reason::PackProtocol,
        "returned 0x7",
    );
}

#[test]
fn a_trap_in_the_packs_own_code_stops_the_pack() {
    assert_pack_stops(
        runtime(),
        "@trap-outside@",
        Reason::Unreachable,
        "unreachable",
    );
}

#[test]
fn an_endless_loop_in_the_packs_own_code_uses_the_packs_budget() {
    assert_pack_stops(runtime(), "@spin-outside@", Reason::OutOfFuel, "fuel");
}

#[test]
fn a_pack_strike_loses_only_the_rules_of_that_event_and_says_so() {
    let rt = runtime_with(|c| {
        c.rules.insert(
            "hostile-pack".into(),
            rulebox_runtime::Limits {
                budget_strikes: 3,
                ..Default::default()
            },
        );
    });
    rt.clone().run_sandboxed(move |thread| {
        let events = events_with("@spin-outside@");
        let mut set = hostile(&rt, thread, &format!("rules {RULES}"));
        let mut out = BatchOutcome::default();
        set.process_batch(thread, &events, &mut out);
        let outcome = out.get(3).unwrap().unwrap();
        assert!(
            matches!(&outcome.alerts[..], [Alert::PackStrike { pack, strike: 1, allowed: 3, rules_missed, fault }]
                if pack.id == "hostile-pack" && *rules_missed == RULES && fault.reason == Reason::OutOfFuel),
            "{:?}",
            outcome.alerts
        );
        assert!(outcome.detections.iter().all(|d| !d.rule.id.starts_with("good-")));
        // The pack went on with the next event, every one of its rules.
        for i in [4, 5, 6] {
            let o = out.get(i).unwrap().unwrap();
            assert_eq!(o.detections.iter().filter(|d| d.rule.id.starts_with("good-")).count(), RULES as usize, "event {i}");
        }
        assert_eq!(set.stats().pack_strikes, 1);
        assert_eq!(set.stats().rules_missed, u64::from(RULES));
        assert_eq!(set.active_count(), 8 + RULES as usize);
    });
}

#[test]
fn a_bad_result_pointer_is_the_open_rules_fault_alone() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = events_with("");
        let mut set = hostile(&rt, thread, &format!("rules {RULES}\nbad-pointer 2\n"));
        let got = run(&mut set, thread, &events, 4);
        assert_eq!(got.records.len(), 1, "{:?}", got.records);
        let (at, record) = &got.records[0];
        assert_eq!((*at, record.rule_id.as_str()), (0, "bad-pointer"));
        assert_eq!(record.reason, Reason::MalformedResult);
        assert!(record.message.contains("outside"), "{}", record.message);
        assert_eq!(record.pack.as_ref().unwrap().rule_index, Some(2));
        // The four good rules of the pack fired on every one of the seven marked events.
        let good = got.seen.iter().filter(|s| s.1.starts_with("good-")).count();
        assert_eq!(good, 4 * 7);
        assert!(matches!(
            set.rules().find(|(i, _, _)| i.id == "good-3").unwrap().1,
            RuleState::Active
        ));
    });
}

#[test]
fn pack_metadata_is_checked_and_refused_data_is_named() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let compiled = rt.compile(HOSTILE_PACK.bytes, "hostile-pack").unwrap();
        assert!(compiled.is_pack());
        assert_eq!(compiled.abi_version(), 3);
        let err =
            LoadedPack::load(&rt, thread, &compiled, b"rules 3\nduplicate-ids", None).unwrap_err();
        assert!(
            matches!(&err, LoadError::BadMetadata(m) if m.contains("appears twice")),
            "{err}"
        );
        let err = LoadedPack::load(&rt, thread, &compiled, b"not a script", None).unwrap_err();
        assert!(
            matches!(&err, LoadError::BadRuleData(m) if m.contains("not a hostile-pack script")),
            "{err}"
        );
        assert_eq!(err.reason(), Reason::BadRuleData);
        let err = LoadedPack::load(&rt, thread, &compiled, b"rules 0", None).unwrap_err();
        assert!(
            matches!(&err, LoadError::BadMetadata(m) if m.contains("no rules")),
            "{err}"
        );
        // A pack is not a one-rule module, nor the other way round.
        let err = LoadedRule::load(&rt, thread, &compiled).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::WrongAbi {
                    found: 3,
                    expected: 2,
                    ..
                }
            ),
            "{err}"
        );
        let single = rt
            .compile(rulebox_example_artifacts::OFFICE_SHELL.bytes, "office")
            .unwrap();
        let err = LoadedPack::load(&rt, thread, &single, b"", None).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::WrongAbi {
                    found: 2,
                    expected: 3,
                    ..
                }
            ),
            "{err}"
        );
        let mut set = RuleSet::new(&rt);
        let record = set.add_module(thread, &single, b"data", None).unwrap_err();
        assert_eq!(record.reason, Reason::BadRuleData);
        // A refused pack leaves a record saying so.
        let record = set
            .add_module(thread, &compiled, b"rules 2\nduplicate-ids", None)
            .unwrap_err();
        assert_eq!(record.reason, Reason::BadMetadata);
        assert!(record.pack.is_some());
        assert_eq!(set.records().len(), 2);
    });
}
