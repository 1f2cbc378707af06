//! The operator API (bearer credential): start a rollout from a validated, published release and a
//! plan; halt; resume; status; the audit.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rulebox_controlplane_proto::ErrorCode;
use rulebox_rollout::{
    Effect, RolloutError, RolloutPlan, RolloutState, RolloutStatus, StartOptions, validate_release,
};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::{
    AuditEntry, AuditKind, RolloutRow, TxKind, audit, hosts, lease, outbox, rollouts,
};
use crate::ticker::{self, ACTOR};

/// Longest reason accepted from an operator, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// `POST /v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The plan; its `release` must be published in the controller's repository.
    pub plan: RolloutPlan,
    /// Why, for the audit.
    pub reason: String,
}

/// `POST /v1/rollouts/{id}/halt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    /// Why, for the audit.
    pub reason: String,
    /// Also issue a signed revert: hosts that took the release go back, and it can never resume.
    #[serde(default)]
    pub revert: bool,
}

/// `POST /v1/rollouts/{id}/resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Why, for the audit.
    pub reason: String,
}

/// A rollout as `GET /v1/rollouts/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    /// Its id.
    pub id: i64,
    /// The release.
    pub release: u64,
    /// Hex SHA-256 of the published manifest.
    pub manifest_sha256: String,
    /// Whether it is the current rollout.
    pub current: bool,
    /// When it started (controller time).
    pub created_at: u64,
    /// Who started it.
    pub created_by: String,
    /// Controller time now.
    pub now: u64,
    /// The status at its last tick.
    pub status: RolloutStatus,
    /// Hosts offered the release at least once, per ring.
    pub offered: Vec<u64>,
    /// Hosts offered it after it completed that joined after it started.
    pub offered_late: u64,
    /// The last gate evaluation, from the audit.
    pub last_evaluation: Option<AuditEntry>,
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_string(value)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The operator's name from `Authorization: Bearer <token>`.
pub(crate) fn operator(svc: &Service, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the operator API needs `Authorization: Bearer <token>`",
            )
        })?;
    svc.config
        .operators
        .authenticate(token.trim())
        .map(str::to_owned)
        .ok_or_else(|| {
            tracing::warn!("operator request refused: unknown token");
            ApiError::new(ErrorCode::Unauthorized, "unknown operator token")
        })
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the request does not parse: {e}"),
        )
    })
}

pub(crate) fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() || reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a reason of 1 to {MAX_REASON_BYTES} bytes is required (it goes to the audit)"),
        ));
    }
    Ok(())
}

fn rollout_error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::Transition { .. } => ApiError::new(ErrorCode::Conflict, e.to_string()),
        RolloutError::NoHosts => ApiError::new(
            ErrorCode::Conflict,
            "no host has checked in recently: there is no fleet to roll out to",
        ),
        other => ApiError::new(ErrorCode::Refused, other.to_string()),
    }
}

/// `POST /v1/rollouts`: validates the published release (every endpoint check and every module
/// loaded in the real runtime, on the bundle assembled from the repository), checks the plan and
/// the bake floor, freezes the fleet (hosts seen recently) into rings, opens ring 0.
pub async fn start(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = operator(&svc, &headers)?;
    let req: StartRequest = parse(&body)?;
    check_reason(&req.reason)?;
    let release = req.plan.release;
    if i64::try_from(release).is_err() {
        return Err(ApiError::new(
            ErrorCode::Refused,
            "release numbers above 2^63 - 1 are not rolled out",
        ));
    }
    let (manifest, manifest_sha256) = svc
        .repo
        .manifest(release)
        .map_err(|e| ApiError::new(ErrorCode::Refused, format!("release {release}: {e}")))?;
    let validated = {
        let repo = svc.repo.clone();
        let root_path = svc.root_path.clone();
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            repo.assemble_bundle(release, dir.path())
                .map_err(|e| e.to_string())?;
            validate_release(dir.path(), &root_path, Clock::real_secs()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Refused,
                format!("release {release} does not validate: {e}"),
            )
        })?
    };
    let now = svc.clock.now();
    let dialect = svc.store.dialect();
    let mut tx = svc.store.begin(TxKind::Write).await?;
    if let Some(cur) = rollouts::current(&mut tx, dialect, true).await? {
        let busy = match &cur.core.phase {
            rulebox_rollout::Phase::Rolling { .. } => true,
            rulebox_rollout::Phase::Halted { reverted, .. } => !reverted,
            _ => false,
        };
        if busy {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "the rollout of release {} (id {}) is {}: let it complete, or halt it with a revert first",
                    cur.release,
                    cur.id,
                    cur.core.phase.name()
                ),
            ));
        }
    }
    if let Some(highest) = rollouts::highest_release(&mut tx).await?
        && release <= highest
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("release {release} is not above release {highest}, already rolled out"),
        ));
    }
    let fleet =
        hosts::active_hosts(&mut tx, now.saturating_sub(svc.config.active_host_secs)).await?;
    let options = StartOptions {
        bake_floor_secs: svc.config.bake_floor_secs,
        revert_valid_until: validated.expires_unix(),
    };
    let (state, effects) =
        RolloutState::start(req.plan.clone(), &fleet, now, &options).map_err(rollout_error)?;
    let id = rollouts::insert(
        &mut tx,
        &state,
        &manifest_sha256,
        u64::try_from(manifest.len()).unwrap_or(u64::MAX),
        now,
        &who,
    )
    .await?;
    let real = Clock::real_ms();
    audit::append(
        &mut tx,
        now,
        real,
        Some(id),
        AuditKind::RolloutStarted,
        &who,
        &req.reason,
        &serde_json::json!({
            "release": release,
            "manifest_sha256": manifest_sha256,
            "hosts": fleet.len(),
            "ring_sizes": state.core.ring_sizes,
            "plan": req.plan,
        }),
    )
    .await?;
    for effect in &effects {
        ticker::audit_effect(&mut tx, id, now, effect, ACTOR, "the rollout started").await?;
    }
    tx.commit().await?;
    tracing::info!(id, release, operator = %who, hosts = fleet.len(), "rollout started");
    let view = view(&svc, id).await?;
    json_response(StatusCode::CREATED, &view)
}

