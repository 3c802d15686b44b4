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
    let Ok(_permit) = adm.permits.clone().try_acquire_owned() else {
        let mut resp = respond::error(&ShoalError::new(
            ErrorCode::Unavailable,
            "too many requests in flight; retry shortly",
        ));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}
