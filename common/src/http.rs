//! Serving an axum router with limits that plain `axum::serve` does not expose: a header
//! read timeout (a client that dribbles its headers — slowloris — is cut off), a cap on
//! header bytes, a bound on open connections (one over it is answered 503 and closed, so
//! slow or idle clients cannot starve the listener), `TCP_NODELAY` on accepted sockets,
//! HTTP/1.1 and h2c, and a graceful drain bounded by a grace period.
//!
//! **Answers not yet sent are bounded** ([`AnswerBudget`]): every answer's bytes count
//! against the listener's budget and its connection's until they are handed to the
//! connection, in chunks it takes as the client reads (HTTP/2 flow control respected, no
//! whole answer pushed into a send buffer). An answer that would go over either budget is
//! replaced by a 503; a connection whose answers make no progress for the stall timeout
//! (a client that stopped reading — an HTTP/2 window held at zero) is closed, which frees
//! everything it held. So clients that never read cannot hold the listener's memory, and
//! the clients that do read are served meanwhile.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

/// Limits of one HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// How long in-flight requests may finish after shutdown starts.
    pub grace: Duration,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Bytes of answers not yet sent, over all connections; an answer past it gets 503.
    pub max_answer_bytes: usize,
    /// Bytes of answers not yet sent on one connection; an answer past it gets 503.
    pub max_answer_bytes_per_connection: usize,
    /// How long a connection's answers may make no progress (the client does not read)
    /// before the connection is closed.
    pub answer_stall_timeout: Duration,
}

/// Default of [`HttpLimits::max_answer_bytes`]: 128 MB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 128 << 20;
/// Default of [`HttpLimits::max_answer_bytes_per_connection`]: 8 MB.
pub const DEFAULT_MAX_ANSWER_BYTES_PER_CONNECTION: usize = 8 << 20;
/// Default of [`HttpLimits::answer_stall_timeout`].
pub const DEFAULT_ANSWER_STALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            grace: Duration::from_secs(10),
            max_connections: 10_000,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            max_answer_bytes_per_connection: DEFAULT_MAX_ANSWER_BYTES_PER_CONNECTION,
            answer_stall_timeout: DEFAULT_ANSWER_STALL_TIMEOUT,
        }
    }
}

/// The answer budgets' figures, one labelled series per listener:
/// `http_answer_bytes_held`, `http_answers_refused_total` (no room in a budget: 503) and
/// `http_connections_stalled_total` (closed: the client stopped reading).
#[derive(Debug, Clone, Default)]
pub struct AnswerMetrics {
    held: Family<ListenerLabel, prometheus_client::metrics::gauge::Gauge>,
    refused: Family<ListenerLabel, prometheus_client::metrics::counter::Counter>,
    stalled: Family<ListenerLabel, prometheus_client::metrics::counter::Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

use prometheus_client::metrics::family::Family;

impl AnswerMetrics {
    /// Registers the three families (once per process).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "http_answer_bytes_held",
            "Bytes of answers not yet taken by their connections",
            self.held.clone(),
        );
        registry.register(
            "http_answers_refused",
            "Answers replaced by a 503: no room in the listener's or the connection's budget",
            self.refused.clone(),
        );
        registry.register(
            "http_connections_stalled",
            "Connections closed because their client stopped reading its answers",
            self.stalled.clone(),
        );
    }

    /// The budget of one listener: `max` bytes, its figures labelled `listener`.
    pub fn budget(&self, listener: &str, max: usize) -> Arc<AnswerBudget> {
        let label = ListenerLabel {
            listener: listener.to_owned(),
        };
        Arc::new(AnswerBudget {
            held: self.held.get_or_create(&label).clone(),
            max,
            refused: self.refused.get_or_create(&label).clone(),
            stalled: self.stalled.get_or_create(&label).clone(),
        })
    }
}

/// The bytes of answers not yet handed to their connections, for one listener.
#[derive(Debug, Default)]
pub struct AnswerBudget {
    held: prometheus_client::metrics::gauge::Gauge,
    max: usize,
    refused: prometheus_client::metrics::counter::Counter,
    stalled: prometheus_client::metrics::counter::Counter,
}

