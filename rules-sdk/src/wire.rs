//! The event wire format (schema version 2) and [`EventView`], the lazy reader rules see.
//!
//! The host encodes each event once into this layout and copies the same bytes into every subscribed
//! rule's input buffer. A rule reads it in place: [`EventView::new`] checks only the fixed-size header
//! and the slot table, and each field is located, bounds-checked and UTF-8-checked when (and only when)
//! the rule asks for it. A rule that looks at two fields of a twenty-field event pays for two.
//!
//! ```text
//!  offset  size          field
//!  ──────  ────────────  ─────────────────────────────────────────────────────────────
//!       0  u8            format version (2, = SCHEMA_VERSION)
//!       1  u8            kind (the EventKind ABI number)
//!       2  u16           body slot count (must equal the kind's field count)
//!       4  u16           extra field count
//!       6  u16           reserved, 0
//!       8  u64           timestamp (ms since the Unix epoch)
//!      16  u32           pid
//!      20  u32           end of the host name's text
//!      24  4 × slots     one slot per body field, in the body's declaration order (text fields,
//!                        then numbers, then flags): text = end offset of its text;
//!                        number = u32; flag = u32 0 or 1
//!       …  8 × extras    end of the name's text, end of the value's text
//!       …  bytes         the text heap: host name, body texts in slot order, then each extra's
//!                        name and value; UTF-8, not terminated
//! ```
//!
//! Texts are stored back to back in the heap, so each is located by its end offset alone: it starts
//! where the previous text ends (the host name starts the heap, right after the tables). Every
//! integer is little-endian; every offset counts from the start of the buffer. Nothing is aligned, so
//! the reader never depends on where the host placed the buffer.
//!
//! A field whose offset or length points outside the buffer, or whose bytes are not UTF-8, reads as
//! empty text: the host never writes one ([`EventView::check`] finds them, for tools and fuzzing).

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::event::{Event, EventData, Field, Header, Value, resolve_field};
use crate::kind::EventKind;

/// The format version byte at offset 0 (the same number as the schema version).
pub const WIRE_VERSION: u8 = 2;

/// Size of the fixed header, before the slot table.
pub const HEADER_LEN: usize = 24;

/// Size of one body slot.
pub const SLOT_LEN: usize = 4;

/// Size of one extra-field entry.
pub const EXTRA_LEN: usize = 8;

/// The most text fields any body has; the view remembers each one it has read, so a rule that reads
/// a field again (in a loop, say) does not check its bytes again.
const MAX_TEXTS: usize = 20;

/// The shape of one body: its field names in slot order, and how many are text and numbers (the rest
/// are flags).
#[derive(Debug)]
pub struct BodyLayout {
    /// Sysmon names, in slot order.
    pub fields: &'static [&'static str],
    /// The first `texts` slots hold text.
    pub texts: usize,
    /// The next `ints` slots hold numbers; the remaining slots hold flags.
    pub ints: usize,
}

impl BodyLayout {
    /// The slot of the field named `name`.
    #[inline]
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| *f == name)
    }

    /// What slot `i` holds.
    #[inline]
    pub fn slot_type(&self, i: usize) -> SlotType {
        if i < self.texts {
            SlotType::Text
        } else if i < self.texts + self.ints {
            SlotType::Int
        } else {
            SlotType::Flag
        }
    }
}

/// What a body slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotType {
    /// Offset and length of text in the heap.
    Text,
    /// An unsigned number.
    Int,
    /// `0` or `1`.
    Flag,
}

