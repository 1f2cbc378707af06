//! The pack's cross-rule prefilter: which rules of a pack can match an event, from one pass over
//! each field that some rule needs a literal in.
//!
//! Built at load from every rule's [`Program::needs`](crate::Program::needs): for every clause,
//! one of its literals must occur in a value of its field. The literals of one field (the same
//! [`FieldSpec`] names; its elements read when some rule reads them) go into one [`LiteralSet`]; per event,
//! the prefilter reads each such field that a rule of the event's kind needs, exactly as the
//! rule's own automata would read it (a keyword's literals: every field, as a keyword scan reads
//! them, one set for the pack; filed into the sets of the fields many rules read as well,
//! [`MIN_OWN_TO_MERGE`], so that the keyword set reads only the values none of those read at that
//! place), scans it once, and counts each literal it finds towards the
//! clauses it is in. The candidates are the rules whose every clause got a literal, and every rule
//! it cannot bound (no needs, or every clause with a literal too short to search for), among the rules of the
//! event's kind, in increasing index order.
//!
//! Sound by construction, as long as the needs are: a rule left out lacks, in the field its
//! program reads, every literal of one of its clauses, so its condition cannot hold. A literal is
//! searched for by its longest run of ASCII bytes (case folding never maps an ASCII character to
//! another byte, and a non-ASCII character of a literal matches one of its case variants, which
//! only the full automaton tells apart), so a literal in any case is found. A literal whose ASCII
//! runs are all too short to search for but which has a character no case variant of which is
//! ASCII (an emoji, a Cyrillic letter, the right-to-left override) needs a byte past ASCII in the
//! field: the one test of such values ([`probe`]) bounds the rules that look for such characters
//! only, which would otherwise run on every event of their kind.
//!
//! Its cost is linear: each needed field once per event (a few instructions per byte), then the
//! rules of the literals found. It runs on the pack's own budget, outside every rule, and reads at
//! most [`MAX_SCANNED_BYTES`] of an event: past them it names every rule of the event's kind.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use rulebox_sdk::{EventKind, EventKinds, EventView};

use crate::eval::{Evaluator, Extras, KINDS, Loc, NO_SLOT, each_keyword_text, each_text, slot_row};
use crate::literal_set::{LiteralSet, MIN_LITERAL};
use crate::program::{FieldSpec, Need};

/// What the prefilter reads of a rule: its kinds, the fields its needs name, and the needs. A
/// pack's rules ([`Evaluator`]) and a shared index's entries (`crate::IndexRule`) both are.
pub trait Needs {
    /// The event kinds the rule subscribes to.
    fn kinds(&self) -> EventKinds;
    /// The fields [`needs`](Self::needs) refer to by index.
    fn fields(&self) -> &[FieldSpec];
    /// For every clause, the literals one of which an event must hold ([`Program::needs`](crate::Program::needs)).
    fn needs(&self) -> &[Vec<Need>];
}

impl Needs for Evaluator<'_> {
    fn kinds(&self) -> EventKinds {
        Evaluator::kinds(self)
    }
    fn fields(&self) -> &[FieldSpec] {
        Evaluator::fields(self)
    }
    fn needs(&self) -> &[Vec<Need>] {
        Evaluator::needs(self)
    }
}

/// The most bytes of field values the prefilter reads on one event: past them it stops and names
/// every rule of the event's kind (which is sound, and what a pack without a prefilter runs), so
/// that its own cost stays far inside the pack's budget on any event, however large. Events this
/// large are rare; the rules' own budgets pay for them as they would without a prefilter.
pub const MAX_SCANNED_BYTES: usize = 32 << 10;

/// [`MAX_SCANNED_BYTES`] of a shared index (`crate::index`), which scans each event once for
/// every pack and so reads the fields of all of them: four times a pack's, so that it gives up on
/// fewer events than the packs would, within the index's own budget per event.
pub const MAX_INDEX_SCANNED_BYTES: usize = 128 << 10;

/// A rule has at most this many clauses the prefilter checks (one bit each); the others are not
/// checked, which only lets more rules through.
const MAX_CLAUSES: usize = 8;

