//! Routing invocations to executors: least outstanding requests over the live executors
//! that hold the service.
//!
//! An executor that refuses the connection (gone before the request was sent) is marked
//! down for a moment and the call is retried on another, which is safe because nothing ran.
//! One that fails mid-request fails that request only (502), since the service may have
//! run. Member leases remove dead executors from the view within their TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::members::{Discovery, Member};
use crate::{ErrorCode, ShoalError};
use parking_lot::Mutex;
use shoal_proto::executor::v1 as pb;
use shoal_proto::executor::v1::executor_client::ExecutorClient;
use tonic::transport::{Channel, Endpoint};

/// How long an executor that refused a connection is skipped.
const DOWN_FOR: Duration = Duration::from_secs(2);

struct Conn {
    /// The member this connection is to (an address can be a later process's).
    member: String,
    channel: Channel,
    /// The co-located executor's socket, reached without `Channel` (see [`crate::hop`]).
    unix: Option<crate::hop::UnixHop>,
    /// The co-located executor's framed socket (see [`crate::frames`]), preferred to both.
    frames: Option<crate::frames::FrameHop>,
    outstanding: Arc<AtomicUsize>,
    down_until: Option<Instant>,
}

/// Told of every invocation a [`Router`] finished (the gateway's live request tail).
/// Called on the caller's task right after the answer: keep it cheap and non-blocking.
pub trait InvokeObserver: Send + Sync {
    fn finished(
        &self,
        req: &pb::InvokeRequest,
        outcome: &Result<pb::InvokeResponse, ShoalError>,
        elapsed: Duration,
    );
}

/// One result for the caller: a failure is always `Err` — the executor's in-band error
/// (a service's own failure) as much as a hop that failed — and `Ok` is always a success.
fn one_result(
    outcome: Result<pb::InvokeResponse, ShoalError>,
) -> Result<pb::InvokeResponse, ShoalError> {
    match outcome {
        Ok(mut r) => match r.error.take() {
            Some(e) => {
                let mut err = ShoalError::from_detail(&e);
                if err.cid.is_empty() {
                    err.cid = r.cid;
                }
                Err(err)
            }
            None => Ok(r),
        },
        Err(e) => Err(e),
    }
}

/// An executor of this very process, reached by a function call (the fused mode: a
/// channel front and a Python pool in one process). The router prefers it for every
/// service it holds and routes the others over the mesh as usual.
pub trait LocalPool: Send + Sync {
    /// Runs one invocation (the executor's own `invoke`: deadline, diagnostics, spans).
    fn invoke(
        &self,
        req: pb::InvokeRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = pb::InvokeResponse> + Send + '_>>;
}

/// A local answer held to the limit of a call between components, as a remote one is.
fn within_hop(service: &str, resp: pb::InvokeResponse) -> Result<pb::InvokeResponse, ShoalError> {
    if resp.payload.len() > crate::grpc::MAX_MESSAGE_BYTES {
        return Err(ShoalError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the call to {service} is over the {} bytes one call between components carries",
                crate::grpc::MAX_MESSAGE_BYTES
            ),
        ));
    }
    Ok(resp)
}

/// Picks executors and calls them; cheap to clone.
#[derive(Clone)]
pub struct Router {
    discovery: Discovery,
    conns: Arc<Mutex<HashMap<String, Conn>>>,
    observer: Option<Arc<dyn InvokeObserver>>,
    local: Option<Arc<dyn LocalPool>>,
}

/// What of a request the observer reads, kept when the request itself goes to the local
/// pool by value (no copy of its payload or headers).
fn skeleton(req: &pb::InvokeRequest) -> pb::InvokeRequest {
    pb::InvokeRequest {
        service: req.service.clone(),
        cid: req.cid.clone(),
        channel: req.channel.clone(),
        traceparent: req.traceparent.clone(),
        http: req
            .http
            .as_ref()
            .map(|h| shoal_proto::common::v1::HttpInfo {
                method: h.method.clone(),
                path: h.path.clone(),
                ..Default::default()
            }),
        ..Default::default()
    }
}

/// `req` encoded for gRPC; the encoded copy carries the body from here on, and `req`
/// lets its own go (see [`whole_again`] for a retry in frames).
fn encode_releasing(req: &mut pb::InvokeRequest) -> bytes::Bytes {
    let bytes = prost::Message::encode_to_vec(&*req).into();
    req.payload = bytes::Bytes::new();
    req.raw_request = bytes::Bytes::new();
    bytes
}

