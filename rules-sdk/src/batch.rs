//! The batch format: several encoded events in one buffer, what a rule pack's `rulebox_on_events`
//! reads (ABI 3, [`crate::abi`]).
//!
//! ```text
//!  offset  size        field
//!  ──────  ──────────  ───────────────────────────────────────────────────────────────────
//!       0  u32         event count n (1 ..= MAX_BATCH_EVENTS)
//!       4  u32         candidates offset c: 0 = no candidate table; else where it starts
//!       8  8 × n       per event, in order: offset (u32, from the start of the batch) and
//!                      length (u32) of its bytes
//!       …  bytes       the events, each in the wire format of crate::wire, back to back
//!  only when c ≠ 0:
//!       c  8 × n       the candidate table: per event, in order, offset (u32, from the start
//!                      of the batch) and count (u32) of its candidate list
//!       …  4 × count   the lists, back to back: each `count` rule indices (u32), strictly
//!                      increasing
//! ```
//!
//! Integers are little-endian; nothing is aligned. The host writes the events back to back after
//! the table, in order, then the candidate table, if any, and the lists in the same order; the
//! reader trusts none of it: [`BatchView::new`] checks the header and that both tables fit, and
//! [`BatchView::event`] and [`BatchView::candidates`] check each range against the buffer before
//! they hand out a byte.
//!
//! The candidate table is the host's shared prefilter: one index over all the packs of a rule set
//! names, per event, the rules of this pack worth running on it. A batch without one (`c` = 0) is
//! the format before the table existed, byte for byte.

use alloc::vec::Vec;

/// Size of the batch header (count and candidates offset).
pub const BATCH_HEADER_LEN: usize = 8;

/// Size of one entry of the event table.
pub const BATCH_ENTRY_LEN: usize = 8;

/// Size of one entry of the candidate table.
pub const BATCH_CANDIDATES_ENTRY_LEN: usize = 8;

/// Most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 4096;

/// Why bytes are not a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Shorter than the header and table say.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// The count is zero or above [`MAX_BATCH_EVENTS`].
    Count(u32),
    /// An event's range points outside the batch or into its table.
    OutOfBounds {
        /// The event's index.
        index: usize,
    },
    /// The candidate table (the nonzero word at offset 4) starts inside the header or the event
    /// table, or does not fit in the batch.
    CandidateTable {
        /// Where the header says the table starts.
        offset: u32,
    },
    /// An event's candidate list points outside the batch or into its header and event table.
    Candidates {
        /// The event's index.
        index: usize,
    },
    /// Given to [`write_batch_with_candidates`]: not one candidate list per event.
    CandidateCount {
        /// The number of events.
        events: usize,
        /// The number of candidate lists.
        lists: usize,
    },
    /// Given to [`write_batch_with_candidates`]: an event's candidate list is not strictly
    /// increasing.
    CandidatesUnordered {
        /// The event's index.
        index: usize,
    },
    /// More than [`MAX_BATCH_EVENTS`] events, or more than 4 GiB, given to [`write_batch`] or
    /// [`write_batch_with_candidates`].
    TooLarge,
}

impl core::fmt::Display for BatchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BatchError::Truncated { needed, len } => {
                write!(f, "batch truncated: {len} bytes, its table needs {needed}")
            }
            BatchError::Count(n) => write!(
                f,
                "batch claims {n} events; a batch holds 1 to {MAX_BATCH_EVENTS}"
            ),
            BatchError::OutOfBounds { index } => {
                write!(f, "event {index} of the batch points outside it")
            }
            BatchError::CandidateTable { offset } => write!(
                f,
                "the batch's candidate table at offset {offset} overlaps its event table or \
                 points outside it"
            ),
            BatchError::Candidates { index } => write!(
                f,
                "the candidate list of event {index} of the batch points outside it"
            ),
            BatchError::CandidateCount { events, lists } => write!(
                f,
                "{lists} candidate lists for a batch of {events} events; it needs one per event"
            ),
            BatchError::CandidatesUnordered { index } => write!(
                f,
                "the candidate list of event {index} is not strictly increasing"
            ),
            BatchError::TooLarge => f.write_str("too many events or bytes for one batch"),
        }
    }
}

impl core::error::Error for BatchError {}

#[inline]
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The end of the header and event table of a batch of `n` events (`n` ≤ [`MAX_BATCH_EVENTS`]).
#[inline]
const fn table_end(n: usize) -> usize {
    BATCH_HEADER_LEN + n * BATCH_ENTRY_LEN
}

