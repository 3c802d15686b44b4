//! The public gRPC `shoal.invoker.v1.Invoker`. Callers authenticate with any active
//! security definition of the cluster — Basic credentials or a bearer token (a JWT, a
//! static token) as `authorization` metadata, an API key under its header's name, a client
//! certificate when the listener serves TLS — or with the admin credentials. Nothing is
//! callable anonymously. Credential checks go through the same verifiers as the channels
//! and the admin API (bounded, throttled per client address).
//!
//! As on the HTTP channels, the credentials are checked on the metadata **before a byte of
//! the message is read** ([`InvokerFront`]), and a message over [`FREE_BYTES`] takes room
//! for its declared length in the gateway's budget of request bodies (`max_request_bytes`,
//! shared with the HTTP channels) before the rest of it is read: an anonymous flood of
//! large messages costs the gateway nothing but the connections' flow-control windows,
//! and an authenticated one no more than the budget.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use shoal_common::invocation::Invocation;
use shoal_common::trace;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;
use shoal_proto::invoker::v1 as ipb;
use tonic::{Request, Response, Status};

use crate::auth::{BasicAuth, Verdict, Verifier};
use crate::body::{Budget, FREE_BYTES, NoRoom, Room};
use crate::channels::guard::Presented;
use shoal_common::routing::Router;

/// The largest message the Invoker reads (tonic's default, stated): a larger one is
/// refused `OUT_OF_RANGE` on its 5-byte prefix, before it is read.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Serves `Invoker` over the executor router. Reached only through [`InvokerFront`],
/// which authenticates the call and hands the handler its [`Authenticated`] caller.
#[derive(Clone)]
pub struct InvokerService {
    pub router: Router,
}

/// Who called, as [`InvokerFront`] established it from the metadata.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The security definition (`admin` for the admin credentials).
    pub security: String,
    pub username: String,
    /// The caller as `self.channel.security` / `wsgi_environ` read it (empty for admin).
    pub auth_json: String,
}

/// The status of refused credentials.
fn unauthenticated(code: shoal_common::ErrorCode, message: &str) -> Status {
    match code {
        ErrorCode::TooManyRequests => Status::resource_exhausted(message.to_owned()),
        ErrorCode::Unavailable => Status::unavailable(message.to_owned()),
        _ => Status::unauthenticated(
            "credentials required: Basic credentials or a bearer token in `authorization` metadata, or an API key",
        ),
    }
}

/// What [`InvokerFront`] checks credentials with.
#[derive(Clone)]
pub struct Credentials {
    pub auth: BasicAuth,
    /// The channels' verifier (the Invoker checks the channels' definitions).
    pub verifier: Verifier,
    /// The admin listener's (for the admin credentials).
    pub admin_verifier: Verifier,
    pub channels: crate::channels::Channels,
}

impl Credentials {
    /// The caller named by `headers` (and the client certificate), or why not.
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        addr: std::net::IpAddr,
        certs: Option<&shoal_common::public_tls::PeerCerts>,
    ) -> Result<Authenticated, Status> {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        // The admin credentials first when the Basic header names the admin user.
        let is_admin = authorization
            .and_then(crate::auth::parse_basic)
            .is_some_and(|(u, _)| u == self.auth.user());
        if is_admin {
            return match self
                .auth
                .check(&self.admin_verifier, authorization, Some(addr), "admin")
                .await
            {
                Verdict::Valid => Ok(Authenticated {
                    security: "admin".to_owned(),
                    username: crate::auth::ADMIN_USER.to_owned(),
                    auth_json: String::new(),
                }),
                Verdict::Throttled(_) => Err(unauthenticated(
                    ErrorCode::TooManyRequests,
                    "too many failed attempts; retry later",
                )),
                Verdict::Busy => Err(unauthenticated(
                    ErrorCode::Unavailable,
                    "credentials cannot be checked now; retry shortly",
                )),
                Verdict::Invalid => Err(unauthenticated(ErrorCode::Unauthorized, "")),
            };
        }
        let table = self.channels.table();
        let presented = Presented {
            headers,
            addr,
            certs,
            verifier: &self.verifier,
        };
        match table.authenticate_any(&presented).await {
            Ok(c) => {
                let auth_json = c.to_json();
                Ok(Authenticated {
                    security: c.security,
                    username: c.username,
                    auth_json,
                })
            }
            Err(r) => Err(unauthenticated(r.error.code, &r.error.message)),
        }
    }
}

