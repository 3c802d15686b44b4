//! Users, roles and API tokens of the admin API, the web admin, the CLI and the client.
//!
//! - The **bootstrap admin** of every cluster is the user `admin` with the admin password
//!   (`SHOAL_ADMIN_PASSWORD` or the password file): it is always there and always `admin`.
//! - **Users** (`users/{name}` in the config store) have an argon2-hashed password and one
//!   role: `viewer` (reads everything but secrets and call details), `operator` (also
//!   invokes, runs jobs, changes the KVDB, deploys and rolls back, reads call details) or
//!   `admin` (everything: channels, connections, security, jobs, users, the audit trail).
//! - **API tokens** (`tokens/{id}`) act as their user, with the user's role at the time of
//!   each call: `Authorization: Bearer shoal_<id>_<secret>`. A token is shown once, when
//!   it is created; the store keeps its SHA-256 only (a long random value needs no key
//!   stretching), its expiry and its last use. Revoked or expired tokens are refused.
//!
//! Which role each route needs is [`required`], one table for the API and (since every
//! web admin page calls the API in process) the web admin; `docs/security.md` prints it.
//! Every gateway keeps the users and tokens in memory from a watch on the store, so a
//! change made through one gateway holds on all of them within the watch's delay.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shoal_common::store::{Store, WatchEvent};
use shoal_common::{ErrorCode, ShoalError};
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::auth::{BasicAuth, Verdict, Verifier, Who};
use crate::respond;

pub use shoal_common::roles::{Principal, Role};

/// A user as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRec {
    pub name: String,
    pub role: Role,
    /// argon2 PHC string.
    pub password_hash: String,
    #[serde(default)]
    pub created_ms: u64,
}

/// An API token as the store keeps it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRec {
    pub id: String,
    pub user: String,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// What it is for (free text).
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub created_ms: u64,
    /// None: does not expire.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    #[serde(default)]
    pub last_used_ms: Option<u64>,
}

impl TokenRec {
    /// The token as the API shows it (no hash).
    fn public(&self, now: u64) -> Value {
        json!({
            "id": self.id,
            "user": self.user,
            "description": self.description,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "last_used_ms": self.last_used_ms,
            "expired": self.expires_ms.is_some_and(|e| e <= now),
        })
    }
}

/// A user with the checker of its password.
#[derive(Clone)]
struct User {
    rec: UserRec,
    auth: BasicAuth,
}

/// The users and tokens of the cluster, as this gateway knows them. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    bootstrap: BasicAuth,
    store: Store,
    users: Arc<RwLock<HashMap<String, User>>>,
    tokens: Arc<RwLock<HashMap<String, TokenRec>>>,
}

/// Names a user may have: what fits a store key and a log line.
fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD: usize = 12;
/// Tokens start with this (so secret scanners and people recognise them).
pub const TOKEN_PREFIX: &str = "shoal_";

impl Directory {
    /// A directory with the bootstrap admin only; [`Directory::follow`] fills it.
    pub fn new(bootstrap: BasicAuth, store: Store) -> Directory {
        Directory {
            bootstrap,
            store,
            users: Arc::default(),
            tokens: Arc::default(),
        }
    }

