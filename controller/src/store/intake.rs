//! The check-ins whose reports came through the report log and were folded into `reports`: one
//! row per `(host_id, seq)`, so that a message delivered again (the aggregator stopped between its
//! commit and its acknowledgement) or published twice outside JetStream's duplicate window is
//! counted once.

use sqlx::AnyConnection;

use super::to_db;
use crate::error::StoreError;

/// Records that the reports of check-in `(host_id, seq)` are being folded in this transaction;
/// `false` when they already were (the caller then skips them).
pub async fn claim(
    conn: &mut AnyConnection,
    host_id: &str,
    seq: u64,
    received_at: u64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO intake (host_id, seq, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(host_id)
    .bind(to_db(seq)?)
    .bind(to_db(received_at)?)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets the check-ins received before `before` (controller time): the log no longer holds
/// messages that old, so none can come again.
pub async fn prune(conn: &mut AnyConnection, before: u64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM intake WHERE received_at < $1")
        .bind(to_db(before)?)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Check-ins folded from the log (for tests and figures).
pub async fn count(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    use sqlx::Row;
    let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM intake")
        .fetch_one(conn)
        .await?;
    super::from_db(row.try_get(0)?)
}
