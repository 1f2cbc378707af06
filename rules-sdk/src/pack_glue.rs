//! The guest side of ABI 3 (rule packs): what [`export_pack!`](crate::export_pack) exports, and the
//! calling sequence with the host's `event_begin`, `rule_begin` and `rule_end` imports
//! ([`crate::abi`]). wasm32 only.
#![allow(
    clippy::cast_possible_truncation,
    reason = "wasm32 pointers and lengths are 32 bits wide"
)]

use alloc::vec::Vec;
use core::cell::UnsafeCell;

use crate::abi::{MAX_INPUT_LEN, RESULT_NONE, RESULT_UNDECODABLE_EVENT, pack as packed};
use crate::batch::BatchView;
use crate::detection::Detections;
use crate::pack::{LoadReply, Pack};
use crate::wire::EventView;

#[link(wasm_import_module = "rulebox")]
unsafe extern "C" {
    #[link_name = "event_begin"]
    fn host_event_begin(event: u32) -> u32;
    #[link_name = "rule_begin"]
    fn host_rule_begin(rule: u32) -> u32;
    #[link_name = "rule_end"]
    fn host_rule_end(ptr: u32, len: u32);
}

/// `rulebox.event_begin`: whether to evaluate event `event` of the batch.
#[inline]
fn event_begin(event: u32) -> bool {
    // SAFETY: a host function taking and returning integers; it reads no guest memory.
    unsafe { host_event_begin(event) != 0 }
}

/// `rulebox.rule_begin`: whether to run rule `rule` on the current event (the host then gives it its
/// own fuel budget and deadline).
#[inline]
fn rule_begin(rule: u32) -> bool {
    // SAFETY: as for `event_begin`.
    unsafe { host_rule_begin(rule) != 0 }
}

/// `rulebox.rule_end`: the open rule's detections.
#[inline]
fn rule_end(ptr: u32, len: u32) {
    // SAFETY: the host reads (and checks) `len` bytes at `ptr` in this module's memory, during the
    // call only; it writes nothing.
    unsafe { host_rule_end(ptr, len) }
}

struct PackGuest<P> {
    pack: Option<P>,
    input: Vec<u8>,
    /// The encoded `LoadReply` `rulebox_load` points at.
    reply: Vec<u8>,
    /// Each rule's result buffer, reused from event to event: a rule's own, as in a module of its
    /// own, so that the fuel it spends growing it does not depend on the other rules.
    detections: Vec<Detections>,
    /// Rule indices subscribed to each kind (by ABI number).
    by_kind: Vec<Vec<u32>>,
    candidates: Vec<u32>,
}

/// The pack and its buffers, in a static.
pub struct PackCell<P>(UnsafeCell<PackGuest<P>>);

// SAFETY: rule modules are built without the wasm threads proposal, so the module has exactly one
// thread; the host calls one export at a time and no export calls another.
unsafe impl<P> Sync for PackCell<P> {}

fn ptr_of(bytes: &[u8]) -> u32 {
    bytes.as_ptr() as usize as u32
}