pub(crate) async fn view(svc: &Service, id: i64) -> Result<RolloutView, ApiError> {
    let mut conn = svc.store.pool().acquire().await?;
    let row = rollouts::get(&mut conn, svc.store.dialect(), id, false)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no rollout {id}")))?;
    let tracks = rollouts::tracks(&mut conn, id).await?;
    let rings = row.core.ring_sizes.len();
    let state = RolloutState {
        core: row.core.clone(),
        hosts: tracks,
    };
    let offered = rollouts::offered_per_ring(&mut conn, id, rings).await?;
    let offered_late = rollouts::offered_late(&mut conn, id).await?;
    let last_evaluation = audit::last(&mut conn, id, AuditKind::GateEvaluation).await?;
    Ok(RolloutView {
        id,
        release: row.release,
        manifest_sha256: row.manifest_sha256,
        current: row.is_current,
        created_at: row.created_at,
        created_by: row.created_by,
        now: svc.clock.now(),
        status: state.status(),
        offered,
        offered_late,
        last_evaluation,
    })
}

/// `GET /v1/rollouts`: every rollout, newest first.
pub async fn list(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&svc, &headers)?;
    let mut conn = svc.store.pool().acquire().await?;
    let all = rollouts::list(&mut conn).await?;
    json_response(StatusCode::OK, &all)
}

/// `GET /v1/rollouts/current`.
pub async fn current(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&svc, &headers)?;
    let id = {
        let mut conn = svc.store.pool().acquire().await?;
        rollouts::current(&mut conn, svc.store.dialect(), false)
            .await?
            .map(|r| r.id)
    };
    let id = id.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no rollout yet"))?;
    json_response(StatusCode::OK, &view(&svc, id).await?)
}

/// `GET /v1/rollouts/{id}`.
pub async fn status(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    operator(&svc, &headers)?;
    json_response(StatusCode::OK, &view(&svc, id).await?)
}

/// Runs an operator's transition on rollout `id` in one transaction: the rollout row locked, the
/// transition, its effects recorded (audit, a signed revert with its outbox entry), committed.
pub(crate) async fn transition(
    svc: &Service,
    id: i64,
    who: &str,
    reason: &str,
    kind: AuditKind,
    apply: impl FnOnce(&mut RolloutRow, u64) -> Result<Vec<Effect>, RolloutError>,
) -> Result<(), ApiError> {
    let now = svc.clock.now();
    let mut tx = svc.store.begin(TxKind::Write).await?;
    let mut row = rollouts::get(&mut tx, svc.store.dialect(), id, true)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no rollout {id}")))?;
    let effects = apply(&mut row, now).map_err(rollout_error)?;
    rollouts::save_core(&mut tx, id, &row.core).await?;
    audit::append(
        &mut tx,
        now,
        Clock::real_ms(),
        Some(id),
        kind,
        who,
        reason,
        &serde_json::json!({ "phase": row.core.phase }),
    )
    .await?;
    for effect in &effects {
        if matches!(effect, Effect::Halt { .. } | Effect::Resume { .. }) {
            continue; // recorded above, with the operator's reason
        }
        ticker::carry_out_in_tx(svc, &mut tx, &row, now, effect, who, reason).await?;
    }
    tx.commit().await?;
    svc.wake.notify_one();
    Ok(())
}

