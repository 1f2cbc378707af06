//! # rulebox-rollout: staged content rollout across a fleet
//!
//! A release reaches the fleet ring by ring (default 1% → 10% → 50% → 100%), each ring baking while
//! **gates** compare the hosts on the new release with a baseline cohort still on the previous one.
//! A failed gate **halts** the release (no new host gets it) and publishes a **revert** signed with
//! the root's online rollout role (never the root's own keys), which hosts verify and apply by
//! themselves. Silence counts as failure; so does a detection storm; and a ring advances only on
//! hosts that reported GOOD on the release (no data is never a pass). Customer policies are enforced by the hosts themselves
//! (`rulebox_runtime::content::CustomerPolicy`); the controller only sees their refusals.
//!
//! The main types: [`RolloutPlan`] (rings, bakes, [`GateConfig`]), [`assign_rings`] (deterministic
//! ring of each [`HostInfo`]), [`HealthReport`] and [`evaluate`] (the gates), [`RolloutState`] (the
//! rollout as serializable data, with the pure transitions `start`, `tick`, `halt`, `resume` that
//! return [`Effect`]s) and [`Controller`] (that state in one process, signing its reverts). The
//! controller service (`rulebox-controller`) runs the same state from its database. The fleet simulation behind `rulebox fleet simulate` is the crate
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

pub mod chart;
mod controller;
mod fleet;
mod health;
mod plan;
mod state;
mod status;

pub use chart::{Chart, ChartCounts, ChartSample};
pub use controller::{Controller, RolloutError, Validated, sign_revert, validate_release};
pub use fleet::{Criticality, HostInfo, assign_rings, ring_hash};
pub use health::{
    CohortMetrics, FetchFailureClass, GateFailure, HealthReport, Member, ReportKind,
    cohort_metrics, evaluate,
};
pub use plan::{
    DEFAULT_BAKE_FLOOR_SECS, GateConfig, HARD_MIN_BAKE_SECS, MAX_CANARY_PERCENT, PlanError,
    RingPlan, RolloutPlan,
};
pub use state::{
    BASELINE_SAMPLE, CONTROLLER_ACTOR, Effect, Evaluation, HoldReason, HostTrack, Phase,
    REVERT_VALIDITY_SECS, RolloutCore, RolloutState, StartOptions, TickOutcome, Verdict,
};
pub use status::{RingStatus, RolloutStatus};
