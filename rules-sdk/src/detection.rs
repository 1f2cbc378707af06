//! What a rule reports: detections, their severity, and the builder a rule fills.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::event::Field;

/// How serious a detection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording, not worth a look on its own.
    Informational,
    /// Suspicious in context.
    Low,
    /// Likely malicious; someone should look.
    Medium,
    /// Malicious with high confidence.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// The lowercase name (`"high"`).
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name; Sigma's `informational` and `info` both work.
    pub fn from_name(name: &str) -> Option<Severity> {
        Some(match name {
            "informational" | "info" => Severity::Informational,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl core::fmt::Display for Severity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One detection: which rule, what it saw, how serious, and the fields that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection<'a> {
    /// The id of the rule that fired (the host checks it is the id the rule declared).
    #[serde(borrow)]
    pub rule_id: Cow<'a, str>,
    /// A one-line description of what was detected.
    #[serde(borrow)]
    pub title: Cow<'a, str>,
    /// How serious it is.
    pub severity: Severity,
    /// The event fields that matched, with their values.
    #[serde(borrow)]
    pub fields: Vec<Field<'a>>,
}

impl Detection<'_> {
    /// Adds a matched field; returns `self` for chaining.
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.fields.push(Field {
            name: Cow::Owned(name.into()),
            value: Cow::Owned(value.into()),
        });
        self
    }

    /// Overrides the severity the rule declared.
    pub fn severity(&mut self, severity: Severity) -> &mut Self {
        self.severity = severity;
        self
    }

    /// Turns every borrowed string into an owned one.
    pub fn into_owned(self) -> Detection<'static> {
        Detection {
            rule_id: Cow::Owned(self.rule_id.into_owned()),
            title: Cow::Owned(self.title.into_owned()),
            severity: self.severity,
            fields: self
                .fields
                .into_iter()
                .map(|f| Field {
                    name: Cow::Owned(f.name.into_owned()),
                    value: Cow::Owned(f.value.into_owned()),
                })
                .collect(),
        }
    }
}

/// The detections a rule reports for one event.
///
/// A rule calls [`detect`](Self::detect) once per finding; the rule id and default severity come from
/// the rule's metadata.
#[derive(Debug, Clone)]
pub struct Detections {
    rule_id: &'static str,
    severity: Severity,
    list: Vec<Detection<'static>>,
}

impl Detections {
    /// An empty list for the rule `rule_id` whose detections default to `severity`.
    pub fn new(rule_id: &'static str, severity: Severity) -> Detections {
        Detections {
            rule_id,
            severity,
            list: Vec::new(),
        }
    }

    /// Reports a detection titled `title`; add matched fields with [`Detection::field`].
    pub fn detect(&mut self, title: &str) -> &mut Detection<'static> {
        self.list.push(Detection {
            rule_id: Cow::Borrowed(self.rule_id),
            title: Cow::Owned(title.into()),
            severity: self.severity,
            fields: Vec::new(),
        });
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    /// The detections reported so far.
    pub fn as_slice(&self) -> &[Detection<'static>] {
        &self.list
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many detections were reported.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Forgets every detection, keeping the allocation.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Takes the detections out, leaving the list empty.
    pub fn take(&mut self) -> Vec<Detection<'static>> {
        core::mem::take(&mut self.list)
    }
}
