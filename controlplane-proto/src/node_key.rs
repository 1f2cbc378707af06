//! The node key: the ed25519 key an agent generates at enrolment and signs every check-in with.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::checkin::CONTEXT_CHECKIN;

/// Why a node key or a check-in signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeKeyError {
    /// The operating system's random number generator failed.
    #[error("cannot generate a node key: the system random number generator failed: {0}")]
    Random(String),
    /// A public key is not 32 bytes of hex, not a valid ed25519 point, or a weak (small-order) key.
    #[error("the node public key is unusable: {0}")]
    PublicKey(&'static str),
    /// A secret seed is not 32 bytes of hex.
    #[error("the node key's secret is not 32 bytes of hex")]
    Secret,
    /// A signature is not 64 bytes of hex.
    #[error("the signature is not 64 bytes of hex")]
    SignatureFormat,
    /// A signature does not verify over the body under the host's key.
    #[error("the signature does not verify over the body under the host's enrolled key")]
    BadSignature,
}

/// An agent's node key (secret half). `Debug` never shows the secret.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A new key from 32 bytes of the operating system's random number generator.
    pub fn generate() -> Result<NodeKey, NodeKeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NodeKeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(NodeKey(key))
    }

    /// The key of a 32-byte secret seed in hex (as [`NodeKey::secret_hex`] writes it).
    pub fn from_secret_hex(text: &str) -> Result<NodeKey, NodeKeyError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| NodeKeyError::Secret)?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(NodeKey(key))
    }

    /// The secret seed in hex, for the agent to keep in its store (mode 0600).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The public key in hex, as enrolment sends it.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// The hex signature for header [`HEADER_SIGNATURE`](crate::HEADER_SIGNATURE) over
    /// [`CONTEXT_CHECKIN`] followed by `body`.
    pub fn sign_checkin(&self, body: &[u8]) -> String {
        let mut message = Vec::with_capacity(CONTEXT_CHECKIN.len() + body.len());
        message.extend_from_slice(CONTEXT_CHECKIN);
        message.extend_from_slice(body);
        hex::encode(self.0.sign(&message).to_bytes())
    }
}

/// Parses a node public key from hex: 32 bytes, a valid ed25519 point, not of small order.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, NodeKeyError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| NodeKeyError::PublicKey("not 32 bytes of hex"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| NodeKeyError::PublicKey("not a valid ed25519 public key"))?;
    if key.is_weak() {
        return Err(NodeKeyError::PublicKey("a weak (small-order) ed25519 key"));
    }
    Ok(key)
}

/// Verifies a check-in signature (hex, from the header) over [`CONTEXT_CHECKIN`] followed by `body`
/// under `key` (strict verification: no malleable signatures).
pub fn verify_checkin(
    key: &VerifyingKey,
    body: &[u8],
    signature: &str,
) -> Result<(), NodeKeyError> {
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature, &mut sig).map_err(|_| NodeKeyError::SignatureFormat)?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    let mut message = Vec::with_capacity(CONTEXT_CHECKIN.len() + body.len());
    message.extend_from_slice(CONTEXT_CHECKIN);
    message.extend_from_slice(body);
    key.verify_strict(&message, &sig)
        .map_err(|_| NodeKeyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkin_signature_binds_the_body_and_the_key() {
        let key = NodeKey::generate().unwrap();
        let public = parse_public_key(&key.public_hex()).unwrap();
        let body = br#"{"protocol":1,"seq":1}"#;
        let sig = key.sign_checkin(body);
        verify_checkin(&public, body, &sig).unwrap();
        assert_eq!(
            verify_checkin(&public, br#"{"protocol":1,"seq":2}"#, &sig),
            Err(NodeKeyError::BadSignature)
        );
        let other = parse_public_key(&NodeKey::generate().unwrap().public_hex()).unwrap();
        assert_eq!(
            verify_checkin(&other, body, &sig),
            Err(NodeKeyError::BadSignature)
        );
        assert_eq!(
            verify_checkin(&public, body, "zz"),
            Err(NodeKeyError::SignatureFormat)
        );
        let again = NodeKey::from_secret_hex(&key.secret_hex()).unwrap();
        assert_eq!(again.public_hex(), key.public_hex());
        assert!(!format!("{key:?}").contains(&key.secret_hex()));
    }

    #[test]
    fn weak_and_malformed_public_keys_are_refused() {
        // The identity point: a small-order key under which any message "verifies" loosely.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            parse_public_key(&hex::encode(identity)),
            Err(NodeKeyError::PublicKey(_))
        ));
        assert!(parse_public_key("abcd").is_err());
    }
}
