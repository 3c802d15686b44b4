//! OpenTelemetry traces, end to end, with one small tracer shared by every component.
//!
//! Configured the standard way — `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the
//! default, or `grpc`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (`parentbased_traceidratio` with 1.0 by default),
//! `OTEL_SDK_DISABLED` — and off unless an endpoint is given.
//!
//! Context crosses every hop as W3C trace context ([`Ctx`], `traceparent`/`tracestate`):
//! channels read it from requests and messages, `Executor.Invoke` and `Connectors.Call`
//! carry it, and outgoing requests and messages get it — with no code in the service.
//!
//! A [`Span`] costs nothing when tracing is off (one atomic load) and little when on: its
//! record is pushed onto a bounded buffer under an uncontended lock — no thread is woken
//! per span; a thread of its own drains the buffer every half second (or as soon as a
//! batch is full) and exports. The exporter never slows or fails a call — a full buffer
//! or a collector that is down drops spans, counted in `shoal_trace_spans_dropped_total`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};

/// W3C trace context of one span: what goes on to its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    /// `tracestate`, passed along as it came.
    pub state: String,
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = (d(chunk[0])? << 4) | d(chunk[1])?;
    }
    Some(out)
}

impl Ctx {
    /// Reads `traceparent` (version 00, and later versions as 00 reads them) and
    /// `tracestate`; None when it is not a valid one (all-zero ids included).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Ctx> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        if version.len() != 2 || version == "ff" || unhex::<1>(version).is_none() {
            return None;
        }
        let trace_id = unhex::<16>(parts.next()?)?;
        let span_id = unhex::<8>(parts.next()?)?;
        let flags = unhex::<1>(parts.next()?)?;
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Ctx {
            trace_id,
            span_id,
            sampled: flags[0] & 1 == 1,
            state: tracestate
                .map(str::trim)
                .filter(|s| s.len() <= 512)
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// `traceparent` of this context.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The trace id, hex (what a trace UI searches for).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// A context from the string pair a request carries (`traceparent` may be empty).
    pub fn from_pair(traceparent: &str, tracestate: &str) -> Option<Ctx> {
        if traceparent.is_empty() {
            return None;
        }
        Ctx::parse(traceparent, Some(tracestate))
    }
}

/// What a span is to its peers (OTLP's `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    fn otlp(self) -> i32 {
        (match self {
            Kind::Internal => span::SpanKind::Internal,
            Kind::Server => span::SpanKind::Server,
            Kind::Client => span::SpanKind::Client,
            Kind::Producer => span::SpanKind::Producer,
            Kind::Consumer => span::SpanKind::Consumer,
        }) as i32
    }
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Str(v.to_owned())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Str(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Str(v.clone())
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<u16> for Val {
    fn from(v: u16) -> Val {
        Val::Int(i64::from(v))
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(i64::from(v))
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Bool(v)
    }
}

fn kv(key: &str, v: Val) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(match v {
                Val::Str(s) => any_value::Value::StringValue(s),
                Val::Int(i) => any_value::Value::IntValue(i),
                Val::Bool(b) => any_value::Value::BoolValue(b),
            }),
        }),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One span. A span that is not recorded (tracing off, or not sampled) still carries the
/// context its children go on with, so a trace id that came in goes out again.
#[must_use]
pub struct Span {
    ctx: Option<Ctx>,
    record: Option<Box<opentelemetry_proto::tonic::trace::v1::Span>>,
}

impl Span {
    /// A span that records nothing and passes `parent` on.
    pub fn none(parent: Option<&Ctx>) -> Span {
        Span {
            ctx: parent.cloned(),
            record: None,
        }
    }

