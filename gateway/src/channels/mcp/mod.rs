//! MCP channels: services as tools for AI agents, over the Model Context Protocol's
//! Streamable HTTP transport (JSON-RPC 2.0 over POST; a GET opens the session's
//! notification stream; DELETE ends the session).
//!
//! An MCP channel is an HTTP channel like the others up to the body: the route table,
//! address rules, rate limits, security and the body limit are `crate::channels`'s.
//! [`serve`] takes over from there: it reads the JSON-RPC message, keeps the sessions
//! ([`hub`]), answers `initialize`, `ping`, `tools/list` from the services' published
//! SimpleIO and docstrings ([`tools`]), and `tools/call` by invoking the service through
//! the same router as every channel (limits, metrics, the tail and traces included). A
//! failed call is a tool result with `isError` and the message the other channels give;
//! JSON-RPC errors are for protocol faults only.
//!
//! Protocol revisions: those negotiated by `initialize` — 2024-11-05, 2025-03-26,
//! 2025-06-18 and 2025-11-25. A client offering another gets 2025-11-25 (the spec's
//! rule); the newer per-request revisions that clients probe for with `server/discover`
//! get "method not found", on which the official SDKs fall back to `initialize`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use shoal_common::invocation::Invocation;
use shoal_common::trace;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::common::v1::HttpInfo;

use crate::channels::guard::Caller;
use crate::channels::table::{Compiled, McpSpec};
use crate::channels::{HttpState, forwarded_headers};
use crate::respond;

pub mod hub;
pub mod tools;

pub use hub::Hub;

/// The protocol revisions `initialize` negotiates, oldest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// What a client offering a revision this server does not speak is answered with.
pub const LATEST: &str = "2025-11-25";

/// The session header.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The negotiated revision, on every request after `initialize` (2025-06-18 on).
pub const VERSION_HEADER: &str = "mcp-protocol-version";

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// An MCP request that passed the channel's checks.
pub struct Request<'a> {
    pub state: &'a HttpState,
    pub channel: &'a Compiled,
    pub spec: &'a McpSpec,
    pub parts: http::request::Parts,
    pub body: Bytes,
    /// Who the channel's security admitted (none: an open channel).
    pub caller: Option<Caller>,
    pub cid: &'a str,
    pub trace: Option<&'a trace::Ctx>,
}

impl Request<'_> {
    /// The owner of the sessions this caller opens.
    fn owner(&self) -> String {
        self.caller
            .as_ref()
            .map(Caller::rate_key)
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A JSON-RPC error answer at an HTTP status (`id`: the request's, as sent, or null).
fn rpc_error(status: StatusCode, id: Option<&RawValue>, code: i64, message: &str) -> Response {
    let body = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{}}}",
        id.map_or("null", RawValue::get),
        json!({"code": code, "message": message})
    );
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response();
    if status.is_client_error() {
        let shoal = match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            _ => ErrorCode::BadRequest,
        };
        respond::mark_refused(&mut resp, shoal, message);
    } else {
        // A JSON-RPC error of a well-formed exchange (an unknown method or tool): not a
        // call, and not a refusal for the tail.
        resp.extensions_mut().insert(respond::Invoked);
    }
    resp
}

/// The answer to a request the channel refused before MCP took over (security, limits,
/// size), as a JSON-RPC error with the refusal's status.
pub fn refusal(e: &ShoalError, cid: &str) -> Response {
    let mut resp = rpc_error(e.code.http_status(), None, INVALID_REQUEST, &e.message);
    respond::mark_refused(&mut resp, e.code, &e.message);
    if let Ok(v) = HeaderValue::from_str(cid) {
        resp.headers_mut().insert("x-shoal-cid", v);
    }
    resp
}

/// The front of MCP channels: only its refusals are used (the body is MCP's, see
/// [`serve`]).
pub struct Front;

