//! [`AgentEvent`]: everything the agent tells its embedder, in one typed stream, and its JSON form
//! (the versioned schema of `docs/agent.md`).

use std::sync::Arc;

use rulebox_runtime::RuleInfo;
use rulebox_runtime::sdk::{Detection as RuleOutput, Event, EventKind, Severity};
use rulebox_runtime::text::{Escaped, to_json_line};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::alert::Alert;
use crate::lifecycle::Lifecycle;

/// The version of the agent's output schema (`docs/agent.md`), written as `"format"` in every JSON
/// line. A change that removes or renames a field, or changes a field's meaning, raises it; new
/// fields and new kinds of events do not.
pub const OUTPUT_FORMAT: u32 = 1;

/// One thing the agent reports: a detection, an alert, or a step of its life.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A rule reported a detection on an event.
    Detection(Detection),
    /// Something an operator must know about: a rule or an update refused, content expired, a boot
    /// fallback, input refused or dropped.
    Alert(Alert),
    /// A step of the agent's life: boot, activation, install, revert, health window passed, stop.
    Lifecycle(Lifecycle),
    /// A step of the content fetcher: enrolment, a check-in with news, a delivery, a failure.
    Fetch(crate::fetch::FetchEvent),
}

impl AgentEvent {
    /// The event as one line of JSON (no trailing newline) in the schema of `docs/agent.md`, every
    /// string escaped so that the line can go to a terminal as is.
    pub fn to_json_line(&self) -> String {
        // Every field is a string, a number, a list or a map with string keys: encoding cannot fail.
        to_json_line(self).unwrap_or_default()
    }

    /// Whether this is a detection (the high-volume part of the stream).
    pub fn is_detection(&self) -> bool {
        matches!(self, AgentEvent::Detection(_))
    }
}

impl From<Alert> for AgentEvent {
    fn from(alert: Alert) -> Self {
        AgentEvent::Alert(alert)
    }
}

impl From<crate::fetch::FetchEvent> for AgentEvent {
    fn from(event: crate::fetch::FetchEvent) -> Self {
        AgentEvent::Fetch(event)
    }
}

impl From<Lifecycle> for AgentEvent {
    fn from(event: Lifecycle) -> Self {
        AgentEvent::Lifecycle(event)
    }
}

impl std::fmt::Display for AgentEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentEvent::Detection(d) => d.fmt(f),
            AgentEvent::Alert(a) => write!(f, "alert ({}): {a}", a.severity()),
            AgentEvent::Lifecycle(l) => l.fmt(f),
            AgentEvent::Fetch(e) => e.fmt(f),
        }
    }
}

impl Serialize for AgentEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Line<'a, T: Serialize> {
            format: u32,
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            severity: Option<&'static str>,
            #[serde(flatten)]
            body: &'a T,
        }
        match self {
            AgentEvent::Detection(d) => Line {
                format: OUTPUT_FORMAT,
                kind: "detection",
                severity: None,
                body: d,
            }
            .serialize(s),
            AgentEvent::Alert(a) => Line {
                format: OUTPUT_FORMAT,
                kind: "alert",
                severity: Some(a.severity().name()),
                body: a,
            }
            .serialize(s),
            AgentEvent::Lifecycle(l) => Line {
                format: OUTPUT_FORMAT,
                kind: "lifecycle",
                severity: None,
                body: l,
            }
            .serialize(s),
            AgentEvent::Fetch(e) => Line {
                format: OUTPUT_FORMAT,
                kind: "fetch",
                severity: None,
                body: e,
            }
            .serialize(s),
        }
    }
}

/// Where an event came from: the source's name and the line its record starts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventOrigin {
    /// The source: `"stdin"`, a file path, `"unix:<path>#<connection>"`, or the embedder's own name.
    pub source: Arc<str>,
    /// The 1-based line (or record number) in the source.
    pub line: u64,
}

impl EventOrigin {
    /// An origin.
    pub fn new(source: impl Into<Arc<str>>, line: u64) -> EventOrigin {
        EventOrigin {
            source: source.into(),
            line,
        }
    }
}

/// The event a detection or an alert is about: where it came from and its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRef {
    /// The source.
    #[serde(serialize_with = "text")]
    pub source: Arc<str>,
    /// The line (or record number) in the source.
    pub line: u64,
    /// The event kind.
    #[serde(serialize_with = "kind_name")]
    pub kind: EventKind,
    /// The host the event happened on.
    pub host: String,
    /// The process it is about.
    pub pid: u32,
    /// When it happened, milliseconds since the Unix epoch.
    pub timestamp: u64,
}

fn text<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text)
}

fn kind_name<S: Serializer>(kind: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

impl EventRef {
    /// The reference of `event`, from `origin`.
    pub fn of(event: &Event<'_>, origin: &EventOrigin) -> EventRef {
        EventRef {
            source: origin.source.clone(),
            line: origin.line,
            kind: event.kind(),
            host: event.host.to_string(),
            pid: event.pid,
            timestamp: event.timestamp,
        }
    }
}

impl std::fmt::Display for EventRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {} ({} on `{}`, pid {})",
            Escaped(&self.source),
            self.line,
            self.kind.name(),
            Escaped(&self.host),
            self.pid
        )
    }
}

/// A detection: the rule that made it, what it reported, and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The rule (id, version, module hash).
    pub rule: Arc<RuleInfo>,
    /// What the rule reported.
    pub output: RuleOutput<'static>,
    /// The event.
    pub event: EventRef,
}

impl Detection {
    /// The severity the rule gave the detection.
    pub fn severity(&self) -> Severity {
        self.output.severity
    }
}

impl Serialize for Detection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Fields<'a>(&'a [rulebox_runtime::sdk::Field<'static>]);
        impl Serialize for Fields<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for field in self.0 {
                    map.serialize_entry(field.name.as_ref(), field.value.as_ref())?;
                }
                map.end()
            }
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("rule_id", &self.rule.id)?;
        map.serialize_entry("rule_version", &self.rule.version)?;
        map.serialize_entry("content_hash", &self.rule.content_hash)?;
        map.serialize_entry("title", self.output.title.as_ref())?;
        map.serialize_entry("severity", self.output.severity.name())?;
        map.serialize_entry("fields", &Fields(&self.output.fields))?;
        map.serialize_entry("event", &self.event)?;
        map.end()
    }
}

impl std::fmt::Display for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "detection ({}) by {} {}: {} on {}",
            self.output.severity.name(),
            Escaped(&self.rule.id),
            Escaped(&self.rule.version),
            Escaped(&self.output.title),
            self.event
        )
    }
}
