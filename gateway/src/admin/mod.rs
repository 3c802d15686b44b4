//! The admin REST API (`/api/v1/...`) on its own listener, beside `/live`, `/ready` and
//! `/metrics` (unauthenticated). Callers authenticate as a user — HTTP Basic Auth with
//! the bootstrap `admin` and the admin password, or a user of [`users`] — or with an API
//! token (`Authorization: Bearer ...`); each route needs a role ([`users::required`]) and
//! every change is audited ([`audit`]).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderValue, Request, StatusCode, header};
use serde_json::{Value, json};
use shoal_common::members::{Member, role};
use shoal_common::store::Store;
use shoal_common::{ErrorCode, ShoalError, leader};
use shoal_proto::executor::v1 as pb;

use crate::respond;
use shoal_common::routing::Router as ExecRouter;

pub mod audit;
pub mod jobs;
pub mod kvdb;
pub mod objects;
pub mod openapi;
pub mod requests;
pub mod users;
pub mod web;

/// Admin request bodies above this are refused with 413.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// What admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// Users, roles and tokens (the bootstrap admin included).
    pub users: users::Directory,
    /// Where changes are recorded.
    pub audit: audit::AuditLog,
    /// Credential checks of the admin listener (bounded, throttled; its own slots).
    pub verifier: crate::auth::Verifier,
    /// Proxies whose forwarding headers name the client.
    pub trusted: crate::auth::client::TrustedProxies,
    pub router: ExecRouter,
    pub store: Store,
    /// Seals secrets that must be read back (WS-Security PasswordDigest).
    pub secret_key: Option<crate::secret::SecretKey>,
    /// The cluster's schedulers (for "run job now").
    pub schedulers: shoal_common::peers::Peers,
    /// The cluster's KVDB proxies (for `kvdb/{key}`).
    pub kvdb: shoal_common::peers::Peers,
    /// This gateway's recent invocations (`requests`, `tail`).
    pub tail: crate::tail::Tail,
    /// How long a request body may take to arrive (408 after).
    pub body_read_timeout: std::time::Duration,
    /// A trace UI's address for one trace, `{trace_id}` replaced (empty: no link).
    pub trace_link: String,
}

/// The API's routes for `/api/v1` twice: behind authentication and the body limits (what
/// the admin listener serves), and without the authentication, for the web admin to call
/// in process past its own session check (its session names the [`users::Principal`]),
/// so that every rule and error is the API's own. Both check roles and audit changes.
pub fn api(state: AdminState) -> (Router, Router) {
    let guarded = api_routes()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::authorize,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .with_state(state.clone());
    let inner = api_routes()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::authorize,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    (guarded, inner)
}

/// Every `/api/v1` route, without its guards (see [`router`]).
fn api_routes() -> Router<AdminState> {
    Router::new()
        .route("/services", get(list_services))
        .route("/services/{name}", get(get_service))
        .route("/services/{name}/invoke", post(invoke))
        .route("/cluster", get(cluster))
        .route("/requests", get(crate::admin::requests::recent))
        .route("/requests/{cid}", get(crate::admin::requests::one))
        .route("/tail", get(crate::admin::requests::follow))
        .route("/deploy", get(list_modules).post(deploy))
        .route("/deploy/rollback", post(rollback))
        .route("/deploy/{module}", get(get_module))
        .route("/apply", post(crate::admin::objects::apply))
        .route("/export", get(crate::admin::objects::export))
        .route("/openapi.json", get(crate::admin::openapi::openapi))
        .route("/channels", get(crate::admin::objects::list_channels))
        .route(
            "/channels/{name}",
            get(crate::admin::objects::get_channel)
                .put(crate::admin::objects::put_channel)
                .delete(crate::admin::objects::delete_channel),
        )
        .route(
            "/channels/{name}/wsdl",
            get(crate::admin::objects::channel_wsdl),
        )
        .route("/outgoing", get(crate::admin::objects::list_outgoing))
        .route(
            "/outgoing/{name}",
            get(crate::admin::objects::get_outgoing)
                .put(crate::admin::objects::put_outgoing)
                .delete(crate::admin::objects::delete_outgoing),
        )
        .route("/security", get(crate::admin::objects::list_security))
        .route(
            "/security/{name}",
            get(crate::admin::objects::get_security)
                .put(crate::admin::objects::put_security)
                .delete(crate::admin::objects::delete_security),
        )
        .route("/jobs", get(crate::admin::jobs::list_jobs))
        .route(
            "/jobs/{name}",
            get(crate::admin::jobs::get_job)
                .put(crate::admin::jobs::put_job)
                .delete(crate::admin::jobs::delete_job),
        )
        .route("/jobs/{name}/run", post(crate::admin::jobs::run_job))
        .route(
            "/users",
            get(crate::admin::users::list_users).post(crate::admin::users::create_user),
        )
        .route(
            "/users/{name}",
            axum::routing::put(crate::admin::users::update_user)
                .delete(crate::admin::users::delete_user),
        )
        .route(
            "/tokens",
            get(crate::admin::users::list_tokens).post(crate::admin::users::create_token),
        )
        .route(
            "/tokens/{id}",
            axum::routing::delete(crate::admin::users::revoke_token),
        )
        .route("/audit", get(crate::admin::audit::list))
        .route("/kvdb", get(crate::admin::kvdb::list_keys))
        .route(
            "/kvdb/{*key}",
            get(crate::admin::kvdb::get_key)
                .put(crate::admin::kvdb::put_key)
                .delete(crate::admin::kvdb::delete_key),
        )
        .fallback(not_found)
}

