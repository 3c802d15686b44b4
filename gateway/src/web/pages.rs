//! The web admin's pages. Each handler asks the admin API (in process, [`WebState::api`])
//! and renders what it answered; a failed API call is shown with the API's own message
//! and status.

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

/// What every page shows around its content.
pub struct Chrome {
    pub cluster: String,
    pub csrf: String,
    /// Who is logged in, and their role now.
    pub user: String,
    pub role: crate::admin::users::Role,
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
            .filter(|(_, _, key)| *key != "audit" || self.role == crate::admin::users::Role::Admin)
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
            .users
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

// ---------------------------------------------------------------------------------------
// Login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    cluster: String,
    error: String,
    /// The page asked for before the login (a deep link), to go to after it.
    next: String,
}

/// Where to go after a login: the page asked for when it is one of the web admin's own
/// (`/admin/...`, never another site's or the login itself), else the dashboard.
fn after_login(next: &str) -> &str {
    let own = next.starts_with("/admin/")
        && !next.starts_with("/admin/login")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && !next.chars().any(char::is_control);
    if own { next } else { "/admin/" }
}

async fn login_page(
    State(state): State<WebState>,
    headers: http::HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let next = after_login(q.get("next").map_or("", String::as_str)).to_owned();
    // Already logged in: straight to the page asked for.
    if let Some(id) = super::session::cookie_value(&headers)
        && state.sessions.touch(&id).is_some()
    {
        return redirect(&next);
    }
    render(
        StatusCode::OK,
        &LoginPage {
            cluster: state.options.cluster_name.clone(),
            error: String::new(),
            next,
        },
    )
}

pub(super) fn form_map(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn login(
    State(state): State<WebState>,
    peer: Option<Extension<shoal_common::http::Peer>>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let user = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let next = after_login(form.get("next").map_or("", String::as_str)).to_owned();
    // Repeated failures slow every next attempt down.
    let delay = state.sessions.login_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // The API's own check: the same credentials, the same constant-time comparison.
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let addr = state.admin.client_ip_of(&headers, peer.map(|p| p.0.0.ip()));
    let verdict = state
        .admin
        .users
        .authenticate(&state.admin.verifier, Some(&value), addr)
        .await;
    if let Err(crate::auth::Verdict::Throttled(_) | crate::auth::Verdict::Busy) = verdict {
        state.sessions.login_failed();
        return render(
            StatusCode::TOO_MANY_REQUESTS,
            &LoginPage {
                cluster: state.options.cluster_name.clone(),
                error: "too many attempts; try again in a minute".into(),
                next,
            },
        );
    }
    let Ok(principal) = verdict else {
        state.sessions.login_failed();
        tracing::warn!("web admin login refused");
        return render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                cluster: state.options.cluster_name.clone(),
                error: "wrong user or password".into(),
                next,
            },
        );
    };
    state.sessions.login_succeeded();
    let id = state.sessions.create(&principal.user);
    let secure = state.options.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{}={id}; Path=/admin; HttpOnly; SameSite=Strict{}",
        super::session::COOKIE,
        if secure { "; Secure" } else { "" }
    );
    let mut r = redirect(&next);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(state): State<WebState>, Extension(current): Extension<Current>) -> Response {
    state.sessions.remove(&current.id);
    let mut r = redirect("/admin/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "shoal_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

// ---------------------------------------------------------------------------------------
// Dashboard

struct MemberRow {
    role: String,
    id: String,
    health: &'static str,
    version: String,
    uptime: String,
    load: String,
    addr: String,
    leader: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    c: Chrome,
    members: Vec<MemberRow>,
    rate: String,
    /// Share of server errors (5xx) in the last minute.
    error_rate: String,
    /// Share of client errors (4xx) in the last minute.
    client_error_rate: String,
    services: usize,
}

/// `/ready` of a member's ops address: "ready", "starting" or "down".
async fn probe(addr: String) -> &'static str {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(format!("GET /ready HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
    };
    match tokio::time::timeout(Duration::from_millis(800), attempt).await {
        Ok(Some(true)) => "ready",
        Ok(Some(false)) => "starting",
        _ => "down",
    }
}

fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

