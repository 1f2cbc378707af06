//! Deterministic automata over the UTF-8 bytes of a field's value: built by the compiler (crate
//! `rulebox-sigma`, with `regex-automata`), checked and run here.
//!
//! One automaton answers many patterns in one pass over the text: per byte, the scan does one
//! table load (`next[state + class[byte]]`) and one comparison; states that need more (a match, a
//! dead end, a state worth skipping out of) are numbered last, so the comparison with
//! [`Dfa::special`] is the only test on the common path. Every construct (literals, wildcards,
//! counted repetitions, alternations, classes) costs the same per byte: a repetition's count is in
//! the number of states, never in the work per byte.
//!
//! Two skips keep the scan off the table for most bytes of ordinary text:
//!
//! - a state that loops on most bytes (waiting for a `\` in `[^\\]+`, say) jumps to the next byte
//!   that leaves it;
//! - in the start state of a search (no match under way), the compiler's [`Starts`] filter jumps to
//!   the next position whose first *four* bytes can begin a match (`adva`, `ADVA`, `aDvA`, ... for
//!   `advanced`), so a frequent first letter or pair alone does not stop the skip; and once the
//!   patterns of a bucket no longer matter (their list already matched), their starts stop it no
//!   more.
//!
//! Both test 16 bytes at a time (WebAssembly SIMD in the sandbox, nibble-table lookups), and a
//! candidate the nibble tables let through is checked against the exact tables before the scan
//! leaves the skip.
//!
//! A skip costs more than stepping where it stops every few bytes (text full of what the patterns
//! start with, or of the bytes that leave a looping state: a long command line of near misses, as
//! anyone who can start a process can write). So the scan keeps count ([`Backoff`]): when a window
//! of stops has covered fewer bytes than stepping them would have cost, it steps through the table
//! for a stretch (doubling while the skips keep failing), the states that are special only to be
//! skipped from then being ordinary ones (the compiler numbers them first among the special states),
//! and tries the skips again after it. The cost per byte is so at most about one table step plus
//! a bounded share of failed skips, whatever the text, and a few SIMD operations per 16 bytes where
//! the skips pay.
//!
//! ```text
//!  text   b0 b1 b2 ...                      one pass, forward (or backward, for suffixes)
//!  class  c0 c1 c2 ...   classes[b]         256-entry table: bytes the patterns treat alike
//!  state  s0 → s1 → s2   next[s + c]        states premultiplied by the alphabet size
//!                 └ s ≥ special: matches (set pattern bits), dead (stop), skip (jump ahead)
//!  end    eoi[s]                            matches that need the end of the text
//! ```
//!
//! The transition table stays in the bytes it was decoded from (in the sandbox, the module's data
//! segment): a large automaton costs its size in memory once, not twice.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use serde::{Deserialize, Serialize};

/// The most transitions one automaton may have.
pub const MAX_TRANSITIONS: usize = 1 << 21;

/// A deterministic automaton as the compiler writes it.
///
/// States are numbered `0..eoi.len()`; those from [`special`](Self::special) on have an entry in
/// [`specials`](Self::specials). A scan starts in [`start`](Self::start) at the start of the text (at
/// its end when [`reverse`](Self::reverse)), takes one transition per byte and one at the end of the
/// text ([`eoi`](Self::eoi)), and reports the patterns of every match state it passes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dfa<'a> {
    /// Whether the scan runs from the end of the text to its start (patterns anchored at the end).
    pub reverse: bool,
    /// The class of each byte (256 entries): bytes in one class have the same transitions.
    pub classes: Vec<u8>,
    /// The number of classes (1 to 256).
    pub alphabet: u16,
    /// The size of one transition in [`next`](Self::next): 2 or 4 bytes.
    pub width: u8,
    /// The transitions, state by state, little-endian: entry `s * alphabet + c` is the state after a
    /// byte of class `c` in state `s`, premultiplied (the target's index times `alphabet`).
    #[serde(borrow)]
    pub next: Cow<'a, [u8]>,
    /// Per state, the state after the end of the text (an index, not premultiplied).
    pub eoi: Vec<u32>,
    /// The start state (an index).
    pub start: u32,
    /// The first special state (an index).
    pub special: u32,
    /// One entry per special state, in order.
    pub specials: Vec<Special>,
    /// The number of patterns (their numbers are `0..patterns`).
    pub patterns: u16,
    /// A filter for the idle states (see [`restart`](Self::restart)), when every match can be
    /// found by where it starts.
    pub starts: Option<Starts>,
    /// The idle states of a search: entry `b` is the state with nothing under way after the byte
    /// `b` (256 entries; they differ only where a pattern looks behind, as `\b` does). Empty: the
    /// start state, whatever the byte. When the scan is in an idle state it may jump to the next
    /// position `j` the [`Starts`] filter allows and go on in `restart[text[j - 1]]`.
    pub restart: Vec<u32>,
    /// Per pattern, its group (numbered from 0). A group stops mattering once any of its patterns
    /// has matched (the values of one Sigma list or the selections of one `1 of`, each used nowhere
    /// else): the scan stops when every group has, and the [`Starts`] filter stops stopping for a
    /// bucket whose patterns' groups all have. Empty: every pattern is a group of its own.
    pub groups: Vec<u16>,
    /// Per pattern, its [`Starts`] bucket (0 to 7). Empty: bucket 0.
    pub buckets: Vec<u8>,
}

/// What a special state means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Special {
    /// No pattern can match after this state: the scan stops. (Checked: a dead state only leads to
    /// itself and matches nothing.)
    pub dead: bool,
    /// The state loops on most bytes: skip ahead to the next byte that leaves it.
    pub accelerate: bool,
    /// The patterns that have matched when the scan is in this state.
    pub matches: Vec<u16>,
}

/// How many bytes of a start the [`Starts`] filter looks at.
pub const START_BYTES: usize = 4;

/// Which four-byte starts can begin a match. Each pattern's starts belong to one of 8 buckets:
/// `bytes[k][b]` has the buckets with a start whose byte `k` (0 to 3) is `b` (every bucket of a
/// pattern shorter than `k + 1` bytes), and a match can start at `i` only if
/// `bytes[0][text[i]] & bytes[1][text[i + 1]] & bytes[2][text[i + 2]] & bytes[3][text[i + 3]]`
/// has a bucket that still matters (near the end of the text, the missing bytes allow every
/// bucket). The compiler gives it
/// only for searches without anchors at the start and without look-around, where the start state
/// means "nothing under way", so starting there at any position finds every match that starts
/// there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Starts {
    /// Per position of a start, per byte: the buckets ([`START_BYTES`] tables of 256 entries).
    pub bytes: [Vec<u8>; START_BYTES],
    /// A bitmap of the four-byte starts (their byte classes hashed by [`quad_hash`]; a power of two
    /// of bits, at most 2^20), to turn away candidates the tables let through only because their
    /// bytes belong to different patterns of one bucket. Empty: none.
    pub quads: Vec<u64>,
    /// The buckets with a pattern shorter than four bytes: their candidates skip the bitmap.
    pub short: u8,
}

/// Where the four byte classes `c` of a start go in a [`Starts::quads`] bitmap of `2^bits` bits.
#[inline]
pub fn quad_hash(c: [u8; 4], bits: u32) -> usize {
    (u32::from_le_bytes(c).wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// Why an automaton was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DfaError {
    /// The class table does not have 256 entries, or a class is outside the alphabet.
    Classes,
    /// The transition table is not `states × alphabet` entries of a valid width, is empty, or is
    /// over [`MAX_TRANSITIONS`].
    Size,
    /// A transition, the start or the special boundary names a state that does not exist.
    State,
    /// The special states and their entries do not line up, or a match names a pattern that does not
    /// exist.
    Specials,
    /// A state marked dead leads elsewhere or matches something.
    Dead,
    /// The start filter's tables do not have 256 entries each.
    Starts,
    /// The groups or buckets do not line up with the patterns.
    Groups,
}

impl core::fmt::Display for DfaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DfaError::Classes => "its byte classes are malformed",
            DfaError::Size => "its transition table has the wrong size",
            DfaError::State => "it names a state that does not exist",
            DfaError::Specials => "its special states are malformed",
            DfaError::Dead => "a dead state is not dead",
            DfaError::Starts => "its start filter is malformed",
            DfaError::Groups => "its pattern groups are malformed",
        })
    }
}

/// Whether every entry of `table` is a multiple of `alphabet` below `cells`.
fn targets_ok<const N: usize>(table: &[u8], cells: usize, alphabet: usize) -> bool
where
    [u8; N]: Entry,
{
    let (rows, rest) = table.as_chunks::<N>();
    // Alphabet sizes are small: a multiple test by division once per entry is the cost.
    rest.is_empty()
        && rows.iter().all(|e| {
            let t = e.state() as usize;
            t < cells && t.is_multiple_of(alphabet)
        })
}

/// Entry `i` of a table of `width`-byte little-endian entries (0 past the end).
fn entry(table: &[u8], width: usize, i: usize) -> u32 {
    match width {
        2 => table
            .as_chunks::<2>()
            .0
            .get(i)
            .map_or(0, |e| u32::from(u16::from_le_bytes(*e))),
        _ => table
            .as_chunks::<4>()
            .0
            .get(i)
            .map_or(0, |e| u32::from_le_bytes(*e)),
    }
}

