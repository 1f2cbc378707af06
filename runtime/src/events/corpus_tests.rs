//! The Sigma regression corpus (real evtx_dump output) read end to end.
//!
//! Location: `$RULEBOX_SIGMA_CORPUS`, else `<workspace>/../shared/corpus/sigma`; the test is skipped
//! (with a message) when neither exists.

use std::path::PathBuf;

use rulebox_sdk::{EventKind, Value as FieldValue};
use serde_json::Value;

use super::*;

/// The corpus directory, and whether it is the default one (whose counts are known).
fn corpus_dir() -> (PathBuf, bool) {
    match std::env::var_os("RULEBOX_SIGMA_CORPUS") {
        Some(dir) => (PathBuf::from(dir), false),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma"),
            true,
        ),
    }
}

/// The kind a corpus event must get, decided here independently of the mapping code.
fn expected_kind(provider: &str, id: u64, event_type: &str) -> EventKind {
    if provider != "Microsoft-Windows-Sysmon" {
        return EventKind::Other;
    }
    match (id, event_type) {
        (1, _) => EventKind::ProcessStart,
        (3, _) => EventKind::NetworkConnect,
        (7, _) => EventKind::ImageLoad,
        (10, _) => EventKind::ProcessAccess,
        (11, _) => EventKind::FileCreate,
        (12, "CreateKey") => EventKind::RegistryAdd,
        (12, "DeleteKey" | "DeleteValue") => EventKind::RegistryDelete,
        (13, _) => EventKind::RegistrySet,
        (14, _) => EventKind::RegistryRename,
        (17, _) => EventKind::PipeCreate,
        (18, _) => EventKind::PipeConnect,
        (22, _) => EventKind::DnsQuery,
        (23 | 26, _) => EventKind::FileDelete,
        (12, other) => panic!("unexpected Sysmon 12 EventType {other:?}"),
        _ => EventKind::Other,
    }
}

/// A source scalar as text, rendered here independently of the mapping code.
fn source_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other}"),
    }
}

