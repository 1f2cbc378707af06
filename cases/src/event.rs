//! A test event's JSON, read strictly: a key the schema does not have is refused, naming the key.
//!
//! rulebox's own readers are lenient on purpose (a stream of events from a newer source must not be
//! dropped for one field they do not know), and serde drops an unknown field silently. In a test
//! that is a trap: an event whose `Imgae` is a typo has an empty `Image`, so a case expecting
//! `"none"` passes without testing anything. So a test event is checked key by key against the
//! schema before it is read.

use std::sync::OnceLock;

use rulebox_sdk::{Event, EventData, EventKind, Value as FieldValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use rulebox_sdk::text::printable;

/// The longest text a test event's field may hold, in bytes: the same cap rulebox's event readers
/// apply by default (`rulebox_runtime::events::DEFAULT_MAX_FIELD_BYTES`), so a case never tests an
/// event the agent would have refused.
pub const MAX_FIELD_BYTES: usize = 64 << 10;

/// Reads Windows event JSON (an object with a top-level `"Event"` key, as evtx_dump prints it) into
/// an event; it is given the JSON and returns the event or why it is not one. The mapping lives
/// with rulebox's event readers (`rulebox_runtime::events::parse_json_value`); the host-side tools
/// pass it in, the native runner has none (see [`crate::run_cases`]).
pub type WindowsEvents<'a> = &'a dyn Fn(&Value) -> Result<Event<'static>, String>;

/// The keys of an event in rulebox's JSON form.
const HEADER_KEYS: &[&str] = &["host", "timestamp", "pid", "data", "extra"];

/// The keys of one entry of `extra`.
const EXTRA_KEYS: &[&str] = &["name", "value"];

/// Each kind with the name it has in JSON (`"ProcessStart"`), taken from the schema's own
/// serialization so that it can never drift from it.
fn kinds() -> &'static [(String, EventKind)] {
    static KINDS: OnceLock<Vec<(String, EventKind)>> = OnceLock::new();
    KINDS.get_or_init(|| {
        EventKind::ALL
            .iter()
            .filter_map(|&kind| {
                let value = serde_json::to_value(EventData::empty(kind)).ok()?;
                let name = value.as_object()?.keys().next()?.clone();
                Some((name, kind))
            })
            .collect()
    })
}

/// Every typed field name of every kind.
fn typed_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = EventKind::ALL
            .iter()
            .flat_map(|&k| EventData::empty(k).field_names().iter().copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    })
}

/// Reads one test event. `windows` reads Windows event JSON; without it such an event is refused
/// with a message saying where it can be run.
pub(crate) fn parse_event(
    value: Value,
    windows: Option<WindowsEvents<'_>>,
) -> Result<Event<'static>, String> {
    let Value::Object(map) = &value else {
        return Err(format!("is {}, not a JSON object", json_type(&value)));
    };
    if map.contains_key("Event") {
        check_windows_keys(map)?;
        return match windows {
            Some(read) => read(&value),
            None => Err("is Windows event JSON (evtx_dump form), which the native runner does not \
                 read: run this file with `rulebox test`, or write the event in rulebox's JSON form \
                 (docs/testing.md)"
                .to_owned()),
        };
    }
    check_rulebox_keys(map)?;
    let event = Event::<'static>::deserialize(value).map_err(|e| e.to_string())?;
    check_lengths(&event)?;
    Ok(event)
}

