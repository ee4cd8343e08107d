//! Dashboard sessions and the sign-in rate limit, in serve's memory.
//!
//! A session id is 256 random bits, given to the browser once as a cookie; serve keeps only its
//! SHA-256, the SHA-256 of the token that signed in, when the session ends, and the session's
//! form token (another 256 random bits, written into the dashboard's forms and compared in
//! constant time when one is posted, so another site cannot post a form in the user's name).
//! Sessions do not survive a restart of serve (everyone signs in again).

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
    csrf: String,
    expires_ms: i64,
}

/// A live session, as a request sees it.
pub struct Live {
    /// SHA-256 of the token that signed in.
    pub token_sha256: String,
    /// The session's form token.
    pub csrf: String,
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
        let csrf = token::generate()?;
        let mut map = self.lock();
        map.retain(|_, s| s.expires_ms > now_ms);
        map.insert(token::sha256_hex(&id), Session { token_sha256, csrf, expires_ms: now_ms.saturating_add(self.ttl_ms) });
        Ok(id)
    }

    /// The live session `id`.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Live> {
        let key = token::sha256_hex(id);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires_ms > now_ms => Some(Live { token_sha256: s.token_sha256.clone(), csrf: s.csrf.clone() }),
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
        let digest = |id: &str, now| sessions.get(id, now).map(|live| live.token_sha256);
        let id = sessions.start("digest".into(), 1_000).unwrap();
        assert_eq!(digest(&id, 1_000).as_deref(), Some("digest"));
        assert_eq!(digest(&id, 60_999).as_deref(), Some("digest"));
        assert_eq!(digest(&id, 61_000), None);
        let id = sessions.start("digest".into(), 1_000).unwrap();
        sessions.end(&id);
        assert_eq!(digest(&id, 1_000), None);
        assert_eq!(digest("made-up", 1_000), None);
    }

    #[test]
    fn each_session_has_its_own_form_token() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (a, b) = (sessions.start("digest".into(), 0).unwrap(), sessions.start("digest".into(), 0).unwrap());
        let (a, b) = (sessions.get(&a, 0).unwrap().csrf, sessions.get(&b, 0).unwrap().csrf);
        assert_ne!(a, b);
        assert_eq!(a.len(), 46);
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
