//! The channels' security guards: one per security definition type — Basic Auth, API
//! keys, WS-Security (on the SOAP envelope), JWTs, static bearer tokens and client
//! certificates — each answering who called ([`Caller`]) or why not ([`Refused`]).
//! Expensive checks (argon2) go through the listener's [`Verifier`]: bounded, throttled,
//! shed rather than queued, and skipped for values seen recently.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, header};
use serde_json::{Value, json};
use shoal_common::objects::{RateLimit, SecurityDef};
use shoal_common::public_tls::PeerCerts;
use shoal_common::{ErrorCode, ShoalError};

use super::HttpState;
use super::table::{Compiled, Table};
use crate::auth::cert::CertPolicy;
use crate::auth::jwt::{JwksRegistry, JwtPolicy, JwtSpec};
use crate::auth::{BasicAuth, Secret, Verdict, Verifier, Who, bearer_token};

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
    Jwt(JwtPolicy),
    Bearer {
        token_sha256: String,
    },
    ClientCert(CertPolicy),
    Inactive,
}

/// A security definition ready to check requests.
pub struct Entry {
    pub name: String,
    pub guard: Guard,
    /// The per-credential rate limit.
    pub rate_limit: Option<RateLimit>,
}

/// What a guard is built with besides its definition.
pub struct GuardContext<'a> {
    /// Opens sealed secrets (WS-Security digest passwords, JWT HMAC secrets).
    pub key: Option<&'a crate::secret::SecretKey>,
    /// The JWKS caches, kept across configuration changes.
    pub jwks: &'a JwksRegistry,
}

impl Entry {
    /// The guard of a security definition.
    pub fn from_def(s: &SecurityDef, ctx: &GuardContext<'_>) -> Entry {
        let open = |name: &str, sealed: &str| -> Option<String> {
            if sealed.is_empty() {
                return None;
            }
            let opened = ctx.key.and_then(|k| k.decrypt(sealed));
            if opened.is_none() {
                tracing::error!(security = %name, "cannot decrypt this definition's secret: no or another secret key");
            }
            opened
        };
        let guard = if !s.is_active() {
            Guard::Inactive
        } else {
            match s {
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
                    name,
                    username,
                    password_type,
                    password_hash,
                    password_encrypted,
                    nonce_freshness,
                    max_age,
                    ..
                } => Guard::Wss(crate::wss::Policy {
                    username: username.clone(),
                    password_type: *password_type,
                    text: (!password_hash.is_empty())
                        .then(|| Secret::from_hash(password_hash.clone())),
                    digest_password: open(name, password_encrypted),
                    nonce_freshness: *nonce_freshness,
                    max_age: *max_age,
                }),
                SecurityDef::Jwt {
                    name,
                    issuer,
                    audience,
                    jwks_url,
                    keys,
                    secret_encrypted,
                    algorithms,
                    leeway,
                    required_claims,
                    jwks_timeout,
                    jwks_min_interval,
                    ..
                } => Guard::Jwt(JwtPolicy::new(
                    JwtSpec {
                        issuer,
                        audience,
                        jwks_url,
                        keys: keys.as_ref(),
                        secret: open(name, secret_encrypted),
                        algorithms,
                        leeway: *leeway,
                        required_claims,
                        jwks_timeout: *jwks_timeout,
                        jwks_min_interval: *jwks_min_interval,
                    },
                    ctx.jwks,
                )),
                SecurityDef::Bearer { token_sha256, .. } => Guard::Bearer {
                    token_sha256: token_sha256.clone(),
                },
                SecurityDef::ClientCert {
                    ca,
                    ca_file,
                    subjects,
                    sans,
                    ..
                } => Guard::ClientCert(CertPolicy::new(ca, ca_file, subjects, sans)),
            }
        };
        Entry {
            name: s.name().to_owned(),
            guard,
            rate_limit: s.rate_limit().copied(),
        }
    }
}

