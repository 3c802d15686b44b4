//! MCP channels: services as tools, driven by the official SDKs as real clients over
//! Streamable HTTP — the Python SDK (initialize, the schemas SimpleIO gives, calls and
//! their failures, `list_changed` on a deploy) and the TypeScript SDK (list and call, so
//! two independent clients agree) — and the protocol's edges by hand: credentials,
//! sessions of another caller, the notification stream, DELETE.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;
use tokio::io::AsyncBufReadExt;

const CONFIG: &str = r#"
security:
  - {name: agents-basic, type: basic_auth, username: agent, password: "agent-pw-123"}
  - {name: agents-key, type: apikey, header: X-API-Key, key: "agent-key-0123"}
channels:
  - {name: agents, type: mcp, url_path: /mcp, security: agents-basic, services: ["crm.*"]}
  - {name: agents-key, type: mcp, url_path: /mcp-key, security: agents-key,
     services: [crm.get-client, crm.echo], tools: {crm.echo: echo}}
"#;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp").join(name)
}

async fn cluster() -> Cluster {
    let c = Cluster::start_with(&[&fixture("mcp_tools.py")], 1, &[], Some(CONFIG)).await;
    let http = reqwest::Client::new();
    // The channels are live and the services published (tools/list has them).
    eventually(
        Duration::from_secs(30),
        "the MCP channel lists tools",
        || {
            let http = http.clone();
            let url = format!("{}/mcp-key", c.http_url);
            async move {
                let (_, sid) = initialize(&http, &url, &[("x-api-key", "agent-key-0123")]).await?;
                let (_, v) = rpc(
                    &http,
                    &url,
                    &[("x-api-key", "agent-key-0123"), ("mcp-session-id", &sid)],
                    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
                )
                .await;
                (v["result"]["tools"].as_array()?.len() == 2).then_some(())
            }
        },
    )
    .await;
    c
}

