//! Windows events in the JSON form evtx_dump prints, mapped onto rulebox's event schema.
//!
//! ```json
//! {"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
//!                       "EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational",
//!                       "Computer": "ws-17", "TimeCreated": {"#attributes": {"SystemTime": "2025-10-24T23:34:34.640670Z"}},
//!                       "Execution": {"#attributes": {"ProcessID": 3308}}},
//!            "EventData": {"ProcessId": 7760, "Image": "C:\\Windows\\System32\\cmd.exe", ...}}}
//! ```

use std::borrow::Cow;

use rulebox_sdk::{Event, EventData, EventKind, Field};
use serde_json::{Map, Value};

use super::time::parse_timestamp_ms;
use super::{ReadLimits, RecordError, check_len};

/// The provider name of Sysmon events.
pub const SYSMON_PROVIDER: &str = "Microsoft-Windows-Sysmon";

/// Nesting below this depth inside a section is kept as compact JSON text instead of more fields.
const MAX_FLATTEN_DEPTH: usize = 32;

/// The kind of a Sysmon event with id `event_id`, or `None` for ids without a typed kind (those become
/// [`EventKind::Other`]). `event_type` is the event's `EventType` field; it only matters for id 12,
/// where `DeleteKey`/`DeleteValue` (any `Delete...`) mean [`EventKind::RegistryDelete`] and anything
/// else (`CreateKey`, or no type at all) means [`EventKind::RegistryAdd`].
pub fn sysmon_event_kind(event_id: u32, event_type: &str) -> Option<EventKind> {
    Some(match event_id {
        1 => EventKind::ProcessStart,
        3 => EventKind::NetworkConnect,
        7 => EventKind::ImageLoad,
        10 => EventKind::ProcessAccess,
        11 => EventKind::FileCreate,
        12 => {
            let t = event_type.trim().as_bytes();
            if t.len() >= 6 && t[..6].eq_ignore_ascii_case(b"delete") {
                EventKind::RegistryDelete
            } else {
                EventKind::RegistryAdd
            }
        }
        13 => EventKind::RegistrySet,
        14 => EventKind::RegistryRename,
        17 => EventKind::PipeCreate,
        18 => EventKind::PipeConnect,
        22 => EventKind::DnsQuery,
        23 | 26 => EventKind::FileDelete,
        _ => return None,
    })
}

/// Maps one evtx_dump-style Windows event (`{"Event": {"System": ..., "EventData": ...}}`) onto an
/// [`Event`], with the default [`ReadLimits`].
///
/// Sysmon events with a typed kind (see [`sysmon_event_kind`]) fill their body with
/// [`EventData::set_field`]; every field without a typed slot, or whose value does not parse as its
/// slot's type, goes to [`Event::extra`], and so does `EventID` (it tells Sysmon 23 from 26). Every
/// other event becomes [`EventKind::Other`] with its provider, channel and event id, and all its
/// `EventData`/`UserData` fields in `extra`.
///
/// Header: `host` is `System.Computer`; `timestamp` is `System.TimeCreated.#attributes.SystemTime`
/// (see [`parse_timestamp_ms`]; a time that does not parse leaves it 0
/// and keeps the text in `extra` as `TimeCreated`); `pid` is `EventData.ProcessId` (for Sysmon 10,
/// `SourceProcessId`) when present and a valid number, which then does not appear again in `extra`,
/// else `System.Execution.#attributes.ProcessID`.
///
/// Nested values are flattened: `{"#attributes": {"A": 1}, "#text": "t"}` under `F` gives the fields
/// `F.A` and `F`; arrays give `F[0]`, `F[1]`, ...; namespace declarations (`xmlns`) are dropped.
/// `UserData` holds one wrapper element whose children are the fields: the wrapper's name is
/// dropped, so `UserData.Operation_ClientFailure.Operation` is the field `Operation`. Sections other
/// than `System`, `EventData` and `UserData` (`RenderingInfo`, ...) are kept in `extra` under their own
/// prefix (`RenderingInfo.Message`). Non-text values are rendered as text: numbers in decimal, flags
/// as `true`/`false`, null as the empty string.
pub fn parse_evtx_value(value: &Value) -> Result<Event<'static>, RecordError> {
    evtx_event(value, &ReadLimits::default())
}

