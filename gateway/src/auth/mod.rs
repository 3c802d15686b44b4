//! Credentials. Secrets are kept only as hashes: argon2 (PHC strings) for passwords and
//! API keys, SHA-256 for static bearer tokens (long random values need no key stretching).
//! Every argon2 check goes through a [`Verifier`] (bounded, shed, throttled, single
//! flight); a presented value verified recently is remembered by its SHA-256 for a minute,
//! and one refused recently is refused without another verification.
//!
//! - [`verifier`]: the verification slots and the failure throttle;
//! - [`client`]: the client's address (behind trusted proxies) and TLS certificates;
//! - [`jwt`]: JSON Web Tokens against an issuer's keys (JWKS fetched and cached);
//! - [`cert`]: client certificates against a CA, subject and name rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

pub mod cert;
pub mod client;
pub mod jwt;
pub mod verifier;

pub use verifier::{AuthMetrics, Verdict, Verifier, VerifierOptions, Who};

/// The admin user name.
pub const ADMIN_USER: &str = "admin";
/// How long a verified (or refused) value is remembered.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Values remembered per secret, each way.
const CACHE_ENTRIES: usize = 4096;

/// argon2id's memory cost for new hashes, in KiB (7 MiB).
pub const ARGON2_M_COST: u32 = 7 * 1024;
/// argon2id's passes for new hashes.
pub const ARGON2_T_COST: u32 = 5;

/// The argon2id that makes new hashes: m = 7 MiB, t = 5, p = 1 — one of the five settings
/// the OWASP Password Storage Cheat Sheet gives as equally strong (46 MiB × 1, 19 × 2,
/// 12 × 3, 9 × 4, 7 × 5), the one that holds least memory. A verification holds its whole
/// memory cost at once, so this is what a flood of wrong passwords can make a listener hold
/// per verification slot, and what a gateway's allocator may keep after its start-up hash
/// (the crate's default, 19 MiB × 2, is the same strength for 2.7 × the memory).
/// Verification takes the parameters of the stored hash, so hashes made with other
/// settings still verify.
fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(ARGON2_M_COST, ARGON2_T_COST, 1, None)
        .unwrap_or_else(|_| argon2::Params::default());
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a secret with argon2id (a random salt each time; m = [`ARGON2_M_COST`] KiB,
/// t = [`ARGON2_T_COST`], p = 1).
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("cannot make a salt: {e}"))?;
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash a secret: {e}"))
}

/// Whether `secret` matches a stored argon2 hash, with the hash's own parameters.
/// Blocking (argon2): the [`Verifier`] runs it.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(secret.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// SHA-256 of a static token, hex: what a `bearer` definition stores.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` hashes to `sha256_hex`, compared in constant time.
pub fn token_matches(token: &str, sha256_hex: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(token_sha256(token).as_bytes(), sha256_hex.as_bytes()).into()
}

/// The SHA-256 of a presented value.
type Digest32 = [u8; 32];

/// A stored secret with what was learnt about presented values. Cheap to clone.
#[derive(Clone)]
pub struct Secret {
    hash: Arc<String>,
    /// SHA-256 of a presented value → (verdict, when).
    seen: Arc<Mutex<HashMap<Digest32, (bool, Instant)>>>,
    /// Verifications running, by the value's SHA-256.
    flights: Arc<Mutex<HashMap<Digest32, tokio::sync::watch::Receiver<Option<bool>>>>>,
}

impl Secret {
    /// From an argon2 PHC string.
    pub fn from_hash(hash: String) -> Secret {
        Secret {
            hash: Arc::new(hash),
            seen: Arc::default(),
            flights: Arc::default(),
        }
    }

    fn hash(&self) -> Arc<String> {
        self.hash.clone()
    }

