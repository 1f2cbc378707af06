//! Error answers: every refusal of the controller's API is a JSON body with a stable code.

use serde::{Deserialize, Serialize};

/// The body of every error answer: `{"error": "<code>", "message": "...", "last_seq": 17}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, as a stable code.
    pub error: ErrorCode,
    /// For people.
    pub message: String,
    /// For [`ErrorCode::SeqConflict`]: the last `seq` the controller accepted from this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// Stable error codes, with the HTTP status each comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the request's `protocol` is not one the controller speaks.
    UnsupportedProtocol,
    /// 400: the body does not parse, or a field is out of range.
    BadRequest,
    /// 401: enrolment with a wrong secret; an operator request without a valid credential.
    Unauthorized,
    /// 403: authenticated, but not allowed (a `vendor_internal` host with the ordinary secret).
    Forbidden,
    /// 401: a check-in naming a host the controller does not know.
    UnknownHost,
    /// 401: a check-in whose signature does not verify under the host's enrolled key.
    BadSignature,
    /// 409: a check-in `seq` lower than the last accepted, or the same `seq` with another body.
    SeqConflict,
    /// 404: no such rollout (operator API).
    NotFound,
    /// 409: the operation conflicts with the rollout's state (operator API).
    Conflict,
    /// 422: the release or plan was refused (not published, does not verify, bakes too short).
    Refused,
    /// 413: the body is larger than accepted.
    TooLarge,
    /// 503: the controller cannot serve now (database unavailable); retry later.
    Unavailable,
    /// 500: an internal error; retry later.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code comes with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::UnsupportedProtocol | ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized | ErrorCode::UnknownHost | ErrorCode::BadSignature => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::SeqConflict | ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Refused => 422,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whether a client should retry the same request later (network-level trouble on the
    /// controller's side), as opposed to a refusal that the same request will always get.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Internal)
    }
}