/// A batch, read in place.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'b> {
    bytes: &'b [u8],
    count: usize,
    /// Where the candidate table starts (checked to fit), or 0 when there is none.
    candidates: usize,
}

impl<'b> BatchView<'b> {
    /// Checks the header, that the event table fits in `bytes` and, when the batch has a candidate
    /// table, that it lies after the event table and fits too. Each event's range and each
    /// candidate list's range are checked when they are read.
    pub fn new(bytes: &'b [u8]) -> Result<BatchView<'b>, BatchError> {
        let (Some(count), Some(offset)) = (u32_at(bytes, 0), u32_at(bytes, 4)) else {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                len: bytes.len(),
            });
        };
        let n = count as usize;
        if n == 0 || n > MAX_BATCH_EVENTS {
            return Err(BatchError::Count(count));
        }
        let end = table_end(n);
        if bytes.len() < end {
            return Err(BatchError::Truncated {
                needed: end,
                len: bytes.len(),
            });
        }
        let candidates = offset as usize;
        if candidates != 0 {
            let fits = candidates
                .checked_add(n * BATCH_CANDIDATES_ENTRY_LEN)
                .is_some_and(|table| table <= bytes.len());
            if candidates < end || !fits {
                return Err(BatchError::CandidateTable { offset });
            }
        }
        Ok(BatchView {
            bytes,
            count: n,
            candidates,
        })
    }

    /// The number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no event (never true of a batch [`new`](Self::new) accepted).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes of event `index`; an error if `index` is out of range or its range points outside
    /// the batch or into its header and table.
    #[inline]
    pub fn event(&self, index: usize) -> Result<&'b [u8], BatchError> {
        let bad = BatchError::OutOfBounds { index };
        if index >= self.count {
            return Err(bad);
        }
        let at = BATCH_HEADER_LEN + index * BATCH_ENTRY_LEN;
        let (Some(offset), Some(len)) = (u32_at(self.bytes, at), u32_at(self.bytes, at + 4)) else {
            return Err(bad);
        };
        let start = offset as usize;
        if start < table_end(self.count) {
            return Err(bad);
        }
        start
            .checked_add(len as usize)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(bad)
    }

    /// Whether the batch has a candidate table (the host's shared prefilter names each event's
    /// rules).
    #[inline]
    pub fn has_candidates(&self) -> bool {
        self.candidates != 0
    }

    /// The candidate list of event `index`: `Ok(None)` when the batch has no candidate table; an
    /// error if `index` is out of range or the list points outside the batch or into its header
    /// and event table.
    ///
    /// The reader checks the list's bounds only: that its indices are strictly increasing, as the
    /// format requires, is for the consumer to check (the SDK's `rulebox_on_events` refuses the
    /// batch otherwise).
    #[inline]
    pub fn candidates(&self, index: usize) -> Result<Option<Candidates<'b>>, BatchError> {
        if self.candidates == 0 {
            return Ok(None);
        }
        let bad = BatchError::Candidates { index };
        if index >= self.count {
            return Err(bad);
        }
        // In the buffer: `new` checked that the table fits.
        let at = self.candidates + index * BATCH_CANDIDATES_ENTRY_LEN;
        let (Some(offset), Some(count)) = (u32_at(self.bytes, at), u32_at(self.bytes, at + 4))
        else {
            return Err(bad);
        };
        let start = offset as usize;
        if start < table_end(self.count) {
            return Err(bad);
        }
        (count as usize)
            .checked_mul(4)
            .and_then(|len| start.checked_add(len))
            .and_then(|end| self.bytes.get(start..end))
            .map(|bytes| Some(Candidates { bytes }))
            .ok_or(bad)
    }
}

/// One event's candidate list, read in place: rule indices (u32, little-endian), which the format
/// requires to be strictly increasing ([`BatchView::candidates`] does not check that).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Candidates<'b> {
    /// A multiple of 4 bytes.
    bytes: &'b [u8],
}

impl<'b> Candidates<'b> {
    /// The number of rule indices.
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether the list names no rule.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `i`-th rule index, if `i` is in range.
    #[inline]
    pub fn get(&self, i: usize) -> Option<u32> {
        u32_at(self.bytes, i.checked_mul(4)?)
    }

