//! Text that came from content (rule ids and titles, field values, panic and log messages, function
//! names in a backtrace, file names, key ids), made safe to show to a person: the one escaping
//! helper of rulebox, used by the host, the CLI, the validator and the test-case runner alike.
//!
//! Every control character (C0, DEL, C1: escape sequences, carriage returns, line breaks), every
//! bidirectional control (overrides, embeddings, isolates, marks), the line and paragraph
//! separators, the zero-width characters and the byte order mark are written as `\u{..}`; everything
//! else, backslashes of Windows paths and non-ASCII letters included, is kept as it is. So what a
//! terminal shows is what the text holds, on one line, and no text can move the cursor, recolour the
//! screen, forge a line of output or reorder what follows it. Escaping twice changes nothing more
//! (the escapes are plain ASCII).
//!
//! - [`Escaped`] displays a string escaped (no allocation).
//! - [`printable`] returns it escaped, borrowing when nothing needs escaping.
//! - [`needs_escape`] says which characters are escaped, for writers of other formats (the host's
//!   terminal-safe JSON lines use it).

use alloc::borrow::Cow;
use alloc::string::ToString;
use core::fmt;

/// Whether a terminal could act on `c`, or `c` could make text look other than it is: the
/// characters [`Escaped`] and [`printable`] write as `\u{..}`.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// A string displayed with every character [`needs_escape`] names written as `\u{..}` (lowercase
/// hex), everything else as is.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `text` safe to print on a terminal ([`Escaped`]), borrowed when nothing needs escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.contains(needs_escape) {
        Cow::Owned(Escaped(text).to_string())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str =
        "ok\u{1b}[31mred\u{7}\r\nnext\u{9b}2J\u{202e}txt\u{2028}\u{200b}\u{feff}é";

    #[test]
    fn escaped_text_holds_no_character_a_terminal_acts_on_and_keeps_the_rest() {
        let shown = Escaped(HOSTILE).to_string();
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(
            shown,
            "ok\\u{1b}[31mred\\u{7}\\u{d}\\u{a}next\\u{9b}2J\\u{202e}txt\\u{2028}\\u{200b}\\u{feff}é"
        );
        assert_eq!(printable(HOSTILE), shown);
        assert_eq!(printable(&shown), shown, "escaping twice changes nothing");
        assert!(matches!(printable("plain"), Cow::Borrowed("plain")));
        assert_eq!(
            printable("C:\\Windows\\cmd.exe é"),
            "C:\\Windows\\cmd.exe é",
            "paths and letters are kept"
        );
    }
}
