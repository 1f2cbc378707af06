//! A streaming reader of event records.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use rulebox_sdk::Event;

use super::{EventFormat, ReadError, ReadLimits, RecordError, parse_record_bytes};

/// One event read by an [`EventReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    /// The event.
    pub event: Event<'static>,
    /// The 1-based line where its record starts.
    pub line: usize,
    /// The format its record was in.
    pub format: EventFormat,
}

/// Reads events from a stream of JSON records, one at a time.
///
/// Each record is a JSON object: a rulebox event, or a Windows event in evtx_dump form (an object with
/// a top-level `"Event"` key), told apart per record. Records may be one a line, pretty-printed over
/// many lines one after another, or the elements of a top-level array; blank lines are skipped. The
/// reader finds where a record ends by balancing braces outside JSON strings, so it never needs more
/// than one record in memory, and never more than [`ReadLimits::max_record_bytes`].
///
/// Every bad record is reported as exactly one `Err(`[`ReadError::Record`]`)` naming the line where it
/// starts and what was wrong, and reading continues with the next record:
///
/// - text that is not valid JSON, or not an event in either format;
/// - a record over the size cap (skipped to its end without being buffered), or with a field over the
///   field cap;
/// - a record that never closes. A line whose first text is `{`, indented by nothing or by as much as
///   the opening brace of the last record that began its own line (the elements of a pretty-printed
///   array), is taken as the start of a new record: if a record is still open there, it is reported as
///   cut short and reading resumes at that line, so a truncated line in a JSON lines file costs only
///   that line. A JSON string running into a line break, or stray text between records, is reported
///   and the reader skips to the next such line (or a line starting with `[`); the error gives the
///   range of lines skipped.
///
/// A failure of the underlying reader ends the stream after one `Err(`[`ReadError::Io`]`)`.
#[derive(Debug)]
pub struct EventReader<R> {
    input: R,
    limits: ReadLimits,
    scan: Scanner,
    done: bool,
}

impl<R: BufRead> EventReader<R> {
    /// A reader with the default [`ReadLimits`].
    pub fn new(input: R) -> Self {
        EventReader::with_limits(input, ReadLimits::default())
    }

    /// A reader with the given limits.
    pub fn with_limits(input: R, limits: ReadLimits) -> Self {
        EventReader {
            input,
            limits,
            scan: Scanner::new(),
            done: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ReadLimits {
        self.limits
    }

    /// The 1-based line the reader has reached.
    pub fn line(&self) -> usize {
        self.scan.line
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.input
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<ReadEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Io {
                        line: self.scan.line,
                        source,
                    }));
                }
            };
            if chunk.is_empty() {
                self.done = true;
                return self.scan.finish();
            }
            let (used, out) = self.scan.feed(chunk, &self.limits);
            self.input.consume(used);
            if out.is_some() {
                return out;
            }
        }
    }
}

/// Opens `path` for reading events with the default [`ReadLimits`].
pub fn open_events_file(path: impl AsRef<Path>) -> Result<EventReader<BufReader<File>>, ReadError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(EventReader::new(BufReader::new(file)))
}

/// Reads every event of the file at `path`, failing on the first bad record. (To skip bad records
/// and carry on, iterate over [`open_events_file`] instead.)
pub fn read_events_file(path: impl AsRef<Path>) -> Result<Vec<ReadEvent>, ReadError> {
    open_events_file(path)?.collect()
}

/// Where the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between records.
    Idle,
    /// Inside a record, buffering it.
    Record,
    /// Inside a record that is over the size cap (already reported), looking for its end.
    Oversize,
    /// After a structural break: skipping to the next line that starts a record (see
    /// [`Scanner::resync_point`]) or a top-level array.
    Recover,
}

/// An error held back while recovering, so that it can name the lines skipped.
#[derive(Debug)]
enum Pending {
    /// Stray text between records.
    Stray,
    /// A string ran into a line break on `line`.
    UnterminatedString { line: usize },
}

