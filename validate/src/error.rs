//! Errors of the validator and of the signing gate.

use std::io;
use std::path::PathBuf;

use rulebox_runtime::ConfigError;

/// Why validation could not run at all (a rule that fails is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// A file or folder cannot be read or written.
    #[error("`{}`: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A file is larger than accepted.
    #[error("`{}` is {size} bytes; the limit is {cap}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// A JSON file does not have the expected shape.
    #[error("`{}` is not valid: {error}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        error: serde_json::Error,
    },
    /// A bundle folder is not a readable bundle (an unsigned one is fine).
    #[error("bundle `{}`: {problem}", path.display())]
    Bundle {
        /// The bundle folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A bundle fails the endpoint's structure checks (an endpoint would refuse it).
    #[error("bundle `{}` is refused by the endpoint's checks: {error}", path.display())]
    Refused {
        /// The bundle folder.
        path: PathBuf,
        /// The endpoint's refusal.
        error: rulebox_runtime::content::BundleError,
    },
    /// A rule test file is not valid, or a folder given for tests holds none.
    #[error(transparent)]
    Cases(#[from] rulebox_cases::CaseError),
    /// The options are unusable.
    #[error("invalid validation options: {0}")]
    Options(String),
    /// The runtime configuration is invalid.
    #[error("cannot start the runtime: {0}")]
    Config(ConfigError),
    /// A value cannot be encoded (not expected to happen).
    #[error("cannot encode the report: {0}")]
    Encode(serde_json::Error),
}

impl From<ConfigError> for ValidateError {
    fn from(e: ConfigError) -> Self {
        ValidateError::Config(e)
    }
}

/// Why the signing gate refuses a bundle: there is no passing validation report bound to its
/// manifest hash and signed by a trusted gate key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// No report at the expected place.
    #[error(
        "no validation report at `{}`: run `rulebox validate {}` first",
        path.display(),
        bundle.display()
    )]
    Missing {
        /// Where the report was looked for.
        path: PathBuf,
        /// The bundle folder.
        bundle: PathBuf,
    },
    /// The report cannot be read.
    #[error("validation report: {0}")]
    Unreadable(ValidateError),
    /// The report carries no gate key's signature (validated without `--gate-key`).
    #[error(
        "validation report `{}` is not signed by a gate key: validate again with a gate key (`rulebox validate --gate-key`)",
        path.display()
    )]
    Unsigned {
        /// The report.
        path: PathBuf,
    },
    /// The report's signatures are not by a gate key the signer trusts, or do not verify (the
    /// report was changed after it was signed).
    #[error(
        "validation report `{}` is not attested by a trusted gate key: {error}",
        path.display()
    )]
    NotAttested {
        /// The report.
        path: PathBuf,
        /// What failed.
        error: rulebox_runtime::content::SignatureError,
    },
    /// No usable gate key was given to check against.
    #[error("no usable gate key to check the validation report against: {problem}")]
    NoGateKey {
        /// What is wrong.
        problem: String,
    },
    /// The report is for other content.
    #[error(
        "validation report `{}` is for manifest {found}, the bundle's manifest is {expected}: validate the bundle again",
        path.display()
    )]
    WrongHash {
        /// The report.
        path: PathBuf,
        /// The hash in the report.
        found: String,
        /// The bundle's manifest hash.
        expected: String,
    },
    /// The report was made by another runtime version (its verdict says nothing about this one).
    #[error(
        "validation report `{}` was made by runtime {found}; this is {ours}: validate the bundle again",
        path.display()
    )]
    OtherRuntime {
        /// The report.
        path: PathBuf,
        /// The version in the report.
        found: String,
        /// This runtime's version.
        ours: String,
    },
    /// The report is in another format than this version writes (made before a change to what
    /// validation checks or records).
    #[error(
        "validation report `{}` is format {found}; this version of the gate reads format {ours}: validate the bundle again",
        path.display()
    )]
    OtherFormat {
        /// The report.
        path: PathBuf,
        /// The format in the report.
        found: u32,
        /// The format this version writes.
        ours: u32,
    },
    /// The report says the bundle failed validation.
    #[error("validation report `{}` says the bundle failed: {summary}", path.display())]
    Failed {
        /// The report.
        path: PathBuf,
        /// The failing rules and problems, in short.
        summary: String,
    },
}
