//! The events the validator runs: generated from the schema, boundary cases at the runtime's caps,
//! and the recorded corpus.
//!
//! Generation is driven by the schema itself: for each kind, [`EventData::empty`] gives the body,
//! [`EventData::field_names`] its fields and [`EventData::field`] each field's type (text, number or
//! flag), and values are set through [`EventData::set_field`], exactly as the readers set them. A
//! number that does not parse goes to [`Event::extra`] under its own name, as the readers do. A field
//! added to the schema is therefore generated without any change here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rulebox_runtime::RuntimeConfig;
use rulebox_sdk::{Event, EventData, EventKind, Field, Value};

/// An event with a label saying where it came from, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledEvent {
    /// `generated process_start #3`, `boundary process_start: huge CommandLine`, ...
    pub label: String,
    /// The event.
    pub event: Event<'static>,
}

/// Fragments that make generated text reach deep into typical detection logic: executables,
/// parents, encoded-command switches, access masks, registry run keys, pipe names, domains.
const FRAGMENTS: &[&str] = &[
    "C:\\Windows\\System32\\cmd.exe",
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
    "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
    "\\EXCEL.EXE",
    "\\OUTLOOK.EXE",
    "\\lsass.exe",
    "\\rundll32.exe",
    "\\wscript.exe",
    "\\cscript.exe",
    "\\mshta.exe",
    "\\regsvr32.exe",
    "pwsh",
    " -enc ",
    " -EncodedCommand ",
    " -e ",
    " /c ",
    "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA",
    "0x1010",
    "0x1fffff",
    "0x1410",
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\",
    "HKU\\S-1-5-21\\Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce\\",
    "\\PSEXESVC",
    "\\msagent_",
    "\\postex_",
    "\\mojo.",
    ".locked",
    ".encrypted",
    "C:\\Users\\alice\\Documents\\report.docx",
    "q8z3x7k2v9w4j6m1t5p0r8n2b7c4.example.com",
    "www.microsoft.com",
    "10.0.0.5",
    "NT AUTHORITY\\SYSTEM",
    "\\",
    "\"",
    " ",
    "",
];

/// Odd text: bidi overrides, combining marks, zero-width characters, NUL and other controls, the
/// largest code point, case-folding that changes length, full-width look-alikes, a BOM.
pub const ODD_UNICODE: &[&str] = &[
    "\u{202e}exe.llehsrewop\\",
    "e\u{301}\u{301}\u{301}\u{301}\u{301}.exe",
    "cmd\u{200b}.exe\u{200d}\u{feff}",
    "a\0b\0\u{1}\u{7f}\r\n\t",
    "\u{10ffff}\u{fffd}\u{fffe}",
    "İSTANBUL\\ǅ\\ß\\ﬃ.EXE",
    "C:\u{ff3c}Windows\u{ff3c}cmd\u{ff0e}exe",
    "🦀👩‍👩‍👧‍👦\u{e0067}\u{e007f}",
    "ё\\ЁЖ\\粵語\\العربية",
    "\\\\?\\C:\\..\\..\\",
];

/// A number field's value as text: usually in range, sometimes not a number at all.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..70_000).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<u32>().prop_map(|n| format!("0x{n:x}")),
        1 => prop::sample::select(vec!["", "-", "-1", "0x", "NaN", "١٢٣", "99999999999999999999"])
            .prop_map(str::to_owned),
    ]
}

/// A flag's value as text.
fn flag_text() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["true", "false", "True", "1", "0", "", "maybe"])
        .prop_map(str::to_owned)
}

/// Text: fragments glued together, arbitrary Unicode, or odd Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(prop::sample::select(FRAGMENTS), 0..5).prop_map(|p| p.concat()),
        2 => "\\PC{0,24}",
        1 => prop::sample::select(ODD_UNICODE).prop_map(str::to_owned),
        1 => Just(String::new()),
    ]
}