impl AnswerBudget {
    /// A budget of `max` bytes whose figures are nowhere registered.
    pub fn new(max: usize) -> AnswerBudget {
        AnswerBudget {
            max,
            ..AnswerBudget::default()
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        usize::try_from(self.held.get()).unwrap_or(0)
    }

    fn take(&self, n: usize) -> bool {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let max = i64::try_from(self.max).unwrap_or(i64::MAX);
        self.held
            .inner()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|t| *t <= max || held == 0)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.held.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// What one connection holds.
#[derive(Debug)]
struct ConnBudget {
    held: AtomicUsize,
    /// Answers not yet taken whole (refusals included).
    unsent: AtomicUsize,
    max: usize,
    /// Milliseconds since `epoch` of the last chunk taken by the connection.
    progress_ms: AtomicU64,
    epoch: std::time::Instant,
}

impl ConnBudget {
    fn touch(&self) {
        self.progress_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Takes `n` bytes from `counter` if that stays within `max`, or if nothing is held (one
/// answer larger than the budget still goes, alone).
fn try_take(counter: &AtomicUsize, n: usize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(n).filter(|t| *t <= max || held == 0)
        })
        .is_ok()
}

/// Chunks an answer is handed to its connection in.
const CHUNK: usize = 64 * 1024;

/// An answer whose bytes count against its listener's and connection's budgets until the
/// connection takes them, chunk by chunk.
struct Metered {
    inner: axum::body::Body,
    pending: Bytes,
    held: usize,
    listener: Arc<AnswerBudget>,
    conn: Arc<ConnBudget>,
}

impl Metered {
    fn release(&mut self, n: usize) {
        let n = n.min(self.held);
        if n > 0 {
            self.held -= n;
            self.listener.give_back(n);
            self.conn.held.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    let rest = this.held;
                    this.release(rest);
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
        let chunk = this.pending.split_to(this.pending.len().min(CHUNK));
        this.release(chunk.len());
        this.conn.touch();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut h = self.inner.size_hint();
        let n = self.pending.len() as u64;
        h.set_lower(h.lower() + n);
        if let Some(u) = h.upper() {
            h.set_upper(u + n);
        }
        h
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let rest = self.held;
        self.release(rest);
        self.conn.unsent.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer with its bytes counted, or a 503 when the budgets have no room for it.
/// Bodies of unknown length (event streams) pass as they are.
fn meter(
    resp: axum::response::Response,
    listener: &Arc<AnswerBudget>,
    conn: &Arc<ConnBudget>,
) -> axum::response::Response {
    let Some(n) = resp.body().size_hint().exact() else {
        return resp;
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n == 0 {
        return resp;
    }
    let (resp, n) = if !try_take(&conn.held, n, conn.max) {
        listener.refused.inc();
        (
            over_budget("this connection has too many answers waiting to be read"),
            0,
        )
    } else if !listener.take(n) {
        conn.held.fetch_sub(n, Ordering::AcqRel);
        listener.refused.inc();
        (over_budget("too many answers are waiting to be sent"), 0)
    } else {
        (resp, n)
    };
    // Counted until taken whole, refusals too: a connection whose answers, whatever
    // their size, are never read is closed.
    conn.unsent.fetch_add(1, Ordering::AcqRel);
    conn.touch();
    let (parts, body) = resp.into_parts();
    let metered = Metered {
        inner: body,
        pending: Bytes::new(),
        held: n,
        listener: listener.clone(),
        conn: conn.clone(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::new(metered))
}

fn over_budget(why: &str) -> axum::response::Response {
    let body = format!(
        "{{\"error\":{{\"code\":\"unavailable\",\"message\":\"{why}; retry shortly\",\"cid\":\"\"}}}}"
    );
    let mut resp = axum::response::Response::new(axum::body::Body::from(body));
    *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    resp
}

/// Resolves when the connection's answers have made no progress for `timeout` while some
/// are unsent (its client stopped reading).
async fn stalled(conn: Arc<ConnBudget>, timeout: Duration) {
    let period = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        if conn.unsent.load(Ordering::Acquire) == 0 {
            continue;
        }
        let last = Duration::from_millis(conn.progress_ms.load(Ordering::Relaxed));
        if conn.epoch.elapsed().saturating_sub(last) >= timeout {
            return;
        }
    }
}

/// Serves `router` on `listener` until `cancel`, then drains within `limits.grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with_budget(
        listener,
        router,
        limits,
        Arc::new(AnswerBudget::new(limits.max_answer_bytes)),
        cancel,
    )
    .await
}

/// As [`serve`], with the listener's answer budget given (to read its figures; its size,
/// not `limits.max_answer_bytes`, applies).
pub async fn serve_with_budget(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    budget: Arc<AnswerBudget>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, limits, budget, None, cancel).await
}

/// The TCP peer of a request: every request served by [`serve`] carries it in its
/// extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// As [`serve_with_budget`], over TLS when `tls` is given (the handshake within the header
/// read timeout; the client's certificates, if any, in each request's extensions as
/// [`crate::public_tls::PeerCerts`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    budget: Arc<AnswerBudget>,
    tls: Option<crate::public_tls::PublicTls>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tls.map(|t| t.acceptor());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let conn_budget = Arc::new(ConnBudget {
            held: AtomicUsize::new(0),
            unsent: AtomicUsize::new(0),
            max: limits.max_answer_bytes_per_connection.max(1),
            progress_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        });
        let stall = limits.answer_stall_timeout.max(Duration::from_millis(100));
        let (router, budget, builder, acceptor) = (
            router.clone(),
            budget.clone(),
            builder.clone(),
            acceptor.clone(),
        );
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Over TLS: the handshake first, within the time a client has for its headers.
            let (io, certs) = match acceptor {
                None => (Io::Plain(stream), None),
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let certs = tls.get_ref().1.peer_certificates().map(|c| {
                                crate::public_tls::PeerCerts(Arc::new(
                                    c.iter().map(|c| c.clone().into_owned()).collect(),
                                ))
                            });
                            (Io::Tls(Box::new(tls)), certs)
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            drop(slot);
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            drop(slot);
                            return;
                        }
                    }
                }
            };
            let service = {
                let listener_budget = budget.clone();
                let conn_budget = conn_budget.clone();
                let router = tower::ServiceExt::<http::Request<hyper::body::Incoming>>::map_request(
                    router,
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(Peer(peer));
                        if let Some(c) = &certs {
                            req.extensions_mut().insert(c.clone());
                        }
                        req
                    },
                );
                tower::ServiceExt::<http::Request<hyper::body::Incoming>>::map_response(
                    router,
                    move |resp| meter(resp, &listener_budget, &conn_budget),
                )
            };
            let service = TowerToHyperService::new(service);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            let conn = watcher.watch(conn);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
                () = stalled(conn_budget, stall) => {
                    budget.stalled.inc();
                    tracing::info!(peer = %peer, stall_ms = stall.as_millis() as u64, "closing a connection whose client stopped reading its answers");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = limits.grace.as_millis() as u64,
            "HTTP drain timed out"
        );
    }
    Ok(())
}

/// A connection's stream: plain TCP or TLS over it.
enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Answers a connection over the listener's bound with a 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "{{\"error\":{{\"code\":\"unavailable\",\"message\":\"this listener has its {max} connections open; retry shortly\",\"cid\":\"\"}}}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