/// A request made whole from its encoding (by [`encode_releasing`]): its byte fields are
/// slices of `bytes`, not copies.
fn whole_again(bytes: bytes::Bytes) -> Result<pb::InvokeRequest, ShoalError> {
    prost::Message::decode(bytes).map_err(|e| {
        ShoalError::new(
            ErrorCode::Internal,
            format!("the encoded call does not decode: {e}"),
        )
    })
}

/// Decrements an executor's outstanding count when the call ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Router {
    pub fn new(discovery: Discovery) -> Router {
        Router {
            discovery,
            conns: Arc::default(),
            observer: None,
            local: None,
        }
    }

    /// This router, calling `local` — an executor of this process — for every service that
    /// process's executor member holds.
    pub fn with_local(mut self, local: Arc<dyn LocalPool>) -> Router {
        self.local = Some(local);
        self
    }

    /// Whether this process's own executor member holds `service`.
    fn local_holds(&self, service: &str) -> bool {
        let me = std::process::id();
        self.discovery.snapshot().iter().any(|m| {
            m.pid == me
                && m.host == crate::members::host_name()
                && m.services.iter().any(|s| s == service)
        })
    }

    /// This router, telling `observer` of every invocation it finishes.
    pub fn observed(mut self, observer: Arc<dyn InvokeObserver>) -> Router {
        self.observer = Some(observer);
        self
    }

    fn pick(
        &self,
        service: &str,
        tried: &[String],
    ) -> Result<(String, Transport, InFlight), ShoalError> {
        let members = self.discovery.snapshot();
        if members.is_empty() {
            return Err(ShoalError::new(
                ErrorCode::Unavailable,
                "no executor is running",
            ));
        }
        let holders: Vec<&Member> = members
            .iter()
            .filter(|m| m.services.iter().any(|s| s == service))
            .collect();
        if holders.is_empty() {
            return Err(ShoalError::new(
                ErrorCode::NotFound,
                format!("no such service: {service}"),
            ));
        }
        let now = Instant::now();
        let mut conns = self.conns.lock();
        // Forget connections of members that left.
        conns.retain(|addr, _| members.iter().any(|m| &m.grpc_addr == addr));
        let mut best: Option<(&Member, usize)> = None;
        for m in holders {
            if tried.contains(&m.grpc_addr) {
                continue;
            }
            let conn = match conns.get(&m.grpc_addr) {
                Some(c) if c.member == m.id => c,
                // New, or a new process at the same address (its sockets are new too).
                _ => {
                    let Some(c) = connect(m) else {
                        continue;
                    };
                    conns.insert(m.grpc_addr.clone(), c);
                    &conns[&m.grpc_addr]
                }
            };
            if conn.down_until.is_some_and(|t| t > now) {
                continue;
            }
            let load = conn.outstanding.load(Ordering::Acquire);
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((m, load));
            }
        }
        let Some((m, _)) = best else {
            return Err(ShoalError::new(
                ErrorCode::Unavailable,
                format!("no live executor holds {service} now; retry shortly"),
            ));
        };
        let conn = conns
            .get(&m.grpc_addr)
            .ok_or_else(|| ShoalError::new(ErrorCode::Internal, "executor connection vanished"))?;
        conn.outstanding.fetch_add(1, Ordering::AcqRel);
        let transport = match (&conn.frames, &conn.unix) {
            (Some(hop), _) => Transport::Frames(hop.clone()),
            (None, Some(hop)) => Transport::Unix(hop.clone()),
            (None, None) => Transport::Channel(conn.channel.clone()),
        };
        Ok((
            m.grpc_addr.clone(),
            transport,
            InFlight(conn.outstanding.clone()),
        ))
    }

    fn mark_down(&self, addr: &str) {
        if let Some(c) = self.conns.lock().get_mut(addr) {
            c.down_until = Some(Instant::now() + DOWN_FOR);
        }
    }

    /// Invokes a service on the best executor; retries elsewhere only when the chosen one
    /// could not be reached at all. `Ok` is a success; every failure — the service's own
    /// included — is `Err` (the observer still sees the executor's answer as it came, with
    /// its diagnostics).
    pub async fn invoke(
        &self,
        mut req: pb::InvokeRequest,
    ) -> Result<pb::InvokeResponse, ShoalError> {
        // The body crosses the hop once: a payload that is the body itself (one buffer,
        // as a JSON channel makes it) is sent as `raw_request` only.
        if !req.payload.is_empty()
            && req.payload.len() == req.raw_request.len()
            && req.payload.as_ptr() == req.raw_request.as_ptr()
        {
            req.payload = bytes::Bytes::new();
            req.payload_is_raw = true;
        }
        if let Some(local) = &self.local
            && self.local_holds(&req.service)
        {
            // The fused path: a function call, no socket, no encoding — and the same
            // limits as over the mesh (an answer over what one call between components
            // carries is refused in both modes).
            let service = req.service.clone();
            let Some(observer) = &self.observer else {
                return one_result(within_hop(&service, local.invoke(req).await));
            };
            let seen = skeleton(&req);
            let started = Instant::now();
            let outcome = within_hop(&service, local.invoke(req).await);
            observer.finished(&seen, &outcome, started.elapsed());
            return one_result(outcome);
        }
        let Some(observer) = &self.observer else {
            return one_result(self.invoke_unobserved(&mut req).await);
        };
        let started = Instant::now();
        let outcome = self.invoke_unobserved(&mut req).await;
        observer.finished(&req, &outcome, started.elapsed());
        one_result(outcome)
    }

    /// Sends `req` to an executor and waits for its answer. The body is held once while
    /// the call is out, by whatever sends it — the framed hop's writer until it is written,
    /// or the gRPC message encoded for a retry — and `req` lets its own copy go (the
    /// caller's observer reads only its small fields).
    async fn invoke_unobserved(
        &self,
        req: &mut pb::InvokeRequest,
    ) -> Result<pb::InvokeResponse, ShoalError> {
        let mut tried: Vec<String> = Vec::new();
        let deadline = Duration::from_millis(if req.timeout_ms == 0 {
            30_000
        } else {
            req.timeout_ms
        }) + Duration::from_secs(1);
        // Encoded once for gRPC, when a call goes over it: a retry on another executor
        // sends the same bytes. (The framed hop encodes as it writes.)
        let mut encoded: Option<bytes::Bytes> = None;
        loop {
            let (addr, transport, _inflight) = self.pick(&req.service, &tried)?;
            let request = match &transport {
                Transport::Frames(_) => {
                    // After a gRPC attempt that was never sent, the body is in the
                    // encoded message only: the request is made whole from it (its byte
                    // fields slices of it, not copies).
                    if let Some(bytes) = encoded.take() {
                        *req = whole_again(bytes)?;
                    }
                    None
                }
                _ => {
                    let bytes = encoded.get_or_insert_with(|| encode_releasing(req)).clone();
                    let mut request = tonic::Request::new(bytes);
                    request.set_timeout(deadline);
                    Some(request)
                }
            };
            // A member that stops answering (frozen, partitioned) loses its lease within
            // seconds: its calls in flight end then, not at their deadline.
            let outcome = tokio::select! {
                biased;
                r = invoke_encoded(transport, req, request, deadline) => Some(r),
                () = self.discovery.left(&addr) => None,
            };
            let Some(outcome) = outcome else {
                tracing::warn!(executor = %addr, "executor left the cluster mid-call");
                self.mark_down(&addr);
                return Err(ShoalError::new(
                    ErrorCode::BadGateway,
                    format!(
                        "the executor running {} left the cluster mid-call (its member lease ended)",
                        req.service
                    ),
                ));
            };
            match outcome {
                Ok(resp) => return Ok(resp),
                Err(status) if never_sent(&status) => {
                    tracing::warn!(executor = %addr, error = %status.message(), "executor unreachable; trying another");
                    self.mark_down(&addr);
                    tried.push(addr);
                }
                Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                    return Err(ShoalError::new(
                        ErrorCode::Timeout,
                        format!("service {} did not answer in time", req.service),
                    ));
                }
                // A message over the hop's limit is the request's fault, not the
                // executor's: 413, and the executor stays in routing.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
                    ) =>
                {
                    tracing::info!(executor = %addr, error = %status.message(), "invocation over the message limit");
                    return Err(ShoalError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the call to {} is over the {} bytes one call between components carries",
                            req.service,
                            crate::grpc::MAX_MESSAGE_BYTES
                        ),
                    ));
                }
                Err(status) => {
                    tracing::warn!(executor = %addr, code = ?status.code(), error = %status.message(), "executor failed mid-request");
                    self.mark_down(&addr);
                    return Err(ShoalError::new(
                        ErrorCode::BadGateway,
                        format!("the executor running {} went away mid-request", req.service),
                    ));
                }
            }
        }
    }

    /// Loads a module on one live executor, to validate it before it is published; the
    /// executor's answer says whether it imported.
    pub async fn deploy_on_one(
        &self,
        req: pb::DeployRequest,
    ) -> Result<pb::DeployResponse, ShoalError> {
        let members = self.discovery.members();
        if members.is_empty() {
            return Err(ShoalError::new(
                ErrorCode::Unavailable,
                "no executor is running to validate the module; start one and retry",
            ));
        }
        for m in members {
            let client = {
                let mut conns = self.conns.lock();
                if let Some(c) = conns.get(&m.grpc_addr) {
                    Some(ExecutorClient::new(c.channel.clone()))
                } else {
                    connect(&m).map(|c| {
                        let client = ExecutorClient::new(c.channel.clone());
                        conns.insert(m.grpc_addr.clone(), c);
                        client
                    })
                }
            };
            let Some(mut client) = client else { continue };
            let mut call = tonic::Request::new(req.clone());
            call.set_timeout(Duration::from_secs(30));
            match client.deploy(call).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    return Err(ShoalError::new(
                        ErrorCode::BadRequest,
                        status.message().to_owned(),
                    ));
                }
                Err(status) => {
                    tracing::warn!(executor = %m.grpc_addr, error = %status.message(), "deploy validation failed on this executor; trying another");
                }
            }
        }
        Err(ShoalError::new(
            ErrorCode::Unavailable,
            "no executor could be reached to validate the module",
        ))
    }

    /// Lists services of every executor (for the admin API), keyed by executor id.
    /// Calls this router has in flight per executor (by gRPC address), and whether each
    /// is marked down (refused a connection lately).
    pub fn load(&self) -> HashMap<String, (usize, bool)> {
        let now = Instant::now();
        self.conns
            .lock()
            .iter()
            .map(|(addr, c)| {
                (
                    addr.clone(),
                    (
                        c.outstanding.load(Ordering::Acquire),
                        c.down_until.is_some_and(|t| t > now),
                    ),
                )
            })
            .collect()
    }

    /// A client of `m` over this router's connection to it (made now if there is none).
    fn client(&self, m: &Member) -> Option<ExecutorClient<Channel>> {
        let mut conns = self.conns.lock();
        match conns.get(&m.grpc_addr) {
            Some(c) => Some(ExecutorClient::new(c.channel.clone())),
            None => connect(m).map(|c| {
                let client = ExecutorClient::new(c.channel.clone());
                conns.insert(m.grpc_addr.clone(), c);
                client
            }),
        }
    }

    /// The source of a module from the first live executor that holds it.
    pub async fn get_source(&self, module: &str) -> Option<pb::GetSourceResponse> {
        for m in self.discovery.members() {
            let Some(mut client) = self.client(&m) else {
                continue;
            };
            let mut req = tonic::Request::new(pb::GetSourceRequest {
                module: module.to_owned(),
            });
            req.set_timeout(Duration::from_secs(3));
            if let Ok(resp) = client.get_source(req).await {
                let resp = resp.into_inner();
                if resp.found {
                    return Some(resp);
                }
            }
        }
        None
    }

    pub async fn list_services(&self) -> Vec<(Member, Vec<pb::ServiceInfo>)> {
        let members = self.discovery.members();
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let Some(mut client) = self.client(&m) else {
                continue;
            };
            let mut req = tonic::Request::new(pb::ListServicesRequest {});
            req.set_timeout(Duration::from_secs(3));
            if let Ok(resp) = client.list_services(req).await {
                out.push((m, resp.into_inner().services));
            }
        }
        out
    }
}