/// Authenticates a request (a user's password or an API token) and hands the
/// [`users::Principal`] on; refuses it otherwise.
async fn authenticate(
    State(state): State<AdminState>,
    mut req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let addr = state.client_ip(&req);
    match state.users.authenticate(&state.verifier, value, addr).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(verdict) => refusal(verdict),
    }
}

/// The answer to admin credentials that did not pass: 401 with the challenge, 429 when
/// throttled, 503 when no verification slot came free.
pub(crate) fn refusal(verdict: crate::auth::Verdict) -> Response {
    use crate::auth::Verdict;
    let (error, wait) = match verdict {
        Verdict::Throttled(wait) => (
            ShoalError::new(
                ErrorCode::TooManyRequests,
                "too many failed attempts; retry later",
            ),
            Some(wait),
        ),
        Verdict::Busy => (
            ShoalError::new(
                ErrorCode::Unavailable,
                "credentials cannot be checked now; retry shortly",
            ),
            Some(std::time::Duration::from_secs(1)),
        ),
        _ => (
            ShoalError::new(
                ErrorCode::Unauthorized,
                "credentials required: HTTP Basic Auth (user and password) or an API token (Authorization: Bearer)",
            ),
            None,
        ),
    };
    let mut resp = respond::error(&error);
    match wait {
        Some(w) => {
            if let Ok(v) = HeaderValue::from_str(&w.as_secs().max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        None => {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Shoal admin\""),
            );
        }
    }
    resp
}

impl AdminState {
    /// The client's address of a request (the peer, or the one trusted proxies report).
    pub fn client_ip(&self, req: &Request<axum::body::Body>) -> std::net::IpAddr {
        let peer = req
            .extensions()
            .get::<shoal_common::http::Peer>()
            .map(|p| p.0.ip());
        self.client_ip_of(req.headers(), peer)
    }

    /// As [`AdminState::client_ip`], from the headers and the peer.
    pub fn client_ip_of(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> std::net::IpAddr {
        self.trusted.client_ip(
            headers,
            peer.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        )
    }
}

/// Reads the request body before the handlers do: within the admin API's limit (413
/// after a bounded drain, so clients read the answer instead of a connection reset) and
/// within the body read timeout (408), so a body that never comes holds nothing.
async fn read_body(
    State(state): State<AdminState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        respond::error(&ShoalError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is over the admin API's limit of {MAX_BODY} bytes"),
        ))
    };
    // Declared over the limit while the client waits for `100 Continue`: answer now,
    // before the body is asked for.
    if declared.is_some_and(|n| n > MAX_BODY as u64)
        && crate::body::expects_continue(&parts.headers)
    {
        return too_large();
    }
    match crate::body::read_limited(body, MAX_BODY as u64, state.body_read_timeout, None).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(crate::body::BodyError::TooLarge) => too_large(),
        Err(crate::body::BodyError::TimedOut) => respond::error(&ShoalError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                state.body_read_timeout.as_secs()
            ),
        )),
        Err(crate::body::BodyError::Read(e)) => respond::error(&ShoalError::new(
            ErrorCode::BadRequest,
            format!("cannot read the request body: {e}"),
        )),
        // The admin API's bodies take no room in the channels' budget (none was given).
        Err(crate::body::BodyError::NoRoom) => respond::error(&ShoalError::new(
            ErrorCode::Unavailable,
            "no room for the request body; retry shortly",
        )),
    }
}

