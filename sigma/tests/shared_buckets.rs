//! A rule with more pattern groups on one field than its start filter has buckets (8), one of them
//! found in the first bytes of a long command line and again every few bytes after: once found it
//! must stop costing the scan. The shape of SigmaHQ's NTDS-exfiltration rule: nine `contains|all`
//! texts on the command line, `powershell` among them (with `ntds.dit`), over the validator's
//! PowerShell filler at the event cap.
//!
//! The start filter stops its skip for a bucket while any of that bucket's groups still matters;
//! had `powershell` shared its bucket with a group that never matches, every later `powershell` of
//! the text would stop the skip, and be stepped through, for nothing (about half the rule's fuel
//! at the cap). The compiler lets groups share a bucket first where their patterns begin alike
//! (`ntds.dit` and `NTDSgrab.ps1`), so `powershell` has one of its own.

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{RuleSet, RuleState, Runtime, RuntimeConfig};
use rulebox_sdk::{Detections, Event, EventData, EventView, ProcessStart};
use rulebox_sigma::{Evaluator, Program};

/// Nine groups on `CommandLine`, `powershell` the last.
const RULE: &str = r#"
title: Nine groups on the command line
id: 00000000-0000-4000-8000-00000000b001
logsource: { category: process_creation, product: windows }
detection:
    selection_tool:
        - CommandLine|contains|all: ['ntds.dit', 'system.hiv']
        - CommandLine|contains: 'NTDSgrab.ps1'
    selection_oneliner_1:
        CommandLine|contains|all: ['ac i ntds', 'create full']
    selection_oneliner_2:
        CommandLine|contains|all: ['/c copy ', '\windows\ntds\ntds.dit']
    selection_oneliner_3:
        CommandLine|contains|all: ['activate instance ntds', 'create full']
    selection_powershell:
        CommandLine|contains|all: ['powershell', 'ntds.dit']
    condition: 1 of selection*
level: high
"#;

/// The validator's filler (`rulebox_validate::events`), which has `powershell` every 83 bytes.
const FILLER: &str =
    "powershell.exe -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA C:\\Windows\\Temp\\a.exe ";

/// Far under the validator's half: the filler costs such a rule about 28% of its fuel once
/// `powershell` stops costing after it is found, about 50% when it does not.
const MAX_SHARE: f64 = 0.4;

fn process_start(command_line: String) -> Event<'static> {
    let mut p = ProcessStart::default();
    p.command_line = command_line.into();
    Event::new(EventData::ProcessStart(p))
}

#[test]
fn a_pattern_found_early_stops_costing_when_its_rule_has_more_groups_than_buckets() {
    let program: Program<'static> = rulebox_sigma::compile(RULE).expect("the rule compiles");
    // The command line's search automaton: nine patterns, `powershell` alone in its bucket.
    let scan = program
        .scans
        .iter()
        .find(|s| s.dfa.patterns == 9)
        .expect("one automaton answers the nine texts");
    assert!(
        scan.dfa
            .groups
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 8,
        "more groups than buckets: {:?}",
        scan.dfa.groups
    );
    let mut per_bucket = [0usize; 8];
    for &b in &scan.dfa.buckets {
        per_bucket[usize::from(b)] += 1;
    }
    let alone = per_bucket.iter().filter(|&&n| n == 1).count();
    assert!(
        alone >= 7,
        "groups that begin differently keep buckets of their own: {:?}",
        scan.dfa.buckets
    );

    let config = RuntimeConfig::default();
    let budget = config.limits.fuel_per_event;
    let len = config.max_event_bytes - 4096;
    let mut line = String::with_capacity(len);
    while line.len() + FILLER.len() <= len {
        line.push_str(FILLER);
    }
    let with_match = format!("{line}ntds.dit");
    let events = [process_start(line), process_start(with_match)];

    let mut eval = Evaluator::new(program.clone()).expect("the program decodes");
    let native: Vec<bool> = events
        .iter()
        .map(|e| {
            let bytes = e.to_bytes().expect("the event encodes");
            let view = EventView::new(&bytes).expect("the event reads");
            eval.detect(&view, &mut Detections::new("n", rulebox_sdk::Severity::Low))
        })
        .collect();
    assert_eq!(native, [false, true], "`ntds.dit` after the filler fires");

    let module = rulebox_sigma::build_module(&program, SIGMA_EVAL.bytes).expect("it embeds");
    let runtime = Runtime::new(config).expect("runtime");
    let rt = runtime.clone();
    let sandboxed: Vec<(bool, u64, bool)> = runtime.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.load(thread, &module, "nine").expect("the module loads");
        events
            .iter()
            .map(|e| {
                let outcome = set.process(thread, e).expect("the event is taken");
                let (_, state, stats) = set.rules().next().expect("one rule");
                (
                    !outcome.detections.is_empty(),
                    stats.last_fuel,
                    matches!(state, RuleState::Quarantined(_)),
                )
            })
            .collect()
    });
    for ((fired, fuel, quarantined), native) in sandboxed.iter().zip(&native) {
        let share = *fuel as f64 / budget as f64;
        eprintln!("{fuel} fuel ({:.1}%), fired {fired}", 100.0 * share);
        assert!(!quarantined, "quarantined");
        assert_eq!(fired, native, "sandboxed and native differ");
        assert!(
            share <= MAX_SHARE,
            "{fuel} of {budget} fuel: over {:.0}%",
            100.0 * MAX_SHARE
        );
    }
}
