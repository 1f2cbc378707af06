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
//! The names only choose more events to run: they cannot make a rule pass, and data that is not
//! Sigma records (or a record that does not decode, which the engine refuses itself when it
//! loads) names no field.

use std::collections::BTreeMap;

use rulebox_runtime::RuntimeConfig;
use rulebox_sdk::EventKind;
use rulebox_sigma_eval::{Program, split_data};

use crate::events::{LabeledEvent, at_cap, at_cap_reaching};

/// At most this many names per rule (each adds an event per kind it subscribes to).
pub const MAX_NAMED_FIELDS: usize = 64;

/// What a rule's program says about the fields it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// The names it reads fields by (every spelling, sorted, at most [`MAX_NAMED_FIELDS`]).
    pub names: Vec<String>,
    /// For each clause of what its prefilter needs, the clause's first literal: `(field, text)`.
    pub needs: Vec<(String, String)>,
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
                let field = program.fields.get(usize::from(need.field))?;
                Some((field.names.first()?.clone(), need.text.clone()))
            })
            .take(MAX_NAMED_FIELDS)
            .collect();
        Named { names, needs }
    }

    /// The events at `config`'s cap on these fields, of `kind`: [`at_cap`], and, when the program
    /// needs literals, [`at_cap_reaching`] with them.
    pub fn at_cap(&self, kind: EventKind, config: &RuntimeConfig) -> Vec<LabeledEvent> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
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
