//! Admission control of the HTTP channels listener.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures::future::Either;
use http::{HeaderValue, Request, header};
use shoal_common::{ErrorCode, ShoalError};

use crate::respond;

/// Admission control of the HTTP channels listener: a cap on requests in flight (503 with
/// `Retry-After` beyond it, so load sheds instead of queueing without bound) and on the
/// URL's length (414).
#[derive(Clone)]
pub struct Admission {
    permits: Arc<tokio::sync::Semaphore>,
    max_url_bytes: usize,
}

impl Admission {
    pub fn new(max_in_flight: usize, max_url_bytes: usize) -> Admission {
        Admission {
            permits: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            max_url_bytes,
        }
    }
}

impl Admission {
    /// Admits `req` or answers for it: 414 for a URL over the limit, 503 when the listener
    /// is full; an admitted request carries its [`Pass`].
    #[allow(clippy::result_large_err)]
    fn admit(&self, req: &Request<Body>) -> Result<Pass, Response> {
        let url_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
        if url_len > self.max_url_bytes {
            return Err(respond::error(&ShoalError::new(
                ErrorCode::UriTooLong,
                format!(
                    "the URL is {url_len} bytes; the limit is {}",
                    self.max_url_bytes
                ),
            )));
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy())?;
        Ok(Pass {
            held: Arc::new(parking_lot::Mutex::new(Some(permit))),
            permits: self.permits.clone(),
        })
    }
}

/// Admission control as a layer of the channels' router (outermost).
impl<S> tower::Layer<S> for Admission {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted {
            adm: self.clone(),
            inner,
        }
    }
}

/// A service behind [`Admission`]. The checks run in `call`, before the inner service's
/// future exists, and an admitted request gets that future itself: no middleware future
/// wraps every request's state (a `from_fn` middleware's is boxed and moved once more per
/// request, which showed in the gateway's profile).
#[derive(Clone)]
pub struct Admitted<S> {
    adm: Admission,
    inner: S,
}

impl<S> tower::Service<Request<Body>> for Admitted<S>
where
    S: tower::Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.adm.admit(&req) {
            Ok(pass) => {
                req.extensions_mut().insert(pass);
                Either::Right(self.inner.call(req))
            }
            Err(refusal) => Either::Left(std::future::ready(Ok(refusal))),
        }
    }
}

fn busy() -> Response {
    let mut resp = respond::error(&ShoalError::new(
        ErrorCode::Unavailable,
        "too many requests in flight; retry shortly",
    ));
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A request's place among those in flight. A request about to wait for something that
/// is not its own work (a credential verification slot) gives its place up meanwhile
/// ([`Pass::step_out`]) and takes one again after ([`Pass::step_in`]), so requests waiting
/// on verifications never fill the listener.
#[derive(Clone)]
pub struct Pass {
    held: Arc<parking_lot::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Pass {
    /// Gives the place up.
    pub fn step_out(&self) {
        self.held.lock().take();
    }

    /// Takes a place again: `Err(the 503 to answer)` when the listener is full now.
    #[allow(clippy::result_large_err)]
    pub fn step_in(&self) -> Result<(), Response> {
        let mut held = self.held.lock();
        if held.is_none() {
            *held = Some(
                self.permits
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| busy())?,
            );
        }
        Ok(())
    }
}
