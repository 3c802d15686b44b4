//! The admin API over the live request tail ([`crate::tail`]):
//! - `GET /api/v1/requests?service=S&limit=N&failed=true`: the last N (default 100) calls,
//!   oldest first, as `{"requests": [...]}` (`failed=true`: the client and server errors
//!   only);
//! - `GET /api/v1/requests/{cid}`: one call with its details — error message, the
//!   service's traceback and log lines, the time of each hop, the trace id and link —
//!   as `{"request": {...}}` (404 once it is no longer kept);
//! - `GET /api/v1/tail?service=S&backlog=N`: Server-Sent Events, one `invocation` event
//!   per call (the record as JSON, its `seq` as the event id), the last N kept ones first
//!   (default 0), then every new one until the client goes away.
//!
//! `service` is a name, or a prefix ending in `*` (`crm.*`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use shoal_common::{ErrorCode, ShoalError};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::admin::AdminState;
use crate::respond;
use crate::tail::{DEFAULT_CAPACITY, Filter, Record};

/// The query of both endpoints: the filter and a count (`limit` or `backlog`).
fn parse(raw: Option<&str>, count_key: &str, default: usize) -> Result<(Filter, usize), String> {
    let params = crate::admin::objects::query_params(raw, &["service", "failed", count_key])?;
    let mut service = None;
    let mut failed = false;
    let mut count = default;
    for (k, v) in params {
        if k == "service" {
            service = Some(v);
        } else if k == "failed" {
            failed = match v.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => return Err(format!("failed must be true or false, not '{v}'")),
            };
        } else {
            count = match v.parse::<usize>() {
                Ok(n) if n <= DEFAULT_CAPACITY => n,
                _ => {
                    return Err(format!(
                        "{count_key} must be a whole number from 0 to {DEFAULT_CAPACITY}, not '{v}'"
                    ));
                }
            };
        }
    }
    Ok((Filter::service(service.as_deref()).failed(failed), count))
}

/// `GET /api/v1/requests`.
pub async fn recent(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Response {
    let (filter, limit) = match parse(raw.as_deref(), "limit", 100) {
        Ok(p) => p,
        Err(message) => return bad_query(message),
    };
    let records: Vec<Arc<Record>> = state.tail.recent(&filter, limit);
    let records: Vec<&Record> = records.iter().map(|r| r.as_ref()).collect();
    Json(json!({ "requests": records })).into_response()
}

/// `GET /api/v1/requests/{cid}`.
pub async fn one(State(state): State<AdminState>, Path(cid): Path<String>) -> Response {
    match state.tail.by_cid(&cid) {
        Some(r) => Json(json!({ "request": r.full_json(&state.trace_link) })).into_response(),
        None => respond::error(&ShoalError::new(
            ErrorCode::NotFound,
            format!(
                "no call {cid} is kept by this gateway (it keeps the last {DEFAULT_CAPACITY}; another gateway may have answered it)"
            ),
        )),
    }
}

fn bad_query(message: String) -> Response {
    respond::error(&ShoalError::new(ErrorCode::BadRequest, message))
}

fn event(r: &Record) -> Event {
    Event::default()
        .event("invocation")
        .id(r.seq.to_string())
        .json_data(r)
        .unwrap_or_else(|_| Event::default().comment("unencodable record"))
}

/// `GET /api/v1/tail`.
pub async fn follow(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Response {
    let (filter, backlog) = match parse(raw.as_deref(), "backlog", 0) {
        Ok(p) => p,
        Err(message) => return bad_query(message),
    };
    // Subscribe before reading the backlog, so nothing falls between the two; a record in
    // both is sent once (the live part skips what the backlog already sent).
    let live = BroadcastStream::new(state.tail.subscribe());
    let past = state.tail.recent(&filter, backlog);
    let last_sent = past.last().map_or(0, |r| r.seq);
    let past = futures::stream::iter(
        past.into_iter()
            .map(|r| Ok::<Event, Infallible>(event(&r)))
            .collect::<Vec<_>>(),
    );
    let live = live.filter_map(move |item| {
        let out = match item {
            Ok(r) if r.seq > last_sent && filter.matches(&r) => Some(Ok(event(&r))),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(Event::default().event("lagged").data(format!(
                    "{n} invocations were not sent: the reader fell behind"
                ))))
            }
        };
        futures::future::ready(out)
    });
    Sse::new(past.chain(live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
