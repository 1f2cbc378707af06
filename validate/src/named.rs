//! The fields a rule reads, when its pack's data says: the validator's events at the cap on them.
//!
//! A pack's cross-rule prefilter runs a rule only on events that hold the literals it needs, in
//! the fields it reads. The boundary events ([`crate::events::boundary`]) fill the typed fields of
//! each kind; a rule reading fields no kind has a slot for (`ScriptBlockText` of a PowerShell
//! script block, the fields of Windows services' events, all of kind `other`) would never run on
//! them, and the gate could not say what an event costs it. So, for an engine whose rule data is
//! compiled Sigma programs (records of `rulebox_sigma_eval`), the validator reads each program's
//! field names natively and adds [`at_cap`](crate::events::at_cap) events on them, and the same
//! events holding the literals the rule's prefilter needs
//! ([`at_cap_reaching`](crate::events::at_cap_reaching)), which reach the rule whether or not the
//! prefilter gives up on a field at the cap.
//!
//! A keyword's literal (a rule that searches every field) is carried by an untyped field of its
//! own, [`KEYWORD_CARRIER`], which the prefilter's keyword scan reads like any other, and such a
//! rule gets those events on every text field of the kind, as [`boundary`] fills them.
//!
//! The names only choose more events to run: they cannot make a rule pass, and data that is not
//! Sigma records (or a record that does not decode, which the engine refuses itself when it
//! loads) names no field.

use std::collections::BTreeMap;

use rulebox_runtime::RuntimeConfig;
use rulebox_sdk::{EventData, EventKind, Value};
use rulebox_sigma_eval::{Evaluator, Program, ProgramError, split_data};

use crate::events::{LabeledEvent, at_cap, at_cap_reaching, boundary};

/// At most this many names per rule (each adds an event per kind it subscribes to).
pub const MAX_NAMED_FIELDS: usize = 64;

/// The untyped field that holds a keyword's needed literal in the events [`Named::at_cap`] makes
/// (a keyword is found in any field).
pub const KEYWORD_CARRIER: &str = "RuleboxKeywordNeeded";

/// What a rule's program says about the fields it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// The names it reads fields by (every spelling, sorted, at most [`MAX_NAMED_FIELDS`]).
    pub names: Vec<String>,
    /// For each clause of what its prefilter needs, the clause's first literal: `(field, text)`
    /// (a keyword's in [`KEYWORD_CARRIER`]).
    pub needs: Vec<(String, String)>,
    /// Whether it searches every field (Sigma keywords).
    pub keywords: bool,
}

impl Named {
    /// What `program` names.
    pub fn of(program: &Program<'_>) -> Named {
        let mut names: Vec<String> = program
            .fields
            .iter()
            .flat_map(|f| f.names.iter().cloned())
            .collect();
        names.sort_unstable();
        names.dedup();
        names.truncate(MAX_NAMED_FIELDS);
        let needs = program
            .needs
            .iter()
            .filter_map(|clause| clause.first())
            .filter_map(|need| {
                let name = match need.field {
                    Some(f) => program.fields.get(usize::from(f))?.names.first()?.clone(),
                    None => KEYWORD_CARRIER.to_owned(),
                };
                Some((name, need.text.clone()))
            })
            .take(MAX_NAMED_FIELDS)
            .collect();
        let keywords = program.scans.iter().any(|s| s.field.is_none());
        Named {
            names,
            needs,
            keywords,
        }
    }

    /// The events at `config`'s cap on these fields, of `kind`: [`at_cap`], and, when the program
    /// needs literals, [`at_cap_reaching`] with them.
    /// A rule that searches every field gets them on every text field of the kind as well.
    pub fn at_cap(&self, kind: EventKind, config: &RuntimeConfig) -> Vec<LabeledEvent> {
        let mut names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        if self.keywords {
            let empty = EventData::empty(kind);
            names.extend(
                empty
                    .field_names()
                    .iter()
                    .copied()
                    .filter(|n| matches!(empty.field(n), Some(Value::Str(_)))),
            );
        }
        let needs: Vec<(&str, &str)> = self
            .needs
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        let mut events = at_cap(kind, &names, config);
        if !needs.is_empty() {
            events.extend(at_cap_reaching(kind, &names, &needs, config));
        }
        events
    }
}

