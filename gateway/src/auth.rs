//! Admin credentials: user `admin`, password from `SHOAL_ADMIN_PASSWORD` or the password
//! file. Only an argon2 hash of the password is kept in memory; a check verifies against
//! it (constant time inside argon2). Verified `Authorization` values are remembered by
//! their SHA-256 for a minute so the admin API does not spend an argon2 run per call.

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

/// Checks Basic credentials against one user's hashed password. Cheap to clone.
#[derive(Clone)]
pub struct BasicAuth {
    user: String,
    hash: Arc<String>,
    verified: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
}

impl BasicAuth {
    /// Hashes `password` for `user`.
    pub fn new(user: &str, password: &str) -> Result<BasicAuth, String> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| format!("cannot make a salt: {e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| format!("cannot hash the admin password: {e}"))?
            .to_string();
        Ok(BasicAuth {
            user: user.to_owned(),
            hash: Arc::new(hash),
            verified: Arc::default(),
        })
    }

    /// Whether an `Authorization` header value holds this user's credentials.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(value) = header else { return false };
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        {
            let mut cache = self.verified.lock();
            let now = Instant::now();
            cache.retain(|_, t| now.duration_since(*t) < CACHE_FOR);
            if cache.contains_key(&digest) {
                return true;
            }
        }
        let Some((user, password)) = parse_basic(value) else {
            return false;
        };
        let user_ok = subtle::ConstantTimeEq::ct_eq(user.as_bytes(), self.user.as_bytes()).into();
        let pass_ok = PasswordHash::new(&self.hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let ok = user_ok && pass_ok;
        if ok {
            let mut cache = self.verified.lock();
            if cache.len() < 1024 {
                cache.insert(digest, Instant::now());
            }
        }
        ok
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
        assert!(!a.hash.contains("s3cret"));
    }
}