/// Who a guard admitted.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The security definition's name.
    pub security: String,
    /// Its type (`basic_auth`, `jwt`, ...).
    pub kind: &'static str,
    /// The user name, a JWT's subject, a certificate's common name.
    pub username: String,
    /// A JWT's verified claims, a certificate's details.
    pub details: Option<Value>,
    /// A header that carried a credential, not passed on to the service.
    pub hide: Option<HeaderName>,
}

impl Caller {
    /// `self.request.auth` as the service sees it (JSON).
    pub fn to_json(&self) -> String {
        let mut v = json!({
            "type": self.kind, "security": self.security, "username": self.username,
        });
        match (self.kind, &self.details) {
            ("jwt", Some(d)) => v["claims"] = d.clone(),
            ("client_cert", Some(d)) => v["certificate"] = d.clone(),
            _ => {}
        }
        v.to_string()
    }

    /// The identity a per-credential rate limit counts.
    pub fn rate_key(&self) -> String {
        format!("{}/{}", self.security, self.username)
    }
}

/// A request the guard turned away: the error, the challenge to send with it, and how
/// long to wait (429 and 503).
pub struct Refused {
    pub error: ShoalError,
    pub challenge: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Refused {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refused {
        Refused {
            error: ShoalError::new(code, message),
            challenge: None,
            retry_after: None,
        }
    }

    fn unauthorized(challenge: Option<String>) -> Refused {
        Refused {
            error: ShoalError::new(ErrorCode::Unauthorized, "invalid or missing credentials"),
            challenge,
            retry_after: None,
        }
    }

    /// A refusal for a verdict other than `Valid`.
    fn of(verdict: Verdict, challenge: Option<String>) -> Refused {
        match verdict {
            Verdict::Throttled(wait) => Refused {
                error: ShoalError::new(
                    ErrorCode::TooManyRequests,
                    "too many failed attempts; retry later",
                ),
                challenge: None,
                retry_after: Some(wait),
            },
            Verdict::Busy => Refused {
                error: ShoalError::new(
                    ErrorCode::Unavailable,
                    "credentials cannot be checked now; retry shortly",
                ),
                challenge: None,
                retry_after: Some(Duration::from_secs(1)),
            },
            Verdict::Invalid | Verdict::Valid => Refused::unauthorized(challenge),
        }
    }
}

/// What a request presents: its headers, the client's address and TLS certificates, and
/// the listener's verifier.
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    pub addr: IpAddr,
    pub certs: Option<&'a PeerCerts>,
    pub verifier: &'a Verifier,
}

fn bearer_challenge(realm: &str, error: Option<&str>) -> String {
    let realm = realm.replace(['"', '\\'], "'");
    match error {
        None => format!("Bearer realm=\"{realm}\""),
        Some(d) => {
            format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{d}\"")
        }
    }
}