impl Dfa<'_> {
    /// The number of states.
    pub fn states(&self) -> usize {
        self.eoi.len()
    }

    /// The number of transitions.
    pub fn transitions(&self) -> usize {
        self.next.len() / usize::from(self.width.max(1))
    }

    /// Transition `i` (premultiplied).
    pub fn transition(&self, i: usize) -> u32 {
        entry(&self.next, usize::from(self.width), i)
    }

    /// Turns every borrowed table into an owned one.
    pub fn into_owned(self) -> Dfa<'static> {
        Dfa {
            next: Cow::Owned(self.next.into_owned()),
            reverse: self.reverse,
            classes: self.classes,
            alphabet: self.alphabet,
            width: self.width,
            eoi: self.eoi,
            start: self.start,
            special: self.special,
            specials: self.specials,
            patterns: self.patterns,
            starts: self.starts,
            restart: self.restart,
            groups: self.groups,
            buckets: self.buckets,
        }
    }

    /// Checks that running the automaton cannot index out of range, and that what it reports
    /// exists.
    pub fn check(&self) -> Result<(), DfaError> {
        let alphabet = usize::from(self.alphabet);
        if self.classes.len() != 256
            || alphabet == 0
            || alphabet > 256
            || self.classes.iter().any(|&c| usize::from(c) >= alphabet)
        {
            return Err(DfaError::Classes);
        }
        let n = self.states();
        let width = usize::from(self.width);
        let cells = n.checked_mul(alphabet);
        if n == 0
            || !matches!(width, 2 | 4)
            || cells.and_then(|c| c.checked_mul(width)) != Some(self.next.len())
            || cells.is_none_or(|c| c > MAX_TRANSITIONS)
            || (width == 2 && cells.is_some_and(|c| c > 1 << 16))
        {
            return Err(DfaError::Size);
        }
        let cells = n * alphabet;
        // Premultiplied targets: a multiple of the alphabet, inside the table. One pass over the
        // table, a few instructions per entry (this runs at load, inside the sandbox).
        let ok = |s: u32| (s as usize) < n;
        let targets_ok = match width {
            2 => targets_ok::<2>(&self.next, cells, alphabet),
            _ => targets_ok::<4>(&self.next, cells, alphabet),
        };
        if !ok(self.start)
            || !targets_ok
            || !self.eoi.iter().all(|&s| ok(s))
            || self.special as usize > n
        {
            return Err(DfaError::State);
        }
        if self.specials.len() != n - self.special as usize
            || self
                .specials
                .iter()
                .flat_map(|s| &s.matches)
                .any(|&p| p >= self.patterns)
        {
            return Err(DfaError::Specials);
        }
        for (k, sp) in self.specials.iter().enumerate() {
            if !sp.dead {
                continue;
            }
            let s = self.special as usize + k;
            let me = u32::try_from(s * alphabet).unwrap_or(u32::MAX);
            if !sp.matches.is_empty()
                || self.eoi[s] as usize != s
                || (0..alphabet).any(|c| self.transition(s * alphabet + c) != me)
            {
                return Err(DfaError::Dead);
            }
        }
        if let Some(f) = &self.starts
            && (f.bytes.iter().any(|t| t.len() != 256)
                || !(f.quads.is_empty()
                    || (f.quads.len().is_power_of_two() && f.quads.len() <= 1 << 14)))
        {
            return Err(DfaError::Starts);
        }
        if !(self.restart.is_empty() || self.restart.len() == 256)
            || !self.restart.iter().all(|&s| ok(s))
        {
            return Err(DfaError::State);
        }
        let patterns = usize::from(self.patterns);
        let groups_ok = (self.groups.is_empty()
            || (self.groups.len() == patterns
                && self.groups.iter().all(|&g| usize::from(g) < patterns)))
            && (self.buckets.is_empty()
                || (self.buckets.len() == patterns && self.buckets.iter().all(|&b| b < 8)));
        if !groups_ok {
            return Err(DfaError::Groups);
        }
        Ok(())
    }
}

/// A checked [`Dfa`] in the form the scan runs.
#[derive(Debug, Clone)]
pub struct Automaton<'a> {
    reverse: bool,
    classes: [u8; 256],
    /// The row length: a state is its row's offset (`index × stride`).
    stride: u32,
    table: Table<'a>,
    /// By state index, premultiplied targets.
    eoi: Vec<u32>,
    start: u32,
    /// Premultiplied.
    special: u32,
    /// Premultiplied: the first special state that is special for more than a skip (it matches,
    /// or it is dead). States from [`special`](Self::special) to here are only skipped from: a scan
    /// stepping through the table ([`Backoff`]) treats them as ordinary.
    hard: u32,
    specials: Vec<Prepared>,
    /// The patterns of every match state, one after the other (see [`Prepared::matches`]).
    matches: Vec<u16>,
    patterns: u16,
    /// The idle states' filter.
    starts: Option<Filter>,
    /// Per previous byte, the idle state (premultiplied): 256 entries where a pattern looks
    /// behind, else the one state they all are (1 KiB saved per automaton, and a pack has
    /// hundreds): read as `restart[byte & restart_mask]`.
    restart: Box<[u32]>,
    /// 255 with 256 entries, 0 with one.
    restart_mask: u8,
    /// Per pattern, its group.
    group: Vec<u16>,
    /// The patterns of each group: `members[bounds[g]..bounds[g + 1]]`.
    members: Vec<u16>,
    bounds: Vec<u32>,
    /// Per pattern, its bucket bit.
    bucket: Vec<u8>,
    /// Per bucket, how many patterns it has.
    per_bucket: [u32; 8],
    /// How many groups there are.
    groups: u32,
    /// Per special state with a twin, the table entries that lead into it:
    /// `entries[quiet_bounds[k]..quiet_bounds[k + 1]]` for special `k` (empty without byte rows).
    quiet_bounds: Vec<u32>,
    entries: Vec<u32>,
}

/// What one scan has found so far (reset per event; kept across the fields of a keyword scan).
#[derive(Debug, Clone, Default)]
pub struct ScanState {
    /// Bit `p`: pattern `p` matched.
    found: Vec<u64>,
    /// Bit `g`: group `g` no longer matters.
    done: Vec<u64>,
    /// Per bucket, its patterns whose group still matters.
    left: [u32; 8],
    /// The buckets with a group that still matters.
    live: u8,
    /// The groups that still matter.
    open: u32,
    /// Bytes read one at a time through the table since the last reset (not those the start
    /// filter skipped): what a scan costs beyond the skip. Counted natively only, for tools and
    /// tests that bound a rule's cost; the sandboxed scan does not spend on it.
    #[cfg(not(target_arch = "wasm32"))]
    stepped: usize,
    /// Give up where the skips stop paying, rather than step ([`Automaton::scan_quick`]).
    quick: bool,
    /// A quick scan gave up since the last reset.
    gave_up: bool,
    /// Skips begun since the last reset (natively only, like `stepped`): each costs a bounded
    /// amount beyond the bytes it passes over.
    #[cfg(not(target_arch = "wasm32"))]
    skips: usize,
    /// The special states this scan made quiet ([`Automaton::quiet`]), put back when it ends.
    quieted: Vec<u32>,
}

impl ScanState {
    /// Whether pattern `p` matched.
    pub fn found(&self, p: u16) -> bool {
        bit(&self.found, usize::from(p))
    }

    /// Bytes read one at a time through the table since the last reset (natively; see
    /// [`Evaluator::bytes_stepped`](crate::Evaluator::bytes_stepped)).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn stepped(&self) -> usize {
        self.stepped
    }

    /// Skips begun since the last reset (natively; see [`stepped`](Self::stepped)).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn skips(&self) -> usize {
        self.skips
    }

    #[inline(always)]
    fn count_skip(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.skips += 1;
        }
    }

    #[inline(always)]
    fn count_steps(&mut self, _k: usize) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.stepped += _k;
        }
    }

    /// Whether nothing more this scan could find matters.
    pub fn finished(&self) -> bool {
        self.open == 0
    }

    /// The found bits (bit `p` for pattern `p`).
    pub fn bits(&self) -> &[u64] {
        &self.found
    }
}

