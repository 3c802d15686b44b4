//! HTTP channels, live from the config store.
//!
//! [`serve`] is the HTTP listener's handler, the same flow for every channel: match
//! method and path in the route table ([`table`], followed live from the store), the
//! client's address against the channel's address rules, the channel's and the address's
//! rate limits ([`limits`]), the channel's security ([`guard`]) and the credential's rate
//! limit, read the body within the channel's limit ([`crate::body`]), let the channel's
//! front end ([`front`]: JSON, XML, form, plain, SOAP, the Zato wire) decode it, invoke the
//! service, and let the front end answer. [`admission`] caps requests in flight and URL
//! length in front of it all.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use shoal_common::invocation::Invocation;
use shoal_common::routing::Router;
use shoal_common::store::Store;
use shoal_common::trace;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::common::v1::HttpInfo;

use crate::body::{
    BodyError, FREE_BYTES, Reserve, discard, expects_continue, read_limited, waits_for_room,
};
use crate::respond;

pub mod admission;
pub mod front;
pub mod guard;
pub mod limits;
pub mod mcp;
pub mod queue;
pub mod table;

pub use admission::{Admission, Admitted, Pass};
use table::{ChannelLabels, ChannelOnly};
pub use table::{Channels, Compiled, Match, Table};

#[derive(Clone)]
pub struct HttpState(std::sync::Arc<HttpShared>);

