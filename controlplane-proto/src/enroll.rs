//! Enrolment: once per host, `POST /v1/enroll` with the enrolment secret and the public half of a
//! node key the agent generated; the controller answers with the host's id. From then on the host is
//! known only by signatures under that key.

use serde::{Deserialize, Serialize};

use crate::report::Criticality;

/// Longest hostname accepted, in bytes.
pub const MAX_HOSTNAME_BYTES: usize = 253;
/// Longest region accepted, in bytes.
pub const MAX_REGION_BYTES: usize = 64;
/// Longest enrolment secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 256;

/// `POST /v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The protocol version the agent speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
    pub protocol: u32,
    /// The enrolment secret the host was provisioned with.
    pub secret: String,
    /// The agent's node key, the 32-byte ed25519 public key in hex. The secret half stays on the
    /// host (mode 0600 in its store).
    pub public_key: String,
    /// What the host says about itself; the rollout puts it in a ring from these.
    pub labels: Labels,
}

/// A host's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// The host's name, for people: 1 to [`MAX_HOSTNAME_BYTES`] bytes of letters, digits, `-`, `.`
    /// and `_`.
    pub hostname: String,
    /// Its region: 1 to [`MAX_REGION_BYTES`] bytes of lowercase letters, digits, `-` and `_`.
    pub region: String,
    /// How critical the host is.
    pub criticality: Criticality,
    /// A host of the vendor's own fleet (its rings come first). Accepted only with the controller's
    /// internal enrolment secret.
    pub vendor_internal: bool,
}

impl Labels {
    /// Checks the labels' text: what is wrong, if anything.
    pub fn check(&self) -> Result<(), String> {
        let host_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if self.hostname.is_empty()
            || self.hostname.len() > MAX_HOSTNAME_BYTES
            || !self.hostname.bytes().all(host_ok)
        {
            return Err(format!(
                "hostname must be 1 to {MAX_HOSTNAME_BYTES} bytes of letters, digits, '-', '.' and '_'"
            ));
        }
        let region_ok =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_');
        if self.region.is_empty()
            || self.region.len() > MAX_REGION_BYTES
            || !self.region.bytes().all(region_ok)
        {
            return Err(format!(
                "region must be 1 to {MAX_REGION_BYTES} bytes of lowercase letters, digits, '-' and '_'"
            ));
        }
        Ok(())
    }
}

/// The answer to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    /// The protocol version of the answer.
    pub protocol: u32,
    /// The id the controller gave the host: what it names itself by in the `Rulebox-Host` header,
    /// and what every offer for it names. Enrolling the same node key again returns the same id.
    pub host_id: String,
    /// Seconds until the first check-in (the agent adds full jitter: uniform in `[0, interval]`).
    pub interval_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(hostname: &str, region: &str) -> Labels {
        Labels {
            hostname: hostname.to_owned(),
            region: region.to_owned(),
            criticality: Criticality::Low,
            vendor_internal: false,
        }
    }

    #[test]
    fn labels_with_terminal_escapes_or_odd_text_are_refused() {
        assert!(labels("ws-0042.corp", "eu-west").check().is_ok());
        for (h, r) in [
            ("", "eu"),
            ("evil\u{1b}[2J", "eu"),
            ("a b", "eu"),
            ("ok", "EU"),
            ("ok", ""),
            ("ok", &"x".repeat(MAX_REGION_BYTES + 1)),
        ] {
            assert!(labels(h, r).check().is_err(), "{h:?} {r:?}");
        }
        assert!(
            labels(&"h".repeat(MAX_HOSTNAME_BYTES + 1), "eu")
                .check()
                .is_err()
        );
    }
}