/// Checks a request against one definition's guard.
pub async fn check(entry: &Entry, p: &Presented<'_>) -> Result<Caller, Refused> {
    let caller = |kind: &'static str, username: String| Caller {
        security: entry.name.clone(),
        kind,
        username,
        details: None,
        hide: None,
    };
    let authorization = p
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match &entry.guard {
        Guard::Inactive => Err(Refused::unauthorized(None)),
        // Checked on the envelope by the SOAP path (a non-SOAP channel is refused before).
        Guard::Wss(_) => Ok(caller("wss", String::new())),
        Guard::Basic { auth, realm } => {
            let challenge = Some(format!("Basic realm=\"{}\"", realm.replace('"', "'")));
            match auth
                .check(p.verifier, authorization, Some(p.addr), &entry.name)
                .await
            {
                Verdict::Valid => Ok(caller("basic_auth", auth.user().to_owned())),
                v => Err(Refused::of(v, challenge)),
            }
        }
        Guard::ApiKey { header, secret } => {
            let Some(value) = p.headers.get(header).and_then(|v| v.to_str().ok()) else {
                return Err(Refused::unauthorized(None));
            };
            let who = Who {
                addr: Some(p.addr),
                user: None,
            };
            match p
                .verifier
                .verify(secret, value, |v| Some(v.to_owned()), who)
                .await
            {
                Verdict::Valid => Ok(Caller {
                    hide: Some(header.clone()),
                    ..caller("apikey", String::new())
                }),
                v => Err(Refused::of(v, None)),
            }
        }
        Guard::Bearer { token_sha256 } => {
            let Some(token) = authorization.and_then(bearer_token) else {
                return Err(Refused::unauthorized(Some(bearer_challenge(
                    &entry.name,
                    None,
                ))));
            };
            let who = Who {
                addr: Some(p.addr),
                user: None,
            };
            if let Some(wait) = p.verifier.throttled(who) {
                return Err(Refused::of(Verdict::Throttled(wait), None));
            }
            if crate::auth::token_matches(token, token_sha256) {
                Ok(caller("bearer", String::new()))
            } else {
                p.verifier.failed(who);
                Err(Refused::unauthorized(Some(bearer_challenge(
                    &entry.name,
                    Some("the token is not valid"),
                ))))
            }
        }
        Guard::Jwt(policy) => {
            let Some(token) = authorization.and_then(bearer_token) else {
                return Err(Refused::unauthorized(Some(bearer_challenge(
                    &entry.name,
                    None,
                ))));
            };
            let who = Who {
                addr: Some(p.addr),
                user: None,
            };
            if let Some(wait) = p.verifier.throttled(who) {
                return Err(Refused::of(Verdict::Throttled(wait), None));
            }
            match policy.check(token).await {
                Ok(claims) => Ok(Caller {
                    username: claims
                        .get("sub")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    details: Some(claims.as_ref().clone()),
                    ..caller("jwt", String::new())
                }),
                Err(refusal) => {
                    p.verifier.failed(who);
                    tracing::debug!(security = %entry.name, reason = refusal.0, "JWT refused");
                    Err(Refused::unauthorized(Some(bearer_challenge(
                        &entry.name,
                        Some(refusal.0),
                    ))))
                }
            }
        }
        Guard::ClientCert(policy) => {
            let chain = p.certs.map(|c| c.0.as_slice()).unwrap_or_default();
            match policy.check(chain) {
                Ok(id) => Ok(Caller {
                    username: id.common_name.clone(),
                    details: Some(id.to_json()),
                    ..caller("client_cert", String::new())
                }),
                Err(reason) => {
                    tracing::info!(security = %entry.name, reason, "client certificate refused");
                    Err(Refused::new(
                        ErrorCode::Unauthorized,
                        if chain.is_empty() {
                            "a client certificate is required"
                        } else {
                            "the client certificate is not accepted"
                        },
                    ))
                }
            }
        }
    }
}

/// The challenge of a 401 on `channel` for a definition whose refusals carry none (an
/// API key: `ApiKey realm="…", header="…"`), so a client always learns what to send.
pub fn challenge_of(table: &Table, channel: &Compiled) -> Option<String> {
    let entry = table.guards.get(channel.security.as_deref()?)?;
    match &entry.guard {
        Guard::ApiKey { header, .. } => Some(format!(
            "ApiKey realm=\"{}\", header=\"{}\"",
            entry.name.replace(['"', '\\'], "'"),
            header.as_str()
        )),
        _ => None,
    }
}

/// Checks a request to `channel` against its security definition: who called (`None`:
/// the channel is open).
pub async fn check_headers(
    table: &Table,
    channel: &Compiled,
    p: &Presented<'_>,
) -> Result<Option<Caller>, Refused> {
    let Some(sec) = &channel.security else {
        return Ok(None);
    };
    let Some(entry) = table.guards.get(sec) else {
        // Fail closed: the definition was deleted or is unreadable.
        return Err(Refused::new(
            ErrorCode::Unavailable,
            format!("security definition '{sec}' of this channel is not available"),
        ));
    };
    if matches!(entry.guard, Guard::Wss(_)) && channel.soap.is_none() {
        return Err(Refused::new(
            ErrorCode::Unauthorized,
            format!("security definition '{sec}' is WS-Security, which needs a SOAP channel"),
        ));
    }
    check(entry, p).await.map(Some)
}