/// The literals of one field, or of every field (`spec: None`, the keywords').
#[derive(Debug, Clone)]
struct Field {
    spec: Option<FieldSpec>,
    slots: [u8; KINDS],
    set: LiteralSet,
    /// Per literal of `set`: its number in the prefilter.
    ids: Vec<u32>,
    /// The number of the field's non-ASCII probe ([`probe`]), if some need is one: found on a
    /// value holding a byte past ASCII.
    non_ascii: Option<u32>,
    /// The number of the keywords' non-ASCII probe, when `set` holds the keywords' literals too
    /// (`covers_keywords`) and some keyword need is one.
    keyword_non_ascii: Option<u32>,
    /// Whether `set` holds the keywords' literals as well as the field's own, so that a value it
    /// scans, at the place the keyword walk would read it, need not be read again for them.
    covers_keywords: bool,
    /// How many of `ids` are the field's own (the keywords' follow).
    own: usize,
    /// The literals shorter than [`MIN_LITERAL`] (digits; [`short_probe`]) by their [`short_key`],
    /// sorted, and their numbers: searched for in each value of at most [`MAX_SHORT_VALUE`]
    /// bytes, counted as found in any longer one.
    short: Vec<(u16, u32)>,
}

/// The longest value in which the prefilter searches for a literal shorter than [`MIN_LITERAL`]
/// (two lookups per position): an event id, a port, a logon type. In a longer value such a
/// literal counts as found, as if it were not searched for.
pub const MAX_SHORT_VALUE: usize = 16;

/// A pack's keyword literals are filed into the sets of its busy fields ([`MIN_OWN_TO_MERGE`]), so
/// that the keyword walk reads only the values none of those read, when there are at most this
/// many (else each of those sets would grow by them all; the keyword set then reads every value
/// itself).
const MAX_MERGED_KEYWORDS: usize = 256;

/// The keywords' literals are filed only into the sets of fields with at least this many
/// literals of their own: the fields many rules read (`CommandLine`, `Image`, `TargetFilename`),
/// which are the long values of an event, where reading a value twice costs; a field few rules
/// read keeps its set small (the keyword set reads it), so that the index's memory grows by the
/// keywords' literals a few times, not once per field.
const MIN_OWN_TO_MERGE: usize = 32;

/// Which rules of a pack an event can match (see the module docs).
#[derive(Debug, Clone)]
pub struct Prefilter {
    fields: Vec<Field>,
    /// Per literal: the (rule, clause bit) pairs it counts for, `postings[starts[l]..starts[l + 1]]`.
    postings: Vec<(u32, u8)>,
    starts: Vec<u32>,
    /// Per rule: the bits of all its clauses (0: the rule always runs).
    full: Vec<u8>,
    /// Per rule: its kinds.
    kinds: Vec<EventKinds>,
    /// Per event kind: the fields to scan (indices into `fields`), the keywords' last.
    scan: Vec<Vec<u32>>,
    /// Per event kind: the rules that always run, in increasing order.
    always: Vec<Vec<u32>>,
    /// The most bytes of field values it reads on one event ([`MAX_SCANNED_BYTES`]).
    max_bytes: usize,
    scratch: Scratch,
}

/// Per-event state, reset after each event.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Bit per literal: found on this event.
    seen: Vec<u64>,
    seen_list: Vec<u32>,
    /// Per rule: the clause bits found on this event.
    sat: Vec<u8>,
    touched: Vec<u32>,
    /// Rules whose every clause got a literal.
    hits: Vec<u32>,
    /// Bit per body slot, per extra field: read by a set that holds the keywords' literals.
    covered_body: Vec<u64>,
    covered_extra: Vec<u64>,
}

/// The longest run of ASCII bytes of `text`.
fn ascii_run(text: &[u8]) -> &[u8] {
    text.split(|b| !b.is_ascii())
        .max_by_key(|run| run.len())
        .unwrap_or_default()
}

/// Whether every case variant of `c` is outside ASCII, so that a value an automaton finds `c`
/// in, in any case, holds a byte past ASCII: not for the few characters whose case variants
/// include an ASCII letter (the Kelvin sign and `k`, the long s and `S`, dotless and dotted i).
fn never_ascii(c: char) -> bool {
    !c.is_ascii()
        && c.to_lowercase().all(|l| !l.is_ascii())
        && c.to_uppercase().all(|u| !u.is_ascii())
}

