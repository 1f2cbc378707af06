//! Reading events: rulebox's own JSON lines and evtx_dump-style Windows event JSON.
//!
//! Two record formats are understood, told apart per record:
//!
//! - **rulebox JSON**: one [`Event`] in its serde JSON form, e.g.
//!   `{"host":"ws-17","timestamp":1729812989111,"pid":4242,"data":{"ProcessStart":{"Image":"...","CommandLine":"..."}}}`.
//! - **Windows event JSON** as evtx_dump prints it: an object with a top-level `"Event"` key,
//!   `{"Event": {"System": {...}, "EventData": {...}}}`; see [`parse_evtx_value`] for the mapping.
//!
//! [`EventReader`] streams records from any [`BufRead`](std::io::BufRead): one object a line, or
//! pretty-printed objects one after another, or a top-level array of objects. A bad record is reported
//! as one [`ReadError`] naming its line and the reason, and reading goes on with the next record.
//! [`ReadLimits`] caps the size of a record and of a field value, so endless or hostile input cannot
//! exhaust memory.

mod error;
mod evtx;
mod reader;
mod time;

#[cfg(test)]
mod corpus_tests;

use rulebox_sdk::{Event, Value as FieldValue};
use serde::Deserialize;
use serde_json::Value;

pub use error::{ReadError, RecordError};
pub use evtx::{SYSMON_PROVIDER, parse_evtx_value, sysmon_event_kind};
pub use reader::{EventReader, ReadEvent, open_events_file, read_events_file};
pub use time::parse_timestamp_ms;

/// The default [`ReadLimits::max_record_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// The default [`ReadLimits::max_field_bytes`]: 64 KiB.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 64 << 10;

/// Caps that keep a reader's memory bounded whatever its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// The longest record accepted, in bytes of JSON text. A longer record is reported as
    /// [`RecordError::TooLarge`] and skipped without being buffered.
    pub max_record_bytes: usize,
    /// The longest field value accepted, in bytes (after JSON unescaping, and for Windows events after
    /// rendering as text). A longer one makes the record a [`RecordError::FieldTooLong`].
    pub max_field_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
        }
    }
}

/// Which format a record was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventFormat {
    /// rulebox's own JSON form of [`Event`].
    Rulebox,
    /// evtx_dump-style Windows event JSON (a top-level `"Event"` key).
    Evtx,
}

/// Parses one record (either format, told apart by a top-level `"Event"` key) with the default
/// [`ReadLimits`]. Errors say `line 1` (or the line inside `text` of a JSON syntax error); the text
/// must hold exactly one JSON object, possibly spread over several lines.
pub fn parse_json_line(text: &str) -> Result<Event<'static>, ReadError> {
    parse_record(text, &ReadLimits::default())
        .map(|(event, _)| event)
        .map_err(|error| {
            let line = match &error {
                RecordError::InvalidJson { line, .. } => *line,
                _ => 1,
            };
            ReadError::Record {
                line: 1,
                last_line: line.max(1),
                error,
            }
        })
}

/// Parses one record (either format) under `limits`, and tells which format it was in. Line numbers in
/// a [`RecordError::InvalidJson`] count from 1 at the start of `text`.
pub fn parse_record(
    text: &str,
    limits: &ReadLimits,
) -> Result<(Event<'static>, EventFormat), RecordError> {
    parse_record_bytes(text.as_bytes(), limits)
}

/// Turns a parsed JSON value into an event (either format) under `limits`.
pub fn parse_json_value(
    value: Value,
    limits: &ReadLimits,
) -> Result<(Event<'static>, EventFormat), RecordError> {
    match &value {
        Value::Object(map) if map.contains_key("Event") => {
            Ok((evtx::evtx_event(&value, limits)?, EventFormat::Evtx))
        }
        Value::Object(_) => {
            // `serde_json::Value` deserializes owned strings, so the event borrows nothing.
            let event =
                Event::<'static>::deserialize(value).map_err(|e| RecordError::NotRulebox {
                    message: e.to_string(),
                })?;
            check_rulebox_lengths(&event, limits)?;
            Ok((event, EventFormat::Rulebox))
        }
        other => Err(RecordError::NotAnObject {
            found: evtx::json_type(other),
        }),
    }
}

