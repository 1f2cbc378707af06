//! Long fields do not switch Sigma rules off: every compiled rule of the recorded corpus
//! (`../shared/corpus/sigma`, or `$RULEBOX_SIGMA_CORPUS`), loaded into packs of the evaluator as
//! `rulebox sigma compile` ships them, runs over process starts with long command lines (an encoded
//! PowerShell command of 8,000 characters, one of 32,767, the Windows maximum) and over events
//! with fields at the event cap, with no quarantine, within half its fuel, and with the detections
//! the native evaluator gives.
//!
//! Skips, saying so, when the corpus is absent.

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;
use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{Outcome, RuleSet, RuleState, Runtime, RuntimeConfig};
use rulebox_sdk::{Detections, Event, EventData, EventView, ProcessStart};
use rulebox_sigma::{Evaluator, Program};
use rulebox_validate::events::at_cap;

/// The validator's default headroom: a rule may use half its budget.
const HEADROOM: f64 = 0.5;

/// The longest command line Windows takes (`CreateProcess`), in characters.
const WINDOWS_MAX_COMMAND_LINE: usize = 32_767;

/// The rule of the corpus that must fire on an encoded `Invoke-` command, however long.
const BASE64_INVOKE: &str = "proc_creation_win_powershell_base64_invoke";

/// The recorded corpus's compiled rules, by case name.
fn corpus() -> Option<Vec<(String, Program<'static>)>> {
    let dir = match std::env::var_os("RULEBOX_SIGMA_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma"),
    }
    .join("cases");
    if !dir.is_dir() {
        return None;
    }
    let cases = rulebox_sigma::cases::load_cases(&dir).expect("the corpus's cases read");
    Some(
        cases
            .into_iter()
            .filter_map(|c| c.program.ok().map(|p| (c.name, p)))
            .collect(),
    )
}

/// A PowerShell start whose command line is `powershell.exe -e ` and the Base64 of a UTF-16LE
/// script, exactly `len` characters long, the script's `Invoke-Expression` at its end (so a rule
/// must read the whole command line to see it).
fn encoded_powershell(len: usize) -> Event<'static> {
    const HEAD: &str = "powershell.exe -NoProfile -ExecutionPolicy Bypass -e ";
    const LINE: &str = "$x = [Convert]::FromBase64String($d); ";
    const TAIL: &str = "Invoke-Expression $x";
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Script characters in multiples of 3 before the tail, so that its Base64 is the tail's own.
    let mut script = String::new();
    while HEAD.len() + b64(&utf16(&format!("{script}{LINE}{TAIL}"))).len() <= len {
        script.push_str(LINE);
    }
    while !script.len().is_multiple_of(3)
        || HEAD.len() + b64(&utf16(&format!("{script}{TAIL}"))).len() > len
    {
        script.pop();
    }
    let mut command_line = format!("{HEAD}{}", b64(&utf16(&format!("{script}{TAIL}"))));
    // The rest: PowerShell ignores trailing blanks.
    while command_line.len() < len {
        command_line.push(' ');
    }
    assert_eq!(command_line.len(), len);
    assert!(
        command_line.contains("SQBuAHYAbwBrAGUALQ"),
        "the encoded tail reads as `Invoke-` in UTF-16LE Base64"
    );
    let mut p = ProcessStart::default();
    p.image = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe".into();
    p.original_file_name = "PowerShell.EXE".into();
    p.command_line = command_line.into();
    p.parent_image = "C:\\Windows\\explorer.exe".into();
    Event::new(EventData::ProcessStart(p))
}

