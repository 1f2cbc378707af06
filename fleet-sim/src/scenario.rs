//! What the simulation runs: the scenario of the new release, the customer-policy kinds, the
//! settings, and why a run fails.

use std::str::FromStr;

use serde::Serialize;

use rulebox_rollout::RolloutError;

/// What is wrong with the new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Nothing: the eight good rules.
    Good,
    /// Every start of the release kills the agent before its health window (a stand-in for content
    /// that crashes the host at boot); the boot guard falls back after three starts.
    CrashAtBoot,
    /// Two rules trap on real events (`endless-loop`, `null-deref`) and are quarantined.
    Trap,
    /// Hosts that take the release stop reporting (the release breaks the agent's telemetry; its
    /// update channel still works, so the revert reaches it).
    Silent,
    /// A rule fires on every event (`fires-on-everything`).
    DetectionStorm,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 5] = [
        Scenario::Good,
        Scenario::CrashAtBoot,
        Scenario::Trap,
        Scenario::Silent,
        Scenario::DetectionStorm,
    ];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Good => "good",
            Scenario::CrashAtBoot => "crash-at-boot",
            Scenario::Trap => "trap",
            Scenario::Silent => "silent",
            Scenario::DetectionStorm => "detection-storm",
        }
    }

    /// Whether the release should be halted.
    pub const fn is_bad(self) -> bool {
        !matches!(self, Scenario::Good)
    }
}

impl FromStr for Scenario {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                SimError::Config(format!(
                    "unknown scenario `{s}`; one of: {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                ))
            })
    }
}

/// Why a simulation could not run or did not hold together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration is unusable.
    #[error("simulation settings: {0}")]
    Config(String),
    /// The content could not be built or signed.
    #[error("building the simulation's content: {0}")]
    Content(String),
    /// A real host failed in an unexpected way.
    #[error("real host: {0}")]
    RealHost(String),
    /// The controller refused.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// A real host disagreed with the model.
    #[error("the real hosts disagree with the model: {0}")]
    Inconsistent(String),
}

/// A customer policy kind in the simulated fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Pinned to the previous release.
    Pinned,
    /// N-1.
    NMinus1,
    /// Paused.
    Paused,
    /// Latest, delayed by [`SimConfig::delay_hours`].
    Delayed,
}

impl PolicyKind {
    /// Every kind.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Pinned,
        PolicyKind::NMinus1,
        PolicyKind::Paused,
        PolicyKind::Delayed,
    ];

    /// A short name.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::Pinned => "pinned",
            PolicyKind::NMinus1 => "n-1",
            PolicyKind::Paused => "paused",
            PolicyKind::Delayed => "delayed",
        }
    }
}

/// Simulation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Hosts in the fleet.
    pub hosts: usize,
    /// What is wrong with the new release.
    pub scenario: Scenario,
    /// Seed of every pseudo-random choice (attributes, policies, poll times, jitter).
    pub seed: u64,
    /// Real hosts run after the timeline besides the probe and the policy hosts.
    pub real_hosts: usize,
    /// Share of the fleet with each policy kind (pinned, N-1, paused, delayed).
    pub policy_share: f64,
    /// The delayed hosts' delay, hours.
    pub delay_hours: u32,
    /// Use the emergency plan (shorter bakes; still canary first, still validated).
    pub emergency: bool,
    /// How often a host polls for offers and reverts, seconds.
    pub poll_secs: u64,
    /// How long one crashing start of the agent takes, seconds.
    pub restart_secs: u64,
}

impl SimConfig {
    /// Defaults: seed 7, 4 real hosts, 2% of each policy kind, a 2-hour delay, the standard plan,
    /// polls every 5 minutes, 2 minutes per crashing start.
    pub fn new(hosts: usize, scenario: Scenario) -> SimConfig {
        SimConfig {
            hosts,
            scenario,
            seed: 7,
            real_hosts: 4,
            policy_share: 0.02,
            delay_hours: 2,
            emergency: false,
            poll_secs: 300,
            restart_secs: 120,
        }
    }
}
