//! The agent API: enrolment and check-in (protocol version 1, `docs/controlplane.md`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rulebox_controlplane_proto::{
    CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorCode, HEADER_HOST,
    HEADER_SIGNATURE, HealthReport, HostContentState, MAX_BAD_RELEASES, MAX_REPORTS_PER_CHECKIN,
    MAX_SECRET_BYTES, PROTOCOL_VERSION, ReportKind, bound_text, parse_public_key, verify_checkin,
};
use rulebox_release::add_signature;
use rulebox_rollout::Phase;
use rulebox_runtime::content::{OFFER_FORMAT, Offer, Revert, Signed};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::{AuditKind, CheckinRecord, NewHost, RolloutRow, TxKind, audit, hosts, rollouts};

/// Length of a host id: 32 hex digits (16 random bytes).
pub const HOST_ID_LEN: usize = 32;

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

/// Most refusals audited per minute of wall-clock time, in this process: whoever can reach the
/// agent API unauthenticated cannot grow the audit table without bound. The ones over it are only
/// logged, and counted in the next record that is written (`detail.unaudited_before`).
const REFUSALS_AUDITED_PER_MINUTE: u32 = 120;

/// The refusals audited in the current minute: (minute, audited, not audited since the last record).
static REFUSALS: std::sync::Mutex<(u64, u32, u64)> = std::sync::Mutex::new((0, 0, 0));

/// Whether a refusal may be audited now; if so, how many were not since the last one.
fn refusal_slot() -> Option<u64> {
    refusal_slot_at(&REFUSALS, Clock::real_ms() / 60_000)
}

/// [`refusal_slot`] in wall-clock minute `minute`, counted in `refusals`.
fn refusal_slot_at(refusals: &std::sync::Mutex<(u64, u32, u64)>, minute: u64) -> Option<u64> {
    let mut r = refusals.lock().unwrap_or_else(|e| e.into_inner());
    if r.0 != minute {
        *r = (minute, 0, r.2);
    }
    if r.1 >= REFUSALS_AUDITED_PER_MINUTE {
        r.2 += 1;
        return None;
    }
    r.1 += 1;
    Some(std::mem::take(&mut r.2))
}

/// Records a refused enrolment or check-in (a wrong secret, an unknown host, a forged signature,
/// a replayed `seq`) in the audit log, kind `refused`, within [`REFUSALS_AUDITED_PER_MINUTE`]. The
/// host id is the header's, only when it has the shape of one (32 hex digits): nothing else a
/// caller sends is stored.
async fn audit_refusal(svc: &Service, what: &str, host_id: Option<&str>, error: &ApiError) {
    if !matches!(
        error.code,
        ErrorCode::Unauthorized
            | ErrorCode::Forbidden
            | ErrorCode::UnknownHost
            | ErrorCode::BadSignature
            | ErrorCode::SeqConflict
    ) {
        return;
    }
    let Some(unaudited_before) = refusal_slot() else {
        tracing::warn!(what, error = %error.message, "refusal not audited: over the audit rate");
        return;
    };
    let detail = serde_json::json!({
        "request": what,
        "error": error.code,
        "host_id": host_id,
        "last_seq": error.last_seq,
        "unaudited_before": unaudited_before,
    });
    let reason = format!("{what} refused: {}", bound_reason(&error.message));
    let result: Result<(), crate::error::StoreError> = async {
        let mut conn = svc.store.pool().acquire().await?;
        audit::append(
            &mut conn,
            svc.clock.now(),
            Clock::real_ms(),
            None,
            AuditKind::Refused,
            "agent_api",
            &reason,
            &detail,
        )
        .await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot audit a refusal");
    }
}