/// The byte-level state of an [`EventReader`].
#[derive(Debug)]
struct Scanner {
    mode: Mode,
    /// The line of the next byte.
    line: usize,
    /// Whether the next byte is in the first column.
    at_line_start: bool,
    /// Leading spaces and tabs seen so far on the current line.
    line_indent: usize,
    /// Whether the current line has had anything but whitespace yet.
    line_has_text: bool,
    /// The indentation of the last record whose `{` was the first text on its line: a line starting
    /// with `{` at this indentation (or at 0) is taken as the start of a new record.
    resync_indent: usize,
    /// How many bytes of a UTF-8 byte order mark the input started with (3: done looking).
    bom: usize,
    /// Inside a top-level `[`.
    in_array: bool,
    /// Brace and bracket depth inside the current record.
    depth: usize,
    in_string: bool,
    escape: bool,
    /// The line where the current record (or the pending error) starts.
    record_line: usize,
    /// The current record's text.
    buf: Vec<u8>,
    /// The error being held back in [`Mode::Recover`] (`None` if it was already reported).
    pending: Option<Pending>,
    /// The start of the stray text, for the message.
    snippet: Vec<u8>,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
const SNIPPET_BYTES: usize = 40;

impl Scanner {
    fn new() -> Self {
        Scanner {
            mode: Mode::Idle,
            line: 1,
            at_line_start: true,
            line_indent: 0,
            line_has_text: false,
            resync_indent: 0,
            bom: 0,
            in_array: false,
            depth: 0,
            in_string: false,
            escape: false,
            record_line: 1,
            buf: Vec::new(),
            pending: None,
            snippet: Vec::new(),
        }
    }

    /// Scans `chunk` until it yields something. Returns how many bytes it used, and what it yielded.
    fn feed(
        &mut self,
        chunk: &[u8],
        limits: &ReadLimits,
    ) -> (usize, Option<Result<ReadEvent, ReadError>>) {
        let mut i = 0;
        while i < chunk.len() {
            if let Some(run) = self.plain_run(&chunk[i..]) {
                // Bytes that change nothing but the buffer: take them in one go.
                if self.mode == Mode::Record {
                    let room = (limits.max_record_bytes + 1).saturating_sub(self.buf.len());
                    let take = run.len().min(room.max(1));
                    self.buf.extend_from_slice(&run[..take]);
                    i += take;
                    if self.buf.len() > limits.max_record_bytes {
                        return (i, Some(self.oversize(limits)));
                    }
                } else {
                    i += run.len();
                }
                continue;
            }
            let b = chunk[i];
            i += 1;
            let is_space = matches!(b, b' ' | b'\t' | b'\r' | b'\n');
            // `Some(indentation)` when `b` is the first text on its line.
            let first = (!self.line_has_text && !is_space).then_some(self.line_indent);
            self.at_line_start = b == b'\n';
            if b == b'\n' {
                self.line_indent = 0;
                self.line_has_text = false;
            } else if !is_space {
                self.line_has_text = true;
            } else if !self.line_has_text && b != b'\r' {
                self.line_indent += 1;
            }
            let out = self.step(b, first, limits);
            if b == b'\n' {
                self.line += 1;
            }
            if out.is_some() {
                return (i, out);
            }
        }
        (chunk.len(), None)
    }

