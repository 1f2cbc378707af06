//! Case-insensitive text as a pattern over characters: each character of a folded literal becomes
//! the class of every character that folds to it (`k` → `[kK]`, `ä` → `[äÄ]`), so automata built from it
//! match values without folding them. The folding is the evaluator's own
//! ([`rulebox_sigma_eval::fold_char`]), so both sides agree on what "the same letter" is.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Look, Repetition};
use rulebox_sigma_eval::fold_char;

/// For every character that something else folds to: those other characters.
fn folded_from() -> &'static HashMap<char, Vec<char>> {
    static MAP: OnceLock<HashMap<char, Vec<char>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: HashMap<char, Vec<char>> = HashMap::new();
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let f = fold_char(c);
            if f != c {
                map.entry(f).or_default().push(c);
            }
        }
        map
    })
}

/// Every character that folds as `c` does, sorted.
pub fn variants(c: char) -> Vec<char> {
    let f = fold_char(c);
    let mut out: Vec<char> = folded_from().get(&f).cloned().unwrap_or_default();
    if fold_char(f) == f {
        out.push(f);
    }
    if out.is_empty() {
        out.push(c);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `text` as a pattern: exactly these characters when `cased`, else each character or any that
/// folds like it.
pub fn literal(text: &str, cased: bool) -> Hir {
    if cased {
        return Hir::literal(text.as_bytes());
    }
    Hir::concat(
        text.chars()
            .map(|c| match variants(c).as_slice() {
                [one] => Hir::literal(one.encode_utf8(&mut [0; 4]).as_bytes()),
                many => Hir::class(Class::Unicode(ClassUnicode::new(
                    many.iter().map(|&v| ClassUnicodeRange::new(v, v)),
                ))),
            })
            .collect(),
    )
}

/// Any one character.
pub fn any_char() -> Hir {
    Hir::class(Class::Unicode(ClassUnicode::new([ClassUnicodeRange::new(
        '\0',
        '\u{10FFFF}',
    )])))
}

/// Any text, possibly empty.
pub fn any_text() -> Hir {
    Hir::repetition(Repetition {
        min: 0,
        max: None,
        greedy: true,
        sub: Box::new(any_char()),
    })
}

/// The start of the text.
pub fn start() -> Hir {
    Hir::look(Look::Start)
}

/// The end of the text.
pub fn end() -> Hir {
    Hir::look(Look::End)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_of_letters() {
        assert_eq!(variants('a'), ['A', 'a']);
        assert_eq!(variants('A'), ['A', 'a']);
        assert_eq!(variants('k'), ['K', 'k'], "the Kelvin sign is not k");
        assert_eq!(variants('i'), ['I', 'i'], "İ is not i");
        assert_eq!(variants('σ'), ['Σ', 'σ']);
        assert_eq!(variants('ä'), ['Ä', 'ä']);
        assert_eq!(variants('\\'), ['\\']);
        assert_eq!(variants('–'), ['–']);
    }
}
