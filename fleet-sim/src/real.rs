//! Real hosts: the simulation's sample that runs the production code end to end, each in its own
//! temporary content store: [`ContentStore::install`] (signature checks and the owner's policy),
//! the boot guard ([`ContentStore::begin_boot`] / [`ContentStore::mark_good`], with the process
//! "dying" before GOOD in the crash-at-boot scenario), the endpoint's activation path
//! ([`Content::from_bundle_with`] and [`RuleSet::activate`]: quarantined rules left out, manifest
//! limits and identity checks applied), the real sandbox runtime evaluating the demo events with
//! every rule of the release, and [`ContentStore::apply_revert`] with the controller's signed
//! revert. The modelled hosts take their figures from these runs.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::time::Instant;

use rulebox_runtime::content::{BootDecision, ContentStore, StoreError, VerifiedBundle};
use rulebox_runtime::events::EventReader;
use rulebox_runtime::sdk::Event;
use rulebox_runtime::{
    Alert, CompiledRule, Content, Outcome, RuleSet, RuleState, Runtime, SandboxThread,
};
use serde::Serialize;

use crate::content::SimContent;
use crate::scenario::{Scenario, SimError};

/// Starts without GOOD before the boot guard falls back (the agent's default K).
pub const BOOT_ATTEMPTS: u32 = 3;
/// How many times each real host streams the demo events through its content.
const PASSES: usize = 3;

/// What one content ran like on a real host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentRun {
    /// The release (`None`: the baseline).
    pub release: Option<u64>,
    /// Rules loaded.
    pub rules: usize,
    /// The fuel budget per event each loaded rule runs under (its manifest entry's, or the default).
    pub fuel_per_event: BTreeMap<String, u64>,
    /// Rules quarantined after the events.
    pub quarantined: u32,
    /// Events processed.
    pub events: u64,
    /// Detections raised.
    pub detections: u64,
    /// Mean wall-clock time per event over every rule, microseconds.
    pub mean_latency_us: f64,
}

impl ContentRun {
    /// Detections per event.
    pub fn detection_rate(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.detections as f64 / self.events as f64
        }
    }
}

/// The life of one real host through the rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealHostRun {
    /// Which sample host.
    pub label: String,
    /// The previous release, booted and marked GOOD.
    pub on_previous: ContentRun,
    /// The store's refusal of the new release, if it refused it (the owner's policy).
    pub refused: Option<String>,
    /// For a refused release retried later (a delay policy): whether the retry was accepted.
    pub accepted_on_retry: Option<bool>,
    /// The new release, if it ran.
    pub on_new: Option<ContentRun>,
    /// Crash at boot: the boot guard fell back to this release after [`BOOT_ATTEMPTS`] starts.
    pub fell_back_to: Option<u64>,
    /// After the signed revert: the release current, and how it ran.
    pub after_revert: Option<(Option<u64>, Option<ContentRun>)>,
    /// After the revert (or fallback), installing the new release again was refused as bad.
    pub reinstall_refused: bool,
}

/// Compiled modules by content hash, shared by the real hosts of a simulation (a real agent compiles
/// once per process; sharing the compilation across simulated processes changes no outcome and
/// saves most of the simulation's time).
pub type CompileCache = HashMap<String, CompiledRule>;

/// Shared state of the sample's runs: the compile cache and the demo events.
pub struct RealRunner<'a> {
    rt: &'a Runtime,
    thread: &'a SandboxThread,
    cache: HashMap<String, CompiledRule>,
    events: Vec<Event<'static>>,
}

fn store_err(what: &str, e: StoreError) -> SimError {
    SimError::RealHost(format!("{what}: {e}"))
}

impl<'a> RealRunner<'a> {
    /// A runner on `thread` of `rt`, starting with `cache`.
    pub fn new(
        rt: &'a Runtime,
        thread: &'a SandboxThread,
        cache: CompileCache,
    ) -> Result<Self, SimError> {
        let reader = EventReader::new(BufReader::new(
            rulebox_example_artifacts::DEMO_EVENTS.as_bytes(),
        ));
        let events = reader.filter_map(Result::ok).map(|e| e.event).collect();
        Ok(RealRunner {
            rt,
            thread,
            cache,
            events,
        })
    }

    /// The compile cache, to hand to the next runner.
    pub fn into_cache(self) -> CompileCache {
        self.cache
    }

    /// Activates `bundle` in a fresh rule set as the agent does (rules the store holds quarantined
    /// left out, manifest limits and identity checks applied) and streams the demo events through
    /// it; quarantines are recorded in the store, as the agent does.
    pub fn run_content(
        &mut self,
        store: &mut ContentStore,
        bundle: &VerifiedBundle,
    ) -> Result<ContentRun, SimError> {
        let (rt, cache) = (self.rt, &mut self.cache);
        let content = Content::from_bundle_with(
            bundle,
            |entry| store.is_quarantined(entry),
            |sha256, bytes, source| match cache.get(sha256) {
                Some(c) => Ok(c.clone()),
                None => {
                    let c = rt.compile(bytes, source)?;
                    cache.insert(sha256.to_owned(), c.clone());
                    Ok(c)
                }
            },
        );
        let mut set = RuleSet::new(self.rt);
        // A module that does not load or is not what its entry says is left out and counted below
        // as not loaded.
        let activation = set.activate(self.thread, &content);
        let fuel_per_event = activation
            .loaded()
            .filter_map(|info| {
                set.limits(&info.id)
                    .map(|l| (info.id.clone(), l.fuel_per_event))
            })
            .collect();
        let rules = set.rules().count();
        let mut outcome = Outcome::default();
        let (mut events, mut detections) = (0u64, 0u64);
        let started = Instant::now();
        for _ in 0..PASSES {
            for event in &self.events {
                outcome.clear();
                set.process_into(self.thread, event, &mut outcome)
                    .map_err(|e| SimError::RealHost(format!("event: {e}")))?;
                events += 1;
                detections += u64::try_from(outcome.detections.len()).unwrap_or(u64::MAX);
                for alert in &outcome.alerts {
                    if let Alert::RuleQuarantined(r) = alert {
                        store
                            .record_quarantine(r)
                            .map_err(|e| store_err("record quarantine", e))?;
                    }
                }
            }
        }
        let elapsed_us = started.elapsed().as_secs_f64() * 1e6;
        let quarantined = set
            .rules()
            .filter(|(_, s, _)| matches!(s, RuleState::Quarantined(_)))
            .count();
        Ok(ContentRun {
            release: Some(bundle.release()),
            rules,
            fuel_per_event,
            quarantined: u32::try_from(quarantined).unwrap_or(u32::MAX),
            events,
            detections,
            mean_latency_us: if events == 0 {
                0.0
            } else {
                elapsed_us / events as f64
            },
        })
    }

