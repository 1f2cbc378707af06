//! Case-insensitive text matching without allocation (ASCII case folding, as Windows paths need).
//!
//! Rules spend much of their time here, and in WebAssembly a byte-at-a-time loop pays for every byte
//! in instructions and fuel. So the comparisons work on eight bytes at once in a `u64` ("SIMD within
//! a register"), which Cranelift compiles as well as LLVM does; the last few bytes go one by one.

/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight bytes, little-endian (the caller passes exactly eight).
#[inline(always)]
fn load8(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// The eight bytes of `x` with ASCII `A`-`Z` lowered and every other byte (including each byte of a
/// multi-byte UTF-8 character) unchanged: what `u8::to_ascii_lowercase` does to each.
#[inline(always)]
fn lower8(x: u64) -> u64 {
    let low7 = x & !HIGH;
    // A byte's high bit is set by the first sum when its low 7 bits are ≥ `A`, by the second when
    // they are > `Z`; neither sum carries into the next byte (at most 0x7f + 0x3f = 0xbe).
    let ge_a = low7.wrapping_add(ONES * u64::from(0x80 - b'A'));
    let gt_z = low7.wrapping_add(ONES * u64::from(0x7f - b'Z'));
    let upper = ge_a & !gt_z & !x & HIGH;
    x | (upper >> 2)
}

/// Whether two byte strings of the same length are equal, ignoring ASCII case.
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        if lower8(load8(x)) != lower8(load8(y)) {
            return false;
        }
    }
    ca.remainder().eq_ignore_ascii_case(cb.remainder())
}

/// Whether `a` equals `b`, ignoring ASCII case.
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.len() == b.len() && eq_bytes(a.as_bytes(), b.as_bytes())
}

/// Whether `text` starts with `prefix`, ignoring ASCII case.
pub fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && eq_bytes(&text.as_bytes()[..prefix.len()], prefix.as_bytes())
}

/// Whether `text` ends with `suffix`, ignoring ASCII case.
pub fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && eq_bytes(
            &text.as_bytes()[text.len() - suffix.len()..],
            suffix.as_bytes(),
        )
}

/// Whether `text` contains `needle`, ignoring ASCII case.
pub fn contains_ignore_case(text: &str, needle: &str) -> bool {
    let (t, n) = (text.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if n.len() > t.len() {
        return false;
    }
    // Candidate starts are 0..=last. Eight at a time: lower eight bytes, find those equal to the
    // needle's first byte (a zero byte of `diff`), and compare the needle at each. The zero-byte test
    // can also flag a byte just above a true zero, so every candidate is compared in full.
    let last = t.len() - n.len();
    let first = ONES * u64::from(n[0].to_ascii_lowercase());
    let mut i = 0;
    // `i + 8 <= last + 1` keeps the eight bytes in bounds: `last + 1 <= t.len()`.
    while i + 8 <= last + 1 {
        let diff = lower8(load8(&t[i..i + 8])) ^ first;
        let mut hits = diff.wrapping_sub(ONES) & !diff & HIGH;
        while hits != 0 {
            let k = i + (hits.trailing_zeros() / 8) as usize;
            if eq_bytes(&t[k..k + n.len()], n) {
                return true;
            }
            hits &= hits - 1;
        }
        i += 8;
    }
    (i..=last).any(|k| eq_bytes(&t[k..k + n.len()], n))
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the test generator takes a random number modulo a small length"
)]
mod tests {
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn matching() {
        assert!(contains_ignore_case(
            "C:\\Windows\\System32\\CMD.exe",
            "cmd.EXE"
        ));
        assert!(!contains_ignore_case("abc", "abcd"));
        assert!(contains_ignore_case("abc", ""));
        assert!(starts_with_ignore_case("PowerShell -enc", "powershell"));
        assert!(!starts_with_ignore_case("p", "powershell"));
        assert!(ends_with_ignore_case("x\\WINWORD.EXE", "\\winword.exe"));
        assert!(!ends_with_ignore_case("exe", "\\winword.exe"));
        assert!(eq_ignore_case("LSASS.exe", "lsass.EXE"));
        // Multi-byte text must not panic on a slice boundary.
        assert!(!contains_ignore_case("ééé", "x"));
        assert!(!ends_with_ignore_case("é", "x"));
        // Non-letters next to the letter range, and non-ASCII bytes, are not folded.
        assert!(!eq_ignore_case("@[`{", "`{@["));
        assert!(!eq_ignore_case("É", "é"));
    }

    #[test]
    fn lower8_lowers_exactly_the_ascii_capitals() {
        for b in 0..=255u8 {
            let word = u64::from_le_bytes([b, 0, b'A', b, 0xFF, b'Z', b, b'z']);
            let want = u64::from_le_bytes(
                [b, 0, b'A', b, 0xFF, b'Z', b, b'z'].map(|x| x.to_ascii_lowercase()),
            );
            assert_eq!(lower8(word), want, "byte {b:#04x}");
        }
    }

    /// A small deterministic generator (xorshift), for texts that mix case, letters' neighbours in
    /// ASCII and multi-byte characters.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self, max: u64) -> String {
            const PIECES: &[&str] = &[
                "a", "A", "z", "Z", "@", "[", "`", "{", "\\", ".", "é", "É", "ß", "€", "0",
            ];
            let len = self.next() % (max + 1);
            (0..len)
                .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn agrees_with_byte_at_a_time_folding() {
        let lower = |s: &str| -> Vec<u8> { s.bytes().map(|b| b.to_ascii_lowercase()).collect() };
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let text = g.text(40);
            // Half the needles are cut from the text (so they match), half are random.
            let needle = if round % 2 == 0 && !text.is_empty() {
                let a = (g.next() as usize) % text.len();
                let b = a + (g.next() as usize) % (text.len() - a + 1);
                let (a, b) = (
                    (0..=a)
                        .rev()
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(0),
                    (b..=text.len())
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(text.len()),
                );
                let cut = &text[a..b];
                cut.chars()
                    .map(|c| {
                        if g.next().is_multiple_of(2) {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect()
            } else {
                g.text(10)
            };
            let (t, n) = (lower(&text), lower(&needle));
            let contains = n.is_empty() || t.windows(n.len()).any(|w| w == n.as_slice());
            assert_eq!(
                contains_ignore_case(&text, &needle),
                contains,
                "{text:?} / {needle:?}"
            );
            assert_eq!(
                starts_with_ignore_case(&text, &needle),
                t.starts_with(&n),
                "{text:?} / {needle:?}"
            );
            assert_eq!(
                ends_with_ignore_case(&text, &needle),
                t.ends_with(&n),
                "{text:?} / {needle:?}"
            );
            assert_eq!(
                eq_ignore_case(&text, &needle),
                t == n,
                "{text:?} / {needle:?}"
            );
            assert!(eq_ignore_case(&text, &text.to_ascii_uppercase()));
        }
    }
}
