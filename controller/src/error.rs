//! The controller's errors: the store's, the service's at start-up, and the API's answers.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rulebox_controlplane_proto::{ErrorBody, ErrorCode};

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL is not one this service reads.
    #[error("database URL: {0}")]
    Url(String),
    /// The database cannot be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A query failed.
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    /// The database's schema is newer than this build knows.
    #[error(
        "the database's schema is version {found}; this controller knows versions up to {known} (run a newer controller)"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A value does not fit the database's 64-bit signed integers.
    #[error("{0} does not fit the database's 64-bit signed integers")]
    OutOfRange(u64),
    /// Something read back is not what this service wrote.
    #[error("the database holds damaged data: {0}")]
    Damaged(String),
    /// A value cannot be encoded (not expected).
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

impl StoreError {
    /// Whether the failure is a transaction conflict that a retry resolves (PostgreSQL's
    /// serialization failure or deadlock; SQLite's busy database).
    pub fn is_conflict(&self) -> bool {
        let StoreError::Query(sqlx::Error::Database(e)) = self else {
            return false;
        };
        matches!(e.code().as_deref(), Some("40001" | "40P01" | "5" | "6"))
    }
}

/// A failure of the report log (NATS JetStream).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus settings are unusable.
    #[error("report bus: {0}")]
    Config(String),
    /// The server cannot be reached.
    #[error("cannot connect to the report bus at {url}: {message}")]
    Connect {
        /// The server's URL, credentials removed.
        url: String,
        /// Why.
        message: String,
    },
    /// The stream cannot be created or read, or exists with other subjects.
    #[error("report stream: {0}")]
    Stream(String),
    /// The aggregator's consumer cannot be created or read from.
    #[error("report consumer: {0}")]
    Consumer(String),
    /// A publish was not confirmed by the stream.
    #[error("the report stream did not store the check-in's reports: {0}")]
    Publish(String),
    /// The bus is not connected now.
    #[error("the report bus is not connected")]
    Disconnected,
    /// The database, while folding reports.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> ApiError {
        tracing::error!(error = %e, "report bus failure; check-in refused");
        ApiError::new(
            ErrorCode::Unavailable,
            "the controller cannot record reports now; keep them and retry later",
        )
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A configuration file cannot be read or is invalid.
    #[error("`{}`: {problem}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An online key cannot sign for the trusted root.
    #[error("{0}")]
    Key(#[from] rulebox_release::OnlineKeyError),
    /// The repository cannot be opened, or does not chain from the trusted root.
    #[error("content repository: {0}")]
    Repository(#[from] rulebox_release::PublishError),
    /// A key or root file cannot be read.
    #[error(transparent)]
    Release(#[from] rulebox_release::ReleaseError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The report bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
}

/// An API refusal: a status and the JSON body every client reads ([`ErrorBody`]).
#[derive(Debug)]
pub struct ApiError {
    /// The code (and so the status).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// For a sequence conflict: the last `seq` accepted.
    pub last_seq: Option<u64>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            last_seq: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "database failure");
        let code = match e {
            StoreError::Connect(_) | StoreError::Query(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, "the controller's database failed; retry later")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::from(StoreError::Query(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            last_seq: self.last_seq,
        };
        (status, axum::Json(body)).into_response()
    }
}