/// Why bytes are not an event in this format.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its header and tables say.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// The version byte is not [`WIRE_VERSION`].
    Version(u8),
    /// The kind byte names no kind this SDK knows.
    UnknownKind(u8),
    /// The slot count does not match the kind's field count (a schema mismatch).
    SlotCount {
        /// The event's kind.
        kind: EventKind,
        /// The kind's field count in this SDK.
        expected: usize,
        /// The count in the header.
        found: usize,
    },
    /// A text's offset and length point outside the buffer.
    OutOfBounds {
        /// Which text (a field name, `host` or `extra`).
        field: &'static str,
    },
    /// A text is not UTF-8.
    NotUtf8 {
        /// Which text (a field name, `host` or `extra`).
        field: &'static str,
    },
    /// A flag slot holds something other than 0 or 1.
    BadFlag {
        /// The flag's field name.
        field: &'static str,
    },
    /// The reserved header bytes are not zero.
    Reserved,
    /// The event is too large for 32-bit offsets, or has more than 65,535 extra fields.
    TooLarge,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated { needed, len } => {
                write!(f, "event truncated: {len} bytes, the header needs {needed}")
            }
            WireError::Version(v) => {
                write!(f, "event wire version {v}, this build reads {WIRE_VERSION}")
            }
            WireError::UnknownKind(k) => write!(f, "unknown event kind number {k}"),
            WireError::SlotCount {
                kind,
                expected,
                found,
            } => write!(
                f,
                "{kind} event carries {found} body fields, this schema has {expected}"
            ),
            WireError::OutOfBounds { field } => {
                write!(f, "text of `{field}` points outside the event")
            }
            WireError::NotUtf8 { field } => write!(f, "text of `{field}` is not UTF-8"),
            WireError::BadFlag { field } => write!(f, "flag `{field}` is neither 0 nor 1"),
            WireError::Reserved => f.write_str("reserved header bytes are not zero"),
            WireError::TooLarge => {
                f.write_str("event too large (over 4 GiB of text or 65,535 extra fields)")
            }
        }
    }
}

impl core::error::Error for WireError {}

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    match b.get(at..at + 8) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => 0,
    }
}

/// An encoded event, read in place. What [`Rule::on_event`](crate::Rule::on_event) receives.
///
/// Text borrows from the encoded bytes, so it lives as long as the buffer (`'e`), not as long as the
/// view. A body text field is checked (bounds, UTF-8) the first time it is read and remembered, so
/// reading it again costs a load, whatever its length.
///
/// Typed access goes through the body views ([`process_start`](Self::process_start),
/// [`file`](Self::file), ...), whose accessors read one slot each; by-name access through
/// [`field`](Self::field) and [`text`](Self::text) has the same meaning as [`Event::field`].
pub struct EventView<'e> {
    bytes: &'e [u8],
    kind: EventKind,
    layout: &'static BodyLayout,
    extras: usize,
    /// Where the text heap starts (the end of the tables).
    heap: usize,
    /// Body texts already read: `Some` once slot `i` has been checked.
    texts: [Cell<Option<&'e str>>; MAX_TEXTS],
}

// Every body fits the text cache.
const _: () = {
    let kinds = EventKind::ALL;
    let mut i = 0;
    while i < kinds.len() {
        assert!(EventData::layout_of(kinds[i]).texts <= MAX_TEXTS);
        i += 1;
    }
};

