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
        set.load(thread, a.bytes, a.name).expect("a good rule loads");
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
        let first = pack.load(thread, EXAMPLE_PACK.bytes, "example-pack").unwrap();
        assert_eq!(first.pack.as_ref().unwrap().id, "example-pack");
        assert_eq!(pack.rules().count(), 8);
        assert_eq!(
            sorted(one_by_one(&mut pack, thread, &events)),
            sorted(expected.clone())
        );

        let mut batched = RuleSet::new(&rt);
        batched.load(thread, EXAMPLE_PACK.bytes, "example-pack").unwrap();
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
