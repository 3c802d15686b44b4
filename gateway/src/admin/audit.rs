//! The audit trail: every change made through the admin API — and so through the CLI, the
//! client and the web admin, which all go through it — recorded with who made it (user and
//! how: password, token or web session), when, from which address, what object, what
//! changed (each field before and after, secrets masked as the API shows them) and the
//! result, including changes refused by a role check or a validation.
//!
//! Records live in the config store under `audit/` (the newest [`AuditLog`]'s `keep` are
//! kept) and go out as a structured log line (target `shoal::audit`). Reads are not
//! recorded, nor invocations (the request tail has those); deploys and rollbacks record
//! the module and its hash; token records name the token's id, never the token.
//!
//! `GET /api/v1/audit` (admin) lists them, newest first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, Request};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shoal_common::store::Store;
use shoal_common::{ErrorCode, ShoalError};

use crate::admin::AdminState;
use crate::admin::users::{self, Principal, Role};
use crate::respond;

/// Records kept by default.
pub const DEFAULT_KEEP: usize = 10_000;
/// Every this many writes, records past `keep` are pruned.
const PRUNE_EVERY: u64 = 100;

/// One change (or refused change).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub id: String,
    pub time_ms: u64,
    pub user: String,
    pub role: Role,
    /// `password`, `token <id>` or `web`.
    pub via: String,
    pub address: String,
    /// `create`, `update`, `delete`, `apply`, `deploy`, `rollback`, `run`, `set`, `revoke`.
    pub action: String,
    /// The object's kind (`channel`, `job`, `kvdb`, `module`, `user`, `token`, ...).
    pub kind: String,
    /// Its name (a channel's, a KVDB key, a token's id); empty for `apply` and `deploy`.
    pub name: String,
    /// The API's request, `METHOD /api/v1/...`.
    pub request: String,
    pub status: u16,
    /// `ok`, `refused` (a 4xx: a role check or a validation) or `failed` (5xx).
    pub result: String,
    /// The refusal's or failure's message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Each field that changed, before and after (secrets as the API shows them: `***`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// What else the answer said (a deploy's modules and hashes, an apply's summary).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// One field of an object, before and after (null: absent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Where records go. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
    keep: usize,
    writes: Arc<AtomicU64>,
}

impl AuditLog {
    pub fn new(store: Store, keep: usize) -> AuditLog {
        AuditLog {
            store,
            keep: keep.max(1),
            writes: Arc::default(),
        }
    }

    /// Logs `rec` and stores it (a store that cannot take it is logged, not fatal: the
    /// change itself happened).
    pub async fn record(&self, mut rec: AuditRecord) {
        rec.id = format!("{:013}-{:08x}", rec.time_ms, rand::random::<u32>());
        tracing::info!(
            target: "shoal::audit",
            user = %rec.user,
            via = %rec.via,
            address = %rec.address,
            action = %rec.action,
            kind = %rec.kind,
            name = %rec.name,
            status = rec.status,
            result = %rec.result,
            changes = rec.changes.len(),
            "audit"
        );
        let Ok(value) = serde_json::to_vec(&rec) else {
            return;
        };
        if let Err(e) = self.store.put(&format!("audit/{}", rec.id), value).await {
            tracing::warn!(error = %e, "cannot store an audit record");
            return;
        }
        if self.writes.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune().await;
        }
    }

    async fn prune(&self) {
        let Ok((entries, _)) = self.store.list("audit/").await else {
            return;
        };
        if entries.len() <= self.keep {
            return;
        }
        // Keys sort by time (zero-padded milliseconds first).
        let mut keys: Vec<String> = entries
            .into_iter()
            .map(|e| {
                e.key
                    .rsplit_once("audit/")
                    .map_or(e.key.clone(), |(_, id)| format!("audit/{id}"))
            })
            .collect();
        keys.sort();
        let excess = keys.len() - self.keep;
        for k in keys.into_iter().take(excess) {
            let _ = self.store.delete(&k).await;
        }
    }
}

/// How a stored record reads as the API shows it (secrets masked).
type Show = fn(&[u8]) -> Option<Value>;

/// What a change touches, read off its API path.
struct Target {
    action: &'static str,
    kind: &'static str,
    name: String,
    /// The store key whose record is compared before and after, and how it reads.
    snapshot: Option<(String, Show)>,
}

fn show_user(b: &[u8]) -> Option<Value> {
    let u: users::UserRec = serde_json::from_slice(b).ok()?;
    Some(json!({"name": u.name, "role": u.role}))
}

