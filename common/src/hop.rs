//! The gateway's hop to an executor on the same host: one HTTP/2 connection over the
//! executor's Unix socket, driven by hyper directly.
//!
//! tonic's `Channel` puts a `tower::buffer` (a task and a queue) and a reconnecting,
//! load-balancing stack between each call and the connection; the router already picks
//! the executor and counts its calls, so for the co-located hop that machinery is pure
//! cost. [`UnixHop`] keeps the one connection, hands each call straight to hyper's
//! HTTP/2 client, and connects again when the connection has closed.
//!
//! Failing to connect is reported as `UNAVAILABLE` naming the connection attempt, which
//! [`crate::routing::never_sent`] recognises: nothing ran, so the router tries another
//! executor, as it does over a `Channel`.

use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// How long connecting to the socket may take (it is local: a slow connect means the
/// executor is stuck or gone).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A cheap-to-clone client of one executor's Unix socket.
#[derive(Clone)]
pub struct UnixHop(Arc<Inner>);

struct Inner {
    path: PathBuf,
    /// The open connection, if any (cloning a sender is a reference count).
    sender: parking_lot::Mutex<Option<SendRequest<tonic::body::Body>>>,
    /// Held while connecting, so a burst of calls on a closed connection makes one
    /// connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl UnixHop {
    /// A client of the socket at `path`; nothing connects until the first call.
    pub fn new(path: PathBuf) -> UnixHop {
        UnixHop(Arc::new(Inner {
            path,
            sender: parking_lot::Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }))
    }

    fn open(&self) -> Option<SendRequest<tonic::body::Body>> {
        self.0
            .sender
            .lock()
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned()
    }

    async fn sender(&self) -> Result<SendRequest<tonic::body::Body>, tonic::Status> {
        if let Some(s) = self.open() {
            return Ok(s);
        }
        let _one = self.0.connecting.lock().await;
        if let Some(s) = self.open() {
            return Ok(s);
        }
        let path = &self.0.path;
        let unavailable = |what: String| {
            tonic::Status::unavailable(format!(
                "cannot connect to the executor's socket {}: {what}",
                path.display()
            ))
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| unavailable("timed out".into()))?
            .map_err(|e| unavailable(e.to_string()))?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let shown = path.display().to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(socket = %shown, error = %e, "executor socket connection ended");
            }
        });
        *self.0.sender.lock() = Some(sender.clone());
        Ok(sender)
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for UnixHop {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the connection's: checked (and made) per call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let hop = self.clone();
        Box::pin(async move {
            let mut sender = hop.sender().await?;
            sender.send_request(req).await.map_err(|e| {
                if e.is_closed() || e.is_canceled() {
                    // Forget the connection: the next call makes a new one.
                    hop.0.sender.lock().take();
                }
                Box::new(e) as Self::Error
            })
        })
    }
}