    /// The longest non-empty prefix of `bytes` that only needs copying (inside a record) or skipping
    /// (inside an oversize record): no quote, backslash, bracket or line break, in the middle of a
    /// line. `None` when the next byte needs [`Scanner::step`].
    fn plain_run<'c>(&self, bytes: &'c [u8]) -> Option<&'c [u8]> {
        if !matches!(self.mode, Mode::Record | Mode::Oversize) || !self.line_has_text || self.escape
        {
            return None;
        }
        let len = if self.in_string {
            bytes
                .iter()
                .position(|&b| matches!(b, b'"' | b'\\' | b'\n'))
        } else {
            bytes
                .iter()
                .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']' | b'\n'))
        }
        .unwrap_or(bytes.len());
        (len > 0).then(|| &bytes[..len])
    }

    /// The end of the input: reports a record left open or an error held back.
    fn finish(&mut self) -> Option<Result<ReadEvent, ReadError>> {
        let last_line = if self.at_line_start {
            self.line.saturating_sub(1)
        } else {
            self.line
        };
        let mode = std::mem::replace(&mut self.mode, Mode::Idle);
        self.buf = Vec::new();
        match mode {
            Mode::Idle | Mode::Oversize => None,
            Mode::Record => Some(Err(ReadError::Record {
                line: self.record_line,
                last_line: last_line.max(self.record_line),
                error: RecordError::UnexpectedEnd,
            })),
            Mode::Recover => self.take_pending(last_line).map(Err),
        }
    }

    /// Whether a `{` that is the first text on its line, indented by `first`, starts a new record
    /// (cutting short any record still open): at indentation 0, or at the indentation of the last record
    /// that started on its own line (the elements of a pretty-printed array).
    fn resync_point(&self, first: Option<usize>) -> bool {
        matches!(first, Some(indent) if indent == 0 || indent == self.resync_indent)
    }

    /// Handles one byte; `first` is `Some(indentation)` when it is the first text on its line.
    fn step(
        &mut self,
        b: u8,
        first: Option<usize>,
        limits: &ReadLimits,
    ) -> Option<Result<ReadEvent, ReadError>> {
        match self.mode {
            Mode::Idle => self.idle(b, first),
            Mode::Record => self.record(b, first, limits),
            Mode::Oversize => {
                if !self.in_string && b == b'{' && self.resync_point(first) {
                    self.start_record(b, first);
                } else if self.structure(b) == Structure::BrokenString {
                    self.mode = Mode::Recover;
                } else if self.depth == 0 {
                    self.mode = Mode::Idle;
                }
                None
            }
            Mode::Recover => {
                if (b == b'{' && self.resync_point(first)) || (b == b'[' && first == Some(0)) {
                    let pending = self.take_pending(self.line.saturating_sub(1));
                    self.mode = Mode::Idle;
                    let out = self.idle(b, first);
                    debug_assert!(out.is_none(), "`{{` and `[` start a record or an array");
                    return pending.map(Err);
                }
                if matches!(self.pending, Some(Pending::Stray))
                    && self.line == self.record_line
                    && self.snippet.len() < SNIPPET_BYTES
                    && b != b'\n'
                    && b != b'\r'
                {
                    self.snippet.push(b);
                }
                None
            }
        }
    }

    /// A byte between records.
    fn idle(&mut self, b: u8, first: Option<usize>) -> Option<Result<ReadEvent, ReadError>> {
        if self.bom < BOM.len() {
            if b == BOM[self.bom] {
                self.bom += 1;
                return None;
            }
            let partial = self.bom > 0;
            self.bom = BOM.len();
            if partial {
                // Part of a byte order mark: stray text, and `b` with it.
                self.stray(0xEF);
                if b != b'\n' && b != b'\r' {
                    self.snippet.push(b);
                }
                return None;
            }
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'{' => self.start_record(b, first),
            b'[' if !self.in_array => self.in_array = true,
            b',' if self.in_array => {}
            b']' if self.in_array => self.in_array = false,
            _ => self.stray(b),
        }
        None
    }

    /// Text between records that is not whitespace: hold an error back and skip ahead.
    fn stray(&mut self, b: u8) {
        self.mode = Mode::Recover;
        self.record_line = self.line;
        self.pending = Some(Pending::Stray);
        self.snippet.clear();
        self.snippet.push(b);
    }

    /// The held-back error, if any, as a [`ReadError`] ending at `last_line`.
    fn take_pending(&mut self, last_line: usize) -> Option<ReadError> {
        let error = match self.pending.take()? {
            Pending::Stray => RecordError::StrayText {
                snippet: String::from_utf8_lossy(&std::mem::take(&mut self.snippet)).into_owned(),
            },
            Pending::UnterminatedString { line } => RecordError::UnterminatedString { line },
        };
        Some(ReadError::Record {
            line: self.record_line,
            last_line: last_line.max(self.record_line),
            error,
        })
    }

    /// Starts a record with its opening brace (`first`: see [`Scanner::step`]).
    fn start_record(&mut self, b: u8, first: Option<usize>) {
        if let Some(indent) = first {
            self.resync_indent = indent;
        }
        self.mode = Mode::Record;
        self.record_line = self.line;
        self.depth = 1;
        self.in_string = false;
        self.escape = false;
        self.buf.clear();
        self.buf.push(b);
    }

    /// Updates the string and depth state for `b`.
    fn structure(&mut self, b: u8) -> Structure {
        if self.in_string {
            if b == b'\n' {
                // JSON strings cannot hold raw line breaks, escaped or not.
                self.in_string = false;
                self.escape = false;
                return Structure::BrokenString;
            }
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return Structure::Other;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Structure::Other
    }

    /// A byte inside a record.
    fn record(
        &mut self,
        b: u8,
        first: Option<usize>,
        limits: &ReadLimits,
    ) -> Option<Result<ReadEvent, ReadError>> {
        if !self.in_string && b == b'{' && self.resync_point(first) {
            // A new record starts while this one is open: this one was cut short.
            let err = ReadError::Record {
                line: self.record_line,
                last_line: self.line.saturating_sub(1).max(self.record_line),
                error: RecordError::Interrupted {
                    next_line: self.line,
                },
            };
            self.start_record(b, first);
            return Some(Err(err));
        }
        if self.structure(b) == Structure::BrokenString {
            self.mode = Mode::Recover;
            self.pending = Some(Pending::UnterminatedString { line: self.line });
            self.buf.clear();
            return None;
        }
        self.buf.push(b);
        if self.depth == 0 {
            self.mode = Mode::Idle;
            let result = parse_record_bytes(&self.buf, limits);
            self.shrink_buffer();
            return Some(self.finish_record(result));
        }
        if self.buf.len() > limits.max_record_bytes {
            return Some(self.oversize(limits));
        }
        None
    }

    /// The current record has grown past the cap: drop it, report it, and skip to its end.
    fn oversize(&mut self, limits: &ReadLimits) -> Result<ReadEvent, ReadError> {
        self.mode = Mode::Oversize;
        self.buf.clear();
        self.shrink_buffer();
        Err(ReadError::Record {
            line: self.record_line,
            last_line: self.line,
            error: RecordError::TooLarge {
                limit: limits.max_record_bytes,
            },
        })
    }

    /// Turns a parsed record into the reader's output.
    fn finish_record(
        &self,
        result: Result<(Event<'static>, EventFormat), RecordError>,
    ) -> Result<ReadEvent, ReadError> {
        match result {
            Ok((event, format)) => Ok(ReadEvent {
                event,
                line: self.record_line,
                format,
            }),
            Err(mut error) => {
                // Syntax errors count lines from the record's start; make them lines of the input.
                if let RecordError::InvalidJson { line, .. } = &mut error {
                    *line = (self.record_line + *line).saturating_sub(1).max(1);
                }
                Err(ReadError::Record {
                    line: self.record_line,
                    last_line: self.line,
                    error,
                })
            }
        }
    }

    /// Keeps a big buffer from one large record from pinning memory for the rest of the stream.
    fn shrink_buffer(&mut self) {
        const KEEP: usize = 64 << 10;
        if self.buf.capacity() > KEEP {
            self.buf.clear();
            self.buf.shrink_to(KEEP);
        }
    }
}

/// What a byte did to the record's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Structure {
    /// A raw line break inside a string: the record is broken.
    BrokenString,
    /// Anything else.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_sdk::EventKind;
    use std::io::{Cursor, Read};

    const PROC: &str = r#"{"host":"a","pid":1,"data":{"ProcessStart":{"Image":"a.exe"}}}"#;
    const DNS: &str = r#"{"host":"b","pid":2,"data":{"DnsQuery":{"QueryName":"x.example"}}}"#;

    fn evtx_pretty(id: u32, image: &str) -> String {
        let value = serde_json::json!({"Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                "EventID": id,
                "Computer": "pc",
                "TimeCreated": {"#attributes": {"SystemTime": "2025-10-24T23:34:34.640670Z"}}
            },
            "EventData": {"Image": image, "ProcessId": 7, "Note": "braces } { ] [ and \"quotes\" \\"}
        }});
        serde_json::to_string_pretty(&value).unwrap()
    }

    /// Reads `input` with BufReaders of several capacities (so records straddle chunk boundaries) and
    /// checks they all agree; returns the results as (line, Ok(kind) | Err(error)).
    fn read_all(input: &str, limits: ReadLimits) -> Vec<(usize, Result<EventKind, ReadError>)> {
        let mut reference: Option<Vec<String>> = None;
        let mut result = Vec::new();
        for capacity in [1, 2, 3, 7, 64, 8192] {
            let reader = EventReader::with_limits(
                BufReader::with_capacity(capacity, input.as_bytes()),
                limits,
            );
            let items: Vec<_> = reader
                .map(|item| match item {
                    Ok(read) => {
                        assert!(read.line >= 1);
                        (read.line, Ok(read.event.kind()))
                    }
                    Err(e) => (e.line().unwrap(), Err(e)),
                })
                .collect();
            let shown: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            match &reference {
                None => reference = Some(shown),
                Some(r) => assert_eq!(r, &shown, "capacity {capacity} disagrees"),
            }
            result = items;
        }
        result
    }

    fn kinds(items: &[(usize, Result<EventKind, ReadError>)]) -> Vec<(usize, Option<EventKind>)> {
        items
            .iter()
            .map(|(line, r)| (*line, r.as_ref().ok().copied()))
            .collect()
    }

    #[test]
    fn json_lines_with_blank_lines_and_crlf() {
        let input = format!("{PROC}\n\n   \r\n{DNS}\r\n\t{PROC}");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (1, Some(EventKind::ProcessStart)),
                (4, Some(EventKind::DnsQuery)),
                (5, Some(EventKind::ProcessStart)),
            ]
        );
    }

    #[test]
    fn pretty_printed_objects_one_after_another_in_both_formats() {
        let a = evtx_pretty(1, "C:\\a.exe");
        let b = evtx_pretty(11, "C:\\b.exe");
        let a_lines = a.lines().count();
        let pretty_dns =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(DNS).unwrap())
                .unwrap();
        let input = format!("{a}\n{b}\n{PROC}\n{pretty_dns}\n");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (1, Some(EventKind::ProcessStart)),
                (1 + a_lines, Some(EventKind::FileCreate)),
                (1 + 2 * a_lines, Some(EventKind::ProcessStart)),
                (2 + 2 * a_lines, Some(EventKind::DnsQuery)),
            ]
        );
        let events: Vec<ReadEvent> = EventReader::new(input.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events[0].format, EventFormat::Evtx);
        assert_eq!(events[0].event.text("Image"), "C:\\a.exe");
        assert_eq!(events[0].event.pid, 7);
        assert_eq!(
            events[0].event.text("Note"),
            "braces } { ] [ and \"quotes\" \\"
        );
        assert_eq!(events[2].format, EventFormat::Rulebox);
        // Several objects on one line, too.
        let items = read_all(&format!("{PROC}{DNS} {PROC}"), ReadLimits::default());
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|(line, r)| *line == 1 && r.is_ok()));
    }

    #[test]
    fn a_top_level_array_of_objects() {
        let input = format!("[\n{PROC},\n{DNS}\n]\n{PROC}\n[{DNS}, {PROC}]");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (2, Some(EventKind::ProcessStart)),
                (3, Some(EventKind::DnsQuery)),
                (5, Some(EventKind::ProcessStart)),
                (6, Some(EventKind::DnsQuery)),
                (6, Some(EventKind::ProcessStart)),
            ]
        );
    }

    #[test]
    fn a_malformed_record_in_the_middle_is_one_error_and_reading_goes_on() {
        let input = format!(
            "{PROC}\n{{\"host\": \"x\", \"data\": {{\"ProcessStart\": {{\"Image\": nope}}}}}}\n{DNS}\n{{\"data\":{{\"NoSuchKind\":{{}}}}}}\n{PROC}\n"
        );
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (1, Some(EventKind::ProcessStart)),
                (2, None),
                (3, Some(EventKind::DnsQuery)),
                (4, None),
                (5, Some(EventKind::ProcessStart)),
            ]
        );
        let Err(e) = &items[1].1 else { unreachable!() };
        assert!(
            matches!(
                e,
                ReadError::Record {
                    line: 2,
                    error: RecordError::InvalidJson { line: 2, .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("line 2: invalid JSON"), "{e}");
        let Err(e) = &items[3].1 else { unreachable!() };
        assert!(e.to_string().contains("NoSuchKind"), "{e}");
    }

    #[test]
    fn a_syntax_error_deep_in_a_pretty_record_names_its_input_line() {
        let good = evtx_pretty(1, "a");
        let broken = evtx_pretty(1, "b").replace("\"Computer\": \"pc\",", "\"Computer\": \"pc\",,");
        let bad_line =
            1 + good.lines().count() + broken.lines().position(|l| l.contains("\"pc\",,")).unwrap();
        let input = format!("{good}\n{broken}\n{PROC}\n");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(items.len(), 3);
        let (line, Err(e)) = &items[1] else {
            panic!("{:?}", items[1])
        };
        assert_eq!(*line, 1 + good.lines().count());
        match e {
            ReadError::Record {
                error: RecordError::InvalidJson { line, .. },
                ..
            } => assert_eq!(*line, bad_line, "the error is on the line with `,,`"),
            other => panic!("{other:?}"),
        }
        assert!(items[2].1.is_ok());
    }

    #[test]
    fn a_truncated_json_line_costs_only_that_line() {
        let cut = &PROC[..PROC.len() - 2];
        let input = format!("{PROC}\n{cut}\n{DNS}\n{PROC}\n");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (1, Some(EventKind::ProcessStart)),
                (2, None),
                (3, Some(EventKind::DnsQuery)),
                (4, Some(EventKind::ProcessStart)),
            ]
        );
        let Err(e) = &items[1].1 else { unreachable!() };
        assert!(
            matches!(
                e,
                ReadError::Record {
                    line: 2,
                    last_line: 2,
                    error: RecordError::Interrupted { next_line: 3 }
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn an_unterminated_string_skips_to_the_next_record() {
        let broken = evtx_pretty(1, "C:\\a.exe").replace("\"pc\"", "\"pc");
        let broken_lines = broken.lines().count();
        let input = format!("{broken}\n{}\n{PROC}\n", evtx_pretty(7, "x"));
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (1, None),
                (1 + broken_lines, Some(EventKind::ImageLoad)),
                (1 + 2 * broken_lines, Some(EventKind::ProcessStart)),
            ]
        );
        let Err(e) = &items[0].1 else { unreachable!() };
        assert!(
            matches!(
                e,
                ReadError::Record {
                    line: 1,
                    error: RecordError::UnterminatedString { .. },
                    ..
                }
            ),
            "{e:?}"
        );
        let ReadError::Record { last_line, .. } = e else {
            unreachable!()
        };
        assert_eq!(*last_line, broken_lines);
        assert!(
            e.to_string()
                .starts_with(&format!("lines 1-{broken_lines}: ")),
            "{e}"
        );
    }

    #[test]
    fn stray_text_is_reported_once_per_stretch() {
        let input = format!("{PROC}\nthis is not json\nnor this\n{DNS}\n}}\n{PROC}\n");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (1, Some(EventKind::ProcessStart)),
                (2, None),
                (4, Some(EventKind::DnsQuery)),
                (5, None),
                (6, Some(EventKind::ProcessStart)),
            ]
        );
        let Err(e) = &items[1].1 else { unreachable!() };
        assert_eq!(
            e.to_string(),
            "lines 2-3: unexpected text \"this is not json\" outside a JSON object; \
             skipped to the next line starting a record"
        );
    }

    #[test]
    fn a_pretty_printed_array_recovers_at_the_next_element() {
        let pretty = |text: &str| -> Vec<String> {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            serde_json::to_string_pretty(&value)
                .unwrap()
                .lines()
                .map(|l| format!("  {l}"))
                .collect()
        };
        let first = pretty(PROC);
        let mut broken = pretty(DNS);
        let at = broken
            .iter()
            .position(|l| l.contains("\"host\": \"b\""))
            .unwrap();
        broken[at] = broken[at].replace("\"b\"", "\"b");
        let mut truncated = pretty(PROC);
        truncated.pop();
        let last = pretty(DNS);
        let mut lines = vec!["[".to_owned()];
        let mut starts = Vec::new();
        for element in [&first, &broken, &truncated, &last] {
            if !starts.is_empty() {
                let end = lines.len() - 1;
                lines[end].push(',');
            }
            starts.push(lines.len() + 1);
            lines.extend(element.iter().cloned());
        }
        lines.push("]".to_owned());
        let input = lines.join("\n");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(
            kinds(&items),
            vec![
                (starts[0], Some(EventKind::ProcessStart)),
                (starts[1], None),
                (starts[2], None),
                (starts[3], Some(EventKind::DnsQuery)),
            ]
        );
        let Err(e) = &items[1].1 else { unreachable!() };
        assert!(
            matches!(e, ReadError::Record { error: RecordError::UnterminatedString { line }, last_line, .. }
                if *line == starts[1] + at && *last_line == starts[2] - 1),
            "{e:?}"
        );
        let Err(e) = &items[2].1 else { unreachable!() };
        assert!(
            matches!(e, ReadError::Record { error: RecordError::Interrupted { next_line }, .. }
                if *next_line == starts[3]),
            "{e:?}"
        );
    }

    #[test]
    fn end_of_input_inside_a_record() {
        let input = format!("{PROC}\n{{\"host\": \"a\",\n  \"data\": {{");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(items.len(), 2);
        let Err(e) = &items[1].1 else { unreachable!() };
        assert!(
            matches!(
                e,
                ReadError::Record {
                    line: 2,
                    last_line: 3,
                    error: RecordError::UnexpectedEnd
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let input = format!("\u{FEFF}{PROC}\n");
        let items = read_all(&input, ReadLimits::default());
        assert_eq!(kinds(&items), vec![(1, Some(EventKind::ProcessStart))]);
    }

    #[test]
    fn an_oversize_record_is_skipped_without_buffering_it() {
        let limits = ReadLimits {
            max_record_bytes: 256,
            ..ReadLimits::default()
        };
        let huge_line = format!(
            r#"{{"host":"h","data":{{"Other":{{}}}},"pad":"{}","obj":{{"a":[1,2,{{}}]}}}}"#,
            "} {\\\" ".repeat(10_000)
        );
        let huge_pretty = evtx_pretty(1, &"x".repeat(1000));
        let pretty_lines = huge_pretty.lines().count();
        let input = format!("{PROC}\n{huge_line}\n{DNS}\n{huge_pretty}\n{PROC}\n");
        let items = read_all(&input, limits);
        assert_eq!(
            kinds(&items),
            vec![
                (1, Some(EventKind::ProcessStart)),
                (2, None),
                (3, Some(EventKind::DnsQuery)),
                (4, None),
                (4 + pretty_lines, Some(EventKind::ProcessStart)),
            ]
        );
        for i in [1, 3] {
            let Err(e) = &items[i].1 else { unreachable!() };
            assert!(
                matches!(
                    e,
                    ReadError::Record {
                        error: RecordError::TooLarge { limit: 256 },
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        // The buffer never grew past the cap.
        let one = format!("{huge_line}\n");
        let mut reader =
            EventReader::with_limits(BufReader::with_capacity(16, one.as_bytes()), limits);
        assert!(reader.next().unwrap().is_err());
        assert!(reader.scan.buf.capacity() <= 2 * 256 + 16);
        assert!(reader.next().is_none());
    }

    #[test]
    fn huge_input_without_newlines_stays_bounded() {
        /// `{"a":"aaaa...` with no line break and no end for 8 MiB, then the input ends.
        struct Huge(usize);
        const SIZE: usize = 8 << 20;
        impl Read for Huge {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    buf[..6].copy_from_slice(b"{\"a\":\"");
                    self.0 = 6;
                    return Ok(6);
                }
                let n = buf.len().min(SIZE - self.0);
                buf[..n].fill(b'a');
                self.0 += n;
                Ok(n)
            }
        }
        let limits = ReadLimits {
            max_record_bytes: 4096,
            ..ReadLimits::default()
        };
        let mut reader = EventReader::with_limits(BufReader::new(Huge(0)), limits);
        let first = reader.next().unwrap();
        assert!(
            matches!(
                first,
                Err(ReadError::Record {
                    line: 1,
                    error: RecordError::TooLarge { limit: 4096 },
                    ..
                })
            ),
            "{first:?}"
        );
        assert!(
            reader.input.get_ref().0 <= 4096 + 2 * 8192,
            "reported as soon as the cap was passed"
        );
        // Pull a few MiB through the skipping path by hand: the buffer does not grow.
        for _ in 0..512 {
            let chunk = reader.input.fill_buf().unwrap();
            let (used, out) = reader.scan.feed(chunk, &limits);
            assert!(out.is_none());
            reader.input.consume(used);
        }
        assert!(reader.scan.buf.capacity() <= 2 * 4096);
        assert!(reader.input.get_ref().0 >= 4 << 20);
        // The rest is skipped too, and that record is not reported again.
        assert!(reader.next().is_none());
        assert_eq!(reader.input.get_ref().0, SIZE);
    }

    #[test]
    fn field_cap_through_the_reader() {
        let limits = ReadLimits {
            max_field_bytes: 5,
            ..ReadLimits::default()
        };
        let items = read_all(&format!("{PROC}\n{DNS}\n"), limits);
        assert!(items[0].1.is_ok(), "`a.exe` is 5 bytes: {:?}", items[0]);
        let Err(e) = &items[1].1 else { unreachable!() };
        assert!(
            matches!(
                e,
                ReadError::Record {
                    line: 2,
                    error: RecordError::FieldTooLong { .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn an_io_error_is_reported_once_and_ends_the_stream() {
        struct Failing(Cursor<Vec<u8>>);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let input = Failing(Cursor::new(format!("{PROC}\n{DNS}\n").into_bytes()));
        let items: Vec<_> = EventReader::new(BufReader::new(input)).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        let Err(e) = &items[2] else { unreachable!() };
        assert!(matches!(e, ReadError::Io { line: 3, .. }), "{e:?}");
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }

    #[test]
    fn file_helpers() {
        let dir = std::env::temp_dir().join(format!("rulebox-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        std::fs::write(&good, format!("{PROC}\n{DNS}\n")).unwrap();
        let events = read_events_file(&good).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].line, 2);
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, format!("{PROC}\n{{]\n{DNS}\n")).unwrap();
        let err = read_events_file(&bad).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert_eq!(open_events_file(&bad).unwrap().count(), 3);
        let missing = dir.join("missing.jsonl");
        let err = read_events_file(&missing).unwrap_err();
        assert!(matches!(err, ReadError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.jsonl"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