/// [`parse_evtx_value`] with explicit limits.
pub(crate) fn evtx_event(
    value: &Value,
    limits: &ReadLimits,
) -> Result<Event<'static>, RecordError> {
    let root = value.as_object().ok_or(RecordError::NotAnObject {
        found: json_type(value),
    })?;
    let event = object_at(root, "Event", "Event")?;
    let system = object_at(event, "System", "Event.System")?;

    let event_id = match system.get("EventID") {
        None | Some(Value::Null) => {
            return Err(RecordError::MissingEvtxField {
                path: "Event.System.EventID",
            });
        }
        Some(v) => parse_u32_value(v).ok_or_else(|| RecordError::InvalidEvtxField {
            path: "Event.System.EventID",
            found: short_json(v),
            expected: "an event id (a whole number up to 4294967295)",
        })?,
    };
    let provider = system
        .get("Provider")
        .map(provider_name)
        .unwrap_or_default();
    let channel = system.get("Channel").map(scalar_text).unwrap_or_default();
    let host = system.get("Computer").map(scalar_text).unwrap_or_default();
    check_len("Provider", &provider, limits)?;
    check_len("Channel", &channel, limits)?;
    check_len("Computer", &host, limits)?;

    // EventData first (the pid may only come from there), then UserData: both are "the event's
    // fields". Other sections only ever go to `extra`.
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(section) = event.get("EventData") {
        match section {
            Value::Null => {}
            Value::Object(map) => flatten_object(&mut fields, "", "EventData", map, limits, 0)?,
            other => flatten_value(&mut fields, "EventData".to_owned(), other, limits, 0)?,
        }
    }
    let event_data_len = fields.len();
    if let Some(section) = event.get("UserData") {
        flatten_user_data(&mut fields, section, limits)?;
    }
    let mut other_sections: Vec<(String, String)> = Vec::new();
    for (key, section) in event {
        if !matches!(
            key.as_str(),
            "#attributes" | "System" | "EventData" | "UserData"
        ) {
            flatten_value(&mut other_sections, key.clone(), section, limits, 0)?;
        }
    }

    let is_sysmon = provider.eq_ignore_ascii_case(SYSMON_PROVIDER);
    let kind = if is_sysmon {
        let event_type = fields[..event_data_len]
            .iter()
            .find(|(name, _)| name == "EventType")
            .map_or("", |(_, value)| value.as_str());
        sysmon_event_kind(event_id, event_type).unwrap_or(EventKind::Other)
    } else {
        EventKind::Other
    };

    // The pid header, and which field it consumed.
    let pid_field = if kind == EventKind::ProcessAccess {
        "SourceProcessId"
    } else {
        "ProcessId"
    };
    let consumed = fields[..event_data_len]
        .iter()
        .position(|(name, value)| name == pid_field && parse_u32_text(value).is_some());
    let pid = match consumed {
        Some(i) => parse_u32_text(&fields[i].1),
        None => system
            .get("Execution")
            .and_then(|e| e.get("#attributes"))
            .and_then(|a| a.get("ProcessID"))
            .and_then(parse_u32_value),
    }
    .unwrap_or(0);

    let mut extra: Vec<Field<'static>> = Vec::new();
    let time_text = system
        .get("TimeCreated")
        .map(|t| {
            t.get("#attributes")
                .and_then(|a| a.get("SystemTime"))
                .unwrap_or(t)
        })
        .map(scalar_text)
        .unwrap_or_default();
    let timestamp = if time_text.is_empty() {
        0
    } else if let Some(ms) = parse_timestamp_ms(&time_text) {
        ms
    } else {
        check_len("TimeCreated", &time_text, limits)?;
        extra.push(field("TimeCreated".to_owned(), time_text));
        0
    };

    let mut data = EventData::empty(kind);
    if let EventData::Other(other) = &mut data {
        other.provider = Cow::Owned(provider);
        other.channel = Cow::Owned(channel);
        other.event_id = event_id;
    }
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if Some(i) == consumed {
            continue;
        }
        if kind == EventKind::Other {
            extra.push(field(name, value));
            continue;
        }
        match data.field(&name) {
            None => extra.push(field(name, value)),
            // A text slot takes any text.
            Some(rulebox_sdk::Value::Str(_)) => {
                data.set_field(&name, Cow::Owned(value));
            }
            // A number or a flag: keep the text if it does not parse.
            Some(_) => {
                if !data.set_field(&name, Cow::Owned(value.clone())) {
                    extra.push(field(name, value));
                }
            }
        }
    }
    if kind != EventKind::Other {
        extra.push(field("EventID".to_owned(), event_id.to_string()));
    }
    extra.extend(other_sections.into_iter().map(|(n, v)| field(n, v)));

    let mut out = Event::new(data);
    out.host = Cow::Owned(host);
    out.timestamp = timestamp;
    out.pid = pid;
    out.extra = extra;
    Ok(out)
}

