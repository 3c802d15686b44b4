//! Web admin sessions: a random token in an `HttpOnly`, `SameSite=Strict` cookie, an idle
//! and an absolute expiry, a CSRF token per session, and failed logins slowed down.
//!
//! Sessions live in this gateway's memory (bounded): with several gateways behind one
//! address, route a browser to one gateway (sticky sessions) or it logs in again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "shoal_session";

/// Most sessions kept at once; the oldest is dropped for a new one past it.
const MAX_SESSIONS: usize = 10_000;

/// Failed logins are remembered this long.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The longest wait before a login is checked.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    /// Who logged in (their role is read on every request, so a change holds at once).
    pub user: String,
    created: Instant,
    last_seen: Instant,
}

/// Every session of this gateway; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: Duration,
    failures: Mutex<Vec<Instant>>,
}

fn token() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("{a:032x}{b:032x}")
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Sessions {
        Sessions {
            inner: Arc::new(Inner {
                map: Mutex::new(HashMap::new()),
                idle,
                max,
                failures: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A new session of `user`; answers its token (the cookie's value).
    pub fn create(&self, user: &str) -> String {
        let now = Instant::now();
        let id = token();
        let mut map = self.inner.map.lock();
        map.retain(|_, s| self.alive(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                csrf: token(),
                user: user.to_owned(),
                created: now,
                last_seen: now,
            },
        );
        id
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.inner.idle
            && now.duration_since(s.created) < self.inner.max
    }

    /// The live session of a cookie value (and marks it used), else `None` (an expired
    /// one is forgotten).
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.inner.map.lock();
        let alive = map.get(id).map(|s| self.alive(s, now))?;
        if !alive {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Ends a session (logout).
    pub fn remove(&self, id: &str) {
        self.inner.map.lock().remove(id);
    }

    /// How long the next login waits before its password is checked: nothing for the
    /// first three failures within 15 minutes, then doubling from 0.5 s up to 5 s. Kept
    /// for the whole gateway, not per address, so spreading guesses over addresses
    /// does not help.
    pub fn login_delay(&self) -> Duration {
        let now = Instant::now();
        let mut f = self.inner.failures.lock();
        f.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        let n = f.len();
        if n < 3 {
            return Duration::ZERO;
        }
        let exp = u32::try_from(n - 3).unwrap_or(u32::MAX).min(4);
        (Duration::from_millis(500) * 2u32.pow(exp)).min(MAX_DELAY)
    }

    pub fn login_failed(&self) {
        let mut f = self.inner.failures.lock();
        if f.len() < 10_000 {
            f.push(Instant::now());
        }
    }

    pub fn login_succeeded(&self) {
        self.inner.failures.lock().clear();
    }
}

/// Whether a presented CSRF token is the session's (constant time).
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    !presented.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::new(Duration::from_millis(50), Duration::from_secs(60));
        let id = s.create("admin");
        assert!(s.touch(&id).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn sessions_expire_at_their_age_however_busy() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_millis(60));
        let id = s.create("admin");
        for _ in 0..3 {
            assert!(s.touch(&id).is_some());
            std::thread::sleep(Duration::from_millis(15));
        }
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn failed_logins_slow_down_the_next() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(s.login_delay(), Duration::ZERO);
            s.login_failed();
        }
        assert_eq!(s.login_delay(), Duration::from_millis(500));
        s.login_failed();
        assert_eq!(s.login_delay(), Duration::from_secs(1));
        for _ in 0..10 {
            s.login_failed();
        }
        assert_eq!(s.login_delay(), MAX_DELAY);
        s.login_succeeded();
        assert_eq!(s.login_delay(), Duration::ZERO);
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let id = s.create("admin");
        let session = s.touch(&id).expect("live");
        assert!(csrf_matches(&session, &session.csrf.clone()));
        assert!(!csrf_matches(&session, ""));
        assert!(!csrf_matches(&session, "x"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; shoal_session=abc; b=2"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
    }
}
