//! The HTTP channels' security guards: Basic Auth and API keys checked on the headers
//! (verified credentials cached, so only a first check pays for argon2), WS-Security on
//! the SOAP envelope, nonces remembered cluster-wide.

use http::{HeaderMap, HeaderName, header};
use shoal_common::objects::SecurityDef;
use shoal_common::{ErrorCode, ShoalError};

use super::HttpState;
use super::table::{Compiled, Table};
use crate::auth::{BasicAuth, Secret};

/// How a channel's callers prove who they are.
pub enum Guard {
    Basic {
        auth: BasicAuth,
        realm: String,
    },
    /// WS-Security: checked on the SOAP envelope, after the body is read.
    Wss(crate::wss::Policy),
    ApiKey {
        header: HeaderName,
        secret: Secret,
    },
    Inactive,
}

impl Guard {
    /// The guard of a security definition (`key` opens a WS-Security password kept for
    /// digests).
    pub fn from_def(s: &SecurityDef, key: Option<&crate::secret::SecretKey>) -> Guard {
        match s {
            SecurityDef::BasicAuth {
                is_active: false, ..
            }
            | SecurityDef::Apikey {
                is_active: false, ..
            } => Guard::Inactive,
            SecurityDef::BasicAuth {
                name,
                username,
                password_hash,
                realm,
                ..
            } => Guard::Basic {
                auth: BasicAuth::from_hash(username, password_hash.clone()),
                realm: if realm.is_empty() {
                    name.clone()
                } else {
                    realm.clone()
                },
            },
            SecurityDef::Apikey {
                header, key_hash, ..
            } => match HeaderName::from_bytes(header.as_bytes()) {
                Ok(h) => Guard::ApiKey {
                    header: h,
                    secret: Secret::from_hash(key_hash.clone()),
                },
                Err(_) => Guard::Inactive,
            },
            SecurityDef::Wss {
                is_active: false, ..
            } => Guard::Inactive,
            SecurityDef::Wss {
                name,
                username,
                password_type,
                password_hash,
                password_encrypted,
                nonce_freshness,
                max_age,
                ..
            } => {
                let digest_password = if password_encrypted.is_empty() {
                    None
                } else {
                    let opened = key.and_then(|k| k.decrypt(password_encrypted));
                    if opened.is_none() {
                        tracing::error!(security = %name, "cannot decrypt this definition's password: no or another secret key");
                    }
                    opened
                };
                Guard::Wss(crate::wss::Policy {
                    username: username.clone(),
                    password_type: *password_type,
                    text: (!password_hash.is_empty())
                        .then(|| Secret::from_hash(password_hash.clone())),
                    digest_password,
                    nonce_freshness: *nonce_freshness,
                    max_age: *max_age,
                })
            }
        }
    }
}

/// A request the guard turned away: the error, and the challenge to send with it.
pub struct Refused {
    pub error: ShoalError,
    pub challenge: Option<String>,
}

impl Refused {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refused {
        Refused {
            error: ShoalError::new(code, message),
            challenge: None,
        }
    }
}

/// Checks the headers of a request to `channel` against its security definition:
/// Ok((user name, a header to hide from the service)); no definition admits everyone.
pub async fn check_headers(
    table: &Table,
    channel: &Compiled,
    headers: &HeaderMap,
) -> Result<(String, Option<HeaderName>), Refused> {
    let Some(sec) = &channel.security else {
        return Ok((String::new(), None));
    };
    let Some(guard) = table.guards.get(sec) else {
        // Fail closed: the definition was deleted or is unreadable.
        return Err(Refused::new(
            ErrorCode::Unavailable,
            format!("security definition '{sec}' of this channel is not available"),
        ));
    };
    if matches!(guard.as_ref(), Guard::Wss(_)) && channel.soap.is_none() {
        return Err(Refused::new(
            ErrorCode::Unauthorized,
            format!("security definition '{sec}' is WS-Security, which needs a SOAP channel"),
        ));
    }
    // Credentials verified recently (the common case) are checked here, at the cost of
    // a hash; only a first verification goes to the blocking pool (argon2).
    let outcome = if decides_at_once(guard, headers) {
        Ok(check(guard, headers))
    } else {
        let headers = headers.clone();
        let guard = guard.clone();
        tokio::task::spawn_blocking(move || check(&guard, &headers)).await
    };
    match outcome {
        Ok(Ok(verdict)) => Ok(verdict),
        Ok(Err(challenge)) => Err(Refused {
            error: ShoalError::new(ErrorCode::Unauthorized, "invalid or missing credentials"),
            challenge,
        }),
        Err(_) => Err(Refused::new(ErrorCode::Internal, "credential check failed")),
    }
}