    /// The rule indices, in the list's order.
    #[inline]
    pub fn iter(self) -> impl ExactSizeIterator<Item = u32> + DoubleEndedIterator + Clone + 'b {
        self.bytes
            .chunks_exact(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

impl Candidates<'_> {
    /// Appends to `out` the rules both in the list and in `subscribed` (strictly increasing), in
    /// increasing order: a linear merge, what the SDK's `rulebox_on_events` runs. False if the
    /// list is not strictly increasing (checked over the whole list, whatever `subscribed` holds).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        allow(dead_code, reason = "used by the wasm32 glue, tested on the host")
    )]
    pub(crate) fn merge_subscribed(self, subscribed: &[u32], out: &mut Vec<u32>) -> bool {
        let mut rest = subscribed.iter().copied().peekable();
        let mut last = None;
        for rule in self.iter() {
            if last.is_some_and(|l| rule <= l) {
                return false;
            }
            last = Some(rule);
            while rest.next_if(|&s| s < rule).is_some() {}
            if rest.next_if_eq(&rule).is_some() {
                out.push(rule);
            }
        }
        true
    }
}

impl core::fmt::Debug for Candidates<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The size of the header, event table and event bytes of `events`, unchecked against 4 GiB; an
/// error if there are no events, more than [`MAX_BATCH_EVENTS`], or the sum overflows.
fn events_len<'e>(events: impl ExactSizeIterator<Item = &'e [u8]>) -> Result<usize, BatchError> {
    let n = events.len();
    if n == 0 || n > MAX_BATCH_EVENTS {
        return Err(BatchError::TooLarge);
    }
    events
        .map(<[u8]>::len)
        .try_fold(table_end(n), usize::checked_add)
        .ok_or(BatchError::TooLarge)
}

/// `total` if it is below 4 GiB.
fn below_4_gib(total: usize) -> Result<usize, BatchError> {
    match u32::try_from(total) {
        Ok(_) => Ok(total),
        Err(_) => Err(BatchError::TooLarge),
    }
}

/// Writes `v` (which the caller checked fits in 32 bits) at `at`.
#[inline]
fn put(dest: &mut [u8], at: usize, v: usize) {
    dest[at..at + 4].copy_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
}

/// Writes the header (with 0 at offset 4: no candidate table), the event table and the events into
/// `dest`, which the caller checked is exactly long enough for them (and anything after them) and
/// below 4 GiB; returns where the events end.
fn write_events<'e>(events: impl ExactSizeIterator<Item = &'e [u8]>, dest: &mut [u8]) -> usize {
    let n = events.len();
    put(dest, 0, n);
    put(dest, 4, 0);
    let mut offset = table_end(n);
    for (i, e) in events.enumerate() {
        let at = BATCH_HEADER_LEN + i * BATCH_ENTRY_LEN;
        put(dest, at, offset);
        put(dest, at + 4, e.len());
        dest[offset..offset + e.len()].copy_from_slice(e);
        offset += e.len();
    }
    offset
}

/// The size of the batch of `events` (header, table and bytes); an error if there are none, more
/// than [`MAX_BATCH_EVENTS`], or more than 4 GiB.
pub fn batch_len<'e>(events: impl ExactSizeIterator<Item = &'e [u8]>) -> Result<usize, BatchError> {
    below_4_gib(events_len(events)?)
}

/// Writes `events` as one batch into `dest`, which must be exactly [`batch_len`] bytes long: the
/// format a pack's `rulebox_on_events` reads.
pub fn write_batch_to<'e>(
    events: impl ExactSizeIterator<Item = &'e [u8]> + Clone,
    dest: &mut [u8],
) -> Result<(), BatchError> {
    let total = batch_len(events.clone())?;
    if dest.len() != total {
        return Err(BatchError::TooLarge);
    }
    // Every value fits in 32 bits: `batch_len` checked the total.
    write_events(events, dest);
    Ok(())
}

/// Writes `events` as one batch into `out` (replacing what it held).
pub fn write_batch<'e>(
    events: impl ExactSizeIterator<Item = &'e [u8]> + Clone,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    out.clear();
    let total = batch_len(events.clone())?;
    out.resize(total, 0);
    write_batch_to(events, out)
}

