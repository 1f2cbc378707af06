//! Mass file renames by one process: ransomware renames (encrypts, then renames to a new extension)
//! hundreds of files in seconds. A *stateful* rule: it remembers recent renames per process.
//!
//! # How it matches
//!
//! For every `FileRename` event the rule records the event's `timestamp` (milliseconds since the
//! epoch) under the process that did it, keyed by (host, pid). It fires when one process has done
//! [`THRESHOLD`] (20) renames whose timestamps span at most [`WINDOW_MS`] (10 seconds): a sliding
//! window over that process's last 20 renames, so a burst that straddles any fixed boundary is still
//! seen, and out-of-order timestamps are handled (the span is newest minus oldest of the 20).
//!
//! It fires **once per burst**: after firing, that process stays silent until it has done no rename
//! for a whole window, after which its history is forgotten and a new burst can fire again.
//!
//! # Bounded state
//!
//! The state can never grow without bound, whatever the input:
//!
//! * per process: a fixed ring of the last 20 timestamps (no allocation per rename);
//! * processes silent for longer than the window are evicted: on a sweep every 256 events, and before
//!   tracking a new process when the table is full;
//! * at most [`MAX_TRACKED`] processes are tracked; when the table is full of active processes the
//!   eighth of it whose last renames are oldest is evicted to make room.
//!
//! So the rule's memory stays under roughly `MAX_TRACKED × 250` bytes (about 250 KiB).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use rulebox_sdk::prelude::*;

/// Renames by one process that make a burst.
pub const THRESHOLD: usize = 20;
/// The window the burst must fit in, in milliseconds.
pub const WINDOW_MS: u64 = 10_000;
/// The most processes tracked at once.
pub const MAX_TRACKED: usize = 1024;
/// Events between two sweeps of silent processes.
const SWEEP_EVERY: u32 = 256;

/// A process: a hash of its host's name (ASCII case-folded) and its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    host: u64,
    pid: u32,
}

/// The recent renames of one process.
#[derive(Debug, Clone)]
struct Track {
    /// Ring of the last `len` rename timestamps; `next` is where the next one goes.
    times: [u64; THRESHOLD],
    next: usize,
    len: usize,
    /// The latest timestamp seen.
    last: u64,
    /// Whether this burst has already been reported.
    fired: bool,
}

impl Track {
    fn new() -> Track {
        Track {
            times: [0; THRESHOLD],
            next: 0,
            len: 0,
            last: 0,
            fired: false,
        }
    }

    /// Records a rename at `now`; returns the span of the last [`THRESHOLD`] renames once there are
    /// that many.
    fn record(&mut self, now: u64) -> Option<u64> {
        if self.len > 0 && now.saturating_sub(self.last) > WINDOW_MS {
            // Silent for a whole window: a new burst starts.
            *self = Track::new();
        }
        self.times[self.next] = now;
        self.next = (self.next + 1) % THRESHOLD;
        self.len = (self.len + 1).min(THRESHOLD);
        self.last = self.last.max(now);
        if self.len < THRESHOLD {
            return None;
        }
        let (min, max) = self
            .times
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        Some(max - min)
    }
}

/// Fires when one process renames [`THRESHOLD`] files within [`WINDOW_MS`].
#[derive(Default)]
pub struct MassRename {
    tracks: BTreeMap<Key, Track>,
    since_sweep: u32,
}

impl MassRename {
    /// How many processes the rule is tracking now (never more than [`MAX_TRACKED`]).
    pub fn tracked(&self) -> usize {
        self.tracks.len()
    }

    /// Forgets processes whose last rename is more than a window before `now`.
    fn sweep(&mut self, now: u64) {
        self.since_sweep = 0;
        self.tracks
            .retain(|_, t| now.saturating_sub(t.last) <= WINDOW_MS);
    }

    /// Makes room for one more process: forgets silent ones, and if the table is still full, the
    /// eighth of it whose last rename is oldest (in one go, so a flood of new processes costs O(1)
    /// amortised per event rather than a full scan each).
    fn make_room(&mut self, now: u64) {
        if self.tracks.len() < MAX_TRACKED {
            return;
        }
        self.sweep(now);
        if self.tracks.len() < MAX_TRACKED {
            return;
        }
        let mut lasts: Vec<u64> = self.tracks.values().map(|t| t.last).collect();
        let cut = MAX_TRACKED / 8;
        let (_, &mut threshold, _) = lasts.select_nth_unstable(cut);
        self.tracks.retain(|_, t| t.last > threshold);
        // Ties at the threshold can leave the table full; then drop entries one by one.
        while self.tracks.len() >= MAX_TRACKED {
            self.tracks.pop_first();
        }
    }
}

