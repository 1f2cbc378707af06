//! Case folding, shared by the compiler (which folds patterns and builds the case-insensitive
//! automata from [`fold_char`]) and the evaluator (which folds values only for `fieldref`, where the
//! other side is not known in advance), so both sides fold exactly alike.
//!
//! Sigma matching is case-insensitive character by character: ASCII letters by ASCII (`A` is `a`),
//! other characters by Unicode's *simple* lowercase mapping when it gives a non-ASCII character
//! (`Ä` is `ä`, `Σ` is `σ`). A non-ASCII character never folds into ASCII: the Kelvin sign is not
//! `k` and `İ` is not `i`, as in the case table Windows itself compares names with (NTFS upcases
//! `k` to `K`, not to the Kelvin sign). ASCII is folded by a byte operation; only other characters
//! consult Unicode's tables.

use alloc::string::String;

/// The lowercase form of `c` that matching compares: ASCII lowercase for ASCII, else Unicode's simple
/// lowercase mapping unless that is ASCII (then `c` itself).
#[inline]
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    // `to_lowercase` is the full mapping; its first character is the simple one (the only mapping
    // longer than one character, `İ` → `i̇`, starts with the simple `i`, which is ASCII).
    match c.to_lowercase().next() {
        Some(l) if !l.is_ascii() => l,
        _ => c,
    }
}

/// `text` with every character folded by [`fold_char`]. Returns `text` itself when nothing changes,
/// else the folded copy written into `buf`. ASCII text costs a byte test per byte (and a byte
/// operation per byte when it has capitals); only non-ASCII characters are looked up.
pub fn fold_case<'a>(text: &'a str, buf: &'a mut String) -> &'a str {
    let Some(first) = text
        .bytes()
        .position(|b| b.is_ascii_uppercase() || !b.is_ascii())
    else {
        return text;
    };
    let rest = &text[first..];
    if rest.is_ascii() {
        buf.clear();
        buf.push_str(text);
        buf.make_ascii_lowercase();
        return buf;
    }
    if !rest.chars().any(|c| fold_char(c) != c) {
        return text;
    }
    buf.clear();
    buf.reserve(text.len());
    buf.push_str(&text[..first]);
    buf.extend(rest.chars().map(fold_char));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_ascii_and_unicode() {
        let mut buf = String::new();
        assert_eq!(fold_case("abc", &mut buf), "abc");
        assert_eq!(fold_case("C:\\WINDOWS", &mut buf), "c:\\windows");
        assert_eq!(fold_case("ÄÖÜ", &mut buf), "äöü");
        assert_eq!(fold_case("äöü", &mut buf), "äöü");
        assert_eq!(
            fold_case("X\u{212A}", &mut buf),
            "x\u{212A}",
            "the Kelvin sign is not k"
        );
        assert_eq!(fold_case("İX", &mut buf), "İx", "İ is not i");
        assert_eq!(fold_case("ΣΑ", &mut buf), "σα");
        assert_eq!(fold_case("Straße", &mut buf), "straße");
    }
}