impl Target {
    fn of(method: &Method, path: &str) -> Target {
        let segs: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
        let write = if *method == Method::DELETE {
            "delete"
        } else {
            "update"
        };
        let object = |kind: &'static str, prefix: &str, name: &str, show: Show| Target {
            action: write,
            kind,
            name: name.to_owned(),
            snapshot: Some((format!("{prefix}{name}"), show)),
        };
        match seg.as_slice() {
            ["channels", n] => object(
                "channel",
                "channels/",
                n,
                crate::admin::objects::CHANNELS.show,
            ),
            ["outgoing", n] => object(
                "outgoing",
                "outgoing/",
                n,
                crate::admin::objects::OUTGOING.show,
            ),
            ["security", n] => object(
                "security",
                "security/",
                n,
                crate::admin::objects::SECURITY.show,
            ),
            ["jobs", n] => object("job", "jobs/", n, crate::admin::jobs::JOBS.show),
            ["jobs", n, "run"] => Target {
                action: "run",
                kind: "job",
                name: (*n).to_owned(),
                snapshot: None,
            },
            ["users"] => Target {
                action: "create",
                kind: "user",
                name: String::new(),
                snapshot: None,
            },
            ["users", n] => object("user", "users/", n, show_user),
            ["tokens"] => Target {
                action: "create",
                kind: "token",
                name: String::new(),
                snapshot: None,
            },
            ["tokens", id] => Target {
                action: "revoke",
                kind: "token",
                name: (*id).to_owned(),
                snapshot: None,
            },
            ["kvdb", ..] => Target {
                action: if *method == Method::DELETE {
                    "delete"
                } else {
                    "set"
                },
                kind: "kvdb",
                name: seg[1..].join("/"),
                snapshot: None,
            },
            ["deploy"] => Target {
                action: "deploy",
                kind: "module",
                name: String::new(),
                snapshot: None,
            },
            ["deploy", "rollback"] => Target {
                action: "rollback",
                kind: "module",
                name: String::new(),
                snapshot: None,
            },
            ["apply"] => Target {
                action: "apply",
                kind: "config",
                name: String::new(),
                snapshot: None,
            },
            _ => Target {
                action: if *method == Method::DELETE {
                    "delete"
                } else {
                    "change"
                },
                kind: "other",
                name: path.to_owned(),
                snapshot: None,
            },
        }
    }

    async fn read(&self, store: &Store) -> Option<Value> {
        let (key, show) = self.snapshot.as_ref()?;
        let e = store.get(key).await.ok()??;
        show(&e.value)
    }
}

/// Each top-level field that differs between `before` and `after`.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| b.get(*f) != a.get(*f))
        .map(|f| Change {
            field: f.clone(),
            before: b.get(f).cloned().unwrap_or(Value::Null),
            after: a.get(f).cloned().unwrap_or(Value::Null),
        })
        .collect()
}

