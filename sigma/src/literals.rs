//! A set of case-insensitive literals found anywhere in a value, as one Aho-Corasick automaton in
//! the evaluator's [`Dfa`] format: built directly, in time linear in the literals' length times the
//! alphabet (a general determinization of a thousand unanchored literals carries every literal's
//! start in every state and takes minutes).
//!
//! The automaton runs over classes of bytes in which an ASCII letter and its capital are one
//! class, so ASCII case costs nothing; a non-ASCII character with case variants (`Ä`/`ä`) becomes
//! one path per spelling. Each state's transitions are complete (the failure links are resolved at
//! build time), so the scan is the same one table load per byte as for any other automaton, and the
//! start state gets the same two-byte filter.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use rulebox_sigma_eval::{Dfa, MAX_TRANSITIONS, START_BYTES, Special, Starts};

use crate::automaton::BuildError;
use crate::case;

/// More spellings than this for one literal (from non-ASCII letters with case variants) and the
/// literal is left to the general construction.
const MAX_SPELLINGS: usize = 64;

/// The byte as the automaton reads it: ASCII capitals are their lowercase letter.
fn folded(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

/// Every spelling of the (already folded) `text` in folded bytes, or `None` past [`MAX_SPELLINGS`].
fn spellings(text: &str) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new()];
    for c in text.chars() {
        if c.is_ascii() {
            let b = folded(u8::try_from(c).unwrap_or(0));
            out.iter_mut().for_each(|s| s.push(b));
            continue;
        }
        let variants = case::variants(c);
        if out.len() * variants.len() > MAX_SPELLINGS {
            return None;
        }
        out = out
            .into_iter()
            .flat_map(|s| {
                variants.iter().map(move |v| {
                    let mut s = s.clone();
                    s.extend_from_slice(v.encode_utf8(&mut [0; 4]).as_bytes());
                    s
                })
            })
            .collect();
    }
    Some(out)
}

