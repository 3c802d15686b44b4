//! The web admin's pages, one file each. Each handler asks the admin API (in process,
//! [`WebState::api`]) and renders what it answered; a failed API call is shown with the
//! API's own message and status. This file holds what every page shares — the header
//! (`Chrome`), rendering, refusals — and the routes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, FromRequest, Multipart, Path, Query, Request, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use super::forms::{self, Variant, Widget};
use super::{Current, WebState, redirect, segment};
use shoal_common::objects::kinds;

mod dashboard;
mod deploy;
mod jobs;
mod kvdb;
mod login;
mod objects;
mod services;
mod tail;

#[allow(unused_imports)]
use dashboard::*;
#[allow(unused_imports)]
use deploy::*;
#[allow(unused_imports)]
use jobs::*;
pub(super) use kvdb::query_value;
#[allow(unused_imports)]
use kvdb::*;
pub(super) use login::form_map;
#[allow(unused_imports)]
use login::*;
#[allow(unused_imports)]
use objects::*;
#[allow(unused_imports)]
use services::*;
#[allow(unused_imports)]
use tail::*;

/// What every page shows around its content.
pub struct Chrome {
    pub cluster: String,
    pub csrf: String,
    /// Who is logged in, and their role now.
    pub user: String,
    pub role: shoal_common::roles::Role,
    pub active: &'static str,
    pub notice: String,
    pub error: String,
}

/// The sections, in the order of the navigation bar: (href, label, key).
const NAV: &[(&str, &str, &str)] = &[
    ("/admin/", "Dashboard", "dashboard"),
    ("/admin/services", "Services", "services"),
    ("/admin/deploy", "Deploy", "deploy"),
    ("/admin/channels", "Channels", "channels"),
    ("/admin/outgoing", "Outgoing", "outgoing"),
    ("/admin/security", "Security", "security"),
    ("/admin/jobs", "Jobs", "jobs"),
    ("/admin/kvdb", "KVDB", "kvdb"),
    ("/admin/tail", "Live tail", "tail"),
    ("/admin/team", "Team", "team"),
    ("/admin/audit", "Audit", "audit"),
];

impl Chrome {
    /// Shows what an API call did: `notice` when it succeeded, the API's message if not.
    pub(super) fn report(&mut self, a: &super::Answer, notice: impl FnOnce() -> String) {
        if a.ok() {
            self.notice = notice();
        } else {
            self.error = a.message();
        }
    }

    /// The sections this user's role may open (the audit is an admin's).
    pub fn nav(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        NAV.iter()
            .filter(|(_, _, key)| *key != "audit" || self.role == shoal_common::roles::Role::Admin)
            .copied()
            .collect()
    }

    /// The role's name, for the header.
    pub fn role_name(&self) -> &'static str {
        self.role.as_str()
    }
}

pub(super) fn chrome(state: &WebState, current: &Current, active: &'static str) -> Chrome {
    Chrome {
        cluster: state.options.cluster_name.clone(),
        csrf: current.session.csrf.clone(),
        user: current.session.user.clone(),
        role: state
            .admin
            .role_of(&current.session.user)
            .unwrap_or_default(),
        active,
        notice: String::new(),
        error: String::new(),
    }
}

/// Renders a template with a status.
pub(super) fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web admin template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The status an API answer is shown with: its own when it failed.
pub(super) fn status_of(a: &super::Answer) -> StatusCode {
    if a.ok() { StatusCode::OK } else { a.status }
}

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage<'a> {
    status: String,
    message: &'a str,
}

/// A refusal (no session, bad CSRF token, foreign origin, no such page) as a small page.
pub fn refused(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &RefusedPage {
            status: status.to_string(),
            message,
        },
    )
}

