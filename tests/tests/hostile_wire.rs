//! Hostile input below the channels: HTTP framing attacks on the channels listener (raw
//! bytes: CL/TE conflicts, bad chunks, broken request lines and headers) and hostile calls
//! to the public gRPC Invoker. Every one gets a 4xx (or gRPC error status), or a closed
//! connection for bytes that are not HTTP, never a 5xx; the cluster serves afterwards.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use shoal_proto::invoker::v1::{InvokeRequest, invoker_client::InvokerClient};
use shoal_tests::cluster::{Cluster, examples_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str =
    "channels:\n  - {name: echo, type: http, service: hello.echo, url_path: /echo}\n";

/// Writes `bytes`, reads the first answer (or nothing, if the connection is closed).
async fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .expect("an answer or a close, not a hang")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn framing_attacks_and_hostile_grpc_calls_get_4xx() {
    let c = Cluster::start_with(&[&examples_dir().join("hello.py")], 1, &[], Some(CONFIG)).await;
    let http = reqwest::Client::new();
    c.wait_for_channel("/echo").await;
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let long_header = format!("X-Long: {}\r\n", "a".repeat(70 * 1024));
    let many_headers: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let framing: Vec<(&str, Vec<u8>)> = vec![
        ("two different Content-Lengths", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\n{}".to_vec()),
        ("a negative Content-Length", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec()),
        ("a non-numeric Content-Length", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec()),
        ("a bad chunk size", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec()),
        ("a chunk longer than declared", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}}}\r\n0\r\n\r\n".to_vec()),
        ("an unknown Transfer-Encoding", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, rot13\r\n\r\n".to_vec()),
        ("a header without a colon", b"GET /echo HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec()),
        ("a space before the colon", b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n".to_vec()),
        ("a garbage request line", b"HELLO THERE\r\n\r\n".to_vec()),
        ("an unknown HTTP version", b"GET /echo HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("a NUL in the path", b"GET /ec\x00ho HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("a 70 KB header", format!("GET /echo HTTP/1.1\r\nHost: x\r\n{long_header}\r\n").into_bytes()),
        ("2,000 headers", format!("GET /echo HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes()),
        ("binary garbage", (0u8..=255).cycle().take(4096).collect()),
        ("a TLS ClientHello on the plain port", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]),
        ("an HTTP/2 preface with garbage after", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\xff\xff\xff".to_vec()),
    ];
    let mut failures = Vec::new();
    for (what, bytes) in &framing {
        let answer = exchange(&addr, bytes).await;
        let status: Option<u16> = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| s.parse().ok());
        match status {
            None => {} // closed without an answer: bytes that are not HTTP
            Some(s) if (400..500).contains(&s) => {}
            Some(s) => failures.push(format!(
                "{what}: got {s}: {}",
                answer.lines().next().unwrap_or("")
            )),
        }
    }

    // The public gRPC Invoker.
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", c.password))
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = InvokerClient::new(channel);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let calls: Vec<(&str, InvokeRequest, Option<String>, tonic::Code)> = vec![
        (
            "no credentials",
            req("hello.say-hello", b"{}"),
            None,
            tonic::Code::Unauthenticated,
        ),
        (
            "garbage credentials",
            req("hello.say-hello", b"{}"),
            Some("Basic !!!".into()),
            tonic::Code::Unauthenticated,
        ),
        (
            "a wrong password",
            req("hello.say-hello", b"{}"),
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("admin:nope")
            )),
            tonic::Code::Unauthenticated,
        ),
        (
            "an empty service",
            req("", b"{}"),
            Some(good.clone()),
            tonic::Code::InvalidArgument,
        ),
        (
            "an unknown service",
            req("no.such", b"{}"),
            Some(good.clone()),
            tonic::Code::NotFound,
        ),
        (
            "a 10,000-character service name",
            req(&"s".repeat(10_000), b"{}"),
            Some(good.clone()),
            tonic::Code::NotFound,
        ),
        (
            "a payload that is not JSON",
            req("hello.say-hello", b"{"),
            Some(good.clone()),
            tonic::Code::InvalidArgument,
        ),
        (
            "a 100,000-deep payload",
            req("hello.say-hello", deep.as_bytes()),
            Some(good.clone()),
            tonic::Code::InvalidArgument,
        ),
        (
            "invalid UTF-8 in the payload",
            req("hello.say-hello", b"{\"a\": \"\xff\"}"),
            Some(good.clone()),
            tonic::Code::InvalidArgument,
        ),
    ];
    for (what, r, auth, want) in calls {
        let mut request = tonic::Request::new(r);
        if let Some(a) = auth {
            request
                .metadata_mut()
                .insert("authorization", a.parse().expect("metadata"));
        }
        match client.invoke(request).await {
            Ok(_) => failures.push(format!("gRPC {what}: succeeded")),
            Err(status) if status.code() == want => {}
            Err(status) => failures.push(format!(
                "gRPC {what}: {:?} {}",
                status.code(),
                status.message()
            )),
        }
    }
    // Content-Length and Transfer-Encoding together: the encoding wins (RFC 9112 §6.3), the
    // answer closes the connection, and a request smuggled behind the body is not served.
    let answer = exchange(
        &addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("connection: close"),
        "{answer}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "one answer only: {answer}"
    );
    // A bare LF ends lines as well as CRLF (RFC 9112 §2.2 allows it): served, not refused.
    let answer = exchange(
        &addr,
        b"POST /echo HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The cluster serves after all of it.
    let r = http
        .post(format!("{}/echo", c.http_url))
        .json(&json!({"after": true}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let mut ok = tonic::Request::new(req("hello.say-hello", br#"{"name": "gRPC"}"#));
    ok.metadata_mut()
        .insert("authorization", good.parse().expect("metadata"));
    let answer = client.invoke(ok).await.expect("a good call").into_inner();
    assert!(String::from_utf8_lossy(&answer.payload).contains("Hello, gRPC!"));
}

fn req(service: &str, payload: &[u8]) -> InvokeRequest {
    InvokeRequest {
        service: service.into(),
        payload: payload.to_vec().into(),
        cid: String::new(),
    }
}

/// A request refused on its headers (wrong credentials) whose small body arrives after
/// them: the answer comes and the keep-alive connection stays usable for the next request
/// (it used to be closed under the client, which had already sent that request: the
/// monitoring suite saw "Server disconnected without sending a response").
#[tokio::test]
async fn a_refusal_before_the_body_keeps_the_connection() {
    let config = "security:\n  - {name: partner, type: basic_auth, username: partner, password: partner-pass-1}\n\
                  channels:\n  - {name: g, type: http, service: hello.echo, url_path: /g, security: partner}\n  \
                  - {name: o, type: http, service: hello.echo, url_path: /o}\n";
    let c = Cluster::start_with(&[&examples_dir().join("hello.py")], 1, &[], Some(config)).await;
    c.wait_for_channel("/o").await;
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let wrong = base64::engine::general_purpose::STANDARD.encode("partner:wrong");
    for round in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let head = format!(
            "POST /g HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAuthorization: Basic {wrong}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("headers");
        shoal_tests::window(
            Duration::from_millis(50),
            "the body comes after the headers",
        )
        .await;
        s.write_all(b"{}").await.expect("body");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            first.starts_with("HTTP/1.1 401") || first.starts_with("HTTP/1.1 429"),
            "{round}: {first}"
        );
        s.write_all(b"POST /o HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .expect("the connection is still open for the next request");
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap_or(0);
        let second = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            second.starts_with("HTTP/1.1 200"),
            "{round}: the next request on the connection: {second:?}"
        );
    }
}
