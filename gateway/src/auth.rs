//! Credentials: secrets are kept only as argon2 hashes (PHC strings) and checked with
//! argon2's verification. A verified presented value is remembered by its SHA-256 for a
//! minute, so a busy client does not cost an argon2 run per request; a wrong one is never
//! remembered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The admin user name.
pub const ADMIN_USER: &str = "admin";
const CACHE_FOR: Duration = Duration::from_secs(60);

/// Hashes a secret with argon2 (a random salt each time).
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("cannot make a salt: {e}"))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash a secret: {e}"))
}

/// Whether `secret` matches a stored argon2 hash.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A stored secret with a cache of recently verified presented values. Cheap to clone.
#[derive(Clone)]
pub struct Secret {
    hash: Arc<String>,
    verified: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
    verifying: Arc<Mutex<()>>,
}

impl Secret {
    /// From an argon2 PHC string.
    pub fn from_hash(hash: String) -> Secret {
        Secret {
            hash: Arc::new(hash),
            verified: Arc::default(),
            verifying: Arc::default(),
        }
    }

    /// Whether `presented` was verified recently (no hashing: safe on an async thread).
    pub fn check_cached(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.verified
            .lock()
            .get(&digest)
            .is_some_and(|t| t.elapsed() < CACHE_FOR)
    }

    /// Whether `presented` (the whole credential as it came, e.g. a header value) holds
    /// the secret; `extract` takes the secret out of it. Blocking (argon2): call from a
    /// blocking thread. Verifications of one secret run one at a time: argon2 takes
    /// ~19 MB per hash, so 32 concurrent first calls used to take ~600 MB at once; now the
    /// first verifies and the others find its result in the cache.
    pub fn check(&self, presented: &str, extract: impl FnOnce(&str) -> Option<String>) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let cached = |s: &Self| {
            let mut cache = s.verified.lock();
            let now = Instant::now();
            cache.retain(|_, t| now.duration_since(*t) < CACHE_FOR);
            cache.contains_key(&digest)
        };
        if cached(self) {
            return true;
        }
        let _one_at_a_time = self.verifying.lock();
        if cached(self) {
            return true;
        }
        let ok = extract(presented).is_some_and(|secret| verify_secret(&secret, &self.hash));
        if ok {
            let mut cache = self.verified.lock();
            if cache.len() < 1024 {
                cache.insert(digest, Instant::now());
            }
        }
        ok
    }
}

/// Checks HTTP Basic credentials of one user. Cheap to clone.
#[derive(Clone)]
pub struct BasicAuth {
    user: String,
    secret: Secret,
}

impl BasicAuth {
    /// Hashes `password` for `user`.
    pub fn new(user: &str, password: &str) -> Result<BasicAuth, String> {
        Ok(Self::from_hash(user, hash_secret(password)?))
    }

    /// From a stored hash.
    pub fn from_hash(user: &str, hash: String) -> BasicAuth {
        BasicAuth {
            user: user.to_owned(),
            secret: Secret::from_hash(hash),
        }
    }

    /// Whether an `Authorization` header value holds this user's credentials.
    /// Whether this `Authorization` value was verified recently: the fast path that needs
    /// no argon2 (and so no blocking thread); on false, call [`BasicAuth::check`].
    pub fn check_cached(&self, header: Option<&str>) -> bool {
        header.is_some_and(|v| self.secret.check_cached(v))
    }

    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(value) = header else { return false };
        self.secret.check(value, |v| {
            let (user, password) = parse_basic(v)?;
            let user_ok: bool =
                subtle::ConstantTimeEq::ct_eq(user.as_bytes(), self.user.as_bytes()).into();
            user_ok.then_some(password)
        })
    }

    /// The user name the definition admits.
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// Splits `Basic base64(user:password)`.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn checks_user_and_password() {
        let a = BasicAuth::new("admin", "s3cret").expect("hash");
        assert!(a.check(Some(&header("admin", "s3cret"))));
        assert!(a.check(Some(&header("admin", "s3cret"))), "cached path");
        assert!(!a.check(Some(&header("admin", "wrong"))));
        assert!(!a.check(Some(&header("root", "s3cret"))));
        assert!(!a.check(Some("Bearer x")));
        assert!(!a.check(Some("Basic !!!notbase64")));
        assert!(!a.check(None));
        assert!(!a.secret.hash.contains("s3cret"));
    }

    #[test]
    fn api_key_secret() {
        let s = Secret::from_hash(hash_secret("k-0123456789").expect("hash"));
        assert!(s.check("k-0123456789", |v| Some(v.to_owned())));
        assert!(!s.check("k-012345678", |v| Some(v.to_owned())));
    }
}