    /// Keeps the users and tokens up to date from the store until `cancel`.
    pub fn follow(&self, cancel: &CancellationToken) {
        let users = self.clone();
        let mut rx = self.store.watch_prefix("users/", cancel.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                users.users_event(ev);
            }
        });
        let tokens = self.clone();
        let mut rx = self.store.watch_prefix("tokens/", cancel.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                tokens.tokens_event(ev);
            }
        });
    }

    fn users_event(&self, ev: WatchEvent) {
        let read = |v: &[u8]| serde_json::from_slice::<UserRec>(v).ok();
        let mut map = self.users.write();
        match ev {
            WatchEvent::Reset { entries, .. } => {
                map.clear();
                for e in entries {
                    if let Some(r) = read(&e.value) {
                        map.insert(r.name.clone(), user_of(r));
                    }
                }
            }
            WatchEvent::Put(e) => {
                if let Some(r) = read(&e.value) {
                    map.insert(r.name.clone(), user_of(r));
                }
            }
            WatchEvent::Delete { key, .. } => {
                map.remove(key.rsplit('/').next().unwrap_or_default());
            }
        }
    }

    fn tokens_event(&self, ev: WatchEvent) {
        let read = |v: &[u8]| serde_json::from_slice::<TokenRec>(v).ok();
        let mut map = self.tokens.write();
        match ev {
            WatchEvent::Reset { entries, .. } => {
                let old = std::mem::take(&mut *map);
                for e in entries {
                    if let Some(mut r) = read(&e.value) {
                        // A use seen here more recently than the store's record is kept.
                        if let Some(o) = old.get(&r.id) {
                            r.last_used_ms = r.last_used_ms.max(o.last_used_ms);
                        }
                        map.insert(r.id.clone(), r);
                    }
                }
            }
            WatchEvent::Put(e) => {
                if let Some(mut r) = read(&e.value) {
                    if let Some(o) = map.get(&r.id) {
                        r.last_used_ms = r.last_used_ms.max(o.last_used_ms);
                    }
                    map.insert(r.id.clone(), r);
                }
            }
            WatchEvent::Delete { key, .. } => {
                map.remove(key.rsplit('/').next().unwrap_or_default());
            }
        }
    }

    /// The role of `user` now (None: no such user).
    pub fn role_of(&self, user: &str) -> Option<Role> {
        if user == crate::auth::ADMIN_USER {
            return Some(Role::Admin);
        }
        self.users.read().get(user).map(|u| u.rec.role)
    }

    /// Checks an `Authorization` value (Basic for a user's password, Bearer for a token):
    /// the principal, or the verdict that refused it.
    pub async fn authenticate(
        &self,
        verifier: &Verifier,
        header: Option<&str>,
        addr: std::net::IpAddr,
    ) -> Result<Principal, Verdict> {
        let Some(value) = header else {
            return Err(Verdict::Invalid);
        };
        if let Some(token) = crate::auth::bearer_token(value) {
            return self.check_token(verifier, token, addr);
        }
        let Some((name, _)) = crate::auth::parse_basic(value) else {
            verifier.failed(Who {
                addr: Some(addr),
                user: None,
            });
            return Err(Verdict::Invalid);
        };
        let (auth, role) = if name == crate::auth::ADMIN_USER {
            (self.bootstrap.clone(), Role::Admin)
        } else {
            let known = self
                .users
                .read()
                .get(&name)
                .map(|u| (u.auth.clone(), u.rec.role));
            match known {
                Some(k) => k,
                None => {
                    // No verification can admit a user that does not exist; the throttle
                    // still counts the attempt (so names cannot be probed faster).
                    let key = format!("admin/{name}");
                    let who = Who {
                        addr: Some(addr),
                        user: Some(&key),
                    };
                    if let Some(wait) = verifier.throttled(who) {
                        return Err(Verdict::Throttled(wait));
                    }
                    verifier.failed(who);
                    return Err(Verdict::Invalid);
                }
            }
        };
        match auth.check(verifier, Some(value), Some(addr), "admin").await {
            Verdict::Valid => Ok(Principal {
                user: name,
                role,
                via: "password".into(),
                addr,
            }),
            v => Err(v),
        }
    }

    fn check_token(
        &self,
        verifier: &Verifier,
        token: &str,
        addr: std::net::IpAddr,
    ) -> Result<Principal, Verdict> {
        let who = Who {
            addr: Some(addr),
            user: None,
        };
        if let Some(wait) = verifier.throttled(who) {
            return Err(Verdict::Throttled(wait));
        }
        let id = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id);
        let now = now_ms();
        let found = id.and_then(|id| {
            let mut tokens = self.tokens.write();
            let rec = tokens.get_mut(id)?;
            if !crate::auth::token_matches(token, &rec.sha256)
                || rec.expires_ms.is_some_and(|e| e <= now)
            {
                return None;
            }
            let persist = rec
                .last_used_ms
                .is_none_or(|l| now.saturating_sub(l) >= 60_000);
            rec.last_used_ms = Some(now);
            Some((rec.clone(), persist))
        });
        let Some((rec, persist)) = found else {
            verifier.failed(who);
            return Err(Verdict::Invalid);
        };
        let Some(role) = self.role_of(&rec.user) else {
            // The token's user is gone: so is what the token may do.
            verifier.failed(who);
            return Err(Verdict::Invalid);
        };
        if persist {
            // The last use reaches the store at most once a minute per token.
            let store = self.store.clone();
            let key = format!("tokens/{}", rec.id);
            let value = serde_json::to_vec(&rec).unwrap_or_default();
            tokio::spawn(async move {
                if let Err(e) = store.put(&key, value).await {
                    tracing::debug!(error = %e, "cannot record a token's last use");
                }
            });
        }
        Ok(Principal {
            user: rec.user,
            role,
            via: format!("token {}", rec.id),
            addr,
        })
    }

    fn insert_user(&self, rec: UserRec) {
        self.users.write().insert(rec.name.clone(), user_of(rec));
    }
}

