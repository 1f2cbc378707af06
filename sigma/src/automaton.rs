//! Patterns over characters determinized into one [`Dfa`] for the evaluator, with `regex-automata`.
//!
//! The patterns go through a Thompson NFA into a dense DFA that reports every pattern (`MatchKind::All`),
//! minimized; the compiler then walks its states from the start state and writes them out in the
//! evaluator's format: ordinary states first, then the special ones (match, dead, and those a scan
//! can skip over because they loop on most bytes). Counted repetitions, alternations and wildcards
//! become states, never work per byte.

use std::collections::HashMap;

use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::Hir;
use std::borrow::Cow;

use rulebox_sigma_eval::{Dfa, MAX_TRANSITIONS, START_BYTES, Special, Starts};

/// How an automaton scans its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// From the start, every pattern anchored there (prefixes, whole values): the scan stops as soon
    /// as no pattern can match any more.
    Anchored,
    /// From the end backwards, every pattern anchored there (suffixes).
    Reverse,
    /// From the start, each pattern matching anywhere (it anchors itself with `\A`/`\z` if it must).
    Unanchored,
}

/// The NFA may take this much memory while it is built.
const NFA_BYTES: usize = 16 << 20;
/// Determinization may take this much memory.
const DETERMINIZE_BYTES: usize = 128 << 20;
/// The dense DFA may take this much memory before its byte classes are merged and it is checked
/// against the evaluator's [`MAX_TRANSITIONS`].
const DENSE_BYTES: usize = 64 << 20;
/// DFAs up to this size are minimized (larger ones, in practice big literal sets, come out of
/// determinization close to minimal, and minimizing them costs seconds).
const MINIMIZE_BYTES: usize = 16 << 20;

/// A state that loops on at least this many of the 256 bytes, or on this many of the 128 ASCII
/// bytes ([`SKIP_ASCII_LOOPS`]), is worth skipping over...
const SKIP_LOOPS: usize = 128;
/// The ASCII bytes a state must loop on to be skipped over when it does not loop on the bytes above
/// ASCII: the middle of a pattern such as `cmd*powershell` or `.+` under Unicode, where every
/// byte of a multi-byte character leaves the state (for the states decoding it). Its skip stops at
/// every such byte, which the skip's set (`Nibbles::of_set`) keeps exact.
const SKIP_ASCII_LOOPS: usize = 100;
/// ...when at most this many frequent bytes (letters, digits, common punctuation) leave it.
const MAX_COMMON_ESCAPES: usize = 6;

/// Why patterns did not become an automaton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// It would have more transitions than the evaluator takes (or building it needs too much memory).
    TooLarge,
    /// `regex-automata` refused the patterns (a construct the DFA cannot run).
    Unsupported(String),
}

/// Determinizes `patterns` (pattern `i` is reported as number `i`) for `mode`; in an unanchored
/// search, pattern `i`'s starts go to start-filter bucket `buckets[i]` (bucket 0 when `buckets` is
/// empty).
///
/// `groups` (empty: each pattern its own) says which patterns the caller treats as one: where any
/// of a group matches, the caller does not ask which (the values of one Sigma list). Such a group
/// is determinized as one pattern, the alternation of its members, and reported as its first
/// member: minimized that way, the states that differ only in which member is under way become
/// one. In `net*|*find` or `ping*|*find`, once one prefix has been seen, the others no longer
/// change what can match, so the state waiting for `|` loops on every other byte (a skip) instead
/// of following every `n`, `p`, `i` ... of the text.
pub fn build(
    patterns: &[Hir],
    mode: Mode,
    buckets: &[u8],
    groups: &[u16],
) -> Result<Dfa<'static>, BuildError> {
    let (merged, first) = by_group(patterns, groups);
    let mut dfa = determinize(&merged, mode, false)?;
    if dfa.memory_usage() <= MINIMIZE_BYTES {
        dfa = determinize(&merged, mode, true)?;
    }
    let anchored = mode != Mode::Unanchored;
    let config = start::Config::new().anchored(if anchored {
        Anchored::Yes
    } else {
        Anchored::No
    });
    let start = dfa
        .start_state(&config)
        .map_err(|e| BuildError::Unsupported(e.to_string()))?;
    // The idle states of a search: the start state for each byte before.
    let restart = if mode == Mode::Unanchored {
        (0..=255u8)
            .map(|b| {
                dfa.start_state(
                    &start::Config::new()
                        .anchored(Anchored::No)
                        .look_behind(Some(b)),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BuildError::Unsupported(e.to_string()))?
    } else {
        Vec::new()
    };
    let starts = if mode == Mode::Unanchored {
        starts(patterns, buckets)?
    } else {
        None
    };
    export(&dfa, start, &restart, mode, patterns.len(), &first, starts)
}

/// One pattern per group of `groups` (numbered from 0 in order of first appearance, as
/// `lower::local_groups` numbers them; empty: each pattern its own), the alternation of its
/// members; and per group, its first member (the pattern it is reported as).
fn by_group(patterns: &[Hir], groups: &[u16]) -> (Vec<Hir>, Vec<u16>) {
    let own = || {
        let first = (0..patterns.len())
            .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
            .collect();
        (patterns.to_vec(), first)
    };
    if groups.len() != patterns.len() {
        return own();
    }
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, &g) in groups.iter().enumerate() {
        match usize::from(g) {
            g if g < members.len() => members[g].push(i),
            g if g == members.len() => members.push(vec![i]),
            // Not numbered in order of first appearance: each pattern its own.
            _ => return own(),
        }
    }
    let merged = members
        .iter()
        .map(|m| match m.as_slice() {
            [one] => patterns[*one].clone(),
            _ => Hir::alternation(m.iter().map(|&i| patterns[i].clone()).collect()),
        })
        .collect();
    let first = members
        .iter()
        .map(|m| u16::try_from(m[0]).unwrap_or(u16::MAX))
        .collect();
    (merged, first)
}

