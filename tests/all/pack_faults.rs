//! Every fault class of the faulty-content set inside a rule pack of 1,000 good rules: exactly that
//! rule is quarantined, with the triggering event in its record; every other rule of the pack saw
//! that event and every later one (the detections are those of the same pack without the faulty
//! rule); and `replay` reproduces the fault.

use std::sync::Arc;

use rulebox_example_artifacts::{ALL, ArtifactKind, HOSTILE_PACK, MANY_RULES};
use rulebox_runtime::{
    Alert, BatchOutcome, QuarantineRecord, Reason, ReplayError, ReplayOutcome, RuleSet, RuleState,
    Runtime, SandboxThread,
};
use rulebox_sdk::Event;

use crate::common::{process, runtime, runtime_with};
use crate::faults::demo_events;

/// Good rules in each pack.
pub const GOOD: u32 = 1_000;
/// Where the faulty rule sits among them.
pub const AT: u32 = 500;

/// Detections as `(event index, rule id, title)`.
pub type Seen = Vec<(usize, String, String)>;

/// What a run saw: the detections, the quarantine records and the strikes raised, in order.
pub struct Run {
    pub seen: Seen,
    pub records: Vec<(usize, Arc<QuarantineRecord>)>,
    pub strikes: usize,
}

/// The events: a process start that every small rule fires on (`#all#`) and every faulty rule
/// faults on, first; then the demo intrusion, with process starts naming a few small rules.
pub fn events() -> Vec<Event<'static>> {
    let mut events = vec![process(
        "C:\\Windows\\System32\\cmd.exe",
        "cmd /c whoami #all#",
        "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
    )];
    events.extend(demo_events());
    events.push(process("C:\\a.exe", "a #3# #499# #500# #501# #999#", ""));
    events.push(process("C:\\b.exe", "b #all#", ""));
    events
}

/// Runs `events` through `set` in batches of `batch`.
pub fn run(
    set: &mut RuleSet,
    thread: &SandboxThread,
    events: &[Event<'static>],
    batch: usize,
) -> Run {
    let mut run = Run {
        seen: Vec::new(),
        records: Vec::new(),
        strikes: 0,
    };
    let mut out = BatchOutcome::default();
    for (c, chunk) in events.chunks(batch).enumerate() {
        set.process_batch(thread, chunk, &mut out);
        for (j, outcome) in out.iter().enumerate() {
            let i = c * batch + j;
            let outcome = outcome.expect("within limits");
            for d in &outcome.detections {
                run.seen
                    .push((i, d.rule.id.clone(), d.detection.title.to_string()));
            }
            for alert in &outcome.alerts {
                match alert {
                    Alert::RuleQuarantined(r) => run.records.push((i, r.clone())),
                    Alert::BudgetStrike { .. } | Alert::PackStrike { .. } => run.strikes += 1,
                    _ => {}
                }
            }
        }
    }
    run
}

/// The good example rules, one per module (so that the packs never run alone).
pub fn load_good(set: &mut RuleSet, thread: &SandboxThread) {
    for a in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
        set.load(thread, a.bytes, a.name)
            .expect("a good rule loads");
    }
}

/// A set of the good example rules and the test engine with `data`.
pub fn with_pack(rt: &Runtime, thread: &SandboxThread, data: &str) -> RuleSet {
    let mut set = RuleSet::new(rt);
    load_good(&mut set, thread);
    let compiled = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
    set.add_module(thread, &compiled, data.as_bytes(), None)
        .unwrap_or_else(|r| panic!("the pack loads: {}", r.message));
    set
}