/// The refusal's message, cut to 200 bytes (it is ours, but may quote a header).
fn bound_reason(message: &str) -> String {
    let mut text = message.to_owned();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `POST /v1/enroll`: a node key from an enrolment secret. A refusal is audited.
pub async fn enroll(State(svc): State<Arc<Service>>, body: Bytes) -> Result<Response, ApiError> {
    let result = enroll_inner(&svc, &body).await;
    if let Err(e) = &result {
        audit_refusal(&svc, "enrolment", None, e).await;
    }
    result
}

async fn enroll_inner(svc: &Arc<Service>, body: &Bytes) -> Result<Response, ApiError> {
    let req: EnrollRequest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the enrolment does not parse: {e}")))?;
    if req.protocol != PROTOCOL_VERSION {
        return Err(ApiError::new(
            ErrorCode::UnsupportedProtocol,
            format!(
                "protocol {} is not supported (this controller speaks {PROTOCOL_VERSION})",
                req.protocol
            ),
        ));
    }
    if req.secret.len() > MAX_SECRET_BYTES {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong enrolment secret",
        ));
    }
    let internal = svc
        .config
        .internal_enroll_secret
        .as_ref()
        .is_some_and(|s| s.matches(&req.secret));
    if !internal && !svc.config.enroll_secret.matches(&req.secret) {
        tracing::warn!("enrolment refused: wrong secret");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong enrolment secret",
        ));
    }
    if req.labels.vendor_internal && !internal {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a vendor-internal host enrols with the internal enrolment secret",
        ));
    }
    req.labels.check().map_err(bad)?;
    parse_public_key(&req.public_key).map_err(|e| bad(e.to_string()))?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("random: {e}")))?;
    let new = NewHost {
        host_id: hex::encode(id),
        public_key: req.public_key.to_ascii_lowercase(),
        labels: req.labels,
        enrolled_at: svc.clock.now(),
    };
    let mut tx = svc.store.begin(TxKind::Write).await?;
    let (host_id, created) = hosts::enroll(&mut tx, &new).await?;
    tx.commit().await?;
    tracing::info!(%host_id, created, "host enrolled");
    let answer = EnrollResponse {
        protocol: PROTOCOL_VERSION,
        host_id,
        interval_secs: interval(svc),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        serde_json::to_string(&answer)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
    ))
}