fn bit(words: &[u64], i: usize) -> bool {
    words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// Sets bit `i`; whether it was clear.
fn set(words: &mut [u64], i: usize) -> bool {
    match words.get_mut(i / 64) {
        Some(w) if *w & (1 << (i % 64)) == 0 => {
            *w |= 1 << (i % 64);
            true
        }
        _ => false,
    }
}

#[derive(Debug, Clone)]
struct Prepared {
    /// An idle state that matches nothing: the filter applies, and nothing needs recording.
    idle: bool,
    /// Special only to be skipped from (idle, or looping on most bytes, and matching nothing).
    soft: bool,
    dead: bool,
    /// `matches[start..end]` of the automaton.
    matches: (u32, u32),
    skip: Option<Nibbles>,
    /// With rows of 256 entries, a match state's ordinary twin (premultiplied; [`NO_TWIN`] for
    /// none): see [`Automaton::quiet`].
    twin: u32,
}

/// No twin.
const NO_TWIN: u32 = u32::MAX;

/// A match state whose entries into it are more than this gets no twin (its list would be long).
const MAX_QUIET_ENTRIES: usize = 1024;

/// How a scan ended its run of ordinary states.
enum Step {
    /// In state `s` after `k` more bytes, at a special state.
    Special(u32, usize),
    /// In state `s`, every byte read.
    End(u32),
}

impl<'a> Automaton<'a> {
    /// Checks `dfa` ([`Dfa::check`]) and prepares it for scanning.
    pub fn new(dfa: Dfa<'a>) -> Result<Automaton<'a>, DfaError> {
        dfa.check()?;
        Ok(Automaton::prepare(dfa))
    }

    /// Checks `dfa` ([`Dfa::check`]) and prepares it for scanning with rows of 256 entries only
    /// if they fit in `budget` bytes (taken from it), as a pack does: the scan finds the same
    /// patterns either way, through the byte classes a table load more per byte.
    pub fn within(dfa: Dfa<'a>, budget: &mut usize) -> Result<Automaton<'a>, DfaError> {
        dfa.check()?;
        Ok(Automaton::prepare_within(dfa, budget))
    }

    /// Whether the scan reads rows of 256 entries (else the byte classes).
    pub fn has_byte_rows(&self) -> bool {
        !matches!(self.table, Table::Classes { .. })
    }

    /// Prepares `dfa`, which [`Dfa::check`] accepted, for scanning.
    pub(crate) fn prepare(dfa: Dfa<'a>) -> Automaton<'a> {
        let mut unlimited = usize::MAX;
        Automaton::prepare_within(dfa, &mut unlimited)
    }

    /// Like [`prepare`](Self::prepare), building rows of 256 entries only if they fit in `budget`
    /// bytes (which they are taken from): the transitions through the byte classes otherwise.
    pub(crate) fn prepare_within(dfa: Dfa<'a>, budget: &mut usize) -> Automaton<'a> {
        let alphabet = u32::from(dfa.alphabet);
        let mut classes = [0u8; 256];
        classes.copy_from_slice(&dfa.classes);
        let table = Table::Classes {
            next: dfa.next.clone(),
            width: dfa.width,
        };
        let stride = alphabet;
        let eoi: Vec<u32> = dfa.eoi.iter().map(|&s| s * stride).collect();
        let mut matches = Vec::new();
        let mut specials = Vec::with_capacity(dfa.specials.len());
        for (k, sp) in dfa.specials.iter().enumerate() {
            let row = (dfa.special as usize + k) * alphabet as usize;
            let me = u32::try_from(row).unwrap_or(u32::MAX);
            let start = u32::try_from(matches.len()).unwrap_or(u32::MAX);
            matches.extend_from_slice(&sp.matches);
            let end = u32::try_from(matches.len()).unwrap_or(u32::MAX);
            let skip = if sp.accelerate && !sp.dead {
                let leaves =
                    |b: u8| dfa.transition(row + usize::from(classes[usize::from(b)])) != me;
                Nibbles::of_set(leaves)
            } else {
                None
            };
            specials.push(Prepared {
                idle: false,
                soft: false,
                dead: sp.dead,
                matches: (start, end),
                skip,
                twin: NO_TWIN,
            });
        }
        let starts = dfa.starts.as_ref().map(Filter::new);
        let mut restart = [dfa.start * stride; 256];
        if !dfa.restart.is_empty() {
            for (r, &s) in restart.iter_mut().zip(&dfa.restart) {
                *r = s * stride;
            }
        }
        if starts.is_some() {
            for p in &mut specials {
                p.idle = false;
            }
            for &r in &restart {
                if let Some(k) = r.checked_sub(dfa.special * stride) {
                    let sp = &mut specials[(k / stride) as usize];
                    sp.idle = !sp.dead && sp.matches.0 == sp.matches.1;
                }
            }
        }
        for p in &mut specials {
            p.soft = !p.dead && p.matches.0 == p.matches.1 && (p.idle || p.skip.is_some());
        }
        // Where no pattern looks behind, every byte restarts in one state: kept once.
        let uniform = restart.iter().all(|&r| r == restart[0]);
        let leading_soft = specials.iter().take_while(|p| p.soft).count();
        let hard = dfa.special * stride + u32::try_from(leading_soft).unwrap_or(0) * stride;
        let patterns = usize::from(dfa.patterns);
        let group: Vec<u16> = if dfa.groups.is_empty() {
            (0..dfa.patterns).collect()
        } else {
            dfa.groups
        };
        let bucket: Vec<u8> = if dfa.buckets.is_empty() {
            vec![1; patterns]
        } else {
            dfa.buckets.iter().map(|b| 1 << b).collect()
        };
        let mut per_bucket = [0u32; 8];
        for b in &bucket {
            per_bucket[b.trailing_zeros() as usize] += 1;
        }
        // Group numbers are below the pattern count (checked): count, then place.
        let mut bounds = vec![0u32; patterns + 1];
        for &g in &group {
            bounds[usize::from(g) + 1] += 1;
        }
        for g in 0..patterns {
            bounds[g + 1] += bounds[g];
        }
        let mut members = vec![0u16; patterns];
        let mut at = bounds.clone();
        for (p, &g) in group.iter().enumerate() {
            members[at[usize::from(g)] as usize] = u16::try_from(p).unwrap_or(u16::MAX);
            at[usize::from(g)] += 1;
        }
        let groups = bounds.windows(2).filter(|w| w[1] > w[0]).count();
        let mut automaton = Automaton {
            group,
            members,
            bounds,
            bucket,
            per_bucket,
            groups: u32::try_from(groups).unwrap_or(u32::MAX),
            reverse: dfa.reverse,
            classes,
            stride,
            table,
            eoi,
            start: dfa.start * stride,
            special: dfa.special * stride,
            hard,
            specials,
            matches,
            patterns: dfa.patterns,
            starts,
            restart_mask: if uniform { 0 } else { 255 },
            restart: if uniform {
                Box::new([restart[0]])
            } else {
                Box::new(restart)
            },
            quiet_bounds: Vec::new(),
            entries: Vec::new(),
        };
        if let Some(size) = automaton.rows_size()
            && size <= *budget
        {
            *budget -= size;
            automaton.give_rows();
        }
        automaton
    }

    /// The bytes rows of 256 entries would take for this automaton ([`give_rows`](Self::give_rows)):
    /// `None` when it has them, or has more than [`BYTE_ROWS_UP_TO`] states.
    pub(crate) fn rows_size(&self) -> Option<usize> {
        let Table::Classes { .. } = self.table else {
            return None;
        };
        let n = self.eoi.len();
        (n <= BYTE_ROWS_UP_TO).then(|| Table::rows_size(n + self.twins().len()))
    }

    /// The special states (by index among them) that get an ordinary twin with rows of 256
    /// entries: those that only record matches (not dead, not skipped from). None where the twins
    /// would take the automaton past [`BYTE_ROWS_UP_TO`] states, or past 256 from up to 256 (rows
    /// of 32-bit entries rather than bytes: four times the memory).
    fn twins(&self) -> Vec<usize> {
        let n = self.eoi.len();
        let twins: Vec<usize> = self
            .specials
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.dead && p.skip.is_none() && p.matches.0 < p.matches.1)
            .map(|(k, _)| k)
            .collect();
        let m = n + twins.len();
        if m > BYTE_ROWS_UP_TO || (n <= 256 && m > 256) {
            return Vec::new();
        }
        twins
    }

    /// Natively, how many positions of `text` the sandbox's 16-byte skip from the idle state
    /// would take as candidates from its nibble tables and then turn down (the exact tables or the
    /// start bitmap say no), every bucket live: where that is more than one position in
    /// [`Backoff::REJECTED_BYTES`], the skip hands back and the scan steps through the table,
    /// which the native scan (checking every position exactly) does not show. 0 without a start
    /// filter.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn skip_misses(&self, text: &[u8]) -> usize {
        let Some(f) = self.starts.as_ref().filter(|_| !self.reverse) else {
            return 0;
        };
        let live = (0..8).fold(0u8, |m, b| {
            if self.per_bucket[b] > 0 {
                m | (1 << b)
            } else {
                m
            }
        });
        let nibble = |k: usize, b: u8| {
            let n = &f.nibbles[k];
            n.lo[usize::from(b & 15)] & n.hi[usize::from((b | 0x20) >> 4)]
        };
        text.windows(START_BYTES)
            .enumerate()
            .filter(|&(j, w)| {
                let yes = (0..START_BYTES).fold(live, |m, k| m & nibble(k, w[k]));
                yes != 0 && !f.confirmed(&self.classes, live, text, j)
            })
            .count()
    }

    /// Which automata a pack gives byte rows first (lower first): a search anywhere in a field
    /// (it may step through all of it), then the other forward scans, then the backward ones (a
    /// suffix reads few bytes before its automaton dies).
    pub(crate) fn rows_priority(&self) -> u8 {
        match (self.reverse, self.starts.is_some()) {
            (false, true) => 0,
            (false, false) => 1,
            (true, _) => 2,
        }
    }

    /// Replaces the transitions through the byte classes with rows of 256 entries, the byte
    /// itself picking the entry: one table load less per byte stepped. Every premultiplied state
    /// is rescaled from the alphabet to 256.
    ///
    /// Each match state that only records ([`twins`](Self::twins)) gets an ordinary twin with its
    /// row, numbered between the ordinary states and the special ones (which move up by the
    /// number of twins), and the list of the table entries that lead into it: once a scan has
    /// recorded its patterns, it sends those entries to the twin ([`quiet`](Self::quiet)), so that
    /// a pattern found again and again (a `powershell` in every line) stops leaving the table's
    /// loop, which costs a few hundred instructions each time.
    pub(crate) fn give_rows(&mut self) {
        let Table::Classes { next, width } = &self.table else {
            return;
        };
        let alphabet = self.stride as usize;
        let n = self.eoi.len();
        let first = (self.special / self.stride) as usize;
        let twins = self.twins();
        let t = twins.len();
        let m = n + t;
        // Old state index to new.
        let renumber = |s: usize| if s < first { s } else { s + t };
        // New state index to the old state whose row it has.
        let source = |ns: usize| {
            if ns < first {
                ns
            } else if ns < first + t {
                first + twins[ns - first]
            } else {
                ns - t
            }
        };
        // State `i` premultiplied by 256 (at most `BYTE_ROWS_UP_TO` states: in range).
        let row = |i: usize| u32::try_from(i * 256).unwrap_or(u32::MAX);
        let (next, width) = (&**next, usize::from(*width));
        let target = |s: usize, b: usize| {
            let old =
                entry(next, width, s * alphabet + usize::from(self.classes[b])) as usize / alphabet;
            renumber(old)
        };
        let rows = m.next_power_of_two() * 256;
        let mut into: Vec<Vec<u32>> = vec![Vec::new(); t];
        // Where a special state with a twin is among the twins.
        let mut twin_index = vec![usize::MAX; self.specials.len()];
        for (j, &k) in twins.iter().enumerate() {
            twin_index[k] = j;
        }
        let mut note = |idx: usize, to: usize| {
            if let Some(k) = to.checked_sub(first + t)
                && let Some(&j) = twin_index.get(k)
                && let Some(list) = into.get_mut(j)
                && list.len() <= MAX_QUIET_ENTRIES
            {
                list.push(u32::try_from(idx).unwrap_or(u32::MAX));
            }
        };
        let table = if m <= 256 {
            let mut rows_of = vec![Cell::new(0u8); rows];
            for ns in 0..m {
                for b in 0..256 {
                    let to = target(source(ns), b);
                    note(ns * 256 + b, to);
                    rows_of[ns * 256 + b] = Cell::new(u8::try_from(to).unwrap_or(0));
                }
            }
            Table::Bytes8(rows_of)
        } else {
            let mut rows_of = vec![Cell::new(0u32); rows];
            for ns in 0..m {
                for b in 0..256 {
                    let to = target(source(ns), b);
                    note(ns * 256 + b, to);
                    rows_of[ns * 256 + b] = Cell::new(u32::try_from(to * 256).unwrap_or(u32::MAX));
                }
            }
            Table::Bytes32(rows_of)
        };
        let rescale = |v: u32| row(renumber(v as usize / alphabet));
        let eoi: Vec<u32> = (0..m).map(|ns| rescale(self.eoi[source(ns)])).collect();
        self.eoi = eoi;
        self.restart.iter_mut().for_each(|v| *v = rescale(*v));
        self.start = rescale(self.start);
        // The first special state, and the first hard one, move up by the twins (as every
        // special state does).
        self.special = row(first + t);
        self.hard = row((self.hard / self.stride) as usize + t);
        self.quiet_bounds = vec![0; self.specials.len() + 1];
        self.entries.clear();
        for (k, sp) in self.specials.iter_mut().enumerate() {
            if let Some(list) = twin_index.get(k).and_then(|&j| into.get(j))
                && list.len() <= MAX_QUIET_ENTRIES
            {
                sp.twin = row(first + twin_index[k]);
                self.entries.extend_from_slice(list);
            }
            self.quiet_bounds[k + 1] = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        }
        self.stride = 256;
        self.table = table;
    }

    /// Special state `s` (a match state with a twin) has recorded its patterns in this scan: the
    /// entries leading into it now lead into its twin, which has its row and is ordinary, so the
    /// scan passes through it in the table's loop. [`restore`](Self::restore) puts them back when
    /// the scan ends (the table is the automaton's, kept across events and scans).
    #[inline(never)]
    fn quiet(&self, s: u32, twin: u32, st: &mut ScanState) {
        // First noted, then changed: a scan cut short in between leaves nothing it does not
        // put back.
        st.quieted.push(s);
        self.redirect(self.entries_into(s), twin);
    }

    /// The table entries that lead into special state `s` (premultiplied), if it has a twin.
    fn entries_into(&self, s: u32) -> &[u32] {
        let k = (s.saturating_sub(self.special) / self.stride) as usize;
        let (a, b) = (
            self.quiet_bounds.get(k).copied().unwrap_or(0) as usize,
            self.quiet_bounds.get(k + 1).copied().unwrap_or(0) as usize,
        );
        self.entries.get(a..b).unwrap_or_default()
    }

    /// Points the table entries `at` at state `to` (premultiplied).
    fn redirect(&self, at: &[u32], to: u32) {
        match &self.table {
            Table::Bytes8(rows) => {
                let v = u8::try_from(to >> 8).unwrap_or(0);
                for &i in at {
                    if let Some(c) = rows.get(i as usize) {
                        c.set(v);
                    }
                }
            }
            Table::Bytes32(rows) => {
                for &i in at {
                    if let Some(c) = rows.get(i as usize) {
                        c.set(to);
                    }
                }
            }
            Table::Classes { .. } => {}
        }
    }

    /// Puts back every entry a scan with `st` sent to a twin ([`quiet`](Self::quiet)).
    #[inline]
    fn restore(&self, st: &mut ScanState) {
        if st.quieted.is_empty() {
            return;
        }
        let mut quieted = core::mem::take(&mut st.quieted);
        for &s in &quieted {
            self.redirect(self.entries_into(s), s);
        }
        quieted.clear();
        st.quieted = quieted;
    }

    /// The number of patterns.
    pub fn patterns(&self) -> u16 {
        self.patterns
    }

    /// A fresh [`ScanState`] for this automaton.
    pub fn state(&self) -> ScanState {
        let mut st = ScanState {
            found: vec![0; usize::from(self.patterns).div_ceil(64)],
            done: vec![0; self.bucket.len().div_ceil(64)],
            ..ScanState::default()
        };
        self.reset(&mut st);
        st
    }

    /// Forgets what `st` found (for the next event).
    pub fn reset(&self, st: &mut ScanState) {
        st.found.fill(0);
        st.done.fill(0);
        st.left = self.per_bucket;
        st.live = 0;
        for (k, n) in self.per_bucket.iter().enumerate() {
            if *n > 0 {
                st.live |= 1 << k;
            }
        }
        st.open = self.groups;
        st.gave_up = false;
        #[cfg(not(target_arch = "wasm32"))]
        {
            st.stepped = 0;
            st.skips = 0;
        }
    }

    /// Runs over `text` and records in `st` every pattern that matches. The scan stops when
    /// nothing it could still find matters ([`Dfa::groups`]); keep `st` across several texts when a
    /// pattern matches if it matches any of them. `st` must come from [`state`](Self::state).
    pub fn scan(&self, text: &[u8], st: &mut ScanState) {
        if st.open == 0 {
            return;
        }
        // What a scan cut short (a trap) left quiet, then what this one makes quiet.
        self.restore(st);
        let classes = &self.classes;
        match &self.table {
            // With twins, the scan that makes states quiet; without, the one that cannot (its
            // exits check nothing more than before twins were).
            Table::Bytes8(rows) if self.entries.is_empty() => {
                self.direction::<_, false>(&Bytes8(rows), text, st);
            }
            Table::Bytes8(rows) => self.direction::<_, true>(&Bytes8(rows), text, st),
            Table::Bytes32(rows) if self.entries.is_empty() => {
                self.direction::<_, false>(&Bytes32(rows), text, st);
            }
            Table::Bytes32(rows) => self.direction::<_, true>(&Bytes32(rows), text, st),
            Table::Classes { next, width: 2 } => {
                self.direction::<_, false>(&ByClass(next.as_chunks::<2>().0, classes), text, st);
            }
            Table::Classes { next, .. } => {
                self.direction::<_, false>(&ByClass(next.as_chunks::<4>().0, classes), text, st);
            }
        }
        self.restore(st);
    }

    /// Like [`scan`](Self::scan), for a scan that only saves work (a gate before other scans of
    /// the same text): where its skips stop paying, it gives up instead of stepping through the
    /// table, and returns `false` (what it found so far stays recorded; what it did not read is
    /// unknown). `true`: it read what it had to, as [`scan`](Self::scan) would have.
    pub fn scan_quick(&self, text: &[u8], st: &mut ScanState) -> bool {
        st.quick = true;
        self.scan(text, st);
        st.quick = false;
        !st.gave_up
    }

    fn direction<T: Next, const QUIET: bool>(&self, t: &T, text: &[u8], st: &mut ScanState) {
        if self.reverse {
            self.backward::<T, QUIET>(t, text, st);
        } else {
            self.forward::<T, QUIET>(t, text, st);
        }
    }

    fn prepared(&self, s: u32) -> &Prepared {
        // `s >= special`, so the index is in range (checked at construction).
        &self.specials[((s - self.special) / self.stride) as usize]
    }

    /// Records `sp`'s matches; `true` when nothing more matters. Inlined, with the work of a
    /// pattern's first match apart ([`first_match`](Self::first_match)): a match state the scan
    /// passes through again (a pattern found before, in every few bytes of the text) costs a bit
    /// test per pattern.
    #[inline(always)]
    fn record<const QUIET: bool>(&self, s: u32, sp: &Prepared, st: &mut ScanState) -> bool {
        let (start, end) = sp.matches;
        for &p in self
            .matches
            .get(start as usize..end as usize)
            .unwrap_or_default()
        {
            if set(&mut st.found, usize::from(p)) {
                self.first_match(p, st);
                // Every pattern of `s` is recorded once this loop ends: entering it again would
                // record nothing. (Checked on a first match only, so that a state met again, or
                // one that matches nothing, costs no more than before.)
                if QUIET && sp.twin != NO_TWIN {
                    self.quiet(s, sp.twin, st);
                }
            }
        }
        st.open == 0
    }

    /// Pattern `p` matched for the first time: its group, if still open, stops mattering.
    #[inline(never)]
    fn first_match(&self, p: u16, st: &mut ScanState) {
        let g = usize::from(self.group[usize::from(p)]);
        if set(&mut st.done, g) {
            st.open = st.open.saturating_sub(1);
            let (a, b) = (self.bounds[g] as usize, self.bounds[g + 1] as usize);
            for &m in &self.members[a..b] {
                let bit = self.bucket[usize::from(m)];
                let k = bit.trailing_zeros() as usize;
                st.left[k] = st.left[k].saturating_sub(1);
                if st.left[k] == 0 {
                    st.live &= !bit;
                }
            }
        }
    }

    /// The end of the text in state `s`.
    fn finish(&self, s: u32, st: &mut ScanState) {
        let end = self.eoi[(s / self.stride) as usize];
        if end >= self.special {
            self.record::<false>(end, self.prepared(end), st);
        }
    }

    // With SIMD in the sandbox, so that the skips inline into the scan.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn forward<T: Next, const QUIET: bool>(&self, t: &T, text: &[u8], st: &mut ScanState) {
        #[cfg(target_arch = "wasm32")]
        let vectors: Vectors = self.starts.as_ref().map(|f| simd::Tables::new(&f.nibbles));
        #[cfg(not(target_arch = "wasm32"))]
        let vectors: Vectors = ();
        let mut s = self.start;
        let mut i = 0usize;
        let mut backoff = Backoff::new();
        let mut pending = Pending::NONE;
        loop {
            // Stepping (the skips stopped paying): a state special only to be skipped from is an
            // ordinary one, and the run below goes on through it.
            let stepping = i < backoff.stepping;
            if s >= self.special {
                let sp = self.prepared(s);
                match &self.starts {
                    _ if stepping && sp.soft => {}
                    // Nothing under way and nothing to record: straight to the next position where
                    // a match may start, in the idle state for the byte before it.
                    Some(f) if sp.idle => {
                        st.count_skip();
                        let j = f.skip(&vectors, &self.classes, st.live, text, i, &mut pending);
                        backoff.rejected += core::mem::take(&mut pending.rejected);
                        if j > i
                            && let Some(&b) = text.get(j - 1)
                        {
                            s = self.restart[usize::from(b & self.restart_mask)];
                        }
                        backoff.skipped(i, j);
                        i = j;
                        if st.quick && backoff.stepping > i {
                            st.gave_up = true;
                            return;
                        }
                    }
                    _ => {
                        if sp.dead || self.record::<QUIET>(s, sp, st) {
                            return;
                        }
                        if let Some(set) = &sp.skip {
                            st.count_skip();
                            let j = set.skip_forward(text, i);
                            backoff.skipped(i, j);
                            i = j;
                        }
                    }
                }
            }
            let (limit, end) = if stepping {
                (self.hard, backoff.stepping.min(text.len()))
            } else {
                (self.special, text.len())
            };
            let rest = text.get(i..end).unwrap_or_default();
            match run_forward(t, limit, s, rest) {
                Step::Special(next, k) => {
                    st.count_steps(k);
                    s = next;
                    i += k;
                }
                Step::End(last) => {
                    st.count_steps(rest.len());
                    if end >= text.len() {
                        return self.finish(last, st);
                    }
                    // The stretch is stepped: the skips get another chance from here.
                    s = last;
                    i = end;
                    backoff.resume();
                }
            }
        }
    }

    fn backward<T: Next, const QUIET: bool>(&self, t: &T, text: &[u8], st: &mut ScanState) {
        let mut s = self.start;
        // Bytes `..i` are still to read, last first.
        let mut i = text.len();
        loop {
            if s >= self.special {
                let sp = self.prepared(s);
                if sp.dead || self.record::<QUIET>(s, sp, st) {
                    return;
                }
                if let Some(set) = &sp.skip {
                    i = set.skip_backward(text, i);
                }
            }
            let rest = text.get(..i).unwrap_or_default();
            match run_backward(t, self.special, s, rest) {
                Step::Special(next, k) => {
                    st.count_steps(k);
                    s = next;
                    i -= k;
                }
                Step::End(end) => {
                    st.count_steps(rest.len());
                    return self.finish(end, st);
                }
            }
        }
    }
}

/// When the skips stop paying and the scan steps through the table instead.
///
/// A skip pays when it passes over enough bytes: its setup, the exact check of its candidate and the
/// way back into the scan cost about what stepping [`Backoff::STOP`] bytes saves over skipping them
/// (in the sandbox's fuel, measured on 2026-12-02 with the rules of `sigma/tests/caps.rs` at the
/// cap: a stop costs a few hundred, a byte stepped about 17, a byte skipped 5.5; 16 bytes, the
/// figure from a stop of 175, left rules skipping at a loss to 77% of their budget), and each
/// candidate the start filter looked at and turned down costs what [`Backoff::REJECTED_BYTES`]
/// bytes save. The scan counts its skips in windows of [`Backoff::WINDOW`]: a window whose skips
/// passed over fewer bytes than that (`WINDOW × STOP` and the rejected candidates' share) cost
/// more than stepping would have, and the scan then steps the next
/// stretch through the table
/// ([`Backoff::FIRST`] bytes, doubling with every further such window in a row, up to
/// [`Backoff::LONGEST`]) before it tries the skips again; a window that paid starts over. So a text
/// whose every few bytes stop the skips costs at most about one table step per byte, plus a
/// window of skips per stretch (a share that halves as the stretches double), and a text the
/// skips pass over costs the skips.
struct Backoff {
    /// Until this byte the scan steps.
    stepping: usize,
    /// Bytes the current window's skips passed over.
    gained: usize,
    /// Skips in the current window.
    skips: u32,
    /// Candidates the current window's skips looked at and turned down
    /// ([`Backoff::REJECTED_BYTES`] each).
    rejected: usize,
    /// The next stretch to step.
    stretch: usize,
}

impl Backoff {
    /// The bytes a skip must pass over, on average, to pay.
    const STOP: usize = 32;
    /// Skips per window.
    const WINDOW: u32 = 8;
    /// What a candidate the start filter turns down costs a skip, in bytes it must pass over to
    /// pay for it (about 30 instructions of the exact check, at about 12 a byte saved).
    const REJECTED_BYTES: usize = 3;
    /// The first stretch stepped after a window of skips that did not pay.
    const FIRST: usize = 256;
    /// The longest stretch.
    const LONGEST: usize = 16 << 10;

    fn new() -> Backoff {
        Backoff {
            stepping: 0,
            gained: 0,
            skips: 0,
            rejected: 0,
            stretch: Backoff::FIRST,
        }
    }

    /// A skip from `i` ended at `j`.
    #[inline]
    fn skipped(&mut self, i: usize, j: usize) {
        self.skips += 1;
        self.gained += j.saturating_sub(i);
        if self.skips < Backoff::WINDOW {
            return;
        }
        let cost = Backoff::WINDOW as usize * Backoff::STOP
            + self.rejected.saturating_mul(Backoff::REJECTED_BYTES);
        if self.gained < cost {
            self.stepping = j.saturating_add(self.stretch);
            self.stretch = (self.stretch * 2).min(Backoff::LONGEST);
        } else {
            self.stretch = Backoff::FIRST;
        }
        self.skips = 0;
        self.gained = 0;
        self.rejected = 0;
    }

    /// A stretch of stepping ended: a new window begins.
    #[inline]
    fn resume(&mut self) {
        self.skips = 0;
        self.gained = 0;
        self.rejected = 0;
    }
}

/// A table entry as a premultiplied state.
trait Entry {
    fn state(&self) -> u32;
}

impl Entry for [u8; 2] {
    #[inline(always)]
    fn state(&self) -> u32 {
        u32::from(u16::from_le_bytes(*self))
    }
}

impl Entry for [u8; 4] {
    #[inline(always)]
    fn state(&self) -> u32 {
        u32::from_le_bytes(*self)
    }
}

/// The transitions as the scan reads them: one table load per byte.
trait Next {
    /// The state after byte `b` in the ordinary state `s` (a row offset).
    fn next(&self, s: u32, b: u8) -> u32;
}

/// Rows of `alphabet` entries, a byte's class picking the entry (the compiler's table, in place).
struct ByClass<'t, const N: usize>(&'t [[u8; N]], &'t [u8; 256]);

impl<const N: usize> Next for ByClass<'_, N>
where
    [u8; N]: Entry,
{
    #[inline(always)]
    fn next(&self, s: u32, b: u8) -> u32 {
        // In range: `s` is a row and the class is below the alphabet (checked at load), so an
        // out-of-range index would be a bug, caught here.
        self.0[(s + u32::from(self.1[usize::from(b)])) as usize].state()
    }
}

/// Rows of 256 entries, the byte itself picking the entry. The table's length is a power of two,
/// so masking the index with the length less one keeps it in range without a bounds check (it is
/// in range anyway: a row's offset plus a byte).
/// Up to 256 states, an entry is the target's index (a byte), premultiplied by a shift: as many
/// instructions per byte as premultiplied 16-bit entries, in half the memory.
struct Bytes8<'t>(&'t [Cell<u8>]);
struct Bytes32<'t>(&'t [Cell<u32>]);

