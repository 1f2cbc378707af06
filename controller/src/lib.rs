//! # rulebox-controller: the rollout controller as a service
//!
//! `rulebox controller serve`: agents enrol and check in over HTTP (protocol version 1,
//! `rulebox-controlplane-proto`); operators start, halt and resume rollouts and read their status
//! and the audit; the rollout's state lives in SQLite (embedded, the default) or PostgreSQL, behind
//! one [`Store`] and one set of migrations. The rollout logic is `rulebox-rollout`'s pure
//! [`RolloutState`](rulebox_rollout::RolloutState) transitions, the same code `rulebox fleet
//! simulate` runs: every tick is one transaction, side effects go through an outbox written in that
//! transaction, and one controller at a time ticks (a lease; any number serve the APIs).
//!
//! The controller never holds the content root's keys: it signs offers and reverts with the root's
//! **rollout** role and `timestamp.json` with its **timestamp** role, and what a host accepts from
//! each role is limited to what the role may sign. It decides *when* and *to whom* content is
//! offered; *what* content is stays the root's signed manifest.
//!
//! ```no_run
//! # async fn run(config: rulebox_controller::ControllerConfig) -> Result<(), rulebox_controller::ServiceError> {
//! let running = rulebox_controller::start(config).await?;
//! println!("listening on {}", running.addr());
//! running.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! The protocol, the API, the tables and the scale path: `docs/controlplane.md`; the operator's
//! dashboard ([`web`], under `/ui`): `docs/rollout.md`.

pub mod agent_api;
pub mod auth;
mod clock;
mod config;
mod error;
pub mod fault;
pub mod operator_api;
pub mod reports;
mod service;
pub mod store;
pub mod testing;
pub mod ticker;
pub mod web;

pub use auth::{
    Operator, Operators, OperatorsFile, Secret, new_token, read_operators_file, read_secret_file,
};
pub use clock::Clock;
pub use config::ControllerConfig;
pub use error::{ApiError, BusError, ServiceError, StoreError};
pub use operator_api::{ControllerInfo, HaltRequest, ResumeRequest, RolloutView, StartRequest};
pub use service::{RunningController, Service, start};
pub use store::{SqliteSync, Store};