/// Seconds between check-ins, wall clock (the controller's interval at its clock's scale).
fn interval(svc: &Service) -> u64 {
    svc.clock.to_real_secs(svc.config.checkin_interval_secs)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a request's reports and state before anything is stored.
fn check_request(req: &CheckinRequest) -> Result<(), ApiError> {
    if req.protocol != PROTOCOL_VERSION {
        return Err(ApiError::new(
            ErrorCode::UnsupportedProtocol,
            format!(
                "protocol {} is not supported (this controller speaks {PROTOCOL_VERSION})",
                req.protocol
            ),
        ));
    }
    if req.reports.len() > MAX_REPORTS_PER_CHECKIN {
        return Err(bad(format!(
            "{} reports; a check-in carries at most {MAX_REPORTS_PER_CHECKIN}",
            req.reports.len()
        )));
    }
    if req.state.bad.len() > MAX_BAD_RELEASES {
        return Err(bad(format!(
            "{} bad releases; at most {MAX_BAD_RELEASES}",
            req.state.bad.len()
        )));
    }
    if req.seq > i64::MAX as u64 {
        return Err(bad("seq is above 2^63 - 1"));
    }
    for (i, r) in req.reports.iter().enumerate() {
        if !(r.mean_latency_us.is_finite() && r.mean_latency_us >= 0.0) {
            return Err(bad(format!(
                "report {i}: mean_latency_us must be a finite number of at least 0"
            )));
        }
    }
    Ok(())
}

/// The report as the gates read it: the controller's receive time in `at_unix`, text bounded.
fn stamp(mut report: HealthReport, now: u64) -> HealthReport {
    report.at_unix = now;
    match &mut report.kind {
        ReportKind::Refused { reason: text, .. }
        | ReportKind::FetchFailed { message: text, .. } => {
            bound_text(text);
        }
        _ => {}
    }
    report
}

/// `POST /v1/checkin`: authenticated by the host's node key over the exact body. A refusal of
/// the credential (an unknown host, a forged signature, a replayed `seq`) is audited.
pub async fn checkin(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let result = checkin_inner(&svc, &headers, &body).await;
    if let Err(e) = &result {
        let host = header_text(&headers, HEADER_HOST)
            .filter(|h| h.len() == HOST_ID_LEN && h.bytes().all(|b| b.is_ascii_hexdigit()));
        audit_refusal(&svc, "check-in", host, e).await;
    }
    result
}

async fn checkin_inner(
    svc: &Arc<Service>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let host_id = header_text(headers, HEADER_HOST)
        .filter(|h| h.len() == HOST_ID_LEN && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownHost,
                format!("the {HEADER_HOST} header must name an enrolled host"),
            )
        })?
        .to_owned();
    let signature = header_text(headers, HEADER_SIGNATURE)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadSignature,
                format!("the {HEADER_SIGNATURE} header is missing"),
            )
        })?
        .to_owned();
    let key_hex = {
        let mut conn = svc.store.pool().acquire().await?;
        hosts::public_key(&mut conn, &host_id).await?
    };
    let Some(key_hex) = key_hex else {
        tracing::warn!(%host_id, "check-in from an unknown host");
        return Err(ApiError::new(
            ErrorCode::UnknownHost,
            "no such host is enrolled",
        ));
    };
    let key = parse_public_key(&key_hex)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("enrolled key: {e}")))?;
    if let Err(e) = verify_checkin(&key, body, &signature) {
        tracing::warn!(%host_id, error = %e, "check-in refused: signature");
        return Err(ApiError::new(ErrorCode::BadSignature, e.to_string()));
    }
    let req: CheckinRequest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the check-in does not parse: {e}")))?;
    check_request(&req)?;
    svc.reports.ready()?;
    let body_sha256 = hex::encode(Sha256::digest(body));
    let now = svc.clock.now();
    let dialect = svc.store.dialect();
    let stamped: Vec<(u64, HealthReport)> = req
        .reports
        .iter()
        .map(|r| (r.at_unix, stamp(r.clone(), now)))
        .collect();

    let mut tx = svc.store.begin(TxKind::Write).await?;
    let Some(row) = hosts::lock_host(&mut tx, dialect, &host_id).await? else {
        return Err(ApiError::new(
            ErrorCode::UnknownHost,
            "no such host is enrolled",
        ));
    };
    if let Some(last) = row.last_seq {
        if req.seq == last {
            // A retry: the same request gets the same answer, and nothing changes.
            if row.last_body_sha256.as_deref() == Some(body_sha256.as_str())
                && let Some(answer) = row.last_response
            {
                let pending = (svc.reports)
                    .stage(&mut tx, dialect, &host_id, req.seq, now, &stamped, true)
                    .await?;
                tx.rollback().await?;
                pending.finish().await?;
                return Ok(json_response(StatusCode::OK, answer));
            }
            return Err(ApiError {
                last_seq: Some(last),
                ..ApiError::new(
                    ErrorCode::SeqConflict,
                    format!("seq {last} was already used for another request"),
                )
            });
        }
        if req.seq < last {
            return Err(ApiError {
                last_seq: Some(last),
                ..ApiError::new(
                    ErrorCode::SeqConflict,
                    format!("seq {} is below the last accepted, {last}", req.seq),
                )
            });
        }
    }
    let pending = (svc.reports)
        .stage(&mut tx, dialect, &host_id, req.seq, now, &stamped, false)
        .await?;

    let current = rollouts::current(&mut tx, dialect, false).await?;
    let reverts = rollouts::reverts(&mut tx).await?;
    let offer = match &current {
        Some(r) => decide_offer(svc, &mut tx, r, &host_id, &req.state, &reverts, now).await?,
        None => None,
    };
    let answer = CheckinResponse {
        protocol: PROTOCOL_VERSION,
        ack_seq: req.seq,
        interval_secs: interval(svc),
        offer,
        reverts: reverts_for(&req.state, current.as_ref(), &reverts),
    };
    let answer = serde_json::to_string(&answer)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    hosts::record_checkin(
        &mut tx,
        &CheckinRecord {
            host_id: &host_id,
            seq: req.seq,
            body_sha256: &body_sha256,
            response: &answer,
            state: &req.state,
            now,
            dropped: req.dropped_reports,
        },
    )
    .await?;
    tx.commit().await?;
    // On the bus path the answer waits for the stream: a refusal keeps the reports on the host.
    pending.finish().await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// The offer of the current rollout's release to this host, if it may take it now: its ring is
