//! # rulebox-rollout: staged content rollout across a fleet
//!
//! A release reaches the fleet ring by ring (default 1% → 10% → 50% → 100%), each ring baking while
//! **gates** compare the hosts on the new release with a baseline cohort still on the previous one.
//! A failed gate **halts** the release (no new host gets it) and publishes a **revert** signed with
//! the content root's keys, which hosts verify and apply by themselves. Silence counts as failure;
//! so does a detection storm. Customer policies are enforced by the hosts themselves
//! (`rulebox_runtime::content::CustomerPolicy`); the controller only sees their refusals.
//!
//! The main types: [`RolloutPlan`] (rings, bakes, [`GateConfig`]), [`assign_rings`] (deterministic
//! ring of each [`HostInfo`]), [`HealthReport`] and [`evaluate`] (the gates), and [`Controller`]
//! (the state machine). The fleet simulation behind `rulebox fleet simulate` is the crate
//! `rulebox-fleet-sim`, so this library links no test content.
//!
//! ```
//! use rulebox_rollout::{RolloutPlan, HostInfo, Criticality, assign_rings};
//!
//! let plan = RolloutPlan::standard(42, Some(41));
//! plan.validate().unwrap();
//! let hosts: Vec<HostInfo> = (0..1000)
//!     .map(|i| HostInfo {
//!         id: format!("host-{i}"),
//!         vendor_internal: false,
//!         criticality: Criticality::Low,
//!         region: "eu".into(),
//!     })
//!     .collect();
//! let rings = assign_rings(&plan, &hosts);
//! assert_eq!(rings.iter().filter(|&&r| r == 0).count(), 10); // the 1% canary
//! ```
//!
//! Design and deployment notes: `docs/rollout.md`.

mod controller;
mod fleet;
mod health;
mod plan;

pub use controller::{
    Action, BASELINE_SAMPLE, Controller, Phase, REVERT_VALIDITY_SECS, RolloutError, RolloutStatus,
    Validated, validate_release,
};
pub use fleet::{Criticality, HostInfo, assign_rings, ring_hash};
pub use health::{
    CohortMetrics, GateFailure, HealthReport, Member, ReportKind, cohort_metrics, evaluate,
};
pub use plan::{GateConfig, MAX_CANARY_PERCENT, PlanError, RingPlan, RolloutPlan};
