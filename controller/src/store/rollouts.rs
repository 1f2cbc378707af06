//! Rollouts: the small core of each (one row, JSON), its hosts' tracks (one row each), first offers,
//! and the signed reverts check-ins hand out.

use rulebox_rollout::{HostTrack, Phase, RolloutCore, RolloutState};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{Dialect, from_db, to_db};
use crate::error::StoreError;

/// A rollout row.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    /// Its id.
    pub id: i64,
    /// The release.
    pub release: u64,
    /// Hex SHA-256 of the published `manifest.json`.
    pub manifest_sha256: String,
    /// Its size.
    pub manifest_size: u64,
    /// Whether it is the current rollout (the newest).
    pub is_current: bool,
    /// Plan, phase, figures.
    pub core: RolloutCore,
    /// When it started (controller time).
    pub created_at: u64,
    /// Who started it.
    pub created_by: String,
    /// Incremented by every change.
    pub revision: u64,
}

/// A rollout as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutSummary {
    /// Its id.
    pub id: i64,
    /// The release.
    pub release: u64,
    /// `rolling`, `halted` or `complete`.
    pub phase: String,
    /// The highest open ring (`-1`: none, halted).
    pub open_ring: i64,
    /// Whether it is the current rollout.
    pub current: bool,
    /// When it started (controller time).
    pub created_at: u64,
    /// Who started it.
    pub created_by: String,
}

const COLUMNS: &str = "id, release, manifest_sha256, manifest_size, is_current, core, created_at, \
                       created_by, revision";

fn row_to_rollout(r: &sqlx::any::AnyRow) -> Result<RolloutRow, StoreError> {
    let core: String = r.try_get(5)?;
    Ok(RolloutRow {
        id: r.try_get(0)?,
        release: from_db(r.try_get(1)?)?,
        manifest_sha256: r.try_get(2)?,
        manifest_size: from_db(r.try_get(3)?)?,
        is_current: r.try_get::<i64, _>(4)? != 0,
        core: serde_json::from_str(&core)
            .map_err(|e| StoreError::Damaged(format!("rollout core: {e}")))?,
        created_at: from_db(r.try_get(6)?)?,
        created_by: r.try_get(7)?,
        revision: from_db(r.try_get(8)?)?,
    })
}

fn open_ring(core: &RolloutCore) -> i64 {
    match core.phase {
        Phase::Rolling { ring, .. } => i64::try_from(ring).unwrap_or(i64::MAX),
        Phase::Complete { .. } => {
            i64::try_from(core.plan.rings.len().saturating_sub(1)).unwrap_or(i64::MAX)
        }
        _ => -1,
    }
}

/// The current rollout, locked for the transaction when `lock` (PostgreSQL).
pub async fn current(
    conn: &mut AnyConnection,
    dialect: Dialect,
    lock: bool,
) -> Result<Option<RolloutRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts WHERE is_current = 1{}",
        if lock { dialect.for_update() } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_rollout).transpose()
}

/// Rollout `id`, locked for the transaction when `lock` (PostgreSQL).
pub async fn get(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: i64,
    lock: bool,
) -> Result<Option<RolloutRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts WHERE id = $1{}",
        if lock { dialect.for_update() } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_rollout).transpose()
}

/// Every rollout, newest first.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<RolloutSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, release, phase, open_ring, is_current, created_at, created_by FROM rollouts \
         ORDER BY id DESC",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RolloutSummary {
                id: r.try_get(0)?,
                release: from_db(r.try_get(1)?)?,
                phase: r.try_get(2)?,
                open_ring: r.try_get(3)?,
                current: r.try_get::<i64, _>(4)? != 0,
                created_at: from_db(r.try_get(5)?)?,
                created_by: r.try_get(6)?,
            })
        })
        .collect()
}

/// The highest release of any rollout.
pub async fn highest_release(conn: &mut AnyConnection) -> Result<Option<u64>, StoreError> {
    let row = sqlx::query("SELECT MAX(release) FROM rollouts")
        .fetch_one(conn)
        .await?;
    row.try_get::<Option<i64>, _>(0)?.map(from_db).transpose()
}

