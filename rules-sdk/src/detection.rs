//! What a rule reports: detections, their severity, the list a rule fills (already in the result
//! format that crosses from guest to host), and the host's checked reader of that format.
//!
//! The result format is described in [`crate::abi`].

use alloc::borrow::Cow;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::abi::{MAX_FIELD_NAME_BYTES, MAX_FIELD_VALUE_BYTES, MAX_FIELDS, MAX_TITLE_BYTES};
use crate::event::Field;

/// What marks a text the SDK cut to fit a cap.
pub const TRUNCATED_MARK: &str = " [truncated]";

/// How serious a detection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Severity {
    /// Worth recording, not worth a look on its own.
    Informational,
    /// Suspicious in context.
    Low,
    /// Likely malicious; someone should look.
    Medium,
    /// Malicious with high confidence.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// The lowercase name (`"high"`).
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The severity with result-format number `n` (`0` informational … `4` critical).
    pub const fn from_u8(n: u8) -> Option<Severity> {
        Some(match n {
            0 => Severity::Informational,
            1 => Severity::Low,
            2 => Severity::Medium,
            3 => Severity::High,
            4 => Severity::Critical,
            _ => return None,
        })
    }

    /// Parses a lowercase name; Sigma's `informational` and `info` both work.
    pub fn from_name(name: &str) -> Option<Severity> {
        Some(match name {
            "informational" | "info" => Severity::Informational,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl core::fmt::Display for Severity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One detection: which rule, what it saw, how serious, and the fields that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection<'a> {
    /// The id of the rule that fired (the host checks it is the id the rule declared).
    #[serde(borrow)]
    pub rule_id: Cow<'a, str>,
    /// A one-line description of what was detected.
    #[serde(borrow)]
    pub title: Cow<'a, str>,
    /// How serious it is.
    pub severity: Severity,
    /// The event fields that matched, with their values.
    #[serde(borrow)]
    pub fields: Vec<Field<'a>>,
}

impl Detection<'_> {
    /// Turns every borrowed string into an owned one.
    pub fn into_owned(self) -> Detection<'static> {
        Detection {
            rule_id: Cow::Owned(self.rule_id.into_owned()),
            title: Cow::Owned(self.title.into_owned()),
            severity: self.severity,
            fields: self
                .fields
                .into_iter()
                .map(|f| Field {
                    name: Cow::Owned(f.name.into_owned()),
                    value: Cow::Owned(f.value.into_owned()),
                })
                .collect(),
        }
    }
}

/// The detections a rule reports for one event, already in the result format of [`crate::abi`].
///
/// A rule calls [`detect`](Self::detect) once per finding and adds matched fields to the
/// [`DetectionBuilder`] it returns; the rule id and default severity come from the rule's metadata.
/// Nothing is allocated per detection: the buffer is reused from event to event.
#[derive(Debug, Clone)]
pub struct Detections {
    rule_id: &'static str,
    severity: Severity,
    /// The buffer, and the detection being written.
    open: DetectionBuilder,
}

/// The detection [`Detections::detect`] just started: add its matched fields here. Each call writes at
/// once, so `out.detect("title").field("Image", image);` is complete, and
/// `let d = out.detect("title"); if deep { d.field(..); }` works too.
#[derive(Debug, Clone)]
pub struct DetectionBuilder {
    count: u32,
    /// The result: a 4-byte count, then the detections. Empty while `count` is 0.
    buf: Vec<u8>,
    /// Where the open detection's header starts in `buf`.
    start: usize,
}

/// Appends a `u16` length.
fn put_u16(buf: &mut Vec<u8>, n: usize) {
    // Every caller has clipped `n` to a cap below 65,536.
    let n = u16::try_from(n).unwrap_or(u16::MAX);
    buf.extend_from_slice(&n.to_le_bytes());
}

/// `text` cut to at most `max` bytes at a character boundary: `(kept, marked)`, where `marked` says
/// [`TRUNCATED_MARK`] must follow `kept`.
fn clip(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let end = text.floor_char_boundary(max.saturating_sub(TRUNCATED_MARK.len()));
    (&text[..end], true)
}

/// Writes a clipped text's length.
fn put_len(buf: &mut Vec<u8>, (kept, marked): (&str, bool)) {
    put_u16(
        buf,
        kept.len() + if marked { TRUNCATED_MARK.len() } else { 0 },
    );
}