/// [`parse_record`] on bytes (the reader's buffer).
pub(crate) fn parse_record_bytes(
    bytes: &[u8],
    limits: &ReadLimits,
) -> Result<(Event<'static>, EventFormat), RecordError> {
    if bytes.len() > limits.max_record_bytes {
        return Err(RecordError::TooLarge {
            limit: limits.max_record_bytes,
        });
    }
    // Fast path: an object that cannot have an `Event` key is a rulebox event; parse it straight into
    // the schema (borrowing what it can) instead of through a `serde_json::Value`.
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'{') && !contains(bytes, b"\"Event\"") {
        return match serde_json::from_slice::<Event<'_>>(bytes) {
            Ok(event) => {
                check_rulebox_lengths(&event, limits)?;
                Ok((event.into_owned(), EventFormat::Rulebox))
            }
            Err(e) if e.is_data() => Err(RecordError::NotRulebox {
                message: strip_position(&e),
            }),
            Err(e) => Err(invalid_json(&e)),
        };
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid_json(&e))?;
    parse_json_value(value, limits)
}

/// Whether `needle` (not empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&head, tail)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == head)
        .any(|(i, _)| haystack[i + 1..].starts_with(tail))
}

/// A serde_json syntax error as a [`RecordError::InvalidJson`].
fn invalid_json(e: &serde_json::Error) -> RecordError {
    RecordError::InvalidJson {
        line: e.line(),
        column: e.column(),
        message: strip_position(e),
    }
}

/// A serde_json error's message without its ` at line L column C` suffix.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// Checks one value against [`ReadLimits::max_field_bytes`].
pub(crate) fn check_len(name: &str, value: &str, limits: &ReadLimits) -> Result<(), RecordError> {
    if value.len() <= limits.max_field_bytes {
        return Ok(());
    }
    let mut field = name.to_owned();
    if field.len() > 64 {
        field.truncate(field.floor_char_boundary(64));
        field.push_str("...");
    }
    Err(RecordError::FieldTooLong {
        field,
        len: value.len(),
        limit: limits.max_field_bytes,
    })
}

