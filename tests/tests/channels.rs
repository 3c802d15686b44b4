//! HTTP channels end to end: `shoal apply`, security, live changes, bad input.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;

const CONFIG: &str = r#"
security:
  - {name: partner, type: basic_auth, username: partner, password: "${PARTNER_PASSWORD}", realm: Partners}
  - {name: machines, type: apikey, header: X-API-Key, key: "${MACHINE_KEY}"}
channels:
  - {name: get-customer, type: http, service: crm.get-customer, url_path: "/api/customer/{cust_code}",
     method: GET, data_format: json, security: partner}
  - {name: create-order, type: http, service: orders.create, url_path: /api/orders, method: POST,
     security: machines, max_body: 1024}
  - {name: order-status, type: http, service: orders.status, url_path: "/api/orders/{order_id}"}
  - {name: client, type: http, service: zato-style.get-client-details, url_path: /api/client}
  - {name: form-client, type: http, service: zato-style.get-client-details, url_path: /api/form-client,
     data_format: form}
"#;

async fn apply(c: &Cluster, text: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    let f = c.dir.path().join("shoal.yaml");
    std::fs::write(&f, text).expect("write config");
    let out = tokio::process::Command::new(shoal_tests::bin("shoal"))
        .args(["apply", "-f", f.to_str().expect("utf8")])
        .env("SHOAL_ADMIN_URL", &c.admin_url)
        .env("SHOAL_ADMIN_PASSWORD", &c.password)
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("run shoal apply");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const ENVS: &[(&str, &str)] = &[
    ("PARTNER_PASSWORD", "partner-pw-1"),
    ("MACHINE_KEY", "mk-0123456789"),
];

#[tokio::test]
async fn channels_security_and_live_changes() {
    let c = Cluster::start(&[&examples_dir().join("zato_style.py")], 1, &[]).await;
    let (code, out, err) = apply(&c, CONFIG, ENVS).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("created: security/partner, security/machines, channels/get-customer"),
        "{out}"
    );
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", c.http_url);

    // Basic Auth: the path parameter merges into the input; the service's JSON comes back.
    let ok = eventually(Duration::from_secs(5), "channel live", || async {
        let r = http
            .get(url("/api/customer/C42"))
            .basic_auth("partner", Some("partner-pw-1"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(ok.headers()["content-type"], "application/json");
    assert_eq!(
        ok.json::<serde_json::Value>().await.expect("json"),
        json!({"cust_code": "C42", "name": "Alice", "email": null})
    );
    for (user, pw) in [("partner", "wrong"), ("other", "partner-pw-1")] {
        let r = http
            .get(url("/api/customer/C42"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Partners\"");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let r = http
        .get(url("/api/customer/C42"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    // Method not allowed by the channel.
    let r = http
        .post(url("/api/customer/C42"))
        .basic_auth("partner", Some("partner-pw-1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");

    // API key: status, headers and hooks from the service.
    let r = http
        .post(url("/api/orders"))
        .header("X-API-Key", "mk-0123456789")
        .json(&json!({"sku": "A", "qty": 2}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/orders/1001");
    assert_eq!(r.headers()["x-handled-by"], "orders.create");
    let r = http
        .post(url("/api/orders"))
        .header("X-API-Key", "nope-nope-nope")
        .json(&json!({"sku": "A", "qty": 2}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    // Bad input: malformed JSON, wrong type, missing element, oversized body.
    let key = ("X-API-Key", "mk-0123456789");
    for (body, status, needle) in [
        ("{\"sku\": ", 400, "not valid JSON"),
        (
            "{\"sku\": \"A\", \"qty\": \"two\"}",
            400,
            "'qty' is not a valid Int",
        ),
        ("{\"qty\": 1}", 400, "Element missing: sku"),
    ] {
        let r = http
            .post(url("/api/orders"))
            .header(key.0, key.1)
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), status, "{body}");
        let text = r.text().await.expect("text");
        assert!(text.contains(needle), "{text}");
        assert!(!text.contains("Traceback"));
    }
    let big = format!("{{\"sku\": \"{}\", \"qty\": 1}}", "x".repeat(2000));
    let r = http
        .post(url("/api/orders"))
        .header(key.0, key.1)
        .body(big)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 413);

    // Any method: verb dispatch in the service (handle_GET / handle_DELETE, else 405).
    let r = http
        .get(url("/api/orders/77"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json"),
        json!({"order_id": "77", "status": "shipped"})
    );
    assert_eq!(
        http.delete(url("/api/orders/77"))
            .send()
            .await
            .expect("answer")
            .status(),
        204
    );
    assert_eq!(
        http.put(url("/api/orders/77"))
            .send()
            .await
            .expect("answer")
            .status(),
        405
    );

    // Query string into SimpleIO input; form bodies.
    let r = http
        .get(url("/api/client?client_code=Q1&age=30"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["response"]["name"],
        "Client Q1"
    );
    let r = http
        .post(url("/api/form-client"))
        .form(&[("client_code", "F1"), ("age", "5")])
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["response"]["age"],
        5
    );

    // Unknown path.
    let r = http.get(url("/nope")).send().await.expect("answer");
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"]["code"],
        "not_found"
    );

    // Applying the same file again changes nothing.
    let (code, out, _) = apply(&c, CONFIG, ENVS).await;
    assert_eq!(code, 0);
    assert!(
        !out.contains("created") && !out.contains("updated") && out.contains("unchanged"),
        "{out}"
    );
    // A changed password is an update, and the old one stops working.
    let envs = [
        ("PARTNER_PASSWORD", "partner-pw-2"),
        ("MACHINE_KEY", "mk-0123456789"),
    ];
    let (code, out, _) = apply(&c, CONFIG, &envs).await;
    assert_eq!(code, 0);
    assert!(out.contains("updated: security/partner"), "{out}");
    eventually(Duration::from_secs(5), "new password live", || async {
        let r = http
            .get(url("/api/customer/C1"))
            .basic_auth("partner", Some("partner-pw-2"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = http
        .get(url("/api/customer/C1"))
        .basic_auth("partner", Some("partner-pw-1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);

    // Export: the same objects, no secrets.
    let (code, out, _) = c.cli(&["export"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("get-customer") && out.contains("X-API-Key"),
        "{out}"
    );
    for secret in [
        "partner-pw",
        "mk-0123456789",
        "argon2",
        "password",
        "key_hash",
    ] {
        assert!(!out.contains(secret), "export leaks {secret}:\n{out}");
    }

    // Live: a new channel serves within 1 s, a deleted one is gone at once.
    let admin = |m: reqwest::Method, p: &str| {
        http.request(m, format!("{}/api/v1/{p}", c.admin_url))
            .basic_auth("admin", Some(&c.password))
    };
    let started = Instant::now();
    let r = admin(reqwest::Method::PUT, "channels/camel")
        .json(&json!({"name": "camel", "type": "http", "service": "zato-style.my-camel-service", "url_path": "/camel"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(1), "new channel within 1 s", || async {
        let r = http.get(url("/camel")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        admin(reqwest::Method::DELETE, "channels/camel")
            .send()
            .await
            .expect("answer")
            .status(),
        200
    );
    eventually(Duration::from_secs(1), "deleted channel gone", || async {
        let r = http.get(url("/camel")).send().await.ok()?;
        (r.status() == 404).then_some(())
    })
    .await;
    // A security definition in use cannot be deleted.
    let r = admin(reqwest::Method::DELETE, "security/partner")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 409);

    // Per-channel metrics.
    let metrics = http
        .get(format!("http://{}/metrics", c.gateway_ops))
        .send()
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(
        metrics.contains(
            "shoal_gateway_channel_requests_total{channel=\"create-order\",class=\"4xx\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn apply_errors_are_precise() {
    let c = Cluster::start(&[], 1, &[]).await;
    for (text, envs, needle) in [
        (
            "channels:\n  - {name: a, type: http, service: s, url_path: /a, colour: red}\n",
            &[][..],
            "colour",
        ),
        (
            "channels:\n  - {name: a, type: telnet, service: s}\n",
            &[][..],
            "telnet",
        ),
        (
            "security:\n  - {name: p, type: basic_auth, username: u, password: \"${NOT_SET_ANYWHERE}\"}\n",
            &[][..],
            "NOT_SET_ANYWHERE",
        ),
        (
            "channels:\n  - {name: a, type: http, service: s, url_path: /a, security: ghost}\n",
            &[][..],
            "ghost",
        ),
        (
            "channels:\n  - {name: a, type: http, service: s, url_path: no-slash}\n",
            &[][..],
            "url_path",
        ),
        (
            "outgoing:\n  - {name: o, type: http}\n",
            &[][..],
            "outgoing",
        ),
    ] {
        let (code, out, err) = apply(&c, text, envs).await;
        assert_ne!(code, 0, "{text}");
        assert!(err.contains(needle), "{text}\n{out}{err}");
    }
}

/// Limits of the HTTP channels listener: URL length, header size, slow headers, requests
/// in flight. After all of it the gateway still answers.
#[tokio::test]
async fn listener_limits() {
    let slow = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slow.py");
    let config = "channels:\n  - {name: slow, type: http, service: slow.sleep, url_path: /slow}\n";
    let c = Cluster::start_env(
        &[&slow],
        1,
        &[],
        Some(config),
        &[
            ("SHOAL_MAX_IN_FLIGHT", "2"),
            ("SHOAL_HEADER_READ_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", c.http_url);
    eventually(Duration::from_secs(10), "slow channel live", || async {
        let r = http.get(url("/slow?s=0")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // URL over 8 KB: 414.
    let r = http
        .get(url(&format!("/slow?pad={}", "x".repeat(9000))))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 414);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"]["code"],
        "uri_too_long"
    );
    // Headers over 64 KB: 431 from the HTTP layer (or the connection is refused outright).
    let r = http
        .get(url("/slow?s=0"))
        .header("X-Big", "y".repeat(100 * 1024))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }

    // Slowloris: headers that never finish are cut off after the header read timeout.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a slow client kept its connection for 5 s");
    assert!(started.elapsed() < Duration::from_secs(4));

    // Requests in flight over the cap (2): 503 with Retry-After; nothing hangs.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let http = http.clone();
            let u = url("/slow?s=1");
            tokio::spawn(async move { http.get(u).send().await })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        let r = call.await.expect("join").expect("answer");
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        statuses.push(r.status().as_u16());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        4,
        "{statuses:?}"
    );

    // Still healthy.
    let r = http.get(url("/slow?s=0")).send().await.expect("answer");
    assert_eq!(r.status(), 200);
}

/// The Zato wire, tested with the real zato-client 3.2.1 from PyPI (installed by
/// `scripts/test` into a Python 3.10 venv, as it installs on nothing newer).
#[tokio::test]
async fn zato_client_invokes_services() {
    let venv = std::env::var("SHOAL_ZATO_CLIENT_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/shoal-zato-client")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test once (it installs the real zato-client)",
        python.display()
    );
    let config = r#"
security:
  - {name: zato-admin, type: basic_auth, username: admin.invoke, password: "zato-pw-1"}
channels:
  - {name: zato-invoke, type: invoke, wire: zato, url_path: /zato/admin/invoke, security: zato-admin}
  - {name: zato-api, type: invoke, wire: json, url_path: "/zato/api/invoke/{service}", security: zato-admin}
"#;
    let c = Cluster::start_with(
        &[
            &examples_dir().join("hello.py"),
            &examples_dir().join("zato_style.py"),
        ],
        1,
        &[],
        Some(config),
    )
    .await;
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(10), "invoke channel live", || async {
        let r = http
            .post(format!("{}/zato/admin/invoke", c.http_url))
            .send()
            .await
            .ok()?;
        (r.status() == 401).then_some(())
    })
    .await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/zato_client_check.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([c.http_url.as_str(), "admin.invoke", "zato-pw-1"])
        .output()
        .await
        .expect("run the zato client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["invoke"]["ok"], true, "{v}");
    assert_eq!(v["invoke"]["data"]["greeting"], "Hello, Zato!");
    assert_eq!(v["invoke"]["cid"].as_str().map(str::len), Some(24));
    // The client strips a single top-level key starting with "zato"; "response" stays.
    assert_eq!(v["invoke_sio"]["ok"], true, "{v}");
    assert_eq!(v["invoke_sio"]["data"]["response"]["name"], "Client Z1");
    assert_eq!(v["invoke_missing"]["ok"], false);
    assert!(
        v["invoke_missing"]["details"]
            .as_str()
            .unwrap_or("")
            .contains("no such service"),
        "{v}"
    );
    assert_eq!(v["invoke_bad_auth"]["ok"], false);
    assert_eq!(v["invoke_bad_auth"]["status"], 401);
    assert_eq!(v["api"]["ok"], true, "{v}");
    assert_eq!(v["api"]["data"]["greeting"], "Hello, API!");
    assert_eq!(v["api"]["cid"].as_str().map(str::len), Some(24));
    assert_eq!(v["api_get"]["data"]["name"], "zato-style.my-camel-service");
    assert_eq!(v["ping"]["zato_ping_response"]["pong"], "zato");
    assert_eq!(v["ping"]["zato_env"]["result"], "ZATO_OK");
}

/// OpenAPI 3.1 from the channels and the services' SimpleIO.
#[tokio::test]
async fn openapi_from_simpleio() {
    let c = Cluster::start(&[&examples_dir().join("zato_style.py")], 1, &[]).await;
    let (code, out, err) = apply(&c, CONFIG, ENVS).await;
    assert_eq!(code, 0, "{out}{err}");
    let http = reqwest::Client::new();
    let spec: serde_json::Value =
        eventually(Duration::from_secs(10), "openapi with SimpleIO", || async {
            let r = http
                .get(format!("{}/api/v1/openapi.json", c.admin_url))
                .basic_auth("admin", Some(&c.password))
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v["paths"]["/api/client"]["get"]["parameters"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                .then_some(v)
        })
        .await;
    assert_eq!(spec["openapi"], "3.1.0");
    let get_client = &spec["paths"]["/api/client"]["get"];
    let params = get_client["parameters"].as_array().expect("params");
    let age = params.iter().find(|p| p["name"] == "age").expect("age");
    assert_eq!(
        (
            age["in"].as_str(),
            age["required"].as_bool(),
            age["schema"]["type"].as_str()
        ),
        (Some("query"), Some(true), Some("integer"))
    );
    let ok = &get_client["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        ok["properties"]["response"]["properties"]["member_since"]["format"],
        "date"
    );
    let create = &spec["paths"]["/api/orders"]["post"];
    let body = &create["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["qty"]["type"], "integer");
    assert_eq!(create["security"][0]["machines"], serde_json::json!([]));
    assert_eq!(
        spec["components"]["securitySchemes"]["machines"]["name"],
        "X-API-Key"
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["partner"]["scheme"],
        "basic"
    );
    let cust = &spec["paths"]["/api/customer/{cust_code}"]["get"]["parameters"][0];
    assert_eq!(
        (cust["name"].as_str(), cust["in"].as_str()),
        (Some("cust_code"), Some("path"))
    );
}

/// The public gRPC Invoker admits any active security definition (and the admin), and
/// answers with gRPC statuses from the one error table. grpc.health.v1 is served.
#[tokio::test]
async fn grpc_invoker_with_security_definitions() {
    use base64::Engine;
    use shoal_proto::invoker::v1::{InvokeRequest, invoker_client::InvokerClient};
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = dir.path().join("slow.py");
    std::fs::write(
        &slow,
        "import time\nfrom shoal import Service\n\nclass Slow(Service):\n    name = 'grpc-test.slow'\n\n    def handle(self):\n        time.sleep(2)\n",
    )
    .expect("write");
    let c = Cluster::start(
        &[
            &examples_dir().join("zato_style.py"),
            &examples_dir().join("hello.py"),
            &slow,
        ],
        1,
        &[],
    )
    .await;
    let (code, out, err) = apply(&c, CONFIG, ENVS).await;
    assert_eq!(code, 0, "{out}{err}");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = InvokerClient::new(channel.clone());
    let req = |meta: &[(&'static str, String)], service: &str, payload: &str| {
        let mut r = tonic::Request::new(InvokeRequest {
            service: service.into(),
            payload: payload.as_bytes().to_vec().into(),
            cid: String::new(),
        });
        for (k, v) in meta {
            r.metadata_mut().insert(*k, v.parse().expect("metadata"));
        }
        r
    };
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    // No credentials, wrong ones: Unauthenticated.
    let e = client
        .invoke(req(&[], "hello.say-hello", "{}"))
        .await
        .expect_err("anonymous");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = client
        .invoke(req(
            &[("authorization", basic("partner", "nope"))],
            "hello.say-hello",
            "{}",
        ))
        .await
        .expect_err("wrong");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // A channel's Basic definition, an API key, the admin: all admitted.
    let ok = eventually(Duration::from_secs(10), "partner admitted", || {
        let mut client = client.clone();
        let r = req(
            &[("authorization", basic("partner", "partner-pw-1"))],
            "hello.say-hello",
            r#"{"name": "gRPC"}"#,
        );
        async move { client.invoke(r).await.ok() }
    })
    .await
    .into_inner();
    let body: serde_json::Value = serde_json::from_slice(&ok.payload).expect("json");
    assert_eq!(body["greeting"], "Hello, gRPC!");
    assert_eq!(ok.content_type, "application/json");
    assert_eq!(ok.cid.len(), 24);
    let r = client
        .invoke(req(
            &[("x-api-key", "mk-0123456789".into())],
            "hello.say-hello",
            "{}",
        ))
        .await
        .expect("api key");
    assert_eq!(r.into_inner().status, 200);
    let r = client
        .invoke(req(
            &[("authorization", basic("admin", &c.password))],
            "hello.say-hello",
            "",
        ))
        .await
        .expect("admin");
    assert_eq!(r.into_inner().status, 200);
    // Errors as gRPC statuses.
    let auth = [("authorization", basic("partner", "partner-pw-1"))];
    let e = client
        .invoke(req(&auth, "no.such", "{}"))
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = client
        .invoke(req(&auth, "hello.say-hello", "{bad"))
        .await
        .expect_err("bad json");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = client
        .invoke(req(
            &auth,
            "zato-style.get-client-details",
            r#"{"age": "x"}"#,
        ))
        .await
        .expect_err("sio");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("Element"), "{}", e.message());
    // The caller's deadline (grpc-timeout) passes before the service answers: the server
    // says DEADLINE_EXCEEDED, as gRPC does, not CANCELLED. Over a bare HTTP/2 client:
    // tonic's own channel would start a timer of its own for the same header.
    let bare = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let origin: http::Uri = format!("http://{}", c.grpc_addr).parse().expect("uri");
    let mut r = req(&auth, "grpc-test.slow", "{}");
    r.metadata_mut()
        .insert("grpc-timeout", "300m".parse().expect("timeout"));
    let e = InvokerClient::with_origin(bare, origin)
        .invoke(r)
        .await
        .expect_err("deadline");
    // Whichever timer of the server fires first — the listener's for the caller's
    // deadline, or the call's own (the executor's, given the same 300 ms) — the code is
    // the same and the message names the budget.
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("300 ms"), "{e:?}");
    // Health.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shoal.invoker.v1.Invoker".into(),
        })
        .await
        .expect("health");
    assert_eq!(
        h.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// gzip both ways: a gzipped request body is inflated (and still limited), and a client
/// that accepts gzip gets a gzipped answer.
#[tokio::test]
async fn gzip_requests_and_responses() {
    use std::io::{Read, Write};
    let c = Cluster::start(
        &[
            &examples_dir().join("zato_style.py"),
            &examples_dir().join("hello.py"),
        ],
        1,
        &[],
    )
    .await;
    let config = "channels:\n  - {name: echo, type: http, service: hello.echo, url_path: /echo, max_body: 100000}\n";
    let (code, out, err) = apply(&c, config, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let http = reqwest::Client::new();
    let doc =
        serde_json::json!({"items": (0..200).map(|i| format!("item-{i}")).collect::<Vec<_>>()});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(doc.to_string().as_bytes()).expect("gzip");
    let body = gz.finish().expect("gzip");
    let r = eventually(Duration::from_secs(10), "echo channel", || {
        let http = http.clone();
        let body = body.clone();
        let url = format!("{}/echo", c.http_url);
        async move {
            let r = http
                .post(url)
                .header("content-encoding", "gzip")
                .header("accept-encoding", "gzip")
                .body(body)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("json"),
        doc
    );
    // A small gzip body that inflates past the channel's limit is a 413, not a memory spike.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 5_000_000]).expect("gzip");
    let bomb = bomb.finish().expect("gzip");
    assert!(bomb.len() < 20_000);
    let r = http
        .post(format!("{}/echo", c.http_url))
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 413);
    // Corrupt gzip: a 400.
    let r = http
        .post(format!("{}/echo", c.http_url))
        .header("content-encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400, "{:?}", r.text().await);
}

/// `xml` and `plain` data formats.
#[tokio::test]
async fn xml_and_plain_channels() {
    let c = Cluster::start(
        &[
            &examples_dir().join("zato_style.py"),
            &examples_dir().join("hello.py"),
        ],
        1,
        &[],
    )
    .await;
    let config = "channels:\n  - {name: client-xml, type: http, service: zato-style.get-client-details, url_path: /xml/client, data_format: xml}\n  - {name: echo-plain, type: http, service: hello.echo, url_path: /plain/echo, data_format: plain}\n";
    let (code, out, err) = apply(&c, config, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let http = reqwest::Client::new();
    let r = eventually(Duration::from_secs(10), "xml channel", || {
        let f = http
            .post(format!("{}/xml/client", c.http_url))
            .header("content-type", "application/xml")
            .body("<?xml version=\"1.0\"?><request><client_code>X1</client_code><age>33</age></request>")
            .send();
        async move {
            let r = f.await.ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("application/xml")
    );
    let text = r.text().await.expect("text");
    assert!(
        text.contains("<response><name>Client X1</name><age>33</age><segment>regular</segment>"),
        "{text}"
    );
    // Errors as XML documents naming the problem.
    for (body, status, needle) in [
        (
            "<request><age>1</age></request>",
            400,
            "Element missing: client_code",
        ),
        ("<request><unclosed></request>", 400, "malformed XML"),
        (
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><request>&x;</request>",
            400,
            "DTD",
        ),
    ] {
        let r = http
            .post(format!("{}/xml/client", c.http_url))
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), status);
        let text = r.text().await.expect("text");
        assert!(
            text.contains("<error><code>bad_request</code>") && text.contains(needle),
            "{needle}: {text}"
        );
    }
    // Plain: the body arrives as a string; a str payload goes back as text/plain.
    let r = http
        .post(format!("{}/plain/echo", c.http_url))
        .body("just text ü")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.expect("text"), "just text ü");
}

/// HTTP/2 without TLS (h2c, prior knowledge) on the channels listener, beside HTTP/1.1.
#[tokio::test]
async fn h2c_prior_knowledge() {
    use http_body_util::{BodyExt, Full};
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let (code, out, err) = apply(
        &c,
        "channels:\n  - {name: echo, type: http, service: hello.echo, url_path: /echo}\n",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let resp = eventually(Duration::from_secs(10), "h2c answer", || {
        let client = client.clone();
        let uri: http::Uri = format!("{}/echo", c.http_url).parse().expect("uri");
        async move {
            let req = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from_static(b"{\"over\": \"h2\"}")))
                .ok()?;
            let r = client.request(req).await.ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"over": "h2"})
    );
}
