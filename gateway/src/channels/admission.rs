//! Admission control of the HTTP channels listener.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
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

/// The admission middleware.
pub async fn admit(
    State(adm): State<Admission>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let url_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    if url_len > adm.max_url_bytes {
        return respond::error(&ShoalError::new(
            ErrorCode::UriTooLong,
            format!(
                "the URL is {url_len} bytes; the limit is {}",
                adm.max_url_bytes
            ),
        ));
    }
    let Ok(permit) = adm.permits.clone().try_acquire_owned() else {
        return busy();
    };
    let mut req = req;
    let pass = Pass {
        held: Arc::new(parking_lot::Mutex::new(Some(permit))),
        permits: adm.permits.clone(),
    };
    req.extensions_mut().insert(pass);
    next.run(req).await
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
