//! The Sigma pack's cross-rule prefilter is sound: every rule of `../shared/corpus/sigma` (or
//! `$RULEBOX_SIGMA_CORPUS`) and of `../shared/corpus/sigmahq` (or `$RULEBOX_SIGMAHQ_CORPUS`) that
//! compiles, in one pack, finds exactly the same detections with the prefilter as without it
//! (the pack's load-time switch, [`OPTION_NO_PREFILTER`]) over every corpus event, the
//! validator's boundary and at-cap events of every kind, and events generated from the corpus
//! events by seeded mutations (case changes, needed literals of random rules inserted into
//! random fields, truncations). Natively, as the sandbox runs the pack (`run_native_pack`): the
//! same source, the same candidates, the same order. Each corpus skips, saying so, when absent.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use rulebox_runtime::RuntimeConfig;
use rulebox_sdk::{Event, EventKind, Field, Pack, run_native_pack};
use rulebox_sigma::Program;
use rulebox_sigma::cases::load_cases;
use rulebox_sigma_eval::{OPTION_NO_PREFILTER, SigmaPack, push_header, push_options, push_record};
use rulebox_validate::events::{at_cap, boundary};

mod support;
use support::{shared, yaml_files};

/// Compiles `files` on every core; the programs that compile, in file order, ids unique.
fn compile_all(files: &[PathBuf]) -> Vec<Program<'static>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results: Vec<(usize, Program<'static>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..files.len())
                        .step_by(threads)
                        .filter_map(|i| {
                            let text = std::fs::read_to_string(&files[i]).ok()?;
                            rulebox_sigma::compile(&text).ok().map(|p| (i, p))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compile thread"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let mut ids = std::collections::HashSet::new();
    results
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| ids.insert(p.id.clone()))
        .collect()
}

/// The rule data of one pack of `programs`, with the prefilter or without it.
fn data(programs: &[Program<'static>], prefilter: bool) -> Vec<u8> {
    let mut out = Vec::new();
    push_header(&mut out, "sigma-prefilter-test");
    if !prefilter {
        push_options(&mut out, OPTION_NO_PREFILTER);
    }
    for p in programs {
        push_record(&mut out, &p.to_bytes().expect("a program encodes"));
    }
    out
}

/// A small deterministic generator (the test must not depend on a seed it does not print).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % u64::try_from(n).unwrap_or(1)).unwrap_or(0)
        }
    }
}

/// Every text field of `event` (body and extra), by name.
fn text_fields(event: &Event<'_>) -> Vec<String> {
    let mut names: Vec<String> = event
        .data
        .field_names()
        .iter()
        .filter(|n| matches!(event.data.field(n), Some(rulebox_sdk::Value::Str(_))))
        .map(|n| (*n).to_owned())
        .collect();
    names.extend(event.extra.iter().map(|f| f.name.to_string()));
    names
}

fn get(event: &Event<'_>, name: &str) -> String {
    match event.data.field(name) {
        Some(rulebox_sdk::Value::Str(s)) => s.to_string(),
        _ => event
            .extra
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.to_string())
            .unwrap_or_default(),
    }
}

fn set(event: &mut Event<'static>, name: &str, text: String) {
    if !event.data.set_field(name, Cow::Owned(text.clone())) {
        match event.extra.iter_mut().find(|f| f.name == name) {
            Some(f) => f.value = Cow::Owned(text),
            None => event.extra.push(Field {
                name: Cow::Owned(name.to_owned()),
                value: Cow::Owned(text),
            }),
        }
    }
}

