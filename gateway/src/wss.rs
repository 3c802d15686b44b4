//! WS-Security UsernameToken checks for SOAP channels: PasswordText against the stored
//! hash, PasswordDigest (`Base64(SHA-1(nonce + created + password))`) against the
//! password, `Created` within `max_age`, and each nonce accepted once per
//! `nonce_freshness` across every gateway of the cluster (`SET NX` in the KVDB, or, with no
//! KVDB proxy running, a create-if-absent key on a
//! lease in the config store). Zato's replay check is a no-op; this one is real.

use base64::Engine;
use sha2::Digest as _;
use shoal_common::objects::PasswordType;
use shoal_common::store::Store;

use crate::auth::Secret;

/// A UsernameToken as it came in the SOAP header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Token {
    pub username: String,
    pub password: String,
    /// The `Type` attribute of `Password` (…#PasswordText or …#PasswordDigest).
    pub password_type: String,
    pub nonce: Option<String>,
    pub created: Option<String>,
}

/// What a `wss` definition checks against.
pub struct Policy {
    pub username: String,
    pub password_type: PasswordType,
    /// PasswordText: the stored hash.
    pub text: Option<Secret>,
    /// PasswordDigest: the password itself (decrypted with the cluster key).
    pub digest_password: Option<String>,
    pub nonce_freshness: u64,
    pub max_age: u64,
}

/// Seconds since the epoch of an RFC 3339 / xsd:dateTime value (`2024-05-01T10:00:00Z`,
/// fractions and `±HH:MM` offsets accepted).
pub fn parse_created(s: &str) -> Option<i64> {
    shoal_common::time::parse_rfc3339(s)
}

/// `Base64(SHA-1(nonce bytes + created + password))`.
pub fn digest(nonce_b64: &str, created: &str, password: &str) -> Option<String> {
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(nonce_b64.trim())
        .ok()?;
    let mut h = sha1::Sha1::new();
    sha1::Digest::update(&mut h, &nonce);
    sha1::Digest::update(&mut h, created.as_bytes());
    sha1::Digest::update(&mut h, password.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(sha1::Digest::finalize(h)))
}

/// Checks a token but for a PasswordText's password: `Ok(Some(secret))` asks the caller
/// to verify `token.password` against the stored hash (through the verifier: argon2),
/// `Ok(None)` is a complete pass (a PasswordDigest checked). `now` is Unix seconds. Returns
/// the reason on failure (logged, never sent: the client gets a plain 401).
pub fn check<'p>(
    policy: &'p Policy,
    token: &Token,
    now: i64,
) -> Result<Option<&'p Secret>, &'static str> {
    let user_ok: bool =
        subtle::ConstantTimeEq::ct_eq(token.username.as_bytes(), policy.username.as_bytes()).into();
    if !user_ok {
        return Err("unknown user");
    }
    if let Some(created) = &token.created {
        let at = parse_created(created).ok_or("Created is not a date-time")?;
        if now - at > policy.max_age as i64 {
            return Err("Created is too old");
        }
        if at - now > 60 {
            return Err("Created is in the future");
        }
    }
    let is_digest = token.password_type.ends_with("#PasswordDigest");
    match policy.password_type {
        PasswordType::Text => {
            if is_digest {
                return Err("a PasswordDigest where PasswordText is expected");
            }
            return policy
                .text
                .as_ref()
                .map(Some)
                .ok_or("no password to check against");
        }
        PasswordType::Digest => {
            if !is_digest {
                return Err("a PasswordDigest is required");
            }
            let (Some(nonce), Some(created)) = (&token.nonce, &token.created) else {
                return Err("PasswordDigest needs Nonce and Created");
            };
            let password = policy
                .digest_password
                .as_deref()
                .ok_or("no password to check digests against")?;
            let expected = digest(nonce, created, password).ok_or("Nonce is not base64")?;
            let ok: bool = subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                token.password.trim().as_bytes(),
            )
            .into();
            if !ok {
                return Err("wrong password digest");
            }
        }
    }
    Ok(None)
}

/// Records a nonce; false when it was already seen within its freshness window (a replay).
/// The record is a `SET NX` with expiry in the KVDB (`wss-nonce/<sha256>`), shared by every
/// gateway; when no KVDB proxy runs, a create-if-absent key on a lease in the config store
/// does the same. A KVDB that cannot answer is an error (the request is refused), never a
/// silent pass.
pub async fn first_use(
    kvdb: &shoal_common::peers::Peers,
    store: &Store,
    username: &str,
    nonce: &str,
    freshness: u64,
) -> Result<bool, String> {
    let id: String = sha2::Sha256::digest(format!("{username}\n{nonce}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let freshness = freshness.max(2);
    for _ in 0..3 {
        let Ok((addr, channel)) = kvdb.pick() else {
            break;
        };
        let mut client = shoal_proto::kvdb::v1::kvdb_client::KvdbClient::new(channel);
        let r = client
            .set(shoal_proto::kvdb::v1::SetRequest {
                key: format!("wss-nonce/{id}"),
                value: b"1".to_vec(),
                expiry_ms: freshness * 1000,
                if_absent: true,
            })
            .await;
        match r {
            Ok(r) => return Ok(r.into_inner().written),
            Err(s) if shoal_common::routing::never_sent(&s) => kvdb.failed(&addr),
            Err(s) => return Err(format!("the KVDB: {}", s.message())),
        }
    }
    let lease = store
        .grant(freshness as i64)
        .await
        .map_err(|e| e.to_string())?;
    let created = store
        .create(&format!("wss-nonces/{id}"), "1", Some(lease))
        .await
        .map_err(|e| e.to_string())?;
    if !created {
        let _ = store.revoke(lease).await;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_parsing() {
        assert_eq!(parse_created("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_created("2024-05-01T10:00:00.123Z"),
            Some(1_714_557_600)
        );
        assert_eq!(
            parse_created("2024-05-01T12:00:00+02:00"),
            Some(1_714_557_600)
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T25:00:00Z",
            "yesterday",
            "2024-05-01T10:00:00",
        ] {
            assert_eq!(parse_created(bad), None, "{bad}");
        }
    }

    #[test]
    fn digest_matches_the_oasis_example_shape() {
        // Digest of known inputs, computed independently with Python's hashlib.
        let d =
            digest("MTIzNDU2Nzg5MDEyMzQ1Ng==", "2024-05-01T10:00:00Z", "s3cret").expect("digest");
        assert_eq!(d, "VSgcWhxLOtXTAFa8vHZP2fhlFLM=");
        assert_eq!(digest("!!", "x", "y"), None);
    }
}