/// Whether the prefilter searches for the literal `text` by the one test of a value for a byte
/// past ASCII ([`probe`]'s empty probe): every such literal of a clause in one field is the same
/// probe, so the compiler keeps one of them (a list of 500 emoji is one test).
pub fn probes_past_ascii(text: &str) -> bool {
    probe(text).is_some_and(|p| p.is_empty())
}

/// What the prefilter searches a field for in place of the literal `text`: its longest ASCII
/// run, folded, when that is long enough to file ([`MIN_LITERAL`]); else, when `text` has a
/// character that is never ASCII in any case ([`never_ascii`]: emoji, Cyrillic or Greek letters,
/// the right-to-left override), the empty probe, found on any value with a byte past ASCII; else
/// nothing (the literal's clause cannot be searched for).
fn probe(text: &str) -> Option<Vec<u8>> {
    let run = ascii_run(text.as_bytes());
    if run.len() >= MIN_LITERAL {
        Some(run.iter().map(u8::to_ascii_lowercase).collect())
    } else if text.chars().any(never_ascii) {
        Some(Vec::new())
    } else {
        None
    }
}

/// What the prefilter searches a field's values for in place of a literal `text` too short to
/// file ([`MIN_LITERAL`]): the text, when it is one or two ASCII digits (`EventID: 27`,
/// `DestinationPort: 88`, `LogonType: 3`: the values of such fields are short); else nothing
/// (a short text of other bytes is mostly a command line's `-f` or `/c`, in values far longer than
/// [`MAX_SHORT_VALUE`], where it would count as found on every event).
fn short_probe(text: &str) -> Option<Vec<u8>> {
    (!text.is_empty() && text.len() < MIN_LITERAL && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.as_bytes().to_vec())
}

/// The key of a short literal ([`short_probe`]) or of a window of a value: one byte as itself,
/// two as `first << 8 | second` (never equal to a one-byte key: a digit is at least 0x30).
fn short_key(window: &[u8]) -> u16 {
    match window {
        [a] => u16::from(*a),
        [a, b, ..] => u16::from(*a) << 8 | u16::from(*b),
        [] => 0,
    }
}

/// Calls `found` with the number of every short literal of `short` (sorted by [`short_key`])
/// that occurs in `value`: a lookup per digit and per pair of digits.
fn find_short(short: &[(u16, u32)], value: &[u8], mut found: impl FnMut(u32)) {
    let mut look = |key: u16| {
        let first = short.partition_point(|&(k, _)| k < key);
        for &(_, id) in short[first..].iter().take_while(|&&(k, _)| k == key) {
            found(id);
        }
    };
    for (i, &b) in value.iter().enumerate() {
        if !b.is_ascii_digit() {
            continue;
        }
        look(short_key(&[b]));
        if let Some(&next) = value.get(i + 1)
            && next.is_ascii_digit()
        {
            look(short_key(&[b, next]));
        }
    }
}