/// How a call reaches an executor.
enum Transport {
    Channel(Channel),
    Unix(crate::hop::UnixHop),
    Frames(crate::frames::FrameHop),
}

/// `Executor.Invoke`: in frames, or over gRPC with the request encoded beforehand (see
/// [`crate::grpc::PreEncoded`]; `encoded` is it, for every transport but frames), bounded
/// by `deadline` on this side too (a peer that stops answering cannot hold the call past
/// it).
async fn invoke_encoded(
    transport: Transport,
    req: &mut pb::InvokeRequest,
    encoded: Option<tonic::Request<bytes::Bytes>>,
    deadline: Duration,
) -> Result<pb::InvokeResponse, tonic::Status> {
    let call = async {
        let grpc = |encoded: Option<tonic::Request<bytes::Bytes>>| {
            encoded.ok_or_else(|| tonic::Status::internal("the request was not encoded"))
        };
        match transport {
            Transport::Frames(hop) => hop.invoke(req).await,
            Transport::Channel(channel) => {
                unary(tonic::client::Grpc::new(channel), grpc(encoded)?).await
            }
            Transport::Unix(hop) => {
                // The URI's authority is only a label: the socket is the address.
                let origin = http::Uri::from_static("http://executor.local");
                unary(
                    tonic::client::Grpc::with_origin(hop, origin),
                    grpc(encoded)?,
                )
                .await
            }
        }
    };
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "the executor did not answer in time",
            ))
        })
}

