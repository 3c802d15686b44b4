//! Observability end to end, against real peers: an OTLP collector (a gRPC
//! `TraceService` server built from the OpenTelemetry protos, in this process), a real
//! HTTP target, RabbitMQ; the call details of the live tail; what a collector that is down
//! costs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use parking_lot::Mutex;
use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;
use shoal_tests::process::Proc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// One span as the collector got it, with its process's resource.
#[derive(Debug, Clone)]
struct Got {
    service_name: String,
    instance: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: HashMap<String, String>,
    error: bool,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The OTLP collector: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for rs in req.into_inner().resource_spans {
            let res = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Got {
                        service_name: res.get("service.name").cloned().unwrap_or_default(),
                        instance: res.get("service.instance.id").cloned().unwrap_or_default(),
                        name: s.name.clone(),
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attrs: attrs(&s.attributes),
                        error: s.status.is_some_and(|st| st.code == 2),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the collector on a free port; returns it and its address.
async fn collector() -> (Collector, u16) {
    let c = Collector::default();
    let port = shoal_tests::free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind collector");
    let svc = TraceServiceServer::new(c.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (c, port)
}

/// An HTTP target that records the `traceparent` of each request.
async fn http_target() -> (Arc<Mutex<Vec<String>>>, u16) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let port = shoal_tests::free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind target");
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(move |headers: http::HeaderMap| {
            let s = s.clone();
            async move {
                s.lock().push(
                    headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                );
                axum::Json(json!({"hello": "world"}))
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (seen, port)
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A second executor holding fixtures/b (back.double), with the same environment.
async fn executor_b(c: &Cluster, env: &[(&str, &str)]) -> Proc {
    let mut args = c.member_args("executor");
    args.extend(
        [
            "--supervised",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--pickup-dir",
            fixture("b").to_str().expect("utf8"),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Proc::spawn("shoal-executor", &args, env);
    eventually(
        Duration::from_secs(20),
        "executor B registered with its services",
        || async {
            let v = c.cluster_json().await?;
            v["members"]["executor"]
                .as_array()?
                .iter()
                .any(|m| {
                    m["services"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|x| x == "back.double"))
                })
                .then_some(())
        },
    )
    .await;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_the_mesh() {
    let (collector, cport) = collector().await;
    let (seen, tport) = http_target().await;
    let queue = unique("trace");
    {
        let conn = lapin::Connection::connect(
            shoal_tests::servers::rabbitmq(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
        let _ = conn.close(200, "declared".into()).await;
    }
    let rabbit = shoal_tests::servers::RABBITMQ;
    let config = format!(
        r#"
outgoing:
  - {{name: target, type: http, address: "http://127.0.0.1:{tport}", url_path: /hello}}
  - {{name: rabbit, type: amqp, url: "{rabbit}"}}
  - {{name: bus, type: amqp, definition: rabbit, routing_key: "{queue}"}}
channels:
  - {{name: trace-start, type: http, service: trace.front, url_path: /trace/start, method: POST}}
  - {{name: trace-sink, type: amqp, service: trace.sink, definition: rabbit, queue: "{queue}"}}
"#
    );
    let endpoint = format!("http://127.0.0.1:{cport}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let c = Cluster::start_env(&[&fixture("traced.py")], 1, &[], Some(&config), &env).await;
    let _b = executor_b(&c, &env).await;
    c.wait_for_channel("/trace/start").await;

    // The caller's own trace: Shoal's spans are its children.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let tag = unique("tag");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/trace/start", c.http_url))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("tracestate", "vendor=kept")
        .header("x-shoal-cid", "traced-call-1")
        .json(&json!({"tag": tag}))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["trace_id"], caller_trace, "{body}");
    assert_eq!(body["doubled"], 42);
    assert_eq!(body["target"], 200);

    // The HTTP target saw a traceparent of the same trace.
    let tp = seen
        .lock()
        .iter()
        .find(|t| t.contains(caller_trace))
        .cloned()
        .unwrap_or_else(|| format!("none of {:?}", seen.lock()));
    assert!(
        tp.starts_with(&format!("00-{caller_trace}-")),
        "the target got traceparent {tp:?}"
    );

    // The AMQP message carried it, and the channel that consumed it went on with it.
    let sink = eventually(Duration::from_secs(20), "trace.sink ran", || async {
        let (s, v) = c
            .admin(
                reqwest::Method::GET,
                &format!("kvdb/trace-sink:{tag}"),
                None,
            )
            .await;
        (s == 200).then(|| v["value"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    let (headers, sink_trace) = sink.rsplit_once('|').expect("headers|trace");
    let headers: Value = serde_json::from_str(headers).expect("headers JSON");
    assert!(
        headers["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("00-{caller_trace}-"))),
        "the message's headers: {headers}"
    );
    assert_eq!(sink_trace, caller_trace);

    // Every hop's spans reached the collector, in one trace, each with its parent.
    let spans = eventually(Duration::from_secs(20), "every hop's spans", || async {
        let all = collector.spans.lock().clone();
        let ours: Vec<Got> = all
            .into_iter()
            .filter(|s| s.trace_id == caller_trace)
            .collect();
        let has = |name: &str| ours.iter().any(|s| s.name == name);
        (has("POST /trace/start")
            && has("trace.front")
            && has("back.double")
            && has("front.own-work")
            && has("trace.sink")
            && ours.iter().any(|s| s.name.starts_with("process "))
            && ours.iter().any(|s| s.name == "GET" && s.kind == 3)
            && ours.iter().any(|s| s.name.starts_with("publish ")))
        .then_some(ours)
    })
    .await;
    let one = |pred: &dyn Fn(&Got) -> bool, what: &str| -> Got {
        let found: Vec<&Got> = spans.iter().filter(|s| pred(s)).collect();
        assert!(!found.is_empty(), "no {what} span in {spans:#?}");
        found[0].clone()
    };
    let by_id = |id: &str| spans.iter().find(|s| s.span_id == id).cloned();
    let gateway = one(&|s| s.name == "POST /trace/start", "gateway");
    assert_eq!(
        gateway.parent, caller_span,
        "the caller's traceparent honoured"
    );
    assert_eq!(gateway.kind, 2, "SERVER");
    assert_eq!(gateway.service_name, "shoal-gateway");
    assert_eq!(gateway.attrs["http.route"], "/trace/start");
    assert_eq!(gateway.attrs["http.response.status_code"], "200");
    let front = one(&|s| s.name == "trace.front", "executor A");
    assert_eq!(front.parent, gateway.span_id);
    assert_eq!(front.service_name, "shoal-executor");
    assert!(
        !front.error && !gateway.error,
        "a call that succeeded is no error"
    );
    // self.invoke to executor B: a client span on A, B's server span its child.
    let invoke = one(
        &|s| s.name == "invoke back.double" && s.kind == 3,
        "invoke client",
    );
    assert_eq!(invoke.parent, front.span_id);
    let back = one(&|s| s.name == "back.double", "executor B");
    assert_eq!(back.parent, invoke.span_id);
    assert_ne!(back.instance, front.instance, "B is another process");
    // The outgoing HTTP call: through the connectors, to the target.
    let get = one(&|s| s.name == "GET" && s.kind == 3, "outgoing HTTP client");
    assert_eq!(get.service_name, "shoal-connectors");
    let conn_span = by_id(&get.parent).expect("the connectors' span");
    assert_eq!(conn_span.parent, front.span_id);
    assert!(
        tp.contains(&get.span_id),
        "the target's traceparent names the client span"
    );
    assert_eq!(get.attrs["http.response.status_code"], "200");
    // The AMQP publish and the channel that consumed it.
    let publish = one(&|s| s.kind == 4, "producer");
    assert_eq!(publish.attrs["messaging.system"], "rabbitmq");
    let consume = one(&|s| s.kind == 5, "consumer");
    assert_eq!(consume.parent, publish.span_id);
    assert_eq!(consume.service_name, "shoal-gateway");
    let sink_span = one(&|s| s.name == "trace.sink", "sink");
    assert_eq!(sink_span.parent, consume.span_id);
    // The service's own span.
    let own = one(&|s| s.name == "front.own-work", "service's own");
    assert_eq!(own.parent, front.span_id);
    assert_eq!(own.attrs["step"], "sum");
    // The tail keeps the trace id with the call.
    let (s, v) = c
        .admin(reqwest::Method::GET, "requests?limit=50", None)
        .await;
    assert_eq!(s, 200);
    let row = v["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .find(|r| r["cid"] == "traced-call-1")
        .cloned()
        .expect("the call in the tail");
    assert_eq!(row["trace_id"], caller_trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_are_explained_to_the_admin_only() {
    let config = r#"
security:
  - {name: partner, type: basic_auth, username: partner, password: "partner-secret-1"}
channels:
  - {name: fails, type: http, service: trace.fails, url_path: /t/fails, method: POST}
  - {name: echo, type: http, service: trace.echo, url_path: /t/echo, method: POST}
  - {name: guarded, type: http, service: trace.echo, url_path: /t/guarded, method: POST, security: partner}
"#;
    let c = Cluster::start_with(&[&fixture("traced.py")], 1, &[], Some(config)).await;
    c.wait_for_channel("/t/echo").await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: &'static str, cid: &str| {
        http.post(format!("{}{path}", c.http_url))
            .header("content-type", "application/json")
            .header("x-shoal-cid", cid)
            .body(body)
            .send()
    };

    // A service exception: the caller gets the code and a message, nothing more.
    let r = post("/t/fails", r#"{"order": 7}"#, "cid-exception")
        .await
        .expect("call");
    assert_eq!(r.status(), 500);
    let caller_body = r.text().await.expect("body");
    for secret in [
        "Traceback",
        "order-secret-field",
        "about to look up",
        "KeyError: ",
    ] {
        assert!(
            !caller_body.contains(secret),
            "the caller saw {secret:?}: {caller_body}"
        );
    }
    // A 401, a bad JSON body, an unknown path.
    let r = post("/t/guarded", "{}", "cid-unauthorized")
        .await
        .expect("call");
    assert_eq!(r.status(), 401);
    let r = post("/t/echo", "{not json", "cid-bad-json")
        .await
        .expect("call");
    assert_eq!(r.status(), 400);
    let r = post("/t/nowhere", "{}", "cid-unknown-path")
        .await
        .expect("call");
    assert_eq!(r.status(), 404);
    let r = post("/t/echo", r#"{"ok": true}"#, "cid-ok")
        .await
        .expect("call");
    assert_eq!(r.status(), 200);

    // Each failure is in the tail with its reason; the success is not among the failed.
    let (s, v) = c
        .admin(reqwest::Method::GET, "requests?failed=true&limit=100", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let rows = v["requests"].as_array().expect("requests").clone();
    let row = |cid: &str| {
        rows.iter()
            .find(|r| r["cid"] == cid)
            .cloned()
            .unwrap_or_else(|| panic!("{cid} not among the failed calls: {rows:#?}"))
    };
    let e = row("cid-exception");
    assert_eq!(e["status"], 500);
    assert_eq!(e["outcome"], "server_error");
    assert_eq!(e["code"], "service_error");
    assert_eq!(e["answered_by"], "service");
    assert!(e.get("traceback").is_none(), "lists carry no traceback");
    let u = row("cid-unauthorized");
    assert_eq!(
        (u["status"].clone(), u["outcome"].clone()),
        (json!(401), json!("client_error"))
    );
    assert_eq!(u["answered_by"], "gateway");
    assert_eq!(u["channel"], "guarded");
    assert!(!u["message"].as_str().unwrap_or_default().is_empty(), "{u}");
    let b = row("cid-bad-json");
    assert_eq!(b["status"], 400);
    assert!(
        b["message"].as_str().unwrap_or_default().contains("JSON"),
        "{b}"
    );
    let n = row("cid-unknown-path");
    assert_eq!(n["status"], 404);
    assert!(
        n["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/t/nowhere"),
        "{n}"
    );
    assert!(rows.iter().all(|r| r["cid"] != "cid-ok"));

    // The call's details: traceback and log lines, for the admin.
    let (s, v) = c
        .admin(reqwest::Method::GET, "requests/cid-exception", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let d = &v["request"];
    let tb = d["traceback"].as_str().unwrap_or_default();
    assert!(
        tb.contains("Traceback") && tb.contains("order-secret-field"),
        "{d}"
    );
    let logs = d["logs"].to_string();
    assert!(logs.contains("about to look up order 7"), "{logs}");
    assert!(
        logs.contains("module logger line for cid cid-exception"),
        "{logs}"
    );
    let hops: Vec<&str> = d["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .filter_map(|h| h["hop"].as_str())
        .collect();
    assert_eq!(hops, ["gateway", "executor"]);
    assert_eq!(d["request"], "POST /t/fails");
    let (s, v) = c
        .admin(reqwest::Method::GET, "requests/cid-unknown-path", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["request"]["request"], "POST /t/nowhere");
    let (s, _) = c
        .admin(reqwest::Method::GET, "requests/no-such-cid", None)
        .await;
    assert_eq!(s, 404);

    // The CLI shows the same.
    let (code, out, err) = c.cli(&["call", "cid-exception"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("order-secret-field") && out.contains("about to look up order 7"),
        "{out}"
    );

    // Server and client errors are counted apart, per service.
    let (_, v) = c
        .admin(reqwest::Method::GET, "services/trace.fails", None)
        .await;
    let inst = &v["instances"][0];
    assert_eq!(
        (inst["errors"].clone(), inst["client_errors"].clone()),
        (json!(1), json!(0)),
        "{v}"
    );
    let (_, v) = c
        .admin(reqwest::Method::GET, "services/trace.echo", None)
        .await;
    let inst = &v["instances"][0];
    assert_eq!(inst["errors"], 0, "{v}");
}

async fn metric(ops: &str, name: &str) -> f64 {
    let text = shoal_tests::metrics_text(ops).await.expect("metrics");
    shoal_tests::total(&text, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_the_calls_nothing() {
    // A collector that takes connections and never answers (the worst kind: each export
    // waits for its timeout).
    let port = shoal_tests::free_port();
    let hole = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
    ];
    let config = "channels:\n  - {name: echo, type: http, service: trace.echo, url_path: /t/echo, method: POST}\n";
    let c = Cluster::start_env(&[&fixture("traced.py")], 1, &[], Some(config), &env).await;
    c.wait_for_channel("/t/echo").await;
    let v = c.cluster_json().await.expect("cluster");
    let gateway_pid = v["members"]["gateway"][0]["pid"].as_u64().expect("pid");
    let http = reqwest::Client::new();
    let mut before = 0;
    // 6,000 calls in 8 waves of 750 (50 at once): every one answered; the gateway's memory
    // stays bounded however many spans the collector does not take.
    for wave in 0..8 {
        let calls: Vec<_> = (0..750)
            .map(|i| {
                let http = http.clone();
                let url = format!("{}/t/echo", c.http_url);
                async move {
                    http.post(url)
                        .json(&json!({"i": i}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }
            })
            .collect();
        let statuses: Vec<u16> = futures::stream::iter(calls)
            .buffer_unordered(50)
            .collect()
            .await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "wave {wave}: {statuses:?}"
        );
        if wave == 1 {
            before = shoal_tests::rss(gateway_pid) / 1024;
        }
    }
    let after = shoal_tests::rss(gateway_pid) / 1024;
    assert!(
        after < before + 32 * 1024,
        "the gateway grew from {before} KiB to {after} KiB"
    );
    let dropped = eventually(Duration::from_secs(20), "dropped spans counted", || async {
        let n = metric(&c.gateway_ops, "shoal_trace_spans_dropped_total").await;
        (n > 0.0).then_some(n)
    })
    .await;
    assert!(dropped > 0.0);
    assert_eq!(
        metric(&c.gateway_ops, "shoal_trace_spans_exported_total").await,
        0.0
    );
}
