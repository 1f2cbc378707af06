//! # rulebox-controlplane-proto: the check-in protocol, version 1
//!
//! What an agent and the controller service (`rulebox controller serve`) say to each other, shared
//! by both without the agent linking the server. JSON over HTTP; every struct refuses unknown
//! fields, so a change of shape is a new [`PROTOCOL_VERSION`].
//!
//! - [`EnrollRequest`] / [`EnrollResponse`]: `POST /v1/enroll`, once, with the enrolment secret and
//!   the public half of a [`NodeKey`] the agent generated.
//! - [`CheckinRequest`] / [`CheckinResponse`]: `POST /v1/checkin` every interval, signed with the
//!   node key ([`NodeKey::sign_checkin`], headers [`HEADER_HOST`] and [`HEADER_SIGNATURE`]);
//!   spooled [`HealthReport`]s in, the next interval, a signed offer and signed reverts out.
//! - [`ErrorBody`]: every refusal, with a stable [`ErrorCode`].
//! - [`repo`]: the file names of the static content repository a fetcher reads.
//!
//! What the host checks in what it receives (the offer against the root's rollout role, the
//! repository's `timestamp.json` against its timestamp role, the manifest against the root) is in
//! `rulebox_runtime::content` (`verify_offer`, `verify_timestamp`, `verify_bundle`). The full
//! protocol, with the agent's side (jitter, backoff, spool, staging), is `docs/controlplane.md`.
//!
//! ```
//! use rulebox_controlplane_proto::*;
//!
//! let key = NodeKey::generate().unwrap();
//! let body = serde_json::to_vec(&CheckinRequest {
//!     protocol: PROTOCOL_VERSION,
//!     seq: 1,
//!     state: HostContentState::default(),
//!     reports: Vec::new(),
//!     dropped_reports: 0,
//! })
//! .unwrap();
//! let signature = key.sign_checkin(&body); // the `Rulebox-Signature` header
//! let public = parse_public_key(&key.public_hex()).unwrap(); // what the controller enrolled
//! verify_checkin(&public, &body, &signature).unwrap();
//! ```

mod checkin;
mod enroll;
mod error;
mod node_key;
pub mod repo;
mod report;

pub use checkin::{
    CONTEXT_CHECKIN, CheckinRequest, CheckinResponse, HEADER_HOST, HEADER_SIGNATURE,
    HostContentState, MAX_BAD_RELEASES, MAX_CHECKIN_BYTES, MAX_REPORTS_PER_CHECKIN,
};
pub use enroll::{
    EnrollRequest, EnrollResponse, Labels, MAX_HOSTNAME_BYTES, MAX_REGION_BYTES, MAX_SECRET_BYTES,
};
pub use error::{ErrorBody, ErrorCode};
pub use node_key::{NodeKey, NodeKeyError, parse_public_key, verify_checkin};
pub use report::{
    Criticality, FetchFailureClass, HealthReport, MAX_REPORT_TEXT_BYTES, ReportKind, bound_text,
};

/// The protocol version this crate speaks (the `protocol` field of every request and answer).
pub const PROTOCOL_VERSION: u32 = 1;
/// `POST`: enrol a host.
pub const ENROLL_PATH: &str = "/v1/enroll";
/// `POST`: check in.
pub const CHECKIN_PATH: &str = "/v1/checkin";
/// Largest enrolment body accepted, in bytes.
pub const MAX_ENROLL_BYTES: usize = 16 << 10;