    /// Starts a span named `name`, a child of `parent` (the root of a new trace without
    /// one). Recorded when tracing is on and the sampler says so (a parent's decision is
    /// kept).
    pub fn start(name: impl Into<String>, kind: Kind, parent: Option<&Ctx>) -> Span {
        let Some(t) = tracer() else {
            return Span::none(parent);
        };
        let sampled = match parent {
            Some(p) if t.sampler.parent_based => p.sampled,
            _ => t.sampler.sample_root(),
        };
        let trace_id = parent.map_or_else(rand::random::<[u8; 16]>, |p| p.trace_id);
        let span_id = rand::random::<[u8; 8]>();
        let ctx = Ctx {
            trace_id,
            span_id,
            sampled,
            state: parent.map(|p| p.state.clone()).unwrap_or_default(),
        };
        let record = sampled.then(|| {
            Box::new(opentelemetry_proto::tonic::trace::v1::Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                trace_state: ctx.state.clone(),
                parent_span_id: parent.map(|p| p.span_id.to_vec()).unwrap_or_default(),
                name: name.into(),
                kind: kind.otlp(),
                start_time_unix_nano: now_ns(),
                ..Default::default()
            })
        });
        Span {
            ctx: Some(ctx),
            record,
        }
    }

    /// Whether this span is recorded (so attributes are worth computing).
    pub fn recording(&self) -> bool {
        self.record.is_some()
    }

    /// The context its children go on with (and outgoing requests carry).
    pub fn ctx(&self) -> Option<&Ctx> {
        self.ctx.as_ref()
    }

    /// Sets an attribute (a no-op when not recording).
    pub fn attr(&mut self, key: &str, v: impl Into<Val>) {
        if let Some(r) = self.record.as_mut() {
            r.attributes.push(kv(key, v.into()));
        }
    }

    /// Renames the span (once what it is became known).
    pub fn rename(&mut self, name: impl Into<String>) {
        if let Some(r) = self.record.as_mut() {
            r.name = name.into();
        }
    }

    /// Marks the span failed, with a message (OTel's `Error` status).
    pub fn error(&mut self, message: impl Into<String>) {
        if let Some(r) = self.record.as_mut() {
            r.status = Some(Status {
                message: message.into(),
                code: status::StatusCode::Error as i32,
            });
        }
    }

    /// Ends the span now and hands it to the exporter.
    pub fn end(mut self) {
        self.finish(None);
    }

    /// Ends the span at `end_ns`, started at `start_ns` (a span measured elsewhere: the
    /// Python side of an executor).
    pub fn end_at(mut self, start_ns: u64, end_ns: u64) {
        if let Some(r) = self.record.as_mut() {
            r.start_time_unix_nano = start_ns;
        }
        self.finish(Some(end_ns));
    }

    fn finish(&mut self, end_ns: Option<u64>) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        r.end_time_unix_nano = end_ns.unwrap_or_else(now_ns);
        if let Some(t) = tracer() {
            t.submit(*r);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        // A span dropped without `end` (an early return) still ends, now.
        self.finish(None);
    }
}

// --- The tracer --------------------------------------------------------------------------

/// How roots (and, unless parent-based, every span) are sampled.
#[derive(Debug, Clone, Copy)]
struct Sampler {
    parent_based: bool,
    ratio: f64,
}

impl Sampler {
    fn sample_root(&self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio)
    }
}

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// The tracer's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where spans go: the full traces URL for HTTP (`.../v1/traces`), the collector's
    /// address for gRPC.
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub service_name: String,
    pub resource: Vec<(String, String)>,
    parent_based: bool,
    ratio: f64,
}

impl Settings {
    /// From the standard variables (`env` reads one); None when tracing is off (no
    /// endpoint, `OTEL_SDK_DISABLED=true`, or the sampler `always_off`).
    pub fn from_env(component: &str, env: impl Fn(&str) -> Option<String>) -> Option<Settings> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let protocol = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            Some("grpc") => Protocol::Grpc,
            _ => Protocol::HttpProtobuf,
        };
        let endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(e) => e,
            None => {
                let base = get("OTEL_EXPORTER_OTLP_ENDPOINT")?;
                match protocol {
                    Protocol::Grpc => base,
                    Protocol::HttpProtobuf => {
                        format!("{}/v1/traces", base.trim_end_matches('/'))
                    }
                }
            }
        };
        let (parent_based, ratio) = match get("OTEL_TRACES_SAMPLER").as_deref() {
            Some("always_on") => (false, 1.0),
            Some("always_off") | Some("parentbased_always_off") => return None,
            Some("traceidratio") => (false, ratio(get("OTEL_TRACES_SAMPLER_ARG"))),
            Some("parentbased_always_on") => (true, 1.0),
            _ => (true, ratio(get("OTEL_TRACES_SAMPLER_ARG"))),
        };
        let pairs = |v: Option<String>| -> Vec<(String, String)> {
            v.unwrap_or_default()
                .split(',')
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    let dec = |s: &str| percent_decode(s.trim());
                    Some((dec(k), dec(v)))
                })
                .filter(|(k, _)| !k.is_empty())
                .collect()
        };
        let timeout_ms = get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| get("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(10_000);
        Some(Settings {
            endpoint,
            protocol,
            headers: pairs(
                get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                    .or_else(|| get("OTEL_EXPORTER_OTLP_HEADERS")),
            ),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| component.to_owned()),
            resource: pairs(get("OTEL_RESOURCE_ATTRIBUTES")),
            parent_based,
            ratio,
        })
    }
}