/// The trace context of the Invoker's span, which [`InvokerFront`] opened.
#[derive(Clone)]
struct SpanCtx(Option<trace::Ctx>);

#[tonic::async_trait]
impl ipb::invoker_server::Invoker for InvokerService {
    async fn invoke(
        &self,
        req: Request<ipb::InvokeRequest>,
    ) -> Result<Response<ipb::InvokeResponse>, Status> {
        // Only ever reached through `InvokerFront`; without its caller, nothing is served.
        let Some(caller) = req.extensions().get::<Authenticated>().cloned() else {
            return Err(unauthenticated(ErrorCode::Unauthorized, ""));
        };
        let trace_ctx = req.extensions().get::<SpanCtx>().and_then(|s| s.0.clone());
        let timeout_ms = shoal_common::deadline::from_headers(req.metadata().as_ref())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let req = req.into_inner();
        if req.service.is_empty() {
            return Err(Status::invalid_argument("service is required"));
        }
        if !req.payload.is_empty()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&req.payload).is_err()
        {
            return Err(
                ShoalError::new(ErrorCode::BadRequest, "payload is not valid JSON").to_status(),
            );
        }
        let cid = if req.cid.is_empty() {
            crate::respond::new_cid()
        } else {
            req.cid
        };
        let call = Invocation::new(req.service, cid.clone())
            .channel("grpc.invoker", "grpc", "json")
            .trace(trace_ctx.as_ref())
            .caller(caller.security, caller.username)
            .auth(caller.auth_json)
            .payload(req.payload)
            .timeout_ms(timeout_ms)
            .build();
        let resp = self
            .router
            .invoke(call)
            .await
            .map_err(|e| e.with_cid(&cid).to_status())?;
        let content_type = if !resp.content_type.is_empty() {
            resp.content_type
        } else {
            match pb::PayloadKind::try_from(resp.kind).unwrap_or(pb::PayloadKind::Empty) {
                pb::PayloadKind::Text => "text/plain; charset=utf-8".into(),
                pb::PayloadKind::Bytes => "application/octet-stream".into(),
                _ => "application/json".into(),
            }
        };
        Ok(Response::new(ipb::InvokeResponse {
            status: resp.status,
            payload: resp.payload,
            content_type,
            headers: resp.headers,
            cid,
        }))
    }
}

/// The Invoker as the listener serves it: the call's span, its credentials checked on the
/// metadata before the message is read, and its message's room in the gateway's budget
/// of request bodies ([`Budget`]), held until the answer is made.
#[derive(Clone)]
pub struct InvokerFront {
    credentials: Arc<Credentials>,
    inner: ipb::invoker_server::InvokerServer<InvokerService>,
    budget: Budget,
}

impl InvokerFront {
    /// The Invoker over `router`, checking callers with `credentials`; a message over
    /// [`FREE_BYTES`] takes room in `budget`, or the call is refused at once when there is
    /// none (HTTP/2: see [`crate::body::waits_for_room`]).
    pub fn new(router: Router, credentials: Credentials, budget: Budget) -> InvokerFront {
        InvokerFront {
            credentials: Arc::new(credentials),
            inner: ipb::invoker_server::InvokerServer::new(InvokerService { router })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            budget,
        }
    }
}

impl tonic::server::NamedService for InvokerFront {
    const NAME: &'static str =
        <ipb::invoker_server::InvokerServer<InvokerService> as tonic::server::NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for InvokerFront {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // The Invoker's span, a child of the caller's `traceparent` metadata.
            let parent = trace::from_headers(req.headers());
            let mut span = trace::Span::start(
                "shoal.invoker.v1.Invoker/Invoke",
                trace::Kind::Server,
                parent.as_ref(),
            );
            if span.recording() {
                span.attr("rpc.system", "grpc");
                span.attr("rpc.service", "shoal.invoker.v1.Invoker");
                span.attr("rpc.method", "Invoke");
            }
            let resp = this.serve(req, span.ctx().cloned()).await;
            if span.recording() {
                // An error is a trailers-only answer: its status is in the headers.
                match Status::from_header_map(resp.headers()) {
                    Some(status) if status.code() != tonic::Code::Ok => {
                        span.attr("rpc.grpc.status_code", status.code() as i64);
                        span.error(status.message());
                    }
                    _ => span.attr("rpc.grpc.status_code", 0i64),
                }
            }
            span.end();
            Ok(resp)
        })
    }
}

