//! Hosts: enrolment, the per-host check-in record (last `seq`, the answer to it), and the reports
//! they send.

use rulebox_controlplane_proto::{Criticality, HostContentState, Labels};
use rulebox_rollout::HostInfo;
use sqlx::{AnyConnection, Row};

use super::{from_db, to_db};
use crate::error::StoreError;

/// A host to enrol.
#[derive(Debug, Clone)]
pub struct NewHost {
    /// The id to give it if its key is new.
    pub host_id: String,
    /// Its node key, hex.
    pub public_key: String,
    /// Its labels.
    pub labels: Labels,
    /// When (controller time).
    pub enrolled_at: u64,
}

/// A host's check-in record, read (and locked) at the start of a check-in.
#[derive(Debug, Clone)]
pub struct HostRow {
    /// The last `seq` accepted.
    pub last_seq: Option<u64>,
    /// The hex SHA-256 of that request's body.
    pub last_body_sha256: Option<String>,
    /// The answer given to it (JSON).
    pub last_response: Option<String>,
}

/// What a check-in records about its host.
#[derive(Debug, Clone)]
pub struct CheckinRecord<'a> {
    /// The host.
    pub host_id: &'a str,
    /// The request's `seq`.
    pub seq: u64,
    /// The hex SHA-256 of the request body.
    pub body_sha256: &'a str,
    /// The answer (JSON).
    pub response: &'a str,
    /// The host's content state.
    pub state: &'a HostContentState,
    /// The controller's receive time.
    pub now: u64,
    /// Reports the host dropped.
    pub dropped: u64,
}

fn criticality_from(text: &str) -> Result<Criticality, StoreError> {
    match text {
        "low" => Ok(Criticality::Low),
        "medium" => Ok(Criticality::Medium),
        "high" => Ok(Criticality::High),
        other => Err(StoreError::Damaged(format!("criticality `{other}`"))),
    }
}

/// Enrols a host: a node key seen before keeps its host id (its labels are updated); a new key gets
/// `new.host_id`. Returns the host id and whether the key was new.
pub async fn enroll(conn: &mut AnyConnection, new: &NewHost) -> Result<(String, bool), StoreError> {
    let existing = sqlx::query("SELECT host_id FROM hosts WHERE public_key = $1")
        .bind(&new.public_key)
        .fetch_optional(&mut *conn)
        .await?;
    let l = &new.labels;
    if let Some(row) = existing {
        let host_id: String = row.try_get(0)?;
        sqlx::query(
            "UPDATE hosts SET hostname = $1, region = $2, criticality = $3, vendor_internal = $4 \
             WHERE host_id = $5",
        )
        .bind(&l.hostname)
        .bind(&l.region)
        .bind(l.criticality.name())
        .bind(i64::from(l.vendor_internal))
        .bind(&host_id)
        .execute(&mut *conn)
        .await?;
        return Ok((host_id, false));
    }
    sqlx::query(
        "INSERT INTO hosts (host_id, public_key, hostname, region, criticality, vendor_internal, \
         enrolled_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&new.host_id)
    .bind(&new.public_key)
    .bind(&l.hostname)
    .bind(&l.region)
    .bind(l.criticality.name())
    .bind(i64::from(l.vendor_internal))
    .bind(to_db(new.enrolled_at)?)
    .execute(&mut *conn)
    .await?;
    Ok((new.host_id.clone(), true))
}

/// The node key (hex) of `host_id`, if the host is enrolled.
pub async fn public_key(
    conn: &mut AnyConnection,
    host_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT public_key FROM hosts WHERE host_id = $1")
        .bind(host_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Reads `host_id`'s check-in record, locking it until the transaction ends (so two check-ins of one
/// host never interleave).
pub async fn lock_host(
    conn: &mut AnyConnection,
    dialect: super::Dialect,
    host_id: &str,
) -> Result<Option<HostRow>, StoreError> {
    let sql = format!(
        "SELECT last_seq, last_body_sha256, last_response FROM hosts WHERE host_id = $1{}",
        dialect.for_update()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(host_id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(HostRow {
        last_seq: row.try_get::<Option<i64>, _>(0)?.map(from_db).transpose()?,
        last_body_sha256: row.try_get(1)?,
        last_response: row.try_get(2)?,
    }))
}

/// Records an accepted check-in on its host's row.
pub async fn record_checkin(
    conn: &mut AnyConnection,
    record: &CheckinRecord<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE hosts SET last_seq = $1, last_body_sha256 = $2, last_response = $3, state = $4, \
         last_seen = $5, dropped_reports = dropped_reports + $6 WHERE host_id = $7",
    )
    .bind(to_db(record.seq)?)
    .bind(record.body_sha256)
    .bind(record.response)
    .bind(serde_json::to_string(record.state)?)
    .bind(to_db(record.now)?)
    .bind(to_db(record.dropped)?)
    .bind(record.host_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Most rows one insert statement carries.
const ROWS_PER_INSERT: usize = 200;

/// Appends a check-in's reports (each with the host's own time, and its JSON with the controller's
/// receive time in `at_unix`).
pub async fn insert_reports(
    conn: &mut AnyConnection,
    host_id: &str,
    seq: u64,
    received_at: u64,
    reports: &[(u64, String)],
) -> Result<(), StoreError> {
    for chunk in reports.chunks(ROWS_PER_INSERT) {
        let sql = super::multi_row_insert(
            "INSERT INTO reports (host_id, seq, received_at, host_unix, report) VALUES ",
            chunk.len(),
            5,
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (host_unix, json) in chunk {
            query = query
                .bind(host_id)
                .bind(to_db(seq)?)
                .bind(to_db(received_at)?)
                .bind(to_db(*host_unix)?)
                .bind(json.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The host's content state from its last check-in.
pub async fn content_state(
    conn: &mut AnyConnection,
    host_id: &str,
) -> Result<Option<HostContentState>, StoreError> {
    let row = sqlx::query("SELECT state FROM hosts WHERE host_id = $1")
        .bind(host_id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let text: Option<String> = row.try_get(0)?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// Every host that checked in at or after `since` (controller time), by host id: the fleet a
/// rollout starts with.
pub async fn active_hosts(
    conn: &mut AnyConnection,
    since: u64,
) -> Result<Vec<HostInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT host_id, region, criticality, vendor_internal FROM hosts \
         WHERE last_seen IS NOT NULL AND last_seen >= $1 ORDER BY host_id",
    )
    .bind(to_db(since)?)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HostInfo {
                id: r.try_get(0)?,
                region: r.try_get(1)?,
                criticality: criticality_from(&r.try_get::<String, _>(2)?)?,
                vendor_internal: r.try_get::<i64, _>(3)? != 0,
            })
        })
        .collect()
}

/// Hosts enrolled, and hosts that checked in at or after `since`.
pub async fn counts(conn: &mut AnyConnection, since: u64) -> Result<(u64, u64), StoreError> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN last_seen >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM hosts",
    )
    .bind(to_db(since)?)
    .fetch_one(conn)
    .await?;
    Ok((from_db(row.try_get(0)?)?, from_db(row.try_get(1)?)?))
}

/// The unfolded reports, oldest first: (host id, report JSON).
pub async fn unfolded_reports(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT host_id, report FROM reports WHERE folded = 0 ORDER BY id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Marks every unfolded report folded: in the tick's snapshot transaction, exactly those it read.
pub async fn mark_folded(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE reports SET folded = 1 WHERE folded = 0")
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