/// The size of the batch of `events` with a candidate table, `candidates` holding one list per
/// event, in order: header, event table, events, candidate table and lists. An error if there are
/// no events, more than [`MAX_BATCH_EVENTS`], not one list per event
/// ([`BatchError::CandidateCount`]), a list that is not strictly increasing
/// ([`BatchError::CandidatesUnordered`]), or more than 4 GiB in all.
pub fn batch_len_with_candidates<'e, 'c>(
    events: impl ExactSizeIterator<Item = &'e [u8]>,
    candidates: impl ExactSizeIterator<Item = &'c [u32]>,
) -> Result<usize, BatchError> {
    let n = events.len();
    if candidates.len() != n {
        return Err(BatchError::CandidateCount {
            events: n,
            lists: candidates.len(),
        });
    }
    let mut total = events_len(events)?
        .checked_add(n * BATCH_CANDIDATES_ENTRY_LEN)
        .ok_or(BatchError::TooLarge)?;
    for (index, list) in candidates.enumerate() {
        if list.windows(2).any(|w| w[0] >= w[1]) {
            return Err(BatchError::CandidatesUnordered { index });
        }
        total = list
            .len()
            .checked_mul(4)
            .and_then(|len| total.checked_add(len))
            .ok_or(BatchError::TooLarge)?;
    }
    below_4_gib(total)
}

/// Writes `events` as one batch with a candidate table into `dest`, which must be exactly
/// [`batch_len_with_candidates`] bytes long; `candidates` holds one strictly increasing list of
/// rule indices per event, in order.
pub fn write_batch_with_candidates_to<'e, 'c>(
    events: impl ExactSizeIterator<Item = &'e [u8]> + Clone,
    candidates: impl ExactSizeIterator<Item = &'c [u32]> + Clone,
    dest: &mut [u8],
) -> Result<(), BatchError> {
    let total = batch_len_with_candidates(events.clone(), candidates.clone())?;
    if dest.len() != total {
        return Err(BatchError::TooLarge);
    }
    let n = candidates.len();
    // Every value fits in 32 bits: `batch_len_with_candidates` checked the total. The candidate
    // table starts where the events end, after the event table, so its offset is never 0.
    let table = write_events(events, dest);
    put(dest, 4, table);
    let mut offset = table + n * BATCH_CANDIDATES_ENTRY_LEN;
    for (i, list) in candidates.enumerate() {
        let at = table + i * BATCH_CANDIDATES_ENTRY_LEN;
        put(dest, at, offset);
        put(dest, at + 4, list.len());
        for &rule in list {
            dest[offset..offset + 4].copy_from_slice(&rule.to_le_bytes());
            offset += 4;
        }
    }
    Ok(())
}