impl Next for Bytes8<'_> {
    #[inline(always)]
    fn next(&self, s: u32, b: u8) -> u32 {
        let Some(mask) = self.0.len().checked_sub(1) else {
            return 0;
        };
        u32::from(self.0[(s as usize + usize::from(b)) & mask].get()) << 8
    }
}

impl Next for Bytes32<'_> {
    #[inline(always)]
    fn next(&self, s: u32, b: u8) -> u32 {
        let Some(mask) = self.0.len().checked_sub(1) else {
            return 0;
        };
        self.0[(s as usize + usize::from(b)) & mask].get()
    }
}

/// Automata up to this many states may get rows of 256 entries built at load (256 bytes each up
/// to 256 states, 256 × 4 bytes beyond): one table load less per byte than through the classes.
pub const BYTE_ROWS_UP_TO: usize = 2048;

/// An automaton's transitions.
#[derive(Debug, Clone)]
enum Table<'a> {
    /// The compiler's rows of `alphabet` entries, `width` bytes each, premultiplied by the
    /// alphabet, where they were decoded from.
    Classes { next: Cow<'a, [u8]>, width: u8 },
    /// Rows of 256 entries, each the target's index (up to 256 states), a power of two of rows.
    /// Entries into a match state change during a scan ([`Automaton::quiet`]), hence the cells.
    Bytes8(Vec<Cell<u8>>),
    /// Rows of 256 entries premultiplied by 256, a power of two of them (beyond 256 states).
    Bytes32(Vec<Cell<u32>>),
}

