//! The deploy page: upload modules, every module loaded, kept versions with their source and diff, roll back and restore.

use super::*;

pub(super) struct ModuleRow {
    pub(super) module: String,
    pub(super) origin: String,
    pub(super) services: Vec<(String, String)>,
    pub(super) deployed: String,
    pub(super) hash: String,
    /// Kept versions, newest first: (short hash, full hash, when, current?).
    pub(super) history: Vec<(String, String, String, bool)>,
}

#[derive(Template)]
#[template(path = "deploy.html")]
pub(super) struct DeployPage {
    pub(super) c: Chrome,
    pub(super) modules: Vec<ModuleRow>,
    pub(super) load_errors: Vec<String>,
    pub(super) deployed: Vec<String>,
    pub(super) failed: Vec<String>,
}

pub(super) fn when(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

pub(super) async fn deploy_view(
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

pub(super) async fn deploy_page(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
) -> Response {
    let c = chrome(&state, &current, "deploy");
    deploy_view(&state, c, StatusCode::OK, Vec::new(), Vec::new()).await
}

pub(super) async fn deploy(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    req: Request,
) -> Response {
    let header_token = req.headers().contains_key(crate::CSRF_HEADER);
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
                    (crate::CSRF_FIELD, _) => token = String::from_utf8_lossy(&data).into_owned(),
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
    if !header_token && !crate::session::csrf_matches(&current.session, &token) {
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
pub(super) struct VersionPage {
    pub(super) c: Chrome,
    pub(super) module: String,
    pub(super) hash: String,
    pub(super) deployed: String,
    pub(super) current: bool,
    pub(super) current_hash: String,
    pub(super) source: String,
    /// The diff against the current version (None: too long to diff).
    pub(super) diff: Option<Vec<(char, String)>>,
}

/// `/admin/deploy/{module}/versions/{hash}`: a kept version's source, its diff against
/// the current one, and a button to restore it.
pub(super) async fn module_version(
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
            diff: crate::diff::diff(current_source, &source, 3),
            source,
        },
    )
}

pub(super) async fn rollback(
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