impl HttpState {
    pub fn new(shared: HttpShared) -> HttpState {
        HttpState(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for HttpState {
    type Target = HttpShared;
    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

/// The parts of [`HttpState`].
pub struct HttpShared {
    pub channels: Channels,
    pub router: Router,
    /// For SOAP channels' WSDL (the services' SimpleIO), and WS-Security nonces when no
    /// KVDB proxy runs.
    pub store: Store,
    /// The KVDB proxies: the cluster-wide WS-Security nonce cache.
    pub kvdb: shoal_common::peers::Peers,
    /// How long a request body may take to arrive (408 after).
    pub body_read_timeout: std::time::Duration,
    /// The bytes of request bodies the listener holds at once (`max_request_bytes`).
    pub bodies: crate::body::Budget,
    /// Credential checks of this listener (bounded, throttled).
    pub verifier: crate::auth::Verifier,
    /// Rate limit buckets.
    pub limiter: limits::Limiter,
    /// Proxies whose forwarding headers name the client.
    pub trusted: crate::auth::client::TrustedProxies,
    /// The live tail: the requests the gateway refuses itself are recorded here.
    pub tail: crate::tail::Tail,
    /// The MCP channels' sessions and tool lists.
    pub mcp: mcp::Hub,
}

impl HttpShared {
    /// The client's address of a request (the peer, or the one trusted proxies report).
    pub fn client_ip(&self, req: &Request<Body>) -> std::net::IpAddr {
        let peer = req
            .extensions()
            .get::<shoal_common::http::Peer>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
        self.trusted.client_ip(req.headers(), peer)
    }
}

/// The HTTP channels listener's handler.
pub async fn serve(State(state): State<HttpState>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let cid = crate::respond::cid_from(req.headers());
    // The gateway's span: a child of the caller's `traceparent`, or a new trace; the
    // executor's span is its child.
    let parent = trace::from_headers(req.headers());
    let mut span = trace::Span::start(req.method().as_str(), trace::Kind::Server, parent.as_ref());
    let seen = Seen {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        client: state.client_ip(&req),
    };
    let table = state.channels.table();
    let (channel, params) = match table.lookup(req.method(), req.uri().path()) {
        Match::Found(c, p) if c.soap.is_some() => (
            table.soap_by_action(&c, &front::soap::action(req.headers())),
            p,
        ),
        Match::Found(c, p) => (c, p),
        Match::NotFound => {
            let resp = respond::error(
                &ShoalError::new(
                    ErrorCode::NotFound,
                    format!("no channel matches {} {}", req.method(), req.uri().path()),
                )
                .with_cid(cid.clone()),
            );
            let resp = Box::pin(drained(req, resp)).await;
            return state.finished(resp, None, &seen, &cid, span, started);
        }
        Match::MethodNotAllowed(allowed) => {
            let mut resp = respond::error(
                &ShoalError::new(
                    ErrorCode::MethodNotAllowed,
                    format!(
                        "{} is not allowed here; allowed: {}",
                        req.method(),
                        allowed.join(", ")
                    ),
                )
                .with_cid(cid.clone()),
            );
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            let resp = Box::pin(drained(req, resp)).await;
            return state.finished(resp, None, &seen, &cid, span, started);
        }
    };
    if span.recording() {
        span.rename(format!("{} {}", seen.method, channel.route));
        span.attr("http.route", channel.route.as_str());
        span.attr("shoal.channel", channel.name.as_str());
    }
    // Boxed, as the refusals' `drained` above: this handler's future is moved on its way
    // in (axum boxes it), and with `handle`'s state inline it was 17.6 KB (debug build);
    // boxed, under 1 KB. Same-run A/B: row 1 +1 % req/s, row 19 +1.5 % and −3 % CPU;
    // the gateway's `memmove` 5.6 → 4.9 % of its samples (docs/performance.md).
    let resp = Box::pin(handle(
        &state,
        &table,
        &channel,
        params,
        req,
        &cid,
        span.ctx(),
    ))
    .await;
    let class = usize::from(resp.status().as_u16() / 100).clamp(1, 5);
    let metrics = &state.channels.metrics;
    channel.counters[class - 1]
        .get_or_init(|| {
            metrics
                .requests
                .get_or_create(&ChannelLabels {
                    channel: channel.name.clone(),
                    class: format!("{class}xx"),
                })
                .clone()
        })
        .inc();
    channel
        .latency
        .get_or_init(|| {
            metrics
                .seconds
                .get_or_create(&ChannelOnly {
                    channel: channel.name.clone(),
                })
                .clone()
        })
        .observe(started.elapsed().as_secs_f64());
    state.finished(resp, Some(&channel), &seen, &cid, span, started)
}

/// What the gateway saw of a request, kept for its tail record and span.
struct Seen {
    method: http::Method,
    path: String,
    client: std::net::IpAddr,
}

impl HttpShared {
    /// Ends a request: its span gets the answer's status, and a request the gateway
    /// refused itself (no executor ran it, so the router did not record it) goes to the
    /// tail with its reason.
    fn finished(
        &self,
        resp: Response,
        channel: Option<&Compiled>,
        seen: &Seen,
        cid: &str,
        mut span: trace::Span,
        started: Instant,
    ) -> Response {
        let status = resp.status().as_u16();
        if span.recording() {
            span.attr("http.request.method", seen.method.as_str());
            span.attr("url.path", seen.path.as_str());
            span.attr("client.address", seen.client.to_string());
            span.attr("http.response.status_code", status);
            span.attr("shoal.cid", cid);
            if status >= 500 {
                span.attr("error.type", status.to_string());
                span.error(format!("answered {status}"));
            }
        }
        if resp.extensions().get::<respond::Invoked>().is_none() {
            let refusal = resp.extensions().get::<respond::Refusal>();
            self.tail.push(crate::tail::Record {
                seq: 0,
                time_ms: shoal_common::members::now_ms(),
                cid: cid.to_owned(),
                channel: channel.map(|c| c.name.clone()).unwrap_or_default(),
                channel_type: channel
                    .map(|c| front::of(c).channel_type(c).0.to_owned())
                    .unwrap_or_else(|| "http".to_owned()),
                service: channel.map(|c| c.service.clone()).unwrap_or_default(),
                status,
                outcome: shoal_common::Outcome::of_status(status),
                code: refusal.map(|r| r.code.as_str()),
                message: refusal.map(|r| r.message.clone()).unwrap_or_default(),
                answered_by: "gateway",
                duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                trace_id: span.ctx().map(trace::Ctx::trace_id_hex).unwrap_or_default(),
                details: Some(Box::new(crate::tail::Details {
                    request: format!("{} {}", seen.method, seen.path),
                    client: seen.client.to_string(),
                    ..Default::default()
                })),
            });
        }
        span.end();
        resp
    }
}

/// Request headers for the service: names lower-cased, repeated ones joined; credentials
/// (Authorization, Cookie, the channel's API key header) are not passed on.
pub(crate) fn forwarded_headers(
    headers: &HeaderMap,
    hide: Option<&HeaderName>,
) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        if name == header::AUTHORIZATION || name == header::COOKIE || Some(name) == hide {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        out.entry(name.as_str().to_owned())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v);
            })
            .or_insert_with(|| v.to_owned());
    }
    out
}

