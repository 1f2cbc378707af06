//! rulebox's Sigma detections against rsigma's, rule by rule, on the whole SigmaHQ Windows set
//! and every event of the Sigma corpus, with both engines loaded exactly as the `sigma_scale`
//! bench loads them (`sigma_common.rs`): rulebox sandboxed as shipped (rule packs of the Sigma
//! engine, every limit on, the prefilter on), rsigma-eval 0.23 without its cross-rule index,
//! routed by logsource.
//!
//! Run with `cargo bench -p rulebox-benches --bench sigma_agree` (or, without a release build,
//! `cargo test --workspace --bench sigma_agree`). It prints every rule either engine fires,
//! with each engine's count of events, then every (rule, event) pair only one engine fires, with
//! the event's case and the fields the rule reads (their values escaped and cut); and checks that
//! with the whole set loaded each corpus case's rule fires on its own events. It exits non-zero
//! when the disagreements differ from `benches/golden/sigma_agree.txt` (one
//! `<rule id> <engine that fired> <case>#<event>` a line; `#` comments), when a case's rule does
//! not fire on its events, or when a rule is quarantined: so a change in either engine shows.
//! `SIGMA_AGREE_BLESS=1` rewrites the golden file with this run's disagreements (its comment
//! lines kept). Prints SKIPPED and exits 0 when a corpus is absent.

mod sigma_common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use rulebox_runtime::{BatchOutcome, Runtime};
use rulebox_sdk::{Event, Value};
use sigma_common::{
    Corpus, Prefilter, rsigma_engine, rsigma_matches, rsigma_pass, rulebox_pass, rulebox_set,
};

/// The golden file of expected disagreements.
fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/sigma_agree.txt")
}

/// Which engine fired on a pair the other did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Only {
    Rulebox,
    Rsigma,
}

impl Only {
    fn name(self) -> &'static str {
        match self {
            Only::Rulebox => "rulebox",
            Only::Rsigma => "rsigma",
        }
    }
}

/// `text` escaped for a terminal and cut to `max` characters.
fn shown(text: &str, max: usize) -> String {
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &escaped[..i]),
        None => escaped,
    }
}

