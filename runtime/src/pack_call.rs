//! The host side of ABI 3's calling sequence: the `rulebox.event_begin`, `rulebox.rule_begin` and
//! `rulebox.rule_end` imports, each step checked, each rule given its own fuel budget and deadline,
//! and each result checked and kept for the rule that made it.
//!
//! A rule is *open* from its `rule_begin` until the pack's next `rule_begin`, `event_begin` or
//! `rule_end`, or until `rulebox_on_events` returns: `rule_end` is needed only to hand over
//! detections, so a rule that finds nothing costs one host call.
//!
//! The state lives in the store ([`HostState::pack`]) so that the imports reach it through their
//! `Caller`; the pack ([`crate::pack`]) fills it before each call and reads the results after.

use std::sync::Arc;

use rulebox_sdk::Detection;
use rulebox_sdk::abi;
use wasmtime::{AsContextMut, Caller, Memory};

use crate::config::Limits;
use crate::deadline::Budget;
use crate::host::HostState;
use crate::quarantine::Fault;
use crate::rule::check_result;

/// A rule's counters while its pack's instance lives (moved to each fresh instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) events: u64,
    pub(crate) detections: u64,
    pub(crate) last_fuel: u64,
    pub(crate) max_fuel: u64,
    pub(crate) total_fuel: u64,
}

impl Counters {
    /// Counts one event that used `fuel`.
    #[inline]
    pub(crate) fn note(&mut self, fuel: u64) {
        self.events += 1;
        self.last_fuel = fuel;
        self.max_fuel = self.max_fuel.max(fuel);
        self.total_fuel = self.total_fuel.saturating_add(fuel);
    }
}

/// What the host enforces for one rule of a pack, as the imports need it.
#[derive(Debug, Clone)]
pub(crate) struct MemberCtl {
    /// Bit `n` set: the rule runs on events of kind `n`. 0 while the rule is quarantined, removed or
    /// kept only as a fallback.
    pub(crate) kinds: u32,
    /// The rule's own limits (fuel per event, deadline, result caps).
    pub(crate) limits: Limits,
    /// The rule's id, given to its detections.
    pub(crate) id: Arc<str>,
    pub(crate) counters: Counters,
}

/// Detections of one rule on one event of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The event's index in the call's batch.
    pub(crate) event: u32,
    /// The rule's index in the pack.
    pub(crate) rule: u32,
    /// How many detections (the next ones in [`PackCtl::detections`]).
    pub(crate) count: u32,
}

/// The rule between its `rule_begin` and its close.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Open {
    pub(crate) rule: u32,
}

/// The pack's side of a call, in the store.
pub(crate) struct PackCtl {
    pub(crate) members: Vec<MemberCtl>,
    /// The union of the members' `kinds`.
    kinds_union: u32,
    /// For each kind bit, how many members run on it (so that one member's change is O(1)).
    kind_counts: [u32; 32],
    pub(crate) memory: Option<Memory>,
    /// The pack's own fuel for each event (the work outside every rule).
    pub(crate) pack_fuel: u64,
    /// The pack's own deadline for each event, in milliseconds of CPU time.
    pub(crate) pack_ms: u64,
    /// The kind bit (1 << ABI number) of each event of the call's batch.
    kinds: Vec<u32>,
    /// On the call's first event, rules below this index already ran (in an instance that faulted).
    floor: u32,
    /// When set, only this rule runs (a restored previous version catching up on a batch).
    only: Option<u32>,
    /// The lowest event index `event_begin` may name next.
    next_event: u32,
    /// The event being evaluated.
    pub(crate) current: Option<u32>,
    /// The lowest rule index `rule_begin` may name next on the current event: the rules below it
    /// are done with it (they ran, or the pack passed them over).
    pub(crate) next_rule: u32,
    pub(crate) open: Option<Open>,
    /// The pack's fuel when the open rule began, given back when it closes.
    saved_fuel: u64,
    /// The pack's own budget when the open rule began, resumed when it closes.
    saved_budget: Budget,
    /// Rules run on each event of the call.
    pub(crate) ran: Vec<u32>,
    /// Rules that reported detections, in order.
    pub(crate) hits: Vec<Hit>,
    /// Their detections, in order.
    pub(crate) detections: Vec<Detection<'static>>,
    /// Detections of earlier calls, kept for their allocations.
    pub(crate) spare: Vec<Detection<'static>>,
    /// The pack's own work per event (fuel outside every rule), in `Counters::note`'s terms.
    pub(crate) own: Counters,
    /// A shared prefilter index's instance (`crate::index`): the rules it names are recorded here,
    /// `(event, rule)` in call order, and never run.
    pub(crate) record: Option<Vec<(u32, u32)>>,
}