/// One generated event of `kind`: every field either left missing (its default) or set from text,
/// plus a few untyped fields, a host, a pid and a timestamp.
fn event(kind: EventKind) -> impl Strategy<Value = Event<'static>> {
    let names = EventData::empty(kind).field_names();
    let values = names
        .iter()
        .map(|name| {
            let strategy = match EventData::empty(kind).field(name) {
                Some(Value::Int(_)) => number_text().boxed(),
                Some(Value::Bool(_)) => flag_text().boxed(),
                _ => text().boxed(),
            };
            // About one field in six is missing.
            prop::option::weighted(0.85, strategy)
        })
        .collect::<Vec<_>>();
    let extra = prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(names.to_vec()).prop_map(str::to_owned),
                "[A-Za-z]{1,12}",
            ],
            text(),
        ),
        0..4,
    );
    (values, extra, text(), any::<u32>(), any::<u64>()).prop_map(
        move |(values, extra, host, pid, timestamp)| {
            let mut data = EventData::empty(kind);
            let mut event_extra = Vec::new();
            for (name, value) in names.iter().zip(values) {
                let Some(value) = value else { continue };
                if !data.set_field(name, Cow::Owned(value.clone())) {
                    // As the readers do: a value that does not parse is kept as text.
                    event_extra.push(Field {
                        name: Cow::Borrowed(*name),
                        value: Cow::Owned(value),
                    });
                }
            }
            event_extra.extend(extra.into_iter().map(|(name, value)| Field {
                name: Cow::Owned(name),
                value: Cow::Owned(value),
            }));
            Event {
                host: Cow::Owned(host),
                timestamp,
                pid,
                data,
                extra: event_extra,
            }
        },
    )
}

/// `count` generated events of `kind`, from a generator seeded with `seed` and the kind (so the
/// events of one kind do not change when another kind is added).
pub fn generated(kind: EventKind, count: usize, seed: u64) -> Vec<LabeledEvent> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = kind as u8;
    bytes[9] = 0xA5;
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = event(kind);
    (0..count)
        .filter_map(|i| {
            let tree = strategy.new_tree(&mut runner).ok()?;
            Some(LabeledEvent {
                label: format!("generated {} #{i}", kind.name()),
                event: tree.current(),
            })
        })
        .collect()
}

/// The encoded size of `event` (postcard, as the host hands it to rules).
fn encoded_len(event: &Event<'_>) -> usize {
    event.to_bytes().map_or(usize::MAX, |b| b.len())
}

/// Text of exactly `len` bytes that looks like a command line (so scanning rules do real work).
pub(crate) fn filler(len: usize) -> String {
    const PATTERN: &str =
        "powershell.exe -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA C:\\Windows\\Temp\\a.exe ";
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let take = (len - s.len()).min(PATTERN.len());
        s.push_str(&PATTERN[..take]);
    }
    s
}

/// Sets the text field `name` of `event` to the longest filler that keeps the encoded event within
/// `target` bytes. Returns `false` if not even an empty value fits.
fn fill_to(event: &mut Event<'static>, name: &str, target: usize) -> bool {
    fill_with(event, target, |event, text| {
        event.data.set_field(name, Cow::Owned(text));
    })
}