impl InvokerFront {
    async fn serve(
        mut self,
        req: http::Request<tonic::body::Body>,
        trace_ctx: Option<trace::Ctx>,
    ) -> http::Response<tonic::body::Body> {
        use tower::Service;
        let (mut parts, body) = req.into_parts();
        let tls = parts.extensions.get::<tonic::transport::server::TlsConnectInfo<
            tonic::transport::server::TcpConnectInfo,
        >>();
        let addr = tls
            .and_then(|i| i.get_ref().remote_addr())
            .or_else(|| {
                parts
                    .extensions
                    .get::<tonic::transport::server::TcpConnectInfo>()
                    .and_then(|i| i.remote_addr())
            })
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        let certs = tls
            .and_then(|i| i.peer_certs())
            .map(|c| shoal_common::public_tls::PeerCerts(Arc::new(c.as_ref().clone())));
        let caller = match self
            .credentials
            .authenticate(&parts.headers, addr, certs.as_ref())
            .await
        {
            Ok(c) => c,
            // Refused before a byte of the message is read.
            Err(status) => return status.into_http(),
        };
        parts.extensions.insert(caller);
        parts.extensions.insert(SpanCtx(trace_ctx));
        let room = Arc::new(Mutex::new(None));
        let body = tonic::body::Body::new(Roomed {
            inner: body,
            prefix: [0; 5],
            have: 0,
            budget: self.budget.clone(),
            room: room.clone(),
            waiting: None,
            held: None,
        });
        let resp = match self
            .inner
            .call(http::Request::from_parts(parts, body))
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        };
        // The answer is made: the message's room is given back.
        if let Ok(mut r) = room.lock() {
            r.take();
        }
        resp
    }
}

/// A call's message on its way to tonic's decoder: once its 5-byte gRPC prefix declares
/// a length over [`FREE_BYTES`] (and within [`MAX_MESSAGE_BYTES`]; a larger one tonic
/// refuses on the prefix), room for that length is taken in the budget before the rest
/// is read, or the call is answered `UNAVAILABLE` naming `max_request_bytes` at once when
/// there is none: a stream left unread would hold its connection's flow-control window
/// and stall the connection's other calls ([`crate::body::waits_for_room`]).
struct Roomed {
    inner: tonic::body::Body,
    prefix: [u8; 5],
    /// Bytes of `prefix` seen so far.
    have: usize,
    budget: Budget,
    /// Where the room is kept until the answer is made ([`InvokerFront::serve`]).
    room: Arc<Mutex<Option<Room>>>,
    waiting: Option<BoxFuture<Result<Room, NoRoom>>>,
    /// The frame that completed the prefix, passed on once room is taken.
    held: Option<http_body::Frame<Bytes>>,
}

impl http_body::Body for Roomed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(waiting) = this.waiting.as_mut() {
                let got = ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
                match got {
                    Ok(room) => {
                        if let Ok(mut r) = this.room.lock() {
                            *r = Some(room);
                        }
                    }
                    Err(NoRoom) => {
                        this.held = None;
                        return Poll::Ready(Some(Err(Status::unavailable(format!(
                            "the gateway holds its limit of {} bytes of request bodies (max_request_bytes); retry shortly",
                            this.budget.max()
                        )))));
                    }
                }
                if let Some(frame) = this.held.take() {
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                other => return Poll::Ready(other),
            };
            if this.have < 5
                && let Some(data) = frame.data_ref()
            {
                let n = (5 - this.have).min(data.len());
                this.prefix[this.have..this.have + n].copy_from_slice(&data[..n]);
                this.have += n;
                if this.have == 5 {
                    let declared = u64::from(u32::from_be_bytes([
                        this.prefix[1],
                        this.prefix[2],
                        this.prefix[3],
                        this.prefix[4],
                    ]));
                    if declared > FREE_BYTES && declared <= MAX_MESSAGE_BYTES as u64 {
                        // No waiting over HTTP/2: room now, or none.
                        let budget = this.budget.clone();
                        this.waiting = Some(Box::pin(async move {
                            budget.room(declared, tokio::time::Instant::now()).await
                        }));
                        this.held = Some(frame);
                        continue;
                    }
                }
            }
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
