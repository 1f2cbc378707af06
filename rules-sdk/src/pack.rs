//! Rule packs: many rules in one module, evaluated by one sandbox on one copy of each event
//! (ABI 3, [`crate::abi`]).
//!
//! Two ways to write one:
//!
//! - **Several Rust rules in one module**: [`export_rules!`](crate::export_rules) takes the rule
//!   types; each keeps its own metadata, state, fuel budget and quarantine.
//! - **An engine whose rules are data** (a Sigma evaluator, say): a type implementing [`Pack`],
//!   exported with [`export_pack!`](crate::export_pack). The host compiles the engine module once
//!   and hands it its rule data at load ([`Pack::load`]); installing or updating a rule is a data
//!   load, never a compile.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::detection::{Detection, Detections, Severity};
use crate::event::Event;
use crate::rule::{Rule, RuleMeta, RuleMetadata};
use crate::wire::EventView;

/// A pack's identity, written as a constant (see [`export_rules!`](crate::export_rules)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackMeta {
    /// A stable, unique id (same rules as a rule id: at most 128 bytes of ASCII letters, digits and
    /// `- _ . :`). Rule ids and pack ids are separate names.
    pub id: &'static str,
    /// A human-readable name.
    pub name: &'static str,
    /// The pack's version.
    pub version: &'static str,
}

impl PackMeta {
    /// The identity [`export_rules!`](crate::export_rules) gives a pack by default: the crate's
    /// package name, description (or name, if it has none) and version.
    pub const fn from_package(
        name: &'static str,
        description: &'static str,
        version: &'static str,
    ) -> PackMeta {
        PackMeta {
            id: name,
            name: if description.is_empty() {
                name
            } else {
                description
            },
            version,
        }
    }
}

/// What a pack tells the host about itself once its rule data is loaded: the event-schema version,
/// the pack's identity, and one entry per rule, in rule-index order. Postcard-encoded inside a
/// [`LoadReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackMetadata<'a> {
    /// The event-schema version the pack was built against ([`crate::abi::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// See [`PackMeta::id`].
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// See [`PackMeta::name`].
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// See [`PackMeta::version`].
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// The rules; a rule's index in this list is the index `rule_begin` names. Each entry carries the
    /// same schema version as the pack.
    #[serde(borrow)]
    pub rules: Vec<RuleMetadata<'a>>,
}

impl PackMetadata<'_> {
    /// The metadata with every string owned.
    pub fn into_owned(self) -> PackMetadata<'static> {
        PackMetadata {
            schema_version: self.schema_version,
            id: Cow::Owned(self.id.into_owned()),
            name: Cow::Owned(self.name.into_owned()),
            version: Cow::Owned(self.version.into_owned()),
            rules: self
                .rules
                .into_iter()
                .map(RuleMetadata::into_owned)
                .collect(),
        }
    }
}

/// What `rulebox_load` returns (postcard): the pack's metadata, or why it refused its rule data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadReply<'a> {
    /// The data is loaded; these are the pack's rules.
    #[serde(borrow)]
    Loaded(PackMetadata<'a>),
    /// The data was refused; the text says why (the host shows it escaped, capped at 1 KiB).
    #[serde(borrow)]
    Refused(Cow<'a, str>),
}

/// Why a pack refused its rule data ([`Pack::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError(pub String);

impl PackError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> PackError {
        PackError(message.into())
    }
}

impl core::fmt::Display for PackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of rules evaluated in one sandbox: the author's side of ABI 3.
///
/// The host loads the module once, calls [`load`](Self::load) with the pack's rule data (empty for
/// a pack whose rules are compiled in), and reads [`metadata`](Self::metadata). Then, for every
/// event, the SDK asks [`candidates`](Self::candidates) which rules may match (by default every rule
/// subscribed to the event's kind) and calls [`on_event`](Self::on_event) for each, in increasing
/// index order, each under its own fuel budget and deadline, with a fresh [`EventView`] of its own.
/// A fault inside `on_event` (a trap, a panic, fuel, deadline, memory) is charged to that rule
/// alone; a fault anywhere else (`candidates`, `load`) is the pack's.
///
/// After any fault the host replaces the instance with a fresh one (it reloads the same data), so
/// every rule's state starts over then: keep state that must survive in the host's view of events,
/// not in the pack.
pub trait Pack: Sized {
    /// Builds the pack from its rule data (`data` is only valid during the call: copy what you keep).
    fn load(data: &[u8]) -> Result<Self, PackError>;

