//! Text that came from content (rule titles and fields, panic messages, file names, key ids), made
//! safe to show to a person: control characters, which a terminal would act on, are escaped.
//!
//! - [`Escaped`], [`printable`] and [`needs_escape`] are rulebox's one escaping helper
//!   (`rulebox_sdk::text`, re-exported here): every control character, bidirectional control, line
//!   or paragraph separator and zero-width character written as `\u{..}`, so what a terminal shows
//!   is what the text holds, on one line.
//! - [`to_json_line`] and [`to_json_pretty`] write a value as JSON in which the same characters are
//!   escaped (`serde_json` escapes C0 only), so a JSON stream or document can go to a terminal as is.

use std::io;

use serde::Serialize;

pub use rulebox_sdk::text::{Escaped, needs_escape, printable};

/// A `serde_json` formatter that lays the JSON out as `F` does and escapes, beyond what JSON
/// requires, every character [`Escaped`] escapes.
struct TerminalSafe<F>(F);

/// Forwards the layout methods of `serde_json`'s formatter to the inner one.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $name<W: ?Sized + io::Write>(&mut self, writer: &mut W $(, $arg: $ty)*) -> io::Result<()> {
                self.0.$name(writer $(, $arg)*)
            }
        )*
    };
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for TerminalSafe<F> {
    forward!(
        begin_array(),
        end_array(),
        begin_array_value(first: bool),
        end_array_value(),
        begin_object(),
        end_object(),
        begin_object_key(first: bool),
        end_object_key(),
        begin_object_value(),
        end_object_value(),
    );

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

fn to_json_with<T: Serialize + ?Sized, F: serde_json::ser::Formatter>(
    value: &T,
    formatter: F,
) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TerminalSafe(formatter));
    value.serialize(&mut ser)?;
    // The serializer writes only valid UTF-8 (escapes are ASCII; the rest is copied from `&str`).
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// `value` as one line of JSON (no trailing newline) with every string terminal-safe (see the module
/// docs). The JSON means exactly what `serde_json::to_string` would give.
pub fn to_json_line<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    to_json_with(value, serde_json::ser::CompactFormatter)
}

/// `value` as indented JSON (as `serde_json::to_string_pretty` lays it out) with every string
/// terminal-safe.
pub fn to_json_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    to_json_with(value, serde_json::ser::PrettyFormatter::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "ok\u{1b}[31mred\u{7}\r\nnext\u{9b}2J\u{202e}txt\u{2028}é";

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
        let pretty = to_json_pretty(&value).unwrap();
        assert!(
            !pretty.chars().any(|c| c != '\n' && needs_escape(c)),
            "{pretty}"
        );
        assert_eq!(
            pretty
                .replace("\\u009b", "\u{9b}")
                .replace("\\u202e", "\u{202e}")
                .replace("\\u2028", "\u{2028}"),
            serde_json::to_string_pretty(&value).unwrap(),
            "laid out as serde_json does"
        );
        let back: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(back, value);
    }
}