/// The dense DFA of `patterns`.
fn determinize(
    patterns: &[Hir],
    mode: Mode,
    minimize: bool,
) -> Result<dense::DFA<Vec<u32>>, BuildError> {
    let refused = |e: &dyn std::fmt::Display| BuildError::Unsupported(e.to_string());
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .reverse(mode == Mode::Reverse)
                .which_captures(WhichCaptures::None)
                .nfa_size_limit(Some(NFA_BYTES)),
        )
        .build_many_from_hir(patterns)
        .map_err(|e| {
            if e.size_limit().is_some() {
                BuildError::TooLarge
            } else {
                refused(&e)
            }
        })?;
    let anchored = mode != Mode::Unanchored;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(if anchored {
                    StartKind::Anchored
                } else {
                    StartKind::Unanchored
                })
                .minimize(minimize)
                .accelerate(false)
                .byte_classes(true)
                .determinize_size_limit(Some(DETERMINIZE_BYTES))
                .dfa_size_limit(Some(DENSE_BYTES)),
        )
        .build_from_nfa(&nfa)
        .map_err(|e| {
            if e.is_size_limit_exceeded() {
                BuildError::TooLarge
            } else {
                refused(&e)
            }
        })
}

/// The start filter of an unanchored search for `patterns`, unless a pattern matches the empty
/// text (a match could start anywhere). From each pattern's anchored automaton, started after
/// every possible byte (a pattern may look behind) and at the start of the text: the first four
/// bytes its matches can start with, in its bucket.
fn starts(patterns: &[Hir], buckets: &[u8]) -> Result<Option<Starts>, BuildError> {
    let sound = patterns
        .iter()
        .all(|h| h.properties().minimum_len().is_some_and(|n| n > 0));
    if !sound || patterns.is_empty() {
        return Ok(None);
    }
    let mut bytes: [Vec<u8>; START_BYTES] = std::array::from_fn(|_| vec![0u8; 256]);
    for (i, pattern) in patterns.iter().enumerate() {
        let bit = 1u8 << buckets.get(i).copied().unwrap_or(0).min(7);
        let dfa = match determinize(std::slice::from_ref(pattern), Mode::Anchored, false) {
            Ok(dfa) => dfa,
            // The filter is an optimization: without it the scan is still right.
            Err(BuildError::TooLarge) => return Ok(None),
            Err(e) => return Err(e),
        };
        starts_of(&dfa, bit, &mut bytes)?;
    }
    Ok(Some(Starts {
        bytes,
        quads: Vec::new(),
        short: 0,
    }))
}