/// Calls `set` with the longest filler that keeps the encoded event within `target` bytes.
/// Returns `false` if not even an empty value fits.
fn fill_with(
    event: &mut Event<'static>,
    target: usize,
    set: impl Fn(&mut Event<'static>, String),
) -> bool {
    let mut len = 0usize;
    for _ in 0..8 {
        set(event, filler(len));
        let size = encoded_len(event);
        if size == target {
            return true;
        }
        if size > target {
            let over = size - target;
            if len == 0 {
                return false;
            }
            len = len.saturating_sub(over.max(1));
        } else {
            len += target - size;
        }
    }
    // The length prefix may have changed width: step down until it fits.
    while len > 0 {
        set(event, filler(len));
        if encoded_len(event) <= target {
            return true;
        }
        len -= 1;
    }
    set(event, String::new());
    encoded_len(event) <= target
}

/// Events of `kind` whose text fields `names` are at `config`'s event cap: each alone, then all
/// at once (evenly). A name the kind has a typed text slot for fills that slot; a name it has no
/// slot for is an untyped field, as readers keep fields without a slot (`ScriptBlockText` of a
/// PowerShell event, any field of an event of kind `other`); a typed number is left out. For
/// content whose fields are known (a compiled Sigma program names them): [`boundary`] only fills
/// the typed slots.
pub fn at_cap(kind: EventKind, names: &[&str], config: &RuntimeConfig) -> Vec<LabeledEvent> {
    at_cap_reaching(kind, names, &[], config)
}

/// [`at_cap`], with each `(field, text)` of `needs` at the start of that field's value in every
/// event (the field holding only the text where the event does not fill it): the literals a
/// pack's prefilter needs to see before it runs the rule, so that the events reach the rule
/// whatever the prefilter does with a field at the cap. Labels end in "reaching the rule".
pub fn at_cap_reaching(
    kind: EventKind,
    names: &[&str],
    needs: &[(&str, &str)],
    config: &RuntimeConfig,
) -> Vec<LabeledEvent> {
    let max = config.max_event_bytes;
    let mut empty = Event::new(EventData::empty(kind));
    let mut names: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| matches!(empty.data.field(n), None | Some(Value::Str(_))))
        .collect();
    names.sort_unstable();
    names.dedup();
    // The needed texts of each text field, one after the other; a typed number (an event id) is
    // set to its text, which the slot parses.
    let mut prefix: BTreeMap<&str, String> = BTreeMap::new();
    for (name, text) in needs {
        if matches!(empty.data.field(name), None | Some(Value::Str(_))) {
            let p = prefix.entry(name).or_default();
            p.push_str(text);
            p.push(' ');
        } else {
            empty.data.set_field(name, Cow::Owned((*text).to_owned()));
        }
    }
    // Sets field `name` to `text` (after its needed texts), typed where the kind has the slot.
    let set = |event: &mut Event<'static>, name: &str, text: String| {
        let text = match prefix.get(name) {
            Some(p) => format!("{p}{text}"),
            None => text,
        };
        if !event.data.set_field(name, Cow::Owned(text.clone())) {
            match event.extra.iter_mut().find(|f| f.name == name) {
                Some(f) => f.value = Cow::Owned(text),
                None => event.extra.push(Field {
                    name: Cow::Owned(name.to_owned()),
                    value: Cow::Owned(text),
                }),
            }
        }
    };
    for name in prefix.keys() {
        set(&mut empty, name, String::new());
    }
    if !needs.is_empty() && encoded_len(&empty) > max {
        return Vec::new();
    }
    let reaching = if needs.is_empty() {
        ""
    } else {
        ", reaching the rule"
    };
    let label = |what: &str| format!("at the cap {}: {what}{reaching}", kind.name());
    let mut out = Vec::new();
    for name in &names {
        let mut event = empty.clone();
        if fill_with(&mut event, max, |e, t| set(e, name, t)) {
            out.push(LabeledEvent {
                label: label(&format!("{name} at the {max}-byte event cap")),
                event,
            });
        }
    }
    if let [rest @ .., last] = names.as_slice()
        && !rest.is_empty()
    {
        let mut event = empty.clone();
        let share = max.saturating_sub(64 + 16 * names.len()) / names.len();
        for name in rest {
            set(&mut event, name, filler(share));
        }
        if fill_with(&mut event, max, |e, t| set(e, last, t)) {
            out.push(LabeledEvent {
                label: label("every named field filled to the event cap"),
                event,
            });
        }
    }
    out
}

/// The boundary events of `kind` under `config`'s caps:
///
/// - every field missing (the empty body, no host);
/// - each text field alone, filled up to exactly `max_event_bytes` encoded (a huge command line,
///   path, registry value, ...);
/// - every text field filled at once, evenly, up to the cap;
/// - `max_event_fields` untyped fields (named like the body's own fields first, so they shadow
///   numbers), within the size cap;
/// - odd Unicode in every text field (one event per odd string, rotated over the fields);
/// - numbers and header fields at their maximum, flags set;
/// - numbers that do not parse (kept as text in `extra`, as the readers keep them).
pub fn boundary(kind: EventKind, config: &RuntimeConfig) -> Vec<LabeledEvent> {
    let max = config.max_event_bytes;
    let label = |what: &str| format!("boundary {}: {what}", kind.name());
    let empty = Event::new(EventData::empty(kind));
    let names = empty.data.field_names();
    let is_text = |name: &str| matches!(empty.data.field(name), Some(Value::Str(_)));
    let text_fields: Vec<&str> = names.iter().copied().filter(|n| is_text(n)).collect();
    let number_fields: Vec<&str> = names.iter().copied().filter(|n| !is_text(n)).collect();
    let mut out = vec![LabeledEvent {
        label: label("every field missing"),
        event: empty.clone(),
    }];

    for name in &text_fields {
        let mut event = empty.clone();
        if fill_to(&mut event, name, max) {
            out.push(LabeledEvent {
                label: label(&format!("{name} at the {max}-byte event cap")),
                event,
            });
        }
    }

    if !text_fields.is_empty() {
        let mut event = empty.clone();
        let share = max.saturating_sub(64) / text_fields.len();
        for name in &text_fields {
            event.data.set_field(name, Cow::Owned(filler(share)));
        }
        let last = text_fields[text_fields.len() - 1];
        event.data.set_field(last, Cow::Borrowed(""));
        if fill_to(&mut event, last, max) {
            out.push(LabeledEvent {
                label: label("every text field filled to the event cap"),
                event,
            });
        }
    }

    {
        let mut event = empty.clone();
        let count = config.max_event_fields;
        let per_field = max.saturating_sub(64) / count.max(1) / 2;
        event.extra = (0..count)
            .map(|i| Field {
                name: Cow::Owned(
                    names
                        .get(i)
                        .map_or_else(|| format!("Extra{i}"), |n| (*n).to_owned()),
                ),
                value: Cow::Owned(filler(per_field.min(64))),
            })
            .collect();
        if encoded_len(&event) <= max {
            out.push(LabeledEvent {
                label: label(&format!("{count} untyped fields (the field cap)")),
                event,
            });
        }
    }

    for (i, _) in ODD_UNICODE.iter().enumerate() {
        let mut event = empty.clone();
        for (j, name) in text_fields.iter().enumerate() {
            let odd = ODD_UNICODE[(i + j) % ODD_UNICODE.len()];
            event.data.set_field(name, Cow::Borrowed(odd));
        }
        event.host = Cow::Borrowed(ODD_UNICODE[i]);
        out.push(LabeledEvent {
            label: label(&format!("odd Unicode #{i}")),
            event,
        });
    }

    {
        let mut event = empty.clone();
        for name in &number_fields {
            for value in ["18446744073709551615", "4294967295", "65535", "true"] {
                if event.data.set_field(name, Cow::Borrowed(value)) {
                    break;
                }
            }
        }
        event.pid = u32::MAX;
        event.timestamp = u64::MAX;
        out.push(LabeledEvent {
            label: label("numbers at their maximum"),
            event,
        });
    }

    if !number_fields.is_empty() {
        let mut event = empty.clone();
        event.extra = number_fields
            .iter()
            .map(|name| Field {
                name: Cow::Borrowed(*name),
                value: Cow::Borrowed("-"),
            })
            .collect();
        out.push(LabeledEvent {
            label: label("numbers that do not parse"),
            event,
        });
    }
    out
}