fn user_of(rec: UserRec) -> User {
    User {
        auth: BasicAuth::from_hash(&rec.name, rec.password_hash.clone()),
        rec,
    }
}

/// The role a request needs: `path` is what follows `/api/v1`. One table for the API and
/// the web admin (whose pages call the API in process).
pub fn required(method: &Method, path: &str) -> Role {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = matches!(*method, Method::GET | Method::HEAD);
    match (read, segs.as_slice()) {
        // Call details carry tracebacks and the lines a service logged.
        (true, ["requests", _]) => Role::Operator,
        (true, ["users", ..]) | (true, ["audit", ..]) => Role::Admin,
        // Everyone lists (their own) tokens.
        (true, ["tokens", ..]) => Role::Viewer,
        (true, _) => Role::Viewer,
        (false, ["services", _, "invoke"])
        | (false, ["jobs", _, "run"])
        | (false, ["deploy", ..])
        | (false, ["kvdb", ..]) => Role::Operator,
        // Tokens of one's own (another user's: admin, checked by the handler).
        (false, ["tokens", ..]) => Role::Viewer,
        _ => Role::Admin,
    }
}

/// The 403 of a principal whose role is not enough.
pub fn forbidden(p: &Principal, needed: Role) -> Response {
    respond::error(&ShoalError::new(
        ErrorCode::Forbidden,
        format!(
            "this needs the {} role; user {} has {}",
            needed.as_str(),
            p.user,
            p.role.as_str()
        ),
    ))
}

fn bad(message: impl Into<String>) -> Response {
    respond::error(&ShoalError::new(ErrorCode::BadRequest, message))
}

fn store_err(e: shoal_common::store::StoreError) -> Response {
    respond::error(&ShoalError::new(
        ErrorCode::Unavailable,
        format!("config store: {e}"),
    ))
}

fn principal(req_ext: Option<axum::Extension<Principal>>) -> Result<Principal, Box<Response>> {
    req_ext.map(|e| e.0).ok_or_else(|| {
        Box::new(respond::error(&ShoalError::new(
            ErrorCode::Unauthorized,
            "no authenticated user",
        )))
    })
}

fn user_json(r: &UserRec) -> Value {
    json!({"name": r.name, "role": r.role, "created_ms": r.created_ms})
}

/// `GET /api/v1/users`: every user with their role (the bootstrap admin first).
pub async fn list_users(State(state): State<AdminState>) -> Response {
    let mut users: Vec<Value> = vec![json!({"name": crate::auth::ADMIN_USER, "role": "admin",
        "created_ms": 0, "bootstrap": true})];
    let mut rest: Vec<UserRec> = match state.store.list("users/").await {
        Ok((entries, _)) => entries
            .iter()
            .filter_map(|e| serde_json::from_slice::<UserRec>(&e.value).ok())
            .collect(),
        Err(e) => return store_err(e),
    };
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    users.extend(rest.iter().map(user_json));
    Json(json!({ "users": users })).into_response()
}

/// What `POST /api/v1/users` and `PUT /api/v1/users/{name}` take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /api/v1/users`: `{"name", "role", "password"}`; 409 when the user exists.
pub async fn create_user(State(state): State<AdminState>, body: Bytes) -> Response {
    let b: UserBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("invalid user: {e}")),
    };
    let Some(name) = b.name else {
        return bad("invalid user: name is missing");
    };
    write_user(&state, &name, b.role, b.password, true).await
}

/// `PUT /api/v1/users/{name}`: a new role and/or password.
pub async fn update_user(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let b: UserBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("invalid user: {e}")),
    };
    if b.name.as_deref().is_some_and(|n| n != name) {
        return bad(format!(
            "the body names user {:?} but the URL names {name:?}",
            b.name.unwrap_or_default()
        ));
    }
    write_user(&state, &name, b.role, b.password, false).await
}

