//! **A test engine whose rules are data.**
//!
//! The module is compiled once; its rules come from the rule data the host hands it at load
//! (`rulebox_load`), as a data-driven engine's do: installing or updating a rule is a data load.
//! The data is text, one rule a line ([`ManyRules::parse`]):
//!
//! ```text
//! pack many-rules 1.0.0     the pack's id and version (optional; these are the defaults)
//! prefilter                 run only the rules an event can match (see below)
//! small 17                  rule `small-17`: fires on a process start whose command line holds
//!                           `#17#` (or `#all#`), in any case
//! small 17 2.0.0            the same rule at version 2.0.0
//! faulty panics             the rule of `example-rules/faulty/panics`, as it is
//! loads-forever             the data never finishes loading: the pack's load never returns
//! ```
//!
//! The faulty rules are `deep-recursion`, `endless-loop`, `field-count`, `memory-bomb`,
//! `null-deref` and `panics`, each the rule of its crate in `example-rules/faulty/` with its own id
//! and metadata. With `prefilter`, [`Pack::candidates`] reads the `#n#` markers of the event's
//! command line once and names only the small rules they name (all of them for `#all#`) and every
//! faulty rule: the prefilter is sound (a small rule fires only on its marker), so detections are
//! those without it, and a pack of thousands of rules runs only the few an event can match.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use rulebox_sdk::prelude::*;
use rulebox_sdk::{DynRule, EventKinds, Pack, PackError, PackMetadata, RuleMetadata};

/// The marker every small rule fires on.
pub const ALL: &str = "#all#";

enum Kind {
    /// Fires on `#n#` (the marker) or `#all#`.
    Small { marker: String },
    /// A rule of the faulty set.
    Faulty(Box<dyn DynRule>),
}

struct Spec {
    id: String,
    name: String,
    version: String,
    severity: Severity,
    kinds: EventKinds,
    kind: Kind,
}

/// The engine: the rules its data describes.
pub struct ManyRules {
    id: String,
    version: String,
    prefilter: bool,
    rules: Vec<Spec>,
    /// Small rule `n` → its index, for the prefilter (`u32::MAX`: no such rule).
    by_marker: Vec<u32>,
    /// Indices of the rules the prefilter always runs (the faulty ones).
    always: Vec<u32>,
}

fn faulty(name: &str) -> Option<Box<dyn DynRule>> {
    Some(match name {
        "deep-recursion" => Box::new(faulty_deep_recursion::DeepRecursion),
        "endless-loop" => Box::new(faulty_endless_loop::EndlessLoop),
        "field-count" => Box::new(faulty_field_count::FieldCountRule),
        "memory-bomb" => Box::new(faulty_memory_bomb::MemoryBomb::default()),
        "null-deref" => Box::new(faulty_null_deref::NullDeref),
        "panics" => Box::new(faulty_panics::Panics),
        _ => return None,
    })
}

impl ManyRules {
    /// Reads the rule data (see the crate docs).
    pub fn parse(data: &[u8]) -> Result<ManyRules, PackError> {
        let text =
            core::str::from_utf8(data).map_err(|_| PackError::new("the rule data is not UTF-8"))?;
        let mut pack = ManyRules {
            id: "many-rules".into(),
            version: "1.0.0".into(),
            prefilter: false,
            rules: Vec::new(),
            by_marker: Vec::new(),
            always: Vec::new(),
        };
        for (number, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            let bad = |what: &str| PackError::new(format!("line {}: {what}", number + 1));
            match words.next() {
                None => {}
                Some(w) if w.starts_with('#') => {}
                Some("pack") => {
                    pack.id = words.next().ok_or_else(|| bad("pack needs an id"))?.into();
                    pack.version = words.next().unwrap_or("1.0.0").into();
                }
                Some("prefilter") => pack.prefilter = true,
                Some("small") => {
                    let n: u32 = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .ok_or_else(|| bad("small needs a number"))?;
                    let version = words.next().unwrap_or("1.0.0");
                    let index =
                        u32::try_from(pack.rules.len()).map_err(|_| bad("too many rules"))?;
                    let slot = n as usize;
                    if pack.by_marker.len() <= slot {
                        pack.by_marker.resize(slot + 1, u32::MAX);
                    }
                    pack.by_marker[slot] = index;
                    pack.rules.push(Spec {
                        id: format!("small-{n}"),
                        name: format!("Small rule {n}"),
                        version: version.into(),
                        severity: Severity::Low,
                        kinds: EventKinds::of(&[EventKind::ProcessStart]),
                        kind: Kind::Small {
                            marker: format!("#{n}#"),
                        },
                    });
                }
                Some("faulty") => {
                    let name = words.next().ok_or_else(|| bad("faulty needs a name"))?;
                    let rule = faulty(name).ok_or_else(|| bad("no such faulty rule"))?;
                    let meta = rule.meta();
                    let index =
                        u32::try_from(pack.rules.len()).map_err(|_| bad("too many rules"))?;
                    pack.always.push(index);
                    pack.rules.push(Spec {
                        id: meta.id.to_string(),
                        name: meta.name.to_string(),
                        version: meta.version.to_string(),
                        severity: meta.severity,
                        kinds: EventKinds::of(meta.events),
                        kind: Kind::Faulty(rule),
                    });
                }
                Some("loads-forever") => loads_forever(),
                Some(other) => return Err(bad(&format!("unknown directive `{other}`"))),
            }
        }
        Ok(pack)
    }
}

