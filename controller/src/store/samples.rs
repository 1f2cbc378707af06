//! The rollout's timeline: per-ring figures ([`RingStatus`]) recorded by the tick whenever they
//! change, so that the dashboard can draw the shares as the steps they were. Append-only, one row
//! per change (bounded by [`MAX_SAMPLES`] per rollout: after that only the newest row is replaced
//! by the next change, so the picture's end is always current).

use rulebox_rollout::RingStatus;
use sqlx::{AnyConnection, Row};

use super::{from_db, to_db};
use crate::error::StoreError;

/// Most samples kept per rollout.
pub const MAX_SAMPLES: i64 = 20_000;

/// The newest sample of rollout `rollout`: its id and figures.
async fn newest(
    conn: &mut AnyConnection,
    rollout: i64,
) -> Result<Option<(i64, Vec<RingStatus>)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, rings FROM ring_samples WHERE rollout_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(rollout)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id: i64 = row.try_get(0)?;
    let rings: String = row.try_get(1)?;
    Ok(Some((id, serde_json::from_str(&rings)?)))
}

/// Records `rings` at `at` for rollout `rollout` if they differ from the newest sample. Returns
/// whether a row was written.
pub async fn record(
    conn: &mut AnyConnection,
    rollout: i64,
    at: u64,
    rings: &[RingStatus],
) -> Result<bool, StoreError> {
    let last = newest(conn, rollout).await?;
    if last.as_ref().is_some_and(|(_, r)| r == rings) {
        return Ok(false);
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM ring_samples WHERE rollout_id = $1")
        .bind(rollout)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let json = serde_json::to_string(rings)?;
    if count >= MAX_SAMPLES
        && let Some((id, _)) = last
    {
        sqlx::query("UPDATE ring_samples SET at = $1, rings = $2 WHERE id = $3")
            .bind(to_db(at)?)
            .bind(json)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        return Ok(true);
    }
    sqlx::query("INSERT INTO ring_samples (rollout_id, at, rings) VALUES ($1, $2, $3)")
        .bind(rollout)
        .bind(to_db(at)?)
        .bind(json)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// Every sample of rollout `rollout`, oldest first: (controller time, per-ring figures).
pub async fn list(
    conn: &mut AnyConnection,
    rollout: i64,
) -> Result<Vec<(u64, Vec<RingStatus>)>, StoreError> {
    let rows = sqlx::query("SELECT at, rings FROM ring_samples WHERE rollout_id = $1 ORDER BY id")
        .bind(rollout)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            let at: i64 = row.try_get(0)?;
            let rings: String = row.try_get(1)?;
            Ok((from_db(at)?, serde_json::from_str(&rings)?))
        })
        .collect()
}