impl Table<'_> {
    /// The bytes of the rows of 256 entries of an automaton of `n` states.
    fn rows_size(n: usize) -> usize {
        n.next_power_of_two() * 256 * if n <= 256 { 1 } else { 4 }
    }
}

/// The common path: from `s`, one table load and one comparison per byte of `bytes`, until a
/// special state or the end. Eight bytes per loop turn, and the turn counts nothing but its
/// pointer (where it stopped is worked out from what is left, once, on the way out), so the
/// loop's own bookkeeping is a fraction of a byte's work. Not inlined: alone, its loop compiles to
/// what the comment above says (a byte load at a constant offset, the table load, one
/// comparison); inlined into the scan, with the skips around it, it compiled to several
/// instructions more per byte, and a call per run is cheap beside that.
#[inline(never)]
fn run_forward<T: Next>(t: &T, special: u32, mut s: u32, bytes: &[u8]) -> Step {
    let (chunks, tail) = bytes.as_chunks::<8>();
    let mut turns = chunks.iter();
    // The bytes read when the state after byte `k` of the current chunk is special.
    let at = |left: usize, k: usize| (chunks.len() - left - 1) * 8 + k + 1;
    while let Some(c) = turns.next() {
        // Written out: each byte is a load at a constant offset.
        s = t.next(s, c[0]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 0));
        }
        s = t.next(s, c[1]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 1));
        }
        s = t.next(s, c[2]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 2));
        }
        s = t.next(s, c[3]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 3));
        }
        s = t.next(s, c[4]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 4));
        }
        s = t.next(s, c[5]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 5));
        }
        s = t.next(s, c[6]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 6));
        }
        s = t.next(s, c[7]);
        if s >= special {
            return Step::Special(s, at(turns.len(), 7));
        }
    }
    let done = chunks.len() * 8;
    for (k, &b) in tail.iter().enumerate() {
        s = t.next(s, b);
        if s >= special {
            return Step::Special(s, done + k + 1);
        }
    }
    Step::End(s)
}