async fn dashboard(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
) -> Response {
    let mut c = chrome(&state, &current, "dashboard");
    let cluster = state.get_json("/cluster").await;
    let recent = state.get_json("/requests?limit=1000").await;
    let services = state
        .get_json("/services")
        .await
        .ok()
        .and_then(|v| v["services"].as_array().map(Vec::len))
        .unwrap_or(0);
    let mut members = Vec::new();
    match cluster {
        Ok(v) => {
            let now = shoal_common::members::now_ms();
            let load = state.admin.router.load();
            let leaders = v["leaders"].as_object().cloned().unwrap_or_default();
            let mut probes = Vec::new();
            if let Some(by_role) = v["members"].as_object() {
                for (role, list) in by_role {
                    for m in list.as_array().into_iter().flatten() {
                        let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                        let grpc = s("grpc_addr");
                        let load = if role == "executor" {
                            match load.get(&grpc) {
                                Some((n, false)) => format!("{n} in flight"),
                                Some((n, true)) => format!("{n} in flight (marked down)"),
                                None => "0 in flight".into(),
                            }
                        } else {
                            String::new()
                        };
                        probes.push(probe(s("ops_addr")));
                        members.push(MemberRow {
                            role: role.clone(),
                            leader: leaders.get(role).and_then(Value::as_str) == Some(&s("id")),
                            id: s("id"),
                            health: "",
                            version: s("version"),
                            uptime: human_duration(
                                now - m["started_at_ms"].as_i64().unwrap_or(now),
                            ),
                            load,
                            addr: if grpc.is_empty() { s("ops_addr") } else { grpc },
                        });
                    }
                }
            }
            for (m, h) in members
                .iter_mut()
                .zip(futures::future::join_all(probes).await)
            {
                m.health = h;
            }
        }
        Err(e) => c.error = e,
    }
    let (rate, error_rate) = match recent {
        Ok(v) => {
            let since = shoal_common::members::now_ms() - 60_000;
            let rows: Vec<&Value> = v["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["time_ms"].as_i64().unwrap_or(0) >= since)
                .collect();
            // One definition of failure: server errors (5xx) fail, client errors (4xx)
            // are counted apart.
            let share = |outcome: &str| {
                let n = rows.iter().filter(|r| r["outcome"] == outcome).count();
                if rows.is_empty() {
                    "0 %".to_owned()
                } else {
                    format!("{:.1} %", 100.0 * n as f64 / rows.len() as f64)
                }
            };
            let rate = rows.len() as f64 / 60.0;
            (
                format!("{rate:.2}"),
                (share("server_error"), share("client_error")),
            )
        }
        Err(_) => ("–".into(), ("–".into(), "–".into())),
    };
    let (error_rate, client_error_rate) = error_rate;
    render(
        StatusCode::OK,
        &DashboardPage {
            c,
            members,
            rate,
            error_rate,
            client_error_rate,
            services,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Services

struct ServiceRow {
    name: String,
    href: String,
    summary: String,
    module: String,
    calls: u64,
    errors: u64,
    client_errors: u64,
    mean: String,
    p99: String,
    p99_us: u64,
    executors: String,
}

/// Services shown per page.
pub const SERVICES_PER_PAGE: usize = 50;

/// How the services page sorts: (value, label).
const SERVICE_SORTS: &[(&str, &str)] = &[
    ("name", "module and name"),
    ("calls", "most calls"),
    ("failed", "most failures"),
    ("p99", "slowest p99"),
];

struct Group {
    module: String,
    services: Vec<ServiceRow>,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    c: Chrome,
    q: String,
    groups: Vec<Group>,
    sort: String,
    sorts: &'static [(&'static str, &'static str)],
    failing: bool,
    /// Services matching the filter, the page shown (1-based) and the pages there are.
    total: usize,
    page: usize,
    pages: usize,
    /// The query string of the filter and sort, for the pager's links.
    base_q: String,
}

/// The "application" a module belongs to: its package, or the module itself.
fn group_of(module: &str) -> String {
    match module.split_once('.') {
        Some((package, _)) => package.to_owned(),
        None if module.is_empty() => "(no module)".to_owned(),
        None => module.to_owned(),
    }
}

async fn services(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = chrome(&state, &current, "services");
    let filter = q.get("q").cloned().unwrap_or_default();
    let needle = filter.trim().to_lowercase();
    let sort = q
        .get("sort")
        .filter(|s| SERVICE_SORTS.iter().any(|(v, _)| v == s))
        .cloned()
        .unwrap_or_else(|| "name".into());
    let failing = q.get("failing").is_some_and(|v| v == "1" || v == "on");
    let mut rows: Vec<ServiceRow> = Vec::new();
    match state.get_json("/services").await {
        Ok(v) => {
            for s in v["services"].as_array().into_iter().flatten() {
                let name = s["name"].as_str().unwrap_or_default();
                let module = s["module"].as_str().unwrap_or_default();
                if !needle.is_empty()
                    && !name.to_lowercase().contains(&needle)
                    && !module.to_lowercase().contains(&needle)
                {
                    continue;
                }
                let errors = s["errors"].as_u64().unwrap_or(0);
                let client_errors = s["client_errors"].as_u64().unwrap_or(0);
                if failing && errors == 0 && client_errors == 0 {
                    continue;
                }
                let p99_us = s["p99_us"].as_u64().unwrap_or(0);
                rows.push(ServiceRow {
                    name: name.to_owned(),
                    href: segment(name),
                    summary: s["doc"]["summary"].as_str().unwrap_or_default().to_owned(),
                    module: module.to_owned(),
                    calls: s["invocations"].as_u64().unwrap_or(0),
                    errors,
                    client_errors,
                    mean: micros(s["mean_us"].as_u64().unwrap_or(0)),
                    p99: micros(p99_us),
                    p99_us,
                    executors: s["executors"].as_array().map_or(0, Vec::len).to_string(),
                });
            }
        }
        Err(e) => c.error = e,
    }
    match sort.as_str() {
        "calls" => rows.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.name.cmp(&b.name))),
        "failed" => rows.sort_by(|a, b| {
            (b.errors + b.client_errors)
                .cmp(&(a.errors + a.client_errors))
                .then(a.name.cmp(&b.name))
        }),
        "p99" => rows.sort_by(|a, b| b.p99_us.cmp(&a.p99_us).then(a.name.cmp(&b.name))),
        _ => {
            rows.sort_by(|a, b| (group_of(&a.module), &a.name).cmp(&(group_of(&b.module), &b.name)))
        }
    }
    let total = rows.len();
    let pages = total.div_ceil(SERVICES_PER_PAGE).max(1);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let shown: Vec<ServiceRow> = rows
        .into_iter()
        .skip((page - 1) * SERVICES_PER_PAGE)
        .take(SERVICES_PER_PAGE)
        .collect();
    // By module when sorted by name; one table otherwise (the order is the point).
    let mut groups: Vec<Group> = Vec::new();
    for r in shown {
        let module = if sort == "name" {
            group_of(&r.module)
        } else {
            format!(
                "by {}",
                SERVICE_SORTS
                    .iter()
                    .find(|(v, _)| *v == sort)
                    .map_or("name", |(_, l)| l)
            )
        };
        match groups.last_mut() {
            Some(g) if g.module == module => g.services.push(r),
            _ => groups.push(Group {
                module,
                services: vec![r],
            }),
        }
    }
    let mut base_q = format!("q={}&sort={}", query_value(&filter), query_value(&sort));
    if failing {
        base_q.push_str("&failing=1");
    }
    render(
        StatusCode::OK,
        &ServicesPage {
            c,
            q: filter,
            groups,
            sort,
            sorts: SERVICE_SORTS,
            failing,
            total,
            page,
            pages,
            base_q,
        },
    )
}

struct SioRow {
    name: String,
    kind: String,
    required: &'static str,
    default: String,
}

struct ChannelRow {
    name: String,
    href: String,
    kind: String,
    place: String,
}

struct InvokeResult {
    status: u16,
    status_class: u16,
    time: String,
    cid: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    c: Chrome,
    name: String,
    href: String,
    module: String,
    impl_name: String,
    hash: String,
    summary: String,
    description: String,
    calls: u64,
    errors: u64,
    client_errors: u64,
    mean: String,
    p99: String,
    executors: String,
    sio_input: Vec<SioRow>,
    sio_output: Vec<SioRow>,
    channels: Vec<ChannelRow>,
    source: String,
    payload: String,
    timeout_ms: String,
    result: Option<InvokeResult>,
}

fn sio_rows(v: &Value) -> Vec<SioRow> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| SioRow {
            name: e["name"].as_str().unwrap_or_default().to_owned(),
            kind: e["type"].as_str().unwrap_or_default().to_owned(),
            required: if e["required"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            },
            default: match &e["default"] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
        })
        .collect()
}

/// Where a channel listens, for lists: its path, address or queue.
fn place_of(o: &Value) -> String {
    for k in [
        "url_path", "address", "url", "host", "queue", "header", "username",
    ] {
        if let Some(s) = o[k].as_str()
            && !s.is_empty()
        {
            return s.to_owned();
        }
    }
    String::new()
}