/// The ids of the rules that fire on `event`, natively.
fn native_ids(evaluators: &mut [Evaluator<'static>], event: &Event<'_>) -> BTreeSet<String> {
    let bytes = event.to_bytes().expect("the event encodes");
    let view = EventView::new(&bytes).expect("an encoded event reads");
    let mut found = Detections::new("native", rulebox_sdk::Severity::Low);
    let mut out = BTreeSet::new();
    for e in evaluators.iter_mut() {
        found.clear();
        if e.detect(&view, &mut found) {
            out.insert(e.id().to_owned());
        }
    }
    out
}

/// What the packs did with one event.
struct Seen {
    label: String,
    fired: BTreeSet<String>,
    native: BTreeSet<String>,
}

/// Loads every rule into packs as shipped, runs `events` through them, and returns what fired
/// (with the native answer), every quarantine, and every rule that went over the headroom.
fn run_packs(
    rules: &[(String, Program<'static>)],
    events: Vec<(String, Event<'static>)>,
) -> (Vec<Seen>, Vec<String>, Vec<String>) {
    let config = RuntimeConfig::default();
    let budget = config.limits.fuel_per_event;
    let runtime = Runtime::new(config).expect("runtime");
    let engine = runtime
        .compile(SIGMA_EVAL.bytes, "sigma.wasm")
        .expect("the engine compiles");
    let records: Vec<Vec<u8>> = rules
        .iter()
        .map(|(_, p)| rulebox_sigma::rule_record(p).expect("a compiled rule frames"))
        .collect();
    let packs = rulebox_sigma::split_packs(&records, "sigma", rulebox_sigma::MAX_PACK_DATA_BYTES);
    let mut evaluators: Vec<Evaluator<'static>> = rules
        .iter()
        .map(|(_, p)| Evaluator::new(p.clone()).expect("a compiled rule decodes"))
        .collect();
    let native: Vec<BTreeSet<String>> = events
        .iter()
        .map(|(_, e)| native_ids(&mut evaluators, e))
        .collect();
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        for (id, data) in &packs {
            set.add_module(thread, &engine, data, None)
                .unwrap_or_else(|r| panic!("pack {id} is refused: {}", r.message));
        }
        assert_eq!(set.rules().count(), records.len(), "every rule loaded");
        let (mut seen, mut quarantined, mut over) = (Vec::new(), Vec::new(), Vec::new());
        let mut out = Outcome::default();
        for ((label, event), native) in events.into_iter().zip(native) {
            set.process_into(thread, &event, &mut out)
                .expect("the event is taken");
            let fired = out.detections.iter().map(|d| d.rule.id.clone()).collect();
            for (info, state, stats) in set.rules() {
                if let RuleState::Quarantined(q) = state {
                    quarantined.push(format!("{} on `{label}`: {:?}", info.id, q.reason));
                } else if stats.last_fuel as f64 > HEADROOM * budget as f64 {
                    over.push(format!(
                        "{} used {} of {budget} fuel on `{label}`",
                        info.id, stats.last_fuel
                    ));
                }
            }
            if !quarantined.is_empty() {
                break;
            }
            seen.push(Seen {
                label,
                fired,
                native,
            });
        }
        let max = set.rules().map(|(_, _, s)| s.max_fuel).max().unwrap_or(0);
        eprintln!(
            "{} rules in {} packs: at most {max} fuel on one event ({:.1}% of the budget)",
            records.len(),
            packs.len(),
            100.0 * max as f64 / budget as f64
        );
        (seen, quarantined, over)
    })
}

/// The checks every run shares: no quarantine, the headroom kept, the native detections.
fn assert_kept(seen: &[Seen], quarantined: &[String], over: &[String]) {
    assert!(quarantined.is_empty(), "quarantined:\n{quarantined:#?}");
    assert!(over.is_empty(), "over half the fuel budget:\n{over:#?}");
    for s in seen {
        assert_eq!(
            s.fired, s.native,
            "sandboxed and native detections differ on `{}`",
            s.label
        );
    }
}

#[test]
fn long_encoded_powershell_command_lines_quarantine_no_corpus_rule_in_its_pack() {
    let Some(rules) = corpus() else {
        eprintln!(
            "SKIPPED: no recorded Sigma corpus (set RULEBOX_SIGMA_CORPUS or put it at ../shared/corpus/sigma)"
        );
        return;
    };
    assert!(rules.len() >= 160, "only {} rules compiled", rules.len());
    let invoke = rules
        .iter()
        .find(|(name, _)| name == BASE64_INVOKE)
        .map(|(_, p)| p.id.clone())
        .expect("the corpus has the Base64 Invoke rule");
    let events = [8_000, WINDOWS_MAX_COMMAND_LINE]
        .map(|len| {
            (
                format!("a {len}-character encoded PowerShell command line"),
                encoded_powershell(len),
            )
        })
        .into_iter()
        .collect();
    let (seen, quarantined, over) = run_packs(&rules, events);
    assert_kept(&seen, &quarantined, &over);
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert!(
            s.fired.contains(&invoke),
            "{BASE64_INVOKE} does not fire on {}: {:?}",
            s.label,
            s.fired
        );
    }
}

#[test]
fn corpus_rules_in_their_packs_keep_half_their_fuel_with_fields_at_the_cap() {
    let Some(rules) = corpus() else {
        eprintln!(
            "SKIPPED: no recorded Sigma corpus (set RULEBOX_SIGMA_CORPUS or put it at ../shared/corpus/sigma)"
        );
        return;
    };
    let config = RuntimeConfig::default();
    // Every rule's events at the cap (each field it names, alone and all at once), once each.
    let mut labels = BTreeSet::new();
    let mut events = Vec::new();
    for (_, program) in &rules {
        let names: Vec<&str> = program
            .fields
            .iter()
            .flat_map(|f| f.names.iter().map(String::as_str))
            .collect();
        for kind in program.kinds.iter() {
            for e in at_cap(kind, &names, &config) {
                // A field alone is the same event for every rule; all at once is each rule's.
                if e.label.contains("every named field") || labels.insert(e.label.clone()) {
                    events.push((e.label, e.event));
                }
            }
        }
    }
    let count = events.len();
    let (seen, quarantined, over) = run_packs(&rules, events);
    assert_kept(&seen, &quarantined, &over);
    assert_eq!(seen.len(), count, "every event ran");
}