/// An owned extra field.
fn field(name: String, value: String) -> Field<'static> {
    Field {
        name: Cow::Owned(name),
        value: Cow::Owned(value),
    }
}

/// `map[key]`, which must be an object.
fn object_at<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    path: &'static str,
) -> Result<&'v Map<String, Value>, RecordError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(RecordError::MissingEvtxField { path }),
        Some(Value::Object(inner)) => Ok(inner),
        Some(other) => Err(RecordError::InvalidEvtxField {
            path,
            found: short_json(other),
            expected: "an object",
        }),
    }
}

/// `System.Provider`: `{"#attributes": {"Name": ...}}`, or plain text.
fn provider_name(provider: &Value) -> String {
    match provider {
        Value::Object(map) => map
            .get("#attributes")
            .and_then(|a| a.get("Name"))
            .or_else(|| map.get("Name"))
            .map(scalar_text)
            .unwrap_or_default(),
        other => scalar_text(other),
    }
}

/// Flattens `UserData`: its wrapper element's name is dropped.
fn flatten_user_data(
    out: &mut Vec<(String, String)>,
    section: &Value,
    limits: &ReadLimits,
) -> Result<(), RecordError> {
    match section {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    _ if key == "#attributes" => {
                        flatten_attributes(out, "", value, limits, 0)?;
                    }
                    Value::Object(inner) => flatten_object(out, "", key, inner, limits, 0)?,
                    other => flatten_value(out, key.clone(), other, limits, 0)?,
                }
            }
            Ok(())
        }
        other => flatten_value(out, "UserData".to_owned(), other, limits, 0),
    }
}

/// Flattens the members of `map` under `prefix`; `#text` is named `text_name` at the top level.
fn flatten_object(
    out: &mut Vec<(String, String)>,
    prefix: &str,
    text_name: &str,
    map: &Map<String, Value>,
    limits: &ReadLimits,
    depth: usize,
) -> Result<(), RecordError> {
    for (key, value) in map {
        match key.as_str() {
            "#attributes" => flatten_attributes(out, prefix, value, limits, depth)?,
            "#text" => {
                let name = if prefix.is_empty() { text_name } else { prefix };
                flatten_value(out, name.to_owned(), value, limits, depth + 1)?;
            }
            _ => flatten_value(out, join(prefix, key), value, limits, depth + 1)?,
        }
    }
    Ok(())
}

/// Flattens an `#attributes` object (namespace declarations are dropped).
fn flatten_attributes(
    out: &mut Vec<(String, String)>,
    prefix: &str,
    attributes: &Value,
    limits: &ReadLimits,
    depth: usize,
) -> Result<(), RecordError> {
    match attributes {
        Value::Object(attrs) => {
            for (attr, value) in attrs {
                if attr == "xmlns" || attr.starts_with("xmlns:") {
                    continue;
                }
                flatten_value(out, join(prefix, attr), value, limits, depth + 1)?;
            }
            Ok(())
        }
        other => flatten_value(out, join(prefix, "#attributes"), other, limits, depth + 1),
    }
}

/// Adds the field(s) for `value` named `name`.
fn flatten_value(
    out: &mut Vec<(String, String)>,
    name: String,
    value: &Value,
    limits: &ReadLimits,
    depth: usize,
) -> Result<(), RecordError> {
    match value {
        Value::Object(map) if !map.is_empty() && depth < MAX_FLATTEN_DEPTH => {
            flatten_object(out, &name, &name, map, limits, depth)
        }
        Value::Array(items) if !items.is_empty() && depth < MAX_FLATTEN_DEPTH => {
            for (i, item) in items.iter().enumerate() {
                flatten_value(out, format!("{name}[{i}]"), item, limits, depth + 1)?;
            }
            Ok(())
        }
        // An element that is present but empty.
        Value::Object(map) if map.is_empty() => push(out, name, String::new(), limits),
        Value::Array(items) if items.is_empty() => push(out, name, String::new(), limits),
        // Too deep to flatten further: keep it as JSON.
        Value::Object(_) | Value::Array(_) => push(out, name, value.to_string(), limits),
        scalar => push(out, name, scalar_text(scalar), limits),
    }
}

