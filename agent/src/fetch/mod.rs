//! The content fetcher: enrolment with a node key, signed check-ins on the controller's interval
//! (full jitter, a random start-up delay, capped exponential backoff), offers verified, releases
//! downloaded into the store's staging folder (capped by signed sizes, hash-checked, resumed with
//! `Range`), `timestamp.json` and its reverts, and health reports spooled on disk while offline.
//! Everything it brings goes through the store's inbox, the one way in (`docs/controlplane.md`,
//! "What the agent does").
//!
//! One concept per file: [`client`] (HTTP), [`staging`] (downloads), [`backoff`], [`spool`],
//! [`identity`] (node key and durable state), [`worker`] (the loop), [`event`].

mod backoff;
mod client;
mod error;
mod event;
mod identity;
mod spool;
mod staging;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testserver;
mod worker;

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rulebox_controlplane_proto::{FetchFailureClass, HealthReport, Labels, ReportKind};
use rulebox_runtime::content::{Inbox, Root, StoreState, now_unix};

pub use error::{FetchError, refusal_class};
pub use event::FetchEvent;

use crate::alert::Alert;
use crate::event::AgentEvent;
use crate::lifecycle::Lifecycle;
use crate::transport::{StoreView, Transport, TransportError};

/// An enrolment secret; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollSecret(pub String);

impl std::fmt::Debug for EnrollSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollSecret(..)")
    }
}

/// Where and how the agent fetches content ([`AgentConfig::fetch`](crate::AgentConfig::fetch)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchConfig {
    /// The controller's base URL (`http://127.0.0.1:8750`): `POST /v1/enroll`, `POST /v1/checkin`.
    pub controller: String,
    /// The content repository's base URL (`rulebox publish --repo`, served by any HTTP server or
    /// CDN, or the controller's `/repo/`).
    pub repo: String,
    /// The enrolment secret the host was provisioned with.
    pub enroll_secret: EnrollSecret,
    /// What the host says about itself at enrolment.
    pub labels: Labels,
    /// The check-in interval until the controller sets one (default 60 s).
    pub interval: Duration,
    /// The ceiling of the backoff after failures (default one hour).
    pub max_backoff: Duration,
    /// The shortest wait between two attempts, whatever the interval (default 1 s).
    pub min_wait: Duration,
    /// Whether the first check-in waits a random delay in `[0, interval]` (default `true`).
    pub startup_delay: bool,
    /// Each HTTP request's deadline, connect to last byte (default 120 s).
    pub request_timeout: Duration,
    /// Most reports spooled (default 1,000); the oldest are dropped, and counted, beyond.
    pub spool_reports: usize,
    /// Most bytes of spooled reports (default 1 MiB).
    pub spool_bytes: usize,
}

impl FetchConfig {
    /// The defaults, for a controller, a repository, a secret and labels.
    pub fn new(
        controller: impl Into<String>,
        repo: impl Into<String>,
        enroll_secret: impl Into<String>,
        labels: Labels,
    ) -> FetchConfig {
        FetchConfig {
            controller: controller.into().trim_end_matches('/').to_owned(),
            repo: repo.into().trim_end_matches('/').to_owned(),
            enroll_secret: EnrollSecret(enroll_secret.into()),
            labels,
            interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
            min_wait: Duration::from_secs(1),
            startup_delay: true,
            request_timeout: Duration::from_secs(120),
            spool_reports: 1000,
            spool_bytes: 1 << 20,
        }
    }
}

/// What the control thread tells the fetcher's thread, and the events it gives back.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The trusted root and the store's state, as of the last poll.
    pub root: Option<Root>,
    pub state: Option<StoreState>,
    /// Events processed so far, and rules quarantined in the running content.
    pub processed: u64,
    pub quarantined: u32,
    /// Detections raised, and nanoseconds spent evaluating events, since the agent started.
    pub detections: u64,
    pub evaluation_ns: u64,
    /// Fallbacks of the boot guard seen by this process.
    pub fallbacks: u32,
    /// Releases delivered to the inbox and not yet taken (installed or refused).
    pub delivered: std::collections::BTreeSet<u64>,
    /// Events for the agent's stream.
    pub events: Vec<AgentEvent>,
    /// The report spool on disk (`None` until the fetcher's folder can be created: reports wait
    /// in `reports` meanwhile).
    pub spool: Option<spool::Spool>,
    /// Reports waiting for the spool.
    pub reports: Vec<HealthReport>,
    /// Newer roots the fetcher verified (each on top of the one before, from the trusted root),
    /// with their versions, for the control thread to persist in the store.
    pub roots: Vec<(u64, Vec<u8>)>,
    pub stop: bool,
}

/// The fetcher, plugged into the agent as its [`Transport`]: its own thread does the network work;
/// the agent's control thread only exchanges state and events with it.
#[derive(Debug)]
pub struct Fetcher {
    shared: Arc<Mutex<Shared>>,
    wake: Sender<()>,
}