async fn not_found(req: Request<axum::body::Body>) -> Response {
    respond::error(&ShoalError::new(
        ErrorCode::NotFound,
        format!(
            "no admin API endpoint {} {}",
            req.method(),
            req.uri().path()
        ),
    ))
}

fn service_json(m: &Member, s: &pb::ServiceInfo) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "name": s.name,
        "module": s.module,
        "impl_name": s.impl_name,
        "hash": s.hash,
        "deployed_at_ms": s.deployed_at_ms,
        "executor": m.id,
        "invocations": s.invocations,
        "errors": s.errors,
        "client_errors": s.client_errors,
        "mean_us": s.mean_us,
        "p99_us": s.p99_us,
        "simple_io": parse(&s.simple_io_json),
        "doc": parse(&s.doc_json),
    })
}

/// Services across executors: one entry per service, with counts summed and the executors
/// that hold it.
async fn list_services(State(state): State<AdminState>) -> Response {
    let mut by_name: BTreeMap<String, Value> = BTreeMap::new();
    for (member, services) in state.router.list_services().await {
        for s in services {
            let entry = by_name.entry(s.name.clone()).or_insert_with(|| {
                let mut v = service_json(&member, &s);
                v["executors"] = json!([]);
                v["invocations"] = json!(0);
                v["errors"] = json!(0);
                v["client_errors"] = json!(0);
                v
            });
            if let Some(list) = entry["executors"].as_array_mut() {
                list.push(json!(member.id));
            }
            let inv = entry["invocations"].as_u64().unwrap_or(0) + s.invocations;
            let err = entry["errors"].as_u64().unwrap_or(0) + s.errors;
            let client = entry["client_errors"].as_u64().unwrap_or(0) + s.client_errors;
            entry["invocations"] = json!(inv);
            entry["errors"] = json!(err);
            entry["client_errors"] = json!(client);
            if let Some(obj) = entry.as_object_mut() {
                obj.remove("executor");
            }
        }
    }
    Json(json!({"services": by_name.into_values().collect::<Vec<_>>()})).into_response()
}

async fn get_service(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let mut found = Vec::new();
    for (member, services) in state.router.list_services().await {
        found.extend(
            services
                .iter()
                .filter(|s| s.name == name)
                .map(|s| service_json(&member, s)),
        );
    }
    if found.is_empty() {
        return respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            format!("no such service: {name}"),
        ));
    }
    Json(json!({"name": name, "instances": found})).into_response()
}

/// `POST /api/v1/services/{name}/invoke`: the JSON body is the payload; the answer is what
/// a JSON channel would answer.
async fn invoke(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let cid = respond::cid_from(&headers);
    let timeout_ms = match headers
        .get(TIMEOUT_HEADER)
        .map(|v| v.to_str().map(str::parse::<u64>))
    {
        None => 0,
        Some(Ok(Ok(ms))) if ms > 0 => ms,
        Some(_) => {
            return respond::error(
                &ShoalError::new(
                    ErrorCode::BadRequest,
                    format!("{TIMEOUT_HEADER} must be a whole number of milliseconds above 0"),
                )
                .with_cid(cid),
            );
        }
    };
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        Bytes::new()
    } else {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return respond::error(
                &ShoalError::new(
                    ErrorCode::BadRequest,
                    format!("request body is not valid JSON: {e}"),
                )
                .with_cid(cid),
            );
        }
        // The same buffer as raw_request: the router sends it once.
        body.clone()
    };
    let req = shoal_common::invocation::Invocation::new(name, cid.clone())
        .channel("admin.invoke", "admin", "json")
        .caller("admin", crate::auth::ADMIN_USER)
        .trace(shoal_common::trace::from_headers(&headers).as_ref())
        .payload(payload)
        .raw_request(body)
        .timeout_ms(timeout_ms)
        .build();
    match state.router.invoke(req).await {
        Ok(resp) => respond::json_channel(resp),
        Err(e) => respond::error(&e.with_cid(cid)),
    }
}