    /// Builds the pack from rule data the instance keeps for the pack's whole life: in the
    /// sandbox, the buffer the host wrote the data into is handed to the pack for good (the host
    /// asks for a new input buffer before its first batch, `docs/abi.md`), so a pack may use its
    /// tables where they are instead of copying them, and an instance holds its data once. The
    /// default calls [`load`](Self::load), which copies what it keeps.
    fn load_kept(data: &'static [u8]) -> Result<Self, PackError> {
        Self::load(data)
    }

    /// The pack's identity and its rules, in index order. Called once, right after `load`.
    fn metadata(&self) -> PackMetadata<'_>;

    /// Evaluates rule `rule` (an index into the metadata's rules) on `event`, reporting into `out`
    /// (empty, with the rule's default severity).
    fn on_event(&mut self, rule: usize, event: &EventView<'_>, out: &mut Detections);

    /// Whether the pack has a prefilter: when `true`, [`candidates`](Self::candidates) is asked,
    /// for every event, which rules to run; when `false` (the default), every rule subscribed to
    /// the event's kind runs.
    const PREFILTER: bool = false;

    /// The rules worth running on `event`, in increasing index order, into `out` (empty); asked
    /// only when [`PREFILTER`](Self::PREFILTER) is `true`, and not on a batch in which the host's
    /// shared prefilter index already names each event's candidates ([`crate::batch`]: the SDK
    /// then runs those that are subscribed). `subscribed` lists, in increasing
    /// order, every rule subscribed to the event's kind; the default runs them all. A prefilter may
    /// return fewer: it must never leave out a rule that could match, and it runs on the pack's own
    /// budget, not any rule's.
    fn candidates(&mut self, event: &EventView<'_>, subscribed: &[u32], out: &mut Vec<u32>) {
        let _ = event;
        out.extend_from_slice(subscribed);
    }
}

/// Any [`Rule`], behind a trait object, for [`RuleList`].
pub trait DynRule {
    /// The rule's metadata ([`Rule::META`]).
    fn meta(&self) -> RuleMeta;
    /// [`Rule::on_event`].
    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections);
}

impl<R: Rule> DynRule for R {
    fn meta(&self) -> RuleMeta {
        R::META
    }

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        Rule::on_event(self, event, out);
    }
}

/// A fixed list of Rust rules and the pack's identity: what [`export_rules!`](crate::export_rules)
/// generates an implementation of.
pub trait StaticRules {
    /// The pack's identity.
    const PACK: PackMeta;
    /// A fresh instance of every rule, in index order.
    fn rules() -> Vec<Box<dyn DynRule>>;
}

/// The [`Pack`] of a fixed list of Rust rules ([`export_rules!`](crate::export_rules)): each rule
/// is its own [`Rule`], with its own metadata and state. It takes no rule data.
pub struct RuleList<S> {
    rules: Vec<Box<dyn DynRule>>,
    metas: Vec<RuleMeta>,
    _source: PhantomData<S>,
}

impl<S: StaticRules> Pack for RuleList<S> {
    fn load(data: &[u8]) -> Result<Self, PackError> {
        if !data.is_empty() {
            return Err(PackError::new(
                "this pack's rules are compiled in; it takes no rule data",
            ));
        }
        let rules = S::rules();
        let metas = rules.iter().map(|r| r.meta()).collect();
        Ok(RuleList {
            rules,
            metas,
            _source: PhantomData,
        })
    }

    fn metadata(&self) -> PackMetadata<'_> {
        PackMetadata {
            schema_version: crate::abi::SCHEMA_VERSION,
            id: Cow::Borrowed(S::PACK.id),
            name: Cow::Borrowed(S::PACK.name),
            version: Cow::Borrowed(S::PACK.version),
            rules: self.metas.iter().map(RuleMetadata::from_meta).collect(),
        }
    }

    fn on_event(&mut self, rule: usize, event: &EventView<'_>, out: &mut Detections) {
        if let Some(r) = self.rules.get_mut(rule) {
            r.on_event(event, out);
        }
    }
}

