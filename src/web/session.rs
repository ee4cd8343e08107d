//! Dashboard sessions and the sign-in rate limit, in serve's memory.
//!
//! A session id is 256 random bits, given to the browser once as a cookie; serve keeps only its
//! SHA-256, the SHA-256 of the token that signed in, and when the session ends. Sessions do not
//! survive a restart of serve (everyone signs in again).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::token;

/// The sessions of one serve.
pub struct Sessions {
    ttl_ms: i64,
    /// SHA-256 of the session id → the session.
    map: Mutex<HashMap<String, Session>>,
}

struct Session {
    token_sha256: String,
    expires_ms: i64,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions { ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX), map: Mutex::new(HashMap::new()) }
    }

    /// How long a session lasts from sign-in.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_ms / 1000
    }

    /// Start a session for the token with SHA-256 `token_sha256`; the new session id (for the
    /// cookie only). Ended sessions are dropped here.
    pub fn start(&self, token_sha256: String, now_ms: i64) -> Result<String, getrandom::Error> {
        let id = token::generate()?;
        let mut map = self.lock();
        map.retain(|_, s| s.expires_ms > now_ms);
        map.insert(token::sha256_hex(&id), Session { token_sha256, expires_ms: now_ms.saturating_add(self.ttl_ms) });
        Ok(id)
    }

    /// The token digest of the live session `id`.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<String> {
        let key = token::sha256_hex(id);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires_ms > now_ms => Some(s.token_sha256.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// End the session `id` (sign-out, or its token left the configuration).
    pub fn end(&self, id: &str) {
        self.lock().remove(&token::sha256_hex(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sign-in attempts per client address: at most [`SignInLimit::ATTEMPTS`] in each window of
/// [`SignInLimit::WINDOW_MS`].
#[derive(Default)]
pub struct SignInLimit {
    /// address → (window start, attempts in it)
    map: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl SignInLimit {
    pub const ATTEMPTS: u32 = 10;
    pub const WINDOW_MS: i64 = 60_000;

    /// Count an attempt from `addr`; `Err(seconds to wait)` when it is one too many.
    pub fn attempt(&self, addr: IpAddr, now_ms: i64) -> Result<(), i64> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| now_ms - *start < Self::WINDOW_MS);
        }
        let entry = map.entry(addr).or_insert((now_ms, 0));
        if now_ms - entry.0 >= Self::WINDOW_MS {
            *entry = (now_ms, 0);
        }
        if entry.1 >= Self::ATTEMPTS {
            return Err(((entry.0 + Self::WINDOW_MS - now_ms + 999) / 1000).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_its_expiry_or_its_end() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.start("digest".into(), 1_000).unwrap();
        assert_eq!(sessions.get(&id, 1_000).as_deref(), Some("digest"));
        assert_eq!(sessions.get(&id, 60_999).as_deref(), Some("digest"));
        assert_eq!(sessions.get(&id, 61_000), None);
        let id = sessions.start("digest".into(), 1_000).unwrap();
        sessions.end(&id);
        assert_eq!(sessions.get(&id, 1_000), None);
        assert_eq!(sessions.get("made-up", 1_000), None);
    }

    #[test]
    fn sign_in_attempts_are_limited_per_address_and_window() {
        let limit = SignInLimit::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..SignInLimit::ATTEMPTS {
            assert_eq!(limit.attempt(a, 0), Ok(()));
        }
        assert_eq!(limit.attempt(a, 1_000), Err(59));
        assert_eq!(limit.attempt(b, 1_000), Ok(()));
        assert_eq!(limit.attempt(a, SignInLimit::WINDOW_MS), Ok(()));
    }
}