/// One JSON-RPC exchange: the status, the answer (JSON, or the data of an SSE event).
async fn rpc(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `initialize`: the answer and the session id.
async fn initialize(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Option<(Value, String)> {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.ok()?;
    let sid = resp
        .headers()
        .get("mcp-session-id")?
        .to_str()
        .ok()?
        .to_owned();
    Some((resp.json().await.ok()?, sid))
}

#[tokio::test]
async fn the_python_sdk_lists_calls_and_hears_of_new_tools() {
    let c = cluster().await;
    let mut child = tokio::process::Command::new("python3")
        .arg(script("sdk_client.py"))
        .arg(format!("{}/mcp", c.http_url))
        .args(["agent", "agent-pw-123"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if line == "READY" {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !ready {
        let out = child.wait_with_output().await.expect("output");
        panic!(
            "the SDK client did not get through its checks: {seen:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Hot deployment through the pickup folder adds a service the channel's pattern takes.
    std::fs::write(
        c.services_dir().join("mcp_added.py"),
        "from zato.server.service import Service\n\n\nclass Added(Service):\n    \"\"\"Added while a client is connected.\"\"\"\n    name = 'crm.added'\n\n    def handle(self):\n        self.response.payload = {'added': True}\n",
    )
    .expect("write the module");
    let rest = tokio::time::timeout(Duration::from_secs(90), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
    })
    .await;
    let out = child.wait_with_output().await.expect("output");
    assert!(
        rest.is_ok() && out.status.success() && seen.iter().any(|l| l == "SDK OK"),
        "{seen:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(seen.iter().any(|l| l == "NOTIFIED"), "{seen:?}");

    // The calls went through the router like any channel's: in the tail, with the channel.
    let (s, v) = c
        .admin(
            reqwest::Method::GET,
            "requests?service=crm.get-client",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let records = v["requests"].as_array().cloned().unwrap_or_default();
    assert!(
        records
            .iter()
            .any(|r| r["channel"] == "agents" && r["channel_type"] == "mcp" && r["status"] == 200),
        "{v}"
    );
}

#[tokio::test]
async fn the_typescript_sdk_agrees() {
    let c = cluster().await;
    let sdk = std::env::var("SHOAL_MCP_JS").unwrap_or_else(|_| {
        format!(
            "{}/.cache/shoal-mcp-js",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let out = tokio::process::Command::new("node")
        .arg(script("ts_client.mjs"))
        .arg(format!("{}/mcp-key", c.http_url))
        .arg("agent-key-0123")
        .env("SHOAL_MCP_JS", &sdk)
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let names: Vec<&str> = v["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    // In the order of the services' names (crm.echo, crm.get-client).
    assert_eq!(names, ["echo", "crm_get-client"], "{v}");
    let schema = &v["tools"][1]["inputSchema"];
    assert_eq!(schema["properties"]["age"]["type"], "integer", "{v}");
    assert_eq!(schema["properties"]["limit"]["default"], 10, "{v}");
    assert_eq!(v["called"]["isError"], false, "{v}");
    let sc = &v["called"]["structuredContent"];
    let sc = sc.get("response").unwrap_or(sc);
    assert_eq!(sc["greeting"], "Hello TS (10)", "{v}");
    // JavaScript's numbers hold 53 bits: the text content keeps every digit for it.
    assert!(
        v["called"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("18446744073709551617")),
        "{v}"
    );
    assert_eq!(v["failed"]["isError"], true, "{v}");
    assert!(
        v["failed"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("age")),
        "{v}"
    );
}

#[tokio::test]
async fn credentials_sessions_and_the_notification_stream() {
    let c = cluster().await;
    let http = reqwest::Client::new();
    let url = format!("{}/mcp", c.http_url);
    let basic = |user: &str, pw: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };

    // No credentials, wrong ones: 401 with the challenge MCP clients read.
    for auth in [None, Some(basic("agent", "wrong-password"))] {
        let mut req = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.expect("answer");
        assert_eq!(resp.status(), 401);
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let body: Value = resp.json().await.expect("a JSON-RPC error");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let resp = http
        .post(format!("{}/mcp-key", c.http_url))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(r#"ApiKey realm="agents-key", header="x-api-key""#)
    );

    // A session; version negotiation (an unknown revision gets the newest).
    let alice = basic("agent", "agent-pw-123");
    let (init, sid) = initialize(&http, &url, &[("authorization", &alice)])
        .await
        .expect("initialize");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    let (s, v) = rpc(
        &http,
        &url,
        &[("authorization", &alice)],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2099-01-01"}}),
    )
    .await;
    assert_eq!(
        (s, &v["result"]["protocolVersion"]),
        (200, &json!("2025-11-25"))
    );

    // A session is its opener's: another caller (here on the API-key channel) naming its
    // id gets 404, as for a session that never was.
    let (s, _) = rpc(
        &http,
        &format!("{}/mcp-key", c.http_url),
        &[("x-api-key", "agent-key-0123"), ("mcp-session-id", &sid)],
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await;
    assert_eq!(s, 404, "a session of another channel and caller");

    // ping, then the notification stream: a deploy that changes the tools is announced.
    let (s, v) = rpc(
        &http,
        &url,
        &[("authorization", &alice), ("mcp-session-id", &sid)],
        json!({"jsonrpc": "2.0", "id": "p1", "method": "ping"}),
    )
    .await;
    assert_eq!((s, &v["id"], &v["result"]), (200, &json!("p1"), &json!({})));
    let mut stream = http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("authorization", &alice)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("the stream");
    assert_eq!(stream.status(), 200);
    assert!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"))
    );
    std::fs::write(
        c.services_dir().join("mcp_more.py"),
        "from zato.server.service import Service\n\n\nclass More(Service):\n    name = 'crm.more'\n\n    def handle(self):\n        self.response.payload = {'more': 1}\n",
    )
    .expect("write the module");
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        let mut text = String::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("notifications/tools/list_changed") {
                return text;
            }
        }
        text
    })
    .await
    .expect("a notification within 60 s");
    assert!(got.contains("event: message"), "{got}");

    // A notification and a client's response are accepted with 202.
    let (s, _) = rpc(
        &http,
        &url,
        &[("authorization", &alice), ("mcp-session-id", &sid)],
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(s, 202);

    // A client that takes only streams gets its answer as one SSE event.
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("authorization", &alice)
        .header("mcp-session-id", &sid)
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"crm_echo","arguments":{"v":1}}}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    assert!(
        text.starts_with("event: message\ndata: ")
            && text.contains(r#""structuredContent":{"v":1}"#),
        "{text}"
    );

    // DELETE ends the session: its id is unknown after.
    let resp = http
        .delete(&url)
        .header("authorization", &alice)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let (s, _) = rpc(
        &http,
        &url,
        &[("authorization", &alice), ("mcp-session-id", &sid)],
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    )
    .await;
    assert_eq!(s, 404);

    // The channel is listed like the others.
    let (s, v) = c.admin(reqwest::Method::GET, "channels", None).await;
    assert_eq!(s, 200);
    assert!(
        v["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .any(|ch| ch["type"] == "mcp" && ch["name"] == "agents"),
        "{v}"
    );
}
