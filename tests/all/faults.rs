//! Every fault class of the faulty-content set: the host stays up, that rule alone is quarantined with
//! the right reason, and every other rule keeps detecting on the same and later events, exactly as it
//! would have without the bad rule.

use std::io::BufReader;
use std::sync::Arc;

use rulebox_example_artifacts::{ALL, ArtifactKind, DEMO_EVENTS};
use rulebox_runtime::events::EventReader;
use rulebox_runtime::{
    Alert, QuarantineRecord, Reason, ReplayOutcome, RuleSet, Runtime, SandboxThread,
};
use rulebox_sdk::Event;

use crate::common::{process, runtime, runtime_with};

/// The demo intrusion: events of every kind the good rules watch, attacks and ordinary activity.
pub fn demo_events() -> Vec<Event<'static>> {
    EventReader::new(BufReader::new(DEMO_EVENTS.as_bytes()))
        .filter_map(Result::ok)
        .map(|r| r.event)
        .collect()
}

fn load_good(set: &mut RuleSet, thread: &SandboxThread) {
    for a in ALL.iter().filter(|a| a.kind == ArtifactKind::Good) {
        set.load(thread, a.bytes, a.name)
            .unwrap_or_else(|r| panic!("{} refused: {}", a.name, r.message));
    }
}

/// Detections as comparable `(event index, rule id, title)` triples.
type Seen = Vec<(usize, String, String)>;

fn run_events(
    set: &mut RuleSet,
    thread: &SandboxThread,
    events: &[Event<'static>],
) -> (Seen, Vec<Arc<QuarantineRecord>>, usize) {
    let mut seen = Vec::new();
    let mut records = Vec::new();
    let mut strikes = 0;
    for (i, event) in events.iter().enumerate() {
        let outcome = set.process(thread, event).expect("event within limits");
        for d in outcome.detections {
            seen.push((i, d.rule.id.clone(), d.detection.title.to_string()));
        }
        for alert in outcome.alerts {
            match alert {
                Alert::RuleQuarantined(r) => records.push(r),
                Alert::BudgetStrike { .. } => strikes += 1,
                _ => {}
            }
        }
    }
    (seen, records, strikes)
}

/// The events used against each faulty rule: a process event first (every faulty rule subscribes to
/// process starts), then the whole demo intrusion.
fn fault_events() -> Vec<Event<'static>> {
    let mut events = vec![process(
        "C:\\Windows\\System32\\cmd.exe",
        "cmd /c whoami",
        "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
    )];
    events.extend(demo_events());
    events
}

