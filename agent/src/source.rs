//! Feeding a stream of event records into an agent, every record capped by [`ReadLimits`].

use std::io::BufRead;
use std::sync::Arc;

use rulebox_runtime::events::{EventReader, ReadError, ReadLimits};

use crate::event::EventOrigin;
use crate::sender::{AgentStopped, EventSender};

/// What [`feed`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedSummary {
    /// Events queued.
    pub events: u64,
    /// Records that could not be read as events (each reported as an alert).
    pub unreadable: u64,
    /// Whether the stream ended with a read error (reported as an alert).
    pub failed: bool,
}

/// Reads event records from `input` (rulebox JSON or Windows event JSON, one a line or
/// pretty-printed; see [`EventReader`]) under `limits` and queues each event with
/// [`EventSender::send`] (waiting when the queue is full), naming `source` as their origin. A record
/// over `limits.max_record_bytes` is skipped without being buffered; it and every other unreadable
/// record are counted and reported ([`EventSender::report_unreadable`]), and reading goes on. A read
/// error ends the stream and is reported. Returns when the stream ends, or
/// `Err(`[`AgentStopped`]`)` once the agent has stopped.
pub fn feed<R: BufRead>(
    input: R,
    limits: ReadLimits,
    sender: &EventSender,
    source: &str,
) -> Result<FeedSummary, AgentStopped> {
    let name: Arc<str> = Arc::from(source);
    let mut summary = FeedSummary::default();
    for item in EventReader::with_limits(input, limits) {
        match item {
            Ok(read) => {
                let line = u64::try_from(read.line).unwrap_or(u64::MAX);
                sender.send(read.event, EventOrigin::new(name.clone(), line))?;
                summary.events += 1;
            }
            Err(ReadError::Io { line, source: e }) => {
                summary.failed = true;
                let at = EventOrigin::new(name.clone(), u64::try_from(line).unwrap_or(u64::MAX));
                sender.report_source_failed(&format!("{} line {}", at.source, at.line), &e)?;
                break;
            }
            Err(ReadError::Record { line, error, .. }) => {
                // The alert names the source and the line; the error says what was wrong.
                summary.unreadable += 1;
                let at = EventOrigin::new(name.clone(), u64::try_from(line).unwrap_or(u64::MAX));
                sender.report_unreadable(&at, &error)?;
            }
            Err(e) => {
                summary.unreadable += 1;
                sender.report_unreadable(&EventOrigin::new(name.clone(), 0), &e)?;
            }
        }
    }
    Ok(summary)
}