/// Writes `events` as one batch with a candidate table into `out` (replacing what it held); see
/// [`write_batch_with_candidates_to`].
pub fn write_batch_with_candidates<'e, 'c>(
    events: impl ExactSizeIterator<Item = &'e [u8]> + Clone,
    candidates: impl ExactSizeIterator<Item = &'c [u32]> + Clone,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    out.clear();
    let total = batch_len_with_candidates(events.clone(), candidates.clone())?;
    out.resize(total, 0);
    write_batch_with_candidates_to(events, candidates, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{format, vec};

    #[test]
    fn a_written_batch_reads_back() {
        let events: [&[u8]; 3] = [b"one", b"", b"three"];
        let mut buf = Vec::new();
        write_batch(events.iter().copied(), &mut buf).unwrap();
        let view = BatchView::new(&buf).unwrap();
        assert_eq!(view.len(), 3);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(view.event(i).unwrap(), *e);
        }
        assert_eq!(view.event(3), Err(BatchError::OutOfBounds { index: 3 }));
    }

    #[test]
    fn bad_batches_are_refused() {
        assert!(matches!(
            BatchView::new(&[1, 0, 0]),
            Err(BatchError::Truncated { .. })
        ));
        assert_eq!(BatchView::new(&[0; 8]).unwrap_err(), BatchError::Count(0));
        let mut buf = Vec::new();
        write_batch([&b"abc"[..]].into_iter(), &mut buf).unwrap();
        // A nonzero word at offset 4 is a candidate table, here inside the header.
        let mut reserved = buf.clone();
        reserved[4] = 1;
        assert_eq!(
            BatchView::new(&reserved).unwrap_err(),
            BatchError::CandidateTable { offset: 1 }
        );
        // An event pointing into the table, or past the end.
        let mut into_table = buf.clone();
        into_table[8..12].copy_from_slice(&4u32.to_le_bytes());
        let view = BatchView::new(&into_table).unwrap();
        assert_eq!(view.event(0), Err(BatchError::OutOfBounds { index: 0 }));
        let mut past = buf.clone();
        past[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let view = BatchView::new(&past).unwrap();
        assert_eq!(view.event(0), Err(BatchError::OutOfBounds { index: 0 }));
        // A count whose table does not fit.
        let mut big = buf;
        big[0..4].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(
            BatchView::new(&big),
            Err(BatchError::Truncated { .. })
        ));
        assert_eq!(
            write_batch(core::iter::empty(), &mut Vec::new()),
            Err(BatchError::TooLarge)
        );
    }

    const EVENTS: [&[u8]; 3] = [b"one", b"", b"three"];
    const LISTS: [&[u32]; 3] = [&[0, 2, 5], &[], &[7]];

    /// `EVENTS` with `LISTS`: event table at 8..32, events at 32..40, candidate table at 40..64,
    /// lists at 64..80.
    fn with_candidates() -> Vec<u8> {
        let mut buf = Vec::new();
        write_batch_with_candidates(EVENTS.iter().copied(), LISTS.iter().copied(), &mut buf)
            .unwrap();
        buf
    }

    fn set(buf: &mut [u8], at: usize, v: u32) {
        buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn a_batch_with_candidates_reads_back() {
        let buf = with_candidates();
        assert_eq!(
            batch_len_with_candidates(EVENTS.iter().copied(), LISTS.iter().copied()),
            Ok(buf.len())
        );
        assert_eq!(buf.len(), 80);
        // The layout: the candidate table right after the events, the lists right after it.
        assert_eq!(u32_at(&buf, 4), Some(40));
        assert_eq!(u32_at(&buf, 40), Some(64));
        assert_eq!(u32_at(&buf, 44), Some(3));
        let view = BatchView::new(&buf).unwrap();
        assert_eq!(view.len(), 3);
        assert!(view.has_candidates());
        for (i, (e, list)) in EVENTS.iter().zip(LISTS).enumerate() {
            assert_eq!(view.event(i).unwrap(), *e);
            let c = view.candidates(i).unwrap().unwrap();
            assert_eq!(c.len(), list.len());
            assert_eq!(c.is_empty(), list.is_empty());
            assert_eq!(c.iter().collect::<Vec<_>>(), list);
            assert_eq!(c.iter().len(), list.len());
            for (j, &rule) in list.iter().enumerate() {
                assert_eq!(c.get(j), Some(rule));
            }
            assert_eq!(c.get(list.len()), None);
            assert_eq!(c.get(usize::MAX), None);
        }
        assert_eq!(
            format!("{:?}", view.candidates(0).unwrap().unwrap()),
            "[0, 2, 5]"
        );
        assert_eq!(view.candidates(3), Err(BatchError::Candidates { index: 3 }));
        assert_eq!(view.event(3), Err(BatchError::OutOfBounds { index: 3 }));
    }

    #[test]
    fn empty_lists_end_the_batch_at_the_table() {
        let lists: [&[u32]; 3] = [&[], &[], &[]];
        let mut buf = Vec::new();
        write_batch_with_candidates(EVENTS.iter().copied(), lists.iter().copied(), &mut buf)
            .unwrap();
        let plain = batch_len(EVENTS.iter().copied()).unwrap();
        assert_eq!(buf.len(), plain + 3 * BATCH_CANDIDATES_ENTRY_LEN);
        // The table ends exactly at the end of the buffer; each empty list starts there.
        let view = BatchView::new(&buf).unwrap();
        for i in 0..3 {
            let c = view.candidates(i).unwrap().unwrap();
            assert!(c.is_empty());
            assert_eq!(c.iter().next(), None);
        }
        assert_eq!(BatchView::new(&buf[..buf.len() - 1]).unwrap_err(), {
            BatchError::CandidateTable {
                offset: u32::try_from(plain).unwrap(),
            }
        });
    }

    #[test]
    fn a_batch_without_candidates_has_none() {
        let mut buf = Vec::new();
        write_batch(EVENTS.iter().copied(), &mut buf).unwrap();
        assert_eq!(u32_at(&buf, 4), Some(0));
        let view = BatchView::new(&buf).unwrap();
        assert!(!view.has_candidates());
        for i in 0..4 {
            assert_eq!(view.candidates(i), Ok(None));
        }
    }

    #[test]
    fn a_bad_candidate_table_is_refused() {
        let buf = with_candidates();
        let refused = |offset: u32| {
            let mut bad = buf.clone();
            set(&mut bad, 4, offset);
            BatchView::new(&bad).unwrap_err()
        };
        // Inside the header, overlapping the event table, past the end, or overflowing.
        for offset in [1, 4, 8, 31, 57, 80, u32::MAX - 7, u32::MAX] {
            assert_eq!(refused(offset), BatchError::CandidateTable { offset });
        }
        // Right after the event table and right at the end still fit (the lists are checked when
        // read).
        for offset in [32, 56] {
            let mut moved = buf.clone();
            set(&mut moved, 4, offset);
            assert!(BatchView::new(&moved).unwrap().has_candidates());
        }
    }

    #[test]
    fn a_bad_candidate_list_is_refused() {
        let buf = with_candidates();
        // Entry of event 1 (an empty list at 76) at 48..56.
        let read = |offset: u32, count: u32| {
            let mut bad = buf.clone();
            set(&mut bad, 48, offset);
            set(&mut bad, 52, count);
            let view = BatchView::new(&bad).unwrap();
            // The other events' lists still read.
            assert_eq!(view.candidates(0).unwrap().unwrap().len(), 3);
            assert_eq!(view.candidates(2).unwrap().unwrap().len(), 1);
            view.candidates(1)
                .map(|c| c.map(|c| c.iter().collect::<Vec<_>>()))
        };
        let bad = Err(BatchError::Candidates { index: 1 });
        // Past the end: by one rule, from the end, from beyond it.
        assert_eq!(read(64, 4), Ok(Some(vec![0, 2, 5, 7])));
        assert_eq!(read(64, 5), bad);
        assert_eq!(read(80, 0), Ok(Some(vec![])));
        assert_eq!(read(80, 1), bad);
        assert_eq!(read(81, 0), bad);
        assert_eq!(read(u32::MAX, 1), bad);
        // Into the header or the event table.
        assert_eq!(read(0, 0), bad);
        assert_eq!(read(4, 1), bad);
        assert_eq!(read(28, 1), bad);
        // Right after the event table: bytes of the batch ("one" and the "t" of "three"), which
        // the reader hands out.
        assert_eq!(read(32, 1), Ok(Some(vec![u32::from_le_bytes(*b"onet")])));
        // A count whose byte length overflows 32 bits (as `usize` does on wasm32).
        assert_eq!(read(64, u32::MAX), bad);
        assert_eq!(read(64, u32::MAX / 4 + 1), bad);
    }

    #[test]
    fn the_writer_refuses_bad_candidates() {
        let mut out = Vec::new();
        assert_eq!(
            write_batch_with_candidates(
                EVENTS.iter().copied(),
                LISTS[..2].iter().copied(),
                &mut out
            ),
            Err(BatchError::CandidateCount {
                events: 3,
                lists: 2
            })
        );
        for unordered in [&[3, 1][..], &[2, 2]] {
            let lists: [&[u32]; 3] = [&[0], &[], unordered];
            assert_eq!(
                write_batch_with_candidates(
                    EVENTS.iter().copied(),
                    lists.iter().copied(),
                    &mut out
                ),
                Err(BatchError::CandidatesUnordered { index: 2 })
            );
        }
        assert_eq!(
            write_batch_with_candidates(core::iter::empty(), core::iter::empty(), &mut out),
            Err(BatchError::TooLarge)
        );
        let mut short = vec![0; 79];
        assert_eq!(
            write_batch_with_candidates_to(
                EVENTS.iter().copied(),
                LISTS.iter().copied(),
                &mut short
            ),
            Err(BatchError::TooLarge)
        );
    }

    #[test]
    fn the_glue_runs_the_listed_rules_that_are_subscribed() {
        let bytes = |list: &[u32]| {
            list.iter()
                .flat_map(|r| r.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let merged = |list: &[u32], subscribed: &[u32]| {
            let b = bytes(list);
            let mut out = Vec::new();
            Candidates { bytes: &b }
                .merge_subscribed(subscribed, &mut out)
                .then_some(out)
        };
        assert_eq!(merged(&[1, 3, 5, 9], &[0, 3, 4, 5, 10]), Some(vec![3, 5]));
        assert_eq!(merged(&[0, 10], &[0, 3, 4, 5, 10]), Some(vec![0, 10]));
        assert_eq!(merged(&[2, 7], &[0, 3, 4, 5, 10]), Some(vec![]));
        assert_eq!(merged(&[], &[0, 3]), Some(vec![]));
        assert_eq!(merged(&[0, 3], &[]), Some(vec![]));
        assert_eq!(merged(&[4, 5, 6], &[4, 5, 6]), Some(vec![4, 5, 6]));
        // Not strictly increasing: refused, even past the last subscribed rule.
        assert_eq!(merged(&[3, 3], &[3]), None);
        assert_eq!(merged(&[5, 2], &[2, 5]), None);
        assert_eq!(merged(&[0, 9, 8], &[0]), None);
        assert_eq!(merged(&[7, 1], &[]), None);
    }
}