/// Inserts a new rollout as the current one (the previous current rollout no longer is) with its
/// hosts' tracks. Returns its id.
pub async fn insert(
    conn: &mut AnyConnection,
    state: &RolloutState,
    manifest_sha256: &str,
    manifest_size: u64,
    created_at: u64,
    created_by: &str,
) -> Result<i64, StoreError> {
    sqlx::query("UPDATE rollouts SET is_current = 0 WHERE is_current = 1")
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(
        "INSERT INTO rollouts (release, manifest_sha256, manifest_size, phase, open_ring, \
         is_current, core, created_at, created_by, revision) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, 1) RETURNING id",
    )
    .bind(to_db(state.release())?)
    .bind(manifest_sha256)
    .bind(to_db(manifest_size)?)
    .bind(state.phase().name())
    .bind(open_ring(&state.core))
    .bind(serde_json::to_string(&state.core)?)
    .bind(to_db(created_at)?)
    .bind(created_by)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get(0)?;
    const PER_INSERT: usize = 200;
    for (n, chunk) in state.hosts.chunks(PER_INSERT).enumerate() {
        let sql = super::multi_row_insert(
            "INSERT INTO rollout_hosts (rollout_id, idx, host_id, ring, track) VALUES ",
            chunk.len(),
            5,
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, track) in chunk.iter().enumerate() {
            let idx = n * PER_INSERT + i;
            query = query
                .bind(id)
                .bind(i64::try_from(idx).map_err(|_| StoreError::OutOfRange(u64::MAX))?)
                .bind(track.id.as_str())
                .bind(i64::try_from(track.ring).map_err(|_| StoreError::OutOfRange(u64::MAX))?)
                .bind(serde_json::to_string(track)?);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(id)
}

/// Every host track of rollout `id`, in fleet order.
pub async fn tracks(conn: &mut AnyConnection, id: i64) -> Result<Vec<HostTrack>, StoreError> {
    let rows =
        sqlx::query("SELECT idx, track FROM rollout_hosts WHERE rollout_id = $1 ORDER BY idx")
            .bind(id)
            .fetch_all(conn)
            .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (expected, r) in rows.iter().enumerate() {
        let idx: i64 = r.try_get(0)?;
        if usize::try_from(idx).ok() != Some(expected) {
            return Err(StoreError::Damaged(format!(
                "rollout {id}: host track {expected} is missing"
            )));
        }
        let text: String = r.try_get(1)?;
        out.push(
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Damaged(format!("host track: {e}")))?,
        );
    }
    Ok(out)
}

/// Writes a rollout's core (and its denormalized phase and open ring) and the tracks of the hosts
/// at `changed`.
pub async fn save(
    conn: &mut AnyConnection,
    id: i64,
    state: &RolloutState,
    changed: &[usize],
) -> Result<(), StoreError> {
    save_core(&mut *conn, id, &state.core).await?;
    for &idx in changed {
        let Some(track) = state.hosts.get(idx) else {
            continue;
        };
        sqlx::query("UPDATE rollout_hosts SET track = $1 WHERE rollout_id = $2 AND idx = $3")
            .bind(serde_json::to_string(track)?)
            .bind(id)
            .bind(i64::try_from(idx).map_err(|_| StoreError::OutOfRange(u64::MAX))?)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The ring of `host_id` in rollout `id`, if it is one of its hosts.
pub async fn ring_of(
    conn: &mut AnyConnection,
    id: i64,
    host_id: &str,
) -> Result<Option<usize>, StoreError> {
    let row = sqlx::query("SELECT ring FROM rollout_hosts WHERE rollout_id = $1 AND host_id = $2")
        .bind(id)
        .bind(host_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        let ring: i64 = r.try_get(0)?;
        usize::try_from(ring).map_err(|_| StoreError::Damaged(format!("ring {ring}")))
    })
    .transpose()
}

/// Records the first offer of rollout `id` to `host_id`; `true` if this was the first.
pub async fn record_offer(
    conn: &mut AnyConnection,
    id: i64,
    host_id: &str,
    at: u64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO offers (rollout_id, host_id, offered_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(host_id)
    .bind(to_db(at)?)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hosts offered rollout `id` at least once, per ring (`rings` entries).
pub async fn offered_per_ring(
    conn: &mut AnyConnection,
    id: i64,
    rings: usize,
) -> Result<Vec<u64>, StoreError> {
    let rows = sqlx::query(
        "SELECT h.ring, CAST(COUNT(*) AS BIGINT) FROM offers o JOIN rollout_hosts h \
         ON h.rollout_id = o.rollout_id AND h.host_id = o.host_id \
         WHERE o.rollout_id = $1 GROUP BY h.ring",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    let mut out = vec![0; rings];
    for r in rows {
        let ring: i64 = r.try_get(0)?;
        if let Some(slot) = usize::try_from(ring).ok().and_then(|i| out.get_mut(i)) {
            *slot = from_db(r.try_get(1)?)?;
        }
    }
    Ok(out)
}

/// Hosts offered rollout `id` that are not among its hosts (they enrolled after it started and
/// were offered the release once it completed).
pub async fn offered_late(conn: &mut AnyConnection, id: i64) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM offers o WHERE o.rollout_id = $1 AND NOT EXISTS \
         (SELECT 1 FROM rollout_hosts h WHERE h.rollout_id = o.rollout_id AND h.host_id = o.host_id)",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    from_db(row.try_get(0)?)
}

/// Stores the signed revert of `release` (the first one stays: a release has one revert).
/// `true` if this one was stored.
pub async fn insert_revert(
    conn: &mut AnyConnection,
    release: u64,
    rollout_id: i64,
    envelope: &str,
    at: u64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO reverts (release, rollout_id, envelope, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(to_db(release)?)
    .bind(rollout_id)
    .bind(envelope)
    .bind(to_db(at)?)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Every signed revert: (release, envelope JSON).
pub async fn reverts(conn: &mut AnyConnection) -> Result<Vec<(u64, String)>, StoreError> {
    let rows = sqlx::query("SELECT release, envelope FROM reverts ORDER BY release")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((from_db(r.try_get(0)?)?, r.try_get(1)?)))
        .collect()
}

/// Writes a rollout's core alone (an operator's transition changes nothing else).
pub async fn save_core(
    conn: &mut AnyConnection,
    id: i64,
    core: &RolloutCore,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rollouts SET core = $1, phase = $2, open_ring = $3, revision = revision + 1 \
         WHERE id = $4",
    )
    .bind(serde_json::to_string(core)?)
    .bind(core.phase.name())
    .bind(open_ring(core))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
