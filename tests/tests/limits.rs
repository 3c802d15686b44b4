//! Limits that agree end to end, and reads that cannot hang: bodies up to a channel's
//! limit reach the executor (sent once), a message too large for the hop is a 413 that
//! leaves the executor in routing, a body that never comes is a 408, a declared
//! over-limit body waiting for `100 Continue` is a 413 at once, module names past the
//! filesystem's limit are refused, the Invoker serves gRPC reflection v1alpha too, and
//! large bodies (and Invoker messages) arriving at once wait for room in the gateway's
//! budget of request bodies.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "channels:\n  - {name: echo, type: http, service: hello.echo, url_path: /echo, max_body: 31457280}\n  - {name: big, type: http, service: big.reply, url_path: /big}\n  - {name: raw, type: http, service: big.raw, url_path: /raw}\n";

async fn cluster() -> Cluster {
    let big = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/big.py");
    let c = Cluster::start_env(
        &[&examples_dir().join("hello.py"), &big],
        1,
        &[],
        Some(CONFIG),
        &[("SHOAL_BODY_READ_TIMEOUT_SECS", "2")],
    )
    .await;
    c.wait_for_channel("/echo").await;
    c
}

/// Sends `head` (and `body`) on a raw connection; returns what came back within `wait`.
async fn raw(addr: &str, head: &str, body: &[u8], wait: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(body).await.expect("body");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, s.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    (
        String::from_utf8_lossy(&buf[..n]).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn large_bodies_reach_the_executor_and_too_large_messages_are_413() {
    let c = cluster().await;
    let http = reqwest::Client::new();
    // 12 MB: over the old 4 MB hop limit (which answered 502 and then routed around the
    // healthy executor with 503s), under this channel's 30 MB.
    let text = "y".repeat(12 * 1024 * 1024);
    let r = http
        .post(format!("{}/echo", c.http_url))
        .json(&json!({"text": text}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["text"].as_str().map(str::len), Some(text.len()));
    // 9 MB through the admin API too.
    let (status, v) = c
        .invoke("hello.echo", &json!({"text": "z".repeat(9 * 1024 * 1024)}))
        .await
        .expect("admin invoke");
    assert_eq!(status, 200, "{}", v["error"]);

    // An answer over the 64 MiB a call between components carries: 413 naming the limit,
    // and the executor keeps serving (no 502, no 503 after it).
    let r = http
        .post(format!("{}/big", c.http_url))
        .json(&json!({"size": 70 * 1024 * 1024}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("67108864 bytes"),
        "{v}"
    );
    for _ in 0..5 {
        let r = http
            .post(format!("{}/echo", c.http_url))
            .json(&json!({"after": 1}))
            .send()
            .await
            .expect("call");
        assert_eq!(r.status(), 200, "the executor is still in routing");
    }
    // A channel may not accept more than the hop carries.
    let (status, v) = c
        .admin(
            reqwest::Method::PUT,
            "channels/huge",
            Some(br#"{"name": "huge", "type": "http", "service": "hello.echo", "url_path": "/huge", "max_body": 100000000}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_body"),
        "{v}"
    );
}

/// What `big.raw` saw of a body: (type, length, SHA-1, read twice the same object,
/// items in the payload, length of `request.text`).
async fn seen_raw(c: &Cluster, body: reqwest::Body) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("{}/raw", c.http_url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test]
async fn a_large_body_reaches_python_whole_as_bytes_however_it_arrives() {
    use sha1::Digest;
    let c = cluster().await;
    let doc = |n: usize| {
        serde_json::to_vec(&json!({"items": (0..n).map(|i| json!({"id": i, "name": format!("item-{i:08}")})).collect::<Vec<_>>()}))
            .expect("json")
    };
    // Small (a `bytes` made at once) and large (the executor's buffer, made `bytes` when
    // read): the same answer, byte for byte, with a declared length and chunked.
    for n in [3, 20_000] {
        let body = doc(n);
        let sha = format!("{:x}", sha1::Sha1::digest(&body));
        let want = json!({"type": "bytes", "len": body.len(), "sha1": sha, "again": true,
                          "items": n, "text": body.len()});
        let v = seen_raw(&c, reqwest::Body::from(body.clone())).await;
        assert_eq!(v, want, "{n} items, Content-Length");
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(7_000).map(|c| Ok(c.to_vec())).collect();
        let v = seen_raw(
            &c,
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
        assert_eq!(v, want, "{n} items, chunked");
    }
}

#[tokio::test]
async fn reads_cannot_hang_and_100_continue_is_refused_up_front() {
    let c = cluster().await;
    let http_addr = c.http_url.trim_start_matches("http://").to_owned();
    let admin_addr = c.admin_url.trim_start_matches("http://").to_owned();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", c.password))
    };
    // A body promised longer than sent: 408 after the body read timeout (2 s here).
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let (answer, took) = raw(&http_addr, head, b"{\"a\":", Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 2 s"), "{answer}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let head = format!(
        "POST /api/v1/services/hello.echo/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 100\r\n\r\n"
    );
    let (answer, _) = raw(&admin_addr, &head, b"{", Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "admin: {answer}");

    // Expect: 100-continue with a declared length over the limit: 413 at once.
    for (addr, path) in [
        (&http_addr, "/echo"),
        (&admin_addr, "/api/v1/services/hello.echo/invoke"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: 900000000\r\nExpect: 100-continue\r\n\r\n"
        );
        let (answer, took) = raw(addr, &head, b"", Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // A declared length within the limit still gets its 100 Continue and an answer.
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n";
    let (answer, _) = raw(&http_addr, head, b"", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
}

#[tokio::test]
async fn long_module_names_are_refused_and_reflection_v1alpha_is_served() {
    let c = cluster().await;
    let name = format!("{}.py", "m".repeat(5000));
    let body =
        serde_json::to_vec(&json!({"files": [{"name": name, "source": "x = 1\n"}]})).expect("json");
    let (status, v) = c.admin(reqwest::Method::POST, "deploy", Some(body)).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("limit of 252"),
        "{v}"
    );

    // grpcurl <= 1.8 and many GUI clients speak only reflection v1alpha.
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let first = stream.message().await.expect("answer").expect("a message");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("not a service list: {first:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "shoal.invoker.v1.Invoker"),
        "{names:?}"
    );
}

#[tokio::test]
async fn connections_over_the_bound_get_503_and_others_are_served() {
    let c = Cluster::start_env(
        &[&examples_dir().join("hello.py")],
        1,
        &[],
        Some(CONFIG.split("\n  - {name: big").next().unwrap_or(CONFIG)),
        &[
            ("SHOAL_MAX_CONNECTIONS", "4"),
            ("SHOAL_HEADER_READ_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    // Four idle connections (clients that never send a request) fill the bound ...
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // ... so the fifth is answered 503 at once, with a JSON body, and closed.
    let (answer, took) = raw(
        &addr,
        "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("Retry-After: 1") && answer.contains("4 connections open"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // When they go, the listener serves again.
    drop(idle);
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(10), "a slot freed", || async {
        let r = http
            .post(format!("{}/echo", c.http_url))
            .json(&json!({"ok": 1}))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // An idle keep-alive connection is closed after the header read timeout (2 s here):
    // the wait for the next request's headers is bounded like the first one's.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(
        idle_since.elapsed() < Duration::from_secs(6),
        "{:?}",
        idle_since.elapsed()
    );

    // The public gRPC listener has the same bound: four silent connections fill it ...
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(
            tokio::net::TcpStream::connect(&c.grpc_addr)
                .await
                .expect("connect"),
        );
    }
    // ... so a gRPC client's connection is closed at once ...
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc_addr))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5));
    let check = || async {
        let channel = endpoint.connect().await.ok()?;
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .ok()
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), check())
        .await
        .expect("an answer within 10 s");
    assert!(refused.is_none(), "a fifth connection is refused");
    // ... and a connection that says nothing is closed after the header read timeout
    // (2 s here), giving its slot back.
    for mut s in silent {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a silent connection closed within 10 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed, not answered");
    }
    let health = eventually(Duration::from_secs(10), "a gRPC slot freed", check).await;
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// The gateway's budget of request bodies, from its `/metrics`: bytes held, requests
/// waiting for room, requests refused for want of it.
async fn budget_figures(ops: String) -> Option<(u64, u64, u64)> {
    let text = shoal_tests::metrics_text(&ops).await?;
    let figure = |name: &str| shoal_tests::sample(&text, name).map(|v| v as u64);
    Some((
        figure("shoal_http_request_bytes_held")?,
        figure("shoal_http_requests_waiting_for_room")?,
        figure("shoal_http_requests_refused_for_room_total")?,
    ))
}

/// The public gRPC Invoker reads a message only after its caller's credentials: 24
/// anonymous calls of 3 MiB at once hold nothing. An authenticated message over 64 KiB
/// takes room for its declared length in the same budget as the channels' bodies
/// (8 MiB here); over HTTP/2 a call that finds none is refused at once (`UNAVAILABLE`
/// naming `max_request_bytes`) rather than left to hold the connection's flow-control
/// window; every byte of room is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoker_messages_are_read_after_their_credentials_within_the_budget() {
    use base64::Engine;
    use shoal_proto::invoker::v1::{InvokeRequest, invoker_client::InvokerClient};
    const BUDGET: u64 = 8 << 20;
    let hello = examples_dir().join("hello.py");
    let c = Cluster::start_env(
        &[
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slow.py"),
            &hello,
        ],
        1,
        &[],
        None,
        &[
            ("SHOAL_MAX_REQUEST_BYTES", "8388608"),
            ("SHOAL_BODY_READ_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    let admin = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", c.password))
    );
    let connect = || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc_addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        InvokerClient::new(channel).max_encoding_message_size(8 << 20)
    };
    let call = |service: &str, payload: bytes::Bytes, auth: Option<&str>| {
        let mut r = tonic::Request::new(InvokeRequest {
            service: service.into(),
            payload,
            cid: String::new(),
        });
        if let Some(a) = auth {
            r.metadata_mut()
                .insert("authorization", a.parse().expect("metadata"));
        }
        r
    };
    // A first call (the credentials verified once, then cached).
    let mut client = connect().await;
    eventually(Duration::from_secs(20), "the Invoker serves", || {
        let mut client = client.clone();
        let r = call("hello.echo", bytes::Bytes::from_static(b"{}"), Some(&admin));
        async move { client.invoke(r).await.ok() }
    })
    .await;
    let gateway = c.cluster_json().await.expect("cluster")["members"]["gateway"][0]["pid"]
        .as_u64()
        .expect("gateway pid");
    let most_held = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = tokio_util::sync::CancellationToken::new();
    {
        let (most_held, sampling, ops) =
            (most_held.clone(), sampling.clone(), c.gateway_ops.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !sampling.is_cancelled() {
                tick.tick().await;
                if let Some((held, _, _)) = budget_figures(ops.clone()).await {
                    most_held.fetch_max(held, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let payload = bytes::Bytes::from(
        serde_json::to_vec(&json!({"s": 1, "pad": "p".repeat(3 << 20)})).expect("json"),
    );

    // Anonymous: refused on the metadata, the messages never read.
    let sampled = shoal_tests::PeakRss::start(gateway);
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (mut client, r) = (client.clone(), call("slow.sleep", payload.clone(), None));
            tokio::spawn(async move { client.invoke(r).await.map(|_| ()) })
        })
        .collect();
    for done in calls {
        let status = done.await.expect("join").expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let grew = sampled.grew();
    drop(sampled);
    eprintln!(
        "24 anonymous messages of 3 MiB: the gateway grew by {} MB",
        grew >> 20
    );
    assert_eq!(
        most_held.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "anonymous calls take no room"
    );
    assert!(
        grew <= 16 << 20,
        "the gateway grew by {} MB for 72 MiB of anonymous messages",
        grew >> 20
    );

    // Authenticated: 24 at once to a one-second service, over 4 connections.
    let sampled = shoal_tests::PeakRss::start(gateway);
    let mut clients = vec![client.clone()];
    for _ in 0..3 {
        clients.push(connect().await);
    }
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let r = call("slow.sleep", payload.clone(), Some(&admin));
            tokio::spawn(async move { client.invoke(r).await.map(|_| ()) })
        })
        .collect();
    let (mut ok, mut refused) = (0u64, 0u64);
    for done in calls {
        match done.await.expect("join") {
            Ok(()) => ok += 1,
            Err(s) if s.code() == tonic::Code::Unavailable => {
                assert!(s.message().contains("max_request_bytes"), "{s:?}");
                refused += 1;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    sampling.cancel();
    let grew = sampled.grew();
    drop(sampled);
    eprintln!(
        "24 authenticated messages of 3 MiB: {ok} served, {refused} refused; the gateway grew \
         by {} MB; at most {} bytes held",
        grew >> 20,
        most_held.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(ok >= 2, "calls that found room were served");
    assert!(refused >= 1, "calls past the budget were refused");
    assert!(most_held.load(std::sync::atomic::Ordering::Relaxed) <= BUDGET);
    assert!(
        grew <= 40 << 20,
        "the gateway grew by {} MB with 72 MiB of messages sent at once (budget: 8 MiB)",
        grew >> 20
    );
    eventually(Duration::from_secs(20), "the budget given back", || {
        let ops = c.gateway_ops.clone();
        async move {
            let (held, waiting, counted) = budget_figures(ops).await?;
            (held == 0 && waiting == 0 && counted == refused).then_some(())
        }
    })
    .await;
    let r = call(
        "hello.echo",
        bytes::Bytes::from_static(b"{\"after\": 1}"),
        Some(&admin),
    );
    client.invoke(r).await.expect("served after");
}

/// Large request bodies arriving at once hold no more of the gateway's memory than its
/// budget of request bodies (`max_request_bytes`, 8 MiB here): bodies past it wait
/// unread for room, then get 503 with `Retry-After`; a body larger than the whole budget
/// is served alone; every byte of room is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_at_once_wait_for_room_in_the_budget() {
    const BUDGET: u64 = 8 << 20;
    let config = "channels:\n  - {name: slow, type: http, service: slow.sleep, url_path: /slow}\n  - {name: echo, type: http, service: hello.echo, url_path: /echo}\n";
    let hello = examples_dir().join("hello.py");
    let c = Cluster::start_env(
        &[
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slow.py"),
            &hello,
        ],
        1,
        &[],
        Some(config),
        &[
            ("SHOAL_MAX_REQUEST_BYTES", "8388608"),
            ("SHOAL_BODY_READ_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    c.wait_for_channel("/slow").await;
    c.wait_for_channel("/echo").await;
    let http = reqwest::Client::new();
    let metrics = {
        let ops = c.gateway_ops.clone();
        move || budget_figures(ops.clone())
    };
    // A body larger than the whole budget takes all of it, alone, and is served.
    let text = "z".repeat(9 << 20);
    let r = http
        .post(format!("{}/echo", c.http_url))
        .json(&json_text(&text))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let gateway = c.cluster_json().await.expect("cluster")["members"]["gateway"][0]["pid"]
        .as_u64()
        .expect("gateway pid");
    let sampled = shoal_tests::PeakRss::start(gateway);
    let most_waiting = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let most_held = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = tokio_util::sync::CancellationToken::new();
    {
        let (most_waiting, most_held) = (most_waiting.clone(), most_held.clone());
        let (metrics, sampling) = (metrics.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !sampling.is_cancelled() {
                tick.tick().await;
                if let Some((held, waiting, _)) = metrics().await {
                    most_held.fetch_max(held, std::sync::atomic::Ordering::Relaxed);
                    most_waiting.fetch_max(waiting, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    // 24 bodies of 3 MiB at once (72 MiB), each call a second in Python: two fit.
    let body = bytes::Bytes::from(
        serde_json::to_vec(&serde_json::json!({"s": 1, "pad": "p".repeat(3 << 20)})).expect("json"),
    );
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (http, url, body) = (http.clone(), format!("{}/slow", c.http_url), body.clone());
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .ok()?;
                let status = r.status().as_u16();
                let retry = r.headers().contains_key("retry-after");
                let text = r.text().await.ok()?;
                Some((status, retry, text))
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for call in calls {
        let (status, retry, text) = call.await.expect("join").expect("an answer");
        match status {
            200 => ok += 1,
            503 => {
                assert!(retry, "a 503 for want of room says when to retry");
                assert!(text.contains("max_request_bytes"), "{text}");
                refused += 1;
            }
            other => panic!("{other}: {text}"),
        }
    }
    sampling.cancel();
    let grew = sampled.grew();
    drop(sampled);
    eprintln!(
        "24 bodies of 3 MiB: {ok} served, {refused} refused (503); the gateway grew by {} MB; \
         at most {} bytes held, {} requests waiting",
        grew >> 20,
        most_held.load(std::sync::atomic::Ordering::Relaxed),
        most_waiting.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(ok >= 2, "calls that found room were served");
    assert!(
        most_waiting.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "bodies waited for room"
    );
    assert!(most_held.load(std::sync::atomic::Ordering::Relaxed) <= BUDGET);
    assert!(
        grew <= 40 << 20,
        "the gateway grew by {} MB with 72 MiB of bodies sent at once (budget: 8 MiB)",
        grew >> 20
    );
    // Every byte of room given back; the refusals counted.
    eventually(Duration::from_secs(20), "the budget given back", || async {
        let (held, waiting, counted) = metrics().await?;
        (held == 0 && waiting == 0 && counted == refused).then_some(())
    })
    .await;
    let r = http
        .post(format!("{}/echo", c.http_url))
        .json(&json_text("still served"))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);

    // Over HTTP/2, 8 bodies of 3 MiB on one connection: those past the budget are refused
    // at once. Left waiting, their unread bodies would fill the connection's flow-control
    // window, the bodies that had room could not be read either, and every call would
    // end in a 408 or a 503 at the body read timeout.
    let refused_before = metrics().await.expect("metrics").2;
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut sender = sender.clone();
            let req = http::Request::post(format!("http://{addr}/slow"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(body.clone()))
                .expect("request");
            tokio::spawn(async move {
                use http_body_util::BodyExt;
                let r = sender.send_request(req).await.ok()?;
                let status = r.status().as_u16();
                let text = r.into_body().collect().await.ok()?.to_bytes();
                Some((status, String::from_utf8_lossy(&text).into_owned()))
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let (status, text) = call.await.expect("join").expect("an answer over HTTP/2");
        match status {
            200 => ok += 1,
            503 if text.contains("max_request_bytes") => refused += 1,
            other => panic!("over HTTP/2: {other}: {text}"),
        }
    }
    eprintln!("8 bodies of 3 MiB over one HTTP/2 connection: {ok} served, {refused} refused");
    assert!(ok >= 2, "the bodies that had room were read and served");
    assert!(refused >= 1);
    eventually(Duration::from_secs(20), "the budget given back", || async {
        let (held, waiting, counted) = metrics().await?;
        (held == 0 && waiting == 0 && counted == refused_before + refused).then_some(())
    })
    .await;
}

fn json_text(text: &str) -> serde_json::Value {
    serde_json::json!({ "text": text })
}
