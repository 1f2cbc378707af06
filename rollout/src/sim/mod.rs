//! The fleet simulation: thousands of hosts in virtual time, a rollout controller, and a scenario for
//! the new release. Run by `rulebox fleet simulate`.
//!
//! **What is real and what is modelled.** The content is real: both releases are built, signed and
//! validated with the release tools (every module loaded in the real runtime). A sample of hosts is
//! real: each has its own [`ContentStore`](rulebox_runtime::content::ContentStore) in a temporary
//! folder and runs the production code end to end ([`real`]): install with every signature and policy
//! check, the boot guard, the sandbox runtime evaluating the demo events with every rule of the
//! release, the controller's signed revert. One real host (the *probe*) runs before the timeline and
//! gives the figures (rules quarantined, detections per event, per-event latency, whether the boot
//! guard falls back) that every modelled host reports for the same content; `real_hosts` more real
//! hosts, plus one real host per customer-policy kind, run after the timeline with the revert the
//! controller actually issued, and must agree with the probe and with the model (otherwise the
//! simulation fails with [`SimError::Inconsistent`]). The rest of the fleet is modelled: a state
//! machine per host (polling for offers and reverts, installing, crash-looping at boot, falling back,
//! going silent, heartbeating), which calls the endpoint's own policy decision
//! ([`CustomerPolicy::permits`]) for every policy host.

pub mod content;
pub mod real;
pub mod svg;

use std::str::FromStr;
use std::sync::Arc;

use rulebox_runtime::content::{CustomerPolicy, PolicyMode, verify_policy};
use serde::Serialize;

use crate::controller::{Controller, Phase, RolloutError, validate_release};
use crate::fleet::{Criticality, HostInfo};
use crate::health::{HealthReport, ReportKind};
use crate::plan::RolloutPlan;
use content::{NEW_RELEASE, PREVIOUS_RELEASE, SimContent};
use real::{BOOT_ATTEMPTS, CompileCache, ContentRun, RealHostRun, RealRunner};

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

/// Per-ring figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingPoint {
    /// Hosts running the new release.
    pub on_new: usize,
    /// Hosts hurt by it: crash-looping, silent, or running a bad release.
    pub failing: usize,
}

/// The fleet at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the rollout started.
    pub t: u64,
    /// Per ring.
    pub rings: Vec<RingPoint>,
}

/// What policy hosts ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyOutcome {
    /// The policy.
    pub kind: PolicyKind,
    /// Hosts with it.
    pub hosts: usize,
    /// Of those, on the new release at the end.
    pub on_new: usize,
    /// On the previous release at the end.
    pub on_previous: usize,
    /// The real policy host's refusal message at the start (the endpoint's own words).
    pub endpoint_refusal: Option<String>,
}

/// The simulation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The scenario.
    pub scenario: Scenario,
    /// Fleet size.
    pub hosts: usize,
    /// Hosts whose owner's policy allows the new release during the rollout.
    pub eligible: usize,
    /// Hosts per ring.
    pub ring_sizes: Vec<usize>,
    /// Hosts that installed the new release.
    pub received: usize,
    /// Of those, per ring.
    pub received_by_ring: Vec<usize>,
    /// Hosts outside the canary ring that installed it before the halt (the target is 0; 0 when the
    /// release was not halted).
    pub received_outside_canary_before_halt: usize,
    /// Hosts that quarantined a rule of the new release.
    pub quarantined_hosts: usize,
    /// Hosts that crash-looped at boot.
    pub crash_looped: usize,
    /// Hosts that went silent.
    pub went_silent: usize,
    /// Seconds from the start to the halt.
    pub halted_after_secs: Option<u64>,
    /// Why it halted.
    pub halt_reasons: Vec<String>,
    /// Seconds from the start to completion.
    pub completed_after_secs: Option<u64>,
    /// Hosts that received a bad release and are back on good content.
    pub back_on_good: usize,
    /// Hosts that need a person: still crash-looping, silent, or on a bad release at the end.
    pub manual_intervention: usize,
    /// Hosts on the new release at the end.
    pub on_new_at_end: usize,
    /// Policy hosts.
    pub policies: Vec<PolicyOutcome>,
    /// The real hosts' lives (the probe first).
    pub real_hosts: Vec<RealHostRun>,
    /// Virtual seconds simulated.
    pub virtual_secs: u64,
    /// The fleet over time (every 5 virtual minutes).
    pub timeline: Vec<TimelinePoint>,
}