fn source_u32(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => u32::try_from(n.as_u64()?).ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Asserts that `event.field(name)` reports exactly what the source said.
fn assert_field(where_: &str, event: &rulebox_sdk::Event<'_>, name: &str, source: &Value) {
    let want = source_text(source);
    let got = event
        .field(name)
        .unwrap_or_else(|| panic!("{where_}: field {name:?} = {want:?} was lost"));
    let same = match got {
        FieldValue::Str(s) => s == want,
        FieldValue::Int(n) => want.trim().parse::<u64>().ok() == Some(n),
        FieldValue::Bool(b) => want.eq_ignore_ascii_case(if b { "true" } else { "false" }),
    };
    assert!(
        same,
        "{where_}: field {name:?} is {got:?}, the source said {want:?}"
    );
}

#[test]
fn sigma_corpus_events_all_parse_without_losing_fields() {
    let (dir, is_default) = corpus_dir();
    let cases = dir.join("cases");
    if !cases.is_dir() {
        println!("skipped: Sigma corpus not found at {}", dir.display());
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("event.json"))
        .filter(|path| path.is_file())
        .collect();
    files.sort();

    let mut total = 0;
    let mut by_kind = std::collections::BTreeMap::<&'static str, usize>::new();
    for file in &files {
        let name = file
            .strip_prefix(&cases)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).unwrap();
        // What the file holds, counted independently of the reader.
        let mut sources: Vec<(Value, usize)> = Vec::new();
        let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        let mut end = 0;
        while let Some(value) = stream.next() {
            let value = value.unwrap_or_else(|e| panic!("{name}: not a JSON object stream: {e}"));
            let start = end + text[end..].len() - text[end..].trim_start().len();
            let line = 1 + text[..start].matches('\n').count();
            sources.push((value, line));
            end = stream.byte_offset();
        }
        let read = read_events_file(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(read.len(), sources.len(), "{name}: event count");
        for (i, ((source, line), got)) in sources.iter().zip(&read).enumerate() {
            let where_ = format!("{name} event {}", i + 1);
            let event = &got.event;
            assert_eq!(got.format, EventFormat::Evtx, "{where_}");
            assert_eq!(got.line, *line, "{where_}: start line");

            let system = &source["Event"]["System"];
            let provider = system["Provider"]["#attributes"]["Name"].as_str().unwrap();
            let id = system["EventID"].as_u64().unwrap();
            let data = &source["Event"]["EventData"];
            let event_type = data["EventType"].as_str().unwrap_or("");
            let kind = expected_kind(provider, id, event_type);
            assert_eq!(event.kind(), kind, "{where_}: {provider} {id}");
            *by_kind.entry(kind.name()).or_default() += 1;

            // Header.
            assert_eq!(event.host, system["Computer"].as_str().unwrap(), "{where_}");
            let time = system["TimeCreated"]["#attributes"]["SystemTime"]
                .as_str()
                .unwrap();
            assert_eq!(Some(event.timestamp), parse_timestamp_ms(time), "{where_}");
            // 2020-01-01 .. 2030-01-01
            assert!(
                (1_577_836_800_000..1_893_456_000_000).contains(&event.timestamp),
                "{where_}: {time} -> {}",
                event.timestamp
            );
            let pid_field = if kind == EventKind::ProcessAccess {
                "SourceProcessId"
            } else {
                "ProcessId"
            };
            let header_pid = data.get(pid_field).and_then(source_u32);
            let expected_pid = header_pid
                .or_else(|| source_u32(&system["Execution"]["#attributes"]["ProcessID"]))
                .unwrap();
            assert_eq!(event.pid, expected_pid, "{where_}: pid");

            // The kind's key fields are filled.
            let key_fields: &[&str] = match kind {
                EventKind::ProcessStart => &["Image", "CommandLine"],
                EventKind::ProcessAccess => &["SourceImage", "TargetImage", "GrantedAccess"],
                EventKind::FileCreate | EventKind::FileDelete => &["TargetFilename"],
                EventKind::RegistryAdd
                | EventKind::RegistrySet
                | EventKind::RegistryDelete
                | EventKind::RegistryRename => &["TargetObject", "EventType"],
                EventKind::ImageLoad => &["Image", "ImageLoaded"],
                EventKind::NetworkConnect => &["Image", "DestinationIp"],
                EventKind::DnsQuery => &["QueryName"],
                EventKind::PipeCreate | EventKind::PipeConnect => &["PipeName"],
                _ => &["Provider", "Channel"],
            };
            for field in key_fields {
                assert!(!event.text(field).is_empty(), "{where_}: {field} is empty");
            }
            if let rulebox_sdk::EventData::Other(body) = &event.data {
                assert_eq!(body.provider, provider, "{where_}");
                assert_eq!(
                    body.channel,
                    system["Channel"].as_str().unwrap(),
                    "{where_}"
                );
            }
            assert_eq!(
                event.field("EventID").map(|v| v.to_string()),
                Some(id.to_string()),
                "{where_}: EventID"
            );

            // No EventData or UserData field is lost.
            if let Some(fields) = data.as_object() {
                for (key, value) in fields {
                    if key == "#attributes" {
                        for (attr, value) in value.as_object().unwrap() {
                            assert_field(&where_, event, attr, value);
                        }
                    } else if key == pid_field && header_pid.is_some() {
                        // Consumed as the pid header (checked above).
                    } else {
                        assert_field(&where_, event, key, value);
                    }
                }
            }
            if let Some(user_data) = source["Event"]["UserData"].as_object() {
                for wrapper in user_data.values() {
                    for (key, value) in wrapper.as_object().unwrap() {
                        if key != "#attributes" {
                            assert_field(&where_, event, key, value);
                        }
                    }
                }
            }

            // And the event survives rulebox's own JSON form.
            let line = serde_json::to_string(event).unwrap();
            assert_eq!(&parse_json_line(&line).unwrap(), event, "{where_}");
        }
        total += read.len();
    }
    println!(
        "Sigma corpus: {total} events in {} files: {by_kind:?}",
        files.len()
    );
    assert!(
        !files.is_empty(),
        "no cases/*/event.json under {}",
        dir.display()
    );
    if is_default {
        assert_eq!(files.len(), 162, "files in the default corpus");
        assert_eq!(total, 197, "events in the default corpus");
    }
}