/// One module in a deploy request.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployFile {
    /// File name (`crm.py`) or module name (`crm`).
    name: String,
    source: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    files: Vec<DeployFile>,
}

/// Longest module name: its file, `NAME.py`, must fit the filesystem's 255 bytes.
pub const MAX_MODULE_NAME: usize = 252;

fn module_of(name: &str) -> Result<String, ShoalError> {
    // A file name, not a path: folders (`../x.py`, `a/b.py`) are refused, not stripped.
    if name.contains(['/', '\\']) {
        return Err(ShoalError::new(
            ErrorCode::BadRequest,
            format!("'{name}' is a path; send the module's file name (crm.py) or its name (crm)"),
        ));
    }
    let stem = name.strip_suffix(".py").unwrap_or(name);
    let valid = !stem.is_empty()
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !stem.starts_with(|c: char| c.is_ascii_digit());
    if valid && stem.len() > MAX_MODULE_NAME {
        return Err(ShoalError::new(
            ErrorCode::BadRequest,
            format!(
                "module name of {} characters is over the limit of {MAX_MODULE_NAME} (its file name, with .py, must fit the filesystem's 255 bytes)",
                stem.len()
            ),
        ));
    }
    if valid {
        Ok(stem.to_owned())
    } else {
        Err(ShoalError::new(
            ErrorCode::BadRequest,
            format!("'{name}' is not a Python module file name (letters, digits and _ only, .py)"),
        ))
    }
}

/// `POST /api/v1/deploy` `{"files": [{"name": "crm.py", "source": "..."}]}`: each module is
/// imported on one live executor first; if it imports, it is stored in the config store
/// (with its history) and every executor loads it. A module that fails to import is
/// answered with 400 and the error with its line; nothing is stored and the previous
/// version keeps serving.
async fn deploy(State(state): State<AdminState>, body: Bytes) -> Response {
    let parsed: DeployBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::BadRequest,
                format!("deploy body must be {{\"files\": [{{\"name\", \"source\"}}]}}: {e}"),
            ));
        }
    };
    if parsed.files.is_empty() {
        return respond::error(&ShoalError::new(
            ErrorCode::BadRequest,
            "no files to deploy",
        ));
    }
    // Validate every file on an executor first, then publish what imported at once.
    // Validation runs 8 at a time; a file that failed in that pass is tried
    // again alone, in order, since it may import a file validated after it.
    let mut prepared = Vec::with_capacity(parsed.files.len());
    for f in parsed.files {
        let module = match module_of(&f.name) {
            Ok(m) => m,
            Err(e) => return respond::error(&e),
        };
        let origin = if f.name.ends_with(".py") {
            f.name.clone()
        } else {
            format!("{module}.py")
        };
        prepared.push((f.name, module, origin, f.source));
    }
    let requests: Vec<pb::DeployRequest> = prepared.iter().map(deploy_request).collect();
    let mut results: Vec<Result<pb::DeployResponse, ShoalError>> = {
        use futures::StreamExt;
        let router = state.router.clone();
        futures::stream::iter(requests.into_iter().map(move |r| {
            let router = router.clone();
            async move { router.deploy_on_one(r).await }
        }))
        .buffered(8)
        .collect()
        .await
    };
    for (i, p) in prepared.iter().enumerate() {
        let failed = match &results[i] {
            Ok(r) => r.error.is_some(),
            Err(_) => true,
        };
        if failed {
            results[i] = state.router.deploy_on_one(deploy_request(p)).await;
        }
    }
    // What imported is published (the validating executor has loaded it, so the store
    // must say so too); what did not is reported, and the old version keeps serving.
    let mut deployed = Vec::new();
    let mut records = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for ((name, module, origin, source), check) in prepared.into_iter().zip(results) {
        let resp = match check {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {}", e.message));
                continue;
            }
        };
        if let Some(err) = resp.error {
            failures.push(format!("{name} did not import: {}", err.message));
            continue;
        }
        let rec = shoal_common::objects::modules::ModuleRecord {
            module: module.clone(),
            hash: shoal_common::objects::modules::source_hash(&source),
            source,
            origin,
            deployed_at_ms: shoal_common::members::now_ms(),
            services: resp.services.clone(),
        };
        deployed.push(json!({"module": module, "hash": rec.hash, "services": resp.services}));
        records.push(rec);
    }
    if !records.is_empty()
        && let Err(e) = shoal_common::objects::modules::publish_many(&state.store, &records).await
    {
        return respond::error(&ShoalError::new(
            ErrorCode::Unavailable,
            format!("config store: {e}"),
        ));
    }
    for rec in &records {
        tracing::info!(module = %rec.module, hash = %rec.hash, "module published");
    }
    if let Some(first) = failures.first() {
        let message = if failures.len() == 1 {
            first.clone()
        } else {
            format!("{first} (and {} more failed)", failures.len() - 1)
        };
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {"code": "bad_request", "message": message, "cid": ""},
                "failed": failures,
                "deployed": deployed,
            })),
        )
            .into_response();
    }
    Json(json!({"deployed": deployed})).into_response()
}

