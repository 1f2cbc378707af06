//! The controller's state in a database: SQLite (embedded, a file; the default) or PostgreSQL (for
//! scale), behind this one [`Store`] type and one set of migrations ([`migrations`]). Queries are
//! written once (sqlx's `Any` driver, `$N` placeholders, types both engines share: 64-bit integers
//! and text); what differs between the engines is confined to [`Dialect`].
//!
//! Every change is a transaction ([`Store::begin`]): on SQLite `BEGIN IMMEDIATE` (the write lock
//! first, so two writers wait for each other instead of failing), on PostgreSQL `BEGIN` with row
//! locks (`FOR UPDATE`) where a row is read to be changed, or `REPEATABLE READ` for the tick
//! ([`TxKind::Snapshot`]), whose reads must agree with its writes.

pub mod audit;
pub mod hosts;
pub mod intake;
pub mod lease;
pub mod migrations;
pub mod outbox;
pub mod rollouts;
pub mod samples;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use audit::{AuditEntry, AuditKind};
pub use hosts::{CheckinRecord, HostRow, NewHost};
pub use lease::LeaseState;
pub use outbox::{OutboxEntry, OutboxKind};
pub use rollouts::{RolloutRow, RolloutSummary};

use crate::error::StoreError;

/// `head` (an `INSERT ... VALUES `) followed by `rows` tuples of `cols` numbered placeholders,
/// `($1, $2), ($3, $4)`: one statement for many rows, in the placeholder syntax both databases take.
pub(crate) fn multi_row_insert(head: &str, rows: usize, cols: usize) -> String {
    let mut sql = String::from(head);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * cols + col + 1));
        }
        sql.push(')');
    }
    sql
}

/// Which database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The engine of a database URL (`sqlite:PATH`, `postgres://...`).
    pub fn of_url(url: &str) -> Result<Dialect, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::Url(
                "the database is `sqlite:PATH` or `postgres://...`".to_owned(),
            ))
        }
    }

    /// ` FOR UPDATE` where the engine locks rows read in a transaction (PostgreSQL), else nothing
    /// (SQLite's transactions hold the database's write lock from their start).
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The engine's name.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// What a transaction needs from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// An ordinary read-write transaction (rows to change are read with
    /// [`Dialect::for_update`]).
    Write,
    /// A transaction whose reads must all see one snapshot and whose writes apply only to what it
    /// read (the tick: it folds the reports it read and marks exactly those folded).
    Snapshot,
}

/// How SQLite makes commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// `synchronous=FULL`: every commit is on disk before it returns (survives power loss).
    #[default]
    Full,
    /// `synchronous=NORMAL` in WAL mode: commits survive a crash of the process (`kill -9`), and
    /// the database stays consistent on power loss but may lose its last commits.
    Normal,
}

/// The controller's database (see the module docs).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

/// A transaction of the store.
pub type Tx = Transaction<'static, Any>;

impl Store {
    /// Connects to `url` (`sqlite:PATH`, created if missing; `postgres://user@host/db`) and brings
    /// the schema up to date.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        sqlite_sync: SqliteSync,
    ) -> Result<Store, StoreError> {
        install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let sync = match sqlite_sync {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA synchronous = {sync}")))
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        let store = Store { pool, dialect };
        migrations::migrate(&store).await?;
        Ok(store)
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction of `kind`.
    pub async fn begin(&self, kind: TxKind) -> Result<Tx, StoreError> {
        let statement = match (self.dialect, kind) {
            (Dialect::Sqlite, _) => "BEGIN IMMEDIATE",
            (Dialect::Postgres, TxKind::Write) => "BEGIN",
            (Dialect::Postgres, TxKind::Snapshot) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        };
        Ok(self.pool.begin_with(statement).await?)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `u64` to the database's `BIGINT` (refused above `i64::MAX`, which no release number, time or
/// count of this service reaches).
pub fn to_db(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(value))
}

/// The database's `BIGINT` back to `u64` (a negative value is damage).
pub fn from_db(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Damaged(format!("negative value {value}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_multi_row_insert_numbers_every_placeholder_once_in_order() {
        assert_eq!(
            super::multi_row_insert("INSERT INTO t (a, b) VALUES ", 3, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(super::multi_row_insert("X ", 1, 1), "X ($1)");
    }
}
