//! The same source, two builds: each example rule gives the same detections in its sandbox as natively,
//! on the demo intrusion and on generated events.

use std::borrow::Cow;
use std::sync::OnceLock;

use proptest::prelude::*;
use rulebox_example_artifacts::{ALL, ArtifactKind, native};
use rulebox_runtime::{CompiledRule, LoadedRule, Outcome, RuleSet, Runtime, SandboxThread};
use rulebox_sdk::{Detection, Event, EventData, EventKind, Value};

use crate::common::runtime;
use crate::faults::demo_events;

fn good() -> impl Iterator<Item = &'static rulebox_example_artifacts::Artifact> {
    ALL.iter().filter(|a| a.kind == ArtifactKind::Good)
}

/// Runs `events` through every good rule both ways; returns per rule (sandboxed, native) detections.
fn both_ways(
    rt: &Runtime,
    thread: &SandboxThread,
    events: &[Event<'static>],
) -> Vec<(
    &'static str,
    Vec<Detection<'static>>,
    Vec<Detection<'static>>,
)> {
    good()
        .zip(compiled_good(rt))
        .map(|(a, compiled)| {
            let mut sandboxed = LoadedRule::load(rt, thread, compiled).unwrap();
            let mut nat = native::new_native(a.name).expect("native build");
            let (mut s, mut n) = (Vec::new(), Vec::new());
            for event in events {
                if sandboxed.info().subscriptions.contains(event.kind()) {
                    let bytes = event.to_bytes().unwrap();
                    sandboxed
                        .evaluate(&bytes, &mut s)
                        .unwrap_or_else(|f| panic!("{} faulted: {f}", a.name));
                }
                n.extend(nat.on_event(event));
            }
            (a.name, s, n)
        })
        .collect()
}

/// The good rules compiled once for the whole test binary (compiling is the slow part).
fn compiled_good(rt: &Runtime) -> &'static [CompiledRule] {
    static COMPILED: OnceLock<Vec<CompiledRule>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        good()
            .map(|a| rt.compile(a.bytes, a.name).expect("compiles"))
            .collect()
    })
}

/// One runtime for the whole test binary (compiled modules belong to the engine that compiled them).
fn shared_runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(runtime).clone()
}

#[test]
fn every_good_rule_detects_its_attack_and_ignores_the_rest_of_the_demo() {
    let rt = shared_runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = demo_events();
        for (name, sandboxed, native) in both_ways(&rt, thread, &events) {
            assert_eq!(sandboxed, native, "{name}: sandboxed and native differ");
            assert!(
                !sandboxed.is_empty(),
                "{name}: detects its attack in the demo (positive)"
            );
            // Negative: each rule fires on a strict minority of the demo's events.
            assert!(
                sandboxed.len() < events.len() / 2,
                "{name}: fired {} times",
                sandboxed.len()
            );
        }
    });
}

#[test]
fn a_reused_outcome_reports_what_a_fresh_one_does() {
    // The set writes detections into the strings of earlier ones when an `Outcome` is reused; the
    // detections must be exactly those of a fresh `Outcome` per event (two sets: mass-rename has
    // state).
    let rt = shared_runtime();
    rt.clone().run_sandboxed(move |thread| {
        let events = demo_events();
        let mut sets = [RuleSet::new(&rt), RuleSet::new(&rt)];
        for set in &mut sets {
            for (a, compiled) in good().zip(compiled_good(&rt)) {
                set.add(thread, compiled)
                    .unwrap_or_else(|r| panic!("{}: {r:?}", a.name));
            }
        }
        let [reusing, fresh] = &mut sets;
        let mut outcome = Outcome::default();
        let mut fired = 0;
        // Twice over, so that later detections land in the strings of earlier, different ones.
        for event in events.iter().chain(&events) {
            reusing.process_into(thread, event, &mut outcome).unwrap();
            let want = fresh.process(thread, event).unwrap();
            let list = |o: &Outcome| -> Vec<(String, Detection<'static>)> {
                o.detections
                    .iter()
                    .map(|d| (d.rule.id.clone(), d.detection.clone()))
                    .collect()
            };
            assert_eq!(list(&outcome), list(&want));
            fired += want.detections.len();
        }
        assert!(fired >= 10, "the demo fires: {fired}");
    });
}

/// Text that exercises the example rules: attack fragments, benign paths, odd Unicode, empty.
fn text() -> impl Strategy<Value = String> {
    let fragments = prop::sample::select(vec![
        "C:\\Windows\\System32\\cmd.exe",
        "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
        "\\EXCEL.exe",
        "powershell.exe",
        "pwsh",
        " -enc ",
        " -EncodedCommand ",
        " -e ",
        "SQBFAFgA",
        "\\lsass.exe",
        "0x1010",
        "0x1fffff",
        "0x10",
        "MsMpEng.exe",
        "\\msagent_",
        "\\postex_",
        "\\PSEXESVC",
        "\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
        "RunOnce",
        "HKLM",
        "wscript.exe",
        "mshta.exe",
        "q8z3x7k2v9w4j6m1t5p0r8n2b7c4",
        ".example.com",
        "www.",
        "ё",
        "🦀",
        "\u{202e}",
        "",
        " ",
        "\\",
        "\"",
        "a",
    ]);
    prop::collection::vec(fragments, 0..6).prop_map(|parts| parts.concat())
}

fn event() -> impl Strategy<Value = Event<'static>> {
    let kinds = prop::sample::select(EventKind::ALL.to_vec());
    (
        kinds,
        prop::collection::vec(text(), 20),
        any::<u32>(),
        0u64..4_000_000_000_000,
        any::<u16>(),
    )
        .prop_map(|(kind, texts, pid, timestamp, port)| {
            let mut data = EventData::empty(kind);
            let names: Vec<&'static str> = data.field_names().to_vec();
            for (i, name) in names.iter().enumerate() {
                let is_text = matches!(data.field(name), Some(Value::Str(_)));
                let value = if is_text {
                    texts[i % texts.len()].clone()
                } else {
                    port.to_string()
                };
                data.set_field(name, Cow::Owned(value));
            }
            let mut event = Event::new(data);
            event.pid = pid % 64;
            event.timestamp = timestamp;
            event
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sandboxed_equals_native_on_generated_events(events in prop::collection::vec(event(), 1..40)) {
        let rt = shared_runtime();
        let results = rt.clone().run_sandboxed(move |thread| both_ways(&rt, thread, &events));
        for (name, sandboxed, native) in results {
            prop_assert_eq!(sandboxed, native, "{} differs", name);
        }
    }
}
