//! The lease holder's loop: take or renew the lease, tick, carry out the outbox, keep
//! `timestamp.json` fresh.
//!
//! A tick is **one transaction** (snapshot isolation on PostgreSQL, the write lock on SQLite): it
//! re-checks the lease, reads the current rollout (locked), its hosts' tracks and every report not
//! yet folded, runs the pure [`RolloutState::tick`](rulebox_rollout::RolloutState::tick), and
//! writes back the state, the changed tracks, the audit records (the gate evaluation, and a record
//! per effect), the signed revert and its outbox entry, and marks the reports folded. Effects
//! outside the database (the repository) run only after the commit, from the outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rulebox_release::PublishError;
use rulebox_rollout::{Effect, RolloutState, Verdict, sign_revert};
use rulebox_runtime::content::{Revert, verify_revert};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::fault::crash_point;
use crate::service::Service;
use crate::store::{
    AuditKind, OutboxKind, RolloutRow, Tx, TxKind, audit, hosts, lease, outbox, rollouts, samples,
};

/// Who acts in the audit when the controller decides.
pub const ACTOR: &str = rulebox_rollout::CONTROLLER_ACTOR;
/// Shortest time between two checks of `timestamp.json`.
const TIMESTAMP_CHECK: Duration = Duration::from_secs(5);

