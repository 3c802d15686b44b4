//! The Team page (`/admin/team`: your API tokens; for an admin, the users and their roles)
//! and the Audit page (`/admin/audit`, admins). Like every page, they call the admin API
//! in process, so its role checks, refusals and audit records are theirs too.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::pages::{Chrome, chrome, form_map, query_value, render, status_of};
use super::{Current, WebState, segment};
use shoal_common::roles::Role;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin/team", get(team))
        .route("/admin/team/tokens", post(create_token))
        .route("/admin/team/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/team/users", post(add_user))
        .route("/admin/team/users/{name}/role", post(set_role))
        .route("/admin/team/users/{name}/delete", post(delete_user))
        .route("/admin/audit", get(audit))
}

struct UserRow {
    name: String,
    href: String,
    role: String,
    bootstrap: bool,
}

struct TokenRow {
    id: String,
    user: String,
    description: String,
    expires: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    c: Chrome,
    admin: bool,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    /// A token just created: shown this once.
    new_token: String,
    roles: &'static [&'static str],
}

const ROLES: &[&str] = &["viewer", "operator", "admin"];

fn when(v: &Value) -> String {
    match v.as_i64() {
        Some(ms) if ms > 0 => shoal_common::time::format_rfc3339(ms / 1000)
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_owned(),
        _ => "never".into(),
    }
}

async fn team_view(
    state: &WebState,
    mut c: Chrome,
    new_token: String,
    status: StatusCode,
) -> Response {
    let admin = c.role == Role::Admin;
    let mut users = Vec::new();
    if admin {
        match state.get_json("/users").await {
            Ok(v) => {
                for u in v["users"].as_array().map_or(&[][..], Vec::as_slice) {
                    let name = u["name"].as_str().unwrap_or_default().to_owned();
                    users.push(UserRow {
                        href: segment(&name),
                        name,
                        role: u["role"].as_str().unwrap_or_default().to_owned(),
                        bootstrap: u["bootstrap"].as_bool() == Some(true),
                    });
                }
            }
            Err(e) => c.error = e,
        }
    }
    let mut tokens = Vec::new();
    match state.get_json("/tokens").await {
        Ok(v) => {
            for t in v["tokens"].as_array().map_or(&[][..], Vec::as_slice) {
                let expired = t["expired"].as_bool() == Some(true);
                tokens.push(TokenRow {
                    id: t["id"].as_str().unwrap_or_default().to_owned(),
                    user: t["user"].as_str().unwrap_or_default().to_owned(),
                    description: t["description"].as_str().unwrap_or_default().to_owned(),
                    expires: if expired {
                        format!("{} (expired)", when(&t["expires_ms"]))
                    } else {
                        when(&t["expires_ms"])
                    },
                    last_used: when(&t["last_used_ms"]),
                });
            }
        }
        Err(e) => c.error = e,
    }
    render(
        status,
        &TeamPage {
            c,
            admin,
            users,
            tokens,
            new_token,
            roles: ROLES,
        },
    )
}

async fn team(State(state): State<WebState>, Extension(current): Extension<Current>) -> Response {
    let c = chrome(&state, &current, "team");
    team_view(&state, c, String::new(), StatusCode::OK).await
}

/// Posts `body` to the API and shows the Team page with what happened.
async fn act(
    state: &WebState,
    current: &Current,
    method: Method,
    path: &str,
    body: Value,
    notice: impl FnOnce(&Value) -> String,
) -> Response {
    let mut c = chrome(state, current, "team");
    let a = state
        .api(
            method,
            path,
            Body::from(body.to_string()),
            &[("content-type", "application/json".into())],
        )
        .await;
    let answer = a.json();
    c.report(&a, || notice(&answer));
    let token = answer["token"].as_str().unwrap_or_default().to_owned();
    team_view(state, c, token, status_of(&a)).await
}

async fn create_token(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let f = form_map(&body);
    let mut req = json!({"description": f.get("description").cloned().unwrap_or_default()});
    if let Some(e) = f.get("expires").filter(|e| !e.trim().is_empty()) {
        req["expires"] = json!(e.trim());
    }
    if let Some(u) = f.get("user").filter(|u| !u.trim().is_empty()) {
        req["user"] = json!(u.trim());
    }
    act(&state, &current, Method::POST, "/tokens", req, |v| {
        format!(
            "token {} created for {}: copy it now, it is not shown again",
            v["info"]["id"].as_str().unwrap_or("?"),
            v["info"]["user"].as_str().unwrap_or("?")
        )
    })
    .await
}

async fn revoke_token(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/tokens/{}", segment(&id));
    act(&state, &current, Method::DELETE, &path, Value::Null, |_| {
        format!("token {id} revoked")
    })
    .await
}

async fn add_user(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let f = form_map(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let name = get("name");
    let req = json!({"name": name, "role": get("role"), "password": get("password")});
    act(&state, &current, Method::POST, "/users", req, |_| {
        format!("user {name} added")
    })
    .await
}

async fn set_role(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let f = form_map(&body);
    let role = f.get("role").cloned().unwrap_or_default();
    let path = format!("/users/{}", segment(&name));
    act(
        &state,
        &current,
        Method::PUT,
        &path,
        json!({"role": role}),
        |_| format!("{name} is now {role}"),
    )
    .await
}

async fn delete_user(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let path = format!("/users/{}", segment(&name));
    act(&state, &current, Method::DELETE, &path, Value::Null, |v| {
        format!(
            "user {name} deleted ({} token(s) revoked)",
            v["tokens_revoked"].as_u64().unwrap_or(0)
        )
    })
    .await
}

struct AuditRow {
    time: String,
    user: String,
    via: String,
    address: String,
    action: String,
    object: String,
    result: String,
    failed: bool,
    message: String,
    changes: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    rows: Vec<AuditRow>,
    user: String,
    kind: String,
    result: String,
    results: &'static [&'static str],
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

async fn audit(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let c = chrome(&state, &current, "audit");
    let pick = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (user, kind, result) = (pick("user"), pick("kind"), pick("result"));
    let mut query = vec!["limit=200".to_owned()];
    for (k, v) in [("user", &user), ("kind", &kind), ("result", &result)] {
        if !v.is_empty() {
            query.push(format!("{k}={}", query_value(v)));
        }
    }
    let a = state
        .api(
            Method::GET,
            &format!("/audit?{}", query.join("&")),
            Body::empty(),
            &[],
        )
        .await;
    if !a.ok() {
        return super::pages::refused(a.status, &a.message());
    }
    let mut rows = Vec::new();
    for r in a.json()["audit"].as_array().map_or(&[][..], Vec::as_slice) {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let name = s("name");
        rows.push(AuditRow {
            time: when(&r["time_ms"]),
            user: s("user"),
            via: s("via"),
            address: s("address"),
            action: s("action"),
            object: if name.is_empty() {
                s("kind")
            } else {
                format!("{} {name}", s("kind"))
            },
            failed: s("result") != "ok",
            result: format!("{} {}", s("result"), r["status"]),
            message: s("message"),
            changes: r["changes"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|ch| {
                    (
                        ch["field"].as_str().unwrap_or_default().to_owned(),
                        short(&ch["before"]),
                        short(&ch["after"]),
                    )
                })
                .collect(),
        });
    }
    render(
        StatusCode::OK,
        &AuditPage {
            c,
            rows,
            user,
            kind,
            result,
            results: &["", "ok", "refused", "failed"],
        },
    )
}