impl core::fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventView")
            .field("kind", &self.kind)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<'e> EventView<'e> {
    /// Reads the header and checks that the slot and extra tables fit in `bytes`. Texts are checked
    /// when they are read (or all at once by [`check`](Self::check)).
    pub fn new(bytes: &'e [u8]) -> Result<EventView<'e>, WireError> {
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                needed: HEADER_LEN,
                len: bytes.len(),
            });
        }
        if bytes[0] != WIRE_VERSION {
            return Err(WireError::Version(bytes[0]));
        }
        let kind = EventKind::from_bit(bytes[1]).ok_or(WireError::UnknownKind(bytes[1]))?;
        let layout = EventData::layout_of(kind);
        let slots = usize::from(u16_at(bytes, 2));
        if slots != layout.fields.len() {
            return Err(WireError::SlotCount {
                kind,
                expected: layout.fields.len(),
                found: slots,
            });
        }
        let extras = usize::from(u16_at(bytes, 4));
        if u16_at(bytes, 6) != 0 {
            return Err(WireError::Reserved);
        }
        let heap = HEADER_LEN + slots * SLOT_LEN + extras * EXTRA_LEN;
        if bytes.len() < heap {
            return Err(WireError::Truncated {
                needed: heap,
                len: bytes.len(),
            });
        }
        Ok(EventView {
            bytes,
            kind,
            layout,
            extras,
            heap,
            texts: [const { Cell::new(None) }; MAX_TEXTS],
        })
    }

    /// The kind of the event in `bytes`, after the checks of [`new`](Self::new) (header, slot
    /// count, tables in bounds), without keeping a view.
    #[inline]
    pub fn kind_of(bytes: &[u8]) -> Result<EventKind, WireError> {
        EventView::new(bytes).map(|v| v.kind)
    }

    /// The kind of the event.
    #[inline]
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &'e [u8] {
        self.bytes
    }

    /// The body's layout (field names in slot order).
    pub fn layout(&self) -> &'static BodyLayout {
        self.layout
    }

    /// When the event happened, in milliseconds since the Unix epoch (UTC).
    #[inline]
    pub fn timestamp(&self) -> u64 {
        u64_at(self.bytes, 8)
    }

    /// The process the event is about (see [`Event::pid`]).
    #[inline]
    pub fn pid(&self) -> u32 {
        u32_at(self.bytes, 16)
    }

    /// The host the event happened on.
    #[inline]
    pub fn host(&self) -> &'e str {
        self.text_in(self.heap, self.end_at(20)).unwrap_or("")
    }

    /// The end offset stored at `at`.
    #[inline]
    fn end_at(&self, at: usize) -> usize {
        u32_at(self.bytes, at) as usize
    }

    /// The text `start..end`; `None` if the range is reversed or out of bounds, or not UTF-8.
    #[inline]
    fn text_in(&self, start: usize, end: usize) -> Option<&'e str> {
        core::str::from_utf8(self.raw_in(start, end)?).ok()
    }

    #[inline]
    fn raw_in(&self, start: usize, end: usize) -> Option<&'e [u8]> {
        self.bytes.get(start..end)
    }

    #[inline]
    fn slot_at(i: usize) -> usize {
        HEADER_LEN + i * SLOT_LEN
    }

    /// Where body text `i` (< `layout.texts`) starts: where the previous text ends.
    #[inline]
    fn text_start(&self, i: usize) -> usize {
        if i == 0 {
            self.end_at(20)
        } else {
            self.end_at(Self::slot_at(i - 1))
        }
    }

    /// The byte range of body text `i`, as stored (not checked).
    #[inline]
    fn text_range(&self, i: usize) -> (usize, usize) {
        (self.text_start(i), self.end_at(Self::slot_at(i)))
    }

    /// The byte ranges of extra field `i`'s name and value, as stored (not checked).
    fn extra_ranges(&self, i: usize) -> ((usize, usize), (usize, usize)) {
        let at = HEADER_LEN + self.layout.fields.len() * SLOT_LEN + i * EXTRA_LEN;
        let start = if i > 0 {
            self.end_at(at - 4)
        } else if self.layout.texts > 0 {
            self.end_at(Self::slot_at(self.layout.texts - 1))
        } else {
            self.end_at(20)
        };
        let name_end = self.end_at(at);
        ((start, name_end), (name_end, self.end_at(at + 4)))
    }

    /// The text in body slot `i` (empty if `i` is not a text slot of this kind).
    #[inline]
    pub(crate) fn text_at(&self, i: usize) -> &'e str {
        if i >= self.layout.texts {
            return "";
        }
        let Some(cached) = self.texts.get(i) else {
            return "";
        };
        if let Some(text) = cached.get() {
            return text;
        }
        let (start, end) = self.text_range(i);
        let text = self.text_in(start, end).unwrap_or("");
        cached.set(Some(text));
        text
    }

    /// The number in body slot `i` (0 if `i` is out of range).
    #[inline]
    pub(crate) fn int_at(&self, i: usize) -> u64 {
        if i >= self.layout.fields.len() {
            return 0;
        }
        u64::from(u32_at(self.bytes, Self::slot_at(i)))
    }

    /// The value of body slot `i`, typed by the layout.
    pub fn slot_value(&self, i: usize) -> Option<Value<'e>> {
        if i >= self.layout.fields.len() {
            return None;
        }
        Some(match self.layout.slot_type(i) {
            SlotType::Text => Value::Str(self.text_at(i)),
            SlotType::Int => Value::Int(self.int_at(i)),
            SlotType::Flag => Value::Bool(self.int_at(i) != 0),
        })
    }

    /// The number of extra fields (see [`Event::extra`]).
    pub fn extra_len(&self) -> usize {
        self.extras
    }

    /// Extra field `i` as `(name, value)`, if `i < extra_len()`.
    pub fn extra(&self, i: usize) -> Option<(&'e str, &'e str)> {
        if i >= self.extras {
            return None;
        }
        let ((ns, ne), (vs, ve)) = self.extra_ranges(i);
        Some((
            self.text_in(ns, ne).unwrap_or(""),
            self.text_in(vs, ve).unwrap_or(""),
        ))
    }

    /// The bytes of body text slot `i` as stored: bounds-checked but not checked as UTF-8 (a host
    /// encodes only UTF-8; a scanner that works on bytes need not pay for the check). `None` if `i`
    /// is not a text slot of this kind or its range is out of bounds.
    #[inline]
    pub fn text_bytes(&self, i: usize) -> Option<&'e [u8]> {
        if i >= self.layout.texts {
            return None;
        }
        let (start, end) = self.text_range(i);
        self.raw_in(start, end)
    }

    /// Extra field `i`'s name and value bytes as stored (bounds-checked, not checked as UTF-8;
    /// see [`text_bytes`](Self::text_bytes)), if `i < extra_len()`.
    pub fn extra_bytes(&self, i: usize) -> Option<(&'e [u8], &'e [u8])> {
        if i >= self.extras {
            return None;
        }
        let ((ns, ne), (vs, ve)) = self.extra_ranges(i);
        Some((self.raw_in(ns, ne)?, self.raw_in(vs, ve)?))
    }

    /// The value bytes of the first extra field named `name` (as stored, see
    /// [`extra_bytes`](Self::extra_bytes)): names of another length are passed over without
    /// reading them, so a search costs a few loads per extra field.
    pub fn extra_named(&self, name: &[u8]) -> Option<&'e [u8]> {
        if self.extras == 0 {
            return None;
        }
        // In order, as `extra_ranges` reads them: an extra's name starts where the previous
        // value ends, so each step reads two ends, not three.
        let mut at = HEADER_LEN + self.layout.fields.len() * SLOT_LEN;
        let ((mut start, _), _) = self.extra_ranges(0);
        for _ in 0..self.extras {
            let name_end = self.end_at(at);
            let value_end = self.end_at(at + 4);
            if name_end.wrapping_sub(start) == name.len()
                && self.raw_in(start, name_end) == Some(name)
                && let Some(value) = self.raw_in(name_end, value_end)
            {
                return Some(value);
            }
            start = value_end;
            at += EXTRA_LEN;
        }
        None
    }

    /// Every extra field, as `(name, value)`.
    pub fn extras(&self) -> impl Iterator<Item = (&'e str, &'e str)> + '_ {
        (0..self.extras).filter_map(|i| self.extra(i))
    }

    /// The value of the field named `name`, with exactly the meaning of [`Event::field`]: a body field,
    /// an extra field, or one of the header fields `Computer`, `ProcessId` (`SourceProcessId` for a
    /// process access) and `Timestamp`; a body field at its default yields an extra field of the same
    /// name when there is one.
    pub fn field(&self, name: &str) -> Option<Value<'e>> {
        let body = self.layout.slot(name).and_then(|i| self.slot_value(i));
        let extra = || {
            self.extras()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| value)
        };
        resolve_field(
            name,
            body,
            extra,
            Header {
                kind: self.kind,
                host: || self.host(),
                pid: self.pid(),
                timestamp: self.timestamp(),
            },
        )
    }

    /// The header field named `name` (`Computer`, `ProcessId`, `SourceProcessId` for a process
    /// access, `Timestamp`), as [`field`](Self::field) finds it when the body and the extra fields
    /// have no field of that name.
    pub fn header_field(&self, name: &str) -> Option<Value<'e>> {
        resolve_field(
            name,
            None,
            || None,
            Header {
                kind: self.kind,
                host: || self.host(),
                pid: self.pid(),
                timestamp: self.timestamp(),
            },
        )
    }

    /// The text of the field named `name`, or `""` when the event has no such text field.
    pub fn text(&self, name: &str) -> &'e str {
        match self.field(name) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    /// Calls `f` with every body field's name and value, in slot order.
    pub fn for_each_body_field(&self, f: &mut dyn FnMut(&'static str, Value<'e>)) {
        for (i, name) in self.layout.fields.iter().enumerate() {
            if let Some(v) = self.slot_value(i) {
                f(name, v);
            }
        }
    }

    /// Checks every text (bounds and UTF-8), every flag and the reserved bytes: after `Ok`, the view
    /// reads exactly what [`to_event`](Self::to_event) returns. Rules do not need it; tools do.
    pub fn check(&self) -> Result<(), WireError> {
        let text = |(start, end): (usize, usize), field: &'static str| -> Result<(), WireError> {
            let raw = self
                .raw_in(start, end)
                .ok_or(WireError::OutOfBounds { field })?;
            core::str::from_utf8(raw)
                .map(|_| ())
                .map_err(|_| WireError::NotUtf8 { field })
        };
        text((self.heap, self.end_at(20)), "host")?;
        for (i, name) in self.layout.fields.iter().enumerate() {
            match self.layout.slot_type(i) {
                SlotType::Text => text(self.text_range(i), name)?,
                SlotType::Int => {}
                SlotType::Flag => {
                    if self.int_at(i) > 1 {
                        return Err(WireError::BadFlag { field: name });
                    }
                }
            }
        }
        for i in 0..self.extras {
            let (name, value) = self.extra_ranges(i);
            text(name, "extra")?;
            text(value, "extra")?;
        }
        Ok(())
    }

    /// Decodes the whole event (after [`check`](Self::check)), borrowing every text from the buffer.
    pub fn to_event(&self) -> Result<Event<'e>, WireError> {
        self.check()?;
        let mut data = EventData::empty(self.kind);
        data.read_slots(self);
        Ok(Event {
            host: Cow::Borrowed(self.host()),
            timestamp: self.timestamp(),
            pid: self.pid(),
            data,
            extra: self
                .extras()
                .map(|(name, value)| Field {
                    name: Cow::Borrowed(name),
                    value: Cow::Borrowed(value),
                })
                .collect(),
        })
    }
}

