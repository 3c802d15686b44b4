//! gRPC plumbing shared by every server: health (grpc.health.v1) and reflection on every
//! listener, and a serve helper with graceful shutdown.

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// The largest gRPC message between Shoal's components (an invocation with its body, a
/// response with its payload): 64 MiB. Channels' `max_body` stays under it
/// ([`crate::objects::MAX_CHANNEL_BODY`]).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A tonic server builder as every Shoal listener uses it: a caller's expired
/// `grpc-timeout` is answered `DEADLINE_EXCEEDED` ([`crate::deadline`]).
fn server() -> tonic::transport::Server<
    tower::layer::util::Stack<crate::deadline::DeadlineLayer, tower::layer::util::Identity>,
> {
    tonic::transport::Server::builder().layer(crate::deadline::DeadlineLayer)
}

/// The largest health check or reflection request read (64 KiB).
pub const SMALL_MESSAGE_BYTES: usize = 64 * 1024;

/// Adds grpc.health.v1 (reporting `names` as serving) and reflection over Shoal's protos to
/// `routes`.
pub async fn with_health_and_reflection(routes: Routes, names: &[&str]) -> Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Health checks and reflection requests are a few names long and anyone may send them:
    // a larger message is refused on its prefix (`OUT_OF_RANGE`), before it is read.
    let mut routes = routes.add_service(health.max_decoding_message_size(SMALL_MESSAGE_BYTES));
    // Both reflection versions: grpcurl up to 1.8 and many GUI clients speak only v1alpha.
    match builder().build_v1() {
        Ok(r) => routes = routes.add_service(r.max_decoding_message_size(SMALL_MESSAGE_BYTES)),
        Err(e) => tracing::warn!(error = %e, "gRPC reflection (v1) unavailable"),
    }
    match builder().build_v1alpha() {
        Ok(r) => routes = routes.add_service(r.max_decoding_message_size(SMALL_MESSAGE_BYTES)),
        Err(e) => tracing::warn!(error = %e, "gRPC reflection (v1alpha) unavailable"),
    }
    routes
}

/// Serves `routes` on `listener` until `cancel`, then drains in-flight calls. With this
/// process's cluster certificate installed ([`crate::tls`]) the listener takes mutual TLS
/// only, and each caller's role is checked against [`crate::tls::CALLERS`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    serve_tcp(listener, routes, cancel, crate::tls::cluster()).await
}

/// The bounds of a public gRPC listener (the gateway's Invoker), where anyone may connect.
#[derive(Clone, Copy, Debug)]
pub struct PublicLimits {
    /// Connections kept open at once; one more is closed at once (its client sees the
    /// connection refused — `UNAVAILABLE` — and retries), so idle or silent clients
    /// cannot exhaust the process's memory or file descriptors.
    pub max_connections: usize,
    /// How long a new connection may take to send its first bytes (the HTTP/2 preface)
    /// or to finish its TLS handshake before it is closed: a client that connects and
    /// stays silent holds a slot only this long.
    pub first_bytes_timeout: std::time::Duration,
}