/// The automaton finding each of `literals` (folded, case-insensitive) anywhere; pattern `i` is
/// literal `i`, in group `groups[i]` and [`Pairs`] bucket `buckets[i]` (empty: each literal its
/// own group, all in bucket 0). `Err(Unsupported)` when a literal has too many
/// spellings.
pub fn build(
    literals: &[&str],
    groups: &[u16],
    buckets: &[u8],
) -> Result<Dfa<'static>, BuildError> {
    let mut words: Vec<(Vec<u8>, u16)> = Vec::new();
    for (i, text) in literals.iter().enumerate() {
        let p = u16::try_from(i).map_err(|_| BuildError::TooLarge)?;
        let spelled =
            spellings(text).ok_or_else(|| BuildError::Unsupported("too many spellings".into()))?;
        words.extend(spelled.into_iter().map(|w| (w, p)));
    }
    // Classes: 0 for every byte no literal has, one per folded byte that some literal has.
    let mut class_of = [0u8; 256];
    let mut alphabet = 1usize;
    for b in 0..=255u8 {
        let f = folded(b);
        if f == b && words.iter().any(|(w, _)| w.contains(&f)) {
            class_of[usize::from(b)] = u8::try_from(alphabet).map_err(|_| BuildError::TooLarge)?;
            alphabet += 1;
        }
    }
    for b in 0..=255u8 {
        class_of[usize::from(b)] = class_of[usize::from(folded(b))];
    }
    // The trie.
    let mut goto: Vec<BTreeMap<u8, usize>> = vec![BTreeMap::new()];
    let mut out: Vec<Vec<u16>> = vec![Vec::new()];
    for (w, p) in &words {
        let mut s = 0;
        for &b in w {
            let c = class_of[usize::from(b)];
            s = match goto[s].get(&c) {
                Some(&t) => t,
                None => {
                    goto.push(BTreeMap::new());
                    out.push(Vec::new());
                    let t = goto.len() - 1;
                    goto[s].insert(c, t);
                    t
                }
            };
        }
        if !out[s].contains(p) {
            out[s].push(*p);
        }
    }
    let n = goto.len();
    if n * alphabet > MAX_TRANSITIONS {
        return Err(BuildError::TooLarge);
    }
    // Complete transitions in breadth-first order: a missing edge goes where the failure state's
    // edge goes; a state's matches include its failure state's.
    let mut delta = vec![0usize; n * alphabet];
    let mut fail = vec![0usize; n];
    let mut queue = VecDeque::new();
    for (c, cell) in delta.iter_mut().enumerate().take(alphabet) {
        let c8 = u8::try_from(c).unwrap_or(0);
        if let Some(&t) = goto[0].get(&c8) {
            *cell = t;
            queue.push_back(t);
        }
    }
    while let Some(s) = queue.pop_front() {
        let inherited = out[fail[s]].clone();
        for p in inherited {
            if !out[s].contains(&p) {
                out[s].push(p);
            }
        }
        for c in 0..alphabet {
            let c8 = u8::try_from(c).unwrap_or(0);
            let via_fail = delta[fail[s] * alphabet + c];
            match goto[s].get(&c8) {
                Some(&t) => {
                    fail[t] = via_fail;
                    delta[s * alphabet + c] = t;
                    queue.push_back(t);
                }
                None => delta[s * alphabet + c] = via_fail,
            }
        }
    }
    for o in &mut out {
        o.sort_unstable();
    }
    // The start filter: per bucket, the first bytes of its literals (any byte past the end of a
    // shorter literal).
    let bucket = |p: u16| 1u8 << buckets.get(usize::from(p)).copied().unwrap_or(0);
    let mut bytes: [Vec<u8>; START_BYTES] = std::array::from_fn(|_| vec![0u8; 256]);
    // The four-byte starts, hashed: a bigger bitmap for more literals (about 8 bits each).
    let quad_bits = (words.len() * 8)
        .next_power_of_two()
        .clamp(4096, 1 << 20)
        .trailing_zeros();
    let mut quads = vec![0u64; (1usize << quad_bits) / 64];
    let mut short = 0u8;
    for (w, p) in &words {
        if w.is_empty() {
            continue;
        }
        let bit = bucket(*p);
        match w.get(..4) {
            Some(&[a, b, c, d]) => {
                let h = rulebox_sigma_eval::quad_hash(
                    [a, b, c, d].map(|x| class_of[usize::from(x)]),
                    quad_bits,
                );
                quads[h / 64] |= 1 << (h % 64);
            }
            _ => short |= bit,
        }
        for (k, table) in bytes.iter_mut().enumerate() {
            let class = w.get(k).map(|&b| class_of[usize::from(b)]);
            for b in 0..256 {
                if class.is_none_or(|c| class_of[b] == c) {
                    table[b] |= bit;
                }
            }
        }
    }
    // Numbering: ordinary states first, then the start state (it skips) and the match states.
    let special_state = |s: usize| s == 0 || !out[s].is_empty();
    let order: Vec<usize> = (0..n)
        .filter(|&s| !special_state(s))
        .chain((0..n).filter(|&s| special_state(s)))
        .collect();
    let mut number = vec![0u32; n];
    for (i, &s) in order.iter().enumerate() {
        number[s] = u32::try_from(i).map_err(|_| BuildError::TooLarge)?;
    }
    let cells = n * alphabet;
    let width: u8 = if cells <= 1 << 16 { 2 } else { 4 };
    let step = u32::try_from(alphabet).map_err(|_| BuildError::TooLarge)?;
    let mut next = Vec::with_capacity(cells * usize::from(width));
    for &s in &order {
        for c in 0..alphabet {
            let target = number[delta[s * alphabet + c]] * step;
            if width == 2 {
                let t = u16::try_from(target).map_err(|_| BuildError::TooLarge)?;
                next.extend_from_slice(&t.to_le_bytes());
            } else {
                next.extend_from_slice(&target.to_le_bytes());
            }
        }
    }
    let special = order.iter().position(|&s| special_state(s)).unwrap_or(n);
    let dfa = Dfa {
        reverse: false,
        classes: class_of.to_vec(),
        alphabet: u16::try_from(alphabet).map_err(|_| BuildError::TooLarge)?,
        width,
        next: Cow::Owned(next),
        // A match is reported where it ends: the end of the text adds nothing.
        eoi: order.iter().map(|&s| number[s]).collect(),
        start: number[0],
        special: u32::try_from(special).map_err(|_| BuildError::TooLarge)?,
        specials: order[special..]
            .iter()
            .map(|&s| Special {
                dead: false,
                accelerate: s == 0,
                matches: out[s].clone(),
            })
            .collect(),
        patterns: u16::try_from(literals.len()).map_err(|_| BuildError::TooLarge)?,
        starts: Some(Starts {
            bytes,
            quads,
            short,
        }),
        restart: Vec::new(),
        groups: groups.to_vec(),
        buckets: buckets.to_vec(),
    };
    dfa.check()
        .map_err(|e| BuildError::Unsupported(format!("the literal automaton: {e}")))?;
    Ok(dfa)
}

