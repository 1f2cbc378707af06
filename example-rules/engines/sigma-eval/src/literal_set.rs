//! Many literals found in one pass over a text, ignoring ASCII case: the matcher of the pack's
//! prefilter ([`crate::Prefilter`]).
//!
//! The scan reads the text two bytes at a time and keeps the last four (folded) bytes in a word:
//! at every even position it looks the two-byte window starting there up in one byte table (one
//! multiply, one load), which says whether a short literal's window may be there, or a long
//! literal's four-byte window may begin there; only then is the window looked up in the bit table
//! of its width (a four-byte window at the next step, when all its bytes are in). A literal of five
//! bytes or more is filed under two adjacent four-byte windows of it (one of them starts at an
//! even position wherever the literal is), chosen where its bytes are rarest by a fixed table of
//! how common bytes are in command lines and paths; a literal of three or four bytes under its
//! first two two-byte windows. A set bit sends the scan down the chain of literals with that hash,
//! each compared in full. So the cost is linear in the text, a few instructions per byte whatever
//! the number of literals (plus the literals that do occur), and the tables are a few bytes per
//! literal: a pack of thousands of rules builds them in its memory in milliseconds, where a
//! deterministic automaton over the same literals would take megabytes.
//!
//! Literals of fewer than three bytes are not filed (they are in most texts anyway):
//! [`LiteralSet::new`] says which it left out, and the prefilter treats them as always found.

use alloc::vec;
use alloc::vec::Vec;

/// No entry (chain end, empty head).
const NONE: u32 = u32::MAX;

/// How common each byte is in the values rules search (command lines, paths, registry keys):
/// higher is more common. An anchor is the window with the lowest sum.
fn commonness(b: u8) -> u32 {
    match b {
        b' ' | b'\\' | b'.' | b'e' | b'a' | b'i' | b'o' | b't' | b's' | b'n' | b'r' => 8,
        b'/' | b'-' | b':' | b'l' | b'c' | b'd' | b'm' | b'p' | b'x' | b'"' | b'u' => 5,
        b'0'..=b'9' | b'h' | b'g' | b'f' | b'w' | b'b' => 3,
        _ => 1,
    }
}

/// Every byte as the scan compares it: ASCII capitals are their lowercase letter.
const FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation, reason = "i < 256")]
        let b = i as u8;
        t[i] = b.to_ascii_lowercase();
        i += 1;
    }
    t
};

/// The byte as the scan compares it (one table load).
#[inline(always)]
fn fold(b: u8) -> u8 {
    FOLD[usize::from(b)]
}

/// Eight bytes (a little-endian word) as the scan compares them: [`fold`] of each, at once. A
/// byte's low seven bits are its ASCII value only when its top bit is clear; the sums below stay
/// within each byte (at most 0x7F + 0x3F), so no byte's test reaches its neighbour.
#[inline(always)]
fn fold8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let low = x & !HIGH;
    // Top bit set where the low seven bits are at least `A`, and where they are past `Z`.
    let from_a = low + ONES * u64::from(0x80 - b'A');
    let past_z = low + ONES * u64::from(0x80 - b'Z' - 1);
    let capital = from_a & !past_z & !x & HIGH;
    x | (capital >> 2)
}

/// Whether `text` folded ([`fold`]) is `folded` (of its length): eight bytes at a time.
#[inline(always)]
fn equal_folded(text: &[u8], folded: &[u8]) -> bool {
    let (words, tail) = text.as_chunks::<8>();
    let (lit_words, lit_tail) = folded.as_chunks::<8>();
    words.len() == lit_words.len()
        && words
            .iter()
            .zip(lit_words)
            .all(|(t, l)| fold8(u64::from_le_bytes(*t)) == u64::from_le_bytes(*l))
        && tail.len() == lit_tail.len()
        && tail.iter().zip(lit_tail).all(|(&a, &b)| fold(a) == b)
}