/// A character boundary of `s` at or below `i`.
fn floor(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `count` events made from `base` by seeded mutations: a field's case changed, a literal some
/// rule needs (on a field some rule reads) inserted into a field, a field truncated; several at
/// once.
fn mutations(
    base: &[Event<'static>],
    programs: &[Program<'static>],
    count: usize,
    rng: &mut Rng,
) -> Vec<Event<'static>> {
    // (field name, literal) pairs the rules need (no name: a keyword's, in any field).
    let needs: Vec<(Option<String>, String)> = programs
        .iter()
        .flat_map(|p| {
            p.needs.iter().flatten().map(|n| {
                let name = n.field.map(|f| p.fields[usize::from(f)].names[0].clone());
                (name, n.text.clone())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut e = base[rng.below(base.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let fields = text_fields(&e);
            match rng.below(5) {
                0 if !fields.is_empty() => {
                    let name = &fields[rng.below(fields.len())];
                    let v = get(&e, name);
                    let v = if rng.below(2) == 0 {
                        v.to_uppercase()
                    } else {
                        v.chars()
                            .enumerate()
                            .map(|(i, c)| {
                                if i % 2 == 0 {
                                    c.to_ascii_uppercase()
                                } else {
                                    c.to_ascii_lowercase()
                                }
                            })
                            .collect()
                    };
                    set(&mut e, name, v);
                }
                1 | 2 if !needs.is_empty() => {
                    // Into the field the rule needs it in (often), or any field.
                    let (field, lit) = &needs[rng.below(needs.len())];
                    let name = match field {
                        Some(field) if rng.below(3) > 0 || fields.is_empty() => field.clone(),
                        _ if !fields.is_empty() => fields[rng.below(fields.len())].clone(),
                        _ => continue,
                    };
                    let v = get(&e, &name);
                    let at = floor(&v, rng.below(v.len() + 1));
                    let lit = if rng.below(2) == 0 {
                        lit.to_uppercase()
                    } else {
                        lit.clone()
                    };
                    set(&mut e, &name, format!("{}{lit}{}", &v[..at], &v[at..]));
                }
                3 if !fields.is_empty() => {
                    let name = &fields[rng.below(fields.len())];
                    let v = get(&e, name);
                    let at = floor(&v, rng.below(v.len() + 1));
                    let v = if rng.below(2) == 0 {
                        v[..at].to_owned()
                    } else {
                        v[at..].to_owned()
                    };
                    set(&mut e, name, v);
                }
                _ if !needs.is_empty() => {
                    // Two literals of one rule's clauses, into their fields.
                    let p = &programs[rng.below(programs.len())];
                    for clause in &p.needs {
                        if clause.is_empty() {
                            continue;
                        }
                        let n = &clause[rng.below(clause.len())];
                        let name = match n.field {
                            Some(f) => &p.fields[usize::from(f)].names[0],
                            None if !fields.is_empty() => &fields[rng.below(fields.len())],
                            None => continue,
                        };
                        let v = get(&e, name);
                        set(&mut e, name, format!("{v} {} ", n.text));
                    }
                }
                _ => {}
            }
        }
        out.push(e);
    }
    out
}

/// The detections of each event (rule index and title and fields), by pack.
type Found = Vec<Vec<(usize, String, Vec<(String, String)>)>>;

fn run(pack: &mut SigmaPack, events: &[Event<'static>]) -> Found {
    events
        .iter()
        .map(|e| {
            run_native_pack(pack, e)
                .into_iter()
                .map(|(i, d)| {
                    let fields = d
                        .fields
                        .iter()
                        .map(|f| (f.name.to_string(), f.value.to_string()))
                        .collect();
                    (i, d.title.to_string(), fields)
                })
                .collect()
        })
        .collect()
}

/// Runs every program over `events` in one pack with and without the prefilter; asserts they
/// agree event by event, and returns (detections, candidates run with the prefilter, without).
fn agree(what: &str, programs: &[Program<'static>], events: &[Event<'static>]) -> usize {
    let mut with = SigmaPack::load(&data(programs, true)).expect("the pack loads");
    let mut without = SigmaPack::load(&data(programs, false)).expect("the pack loads");
    assert!(with.prefilter().is_some() && without.prefilter().is_none());
    let a = run(&mut with, events);
    let b = run(&mut without, events);
    let mut detections = 0;
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            x,
            y,
            "{what}: event #{k} ({:?}): detections with the prefilter differ from without it",
            events[k].kind()
        );
        detections += y.len();
    }
    detections
}

fn corpus_events(dir: &Path) -> Vec<Event<'static>> {
    load_cases(&dir.join("cases"))
        .expect("the corpus cases read")
        .into_iter()
        .filter_map(|c| c.events.ok())
        .flatten()
        .collect()
}

/// The validator's boundary and at-cap events of every kind, at a cap small enough to run every
/// rule on them in a test (the shapes are the validator's: every field missing, each field alone
/// at the cap, every field at once, the names the rules read).
fn boundary_events(programs: &[Program<'static>]) -> Vec<Event<'static>> {
    let config = RuntimeConfig {
        max_event_bytes: 4 << 10,
        ..RuntimeConfig::default()
    };
    let mut out = Vec::new();
    for kind in EventKind::ALL {
        let mut names: Vec<&str> = programs
            .iter()
            .filter(|p| p.kinds.contains(*kind))
            .flat_map(|p| {
                p.fields
                    .iter()
                    .flat_map(|f| f.names.iter().map(String::as_str))
            })
            .collect();
        if names.is_empty() {
            continue;
        }
        names.sort_unstable();
        names.dedup();
        out.extend(boundary(*kind, &config).into_iter().map(|e| e.event));
        out.extend(at_cap(*kind, &names, &config).into_iter().map(|e| e.event));
    }
    out
}

/// How many boundary events and generated events a check runs: every one and three per corpus
/// event for the recorded corpus; for SigmaHQ's 2,852 rules (about 4 minutes on an idle core for
/// everything), every third boundary event and one generated event per corpus event, unless
/// `RULEBOX_PREFILTER_FULL=1` asks for all of it.
struct Sample {
    edge_step: usize,
    generated_per_event: usize,
}

fn check_corpus(
    what: &str,
    programs: &[Program<'static>],
    events: &[Event<'static>],
    seed: u64,
    sample: Sample,
) {
    let with = SigmaPack::load(&data(programs, true)).expect("the pack loads");
    let p = with.prefilter().expect("a prefilter");
    let (literals, fields) = p.literals();
    eprintln!(
        "{what}: {} rules, {} bounded by the prefilter ({literals} literals in {fields} fields)",
        programs.len(),
        p.bounded()
    );
    assert!(
        p.bounded() * 2 > programs.len(),
        "{what}: the prefilter bounds only {} of {} rules",
        p.bounded(),
        programs.len()
    );
    let n = agree(&format!("{what}, corpus events"), programs, events);
    eprintln!(
        "{what}: {} corpus events agree ({n} detections)",
        events.len()
    );
    assert!(
        n > 0,
        "{what}: the corpus events fire no rule: nothing was compared"
    );
    let edges: Vec<Event<'static>> = boundary_events(programs)
        .into_iter()
        .step_by(sample.edge_step)
        .collect();
    agree(&format!("{what}, boundary events"), programs, &edges);
    eprintln!("{what}: {} boundary and at-cap events agree", edges.len());
    let mut rng = Rng(seed);
    let generated = mutations(
        events,
        programs,
        sample.generated_per_event * events.len().max(200),
        &mut rng,
    );
    let n = agree(
        &format!("{what}, generated events (seed {seed:#x})"),
        programs,
        &generated,
    );
    eprintln!(
        "{what}: {} generated events agree ({n} detections)",
        generated.len()
    );
    assert!(n > 0, "{what}: the generated events fire no rule");
}

#[test]
fn the_prefilter_finds_every_detection_of_the_recorded_corpus() {
    let Some(dir) = shared("RULEBOX_SIGMA_CORPUS", "../../shared/corpus/sigma") else {
        eprintln!(
            "SKIPPED: no Sigma corpus (set RULEBOX_SIGMA_CORPUS or put it at ../shared/corpus/sigma)"
        );
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))
        .expect("the cases folder")
        .flatten()
        .map(|e| e.path().join("rule.yml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let programs = compile_all(&files);
    check_corpus(
        "recorded corpus",
        &programs,
        &corpus_events(&dir),
        0x5eed_0001,
        Sample {
            edge_step: 1,
            generated_per_event: 3,
        },
    );
}

#[test]
fn the_prefilter_finds_every_detection_of_the_sigmahq_set() {
    let (Some(hq), Some(dir)) = (
        shared("RULEBOX_SIGMAHQ_CORPUS", "../../shared/corpus/sigmahq"),
        shared("RULEBOX_SIGMA_CORPUS", "../../shared/corpus/sigma"),
    ) else {
        eprintln!(
            "SKIPPED: no SigmaHQ rules or Sigma corpus events (set RULEBOX_SIGMAHQ_CORPUS and RULEBOX_SIGMA_CORPUS, or put them under ../shared/corpus)"
        );
        return;
    };
    let files = yaml_files(&hq);
    let programs = compile_all(&files);
    let full = std::env::var_os("RULEBOX_PREFILTER_FULL").is_some_and(|v| v == "1");
    let sample = if full {
        Sample {
            edge_step: 1,
            generated_per_event: 3,
        }
    } else {
        eprintln!(
            "SigmaHQ: a sample (every third boundary event, one generated event per corpus event); RULEBOX_PREFILTER_FULL=1 runs all"
        );
        Sample {
            edge_step: 3,
            generated_per_event: 1,
        }
    };
    check_corpus(
        "SigmaHQ",
        &programs,
        &corpus_events(&dir),
        0x5eed_0002,
        sample,
    );
}

/// A keyword bounds its rule: NotPetya's shape, an `or` of a keyword and a selection, needs the
/// keyword's literal in any field or the selection's in its field; the pack lets it through exactly on events
/// that hold one, and the validator's events at the cap carry the keyword so that they reach it.
#[test]
fn a_keyword_bounds_its_rule_and_the_validators_events_still_reach_it() {
    let rule = r#"
title: keyword or selections
id: 6a1f0c3e-0000-4000-8000-00000000aa01
status: test
logsource:
    category: process_creation
    product: windows
detection:
    keywords:
        - '\perfc.dat'
    selection:
        CommandLine|contains: 'fsutil usn deletejournal'
    condition: keywords or selection
level: high
"#;
    let program = rulebox_sigma::compile(rule).expect("the rule compiles");
    assert!(
        program.needs.iter().any(|c| c
            .iter()
            .any(|n| n.field.is_none() && n.text == "\\perfc.dat")),
        "the keyword is a need in any field: {:?}",
        program.needs
    );
    let on = SigmaPack::from_data(&data(std::slice::from_ref(&program), true)).unwrap();
    let mut prefilter = on.prefilter().expect("a prefilter").clone();
    assert_eq!(prefilter.bounded(), 1);
    let candidates = |prefilter: &mut rulebox_sigma_eval::Prefilter, event: &Event<'_>| {
        let bytes = event.to_bytes().unwrap();
        let view = rulebox_sdk::EventView::new(&bytes).unwrap();
        let mut out = Vec::new();
        prefilter.candidates(&view, &[0], &mut out);
        out
    };
    let mut hit = support_event(EventKind::ProcessStart);
    hit.data.set_field(
        "CurrentDirectory",
        Cow::Borrowed("C:\\Windows\\PERFC.DAT\\"),
    );
    let miss = support_event(EventKind::ProcessStart);
    assert_eq!(candidates(&mut prefilter, &hit), [0]);
    assert_eq!(candidates(&mut prefilter, &miss), [0u32; 0]);
    // A cap under the bytes the prefilter reads, so that it scans them rather than give up.
    let config = RuntimeConfig {
        max_event_bytes: rulebox_sigma_eval::MAX_SCANNED_BYTES / 2,
        ..RuntimeConfig::default()
    };
    let events =
        rulebox_validate::named::Named::of(&program).at_cap(EventKind::ProcessStart, &config);
    assert!(
        events.len() > 3,
        "every text field at the cap: {}",
        events.len()
    );
    let reaching: Vec<_> = events
        .iter()
        .filter(|e| e.label.ends_with("reaching the rule"))
        .collect();
    assert!(
        reaching.len() > 3,
        "every text field at the cap, reaching the rule: {} of {}",
        reaching.len(),
        events.len()
    );
    for e in reaching {
        let carrier = e
            .event
            .extra
            .iter()
            .find(|f| f.name == rulebox_validate::named::KEYWORD_CARRIER);
        assert!(
            carrier.is_some_and(|f| f.value.contains("\\perfc.dat")),
            "{} carries the keyword",
            e.label
        );
        assert_eq!(
            candidates(&mut prefilter, &e.event),
            [0],
            "{} reaches the rule",
            e.label
        );
    }
}

/// An event of `kind` with no field set.
fn support_event(kind: EventKind) -> Event<'static> {
    Event::new(rulebox_sdk::EventData::empty(kind))
}

/// The candidates `pack` names on `event` among every rule of its kind (a pack's own prefilter, or
/// a shared index's), and those rules.
fn named(pack: &mut SigmaPack, kinds: &[rulebox_sdk::EventKinds], event: &Event<'_>) -> Vec<u32> {
    let bytes = event.to_bytes().expect("the event encodes");
    let view = rulebox_sdk::EventView::new(&bytes).expect("the event reads");
    let subscribed: Vec<u32> = (0..kinds.len())
        .filter(|&r| kinds[r].contains(event.kind()))
        .map(|r| u32::try_from(r).expect("under 4 billion rules"))
        .collect();
    let mut out = Vec::new();
    pack.candidates(&view, &subscribed, &mut out);
    out
}

/// The shared prefilter index (`rulebox_sigma::index_data`) of the SigmaHQ set cut into packs, as
/// `rulebox sigma compile` cuts it, names on every corpus, boundary and generated event every rule
/// each pack's own prefilter names (which the differential tests above show finds every
/// detection), in that pack's numbering: so a pack given the index's list finds what it finds
/// alone.
#[test]
fn the_shared_index_names_every_rule_each_packs_own_prefilter_names() {
    let (Some(hq), Some(dir)) = (
        shared("RULEBOX_SIGMAHQ_CORPUS", "../../shared/corpus/sigmahq"),
        shared("RULEBOX_SIGMA_CORPUS", "../../shared/corpus/sigma"),
    ) else {
        eprintln!(
            "SKIPPED: no SigmaHQ rules or Sigma corpus events (set RULEBOX_SIGMAHQ_CORPUS and RULEBOX_SIGMA_CORPUS, or put them under ../shared/corpus)"
        );
        return;
    };
    // The rules `rulebox sigma compile` packs: those under the program size cap.
    let (programs, records): (Vec<_>, Vec<_>) = compile_all(&yaml_files(&hq))
        .into_iter()
        .filter_map(|p| rulebox_sigma::rule_record(&p).ok().map(|r| (p, r)))
        .unzip();
    let packs = rulebox_sigma::split_packs(&records, "sigma", rulebox_sigma::MAX_PACK_DATA_BYTES);
    assert!(packs.len() > 3, "{} packs", packs.len());
    let data = rulebox_sigma::index_data("sigma-index", packs.iter().map(|(_, d)| d.as_slice()))
        .expect("the index builds");
    let mut index = SigmaPack::load(&data).expect("the index loads");
    let meta_rules: Vec<rulebox_sdk::EventKinds> = index
        .metadata()
        .rules
        .iter()
        .map(|r| r.subscriptions)
        .collect();
    assert_eq!(
        meta_rules.len(),
        programs.len(),
        "the index covers every rule"
    );
    assert_eq!(
        index.metadata().name,
        rulebox_sigma_eval::INDEX_PACK_NAME,
        "the host recognizes it"
    );
    let mut loaded: Vec<(SigmaPack, Vec<rulebox_sdk::EventKinds>, u32)> = Vec::new();
    let mut base = 0u32;
    for (_, d) in &packs {
        let pack = SigmaPack::load(d).expect("a pack loads");
        let kinds: Vec<_> = pack
            .metadata()
            .rules
            .iter()
            .map(|r| r.subscriptions)
            .collect();
        let n = u32::try_from(kinds.len()).expect("under 4 billion rules");
        loaded.push((pack, kinds, base));
        base += n;
    }
    let corpus = corpus_events(&dir);
    let mut events = corpus.clone();
    events.extend(boundary_events(&programs).into_iter().step_by(3));
    events.extend(mutations(
        &corpus,
        &programs,
        corpus.len(),
        &mut Rng(0x5eed_0003),
    ));
    let (mut own_total, mut index_total) = (0usize, 0usize);
    for (k, event) in events.iter().enumerate() {
        let all = named(&mut index, &meta_rules, event);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "increasing");
        index_total += all.len();
        for (pack, kinds, base) in &mut loaded {
            let end = *base + u32::try_from(kinds.len()).expect("under 4 billion rules");
            let from_index: Vec<u32> = all
                .iter()
                .filter(|&&g| (*base..end).contains(&g))
                .map(|&g| g - *base)
                .collect();
            let own = named(pack, kinds, event);
            own_total += own.len();
            for r in &own {
                assert!(
                    from_index.binary_search(r).is_ok(),
                    "event #{k} ({:?}): the index leaves out rule {r} its pack's prefilter names",
                    event.kind()
                );
            }
        }
    }
    eprintln!(
        "SigmaHQ in {} packs: {} events, candidates per event {:.2} from the index, {:.2} from the packs' own prefilters",
        packs.len(),
        events.len(),
        index_total as f64 / events.len() as f64,
        own_total as f64 / events.len() as f64
    );
    assert!(
        index_total > 0,
        "the index named no rule: nothing was compared"
    );
}
