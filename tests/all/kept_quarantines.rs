//! A rule quarantined inside a pack stays off after a restart: the new rule set is given the stored
//! record, and only that rule of the pack is kept off, every other one runs.

use rulebox_runtime::{Alert, Reason, RuleSet, RuleState};

use crate::common::{process, runtime};
use crate::wat::Pack;

#[test]
fn a_quarantined_rule_of_a_pack_stays_off_after_a_restart_and_its_pack_runs() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let module = Pack::new(
            "kept-pack",
            &[("faulty", "unreachable"), ("healthy", &Pack::hand_over())],
        )
        .build();
        let event = process("a.exe", "", "");

        let mut first = RuleSet::new(&rt);
        first.load(thread, &module, "kept-pack.wasm").unwrap();
        let outcome = first.process(thread, &event).unwrap();
        let [Alert::RuleQuarantined(record)] = &outcome.alerts[..] else {
            panic!("{:?}", outcome.alerts);
        };
        assert_eq!(record.rule_id, "faulty");
        assert_eq!(record.reason, Reason::Unreachable);
        // What the store keeps of it: id, version, module hash, reason.
        let (id, version, hash) = (
            record.rule_id.clone(),
            record.rule_version.clone(),
            record.content_hash.clone(),
        );

        // The restart: a new set, the same pack, the stored record.
        let mut after = RuleSet::new(&rt);
        after.load(thread, &module, "kept-pack.wasm").unwrap();
        assert!(
            after.keep_quarantined(&id, &version, &hash, Reason::Unreachable),
            "the stored entry matches a loaded rule"
        );
        for _ in 0..3 {
            let outcome = after.process(thread, &event).unwrap();
            assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
            let ids: Vec<&str> = outcome
                .detections
                .iter()
                .map(|d| d.rule.id.as_str())
                .collect();
            assert_eq!(ids, ["healthy"], "the rest of the pack runs");
        }
        let states: Vec<(String, bool)> = after
            .rules()
            .map(|(r, state, stats)| {
                if r.id == "faulty" {
                    assert_eq!(stats.events, 0, "the kept-off rule never ran");
                }
                (
                    r.id.clone(),
                    matches!(state, RuleState::Quarantined(q) if q.reason == Reason::Unreachable),
                )
            })
            .collect();
        assert_eq!(
            states,
            [("faulty".to_owned(), true), ("healthy".to_owned(), false)]
        );

        // A record about other content (another hash) keeps nothing off.
        let mut fresh = RuleSet::new(&rt);
        fresh.load(thread, &module, "kept-pack.wasm").unwrap();
        assert!(!fresh.keep_quarantined(&id, &version, "0000", Reason::Unreachable));
        assert!(!fresh.keep_quarantined(&id, "2", &hash, Reason::Unreachable));
    });
}

#[test]
fn activation_with_the_stored_quarantines_keeps_a_pack_member_off_and_the_pack_on() {
    use rulebox_runtime::content::{QuarantineEntry, QuarantineReason};
    use rulebox_runtime::{Content, ContentRule};
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let module = Pack::new(
            "kept-pack",
            &[("faulty", "unreachable"), ("healthy", &Pack::hand_over())],
        )
        .build();
        let compiled = rt.compile(&module, "release-1:kept-pack").unwrap();
        let stored = [QuarantineEntry {
            rule_id: "faulty".into(),
            rule_version: "1".into(),
            content_hash: compiled.content_hash().to_owned(),
            reason: QuarantineReason::Known(Reason::Unreachable),
            at_unix_ms: 0,
        }];
        let content = Content::new(Some(1), vec![ContentRule::new(compiled, None, None)])
            .with_quarantined(&stored);
        let mut set = RuleSet::new(&rt);
        let report = set.activate(thread, &content);
        assert_eq!(report.added.len(), 2, "{report:?}");
        let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
        assert!(outcome.alerts.is_empty(), "{:?}", outcome.alerts);
        let ids: Vec<&str> = outcome
            .detections
            .iter()
            .map(|d| d.rule.id.as_str())
            .collect();
        assert_eq!(ids, ["healthy"]);
        let faulty = set.rules().find(|(r, _, _)| r.id == "faulty").unwrap();
        assert!(matches!(faulty.1, RuleState::Quarantined(q) if q.reason == Reason::Unreachable));
    });
}