/// How many spellings each literal has (for tests and sizing).
#[cfg(test)]
fn spelling_counts(literals: &[&str]) -> std::collections::HashMap<String, usize> {
    literals
        .iter()
        .map(|l| ((*l).to_owned(), spellings(l).map_or(0, |s| s.len())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_sigma_eval::Automaton;

    fn found(dfa: Dfa<'_>, text: &str) -> Vec<u16> {
        let n = dfa.patterns;
        let a = Automaton::new(dfa).unwrap();
        let mut st = a.state();
        a.scan(text.as_bytes(), &mut st);
        (0..n).filter(|&p| st.found(p)).collect()
    }

    fn lits(literals: &[&str]) -> Dfa<'static> {
        build(literals, &[], &[]).unwrap()
    }

    #[test]
    fn finds_every_literal_in_any_case() {
        let dfa = lits(&["mimikatz", "sekurlsa", "kat", "a"]);
        assert_eq!(found(dfa.clone(), "run MIMIKATZ now"), [0, 2, 3]);
        assert_eq!(found(dfa.clone(), "SEKURLSA::x"), [1, 3]);
        assert_eq!(found(dfa.clone(), "nothing"), Vec::<u16>::new());
        assert_eq!(found(dfa, ""), Vec::<u16>::new());
        let dfa = lits(&["ärger", "\u{2013}enc"]);
        assert_eq!(found(dfa.clone(), "viel ÄRGER"), [0]);
        assert_eq!(found(dfa.clone(), "x \u{2013}ENC y"), [1]);
        assert_eq!(found(dfa, "x -enc y"), Vec::<u16>::new());
    }

    #[test]
    fn overlapping_and_nested_literals() {
        let dfa = lits(&["he", "she", "his", "hers"]);
        assert_eq!(found(dfa.clone(), "ushers"), [0, 1, 3]);
        assert_eq!(found(dfa, "ahishe"), [0, 1, 2]);
        let dfa = lits(&["", "x"]);
        assert_eq!(found(dfa, "abc"), [0], "the empty literal is everywhere");
    }

    #[test]
    fn a_thousand_literals_build_at_once() {
        let words: Vec<String> = (0..1000)
            .map(|i| format!("@scope/package-{i}@1.{i}.0"))
            .collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let dfa = lits(&refs);
        let text = format!("npm install {} --save", words[737].to_uppercase());
        assert_eq!(found(dfa, &text), [737]);
        assert_eq!(spelling_counts(&["aä"])["aä"], 2);
    }

    #[test]
    fn a_group_stops_mattering_once_one_of_it_matched() {
        // Group 0: "alpha" or "beta"; group 1: "gamma". Once "alpha" is seen, later betas do not
        // stop the scan, and the scan ends when gamma is seen too.
        let dfa = build(&["alpha", "beta", "gamma"], &[0, 0, 1], &[0, 0, 1]).unwrap();
        assert_eq!(
            found(dfa.clone(), "alpha beta"),
            [0],
            "beta no longer mattered"
        );
        assert_eq!(found(dfa.clone(), "beta gamma alpha"), [1, 2]);
        assert_eq!(found(dfa, "gamma"), [2]);
    }
}
