//! The ops listener every binary serves: `/live` (the process runs), `/ready` (it can do
//! its work: store connected, registered, serving), `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Labels of a certificate's expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CertLabels {
    /// `cluster`, `cluster_ca` or `public` (one gauge per use: a rotated certificate
    /// replaces its predecessor's value).
    pub cert: String,
}

type CertGauges = prometheus_client::metrics::family::Family<
    CertLabels,
    prometheus_client::metrics::gauge::Gauge,
>;

fn certificates() -> &'static CertGauges {
    static G: std::sync::OnceLock<CertGauges> = std::sync::OnceLock::new();
    G.get_or_init(CertGauges::default)
}

/// Records when the certificate `der` (used as `kind`) expires, for the
/// `shoal_tls_certificate_expiry_timestamp_seconds` gauge (what the shipped alert reads).
pub fn note_certificate(kind: &str, der: &[u8]) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return;
    };
    let labels = CertLabels {
        cert: kind.to_owned(),
    };
    certificates()
        .get_or_create(&labels)
        .set(cert.validity().not_after.timestamp());
}

/// Readiness and metrics shared between a component and its ops listener; cheap to clone.
#[derive(Clone)]
pub struct Ops {
    ready: Arc<AtomicBool>,
    registry: Arc<Mutex<Registry>>,
    component: &'static str,
}

impl Ops {
    /// New ops state for `component` (e.g. `gateway`), not ready yet.
    pub fn new(component: &'static str) -> Ops {
        let ops = Ops {
            ready: Arc::default(),
            registry: Arc::new(Mutex::new(Registry::with_prefix("shoal"))),
            component,
        };
        // Every component serves the tracer's counters (zero while tracing is off) and
        // the expiry of the certificates it serves with.
        ops.register(|r| crate::trace::counters().register(r));
        ops.register(|r| {
            r.register(
                "tls_certificate_expiry_timestamp_seconds",
                "When a certificate this process serves or trusts expires (Unix seconds), by use: cluster (mutual TLS between components), cluster_ca, public (the public listeners)",
                certificates().clone(),
            );
        });
        ops
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Registers metrics; `f` gets the registry (names are prefixed `shoal_`).
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock());
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry.lock()).is_err() {
            out.clear();
        }
        out
    }

    /// Routes `/live`, `/ready` and `/metrics`, to mount on any axum listener.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/live", get(live))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

async fn live(State(ops): State<Ops>) -> impl IntoResponse {
    (StatusCode::OK, format!("{} live\n", ops.component))
}

async fn ready(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.is_ready() {
        (StatusCode::OK, format!("{} ready\n", ops.component))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} not ready\n", ops.component),
        )
    }
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.render(),
    )
}

/// Serves `router` on `listener` until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}
