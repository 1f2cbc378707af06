//! Case folding, shared by the compiler (which folds patterns) and the evaluator (which folds values),
//! so both sides fold exactly alike.

use alloc::string::String;

/// `text` in lower case (Unicode simple lower-casing, char by char). Returns `text` itself when it
/// has nothing to fold, else the folded copy written into `buf`.
pub fn fold_case<'a>(text: &'a str, buf: &'a mut String) -> &'a str {
    if !text.chars().any(changes) {
        return text;
    }
    buf.clear();
    for c in text.chars() {
        if c.is_ascii() {
            buf.push(c.to_ascii_lowercase());
        } else {
            buf.extend(c.to_lowercase());
        }
    }
    buf
}

/// Whether lower-casing changes `c`.
fn changes(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_uppercase()
    } else {
        c.to_lowercase().ne(core::iter::once(c))
    }
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
    }
}
