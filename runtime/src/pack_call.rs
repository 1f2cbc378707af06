//! The host side of ABI 3's calling sequence: the `rulebox.event_begin`, `rulebox.rule_begin` and
//! `rulebox.rule_end` imports, each step checked, each rule given its own fuel budget and deadline,
//! and each result checked and kept for the rule that made it.
//!
//! The state lives in the store ([`HostState::pack`]) so that the imports reach it through their
//! `Caller`; the pack ([`crate::pack`]) fills it before each call and reads the results after.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rulebox_sdk::Detection;
use rulebox_sdk::abi;
use wasmtime::{AsContextMut, Caller, Memory};

use crate::config::Limits;
use crate::host::HostState;
use crate::quarantine::Fault;
use crate::rule::check_result;

/// What the host enforces for one rule of a pack, as the imports need it.
#[derive(Debug, Clone)]
pub(crate) struct MemberCtl {
    /// Bit `n` set: the rule runs on events of kind `n`. 0 while the rule is quarantined, removed or
    /// kept only as a fallback.
    pub(crate) kinds: u32,
    /// The rule's own limits (fuel per event, deadline, result caps).
    pub(crate) limits: Limits,
    /// `limits.deadline_ms` in epoch ticks.
    pub(crate) ticks: u64,
    /// The rule's id, given to its detections.
    pub(crate) id: Arc<str>,
}

/// One rule that ran to `rule_end` on one event of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Done {
    /// The event's index in the call's batch.
    pub(crate) event: u32,
    /// The rule's index in the pack.
    pub(crate) rule: u32,
    /// Fuel the rule used on the event.
    pub(crate) fuel: u64,
    /// How many detections it reported (the next ones in [`PackCtl::detections`]).
    pub(crate) detections: u32,
}

/// The rule between its `rule_begin` and its `rule_end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Open {
    pub(crate) rule: u32,
    /// The pack's fuel when the rule began, given back at `rule_end`.
    pack_fuel: u64,
    /// The pack's deadline left when the rule began, in ticks, given back at `rule_end`.
    pack_ticks: u64,
}

/// The pack's side of a call, in the store.
pub(crate) struct PackCtl {
    pub(crate) members: Vec<MemberCtl>,
    pub(crate) memory: Option<Memory>,
    epoch: Arc<AtomicU64>,
    /// The pack's own fuel for each event (the work outside every rule).
    pub(crate) pack_fuel: u64,
    /// The pack's own deadline for each event, in ticks.
    pub(crate) pack_ticks: u64,
    /// The kind (ABI number) of each event of the call's batch.
    kinds: Vec<u8>,
    /// On the call's first event, rules below this index already ran (in an instance that faulted).
    floor: u32,
    /// When set, only this rule runs (a restored previous version catching up on a batch).
    only: Option<u32>,
    /// The lowest event index `event_begin` may name next.
    next_event: u32,
    /// The event being evaluated.
    pub(crate) current: Option<u32>,
    /// The lowest rule index `rule_begin` may name next.
    next_rule: u32,
    pub(crate) open: Option<Open>,
    /// Absolute epoch at which the pack's deadline for the current event passes.
    deadline: u64,
    /// Rules that ran, in order.
    pub(crate) done: Vec<Done>,
    /// Their detections, in order.
    pub(crate) detections: Vec<Detection<'static>>,
    /// Detections of earlier calls, kept for their allocations.
    pub(crate) spare: Vec<Detection<'static>>,
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

fn violation(message: String) -> wasmtime::Error {
    wasmtime::Error::new(PackTrap::Protocol(message))
}

impl PackCtl {
    pub(crate) fn new(
        members: Vec<MemberCtl>,
        epoch: Arc<AtomicU64>,
        pack_fuel: u64,
        pack_ticks: u64,
    ) -> PackCtl {
        PackCtl {
            members,
            memory: None,
            epoch,
            pack_fuel,
            pack_ticks,
            kinds: Vec::new(),
            floor: 0,
            only: None,
            next_event: 0,
            current: None,
            next_rule: 0,
            open: None,
            deadline: 0,
            done: Vec::new(),
            detections: Vec::new(),
            spare: Vec::new(),
        }
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
        self.kinds.extend(kinds);
        self.floor = floor;
        self.only = only;
        self.next_event = 0;
        self.current = None;
        self.next_rule = 0;
        self.open = None;
        self.deadline = self.now().saturating_add(self.pack_ticks);
        self.done.clear();
        self.spare.append(&mut self.detections);
    }