/// The fields `program` reads, each with `event`'s value.
fn fields_read(program: &rulebox_sigma::Program<'_>, event: &Event<'_>) -> String {
    let mut out = String::new();
    for f in &program.fields {
        let name = f.names.first().map_or("", String::as_str);
        let value = f.names.iter().find_map(|n| event.field(n));
        let value = match value {
            Some(Value::Str(s)) => format!("'{}'", shown(s, 100)),
            Some(Value::Int(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            None => "absent".into(),
        };
        let _ = write!(out, "\n        {}={value}", shown(name, 60));
    }
    if program.scans.iter().any(|s| s.field.is_none()) {
        out.push_str("\n        (keywords: every field)");
    }
    out
}

/// The golden file's disagreement lines, without comments; and its comment lines.
fn read_golden() -> (BTreeSet<String>, Vec<String>) {
    let text = std::fs::read_to_string(golden_path()).unwrap_or_default();
    let mut lines = BTreeSet::new();
    let mut comments = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('#') {
            comments.push(line.to_owned());
        } else if !line.trim().is_empty() {
            lines.insert(line.trim().to_owned());
        }
    }
    (lines, comments)
}

fn main() {
    let Some(corpus) = Corpus::load() else {
        return;
    };
    let Corpus {
        files,
        refused,
        rules,
        events,
        event_cases,
        cases: case_list,
        rsigma_events,
    } = corpus;
    let cases = event_cases;
    let n = events.len();
    println!(
        "{files} SigmaHQ rule files: {} compiled by rulebox ({refused} refused); {n} corpus events",
        rules.len()
    );
    let by_key: HashMap<&str, usize> = rules
        .iter()
        .enumerate()
        .rev()
        .flat_map(|(i, r)| [(r.program.title.as_str(), i), (r.program.id.as_str(), i)])
        .collect();

    // rsigma: the rule indices each event fires.
    let (engine, rs_refused) = rsigma_engine(&rules, false);
    println!(
        "rsigma loads {} of them ({rs_refused} refused)",
        engine.rule_count()
    );
    let mut unknown = BTreeSet::new();
    let rsigma: Vec<BTreeSet<usize>> = rsigma_events
        .iter()
        .map(|e| rule_indices(&rsigma_matches(&engine, e), &by_key, &mut unknown))
        .collect();
    // As rsigma's CLI runs without a processing pipeline: every rule on every event.
    let unrouted: Vec<BTreeSet<usize>> = rsigma_events
        .iter()
        .map(|e| {
            let json = rsigma_eval::JsonEvent::borrow(&e.json);
            rule_indices(&engine.evaluate(&json), &by_key, &mut unknown)
        })
        .collect();
    let rsigma_total = rsigma_pass(&engine, &rsigma_events);

    // rulebox, sandboxed: the rule indices each event fires, and any quarantine.
    let runtime = Runtime::new(rulebox_benches::bench_config()).expect("runtime");
    let rt = runtime.clone();
    let ev = events.clone();
    let ids: HashMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.program.id.clone(), i))
        .collect();
    let (rulebox, rulebox_total, quarantined, refused_events, rules) =
        runtime.run_sandboxed(move |thread| {
            let mut set = rulebox_set(&rt, thread, &rules, Prefilter::Shared);
            let mut out = BatchOutcome::default();
            let total = rulebox_pass(&mut set, thread, &ev, &mut out);
            let mut refused = Vec::new();
            let per_event: Vec<BTreeSet<usize>> = out
                .iter()
                .enumerate()
                .map(|(i, o)| match o {
                    Ok(o) => o
                        .detections
                        .iter()
                        .filter_map(|d| ids.get(&d.rule.id).copied())
                        .collect(),
                    Err(e) => {
                        refused.push(format!("event {i}: {e}"));
                        BTreeSet::new()
                    }
                })
                .collect();
            // The shared index changes no detection: the same packs, each with its own
            // prefilter, fire the same rules on every event.
            assert!(
                set.stats().index_scans > 0 && set.stats().index_faults == 0,
                "the shared index scanned the events: {:?}",
                set.stats()
            );
            let mut own = rulebox_set(&rt, thread, &rules, Prefilter::PerPack);
            let mut own_out = BatchOutcome::default();
            rulebox_pass(&mut own, thread, &ev, &mut own_out);
            let fired = |o: Option<&rulebox_runtime::Outcome>| -> BTreeSet<String> {
                o.map(|o| o.detections.iter().map(|d| d.rule.id.clone()).collect())
                    .unwrap_or_default()
            };
            for (i, (a, b)) in out.iter().zip(own_out.iter()).enumerate() {
                assert_eq!(
                    fired(a.ok()),
                    fired(b.ok()),
                    "event {i}: the shared index and the packs' own prefilters disagree"
                );
            }
            let quarantined: Vec<String> = set
                .records()
                .iter()
                .map(|r| format!("{}: {}: {}", r.rule_id, r.reason, r.message))
                .collect();
            (per_event, total, quarantined, refused, rules)
        });

    // Per rule: events fired by each engine; per pair: which engine alone.
    let mut counts: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut only: Vec<(usize, usize, Only)> = Vec::new();
    for (e, (ours, theirs)) in rulebox.iter().zip(&rsigma).enumerate() {
        for &r in ours {
            counts.entry(r).or_default().0 += 1;
        }
        for &r in theirs {
            counts.entry(r).or_default().1 += 1;
        }
        only.extend(ours.difference(theirs).map(|&r| (r, e, Only::Rulebox)));
        only.extend(theirs.difference(ours).map(|&r| (r, e, Only::Rsigma)));
    }
    only.sort_by(|a, b| {
        let (ra, rb) = (&rules[a.0].program.id, &rules[b.0].program.id);
        (ra, a.1, a.2).cmp(&(rb, b.1, b.2))
    });
    // The event's position within its case, for a name that survives other cases being added.
    let mut index_in_case = Vec::with_capacity(n);
    for (i, case) in cases.iter().enumerate() {
        let k = if i > 0 && cases[i - 1] == *case {
            index_in_case[i - 1] + 1
        } else {
            0
        };
        index_in_case.push(k);
    }
    let pair_name = |(r, e, who): (usize, usize, Only)| {
        format!(
            "{} {} {}#{}",
            rules[r].program.id,
            who.name(),
            cases[e],
            index_in_case[e]
        )
    };

    let mut fired: Vec<(&usize, &(usize, usize))> = counts.iter().collect();
    fired.sort_by(|a, b| rules[*a.0].program.id.cmp(&rules[*b.0].program.id));
    println!(
        "\nRules either engine fires ({} rules; events fired on by each):",
        fired.len()
    );
    println!(
        "  {:<38} {:>7} {:>7}  title",
        "rule id", "rulebox", "rsigma"
    );
    for &(&r, &(ours, theirs)) in &fired {
        let mark = if ours == theirs { ' ' } else { '≠' };
        println!(
            "{mark} {:<38} {ours:>7} {theirs:>7}  {}",
            shown(&rules[r].program.id, 38),
            shown(&rules[r].program.title, 70)
        );
    }
    println!(
        "\ndetections per pass: rulebox {rulebox_total}, rsigma {rsigma_total}; {} pairs fired by one engine alone ({} rulebox only, {} rsigma only)",
        only.len(),
        only.iter().filter(|p| p.2 == Only::Rulebox).count(),
        only.iter().filter(|p| p.2 == Only::Rsigma).count(),
    );
    for &(r, e, who) in &only {
        println!(
            "  {}: only {} fires; case {}, event {} of it; the fields the rule reads:{}",
            shown(&rules[r].program.id, 40),
            who.name(),
            cases[e],
            index_in_case[e],
            fields_read(&rules[r].program, &events[e])
        );
    }
    let mut failed = false;
    if !unknown.is_empty() {
        println!("\nrsigma detections naming no loaded rule: {unknown:?}");
        failed = true;
    }
    for q in &quarantined {
        println!("QUARANTINED: {}", shown(q, 200));
        failed = true;
    }
    for r in &refused_events {
        println!("EVENT REFUSED: {}", shown(r, 200));
        failed = true;
    }

    unrouted_summary(&rules, &events, &rsigma, &unrouted);

    // The corpus cases, with the whole set loaded: each case's rule fires on its own events.
    failed |= !cases_fire(&rules, &case_list, &cases, &rulebox);

    // The golden file.
    let now: BTreeSet<String> = only.iter().copied().map(pair_name).collect();
    let (want, comments) = read_golden();
    if std::env::var_os("SIGMA_AGREE_BLESS").is_some() {
        let mut text = comments.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        for line in &now {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(golden_path(), text).expect("the golden file writes");
        println!("\nwrote {} ({} pairs)", golden_path().display(), now.len());
    } else if now != want {
        println!(
            "\nDISAGREEMENTS CHANGED against {}:",
            golden_path().display()
        );
        for line in now.difference(&want) {
            println!("  new:  {line}");
        }
        for line in want.difference(&now) {
            println!("  gone: {line}");
        }
        failed = true;
    } else {
        println!(
            "\nthe disagreements are the {} expected ({})",
            now.len(),
            golden_path().display()
        );
    }
    if failed {
        std::process::exit(1);
    }
}