async fn unary<T>(
    grpc: tonic::client::Grpc<T>,
    request: tonic::Request<bytes::Bytes>,
) -> Result<pb::InvokeResponse, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut grpc = grpc
        .max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
    grpc.ready().await.map_err(|e| {
        tonic::Status::unknown(format!("executor connection not ready: {}", e.into()))
    })?;
    let path = http::uri::PathAndQuery::from_static("/shoal.executor.v1.Executor/Invoke");
    grpc.unary(
        request,
        path,
        crate::grpc::PreEncoded::<pb::InvokeResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Whether a gRPC status means the request never reached the peer (connection refused
/// or not established), so trying another peer cannot run anything twice.
pub fn never_sent(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut text = status.message().to_ascii_lowercase();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        text.push(' ');
        text.push_str(&s.to_string().to_ascii_lowercase());
        source = s.source();
    }
    text.contains("connect") || text.contains("connection refused")
}

/// A lazy channel to an executor: over its Unix socket when it runs on this host (and the
/// socket is there), else over TCP.
fn connect(m: &Member) -> Option<Conn> {
    let socket = crate::members::local_socket(m);
    // Over TCP with mutual TLS when this process has a cluster certificate; a Unix
    // socket is protected by its file mode instead.
    let tls = crate::tls::cluster().filter(|_| socket.is_none());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", m.grpc_addr))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = match endpoint.tls_config(tls.client(crate::members::role::EXECUTOR)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(executor = %m.grpc_addr, error = %e, "cannot set up TLS to an executor");
                return None;
            }
        };
    }
    let unix = socket
        .clone()
        .filter(|_| crate::levers::on(crate::levers::Lever::Hop))
        .map(crate::hop::UnixHop::new);
    let frames = crate::members::local_frames(m)
        .filter(|_| crate::levers::on(crate::levers::Lever::Frames))
        .map(crate::frames::FrameHop::new);
    let channel = match socket {
        Some(path) => crate::grpc::connect_unix_lazy(endpoint, path),
        None => endpoint.connect_lazy(),
    };
    Some(Conn {
        member: m.id.clone(),
        channel,
        unix,
        frames,
        outstanding: Arc::default(),
        down_until: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_encoded_for_grpc_lets_its_body_go_and_is_made_whole_again_from_it() {
        let body = bytes::Bytes::from(vec![b'7'; 100_000]);
        let whole = super::pb::InvokeRequest {
            service: "x".into(),
            cid: "c".into(),
            payload: bytes::Bytes::from_static(b"{}"),
            raw_request: body.clone(),
            ..Default::default()
        };
        let mut req = whole.clone();
        let encoded = super::encode_releasing(&mut req);
        assert!(req.payload.is_empty() && req.raw_request.is_empty());
        assert_eq!(req.service, "x", "the small fields stay, for the observer");
        let again = super::whole_again(encoded.clone()).expect("decodes");
        assert_eq!(again, whole);
        // The body is a slice of the encoded message, not a copy of it.
        let inside = encoded.as_ptr_range();
        assert!(inside.contains(&again.raw_request.as_ptr()));
    }

    #[tokio::test]
    async fn a_framed_socket_that_is_gone_is_a_call_never_sent_and_a_lost_one_is_not() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("gone.hop");
        let req = super::pb::InvokeRequest {
            service: "x".into(),
            ..Default::default()
        };
        let status = crate::frames::FrameHop::new(path.clone())
            .invoke(&mut req.clone())
            .await
            .expect_err("nothing listens");
        assert!(super::never_sent(&status), "{status:?}");
        // An executor that takes the call and dies before answering.
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut first = [0u8; 16];
            let _ = s.read(&mut first).await;
        });
        let status = crate::frames::FrameHop::new(path)
            .invoke(&mut req.clone())
            .await
            .expect_err("the connection ended");
        assert!(!super::never_sent(&status), "{status:?}");
    }
}
