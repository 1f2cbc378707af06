//! [`AgentError`]: why an agent could not start or stop cleanly.

use std::path::PathBuf;

use rulebox_runtime::content::StoreError;
use rulebox_runtime::{ConfigError, LoadError};

/// Why [`Agent::start`](crate::Agent::start) or [`Agent::stop`](crate::Agent::stop) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The runtime configuration is unusable.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] ConfigError),
    /// The content store cannot be opened.
    #[error("cannot open the content store `{}`", dir.display())]
    Store {
        /// The store folder.
        dir: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The boot guard could not record its decision (the store refused a write).
    #[error("the boot guard cannot record its decision")]
    BootGuard(#[source] StoreError),
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
