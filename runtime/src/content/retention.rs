//! What a store keeps, and how much it holds: nothing that can grow without bound is kept forever
//! (a full disk must never leave a host running nothing).
//!
//! | what | kept |
//! |---|---|
//! | release folders | the current release, the last-known-good one, the release the owner's policy pins, and the [`KEEP_OTHER_RELEASES`] newest others |
//! | reports | the newest [`MAX_REPORTS`] |
//! | refused inbox entries | the newest [`MAX_REFUSED_KEPT`](super::MAX_REFUSED_KEPT), [`MAX_REFUSED_BYTES`](super::MAX_REFUSED_BYTES) in all |
//! | unfinished deliveries (`inbox/.push-*`) | removed at open once older than [`STALE_DELIVERY`](super::STALE_DELIVERY) |
//! | quarantine entries | the newest 10,000 |
//! | releases remembered as bad | the newest 1,000 (the rollback counter refuses older ones anyway) |

use std::collections::BTreeSet;
use std::io;

use serde::Serialize;

use super::fsutil::{DiskUsage, TMP_PREFIX, disk_usage, remove_path};
use super::policy::PolicyMode;
use super::store::{ContentStore, KEEP_OTHER_RELEASES, MAX_REPORTS, StoreError};

/// Most entries counted when a folder is measured for [`ContentStore::usage`].
const MAX_COUNTED_ENTRIES: u64 = 1_000_000;

/// How much a store holds on disk, by part (`rulebox store status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreUsage {
    /// Everything in the store folder.
    pub total: DiskUsage,
    /// Installed release folders.
    pub releases: DiskUsage,
    /// The inbox, refused entries included.
    pub inbox: DiskUsage,
    /// The refused inbox entries kept for people.
    pub refused: DiskUsage,
    /// How many refused entries are kept.
    pub refused_entries: usize,
    /// Reports.
    pub reports: DiskUsage,
    /// The module cache.
    pub cache: DiskUsage,
}

impl ContentStore {
    /// Removes the installed releases the store no longer keeps (see the module docs): their
    /// entries leave `state.json` first, then their folders go (a kill in between leaves folders no
    /// state references, removed at the next open). Returns the releases removed.
    pub(super) fn prune_releases(&mut self) -> Result<Vec<u64>, StoreError> {
        self.writable()?;
        let mut keep: BTreeSet<u64> = BTreeSet::new();
        keep.extend(self.state.current);
        keep.extend(self.state.last_known_good);
        if let Ok(Some(policy)) = self.policy()
            && let PolicyMode::Pin { release, .. } = policy.mode
        {
            keep.insert(release);
        }
        let others: Vec<u64> = self
            .state
            .installed
            .keys()
            .rev()
            .copied()
            .filter(|r| !keep.contains(r))
            .collect();
        let removed: Vec<u64> = others.into_iter().skip(KEEP_OTHER_RELEASES).collect();
        if removed.is_empty() {
            return Ok(removed);
        }
        let mut state = self.state.clone();
        for release in &removed {
            state.installed.remove(release);
            state.boot.reached_good.remove(release);
        }
        self.save_state(state)?;
        for &release in &removed {
            let dir = self.release_dir(release);
            match remove_path(&dir) {
                Ok(()) => tracing::info!(release, "removed an old release folder"),
                Err(e) => {
                    tracing::warn!(release, error = %e, "cannot remove an old release folder; removed at the next open")
                }
            }
        }
        Ok(removed)
    }