/// The answer to a request the guard refused, in the front's shape, with the challenge
/// and the time to wait.
fn refused(front: &dyn front::Front, channel: &Compiled, r: guard::Refused, cid: &str) -> Response {
    let mut resp = front.refuse(channel, r.error, cid);
    if let Some(c) = r.challenge
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(wait) = r.retry_after
        && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The answer to a request over a rate limit.
fn limited(front: &dyn front::Front, channel: &Compiled, d: limits::Denied, cid: &str) -> Response {
    let mut resp = front.refuse(channel, d.error(), cid);
    d.headers(&mut resp);
    resp
}

/// Request bodies up to this size are read and dropped when a request is refused on its
/// headers alone (no channel, a method not allowed, address, rate limit, credentials), so
/// the client's keep-alive
/// connection stays usable: answering before the body arrived made the server close it,
/// and a client that had already sent its next request on it saw no answer.
const DRAIN_REFUSED_BODY: u64 = 64 * 1024;

/// `resp`, once the request's small body (declared, at most [`DRAIN_REFUSED_BODY`], no
/// `Expect: 100-continue`) has been read, for 200 ms at most; a larger or slower body is
/// left, and the connection closes after the answer as before.
async fn drained(req: Request<Body>, resp: Response) -> Response {
    let small = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0 && n <= DRAIN_REFUSED_BODY);
    if small && !req.headers().contains_key(header::EXPECT) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            axum::body::to_bytes(req.into_body(), DRAIN_REFUSED_BODY as usize),
        )
        .await;
    }
    resp
}