impl Prefilter {
    /// The prefilter of `rules` (a pack's, or a shared index's, in index order).
    pub fn new<R: Needs>(rules: &[R]) -> Prefilter {
        let mut fields: Vec<(Option<FieldSpec>, Vec<Vec<u8>>)> = Vec::new();
        // (field, text) → literal number.
        let mut numbers: BTreeMap<(u32, Vec<u8>), u32> = BTreeMap::new();
        let mut literal_field: Vec<u32> = Vec::new();
        let mut postings: Vec<Vec<(u32, u8)>> = Vec::new();
        let mut full = vec![0u8; rules.len()];
        for (r, rule) in rules.iter().enumerate() {
            let r32 = u32::try_from(r).unwrap_or(u32::MAX);
            // The clauses the prefilter can search for: every literal long enough.
            let clauses: Vec<_> = rule
                .needs()
                .iter()
                .filter(|c| {
                    !c.is_empty()
                        && c.iter().all(|n| {
                            (probe(&n.text).is_some()
                                || (n.field.is_some() && short_probe(&n.text).is_some()))
                                && n.field
                                    .is_none_or(|f| rule.fields().get(usize::from(f)).is_some())
                        })
                })
                .take(MAX_CLAUSES)
                .collect();
            for (k, clause) in clauses.iter().enumerate() {
                let bit = 1u8 << k;
                full[r] |= bit;
                for need in clause.iter() {
                    let spec = need.field.map(|f| &rule.fields()[usize::from(f)]);
                    // One set per field name list: a rule that reads the elements of a list under
                    // the name and one that does not share it, the set reading the elements too
                    // (more values scanned only let more rules through). One for every field.
                    let same = |s: &Option<FieldSpec>| match (s, spec) {
                        (Some(a), Some(b)) => a.names == b.names,
                        (a, b) => a.is_none() && b.is_none(),
                    };
                    let f = match fields.iter().position(|(s, _)| same(s)) {
                        Some(f) => {
                            if let (Some(have), Some(spec)) = (&mut fields[f].0, spec) {
                                have.elements |= spec.elements;
                            }
                            f
                        }
                        None => {
                            fields.push((spec.cloned(), Vec::new()));
                            fields.len() - 1
                        }
                    };
                    let f32 = u32::try_from(f).unwrap_or(u32::MAX);
                    // Every need of the clause has a probe or, in a field, a short one (the
                    // filter above).
                    let text = probe(&need.text)
                        .or_else(|| short_probe(&need.text))
                        .unwrap_or_default();
                    let id = *numbers.entry((f32, text.clone())).or_insert_with(|| {
                        fields[f].1.push(text);
                        literal_field.push(f32);
                        postings.push(Vec::new());
                        u32::try_from(postings.len() - 1).unwrap_or(u32::MAX)
                    });
                    let list = &mut postings[id as usize];
                    match list.iter_mut().find(|(rule, _)| *rule == r32) {
                        Some((_, bits)) => *bits |= bit,
                        None => list.push((r32, bit)),
                    }
                }
            }
        }
        // Literal numbers in each field's set, in the order they were numbered.
        let mut by_field: Vec<Vec<u32>> = vec![Vec::new(); fields.len()];
        for (id, &f) in literal_field.iter().enumerate() {
            by_field[f as usize].push(u32::try_from(id).unwrap_or(u32::MAX));
        }
        // The keywords' literals (the set of `spec: None`), to file into the sets of the fields
        // with MIN_OWN_TO_MERGE literals of their own too.
        let keyword_field = fields.iter().position(|(spec, _)| spec.is_none());
        let keywords: Option<(Vec<Vec<u8>>, Vec<u32>)> = keyword_field
            .map(|k| (fields[k].1.clone(), by_field[k].clone()))
            .filter(|(texts, _)| texts.len() <= MAX_MERGED_KEYWORDS);
        let kinds: Vec<EventKinds> = rules.iter().map(Needs::kinds).collect();
        let mut scan = vec![Vec::new(); KINDS];
        let mut always = vec![Vec::new(); KINDS];
        for kind in EventKind::ALL {
            let k = *kind as usize;
            for (r, rule_kinds) in kinds.iter().enumerate() {
                if !rule_kinds.contains(*kind) {
                    continue;
                }
                if full[r] == 0 {
                    always[k].push(u32::try_from(r).unwrap_or(u32::MAX));
                }
            }
            for (id, list) in postings.iter().enumerate() {
                let f = literal_field[id];
                if !scan[k].contains(&f)
                    && list.iter().any(|(r, _)| kinds[*r as usize].contains(*kind))
                {
                    scan[k].push(f);
                }
            }
            // The keywords' last, so that they skip what the field sets read for them.
            scan[k].sort_unstable_by_key(|&f| (Some(f as usize) == keyword_field, f));
        }
        let mut flat = Vec::new();
        let mut starts = Vec::with_capacity(postings.len() + 1);
        for list in &postings {
            starts.push(u32::try_from(flat.len()).unwrap_or(u32::MAX));
            flat.extend_from_slice(list);
        }
        starts.push(u32::try_from(flat.len()).unwrap_or(u32::MAX));
        let literal_count = postings.len();
        // What only numbering needed, freed before the sets are built.
        drop((numbers, postings));
        let fields: Vec<Field> = fields
            .into_iter()
            .zip(by_field)
            .map(|((spec, mut texts), mut ids)| {
                let own = ids.len();
                let non_ascii = texts.iter().position(Vec::is_empty).map(|local| ids[local]);
                // The short ones are left unfiled by the set and searched for by `find_short`.
                let mut short: Vec<(u16, u32)> = texts
                    .iter()
                    .zip(&ids)
                    .filter(|(t, _)| !t.is_empty() && t.len() < MIN_LITERAL)
                    .map(|(t, &id)| (short_key(t), id))
                    .collect();
                short.sort_unstable();
                let mut keyword_non_ascii = None;
                let covers_keywords =
                    spec.is_some() && keywords.is_some() && own >= MIN_OWN_TO_MERGE;
                if let (true, Some((kw_texts, kw_ids))) = (covers_keywords, &keywords) {
                    for (text, &id) in kw_texts.iter().zip(kw_ids) {
                        if text.is_empty() {
                            keyword_non_ascii = Some(id);
                        } else {
                            texts.push(text.clone());
                            ids.push(id);
                        }
                    }
                }
                let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
                // Every literal is at least MIN_LITERAL bytes but the non-ASCII probe (empty),
                // found by its own test, and the short digit ones (`short`, by `find_short`):
                // both left unfiled by the set.
                let (set, _) = LiteralSet::new(&refs);
                Field {
                    slots: spec.as_ref().map_or([NO_SLOT; KINDS], slot_row),
                    spec,
                    set,
                    ids,
                    non_ascii,
                    keyword_non_ascii,
                    covers_keywords,
                    own,
                    short,
                }
            })
            .collect();
        let scratch = Scratch {
            seen: vec![0; literal_count.div_ceil(64)],
            sat: vec![0; rules.len()],
            ..Scratch::default()
        };
        Prefilter {
            fields,
            postings: flat,
            starts,
            full,
            kinds,
            scan,
            always,
            max_bytes: MAX_SCANNED_BYTES,
            scratch,
        }
    }