/// Writes a clipped text's bytes.
fn put_text(buf: &mut Vec<u8>, (kept, marked): (&str, bool)) {
    buf.extend_from_slice(kept.as_bytes());
    if marked {
        buf.extend_from_slice(TRUNCATED_MARK.as_bytes());
    }
}

impl Detections {
    /// An empty list for the rule `rule_id` whose detections default to `severity`.
    pub const fn new(rule_id: &'static str, severity: Severity) -> Detections {
        Detections {
            rule_id,
            severity,
            open: DetectionBuilder {
                count: 0,
                buf: Vec::new(),
                start: 0,
            },
        }
    }

    /// Reports a detection titled `title`; add matched fields with [`DetectionBuilder::field`].
    ///
    /// A title over [`MAX_TITLE_BYTES`] is cut and marked `[truncated]`.
    pub fn detect(&mut self, title: &str) -> &mut DetectionBuilder {
        let open = &mut self.open;
        if open.buf.is_empty() {
            open.buf.extend_from_slice(&[0; 4]);
        }
        open.start = open.buf.len();
        let title = clip(title, MAX_TITLE_BYTES);
        open.buf.push(self.severity as u8);
        open.buf.push(0);
        put_len(&mut open.buf, title);
        put_text(&mut open.buf, title);
        open.count += 1;
        open.buf[..4].copy_from_slice(&open.count.to_le_bytes());
        open
    }

    /// The detections reported so far, in the result format (empty if there are none): the bytes
    /// `rulebox_on_event` hands the host.
    pub fn as_bytes(&self) -> &[u8] {
        &self.open.buf
    }

    /// The detections reported so far, decoded.
    pub fn to_vec(&self) -> Vec<Detection<'static>> {
        if self.open.count == 0 {
            return Vec::new();
        }
        // The buffer was written by this type, within every cap; it always decodes.
        decode_result(&self.open.buf, self.rule_id, u32::MAX)
            .map(|list| list.into_iter().map(Detection::into_owned).collect())
            .unwrap_or_default()
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.open.count == 0
    }

    /// How many detections were reported.
    pub fn len(&self) -> usize {
        self.open.count as usize
    }

    /// Forgets every detection, keeping the allocation.
    pub fn clear(&mut self) {
        self.open.count = 0;
        self.open.buf.clear();
    }

    /// Forgets every detection and makes `severity` the default of the next ones: the pack glue
    /// reuses one list for every rule of a pack.
    pub(crate) fn reset(&mut self, severity: Severity) {
        self.clear();
        self.severity = severity;
    }

    /// Takes the detections out (decoded), leaving the list empty.
    pub fn take(&mut self) -> Vec<Detection<'static>> {
        let list = self.to_vec();
        self.clear();
        list
    }
}

impl DetectionBuilder {
    /// Adds a matched field; returns the builder for chaining.
    ///
    /// A name over [`MAX_FIELD_NAME_BYTES`] or a value over [`MAX_FIELD_VALUE_BYTES`] is cut and
    /// marked `[truncated]`; fields past the [`MAX_FIELDS`]th are dropped.
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        let count = self.buf[self.start + 1];
        if usize::from(count) >= MAX_FIELDS {
            return self;
        }
        self.buf[self.start + 1] = count + 1;
        let (name, value) = (
            clip(name, MAX_FIELD_NAME_BYTES),
            clip(value, MAX_FIELD_VALUE_BYTES),
        );
        put_len(&mut self.buf, name);
        put_len(&mut self.buf, value);
        put_text(&mut self.buf, name);
        put_text(&mut self.buf, value);
        self
    }

    /// Overrides the severity the rule declared.
    pub fn severity(&mut self, severity: Severity) -> &mut Self {
        self.buf[self.start] = severity as u8;
        self
    }
}

/// A rule's result that the host refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultError {
    /// The bytes end before what the count and lengths promise.
    Truncated {
        /// Which part was cut short.
        what: &'static str,
    },
    /// The count is zero, or larger than the bytes could hold.
    BadCount {
        /// The count in the header.
        count: u32,
        /// The result's size in bytes.
        len: usize,
    },
    /// More detections than the host allows for one event.
    TooMany {
        /// The count in the header.
        count: u32,
        /// The host's cap.
        max: u32,
    },
    /// A severity number outside 0 to 4.
    Severity(u8),
    /// A text is over its cap.
    OverCap {
        /// Which text (`title`, `field name`, `field value`) or `field count`.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A text is not UTF-8.
    NotUtf8 {
        /// Which text.
        what: &'static str,
    },
    /// Bytes after the last detection.
    Trailing(usize),
}