    fn now(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }
}

/// The state of a pack's call, or the error for a module calling a pack import outside one.
fn ctl<'a>(caller: &'a mut Caller<'_, HostState>) -> wasmtime::Result<&'a mut PackCtl> {
    caller
        .data_mut()
        .pack
        .as_deref_mut()
        .ok_or_else(|| violation("a pack import was called by a module that is not a pack".into()))
}

/// `rulebox.event_begin(event) -> i32`: starts event `event` of the batch; 1 to evaluate it, 0 to
/// skip it (no rule of the pack runs on its kind). The pack's own fuel and deadline start afresh.
pub(crate) fn event_begin(mut caller: Caller<'_, HostState>, event: u32) -> wasmtime::Result<u32> {
    let ctl = ctl(&mut caller)?;
    if let Some(open) = ctl.open {
        return Err(violation(format!(
            "event_begin({event}) while rule {} is open",
            open.rule
        )));
    }
    if event < ctl.next_event {
        return Err(violation(match ctl.current {
            Some(current) => format!("event_begin({event}) after event {current}: events go in increasing order"),
            None => format!("event_begin({event}) out of order"),
        }));
    }
    let Some(&kind) = ctl.kinds.get(event as usize) else {
        return Err(violation(format!(
            "event_begin({event}) is out of range: the batch holds {} events",
            ctl.kinds.len()
        )));
    };
    ctl.next_event = event + 1;
    ctl.current = Some(event);
    ctl.next_rule = 0;
    let bit = 1u32 << (kind & 31);
    let run = ctl.members.iter().any(|m| m.kinds & bit != 0);
    let (fuel, ticks) = (ctl.pack_fuel, ctl.pack_ticks);
    ctl.deadline = ctl.now().saturating_add(ticks);
    caller.set_fuel(fuel)?;
    caller.as_context_mut().set_epoch_deadline(ticks);
    Ok(u32::from(run))
}

/// `rulebox.rule_begin(rule) -> i32`: 1 if rule `rule` is to run on the current event (its own fuel
/// budget and deadline start now), 0 to skip it.
pub(crate) fn rule_begin(mut caller: Caller<'_, HostState>, rule: u32) -> wasmtime::Result<u32> {
    let pack_fuel = caller.get_fuel()?;
    let ctl = ctl(&mut caller)?;
    if let Some(open) = ctl.open {
        return Err(violation(format!(
            "rule_begin({rule}) while rule {} is open (no rule_end)",
            open.rule
        )));
    }
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
    let bit = 1u32 << (ctl.kinds[event as usize] & 31);
    let skip = member.kinds & bit == 0
        || (event == 0 && rule < ctl.floor)
        || ctl.only.is_some_and(|only| only != rule);
    if skip {
        return Ok(0);
    }
    let (fuel, ticks) = (member.limits.fuel_per_event, member.ticks);
    let pack_ticks = ctl.deadline.saturating_sub(ctl.now()).max(1);
    ctl.open = Some(Open {
        rule,
        pack_fuel,
        pack_ticks,
    });
    caller.set_fuel(fuel)?;
    caller.as_context_mut().set_epoch_deadline(ticks);
    Ok(1)
}

/// `rulebox.rule_end(ptr, len)`: the open rule's result (ABI 2's packed result, split): checked,
/// kept for that rule and event, its fuel recorded; the pack's budgets resume.
pub(crate) fn rule_end(mut caller: Caller<'_, HostState>, ptr: u32, len: u32) -> wasmtime::Result<()> {
    let fuel_left = caller.get_fuel()?;
    let memory = caller.data().pack.as_ref().and_then(|c| c.memory);
    let (data, state): (&[u8], &mut HostState) = match memory {
        Some(m) => {
            let (data, state) = m.data_and_store_mut(&mut caller);
            (data, state)
        }
        None => (&[], caller.data_mut()),
    };
    let Some(ctl) = state.pack.as_deref_mut() else {
        return Err(violation("rule_end called by a module that is not a pack".into()));
    };
    let (Some(open), Some(event)) = (ctl.open, ctl.current) else {
        return Err(violation(format!(
            "rule_end({ptr:#x}, {len}) with no rule open"
        )));
    };
    let member = &ctl.members[open.rule as usize];
    let fuel = member.limits.fuel_per_event.saturating_sub(fuel_left);
    let packed = abi::pack(ptr, len);
    let before = ctl.detections.len();
    if packed != abi::RESULT_NONE {
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
    ctl.done.push(Done {
        event,
        rule: open.rule,
        fuel,
        detections: count,
    });
    ctl.open = None;
    ctl.deadline = ctl.now().saturating_add(open.pack_ticks);
    caller.set_fuel(open.pack_fuel)?;
    caller.as_context_mut().set_epoch_deadline(open.pack_ticks);
    Ok(())
}