fn fmt_duration(secs: u64) -> String {
    format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}

impl SimReport {
    /// The report for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!(
            "scenario {}: {} hosts, rings {:?}, {} eligible under their owners' policies",
            self.scenario.name(),
            self.hosts,
            self.ring_sizes,
            self.eligible
        ));
        line(format!(
            "  received the release      {:>6}  (per ring {:?})",
            self.received, self.received_by_ring
        ));
        line(format!(
            "  outside canary before halt{:>6}",
            self.received_outside_canary_before_halt
        ));
        line(format!(
            "  quarantined a rule        {:>6}",
            self.quarantined_hosts
        ));
        line(format!(
            "  crash-looped at boot      {:>6}",
            self.crash_looped
        ));
        line(format!(
            "  went silent               {:>6}",
            self.went_silent
        ));
        match self.halted_after_secs {
            Some(t) => line(format!(
                "  halted after              {}: {}",
                fmt_duration(t),
                self.halt_reasons.join("; ")
            )),
            None => line("  halted                    no".to_owned()),
        }
        if let Some(t) = self.completed_after_secs {
            line(format!("  completed after           {}", fmt_duration(t)));
        }
        line(format!(
            "  back on good content      {:>6}",
            self.back_on_good
        ));
        line(format!(
            "  on the new release at end {:>6}",
            self.on_new_at_end
        ));
        line(format!(
            "  NEEDING MANUAL INTERVENTION {:>4}",
            self.manual_intervention
        ));
        for p in &self.policies {
            line(format!(
                "  policy {:<8} {:>5} hosts: {} on release {NEW_RELEASE}, {} on release {PREVIOUS_RELEASE}{}",
                p.kind.name(),
                p.hosts,
                p.on_new,
                p.on_previous,
                p.endpoint_refusal
                    .as_ref()
                    .map(|r| format!(" (endpoint: {r})"))
                    .unwrap_or_default()
            ));
        }
        line(format!(
            "  real hosts (production store, boot guard and runtime): {}; the other {} modelled from the probe",
            self.real_hosts.len(),
            self.hosts.saturating_sub(self.real_hosts.len())
        ));
        line(format!(
            "  virtual time              {}",
            fmt_duration(self.virtual_secs)
        ));
        s
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostState {
    Running,
    CrashLoop { until: u64 },
    Silent,
}

#[derive(Debug, Clone)]
struct SimHost {
    policy: Option<PolicyKind>,
    poll_slot: u64,
    current: u64,
    state: HostState,
    new_bad: bool,
    took_at: Option<u64>,
    crash_looped: bool,
    went_silent: bool,
    boot_guard_reverts: u32,
}

/// Builds the simulated fleet: attributes and policies from the seed.
fn make_fleet(cfg: &SimConfig) -> (Vec<HostInfo>, Vec<SimHost>) {
    const REGIONS: [&str; 4] = ["eu-west", "us-east", "us-west", "ap-south"];
    let slots = (cfg.poll_secs / 60).max(1);
    let mut infos = Vec::with_capacity(cfg.hosts);
    let mut hosts = Vec::with_capacity(cfg.hosts);
    for i in 0..cfg.hosts {
        let h = splitmix(cfg.seed ^ splitmix(i as u64));
        let vendor_internal = h.is_multiple_of(200);
        let criticality = match (h >> 8) % 10 {
            0..=5 => Criticality::Low,
            6..=8 => Criticality::Medium,
            _ => Criticality::High,
        };
        let region = REGIONS[usize::try_from((h >> 16) % 4).unwrap_or(0)];
        let u = ((h >> 24) % 10_000) as f64 / 10_000.0;
        let policy = if vendor_internal {
            None
        } else {
            PolicyKind::ALL
                .into_iter()
                .enumerate()
                .find(|(k, _)| u < cfg.policy_share * (*k as f64 + 1.0))
                .map(|(_, p)| p)
        };
        infos.push(HostInfo {
            id: format!("host-{i:06}"),
            vendor_internal,
            criticality,
            region: region.to_owned(),
        });
        hosts.push(SimHost {
            policy,
            poll_slot: (h >> 40) % slots,
            current: PREVIOUS_RELEASE,
            state: HostState::Running,
            new_bad: false,
            took_at: None,
            crash_looped: false,
            went_silent: false,
            boot_guard_reverts: 0,
        });
    }
    (infos, hosts)
}