impl Shared {
    /// Spools a report (in memory if the spool cannot be used).
    pub(crate) fn push_report(&mut self, report: HealthReport) {
        match self.spool.as_mut() {
            Some(spool) => {
                for r in std::mem::take(&mut self.reports) {
                    let _ = spool.push(r);
                }
                if let Err(e) = spool.push(report) {
                    tracing::warn!(error = %e, "cannot write the report spool; the report waits in memory");
                }
            }
            None => self.reports.push(report),
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fetcher {
    /// Starts the fetcher's thread for the store at `store`.
    pub fn start(config: FetchConfig, store: &std::path::Path) -> std::io::Result<Fetcher> {
        let spool = identity::Identity::open(store).ok().map(|id| {
            spool::Spool::open(id.spool_path(), config.spool_reports, config.spool_bytes)
        });
        let shared = Arc::new(Mutex::new(Shared {
            spool,
            ..Shared::default()
        }));
        let (wake, woken) = std::sync::mpsc::channel();
        let worker = worker::Worker::new(config, store, shared.clone(), woken);
        std::thread::Builder::new()
            .name("rulebox-fetch".to_owned())
            .spawn(move || worker.run())?;
        Ok(Fetcher { shared, wake })
    }

    fn report(&mut self, kind: ReportKind) {
        let mut shared = lock(&self.shared);
        let report = worker::report(&shared, kind);
        // On disk at once: a crash right after (content that kills the host) loses no report.
        shared.push_report(report);
        drop(shared);
        let _ = self.wake.send(());
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        let _ = self.wake.send(());
    }
}

impl Transport for Fetcher {
    fn poll(&mut self, _inbox: &Inbox) -> Result<(), TransportError> {
        Ok(())
    }

    fn observe_store(&mut self, view: &StoreView<'_>) {
        let mut shared = lock(&self.shared);
        if shared.root.as_ref().map(|r| r.version) != Some(view.root.version) {
            shared.root = Some(view.root.clone());
        }
        if shared.state.as_ref() != Some(view.state) {
            shared.state = Some(view.state.clone());
        }
        let state = view.state;
        shared.delivered.retain(|r| {
            state.current != Some(*r) && !state.installed.contains_key(r) && !state.bad.contains(r)
        });
        shared.processed = view.processed;
        shared.quarantined = view.quarantined;
        shared.detections = view.detections;
        shared.evaluation_ns = view.evaluation_ns;
    }

    fn take_roots(&mut self) -> Vec<Vec<u8>> {
        let mut shared = lock(&self.shared);
        let trusted = shared.root.as_ref().map_or(0, |r| r.version);
        let mut roots = std::mem::take(&mut shared.roots);
        // Already in the store (the fetcher queued it again before the store's root was seen).
        roots.retain(|(version, _)| *version > trusted);
        roots.sort_by_key(|(version, _)| *version);
        roots.dedup_by_key(|(version, _)| *version);
        roots.into_iter().map(|(_, bytes)| bytes).collect()
    }

    fn take_events(&mut self) -> Vec<AgentEvent> {
        std::mem::take(&mut lock(&self.shared).events)
    }

    fn observe(&mut self, event: &AgentEvent) {
        let kind = match event {
            // The delivery stays "taken" until the store's state shows it (`observe_store`): a
            // cycle in between must not download it again.
            AgentEvent::Lifecycle(Lifecycle::Installing { release, .. }) => {
                ReportKind::Installing { release: *release }
            }
            AgentEvent::Lifecycle(Lifecycle::Good { release }) => {
                ReportKind::Good { release: *release }
            }
            AgentEvent::Lifecycle(Lifecycle::Reverted {
                release, current, ..
            }) => ReportKind::Reverted {
                release: *release,
                to: *current,
            },
            AgentEvent::Alert(Alert::ReleaseAbandoned { from, to, .. }) => {
                lock(&self.shared).fallbacks += 1;
                ReportKind::Reverted {
                    release: *from,
                    to: *to,
                }
            }
            AgentEvent::Alert(Alert::UpdateRefused {
                bundle,
                error,
                class,
                ..
            }) => {
                let Some(release) = bundle
                    .strip_prefix("release-")
                    .and_then(|r| r.parse::<u64>().ok())
                else {
                    return;
                };
                lock(&self.shared).delivered.remove(&release);
                let mut message = error.clone();
                rulebox_controlplane_proto::bound_text(&mut message);
                match class {
                    FetchFailureClass::Policy => ReportKind::Refused {
                        release,
                        reason: message,
                    },
                    class => ReportKind::FetchFailed {
                        release,
                        class: *class,
                        message,
                    },
                }
            }
            _ => return,
        };
        self.report(kind);
    }
}

/// When a report is made, for its `at_unix`.
pub(crate) fn now() -> u64 {
    now_unix()
}