/// Runs until `stop` turns true.
pub async fn run(svc: Arc<Service>, stop: &mut watch::Receiver<bool>) {
    let ttl_ms = u64::try_from(svc.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut held = false;
    let mut last_timestamp: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let acquired = match svc.store.pool().acquire().await {
            Ok(mut conn) => lease::acquire(&mut conn, &svc.holder, Clock::real_ms(), ttl_ms).await,
            Err(e) => Err(StoreError::from(e)),
        };
        match acquired {
            Ok(now_held) => {
                if now_held != held {
                    if now_held {
                        tracing::info!(holder = %svc.holder, "lease acquired: this controller is active");
                    } else {
                        tracing::warn!(holder = %svc.holder, "lease lost: another controller is active");
                    }
                    held = now_held;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the lease");
                held = false;
            }
        }
        if held {
            match tick(&svc).await {
                Ok(()) => {}
                Err(e) if e.is_conflict() => {
                    tracing::debug!(error = %e, "tick conflicted; retrying")
                }
                Err(e) => tracing::error!(error = %e, "tick failed"),
            }
            if let Err(e) = run_outbox(&svc).await {
                tracing::error!(error = %e, "outbox failed");
            }
            if last_timestamp.is_none_or(|t| t.elapsed() >= TIMESTAMP_CHECK) {
                last_timestamp = Some(Instant::now());
                refresh_timestamp(&svc).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(svc.config.tick_interval) => {}
            _ = svc.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
    if held && let Ok(mut conn) = svc.store.pool().acquire().await {
        let _ = lease::release(&mut conn, &svc.holder).await;
    }
}

/// One tick (see the module docs).
pub async fn tick(svc: &Service) -> Result<(), StoreError> {
    tick_at(svc, svc.clock.now()).await
}

/// One tick at controller time `now` (tests replaying a recorded fleet tick at given instants).
pub async fn tick_at(svc: &Service, now: u64) -> Result<(), StoreError> {
    let dialect = svc.store.dialect();
    let mut tx = svc.store.begin(TxKind::Snapshot).await?;
    if !lease::holds(&mut tx, &svc.holder, Clock::real_ms()).await? {
        tx.rollback().await?;
        return Ok(());
    }
    let reports = hosts::unfolded_reports(&mut tx).await?;
    let mut crash_after = None;
    if let Some(row) = rollouts::current(&mut tx, dialect, true).await? {
        let tracks = rollouts::tracks(&mut tx, row.id).await?;
        let mut state = RolloutState {
            core: row.core.clone(),
            hosts: tracks,
        };
        let index: std::collections::HashMap<&str, usize> = state
            .hosts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut folded = Vec::new();
        for (host_id, json) in &reports {
            let Some(&i) = index.get(host_id.as_str()) else {
                continue; // a host that joined after the rollout started
            };
            match serde_json::from_str(json) {
                Ok(report) => folded.push((i, report)),
                Err(e) => tracing::error!(%host_id, error = %e, "a stored report does not parse"),
            }
        }
        drop(index);
        let outcome = state
            .tick(now, &folded)
            .map_err(|e| StoreError::Damaged(e.to_string()))?;
        rollouts::save(&mut tx, row.id, &state, &outcome.changed).await?;
        samples::record(&mut tx, row.id, now, &state.status().rings).await?;
        let row = RolloutRow {
            core: state.core.clone(),
            ..row
        };
        // Why, in words: the failed gates of a halt, else the verdict.
        let why = outcome
            .evaluation
            .as_ref()
            .map_or_else(String::new, |e| match &e.verdict {
                Verdict::Halt => e
                    .failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            });
        if let Some(evaluation) = &outcome.evaluation {
            audit::append(
                &mut tx,
                now,
                Clock::real_ms(),
                Some(row.id),
                AuditKind::GateEvaluation,
                ACTOR,
                &why,
                &serde_json::to_value(evaluation)?,
            )
            .await?;
        }
        for effect in &outcome.effects {
            carry_out_in_tx(svc, &mut tx, &row, now, effect, ACTOR, &why).await?;
            crash_after = match effect {
                Effect::PublishRevert(_) => Some("halt"),
                Effect::OpenRing { .. } if crash_after.is_none() => Some("ring"),
                _ => crash_after,
            };
        }
    }
    hosts::mark_folded(&mut tx).await?;
    if crash_after == Some("halt") {
        crash_point("halt-before-commit");
    }
    tx.commit().await?;
    match crash_after {
        Some("halt") => crash_point("halt-after-commit"),
        Some("ring") => crash_point("ring-after-commit"),
        _ => {}
    }
    Ok(())
}

/// Records one effect inside the transaction that decided it: an audit record for each, and for a
/// revert its signed envelope (stored once per release, for check-ins) and the outbox entry that
/// publishes it.
pub async fn carry_out_in_tx(
    svc: &Service,
    tx: &mut Tx,
    row: &RolloutRow,
    now: u64,
    effect: &Effect,
    actor: &str,
    reason: &str,
) -> Result<(), StoreError> {
    if let Effect::PublishRevert(revert) = effect {
        // Hosts check the revert's expiry with their own clocks: wall-clock times, valid at least a
        // week and at least as long as the withdrawn manifest.
        let real = Clock::real_secs();
        let revert = Revert {
            issued_unix: real,
            expires_unix: real
                .saturating_add(rulebox_rollout::REVERT_VALIDITY_SECS)
                .max(row.core.revert_valid_until),
            ..revert.clone()
        };
        let bytes = sign_revert(revert.clone(), &svc.config.rollout_keys)
            .map_err(|e| StoreError::Damaged(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| StoreError::Damaged(e.to_string()))?;
        let stored = rollouts::insert_revert(tx, revert.release, row.id, &text, now).await?;
        if stored {
            outbox::enqueue(tx, Some(row.id), OutboxKind::PublishRevert, &text, now).await?;
        }
        audit::append(
            tx,
            now,
            Clock::real_ms(),
            Some(row.id),
            AuditKind::Revert,
            actor,
            reason,
            &serde_json::json!({
                "release": revert.release,
                "to": revert.to,
                "expires_unix": revert.expires_unix,
                "new": stored,
            }),
        )
        .await?;
        return Ok(());
    }
    audit_effect(tx, row.id, now, effect, actor, reason).await
}

/// The audit record of an effect that stays inside the database (a ring opening, a halt, a resume,
/// completion).
pub async fn audit_effect(
    tx: &mut Tx,
    rollout_id: i64,
    now: u64,
    effect: &Effect,
    actor: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let (kind, detail) = match effect {
        Effect::OpenRing { ring, hosts } => (
            AuditKind::RingOpened,
            serde_json::json!({ "ring": ring, "hosts": hosts }),
        ),
        Effect::Halt { failures } => (AuditKind::Halt, serde_json::json!({ "failures": failures })),
        Effect::Resume { ring } => (AuditKind::Resume, serde_json::json!({ "ring": ring })),
        Effect::Complete => (AuditKind::Complete, serde_json::json!({})),
        Effect::PublishRevert(_) => return Ok(()),
        _ => return Ok(()),
    };
    audit::append(
        tx,
        now,
        Clock::real_ms(),
        Some(rollout_id),
        kind,
        actor,
        reason,
        &detail,
    )
    .await
}

/// Carries out every pending outbox entry, oldest first; each is marked done only after its effect
/// happened.
pub async fn run_outbox(svc: &Service) -> Result<(), StoreError> {
    let pending = {
        let mut conn = svc.store.pool().acquire().await?;
        outbox::pending(&mut conn).await?
    };
    for entry in pending {
        let repo = svc.repo.clone();
        let keys = svc.config.timestamp_keys.clone();
        let validity = svc.config.timestamp_validity_secs;
        let root = svc.root.clone();
        let kind = entry.kind;
        let payload = entry.payload.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<String, PublishError> {
            let real = Clock::real_secs();
            let mut note = String::new();
            if kind == OutboxKind::PublishRevert {
                note = publish_revert(&repo, &root, payload.as_bytes(), real)?;
                crash_point("revert-after-publish");
            }
            repo.write_timestamp(&keys, real, validity, false)?;
            Ok(note)
        })
        .await
        .unwrap_or_else(|e| {
            Err(PublishError::Io {
                path: svc.repo.dir().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })
        });
        let now = svc.clock.now();
        let mut tx = svc.store.begin(TxKind::Write).await?;
        match result {
            Ok(note) => {
                outbox::mark_done(&mut tx, entry.id, now).await?;
                if kind == OutboxKind::PublishRevert {
                    audit::append(
                        &mut tx,
                        now,
                        Clock::real_ms(),
                        entry.rollout_id,
                        AuditKind::RevertPublished,
                        ACTOR,
                        &note,
                        &serde_json::json!({ "outbox_id": entry.id, "attempts": entry.attempts + 1 }),
                    )
                    .await?;
                }
            }
            Err(e) => {
                tracing::error!(id = entry.id, kind = kind.name(), error = %e, "outbox entry failed; will retry");
                outbox::mark_failed(&mut tx, entry.id, &e.to_string()).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Publishes a revert into the repository: written once; the same bytes again are a no-op; another
/// valid revert of the same release already there counts as done (a release has one revert file).
fn publish_revert(
    repo: &rulebox_release::Repository,
    root: &rulebox_runtime::content::Root,
    bytes: &[u8],
    now: u64,
) -> Result<String, PublishError> {
    let release = verify_revert(bytes, root, now)
        .map_err(|source| PublishError::Revert {
            root_version: root.version,
            source,
        })?
        .release;
    if let Some(existing) = repo.revert(release)? {
        if existing == bytes {
            return Ok(format!(
                "reverts/{release}.revert.json was already published"
            ));
        }
        if verify_revert(&existing, root, now).is_ok_and(|r| r.release == release) {
            return Ok(format!(
                "another signed revert of release {release} was already published; it stands"
            ));
        }
    }
    let written = repo.publish_revert(bytes, now)?;
    Ok(format!(
        "{} {}",
        written.file,
        if written.written {
            "written"
        } else {
            "already there"
        }
    ))
}

/// Re-signs `timestamp.json` when its contents changed (a release the vendor published) or it is
/// past half its validity.
async fn refresh_timestamp(svc: &Service) {
    let repo = svc.repo.clone();
    let keys = svc.config.timestamp_keys.clone();
    let validity = svc.config.timestamp_validity_secs;
    let result = tokio::task::spawn_blocking(move || {
        repo.write_timestamp(&keys, Clock::real_secs(), validity, false)
    })
    .await;
    match result {
        Ok(Ok(outcome)) if outcome.written => {
            tracing::info!(
                version = outcome.timestamp.version,
                "timestamp.json re-signed"
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot re-sign timestamp.json"),
        Err(e) => tracing::error!(error = %e, "timestamp task failed"),
    }
}