async fn write_user(
    state: &AdminState,
    name: &str,
    role: Option<String>,
    password: Option<String>,
    create: bool,
) -> Response {
    if let Err(e) = valid_name(name) {
        return bad(e);
    }
    if name == crate::auth::ADMIN_USER {
        return respond::error(&ShoalError::new(
            ErrorCode::Conflict,
            "the user admin is the bootstrap admin: its password is the cluster's admin password",
        ));
    }
    let role = match role.as_deref().map(Role::parse).transpose() {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    if let Some(p) = &password
        && p.chars().count() < MIN_PASSWORD
    {
        return bad(format!(
            "the password is too short: at least {MIN_PASSWORD} characters"
        ));
    }
    let key = format!("users/{name}");
    let existing = match state.store.get(&key).await {
        Ok(e) => e.and_then(|e| serde_json::from_slice::<UserRec>(&e.value).ok()),
        Err(e) => return store_err(e),
    };
    let rec = match (existing, create) {
        (Some(_), true) => {
            return respond::error(&ShoalError::new(
                ErrorCode::Conflict,
                format!("user {name} exists (PUT /api/v1/users/{name} changes it)"),
            ));
        }
        (None, false) => {
            return respond::error(&ShoalError::new(
                ErrorCode::NotFound,
                format!("no user {name}"),
            ));
        }
        (None, true) => {
            let (Some(role), Some(password)) = (role, password) else {
                return bad("a new user needs a role and a password");
            };
            let Ok(hash) = hash_blocking(password).await else {
                return respond::error(&ShoalError::new(
                    ErrorCode::Internal,
                    "cannot hash the password",
                ));
            };
            UserRec {
                name: name.to_owned(),
                role,
                password_hash: hash,
                created_ms: now_ms(),
            }
        }
        (Some(mut rec), false) => {
            if role.is_none() && password.is_none() {
                return bad("nothing to change: give a role and/or a password");
            }
            if let Some(r) = role {
                rec.role = r;
            }
            if let Some(p) = password {
                let Ok(hash) = hash_blocking(p).await else {
                    return respond::error(&ShoalError::new(
                        ErrorCode::Internal,
                        "cannot hash the password",
                    ));
                };
                rec.password_hash = hash;
            }
            rec
        }
    };
    let value = match serde_json::to_vec(&rec) {
        Ok(v) => v,
        Err(e) => return bad(e.to_string()),
    };
    if let Err(e) = state.store.put(&key, value).await {
        return store_err(e);
    }
    state.users.insert_user(rec.clone());
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"user": user_json(&rec)}))).into_response()
}

async fn hash_blocking(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || crate::auth::hash_secret(&password))
        .await
        .map_err(|e| e.to_string())?
}

/// `DELETE /api/v1/users/{name}`: the user and every token of theirs.
pub async fn delete_user(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    if name == crate::auth::ADMIN_USER {
        return respond::error(&ShoalError::new(
            ErrorCode::Conflict,
            "the bootstrap admin cannot be deleted",
        ));
    }
    match state.store.delete(&format!("users/{name}")).await {
        Ok(true) => {}
        Ok(false) => {
            return respond::error(&ShoalError::new(
                ErrorCode::NotFound,
                format!("no user {name}"),
            ));
        }
        Err(e) => return store_err(e),
    }
    state.users.users.write().remove(&name);
    let ids: Vec<String> = state
        .users
        .tokens
        .read()
        .values()
        .filter(|t| t.user == name)
        .map(|t| t.id.clone())
        .collect();
    for id in &ids {
        let _ = state.store.delete(&format!("tokens/{id}")).await;
        state.users.tokens.write().remove(id);
    }
    Json(json!({"deleted": name, "tokens_revoked": ids.len()})).into_response()
}

/// `GET /api/v1/tokens`: the caller's tokens (an admin: everyone's; `?user=` filters).
pub async fn list_tokens(
    State(state): State<AdminState>,
    p: Option<axum::Extension<Principal>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let p = match principal(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let params = match crate::admin::objects::query_params(raw.as_deref(), &["user"]) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let want = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone());
    if p.role < Role::Admin && want.as_deref().is_some_and(|u| u != p.user) {
        return forbidden(&p, Role::Admin);
    }
    let want = if p.role < Role::Admin {
        Some(p.user.clone())
    } else {
        want
    };
    let now = now_ms();
    let mut tokens: Vec<TokenRec> = state
        .users
        .tokens
        .read()
        .values()
        .filter(|t| want.as_deref().is_none_or(|u| t.user == u))
        .cloned()
        .collect();
    tokens.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    let list: Vec<Value> = tokens.iter().map(|t| t.public(now)).collect();
    Json(json!({ "tokens": list })).into_response()
}

/// What `POST /api/v1/tokens` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// Whose token (default: the caller; another user's needs the admin role).
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    description: String,
    /// `30d`, `12h`, `90m`; none: the token does not expire.
    #[serde(default)]
    expires: Option<String>,
}

