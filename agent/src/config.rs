//! [`AgentConfig`]: what an agent is built from (a store, a runtime configuration, the baseline
//! content) and its settings.

use std::path::PathBuf;
use std::time::Duration;

use rulebox_runtime::RuntimeConfig;

/// The content the agent runs when there is no usable release: in safe mode, before the first
/// release is installed, and when the boot guard or a revert finds nothing else. It is the floor:
/// the agent never runs nothing. Ship it inside the agent's binary.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    modules: Vec<(String, Vec<u8>)>,
}

impl Baseline {
    /// A baseline of `modules`: a name (for messages and the module's source label) and the module
    /// bytes of each. Every one must compile, or [`Agent::start`](crate::Agent::start) refuses.
    pub fn from_modules<N: Into<String>, B: Into<Vec<u8>>>(
        modules: impl IntoIterator<Item = (N, B)>,
    ) -> Baseline {
        Baseline {
            modules: modules
                .into_iter()
                .map(|(n, b)| (n.into(), b.into()))
                .collect(),
        }
    }

    /// The modules.
    pub fn modules(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.modules.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// Whether the baseline holds no module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
}

/// When a release that started is healthy: GOOD is recorded (it becomes last-known-good, its
/// STARTING record is cleared, the versions its update replaced are dropped).
///
/// The window passes once the release has processed `events` events **and** run for `running`
/// without the agent dying; with `or_after` set (the default: 10 minutes), it also passes after
/// that long whatever the event count, so that a quiet host reaches GOOD too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthWindow {
    /// Events the release must process.
    pub events: u64,
    /// How long it must run.
    pub running: Duration,
    /// How long it must run to pass whatever the event count (`None`: the count is always needed).
    pub or_after: Option<Duration>,
}

impl HealthWindow {
    /// A window of `events` events and `running` time (no time-only criterion).
    pub fn new(events: u64, running: Duration) -> HealthWindow {
        HealthWindow {
            events,
            running,
            or_after: None,
        }
    }

    /// Whether a release that processed `events` events in `elapsed` passed.
    pub fn passed(&self, events: u64, elapsed: Duration) -> bool {
        (events >= self.events && elapsed >= self.running)
            || self.or_after.is_some_and(|after| elapsed >= after)
    }
}

impl Default for HealthWindow {
    /// 100 events and 30 seconds, or 10 minutes whatever the event count.
    fn default() -> Self {
        HealthWindow {
            or_after: Some(Self::DEFAULT_OR_AFTER),
            ..HealthWindow::new(100, Duration::from_secs(30))
        }
    }
}

impl HealthWindow {
    /// The default time criterion: 10 minutes.
    pub const DEFAULT_OR_AFTER: Duration = Duration::from_secs(600);

    /// This window with the time criterion `or_after` (`None`: the event count is always needed).
    pub fn with_or_after(self, or_after: Option<Duration>) -> HealthWindow {
        HealthWindow { or_after, ..self }
    }
}

/// Everything [`Agent::start`](crate::Agent::start) needs. Make one with [`AgentConfig::new`] and set
/// the fields that differ from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The runtime configuration (limits, caps) every rule runs under, unless its manifest entry
    /// sets its own limits.
    pub runtime: RuntimeConfig,
    /// The content store (see `rulebox store init`); `None`: safe mode, the baseline content only,
    /// no updates.
    pub store: Option<PathBuf>,
    /// The content built into the agent (see [`Baseline`]).
    pub baseline: Baseline,
    /// Starts of a release without reaching GOOD after which the boot guard abandons it for the
    /// last-known-good release (default 3).
    pub boot_attempts: u32,
    /// When a started release is healthy (default: 100 events and 30 seconds, or 10 minutes).
    pub health: HealthWindow,
    /// Events queued between the sources and the rules (default 1024). A full queue makes
    /// [`EventSender::send`](crate::EventSender::send) wait (back-pressure);
    /// [`EventSender::try_send`](crate::EventSender::try_send) drops the event and counts it.
    pub queue: usize,
    /// Events queued between the agent and its output (default 1024): a full output queue makes the
    /// agent wait, so read [`AgentOutput`](crate::AgentOutput) on a thread of its own.
    pub output_queue: usize,
    /// How often the inbox is scanned (and a transport polled), default 500 ms.
    pub inbox_poll: Duration,
    /// Fetch content from a controller and a content repository (`None`, the default: content
    /// arrives only through the inbox, as `rulebox push` delivers it). Needs a store.
    pub fetch: Option<crate::FetchConfig>,
}

impl AgentConfig {
    /// The defaults, with `baseline` and no store (safe mode until [`store`](Self::store) is set).
    pub fn new(baseline: Baseline) -> AgentConfig {
        AgentConfig {
            runtime: RuntimeConfig::default(),
            store: None,
            baseline,
            boot_attempts: 3,
            health: HealthWindow::default(),
            queue: 1024,
            output_queue: 1024,
            inbox_poll: Duration::from_millis(500),
            fetch: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_window_needs_events_and_time_unless_a_time_criterion_is_set() {
        let mut w = HealthWindow::new(100, Duration::from_secs(30));
        assert!(!w.passed(99, Duration::from_secs(3600)));
        assert!(!w.passed(100, Duration::from_secs(29)));
        assert!(w.passed(100, Duration::from_secs(30)));
        w.or_after = Some(Duration::from_secs(600));
        assert!(!w.passed(0, Duration::from_secs(599)));
        assert!(w.passed(0, Duration::from_secs(600)));
    }
}