/// The validation request of one prepared file: (file name, module, origin, source).
fn deploy_request(
    (_, module, origin, source): &(String, String, String, String),
) -> pb::DeployRequest {
    pb::DeployRequest {
        module: module.clone(),
        source: source.clone(),
        origin: origin.clone(),
    }
}

/// `GET /api/v1/deploy`: deployed modules (without their source) and their history.
async fn list_modules(State(state): State<AdminState>) -> Response {
    let (entries, _) = match state.store.list("modules/").await {
        Ok(l) => l,
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::Unavailable,
                format!("config store: {e}"),
            ));
        }
    };
    let mut modules = Vec::new();
    for e in entries {
        let Ok(rec) =
            serde_json::from_slice::<shoal_common::objects::modules::ModuleRecord>(&e.value)
        else {
            continue;
        };
        let history = shoal_common::objects::modules::history(&state.store, &rec.module)
            .await
            .unwrap_or_default();
        modules.push(json!({
            "module": rec.module,
            "hash": rec.hash,
            "origin": rec.origin,
            "deployed_at_ms": rec.deployed_at_ms,
            "services": rec.services,
            "history": history.iter().map(|h| json!({"hash": h.hash, "deployed_at_ms": h.deployed_at_ms})).collect::<Vec<_>>(),
        }));
    }
    let errors: Vec<serde_json::Value> = match state.store.list("deploy-errors/").await {
        Ok((entries, _)) => entries
            .iter()
            .filter_map(|e| serde_json::from_slice(&e.value).ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    Json(json!({"modules": modules, "errors": errors})).into_response()
}

/// `GET /api/v1/deploy/{module}`: one deployed module with its source and history;
/// `?version=HASH` (7+ characters of a hash): that kept version's source instead.
async fn get_module(
    State(state): State<AdminState>,
    Path(module): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let version = match crate::admin::objects::query_params(raw.as_deref(), &["version"]) {
        Ok(p) => p.into_iter().next().map(|(_, v)| v),
        Err(e) => return respond::error(&ShoalError::new(ErrorCode::BadRequest, e)),
    };
    // Dotted names too: modules of a pickup package (`crm.billing`).
    let valid = (1..=MAX_MODULE_NAME).contains(&module.len())
        && module
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid {
        return respond::error(&ShoalError::new(
            ErrorCode::BadRequest,
            format!("'{module}' is not a module name (letters, digits, _ and dots)"),
        ));
    }
    let rec = match state.store.get(&format!("modules/{module}")).await {
        Ok(Some(e)) => {
            serde_json::from_slice::<shoal_common::objects::modules::ModuleRecord>(&e.value).ok()
        }
        Ok(None) => None,
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::Unavailable,
                format!("config store: {e}"),
            ));
        }
    };
    let Some(rec) = rec else {
        // Not deployed through the store (the pickup folder, a static module): the
        // executors know its source.
        return match state.router.get_source(&module).await {
            Some(s) => Json(json!({
                "module": module,
                "hash": s.hash,
                "origin": s.origin,
                "source": s.source,
                "history": [],
            }))
            .into_response(),
            None => respond::error(&ShoalError::new(
                ErrorCode::NotFound,
                format!("no deployed module {module}"),
            )),
        };
    };
    let history = shoal_common::objects::modules::history(&state.store, &rec.module)
        .await
        .unwrap_or_default();
    if let Some(v) = version {
        return match history
            .iter()
            .rev()
            .find(|h| v.len() >= 7 && h.hash.starts_with(&v))
        {
            Some(h) => Json(json!({
                "module": h.module,
                "hash": h.hash,
                "origin": h.origin,
                "deployed_at_ms": h.deployed_at_ms,
                "services": h.services,
                "source": h.source,
                "current": h.hash == rec.hash,
            }))
            .into_response(),
            None => respond::error(&ShoalError::new(
                ErrorCode::NotFound,
                format!("module {module} has no kept version {v} (7 or more characters of a hash)"),
            )),
        };
    }
    Json(json!({
        "module": rec.module,
        "hash": rec.hash,
        "origin": rec.origin,
        "deployed_at_ms": rec.deployed_at_ms,
        "services": rec.services,
        "source": rec.source,
        "history": history.iter().map(|h| json!({"hash": h.hash, "deployed_at_ms": h.deployed_at_ms})).collect::<Vec<_>>(),
    }))
    .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    module: String,
    /// The kept version to restore, by its hash (or a 7+ character prefix); default: the
    /// one before the current.
    #[serde(default)]
    to: Option<String>,
}