    /// The verdict on a value seen within the last minute, if any.
    fn known(&self, digest: &[u8; 32]) -> Option<bool> {
        self.seen
            .lock()
            .get(digest)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(ok, _)| *ok)
    }

    /// Whether `presented` was verified recently (no hashing: safe on an async thread).
    pub fn check_cached(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.known(&digest) == Some(true)
    }

    fn remember(&self, digest: [u8; 32], ok: bool) {
        let mut seen = self.seen.lock();
        if seen.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            seen.retain(|_, (_, at)| now.duration_since(*at) < CACHE_FOR);
            if seen.len() >= CACHE_ENTRIES {
                // Full of fresh refusals (a flood of distinct values): forget those first.
                seen.retain(|_, (ok, _)| *ok);
            }
        }
        if seen.len() < CACHE_ENTRIES {
            seen.insert(digest, (ok, Instant::now()));
        }
    }

    fn lead_or_follow(&self, digest: [u8; 32]) -> verifier::Flight {
        let mut flights = self.flights.lock();
        if let Some(rx) = flights.get(&digest) {
            return verifier::Flight::Follow(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        flights.insert(digest, rx);
        verifier::Flight::Lead(verifier::Landing {
            secret: self.clone(),
            digest,
            tx,
        })
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

    /// Whether this `Authorization` value was verified recently (no argon2).
    pub fn check_cached(&self, header: Option<&str>) -> bool {
        header.is_some_and(|v| self.secret.check_cached(v))
    }

    /// Checks an `Authorization` value through `verifier`. A value that is not Basic, or
    /// names another user, is invalid without a verification (nor a throttle count for a
    /// missing header).
    pub async fn check(
        &self,
        verifier: &Verifier,
        header: Option<&str>,
        addr: Option<std::net::IpAddr>,
        scope: &str,
    ) -> Verdict {
        let Some(value) = header else {
            return Verdict::Invalid;
        };
        let Some((user, _)) = parse_basic(value) else {
            verifier.failed(Who { addr, user: None });
            return Verdict::Invalid;
        };
        let user_key = format!("{scope}/{user}");
        let who = Who {
            addr,
            user: Some(&user_key),
        };
        let user_ok: bool =
            subtle::ConstantTimeEq::ct_eq(user.as_bytes(), self.user.as_bytes()).into();
        if !user_ok {
            // No verification can admit another user: refuse without one (the throttle
            // still counts it).
            if let Some(wait) = verifier.throttled(who) {
                return Verdict::Throttled(wait);
            }
            verifier.failed(who);
            return Verdict::Invalid;
        }
        verifier
            .verify(&self.secret, value, |v| parse_basic(v).map(|(_, p)| p), who)
            .await
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

/// The token of `Authorization: Bearer <token>`.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
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
    fn new_hashes_hold_7_mib_and_old_ones_still_verify() {
        let hash = hash_secret("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(verify_secret("correct horse", &hash));
        assert!(!verify_secret("correct hors", &hash));
        // A hash made with the crate's default (19 MiB, 2 passes), as earlier releases
        // stored them, verifies with its own parameters.
        let salt = SaltString::encode_b64(&[7u8; 16]).expect("salt");
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        assert!(old.contains("m=19456,t=2,p=1"), "{old}");
        assert!(verify_secret("correct horse", &old));
        assert!(!verify_secret("wrong", &old));
    }

    #[tokio::test]
    async fn checks_user_and_password() {
        let v = Verifier::new("t", VerifierOptions::default(), AuthMetrics::default());
        let a = BasicAuth::new("admin", "s3cret").expect("hash");
        let check = |h: Option<String>| {
            let (a, v) = (a.clone(), v.clone());
            async move { a.check(&v, h.as_deref(), None, "admin").await }
        };
        assert_eq!(check(Some(header("admin", "s3cret"))).await, Verdict::Valid);
        assert!(a.check_cached(Some(&header("admin", "s3cret"))), "cached");
        assert_eq!(
            check(Some(header("admin", "wrong"))).await,
            Verdict::Invalid
        );
        assert_eq!(
            check(Some(header("root", "s3cret"))).await,
            Verdict::Invalid
        );
        assert_eq!(check(Some("Bearer x".into())).await, Verdict::Invalid);
        assert_eq!(
            check(Some("Basic !!!notbase64".into())).await,
            Verdict::Invalid
        );
        assert_eq!(check(None).await, Verdict::Invalid);
        assert!(!a.secret.hash.contains("s3cret"));
        // Only the right user's guess is verified.
        assert_eq!(v.verifications(), 2);
    }

    #[test]
    fn bearer_tokens() {
        let h = token_sha256("tok-0123456789abcdef");
        assert!(token_matches("tok-0123456789abcdef", &h));
        assert!(!token_matches("tok-0123456789abcdeF", &h));
        assert_eq!(bearer_token("Bearer abc "), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