struct Policies {
    by_kind: Vec<(PolicyKind, CustomerPolicy, Vec<u8>)>,
}

impl Policies {
    fn new(content: &SimContent, cfg: &SimConfig, now: u64) -> Result<Policies, SimError> {
        let owner_root = rulebox_runtime::content::parse_trusted_root(&content.owner_root_bytes)
            .map_err(|e| SimError::Content(e.to_string()))?;
        let mut by_kind = Vec::new();
        for kind in PolicyKind::ALL {
            let (mode, delay) = match kind {
                PolicyKind::Pinned => (
                    PolicyMode::Pin {
                        release: PREVIOUS_RELEASE,
                    },
                    0,
                ),
                PolicyKind::NMinus1 => (PolicyMode::NMinus { n: 1 }, 0),
                PolicyKind::Paused => (PolicyMode::Paused, 0),
                PolicyKind::Delayed => (PolicyMode::Latest, cfg.delay_hours),
            };
            let (_, bytes) = content::signed_policy(&content.owner, 1, mode, delay, now)?;
            // What every host of this kind holds, verified by the endpoint's code.
            let policy =
                verify_policy(&bytes, &owner_root).map_err(|e| SimError::Content(e.to_string()))?;
            by_kind.push((kind, policy, bytes));
        }
        Ok(Policies { by_kind })
    }

    fn get(&self, kind: PolicyKind) -> &(PolicyKind, CustomerPolicy, Vec<u8>) {
        // `by_kind` holds every kind, in `PolicyKind::ALL` order.
        &self.by_kind[PolicyKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default()]
    }
}