impl crate::channels::front::Front for Front {
    fn channel_type(&self, _channel: &Compiled) -> (&'static str, &'static str) {
        ("mcp", "json")
    }

    fn refuse(&self, _channel: &Compiled, e: ShoalError, cid: &str) -> Response {
        refusal(&e, cid)
    }

    fn decode(
        &self,
        _channel: &Compiled,
        _method: &Method,
        _params: &mut HashMap<String, String>,
        _body: &Bytes,
        cid: &str,
    ) -> Result<crate::channels::front::Decoded, Response> {
        Err(refusal(
            &ShoalError::new(ErrorCode::Internal, "an MCP request reached a body front"),
            cid,
        ))
    }
}

/// A successful answer: JSON, or one SSE event when the client takes only streams.
fn answer(req: &Request<'_>, id: &RawValue, result: &str) -> Response {
    let body = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result}}}",
        id.get()
    );
    let accept = req.header("accept").unwrap_or("");
    let json_ok = accept.is_empty()
        || accept.contains("application/json")
        || accept.contains("*/*")
        || accept.contains("application/*");
    let mut resp = if json_ok {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from(format!("event: message\ndata: {body}\n\n")),
        )
            .into_response()
    };
    // Protocol exchanges are not calls: the tail keeps the calls and the refusals.
    resp.extensions_mut().insert(respond::Invoked);
    resp
}

fn accepted() -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    resp.extensions_mut().insert(respond::Invoked);
    resp
}

/// One JSON-RPC message as read (the parts kept as sent where they are echoed).
#[derive(Deserialize)]
struct Message<'a> {
    jsonrpc: Option<String>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// Serves a request to an MCP channel.
pub async fn serve(req: Request<'_>) -> Response {
    if let Some(resp) = check_origin(&req) {
        return resp;
    }
    match req.parts.method {
        Method::POST => post(req).await,
        Method::GET => stream(req),
        Method::DELETE => end(req),
        _ => {
            let mut resp = rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                INVALID_REQUEST,
                &format!(
                    "{} is not allowed on an MCP endpoint; allowed: GET, POST, DELETE",
                    req.parts.method
                ),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            resp
        }
    }
}

/// A browser page of another site may not drive the endpoint (DNS rebinding): an
/// `Origin` must name the host the request was sent to.
fn check_origin(req: &Request<'_>) -> Option<Response> {
    let origin = req.header("origin")?;
    let host = req
        .header("host")
        .map(str::to_owned)
        .or_else(|| req.parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(&host) {
        return None;
    }
    Some(rpc_error(
        StatusCode::FORBIDDEN,
        None,
        INVALID_REQUEST,
        "the Origin of this request is not this server",
    ))
}

/// The session a request names: `Err` is the answer (400 without one, 404 for one that
/// is unknown, ended, or another caller's).
#[allow(clippy::result_large_err)]
fn session_of(
    req: &Request<'_>,
    id: Option<&RawValue>,
) -> Result<std::sync::Arc<hub::Session>, Response> {
    let Some(sid) = req.header(SESSION_HEADER) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_REQUEST,
            "the Mcp-Session-Id header is missing: initialize first",
        ));
    };
    if let Some(v) = req.header(VERSION_HEADER)
        && !PROTOCOL_VERSIONS.contains(&v)
    {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_REQUEST,
            &format!(
                "unsupported MCP-Protocol-Version '{}'; supported: {}",
                v.chars().take(40).collect::<String>(),
                PROTOCOL_VERSIONS.join(", ")
            ),
        ));
    }
    req.state
        .mcp
        .session(sid, &req.channel.name, &req.owner())
        .ok_or_else(|| {
            rpc_error(
                StatusCode::NOT_FOUND,
                id,
                INVALID_REQUEST,
                "no such session (it ended or expired): initialize again",
            )
        })
}

