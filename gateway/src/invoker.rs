//! The public gRPC `shoal.invoker.v1.Invoker`. Callers authenticate with any active
//! security definition of the cluster — Basic credentials as `authorization` metadata, an
//! API key under its header's name — or with the admin credentials. Nothing is callable
//! anonymously.

use shoal_common::invocation::Invocation;
use shoal_common::{ErrorCode, ShoalError};
use shoal_proto::executor::v1 as pb;
use shoal_proto::invoker::v1 as ipb;
use tonic::{Request, Response, Status};

use crate::auth::BasicAuth;
use shoal_common::routing::Router;

/// Serves `Invoker` over the executor router.
#[derive(Clone)]
pub struct InvokerService {
    pub router: Router,
    pub auth: BasicAuth,
    pub channels: crate::channels::Channels,
}

#[tonic::async_trait]
impl ipb::invoker_server::Invoker for InvokerService {
    async fn invoke(
        &self,
        req: Request<ipb::InvokeRequest>,
    ) -> Result<Response<ipb::InvokeResponse>, Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        // Recently verified admin credentials need no hashing: skip the blocking pool.
        let who = if self.auth.check_cached(presented) {
            Some(("admin".to_owned(), crate::auth::ADMIN_USER.to_owned()))
        } else {
            let headers = req.metadata().clone().into_headers();
            let auth = self.auth.clone();
            let table = self.channels.table();
            tokio::task::spawn_blocking(move || {
                let admin = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth.check(admin) {
                    return Some(("admin".to_owned(), crate::auth::ADMIN_USER.to_owned()));
                }
                table.authenticate_any(&headers)
            })
            .await
            .ok()
            .flatten()
        };
        let Some((security_name, username)) = who else {
            return Err(Status::unauthenticated(
                "credentials required: Basic credentials in `authorization` metadata, or an API key",
            ));
        };
        let timeout_ms = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout_ms)
            .unwrap_or(0);
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
            .caller(security_name, username)
            .payload(req.payload)
            .timeout_ms(timeout_ms)
            .build();
        let resp = self
            .router
            .invoke(call)
            .await
            .map_err(|e| e.with_cid(&cid).to_status())?;
        if let Some(e) = &resp.error {
            return Err(ShoalError::from_detail(e).to_status());
        }
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

/// Parses a `grpc-timeout` value (`100m`, `5S`, …) into milliseconds.
fn parse_grpc_timeout_ms(v: &str) -> Option<u64> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1000,
        "m" => n,
        "u" => n / 1000,
        "n" => n / 1_000_000,
        _ => return None,
    })
}