fn baseline(rt: &Runtime, thread: &SandboxThread, events: &[Event<'static>]) -> Seen {
    let mut set = RuleSet::new(rt);
    load_good(&mut set, thread);
    let (seen, records, _) = run_events(&mut set, thread, events);
    assert!(records.is_empty(), "good rules must not fault: {records:?}");
    seen
}

/// Loads the good rules plus the faulty rule `name`, runs the events, and checks containment.
fn assert_contained(
    rt: Runtime,
    name: &'static str,
    reason: Reason,
    needle: &'static str,
) -> Arc<QuarantineRecord> {
    rt.clone().run_sandboxed(move |thread| {
        let events = fault_events();
        let expected = baseline(&rt, thread, &events);
        assert!(
            expected.len() >= 8,
            "the good rules detect on the demo events: {expected:?}"
        );

        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let bad = ALL
            .iter()
            .find(|a| a.name == name)
            .expect("faulty artifact exists");
        let info = set
            .load(thread, bad.bytes, bad.name)
            .expect("the faulty rule passes load checks");
        let (seen, records, _) = run_events(&mut set, thread, &events);

        assert_eq!(records.len(), 1, "exactly one quarantine: {records:?}");
        let record = records[0].clone();
        assert_eq!(record.rule_id, info.id);
        assert_eq!(record.reason, reason, "{}", record.message);
        assert!(
            record.message.contains(needle),
            "message `{}` should mention `{needle}`",
            record.message
        );
        assert_eq!(set.quarantine_reason(&info.id), Some(reason));
        // The exact triggering event (the first one) is in the record.
        let bytes = record.event_bytes().unwrap().expect("event kept");
        assert_eq!(Event::from_bytes(&bytes).unwrap(), events[0]);
        assert!(record.event_json.is_some());
        // Every other rule saw every event and lost no detection; the bad rule ran exactly once.
        assert_eq!(
            seen, expected,
            "detections of the healthy rules are unchanged"
        );
        assert_eq!(set.stats().events, u64::try_from(events.len()).unwrap());
        assert_eq!(
            set.active_count(),
            ALL.iter().filter(|a| a.kind == ArtifactKind::Good).count()
        );
        let (_, _, bad_stats) = set.rules().find(|(i, _, _)| i.id == info.id).unwrap();
        assert_eq!(
            bad_stats.events, 1,
            "a quarantined rule is never called again"
        );
        record
    })
}

fn assert_replays(rt: Runtime, record: Arc<QuarantineRecord>, name: &'static str) {
    // Through JSON, as `rulebox replay` reads it from disk.
    let json = serde_json::to_string(&*record).unwrap();
    let record: QuarantineRecord = serde_json::from_str(&json).unwrap();
    let module = ALL.iter().find(|a| a.name == name).unwrap().bytes;
    rt.clone().run_sandboxed(move |thread| {
        let outcome = rulebox_runtime::replay(&rt, thread, &record, module).unwrap();
        assert!(
            matches!(outcome, ReplayOutcome::Reproduced(ref f) if f.reason == record.reason),
            "{outcome:?}"
        );
        // A different module is refused.
        let other = ALL
            .iter()
            .find(|a| a.kind == ArtifactKind::Good)
            .unwrap()
            .bytes;
        assert!(rulebox_runtime::replay(&rt, thread, &record, other).is_err());
    });
}

#[test]
fn field_count_read_past_the_end_is_contained() {
    let record = assert_contained(
        runtime(),
        "field-count",
        Reason::OutOfBounds,
        "out of bounds",
    );
    // The guests keep their `name` section, so the backtrace names the function that faulted.
    let backtrace = record.backtrace.as_deref().unwrap_or_default();
    assert!(
        backtrace.contains("FieldCountRule::matches"),
        "the backtrace names the faulting function: {backtrace}"
    );
    assert_replays(runtime(), record, "field-count");
}

#[test]
fn null_pointer_write_is_contained() {
    let record = assert_contained(
        runtime(),
        "null-deref",
        Reason::OutOfBounds,
        "out of bounds",
    );
    assert_replays(runtime(), record, "null-deref");
}

#[test]
fn endless_loop_runs_out_of_fuel() {
    let record = assert_contained(runtime(), "endless-loop", Reason::OutOfFuel, "fuel");
    assert_replays(runtime(), record, "endless-loop");
}

#[test]
fn endless_loop_hits_the_deadline_when_fuel_is_plentiful() {
    let rt = runtime_with(|c| {
        c.limits.fuel_per_event = 100_000_000_000;
        c.limits.deadline_ms = 20;
    });
    assert_contained(rt, "endless-loop", Reason::Deadline, "interrupt");
}

#[test]
fn memory_bomb_is_stopped_at_its_cap() {
    let record = assert_contained(runtime(), "memory-bomb", Reason::MemoryLimit, "cap");
    assert_replays(runtime(), record, "memory-bomb");
}

#[test]
fn unbounded_recursion_is_a_trap_not_an_abort() {
    let record = assert_contained(runtime(), "deep-recursion", Reason::StackOverflow, "stack");
    assert_replays(runtime(), record, "deep-recursion");
}

#[test]
fn panic_is_reported_with_its_message() {
    let record = assert_contained(runtime(), "panics", Reason::GuestPanic, "rule bug");
    assert_replays(runtime(), record, "panics");
}

#[test]
fn garbage_result_is_refused() {
    let record = assert_contained(
        runtime(),
        "garbage-result",
        Reason::MalformedResult,
        "does not decode",
    );
    assert_replays(runtime(), record, "garbage-result");
}

#[test]
fn endless_start_is_refused_at_load() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let bad = ALL.iter().find(|a| a.name == "endless-start").unwrap();
        let record = set.load(thread, bad.bytes, bad.name).unwrap_err();
        assert_eq!(record.reason, Reason::StartTooLong, "{}", record.message);
        let events = fault_events();
        let (seen, records, _) = run_events(&mut set, thread, &events);
        assert!(records.is_empty());
        assert_eq!(seen, baseline(&rt, thread, &events));
    });
}

#[test]
fn the_whole_bad_update_at_once() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = fault_events();
        let expected = baseline(&rt, thread, &events);
        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let mut refused = 0;
        for a in ALL.iter().filter(|a| a.kind == ArtifactKind::Faulty) {
            if set.load(thread, a.bytes, a.name).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 1, "only endless-start is refused at load");
        let (seen, records, _) = run_events(&mut set, thread, &events);
        let faulty = ALL
            .iter()
            .filter(|a| a.kind == ArtifactKind::Faulty)
            .count();
        assert_eq!(
            records.len(),
            faulty - 1,
            "every other faulty rule is quarantined on the first event"
        );
        assert_eq!(seen, expected);
    });
}