/// Checks every text of a rulebox event against [`ReadLimits::max_field_bytes`].
fn check_rulebox_lengths(event: &Event<'_>, limits: &ReadLimits) -> Result<(), RecordError> {
    check_len("host", &event.host, limits)?;
    let mut result = Ok(());
    event.data.for_each_field(&mut |name, value| {
        if let (Ok(()), FieldValue::Str(text)) = (&result, value) {
            result = check_len(name, text, limits);
        }
    });
    result?;
    for field in &event.extra {
        check_len("extra field name", &field.name, limits)?;
        check_len(&field.name, &field.value, limits)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_sdk::{EventData, EventKind, Field};

    /// An event of `kind` with every body field set to a distinct value.
    fn full_event(kind: EventKind, n: u32) -> Event<'static> {
        let mut data = EventData::empty(kind);
        let names = data.field_names();
        for (i, name) in names.iter().enumerate() {
            let value = match data.field(name) {
                Some(FieldValue::Str(_)) => format!("{name} \"v{i}\" C:\\path\\{n} ünï"),
                Some(FieldValue::Int(_)) => (i + 1).to_string(),
                Some(FieldValue::Bool(_)) => "true".to_owned(),
                None => unreachable!("{name} is listed but has no value"),
            };
            assert!(data.set_field(name, value.into()), "{kind}: {name}");
        }
        let mut event = Event::new(data);
        event.host = format!("host-{n}").into();
        event.timestamp = 1_729_812_989_111 + u64::from(n);
        event.pid = 4242 + n;
        event.extra.push(Field {
            name: "RuleName".into(),
            value: format!("rule {n}").into(),
        });
        event
    }

    #[test]
    fn every_kind_round_trips_through_a_json_line() {
        for (n, kind) in (0u32..).zip(EventKind::ALL.iter().copied()) {
            let event = full_event(kind, n);
            let line = serde_json::to_string(&event).unwrap();
            assert!(!line.contains('\n'));
            let back = parse_json_line(&line).unwrap();
            assert_eq!(back, event, "{kind}");
            let (back, format) = parse_record(&line, &ReadLimits::default()).unwrap();
            assert_eq!(format, EventFormat::Rulebox);
            assert_eq!(back.kind(), kind);
            // The slow path (through a serde_json::Value) agrees with the fast one.
            let value: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                parse_json_value(value, &ReadLimits::default()).unwrap().0,
                event
            );
            // And pretty-printed over many lines.
            let pretty = serde_json::to_string_pretty(&event).unwrap();
            assert_eq!(parse_json_line(&pretty).unwrap(), event, "{kind} pretty");
        }
    }

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let event = parse_json_line(
            r#"{"host":"ws-17","timestamp":1729812989111,"pid":4242,"data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","CommandLine":"cmd /c whoami"}}}"#,
        )
        .unwrap();
        assert_eq!(event.kind(), EventKind::ProcessStart);
        assert_eq!(event.text("Image"), "C:\\Windows\\System32\\cmd.exe");
        assert_eq!(event.text("User"), "");
        assert_eq!(event.pid, 4242);
        let minimal = parse_json_line(r#"{"data":{"DnsQuery":{}}}"#).unwrap();
        assert_eq!(minimal.kind(), EventKind::DnsQuery);
    }

    #[test]
    fn record_errors_say_what_is_wrong() {
        let limits = ReadLimits::default();
        let err = parse_record("{\"host\": \"a\",\n \"data\": }", &limits).unwrap_err();
        assert!(
            matches!(err, RecordError::InvalidJson { line: 2, .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains(" at line 2 column"), "{err}");
        let err = parse_record(r#"{"host":"a","data":{"Nope":{}}}"#, &limits).unwrap_err();
        assert!(matches!(err, RecordError::NotRulebox { .. }), "{err:?}");
        assert!(err.to_string().contains("Nope"), "{err}");
        let err = parse_record(r#"{"host":"a"}"#, &limits).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
        let err = parse_record("[1, 2]", &limits).unwrap_err();
        assert!(
            matches!(err, RecordError::NotAnObject { found: "an array" }),
            "{err:?}"
        );
        let err = parse_record(r#"{"Event": 5}"#, &limits).unwrap_err();
        assert!(
            matches!(err, RecordError::InvalidEvtxField { path: "Event", .. }),
            "{err:?}"
        );
        let err = parse_json_line("{\n\"data\": oops}").unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::Record {
                    line: 1,
                    last_line: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn field_and_record_caps_apply_to_rulebox_events() {
        let limits = ReadLimits {
            max_record_bytes: 200,
            max_field_bytes: 10,
        };
        let ok = r#"{"host":"h","data":{"ProcessStart":{"Image":"0123456789"}}}"#;
        assert!(parse_record(ok, &limits).is_ok());
        let long = r#"{"host":"h","data":{"ProcessStart":{"Image":"0123456789X"}}}"#;
        let err = parse_record(long, &limits).unwrap_err();
        assert!(
            matches!(&err, RecordError::FieldTooLong { field, len: 11, limit: 10 } if field == "Image"),
            "{err:?}"
        );
        let long_extra = r#"{"data":{"Other":{}},"extra":[{"name":"x","value":"0123456789X"}]}"#;
        assert!(matches!(
            parse_record(long_extra, &limits),
            Err(RecordError::FieldTooLong { .. })
        ));
        let long_host = r#"{"host":"0123456789X","data":{"Other":{}}}"#;
        assert!(matches!(
            parse_record(long_host, &limits),
            Err(RecordError::FieldTooLong { .. })
        ));
        let huge = format!(
            r#"{{"host":"h","data":{{"Other":{{}}}},"pad":"{}"}}"#,
            "x".repeat(300)
        );
        assert!(matches!(
            parse_record(&huge, &limits),
            Err(RecordError::TooLarge { limit: 200 })
        ));
    }
}
