//! Credentials: the enrolment secrets agents present once, and the operators' bearer tokens. Only
//! SHA-256 digests of tokens are kept, and every comparison is of digests in constant time.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServiceError;

/// Largest credential file read, in bytes.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Shortest secret or token accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// A secret, kept as its SHA-256 digest. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The secret of `text` (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(text: &str) -> Result<Secret, String> {
        if text.len() < MIN_SECRET_BYTES {
            return Err(format!("a secret has at least {MIN_SECRET_BYTES} bytes"));
        }
        Ok(Secret(Sha256::digest(text.as_bytes()).into()))
    }

    /// Whether `candidate` is this secret (digests compared in constant time).
    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        constant_time_eq(&digest, &self.0)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Reads a secret from a file (its first line, surrounding whitespace removed).
pub fn read_secret_file(path: &Path) -> Result<Secret, ServiceError> {
    let bytes = read(path)?;
    let text = String::from_utf8(bytes).map_err(|_| ServiceError::ConfigFile {
        path: path.to_path_buf(),
        problem: "not UTF-8 text".to_owned(),
    })?;
    let line = text.lines().next().unwrap_or("").trim();
    Secret::new(line).map_err(|problem| ServiceError::ConfigFile {
        path: path.to_path_buf(),
        problem,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ServiceError> {
    rulebox_runtime::content::read_capped_following_links(path, MAX_FILE_BYTES).map_err(|e| {
        ServiceError::ConfigFile {
            path: path.to_path_buf(),
            problem: e.to_string(),
        }
    })
}

/// An operator: a name (what the audit records) and the SHA-256 of their token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// The name: 1 to 64 bytes of lowercase letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Hex SHA-256 of the bearer token.
    pub token_sha256: String,
}

/// The operators file: `{"operators": [{"name": "alice", "token_sha256": "<hex>"}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsFile {
    /// The operators.
    pub operators: Vec<Operator>,
}

/// The operators who may use the operator API.
#[derive(Debug, Clone, Default)]
pub struct Operators(Vec<(String, [u8; 32])>);

/// Checks an operator's name.
pub fn check_operator_name(name: &str) -> Result<(), String> {
    let ok =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > 64 || !name.bytes().all(ok) {
        return Err(format!(
            "operator name {name:?}: 1 to 64 bytes of lowercase letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

impl Operators {
    /// The operators of a parsed file (names checked, digests 64 hex digits, names unique).
    pub fn from_file(file: &OperatorsFile) -> Result<Operators, String> {
        let mut out: Vec<(String, [u8; 32])> = Vec::new();
        for op in &file.operators {
            check_operator_name(&op.name)?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&op.token_sha256, &mut digest).map_err(|_| {
                format!("operator `{}`: token_sha256 is not 64 hex digits", op.name)
            })?;
            if out.iter().any(|(n, _)| *n == op.name) {
                return Err(format!("operator `{}` is listed twice", op.name));
            }
            out.push((op.name.clone(), digest));
        }
        Ok(Operators(out))
    }

    /// The name of the operator whose token is `token`, if any (every digest is compared, in
    /// constant time).
    pub fn authenticate(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, d) in &self.0 {
            if constant_time_eq(&digest, d) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// How many operators.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads the operators file.
pub fn read_operators_file(path: &Path) -> Result<Operators, ServiceError> {
    let bytes = read(path)?;
    let file: OperatorsFile =
        serde_json::from_slice(&bytes).map_err(|e| ServiceError::ConfigFile {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    Operators::from_file(&file).map_err(|problem| ServiceError::ConfigFile {
        path: path.to_path_buf(),
        problem,
    })
}

/// A new random token (32 bytes, hex) and its operators-file entry for `name`.
pub fn new_token(name: &str) -> Result<(String, Operator), String> {
    check_operator_name(name)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the random number generator failed: {e}"))?;
    let token = hex::encode(bytes);
    let entry = Operator {
        name: name.to_owned(),
        token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
    };
    Ok((token, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_their_operator_only() {
        let (alice, a) = new_token("alice").unwrap();
        let (bob, b) = new_token("bob").unwrap();
        let ops = Operators::from_file(&OperatorsFile {
            operators: vec![a.clone(), b],
        })
        .unwrap();
        assert_eq!(ops.authenticate(&alice), Some("alice"));
        assert_eq!(ops.authenticate(&bob), Some("bob"));
        assert_eq!(ops.authenticate("guess"), None);
        assert!(new_token("Alice Smith").is_err());
        let twice = Operators::from_file(&OperatorsFile {
            operators: vec![a.clone(), a],
        });
        assert!(twice.unwrap_err().contains("twice"));
        let s = Secret::new("an enrolment secret").unwrap();
        assert!(s.matches("an enrolment secret"));
        assert!(!s.matches("an enrolment secreT"));
        assert!(Secret::new("short").is_err());
        assert!(!format!("{s:?}").contains("enrol"));
    }
}