/// Runs the simulation. `progress` is called now and then with (virtual seconds done, expected
/// virtual seconds).
pub fn simulate(
    cfg: &SimConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SimReport, SimError> {
    if cfg.hosts == 0 {
        return Err(SimError::Config("at least one host".to_owned()));
    }
    if !(0.0..=0.2).contains(&cfg.policy_share) {
        return Err(SimError::Config(
            "policy share must be in [0, 0.2] (four kinds)".to_owned(),
        ));
    }
    if cfg.poll_secs < 60 || cfg.restart_secs == 0 {
        return Err(SimError::Config(
            "poll at least every 60 s and a restart time above 0".to_owned(),
        ));
    }
    let start = rulebox_runtime::content::now_unix();
    let content = content::build(cfg.scenario, cfg.seed, start)?;
    let validated = validate_release(&content.new.1, &content.root_path, start)?;
    let plan = if cfg.emergency {
        RolloutPlan::emergency(NEW_RELEASE, Some(PREVIOUS_RELEASE))
    } else {
        RolloutPlan::standard(NEW_RELEASE, Some(PREVIOUS_RELEASE))
    };
    let (infos, mut hosts) = make_fleet(cfg);
    let policies = Policies::new(&content, cfg, start)?;
    let mut controller = Controller::start(
        plan.clone(),
        &infos,
        &validated,
        vec![content.vendor.clone()],
        start,
    )?;

    let content = Arc::new(content);
    let runtime = rulebox_runtime::Runtime::new(rulebox_runtime::RuntimeConfig::default())
        .map_err(|e| SimError::RealHost(e.to_string()))?;
    let scenario = cfg.scenario;
    // The probe: a real host whose figures the modelled hosts report.
    let (probe, cache) = {
        let (rt, content) = (runtime.clone(), Arc::clone(&content));
        runtime.run_sandboxed(move |thread| {
            let mut runner = RealRunner::new(&rt, thread, CompileCache::new())?;
            let probe = runner.host_life("probe", &content, scenario, start, None, None)?;
            Ok::<_, SimError>((probe, runner.into_cache()))
        })?
    };
    let mut report = timeline(
        cfg,
        &plan,
        &mut controller,
        &mut hosts,
        &policies,
        &probe,
        start,
        progress,
    )?;
    report.real_hosts.push(probe);
    // The rest of the real sample, with the revert the controller actually issued.
    let revert = controller.revert().map(<[u8]>::to_vec);
    let runs = {
        let (rt, content) = (runtime.clone(), Arc::clone(&content));
        let policies = policies.by_kind.clone();
        let (sample, delay_hours) = (cfg.real_hosts, cfg.delay_hours);
        let revert = revert.clone();
        runtime.run_sandboxed(move |thread| -> Result<Vec<RealHostRun>, SimError> {
            let mut runner = RealRunner::new(&rt, thread, cache)?;
            let mut runs = Vec::new();
            for n in 0..sample {
                runs.push(runner.host_life(
                    &format!("sample-{n}"),
                    &content,
                    scenario,
                    start,
                    None,
                    revert.as_deref(),
                )?);
            }
            for (kind, _, bytes) in &policies {
                let retry =
                    (*kind == PolicyKind::Delayed).then(|| start + u64::from(delay_hours) * 3600);
                runs.push(runner.host_life(
                    &format!("policy-{}", kind.name()),
                    &content,
                    scenario,
                    start,
                    Some((bytes, retry)),
                    None,
                )?);
            }
            Ok(runs)
        })?
    };
    check_real_hosts(cfg, revert.is_some(), &policies, runs, start, &mut report)?;
    Ok(report)
}

#[allow(
    clippy::too_many_arguments,
    reason = "the timeline's inputs, all borrowed from simulate"
)]
fn timeline(
    cfg: &SimConfig,
    plan: &RolloutPlan,
    controller: &mut Controller,
    hosts: &mut [SimHost],
    policies: &Policies,
    probe: &RealHostRun,
    start: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SimReport, SimError> {
    let step = plan.gates.heartbeat_secs;
    let slots = (cfg.poll_secs / step.max(1)).max(1);
    let scenario = cfg.scenario;
    let rings_n = plan.rings.len();
    let expected = plan.total_bake_secs() + 3600;
    let limit = plan.total_bake_secs() + 12 * 3600;
    let on_prev = probe.on_previous.clone();
    let on_new: Option<ContentRun> = probe.on_new.clone();
    if scenario == Scenario::CrashAtBoot && probe.fell_back_to != Some(PREVIOUS_RELEASE) {
        return Err(SimError::Inconsistent(format!(
            "the probe's boot guard did not fall back to release {PREVIOUS_RELEASE}: {:?}",
            probe.fell_back_to
        )));
    }
    let mut timeline = Vec::new();
    let mut halted_at: Option<u64> = None;
    let mut completed_at: Option<u64> = None;
    let mut t = start;
    let mut settle_until: Option<u64> = None;
    loop {
        let elapsed = t - start;
        let revert_published = controller.revert().is_some();
        for (i, host) in hosts.iter_mut().enumerate() {
            let mix = splitmix(cfg.seed ^ splitmix(i as u64 ^ (elapsed << 20)));
            // The boot guard ends a crash loop by itself.
            if let HostState::CrashLoop { until } = host.state
                && t >= until
            {
                host.state = HostState::Running;
                host.current = PREVIOUS_RELEASE;
                host.new_bad = true;
                host.boot_guard_reverts += 1;
            }
            let polls = (elapsed / step) % slots == host.poll_slot;
            let crashing = matches!(host.state, HostState::CrashLoop { .. });
            if polls && revert_published && !crashing {
                // The signed revert (verified and applied by the real hosts of the sample; modelled
                // here): the release is marked bad and, where it runs, replaced by the previous one.
                // A silent host's update channel still works, so it is reached too.
                host.new_bad = true;
                if host.current == NEW_RELEASE {
                    host.current = PREVIOUS_RELEASE;
                    host.state = HostState::Running;
                }
            } else if polls
                && controller.is_offered(i)
                && host.current != NEW_RELEASE
                && !host.new_bad
                && host.state == HostState::Running
            {
                let verdict = match host.policy {
                    None => Ok(()),
                    Some(kind) => policies
                        .get(kind)
                        .1
                        .permits(NEW_RELEASE, start, NEW_RELEASE, t),
                };
                match verdict {
                    Err(v) => controller.report(
                        i,
                        HealthReport {
                            at_unix: t,
                            kind: ReportKind::Refused {
                                release: NEW_RELEASE,
                                reason: v.to_string(),
                            },
                            content_release: Some(host.current),
                            quarantined_rules: 0,
                            boot_guard_reverts: host.boot_guard_reverts,
                            events: 0,
                            detections: 0,
                            mean_latency_us: 0.0,
                        },
                    )?,
                    Ok(()) => {
                        controller.report(
                            i,
                            HealthReport {
                                at_unix: t,
                                kind: ReportKind::Installing {
                                    release: NEW_RELEASE,
                                },
                                content_release: Some(host.current),
                                quarantined_rules: 0,
                                boot_guard_reverts: host.boot_guard_reverts,
                                events: 0,
                                detections: 0,
                                mean_latency_us: 0.0,
                            },
                        )?;
                        host.took_at = Some(t);
                        host.current = NEW_RELEASE;
                        host.state = match scenario {
                            Scenario::CrashAtBoot => {
                                host.crash_looped = true;
                                HostState::CrashLoop {
                                    until: t + u64::from(BOOT_ATTEMPTS) * cfg.restart_secs,
                                }
                            }
                            Scenario::Silent => {
                                host.went_silent = true;
                                HostState::Silent
                            }
                            _ => HostState::Running,
                        };
                        continue;
                    }
                }
            }
            if host.state == HostState::Running {
                let run = if host.current == NEW_RELEASE {
                    on_new.as_ref().unwrap_or(&on_prev)
                } else {
                    &on_prev
                };
                let events = 80 + mix % 40;
                let detections = events * run.detections / run.events.max(1);
                let jitter = 0.9 + ((mix >> 16) % 21) as f64 / 100.0;
                controller.report(
                    i,
                    HealthReport {
                        at_unix: t,
                        kind: ReportKind::Heartbeat,
                        content_release: Some(host.current),
                        quarantined_rules: if host.current == NEW_RELEASE {
                            run.quarantined
                        } else {
                            0
                        },
                        boot_guard_reverts: host.boot_guard_reverts,
                        events,
                        detections,
                        mean_latency_us: run.mean_latency_us * jitter,
                    },
                )?;
            }
        }
        for action in controller.tick(t)? {
            match action {
                crate::controller::Action::Halt { .. } => {
                    halted_at = Some(t);
                    settle_until = Some(t + 6 * 3600);
                }
                crate::controller::Action::Complete => {
                    completed_at = Some(t);
                    settle_until = Some(t + 2 * cfg.poll_secs);
                }
                _ => {}
            }
        }
        if elapsed.is_multiple_of(300) {
            timeline.push(snapshot(elapsed, hosts, controller, rings_n, scenario));
            progress(elapsed, expected);
        }
        // After a halt, stop once every host is back on good content (and one poll later).
        if halted_at.is_some()
            && settle_until.is_some_and(|s| s > t + cfg.poll_secs)
            && hosts
                .iter()
                .all(|h| h.current != NEW_RELEASE && h.state == HostState::Running)
        {
            settle_until = Some(t + cfg.poll_secs);
        }
        if settle_until.is_some_and(|s| t >= s) || elapsed >= limit {
            break;
        }
        t += step;
    }
    let elapsed = t - start;
    timeline.push(snapshot(elapsed, hosts, controller, rings_n, scenario));
    progress(elapsed, elapsed);

    let mut received_by_ring = vec![0; rings_n];
    for (i, h) in hosts.iter().enumerate() {
        if h.took_at.is_some()
            && let Some(r) = controller.ring_of(i)
        {
            received_by_ring[r] += 1;
        }
    }
    let received = hosts.iter().filter(|h| h.took_at.is_some()).count();
    let received_outside_canary_before_halt = match halted_at {
        Some(halt) => hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| {
                h.took_at.is_some_and(|t| t <= halt) && controller.ring_of(*i) != Some(0)
            })
            .count(),
        None => 0,
    };
    let on_new_at_end = hosts
        .iter()
        .filter(|h| h.current == NEW_RELEASE && h.state == HostState::Running)
        .count();
    let stuck = |h: &SimHost| {
        h.state != HostState::Running || (scenario.is_bad() && h.current == NEW_RELEASE)
    };
    let eligible = hosts
        .iter()
        .filter(|h| match h.policy {
            None => true,
            Some(k) => policies
                .get(k)
                .1
                .permits(NEW_RELEASE, start, NEW_RELEASE, t)
                .is_ok(),
        })
        .count();
    let policies_out = PolicyKind::ALL
        .into_iter()
        .map(|kind| {
            let of_kind = || hosts.iter().filter(move |h| h.policy == Some(kind));
            PolicyOutcome {
                kind,
                hosts: of_kind().count(),
                on_new: of_kind().filter(|h| h.current == NEW_RELEASE).count(),
                on_previous: of_kind().filter(|h| h.current == PREVIOUS_RELEASE).count(),
                endpoint_refusal: None,
            }
        })
        .collect();
    let halt_reasons = match controller.phase() {
        Phase::Halted { failures, .. } => failures.clone(),
        _ => Vec::new(),
    };
    Ok(SimReport {
        scenario,
        hosts: hosts.len(),
        eligible,
        ring_sizes: controller.status().ring_sizes,
        received,
        received_by_ring,
        received_outside_canary_before_halt,
        quarantined_hosts: if on_new.as_ref().is_some_and(|r| r.quarantined > 0) {
            received
        } else {
            0
        },
        crash_looped: hosts.iter().filter(|h| h.crash_looped).count(),
        went_silent: hosts.iter().filter(|h| h.went_silent).count(),
        halted_after_secs: halted_at.map(|h| h - start),
        halt_reasons,
        completed_after_secs: completed_at.map(|c| c - start),
        back_on_good: hosts
            .iter()
            .filter(|h| {
                scenario.is_bad()
                    && h.took_at.is_some()
                    && h.current == PREVIOUS_RELEASE
                    && h.state == HostState::Running
            })
            .count(),
        manual_intervention: hosts.iter().filter(|h| stuck(h)).count(),
        on_new_at_end,
        policies: policies_out,
        real_hosts: Vec::new(),
        virtual_secs: elapsed,
        timeline,
    })
}