/// The loaded rules (indices into the rules) that rsigma's `results` name; a result naming none
/// goes to `unknown`.
fn rule_indices(
    results: &[rsigma_eval::EvaluationResult],
    by_key: &HashMap<&str, usize>,
    unknown: &mut BTreeSet<String>,
) -> BTreeSet<usize> {
    results
        .iter()
        .filter_map(|m| {
            let key = m.header.rule_id.as_deref().unwrap_or(&m.header.rule_title);
            let found = by_key
                .get(key)
                .or_else(|| by_key.get(m.header.rule_title.as_str()))
                .copied();
            if found.is_none() {
                unknown.insert(shown(key, 80));
            }
            found
        })
        .collect()
}

/// What rsigma fires without logsource routing (`Engine::evaluate`, as its CLI without a
/// pipeline) beyond what it fires routed: prints the count, and every extra pair whose event is
/// of a kind the rule's logsource does subscribe to (a rule of the event's kind that routing
/// turned away: its channel, provider or event id).
fn unrouted_summary(
    rules: &[sigma_common::Rule],
    events: &[Event<'_>],
    routed: &[BTreeSet<usize>],
    unrouted: &[BTreeSet<usize>],
) {
    let total: usize = unrouted.iter().map(BTreeSet::len).sum();
    let mut extra = 0;
    let mut extra_rules = BTreeSet::new();
    let mut of_kind = Vec::new();
    let mut fewer = 0;
    for (e, (with, without)) in routed.iter().zip(unrouted).enumerate() {
        fewer += with.difference(without).count();
        for &r in without.difference(with) {
            extra += 1;
            extra_rules.insert(r);
            if rules[r].program.kinds.contains(events[e].kind()) {
                of_kind.push((r, e));
            }
        }
    }
    println!(
        "\nrsigma without logsource routing (`evaluate`): {total} detections per pass, {extra} pairs more than routed over {} rules ({} of them of a kind the rule subscribes to), {fewer} fewer",
        extra_rules.len(),
        of_kind.len()
    );
    for &r in &extra_rules {
        let pairs = routed
            .iter()
            .zip(unrouted)
            .filter(|(with, without)| without.contains(&r) && !with.contains(&r))
            .count();
        println!(
            "  {pairs:>3} more: {} {}",
            shown(&rules[r].program.id, 40),
            shown(&rules[r].program.title, 70)
        );
    }
    for (r, e) in of_kind {
        println!(
            "  {} on event {e} ({}): its logsource's channel, provider or event id is not the event's",
            shown(&rules[r].program.id, 40),
            events[e].kind().name()
        );
    }
}

/// Whether every corpus case's rule (by id, in the whole set) fires on at least one of its own
/// events; prints the result and each failure.
fn cases_fire(
    rules: &[sigma_common::Rule],
    case_list: &[(String, Option<String>)],
    event_cases: &[String],
    fired: &[BTreeSet<usize>],
) -> bool {
    let ids: HashMap<&str, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.program.id.as_str(), i))
        .collect();
    let mut ok = 0;
    let mut failures = Vec::new();
    for (name, id) in case_list {
        let Some(id) = id else {
            failures.push(format!("{name}: its rule does not compile"));
            continue;
        };
        let Some(&r) = ids.get(id.as_str()) else {
            failures.push(format!(
                "{name}: its rule id {id} is not in the SigmaHQ set"
            ));
            continue;
        };
        let own = event_cases
            .iter()
            .zip(fired)
            .filter(|(c, f)| *c == name && f.contains(&r))
            .count();
        if own == 0 {
            failures.push(format!("{name}: did not fire on its own events"));
        } else {
            ok += 1;
        }
    }
    println!(
        "\ncorpus cases whose rule fires on its own events with the whole set loaded: {ok} of {}",
        case_list.len()
    );
    for f in &failures {
        println!("  CASE FAILS: {}", shown(f, 200));
    }
    failures.is_empty()
}