impl Rule for MassRename {
    const META: RuleMeta = RuleMeta {
        id: "mass-file-rename",
        name: "One process renames many files in a short window",
        version: "1.0.0",
        severity: Severity::High,
        events: &[EventKind::FileRename],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(r) = event.file_rename() else {
            return;
        };
        let now = event.timestamp();
        let key = Key {
            host: fnv1a_ignore_case(event.host()),
            pid: event.pid(),
        };
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep(now);
        }
        if !self.tracks.contains_key(&key) {
            self.make_room(now);
        }
        let track = self.tracks.entry(key).or_insert_with(Track::new);
        let Some(span) = track.record(now) else {
            return;
        };
        if span > WINDOW_MS || track.fired {
            return;
        }
        track.fired = true;
        out.detect("One process renamed many files in a short window")
            .field("Image", r.image())
            .field("ProcessId", &format!("{}", event.pid()))
            .field("Renames", &format!("{THRESHOLD}"))
            .field("WindowMs", &format!("{span}"))
            .field("SourceFilename", r.source_filename())
            .field("TargetFilename", r.target_filename());
    }
}

/// 64-bit FNV-1a of `text` with ASCII letters folded to lowercase.
fn fnv1a_ignore_case(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(MassRename);

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_729_812_989_000;

    fn rename(pid: u32, ts: u64, n: usize) -> Event<'static> {
        let mut r = FileRename::default();
        r.image = "C:\\Users\\bob\\AppData\\Local\\Temp\\locker.exe".into();
        r.source_filename = format!("C:\\Users\\bob\\Documents\\file{n}.docx").into();
        r.target_filename = format!("C:\\Users\\bob\\Documents\\file{n}.docx.locked").into();
        let mut ev = Event::new(EventData::FileRename(r));
        ev.host = "ws-17".into();
        ev.pid = pid;
        ev.timestamp = ts;
        ev
    }

    fn feed(rule: &mut MassRename, pid: u32, ts: u64, n: usize) -> usize {
        run_native(rule, &rename(pid, ts, n)).len()
    }

    #[test]
    fn burst_fires_once_at_the_twentieth_rename() {
        let mut rule = MassRename::default();
        for n in 0..19 {
            assert_eq!(
                feed(&mut rule, 4242, T0 + n as u64 * 100, n),
                0,
                "rename {n}"
            );
        }
        let found = run_native(&mut rule, &rename(4242, T0 + 1_900, 19));
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(d.rule_id, "mass-file-rename");
        let field = |name: &str| {
            d.fields
                .iter()
                .find(|f| f.name == name)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(field("ProcessId"), "4242");
        assert_eq!(field("Renames"), "20");
        assert_eq!(field("WindowMs"), "1900");
        assert_eq!(
            field("TargetFilename"),
            "C:\\Users\\bob\\Documents\\file19.docx.locked"
        );
        // The same burst goes on: no second detection.
        for n in 20..200 {
            assert_eq!(feed(&mut rule, 4242, T0 + n as u64 * 100, n), 0);
        }
        // Quiet for more than a window, then a new burst fires again.
        let later = T0 + 200 * 100 + WINDOW_MS + 1;
        let fired: usize = (0..20)
            .map(|n| feed(&mut rule, 4242, later + n as u64 * 10, n))
            .sum();
        assert_eq!(fired, 1);
    }

    #[test]
    fn slow_renames_are_quiet() {
        let mut rule = MassRename::default();
        // One rename a second: any 20 in a row span 19 s.
        for n in 0..100 {
            assert_eq!(feed(&mut rule, 7, T0 + n as u64 * 1_000, n), 0);
        }
    }

    #[test]
    fn renames_of_different_processes_are_not_added_up() {
        let mut rule = MassRename::default();
        for n in 0..40 {
            let pid = 100 + u32::try_from(n % 4).unwrap();
            assert_eq!(feed(&mut rule, pid, T0 + n as u64 * 10, n), 0);
        }
        // Same pid on another host is another process.
        let mut rule = MassRename::default();
        for n in 0..30 {
            let mut ev = rename(5, T0 + n as u64, n);
            ev.host = if n % 2 == 0 { "a".into() } else { "b".into() };
            assert!(run_native(&mut rule, &ev).is_empty());
        }
    }

    #[test]
    fn burst_straddling_a_boundary_is_seen() {
        let mut rule = MassRename::default();
        // 10 renames at 9.0-9.9 s, 10 at 10.0-10.9 s after a first, lone rename.
        assert_eq!(feed(&mut rule, 9, T0, 0), 0);
        let mut fired = 0;
        for n in 0..20 {
            fired += feed(&mut rule, 9, T0 + 9_000 + n as u64 * 100, n);
        }
        assert_eq!(fired, 1);
    }

    #[test]
    fn state_stays_bounded() {
        let mut rule = MassRename::default();
        // Many processes renaming at once: the table is capped.
        for n in 0..5_000 {
            feed(&mut rule, u32::try_from(n).unwrap(), T0 + n as u64, n);
            assert!(rule.tracked() <= MAX_TRACKED);
        }
        assert!(rule.tracked() > MAX_TRACKED / 2);
        // After a quiet window the next sweep forgets them all.
        let later = T0 + 1_000_000;
        for n in 0..SWEEP_EVERY as usize {
            feed(&mut rule, 1, later + n as u64 * 1_000, n);
        }
        assert!(rule.tracked() <= 11, "{}", rule.tracked());
    }

    #[test]
    fn other_kinds_are_ignored() {
        let mut rule = MassRename::default();
        let ev = Event::new(EventData::FileCreate(FileEvent::default()));
        for _ in 0..100 {
            assert!(run_native(&mut rule, &ev).is_empty());
        }
        assert_eq!(rule.tracked(), 0);
    }
}