/// Reads `30d`, `12h`, `90m`, `45s` as milliseconds.
pub fn parse_lifetime(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = || format!("invalid expiry {s:?}: a number and d, h, m or s (30d, 12h)");
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| err())?;
    let per = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return Err(err()),
    };
    if n == 0 {
        return Err(format!("invalid expiry {s:?}: it must be in the future"));
    }
    n.checked_mul(per).ok_or_else(err)
}

/// `POST /api/v1/tokens`: a new token, answered once (`token`); the store keeps its hash.
pub async fn create_token(
    State(state): State<AdminState>,
    p: Option<axum::Extension<Principal>>,
    body: Bytes,
) -> Response {
    let p = match principal(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let b: TokenBody = if body.is_empty() {
        TokenBody {
            user: None,
            description: String::new(),
            expires: None,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return bad(format!("invalid token request: {e}")),
        }
    };
    let user = b.user.unwrap_or_else(|| p.user.clone());
    if user != p.user && p.role < Role::Admin {
        return forbidden(&p, Role::Admin);
    }
    if state.users.role_of(&user).is_none() {
        return respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            format!("no user {user}"),
        ));
    }
    let now = now_ms();
    let expires_ms = match b.expires.as_deref().map(parse_lifetime).transpose() {
        Ok(ms) => ms.map(|ms| now.saturating_add(ms)),
        Err(e) => return bad(e),
    };
    if b.description.len() > 200 {
        return bad("the description is too long (200 characters at most)");
    }
    let id = format!("{:012x}", rand::random::<u64>() >> 16);
    let secret: String = {
        let a: u128 = rand::random();
        let b: u64 = rand::random();
        format!("{a:032x}{b:016x}")
    };
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let rec = TokenRec {
        id: id.clone(),
        user,
        sha256: crate::auth::token_sha256(&token),
        description: b.description,
        created_ms: now,
        expires_ms,
        last_used_ms: None,
    };
    let value = match serde_json::to_vec(&rec) {
        Ok(v) => v,
        Err(e) => return bad(e.to_string()),
    };
    if let Err(e) = state.store.put(&format!("tokens/{id}"), value).await {
        return store_err(e);
    }
    let public = rec.public(now);
    state.users.tokens.write().insert(id, rec);
    let mut resp = (
        StatusCode::CREATED,
        Json(json!({"token": token, "info": public,
            "note": "the token is shown this once; the cluster keeps only its hash"})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token (one's own; anyone's for an admin).
pub async fn revoke_token(
    State(state): State<AdminState>,
    p: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
) -> Response {
    let p = match principal(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let owner = state.users.tokens.read().get(&id).map(|t| t.user.clone());
    let Some(owner) = owner else {
        return respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            format!("no token {id}"),
        ));
    };
    if owner != p.user && p.role < Role::Admin {
        return forbidden(&p, Role::Admin);
    }
    if let Err(e) = state.store.delete(&format!("tokens/{id}")).await {
        return store_err(e);
    }
    state.users.tokens.write().remove(&id);
    Json(json!({"revoked": id, "user": owner})).into_response()
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(shoal_common::members::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_reads_as_documented() {
        let g = Method::GET;
        let post = Method::POST;
        let put = Method::PUT;
        let del = Method::DELETE;
        assert_eq!(required(&g, "/services"), Role::Viewer);
        assert_eq!(required(&g, "/requests"), Role::Viewer);
        assert_eq!(required(&g, "/requests/abc"), Role::Operator);
        assert_eq!(required(&g, "/users"), Role::Admin);
        assert_eq!(required(&g, "/audit"), Role::Admin);
        assert_eq!(required(&post, "/services/x/invoke"), Role::Operator);
        assert_eq!(required(&post, "/deploy/rollback"), Role::Operator);
        assert_eq!(required(&put, "/kvdb/a/b"), Role::Operator);
        assert_eq!(required(&post, "/jobs/j/run"), Role::Operator);
        assert_eq!(required(&put, "/jobs/j"), Role::Admin);
        assert_eq!(required(&del, "/channels/c"), Role::Admin);
        assert_eq!(required(&post, "/apply"), Role::Admin);
        assert_eq!(required(&post, "/users"), Role::Admin);
        assert_eq!(required(&post, "/tokens"), Role::Viewer);
        assert_eq!(required(&post, "/anything/new"), Role::Admin);
    }

    #[test]
    fn lifetimes_and_names() {
        assert_eq!(parse_lifetime("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_lifetime("2h"), Ok(7_200_000));
        for bad in ["", "d", "0d", "10", "-1d", "1y", "99999999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
        assert!(valid_name("ci-bot@team.example").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"x".repeat(65)] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!(Role::parse("root").is_err());
    }
}