/// Checks the WS-Security UsernameToken of a SOAP request to `channel` when its security
/// definition is WS-Security: `Ok(Some(the token's user))`, or `Ok(None)` when it is not;
/// a nonce is accepted once within its freshness, cluster-wide.
pub async fn check_wss(
    state: &HttpState,
    table: &Table,
    channel: &Compiled,
    token: Option<crate::wss::Token>,
    p: &Presented<'_>,
) -> Result<Option<String>, Refused> {
    let Some(sec) = &channel.security else {
        return Ok(None);
    };
    let Some(entry) = table.guards.get(sec) else {
        return Ok(None);
    };
    let Guard::Wss(policy) = &entry.guard else {
        return Ok(None);
    };
    let Some(token) = token else {
        return Err(Refused::new(
            ErrorCode::Unauthorized,
            "a WS-Security UsernameToken is required",
        ));
    };
    let now = shoal_common::time::unix_now();
    let user_key = format!("{sec}/{}", token.username);
    let who = Who {
        addr: Some(p.addr),
        user: Some(&user_key),
    };
    let refused = |reason: &str| {
        tracing::info!(channel = %channel.name, reason, "WS-Security check failed");
        Refused::new(ErrorCode::Unauthorized, "invalid WS-Security credentials")
    };
    match crate::wss::check(policy, &token, now) {
        Err(reason) => {
            p.verifier.failed(who);
            return Err(refused(reason));
        }
        Ok(Some(secret)) => {
            match p
                .verifier
                .verify(secret, &token.password, |v| Some(v.to_owned()), who)
                .await
            {
                Verdict::Valid => {}
                Verdict::Invalid => return Err(refused("wrong password")),
                v => return Err(Refused::of(v, None)),
            }
        }
        Ok(None) => {}
    }
    if let Some(nonce) = &token.nonce {
        match crate::wss::first_use(
            &state.kvdb,
            &state.store,
            &token.username,
            nonce,
            policy.nonce_freshness,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(channel = %channel.name, "WS-Security nonce replayed");
                return Err(Refused::new(
                    ErrorCode::Unauthorized,
                    "the nonce was already used",
                ));
            }
            Err(e) => {
                return Err(Refused::new(
                    ErrorCode::Unavailable,
                    format!("cannot check the nonce: {e}"),
                ));
            }
        }
    }
    Ok(Some(token.username))
}

impl Table {
    /// Checks credentials against the active security definitions that the request
    /// presents credentials for (the gRPC Invoker's rule: any definition admits): a Basic
    /// header only against the definitions of its user, a bearer token against the
    /// `bearer` and `jwt` ones, an API key against those of its header. The first that
    /// admits is the caller; the last refusal otherwise.
    pub async fn authenticate_any(&self, p: &Presented<'_>) -> Result<Caller, Refused> {
        let authorization = p
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let basic_user = authorization
            .and_then(crate::auth::parse_basic)
            .map(|(u, _)| u);
        let bearer = authorization.and_then(bearer_token).is_some();
        let mut last = Refused::unauthorized(None);
        let mut entries: Vec<&Arc<Entry>> = self.guards.values().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            let applies = match &entry.guard {
                Guard::Basic { auth, .. } => basic_user.as_deref() == Some(auth.user()),
                Guard::ApiKey { header, .. } => p.headers.contains_key(header),
                Guard::Jwt(_) | Guard::Bearer { .. } => bearer,
                Guard::ClientCert(_) => p.certs.is_some(),
                Guard::Wss(_) | Guard::Inactive => false,
            };
            if !applies {
                continue;
            }
            match check(entry, p).await {
                Ok(c) => return Ok(c),
                Err(r) => {
                    let stop = r.error.code != ErrorCode::Unauthorized;
                    last = r;
                    if stop {
                        break; // throttled or busy: no point trying the next one
                    }
                }
            }
        }
        Err(last)
    }
}