/// [`run_forward`] from the last byte of `bytes` to the first.
#[inline(always)]
fn run_backward<T: Next>(t: &T, special: u32, mut s: u32, bytes: &[u8]) -> Step {
    let (head, chunks) = bytes.as_rchunks::<4>();
    for (n, c) in chunks.iter().rev().enumerate() {
        s = t.next(s, c[3]);
        if s >= special {
            return Step::Special(s, n * 4 + 1);
        }
        s = t.next(s, c[2]);
        if s >= special {
            return Step::Special(s, n * 4 + 2);
        }
        s = t.next(s, c[1]);
        if s >= special {
            return Step::Special(s, n * 4 + 3);
        }
        s = t.next(s, c[0]);
        if s >= special {
            return Step::Special(s, n * 4 + 4);
        }
    }
    let done = chunks.len() * 4;
    for (k, &b) in head.iter().rev().enumerate() {
        s = t.next(s, b);
        if s >= special {
            return Step::Special(s, done + k + 1);
        }
    }
    Step::End(s)
}

/// A byte → bucket-mask map as two 16-entry nibble tables: `lo[b & 15] & hi[b >> 4]`. It answers
/// with at least the buckets of `b` (a superset: a skip may stop early, which costs a step, never
/// a miss).
#[derive(Debug, Clone)]
struct Nibbles {
    lo: [u8; 16],
    hi: [u8; 16],
}

impl Nibbles {
    /// The nibble tables of `mask` (each byte's buckets).
    fn of_masks(mask: impl Fn(u8) -> u8) -> Nibbles {
        let mut n = Nibbles {
            lo: [0; 16],
            hi: [0; 16],
        };
        for b in 0..=255u8 {
            let m = mask(b);
            n.lo[usize::from(b & 15)] |= m;
            n.hi[usize::from(b >> 4)] |= m;
        }
        n
    }

    /// A set of bytes (`None` when that is every byte: nothing to skip). High nibbles whose
    /// members have the same low nibbles share a bucket; while there are at most 8 such groups
    /// (always, when every byte above ASCII is a member: those 8 high nibbles are one group), the
    /// set is exact. With more, nibbles `h` and `h + 8` share a bucket, a superset.
    fn of_set(member: impl Fn(u8) -> bool) -> Option<Nibbles> {
        // Per high nibble, the low nibbles of its members.
        let mut lows = [0u16; 16];
        let mut count = 0;
        for b in 0..=255u8 {
            if member(b) {
                lows[usize::from(b >> 4)] |= 1 << (b & 15);
                count += 1;
            }
        }
        if count == 256 {
            return None;
        }
        // The distinct low-nibble sets, in order of first use.
        let mut groups = [0u16; 16];
        let mut distinct = 0;
        for &l in &lows {
            if l != 0 && !groups[..distinct].contains(&l) {
                groups[distinct] = l;
                distinct += 1;
            }
        }
        let mut bucket = [0u8; 16];
        for (h, slot) in bucket.iter_mut().enumerate() {
            *slot = if distinct > 8 {
                1 << (h & 7)
            } else {
                groups[..distinct]
                    .iter()
                    .position(|&g| g == lows[h] && g != 0)
                    .map_or(0, |k| 1 << k)
            };
        }
        Some(Nibbles::of_masks(|b| {
            if member(b) {
                bucket[usize::from(b >> 4)]
            } else {
                0
            }
        }))
    }

    #[inline]
    fn get(&self, b: u8) -> u8 {
        self.lo[usize::from(b & 15)] & self.hi[usize::from(b >> 4)]
    }

    /// The first `j >= i` whose byte may be in the set, or `text.len()`.
    fn skip_forward(&self, text: &[u8], i: usize) -> usize {
        #[cfg(target_arch = "wasm32")]
        let i = simd::skip_set(self, text, i);
        let tail = text.get(i..).unwrap_or_default();
        tail.iter()
            .position(|&b| self.get(b) != 0)
            .map_or(text.len(), |k| i + k)
    }

    /// The largest `j <= i` such that byte `j - 1` may be in the set, or 0.
    fn skip_backward(&self, text: &[u8], i: usize) -> usize {
        let head = text.get(..i).unwrap_or_default();
        head.iter()
            .rposition(|&b| self.get(b) != 0)
            .map_or(0, |k| k + 1)
    }
}

/// A [`Starts`] filter as the scan uses it: exact tables and their nibble supersets.
#[derive(Debug, Clone)]
struct Filter {
    /// The start bitmap and its size in bits (log 2); empty when there is none.
    quads: Vec<u64>,
    quad_bits: u32,
    short: u8,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        allow(dead_code, reason = "the 16-byte skip is the sandbox's")
    )]
    nibbles: [Nibbles; START_BYTES],
    exact: [[u8; 256]; START_BYTES],
}