/// Adds one field, if its value is within the limit.
fn push(
    out: &mut Vec<(String, String)>,
    name: String,
    value: String,
    limits: &ReadLimits,
) -> Result<(), RecordError> {
    check_len(&name, &value, limits)?;
    out.push((name, value));
    Ok(())
}

/// `prefix.key`, or `key` without a prefix.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A scalar as text: strings as they are, numbers in decimal, flags as `true`/`false`, null as empty.
/// (Objects and arrays, which callers flatten first, become compact JSON.)
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(map) => match map.get("#text") {
            Some(text) => scalar_text(text),
            None => value.to_string(),
        },
        Value::Array(_) => value.to_string(),
    }
}

/// A `u32` from a JSON number, decimal or `0x` text, or an object's `#text`.
fn parse_u32_value(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => u32::try_from(n.as_u64()?).ok(),
        Value::String(s) => parse_u32_text(s),
        Value::Object(map) => parse_u32_value(map.get("#text")?),
        _ => None,
    }
}

/// A `u32` from decimal or `0x` hexadecimal text.
fn parse_u32_text(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The JSON type of `value`, for messages.
pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` as compact JSON, cut to a length fit for a message.
fn short_json(value: &Value) -> String {
    const MAX: usize = 80;
    let mut text = value.to_string();
    if text.len() > MAX {
        text.truncate(text.floor_char_boundary(MAX));
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_sdk::Value as FieldValue;
    use serde_json::json;

    fn sysmon(id: u32, data: Value) -> Value {
        json!({"Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "5770385F"}},
                "EventID": id,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "ws-17.example",
                "TimeCreated": {"#attributes": {"SystemTime": "2025-10-24T23:34:34.640670Z"}},
                "Execution": {"#attributes": {"ProcessID": 3308, "ThreadID": 4008}},
                "Correlation": null
            },
            "EventData": data
        }})
    }

    fn extra<'e>(event: &'e Event<'_>, name: &str) -> Option<&'e str> {
        event
            .extra
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_ref())
    }

    #[test]
    fn every_sysmon_id_maps_to_its_kind_and_fields() {
        let cases: &[(u32, Value, EventKind, &str, &str)] = &[
            (
                1,
                json!({"Image": "C:\\w\\cmd.exe", "CommandLine": "cmd /c whoami", "ParentProcessId": 11}),
                EventKind::ProcessStart,
                "CommandLine",
                "cmd /c whoami",
            ),
            (
                3,
                json!({"Image": "a.exe", "DestinationIp": "10.0.0.1", "DestinationPort": 4444, "Initiated": "true"}),
                EventKind::NetworkConnect,
                "DestinationIp",
                "10.0.0.1",
            ),
            (
                7,
                json!({"Image": "a.exe", "ImageLoaded": "C:\\x.dll", "Signed": "false"}),
                EventKind::ImageLoad,
                "ImageLoaded",
                "C:\\x.dll",
            ),
            (
                10,
                json!({"SourceImage": "a.exe", "TargetImage": "lsass.exe", "GrantedAccess": "0x1010", "TargetProcessId": 700}),
                EventKind::ProcessAccess,
                "TargetImage",
                "lsass.exe",
            ),
            (
                11,
                json!({"Image": "a.exe", "TargetFilename": "C:\\t.txt"}),
                EventKind::FileCreate,
                "TargetFilename",
                "C:\\t.txt",
            ),
            (
                12,
                json!({"EventType": "CreateKey", "TargetObject": "HKLM\\k"}),
                EventKind::RegistryAdd,
                "TargetObject",
                "HKLM\\k",
            ),
            (
                12,
                json!({"EventType": "DeleteKey", "TargetObject": "HKLM\\k"}),
                EventKind::RegistryDelete,
                "EventType",
                "DeleteKey",
            ),
            (
                12,
                json!({"EventType": "DeleteValue", "TargetObject": "HKLM\\k\\v"}),
                EventKind::RegistryDelete,
                "EventType",
                "DeleteValue",
            ),
            (
                13,
                json!({"EventType": "SetValue", "TargetObject": "HKLM\\k\\v", "Details": "DWORD (0x00000001)"}),
                EventKind::RegistrySet,
                "Details",
                "DWORD (0x00000001)",
            ),
            (
                14,
                json!({"EventType": "RenameKey", "TargetObject": "HKLM\\a", "NewName": "HKLM\\b"}),
                EventKind::RegistryRename,
                "NewName",
                "HKLM\\b",
            ),
            (
                17,
                json!({"EventType": "CreatePipe", "PipeName": "\\PSEXESVC"}),
                EventKind::PipeCreate,
                "PipeName",
                "\\PSEXESVC",
            ),
            (
                18,
                json!({"EventType": "ConnectPipe", "PipeName": "\\lsadump"}),
                EventKind::PipeConnect,
                "PipeName",
                "\\lsadump",
            ),
            (
                22,
                json!({"QueryName": "evil.example", "QueryStatus": "0"}),
                EventKind::DnsQuery,
                "QueryName",
                "evil.example",
            ),
            (
                23,
                json!({"TargetFilename": "C:\\gone.txt", "Archived": "true"}),
                EventKind::FileDelete,
                "TargetFilename",
                "C:\\gone.txt",
            ),
            (
                26,
                json!({"TargetFilename": "C:\\gone2.txt"}),
                EventKind::FileDelete,
                "TargetFilename",
                "C:\\gone2.txt",
            ),
        ];
        for (id, data, kind, name, value) in cases {
            let event = parse_evtx_value(&sysmon(*id, data.clone())).unwrap();
            assert_eq!(event.kind(), *kind, "Sysmon {id}");
            assert_eq!(event.text(name), *value, "Sysmon {id} field {name}");
            assert_eq!(event.host, "ws-17.example");
            assert_eq!(event.timestamp, 1_761_348_874_640);
            assert_eq!(
                event.pid, 3308,
                "no ProcessId: the pid comes from Execution"
            );
            assert_eq!(extra(&event, "EventID"), Some(id.to_string().as_str()));
        }
    }

    #[test]
    fn typed_values_parse_and_the_rest_goes_to_extra() {
        let event = parse_evtx_value(&sysmon(
            3,
            json!({"RuleName": "-", "ProcessId": 7760, "Image": "a.exe", "DestinationPort": 443,
                   "SourcePort": "not-a-port", "Initiated": true, "SourceIsIpv6": false, "Note": null}),
        ))
        .unwrap();
        let EventData::NetworkConnect(body) = &event.data else {
            panic!("wrong kind {:?}", event.kind())
        };
        assert_eq!(body.destination_port, 443);
        assert!(body.initiated);
        assert_eq!(body.source_port, 0);
        assert_eq!(event.pid, 7760, "EventData.ProcessId wins over Execution");
        assert_eq!(extra(&event, "ProcessId"), None, "consumed as the header");
        assert_eq!(extra(&event, "SourcePort"), Some("not-a-port"));
        assert_eq!(
            event.field("SourcePort"),
            Some(FieldValue::Str("not-a-port"))
        );
        assert_eq!(extra(&event, "RuleName"), Some("-"));
        assert_eq!(extra(&event, "SourceIsIpv6"), Some("false"));
        assert_eq!(extra(&event, "Note"), Some(""));
    }

    #[test]
    fn process_access_pid_is_the_source() {
        let event = parse_evtx_value(&sysmon(
            10,
            json!({"SourceProcessId": "0x10", "TargetProcessId": 700, "SourceThreadId": 5}),
        ))
        .unwrap();
        assert_eq!(event.kind(), EventKind::ProcessAccess);
        assert_eq!(event.pid, 16);
        assert_eq!(event.field("TargetProcessId"), Some(FieldValue::Int(700)));
        assert_eq!(extra(&event, "SourceProcessId"), None);
        assert_eq!(extra(&event, "SourceThreadId"), Some("5"));
    }

    #[test]
    fn other_events_keep_everything_in_extra() {
        let value = json!({"Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-WMI-Activity"}},
                "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 5858},
                "Channel": "Microsoft-Windows-WMI-Activity/Operational",
                "Computer": "pc",
                "TimeCreated": {"#attributes": {"SystemTime": "not a time"}},
                "Execution": {"#attributes": {"ProcessID": "3092"}}
            },
            "UserData": {"Operation_ClientFailure": {
                "#attributes": {"xmlns": "http://manifests.microsoft.com/win/2006/windows/WMI"},
                "Operation": "Start IWbemServices::ExecMethod",
                "ClientProcessId": 25920,
                "Nested": {"#attributes": {"Kind": "k"}, "#text": "inner", "Deep": {"Leaf": 1}},
                "List": ["a", "b"]
            }},
            "RenderingInfo": {"Message": "hello"}
        }});
        let event = parse_evtx_value(&value).unwrap();
        let EventData::Other(body) = &event.data else {
            panic!("wrong kind {:?}", event.kind())
        };
        assert_eq!(body.provider, "Microsoft-Windows-WMI-Activity");
        assert_eq!(body.channel, "Microsoft-Windows-WMI-Activity/Operational");
        assert_eq!(body.event_id, 5858);
        assert_eq!(event.field("EventID"), Some(FieldValue::Int(5858)));
        assert_eq!(event.pid, 3092);
        assert_eq!(event.timestamp, 0);
        assert_eq!(extra(&event, "TimeCreated"), Some("not a time"));
        assert_eq!(event.text("Operation"), "Start IWbemServices::ExecMethod");
        assert_eq!(event.text("ClientProcessId"), "25920");
        assert_eq!(event.text("Nested"), "inner");
        assert_eq!(event.text("Nested.Kind"), "k");
        assert_eq!(event.text("Nested.Deep.Leaf"), "1");
        assert_eq!(event.text("List[0]"), "a");
        assert_eq!(event.text("List[1]"), "b");
        assert_eq!(event.text("RenderingInfo.Message"), "hello");
        assert!(event.extra.iter().all(|f| !f.name.contains("xmlns")));
        assert_eq!(extra(&event, "EventID"), None, "typed in the Other body");
    }

    #[test]
    fn other_sysmon_ids_and_event_data_fields_named_like_the_body() {
        let mut value = sysmon(
            16,
            json!({"Channel": "from-data", "Configuration": "c.xml", "ProcessId": 4}),
        );
        value["Event"]["EventData"]["#attributes"] = json!({"Name": "ConfigChange"});
        let event = parse_evtx_value(&value).unwrap();
        let EventData::Other(body) = &event.data else {
            panic!("wrong kind {:?}", event.kind())
        };
        assert_eq!(body.event_id, 16);
        assert_eq!(body.channel, "Microsoft-Windows-Sysmon/Operational");
        assert_eq!(extra(&event, "Channel"), Some("from-data"));
        assert_eq!(extra(&event, "Name"), Some("ConfigChange"));
        assert_eq!(event.text("Configuration"), "c.xml");
        assert_eq!(event.pid, 4);
    }

    #[test]
    fn bad_windows_events_are_errors() {
        let no_id = json!({"Event": {"System": {"Provider": {"#attributes": {"Name": "X"}}}}});
        assert!(matches!(
            parse_evtx_value(&no_id),
            Err(RecordError::MissingEvtxField {
                path: "Event.System.EventID"
            })
        ));
        let bad_id = json!({"Event": {"System": {"EventID": "one"}}});
        let err = parse_evtx_value(&bad_id).unwrap_err();
        assert!(
            matches!(&err, RecordError::InvalidEvtxField { path: "Event.System.EventID", found, .. } if found == "\"one\""),
            "{err:?}"
        );
        assert!(err.to_string().contains("Event.System.EventID"), "{err}");
        let no_system = json!({"Event": {"EventData": {}}});
        assert!(matches!(
            parse_evtx_value(&no_system),
            Err(RecordError::MissingEvtxField {
                path: "Event.System"
            })
        ));
        let not_object = json!({"Event": [1]});
        assert!(matches!(
            parse_evtx_value(&not_object),
            Err(RecordError::InvalidEvtxField { path: "Event", .. })
        ));
        assert!(matches!(
            parse_evtx_value(&json!("x")),
            Err(RecordError::NotAnObject { found: "a string" })
        ));
    }

    #[test]
    fn overlong_field_is_an_error() {
        let limits = ReadLimits {
            max_field_bytes: 40,
            ..ReadLimits::default()
        };
        let value = sysmon(1, json!({"Image": "x".repeat(40)}));
        assert!(evtx_event(&value, &limits).is_ok());
        let value = sysmon(1, json!({"Image": "x".repeat(41)}));
        let err = evtx_event(&value, &limits).unwrap_err();
        assert!(
            matches!(&err, RecordError::FieldTooLong { field, len: 41, limit: 40 } if field == "Image"),
            "{err:?}"
        );
    }

    #[test]
    fn registry_12_without_a_type_is_an_add() {
        assert_eq!(sysmon_event_kind(12, ""), Some(EventKind::RegistryAdd));
        assert_eq!(
            sysmon_event_kind(12, "deletevalue"),
            Some(EventKind::RegistryDelete)
        );
        assert_eq!(sysmon_event_kind(5, ""), None);
    }
}
