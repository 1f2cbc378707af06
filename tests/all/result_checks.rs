//! A result is `0` (no detections), `u64::MAX` (the event did not decode) or a real result: a
//! zero-length result with any other pointer is refused as `malformed_result`, in a one-rule
//! module (ABI 2) and in a rule of a pack (ABI 3), never taken for "no detections".

use rulebox_runtime::{Alert, BatchOutcome, Reason, RuleSet};
use rulebox_sdk::abi::pack;

use crate::common::{process, runtime};
use crate::wat::{Pack, Rule};

#[test]
fn a_zero_length_result_with_a_garbage_pointer_is_malformed_not_no_detections() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        for ptr in [0xdead_beef_u32, 100, u32::MAX] {
            let mut set = RuleSet::new(&rt);
            set.load(thread, &Rule::firing("good").build(), "good.wat")
                .unwrap();
            let empty = pack(ptr, 0).cast_signed();
            let bad = Rule::new("empty-garbage", &format!("i64.const {empty}")).build();
            set.load(thread, &bad, "empty-garbage.wat").unwrap();
            let outcome = set.process(thread, &process("a.exe", "", "")).unwrap();
            let [Alert::RuleQuarantined(record)] = &outcome.alerts[..] else {
                panic!("{ptr:#x}: {:?}", outcome.alerts);
            };
            assert_eq!(record.reason, Reason::MalformedResult, "{ptr:#x}");
            assert_eq!(record.rule_id, "empty-garbage");
            assert!(
                record.message.contains("empty but not 0"),
                "{}",
                record.message
            );
            assert_eq!(outcome.detections.len(), 1, "the good rule still reported");
            assert!(set.is_active("good"));
        }
    });
}

#[test]
fn a_zero_length_rule_end_with_a_garbage_pointer_quarantines_that_rule_of_the_pack() {
    let rt = runtime();
    rt.clone().run_sandboxed(move |thread| {
        let hand_over = Pack::hand_over();
        let module = Pack::new(
            "p",
            &[
                ("before", &hand_over),
                (
                    "empty-garbage",
                    "(call $rule_end (i32.const 0xdeadbeef) (i32.const 0))",
                ),
                ("after", &hand_over),
            ],
        )
        .build();
        let compiled = rt.compile(&module, "p.wat").unwrap();
        let mut set = RuleSet::new(&rt);
        set.add_module(thread, &compiled, &[], None).unwrap();
        let events = vec![process("a.exe", "", ""), process("b.exe", "", "")];
        let mut out = BatchOutcome::default();
        set.process_batch(thread, &events, &mut out);
        let first = out.get(0).unwrap().unwrap();
        let [Alert::RuleQuarantined(record)] = &first.alerts[..] else {
            panic!("{:?}", first.alerts);
        };
        assert_eq!(
            (record.reason, record.rule_id.as_str()),
            (Reason::MalformedResult, "empty-garbage")
        );
        assert_eq!(record.pack.as_ref().unwrap().rule_index, Some(1));
        let rules = |o: &rulebox_runtime::Outcome| {
            o.detections
                .iter()
                .map(|d| d.rule.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rules(first),
            ["before", "after"],
            "the other rules saw the event"
        );
        let second = out.get(1).unwrap().unwrap();
        assert!(second.alerts.is_empty(), "{:?}", second.alerts);
        assert_eq!(rules(second), ["before", "after"]);
        assert_eq!(
            set.quarantine_reason("empty-garbage"),
            Some(Reason::MalformedResult)
        );
        assert!(set.is_active("before") && set.is_active("after"));
    });
}
