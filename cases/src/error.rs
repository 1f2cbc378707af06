//! Why a test file could not be read.

use std::io;
use std::path::PathBuf;

/// A test file (or folder of them) that cannot be used. A case that *fails* is not an error: it is a
/// [`CaseOutcome`](crate::CaseOutcome) with a problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// A file or folder cannot be read.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Something other than a regular file is where a test file should be (a FIFO, a device).
    #[error("`{}` is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A test file is larger than accepted ([`MAX_CASE_FILE_BYTES`](crate::MAX_CASE_FILE_BYTES)).
    #[error("`{}` is {size} bytes; a test file may have at most {cap}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or the cap plus one, when it grew while being read).
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// A test file is not JSON of the expected shape (a missing or unknown key of the file or of a
    /// case, a value of the wrong type).
    #[error("test file `{}` is not valid: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error, with its line and column.
        source: serde_json::Error,
    },
    /// A test file is JSON of the right shape, but a case in it cannot be used: an event with an
    /// unknown key or kind, an `expect` that is neither `"none"` nor a list of detections, a case
    /// without events, ...
    #[error("test file `{}`: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the case, the event and the key.
        problem: String,
    },
    /// No test file was found under the paths given.
    #[error("no test files (*.json, or a tests/ folder of them) under {}", paths.join(", "))]
    NoFiles {
        /// The paths searched, as given.
        paths: Vec<String>,
    },
}