async fn handle(
    state: &HttpState,
    table: &Table,
    channel: &Compiled,
    mut params: HashMap<String, String>,
    req: Request<Body>,
    cid: &str,
    trace_ctx: Option<&trace::Ctx>,
) -> Response {
    let front = front::of(channel);
    let refuse =
        |code: ErrorCode, msg: String| front.refuse(channel, ShoalError::new(code, msg), cid);
    // Who may call, and how often: the address rules, the channel's limit, the address's.
    let ip = state.client_ip(&req);
    let access = &channel.access;
    if !access.admits(ip) {
        let resp = refuse(
            ErrorCode::Forbidden,
            format!("calls from {ip} are not allowed on this channel"),
        );
        return drained(req, resp).await;
    }
    if let Some(limit) = &access.rate_limit
        && let Err(d) = state
            .limiter
            .take(&format!("channel/{}", channel.name), "channel", limit)
            .await
    {
        return drained(req, limited(front, channel, d, cid)).await;
    }
    if let Some(limit) = access.address_limit(ip)
        && let Err(d) = state
            .limiter
            .take(&format!("address/{}/{ip}", channel.name), "address", limit)
            .await
    {
        return drained(req, limited(front, channel, d, cid)).await;
    }
    // Security on the headers (its verification waits outside the listener's in-flight
    // places: see `admission::Pass`).
    let pass = req.extensions().get::<Pass>().cloned();
    let certs = req
        .extensions()
        .get::<shoal_common::public_tls::PeerCerts>()
        .cloned();
    let presented = guard::Presented {
        headers: req.headers(),
        addr: ip,
        certs: certs.as_ref(),
        verifier: &state.verifier,
    };
    if channel.security.is_some()
        && let Some(p) = &pass
    {
        p.step_out();
    }
    let checked = guard::check_headers(table, channel, &presented).await;
    if let Some(p) = &pass
        && let Err(resp) = p.step_in()
    {
        return drained(req, resp).await;
    }
    let mut caller = match checked {
        Ok(c) => c,
        Err(mut r) => {
            if channel.mcp.is_some() && r.challenge.is_none() {
                r.challenge = guard::challenge_of(table, channel);
            }
            return drained(req, refused(front, channel, r, cid)).await;
        }
    };
    if let Some(c) = &caller
        && let Some(limit) = table.credential_limit(&c.security)
        && let Err(d) = state
            .limiter
            .take(
                &format!("credential/{}", c.rate_key()),
                "credential",
                &limit,
            )
            .await
    {
        return drained(req, limited(front, channel, d, cid)).await;
    }
    // SOAP: the WSDL on GET ?wsdl; otherwise only POST.
    let (parts, body) = req.into_parts();
    if let Some(resp) = front::soap::preflight(state, channel, &parts, cid).await {
        return resp;
    }
    // Body, within the channel's limit. A client that declares more than the limit and
    // waits for `100 Continue` is answered at once, before the body is asked for.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        refuse(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body is over this channel's limit of {} bytes",
                channel.max_body
            ),
        )
    };
    if declared.is_some_and(|n| n > channel.max_body) && expects_continue(&parts.headers) {
        return too_large();
    }
    // Room for the body in the listener's budget of request bodies, held until the answer
    // is made: a body of a declared length waits for it unread; one of undeclared length
    // takes it while it is read (`body::Budget`).
    let no_room = || {
        let mut resp = refuse(
            ErrorCode::Unavailable,
            format!(
                "the gateway holds its limit of {} bytes of request bodies (max_request_bytes); retry shortly",
                state.bodies.max()
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    };
    let mut room = None;
    let wait = waits_for_room(parts.version);
    if let Some(n) = http_body::Body::size_hint(&body).exact()
        && n > FREE_BYTES
        && n <= channel.max_body
    {
        let mut deadline = tokio::time::Instant::now();
        if wait {
            deadline += state.body_read_timeout;
        }
        match state.bodies.room(n, deadline).await {
            Ok(r) => room = Some(r),
            Err(crate::body::NoRoom) => {
                discard(body, &parts.headers).await;
                return no_room();
            }
        }
    }
    let reserve = Reserve {
        budget: &state.bodies,
        room: &mut room,
        wait,
    };
    let body = match read_limited(
        body,
        channel.max_body,
        state.body_read_timeout,
        Some(reserve),
    )
    .await
    {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::NoRoom) => return no_room(),
        Err(BodyError::Read(e)) => {
            return refuse(
                ErrorCode::BadRequest,
                format!("cannot read the request body: {e}"),
            );
        }
        Err(BodyError::TimedOut) => {
            return refuse(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    state.body_read_timeout.as_secs()
                ),
            );
        }
    };
    if let Some(spec) = &channel.mcp {
        return mcp::serve(mcp::Request {
            state,
            channel,
            spec,
            parts,
            body,
            caller,
            cid,
            trace: trace_ctx,
        })
        .await;
    }
    // The service and its input, as the channel's front end reads them.
    let decoded = match front.decode(channel, &parts.method, &mut params, &body, cid) {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    // WS-Security, on the SOAP envelope.
    if channel.soap.is_some() {
        let presented = guard::Presented {
            headers: &parts.headers,
            addr: ip,
            certs: certs.as_ref(),
            verifier: &state.verifier,
        };
        match guard::check_wss(state, table, channel, decoded.token.clone(), &presented).await {
            Ok(Some(user)) => {
                if let Some(c) = caller.as_mut() {
                    c.username = user;
                }
            }
            Ok(None) => {}
            Err(r) => return refused(front, channel, r, cid),
        }
    }
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let (kind, data_format) = front.channel_type(channel);
    let mut invoke = Invocation::new(decoded.service, cid)
        .channel(channel.name.clone(), kind, data_format)
        .trace(trace_ctx);
    if let Some(c) = &caller {
        invoke = invoke
            .caller(c.security.clone(), c.username.clone())
            .auth(c.to_json());
    }
    let hidden_header = caller.as_ref().and_then(|c| c.hide.clone());
    let invoke = invoke
        .payload(decoded.payload)
        .raw_request(body)
        .http(HttpInfo {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            params,
            query,
            headers: forwarded_headers(&parts.headers, hidden_header.as_ref()),
            form: decoded.form,
        })
        .build();
    let result = state.router.invoke(invoke).await;
    let mut resp = front.answer(channel, result, cid);
    // The router's observer has recorded the call, however it ended.
    resp.extensions_mut().insert(respond::Invoked);
    if channel.wire.is_some()
        && let Ok(v) = HeaderValue::from_str(cid)
    {
        resp.headers_mut().insert("x-zato-cid", v);
    }
    resp
}