pub fn routes() -> Router<WebState> {
    let mut r = Router::new()
        .route("/admin", get(|| async { redirect("/admin/") }))
        .route("/admin/", get(dashboard))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/static/{file}", get(static_file))
        .route("/admin/services", get(services))
        .route("/admin/services/{name}", get(service))
        .route("/admin/services/{name}/invoke", post(invoke))
        .route("/admin/deploy", get(deploy_page).post(deploy))
        .route("/admin/deploy/rollback", post(rollback))
        .route(
            "/admin/deploy/{module}/versions/{hash}",
            get(module_version),
        )
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{name}/run", post(run_job))
        .route("/admin/kvdb", get(kvdb))
        .route("/admin/kvdb/set", post(kvdb_set))
        .route("/admin/kvdb/delete", post(kvdb_delete))
        .route("/admin/tail", get(tail))
        .route("/admin/tail/stream", get(tail_stream))
        .route("/admin/calls/{cid}", get(call_page))
        .merge(super::team::routes());
    for kind in KINDS {
        if kind.slug != "jobs" {
            r = r.route(
                &format!("/admin/{}", kind.slug),
                get(
                    move |s: State<WebState>,
                          c: Extension<Current>,
                          q: Query<BTreeMap<String, String>>| {
                        list_objects(kind, s, c, q)
                    },
                ),
            );
        }
        r = r
            .route(
                &format!("/admin/{}/new", kind.slug),
                get(
                    move |s: State<WebState>,
                          c: Extension<Current>,
                          q: Query<BTreeMap<String, String>>| {
                        new_object(kind, s, c, q)
                    },
                ),
            )
            .route(
                &format!("/admin/{}/save", kind.slug),
                post(
                    move |s: State<WebState>, c: Extension<Current>, body: Bytes| {
                        save_object(kind, s, c, body)
                    },
                ),
            )
            .route(
                &format!("/admin/{}/{{name}}", kind.slug),
                get(
                    move |s: State<WebState>, c: Extension<Current>, n: Path<String>| {
                        edit_object(kind, s, c, n)
                    },
                ),
            )
            .route(
                &format!("/admin/{}/{{name}}/delete", kind.slug),
                post(
                    move |s: State<WebState>, c: Extension<Current>, n: Path<String>| {
                        delete_object(kind, s, c, n)
                    },
                ),
            );
    }
    r.route("/admin/{*rest}", axum::routing::any(not_found))
        .layer(axum::middleware::from_fn(push_page_url))
}

/// After a form's POST, the address bar shows the page's own URL (htmx's `HX-Push-Url`),
/// so a reload or Back shows that page rather than the browser's 405 for a POST-only
/// action (Run now, a save, a KVDB set...).
async fn push_page_url(req: Request, next: axum::middleware::Next) -> Response {
    let page = if req.method() == Method::POST {
        page_of(req.uri().path())
    } else {
        None
    };
    let mut resp = next.run(req).await;
    if let Some(p) = page
        && !resp.status().is_redirection()
        && !resp.headers().contains_key("hx-push-url")
        && let Ok(v) = HeaderValue::from_str(&p)
    {
        resp.headers_mut().insert("hx-push-url", v);
    }
    resp
}

/// The page a POST-only action path belongs to.
fn page_of(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.strip_prefix("/admin/")?.split('/').collect();
    match parts.as_slice() {
        ["services", name, "invoke"] => Some(format!("/admin/services/{name}")),
        ["deploy"] | ["deploy", "rollback"] => Some("/admin/deploy".into()),
        ["jobs", _, "run"] => Some("/admin/jobs".into()),
        ["kvdb", "set" | "delete"] => Some("/admin/kvdb".into()),
        ["team", ..] => Some("/admin/team".into()),
        [kind, "save"] if *kind != "login" => Some(format!("/admin/{kind}")),
        [kind, _, "delete"] => Some(format!("/admin/{kind}")),
        _ => None,
    }
}

async fn not_found(req: Request) -> Response {
    refused(
        StatusCode::NOT_FOUND,
        &format!("no web admin page {}", req.uri().path()),
    )
}

async fn static_file(Path(file): Path<String>) -> Response {
    super::asset(&file).unwrap_or_else(|| refused(StatusCode::NOT_FOUND, "no such file"))
}

#[cfg(test)]
mod page_url_tests {
    use super::{after_login, page_of};

    #[test]
    fn a_login_returns_only_to_the_admins_own_pages() {
        assert_eq!(after_login("/admin/jobs"), "/admin/jobs");
        assert_eq!(
            after_login("/admin/services?q=crm"),
            "/admin/services?q=crm"
        );
        for bad in [
            "",
            "https://evil.example/admin/",
            "//evil.example/admin/",
            "/admin//evil.example",
            "/admin/login",
            "/api/v1/cluster",
            "/admin/\\evil",
        ] {
            assert_eq!(after_login(bad), "/admin/", "{bad}");
        }
    }

    #[test]
    fn post_actions_name_their_page() {
        for (action, page) in [
            ("/admin/jobs/nightly/run", Some("/admin/jobs")),
            ("/admin/kvdb/set", Some("/admin/kvdb")),
            ("/admin/channels/save", Some("/admin/channels")),
            ("/admin/security/partner/delete", Some("/admin/security")),
            ("/admin/deploy/rollback", Some("/admin/deploy")),
            (
                "/admin/services/crm.get/invoke",
                Some("/admin/services/crm.get"),
            ),
            ("/admin/login", None),
            ("/admin/logout", None),
            ("/api/v1/jobs", None),
        ] {
            assert_eq!(page_of(action).as_deref(), page, "{action}");
        }
    }
}