/// Writes an event in the wire format; see [`Event::encode_into`].
pub(crate) struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    base: usize,
    next_slot: usize,
}

impl<'b> Writer<'b> {
    /// Appends `event` to `buf`.
    pub(crate) fn encode(event: &Event<'_>, buf: &'b mut Vec<u8>) -> Result<(), WireError> {
        let base = buf.len();
        let layout = event.data.layout();
        let extras = u16::try_from(event.extra.len()).map_err(|_| WireError::TooLarge)?;
        let slots = u16::try_from(layout.fields.len()).map_err(|_| WireError::TooLarge)?;
        let table = HEADER_LEN + layout.fields.len() * SLOT_LEN + event.extra.len() * EXTRA_LEN;
        buf.resize(base + table, 0);
        buf[base] = WIRE_VERSION;
        buf[base + 1] = event.kind() as u8;
        buf[base + 2..base + 4].copy_from_slice(&slots.to_le_bytes());
        buf[base + 4..base + 6].copy_from_slice(&extras.to_le_bytes());
        buf[base + 8..base + 16].copy_from_slice(&event.timestamp.to_le_bytes());
        buf[base + 16..base + 20].copy_from_slice(&event.pid.to_le_bytes());
        let mut w = Writer {
            buf,
            base,
            next_slot: 0,
        };
        // The heap in reading order: host, body texts in slot order (`write_slots` writes the text
        // slots first), then each extra's name and value.
        w.put_text(base + 20, &event.host)?;
        event.data.write_slots(&mut w)?;
        debug_assert_eq!(w.next_slot, layout.fields.len());
        let extra_base = base + HEADER_LEN + layout.fields.len() * SLOT_LEN;
        for (i, f) in event.extra.iter().enumerate() {
            w.put_text(extra_base + i * EXTRA_LEN, &f.name)?;
            w.put_text(extra_base + i * EXTRA_LEN + 4, &f.value)?;
        }
        Ok(())
    }