/// The hash of a window (its folded bytes as a little-endian word) in a table of `2^bits` bits.
#[inline(always)]
fn hash(word: u32, bits: u32) -> usize {
    (word.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// One table: literals filed under windows of one width.
#[derive(Debug, Clone, Default)]
struct Table {
    /// The hash width of the filter, in bits: [`FILTER_EXTRA_BITS`] more than the chains', whose
    /// heads are indexed by the filter's hashes without their low bits.
    filter_bits: u32,
    /// A bit per filter hash: some literal is filed under a window of that hash.
    filter: Vec<u64>,
    /// Per hash, the first entry of its chain ([`NONE`]: none).
    heads: Vec<u32>,
    /// The entries.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The window's folded bytes as a little-endian word (the top bytes 0 for a 2-byte window).
    window: u32,
    /// Where the window is in the literal.
    offset: u32,
    /// The literal (index into the set's literals).
    literal: u32,
    /// The next entry of the chain.
    next: u32,
}

/// How many more bits the filter's hash has than the chains': 64 bits of filter per window
/// filed (8 bytes), so that a window no literal has passes about one time in 64, where a chain
/// head costs 4 bytes per hash and has 16 per window. A passing window costs a call and a walk
/// of its chain, and in a pack's scan of the corpus events half the calls were such windows.
const FILTER_EXTRA_BITS: u32 = 2;

impl Table {
    /// The table of `filed`: (window, offset in the literal, literal).
    fn new(filed: &[(u32, u32, u32)]) -> Table {
        if filed.is_empty() {
            return Table::default();
        }
        // 16 chain heads per window: the chains hold one entry, or few.
        let bits = (filed.len() * 16)
            .next_power_of_two()
            .clamp(1 << 10, 1 << 22)
            .trailing_zeros();
        let filter_bits = bits + FILTER_EXTRA_BITS;
        let mut table = Table {
            filter_bits,
            filter: vec![0; (1usize << filter_bits) / 64],
            heads: vec![NONE; 1usize << bits],
            entries: Vec::with_capacity(filed.len()),
        };
        for &(window, offset, literal) in filed {
            let f = hash(window, filter_bits);
            table.filter[f / 64] |= 1 << (f % 64);
            let h = f >> FILTER_EXTRA_BITS;
            let next = table.heads[h];
            table.heads[h] = u32::try_from(table.entries.len()).unwrap_or(NONE);
            table.entries.push(Entry {
                window,
                offset,
                literal,
                next,
            });
        }
        table
    }

    /// Whether some window of the filter hash of `window` is filed (the fast test of every
    /// position), and if so the chain to walk.
    #[inline(always)]
    fn passes(&self, window: u32) -> Option<usize> {
        let f = hash(window, self.filter_bits);
        let word = self.filter.get(f / 64)?;
        (word & (1 << (f % 64)) != 0).then_some(f >> FILTER_EXTRA_BITS)
    }
}

/// A set of literals, each found wherever it occurs in a text, ignoring ASCII case.
#[derive(Debug, Clone, Default)]
pub struct LiteralSet {
    /// The literals' folded bytes, back to back.
    bytes: Vec<u8>,
    /// Per literal: its range in `bytes`.
    spans: Vec<(u32, u32)>,
    long: Table,
    short: Table,
    /// The first test of every even position, by the two-byte window starting there: per hash of
    /// it ([`PRE_BITS`] bits wide), [`PRE_SHORT`] when a literal of `short` is filed under a window
    /// of that hash, [`PRE_LONG`] when a four-byte window of `long` begins with one. One load per
    /// position; the tables' own filters are read only where it is set.
    pre: Vec<u8>,
    /// The hash width of `pre`, in bits.
    pre_bits: u32,
}

/// [`LiteralSet::pre`]: a short literal's window may be here.
const PRE_SHORT: u8 = 1;
/// [`LiteralSet::pre`]: a long literal's window may begin here.
const PRE_LONG: u8 = 2;

/// The widest hash under which [`LiteralSet::new`] counts the literals sharing a window.
const MAX_SHARED_BITS: usize = 16;

/// A literal shorter than this is not searched for.
pub const MIN_LITERAL: usize = 3;

impl LiteralSet {
    /// The set of `literals` (any bytes; ASCII letters match either case). Literal `i` is reported
    /// as `i`. Also returns the literals it does not search for (shorter than [`MIN_LITERAL`]): a
    /// caller must count them as found on every text.
    pub fn new(literals: &[&[u8]]) -> (LiteralSet, Vec<usize>) {
        let mut set = LiteralSet::default();
        let mut long = Vec::new();
        let mut short = Vec::new();
        let mut unfiled = Vec::new();
        let word4 = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let word2 = |w: &[u8]| u32::from(u16::from_le_bytes([w[0], w[1]]));
        for lit in literals {
            let start = u32::try_from(set.bytes.len()).unwrap_or(u32::MAX);
            set.bytes.extend(lit.iter().map(|&b| fold(b)));
            let len = u32::try_from(lit.len()).unwrap_or(u32::MAX);
            set.spans.push((start, len));
        }
        // How many literals share each four-byte window (by hash): a window many literals have
        // (`256=` of `sha256=…`, `\win`, `m32\`) is one the texts those literals are searched in
        // have too, and filing under it would compare all of them wherever it occurs.
        let windows: usize = (0..literals.len())
            .map(|i| set.literal(i).len().saturating_sub(1))
            .sum();
        let bits = (windows * 4)
            .next_power_of_two()
            .clamp(1 << 8, 1 << MAX_SHARED_BITS)
            .trailing_zeros();
        let mut shared = vec![0u16; 1 << bits];
        for i in 0..literals.len() {
            let lit = set.literal(i);
            let short = lit.len() < 5;
            let words = lit.windows(4).map(word4);
            let pairs = lit.windows(2).filter(|_| short).map(word2);
            for w in words.chain(pairs) {
                let h = hash(w, bits);
                shared[h] = shared[h].saturating_add(1);
            }
        }
        let sharing = |w: u32| u32::from(shared[hash(w, bits)]);
        // Two adjacent windows of `width` bytes, at o and o + 1 (one of them starts at an even
        // position wherever the literal is): the pair the fewest other literals share, then where
        // the bytes o..o + width + 1 are rarest in command lines and paths.
        let file = |folded: &[u8], width: usize, index: u32, to: &mut Vec<(u32, u32, u32)>| {
            let word = |k: usize| {
                let mut w = [0u8; 4];
                w[..width].copy_from_slice(&folded[k..k + width]);
                u32::from_le_bytes(w)
            };
            let o = (0..folded.len() - width)
                .min_by_key(|&o| {
                    let rarity: u32 = folded[o..=o + width].iter().map(|&b| commonness(b)).sum();
                    (sharing(word(o)) + sharing(word(o + 1)), rarity)
                })
                .unwrap_or(0);
            for k in [o, o + 1] {
                to.push((word(k), u32::try_from(k).unwrap_or(u32::MAX), index));
            }
        };
        for i in 0..literals.len() {
            let folded = set.literal(i);
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            if folded.len() >= 5 {
                file(folded, 4, index, &mut long);
            } else if folded.len() >= MIN_LITERAL {
                file(folded, 2, index, &mut short);
            } else {
                unfiled.push(i);
            }
        }
        // Eight entries of a byte per window filed: a window of no literal passes about one time
        // in eight, and then costs one more test, not a chain's walk.
        if long.is_empty() && short.is_empty() {
            return (set, unfiled);
        }
        set.pre_bits = ((long.len() + short.len()) * 8)
            .next_power_of_two()
            .clamp(1 << 8, 1 << 20)
            .trailing_zeros();
        set.pre = vec![0; 1 << set.pre_bits];
        for &(window, _, _) in &short {
            set.pre[hash(window, set.pre_bits)] |= PRE_SHORT;
        }
        for &(window, _, _) in &long {
            set.pre[hash(window & 0xFFFF, set.pre_bits)] |= PRE_LONG;
        }
        set.long = Table::new(&long);
        set.short = Table::new(&short);
        (set, unfiled)
    }

    /// Literal `i`'s folded bytes.
    fn literal(&self, i: usize) -> &[u8] {
        let (start, len) = self.spans.get(i).copied().unwrap_or_default();
        self.bytes
            .get(start as usize..start as usize + len as usize)
            .unwrap_or_default()
    }

    /// How many literals the set holds (filed or not).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the set holds no literal.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Calls `found` with every literal that occurs in `text` (at least once per literal that
    /// occurs; possibly more than once), in no particular order.
    pub fn scan(&self, text: &[u8], mut found: impl FnMut(u32)) {
        if self.pre.is_empty() {
            return;
        }
        let mut word = 0u32;
        // The two-byte window at the last even position began a long literal's window (by `pre`).
        let mut long_next = false;
        for (j, pair) in text.chunks_exact(2).enumerate() {
            word =
                (word >> 16) | (u32::from(fold(pair[0])) << 16) | (u32::from(fold(pair[1])) << 24);
            // The four-byte window at 2j - 2, when its first two bytes passed `pre`.
            if long_next && let Some(h) = self.long.passes(word) {
                self.chase(&self.long, h, word, 2 * j - 2, text, &mut found);
            }
            // The two-byte window at 2j.
            let pre = self
                .pre
                .get(hash(word >> 16, self.pre_bits))
                .copied()
                .unwrap_or(0);
            long_next = pre & PRE_LONG != 0;
            if pre & PRE_SHORT != 0
                && let Some(h) = self.short.passes(word >> 16)
            {
                self.chase(&self.short, h, word >> 16, 2 * j, text, &mut found);
            }
        }
    }

    /// Compares every literal of chain `h` of `table` filed under `window`, which is at `at` in
    /// `text`, with the text there.
    #[inline(never)]
    fn chase(
        &self,
        table: &Table,
        h: usize,
        window: u32,
        at: usize,
        text: &[u8],
        found: &mut impl FnMut(u32),
    ) {
        let mut e = table.heads.get(h).copied().unwrap_or(NONE);
        while let Some(entry) = table.entries.get(e as usize) {
            e = entry.next;
            if entry.window != window {
                continue;
            }
            let Some(start) = at.checked_sub(entry.offset as usize) else {
                continue;
            };
            let Some(&(from, len)) = self.spans.get(entry.literal as usize) else {
                continue;
            };
            let lit = self
                .bytes
                .get(from as usize..from as usize + len as usize)
                .unwrap_or_default();
            let matches = text
                .get(start..start + lit.len())
                .is_some_and(|t| equal_folded(t, lit));
            if matches {
                found(entry.literal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn found(set: &LiteralSet, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        set.scan(text.as_bytes(), |l| out.push(l));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The literals of `lits` in `text`, by plain search.
    fn naive(lits: &[&str], text: &str) -> Vec<u32> {
        let t = text.to_ascii_lowercase();
        (0..lits.len())
            .filter(|&i| {
                let l = lits[i].to_ascii_lowercase();
                l.len() >= MIN_LITERAL && t.contains(&l)
            })
            .filter_map(|i| u32::try_from(i).ok())
            .collect()
    }

    #[test]
    fn finds_every_literal_in_any_ascii_case_wherever_it_is() {
        let lits = [
            "mimikatz",
            "sekurlsa::",
            "kat",
            "${",
            "\\windows\\temp\\",
            "ärger",
            "x",
        ];
        let bytes: Vec<&[u8]> = lits.iter().map(|l| l.as_bytes()).collect();
        let (set, unfiled) = LiteralSet::new(&bytes);
        assert_eq!(
            unfiled,
            [3, 6],
            "literals under three bytes are left to the caller"
        );
        assert_eq!(found(&set, "run MIMIKATZ now"), [0, 2]);
        assert_eq!(found(&set, "SekurLSA::logonpasswords"), [1]);
        assert_eq!(found(&set, "${jndi} C:\\Windows\\Temp\\a.exe"), [4]);
        assert_eq!(found(&set, "viel ärger"), [5]);
        assert_eq!(
            found(&set, "viel ÄRGER"),
            Vec::<u32>::new(),
            "only ASCII folds"
        );
        assert_eq!(found(&set, "mim"), Vec::<u32>::new());
        assert_eq!(found(&set, ""), Vec::<u32>::new());
        assert_eq!(found(&set, "kat"), [2], "a literal that is the whole text");
        for text in ["xkat", "xxkat", "ab mimikatz", "a mimikatz", "abc mimikatz"] {
            assert!(
                found(&set, text).contains(&2),
                "{text}: at any parity, up to the end"
            );
        }
        assert_eq!(found(&set, "xmimikatz"), [0, 2], "at the end of the text");
    }

    #[test]
    fn folds_eight_bytes_as_the_table_folds_each() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut words: Vec<u64> = (0..=255u64).map(|b| b * 0x0101_0101_0101_0101).collect();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            words.push(state);
        }
        for w in words {
            let each = u64::from_le_bytes(w.to_le_bytes().map(fold));
            assert_eq!(fold8(w), each, "{w:#018x}");
        }
        assert!(equal_folded(
            b"C:\\Windows\\System32\\X.EXE",
            b"c:\\windows\\system32\\x.exe"
        ));
        assert!(!equal_folded(
            b"C:\\Windows\\System32\\Y.EXE",
            b"c:\\windows\\system32\\x.exe"
        ));
        assert!(
            !equal_folded(b"\xc0bcdefgh", b"\xe0bcdefgh"),
            "no fold past ASCII"
        );
    }

    #[test]
    fn agrees_with_a_plain_search_on_generated_texts() {
        // Literals sharing windows and prefixes, and texts built from their pieces.
        let lits: Vec<String> = (0..300)
            .map(|i| match i % 4 {
                0 => alloc::format!("tool{i}.exe"),
                1 => alloc::format!("-e{i}"),
                2 => alloc::format!("c:\\windows\\system32\\p{i}"),
                _ => alloc::format!("{}", i * 7),
            })
            .collect();
        let refs: Vec<&str> = lits.iter().map(String::as_str).collect();
        let bytes: Vec<&[u8]> = refs.iter().map(|l| l.as_bytes()).collect();
        let (set, unfiled) = LiteralSet::new(&bytes);
        assert!(unfiled.iter().all(|&i| refs[i].len() < MIN_LITERAL));
        let mut seed = 0x1234_5678_u64;
        for _ in 0..400 {
            let mut text = String::new();
            for _ in 0..6 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pick = usize::try_from(seed >> 33).unwrap_or(0);
                let piece = refs[pick % refs.len()];
                let cut = usize::try_from(seed >> 20).unwrap_or(0) % (piece.len() + 1);
                let piece = if pick.is_multiple_of(3) {
                    &piece[..cut]
                } else {
                    piece
                };
                if pick.is_multiple_of(2) {
                    text.push_str(&piece.to_ascii_uppercase());
                } else {
                    text.push_str(piece);
                }
                text.push(if pick.is_multiple_of(5) { ' ' } else { '\\' });
            }
            let want: Vec<u32> = naive(&refs, &text)
                .into_iter()
                .filter(|i| !unfiled.contains(&(*i as usize)))
                .collect();
            assert_eq!(found(&set, &text), want, "{text}");
        }
    }
}
