//! [`FetchError`]: why a check-in, a download or a delivery failed, each in one of the classes a
//! `fetch_failed` report names.

use rulebox_controlplane_proto::FetchFailureClass;

/// Why a fetch step failed. The fetcher backs off and tries again; the content already running
/// keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}", class = .class.name())]
#[non_exhaustive]
pub struct FetchError {
    /// What kind of failure (each has its own remedy).
    pub class: FetchFailureClass,
    /// What failed, for people (the URL or file, and the cause).
    pub message: String,
    /// For a `409 seq_conflict` answer: the last `seq` the controller accepted.
    pub last_seq: Option<u64>,
    /// Whether the same request would get the same refusal (a `4xx` other than `409`/`429`):
    /// reported, and retried only after the full backoff.
    pub refusal: bool,
}

impl FetchError {
    /// A failure of class `class`.
    pub fn new(class: FetchFailureClass, message: impl Into<String>) -> FetchError {
        FetchError {
            class,
            message: message.into(),
            last_seq: None,
            refusal: false,
        }
    }

    /// A network failure (unreachable, reset, timed out).
    pub fn network(message: impl Into<String>) -> FetchError {
        Self::new(FetchFailureClass::Network, message)
    }

    /// An unexpected HTTP status (or a redirect, which is never followed).
    pub fn status(message: impl Into<String>) -> FetchError {
        Self::new(FetchFailureClass::Status, message)
    }

    /// The host's own disk (staging, the spool, the fetcher's state).
    pub fn disk(what: &str, error: &std::io::Error) -> FetchError {
        Self::new(FetchFailureClass::Disk, format!("{what}: {error}"))
    }
}

/// The class of a store's refusal of a delivered bundle, as a `fetch_failed` (or, for the owner's
/// policy, `refused`) report names it.
pub fn refusal_class(error: &rulebox_runtime::content::StoreError) -> FetchFailureClass {
    use rulebox_runtime::content::{BundleError, StoreError};
    match error {
        StoreError::Policy(_) => FetchFailureClass::Policy,
        StoreError::Bundle(BundleError::Expired { .. }) => FetchFailureClass::Expired,
        StoreError::Bundle(
            BundleError::ModuleTooLarge { .. } | BundleError::BundleTooLarge { .. },
        ) => FetchFailureClass::TooLarge,
        StoreError::Bundle(
            BundleError::SizeMismatch { .. }
            | BundleError::MixAndMatch { .. }
            | BundleError::MissingModule { .. }
            | BundleError::ExtraFile { .. },
        ) => FetchFailureClass::Hash,
        StoreError::Io { .. } => FetchFailureClass::Disk,
        _ => FetchFailureClass::Signature,
    }
}
