//! The simulation itself: the modelled fleet, the timeline in virtual time, and the check of the real
//! sample against the model.

use std::sync::Arc;

use rulebox_rollout::{
    Controller, Criticality, Effect, HealthReport, HostInfo, Phase, ReportKind, RolloutPlan,
    validate_release,
};
use rulebox_runtime::content::{
    BundleLimits, CustomerPolicy, PolicyMode, PolicyViolation, ReleaseName, SeenReleases,
    check_bundle_structure, verify_policy,
};

use crate::content::{self, NEW_RELEASE, PREVIOUS_RELEASE, SimContent};
use crate::real::{BOOT_ATTEMPTS, CompileCache, ContentRun, RealHostRun, RealRunner};
use crate::report::{PolicyOutcome, RingPoint, SimReport, TimelinePoint};
use crate::scenario::{PolicyKind, Scenario, SimConfig, SimError};

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
    reported_good: bool,
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
            reported_good: false,
            crash_looped: false,
            went_silent: false,
            boot_guard_reverts: 0,
        });
    }
    (infos, hosts)
}

struct Policies {
    by_kind: Vec<(PolicyKind, CustomerPolicy, Vec<u8>)>,
    /// The new release's manifest hash.
    new_hash: String,
    /// What a host that was offered the new release at the start has seen.
    seen: SeenReleases,
}

/// The canonical manifest hash of the bundle in `dir`.
fn manifest_hash_of(dir: &std::path::Path) -> Result<String, SimError> {
    check_bundle_structure(dir, &BundleLimits::default())
        .map(|b| b.manifest_hash().to_owned())
        .map_err(|e| SimError::Content(e.to_string()))
}

impl Policies {
    fn new(content: &SimContent, cfg: &SimConfig, now: u64) -> Result<Policies, SimError> {
        let owner_root = rulebox_runtime::content::parse_trusted_root(&content.owner_root_bytes)
            .map_err(|e| SimError::Content(e.to_string()))?;
        let previous_hash = manifest_hash_of(&content.previous.1)?;
        let new_hash = manifest_hash_of(&content.new.1)?;
        let mut seen = SeenReleases::default();
        seen.record(NEW_RELEASE, &new_hash, now, Some(PREVIOUS_RELEASE));
        let mut by_kind = Vec::new();
        for kind in PolicyKind::ALL {
            let (mode, delay) = match kind {
                PolicyKind::Pinned => (
                    PolicyMode::Pin {
                        release: PREVIOUS_RELEASE,
                        manifest_hash: Some(previous_hash.clone()),
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
        Ok(Policies {
            by_kind,
            new_hash,
            seen,
        })
    }

    /// The endpoint's decision on the new release, offered at the start, for a host of `kind` at
    /// `now`.
    fn permits(&self, kind: PolicyKind, now: u64) -> Result<(), PolicyViolation> {
        self.get(kind)
            .1
            .permits(NEW_RELEASE, &self.new_hash, &self.seen, now)
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
        content.rollout.clone(),
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
            "the probe's boot guard did not fall back to release {PREVIOUS_RELEASE} (it went to {})",
            match probe.fell_back_to {
                Some(r) => format!("release {r}"),
                None => "no release".to_owned(),
            }
        )));
    }
    let mut timeline: Vec<TimelinePoint> = Vec::new();
    let quarantines = on_new.as_ref().is_some_and(|r| r.quarantined > 0);
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
                    Some(kind) => policies.permits(kind, t),
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
                // The first heartbeat on the new release after its health window: the boot guard
                // reached GOOD (a host crashing at boot or gone silent never gets here).
                let kind = if host.current == NEW_RELEASE && !host.reported_good {
                    host.reported_good = true;
                    ReportKind::Good {
                        release: NEW_RELEASE,
                    }
                } else {
                    ReportKind::Heartbeat
                };
                controller.report(
                    i,
                    HealthReport {
                        at_unix: t,
                        kind,
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
                Effect::Halt { .. } => {
                    halted_at = Some(t);
                    settle_until = Some(t + 6 * 3600);
                }
                Effect::Complete => {
                    completed_at = Some(t);
                    settle_until = Some(t + 2 * cfg.poll_secs);
                }
                _ => {}
            }
        }
        // A point whenever a ring's figures change: the picture's steps are the fleet's.
        let point = snapshot(elapsed, hosts, controller, rings_n, scenario, quarantines);
        if timeline
            .last()
            .is_none_or(|last: &TimelinePoint| last.rings != point.rings)
        {
            timeline.push(point);
        }
        if elapsed.is_multiple_of(300) {
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
    timeline.push(snapshot(
        elapsed,
        hosts,
        controller,
        rings_n,
        scenario,
        quarantines,
    ));
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
            Some(k) => policies.permits(k, t).is_ok(),
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
        ring_sizes: controller.status().ring_sizes(),
        ring_opened_after_secs: controller
            .status()
            .rings
            .iter()
            .filter_map(|r| r.opened_at.map(|at| at.saturating_sub(start)))
            .collect(),
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
    quarantines: bool,
) -> TimelinePoint {
    let mut rings = vec![RingPoint::default(); rings_n];
    for (i, h) in hosts.iter().enumerate() {
        let Some(p) = controller.ring_of(i).and_then(|r| rings.get_mut(r)) else {
            continue;
        };
        let on_new = h.current == NEW_RELEASE && h.state == HostState::Running;
        if on_new {
            p.on_new += 1;
            if quarantines {
                p.quarantined += 1;
            }
        }
        if h.took_at.is_some() && h.state != HostState::Running {
            p.silent += 1;
        }
        if h.took_at.is_some() && h.current != NEW_RELEASE && h.state == HostState::Running {
            p.reverted += 1;
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
                let now = match &run.after_revert {
                    Some((current, _)) => ReleaseName(*current).to_string(),
                    None => "no revert applied".to_owned(),
                };
                return Err(SimError::Inconsistent(format!(
                    "{} is not back on release {PREVIOUS_RELEASE} with release {NEW_RELEASE} refused after the signed revert (now: {now}; reinstall refused: {})",
                    run.label, run.reinstall_refused
                )));
            }
        }
    }
    for (outcome, run) in report.policies.iter_mut().zip(policy_runs) {
        let (kind, _, _) = policies.get(outcome.kind);
        let model = policies.permits(*kind, start);
        if model.is_ok() != run.refused.is_none() {
            let model = match &model {
                Ok(()) => "accepted".to_owned(),
                Err(v) => format!("refused ({v})"),
            };
            return Err(SimError::Inconsistent(format!(
                "{}: the model says {model}, the real store {}",
                run.label,
                run.refused
                    .as_deref()
                    .map_or_else(|| "accepted".to_owned(), |r| format!("refused ({r})"))
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