/// Adds to `bytes`, as `bit`, the first bytes of the matches of the anchored `dfa`.
fn starts_of(
    dfa: &dense::DFA<Vec<u32>>,
    bit: u8,
    bytes: &mut [Vec<u8>; START_BYTES],
) -> Result<(), BuildError> {
    let mut begins = Vec::new();
    for behind in std::iter::once(None).chain((0..=255u8).map(Some)) {
        let config = start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(behind);
        let s = dfa
            .start_state(&config)
            .map_err(|e| BuildError::Unsupported(e.to_string()))?;
        if !begins.contains(&s) {
            begins.push(s);
        }
    }
    // Breadth first, the states after each byte of a possible match, once each. A match is
    // reported one byte late: a pattern that ended at the previous byte shows in a match state,
    // after which any byte is allowed.
    let mut level = begins;
    for (k, table) in bytes.iter_mut().enumerate() {
        let mut next_level = Vec::new();
        for &s in &level {
            let ended = k > 0 && dfa.is_match_state(s);
            for b in 0..=255u8 {
                let t = dfa.next_state(s, b);
                if ended || !dfa.is_dead_state(t) {
                    table[usize::from(b)] |= bit;
                }
                if !dfa.is_dead_state(t) && !next_level.contains(&t) {
                    next_level.push(t);
                }
            }
        }
        level = next_level;
    }
    Ok(())
}