    /// Appends `text` to the heap and writes its end offset at `at`.
    fn put_text(&mut self, at: usize, text: &str) -> Result<(), WireError> {
        let end = (self.buf.len() - self.base)
            .checked_add(text.len())
            .and_then(|end| u32::try_from(end).ok())
            .ok_or(WireError::TooLarge)?;
        self.buf.extend_from_slice(text.as_bytes());
        self.buf[at..at + 4].copy_from_slice(&end.to_le_bytes());
        Ok(())
    }

    fn slot(&mut self) -> usize {
        let at = self.base + HEADER_LEN + self.next_slot * SLOT_LEN;
        self.next_slot += 1;
        at
    }

    /// Writes the next slot as text.
    pub(crate) fn text(&mut self, text: &str) -> Result<(), WireError> {
        let at = self.slot();
        self.put_text(at, text)
    }

    /// Writes the next slot as a number (flags are 0 or 1).
    pub(crate) fn int(&mut self, n: u32) {
        let at = self.slot();
        self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
}

/// Finds `name` in `names` at compile time (the body views use it to fix each accessor's slot).
pub(crate) const fn slot_of(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        let a = names[i].as_bytes();
        let b = name.as_bytes();
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no field of that name in this body")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NetworkConnect;
    use alloc::format;
    use alloc::string::String;

    /// An event of `kind` with every body field set to something distinct, plus extras.
    fn full(kind: EventKind) -> Event<'static> {
        let mut data = EventData::empty(kind);
        for (i, name) in data.field_names().iter().enumerate() {
            let value = match data.layout().slot_type(i) {
                SlotType::Text => format!("{name}-välue-{i}"),
                SlotType::Int => format!("{}", i + 1),
                SlotType::Flag => String::from("true"),
            };
            assert!(data.set_field(name, value.into()), "{kind} {name}");
        }
        let mut event = Event::new(data);
        event.host = "ws-1".into();
        event.timestamp = 1_700_000_000_123;
        event.pid = 4242;
        event.extra.push(Field {
            name: "Extra1".into(),
            value: "x".into(),
        });
        event.extra.push(Field {
            name: "Rule".into(),
            value: "".into(),
        });
        event
    }