/// Checks every key of an event in rulebox's JSON form against the schema.
fn check_rulebox_keys(map: &Map<String, Value>) -> Result<(), String> {
    for key in map.keys() {
        if !HEADER_KEYS.contains(&key.as_str()) {
            return Err(unknown("key", key, "an event", HEADER_KEYS));
        }
    }
    let Some(data) = map.get("data") else {
        return Err(
            "has no `data` (the kind and its fields: {\"data\": {\"ProcessStart\": {\"Image\": \"...\"}}})"
                .to_owned(),
        );
    };
    let Value::Object(data) = data else {
        return Err(format!(
            "`data` is {}; it must be an object naming one kind: {{\"ProcessStart\": {{...}}}}",
            json_type(data)
        ));
    };
    let mut entries = data.iter();
    let (Some((name, body)), None) = (entries.next(), entries.next()) else {
        return Err(format!(
            "`data` must name exactly one event kind, it names {}",
            data.len()
        ));
    };
    let kind_names: Vec<&str> = kinds().iter().map(|(n, _)| n.as_str()).collect();
    let Some(kind) = kinds().iter().find(|(n, _)| n == name).map(|(_, k)| *k) else {
        return Err(unknown("event kind", name, "`data`", &kind_names));
    };
    let Value::Object(body) = body else {
        return Err(format!(
            "the {name} body is {}; it must be an object of fields",
            json_type(body)
        ));
    };
    let fields = EventData::empty(kind).field_names();
    for key in body.keys() {
        if !fields.contains(&key.as_str()) {
            return Err(unknown("field", key, &format!("a {name} event"), fields));
        }
    }
    if let Some(extra) = map.get("extra") {
        let Value::Array(items) = extra else {
            return Err(format!(
                "`extra` is {}; it must be a list of {{\"name\": ..., \"value\": ...}}",
                json_type(extra)
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let Value::Object(item) = item else {
                return Err(format!(
                    "`extra` entry {i} is {}, not {{\"name\": ..., \"value\": ...}}",
                    json_type(item)
                ));
            };
            for key in item.keys() {
                if !EXTRA_KEYS.contains(&key.as_str()) {
                    return Err(unknown(
                        "key",
                        key,
                        &format!("`extra` entry {i}"),
                        EXTRA_KEYS,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks a Windows event: nothing beside `"Event"`, and no `EventData` name that looks like a typo
/// of a field the schema types (`Imgae`). Other names are legitimate there (Sysmon reports many
/// fields without a typed slot; they reach rules as extra fields), so only near misses are refused.
fn check_windows_keys(map: &Map<String, Value>) -> Result<(), String> {
    for key in map.keys() {
        if key != "Event" {
            return Err(unknown("key", key, "a Windows event", &["Event"]));
        }
    }
    let Some(Value::Object(data)) = map.get("Event").and_then(|e| e.get("EventData")) else {
        return Ok(());
    };
    let typed = typed_names();
    for key in data.keys() {
        if typed.binary_search(&key.as_str()).is_ok() {
            continue;
        }
        if let Some(near) = near_miss(key, typed) {
            return Err(format!(
                "EventData field `{}` looks like a typo of `{near}` (as written it would reach rules \
                 only as an extra field, and `{near}` would be empty)",
                printable(key)
            ));
        }
    }
    Ok(())
}

/// Checks every text of a read event against [`MAX_FIELD_BYTES`].
fn check_lengths(event: &Event<'_>) -> Result<(), String> {
    let too_long = |name: &str, text: &str| {
        (text.len() > MAX_FIELD_BYTES).then(|| {
            format!(
                "field `{}` is {} bytes; an event field may have at most {MAX_FIELD_BYTES}",
                printable(name),
                text.len()
            )
        })
    };
    if let Some(e) = too_long("host", &event.host) {
        return Err(e);
    }
    let mut problem = None;
    event.data.for_each_field(&mut |name, value| {
        if let (None, FieldValue::Str(text)) = (&problem, value) {
            problem = too_long(name, text);
        }
    });
    if let Some(e) = problem {
        return Err(e);
    }
    for field in &event.extra {
        if let Some(e) = too_long(&field.name, &field.value).or(too_long("extra name", &field.name))
        {
            return Err(e);
        }
    }
    Ok(())
}

/// `unknown field `Imgae` in a ProcessStart event (did you mean `Image`?); it has: ...`.
fn unknown(what: &str, key: &str, place: &str, known: &[&str]) -> String {
    let hint = near_miss(key, known)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    format!(
        "unknown {what} `{}` in {place}{hint}; known: {}",
        printable(key),
        known.join(", ")
    )
}

/// The name in `known` that `key` most likely misspells: equal but for case, or (for names of four
/// characters or more) one insertion, deletion, substitution or swap of neighbours away.
fn near_miss<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    if let Some(n) = known.iter().find(|n| n.eq_ignore_ascii_case(key)) {
        return Some(n);
    }
    if key.chars().count() < 4 {
        return None;
    }
    known
        .iter()
        .find(|n| n.chars().count() >= 4 && edit_distance(key, n) <= 1)
        .copied()
}

/// Optimal string alignment distance (Levenshtein plus swaps of neighbouring characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Event<'static>, String> {
        parse_event(serde_json::from_str(text).unwrap(), None)
    }

    #[test]
    fn a_typo_in_a_field_name_is_refused_naming_the_key_and_the_likely_field() {
        let err = parse(r#"{"data":{"ProcessStart":{"Imgae":"C:\\x\\cmd.exe"}}}"#).unwrap_err();
        assert!(err.contains("unknown field `Imgae`"), "{err}");
        assert!(err.contains("did you mean `Image`?"), "{err}");
        assert!(err.contains("a ProcessStart event"), "{err}");
        // A name that is nothing like a field still names the key, and lists the fields.
        let err = parse(r#"{"data":{"DnsQuery":{"Colour":"x"}}}"#).unwrap_err();
        assert!(err.contains("unknown field `Colour`"), "{err}");
        assert!(err.contains("QueryName"), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn unknown_header_kind_and_extra_keys_are_refused() {
        let err = parse(r#"{"hots":"ws-1","data":{"DnsQuery":{}}}"#).unwrap_err();
        assert!(err.contains("unknown key `hots`"), "{err}");
        assert!(err.contains("did you mean `host`?"), "{err}");
        let err = parse(r#"{"data":{"ProcesStart":{}}}"#).unwrap_err();
        assert!(err.contains("unknown event kind `ProcesStart`"), "{err}");
        assert!(err.contains("did you mean `ProcessStart`?"), "{err}");
        let err =
            parse(r#"{"data":{"DnsQuery":{}},"extra":[{"name":"a","valeu":"b"}]}"#).unwrap_err();
        assert!(err.contains("unknown key `valeu`"), "{err}");
        let err = parse(r#"{"data":{"DnsQuery":{},"ProcessStart":{}}}"#).unwrap_err();
        assert!(err.contains("exactly one event kind"), "{err}");
        let err = parse(r#"{"host":"h"}"#).unwrap_err();
        assert!(err.contains("has no `data`"), "{err}");
    }

    #[test]
    fn every_field_of_every_kind_is_accepted() {
        for (name, kind) in kinds() {
            let data = EventData::empty(*kind);
            let body: Map<String, Value> = data
                .field_names()
                .iter()
                .map(|f| {
                    let v = match data.field(f) {
                        Some(FieldValue::Str(_)) => Value::String("x".into()),
                        Some(FieldValue::Int(_)) => Value::from(7),
                        _ => Value::Bool(true),
                    };
                    ((*f).to_owned(), v)
                })
                .collect();
            let event = serde_json::json!({"host": "h", "timestamp": 1, "pid": 2,
                "data": {name.clone(): body}, "extra": [{"name": "n", "value": "v"}]});
            let read = parse_event(event, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(read.kind(), *kind);
        }
        assert_eq!(kinds().len(), EventKind::ALL.len());
    }

    #[test]
    fn long_fields_are_refused_at_the_readers_cap() {
        let at = "x".repeat(MAX_FIELD_BYTES);
        let ok = format!(r#"{{"data":{{"ProcessStart":{{"CommandLine":"{at}"}}}}}}"#);
        assert!(parse(&ok).is_ok());
        let over = format!(r#"{{"data":{{"ProcessStart":{{"CommandLine":"{at}y"}}}}}}"#);
        let err = parse(&over).unwrap_err();
        assert!(err.contains("`CommandLine`"), "{err}");
    }

    #[test]
    fn windows_events_are_checked_for_typos_and_need_a_reader() {
        let event = |data: &str| {
            format!(r#"{{"Event":{{"System":{{"EventID":1}},"EventData":{{{data}}}}}}}"#)
        };
        let err = parse(&event(r#""Imgae":"a.exe""#)).unwrap_err();
        assert!(
            err.contains("`Imgae` looks like a typo of `Image`"),
            "{err}"
        );
        let err = parse(&event(r#""commandline":"a""#)).unwrap_err();
        assert!(err.contains("typo of `CommandLine`"), "{err}");
        // Sysmon fields without a typed slot are fine; the native runner then says it cannot read
        // Windows events, and where to run them.
        let err = parse(&event(r#""Image":"a.exe","UtcTime":"t","RuleName":"-""#)).unwrap_err();
        assert!(err.contains("rulebox test"), "{err}");
        let read = |v: &Value| -> Result<Event<'static>, String> {
            assert!(v.get("Event").is_some());
            Ok(Event::new(EventData::empty(EventKind::ProcessStart)))
        };
        let value: Value = serde_json::from_str(&event(r#""Image":"a.exe""#)).unwrap();
        assert!(parse_event(value, Some(&read)).is_ok());
        let err = parse(r#"{"Event":{},"Extra":1}"#).unwrap_err();
        assert!(err.contains("unknown key `Extra`"), "{err}");
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("Imgae", "Image"), 1);
        assert_eq!(edit_distance("Image", "Image"), 0);
        assert_eq!(edit_distance("Imag", "Image"), 1);
        assert_eq!(edit_distance("ParentImage", "Image"), 6);
    }

    /// Every real event of the Sigma corpus passes the typo check: the near-miss rule must never
    /// refuse a field Sysmon really reports.
    #[test]
    fn no_field_of_the_recorded_corpus_is_taken_for_a_typo() {
        let dir = std::env::var_os("RULEBOX_SIGMA_CORPUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma")
            });
        let Ok(entries) = std::fs::read_dir(dir.join("cases")) else {
            eprintln!(
                "skipped: no Sigma corpus at {} (set RULEBOX_SIGMA_CORPUS)",
                dir.display()
            );
            return;
        };
        let mut checked = 0;
        for entry in entries {
            let path = entry.unwrap().path().join("event.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut records = Vec::new();
            for value in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
                match value.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                    Value::Array(items) => records.extend(items),
                    other => records.push(other),
                }
            }
            for record in records {
                if let Value::Object(map) = &record {
                    check_windows_keys(map).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} corpus events checked");
    }
}