#[test]
fn budget_strikes_reset_the_rule_then_quarantine_it() {
    let rt = runtime_with(|c| c.limits.budget_strikes = 3);
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let bad = ALL.iter().find(|a| a.name == "endless-loop").unwrap();
        let info = set.load(thread, bad.bytes, bad.name).unwrap();
        let event = process("C:\\a.exe", "a", "C:\\b.exe");
        for strike in 1..=2 {
            let outcome = set.process(thread, &event).unwrap();
            assert!(matches!(&outcome.alerts[..], [Alert::BudgetStrike { strike: s, allowed: 3, .. }] if *s == strike), "{:?}", outcome.alerts);
            assert!(set.is_active(&info.id), "still active after strike {strike}");
        }
        let outcome = set.process(thread, &event).unwrap();
        assert!(matches!(&outcome.alerts[..], [Alert::RuleQuarantined(r)] if r.reason == Reason::OutOfFuel && r.strikes == 3));
        assert!(!set.is_active(&info.id));
        assert_eq!(set.stats().strikes, 3);
    });
}

#[test]
fn oversized_events_are_refused_and_counted() {
    let rt = runtime_with(|c| c.max_event_bytes = 256);
    rt.clone().run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let big = process("C:\\a.exe", &"A".repeat(1000), "");
        assert!(matches!(
            set.process(thread, &big),
            Err(rulebox_runtime::EventError::TooLarge { .. })
        ));
        assert_eq!(set.stats().events_refused, 1);
        assert_eq!(set.stats().events, 0);
        set.process(thread, &process("C:\\a.exe", "", "")).unwrap();
        assert_eq!(set.stats().events, 1);
    });
}

#[test]
fn events_stuffed_with_fields_cannot_exhaust_the_rules_budgets() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let config = rt.config().clone();
        let mut set = RuleSet::new(&rt);
        load_good(&mut set, thread);
        let field = |i: usize, len: usize| rulebox_sdk::Field {
            name: format!("F{i}").into(),
            value: "x".repeat(len).into(),
        };

        let mut stuffed = process(
            "C:\\Windows\\System32\\cmd.exe",
            "cmd",
            "C:\\Office\\WINWORD.EXE",
        );
        stuffed.extra = (0..=config.max_event_fields).map(|i| field(i, 0)).collect();
        assert!(matches!(
            set.process(thread, &stuffed),
            Err(rulebox_runtime::EventError::TooManyFields { .. })
        ));

        // The largest event allowed: every extra field, and as much text as fits the size cap.
        let mut largest = process(
            "C:\\Windows\\System32\\cmd.exe",
            "cmd",
            "C:\\Office\\WINWORD.EXE",
        );
        // Each extra field costs its 8-byte table entry and its name ("F255") besides its value; the
        // header, body slots and body texts take the rest of the margin (the event ends within 1.2%
        // of the cap).
        let per_field = config.max_event_bytes / config.max_event_fields - 16 - 8;
        largest.extra = (0..config.max_event_fields)
            .map(|i| field(i, per_field))
            .collect();
        let outcome = set
            .process(thread, &largest)
            .expect("the largest allowed event is accepted");
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        assert_eq!(
            outcome.detections.len(),
            1,
            "office-spawns-shell still fires on it"
        );
        for (info, _, stats) in set.rules() {
            if info
                .subscriptions
                .contains(rulebox_sdk::EventKind::ProcessStart)
            {
                assert!(
                    stats.max_fuel < config.limits.fuel_per_event / 4,
                    "{}: {} fuel",
                    info.id,
                    stats.max_fuel
                );
            }
        }
        assert_eq!(set.stats().events_refused, 1);
    });
}

#[test]
fn a_crafted_record_cannot_lift_the_limits_on_replay() {
    let record = assert_contained(runtime(), "endless-loop", Reason::OutOfFuel, "fuel");
    let mut crafted = (*record).clone();
    crafted.limits.fuel_per_event = u64::MAX;
    crafted.limits.deadline_ms = u64::MAX;
    let module = ALL.iter().find(|a| a.name == "endless-loop").unwrap().bytes;
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let err = rulebox_runtime::replay(&rt, thread, &crafted, module).unwrap_err();
        assert!(err.to_string().contains("fuel_per_event"), "{err}");
    });
}
