//! The [`Rule`] trait a rule author implements, and the metadata a rule declares.

use alloc::borrow::Cow;
use serde::{Deserialize, Serialize};

use crate::detection::{Detections, Severity};
use crate::event::Event;
use crate::kind::{EventKind, EventKinds};
use crate::wire::EventView;

/// What a rule says about itself, written as a constant in the rule's source.
#[derive(Debug, Clone, Copy)]
pub struct RuleMeta {
    /// A stable, unique id (`"office-spawns-shell"`, or a UUID). At most 128 bytes.
    pub id: &'static str,
    /// A human-readable name.
    pub name: &'static str,
    /// The rule's version; a new release of a rule carries a new version.
    pub version: &'static str,
    /// The default severity of its detections.
    pub severity: Severity,
    /// The kinds of event the rule wants; the host calls it for these kinds only.
    pub events: &'static [EventKind],
}

/// A detection rule: an ordinary Rust type, compiled to WebAssembly for the host and natively for tests.
///
/// The host creates one instance per loaded rule ([`Default`]) and calls [`on_event`](Self::on_event)
/// for every event of a kind listed in [`RuleMeta::events`], one at a time, in order. The instance lives
/// as long as the rule stays loaded, so `&mut self` can keep state across events (bound it: the host
/// caps the rule's memory, and a rule over its cap is quarantined).
pub trait Rule: Default {
    /// The rule's metadata.
    const META: RuleMeta;

    /// Looks at one event and reports zero or more detections into `out`.
    ///
    /// `event` reads the host's encoding in place: take the typed body with
    /// [`EventView::process_start`] (and its siblings) or read fields by name with
    /// [`EventView::field`]; only the fields read are decoded.
    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections);
}

/// The metadata as it crosses the ABI (postcard-encoded), see [`crate::abi`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMetadata<'a> {
    /// The event-schema version the rule was built against ([`crate::abi::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// See [`RuleMeta::id`].
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// See [`RuleMeta::name`].
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// See [`RuleMeta::version`].
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// See [`RuleMeta::severity`].
    pub severity: Severity,
    /// See [`RuleMeta::events`].
    pub subscriptions: EventKinds,
}

impl RuleMetadata<'static> {
    /// The wire form of `meta`.
    pub fn from_meta(meta: &RuleMeta) -> RuleMetadata<'static> {
        RuleMetadata {
            schema_version: crate::abi::SCHEMA_VERSION,
            id: Cow::Borrowed(meta.id),
            name: Cow::Borrowed(meta.name),
            version: Cow::Borrowed(meta.version),
            severity: meta.severity,
            subscriptions: EventKinds::of(meta.events),
        }
    }
}

impl RuleMetadata<'_> {
    /// Turns every borrowed string into an owned one.
    pub fn into_owned(self) -> RuleMetadata<'static> {
        RuleMetadata {
            schema_version: self.schema_version,
            id: Cow::Owned(self.id.into_owned()),
            name: Cow::Owned(self.name.into_owned()),
            version: Cow::Owned(self.version.into_owned()),
            severity: self.severity,
            subscriptions: self.subscriptions,
        }
    }
}

/// Runs a rule natively on one event, the way the host runs its WebAssembly build: for unit tests,
/// benchmarks and differential tests. Returns the detections reported.
///
/// The event goes through the same encoding as on the host, so the rule reads exactly the bytes its
/// WebAssembly build would.
///
/// # Panics
///
/// If the event cannot be encoded (more than 4 GiB of text or 65,535 extra fields).
pub fn run_native<R: Rule>(
    rule: &mut R,
    event: &Event<'_>,
) -> alloc::vec::Vec<crate::Detection<'static>> {
    let bytes = event.to_bytes().expect("the event encodes");
    let view = EventView::new(&bytes).expect("a fresh encoding reads back");
    let mut out = Detections::new(R::META.id, R::META.severity);
    run_native_view(rule, &view, &mut out);
    out.take()
}

/// Runs a rule natively on an already-encoded event, into `out` (which it clears first), as the host
/// would: only if the rule subscribes to the event's kind. For benchmarks that, like the host, encode
/// each event once.
pub fn run_native_view<R: Rule>(rule: &mut R, event: &EventView<'_>, out: &mut Detections) {
    out.clear();
    if EventKinds::of(R::META.events).contains(event.kind()) {
        rule.on_event(event, out);
    }
}