fn ratio(arg: Option<String>) -> f64 {
    arg.and_then(|a| a.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite())
        .map_or(1.0, |r| r.clamp(0.0, 1.0))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| unhex::<1>(&h.to_ascii_lowercase()))
        {
            out.push(v[0]);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Spans kept waiting for the exporter at most; more are dropped (and counted).
pub const QUEUE: usize = 8192;
/// Spans sent in one export at most; a buffer this full wakes the exporter early.
const BATCH: usize = 512;
/// How often the exporter drains the buffer when no batch fills it sooner.
const BATCH_WAIT: Duration = Duration::from_millis(500);

type OtlpSpan = opentelemetry_proto::tonic::trace::v1::Span;

struct Tracer {
    sampler: Sampler,
    /// Ended spans waiting for the exporter. A call only takes the lock and pushes: waking
    /// the exporter per span (a channel's receive) cost a futex wake and a context switch
    /// per span — most of tracing's cost per call.
    buffer: parking_lot::Mutex<Vec<OtlpSpan>>,
    /// The exporter thread, woken when a batch is full (and by [`flush`]).
    exporter: OnceLock<std::thread::Thread>,
}

/// The counters of the tracer (every component's ops listener serves them):
/// `shoal_trace_spans_exported_total`, `shoal_trace_spans_dropped_total` (a full queue or
/// a failed export) and `shoal_trace_exports_failed_total`.
#[derive(Default)]
pub struct Counters {
    pub exported: prometheus_client::metrics::counter::Counter,
    pub dropped: prometheus_client::metrics::counter::Counter,
    pub failed_exports: prometheus_client::metrics::counter::Counter,
}

impl Counters {
    /// Registers the three counters.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "trace_spans_exported",
            "Spans sent to the OTLP collector",
            self.exported.clone(),
        );
        r.register(
            "trace_spans_dropped",
            "Spans not sent: the exporter's queue was full or the collector did not take them",
            self.dropped.clone(),
        );
        r.register(
            "trace_exports_failed",
            "Exports the collector did not take in time",
            self.failed_exports.clone(),
        );
    }
}

static TRACER: OnceLock<Tracer> = OnceLock::new();
static ON: AtomicBool = AtomicBool::new(false);
static COUNTERS: OnceLock<Arc<Counters>> = OnceLock::new();

/// The tracer's counters.
pub fn counters() -> Arc<Counters> {
    COUNTERS.get_or_init(Arc::default).clone()
}

fn tracer() -> Option<&'static Tracer> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    TRACER.get()
}

/// Whether spans are being recorded at all.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

impl Tracer {
    fn submit(&self, span: OtlpSpan) {
        let full = {
            let mut b = self.buffer.lock();
            if b.len() >= QUEUE {
                drop(b);
                counters().dropped.inc();
                return;
            }
            b.push(span);
            b.len() == BATCH
        };
        if full && let Some(t) = self.exporter.get() {
            t.unpark();
        }
    }

    /// What is buffered, leaving room for the next batch.
    fn take(&self) -> Vec<OtlpSpan> {
        std::mem::replace(&mut *self.buffer.lock(), Vec::with_capacity(BATCH))
    }
}