    /// The same prefilter reading at most `max_bytes` of field values per event (past them, it
    /// names every rule of the event's kind).
    pub fn with_scan_limit(mut self, max_bytes: usize) -> Prefilter {
        self.max_bytes = max_bytes;
        self
    }

    /// How many rules it can leave out (the others always run).
    pub fn bounded(&self) -> usize {
        self.full.iter().filter(|&&f| f != 0).count()
    }

    /// How many distinct literals it searches for, in how many fields.
    pub fn literals(&self) -> (usize, usize) {
        (self.starts.len().saturating_sub(1), self.fields.len())
    }

    /// The fields it scans on an event of `kind`, each as its names (none: every field, the
    /// keywords') and how many literals it searches there: for tools that look at what a pack's
    /// prefilter reads.
    pub fn scanned(&self, kind: EventKind) -> Vec<(Vec<&str>, usize)> {
        self.scan
            .get(kind as usize)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|&f| self.fields.get(f as usize))
            .map(|field| {
                let names = field.spec.as_ref().map_or(Vec::new(), |s| {
                    s.names.iter().map(alloc::string::String::as_str).collect()
                });
                (names, field.own)
            })
            .collect()
    }

    /// The rules that can match `event`, in increasing index order, into `out`: among the rules of
    /// the event's kind, those whose every clause has a literal in the event, and those it cannot
    /// bound. `subscribed` (every rule of the event's kind, in increasing order) is what it names
    /// when the fields it would read are over its limit ([`MAX_SCANNED_BYTES`], or
    /// [`with_scan_limit`](Self::with_scan_limit)'s).
    pub fn candidates(&mut self, event: &EventView<'_>, subscribed: &[u32], out: &mut Vec<u32>) {
        let kind = event.kind();
        let k = kind as usize;
        let Prefilter {
            fields,
            postings,
            starts,
            full,
            kinds,
            scan,
            always,
            max_bytes,
            scratch,
        } = self;
        let Scratch {
            seen,
            seen_list,
            sat,
            touched,
            hits,
            covered_body,
            covered_extra,
        } = scratch;
        let mut budget = *max_bytes;
        let mut over = false;
        let extras = Extras::read(event);
        for &f in scan.get(k).map_or(&[][..], Vec::as_slice) {
            let field = &fields[f as usize];
            // Counts literal `id` found on this event towards its rules' clauses.
            let mut hit = |id: u32| {
                let (w, bit) = (id as usize / 64, 1u64 << (id % 64));
                if seen[w] & bit != 0 {
                    return;
                }
                seen[w] |= bit;
                seen_list.push(id);
                let range = starts[id as usize] as usize..starts[id as usize + 1] as usize;
                for &(rule, clause) in &postings[range] {
                    let r = rule as usize;
                    let before = sat[r];
                    if before == 0 {
                        touched.push(rule);
                    }
                    let after = before | clause;
                    sat[r] = after;
                    if before != after && after == full[r] && kinds[r].contains(kind) {
                        hits.push(rule);
                    }
                }
            };
            // Scans one value; false once over the bytes it reads.
            let mut one = |text: &[u8]| {
                if over || text.len() > budget {
                    over = true;
                    return false;
                }
                budget -= text.len();
                field.set.scan(text, |local| hit(field.ids[local as usize]));
                if !text.is_ascii() {
                    for id in [field.non_ascii, field.keyword_non_ascii]
                        .into_iter()
                        .flatten()
                    {
                        hit(id);
                    }
                }
                if text.len() > MAX_SHORT_VALUE {
                    for &(_, id) in &field.short {
                        hit(id);
                    }
                } else if !field.short.is_empty() {
                    find_short(&field.short, text, &mut hit);
                }
                true
            };
            match &field.spec {
                Some(spec) => each_text(spec, &field.slots, event, &extras, |loc, text| {
                    if one(text) && field.covers_keywords {
                        cover(covered_body, covered_extra, loc);
                    }
                }),
                None => each_keyword_text(event, |loc, text| {
                    is_covered(covered_body, covered_extra, loc) || one(text)
                }),
            }
        }
        hits.sort_unstable();
        // Merge the two sorted, disjoint lists.
        let always = always.get(k).map_or(&[][..], Vec::as_slice);
        let (mut i, mut j) = (0, 0);
        if over {
            out.extend_from_slice(subscribed);
            (i, j) = (hits.len(), always.len());
        }
        while i < hits.len() || j < always.len() {
            let take_hit = j == always.len() || (i < hits.len() && hits[i] < always[j]);
            if take_hit {
                out.push(hits[i]);
                i += 1;
            } else {
                out.push(always[j]);
                j += 1;
            }
        }
        for &id in seen_list.iter() {
            seen[id as usize / 64] = 0;
        }
        for &r in touched.iter() {
            sat[r as usize] = 0;
        }
        seen_list.clear();
        touched.clear();
        hits.clear();
        covered_body.clear();
        covered_extra.clear();
    }
}