async fn post(req: Request<'_>) -> Response {
    if let Some(ct) = req.header("content-type")
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            INVALID_REQUEST,
            "an MCP message is JSON: send Content-Type: application/json",
        );
    }
    if let Some(accept) = req.header("accept")
        && ![
            "application/json",
            "text/event-stream",
            "*/*",
            "application/*",
        ]
        .iter()
        .any(|t| accept.contains(t))
    {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            INVALID_REQUEST,
            "the client must accept application/json or text/event-stream",
        );
    }
    let body = req.body.clone();
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            INVALID_REQUEST,
            "JSON-RPC batches are not supported (MCP 2025-06-18 and later send one message per request)",
        );
    }
    let msg: Message<'_> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) if e.is_data() => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                INVALID_REQUEST,
                &format!("not a JSON-RPC message: {e}"),
            );
        }
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                PARSE_ERROR,
                &format!("the body is not valid JSON: {e}"),
            );
        }
    };
    if msg.jsonrpc.as_deref() != Some("2.0") {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            msg.id,
            INVALID_REQUEST,
            "\"jsonrpc\" must be \"2.0\"",
        );
    }
    if let Some(id) = msg.id {
        let ok = matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'));
        if !ok || id.get().len() > 256 {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                INVALID_REQUEST,
                "a request id is a string or a number (of at most 256 characters)",
            );
        }
    }
    let Some(method) = msg.method.as_deref() else {
        // A response to a server request (this server sends none) or junk.
        if msg.id.is_some() && (msg.result.is_some() || msg.error.is_some()) {
            return match session_of(&req, None) {
                Ok(_) => accepted(),
                Err(resp) => resp,
            };
        }
        return rpc_error(
            StatusCode::BAD_REQUEST,
            msg.id,
            INVALID_REQUEST,
            "a JSON-RPC message needs a method (or a result or error with an id)",
        );
    };
    let Some(id) = msg.id else {
        // A notification: nothing to answer.
        return match session_of(&req, None) {
            Ok(_) => accepted(),
            Err(resp) => resp,
        };
    };
    match method {
        "initialize" => initialize(&req, id, msg.params),
        "ping" => match session_of(&req, Some(id)) {
            Ok(_) => answer(&req, id, "{}"),
            Err(resp) => resp,
        },
        "tools/list" => match session_of(&req, Some(id)) {
            Ok(_) => {
                let tools: Vec<Value> = req
                    .state
                    .mcp
                    .tools(req.spec)
                    .into_iter()
                    .map(|t| t.listing)
                    .collect();
                answer(&req, id, &json!({ "tools": tools }).to_string())
            }
            Err(resp) => resp,
        },
        "tools/call" => match session_of(&req, Some(id)) {
            Ok(_) => call(&req, id, msg.params).await,
            Err(resp) => resp,
        },
        _ => rpc_error(
            StatusCode::OK,
            Some(id),
            METHOD_NOT_FOUND,
            &format!(
                "method not found: {}",
                method.chars().take(80).collect::<String>()
            ),
        ),
    }
}

#[derive(Deserialize)]
struct InitializeParams {
    #[serde(rename = "protocolVersion")]
    protocol_version: String,
}

fn initialize(req: &Request<'_>, id: &RawValue, params: Option<&RawValue>) -> Response {
    let Some(p) = params.and_then(|p| serde_json::from_str::<InitializeParams>(p.get()).ok())
    else {
        return rpc_error(
            StatusCode::OK,
            Some(id),
            INVALID_PARAMS,
            "initialize needs params with a protocolVersion",
        );
    };
    let version = if PROTOCOL_VERSIONS.contains(&p.protocol_version.as_str()) {
        p.protocol_version
    } else {
        LATEST.to_owned()
    };
    let session = req
        .state
        .mcp
        .open(&req.channel.name, &req.owner(), &version);
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": true}},
        "serverInfo": {"name": "shoal", "title": "Shoal", "version": env!("CARGO_PKG_VERSION")},
        "instructions": format!(
            "The tools of the Shoal channel '{}': each calls a service; its input and output schemas are the service's SimpleIO.",
            req.channel.name
        ),
    });
    let mut resp = answer(req, id, &result.to_string());
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    resp
}

