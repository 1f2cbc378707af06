//! Showing text that came from content (titles, field values, names) to a person.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` safe to print on a terminal: control characters (escape sequences, carriage returns,
/// line breaks) and the invisible characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters, the byte order mark) are written as `\u{..}`; everything else,
/// backslashes of Windows paths and non-ASCII letters included, is kept as it is. Applying it twice
/// changes nothing more.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_reordering_characters_are_shown_escaped_and_paths_are_kept() {
        assert_eq!(
            printable("C:\\Windows\\cmd.exe é"),
            "C:\\Windows\\cmd.exe é"
        );
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        let shown = printable("a\u{1b}[2J\r\nb\u{202e}c");
        assert_eq!(shown, "a\\u{1b}[2J\\u{d}\\u{a}b\\u{202e}c");
        assert_eq!(printable(&shown), shown);
    }
}