/// The data never finishes loading (wasm only: natively it would hang the test).
fn loads_forever() {
    #[cfg(target_arch = "wasm32")]
    {
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n).wrapping_add(1);
        }
    }
}

/// Calls `f` with each `n` of the `#n#` markers in `text`, and with `None` for `#all#`.
fn markers(text: &str, mut f: impl FnMut(Option<usize>)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'#') {
        let start = i + at + 1;
        let len = bytes[start..]
            .iter()
            .position(|&b| b == b'#')
            .unwrap_or(bytes.len() - start);
        let word = &text[start..start + len];
        if word == "all" {
            f(None);
        } else if !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = word.parse::<usize>()
        {
            f(Some(n));
        }
        i = start;
    }
}

impl Pack for ManyRules {
    fn load(data: &[u8]) -> Result<Self, PackError> {
        ManyRules::parse(data)
    }

    fn metadata(&self) -> PackMetadata<'_> {
        PackMetadata {
            schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
            id: Cow::Borrowed(&self.id),
            name: Cow::Borrowed("Many rules (test engine)"),
            version: Cow::Borrowed(&self.version),
            rules: self
                .rules
                .iter()
                .map(|r| RuleMetadata {
                    schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
                    id: Cow::Borrowed(&r.id),
                    name: Cow::Borrowed(&r.name),
                    version: Cow::Borrowed(&r.version),
                    severity: r.severity,
                    subscriptions: r.kinds,
                })
                .collect(),
        }
    }

    fn on_event(&mut self, rule: usize, event: &EventView<'_>, out: &mut Detections) {
        let Some(spec) = self.rules.get_mut(rule) else {
            return;
        };
        match &mut spec.kind {
            Kind::Small { marker } => {
                let Some(p) = event.process_start() else {
                    return;
                };
                let line = p.command_line();
                if contains_ignore_case(line, marker) || contains_ignore_case(line, ALL) {
                    out.detect("marker seen").field("CommandLine", line);
                }
            }
            Kind::Faulty(rule) => rule.on_event(event, out),
        }
    }

    const PREFILTER: bool = true;

    fn candidates(&mut self, event: &EventView<'_>, subscribed: &[u32], out: &mut Vec<u32>) {
        if !self.prefilter {
            out.extend_from_slice(subscribed);
            return;
        }
        let line = event.process_start().map_or("", |p| p.command_line());
        let mut all = false;
        markers(line, |m| match m {
            None => all = true,
            Some(n) => {
                if let Some(&index) = self.by_marker.get(n)
                    && index != u32::MAX
                {
                    out.push(index);
                }
            }
        });
        if all {
            out.clear();
            out.extend_from_slice(subscribed);
            return;
        }
        out.extend(
            self.always
                .iter()
                .filter(|i| subscribed.contains(i))
                .copied(),
        );
        out.sort_unstable();
        out.dedup();
    }
}

rulebox_sdk::export_pack!(ManyRules);

/// The rule data of a pack of `n` small rules (`small-0` … `small-{n-1}`), with the faulty rule
/// `faulty` (if any) placed after the first `at` of them.
pub fn data(n: u32, faulty: Option<(&str, u32)>, prefilter: bool) -> String {
    let mut text = String::new();
    if prefilter {
        text.push_str("prefilter\n");
    }
    for i in 0..n {
        if let Some((name, at)) = faulty
            && at == i
        {
            text.push_str(&format!("faulty {name}\n"));
        }
        text.push_str(&format!("small {i}\n"));
    }
    if let Some((name, at)) = faulty
        && at >= n
    {
        text.push_str(&format!("faulty {name}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_sdk::{Event, EventData, ProcessStart, run_native_pack};

    fn process(line: &str) -> Event<'static> {
        let mut p = ProcessStart::default();
        p.command_line = Cow::Owned(line.into());
        Event::new(EventData::ProcessStart(p))
    }

    #[test]
    fn small_rules_fire_on_their_marker_and_the_prefilter_agrees() {
        for prefilter in [false, true] {
            let mut pack = ManyRules::parse(data(50, None, prefilter).as_bytes()).unwrap();
            assert_eq!(pack.metadata().rules.len(), 50);
            let found = run_native_pack(&mut pack, &process("x #7# y #12# #999# #"));
            let ids: Vec<_> = found.iter().map(|(_, d)| d.rule_id.to_string()).collect();
            assert_eq!(ids, ["small-7", "small-12"], "prefilter {prefilter}");
            assert_eq!(run_native_pack(&mut pack, &process("#all#")).len(), 50);
            assert!(run_native_pack(&mut pack, &process("nothing")).is_empty());
        }
    }

    #[test]
    fn faulty_rules_keep_their_ids_and_bad_data_is_refused() {
        let pack = ManyRules::parse(data(3, Some(("panics", 1)), true).as_bytes()).unwrap();
        let meta = pack.metadata();
        let ids: Vec<_> = meta.rules.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["small-0", "faulty-panics", "small-1", "small-2"]);
        assert_eq!(pack.always, [1]);
        assert!(ManyRules::parse(b"faulty nothing").is_err());
        assert!(ManyRules::parse(b"frobnicate").is_err());
        assert!(ManyRules::parse(&[0xFF]).is_err());
    }
}