#[derive(Deserialize)]
struct CallParams<'a> {
    name: String,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

async fn call(req: &Request<'_>, id: &RawValue, params: Option<&RawValue>) -> Response {
    let Some(p) = params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok()) else {
        return rpc_error(
            StatusCode::OK,
            Some(id),
            INVALID_PARAMS,
            "tools/call needs params with a name (and arguments, an object)",
        );
    };
    let args = p.arguments.map(RawValue::get).unwrap_or("null");
    let payload = match args.as_bytes().first() {
        Some(b'{') => Bytes::copy_from_slice(args.as_bytes()),
        _ if args == "null" => Bytes::new(),
        _ => {
            return rpc_error(
                StatusCode::OK,
                Some(id),
                INVALID_PARAMS,
                "tools/call arguments must be an object",
            );
        }
    };
    let Some(tool) = req
        .state
        .mcp
        .tools(req.spec)
        .into_iter()
        .find(|t| t.name == p.name)
    else {
        return rpc_error(
            StatusCode::OK,
            Some(id),
            INVALID_PARAMS,
            &format!(
                "unknown tool: {}",
                p.name.chars().take(80).collect::<String>()
            ),
        );
    };
    let mut invoke = Invocation::new(tool.service.clone(), req.cid)
        .channel(req.channel.name.clone(), "mcp", "json")
        .trace(req.trace);
    if let Some(c) = &req.caller {
        invoke = invoke
            .caller(c.security.clone(), c.username.clone())
            .auth(c.to_json());
    }
    let hidden = req.caller.as_ref().and_then(|c| c.hide.clone());
    let invoke = invoke
        .payload(payload.clone())
        .raw_request(payload)
        .http(HttpInfo {
            method: req.parts.method.to_string(),
            path: req.parts.uri.path().to_owned(),
            params: HashMap::new(),
            query: HashMap::new(),
            headers: forwarded_headers(&req.parts.headers, hidden.as_ref()),
            form: HashMap::new(),
        })
        .build();
    let result = req.state.router.invoke(invoke).await;
    let mut resp = answer(req, id, &tools::result_of(result));
    if let Ok(v) = HeaderValue::from_str(req.cid) {
        resp.headers_mut().insert("x-shoal-cid", v);
    }
    resp
}

/// GET: the session's notification stream (`notifications/tools/list_changed`).
fn stream(req: Request<'_>) -> Response {
    let accept = req.header("accept").unwrap_or("");
    if !accept.contains("text/event-stream") {
        let mut resp = rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            INVALID_REQUEST,
            "a GET opens the notification stream: send Accept: text/event-stream",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        return resp;
    }
    let session = match session_of(&req, None) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let ended = session.new_stream();
    let channel = session.channel.clone();
    let changes = tokio_stream::wrappers::BroadcastStream::new(req.state.mcp.subscribe());
    let notice =
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}).to_string();
    let events = changes
        .filter_map(move |changed| {
            let out = match changed {
                // A reader that fell behind missed notices: one more tells it to list again.
                Ok(c) if c == channel => Some(Ok::<Event, std::convert::Infallible>(
                    Event::default().event("message").data(notice.clone()),
                )),
                Err(_) => Some(Ok(Event::default().event("message").data(notice.clone()))),
                Ok(_) => None,
            };
            futures::future::ready(out)
        })
        .take_until(ended.cancelled_owned());
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.extensions_mut().insert(respond::Invoked);
    resp
}

/// DELETE: ends the session.
fn end(req: Request<'_>) -> Response {
    match session_of(&req, None) {
        Ok(s) => {
            req.state.mcp.close(&s.id);
            let mut resp = StatusCode::OK.into_response();
            resp.extensions_mut().insert(respond::Invoked);
            resp
        }
        Err(resp) => resp,
    }
}
