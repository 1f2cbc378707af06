//! The outbox: side effects outside the database (writing the repository), recorded in the same
//! transaction as the decision that needs them and carried out after it committed. An entry is
//! marked done only after its effect happened; every effect is idempotent (a repository file is
//! written once and a second write of the same bytes is a no-op), so a crash between the effect
//! and the mark repeats the effect harmlessly and never loses it.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::to_db;
use crate::error::StoreError;

/// What an outbox entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboxKind {
    /// Write the signed revert (payload: its JSON) to `reverts/<R>.revert.json`, then re-sign
    /// `timestamp.json` so it lists it.
    PublishRevert,
    /// Re-sign `timestamp.json` (payload: `{}`).
    WriteTimestamp,
}

impl OutboxKind {
    /// The kind's name as stored.
    pub fn name(self) -> &'static str {
        match self {
            OutboxKind::PublishRevert => "publish_revert",
            OutboxKind::WriteTimestamp => "write_timestamp",
        }
    }

    fn parse(text: &str) -> Result<OutboxKind, StoreError> {
        match text {
            "publish_revert" => Ok(OutboxKind::PublishRevert),
            "write_timestamp" => Ok(OutboxKind::WriteTimestamp),
            other => Err(StoreError::Damaged(format!("outbox kind `{other}`"))),
        }
    }
}

/// An entry not yet done.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// Its id.
    pub id: i64,
    /// The rollout it is for.
    pub rollout_id: Option<i64>,
    /// What.
    pub kind: OutboxKind,
    /// Its payload.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
}

/// Records an effect to carry out once the transaction commits.
pub async fn enqueue(
    conn: &mut AnyConnection,
    rollout_id: Option<i64>,
    kind: OutboxKind,
    payload: &str,
    at: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (rollout_id, kind, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(rollout_id)
    .bind(kind.name())
    .bind(payload)
    .bind(to_db(at)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// Entries not done yet, oldest first.
pub async fn pending(conn: &mut AnyConnection) -> Result<Vec<OutboxEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, rollout_id, kind, payload, attempts FROM outbox WHERE done_at IS NULL \
         ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutboxEntry {
                id: r.try_get(0)?,
                rollout_id: r.try_get(1)?,
                kind: OutboxKind::parse(&r.try_get::<String, _>(2)?)?,
                payload: r.try_get(3)?,
                attempts: r.try_get(4)?,
            })
        })
        .collect()
}

/// Marks entry `id` done at `at`.
pub async fn mark_done(conn: &mut AnyConnection, id: i64, at: u64) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET done_at = $1, attempts = attempts + 1 WHERE id = $2")
        .bind(to_db(at)?)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed attempt of entry `id` (it stays pending and is tried again).
pub async fn mark_failed(conn: &mut AnyConnection, id: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2")
        .bind(error)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts of entries per kind: (kind, total, done).
pub async fn counts(conn: &mut AnyConnection) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT kind, CAST(COUNT(*) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN done_at IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) \
         FROM outbox GROUP BY kind ORDER BY kind",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