/// Why a pack's import stopped the guest.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum PackTrap {
    /// The calling sequence was broken: a fault of the pack.
    #[error("pack protocol violation: {0}")]
    Protocol(String),
    /// The open rule's result was refused: a fault of that rule.
    #[error("{0}")]
    Result(Fault),
}

#[cold]
fn violation(message: String) -> wasmtime::Error {
    wasmtime::Error::new(PackTrap::Protocol(message))
}

impl PackCtl {
    pub(crate) fn new(members: Vec<MemberCtl>, pack_fuel: u64, pack_ms: u64) -> PackCtl {
        let mut kind_counts = [0u32; 32];
        for m in &members {
            for (bit, count) in kind_counts.iter_mut().enumerate() {
                *count += (m.kinds >> bit) & 1;
            }
        }
        let kinds_union = members.iter().fold(0, |acc, m| acc | m.kinds);
        PackCtl {
            members,
            kinds_union,
            kind_counts,
            memory: None,
            pack_fuel,
            pack_ms,
            kinds: Vec::new(),
            floor: 0,
            only: None,
            next_event: 0,
            current: None,
            next_rule: 0,
            open: None,
            saved_fuel: 0,
            own: Counters::default(),
            saved_budget: Budget::start(0, 1),
            ran: Vec::new(),
            hits: Vec::new(),
            detections: Vec::new(),
            spare: Vec::new(),
            record: None,
        }
    }

    /// Lets rule `i` run on `kinds` (0: not at all).
    pub(crate) fn set_kinds(&mut self, i: usize, kinds: u32) {
        let old = std::mem::replace(&mut self.members[i].kinds, kinds);
        for (bit, count) in self.kind_counts.iter_mut().enumerate() {
            *count = *count - ((old >> bit) & 1) + ((kinds >> bit) & 1);
            if *count == 0 {
                self.kinds_union &= !(1 << bit);
            } else {
                self.kinds_union |= 1 << bit;
            }
        }
    }

    /// The kinds (bit mask) some member runs on.
    pub(crate) fn kinds_union(&self) -> u32 {
        self.kinds_union
    }

    /// Prepares a call over events of `kinds` (ABI numbers, in batch order): rules below `floor`
    /// do not run on the first event; with `only`, no rule but that one runs. Clears the results.
    pub(crate) fn begin_call(
        &mut self,
        kinds: impl Iterator<Item = u8>,
        floor: u32,
        only: Option<u32>,
    ) {
        self.kinds.clear();
        self.kinds.extend(kinds.map(|k| 1u32 << (k & 31)));
        self.ran.clear();
        self.ran.resize(self.kinds.len(), 0);
        self.floor = floor;
        self.only = only;
        self.next_event = 0;
        self.current = None;
        self.next_rule = 0;
        self.open = None;
        self.hits.clear();
        self.spare.append(&mut self.detections);
        if let Some(record) = &mut self.record {
            record.clear();
        }
    }

    /// Counts the pack's own fuel on the current event (if one began): what it used of its
    /// per-event budget, whose rest is `saved_fuel` while a rule is open and `fuel_left` otherwise.
    #[inline]
    fn end_event(&mut self, fuel_left: u64) {
        if self.current.is_some() {
            let left = if self.open.is_some() {
                self.saved_fuel
            } else {
                fuel_left
            };
            self.own.note(self.pack_fuel.saturating_sub(left));
        }
    }