/// Checks the WS-Security UsernameToken of a SOAP request to `channel` when its security
/// definition is WS-Security: Ok(the token's user name) or Ok(`username`) unchanged when
/// it is not; a nonce is accepted once within its freshness, cluster-wide.
pub async fn check_wss(
    state: &HttpState,
    table: &Table,
    channel: &Compiled,
    token: Option<crate::wss::Token>,
    username: String,
) -> Result<String, ShoalError> {
    let Some(sec) = &channel.security else {
        return Ok(username);
    };
    let Some(guard) = table.guards.get(sec) else {
        return Ok(username);
    };
    if !matches!(guard.as_ref(), Guard::Wss(_)) {
        return Ok(username);
    }
    let Some(token) = token else {
        return Err(ShoalError::new(
            ErrorCode::Unauthorized,
            "a WS-Security UsernameToken is required",
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let g = guard.clone();
    let t = token.clone();
    let verdict = tokio::task::spawn_blocking(move || match g.as_ref() {
        Guard::Wss(policy) => crate::wss::check(policy, &t, now).map(|()| policy.nonce_freshness),
        _ => Err("not a WS-Security definition"),
    })
    .await
    .unwrap_or(Err("credential check failed"));
    let freshness = match verdict {
        Ok(f) => f,
        Err(reason) => {
            tracing::info!(channel = %channel.name, reason, "WS-Security check failed");
            return Err(ShoalError::new(
                ErrorCode::Unauthorized,
                "invalid WS-Security credentials",
            ));
        }
    };
    if let Some(nonce) = &token.nonce {
        match crate::wss::first_use(&state.kvdb, &state.store, &token.username, nonce, freshness)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(channel = %channel.name, "WS-Security nonce replayed");
                return Err(ShoalError::new(
                    ErrorCode::Unauthorized,
                    "the nonce was already used",
                ));
            }
            Err(e) => {
                return Err(ShoalError::new(
                    ErrorCode::Unavailable,
                    format!("cannot check the nonce: {e}"),
                ));
            }
        }
    }
    Ok(token.username)
}

impl Table {
    /// Checks credentials against every active security definition (the gRPC Invoker's
    /// rule: any definition admits). Returns (definition name, user name) on success.
    /// Blocking (argon2): call it off the async threads.
    pub fn authenticate_any(&self, headers: &HeaderMap) -> Option<(String, String)> {
        self.guards
            .iter()
            .find_map(|(name, guard)| match guard.as_ref() {
                Guard::Basic { auth, .. } => {
                    let value = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())?;
                    auth.check(Some(value))
                        .then(|| (name.clone(), auth.user().to_owned()))
                }
                Guard::ApiKey { header, secret } => {
                    let value = headers.get(header).and_then(|v| v.to_str().ok())?;
                    secret
                        .check(value, |v| Some(v.to_owned()))
                        .then(|| (name.clone(), String::new()))
                }
                Guard::Inactive | Guard::Wss(_) => None,
            })
    }
}

/// Whether `check` can decide without argon2: no credentials to verify, or credentials
/// verified recently (the cache holds their digest). Then it runs on the async thread;
/// otherwise on the blocking pool.
fn decides_at_once(guard: &Guard, headers: &HeaderMap) -> bool {
    match guard {
        Guard::Inactive | Guard::Wss(_) => true,
        Guard::Basic { auth, .. } => auth.check_cached(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ),
        Guard::ApiKey { header, secret } => headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| secret.check_cached(v)),
    }
}

/// Checks credentials: Ok((user name, a header to hide from the service)) or
/// Err(optional challenge).
fn check(
    guard: &Guard,
    headers: &HeaderMap,
) -> Result<(String, Option<HeaderName>), Option<String>> {
    match guard {
        Guard::Inactive => Err(None),
        // Checked on the envelope by the SOAP path (a non-SOAP channel is refused there).
        Guard::Wss(_) => Ok((String::new(), None)),
        Guard::Basic { auth, realm } => {
            let value = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if auth.check(value) {
                Ok((auth.user().to_owned(), None))
            } else {
                Err(Some(format!("Basic realm=\"{}\"", realm.replace('"', "'"))))
            }
        }
        Guard::ApiKey { header, secret } => {
            let value = headers.get(header).and_then(|v| v.to_str().ok());
            match value {
                Some(v) if secret.check(v, |v| Some(v.to_owned())) => {
                    Ok((String::new(), Some(header.clone())))
                }
                _ => Err(None),
            }
        }
    }
}