    #[test]
    fn every_kind_round_trips_and_reads_the_same_by_name() {
        for kind in EventKind::ALL {
            let event = full(*kind);
            let bytes = event.to_bytes().unwrap();
            let view = EventView::new(&bytes).unwrap();
            view.check().unwrap();
            assert_eq!(view.kind(), *kind);
            assert_eq!(view.to_event().unwrap(), event, "{kind}");
            let mut names: Vec<&str> = event.data.field_names().to_vec();
            names.extend([
                "Extra1",
                "Rule",
                "Computer",
                "ProcessId",
                "Timestamp",
                "Nope",
            ]);
            names.push("SourceProcessId");
            for name in names {
                assert_eq!(view.field(name), event.field(name), "{kind} {name}");
            }
            assert_eq!(view.extras().count(), 2);
            for (name, value) in view.extras() {
                assert_eq!(view.extra_named(name.as_bytes()), Some(value.as_bytes()));
            }
            for absent in ["Rul", "Rules", "rule", ""] {
                assert_eq!(view.extra_named(absent.as_bytes()), None, "{absent:?}");
            }
        }
    }

    #[test]
    fn extra_named_walks_as_extra_bytes_reads_even_on_damaged_ends() {
        // Duplicate names (the first wins) and, on damaged copies, ends that point anywhere:
        // the walk must find what reading each extra by its index finds.
        let mut event = full(EventKind::ProcessStart);
        for (name, value) in [("Rule", "second"), ("Dup", "a"), ("Dup", "b")] {
            event.extra.push(Field {
                name: name.into(),
                value: value.into(),
            });
        }
        let bytes = event.to_bytes().unwrap();
        let names: [&[u8]; 6] = [b"Extra1", b"Rule", b"Dup", b"Nope", b"", b"R"];
        fn by_index<'e>(view: &EventView<'e>, name: &[u8]) -> Option<&'e [u8]> {
            (0..view.extra_len())
                .filter_map(|i| view.extra_bytes(i))
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        }
        let mut checked = 0;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4_000 {
            let mut damaged = bytes.clone();
            if round > 0 {
                for _ in 0..1 + round % 3 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let at = usize::try_from(state % 65_521).unwrap_or(0) % damaged.len();
                    damaged[at] = state.to_le_bytes()[4];
                }
            }
            let Ok(view) = EventView::new(&damaged) else {
                continue;
            };
            for name in names {
                assert_eq!(
                    view.extra_named(name),
                    by_index(&view, name),
                    "round {round}"
                );
            }
            checked += 1;
        }
        assert!(checked > 100, "only {checked} damaged copies were read");
        let view = EventView::new(&bytes).unwrap();
        assert_eq!(
            view.extra_named(b"Dup"),
            Some(&b"a"[..]),
            "the first of a name"
        );
    }

    #[test]
    fn typed_views_read_their_slots() {
        let body = NetworkConnect {
            image: "C:\\x\\a.exe".into(),
            destination_ip: "10.0.0.9".into(),
            destination_port: 4444,
            initiated: true,
            ..Default::default()
        };
        let bytes = Event::new(EventData::NetworkConnect(body))
            .to_bytes()
            .unwrap();
        let view = EventView::new(&bytes).unwrap();
        assert!(view.process_start().is_none());
        let n = view.network().unwrap();
        assert_eq!(n.image(), "C:\\x\\a.exe");
        assert_eq!(n.destination_ip(), "10.0.0.9");
        assert_eq!(n.destination_port(), 4444);
        assert_eq!(n.source_port(), 0);
        assert!(n.initiated());
        assert_eq!(n.protocol(), "");
    }

    #[test]
    fn damaged_bytes_are_refused_or_read_as_empty_never_panic() {
        let bytes = full(EventKind::ProcessStart).to_bytes().unwrap();
        assert!(matches!(
            EventView::new(&bytes[..10]),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            EventView::new(&bytes[..HEADER_LEN + 3]),
            Err(WireError::Truncated { .. })
        ));
        let mut b = bytes.clone();
        b[0] = 1;
        assert_eq!(EventView::new(&b).unwrap_err(), WireError::Version(1));
        let mut b = bytes.clone();
        b[1] = 99;
        assert_eq!(EventView::new(&b).unwrap_err(), WireError::UnknownKind(99));
        let mut b = bytes.clone();
        b[2] = 3;
        assert!(matches!(
            EventView::new(&b),
            Err(WireError::SlotCount { found: 3, .. })
        ));
        // The Image slot pointing past the end: the view reads it as empty, check() names it.
        let mut b = bytes.clone();
        b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let view = EventView::new(&b).unwrap();
        assert_eq!(view.process_start().unwrap().image(), "");
        assert_eq!(view.check(), Err(WireError::OutOfBounds { field: "Image" }));
        // Text cut short of the heap: every field reads without panicking.
        let cut = &bytes[..bytes.len() - 5];
        let view = EventView::new(cut).unwrap();
        view.for_each_body_field(&mut |_, _| {});
        assert!(view.check().is_err());
        // Invalid UTF-8 in the last text.
        let mut b = bytes.clone();
        let last = b.len() - 1;
        b[last] = 0xff;
        assert!(matches!(
            EventView::new(&b).unwrap().check(),
            Err(WireError::NotUtf8 { .. })
        ));
        assert!(Event::from_bytes(&b).is_err());
    }

    #[test]
    fn encode_into_appends_after_existing_bytes() {
        let event = full(EventKind::DnsQuery);
        let mut buf = alloc::vec![7u8; 5];
        event.encode_into(&mut buf).unwrap();
        assert_eq!(&buf[..5], &[7; 5]);
        assert_eq!(Event::from_bytes(&buf[5..]).unwrap(), event);
    }
}