impl core::fmt::Display for ResultError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResultError::Truncated { what } => write!(f, "the result ends inside a {what}"),
            ResultError::BadCount { count, len } => {
                write!(f, "claims {count} detections in {len} bytes")
            }
            ResultError::TooMany { count, max } => {
                write!(f, "{count} detections for one event; the cap is {max}")
            }
            ResultError::Severity(n) => write!(f, "severity number {n} is not 0 to 4"),
            ResultError::OverCap { what, len, max } => {
                write!(f, "{what} of {len} is over the cap of {max}")
            }
            ResultError::NotUtf8 { what } => write!(f, "a {what} is not UTF-8"),
            ResultError::Trailing(n) => write!(f, "{n} trailing bytes after the detections"),
        }
    }
}

impl core::error::Error for ResultError {}

/// Smallest encoded detection: its 4-byte header with an empty title and no fields.
const MIN_DETECTION: usize = 4;

/// Reads a result in the format of [`crate::abi`], trusting nothing: every length is checked
/// against the bytes and its cap, every text is checked as UTF-8, the count against `max_detections`
/// (before anything is allocated), and nothing may follow the last detection. Each detection is
/// given `rule_id`, which the format does not carry. Built on [`ResultReader`].
pub fn decode_result<'b>(
    bytes: &'b [u8],
    rule_id: &'b str,
    max_detections: u32,
) -> Result<Vec<Detection<'b>>, ResultError> {
    let mut reader = ResultReader::new(bytes, max_detections)?;
    let mut list = Vec::with_capacity(reader.remaining() as usize);
    while let Some((severity, title)) = reader.next_detection()? {
        let mut fields = Vec::with_capacity(reader.fields_left());
        while let Some((name, value)) = reader.next_field()? {
            fields.push(Field {
                name: Cow::Borrowed(name),
                value: Cow::Borrowed(value),
            });
        }
        list.push(Detection {
            rule_id: Cow::Borrowed(rule_id),
            title: Cow::Borrowed(title),
            severity,
            fields,
        });
    }
    Ok(list)
}

/// A checked, allocation-free cursor over a result in the format of [`crate::abi`], for a host
/// that writes detections into storage it reuses.
///
/// Call [`next_detection`](Self::next_detection) until it returns `None`, and
/// [`next_field`](Self::next_field) after each until it returns `None` (fields not asked for are
/// still checked). Every error of [`decode_result`] is reported by the call that reads the bad
/// bytes, the trailing-bytes check by the `next_detection` that finds no more detections; a result
/// is good only if that last call returned `Ok(None)`, so a caller that keeps what it read must
/// drop it on any error.
#[derive(Debug, Clone)]
pub struct ResultReader<'b> {
    r: Reader<'b>,
    /// Detections not yet started.
    detections_left: u32,
    /// Fields of the current detection not yet read.
    fields_left: usize,
}