    /// Closes the open rule (if any) with no detections: counts it with the fuel it used. The
    /// caller gives the pack its budgets back (or the next rule its own).
    #[inline]
    fn close(&mut self, fuel_left: u64) {
        if let (Some(open), Some(event)) = (self.open.take(), self.current) {
            let member = &mut self.members[open.rule as usize];
            member
                .counters
                .note(member.limits.fuel_per_event.saturating_sub(fuel_left));
            self.ran[event as usize] += 1;
        }
    }

    /// Called when `rulebox_on_events` returned normally: closes the open rule. Returns whether
    /// one was open.
    pub(crate) fn finish(&mut self, fuel_left: u64) -> bool {
        let open = self.open.is_some();
        self.end_event(fuel_left);
        self.close(fuel_left);
        open
    }
}

/// The state of a pack's call, or the error for a module calling a pack import outside one.
#[inline]
fn ctl(pack: &mut Option<Box<PackCtl>>) -> wasmtime::Result<&mut PackCtl> {
    match pack.as_deref_mut() {
        Some(ctl) => Ok(ctl),
        None => Err(violation(
            "a pack import was called by a module that is not a pack".into(),
        )),
    }
}

/// `rulebox.event_begin(event) -> i32`: closes the open rule, if any, and starts event `event` of
/// the batch; 1 to evaluate it, 0 to skip it (no rule of the pack runs on its kind). The pack's own
/// fuel and deadline start afresh.
pub(crate) fn event_begin(mut caller: Caller<'_, HostState>, event: u32) -> wasmtime::Result<u32> {
    let fuel_left = caller.get_fuel()?;
    let HostState {
        pack,
        budget,
        tick_ms,
        ..
    } = caller.data_mut();
    let ctl = ctl(pack)?;
    ctl.end_event(fuel_left);
    ctl.close(fuel_left);
    if event < ctl.next_event {
        return Err(violation(match ctl.current {
            Some(current) => {
                format!("event_begin({event}) after event {current}: events go in increasing order")
            }
            None => format!("event_begin({event}) out of order"),
        }));
    }
    let Some(&bit) = ctl.kinds.get(event as usize) else {
        return Err(violation(format!(
            "event_begin({event}) is out of range: the batch holds {} events",
            ctl.kinds.len()
        )));
    };
    ctl.next_event = event + 1;
    ctl.current = Some(event);
    ctl.next_rule = 0;
    let run = ctl.kinds_union & bit != 0;
    let fuel = ctl.pack_fuel;
    *budget = Budget::start(ctl.pack_ms, *tick_ms);
    caller.set_fuel(fuel)?;
    caller.as_context_mut().set_epoch_deadline(1);
    Ok(u32::from(run))
}

/// `rulebox.rule_begin(rule) -> i32`: closes the open rule, if any, then 1 if rule `rule` is to run
/// on the current event (its own fuel budget and deadline start now), 0 to skip it.
pub(crate) fn rule_begin(mut caller: Caller<'_, HostState>, rule: u32) -> wasmtime::Result<u32> {
    let fuel_left = caller.get_fuel()?;
    let HostState {
        pack,
        budget,
        tick_ms,
        ..
    } = caller.data_mut();
    let ctl = ctl(pack)?;
    let was_open = ctl.open.is_some();
    ctl.close(fuel_left);
    let Some(event) = ctl.current else {
        return Err(violation(format!(
            "rule_begin({rule}) before any event_begin"
        )));
    };
    if rule < ctl.next_rule {
        return Err(violation(format!(
            "rule_begin({rule}) on event {event} after rule {}: rules go in increasing order",
            ctl.next_rule - 1
        )));
    }
    let Some(member) = ctl.members.get(rule as usize) else {
        return Err(violation(format!(
            "rule_begin({rule}) is out of range: the pack has {} rules",
            ctl.members.len()
        )));
    };
    ctl.next_rule = rule + 1;
    let skip = member.kinds & ctl.kinds[event as usize] == 0
        || (event == 0 && rule < ctl.floor)
        || ctl.only.is_some_and(|only| only != rule);
    if skip {
        if was_open {
            // The pack's budgets resume.
            let fuel = ctl.saved_fuel;
            *budget = ctl.saved_budget.resumed();
            caller.set_fuel(fuel)?;
            caller.as_context_mut().set_epoch_deadline(1);
        }
        return Ok(0);
    }
    if let Some(record) = &mut ctl.record {
        // An index names the rule; its own pack runs it. The index's budgets run on.
        record.push((event, rule));
        return Ok(0);
    }
    let (fuel, ms) = (member.limits.fuel_per_event, member.limits.deadline_ms);
    if !was_open {
        // The pack's budgets pause while the rule runs.
        ctl.saved_fuel = fuel_left;
        ctl.saved_budget = *budget;
    }
    ctl.open = Some(Open { rule });
    *budget = Budget::start(ms, *tick_ms);
    caller.set_fuel(fuel)?;
    caller.as_context_mut().set_epoch_deadline(1);
    Ok(1)
}