fn is_change(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a change is audited (invocations are calls, kept by the request tail).
fn audited(m: &Method, path: &str) -> bool {
    is_change(m) && !(path.starts_with("/services/") && path.ends_with("/invoke"))
}

/// The role check and the audit of every `/api/v1` request, for the API (after its
/// authentication) and the web admin (whose session names the principal).
pub async fn authorize(
    State(state): State<AdminState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let Some(p) = req.extensions().get::<Principal>().cloned() else {
        return respond::error(&ShoalError::new(
            ErrorCode::Unauthorized,
            "no authenticated user",
        ));
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let needed = users::required(&method, &path);
    // A dry run changes nothing: not recorded (its role check still holds).
    let audit = audited(&method, &path)
        && !(path == "/apply" && crate::admin::objects::is_dry_run(req.uri().query()));
    let target = audit.then(|| Target::of(&method, &path));
    let base = |status: u16, result: &str, message: String| AuditRecord {
        id: String::new(),
        time_ms: users::now_ms(),
        user: p.user.clone(),
        role: p.role,
        via: p.via.clone(),
        address: p.addr.to_string(),
        action: String::new(),
        kind: String::new(),
        name: String::new(),
        request: format!("{method} /api/v1{path}"),
        status,
        result: result.to_owned(),
        message,
        changes: Vec::new(),
        detail: Value::Null,
    };
    if p.role < needed {
        let resp = users::forbidden(&p, needed);
        if let Some(t) = &target {
            let mut rec = base(
                403,
                "refused",
                format!(
                    "this needs the {} role; user {} has {}",
                    needed.as_str(),
                    p.user,
                    p.role.as_str()
                ),
            );
            rec.action = t.action.to_owned();
            rec.kind = t.kind.to_owned();
            rec.name = t.name.clone();
            state.audit.record(rec).await;
        }
        return resp;
    }
    let Some(target) = target else {
        return next.run(req).await;
    };
    let before = target.read(&state.store).await;
    let resp = next.run(req).await;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, crate::admin::MAX_BODY * 2)
        .await
        .unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let after = target.read(&state.store).await;
    let result = if status.is_success() {
        "ok"
    } else if status.is_client_error() {
        "refused"
    } else {
        "failed"
    };
    let message = answer
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut rec = base(status.as_u16(), result, message);
    rec.action = match (target.action, &before, &after) {
        ("update", None, Some(_)) => "create".to_owned(),
        (a, _, _) => a.to_owned(),
    };
    rec.kind = target.kind.to_owned();
    rec.name = target.name.clone();
    rec.changes = diff(before.as_ref(), after.as_ref());
    rec.detail = match target.action {
        "deploy" | "rollback" | "apply" if status.is_success() => answer,
        "deploy" => answer.get("failed").cloned().unwrap_or(Value::Null),
        // The new token's record, never the token.
        "create" if target.kind == "token" => answer.get("info").cloned().unwrap_or(Value::Null),
        "create" if target.kind == "user" => {
            if let Some(n) = answer.pointer("/user/name").and_then(Value::as_str) {
                rec.name = n.to_owned();
            }
            answer.get("user").cloned().unwrap_or(Value::Null)
        }
        _ => Value::Null,
    };
    if target.kind == "module" {
        // The module(s) deployed or rolled back.
        let modules: Vec<&str> = match target.action {
            "rollback" => rec
                .detail
                .get("module")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
            _ => rec
                .detail
                .get("deployed")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|d| d["module"].as_str()).collect())
                .unwrap_or_default(),
        };
        rec.name = modules.join(", ");
    }
    if target.kind == "token" && rec.name.is_empty() {
        rec.name = rec
            .detail
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
    }
    state.audit.record(rec).await;
    Response::from_parts(parts, Body::from(bytes))
}

/// `GET /api/v1/audit?user=&kind=&name=&action=&result=&limit=`: records, newest first
/// (100 by default, 1,000 at most).
pub async fn list(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Response {
    let params = match crate::admin::objects::query_params(
        raw.as_deref(),
        &["user", "kind", "name", "action", "result", "limit"],
    ) {
        Ok(p) => p,
        Err(e) => return respond::error(&ShoalError::new(ErrorCode::BadRequest, e)),
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match get("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return respond::error(&ShoalError::new(
                ErrorCode::BadRequest,
                "limit must be a number from 1 to 1000",
            ));
        }
    };
    let (entries, _) = match state.store.list("audit/").await {
        Ok(e) => e,
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::Unavailable,
                format!("config store: {e}"),
            ));
        }
    };
    let mut records: Vec<AuditRecord> = entries
        .iter()
        .filter_map(|e| serde_json::from_slice::<AuditRecord>(&e.value).ok())
        .filter(|r| {
            get("user").is_none_or(|u| r.user == u)
                && get("kind").is_none_or(|k| r.kind == k)
                && get("name").is_none_or(|n| r.name == n)
                && get("action").is_none_or(|a| r.action == a)
                && get("result").is_none_or(|x| r.result == x)
        })
        .collect();
    records.sort_by(|a, b| b.id.cmp(&a.id));
    records.truncate(limit);
    Json(json!({ "audit": records })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_changed_field() {
        let a = json!({"name": "c", "service": "x", "security": "s"});
        let b = json!({"name": "c", "service": "y", "url_path": "/p"});
        let d = diff(Some(&a), Some(&b));
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["security", "service", "url_path"]);
        assert_eq!(d[1].before, json!("x"));
        assert_eq!(d[2].before, Value::Null);
        assert_eq!(
            diff(None, Some(&a)).len(),
            3,
            "a creation lists every field"
        );
        assert!(diff(Some(&a), Some(&a)).is_empty());
    }

    #[test]
    fn targets_read_off_the_path() {
        let t = Target::of(&Method::PUT, "/channels/crm%2Fa");
        assert_eq!((t.kind, t.name.as_str()), ("channel", "crm/a"));
        let t = Target::of(&Method::PUT, "/kvdb/a/b");
        assert_eq!((t.action, t.kind, t.name.as_str()), ("set", "kvdb", "a/b"));
        let t = Target::of(&Method::POST, "/deploy/rollback");
        assert_eq!(t.action, "rollback");
        assert!(!audited(&Method::POST, "/services/x/invoke"));
        assert!(audited(&Method::POST, "/jobs/x/run"));
        assert!(!audited(&Method::GET, "/channels"));
    }
}