impl Filter {
    fn new(starts: &Starts) -> Filter {
        let mut exact = [[0u8; 256]; START_BYTES];
        for (e, t) in exact.iter_mut().zip(&starts.bytes) {
            e.copy_from_slice(t);
        }
        let quad_bits = (starts.quads.len() * 64).trailing_zeros();
        Filter {
            // Over bytes with bit 5 set (`b | 0x20`): an ASCII letter and its capital are one byte
            // there, so a bucket's letters need half the nibbles and the tables let through fewer
            // wrong candidates. (The other bytes paired this way only add candidates, checked.)
            nibbles: core::array::from_fn(|k| {
                Nibbles::of_masks(|x| {
                    if x & 0x20 == 0 {
                        return 0;
                    }
                    exact[k][usize::from(x)] | exact[k][usize::from(x & !0x20)]
                })
            }),
            exact,
            quads: starts.quads.clone(),
            quad_bits,
            short: starts.short,
        }
    }

    /// Whether a match of a bucket in `live` may start at `j`: the exact tables and, for buckets
    /// of patterns four bytes long or more, the start bitmap (`classes`: the automaton's).
    #[inline]
    fn confirmed(&self, classes: &[u8; 256], live: u8, text: &[u8], j: usize) -> bool {
        let Some(&[a, b, c, d]) = text.get(j..j + 4).and_then(|w| w.as_array()) else {
            return self.may_start(live, text, j);
        };
        let bits = self.exact[0][usize::from(a)]
            & self.exact[1][usize::from(b)]
            & self.exact[2][usize::from(c)]
            & self.exact[3][usize::from(d)]
            & live;
        if bits == 0 {
            return false;
        }
        if self.quads.is_empty() || bits & self.short != 0 {
            return true;
        }
        let cls = [a, b, c, d].map(|x| classes[usize::from(x)]);
        let h = quad_hash(cls, self.quad_bits);
        self.quads
            .get(h / 64)
            .is_some_and(|w| w & (1 << (h % 64)) != 0)
    }

    /// Whether a match of a bucket in `live` may start at `j`, near the end of the text (the
    /// missing bytes allow every bucket).
    #[inline]
    fn may_start(&self, live: u8, text: &[u8], j: usize) -> bool {
        let at = |k: usize| {
            text.get(j + k)
                .map_or(0xff, |&b| self.exact[k][usize::from(b)])
        };
        at(0) & at(1) & at(2) & at(3) & live != 0
    }

    /// A skip that has turned down this many candidates, more than the bytes it passed over pay
    /// for, hands back to the scan.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        allow(dead_code, reason = "the 16-byte skip is the sandbox's")
    )]
    const GIVE_UP_AFTER: usize = 16;

    /// The first `j >= i` where a match of a bucket in `live` may start, or `text.len()`.
    /// `pending` carries, from one skip to the next of a scan, the candidates of the 16-byte block
    /// the last skip stopped in and has not looked at yet: a skip that begins inside that block
    /// takes them rather than reading the block's bytes again (the stop of a near miss a few bytes
    /// long is so one block of tables less). They were found with the buckets then live, which
    /// can only have lost members since, so they are still every candidate of the block.
    // Always into the scan, whose SIMD tables it uses (a call would reload them).
    #[inline(always)]
    fn skip(
        &self,
        tables: &Vectors,
        classes: &[u8; 256],
        live: u8,
        text: &[u8],
        mut i: usize,
        pending: &mut Pending,
    ) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (tables, &pending);
        // 16 positions at a time where the nibble tables allow (a yes there may be wrong: each is
        // checked against the exact tables before the skip returns it), then one at a time.
        #[cfg(target_arch = "wasm32")]
        if let Some(t) = tables {
            let (from, rejected) = (i, pending.rejected);
            let (mut block, mut lanes) = match i.checked_sub(pending.block) {
                Some(d) if d < 16 => match pending.lanes & (u16::MAX << d) {
                    0 => simd::skip_starts(t, live, text, pending.block + 16),
                    rest => (pending.block, rest),
                },
                _ => simd::skip_starts(t, live, text, i),
            };
            // No candidate: `block` is where fewer than a block's bytes are left.
            while lanes != 0 {
                // Each candidate of the block in turn, without another pass of the tables.
                while lanes != 0 {
                    let j = block + lanes.trailing_zeros() as usize;
                    lanes &= lanes - 1;
                    if self.confirmed(classes, live, text, j) {
                        pending.block = block;
                        pending.lanes = lanes;
                        return j;
                    }
                    pending.rejected += 1;
                }
                // Candidates turned down faster than the bytes passed over pay for them (text
                // the nibble tables say yes to nearly everywhere): back to the scan after this
                // block, every position before it turned down, in the idle state there as at
                // any position a skip passes, so that the scan's [`Backoff`] counts them and
                // steps instead. Without this, one skip could turn down a candidate every byte
                // or two of a whole field, at about 30 instructions each.
                let turned_down = pending.rejected - rejected;
                if turned_down >= Filter::GIVE_UP_AFTER
                    && turned_down * Backoff::REJECTED_BYTES > block - from
                {
                    pending.block = Pending::NONE.block;
                    return (block + 16).min(text.len());
                }
                (block, lanes) = simd::skip_starts(t, live, text, block + 16);
            }
            i = block;
            pending.block = Pending::NONE.block;
            pending.lanes = 0;
        }
        while i < text.len() && !self.confirmed(classes, live, text, i) {
            i += 1;
            pending.rejected += 1;
        }
        i.min(text.len())
    }
}

/// The candidates of a block of 16 positions a skip has not looked at yet ([`Filter::skip`]).
#[derive(Clone, Copy)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    allow(dead_code, reason = "the 16-byte skip is the sandbox's")
)]
struct Pending {
    /// The block's first position (`usize::MAX`: none).
    block: usize,
    /// Bit `k`: position `block + k`.
    lanes: u16,
    /// Candidates the skips looked at and turned down, since the scan last took the count (for
    /// its [`Backoff`]).
    rejected: usize,
}

impl Pending {
    /// No block.
    const NONE: Pending = Pending {
        block: usize::MAX,
        lanes: 0,
        rejected: 0,
    };
}

/// A filter's tables as the scan keeps them: SIMD vectors in the sandbox, nothing natively.
#[cfg(target_arch = "wasm32")]
type Vectors = Option<simd::Tables>;
#[cfg(not(target_arch = "wasm32"))]
type Vectors = ();