/// `rulebox.rule_end(ptr, len)`: closes the open rule with its result (ABI 2's packed result,
/// split): checked, kept for that rule and event, its fuel recorded; the pack's budgets resume.
#[inline(never)]
pub(crate) fn rule_end(
    mut caller: Caller<'_, HostState>,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<()> {
    let fuel_left = caller.get_fuel()?;
    let packed = abi::pack(ptr, len);
    let memory = caller.data().pack.as_ref().and_then(|c| c.memory);
    let (data, state): (&[u8], &mut HostState) = match memory {
        Some(m) if packed != abi::RESULT_NONE => {
            let (data, state) = m.data_and_store_mut(&mut caller);
            (data, state)
        }
        _ => (&[], caller.data_mut()),
    };
    let Some(ctl) = state.pack.as_deref_mut() else {
        return Err(violation(
            "rule_end called by a module that is not a pack".into(),
        ));
    };
    let (Some(open), Some(event)) = (ctl.open, ctl.current) else {
        return Err(violation(format!(
            "rule_end({ptr:#x}, {len}) with no rule open"
        )));
    };
    let before = ctl.detections.len();
    if packed != abi::RESULT_NONE {
        let member = &ctl.members[open.rule as usize];
        check_result(
            data,
            packed,
            &member.id,
            &member.limits,
            &mut ctl.detections,
            &mut ctl.spare,
        )
        .map_err(|fault| wasmtime::Error::new(PackTrap::Result(fault)))?;
    }
    let count = u32::try_from(ctl.detections.len() - before).unwrap_or(u32::MAX);
    if count > 0 {
        ctl.members[open.rule as usize].counters.detections += u64::from(count);
        ctl.hits.push(Hit {
            event,
            rule: open.rule,
            count,
        });
    }
    ctl.close(fuel_left);
    let fuel = ctl.saved_fuel;
    state.budget = ctl.saved_budget.resumed();
    caller.set_fuel(fuel)?;
    caller.as_context_mut().set_epoch_deadline(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(kinds: u32) -> MemberCtl {
        MemberCtl {
            kinds,
            limits: Limits::default(),
            id: "r".into(),
            counters: Counters::default(),
        }
    }

    #[test]
    fn the_union_of_kinds_follows_every_change() {
        let mut ctl = PackCtl::new(vec![member(0b011), member(0b010), member(0)], 1, 1);
        assert_eq!(ctl.kinds_union(), 0b011);
        ctl.set_kinds(0, 0);
        assert_eq!(ctl.kinds_union(), 0b010, "rule 1 still runs on kind 1");
        ctl.set_kinds(1, 0);
        assert_eq!(ctl.kinds_union(), 0);
        ctl.set_kinds(2, 0b100);
        ctl.set_kinds(0, 0b101);
        assert_eq!(ctl.kinds_union(), 0b101);
        ctl.set_kinds(2, 0b100);
        ctl.set_kinds(0, 0);
        assert_eq!(ctl.kinds_union(), 0b100);
    }

    #[test]
    fn counters_note_every_event() {
        let mut c = Counters::default();
        c.note(10);
        c.note(30);
        c.note(20);
        assert_eq!(
            (c.events, c.last_fuel, c.max_fuel, c.total_fuel),
            (3, 20, 30, 60)
        );
    }
}
