//! What can go wrong while reading events.

use std::io;
use std::path::PathBuf;

/// Why one record could not be turned into an [`Event`](rulebox_sdk::Event).
///
/// A record error never stops an [`EventReader`](super::EventReader): it reports the record (as a
/// [`ReadError::Record`], which adds where it was) and carries on with the next one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record's text is not valid JSON. `line` and `column` are 1-based; the reader reports them
    /// as lines of its input, [`parse_record`](super::parse_record) as lines of the text it was given.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        /// The line of the first invalid character.
        line: usize,
        /// The column of the first invalid character.
        column: usize,
        /// What the JSON parser found wrong.
        message: String,
    },
    /// The record is valid JSON but not an object (events are JSON objects).
    #[error("expected a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found instead (`"an array"`, `"a string"`, ...).
        found: &'static str,
    },
    /// The record is an object without a top-level `Event` key (so it is meant as a rulebox event)
    /// but does not match rulebox's event schema.
    #[error("not a rulebox event (and not a Windows event: no top-level \"Event\" key): {message}")]
    NotRulebox {
        /// What did not match (`missing field `data``, `unknown variant `Foo``, ...).
        message: String,
    },
    /// A Windows (evtx-style) event lacks a part that is needed to classify it.
    #[error("Windows event has no {path}")]
    MissingEvtxField {
        /// The missing part, as a path (`Event.System.EventID`).
        path: &'static str,
    },
    /// A part of a Windows (evtx-style) event has a value that cannot be used.
    #[error("Windows event field {path} is {found}, expected {expected}")]
    InvalidEvtxField {
        /// The part, as a path (`Event.System.EventID`).
        path: &'static str,
        /// The value found, as (possibly shortened) JSON.
        found: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// One field's value is longer than [`ReadLimits::max_field_bytes`](super::ReadLimits).
    #[error("field {field:?} is {len} bytes long, over the limit of {limit} bytes")]
    FieldTooLong {
        /// The field's name (shortened if it is itself very long).
        field: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The record is longer than [`ReadLimits::max_record_bytes`](super::ReadLimits); the reader
    /// skipped the rest of it without buffering it.
    #[error("record is over the limit of {limit} bytes; skipped to its end")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The input ended inside the record (its braces never balanced).
    #[error("the input ended before the record's closing brace")]
    UnexpectedEnd,
    /// A line starting with `{` (unindented, or indented like this record's own opening brace) began a
    /// new record before this one was closed: this record is truncated, or has a stray opening brace.
    #[error("line {next_line} starts a new object before this record's closing brace")]
    Interrupted {
        /// The line where the next record starts.
        next_line: usize,
    },
    /// A JSON string ran to the end of its line (JSON strings cannot hold raw line breaks); the reader
    /// skipped ahead to the next line that starts a record (see [`EventReader`](super::EventReader)).
    #[error("unterminated string on line {line}; skipped to the next line starting a record")]
    UnterminatedString {
        /// The line where the string was cut.
        line: usize,
    },
    /// Text outside any JSON object (not whitespace, not `{`); the reader skipped ahead to the next
    /// line that starts a record (see [`EventReader`](super::EventReader)).
    #[error(
        "unexpected text {snippet:?} outside a JSON object; skipped to the next line starting a record"
    )]
    StrayText {
        /// The start of the text (at most a few dozen characters).
        snippet: String,
    },
}

/// A problem reported by an [`EventReader`](super::EventReader) or the file helpers, with its place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A record was skipped. The reader continues with the next record.
    #[error("{}: {error}", lines_label(*.line, *.last_line))]
    Record {
        /// The 1-based line where the record starts.
        line: usize,
        /// The 1-based line where the skipped text ends (equal to `line` for a one-line record).
        last_line: usize,
        /// What was wrong with it.
        error: RecordError,
    },
    /// Reading the input failed. The reader stops after reporting this.
    #[error("line {line}: reading the events failed: {source}")]
    Io {
        /// The 1-based line being read when the failure happened.
        line: usize,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// An events file could not be opened.
    #[error("cannot open events file {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// The 1-based line the error is about, if it is about a place in the input.
    pub fn line(&self) -> Option<usize> {
        match self {
            ReadError::Record { line, .. } | ReadError::Io { line, .. } => Some(*line),
            ReadError::Open { .. } => None,
        }
    }

    /// The record error, if this is one.
    pub fn record_error(&self) -> Option<&RecordError> {
        match self {
            ReadError::Record { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `line 5` or `lines 5-9`.
fn lines_label(line: usize, last_line: usize) -> String {
    if last_line > line {
        format!("lines {line}-{last_line}")
    } else {
        format!("line {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_place_and_the_reason() {
        let one = ReadError::Record {
            line: 7,
            last_line: 7,
            error: RecordError::MissingEvtxField {
                path: "Event.System.EventID",
            },
        };
        assert_eq!(
            one.to_string(),
            "line 7: Windows event has no Event.System.EventID"
        );
        let span = ReadError::Record {
            line: 3,
            last_line: 9,
            error: RecordError::UnexpectedEnd,
        };
        assert_eq!(
            span.to_string(),
            "lines 3-9: the input ended before the record's closing brace"
        );
        assert_eq!(span.line(), Some(3));
        assert!(matches!(
            span.record_error(),
            Some(RecordError::UnexpectedEnd)
        ));
    }
}