    /// Removes the oldest reports beyond [`MAX_REPORTS`]. Returns how many were removed.
    pub(super) fn prune_reports(&self) -> io::Result<usize> {
        let dir = self.reports_dir();
        let mut reports: Vec<(u64, String)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) || !name.ends_with(".json") {
                continue;
            }
            // `<unix_ms>-<kind>[-n].json`; a name not in that form sorts as the oldest.
            let at = name
                .split('-')
                .next()
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(0);
            reports.push((at, name));
        }
        if reports.len() <= MAX_REPORTS {
            return Ok(0);
        }
        reports.sort();
        let excess = reports.len() - MAX_REPORTS;
        for (_, name) in &reports[..excess] {
            remove_path(&dir.join(name))?;
        }
        Ok(excess)
    }

    /// How much the store holds, by part. A part that cannot be measured counts as empty (the
    /// status of a store must never fail on it).
    pub fn usage(&self) -> StoreUsage {
        let layout = self.layout();
        let measure =
            |path: &std::path::Path| disk_usage(path, MAX_COUNTED_ENTRIES).unwrap_or_default();
        let refused_list = self.inbox().refused().unwrap_or_default();
        let refused = refused_list
            .iter()
            .fold(DiskUsage::default(), |sum, (path, _)| {
                sum.plus(measure(path))
            });
        StoreUsage {
            total: measure(&self.dir),
            releases: measure(&layout.releases()),
            inbox: measure(&layout.inbox()),
            refused,
            refused_entries: refused_list.len(),
            reports: measure(&layout.reports()),
            cache: measure(&layout.cache()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::store::tests::{install, new_store};

    #[test]
    fn old_release_folders_are_pruned_keeping_current_last_known_good_and_a_few_others() {
        let (_tmp, mut store) = new_store();
        for release in 1..=8 {
            install(&mut store, release);
            if release == 2 {
                store.begin_boot(3).unwrap();
                store.mark_good(2).unwrap();
            }
        }
        let kept: Vec<u64> = store.state().installed.keys().copied().collect();
        // Current 8, last-known-good 2, and the newest three others.
        assert_eq!(kept, vec![2, 5, 6, 7, 8]);
        for release in 1..=8 {
            assert_eq!(
                store.release_dir(release).exists(),
                kept.contains(&release),
                "release {release}"
            );
        }
        for release in &kept {
            store.load_release(*release).unwrap();
        }
        // A folder no state references (a prune killed between its two steps) goes at open.
        std::fs::create_dir_all(store.release_dir(3).join("modules")).unwrap();
        let dir = store.dir().to_path_buf();
        drop(store);
        let store = ContentStore::open(&dir).unwrap();
        assert!(!store.release_dir(3).exists());
        assert_eq!(store.state().highest_release, Some(8));
    }

    #[test]
    fn reports_are_bounded() {
        let (_tmp, store) = new_store();
        let dir = store.reports_dir();
        for n in 0..(MAX_REPORTS + 5) {
            std::fs::write(dir.join(format!("{}-refusal.json", 1_000 + n)), b"{}").unwrap();
        }
        let newest = store
            .write_report(&crate::content::Report {
                kind: crate::content::ReportKind::Refusal,
                at_unix_ms: 9_000_000,
                from: None,
                to: None,
                reason: "test".into(),
                attempts: None,
                bad: Vec::new(),
                source: None,
            })
            .unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), MAX_REPORTS);
        assert!(newest.exists());
        // The oldest went first.
        assert!(!dir.join("1000-refusal.json").exists());
        assert!(
            dir.join(format!("{}-refusal.json", 1_000 + MAX_REPORTS + 4))
                .exists()
        );
    }

    #[test]
    fn the_status_says_how_much_the_store_holds() {
        let (_tmp, mut store) = new_store();
        let outcome = install(&mut store, 1);
        let modules: u64 = outcome
            .bundle
            .modules()
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum();
        let refused = store.inbox().dir().join("refused-bundle");
        std::fs::create_dir(&refused).unwrap();
        std::fs::write(refused.join("x"), vec![0u8; 4096]).unwrap();
        let entry = store.inbox().scan().unwrap().remove(0);
        store.inbox().refuse(&entry).unwrap();
        let usage = store.status().usage;
        assert!(usage.releases.bytes > modules, "{usage:?}");
        assert_eq!(usage.refused_entries, 1);
        assert_eq!(usage.refused.bytes, 4096);
        assert!(usage.inbox.bytes >= 4096);
        assert!(usage.total.bytes >= usage.releases.bytes + usage.inbox.bytes);
        assert!(!usage.total.truncated);
    }
}
