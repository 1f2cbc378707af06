//! [`AgentError`]: why an agent could not start or stop cleanly.

use rulebox_runtime::{ConfigError, LoadError};

/// Why [`Agent::start`](crate::Agent::start) or [`Agent::stop`](crate::Agent::stop) failed. A content
/// store that cannot be opened or written is not among them: the agent then runs its baseline
/// content and raises [`Alert::StoreUnavailable`](crate::Alert::StoreUnavailable) or
/// [`Alert::StoreFailed`](crate::Alert::StoreFailed). Each message names what failed; the cause is
/// its `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The runtime configuration is unusable.
    #[error("cannot start the runtime")]
    Runtime(#[from] ConfigError),
    /// A module of the baseline content does not compile.
    #[error("the baseline module `{module}` does not compile")]
    Baseline {
        /// The module's name.
        module: String,
        /// Why.
        source: LoadError,
    },
    /// A thread of the agent could not be started.
    #[error("cannot start the agent's {what} thread")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A thread of the agent panicked (a bug: content cannot make it panic).
    #[error("the agent's {what} thread panicked")]
    Panicked {
        /// Which thread.
        what: &'static str,
    },
}
