//! # rulebox-fleet-sim: a staged rollout over a simulated fleet, in virtual time
//!
//! Thousands of hosts, the real rollout controller (`rulebox-rollout`), and a scenario for the new
//! release. Run by `rulebox fleet simulate`. Vendor-side and test content only: a crate of its own
//! so that the controller library links no example or test content.
//!
//! **What is real and what is modelled.** The content is real: both releases are built, signed and
//! validated with the release tools (every module loaded in the real runtime). A sample of hosts is
//! real: each has its own [`ContentStore`](rulebox_runtime::content::ContentStore) in a temporary
//! folder and runs the production code end to end ([`real`]): install with every signature and policy
//! check, the boot guard, the endpoint's activation path (manifest limits and identity checks), the
//! sandbox runtime evaluating the demo events with every rule of the release, the controller's
//! signed revert. One real host (the *probe*) runs before the timeline and
//! gives the figures (rules quarantined, detections per event, per-event latency, whether the boot
//! guard falls back) that every modelled host reports for the same content; `real_hosts` more real
//! hosts, plus one real host per customer-policy kind, run after the timeline with the revert the
//! controller actually issued, and must agree with the probe and with the model (otherwise the
//! simulation fails with [`SimError::Inconsistent`]). The rest of the fleet is modelled: a state
//! machine per host (polling for offers and reverts, installing, crash-looping at boot, falling back,
//! going silent, heartbeating), which calls the endpoint's own policy decision
//! ([`CustomerPolicy::permits`](rulebox_runtime::content::CustomerPolicy::permits)) for every
//! policy host.
//!
//! The main items: [`SimConfig`] and [`Scenario`] (what to run), [`simulate`] (run it), [`SimReport`]
//! (what happened, with [`SimReport::summary`] for people and [`svg::render`] for a picture).
//! `docs/rollout.md` has the design and the figures.

pub mod content;
pub mod real;
mod report;
mod scenario;
mod simulate;
pub mod svg;

pub use report::{PolicyOutcome, RingPoint, SimReport, TimelinePoint};
pub use scenario::{PolicyKind, Scenario, SimConfig, SimError};
pub use simulate::simulate;