async fn service_page(
    state: &WebState,
    current: &Current,
    name: &str,
    payload: String,
    timeout_ms: String,
    result: Option<InvokeResult>,
) -> Response {
    let mut c = chrome(state, current, "services");
    let info = match state
        .get_json(&format!("/services/{}", segment(name)))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            c.error = e;
            return refused(StatusCode::NOT_FOUND, &c.error);
        }
    };
    let instances = info["instances"].as_array().cloned().unwrap_or_default();
    let first = instances.first().cloned().unwrap_or(Value::Null);
    let sum = |k: &str| {
        instances
            .iter()
            .map(|i| i[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let module = first["module"].as_str().unwrap_or_default().to_owned();
    let source = if module.is_empty() {
        String::new()
    } else {
        state
            .get_json(&format!("/deploy/{}", segment(&module)))
            .await
            .ok()
            .and_then(|m| m["source"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let channels = state
        .get_json("/channels")
        .await
        .map(|v| {
            v["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|ch| ch["service"].as_str() == Some(name))
                .map(|ch| {
                    let n = ch["name"].as_str().unwrap_or_default();
                    ChannelRow {
                        name: n.to_owned(),
                        href: segment(n),
                        kind: ch["type"].as_str().unwrap_or_default().to_owned(),
                        place: place_of(ch),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let page = ServicePage {
        name: name.to_owned(),
        href: segment(name),
        impl_name: first["impl_name"].as_str().unwrap_or_default().to_owned(),
        hash: first["hash"].as_str().unwrap_or_default().to_owned(),
        summary: first["doc"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        description: first["doc"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        calls: sum("invocations"),
        errors: sum("errors"),
        client_errors: sum("client_errors"),
        mean: micros(first["mean_us"].as_u64().unwrap_or(0)),
        p99: micros(first["p99_us"].as_u64().unwrap_or(0)),
        executors: instances
            .iter()
            .filter_map(|i| i["executor"].as_str())
            .collect::<Vec<_>>()
            .join(", "),
        sio_input: sio_rows(&first["simple_io"]["input"]),
        sio_output: sio_rows(&first["simple_io"]["output"]),
        channels,
        source,
        module,
        payload,
        timeout_ms,
        result,
        c,
    };
    render(StatusCode::OK, &page)
}

async fn service(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    service_page(&state, &current, &name, "{}".into(), String::new(), None).await
}

async fn invoke(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let payload = form.get("payload").cloned().unwrap_or_default();
    let timeout_ms = form
        .get("timeout_ms")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let mut headers = Vec::new();
    if !timeout_ms.is_empty() {
        // Said in the form's words (the API would name its header).
        if !timeout_ms.parse::<u64>().is_ok_and(|t| t > 0) {
            let result = InvokeResult {
                status: 400,
                status_class: 4,
                time: "—".into(),
                cid: String::new(),
                headers: Vec::new(),
                body: "Timeout must be a whole number of milliseconds above 0, or empty for the default."
                    .into(),
            };
            return service_page(&state, &current, &name, payload, timeout_ms, Some(result)).await;
        }
        headers.push((crate::admin::TIMEOUT_HEADER, timeout_ms.clone()));
    }
    let started = Instant::now();
    let a = state
        .api(
            Method::POST,
            &format!("/services/{}/invoke", segment(&name)),
            Body::from(payload.clone()),
            &headers,
        )
        .await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&a.body).into_owned();
    let body = serde_json::from_slice::<Value>(&a.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    let result = InvokeResult {
        status: a.status.as_u16(),
        status_class: a.status.as_u16() / 100,
        time: format!("{:.2} ms", elapsed.as_secs_f64() * 1000.0),
        cid: a
            .headers
            .get(crate::respond::CID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        headers: a
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("(binary)").to_owned()))
            .collect(),
        body,
    };
    service_page(&state, &current, &name, payload, timeout_ms, Some(result)).await
}

// ---------------------------------------------------------------------------------------
// Deploy

struct ModuleRow {
    module: String,
    origin: String,
    services: Vec<(String, String)>,
    deployed: String,
    hash: String,
    /// Kept versions, newest first: (short hash, full hash, when, current?).
    history: Vec<(String, String, String, bool)>,
}

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    c: Chrome,
    modules: Vec<ModuleRow>,
    load_errors: Vec<String>,
    deployed: Vec<String>,
    failed: Vec<String>,
}

fn when(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

async fn deploy_view(
    state: &WebState,
    mut c: Chrome,
    status: StatusCode,
    deployed: Vec<String>,
    failed: Vec<String>,
) -> Response {
    let mut modules = Vec::new();
    let mut load_errors = Vec::new();
    match state.get_json("/deploy").await {
        Ok(v) => {
            for m in v["modules"].as_array().into_iter().flatten() {
                let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                let current_hash = s("hash");
                let mut history: Vec<(String, String, String, bool)> = m["history"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        let full = h["hash"].as_str().unwrap_or_default().to_owned();
                        (
                            full.chars().take(12).collect(),
                            full.clone(),
                            when(h["deployed_at_ms"].as_i64().unwrap_or(0)),
                            full == current_hash,
                        )
                    })
                    .collect();
                history.reverse();
                modules.push(ModuleRow {
                    module: s("module"),
                    origin: s("origin"),
                    services: m["services"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|n| (n.to_owned(), segment(n)))
                        .collect(),
                    deployed: when(m["deployed_at_ms"].as_i64().unwrap_or(0)),
                    hash: s("hash").chars().take(12).collect(),
                    history,
                });
            }
            for e in v["errors"].as_array().into_iter().flatten() {
                load_errors.push(match e {
                    Value::String(s) => s.clone(),
                    other => {
                        let module = other["module"].as_str().unwrap_or_default();
                        let msg = other["error"]
                            .as_str()
                            .or_else(|| other["message"].as_str())
                            .unwrap_or_default();
                        if module.is_empty() && msg.is_empty() {
                            other.to_string()
                        } else {
                            format!("{module}: {msg}")
                        }
                    }
                });
            }
        }
        Err(e) => c.error = e,
    }
    // Modules the executors serve that were not deployed through the store: the pickup
    // folder's (and ConfigMaps'), listed too, without a history.
    if let Ok(v) = state.get_json("/services").await {
        let mut pickup: BTreeMap<String, ModuleRow> = BTreeMap::new();
        for svc in v["services"].as_array().into_iter().flatten() {
            let module = svc["module"].as_str().unwrap_or_default();
            if module.is_empty() || modules.iter().any(|m| m.module == module) {
                continue;
            }
            let name = svc["name"].as_str().unwrap_or_default();
            let row = pickup
                .entry(module.to_owned())
                .or_insert_with(|| ModuleRow {
                    module: module.to_owned(),
                    origin: "pickup folder (no history: deploy through the store to keep versions)"
                        .to_owned(),
                    services: Vec::new(),
                    deployed: when(svc["deployed_at_ms"].as_i64().unwrap_or(0)),
                    hash: svc["hash"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(12)
                        .collect(),
                    history: Vec::new(),
                });
            row.services.push((name.to_owned(), segment(name)));
        }
        modules.extend(pickup.into_values());
    }
    render(
        status,
        &DeployPage {
            c,
            modules,
            load_errors,
            deployed,
            failed,
        },
    )
}

async fn deploy_page(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
) -> Response {
    let c = chrome(&state, &current, "deploy");
    deploy_view(&state, c, StatusCode::OK, Vec::new(), Vec::new()).await
}

async fn deploy(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    req: Request,
) -> Response {
    let header_token = req.headers().contains_key(super::CSRF_HEADER);
    let mut c = chrome(&state, &current, "deploy");
    let mut multipart = match Multipart::from_request(req, &state).await {
        Ok(m) => m,
        Err(e) => {
            c.error = format!("the upload is not a multipart form: {e}");
            return deploy_view(&state, c, StatusCode::BAD_REQUEST, Vec::new(), Vec::new()).await;
        }
    };
    let mut files = Vec::new();
    let mut token = String::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let field_name = field.name().unwrap_or_default().to_owned();
                let file_name = field.file_name().map(str::to_owned);
                let data = match field.bytes().await {
                    Ok(d) => d,
                    Err(e) => {
                        c.error = format!("the upload could not be read: {e}");
                        return deploy_view(
                            &state,
                            c,
                            StatusCode::BAD_REQUEST,
                            Vec::new(),
                            Vec::new(),
                        )
                        .await;
                    }
                };
                match (field_name.as_str(), file_name) {
                    (super::CSRF_FIELD, _) => token = String::from_utf8_lossy(&data).into_owned(),
                    ("files", Some(f)) if !f.is_empty() => match String::from_utf8(data.to_vec()) {
                        Ok(source) => files.push(json!({"name": f, "source": source})),
                        Err(_) => {
                            c.error = format!("{f} is not UTF-8 text");
                            return deploy_view(
                                &state,
                                c,
                                StatusCode::BAD_REQUEST,
                                Vec::new(),
                                Vec::new(),
                            )
                            .await;
                        }
                    },
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => {
                c.error = format!("the upload could not be read: {e}");
                return deploy_view(&state, c, StatusCode::BAD_REQUEST, Vec::new(), Vec::new())
                    .await;
            }
        }
    }
    // A form sent without JavaScript carries its CSRF token inside the multipart body.
    if !header_token && !super::session::csrf_matches(&current.session, &token) {
        return refused(
            StatusCode::FORBIDDEN,
            "the request lacks this session's CSRF token; reload the page and try again",
        );
    }
    let a = state
        .api(
            Method::POST,
            "/deploy",
            Body::from(json!({ "files": files }).to_string()),
            &[("content-type", "application/json".into())],
        )
        .await;
    let v = a.json();
    let deployed: Vec<String> = v["deployed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "deployed {} ({}): {}",
                d["module"].as_str().unwrap_or_default(),
                d["hash"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(12)
                    .collect::<String>(),
                d["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let mut failed: Vec<String> = v["failed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if !a.ok() && failed.is_empty() {
        failed.push(a.message());
    }
    deploy_view(&state, c, status_of(&a), deployed, failed).await
}

#[derive(Template)]
#[template(path = "module_version.html")]
struct VersionPage {
    c: Chrome,
    module: String,
    hash: String,
    deployed: String,
    current: bool,
    current_hash: String,
    source: String,
    /// The diff against the current version (None: too long to diff).
    diff: Option<Vec<(char, String)>>,
}

/// `/admin/deploy/{module}/versions/{hash}`: a kept version's source, its diff against
/// the current one, and a button to restore it.
async fn module_version(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path((module, hash)): Path<(String, String)>,
) -> Response {
    let c = chrome(&state, &current, "deploy");
    let now = match state
        .get_json(&format!("/deploy/{}", segment(&module)))
        .await
    {
        Ok(v) => v,
        Err(e) => return refused(StatusCode::NOT_FOUND, &e),
    };
    let a = state
        .api(
            Method::GET,
            &format!(
                "/deploy/{}?version={}",
                segment(&module),
                query_value(&hash)
            ),
            Body::empty(),
            &[],
        )
        .await;
    if !a.ok() {
        return refused(a.status, &a.message());
    }
    let v = a.json();
    let source = v["source"].as_str().unwrap_or_default().to_owned();
    let current_source = now["source"].as_str().unwrap_or_default();
    render(
        StatusCode::OK,
        &VersionPage {
            c,
            module,
            hash: v["hash"].as_str().unwrap_or_default().to_owned(),
            deployed: when(v["deployed_at_ms"].as_i64().unwrap_or(0)),
            current: v["current"].as_bool().unwrap_or(false),
            current_hash: now["hash"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect(),
            diff: super::diff::diff(current_source, &source, 3),
            source,
        },
    )
}

async fn rollback(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let module = form.get("module").cloned().unwrap_or_default();
    let mut req = json!({ "module": module });
    if let Some(to) = form.get("to").filter(|t| !t.is_empty()) {
        req["to"] = json!(to);
    }
    let a = state
        .api(
            Method::POST,
            "/deploy/rollback",
            Body::from(req.to_string()),
            &[],
        )
        .await;
    let mut c = chrome(&state, &current, "deploy");
    if a.ok() {
        let v = a.json();
        let short = |k: &str| {
            v[k].as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect::<String>()
        };
        c.notice = format!(
            "{module} rolled back to {} (it replaced {}; the history keeps both, so this can be undone)",
            short("hash"),
            short("replaced")
        );
    } else {
        c.error = a.message();
    }
    deploy_view(&state, c, status_of(&a), Vec::new(), Vec::new()).await
}

// ---------------------------------------------------------------------------------------
// Config objects: channels, outgoing connections, security definitions, jobs

/// An object kind of the config format, as the web admin edits it.
pub struct Kind {
    /// URL segment under `/admin/` and `/api/v1/`.
    slug: &'static str,
    /// Key of the list in `GET /api/v1/{slug}`.
    list_key: &'static str,
    title: &'static str,
    singular: &'static str,
    schema: fn() -> schemars::Schema,
}

/// The configured kinds' pages, from the one table of kinds
/// ([`shoal_common::objects::kinds`]).
static KINDS: &[Kind] = &[
    Kind::of(&kinds::CHANNEL),
    Kind::of(&kinds::OUTGOING),
    Kind::of(&kinds::SECURITY),
    Kind::of(&kinds::JOB),
];

impl Kind {
    /// A configured kind's page.
    const fn of(info: &'static kinds::KindInfo) -> Kind {
        Kind {
            slug: info.path,
            list_key: info.path,
            title: info.title,
            singular: info.singular,
            schema: match info.schema {
                Some(f) => f,
                None => || schemars::json_schema!({}),
            },
        }
    }

    fn variants(&self) -> Vec<Variant> {
        let variants = forms::variants(&(self.schema)());
        if self.slug == "jobs" {
            return job_variants(variants);
        }
        variants
    }

    /// The type names offered by "New" (one empty name for a kind without types).
    fn types(&self) -> Vec<String> {
        self.variants()
            .into_iter()
            .map(|v| v.tag.unwrap_or_default())
            .collect()
    }
}

/// Jobs are one type with a `type` field; their form is one per type, with the fields of
/// that type only (not all sixteen for every job).
fn job_variants(variants: Vec<Variant>) -> Vec<Variant> {
    let Some(all) = variants.into_iter().next() else {
        return Vec::new();
    };
    const COMMON: &[&str] = &["name", "service", "is_active", "extra", "timeout"];
    let per_type: &[(&str, &str, &[&str])] = &[
        (
            "interval",
            "Runs every so often (weeks, days, hours, minutes and seconds add up), from start_date if given, repeats times if given.",
            &[
                "start_date",
                "weeks",
                "days",
                "hours",
                "minutes",
                "seconds",
                "repeats",
                "timezone",
            ],
        ),
        (
            "cron",
            "Runs at the instants of a cron expression, in a time zone.",
            &["cron", "cron_definition", "timezone"],
        ),
        (
            "one_time",
            "Runs once, at start_date.",
            &["start_date", "timezone"],
        ),
    ];
    per_type
        .iter()
        .map(|(tag, help, own)| Variant {
            tag: Some((*tag).to_owned()),
            help: (*help).to_owned(),
            fields: all
                .fields
                .iter()
                .filter(|f| COMMON.contains(&f.name.as_str()) || own.contains(&f.name.as_str()))
                .cloned()
                .collect(),
        })
        .collect()
}

/// A field's name as people read it: `url_path` → "URL path", `is_active` → "Active".
fn label_of(name: &str) -> String {
    let special = |w: &str| -> Option<&'static str> {
        Some(match w {
            "url" => "URL",
            "http" => "HTTP",
            "https" => "HTTPS",
            "id" => "ID",
            "tls" => "TLS",
            "ca" => "CA",
            "soap" => "SOAP",
            "wsdl" => "WSDL",
            "sql" => "SQL",
            "amqp" => "AMQP",
            "ftp" => "FTP",
            "jwt" => "JWT",
            "jwks" => "JWKS",
            "api" => "API",
            "ms" => "(ms)",
            "secs" => "(seconds)",
            _ => return None,
        })
    };
    let words: Vec<&str> = name
        .strip_prefix("is_")
        .unwrap_or(name)
        .split('_')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let word = match special(w) {
            Some(s) => s.to_owned(),
            None if i == 0 => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
            None => (*w).to_owned(),
        };
        out.push(word);
    }
    out.join(" ")
}

struct ObjectRow {
    name: String,
    href: String,
    kind: String,
    service: String,
    place: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "objects.html")]
struct ObjectsPage {
    c: Chrome,
    slug: &'static str,
    title: &'static str,
    singular: &'static str,
    types: Vec<String>,
    rows: Vec<ObjectRow>,
}

async fn objects_view(
    kind: &'static Kind,
    state: &WebState,
    mut c: Chrome,
    status: StatusCode,
) -> Response {
    if kind.slug == "jobs" {
        return jobs_view(state, c, status).await;
    }
    let mut rows = Vec::new();
    match state.get_json(&format!("/{}", kind.slug)).await {
        Ok(v) => {
            for o in v[kind.list_key].as_array().into_iter().flatten() {
                let name = o["name"].as_str().unwrap_or_default();
                rows.push(ObjectRow {
                    name: name.to_owned(),
                    href: segment(name),
                    kind: o["type"].as_str().unwrap_or_default().to_owned(),
                    service: o["service"].as_str().unwrap_or_default().to_owned(),
                    place: place_of(o),
                    active: o["is_active"].as_bool().unwrap_or(true),
                });
            }
        }
        Err(e) => c.error = e,
    }
    render(
        status,
        &ObjectsPage {
            c,
            slug: kind.slug,
            title: kind.title,
            singular: kind.singular,
            types: kind.types(),
            rows,
        },
    )
}

async fn list_objects(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = chrome(&state, &current, kind.slug);
    if let Some(n) = q.get("saved") {
        c.notice = if q.contains_key("unchanged") {
            format!("{} {n} saved (nothing changed)", kind.singular)
        } else {
            format!("{} {n} saved", kind.singular)
        };
    }
    if let Some(n) = q.get("deleted") {
        c.notice = format!("{} {n} deleted", kind.singular);
    }
    objects_view(kind, &state, c, StatusCode::OK).await
}

struct FormField {
    name: String,
    /// The name as people read it.
    label: String,
    widget: &'static str,
    value: String,
    required: bool,
    help: String,
    options: Vec<String>,
    default: String,
    error: String,
    /// Values to pick from (a `<datalist>`; typing anything else stays possible).
    suggest: Vec<String>,
}

/// What a form's pickers offer: the deployed services and the security definitions.
#[derive(Default)]
struct Picks {
    services: Vec<String>,
    security: Vec<String>,
}

impl Picks {
    async fn load(state: &WebState) -> Picks {
        let names = |v: Result<Value, String>, key: &str| -> Vec<String> {
            let mut n: Vec<String> = v
                .ok()
                .and_then(|v| v[key].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect();
            n.sort();
            n
        };
        Picks {
            services: names(state.get_json("/services").await, "services"),
            security: names(state.get_json("/security").await, "security"),
        }
    }

    fn for_field(&self, name: &str) -> Vec<String> {
        match name {
            "service" => self.services.clone(),
            "security" => self.security.clone(),
            "method" => shoal_common::objects::HTTP_METHODS
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "object_form.html")]
struct ObjectForm {
    c: Chrome,
    slug: &'static str,
    title: &'static str,
    singular: &'static str,
    types: Vec<String>,
    tag: String,
    variant_help: String,
    editing: bool,
    name: String,
    fields: Vec<FormField>,
    /// A warning the user must confirm before the save goes through (an unknown service).
    warning: String,
}

fn widget_name(w: Widget) -> &'static str {
    match w {
        Widget::Text => "text",
        Widget::Secret => "secret",
        Widget::Integer => "integer",
        Widget::Number => "number",
        Widget::Bool => "bool",
        Widget::Select => "select",
        Widget::Json => "json",
    }
}

#[allow(clippy::too_many_arguments)]
fn object_form(
    kind: &'static Kind,
    c: Chrome,
    variant: &Variant,
    values: &BTreeMap<String, String>,
    editing: bool,
    name: &str,
    error: Option<(String, String)>,
    status: StatusCode,
    picks: &Picks,
    warning: String,
) -> Response {
    let mut c = c;
    let mut placed = false;
    let fields = variant
        .fields
        .iter()
        .map(|f| {
            let error = match &error {
                Some((field, message)) if *field == f.name => {
                    placed = true;
                    message.clone()
                }
                _ => String::new(),
            };
            FormField {
                name: f.name.clone(),
                label: label_of(&f.name),
                widget: widget_name(f.widget),
                value: values.get(&f.name).cloned().unwrap_or_default(),
                required: f.required,
                help: f.help.replace('`', ""),
                options: f.options.clone(),
                default: f.default_text(),
                error,
                suggest: picks.for_field(&f.name),
            }
        })
        .collect();
    if let Some((_, message)) = error
        && !placed
    {
        c.error = message;
    }
    render(
        status,
        &ObjectForm {
            c,
            slug: kind.slug,
            title: kind.title,
            singular: kind.singular,
            types: kind.types(),
            tag: variant.tag.clone().unwrap_or_default(),
            variant_help: variant.help.replace('`', ""),
            editing,
            name: name.to_owned(),
            fields,
            warning,
        },
    )
}

async fn new_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let c = chrome(&state, &current, kind.slug);
    let variants = kind.variants();
    let wanted = q.get("type").cloned().unwrap_or_default();
    let Some(variant) = variants
        .iter()
        .find(|v| wanted.is_empty() || v.tag.as_deref() == Some(wanted.as_str()))
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            &format!(
                "no {} type '{wanted}' (types: {})",
                kind.singular,
                kind.types().join(", ")
            ),
        );
    };
    let mut values = forms::defaults(variant);
    // Prefill from the query (the service page's "add a channel" link).
    for f in &variant.fields {
        if let Some(v) = q.get(&f.name) {
            values.insert(f.name.clone(), v.clone());
        }
    }
    let picks = Picks::load(&state).await;
    object_form(
        kind,
        c,
        variant,
        &values,
        false,
        "",
        None,
        StatusCode::OK,
        &picks,
        String::new(),
    )
}

async fn edit_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let c = chrome(&state, &current, kind.slug);
    let object = match state
        .get_json(&format!("/{}/{}", kind.slug, segment(&name)))
        .await
    {
        Ok(v) => v,
        Err(e) => return refused(StatusCode::NOT_FOUND, &e),
    };
    let variants = kind.variants();
    let tag = object["type"].as_str().unwrap_or_default();
    let Some(variant) = variants
        .iter()
        .find(|v| v.tag.is_none() || v.tag.as_deref() == Some(tag))
    else {
        return refused(
            StatusCode::NOT_FOUND,
            &format!("{} {name} has an unknown type '{tag}'", kind.singular),
        );
    };
    let values = forms::encode(variant, &object);
    let picks = Picks::load(&state).await;
    object_form(
        kind,
        c,
        variant,
        &values,
        true,
        &name,
        None,
        StatusCode::OK,
        &picks,
        String::new(),
    )
}

async fn save_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let c = chrome(&state, &current, kind.slug);
    let mut values = form_map(&body);
    values.remove(super::CSRF_FIELD);
    // The form's type; for a job posted without one, its `type` field.
    let tag = values
        .remove("_type")
        .filter(|t| !t.is_empty())
        .or_else(|| values.get("type").cloned())
        .unwrap_or_default();
    let editing = values.remove("_editing");
    let confirmed = values.remove("_confirm_unknown").is_some();
    let picks = Picks::load(&state).await;
    let variants = kind.variants();
    let Some(variant) = variants
        .iter()
        .find(|v| v.tag.is_none() || v.tag.as_deref() == Some(tag.as_str()))
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            &format!("no {} type '{tag}'", kind.singular),
        );
    };
    let name = match &editing {
        Some(n) => n.clone(),
        None => values
            .get("name")
            .map(|n| n.trim().to_owned())
            .unwrap_or_default(),
    };
    if editing.is_some() {
        values.insert("name".into(), name.clone());
    }
    let status = StatusCode::BAD_REQUEST;
    if name.is_empty() {
        let e = Some(("name".to_owned(), "name is required".to_owned()));
        return object_form(
            kind,
            c,
            variant,
            &values,
            false,
            "",
            e,
            status,
            &picks,
            String::new(),
        );
    }
    let object = match forms::decode(variant, &values, editing.is_some()) {
        Ok(o) => o,
        Err(e) => {
            let e = Some((e.field, e.message));
            return object_form(
                kind,
                c,
                variant,
                &values,
                editing.is_some(),
                &name,
                e,
                status,
                &picks,
                String::new(),
            );
        }
    };
    // A service no executor holds: said, and saved only once the user confirms (a
    // channel or job may well come before its service is deployed).
    // (Only for an object that is otherwise valid: a mistake is said first, by the API.)
    let service = values.get("service").map(|s| s.trim()).unwrap_or_default();
    if !confirmed
        && !service.is_empty()
        && !picks.services.iter().any(|s| s == service)
        && locally_valid(kind, &object)
    {
        let warning = format!(
            "No deployed service is named {service}. A {} may come before its service: tick \"Save anyway\" to save it as it is.",
            kind.singular
        );
        return object_form(
            kind,
            c,
            variant,
            &values,
            editing.is_some(),
            &name,
            None,
            StatusCode::OK,
            &picks,
            warning,
        );
    }
    let a = state
        .api(
            Method::PUT,
            &format!("/{}/{}", kind.slug, segment(&name)),
            Body::from(object.to_string()),
            &[("content-type", "application/json".into())],
        )
        .await;
    if a.ok() {
        let unchanged = a.json()["result"] == "unchanged";
        return redirect(&format!(
            "/admin/{}?saved={}{}",
            kind.slug,
            segment(&name),
            if unchanged { "&unchanged=1" } else { "" }
        ));
    }
    let message = a.message();
    let field = forms::field_of_error(variant, &name, &message).unwrap_or_default();
    // Secrets are never sent back to the browser, even as typed.
    for f in &variant.fields {
        if f.widget == Widget::Secret {
            values.remove(&f.name);
        }
    }
    object_form(
        kind,
        c,
        variant,
        &values,
        editing.is_some(),
        &name,
        Some((field, message)),
        status_of(&a),
        &picks,
        String::new(),
    )
}

/// Whether a channel or job the form decoded passes the checks the API would make first
/// (so a warning about its service does not hide a plain mistake).
fn locally_valid(kind: &Kind, object: &Value) -> bool {
    match kind.slug {
        "channels" => serde_json::from_value::<shoal_common::objects::ChannelDef>(object.clone())
            .is_ok_and(|c| c.validate().is_ok()),
        "jobs" => serde_json::from_value::<shoal_common::objects::jobs::JobDef>(object.clone())
            .is_ok_and(|j| j.validate().is_ok()),
        _ => true,
    }
}

async fn delete_object(
    kind: &'static Kind,
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let a = state
        .api(
            Method::DELETE,
            &format!("/{}/{}", kind.slug, segment(&name)),
            Body::empty(),
            &[],
        )
        .await;
    if a.ok() {
        return redirect(&format!("/admin/{}?deleted={}", kind.slug, segment(&name)));
    }
    let mut c = chrome(&state, &current, kind.slug);
    c.error = a.message();
    objects_view(kind, &state, c, status_of(&a)).await
}

// ---------------------------------------------------------------------------------------
// Jobs

struct JobRow {
    name: String,
    href: String,
    service: String,
    schedule: String,
    runs: u64,
    last_run: String,
    next_run: String,
    last_result: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    c: Chrome,
    rows: Vec<JobRow>,
}

/// An RFC 3339 instant as the pages show times (`2026-12-01 11:21:44 UTC`).
fn stamp(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.to_utc().format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

fn schedule_of(j: &Value) -> String {
    let kind = j["type"].as_str().unwrap_or_default();
    match kind {
        "cron" => {
            let expr = j["cron"]
                .as_str()
                .or_else(|| j["cron_definition"].as_str())
                .unwrap_or_default();
            format!("cron {expr}")
        }
        "interval" => {
            let mut parts = Vec::new();
            for (k, unit) in [
                ("weeks", "w"),
                ("days", "d"),
                ("hours", "h"),
                ("minutes", "min"),
                ("seconds", "s"),
            ] {
                if let Some(n) = j[k].as_u64().filter(|n| *n > 0) {
                    parts.push(format!("{n} {unit}"));
                }
            }
            format!("every {}", parts.join(" "))
        }
        "one_time" => format!("once at {}", j["start_date"].as_str().unwrap_or("start")),
        other => other.to_owned(),
    }
}

async fn jobs_view(state: &WebState, mut c: Chrome, status: StatusCode) -> Response {
    let mut rows = Vec::new();
    match state.get_json("/jobs").await {
        Ok(v) => {
            for j in v["jobs"].as_array().into_iter().flatten() {
                let name = j["name"].as_str().unwrap_or_default();
                let r = &j["last_result"];
                let last_result = if r.is_null() {
                    String::new()
                } else {
                    let msg = r["message"].as_str().unwrap_or_default();
                    format!(
                        "{} {}{}",
                        r["result"].as_str().unwrap_or_default(),
                        r["status"].as_u64().unwrap_or(0),
                        if msg.is_empty() {
                            String::new()
                        } else {
                            format!(": {msg}")
                        }
                    )
                };
                rows.push(JobRow {
                    name: name.to_owned(),
                    href: segment(name),
                    service: j["service"].as_str().unwrap_or_default().to_owned(),
                    schedule: schedule_of(j),
                    runs: j["runs"].as_u64().unwrap_or(0),
                    last_run: stamp(j["last_run"].as_str().unwrap_or_default()),
                    next_run: stamp(j["next_run"].as_str().unwrap_or_default()),
                    last_result,
                    active: j["is_active"].as_bool().unwrap_or(true),
                });
            }
        }
        Err(e) => c.error = e,
    }
    render(status, &JobsPage { c, rows })
}

async fn jobs(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = chrome(&state, &current, "jobs");
    if let Some(n) = q.get("saved") {
        c.notice = format!("job {n} saved");
    }
    if let Some(n) = q.get("deleted") {
        c.notice = format!("job {n} deleted");
    }
    jobs_view(&state, c, StatusCode::OK).await
}

async fn run_job(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    let a = state
        .api(
            Method::POST,
            &format!("/jobs/{}/run", segment(&name)),
            Body::empty(),
            &[],
        )
        .await;
    let mut c = chrome(&state, &current, "jobs");
    c.report(&a, || format!("job {name} was started"));
    jobs_view(&state, c, status_of(&a)).await
}

// ---------------------------------------------------------------------------------------
// KVDB

struct KeyView {
    key: String,
    value: String,
    ttl: String,
}

#[derive(Template)]
#[template(path = "kvdb.html")]
struct KvdbPage {
    c: Chrome,
    prefix: String,
    prefix_q: String,
    keys: Vec<(String, String)>,
    truncated: bool,
    view: Option<KeyView>,
    set_key: String,
    set_value: String,
    set_expiry: String,
}

pub(super) fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[allow(clippy::too_many_arguments)]
async fn kvdb_view(
    state: &WebState,
    mut c: Chrome,
    prefix: String,
    key: Option<String>,
    set: (String, String, String),
    status: StatusCode,
) -> Response {
    let mut keys = Vec::new();
    let mut truncated = false;
    match state
        .get_json(&format!("/kvdb?limit=200&prefix={}", query_value(&prefix)))
        .await
    {
        Ok(v) => {
            truncated = v["truncated"].as_bool().unwrap_or(false);
            keys = v["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| (k.to_owned(), query_value(k)))
                .collect();
        }
        Err(e) => c.error = e,
    }
    let mut view = None;
    if let Some(k) = key.filter(|k| !k.is_empty()) {
        match state.get_json(&format!("/kvdb/{}", segment(&k))).await {
            Ok(v) => {
                let ttl = v["ttl_ms"].as_i64().unwrap_or(-1);
                view = Some(KeyView {
                    key: k,
                    value: v["value"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            v["value_base64"]
                                .as_str()
                                .map(|b| format!("(binary, base64) {b}"))
                        })
                        .unwrap_or_default(),
                    ttl: if ttl < 0 {
                        "no expiry".to_owned()
                    } else {
                        format!("expires in {:.1} s", ttl as f64 / 1000.0)
                    },
                });
            }
            Err(e) => c.error = e,
        }
    }
    render(
        status,
        &KvdbPage {
            c,
            prefix_q: query_value(&prefix),
            prefix,
            keys,
            truncated,
            view,
            set_key: set.0,
            set_value: set.1,
            set_expiry: set.2,
        },
    )
}

async fn kvdb(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let c = chrome(&state, &current, "kvdb");
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let key = q.get("key").cloned();
    kvdb_view(&state, c, prefix, key, Default::default(), StatusCode::OK).await
}

async fn kvdb_set(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (key, value, expiry) = (get("key"), get("value"), get("expiry").trim().to_owned());
    let mut c = chrome(&state, &current, "kvdb");
    let path = if expiry.is_empty() {
        format!("/kvdb/{}", segment(&key))
    } else {
        format!("/kvdb/{}?expiry={}", segment(&key), query_value(&expiry))
    };
    let a = if key.is_empty() {
        // The API's own answer for an empty key.
        state.api(Method::PUT, "/kvdb/", Body::empty(), &[]).await
    } else {
        state
            .api(Method::PUT, &path, Body::from(value.clone()), &[])
            .await
    };
    if a.ok() {
        c.notice = format!("{key} set");
        kvdb_view(
            &state,
            c,
            String::new(),
            Some(key),
            Default::default(),
            StatusCode::OK,
        )
        .await
    } else {
        c.error = if key.is_empty() {
            "a key has 1 to 1024 characters".to_owned()
        } else {
            a.message()
        };
        kvdb_view(
            &state,
            c,
            String::new(),
            None,
            (key, value, expiry),
            status_of(&a),
        )
        .await
    }
}

async fn kvdb_delete(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    body: Bytes,
) -> Response {
    let form = form_map(&body);
    let key = form.get("key").cloned().unwrap_or_default();
    let a = state
        .api(
            Method::DELETE,
            &format!("/kvdb/{}", segment(&key)),
            Body::empty(),
            &[],
        )
        .await;
    let mut c = chrome(&state, &current, "kvdb");
    c.report(&a, || format!("{key} deleted"));
    kvdb_view(
        &state,
        c,
        String::new(),
        None,
        Default::default(),
        status_of(&a),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Live tail

/// Rows the tail page keeps.
const TAIL_ROWS: usize = 200;

struct TailRow {
    time: String,
    cid: String,
    href: String,
    channel: String,
    service: String,
    status: u64,
    status_class: u64,
    duration: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "tail.html")]
struct TailPage {
    c: Chrome,
    service: String,
    failed: bool,
    stream_q: String,
    keep: usize,
    rows: Vec<TailRow>,
}

/// A reason, cut for a table cell (the call page shows it whole).
fn short_reason(r: &Value) -> String {
    let m = r["message"].as_str().unwrap_or_default();
    let mut short: String = m.chars().take(120).collect();
    if short.len() < m.len() {
        short.push('…');
    }
    short
}

async fn tail(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut c = chrome(&state, &current, "tail");
    let service = q.get("service").cloned().unwrap_or_default();
    let failed = q.get("failed").is_some_and(|v| v == "true" || v == "on");
    let filter = format!(
        "service={}{}",
        query_value(&service),
        if failed { "&failed=true" } else { "" }
    );
    let mut rows = Vec::new();
    match state
        .get_json(&format!("/requests?limit=50&{filter}"))
        .await
    {
        Ok(v) => {
            for r in v["requests"].as_array().into_iter().flatten().rev() {
                let status = r["status"].as_u64().unwrap_or(0);
                let cid = r["cid"].as_str().unwrap_or_default().to_owned();
                rows.push(TailRow {
                    time: chrono::DateTime::from_timestamp_millis(
                        r["time_ms"].as_i64().unwrap_or(0),
                    )
                    .map(|t| t.format("%H:%M:%S%.3f").to_string())
                    .unwrap_or_default(),
                    href: segment(&cid),
                    cid,
                    channel: r["channel"].as_str().unwrap_or_default().to_owned(),
                    service: r["service"].as_str().unwrap_or_default().to_owned(),
                    status,
                    status_class: status / 100,
                    duration: micros(r["duration_us"].as_u64().unwrap_or(0)),
                    reason: short_reason(r),
                });
            }
        }
        Err(e) => c.error = e,
    }
    render(
        StatusCode::OK,
        &TailPage {
            c,
            stream_q: format!("?{filter}"),
            service,
            failed,
            keep: TAIL_ROWS,
            rows,
        },
    )
}

/// One fact of a call page.
struct Fact {
    name: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPage {
    c: Chrome,
    cid: String,
    status: u64,
    status_class: u64,
    facts: Vec<Fact>,
    service_href: String,
    trace_url: String,
    traceback: String,
    logs: Vec<String>,
}

/// `/admin/calls/{cid}`: one call in full (what `GET /api/v1/requests/{cid}` answers).
async fn call_page(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(cid): Path<String>,
) -> Response {
    let mut c = chrome(&state, &current, "tail");
    let r = match state
        .get_json(&format!("/requests/{}", segment(&cid)))
        .await
    {
        Ok(v) => v["request"].clone(),
        Err(e) => {
            c.error = e;
            return refused(StatusCode::NOT_FOUND, &c.error);
        }
    };
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    let status = r["status"].as_u64().unwrap_or(0);
    let time = chrono::DateTime::from_timestamp_millis(r["time_ms"].as_i64().unwrap_or(0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_default();
    let hops = r["hops"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!(
                "{} {}",
                h["hop"].as_str().unwrap_or_default(),
                micros(h["us"].as_u64().unwrap_or(0))
            )
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let outcome = match r["outcome"].as_str().unwrap_or_default() {
        "server_error" => "failed (server error)",
        "client_error" => "refused (client error)",
        _ => "ok",
    };
    let channel = match (s("channel"), s("channel_type")) {
        (n, t) if n.is_empty() => format!("none matched ({t})"),
        (n, t) => format!("{n} ({t})"),
    };
    let facts = [
        ("Time", time),
        ("Outcome", outcome.to_owned()),
        ("Error code", s("code")),
        ("Reason", s("message")),
        ("Answered by", s("answered_by")),
        ("Service", s("service")),
        ("Channel", channel),
        ("Request", s("request")),
        ("Client", s("client")),
        ("Hops", hops),
        ("Trace id", s("trace_id")),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(name, value)| Fact { name, value })
    .collect();
    // Only a link to a web address (a template with another scheme is not followed).
    let trace_url = s("trace_url");
    let trace_url = if trace_url.starts_with("https://") || trace_url.starts_with("http://") {
        trace_url
    } else {
        String::new()
    };
    render(
        StatusCode::OK,
        &CallPage {
            cid: s("cid"),
            status,
            status_class: status / 100,
            facts,
            service_href: segment(&s("service")),
            trace_url,
            traceback: s("traceback"),
            logs: r["logs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect(),
            c,
        },
    )
}

/// The API's event stream (`GET /api/v1/tail`), passed through as it comes.
async fn tail_stream(
    State(state): State<WebState>,
    Extension(_current): Extension<Current>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let service = q.get("service").cloned().unwrap_or_default();
    let failed = q.get("failed").is_some_and(|v| v == "true" || v == "on");
    let path = format!(
        "/tail?service={}{}",
        query_value(&service),
        if failed { "&failed=true" } else { "" }
    );
    state.api_stream(Method::GET, &path).await
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
