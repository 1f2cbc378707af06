//! The batch format: several encoded events in one buffer, what a rule pack's `rulebox_on_events`
//! reads (ABI 3, [`crate::abi`]).
//!
//! ```text
//!  offset  size        field
//!  ──────  ──────────  ───────────────────────────────────────────────────────────────────
//!       0  u32         event count n (1 ..= MAX_BATCH_EVENTS)
//!       4  u32         reserved, 0
//!       8  8 × n       per event, in order: offset (u32, from the start of the batch) and
//!                      length (u32) of its bytes
//!       …  bytes       the events, each in the wire format of crate::wire, back to back
//! ```
//!
//! Integers are little-endian; nothing is aligned. The host writes the events back to back after
//! the table, in order; the reader trusts none of it: [`BatchView::new`] checks the header and that
//! the table fits, and [`BatchView::event`] checks each range against the buffer before it hands out
//! a byte.

use alloc::vec::Vec;

/// Size of the batch header (count and reserved word).
pub const BATCH_HEADER_LEN: usize = 8;

/// Size of one entry of the event table.
pub const BATCH_ENTRY_LEN: usize = 8;

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
    /// The reserved word is not zero.
    Reserved,
    /// An event's range points outside the batch or into its table.
    OutOfBounds {
        /// The event's index.
        index: usize,
    },
    /// More than [`MAX_BATCH_EVENTS`] events, or more than 4 GiB, given to [`write_batch`].
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
            BatchError::Reserved => f.write_str("the batch's reserved word is not zero"),
            BatchError::OutOfBounds { index } => {
                write!(f, "event {index} of the batch points outside it")
            }
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

/// A batch, read in place.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'b> {
    bytes: &'b [u8],
    count: usize,
}

impl<'b> BatchView<'b> {
    /// Checks the header and that the table fits in `bytes`. Each event's range is checked when it
    /// is read.
    pub fn new(bytes: &'b [u8]) -> Result<BatchView<'b>, BatchError> {
        let (Some(count), Some(reserved)) = (u32_at(bytes, 0), u32_at(bytes, 4)) else {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                len: bytes.len(),
            });
        };
        let n = count as usize;
        if n == 0 || n > MAX_BATCH_EVENTS {
            return Err(BatchError::Count(count));
        }
        if reserved != 0 {
            return Err(BatchError::Reserved);
        }
        let table_end = BATCH_HEADER_LEN + n * BATCH_ENTRY_LEN;
        if bytes.len() < table_end {
            return Err(BatchError::Truncated {
                needed: table_end,
                len: bytes.len(),
            });
        }
        Ok(BatchView { bytes, count: n })
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
        let table_end = BATCH_HEADER_LEN + self.count * BATCH_ENTRY_LEN;
        if start < table_end {
            return Err(bad);
        }
        start
            .checked_add(len as usize)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(bad)
    }
}

/// The size of the batch of `events` (header, table and bytes); an error if there are none, more
/// than [`MAX_BATCH_EVENTS`], or more than 4 GiB.
pub fn batch_len<'e>(events: impl ExactSizeIterator<Item = &'e [u8]>) -> Result<usize, BatchError> {
    let n = events.len();
    if n == 0 || n > MAX_BATCH_EVENTS {
        return Err(BatchError::TooLarge);
    }
    let total = events
        .map(<[u8]>::len)
        .try_fold(BATCH_HEADER_LEN + n * BATCH_ENTRY_LEN, usize::checked_add)
        .ok_or(BatchError::TooLarge)?;
    if u32::try_from(total).is_err() {
        return Err(BatchError::TooLarge);
    }
    Ok(total)
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
    let n = events.len();
    // Every value fits in 32 bits: `batch_len` checked the total.
    let put = |dest: &mut [u8], at: usize, v: usize| {
        dest[at..at + 4].copy_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
    };
    put(dest, 0, n);
    put(dest, 4, 0);
    let mut offset = BATCH_HEADER_LEN + n * BATCH_ENTRY_LEN;
    for (i, e) in events.enumerate() {
        let at = BATCH_HEADER_LEN + i * BATCH_ENTRY_LEN;
        put(dest, at, offset);
        put(dest, at + 4, e.len());
        dest[offset..offset + e.len()].copy_from_slice(e);
        offset += e.len();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut reserved = buf.clone();
        reserved[4] = 1;
        assert_eq!(BatchView::new(&reserved).unwrap_err(), BatchError::Reserved);
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
}