/// The skips over 16 bytes at a time, with WebAssembly SIMD.
#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::{
        i8x16_bitmask, i8x16_ne, i8x16_splat, i8x16_swizzle, u8x16_shr, u8x16_splat, v128,
        v128_and, v128_any_true, v128_load,
    };

    use super::Nibbles;

    /// The 16 bytes as a vector, in one load (built lane by lane, as `u8x16` does, it is 32
    /// instructions: most of a skip's cost per block).
    #[inline]
    #[target_feature(enable = "simd128")]
    fn load(b: &[u8; 16]) -> v128 {
        // SAFETY: `b` is 16 readable bytes, and `v128_load` reads exactly 16 bytes at any
        // alignment. (WebAssembly has no safe vector load: every `core::arch::wasm32` load is an
        // `unsafe fn` on a raw pointer.)
        unsafe { v128_load(b.as_ptr().cast::<v128>()) }
    }

    /// The buckets of each of 16 bytes.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn lookup(lo: v128, hi: v128, v: v128) -> v128 {
        v128_and(
            i8x16_swizzle(lo, v128_and(v, u8x16_splat(0x0f))),
            i8x16_swizzle(hi, u8x16_shr(v, 4)),
        )
    }

    /// The lanes with a bucket, as a bit mask.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn lanes(hit: v128) -> u16 {
        i8x16_bitmask(i8x16_ne(hit, i8x16_splat(0)))
    }

    /// The first lane with a bucket.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn first_lane(hit: v128) -> usize {
        lanes(hit).trailing_zeros() as usize
    }

    /// The first `j >= i` whose byte may be in `set`, or the start of the last partial block (the
    /// caller looks at the rest byte by byte).
    #[target_feature(enable = "simd128")]
    pub(super) fn skip_set(set: &Nibbles, text: &[u8], mut i: usize) -> usize {
        let (lo, hi) = (load(&set.lo), load(&set.hi));
        while let Some(block) = text.get(i..i + 16) {
            let Ok(block) = <&[u8; 16]>::try_from(block) else {
                break;
            };
            let hit = lookup(lo, hi, load(block));
            if v128_any_true(hit) {
                return i + first_lane(hit);
            }
            i += 16;
        }
        i
    }

    /// A [`Filter`](super::Filter)'s nibble tables in vectors, loaded once per scan. The filter's
    /// tables are over bytes with bit 5 set (`b | 0x20`, see [`Filter`](super::Filter)); here each
    /// high-nibble table is indexed by the byte's own high nibble (entry `h` is the filter's entry
    /// `h | 2`), so the scan does not set the bit in every block.
    #[derive(Clone, Copy)]
    pub(super) struct Tables([(v128, v128); super::START_BYTES]);

    impl Tables {
        #[inline]
        #[target_feature(enable = "simd128")]
        pub(super) fn new(n: &[Nibbles; super::START_BYTES]) -> Tables {
            let folded = load(&[2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15]);
            Tables(core::array::from_fn(|k| {
                (load(&n[k].lo), i8x16_swizzle(load(&n[k].hi), folded))
            }))
        }
    }

    /// The bytes of `w` from `K` on, as a vector.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn load_at<const K: usize>(w: &[u8; BLOCK_BYTES]) -> v128 {
        const { assert!(K + 16 <= BLOCK_BYTES) };
        // SAFETY: bytes `K..K + 16` of `w` are readable (`K + 16 <= BLOCK_BYTES`, checked at
        // compile time), and `v128_load` reads exactly 16 bytes at any alignment. A pointer
        // offset rather than a subslice, so that the load carries `K` as its offset immediate.
        unsafe { v128_load(w.as_ptr().add(K).cast::<v128>()) }
    }

    /// The bytes a block of 16 positions reads: each position's four.
    const BLOCK_BYTES: usize = 16 + super::START_BYTES - 1;

    /// The first block of 16 positions from `i` where the four bytes of some position may start
    /// a match of a bucket in `live`: its start and the mask of those positions (bit `k`:
    /// position `start + k`). Or, with a mask of 0, where fewer than 19 bytes are left (the caller
    /// looks at the rest byte by byte).
    ///
    /// Per block, the bytes at each of the four offsets in one (unaligned) load and their two
    /// nibble lookups: about 85 instructions for 16 positions (about 100 when the four offsets
    /// were shuffled out of two blocks' nibbles).
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn skip_starts(t: &Tables, live: u8, text: &[u8], mut i: usize) -> (usize, u16) {
        let t = &t.0;
        let live = u8x16_splat(live);
        while let Some(w) = text
            .get(i..)
            .and_then(|rest| rest.first_chunk::<BLOCK_BYTES>())
        {
            let m0 = lookup(t[0].0, t[0].1, load_at::<0>(w));
            let m1 = lookup(t[1].0, t[1].1, load_at::<1>(w));
            let m2 = lookup(t[2].0, t[2].1, load_at::<2>(w));
            let m3 = lookup(t[3].0, t[3].1, load_at::<3>(w));
            let hit = v128_and(v128_and(m0, m1), v128_and(v128_and(m2, m3), live));
            if v128_any_true(hit) {
                return (i, lanes(hit));
            }
            i += 16;
        }
        (i, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn table(entries: &[u32]) -> Cow<'static, [u8]> {
        Cow::Owned(
            entries
                .iter()
                .flat_map(|e| u16::try_from(*e).unwrap_or(u16::MAX).to_le_bytes())
                .collect(),
        )
    }

    /// `ab` anywhere, by hand: states 0 (start, skips), 1 (after `a`), 2 (match).
    /// Classes: `a` 1, `b` 2, everything else 0. Entries premultiplied by 3.
    fn ab() -> Dfa<'static> {
        let mut classes = vec![0u8; 256];
        classes[usize::from(b'a')] = 1;
        classes[usize::from(b'b')] = 2;
        Dfa {
            reverse: false,
            classes,
            alphabet: 3,
            width: 2,
            // state 0: other→0, a→1, b→0; state 1: other→0, a→1, b→2; state 2 (match): →0/1/0
            next: table(&[0, 3, 0, 0, 3, 6, 0, 3, 0]),
            eoi: vec![0, 0, 2],
            start: 0,
            special: 0,
            specials: vec![
                Special {
                    dead: false,
                    accelerate: true,
                    matches: vec![],
                },
                Special {
                    dead: false,
                    accelerate: false,
                    matches: vec![],
                },
                Special {
                    dead: false,
                    accelerate: false,
                    matches: vec![0],
                },
            ],
            patterns: 1,
            starts: None,
            restart: vec![],
            groups: vec![],
            buckets: vec![],
        }
    }

    fn hit(a: &Automaton<'_>, text: &str) -> bool {
        let mut st = a.state();
        a.scan(text.as_bytes(), &mut st);
        st.found(0)
    }

    #[test]
    fn scans_skip_and_match() {
        let mut filtered = ab();
        let mut bytes = [
            vec![0u8; 256],
            vec![0u8; 256],
            vec![0xffu8; 256],
            vec![0xffu8; 256],
        ];
        bytes[0][usize::from(b'a')] = 1;
        bytes[1][usize::from(b'b')] = 1;
        filtered.starts = Some(Starts {
            bytes,
            quads: vec![],
            short: 0,
        });
        for dfa in [ab(), filtered] {
            let a = Automaton::new(dfa).unwrap();
            assert!(hit(&a, "xxab"));
            assert!(hit(&a, "ab"));
            assert!(!hit(&a, "ba"));
            assert!(!hit(&a, ""));
            assert!(!hit(&a, "a"));
            let long: alloc::string::String = "x".repeat(1000) + "ab" + &"y".repeat(40);
            assert!(hit(&a, &long));
            let miss: alloc::string::String = "xa".repeat(700);
            assert!(!hit(&a, &miss));
            let late: alloc::string::String = "xa".repeat(700) + "ab";
            assert!(hit(&a, &late));
        }
    }

    #[test]
    fn check_refuses_what_could_index_out_of_range() {
        let mut d = ab();
        d.next = table(&[0, 3, 0, 0, 9, 6, 0, 3, 0]);
        assert_eq!(d.check(), Err(DfaError::State));
        let mut d = ab();
        d.next = table(&[0, 3, 0, 0, 4, 6, 0, 3, 0]);
        assert_eq!(d.check(), Err(DfaError::State), "not a row start");
        let mut d = ab();
        d.classes[7] = 3;
        assert_eq!(d.check(), Err(DfaError::Classes));
        let mut d = ab();
        d.next.to_mut().pop();
        assert_eq!(d.check(), Err(DfaError::Size));
        let mut d = ab();
        d.width = 3;
        assert_eq!(d.check(), Err(DfaError::Size));
        let mut d = ab();
        d.specials[2].matches = vec![1];
        assert_eq!(d.check(), Err(DfaError::Specials));
        let mut d = ab();
        d.specials.pop();
        assert_eq!(d.check(), Err(DfaError::Specials));
        let mut d = ab();
        d.specials[1].dead = true;
        assert_eq!(d.check(), Err(DfaError::Dead));
        let mut d = ab();
        d.start = 9;
        assert_eq!(d.check(), Err(DfaError::State));
        let mut d = ab();
        d.starts = Some(Starts {
            bytes: [vec![0; 3], vec![0; 256], vec![0; 256], vec![0; 256]],
            quads: vec![],
            short: 0,
        });
        assert_eq!(d.check(), Err(DfaError::Starts));
        let mut d = ab();
        d.groups = vec![1];
        assert_eq!(d.check(), Err(DfaError::Groups));
        let mut d = ab();
        d.buckets = vec![8];
        assert_eq!(d.check(), Err(DfaError::Groups));
        let mut d = ab();
        d.buckets = vec![0, 1];
        assert_eq!(d.check(), Err(DfaError::Groups));
    }

    #[test]
    fn byte_sets_hold_their_bytes() {
        let set = Nibbles::of_set(|b| b == b'a' || b == 0xE2 || b == b' ').unwrap();
        for b in [b'a', 0xE2, b' '] {
            assert!(set.get(b) != 0);
        }
        // At most 8 high nibbles: answered exactly.
        for b in [b'b', b'z', 0x00, 0xFF, 0x62, 0xE1] {
            assert!(set.get(b) == 0, "{b:#x}");
        }
        assert!(Nibbles::of_set(|_| true).is_none());
        // Every byte above ASCII and a few below (10 high nibbles, 4 kinds of them): exact, so a
        // skip from the middle of a pattern under Unicode stops only where the state changes.
        let high = |b: u8| b >= 0x80 || b"\\ Cc\n".contains(&b);
        let mixed = Nibbles::of_set(high).unwrap();
        for b in 0..=255u8 {
            assert_eq!(mixed.get(b) != 0, high(b), "{b:#x}");
        }
        // More than 8 kinds of high nibbles: never a miss.
        let wide = Nibbles::of_set(|b| b % 17 == 0).unwrap();
        assert!(
            (0..=255u8)
                .filter(|b| b % 17 == 0)
                .all(|b| wide.get(b) != 0)
        );
        let text = b"..........................a";
        assert_eq!(set.skip_forward(text, 0), 26);
        assert_eq!(set.skip_forward(text, 27), 27);
        assert_eq!(set.skip_backward(text, 26), 0);
        assert_eq!(set.skip_backward(text, 27), 27);
    }

    #[test]
    fn start_skips_stop_where_a_match_can_start() {
        let mut bytes = [
            vec![0u8; 256],
            vec![0u8; 256],
            vec![0u8; 256],
            vec![0u8; 256],
        ];
        bytes[0][usize::from(b'a')] = 1;
        bytes[1][usize::from(b'd')] = 1;
        bytes[2][usize::from(b'v')] = 1;
        bytes[3][usize::from(b'a')] = 1;
        let f = Filter::new(&Starts {
            bytes,
            quads: vec![],
            short: 0,
        });
        let text = b"a.a.a.a.a.a.a.adv.a.a.a.a.adva....";
        let (v, c) = ((), [0u8; 256]);
        assert_eq!(f.skip(&v, &c, 1, text, 0, &mut { Pending::NONE }), 26);
        assert_eq!(
            f.skip(&v, &c, 2, text, 0, &mut { Pending::NONE }),
            text.len(),
            "a bucket that no longer matters does not stop the skip"
        );
        assert_eq!(
            f.skip(&v, &c, 1, b"xxadv", 0, &mut { Pending::NONE }),
            2,
            "near the end, missing bytes allow"
        );
        assert_eq!(f.skip(&v, &c, 1, b"", 0, &mut { Pending::NONE }), 0);
        assert_eq!(f.skip(&v, &c, 1, b"xyz", 0, &mut { Pending::NONE }), 3);
    }
}