impl<P: Pack> PackCell<P> {
    /// An empty cell; the pack is built by `rulebox_load`.
    #[allow(
        clippy::new_without_default,
        reason = "used in a const context by the export macro"
    )]
    pub const fn new() -> Self {
        PackCell(UnsafeCell::new(PackGuest {
            pack: None,
            input: Vec::new(),
            reply: Vec::new(),
            detections: Vec::new(),
            by_kind: Vec::new(),
            candidates: Vec::new(),
        }))
    }

    #[allow(
        clippy::mut_from_ref,
        reason = "one thread, no re-entry: see the Sync impl"
    )]
    fn guest(&self) -> &mut PackGuest<P> {
        // SAFETY: see the `Sync` impl: there is one thread and no export re-enters another, so this is
        // the only live reference to the cell's contents.
        unsafe { &mut *self.0.get() }
    }

    /// `rulebox_input`
    pub fn input(&self, len: u32) -> u32 {
        if len > MAX_INPUT_LEN {
            return 0;
        }
        let g = self.guest();
        g.input.resize(len as usize, 0);
        ptr_of(&g.input)
    }

    /// `rulebox_load`: builds the pack from the rule data in the first `len` bytes of the input
    /// buffer; returns the packed `(ptr, len)` of the postcard [`LoadReply`], or 0 if it cannot be
    /// encoded.
    ///
    /// The input buffer holding the data becomes the pack's for good ([`Pack::load_kept`]): it is
    /// never freed, and the next `rulebox_input` call, which the host makes before its first batch,
    /// gives a new buffer. A host that wrote a batch into the old one anyway finds the batch
    /// undecodable (the new buffer is empty), a fault, never a pack reading events as its rules.
    pub fn load(&self, len: u32) -> u64 {
        let g = self.guest();
        let kept: &'static [u8] = core::mem::take(&mut g.input).leak();
        let data = kept.get(..len as usize).unwrap_or(&[]);
        let loaded = if data.len() == len as usize {
            P::load_kept(data)
        } else {
            Err(crate::pack::PackError::new(
                "the data length is past the input buffer",
            ))
        };
        g.reply.clear();
        let encoded = match &loaded {
            Ok(p) => {
                let meta = p.metadata();
                g.detections = meta
                    .rules
                    .iter()
                    .map(|r| Detections::new("", r.severity))
                    .collect();
                g.by_kind = crate::pack::by_kind(&meta.rules);
                postcard::to_extend(&LoadReply::Loaded(meta), core::mem::take(&mut g.reply))
            }
            Err(e) => postcard::to_extend(
                &LoadReply::Refused(e.0.as_str().into()),
                core::mem::take(&mut g.reply),
            ),
        };
        match encoded {
            Ok(bytes) => g.reply = bytes,
            Err(_) => return 0,
        }
        g.pack = loaded.ok();
        packed(ptr_of(&g.reply), g.reply.len() as u32)
    }

    /// `rulebox_on_events`: walks the batch in the first `len` bytes of the input buffer, event by
    /// event and, within each, rule by rule in increasing index order. Returns
    /// [`RESULT_NONE`] when done, [`RESULT_UNDECODABLE_EVENT`] when the batch or an event does not
    /// read (a schema mismatch: a fault of the pack).
    ///
    /// The rules run on an event are those subscribed to its kind that the batch's candidate list
    /// for it names, when the batch has a candidate table (the host's shared prefilter: the pack's
    /// own, [`Pack::candidates`], is not called, whatever [`Pack::PREFILTER`] says); else those
    /// the pack's prefilter names, when it has one; else all of them. A candidate list that does
    /// not read (checked for every event) or is not strictly increasing (checked on each event
    /// evaluated) is [`RESULT_UNDECODABLE_EVENT`] too.
    pub fn on_events(&self, len: u32) -> u64 {
        let PackGuest {
            pack,
            input,
            detections,
            by_kind,
            candidates,
            ..
        } = self.guest();
        let Some(pack) = pack.as_mut() else {
            return RESULT_UNDECODABLE_EVENT;
        };
        let Some(bytes) = input.get(..len as usize) else {
            return RESULT_UNDECODABLE_EVENT;
        };
        let Ok(batch) = BatchView::new(bytes) else {
            return RESULT_UNDECODABLE_EVENT;
        };
        for e in 0..batch.len() {
            let Ok(event) = batch.event(e) else {
                return RESULT_UNDECODABLE_EVENT;
            };
            // The host's shared prefilter, if it sent one: this event's rules worth running.
            let Ok(listed) = batch.candidates(e) else {
                return RESULT_UNDECODABLE_EVENT;
            };
            if !event_begin(e as u32) {
                continue;
            }
            let Ok(kind) = EventView::kind_of(event) else {
                return RESULT_UNDECODABLE_EVENT;
            };
            let subscribed = by_kind.get(kind as usize).map_or(&[][..], Vec::as_slice);
            if subscribed.is_empty() {
                continue;
            }
            let run: &[u32] = if let Some(listed) = listed {
                candidates.clear();
                if !listed.merge_subscribed(subscribed, candidates) {
                    return RESULT_UNDECODABLE_EVENT;
                }
                candidates
            } else if P::PREFILTER {
                let Ok(view) = EventView::new(event) else {
                    return RESULT_UNDECODABLE_EVENT;
                };
                candidates.clear();
                pack.candidates(&view, subscribed, candidates);
                if candidates.windows(2).any(|w| w[0] >= w[1]) {
                    candidates.sort_unstable();
                    candidates.dedup();
                }
                candidates
            } else {
                subscribed
            };
            for &rule in run {
                if rule_begin(rule) {
                    run_rule(pack, rule, event, detections);
                }
            }
        }
        // The last rule closes with the return.
        RESULT_NONE
    }
}

/// Runs `rule` (just begun) on `event`, on a view of its own (its own cache of checked texts, so
/// that its fuel does not depend on which rules read the event before it), into its own result
/// buffer; hands over its detections with `rule_end` (a rule without any is closed by the next
/// `rule_begin` or `event_begin`, or by the return).
#[inline(always)]
fn run_rule<P: Pack>(pack: &mut P, rule: u32, event: &[u8], detections: &mut [Detections]) {
    let index = rule as usize;
    match (EventView::new(event), detections.get_mut(index)) {
        (Ok(own), Some(out)) => {
            out.clear();
            pack.on_event(index, &own, out);
            if !out.is_empty() {
                let result = out.as_bytes();
                rule_end(ptr_of(result), result.len() as u32);
            }
        }
        _ => rule_end(u32::MAX, u32::MAX),
    }
}
