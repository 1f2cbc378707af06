//! The service's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rulebox_release::OnlineKey;
use rulebox_rollout::{DEFAULT_BAKE_FLOOR_SECS, HARD_MIN_BAKE_SECS};

use crate::auth::{Operators, Secret};
use crate::error::ServiceError;
use crate::reports::ReportIntake;
use crate::store::SqliteSync;

/// Everything `rulebox controller serve` is started with.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where to listen (loopback in tests; behind a TLS-terminating proxy in a deployment).
    pub listen: SocketAddr,
    /// The database: `sqlite:PATH` or `postgres://...`.
    pub database: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How SQLite makes commits durable.
    pub sqlite_sync: SqliteSync,
    /// The content repository the controller publishes reverts and `timestamp.json` into.
    pub repo: PathBuf,
    /// The trusted content root (the repository's root chain must contain it).
    pub root: PathBuf,
    /// Keys of the root's rollout role (a threshold of it): sign offers and reverts.
    pub rollout_keys: Vec<OnlineKey>,
    /// Keys of the root's timestamp role (a threshold of it): sign `timestamp.json`.
    pub timestamp_keys: Vec<OnlineKey>,
    /// The enrolment secret of ordinary hosts.
    pub enroll_secret: Secret,
    /// The enrolment secret of the vendor's own hosts (`vendor_internal`); without it no host can
    /// enrol as internal.
    pub internal_enroll_secret: Option<Secret>,
    /// Who may use the operator API.
    pub operators: Operators,
    /// The floor on every ring's bake, controller seconds (at least
    /// [`HARD_MIN_BAKE_SECS`]).
    pub bake_floor_secs: u64,
    /// How often the lease holder ticks (wall clock).
    pub tick_interval: Duration,
    /// How long the lease lasts without renewal (wall clock); at least three ticks.
    pub lease_ttl: Duration,
    /// Test only: controller time runs this many times as fast as the wall clock.
    pub clock_scale: u32,
    /// Seconds between check-ins (controller time) when no rollout says otherwise.
    pub checkin_interval_secs: u64,
    /// How long an offer is valid (wall clock).
    pub offer_validity_secs: u64,
    /// How long a `timestamp.json` is valid (wall clock); re-signed at half-life.
    pub timestamp_validity_secs: u64,
    /// A rollout starts with the hosts that checked in within this many seconds (controller time).
    pub active_host_secs: u64,
    /// Serve the repository's files under `/repo/` (with `Range`), for deployments without a web
    /// server.
    pub serve_repo: bool,
    /// How check-ins' reports reach the gates: rows written by the check-in, or a NATS JetStream
    /// stream and its aggregator.
    pub reports: ReportIntake,
}

impl ControllerConfig {
    /// A configuration with the defaults: listen on 127.0.0.1:8750, a 20-minute bake floor, a tick
    /// every 5 s, a 15 s lease, check-ins every 60 s, offers valid 15 minutes, timestamps 1 hour,
    /// rollouts over hosts seen in the last day.
    #[allow(
        clippy::too_many_arguments,
        reason = "the required settings, each documented"
    )]
    pub fn new(
        database: String,
        repo: PathBuf,
        root: PathBuf,
        rollout_keys: Vec<OnlineKey>,
        timestamp_keys: Vec<OnlineKey>,
        enroll_secret: Secret,
        operators: Operators,
    ) -> ControllerConfig {
        ControllerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8750)),
            database,
            max_connections: 16,
            sqlite_sync: SqliteSync::default(),
            repo,
            root,
            rollout_keys,
            timestamp_keys,
            enroll_secret,
            internal_enroll_secret: None,
            operators,
            bake_floor_secs: DEFAULT_BAKE_FLOOR_SECS,
            tick_interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(15),
            clock_scale: 1,
            checkin_interval_secs: 60,
            offer_validity_secs: 900,
            timestamp_validity_secs: 3600,
            active_host_secs: 86_400,
            serve_repo: false,
            reports: ReportIntake::Direct,
        }
    }

    /// Checks the settings that depend on each other.
    pub fn check(&self) -> Result<(), ServiceError> {
        let bad = |m: String| Err(ServiceError::Config(m));
        if self.bake_floor_secs < HARD_MIN_BAKE_SECS {
            return bad(format!(
                "the bake floor is {} s; it cannot be below {HARD_MIN_BAKE_SECS} s",
                self.bake_floor_secs
            ));
        }
        if self.tick_interval.is_zero() || self.lease_ttl < self.tick_interval * 3 {
            return bad("the lease must last at least three ticks".to_owned());
        }
        if self.rollout_keys.is_empty() {
            return bad("at least one rollout-role key".to_owned());
        }
        if self.timestamp_keys.is_empty() {
            return bad("at least one timestamp-role key".to_owned());
        }
        if self.operators.is_empty() {
            return bad("at least one operator".to_owned());
        }
        if self.checkin_interval_secs == 0
            || self.offer_validity_secs < 60
            || self.timestamp_validity_secs < 60
        {
            return bad(
                "check-in interval above 0, offers and timestamps valid at least 60 s".to_owned(),
            );
        }
        if let ReportIntake::Bus { config, .. } = &self.reports {
            config
                .check()
                .map_err(|e| ServiceError::Config(e.to_string()))?;
        }
        if self.clock_scale == 0 {
            return bad("the clock scale is at least 1".to_owned());
        }
        Ok(())
    }
}
