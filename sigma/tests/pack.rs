//! Compiled Sigma rules as the rule data of one engine module: loading, a one-rule update as a
//! data load (the engine is compiled once), and detections before and after it.

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{Outcome, RuleSet, Runtime, RuntimeConfig, Upsert};
use rulebox_sdk::{Event, EventData, ProcessStart};

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

fn ids(outcome: &Outcome) -> Vec<String> {
    outcome
        .detections
        .iter()
        .map(|d| d.rule.id.clone())
        .collect()
}

const A: &str = "0b4e1d2c-0000-4000-8000-00000000000a";
const B: &str = "0b4e1d2c-0000-4000-8000-00000000000b";

#[test]
fn updating_one_sigma_rule_of_a_pack_is_a_data_load_into_the_engine_compiled_once() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let engine = runtime.compile(SIGMA_EVAL.bytes, "sigma.wasm").unwrap();
    let before = rulebox_sigma::rule_data(&[
        rule(A, "2024-01-01", "whoami.exe"),
        rule(B, "2024-01-01", "notepad.exe"),
    ])
    .unwrap();
    // Rule B moves to calc.exe; rule A's record is the same bytes.
    let after = rulebox_sigma::rule_data(&[
        rule(A, "2024-01-01", "whoami.exe"),
        rule(B, "2024-02-02", "calc.exe"),
    ])
    .unwrap();
    let a = rulebox_sigma::rule_record(&rule(A, "2024-01-01", "whoami.exe")).unwrap();
    assert!(
        before.starts_with(&a) && after.starts_with(&a),
        "a rule's record does not depend on the others"
    );
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        let rules = set.add_module(thread, &engine, &before, None).unwrap();
        let loaded: Vec<_> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(loaded, [A, B]);
        let mut out = Outcome::default();
        set.process_into(thread, &process("C:\\x\\notepad.exe"), &mut out)
            .unwrap();
        assert_eq!(ids(&out), [B]);

        let Upsert::Pack(pack) = set.upsert_with_data(thread, &engine, &after, None).unwrap()
        else {
            panic!("a pack upsert");
        };
        assert!(pack.added.is_empty() && pack.removed.is_empty());
        let replaced: Vec<_> = pack.replaced.iter().map(|(n, _)| n.id.as_str()).collect();
        assert_eq!(replaced, [A, B]);
        set.process_into(thread, &process("C:\\x\\notepad.exe"), &mut out)
            .unwrap();
        assert!(ids(&out).is_empty(), "the old version of B is gone");
        set.process_into(thread, &process("C:\\x\\calc.exe"), &mut out)
            .unwrap();
        assert_eq!(ids(&out), [B]);
        set.process_into(thread, &process("C:\\x\\whoami.exe"), &mut out)
            .unwrap();
        assert_eq!(ids(&out), [A]);
        assert!(set.records().is_empty(), "nothing was refused");
    });
}
