//! Dashboard sessions: an operator signs in with their bearer token (or a one-time sign-in code
//! issued through the operator API) and gets a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie; every form that changes something carries the session's CSRF token.
//! Sessions live in the controller's memory only (a restart signs everyone out) and only the
//! SHA-256 of a session id or sign-in code is kept.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::clock::Clock;

/// The cookie's name.
pub const COOKIE: &str = "rulebox_session";
/// How long a session lasts, in wall-clock milliseconds (8 hours).
pub const SESSION_TTL_MS: u64 = 8 * 3600 * 1000;
/// How long a sign-in code is valid, in wall-clock milliseconds.
pub const CODE_TTL_MS: u64 = 60 * 1000;
/// Most sessions and codes held at once (the oldest go first).
pub const MAX_SESSIONS: usize = 1024;

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The operator's name (what the audit records).
    pub operator: String,
    /// The token every changing form must carry.
    pub csrf: String,
    /// When it ends, wall-clock milliseconds.
    pub expires_ms: u64,
}

/// The sessions and the unused sign-in codes, by SHA-256 of their secret.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    codes: Mutex<HashMap<[u8; 32], (String, u64)>>,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// Drops expired entries, then the soonest-expiring ones beyond [`MAX_SESSIONS`] - 1.
fn prune<V>(map: &mut HashMap<[u8; 32], V>, expires: impl Fn(&V) -> u64, now: u64) {
    map.retain(|_, v| expires(v) > now);
    while map.len() >= MAX_SESSIONS {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| expires(v)).map(|(k, _)| *k) else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Compares two texts in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (digest(a), digest(b));
    x.iter().zip(&y).fold(0u8, |d, (p, q)| d | (p ^ q)) == 0
}

impl Sessions {
    /// A new session for `operator`: the cookie value (the session id), or `None` if the random
    /// number generator failed.
    pub fn create(&self, operator: &str) -> Option<String> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Clock::real_ms();
        let mut sessions = self.sessions.lock().ok()?;
        prune(&mut sessions, |s| s.expires_ms, now);
        sessions.insert(
            digest(&id),
            Session {
                operator: operator.to_owned(),
                csrf,
                expires_ms: now.saturating_add(SESSION_TTL_MS),
            },
        );
        Some(id)
    }

    /// The live session named by the request's cookie.
    pub fn of_request(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let now = Clock::real_ms();
        let sessions = self.sessions.lock().ok()?;
        sessions
            .get(&digest(id))
            .filter(|s| s.expires_ms > now)
            .cloned()
    }

    /// Ends the session named by the request's cookie.
    pub fn end(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut sessions)) = (cookie(headers, COOKIE), self.sessions.lock()) {
            sessions.remove(&digest(id));
        }
    }

    /// A one-time sign-in code for `operator`, valid [`CODE_TTL_MS`].
    pub fn issue_code(&self, operator: &str) -> Option<String> {
        let code = random_hex()?;
        let now = Clock::real_ms();
        let mut codes = self.codes.lock().ok()?;
        prune(&mut codes, |c| c.1, now);
        codes.insert(
            digest(&code),
            (operator.to_owned(), now.saturating_add(CODE_TTL_MS)),
        );
        Some(code)
    }

    /// Uses up a sign-in code: the operator it was issued to, if it is valid.
    pub fn redeem_code(&self, code: &str) -> Option<String> {
        let now = Clock::real_ms();
        let mut codes = self.codes.lock().ok()?;
        codes
            .remove(&digest(code))
            .filter(|(_, expires)| *expires > now)
            .map(|(operator, _)| operator)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL_MS / 1000
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_code_works_once_and_a_session_needs_its_cookie() {
        let s = Sessions::default();
        let code = s.issue_code("alice").unwrap();
        assert_eq!(s.redeem_code(&code).as_deref(), Some("alice"));
        assert_eq!(s.redeem_code(&code), None);
        let id = s.create("alice").unwrap();
        let mut headers = HeaderMap::new();
        assert!(s.of_request(&headers).is_none());
        headers.insert(
            header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(s.of_request(&headers).unwrap().operator, "alice");
        s.end(&headers);
        assert!(s.of_request(&headers).is_none());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }
}