/// `POST /api/v1/deploy/rollback` `{"module": "crm", "to": HASH?}`: a kept deployment —
/// the one before the current, or the one named by its hash (a newer one too: a rollback
/// is undone this way) — becomes current again on every executor. The history is kept.
async fn rollback(State(state): State<AdminState>, body: Bytes) -> Response {
    let parsed: RollbackBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::BadRequest,
                format!("rollback body must be {{\"module\": NAME, \"to\": HASH (optional)}}: {e}"),
            ));
        }
    };
    let module = match module_of(&parsed.module) {
        Ok(m) => m,
        Err(e) => return respond::error(&e),
    };
    let before = match state.store.get(&format!("modules/{module}")).await {
        Ok(e) => e
            .and_then(|e| {
                serde_json::from_slice::<shoal_common::objects::modules::ModuleRecord>(&e.value)
                    .ok()
            })
            .map(|r| r.hash),
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::Unavailable,
                format!("config store: {e}"),
            ));
        }
    };
    match shoal_common::objects::modules::rollback(&state.store, &module, parsed.to.as_deref())
        .await
    {
        Ok(Some(rec)) => Json(json!({"module": module, "hash": rec.hash,
            "deployed_at_ms": rec.deployed_at_ms, "replaced": before}))
        .into_response(),
        Ok(None) => respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            match &parsed.to {
                Some(h) => format!(
                    "module {module} has no kept version {h} (give 7 or more characters of a hash its history lists)"
                ),
                None => format!("module {module} has no earlier deployment to roll back to"),
            },
        )),
        Err(e) => respond::error(&ShoalError::new(
            ErrorCode::Unavailable,
            format!("config store: {e}"),
        )),
    }
}

/// `GET /api/v1/cluster`: members by role, with leaders.
async fn cluster(State(state): State<AdminState>) -> Response {
    let (entries, _) = match state.store.list("members/").await {
        Ok(l) => l,
        Err(e) => {
            return respond::error(&ShoalError::new(
                ErrorCode::Unavailable,
                format!("config store unavailable: {e}"),
            ));
        }
    };
    let mut by_role: BTreeMap<String, Vec<Value>> = role::ALL
        .iter()
        .map(|r| (r.to_string(), Vec::new()))
        .collect();
    for e in entries {
        if let Ok(m) = serde_json::from_slice::<Member>(&e.value) {
            by_role
                .entry(m.role.clone())
                .or_default()
                .push(serde_json::to_value(&m).unwrap_or(Value::Null));
        }
    }
    let mut leaders = serde_json::Map::new();
    for r in role::ALL {
        if let Some(l) = leader::current_leader(&state.store, r).await {
            leaders.insert(r.to_string(), json!(l));
        }
    }
    (
        StatusCode::OK,
        Json(json!({"members": by_role, "leaders": leaders})),
    )
        .into_response()
}

pub use shoal_common::invocation::TIMEOUT_HEADER;