/// Loads 1,000 good rules with the faulty rule `faulty` among them, runs the events (in batches of
/// `batch`), and checks that it alone was quarantined, on the first event, and that nothing else
/// changed. Returns the record and the pack's rule data.
fn assert_contained_in_pack(
    rt: Runtime,
    faulty: &'static str,
    reason: Reason,
    needle: &'static str,
    batch: usize,
) -> (Arc<QuarantineRecord>, String) {
    rt.clone().run_sandboxed(move |thread| {
        let events = events();
        let clean = pack_many_rules::data(GOOD, None, false);
        let expected = run(&mut with_pack(&rt, thread, &clean), thread, &events, batch);
        assert!(expected.records.is_empty());
        let small_hits = expected
            .seen
            .iter()
            .filter(|s| s.1.starts_with("small-"))
            .count();
        assert!(small_hits >= 2 * GOOD as usize, "{small_hits}");

        let data = pack_many_rules::data(GOOD, Some((faulty, AT)), false);
        let mut set = with_pack(&rt, thread, &data);
        let id = format!("faulty-{faulty}");
        assert!(set.is_active(&id));
        let got = run(&mut set, thread, &events, batch);

        assert_eq!(
            got.records.len(),
            1,
            "exactly one quarantine: {:?}",
            got.records
        );
        let (at, record) = got.records[0].clone();
        assert_eq!(at, 0, "the fault names the first event");
        assert_eq!(record.rule_id, id);
        assert_eq!(record.reason, reason, "{}", record.message);
        assert!(
            record.message.contains(needle),
            "message `{}` should mention `{needle}`",
            record.message
        );
        let pack = record
            .pack
            .as_ref()
            .expect("a pack rule's record names its pack");
        assert_eq!(
            (pack.id.as_str(), pack.rule_index),
            ("many-rules", Some(AT))
        );
        assert_eq!(pack.rules, GOOD + 1);
        let bytes = record.event_bytes().unwrap().expect("event kept");
        assert_eq!(Event::from_bytes(&bytes).unwrap(), events[0]);
        assert_eq!(set.quarantine_reason(&id), Some(reason));
        // Every other rule saw every event, the faulting one included, and lost no detection.
        assert_eq!(
            got.seen, expected.seen,
            "detections of the healthy rules are unchanged"
        );
        assert_eq!(set.stats().events, events.len() as u64);
        assert_eq!(set.active_count(), 8 + GOOD as usize);
        let processes = events
            .iter()
            .filter(|e| e.kind() == rulebox_sdk::EventKind::ProcessStart)
            .count() as u64;
        for (info, state, stats) in set.rules() {
            if info.id == id {
                assert_eq!(stats.events, 1, "a quarantined rule is never called again");
                assert!(matches!(state, RuleState::Quarantined(_)));
            } else if info.id.starts_with("small-") {
                assert_eq!(
                    stats.events, processes,
                    "{} saw every process start",
                    info.id
                );
            }
        }
        (record, data)
    })
}

/// Replays `record` (through JSON, as `rulebox replay` reads it) against the test engine with
/// `data`: the same fault; and refuses other data.
fn assert_replays(rt: Runtime, record: Arc<QuarantineRecord>, data: String) {
    let json = serde_json::to_string(&*record).unwrap();
    let record: QuarantineRecord = serde_json::from_str(&json).unwrap();
    rt.clone().run_sandboxed(move |thread| {
        let outcome = rulebox_runtime::replay_with_data(
            &rt,
            thread,
            &record,
            MANY_RULES.bytes,
            data.as_bytes(),
        )
        .unwrap();
        assert!(
            matches!(outcome, ReplayOutcome::Reproduced(ref f) if f.reason == record.reason),
            "{outcome:?}"
        );
        let other =
            rulebox_runtime::replay_with_data(&rt, thread, &record, MANY_RULES.bytes, b"small 1");
        assert!(
            matches!(other, Err(ReplayError::DataMismatch { .. })),
            "{other:?}"
        );
    });
}

#[test]
fn field_count_read_past_the_end_is_contained_in_a_pack() {
    let (record, data) = assert_contained_in_pack(
        runtime(),
        "field-count",
        Reason::OutOfBounds,
        "out of bounds",
        64,
    );
    let backtrace = record.backtrace.as_deref().unwrap_or_default();
    assert!(backtrace.contains("FieldCountRule::matches"), "{backtrace}");
    assert_replays(runtime(), record, data);
}

#[test]
fn null_pointer_write_is_contained_in_a_pack() {
    let (record, data) = assert_contained_in_pack(
        runtime(),
        "null-deref",
        Reason::OutOfBounds,
        "out of bounds",
        64,
    );
    assert_replays(runtime(), record, data);
}

#[test]
fn endless_loop_runs_out_of_its_own_fuel_in_a_pack() {
    let (record, data) =
        assert_contained_in_pack(runtime(), "endless-loop", Reason::OutOfFuel, "fuel", 64);
    assert_eq!(
        record.limits.fuel_per_event,
        rulebox_runtime::Limits::default().fuel_per_event
    );
    assert_replays(runtime(), record, data);
}

#[test]
fn endless_loop_hits_its_own_deadline_in_a_pack_when_its_fuel_is_plentiful() {
    // The rule's own limits: fuel it cannot use up in time, a short deadline; the other rules keep
    // the defaults (so that a busy machine cannot push a healthy one past a 20 ms deadline).
    let rt = runtime_with(|c| {
        c.rules.insert(
            "faulty-endless-loop".into(),
            rulebox_runtime::Limits {
                fuel_per_event: 100_000_000_000,
                deadline_ms: 20,
                ..Default::default()
            },
        );
    });
    let (record, _) =
        assert_contained_in_pack(rt, "endless-loop", Reason::Deadline, "interrupt", 64);
    assert_eq!(
        record.limits.deadline_ms, 20,
        "the rule's own limits are in its record"
    );
}

#[test]
fn memory_bomb_is_stopped_at_the_packs_cap() {
    let (record, data) =
        assert_contained_in_pack(runtime(), "memory-bomb", Reason::MemoryLimit, "cap", 64);
    assert_replays(runtime(), record, data);
}

#[test]
fn unbounded_recursion_in_a_pack_is_a_trap_not_an_abort() {
    let (record, data) = assert_contained_in_pack(
        runtime(),
        "deep-recursion",
        Reason::StackOverflow,
        "stack",
        64,
    );
    assert_replays(runtime(), record, data);
}