/// Writes `dfa`'s states reachable from `start` in the evaluator's format.
fn export(
    dfa: &dense::DFA<Vec<u32>>,
    start: StateID,
    restart: &[StateID],
    mode: Mode,
    patterns: usize,
    first: &[u16],
    starts: Option<Starts>,
) -> Result<Dfa<'static>, BuildError> {
    let classes = dfa.byte_classes();
    // The byte classes; the last class of `regex-automata` is the end of the text.
    let alphabet = classes.alphabet_len() - 1;
    let mut representative: Vec<Option<u8>> = vec![None; alphabet];
    for b in 0..=255u8 {
        representative[usize::from(classes.get(b))].get_or_insert(b);
    }
    let representative: Vec<u8> = representative.into_iter().flatten().collect();
    if representative.len() != alphabet {
        return Err(BuildError::Unsupported(
            "byte classes without a byte".into(),
        ));
    }
    // Every reachable state, in the order first seen.
    let mut index: HashMap<StateID, usize> = HashMap::new();
    let mut order: Vec<StateID> = Vec::new();
    let mut visit = |s: StateID, order: &mut Vec<StateID>| {
        index.entry(s).or_insert_with(|| {
            order.push(s);
            order.len() - 1
        });
    };
    visit(start, &mut order);
    for &s in restart {
        visit(s, &mut order);
    }
    let mut k = 0;
    while k < order.len() {
        let s = order[k];
        for &b in &representative {
            visit(dfa.next_state(s, b), &mut order);
        }
        visit(dfa.next_eoi_state(s), &mut order);
        k += 1;
        if order.len() * alphabet > MAX_TRANSITIONS {
            return Err(BuildError::TooLarge);
        }
    }
    let loops = |s: StateID| (0..=255u8).filter(|&b| dfa.next_state(s, b) == s).count();
    let ascii_loops = |s: StateID| (0..=127u8).filter(|&b| dfa.next_state(s, b) == s).count();
    // How many bytes frequent in command lines and paths leave the state: a skip that such bytes
    // stop at once costs more than it saves.
    let common_escapes = |s: StateID| {
        (0..=255u8)
            .filter(|&b| {
                (b.is_ascii_alphanumeric() || b" -_./\\:\"".contains(&b))
                    && dfa.next_state(s, b) != s
            })
            .count()
    };
    let kind = |s: StateID| -> Result<Option<Special>, BuildError> {
        if dfa.is_quit_state(s) {
            return Err(BuildError::Unsupported("a quit state".into()));
        }
        // The determinized patterns are groups: each is reported as its first member.
        let mut matches: Vec<u16> = if dfa.is_match_state(s) {
            (0..dfa.match_len(s))
                .map(|i| first.get(dfa.match_pattern(s, i).as_usize()).copied())
                .collect::<Option<_>>()
                .ok_or_else(|| BuildError::Unsupported("a match of an unknown pattern".into()))?
        } else {
            Vec::new()
        };
        matches.sort_unstable();
        matches.dedup();
        let dead = dfa.is_dead_state(s);
        let accelerate = mode != Mode::Reverse
            && !dead
            && ((restart.contains(&s) && starts.is_some())
                || ((loops(s) >= SKIP_LOOPS || ascii_loops(s) >= SKIP_ASCII_LOOPS)
                    && common_escapes(s) <= MAX_COMMON_ESCAPES));
        Ok(
            (dead || accelerate || !matches.is_empty()).then_some(Special {
                dead,
                accelerate,
                matches,
            }),
        )
    };
    // Ordinary states first, then the special ones.
    let mut ordinary = Vec::new();
    let mut special = Vec::new();
    for &s in &order {
        match kind(s)? {
            None => ordinary.push(s),
            Some(sp) => special.push((s, sp)),
        }
    }
    // The states special only to be skipped from (idle, or looping on most bytes; no match, not
    // dead) first among the special ones: a scan stepping through the table where the skips do
    // not pay treats them as ordinary (the evaluator's boundary after them).
    special.sort_by_key(|(_, sp)| sp.dead || !sp.matches.is_empty());
    let mut number: HashMap<StateID, u32> = HashMap::new();
    for (i, s) in ordinary
        .iter()
        .copied()
        .chain(special.iter().map(|(s, _)| *s))
        .enumerate()
    {
        number.insert(s, u32::try_from(i).map_err(|_| BuildError::TooLarge)?);
    }
    let id = |s: StateID| number[&s];
    let states: Vec<StateID> = ordinary
        .iter()
        .copied()
        .chain(special.iter().map(|(s, _)| *s))
        .collect();
    // Byte classes come from range boundaries, so `A` and `a` are two classes that every state
    // treats alike: merge classes whose transitions (and so whose columns) are the same.
    let column = |c: usize| -> Vec<u32> {
        states
            .iter()
            .map(|&s| id(dfa.next_state(s, representative[c])))
            .collect()
    };
    let mut merged: Vec<usize> = Vec::with_capacity(alphabet);
    let mut columns: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut kept: Vec<u8> = Vec::new();
    for (c, &r) in representative.iter().enumerate().take(alphabet) {
        let n = columns.len();
        let k = *columns.entry(column(c)).or_insert_with(|| {
            kept.push(r);
            n
        });
        merged.push(k);
    }
    let representative = kept;
    let alphabet = representative.len();
    let byte_class: Vec<u8> = (0..=255u8)
        .map(|b| u8::try_from(merged[usize::from(classes.get(b))]).unwrap_or(u8::MAX))
        .collect();
    let cells = states.len() * alphabet;
    let width: u8 = if cells <= 1 << 16 { 2 } else { 4 };
    let mut next = Vec::with_capacity(cells * usize::from(width));
    let mut eoi = Vec::with_capacity(states.len());
    let step = u32::try_from(alphabet).map_err(|_| BuildError::TooLarge)?;
    for &s in &states {
        for &b in &representative {
            // Premultiplied: the row of the target.
            let target = id(dfa.next_state(s, b)) * step;
            if width == 2 {
                let t = u16::try_from(target).map_err(|_| BuildError::TooLarge)?;
                next.extend_from_slice(&t.to_le_bytes());
            } else {
                next.extend_from_slice(&target.to_le_bytes());
            }
        }
        eoi.push(id(dfa.next_eoi_state(s)));
    }
    let out = Dfa {
        reverse: mode == Mode::Reverse,
        classes: byte_class,
        alphabet: u16::try_from(alphabet).map_err(|_| BuildError::TooLarge)?,
        width,
        next: Cow::Owned(next),
        eoi,
        start: id(start),
        special: u32::try_from(ordinary.len()).map_err(|_| BuildError::TooLarge)?,
        specials: special.into_iter().map(|(_, sp)| sp).collect(),
        patterns: u16::try_from(patterns).map_err(|_| BuildError::TooLarge)?,
        starts,
        restart: restart.iter().map(|&s| id(s)).collect(),
        groups: Vec::new(),
        buckets: Vec::new(),
    };
    out.check()
        .map_err(|e| BuildError::Unsupported(format!("the exported automaton: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case;
    use rulebox_sigma_eval::Automaton;

    fn found(dfa: Dfa<'_>, text: &str) -> Vec<u16> {
        let n = dfa.patterns;
        let a = Automaton::new(dfa).unwrap();
        let mut st = a.state();
        a.scan(text.as_bytes(), &mut st);
        (0..n).filter(|&p| st.found(p)).collect()
    }

    fn lits(texts: &[&str]) -> Vec<Hir> {
        texts.iter().map(|t| case::literal(t, false)).collect()
    }

    #[test]
    fn every_pattern_in_one_pass() {
        let dfa = build(
            &lits(&["mimikatz", "sekurlsa", "kat"]),
            Mode::Unanchored,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(found(dfa.clone(), "run MIMIKATZ now"), [0, 2]);
        assert_eq!(found(dfa.clone(), "sekurlsa::logonpasswords"), [1]);
        assert_eq!(found(dfa, "nothing"), Vec::<u16>::new());
    }

    #[test]
    fn anchored_and_reverse() {
        let exact = Hir::concat(vec![case::literal("cmd.exe", false), case::end()]);
        let dfa = build(
            &[case::literal("c:\\", false), exact],
            Mode::Anchored,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(found(dfa.clone(), "C:\\x"), [0]);
        assert_eq!(found(dfa.clone(), "CMD.EXE"), [1]);
        assert_eq!(found(dfa, "cmd.exe "), Vec::<u16>::new());
        let dfa = build(&lits(&["\\cmd.exe", ".exe"]), Mode::Reverse, &[], &[]).unwrap();
        assert_eq!(found(dfa.clone(), "C:\\Windows\\CMD.EXE"), [0, 1]);
        assert_eq!(found(dfa, "C:\\cmd.exe.txt"), Vec::<u16>::new());
    }

    /// A match state met again and again (`powershell` in every line) becomes quiet once it has
    /// recorded its patterns (its entries lead to an ordinary twin): what the scan finds is what
    /// a scan through the byte classes, which has no twins, finds; and the table is put back
    /// when the scan ends, so the next scan, with a fresh state, finds the same patterns again.
    #[test]
    fn a_pattern_found_again_and_again_stays_found_and_the_next_scan_finds_it_again() {
        let dfa = build(
            &lits(&["powershell", "-enc", "late", "never"]),
            Mode::Unanchored,
            &[],
            &[],
        )
        .unwrap();
        let rows = Automaton::new(dfa.clone()).unwrap();
        let classes = Automaton::within(dfa, &mut 0).unwrap();
        assert!(rows.has_byte_rows() && !classes.has_byte_rows());
        let line = "powershell.exe -enc SQBFAFgA C:\\Windows\\Temp\\a.exe ";
        let texts = [
            line.repeat(300) + "late",
            line.repeat(300),
            "LATE then POWERSHELL".to_owned(),
            "-enc".to_owned(),
            String::new(),
        ];
        for round in 0..2 {
            for text in &texts {
                let (mut a, mut b) = (rows.state(), classes.state());
                rows.scan(text.as_bytes(), &mut a);
                classes.scan(text.as_bytes(), &mut b);
                assert_eq!(
                    a.bits(),
                    b.bits(),
                    "round {round}, {:?}",
                    &text[..text.len().min(40)]
                );
            }
        }
        // One state kept across texts (a keyword scan over several fields): the first text's
        // patterns stay found, the second's are added.
        let mut st = rows.state();
        rows.scan(line.repeat(50).as_bytes(), &mut st);
        rows.scan(b"late", &mut st);
        let found: Vec<u16> = (0..4).filter(|&p| st.found(p)).collect();
        assert_eq!(found, [0, 1, 2]);
    }

    /// The values of one Sigma list (one group) are determinized as one pattern, reported as the
    /// first: the automaton answers "some value matched" as the patterns apart do, and once one
    /// wildcard value's first literal is seen, the state waiting for its next one loops on every
    /// byte but that one (a skip), instead of following every other value's start.
    #[test]
    fn a_list_is_one_pattern_and_a_wildcard_under_way_waits_for_its_next_literal_alone() {
        let glob = |first: &str| {
            Hir::concat(vec![
                case::literal(first, false),
                case::any_text(),
                case::literal("|", false),
                case::any_text(),
                case::literal("find", false),
            ])
        };
        let firsts = ["ipconfig", "net", "ping", "whoami"];
        let mut patterns: Vec<Hir> = firsts.iter().map(|f| glob(f)).collect();
        patterns.push(case::literal("\\xampp\\", false));
        let groups = [0, 0, 0, 0, 1];
        let apart = build(&patterns, Mode::Unanchored, &[], &[]).unwrap();
        let one = build(&patterns, Mode::Unanchored, &[], &groups).unwrap();
        assert_eq!(
            one.patterns, apart.patterns,
            "every pattern keeps its number"
        );
        assert!(
            one.states() * 4 < apart.states(),
            "{} states as one pattern, {} apart",
            one.states(),
            apart.states()
        );
        let texts = [
            "ping x | findstr y",
            "TASKLIST /v|FIND \\xampp\\",
            "whoami then | nothing",
            "net user | more & net view | find",
            "nothing here \\xampp\\",
            "",
        ];
        for text in texts {
            let a = found(apart.clone(), text);
            let o = found(one.clone(), text);
            let list = |f: &[u16]| f.iter().any(|&p| p < 4);
            assert_eq!(list(&o), list(&a), "the list on {text:?}");
            assert_eq!(o.contains(&4), a.contains(&4), "the literal on {text:?}");
            assert!(
                o.iter().all(|&p| p == 0 || p == 4),
                "as the first value: {o:?}"
            );
        }
        // After `ping`, the scan waits for `|` alone: a state that every byte but `|` (and the
        // literal's `\`) leaves to itself, which the scan skips from.
        let waiting = one.specials.iter().filter(|sp| sp.accelerate).count();
        assert!(
            waiting >= 2,
            "the idle state and the one waiting for `|` are skipped from"
        );
    }

    /// Text that the skips stop in every few bytes (near misses of the patterns' starts, and of
    /// what leaves a looping state, as anyone who can start a process can write into a command
    /// line) is stepped through the table rather than skipped over stop by stop, and the answers
    /// are those of the automaton without its skips.
    #[test]
    fn near_misses_the_skips_stop_at_are_stepped_not_skipped() {
        let re = |p: &str| regex_syntax::ParserBuilder::new().build().parse(p).unwrap();
        let patterns = vec![
            case::literal("get-chromedump", false),
            case::literal("get-foxdump", false),
            case::literal("invoke-allchecks", false),
            case::literal("add-persistence", false),
            re(r"\\users\\[^\\]+\\appdata\\[^\\]+\.ps1"),
            re(r"https?://0[0-9]{3,11}"),
        ];
        let filtered = build(&patterns, Mode::Unanchored, &[], &[]).unwrap();
        assert!(
            filtered.starts.is_some(),
            "the start filter under test exists"
        );
        let mut plain = filtered.clone();
        plain.starts = None;
        for sp in &mut plain.specials {
            sp.accelerate = false;
        }
        let near =
            "Get-Chromedum Invoke-AllCheck add-persistenc http://01 \\users\\x\\appdata\\y\\a.ps "
                .repeat(3000);
        let texts = [
            near.clone(),
            near.clone() + "INVOKE-ALLCHECKS",
            "x".repeat(5000) + &near + "get-foxdump" + &"y".repeat(3000) + " http://01234",
            "get-foxdump".to_owned() + &near + "\\users\\me\\appdata\\t\\evil.ps1",
            // A pattern found again in every few bytes (its match state stepped through once
            // found), then another one, and a regex found over and over.
            "Get-FoxDump Invoke-AllCheck ".repeat(4000) + "add-persistence",
            "http://01234 get-foxdump ".repeat(4000) + &near + "get-chromedump",
        ];
        let (a, b) = (
            Automaton::new(filtered).unwrap(),
            Automaton::new(plain).unwrap(),
        );
        for text in &texts {
            let (mut st, mut reference) = (a.state(), b.state());
            a.scan(text.as_bytes(), &mut st);
            b.scan(text.as_bytes(), &mut reference);
            assert_eq!(st.bits(), reference.bits(), "{}", &text[text.len() - 20..]);
            eprintln!(
                "{} skips, {} stepped of {}",
                st.skips(),
                st.stepped(),
                text.len()
            );
            assert!(
                st.skips() * 64 <= text.len(),
                "{} skips over {} bytes",
                st.skips(),
                text.len()
            );
        }
        // Text the filter passes over is skipped, not stepped.
        let mut st = a.state();
        a.scan("z".repeat(100_000).as_bytes(), &mut st);
        assert!(st.stepped() < 100, "{} bytes stepped", st.stepped());
        assert!(st.skips() < 4, "{} skips", st.skips());
    }

    #[test]
    fn counted_repetition_is_states_not_work() {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(".{1000,}")
            .unwrap();
        let dfa = build(&[hir], Mode::Unanchored, &[], &[]).unwrap();
        assert!(dfa.states() > 1000);
        assert_eq!(found(dfa.clone(), &"x".repeat(1000)), [0]);
        assert_eq!(found(dfa.clone(), &"x".repeat(999)), Vec::<u16>::new());
        let broken = "x".repeat(600) + "\n" + &"x".repeat(600);
        assert_eq!(found(dfa, &broken), Vec::<u16>::new());
    }
}
