//! The report spool (`STORE/fetcher/spool.json`): health reports wait here, on disk, until a
//! check-in is answered, bounded in count and bytes; what a full spool drops is counted and sent as
//! `dropped_reports`.

use std::path::PathBuf;

use rulebox_controlplane_proto::HealthReport;
use rulebox_runtime::content::{read_capped, write_atomic};
use serde::{Deserialize, Serialize};

use super::error::FetchError;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolFile {
    reports: Vec<HealthReport>,
    dropped: u64,
}

/// The spooled reports, oldest first.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    max_reports: usize,
    max_bytes: usize,
    file: SpoolFile,
    bytes: usize,
}

fn size_of(report: &HealthReport) -> usize {
    serde_json::to_vec(report).map_or(0, |b| b.len() + 1)
}

impl Spool {
    /// Opens the spool at `path` (empty if there is none). A spool file that cannot be read or
    /// parsed is replaced, and what it held is not lost silently: it counts as one dropped report.
    pub fn open(path: PathBuf, max_reports: usize, max_bytes: usize) -> Spool {
        let cap = (max_bytes as u64).saturating_mul(2).saturating_add(4096);
        let (file, unreadable) = match read_capped(&path, cap) {
            Ok(bytes) => match serde_json::from_slice::<SpoolFile>(&bytes) {
                Ok(file) => (file, false),
                Err(_) => (SpoolFile::default(), true),
            },
            Err(rulebox_runtime::content::CappedReadError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                (SpoolFile::default(), false)
            }
            Err(_) => (SpoolFile::default(), true),
        };
        let mut spool = Spool {
            path,
            max_reports: max_reports.max(1),
            max_bytes: max_bytes.max(1024),
            bytes: file.reports.iter().map(size_of).sum(),
            file,
        };
        if unreadable {
            tracing::warn!(path = %spool.path.display(), "the report spool was unreadable; starting a new one");
            spool.file.dropped += 1;
        }
        spool.trim();
        spool
    }

    fn trim(&mut self) {
        while self.file.reports.len() > self.max_reports || self.bytes > self.max_bytes {
            let oldest = self.file.reports.remove(0);
            self.bytes = self.bytes.saturating_sub(size_of(&oldest));
            self.file.dropped += 1;
        }
    }

    fn persist(&self) -> Result<(), FetchError> {
        let bytes = serde_json::to_vec(&self.file).unwrap_or_default();
        write_atomic(&self.path, &bytes).map_err(|e| FetchError::disk("write the report spool", &e))
    }

    /// Adds a report (the oldest are dropped, and counted, when the spool is full) and writes the
    /// spool. On a disk error the report stays in memory and goes with the next check-in.
    pub fn push(&mut self, report: HealthReport) -> Result<(), FetchError> {
        self.bytes += size_of(&report);
        self.file.reports.push(report);
        self.trim();
        self.persist()
    }

    /// The oldest `max` reports and the drop count, for a check-in.
    pub fn batch(&self, max: usize) -> (Vec<HealthReport>, u64) {
        let n = self.file.reports.len().min(max);
        (self.file.reports[..n].to_vec(), self.file.dropped)
    }

    /// A check-in that carried the first `sent` reports and `dropped` as its drop count was
    /// answered: they leave the spool.
    pub fn acknowledged(&mut self, sent: usize, dropped: u64) -> Result<(), FetchError> {
        let sent = sent.min(self.file.reports.len());
        for report in self.file.reports.drain(..sent) {
            self.bytes = self.bytes.saturating_sub(size_of(&report));
        }
        self.file.dropped = self.file.dropped.saturating_sub(dropped);
        self.persist()
    }

    /// Reports waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.file.reports.len()
    }

    /// Reports dropped and not yet sent as a count.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.file.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebox_controlplane_proto::ReportKind;

    fn report(release: u64) -> HealthReport {
        HealthReport {
            at_unix: 1,
            kind: ReportKind::Good { release },
            content_release: Some(release),
            quarantined_rules: 0,
            boot_guard_reverts: 0,
            events: 0,
            detections: 0,
            mean_latency_us: 0.0,
        }
    }

    #[test]
    fn a_full_spool_drops_the_oldest_counts_them_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.json");
        let mut spool = Spool::open(path.clone(), 3, 1 << 20);
        for r in 1..=5 {
            spool.push(report(r)).unwrap();
        }
        assert_eq!(spool.len(), 3);
        assert_eq!(spool.dropped(), 2);
        let again = Spool::open(path.clone(), 3, 1 << 20);
        let (batch, dropped) = again.batch(2);
        assert_eq!(
            batch.iter().map(|r| r.kind.release()).collect::<Vec<_>>(),
            [Some(3), Some(4)]
        );
        assert_eq!(dropped, 2);
        let mut again = again;
        again.acknowledged(2, 2).unwrap();
        assert_eq!((again.len(), again.dropped()), (1, 0));
        // Bounded in bytes too.
        let mut small = Spool::open(dir.path().join("small.json"), 1000, 1024);
        for r in 0..100 {
            small.push(report(r)).unwrap();
        }
        assert!(small.len() < 20 && small.dropped() > 80);
        // A damaged spool is replaced, and counted.
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Spool::open(path, 3, 1 << 20).dropped(), 1);
    }
}
