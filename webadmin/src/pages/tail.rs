//! The live tail (Server-Sent Events through the API) and a call's page (reason, traceback, log lines, hops).

use super::*;

/// Rows the tail page keeps.
pub(super) const TAIL_ROWS: usize = 200;

pub(super) struct TailRow {
    pub(super) time: String,
    pub(super) cid: String,
    pub(super) href: String,
    pub(super) channel: String,
    pub(super) service: String,
    pub(super) status: u64,
    pub(super) status_class: u64,
    pub(super) duration: String,
    pub(super) reason: String,
}

#[derive(Template)]
#[template(path = "tail.html")]
pub(super) struct TailPage {
    pub(super) c: Chrome,
    pub(super) service: String,
    pub(super) failed: bool,
    pub(super) stream_q: String,
    pub(super) keep: usize,
    pub(super) rows: Vec<TailRow>,
}

/// A reason, cut for a table cell (the call page shows it whole).
pub(super) fn short_reason(r: &Value) -> String {
    let m = r["message"].as_str().unwrap_or_default();
    let mut short: String = m.chars().take(120).collect();
    if short.len() < m.len() {
        short.push('…');
    }
    short
}

pub(super) async fn tail(
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
pub(super) struct Fact {
    pub(super) name: &'static str,
    pub(super) value: String,
}

#[derive(Template)]
#[template(path = "call.html")]
pub(super) struct CallPage {
    pub(super) c: Chrome,
    pub(super) cid: String,
    pub(super) status: u64,
    pub(super) status_class: u64,
    pub(super) facts: Vec<Fact>,
    pub(super) service_href: String,
    pub(super) trace_url: String,
    pub(super) traceback: String,
    pub(super) logs: Vec<String>,
}

/// `/admin/calls/{cid}`: one call in full (what `GET /api/v1/requests/{cid}` answers).
pub(super) async fn call_page(
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
pub(super) async fn tail_stream(
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