/// open (or the rollout is complete and the host joined after it started), it does not run the
/// release or a newer one, has not marked it bad, and no revert withdrew it. The first offer to a
/// host is recorded, with an audit record.
async fn decide_offer(
    svc: &Service,
    tx: &mut crate::store::Tx,
    rollout: &RolloutRow,
    host_id: &str,
    state: &HostContentState,
    reverts: &[(u64, String)],
    now: u64,
) -> Result<Option<Signed<Offer>>, ApiError> {
    let release = rollout.release;
    if state.release.is_some_and(|r| r >= release)
        || state.bad.contains(&release)
        || reverts.iter().any(|(r, _)| *r == release)
    {
        return Ok(None);
    }
    let ring = rollouts::ring_of(tx, rollout.id, host_id).await?;
    let open = match (&rollout.core.phase, ring) {
        (Phase::Rolling { ring: open, .. }, Some(r)) => r <= *open,
        (Phase::Complete { .. }, _) => true,
        _ => false,
    };
    if !open {
        return Ok(None);
    }
    let real = Clock::real_secs();
    let mut envelope = Signed {
        signed: Offer {
            format: OFFER_FORMAT,
            host_id: host_id.to_owned(),
            release,
            manifest_sha256: rollout.manifest_sha256.clone(),
            size: rollout.manifest_size,
            issued_unix: real,
            expires_unix: real.saturating_add(svc.config.offer_validity_secs),
        },
        signatures: Vec::new(),
    };
    for key in &svc.config.rollout_keys {
        add_signature(&mut envelope, &key.key)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    }
    if rollouts::record_offer(tx, rollout.id, host_id, now).await? {
        let why = match ring {
            Some(r) => format!("ring {r} is open"),
            None => "the rollout is complete (the host joined after it started)".to_owned(),
        };
        audit::append(
            tx,
            now,
            Clock::real_ms(),
            Some(rollout.id),
            AuditKind::Offer,
            crate::ticker::ACTOR,
            &why,
            &serde_json::json!({ "host_id": host_id, "release": release, "ring": ring }),
        )
        .await?;
    }
    Ok(Some(envelope))
}

/// The signed reverts a host must apply: of the release it runs, its last-known-good, or the
/// current rollout's release, unless it already lists the release as bad.
fn reverts_for(
    state: &HostContentState,
    current: Option<&RolloutRow>,
    reverts: &[(u64, String)],
) -> Vec<Signed<Revert>> {
    reverts
        .iter()
        .filter(|(release, _)| {
            !state.bad.contains(release)
                && (state.release == Some(*release)
                    || state.last_known_good == Some(*release)
                    || current.is_some_and(|c| c.release == *release))
        })
        .filter_map(|(release, json)| match serde_json::from_str(json) {
            Ok(envelope) => Some(envelope),
            Err(e) => {
                tracing::error!(release, error = %e, "a stored revert does not parse");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_audited_at_a_bounded_rate_and_the_rest_counted_in_the_next_record() {
        let counts = std::sync::Mutex::new((0, 0, 0));
        for _ in 0..REFUSALS_AUDITED_PER_MINUTE {
            assert_eq!(refusal_slot_at(&counts, 7), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(refusal_slot_at(&counts, 7), None, "over the rate");
        }
        // The next minute: audited again, and the first record says what was not.
        assert_eq!(refusal_slot_at(&counts, 8), Some(5));
        assert_eq!(refusal_slot_at(&counts, 8), Some(0));
    }
}