/// Marks the place `loc` as read by a set holding the keywords' literals.
#[inline]
fn cover(body: &mut Vec<u64>, extra: &mut Vec<u64>, loc: Loc) {
    let (bits, at) = match loc {
        Loc::Body(b) => (body, usize::from(b)),
        Loc::Extra(e) => (extra, usize::from(e)),
        Loc::None | Loc::Field(_) => return,
    };
    if bits.len() <= at / 64 {
        bits.resize(at / 64 + 1, 0);
    }
    bits[at / 64] |= 1 << (at % 64);
}

/// Whether [`cover`] marked `loc`.
#[inline]
fn is_covered(body: &[u64], extra: &[u64], loc: Loc) -> bool {
    let (bits, at) = match loc {
        Loc::Body(b) => (body, usize::from(b)),
        Loc::Extra(e) => (extra, usize::from(e)),
        Loc::None | Loc::Field(_) => return false,
    };
    bits.get(at / 64).is_some_and(|w| w & (1 << (at % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Expr, FORMAT_VERSION, Need, Program};
    use alloc::string::String;
    use alloc::vec;
    use rulebox_sdk::{Event, EventData, ProcessStart, Severity};

    fn rule(id: &str, needs: Vec<Vec<Need>>) -> Evaluator<'static> {
        Evaluator::new(Program {
            format: FORMAT_VERSION,
            id: id.into(),
            title: id.into(),
            version: "1".into(),
            severity: Severity::Low,
            kinds: EventKinds::of(&[EventKind::ProcessStart]),
            fields: vec![FieldSpec {
                names: vec!["CommandLine".into()],
                elements: false,
            }],
            scans: vec![],
            guard: Expr::True,
            condition: Expr::True,
            report: vec![],
            gate: None,
            needs,
        })
        .unwrap()
    }

    fn need(text: &str) -> Need {
        Need {
            field: Some(0),
            text: text.into(),
        }
    }

    fn candidates(p: &mut Prefilter, command_line: String) -> Vec<u32> {
        let mut body = ProcessStart::default();
        body.command_line = command_line.into();
        let bytes = Event::new(EventData::ProcessStart(body))
            .to_bytes()
            .unwrap();
        let view = EventView::new(&bytes).unwrap();
        let mut out = Vec::new();
        p.candidates(&view, &[0, 1, 2, 3, 4, 5], &mut out);
        out
    }

    #[test]
    fn names_the_rules_whose_every_clause_has_a_literal_and_the_unbounded_ones() {
        let rules = [
            rule("a", vec![vec![need("mimikatz"), need("sekurlsa")]]),
            rule("b", vec![]),
            rule("c", vec![vec![need("wmic")], vec![need("shadowcopy")]]),
            rule("d", vec![vec![need("7")]]),
            rule("e", vec![vec![need("-f")]]),
            rule("f", vec![vec![need("27")]]),
        ];
        let mut p = Prefilter::new(&rules);
        assert_eq!(
            p.bounded(),
            4,
            "no needs, or a short literal not of digits: always run"
        );
        assert_eq!(candidates(&mut p, "whoami".into()), [1, 4]);
        assert_eq!(candidates(&mut p, "run MIMIKATZ".into()), [0, 1, 4]);
        assert_eq!(
            candidates(&mut p, "wmic".into()),
            [1, 4],
            "one clause of two"
        );
        assert_eq!(
            candidates(&mut p, "WMIC shadowcopy delete; sekurlsa".into()),
            [0, 1, 2, 3, 4, 5],
            "a value past MAX_SHORT_VALUE holds the short literals, as far as it knows"
        );
        assert_eq!(
            candidates(&mut p, "whoami".into()),
            [1, 4],
            "nothing left over"
        );
        assert_eq!(candidates(&mut p, "cmd 7".into()), [1, 3, 4], "one digit");
        assert_eq!(candidates(&mut p, "id 27".into()), [1, 3, 4, 5], "two");
        assert_eq!(candidates(&mut p, "2 72".into()), [1, 3, 4], "not 27");
        assert_eq!(candidates(&mut p, "x2".into()), [1, 4]);
        assert_eq!(
            candidates(&mut p, "a".repeat(MAX_SHORT_VALUE + 1)),
            [1, 3, 4, 5],
            "a value past MAX_SHORT_VALUE: counted as found"
        );
        assert_eq!(candidates(&mut p, "a".repeat(MAX_SHORT_VALUE)), [1, 4]);
        let huge = "a".repeat(MAX_SCANNED_BYTES + 1);
        assert_eq!(
            candidates(&mut p, huge),
            [0, 1, 2, 3, 4, 5],
            "past the bytes it reads, every rule of the kind"
        );
    }

    #[test]
    fn a_literal_of_characters_never_ascii_needs_a_byte_past_ascii() {
        let rules = [
            rule("emoji", vec![vec![need("\u{1F600}"), need("\u{1F47B}")]]),
            rule("cyrillic", vec![vec![need("\u{0410}"), need("[u+202e]")]]),
            rule("kelvin", vec![vec![need("\u{212A}")]]),
            rule("long-s", vec![vec![need("x\u{017F}")]]),
        ];
        let mut p = Prefilter::new(&rules);
        assert_eq!(
            p.bounded(),
            2,
            "the Kelvin sign matches `k` and the long s `S`: those rules always run"
        );
        assert_eq!(candidates(&mut p, "whoami /all".into()), [2, 3]);
        assert_eq!(
            candidates(&mut p, "cmd /c echo \u{1F47B}".into()),
            [0, 1, 2, 3],
            "any byte past ASCII lets both through (the automata tell them apart)"
        );
        assert_eq!(
            candidates(&mut p, "a [U+202E] b".into()),
            [1, 2, 3],
            "the clause's ASCII literal still counts"
        );
        assert_eq!(
            candidates(&mut p, "calc".into()),
            [2, 3],
            "nothing left over"
        );
        for c in ['\u{212A}', '\u{017F}', '\u{0130}', '\u{0131}', 'a'] {
            assert!(!never_ascii(c), "{c:?}");
        }
        for c in [
            '\u{0410}',
            '\u{0430}',
            '\u{1F600}',
            '\u{202E}',
            '\u{00AE}',
            '\u{00C5}',
        ] {
            assert!(never_ascii(c), "{c:?}");
        }
    }

    #[test]
    fn a_keyword_literal_is_found_in_any_field_and_only_there_the_rule_is_let_through() {
        let keyword = |text: &str| Need {
            field: None,
            text: text.into(),
        };
        let rules = [
            rule("k", vec![vec![keyword("\\perfc.dat"), need("wevtutil cl")]]),
            rule("c", vec![vec![need("perfc.dat")]]),
        ];
        let mut p = Prefilter::new(&rules);
        assert_eq!(p.bounded(), 2, "a keyword clause bounds the rule");
        assert_eq!(p.literals(), (3, 2), "the keywords' set and CommandLine's");
        let run = |p: &mut Prefilter, body: ProcessStart<'static>| {
            let bytes = Event::new(EventData::ProcessStart(body))
                .to_bytes()
                .unwrap();
            let view = EventView::new(&bytes).unwrap();
            let mut out = Vec::new();
            p.candidates(&view, &[0, 1], &mut out);
            out
        };
        let mut body = ProcessStart::default();
        body.current_directory = "C:\\Windows\\PERFC.DAT\\".into();
        assert_eq!(
            run(&mut p, body),
            [0],
            "in another field than any rule names"
        );
        let mut body = ProcessStart::default();
        body.command_line = "rundll32 c:\\perfc.dat,#1".into();
        assert_eq!(run(&mut p, body), [0, 1]);
        let mut body = ProcessStart::default();
        body.command_line = "notepad perfc.txt".into();
        assert_eq!(run(&mut p, body), [0u32; 0], "in no field");
    }

    #[test]
    fn the_keyword_walk_skips_the_values_a_field_set_read_for_it() {
        let keyword = |text: &str| Need {
            field: None,
            text: text.into(),
        };
        // CommandLine's set has enough literals of its own to take the keywords' too.
        let many = (0..MIN_OWN_TO_MERGE)
            .map(|i| need(&format!("wevtutil cl{i:03}")))
            .collect();
        let rules = [
            rule("k", vec![vec![keyword("mimikatz")]]),
            rule("c", vec![many]),
        ];
        let long = "x".repeat(1_000);
        let run = |p: &mut Prefilter, command_line: &str, extra: Option<&str>| {
            let mut body = ProcessStart::default();
            body.command_line = String::from(command_line).into();
            let mut event = Event::new(EventData::ProcessStart(body));
            if let Some(value) = extra {
                event.extra.push(rulebox_sdk::Field {
                    name: "Payload".into(),
                    value: String::from(value).into(),
                });
            }
            let bytes = event.to_bytes().unwrap();
            let view = EventView::new(&bytes).unwrap();
            let mut out = Vec::new();
            p.candidates(&view, &[0, 1], &mut out);
            out
        };
        // CommandLine read once, not twice: the keyword walk reads only the other (short)
        // values, so a limit well under twice its length is not reached.
        let mut p = Prefilter::new(&rules).with_scan_limit(long.len() + 200);
        assert_eq!(run(&mut p, &long, None), [0u32; 0]);
        let with_keyword = format!("{long} MimiKatz");
        let mut p = Prefilter::new(&rules).with_scan_limit(with_keyword.len() + 200);
        assert_eq!(
            run(&mut p, &with_keyword, None),
            [0],
            "found by CommandLine's set, for the keyword"
        );
        assert_eq!(
            run(&mut p, "notepad", Some("sekurlsa mimikatz")),
            [0],
            "in an extra field no set reads: the keyword walk reads it"
        );
        assert_eq!(run(&mut p, "notepad", Some("sekurlsa")), [0u32; 0]);
        // The same pack with its CommandLine scanned twice would be over the limit.
        let mut p = Prefilter::new(&rules).with_scan_limit(2 * long.len() - 1);
        assert_eq!(run(&mut p, &long, None), [0u32; 0], "read once");
        let mut p = Prefilter::new(&rules).with_scan_limit(long.len() - 1);
        assert_eq!(
            run(&mut p, &long, None),
            [0, 1],
            "over the limit: every rule"
        );
        // A field of few literals keeps its set small: the keyword walk reads it again.
        let few = [
            rule("k", vec![vec![keyword("mimikatz")]]),
            rule("c", vec![vec![need("wevtutil cl")]]),
        ];
        let mut p = Prefilter::new(&few).with_scan_limit(2 * long.len() - 1);
        assert_eq!(run(&mut p, &long, None), [0, 1], "read twice");
        let mut p = Prefilter::new(&few).with_scan_limit(2 * long.len() + 200);
        assert_eq!(run(&mut p, &with_keyword, None), [0]);
    }
}