/// Serves `routes` on `listener` to anyone (the gateway's public Invoker, whose callers
/// are checked by the cluster's security definitions), over TLS when `tls` is given (the
/// public listener's certificate, reloaded when its files change), within `limits`:
/// handshakes and first bytes are awaited in parallel, so a slow client holds up no one.
pub async fn serve_public_tls(
    listener: tokio::net::TcpListener,
    routes: Routes,
    tls: Option<crate::public_tls::PublicTls>,
    limits: PublicLimits,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let wait = limits.first_bytes_timeout;
    match tls {
        Some(tls) => {
            let acceptor = tls.acceptor();
            let incoming = accept_within(listener, slots, cancel.clone(), move |stream| {
                let acceptor = acceptor.clone();
                async move {
                    match tokio::time::timeout(wait, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Some(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            None
                        }
                    }
                }
            });
            server()
                .tcp_nodelay(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
                .await
        }
        None => {
            let incoming =
                accept_within(listener, slots, cancel.clone(), move |stream| async move {
                    // Served once it says something; a silent connection is closed.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => Some(stream),
                        _ => None,
                    }
                });
            server()
                .tcp_nodelay(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
                .await
        }
    }
}

/// Accepts connections on `listener` while `slots` has room (one more is closed at once),
/// readies each with `ready` (a TLS handshake, the first bytes) on a task of its own,
/// and yields those that are ready, each holding its slot until tonic drops it.
fn accept_within<IO, F, Fut>(
    listener: tokio::net::TcpListener,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    cancel: CancellationToken,
    ready: F,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Slotted<IO>>>
where
    IO: Send + 'static,
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<IO>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(peer = %peer, "connection refused: the listener has its connections open");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (ready, tx) = (ready(stream), tx.clone());
            tokio::spawn(async move {
                if let Some(io) = ready.await {
                    let _ = tx.send(Ok(Slotted { io, _slot: slot })).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A connection holding one of its listener's slots until it is dropped.
pub struct Slotted<IO> {
    io: IO,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Slotted<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Slotted<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Slotted<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    routes: Routes,
    cancel: CancellationToken,
    tls: Option<std::sync::Arc<crate::tls::ClusterTls>>,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = server().tcp_nodelay(true);
    let routes = match tls {
        Some(tls) => {
            builder = builder.tls_config(tls.server())?;
            crate::tls::guard(routes)
        }
        None => routes,
    };
    builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await
}

/// Serves `routes` on a Unix socket at `path` until `cancel` (for callers on the same
/// host: no TCP stack, measured cheaper per call), then removes the socket file.
pub async fn serve_unix(
    path: std::path::PathBuf,
    routes: Routes,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    // No TLS on the socket: only this user may connect to it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let result = server()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(std::io::Error::other)
}

/// A lazy channel from `endpoint` that connects over the Unix socket at `path` (the
/// endpoint's URI is then only a label).
pub fn connect_unix_lazy(
    endpoint: tonic::transport::Endpoint,
    path: std::path::PathBuf,
) -> tonic::transport::Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
        let path = path.clone();
        async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    }))
}

/// Binds a TCP listener, with a message naming the address on failure.
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Binds a TCP listener with `SO_REUSEPORT` (and `SO_REUSEADDR`): several processes of
/// this host may bind the same address, and the kernel spreads new connections over
/// them. `addr` is resolved first (a host name or an IP and port).
pub async fn bind_reuse_port(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let resolved = tokio::net::lookup_host(addr)
        .await
        .map_err(named)?
        .next()
        .ok_or_else(|| {
            named(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no address",
            ))
        })?;
    let socket = if resolved.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(named)?;
    socket.set_reuseaddr(true).map_err(named)?;
    socket.set_reuseport(true).map_err(named)?;
    socket.bind(resolved).map_err(named)?;
    socket.listen(1024).map_err(named)
}

/// A gRPC codec for unary calls whose request is already encoded (a prost message as
/// bytes): the same request can go out again, to another peer, without a clone of the
/// message or a second encoding. Responses decode as `U`.
pub struct PreEncoded<U>(std::marker::PhantomData<U>);

impl<U> Default for PreEncoded<U> {
    fn default() -> Self {
        PreEncoded(std::marker::PhantomData)
    }
}

/// Writes already-encoded request bytes as the message.
pub struct BytesEncoder;

impl tonic::codec::Encoder for BytesEncoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl<U> tonic::codec::Codec for PreEncoded<U>
where
    U: prost::Message + Default + Send + 'static,
{
    type Encode = bytes::Bytes;
    type Decode = U;
    type Encoder = BytesEncoder;
    type Decoder = <tonic_prost::ProstCodec<(), U> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut tonic_prost::ProstCodec::<(), U>::default())
    }
}