/// Exports what is buffered now and waits (at most `within`) until it is sent: what a
/// component calls on shutdown so that its last spans are not lost. A no-op when tracing
/// is off.
pub fn flush(within: Duration) {
    let Some(t) = tracer() else {
        return;
    };
    let Some(exporter) = t.exporter.get() else {
        return;
    };
    let c = counters();
    let target = c.exported.get() + c.dropped.get() + t.buffer.lock().len() as u64;
    exporter.unpark();
    let deadline = std::time::Instant::now() + within;
    while c.exported.get() + c.dropped.get() < target && std::time::Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Starts the tracer from the environment (`component` names the service when
/// `OTEL_SERVICE_NAME` does not); a no-op when tracing is off or already started.
pub fn init_from_env(component: &str) {
    if let Some(s) = Settings::from_env(component, |k| std::env::var(k).ok()) {
        start(s);
    }
}

/// Starts the tracer with `settings` (once per process).
pub fn start(settings: Settings) {
    let sampler = Sampler {
        parent_based: settings.parent_based,
        ratio: settings.ratio,
    };
    let tracer = Tracer {
        sampler,
        buffer: parking_lot::Mutex::new(Vec::with_capacity(BATCH)),
        exporter: OnceLock::new(),
    };
    if TRACER.set(tracer).is_err() {
        return;
    }
    let endpoint = settings.endpoint.clone();
    let spawned = std::thread::Builder::new()
        .name("shoal-trace-export".into())
        .spawn(move || export_loop(settings));
    match spawned {
        Ok(handle) => {
            if let Some(t) = TRACER.get() {
                let _ = t.exporter.set(handle.thread().clone());
            }
            ON.store(true, Ordering::Relaxed);
            tracing::info!(endpoint = %endpoint, "exporting traces (OTLP)");
        }
        Err(e) => tracing::warn!(error = %e, "cannot start the trace exporter; tracing off"),
    }
}

fn resource(settings: &Settings) -> Resource {
    let mut attrs = vec![
        kv("service.name", Val::Str(settings.service_name.clone())),
        kv("service.namespace", Val::Str("shoal".into())),
        kv(
            "service.version",
            Val::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        kv(
            "service.instance.id",
            Val::Str(format!(
                "{}-{}",
                crate::members::host_name(),
                std::process::id()
            )),
        ),
        kv("process.pid", Val::Int(i64::from(std::process::id()))),
        kv("telemetry.sdk.name", Val::Str("shoal".into())),
        kv("telemetry.sdk.language", Val::Str("rust".into())),
    ];
    for (k, v) in &settings.resource {
        if !attrs.iter().any(|a| &a.key == k) || k != "service.name" {
            attrs.push(kv(k, Val::Str(v.clone())));
        }
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

fn export_loop(settings: Settings) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let resource = resource(&settings);
    let c = counters();
    let mut exporter = Exporter::new(&settings);
    loop {
        // Woken early by a full batch or a flush; otherwise every BATCH_WAIT.
        std::thread::park_timeout(BATCH_WAIT);
        let mut spans = tracer.take();
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(BATCH));
            let batch = std::mem::replace(&mut spans, rest);
            let n = batch.len() as u64;
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "shoal".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans: batch,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            let ok = rt.block_on(async {
                tokio::time::timeout(settings.timeout, exporter.export(request))
                    .await
                    .unwrap_or(false)
            });
            if ok {
                c.exported.inc_by(n);
            } else {
                c.dropped.inc_by(n);
                c.failed_exports.inc();
            }
        }
    }
}

/// Sends batches to the collector.
enum Exporter {
    Grpc {
        endpoint: String,
        headers: Vec<(String, String)>,
        client: Option<
            opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
                tonic::transport::Channel,
            >,
        >,
    },
    Http {
        url: String,
        headers: Vec<(String, String)>,
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Full<bytes::Bytes>,
        >,
    },
}

impl Exporter {
    fn new(s: &Settings) -> Exporter {
        match s.protocol {
            Protocol::Grpc => Exporter::Grpc {
                endpoint: s.endpoint.clone(),
                headers: s.headers.clone(),
                client: None,
            },
            Protocol::HttpProtobuf => Exporter::Http {
                url: s.endpoint.clone(),
                headers: s.headers.clone(),
                client: hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http(),
            },
        }
    }

    async fn export(&mut self, request: ExportTraceServiceRequest) -> bool {
        match self {
            Exporter::Grpc {
                endpoint,
                headers,
                client,
            } => {
                if client.is_none() {
                    let Ok(ep) = tonic::transport::Endpoint::from_shared(endpoint.clone()) else {
                        return false;
                    };
                    *client = Some(
                        opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(
                            ep.connect_timeout(Duration::from_secs(2)).connect_lazy(),
                        ),
                    );
                }
                let Some(c) = client.as_mut() else {
                    return false;
                };
                let mut req = tonic::Request::new(request);
                for (k, v) in headers.iter() {
                    if let (Ok(k), Ok(v)) = (
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                        v.parse(),
                    ) {
                        req.metadata_mut().insert(k, v);
                    }
                }
                c.export(req).await.is_ok()
            }
            Exporter::Http {
                url,
                headers,
                client,
            } => {
                let body = prost::Message::encode_to_vec(&request);
                let mut b = http::Request::post(url.as_str())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                for (k, v) in headers.iter() {
                    b = b.header(k.as_str(), v.as_str());
                }
                let Ok(req) = b.body(http_body_util::Full::new(bytes::Bytes::from(body))) else {
                    return false;
                };
                match client.request(req).await {
                    Ok(resp) => resp.status().is_success(),
                    Err(_) => false,
                }
            }
        }
    }
}

/// A span measured elsewhere (a service's own, in Python), handed over whole.
pub struct Recorded<'a> {
    pub name: &'a str,
    /// The parent's `traceparent`.
    pub parent: &'a str,
    /// This span's id, hex.
    pub span_id: &'a str,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(String, Val)>,
    pub error: Option<String>,
}

/// Exports a span measured elsewhere, when its parent is sampled.
pub fn record(r: Recorded<'_>) {
    let Some(t) = tracer() else {
        return;
    };
    let (Some(parent), Some(span_id)) = (Ctx::parse(r.parent, None), unhex::<8>(r.span_id)) else {
        return;
    };
    if !parent.sampled {
        return;
    }
    t.submit(OtlpSpan {
        trace_id: parent.trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.span_id.to_vec(),
        name: r.name.to_owned(),
        kind: Kind::Internal.otlp(),
        start_time_unix_nano: r.start_ns,
        end_time_unix_nano: r.end_ns,
        attributes: r.attributes.into_iter().map(|(k, v)| kv(&k, v)).collect(),
        status: r.error.map(|message| Status {
            message,
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    });
}

/// Reads the trace context of a request's headers (`traceparent`, `tracestate`).
pub fn from_headers(headers: &http::HeaderMap) -> Option<Ctx> {
    let tp = headers.get("traceparent")?.to_str().ok()?;
    let ts = headers.get("tracestate").and_then(|v| v.to_str().ok());
    Ctx::parse(tp, ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_junk() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = Ctx::parse(tp, Some("rojo=00f067aa0ba902b7")).expect("valid");
        assert!(c.sampled);
        assert_eq!(c.traceparent(), tp);
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.state, "rojo=00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(Ctx::parse(bad, None).is_none(), "{bad}");
        }
        // A later version may add fields.
        assert!(
            Ctx::parse(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x",
                None
            )
            .is_some()
        );
    }

    #[test]
    fn settings_from_the_standard_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(
            Settings::from_env("x", env(&[])).is_none(),
            "off without an endpoint"
        );
        let s = Settings::from_env(
            "shoal-gateway",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=a%2Cb",
                ),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
        )
        .expect("on");
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.service_name, "shoal-gateway");
        assert!(s.parent_based && (s.ratio - 0.25).abs() < 1e-9);
        assert_eq!(s.resource[1], ("team".into(), "a,b".into()));
        let g = Settings::from_env(
            "x",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_SERVICE_NAME", "orders"),
            ]),
        )
        .expect("on");
        assert_eq!(
            (g.endpoint.as_str(), g.protocol, g.service_name.as_str()),
            ("http://collector:4317", Protocol::Grpc, "orders")
        );
        assert!(
            Settings::from_env(
                "x",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_SDK_DISABLED", "true")
                ])
            )
            .is_none()
        );
    }

    #[test]
    fn spans_off_pass_the_context_on() {
        let parent = Ctx::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .expect("ctx");
        let s = Span::start("x", Kind::Server, Some(&parent));
        // Tracing is off in unit tests: nothing recorded, the context goes on unchanged.
        assert!(!s.recording());
        assert_eq!(s.ctx(), Some(&parent));
        s.end();
        assert!(Span::start("y", Kind::Server, None).ctx().is_none());
    }
}
