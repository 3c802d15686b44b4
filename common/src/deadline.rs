//! The caller's gRPC deadline, answered as gRPC says: `DEADLINE_EXCEEDED`.
//!
//! A gRPC caller sends its deadline as a `grpc-timeout` header. tonic's server honours it,
//! but answers an expired call with `CANCELLED` "Timeout expired" (its `TimeoutExpired`
//! error becomes `Status::cancelled`), where the gRPC specification — and every C-core,
//! Java and Go server — says `DEADLINE_EXCEEDED`. Clients that retry on one and not the
//! other then misread a slow service as a call someone cancelled.
//!
//! [`DeadlineLayer`] sits inside tonic's own timeout, on every Shoal gRPC listener
//! ([`crate::grpc`]). tonic calls it before it starts its own timer, so this layer's timer
//! is set no later than tonic's, and tonic polls the inner future first: when the
//! deadline passes, this layer's `DEADLINE_EXCEEDED` is the answer the caller gets.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The request header a gRPC caller's deadline arrives in.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value — at most 8 ASCII digits and a unit: `H`ours, `M`inutes,
/// `S`econds, `m`illiseconds, `u` (microseconds), `n`anoseconds — as the gRPC
/// specification's HTTP/2 protocol defines it. `None` for anything else.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match value.as_bytes().last()? {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller's deadline of `headers`, if it sent a valid one.
pub fn from_headers(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// A tower layer answering `DEADLINE_EXCEEDED` when a call outlives its caller's
/// `grpc-timeout` (see the module's documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The timer starts before the inner call (and so before tonic's own timer).
        let budget = from_headers(req.headers());
        let sleep = budget.map(tokio::time::sleep);
        DeadlineFuture {
            inner: self.inner.call(req),
            sleep,
            budget: budget.unwrap_or_default(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Deadline`]: the inner call's answer, or `DEADLINE_EXCEEDED` when
    /// the caller's deadline passes first.
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        budget: Duration,
    }
}

impl<F, RB, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let ready @ Poll::Ready(_) = this.inner.poll(cx) {
            return ready;
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            return Poll::Ready(Ok(tonic::Status::deadline_exceeded(format!(
                "deadline exceeded: no answer within the caller's grpc-timeout of {}",
                describe(*this.budget)
            ))
            .into_http()));
        }
        Poll::Pending
    }
}

/// `budget` for a message: milliseconds, or microseconds under one.
fn describe(budget: Duration) -> String {
    if budget >= Duration::from_millis(1) {
        format!("{} ms", budget.as_millis())
    } else {
        format!("{} µs", budget.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    #[test]
    fn parses_every_unit_and_refuses_the_rest() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in [
            "",
            "m",
            "5",
            "5s",
            "123456789m",
            "-5S",
            "+5S",
            "5 S",
            "1.5S",
            "5é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri("/shoal.test/Call");
        if let Some(t) = timeout {
            b = b.header(GRPC_TIMEOUT, t);
        }
        b.body(()).expect("request")
    }

    type Answer = std::pin::Pin<
        Box<dyn Future<Output = Result<http::Response<String>, std::convert::Infallible>> + Send>,
    >;

    /// A service that answers 200 after `delay`.
    fn slow(delay: Duration) -> tower::util::ServiceFn<impl FnMut(http::Request<()>) -> Answer> {
        tower::service_fn(move |_req: http::Request<()>| -> Answer {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new("done".to_owned()))
            })
        })
    }

    fn grpc_status(resp: &http::Response<String>) -> Option<&str> {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn an_expired_deadline_is_deadline_exceeded_with_the_budget_named() {
        let mut svc = DeadlineLayer.layer(slow(Duration::from_secs(2)));
        let resp = svc
            .ready()
            .await
            .expect("ready")
            .call(request(Some("300m")))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&resp), Some("4"), "DEADLINE_EXCEEDED");
        let msg = resp
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(msg.contains("300%20ms"), "{msg}");
    }

    #[tokio::test]
    async fn an_answer_within_the_deadline_or_without_one_passes_untouched() {
        let mut svc = DeadlineLayer.layer(slow(Duration::from_millis(50)));
        for timeout in [Some("5S"), None, Some("nonsense")] {
            let resp = svc
                .ready()
                .await
                .expect("ready")
                .call(request(timeout))
                .await
                .expect("answer");
            assert_eq!(grpc_status(&resp), None, "{timeout:?}");
            assert_eq!(resp.body(), "done");
        }
    }
}