impl<'b> ResultReader<'b> {
    /// Checks the count (at least 1, no more than the bytes can hold, no more than
    /// `max_detections`) and starts reading.
    pub fn new(bytes: &'b [u8], max_detections: u32) -> Result<ResultReader<'b>, ResultError> {
        let mut r = Reader { bytes, at: 0 };
        let count = u32::from_le_bytes(r.array::<4>("count")?);
        let room = (bytes.len() - 4) / MIN_DETECTION;
        if count == 0 || usize::try_from(count).map_or(true, |c| c > room) {
            return Err(ResultError::BadCount {
                count,
                len: bytes.len(),
            });
        }
        if count > max_detections {
            return Err(ResultError::TooMany {
                count,
                max: max_detections,
            });
        }
        Ok(ResultReader {
            r,
            detections_left: count,
            fields_left: 0,
        })
    }

    /// Detections not yet read.
    pub fn remaining(&self) -> u32 {
        self.detections_left
    }

    /// Fields of the current detection not yet read.
    pub fn fields_left(&self) -> usize {
        self.fields_left
    }

    /// The next detection's severity and title (after checking any fields of the previous one that
    /// were not read); `None` after the last, once no bytes follow it.
    pub fn next_detection(&mut self) -> Result<Option<(Severity, &'b str)>, ResultError> {
        while self.next_field()?.is_some() {}
        if self.detections_left == 0 {
            return match self.r.bytes.len() - self.r.at {
                0 => Ok(None),
                n => Err(ResultError::Trailing(n)),
            };
        }
        self.detections_left -= 1;
        let [severity, fields, t0, t1] = self.r.array::<4>("detection header")?;
        let severity = Severity::from_u8(severity).ok_or(ResultError::Severity(severity))?;
        let fields = usize::from(fields);
        if fields > MAX_FIELDS {
            return Err(ResultError::OverCap {
                what: "field count",
                len: fields,
                max: MAX_FIELDS,
            });
        }
        let title = self
            .r
            .text("title", u16::from_le_bytes([t0, t1]), MAX_TITLE_BYTES)?;
        self.fields_left = fields;
        Ok(Some((severity, title)))
    }

    /// The current detection's next field, `(name, value)`; `None` after its last.
    pub fn next_field(&mut self) -> Result<Option<(&'b str, &'b str)>, ResultError> {
        if self.fields_left == 0 {
            return Ok(None);
        }
        self.fields_left -= 1;
        let [n0, n1, v0, v1] = self.r.array::<4>("field header")?;
        let name = self.r.text(
            "field name",
            u16::from_le_bytes([n0, n1]),
            MAX_FIELD_NAME_BYTES,
        )?;
        let value = self.r.text(
            "field value",
            u16::from_le_bytes([v0, v1]),
            MAX_FIELD_VALUE_BYTES,
        )?;
        Ok(Some((name, value)))
    }
}

/// A cursor over untrusted result bytes.
#[derive(Debug, Clone)]
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, what: &'static str, n: usize) -> Result<&'b [u8], ResultError> {
        let part = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or(ResultError::Truncated { what })?;
        self.at += n;
        Ok(part)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ResultError> {
        let part = self.take(what, N)?;
        let mut out = [0; N];
        out.copy_from_slice(part);
        Ok(out)
    }

    fn text(&mut self, what: &'static str, len: u16, max: usize) -> Result<&'b str, ResultError> {
        let len = usize::from(len);
        if len > max {
            return Err(ResultError::OverCap { what, len, max });
        }
        core::str::from_utf8(self.take(what, len)?).map_err(|_| ResultError::NotUtf8 { what })
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::String;
    use alloc::vec;

    use super::*;

    #[test]
    fn detections_round_trip_through_the_result_format() {
        let mut out = Detections::new("rule-a", Severity::Medium);
        assert!(out.is_empty() && out.as_bytes().is_empty());
        out.detect("first")
            .field("Image", "a.exe")
            .field("Ünïcode", "välue");
        let d = out.detect("second");
        d.severity(Severity::Critical);
        d.field("CommandLine", "");
        out.detect("");
        assert_eq!(out.len(), 3);
        let list = decode_result(out.as_bytes(), "rule-a", 3).unwrap();
        assert_eq!(list, out.to_vec());
        assert_eq!(list.len(), 3);
        assert_eq!(
            (list[0].title.as_ref(), list[0].severity),
            ("first", Severity::Medium)
        );
        assert_eq!(list[0].fields[1].name, "Ünïcode");
        assert_eq!(list[0].fields[1].value, "välue");
        assert_eq!(list[1].severity, Severity::Critical);
        assert_eq!(list[1].fields[0].value, "");
        assert!(list[2].fields.is_empty());
        assert!(list.iter().all(|d| d.rule_id == "rule-a"));
        // Clearing keeps nothing; the next event starts afresh.
        out.clear();
        assert!(out.is_empty() && out.as_bytes().is_empty());
        out.detect("again");
        assert_eq!(out.take()[0].title, "again");
        assert!(out.is_empty());
    }

    #[test]
    fn over_long_texts_are_cut_at_a_char_boundary_and_marked() {
        let mut out = Detections::new("r", Severity::Low);
        let long_value: String = "é".repeat(MAX_FIELD_VALUE_BYTES); // 2 bytes per char
        let long_title = "t".repeat(MAX_TITLE_BYTES + 1);
        let long_name = "n".repeat(MAX_FIELD_NAME_BYTES * 2);
        out.detect(&long_title).field(&long_name, &long_value);
        let list = decode_result(out.as_bytes(), "r", 1).expect("within every cap");
        let d = &list[0];
        assert!(d.title.len() <= MAX_TITLE_BYTES && d.title.ends_with(TRUNCATED_MARK));
        let f = &d.fields[0];
        assert!(f.name.len() <= MAX_FIELD_NAME_BYTES && f.name.ends_with(TRUNCATED_MARK));
        assert!(f.value.len() <= MAX_FIELD_VALUE_BYTES && f.value.ends_with(TRUNCATED_MARK));
        assert!(
            f.value
                .trim_end_matches(TRUNCATED_MARK)
                .chars()
                .all(|c| c == 'é')
        );
        // A text exactly at its cap is kept whole.
        out.clear();
        let exact = "v".repeat(MAX_FIELD_VALUE_BYTES);
        out.detect("t").field("n", &exact);
        assert_eq!(out.to_vec()[0].fields[0].value, exact);
    }

    #[test]
    fn fields_past_the_cap_are_dropped() {
        let mut out = Detections::new("r", Severity::Low);
        let d = out.detect("many");
        for i in 0..MAX_FIELDS + 10 {
            d.field("f", if i < MAX_FIELDS { "kept" } else { "dropped" });
        }
        out.detect("next").field("g", "x");
        let list = decode_result(out.as_bytes(), "r", 2).unwrap();
        assert_eq!(list[0].fields.len(), MAX_FIELDS);
        assert!(list[0].fields.iter().all(|f| f.value == "kept"));
        assert_eq!(list[1].fields.len(), 1);
    }

    fn one(title: &str, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Detections::new("r", Severity::High);
        let d = out.detect(title);
        for (n, v) in fields {
            d.field(n, v);
        }
        out.as_bytes().to_vec()
    }

    #[test]
    fn damaged_results_are_refused_with_the_reason() {
        let good = one("title", &[("Image", "a.exe")]);
        assert!(decode_result(&good, "r", 1).is_ok());
        let err = |bytes: &[u8], max: u32| decode_result(bytes, "r", max).unwrap_err();

        // Every strict prefix fails, and names what was cut short.
        for cut in 0..good.len() {
            let e = err(&good[..cut], 1);
            assert!(
                matches!(
                    e,
                    ResultError::Truncated { .. } | ResultError::BadCount { .. }
                ),
                "prefix {cut}: {e:?}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(err(&trailing, 1), ResultError::Trailing(1));
        // Count: zero, more than the bytes hold, more than the host allows.
        let mut zero = good.clone();
        zero[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            err(&zero, 1),
            ResultError::BadCount { count: 0, .. }
        ));
        assert!(matches!(
            err(&[0xFF; 64], u32::MAX),
            ResultError::BadCount {
                count: u32::MAX,
                len: 64
            }
        ));
        let mut two = Detections::new("r", Severity::Low);
        two.detect("a");
        two.detect("b");
        assert_eq!(
            err(two.as_bytes(), 1),
            ResultError::TooMany { count: 2, max: 1 }
        );
        // Severity number.
        let mut sev = good.clone();
        sev[4] = 5;
        assert_eq!(err(&sev, 1), ResultError::Severity(5));
        // Field count over the cap.
        let mut fields = good.clone();
        fields[5] = 65;
        assert!(matches!(
            err(&fields, 1),
            ResultError::OverCap {
                what: "field count",
                ..
            }
        ));
        // A length over its cap, even when the bytes are there.
        let mut title = vec![1, 0, 0, 0, 2, 0];
        title.extend_from_slice(&u16::try_from(MAX_TITLE_BYTES + 1).unwrap().to_le_bytes());
        title.extend(core::iter::repeat_n(b't', MAX_TITLE_BYTES + 1));
        assert!(matches!(
            err(&title, 1),
            ResultError::OverCap { what: "title", .. }
        ));
        // Text that is not UTF-8.
        let mut utf8 = good.clone();
        let at = good.len() - 1;
        utf8[at] = 0xFF;
        assert_eq!(
            err(&utf8, 1),
            ResultError::NotUtf8 {
                what: "field value"
            }
        );
        // Each error says what was wrong.
        assert!(alloc::format!("{}", err(&trailing, 1)).contains("trailing"));
    }
}
