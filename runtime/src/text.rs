//! Text that came from content (rule titles and fields, panic messages, file names, key ids), made
//! safe to show to a person: control characters, which a terminal would act on, are escaped.
//!
//! - [`Escaped`] displays a string with every control character (C0, DEL, C1), bidirectional
//!   override and line or paragraph separator written as `\u{..}`: what a terminal shows is what the
//!   text holds, on one line.
//! - [`to_json_line`] writes a value as one line of JSON in which the same characters are escaped
//!   (`serde_json` escapes C0 only), so a JSON stream can go to a terminal as is.

use std::fmt;
use std::io;

use serde::Serialize;

/// Whether a terminal could act on `c`, or it could make text look other than it is.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// A string displayed with control characters, bidirectional controls and line separators escaped
/// (`\u{1b}`), everything else as is.
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

/// A `serde_json` formatter that escapes, beyond what JSON requires, every character
/// [`Escaped`] escapes.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(needs_escape) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            // Every character escaped here is in the Basic Multilingual Plane: one `\uXXXX`.
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// `value` as one line of JSON (no trailing newline) with every string terminal-safe (see the module
/// docs). The JSON means exactly what `serde_json::to_string` would give.
pub fn to_json_line<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
    value.serialize(&mut ser)?;
    // The serializer writes only valid UTF-8 (escapes are ASCII; the rest is copied from `&str`).
    Ok(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "ok\u{1b}[31mred\u{7}\r\nnext\u{9b}2J\u{202e}txt\u{2028}é";

    #[test]
    fn escaped_text_holds_no_control_character_and_keeps_the_rest() {
        let shown = Escaped(HOSTILE).to_string();
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(
            shown,
            "ok\\u{1b}[31mred\\u{7}\\u{d}\\u{a}next\\u{9b}2J\\u{202e}txt\\u{2028}é"
        );
        assert_eq!(Escaped("plain text").to_string(), "plain text");
    }

    #[test]
    fn json_lines_are_terminal_safe_and_mean_the_same() {
        let value = serde_json::json!({ "title": HOSTILE, "n": 1 });
        let line = to_json_line(&value).unwrap();
        assert!(!line.chars().any(needs_escape), "{line}");
        assert!(
            line.contains("\\u009b") && line.contains("\\u202e"),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }
}