/// Every event of `dir/cases/*/event.json` (the Sigma corpus layout), labelled `corpus <case> #n`,
/// in case-name order; and the records that did not read, named.
pub fn corpus(dir: &Path) -> std::io::Result<(Vec<LabeledEvent>, Vec<String>)> {
    let cases = dir.join("cases");
    let mut files: Vec<_> = std::fs::read_dir(&cases)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("event.json").is_file())
        .collect();
    files.sort();
    let mut events = Vec::new();
    let mut unreadable = Vec::new();
    for case in files {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match rulebox_runtime::events::open_events_file(case.join("event.json")) {
            Ok(reader) => {
                for (i, record) in reader.enumerate() {
                    match record {
                        Ok(read) => events.push(LabeledEvent {
                            label: format!("corpus {name} #{i}"),
                            event: read.event,
                        }),
                        Err(e) => unreadable.push(format!("corpus {name}: {e}")),
                    }
                }
            }
            Err(e) => unreadable.push(format!("corpus {name}: {e}")),
        }
    }
    Ok((events, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_covers_every_field_of_every_kind() {
        for kind in EventKind::ALL {
            let a = generated(*kind, 40, 7);
            let b = generated(*kind, 40, 7);
            assert_eq!(a, b, "{kind}: same seed, same events");
            assert_eq!(a.len(), 40);
            assert!(a.iter().all(|e| e.event.kind() == *kind));
            let names = EventData::empty(*kind).field_names();
            for name in names {
                let set = a.iter().any(|e| match e.event.data.field(name) {
                    Some(Value::Str(s)) => !s.is_empty(),
                    Some(Value::Int(n)) => n != 0,
                    Some(Value::Bool(b)) => b,
                    None => false,
                } || e.event.extra.iter().any(|f| f.name == *name));
                assert!(set, "{kind}: field {name} is never set in 40 events");
            }
            assert_ne!(a, generated(*kind, 40, 8), "{kind}: the seed matters");
        }
    }

    #[test]
    fn boundary_events_sit_exactly_at_the_caps() {
        let config = RuntimeConfig::default();
        for kind in EventKind::ALL {
            let events = boundary(*kind, &config);
            let at_cap = events
                .iter()
                .filter(|e| encoded_len(&e.event) == config.max_event_bytes)
                .count();
            let text_fields = EventData::empty(*kind)
                .field_names()
                .iter()
                .filter(|n| matches!(EventData::empty(*kind).field(n), Some(Value::Str(_))))
                .count();
            assert_eq!(
                at_cap,
                text_fields + 1,
                "{kind}: one per text field, plus all"
            );
            assert!(
                events
                    .iter()
                    .all(|e| encoded_len(&e.event) <= config.max_event_bytes)
            );
            assert!(
                events
                    .iter()
                    .any(|e| e.event.extra.len() == config.max_event_fields),
                "{kind}: an event at the field cap"
            );
        }
    }
}