/// Runs a pack natively on one event, the way the host runs its WebAssembly build (the rules its
/// [`candidates`](Pack::candidates) names among those subscribed to the event's kind, in index
/// order, each on a fresh view): for unit tests, benchmarks and differential tests. Returns each
/// rule's detections with the rule's index.
///
/// # Panics
///
/// If the event cannot be encoded (more than 4 GiB of text or 65,535 extra fields).
pub fn run_native_pack<P: Pack>(
    pack: &mut P,
    event: &Event<'_>,
) -> Vec<(usize, Detection<'static>)> {
    let bytes = event.to_bytes().expect("the event encodes");
    let view = EventView::new(&bytes).expect("a fresh encoding reads back");
    let (subscribed, severities): (Vec<u32>, Vec<(Cow<'static, str>, Severity)>) = {
        let meta = pack.metadata();
        let subscribed = (0..meta.rules.len())
            .filter(|&i| meta.rules[i].subscriptions.contains(view.kind()))
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        let severities = meta
            .rules
            .iter()
            .map(|r| (Cow::Owned(String::from(&*r.id)), r.severity))
            .collect();
        (subscribed, severities)
    };
    let mut candidates = Vec::new();
    if P::PREFILTER {
        pack.candidates(&view, &subscribed, &mut candidates);
    } else {
        candidates.clone_from(&subscribed);
    }
    let mut found = Vec::new();
    let mut out = Detections::new("", Severity::Low);
    for &rule in &candidates {
        let index = rule as usize;
        let Some((id, severity)) = severities.get(index) else {
            continue;
        };
        if !subscribed.contains(&rule) {
            continue;
        }
        let own = EventView::new(&bytes).expect("a fresh encoding reads back");
        out.reset(*severity);
        pack.on_event(index, &own, &mut out);
        for mut d in out.to_vec() {
            d.rule_id = id.clone();
            found.push((index, d));
        }
    }
    found
}

/// The subscriptions of `rules`, by kind: for each event kind (by ABI number), the indices of the
/// rules subscribed to it, in increasing order.
#[cfg_attr(
    not(any(target_arch = "wasm32", test)),
    allow(dead_code, reason = "used by the wasm32 pack glue")
)]
pub(crate) fn by_kind(rules: &[RuleMetadata<'_>]) -> Vec<Vec<u32>> {
    let mut lists = alloc::vec![Vec::new(); 32];
    for (i, rule) in rules.iter().enumerate() {
        let Ok(index) = u32::try_from(i) else { break };
        for (bit, list) in lists.iter_mut().enumerate() {
            if rule.subscriptions.0 & (1 << bit) != 0 {
                list.push(index);
            }
        }
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventData, ProcessStart};
    use crate::kind::EventKind;

    #[derive(Default)]
    struct Shell;
    impl Rule for Shell {
        const META: RuleMeta = RuleMeta {
            id: "shell",
            name: "shell",
            version: "1",
            severity: Severity::High,
            events: &[EventKind::ProcessStart],
        };
        fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
            if let Some(p) = event.process_start()
                && p.image().ends_with("cmd.exe")
            {
                out.detect("shell").field("Image", p.image());
            }
        }
    }

    #[derive(Default)]
    struct Dns;
    impl Rule for Dns {
        const META: RuleMeta = RuleMeta {
            id: "dns",
            name: "dns",
            version: "1",
            severity: Severity::Low,
            events: &[EventKind::DnsQuery],
        };
        fn on_event(&mut self, _event: &EventView<'_>, out: &mut Detections) {
            out.detect("any query");
        }
    }

    struct Two;
    impl StaticRules for Two {
        const PACK: PackMeta = PackMeta::from_package("two", "", "0.1.0");
        fn rules() -> Vec<Box<dyn DynRule>> {
            alloc::vec![Box::new(Shell), Box::new(Dns)]
        }
    }

    #[test]
    fn a_rule_list_runs_each_subscribed_rule_with_its_own_severity() {
        let mut pack = RuleList::<Two>::load(&[]).unwrap();
        let meta = pack.metadata();
        assert_eq!((meta.id.as_ref(), meta.name.as_ref()), ("two", "two"));
        assert_eq!(meta.rules.len(), 2);
        assert_eq!(meta.rules[1].id, "dns");
        let p = ProcessStart {
            image: "C:\\cmd.exe".into(),
            ..Default::default()
        };
        let found = run_native_pack(&mut pack, &Event::new(EventData::ProcessStart(p)));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 0);
        assert_eq!(found[0].1.rule_id, "shell");
        assert_eq!(found[0].1.severity, Severity::High);
        let found = run_native_pack(
            &mut pack,
            &Event::new(EventData::empty(EventKind::DnsQuery)),
        );
        assert_eq!((found[0].0, found[0].1.severity), (1, Severity::Low));
        assert!(RuleList::<Two>::load(b"x").is_err(), "no rule data");
    }

    #[test]
    fn subscriptions_by_kind() {
        let pack = RuleList::<Two>::load(&[]).unwrap();
        let lists = by_kind(&pack.metadata().rules);
        assert_eq!(lists[EventKind::ProcessStart as usize], [0]);
        assert_eq!(lists[EventKind::DnsQuery as usize], [1]);
        assert!(lists[EventKind::FileCreate as usize].is_empty());
    }
}
