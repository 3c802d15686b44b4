//! The public gRPC `shoal.invoker.v1.Invoker`. Callers authenticate with any active
//! security definition of the cluster — Basic credentials or a bearer token (a JWT, a
//! static token) as `authorization` metadata, an API key under its header's name, a client
//! certificate when the listener serves TLS — or with the admin credentials. Nothing is
//! callable anonymously. Credential checks go through the same verifiers as the channels
//! and the admin API (bounded, throttled per client address).

use shoal_common::invocation::Invocation;
use shoal_common::trace;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;
use shoal_proto::invoker::v1 as ipb;
use tonic::{Request, Response, Status};

use crate::auth::{BasicAuth, Verdict, Verifier};
use crate::channels::guard::Presented;
use shoal_common::routing::Router;

/// Serves `Invoker` over the executor router.
#[derive(Clone)]
pub struct InvokerService {
    pub router: Router,
    pub auth: BasicAuth,
    /// The channels' verifier (the Invoker checks the channels' definitions).
    pub verifier: Verifier,
    /// The admin listener's (for the admin credentials).
    pub admin_verifier: Verifier,
    pub channels: crate::channels::Channels,
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

#[tonic::async_trait]
impl ipb::invoker_server::Invoker for InvokerService {
    async fn invoke(
        &self,
        req: Request<ipb::InvokeRequest>,
    ) -> Result<Response<ipb::InvokeResponse>, Status> {
        let headers = req.metadata().clone().into_headers();
        // The Invoker's span, a child of the caller's `traceparent` metadata.
        let parent = trace::from_headers(&headers);
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
        let result = self.invoke_traced(req, headers, span.ctx().cloned()).await;
        if span.recording() {
            match &result {
                Ok(_) => span.attr("rpc.grpc.status_code", 0i64),
                Err(status) => {
                    span.attr("rpc.grpc.status_code", status.code() as i64);
                    span.error(status.message());
                }
            }
        }
        span.end();
        result
    }
}

impl InvokerService {
    async fn invoke_traced(
        &self,
        req: Request<ipb::InvokeRequest>,
        headers: http::HeaderMap,
        trace_ctx: Option<trace::Ctx>,
    ) -> Result<Response<ipb::InvokeResponse>, Status> {
        let addr = req
            .remote_addr()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        let certs = req
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .map(|c| shoal_common::public_tls::PeerCerts(std::sync::Arc::new(c.as_ref().clone())));
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        // The admin credentials first when the Basic header names the admin user.
        let is_admin = authorization
            .and_then(crate::auth::parse_basic)
            .is_some_and(|(u, _)| u == self.auth.user());
        let (security_name, username, auth_json) = if is_admin {
            match self
                .auth
                .check(&self.admin_verifier, authorization, Some(addr), "admin")
                .await
            {
                Verdict::Valid => (
                    "admin".to_owned(),
                    crate::auth::ADMIN_USER.to_owned(),
                    String::new(),
                ),
                Verdict::Throttled(_) => {
                    return Err(unauthenticated(
                        ErrorCode::TooManyRequests,
                        "too many failed attempts; retry later",
                    ));
                }
                Verdict::Busy => {
                    return Err(unauthenticated(
                        ErrorCode::Unavailable,
                        "credentials cannot be checked now; retry shortly",
                    ));
                }
                Verdict::Invalid => return Err(unauthenticated(ErrorCode::Unauthorized, "")),
            }
        } else {
            let table = self.channels.table();
            let presented = Presented {
                headers: &headers,
                addr,
                certs: certs.as_ref(),
                verifier: &self.verifier,
            };
            match table.authenticate_any(&presented).await {
                Ok(c) => {
                    let json = c.to_json();
                    (c.security, c.username, json)
                }
                Err(r) => return Err(unauthenticated(r.error.code, &r.error.message)),
            }
        };
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
            .caller(security_name, username)
            .auth(auth_json)
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
