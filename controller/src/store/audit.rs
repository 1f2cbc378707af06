//! The audit: an append-only record of every gate evaluation, offer, halt, resume and revert, with
//! who and why. Rows are only ever inserted (the engine's own triggers refuse an update or delete).

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{from_db, to_db};
use crate::error::StoreError;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// An operator started a rollout.
    RolloutStarted,
    /// A tick evaluated the gates (`detail`: the evaluation).
    GateEvaluation,
    /// A ring opened.
    RingOpened,
    /// A host was offered the release for the first time.
    Offer,
    /// The rollout was halted (a gate or an operator).
    Halt,
    /// An operator resumed it.
    Resume,
    /// A signed revert was issued.
    Revert,
    /// The signed revert was published in the repository.
    RevertPublished,
    /// The rollout completed.
    Complete,
    /// A request was refused (an operator credential, a forged check-in).
    Refused,
}

impl AuditKind {
    /// The kind's name as stored.
    pub fn name(self) -> &'static str {
        match self {
            AuditKind::RolloutStarted => "rollout_started",
            AuditKind::GateEvaluation => "gate_evaluation",
            AuditKind::RingOpened => "ring_opened",
            AuditKind::Offer => "offer",
            AuditKind::Halt => "halt",
            AuditKind::Resume => "resume",
            AuditKind::Revert => "revert",
            AuditKind::RevertPublished => "revert_published",
            AuditKind::Complete => "complete",
            AuditKind::Refused => "refused",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its id: strictly increasing in the order records were committed per writer.
    pub id: i64,
    /// When, in controller time (the clock gates and bakes use).
    pub at: u64,
    /// When, in milliseconds since the Unix epoch by the wall clock.
    pub at_real_ms: u64,
    /// The rollout it is about, if any.
    pub rollout_id: Option<i64>,
    /// What.
    pub kind: String,
    /// Who: an operator's name, `controller` for the controller's own decisions, or a host id.
    pub actor: String,
    /// Why, for people.
    pub reason: String,
    /// The figures (JSON).
    pub detail: serde_json::Value,
}

/// Appends a record.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per column of the record"
)]
pub async fn append(
    conn: &mut AnyConnection,
    at: u64,
    at_real_ms: u64,
    rollout_id: Option<i64>,
    kind: AuditKind,
    actor: &str,
    reason: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, at_real_ms, rollout_id, kind, actor, reason, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(to_db(at)?)
    .bind(to_db(at_real_ms)?)
    .bind(rollout_id)
    .bind(kind.name())
    .bind(actor)
    .bind(reason)
    .bind(serde_json::to_string(detail)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest record of `kind` about rollout `rollout`.
pub async fn last(
    conn: &mut AnyConnection,
    rollout: i64,
    kind: AuditKind,
) -> Result<Option<AuditEntry>, StoreError> {
    let row = sqlx::query("SELECT MAX(id) FROM audit WHERE rollout_id = $1 AND kind = $2")
        .bind(rollout)
        .bind(kind.name())
        .fetch_one(&mut *conn)
        .await?;
    let Some(id) = row.try_get::<Option<i64>, _>(0)? else {
        return Ok(None);
    };
    Ok(list(conn, None, None, id - 1, 1).await?.pop())
}

/// Records after id `after`, oldest first, at most `limit`; of rollout `rollout` only, if given;
/// of `kind` only, if given.
pub async fn list(
    conn: &mut AnyConnection,
    rollout: Option<i64>,
    kind: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, at_real_ms, rollout_id, kind, actor, reason, detail FROM audit \
         WHERE id > $1 AND ($2 = -1 OR rollout_id = $2) AND ($3 = '' OR kind = $3) \
         ORDER BY id LIMIT $4",
    )
    .bind(after)
    .bind(rollout.unwrap_or(-1))
    .bind(kind.unwrap_or(""))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let detail: String = r.try_get(7)?;
            Ok(AuditEntry {
                id: r.try_get(0)?,
                at: from_db(r.try_get(1)?)?,
                at_real_ms: from_db(r.try_get(2)?)?,
                rollout_id: r.try_get(3)?,
                kind: r.try_get(4)?,
                actor: r.try_get(5)?,
                reason: r.try_get(6)?,
                detail: serde_json::from_str(&detail)
                    .map_err(|e| StoreError::Damaged(format!("audit detail: {e}")))?,
            })
        })
        .collect()
}

/// The newest `limit` records of `kind` about rollout `rollout`, newest first.
pub async fn recent(
    conn: &mut AnyConnection,
    rollout: i64,
    kind: Option<AuditKind>,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM audit WHERE rollout_id = $1 AND ($2 = '' OR kind = $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(rollout)
    .bind(kind.map_or("", AuditKind::name))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let Some(oldest) = rows.last().map(|r| r.try_get::<i64, _>(0)).transpose()? else {
        return Ok(Vec::new());
    };
    let mut out = list(
        conn,
        Some(rollout),
        kind.map(AuditKind::name),
        oldest - 1,
        limit,
    )
    .await?;
    out.reverse();
    Ok(out)
}

/// How many records of `kind` rollout `rollout` has.
pub async fn count(
    conn: &mut AnyConnection,
    rollout: i64,
    kind: AuditKind,
) -> Result<usize, StoreError> {
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM audit WHERE rollout_id = $1 AND kind = $2")
        .bind(rollout)
        .bind(kind.name())
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok(usize::try_from(n).unwrap_or(0))
}
