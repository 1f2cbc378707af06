//! Compiled Sigma rules as the rule data of one engine module: loading, a one-rule update as a
//! data load (the engine is compiled once), and detections before and after it; the engine's
//! cross-rule prefilter in the sandbox, on the pack's own budget.

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{Outcome, RuleSet, Runtime, RuntimeConfig, Upsert};
use rulebox_sdk::{Event, EventData, ProcessStart};
use rulebox_validate::events::{at_cap, boundary};

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

/// The recorded corpus's rules, compiled (`None`, saying so, when the corpus is absent).
fn recorded_corpus() -> Option<(Vec<rulebox_sigma::Program<'static>>, Vec<Event<'static>>)> {
    let dir = match std::env::var_os("RULEBOX_SIGMA_CORPUS") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma"),
    };
    let cases = rulebox_sigma::cases::load_cases(&dir.join("cases")).ok()?;
    let mut ids = std::collections::HashSet::new();
    let mut programs = Vec::new();
    let mut events = Vec::new();
    for case in cases {
        if let Ok(p) = case.program
            && ids.insert(p.id.clone())
        {
            programs.push(p);
        }
        events.extend(case.events.into_iter().flatten());
    }
    Some((programs, events))
}

/// Every detection of a batch: (event, rule id, title).
fn batch_ids(out: &rulebox_runtime::BatchOutcome) -> Vec<(usize, String, String)> {
    (0..out.len())
        .flat_map(|i| {
            out.get(i)
                .and_then(|o| o.ok())
                .map(|o| {
                    o.detections
                        .iter()
                        .map(|d| (i, d.rule.id.clone(), d.detection.title.to_string()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn the_prefilter_runs_within_half_the_packs_own_budget_at_the_cap_and_changes_no_detection() {
    let Some((programs, corpus)) = recorded_corpus() else {
        eprintln!(
            "SKIPPED: no Sigma corpus (set RULEBOX_SIGMA_CORPUS or put it at ../shared/corpus/sigma)"
        );
        return;
    };
    // The pack's own budget (the prefilter's) at half the default; every rule keeps the default.
    let mut config = RuntimeConfig::default();
    let half = rulebox_runtime::Limits {
        fuel_per_event: config.limits.fuel_per_event / 2,
        ..config.limits.clone()
    };
    config.rules.insert("sigma-01".into(), half);
    for p in &programs {
        config.rules.insert(p.id.clone(), config.limits.clone());
    }
    let runtime = Runtime::new(config.clone()).unwrap();
    let engine = runtime.compile(SIGMA_EVAL.bytes, "sigma.wasm").unwrap();
    // One pack of every kind's rules (not split by kind): its prefilter meets every event kind.
    let mut data = Vec::new();
    rulebox_sigma_eval::push_header(&mut data, "sigma-01");
    data.extend(rulebox_sigma::rule_data(&programs).unwrap());
    let off = rulebox_sigma::without_prefilter(&data).unwrap();
    // Every kind's boundary events at the default cap, and each field the rules read at the cap.
    let mut names: Vec<&str> = programs
        .iter()
        .flat_map(|p| {
            p.fields
                .iter()
                .flat_map(|f| f.names.iter().map(String::as_str))
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut edges: Vec<Event<'static>> = Vec::new();
    for kind in rulebox_sdk::EventKind::ALL {
        edges.extend(boundary(*kind, &config).into_iter().map(|e| e.event));
        edges.extend(at_cap(*kind, &names, &config).into_iter().map(|e| e.event));
    }
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut with = RuleSet::new(&rt);
        with.add_module(thread, &engine, &data, None).unwrap();
        let mut without = RuleSet::new(&rt);
        without.add_module(thread, &engine, &off, None).unwrap();
        let mut a = rulebox_runtime::BatchOutcome::default();
        let mut b = rulebox_runtime::BatchOutcome::default();
        let runs = |o: &rulebox_runtime::BatchOutcome| -> u64 {
            (0..o.len())
                .filter_map(|i| o.get(i).and_then(|r| r.ok()))
                .map(|o| u64::from(o.rules_run))
                .sum()
        };
        for (what, events) in [("corpus", &corpus), ("at the cap", &edges)] {
            let (mut ran_with, mut ran_without) = (0, 0);
            for chunk in events.chunks(16) {
                with.process_batch(thread, chunk, &mut a);
                without.process_batch(thread, chunk, &mut b);
                assert_eq!(
                    (with.stats().pack_strikes, with.stats().rules_missed),
                    (0, 0),
                    "{what}: the prefilter ran out of the pack's half budget"
                );
                assert_eq!(batch_ids(&a), batch_ids(&b), "{what}: detections differ");
                ran_with += runs(&a);
                ran_without += runs(&b);
            }
            eprintln!(
                "{what}: {} events, rules run {ran_with} with the prefilter, {ran_without} without",
                events.len()
            );
            assert!(
                ran_with < ran_without,
                "{what}: the prefilter left out no rule ({ran_with} of {ran_without} run)"
            );
            assert_eq!(
                (with.stats().pack_strikes, with.stats().rules_missed),
                (0, 0),
                "{what}: the prefilter ran out of the pack's half budget"
            );
        }
        assert!(with.records().is_empty(), "{:?}", with.records());
    });
}

mod support;

/// `rule`'s program with its condition under `nots` negations (an even number: the same rule).
fn nested(program: &rulebox_sigma::Program<'static>, nots: usize) -> Vec<u8> {
    use rulebox_sigma_eval::Expr;
    // Written by hand rather than by serde: a chain this deep would overflow the test's own stack
    // when serialized by recursion. `Expr::Not` is variant 4 of the enum, so in postcard a chain
    // of negations is one byte 4 per level before the operand.
    let mut shallow = program.clone();
    let plain = rulebox_sigma::rule_record(&shallow).unwrap();
    shallow.condition = Expr::Not(Box::new(shallow.condition.clone()));
    let once = rulebox_sigma::rule_record(&shallow).unwrap();
    // After the record's magic and length, which differ by the one byte.
    let (plain, once) = (&plain[8..], &once[8..]);
    let at = plain
        .iter()
        .zip(once)
        .position(|(a, b)| a != b)
        .expect("the programs differ where the condition starts");
    assert_eq!(once[at], 4, "Expr::Not is variant 4");
    let mut program = plain[..at].to_vec();
    program.extend(std::iter::repeat_n(4u8, nots));
    program.extend_from_slice(&plain[at..]);
    let mut record = Vec::new();
    rulebox_sigma_eval::push_record(&mut record, &program);
    record
}

#[test]
fn a_program_nested_to_the_limit_runs_on_the_engines_small_stack_and_far_deeper_data_is_refused() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let engine = runtime.compile(SIGMA_EVAL.bytes, "sigma.wasm").unwrap();
    let program = rule(A, "2024-01-01", "whoami.exe");
    // The limit counts the condition's own level: 62 negations and the match are 63 levels.
    let limit = nested(&program, rulebox_sigma_eval::MAX_DEPTH - 2);
    let over = nested(&program, rulebox_sigma_eval::MAX_DEPTH + 2);
    let abyss = nested(&program, 1 << 20);
    let named = |id: &str, records: &[u8]| {
        let mut data = Vec::new();
        rulebox_sigma_eval::push_header(&mut data, id);
        data.extend_from_slice(records);
        data
    };
    let good = named(
        "good",
        &rulebox_sigma::rule_data(&[rule(B, "2024-01-01", "notepad.exe")]).unwrap(),
    );
    let (limit, over, abyss) = (
        named("deep", &limit),
        named("over", &over),
        named("abyss", &abyss),
    );
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.add_module(thread, &engine, &good, None).unwrap();
        set.add_module(thread, &engine, &limit, None).unwrap();
        let mut out = Outcome::default();
        set.process_into(thread, &process("C:\\x\\whoami.exe"), &mut out)
            .unwrap();
        assert_eq!(ids(&out), [A], "62 negations of a match are the match");
        assert!(out.alerts.is_empty(), "{:?}", out.alerts);
        let e = set
            .add_module(thread, &engine, &over, None)
            .unwrap_err()
            .message
            .clone();
        assert!(e.contains("nesting deeper than 64"), "{e}");
        // A million levels: far past the evaluator's stack, which ends in a trap in the sandbox.
        let e = set
            .add_module(thread, &engine, &abyss, None)
            .unwrap_err()
            .message
            .clone();
        assert!(e.contains("loading") && e.contains("stack_overflow"), "{e}");
        set.process_into(thread, &process("C:\\x\\notepad.exe"), &mut out)
            .unwrap();
        assert_eq!(ids(&out), [B], "the packs loaded before still run: {e}");
    });
}

/// The highest memory high-water mark of the set's rules (a pack's rules share its instance).
fn memory_high_water(set: &RuleSet) -> u64 {
    set.rules()
        .map(|(_, _, s)| s.memory_high_water)
        .max()
        .unwrap_or(0)
}

#[test]
fn rules_whose_sandboxed_skip_hands_back_on_a_command_line_are_marked_for_all_their_rows() {
    let Some(dir) = support::shared("RULEBOX_SIGMAHQ_CORPUS", "../../shared/corpus/sigmahq") else {
        eprintln!("SKIPPED: no SigmaHQ corpus (set RULEBOX_SIGMAHQ_CORPUS)");
        return;
    };
    let config = RuntimeConfig::default();
    let text = "powershell.exe -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA C:\\Windows\\a.exe "
        .repeat(40);
    let record = |stem: &str| {
        let file = support::yaml_files(&dir)
            .into_iter()
            .find(|f| f.file_stem().is_some_and(|s| s == stem))
            .unwrap_or_else(|| panic!("{stem} is in the corpus"));
        let program = rulebox_sigma::compile(&std::fs::read_to_string(file).unwrap()).unwrap();
        rulebox_sigma::rule_record(&program).unwrap()
    };
    // Its 28 literals' nibble tables say yes nearly everywhere in a command line, while the exact
    // tables say no: the native scan skips (15 bytes stepped at the cap), the sandbox's hands back.
    let dense = record("proc_creation_win_apt_mint_sandstorm_aspera_faspex_susp_child_process");
    let eval = rulebox_sigma::Evaluator::from_bytes_owned(&dense[8..]).unwrap();
    let misses = eval.skip_misses(text.as_bytes());
    assert!(misses * 3 > text.len(), "{misses} of {}", text.len());
    let stepped = rulebox_validate::named::bytes_stepped_at_cap(&dense[8..], &config).unwrap();
    assert!(
        stepped < 1 << 10,
        "natively it skips: {stepped} bytes stepped"
    );
    assert!(rulebox_validate::named::steps_through_fields(
        &dense[8..],
        &config
    ));
    // A rule whose literal the filler never comes near skips in both, and is not marked.
    let rare = record("proc_creation_win_cmd_assoc_execution");
    let eval = rulebox_sigma::Evaluator::from_bytes_owned(&rare[8..]).unwrap();
    assert!(eval.skip_misses(text.as_bytes()) * 3 < text.len());
    assert!(!rulebox_validate::named::steps_through_fields(
        &rare[8..],
        &config
    ));
}

#[test]
fn every_sigmahq_pack_loads_within_half_the_default_memory_cap() {
    let Some(dir) = support::shared("RULEBOX_SIGMAHQ_CORPUS", "../../shared/corpus/sigmahq") else {
        eprintln!(
            "SKIPPED: no SigmaHQ corpus (set RULEBOX_SIGMAHQ_CORPUS or put it at ../shared/corpus/sigmahq)"
        );
        return;
    };
    let records: Vec<Vec<u8>> = support::yaml_files(&dir)
        .iter()
        .filter_map(|f| rulebox_sigma::compile(&std::fs::read_to_string(f).ok()?).ok())
        .filter_map(|p| rulebox_sigma::rule_record(&p).ok())
        .collect();
    assert!(records.len() > 2_500, "{} rules compiled", records.len());
    let full = rulebox_validate::named::full_rows(&records, &RuntimeConfig::default());
    assert!(
        full.iter().any(|&f| f),
        "some SigmaHQ rules step through most of a field at the cap"
    );
    let split = rulebox_sigma::split_packs_with_rows(
        &records,
        "sigma",
        rulebox_sigma::MAX_PACK_DATA_BYTES,
        &full,
    );
    // Natively: each marked rule has as many automata with rows in its pack as alone (the pack's
    // byte-row budget, which the others share, would not hold them: SigmaHQ's packs want several
    // times it).
    // Each pack is built once here; its prefilter's field scans of a process start are counted
    // for the order check below.
    let process_scans = |pack: &rulebox_sigma_eval::SigmaPack| {
        pack.prefilter()
            .map_or(0, |p| p.scanned(rulebox_sdk::EventKind::ProcessStart).len())
    };
    let mut ordered = 0;
    for (id, data, members) in &split {
        let pack = rulebox_sigma_eval::SigmaPack::from_data(data).unwrap();
        ordered += process_scans(&pack);
        for (rule, &m) in pack.rules().iter().zip(members) {
            if full[m] {
                let alone = rulebox_sigma::Evaluator::from_bytes(&records[m][8..]).unwrap();
                assert_eq!(
                    rule.automata_with_byte_rows(),
                    alone.automata_with_byte_rows(),
                    "{id}: {} has its automata's rows as alone",
                    rule.id()
                );
            }
        }
    }
    // The cut in pack order (by kinds, then the rarest field a rule's prefilter reads): the
    // packs' prefilters scan far fewer fields of a process start than cut in file order, where
    // nearly every pack has a rule needing each rare field (about half as many, 2026-12-04).
    let file_order: Vec<usize> = (0..records.len()).collect();
    let in_file_order = rulebox_sigma::split_packs_in_order(
        &records,
        &file_order,
        "sigma",
        rulebox_sigma::MAX_PACK_DATA_BYTES,
        &full,
    );
    let unordered: usize = in_file_order
        .iter()
        .map(|(_, data, _)| process_scans(&rulebox_sigma_eval::SigmaPack::from_data(data).unwrap()))
        .sum();
    eprintln!("field scans of a process start: {ordered} in pack order, {unordered} in file order");
    assert!(
        ordered * 3 < unordered * 2,
        "pack order: {ordered} field scans of a process start, file order {unordered}"
    );
    let packs: Vec<(String, Vec<u8>)> = split.into_iter().map(|(id, data, _)| (id, data)).collect();
    let config = RuntimeConfig::default();
    let cap = config.limits.memory_bytes;
    let runtime = Runtime::new(config.clone()).unwrap();
    let engine = runtime.compile(SIGMA_EVAL.bytes, "sigma.wasm").unwrap();
    let rt = runtime.clone();
    runtime.run_sandboxed(move |thread| {
        let mut worst = (0, String::new(), RuleSet::new(&rt));
        for (id, data) in &packs {
            let mut set = RuleSet::new(&rt);
            set.add_module(thread, &engine, data, None).unwrap();
            let mut out = Outcome::default();
            for kind in rulebox_sdk::EventKind::ALL {
                for e in boundary(*kind, &config).into_iter().take(1) {
                    set.process_into(thread, &e.event, &mut out).unwrap();
                    assert!(out.alerts.is_empty(), "{id}: {:?}", out.alerts);
                }
            }
            let high = memory_high_water(&set);
            eprintln!(
                "{id}: {} KiB of data, memory {} KiB",
                data.len() >> 10,
                high >> 10
            );
            if high > worst.0 {
                worst = (high, id.clone(), set);
            }
        }
        // The pack with the most memory, on the events that grow it most: every text field at
        // once at the event cap (every rule then runs: the prefilter does not scan that much).
        let (loaded, id, mut set) = worst;
        let mut out = Outcome::default();
        for kind in rulebox_sdk::EventKind::ALL {
            for e in boundary(*kind, &config)
                .into_iter()
                .filter(|e| e.label.contains("every text field"))
            {
                set.process_into(thread, &e.event, &mut out).unwrap();
                assert!(out.alerts.is_empty(), "{id}, {}: {:?}", e.label, out.alerts);
            }
        }
        let high = memory_high_water(&set);
        eprintln!(
            "{id}: memory {} KiB loaded, {} KiB after events at the cap",
            loaded >> 10,
            high >> 10
        );
        assert!(
            high * 2 <= cap,
            "pack {id} reached {high} bytes, over half the {cap}-byte cap"
        );
    });
}

/// The text values of `events` (body and extra fields), each also followed by the next and by a
/// long command line, so that patterns split across them and far into a field are looked for.
fn texts_of(events: &[Event<'static>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes = Vec::new();
    for e in events {
        bytes.clear();
        e.encode_into(&mut bytes).unwrap();
        let view = rulebox_sdk::EventView::new(&bytes).unwrap();
        for slot in 0..view.layout().fields.len() {
            if let Some(t) = view.text_bytes(slot).filter(|t| !t.is_empty()) {
                out.push(t.to_vec());
            }
        }
        for k in 0..view.extra_len() {
            if let Some((_, v)) = view.extra_bytes(k).filter(|(_, v)| !v.is_empty()) {
                out.push(v.to_vec());
            }
        }
    }
    out.sort();
    out.dedup();
    let long = "powershell.exe -nop -w hidden -enc SQBFAFgA C:\\Windows\\Temp\\a.exe | find "
        .repeat(200)
        .into_bytes();
    let n = out.len();
    for i in 0..n {
        let next = out[(i + 1) % n].clone();
        out.push([out[i].as_slice(), b" ", &next].concat());
        out.push([long.as_slice(), &out[i]].concat());
    }
    out
}

#[test]
fn scans_through_the_byte_classes_find_what_scans_through_byte_rows_find() {
    let Some((programs, events)) = recorded_corpus() else {
        eprintln!("SKIPPED: no recorded Sigma corpus (set RULEBOX_SIGMA_CORPUS)");
        return;
    };
    let texts = texts_of(&events);
    let (mut automata, mut compared) = (0, 0);
    for p in &programs {
        for scan in &p.scans {
            let rows = rulebox_sigma_eval::Automaton::new(scan.dfa.clone()).unwrap();
            let classes = rulebox_sigma_eval::Automaton::within(scan.dfa.clone(), &mut 0).unwrap();
            assert!(!classes.has_byte_rows(), "{}: no budget, no rows", p.id);
            if !rows.has_byte_rows() {
                continue;
            }
            automata += 1;
            for text in &texts {
                let (mut a, mut b) = (rows.state(), classes.state());
                rows.scan(text, &mut a);
                classes.scan(text, &mut b);
                assert_eq!(
                    a.bits(),
                    b.bits(),
                    "{}: an automaton finds other patterns through its byte classes in {:?}",
                    p.id,
                    String::from_utf8_lossy(&text[text.len().saturating_sub(80)..])
                );
                compared += usize::from(a.bits().iter().any(|w| *w != 0));
            }
        }
    }
    assert!(automata > 100, "{automata} automata with byte rows");
    assert!(compared > 100, "{compared} texts where something was found");
}

#[test]
fn a_packs_byte_rows_go_to_the_same_automata_whatever_the_order_of_its_rules() {
    let Some(dir) = support::shared("RULEBOX_SIGMAHQ_CORPUS", "../../shared/corpus/sigmahq") else {
        eprintln!(
            "SKIPPED: no SigmaHQ corpus (set RULEBOX_SIGMAHQ_CORPUS or put it at ../shared/corpus/sigmahq)"
        );
        return;
    };
    // The process-creation rules: more automata than the byte-row budget holds rows for.
    let programs: Vec<rulebox_sigma::Program<'static>> = support::yaml_files(&dir)
        .iter()
        .filter(|f| f.to_string_lossy().contains("process_creation"))
        .filter_map(|f| rulebox_sigma::compile(&std::fs::read_to_string(f).ok()?).ok())
        .take(400)
        .collect();
    let rows_per_rule = |programs: Vec<&rulebox_sigma::Program<'static>>| {
        let data = rulebox_sigma::rule_data(programs).unwrap();
        let pack = rulebox_sigma_eval::SigmaPack::from_data(&data).unwrap();
        let mut rows: Vec<(String, usize)> = pack
            .rules()
            .iter()
            .map(|r| (r.id().to_owned(), r.automata_with_byte_rows()))
            .collect();
        rows.sort();
        rows
    };
    let forward = rows_per_rule(programs.iter().collect());
    let backward = rows_per_rule(programs.iter().rev().collect());
    let given: usize = forward.iter().map(|(_, n)| n).sum();
    let automata: usize = programs.iter().map(|p| p.scans.len()).sum();
    assert!(
        given < automata,
        "the budget held rows for all {automata} automata: the test shows nothing"
    );
    assert_eq!(
        forward, backward,
        "which automata get byte rows depends on where their rules sit in the pack"
    );
}
