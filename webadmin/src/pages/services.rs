//! The services page (grouped, filtered, sorted, paged) and a service's own page (doc, SimpleIO, channels, source, invoke).

use super::*;

pub(super) struct ServiceRow {
    pub(super) name: String,
    pub(super) href: String,
    pub(super) summary: String,
    pub(super) module: String,
    pub(super) calls: u64,
    pub(super) errors: u64,
    pub(super) client_errors: u64,
    pub(super) mean: String,
    pub(super) p99: String,
    pub(super) p99_us: u64,
    pub(super) executors: String,
}

/// Services shown per page.
pub const SERVICES_PER_PAGE: usize = 50;

/// How the services page sorts: (value, label).
pub(super) const SERVICE_SORTS: &[(&str, &str)] = &[
    ("name", "module and name"),
    ("calls", "most calls"),
    ("failed", "most failures"),
    ("p99", "slowest p99"),
];

pub(super) struct Group {
    pub(super) module: String,
    pub(super) services: Vec<ServiceRow>,
}

#[derive(Template)]
#[template(path = "services.html")]
pub(super) struct ServicesPage {
    pub(super) c: Chrome,
    pub(super) q: String,
    pub(super) groups: Vec<Group>,
    pub(super) sort: String,
    pub(super) sorts: &'static [(&'static str, &'static str)],
    pub(super) failing: bool,
    /// Services matching the filter, the page shown (1-based) and the pages there are.
    pub(super) total: usize,
    pub(super) page: usize,
    pub(super) pages: usize,
    /// The query string of the filter and sort, for the pager's links.
    pub(super) base_q: String,
}

/// The "application" a module belongs to: its package, or the module itself.
pub(super) fn group_of(module: &str) -> String {
    match module.split_once('.') {
        Some((package, _)) => package.to_owned(),
        None if module.is_empty() => "(no module)".to_owned(),
        None => module.to_owned(),
    }
}

pub(super) async fn services(
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

pub(super) struct SioRow {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) required: &'static str,
    pub(super) default: String,
}

pub(super) struct ChannelRow {
    pub(super) name: String,
    pub(super) href: String,
    pub(super) kind: String,
    pub(super) place: String,
}

pub(super) struct InvokeResult {
    pub(super) status: u16,
    pub(super) status_class: u16,
    pub(super) time: String,
    pub(super) cid: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
}

#[derive(Template)]
#[template(path = "service.html")]
pub(super) struct ServicePage {
    pub(super) c: Chrome,
    pub(super) name: String,
    pub(super) href: String,
    pub(super) module: String,
    pub(super) impl_name: String,
    pub(super) hash: String,
    pub(super) summary: String,
    pub(super) description: String,
    pub(super) calls: u64,
    pub(super) errors: u64,
    pub(super) client_errors: u64,
    pub(super) mean: String,
    pub(super) p99: String,
    pub(super) executors: String,
    pub(super) sio_input: Vec<SioRow>,
    pub(super) sio_output: Vec<SioRow>,
    pub(super) channels: Vec<ChannelRow>,
    pub(super) source: String,
    pub(super) payload: String,
    pub(super) timeout_ms: String,
    pub(super) result: Option<InvokeResult>,
}

pub(super) fn sio_rows(v: &Value) -> Vec<SioRow> {
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
pub(super) fn place_of(o: &Value) -> String {
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

pub(super) async fn service_page(
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

pub(super) async fn service(
    State(state): State<WebState>,
    Extension(current): Extension<Current>,
    Path(name): Path<String>,
) -> Response {
    service_page(&state, &current, &name, "{}".into(), String::new(), None).await
}

pub(super) async fn invoke(
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
        headers.push((shoal_common::invocation::TIMEOUT_HEADER, timeout_ms.clone()));
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
            .get(shoal_common::invocation::CID_HEADER)
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
