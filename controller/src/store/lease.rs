//! One active controller at a time: a lease row with a holder and an expiry (wall-clock
//! milliseconds). Any number of instances serve the agent and operator APIs; only the lease holder
//! ticks and carries out the outbox, and every tick re-checks the lease inside its own transaction,
//! so a controller that lost its lease (paused too long, network split) cannot commit a tick.
//! Also the `meta` table: the controller's clock settings.

use sqlx::{AnyConnection, Row};

use super::to_db;
use crate::error::StoreError;

/// The lease's name.
const LEASE: &str = "controller";

/// Who holds the lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The holder's id.
    pub holder: String,
    /// Until when (wall-clock milliseconds).
    pub expires_ms: u64,
}

/// Takes or renews the lease for `holder` until `now_ms + ttl_ms`, if it is free, expired, or
/// already `holder`'s. `true` when `holder` holds it now.
pub async fn acquire(
    conn: &mut AnyConnection,
    holder: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<bool, StoreError> {
    let expires = to_db(now_ms.saturating_add(ttl_ms))?;
    sqlx::query(
        "INSERT INTO lease (name, holder, expires_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(LEASE)
    .bind(holder)
    .bind(expires)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query(
        "UPDATE lease SET holder = $1, expires_ms = $2 WHERE name = $3 AND \
         (holder = $1 OR expires_ms < $4)",
    )
    .bind(holder)
    .bind(expires)
    .bind(LEASE)
    .bind(to_db(now_ms)?)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `holder` holds an unexpired lease at `now_ms` (checked inside a tick's transaction).
pub async fn holds(
    conn: &mut AnyConnection,
    holder: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT holder, expires_ms FROM lease WHERE name = $1")
        .bind(LEASE)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(false) };
    let h: String = row.try_get(0)?;
    let expires: i64 = row.try_get(1)?;
    Ok(h == holder && expires > to_db(now_ms)?)
}

/// The lease as it is.
pub async fn state(conn: &mut AnyConnection) -> Result<Option<LeaseState>, StoreError> {
    let row = sqlx::query("SELECT holder, expires_ms FROM lease WHERE name = $1")
        .bind(LEASE)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(LeaseState {
        holder: row.try_get(0)?,
        expires_ms: super::from_db(row.try_get(1)?)?,
    }))
}

/// Gives the lease up (a clean shutdown), so a standby takes over at once.
pub async fn release(conn: &mut AnyConnection, holder: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE lease SET expires_ms = 0 WHERE name = $1 AND holder = $2")
        .bind(LEASE)
        .bind(holder)
        .execute(conn)
        .await?;
    Ok(())
}

/// A value of the `meta` table.
pub async fn meta_get(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Sets `key` to `value` in the `meta` table unless it is set; returns the value it has now.
pub async fn meta_init(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
) -> Result<String, StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    meta_get(conn, key)
        .await?
        .ok_or_else(|| StoreError::Damaged(format!("meta `{key}` vanished")))
}