/// `POST /v1/rollouts/{id}/halt`.
pub async fn halt(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = operator(&svc, &headers)?;
    let req: HaltRequest = parse(&body)?;
    check_reason(&req.reason)?;
    transition(&svc, id, &who, &req.reason, AuditKind::Halt, |row, now| {
        row.core.halt(now, &who, &req.reason, req.revert)
    })
    .await?;
    tracing::warn!(id, operator = %who, revert = req.revert, "rollout halted by an operator");
    json_response(StatusCode::OK, &view(&svc, id).await?)
}

/// `POST /v1/rollouts/{id}/resume`.
pub async fn resume(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = operator(&svc, &headers)?;
    let req: ResumeRequest = parse(&body)?;
    check_reason(&req.reason)?;
    transition(
        &svc,
        id,
        &who,
        &req.reason,
        AuditKind::Resume,
        |row, now| row.core.resume(now),
    )
    .await?;
    tracing::info!(id, operator = %who, "rollout resumed");
    json_response(StatusCode::OK, &view(&svc, id).await?)
}

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Only this rollout's records.
    pub rollout: Option<i64>,
    /// Only records of this kind.
    pub kind: Option<String>,
    /// Records after this id.
    #[serde(default)]
    pub after: i64,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<i64>,
}

/// `GET /v1/audit?rollout=&kind=&after=&limit=`: audit records, oldest first.
pub async fn audit(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    operator(&svc, &headers)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let mut conn = svc.store.pool().acquire().await?;
    let entries = audit::list(&mut conn, q.rollout, q.kind.as_deref(), q.after, limit).await?;
    json_response(StatusCode::OK, &entries)
}

/// `GET /v1/controller`: this instance, the lease, the fleet, the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerInfo {
    /// This instance's lease holder id.
    pub holder: String,
    /// Whether it holds the lease now.
    pub active: bool,
    /// The database engine.
    pub database: String,
    /// Controller time now.
    pub now: u64,
    /// The clock's scale (1 but in tests).
    pub clock_scale: u32,
    /// The floor on bakes, controller seconds.
    pub bake_floor_secs: u64,
    /// Hosts enrolled.
    pub hosts_enrolled: u64,
    /// Hosts seen within the active window.
    pub hosts_active: u64,
    /// Outbox entries per kind: (kind, total, done).
    pub outbox: Vec<(String, i64, i64)>,
    /// Where check-ins' reports go: `db` or `nats`.
    #[serde(default)]
    pub reports: String,
    /// With `nats`: whether the bus is connected now.
    #[serde(default)]
    pub bus_connected: bool,
    /// What this process's aggregator folded, skipped as duplicates and dropped as malformed.
    #[serde(default)]
    pub aggregator: crate::reports::AggregatorFigures,
}

/// `GET /v1/controller`.
pub async fn info(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&svc, &headers)?;
    let mut conn = svc.store.pool().acquire().await?;
    let now = svc.clock.now();
    let lease = lease::state(&mut conn).await?;
    let (enrolled, active) =
        hosts::counts(&mut conn, now.saturating_sub(svc.config.active_host_secs)).await?;
    let info = ControllerInfo {
        holder: svc.holder.clone(),
        active: lease.is_some_and(|l| l.holder == svc.holder && l.expires_ms > Clock::real_ms()),
        database: svc.store.dialect().name().to_owned(),
        now,
        clock_scale: svc.clock.scale(),
        bake_floor_secs: svc.config.bake_floor_secs,
        hosts_enrolled: enrolled,
        hosts_active: active,
        outbox: outbox::counts(&mut conn).await?,
        reports: match &svc.reports {
            crate::reports::ReportSink::Direct => "db",
            crate::reports::ReportSink::Bus(_) => "nats",
        }
        .to_owned(),
        bus_connected: match &svc.reports {
            crate::reports::ReportSink::Direct => false,
            crate::reports::ReportSink::Bus(bus) => bus.connected(),
        },
        aggregator: svc.aggregator.figures(),
    };
    json_response(StatusCode::OK, &info)
}

/// `GET /healthz`: 200 when the database answers.
pub async fn health(State(svc): State<Arc<Service>>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut conn = svc.store.pool().acquire().await?;
    sqlx::query("SELECT 1").execute(&mut *conn).await?;
    Ok(Json(serde_json::json!({ "ok": true })))
}