#[test]
fn panic_in_a_pack_is_reported_with_its_message() {
    let (record, data) =
        assert_contained_in_pack(runtime(), "panics", Reason::GuestPanic, "rule bug", 64);
    assert_replays(runtime(), record, data);
}

#[test]
fn a_fault_in_a_pack_is_contained_one_event_at_a_time_too() {
    assert_contained_in_pack(runtime(), "panics", Reason::GuestPanic, "rule bug", 1);
}

#[test]
fn garbage_result_in_a_pack_is_refused() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = events();
        let compiled = rt.compile(HOSTILE_PACK.bytes, "hostile-pack").unwrap();
        let load = |data: &str| {
            let mut set = RuleSet::new(&rt);
            load_good(&mut set, thread);
            set.add_module(thread, &compiled, data.as_bytes(), None)
                .unwrap_or_else(|r| panic!("{}", r.message));
            set
        };
        let n = GOOD + 1;
        let expected = run(&mut load(&format!("rules {n}")), thread, &events, 64);
        let data = format!("rules {n}\ngarbage {AT}\n");
        let mut set = load(&data);
        let got = run(&mut set, thread, &events, 64);
        assert_eq!(got.records.len(), 1, "{:?}", got.records);
        let (at, record) = &got.records[0];
        assert_eq!(*at, 0);
        assert_eq!(record.rule_id, "garbage-result");
        assert_eq!(record.reason, Reason::MalformedResult, "{}", record.message);
        assert!(
            record.message.contains("does not decode"),
            "{}",
            record.message
        );
        assert_eq!(record.pack.as_ref().unwrap().rule_index, Some(AT));
        // The good rule at that index in the clean pack aside, the detections are the same.
        let good_at = format!("good-{AT}");
        let expected: Seen = expected
            .seen
            .into_iter()
            .filter(|s| s.1 != good_at)
            .collect();
        assert_eq!(got.seen, expected);
        assert!(got.seen.iter().filter(|s| s.1.starts_with("good-")).count() >= 2 * GOOD as usize);
        let outcome = rulebox_runtime::replay_with_data(
            &rt,
            thread,
            record,
            HOSTILE_PACK.bytes,
            data.as_bytes(),
        )
        .unwrap();
        assert!(outcome.reproduced(), "{outcome:?}");
    });
}

#[test]
fn a_pack_whose_data_never_finishes_loading_is_refused_and_the_rest_runs() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let compiled = rt.compile(MANY_RULES.bytes, "many-rules").unwrap();
        let data = format!(
            "{}loads-forever\n",
            pack_many_rules::data(GOOD, None, false)
        );
        let record = set
            .add_module(thread, &compiled, data.as_bytes(), None)
            .unwrap_err();
        assert_eq!(record.reason, Reason::StartTooLong, "{}", record.message);
        let pack = record
            .pack
            .as_ref()
            .expect("the record says a pack was refused");
        assert_eq!(pack.rule_index, None);
        assert_eq!(set.rules().count(), 8, "the set is unchanged");
        let events = events();
        let got = run(&mut set, thread, &events, 64);
        assert!(got.records.is_empty());
        assert!(got.seen.len() >= 8);
        // Replay reproduces the refusal.
        let outcome = rulebox_runtime::replay_with_data(
            &rt,
            thread,
            &record,
            MANY_RULES.bytes,
            data.as_bytes(),
        )
        .unwrap();
        assert!(outcome.reproduced(), "{outcome:?}");
    });
}

#[test]
fn every_faulty_rule_in_one_pack_at_once() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = events();
        let clean = pack_many_rules::data(GOOD, None, false);
        let expected = run(&mut with_pack(&rt, thread, &clean), thread, &events, 64);
        let faulty = [
            "deep-recursion",
            "endless-loop",
            "field-count",
            "memory-bomb",
            "null-deref",
            "panics",
        ];
        let mut data = clean.clone();
        for (i, f) in faulty.iter().enumerate() {
            // Spread among the good rules: before, between and after them.
            let line = format!("faulty {f}\n");
            let at = data
                .match_indices("small ")
                .nth(i * 199)
                .map_or(data.len(), |(at, _)| at);
            data.insert_str(at, &line);
        }
        let mut set = with_pack(&rt, thread, &data);
        let got = run(&mut set, thread, &events, 64);
        let mut quarantined: Vec<_> = got
            .records
            .iter()
            .map(|(at, r)| (*at, r.rule_id.clone()))
            .collect();
        quarantined.sort();
        let mut want: Vec<_> = faulty.iter().map(|f| (0, format!("faulty-{f}"))).collect();
        want.sort();
        assert_eq!(
            quarantined, want,
            "every faulty rule is quarantined on the first event"
        );
        assert_eq!(got.seen, expected.seen);
        assert_eq!(set.active_count(), 8 + GOOD as usize);
    });
}