fn snapshot(
    t: u64,
    hosts: &[SimHost],
    controller: &Controller,
    rings_n: usize,
    scenario: Scenario,
) -> TimelinePoint {
    let mut rings = vec![RingPoint::default(); rings_n];
    for (i, h) in hosts.iter().enumerate() {
        let Some(p) = controller.ring_of(i).and_then(|r| rings.get_mut(r)) else {
            continue;
        };
        let on_new = h.current == NEW_RELEASE && h.state == HostState::Running;
        if on_new {
            p.on_new += 1;
        }
        if h.state != HostState::Running || (on_new && scenario.is_bad()) {
            p.failing += 1;
        }
    }
    TimelinePoint { t, rings }
}

/// Checks the real sample run after the timeline against the probe and the model, and adds it to
/// the report.
fn check_real_hosts(
    cfg: &SimConfig,
    halted: bool,
    policies: &Policies,
    runs: Vec<RealHostRun>,
    start: u64,
    report: &mut SimReport,
) -> Result<(), SimError> {
    if cfg.scenario.is_bad() != halted {
        return Err(SimError::Inconsistent(format!(
            "scenario {} but the controller {} the release",
            cfg.scenario.name(),
            if halted { "halted" } else { "did not halt" }
        )));
    }
    let probe = report.real_hosts[0].clone();
    let (sample, policy_runs) = runs.split_at(cfg.real_hosts.min(runs.len()));
    for run in sample {
        let same = |a: &Option<ContentRun>, b: &Option<ContentRun>| match (a, b) {
            (Some(a), Some(b)) => {
                (a.rules, a.quarantined, a.detections) == (b.rules, b.quarantined, b.detections)
            }
            (None, None) => true,
            _ => false,
        };
        if !same(&run.on_new, &probe.on_new) || run.fell_back_to != probe.fell_back_to {
            return Err(SimError::Inconsistent(format!(
                "{} ran the new release differently from the probe",
                run.label
            )));
        }
        if halted {
            let back = run
                .after_revert
                .as_ref()
                .is_some_and(|(current, _)| *current == Some(PREVIOUS_RELEASE));
            if !back || !run.reinstall_refused {
                return Err(SimError::Inconsistent(format!(
                    "{} is not back on release {PREVIOUS_RELEASE} with release {NEW_RELEASE} refused after the signed revert: {:?}",
                    run.label, run.after_revert
                )));
            }
        }
    }
    for (outcome, run) in report.policies.iter_mut().zip(policy_runs) {
        let (kind, policy, _) = policies.get(outcome.kind);
        let model = policy.permits(NEW_RELEASE, start, NEW_RELEASE, start);
        if model.is_ok() != run.refused.is_none() {
            return Err(SimError::Inconsistent(format!(
                "{}: the model says {model:?}, the real store {:?}",
                run.label, run.refused
            )));
        }
        if *kind == PolicyKind::Delayed && run.accepted_on_retry != Some(true) {
            return Err(SimError::Inconsistent(format!(
                "{}: not accepted once the delay passed",
                run.label
            )));
        }
        outcome.endpoint_refusal = run.refused.clone();
    }
    report.real_hosts.extend(runs);
    Ok(())
}