/// The events at `config`'s cap a Sigma rule's `program` is measured on: for every kind it
/// subscribes to, [`Named::at_cap`] on the fields it names, and, when it searches every field for
/// keywords, the boundary events of the kind ([`boundary`]).
pub fn events_at_cap(program: &Program<'_>, config: &RuntimeConfig) -> Vec<LabeledEvent> {
    let named = Named::of(program);
    let keywords = program.scans.iter().any(|s| s.field.is_none());
    let mut out = Vec::new();
    for kind in program.kinds.iter() {
        out.extend(named.at_cap(kind, config));
        if keywords {
            out.extend(boundary(kind, config));
        }
    }
    out
}

/// The most bytes a Sigma rule (its encoded `program`) reads one at a time through its automata's
/// tables, natively and without rows of 256 entries (as in a pack whose byte-row budget left it
/// none), on one of its [`events_at_cap`]: what an event at the cap can cost it beyond its skips.
/// A rule near a whole field (`config.max_event_bytes`) spends that many times a table step's
/// fuel, which through byte classes is over half its budget: `rulebox sigma compile` gives such
/// rules all their rows in their pack (`rulebox_sigma::split_packs_with_rows`).
pub fn bytes_stepped_at_cap(program: &[u8], config: &RuntimeConfig) -> Result<usize, ProgramError> {
    let decoded = Program::from_bytes(program)?;
    let events = events_at_cap(&decoded, config);
    let mut eval = Evaluator::from_bytes_owned(program)?;
    let mut most = 0;
    for e in &events {
        eval.matches_event(&e.event);
        most = most.max(eval.bytes_stepped());
    }
    Ok(most)
}

/// Whether a Sigma rule steps through a field at the event cap: natively through at least three
/// quarters of one ([`bytes_stepped_at_cap`]), or, in the sandbox, where the skip of one of its
/// automata turns down candidates of its nibble tables at more than one position in three of the
/// validator's command-line filler and so hands back to the scan
/// ([`Evaluator::skip_misses`]); `false` for a program that does not decode (the engine refuses
/// it).
pub fn steps_through_fields(program: &[u8], config: &RuntimeConfig) -> bool {
    let text = crate::events::filler(4 << 10);
    let misses = Evaluator::from_bytes_owned(program).map_or(0, |e| e.skip_misses(text.as_bytes()));
    misses * 3 > text.len()
        || bytes_stepped_at_cap(program, config).is_ok_and(|stepped| {
            stepped.saturating_mul(4) >= config.max_event_bytes.saturating_mul(3)
        })
}

/// For each of `records` (compiled Sigma rules' records, `rulebox_sigma::rule_record`), whether it
/// [`steps_through_fields`] at `config`'s cap: the marks `rulebox_sigma::split_packs_with_rows`
/// takes, measured natively (a few seconds for the whole SigmaHQ set).
pub fn full_rows(records: &[Vec<u8>], config: &RuntimeConfig) -> Vec<bool> {
    records
        .iter()
        .map(|r| r.get(8..).is_some_and(|p| steps_through_fields(p, config)))
        .collect()
}

/// Per rule id, what its program names ([`Named`]), for rule data of compiled Sigma records;
/// empty for any other data.
pub fn named_fields(data: &[u8]) -> BTreeMap<String, Named> {
    let Ok((_, programs)) = split_data(data) else {
        return BTreeMap::new();
    };
    programs
        .into_iter()
        .filter_map(|bytes| Program::from_bytes(bytes).ok())
        .map(|p| (p.id.clone(), Named::of(&p)))
        .collect()
}