    /// One real host's whole life (see the module docs). `policy`: the owner's signed policy and
    /// when to retry a refused install (a delay policy); `revert`: the controller's signed revert,
    /// if the release was halted.
    pub fn host_life(
        &mut self,
        label: &str,
        content: &SimContent,
        scenario: Scenario,
        now: u64,
        policy: Option<(&[u8], Option<u64>)>,
        revert: Option<&[u8]>,
    ) -> Result<RealHostRun, SimError> {
        let tmp = tempfile::tempdir().map_err(|e| SimError::RealHost(e.to_string()))?;
        let dir = tmp.path().join("store");
        let mut store = ContentStore::init(&dir, &content.root_bytes)
            .map_err(|e| store_err("init store", e))?;
        let (prev, prev_dir) = (content.previous.0, content.previous.1.as_path());
        let (new, new_dir) = (content.new.0, content.new.1.as_path());
        let before = now.saturating_sub(86_400);
        store
            .install(prev_dir, before)
            .map_err(|e| store_err("install previous release", e))?;
        let bundle = match store.begin_boot(BOOT_ATTEMPTS) {
            Ok(BootDecision::Start { bundle, .. }) => bundle,
            other => return Err(SimError::RealHost(format!("boot previous: {other:?}"))),
        };
        let on_previous = self.run_content(&mut store, &bundle)?;
        store
            .mark_good(prev)
            .map_err(|e| store_err("mark good", e))?;
        // The owner enrols the host and signs a policy (after the previous release landed: under
        // N-1 it landed when the release after it was published).
        if let Some((bytes, _)) = policy {
            store
                .set_owner_root(&content.owner_root_bytes)
                .map_err(|e| store_err("owner root", e))?;
            store
                .set_policy(bytes)
                .map_err(|e| store_err("policy", e))?;
        }

        let mut run = RealHostRun {
            label: label.to_owned(),
            on_previous,
            refused: None,
            accepted_on_retry: None,
            on_new: None,
            fell_back_to: None,
            after_revert: None,
            reinstall_refused: false,
        };
        match store.install(new_dir, now) {
            Ok(_) => {}
            Err(e @ StoreError::Policy(_)) => {
                run.refused = Some(e.to_string());
                if let Some((_, Some(retry))) = policy {
                    run.accepted_on_retry = Some(store.install(new_dir, retry).is_ok());
                }
                return Ok(run);
            }
            Err(e) => return Err(store_err("install new release", e)),
        }
        if scenario == Scenario::CrashAtBoot {
            // Each start of the new release kills the agent before its health window ends.
            for attempt in 1..=BOOT_ATTEMPTS {
                match store.begin_boot(BOOT_ATTEMPTS) {
                    Ok(BootDecision::Start {
                        release,
                        attempt: a,
                        ..
                    }) if release == new && a == attempt => {}
                    other => return Err(SimError::RealHost(format!("crash loop: {other:?}"))),
                }
                drop(store);
                store = ContentStore::open(&dir).map_err(|e| store_err("restart", e))?;
            }
            match store.begin_boot(BOOT_ATTEMPTS) {
                Ok(BootDecision::FellBack { to, bundle, .. }) => {
                    run.fell_back_to = Some(to);
                    self.run_content(&mut store, &bundle)?;
                    store.mark_good(to).map_err(|e| store_err("mark good", e))?;
                }
                other => return Err(SimError::RealHost(format!("fallback: {other:?}"))),
            }
        } else {
            let bundle = match store.begin_boot(BOOT_ATTEMPTS) {
                Ok(BootDecision::Start { bundle, .. }) => bundle,
                other => return Err(SimError::RealHost(format!("boot new: {other:?}"))),
            };
            run.on_new = Some(self.run_content(&mut store, &bundle)?);
            // The agent's health window is about staying up: a release that quarantines rules or
            // floods detections still reaches GOOD. Only the fleet's gates see those.
            store
                .mark_good(new)
                .map_err(|e| store_err("mark good", e))?;
        }
        if let Some(revert) = revert {
            let out = store
                .apply_revert(revert, now + 600)
                .map_err(|e| store_err("apply revert", e))?;
            let ran = match &out.bundle {
                Some(b) => Some(self.run_content(&mut store, b)?),
                None => None,
            };
            run.after_revert = Some((out.current, ran));
        }
        if revert.is_some() || run.fell_back_to.is_some() {
            run.reinstall_refused = matches!(
                store.install(new_dir, now + 1200),
                Err(StoreError::BadRelease { release, .. }) if release == new
            );
        }
        Ok(run)
    }
}
