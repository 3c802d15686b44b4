//! The admin API under hostile input: every object kind, deploy, rollback, apply, invoke,
//! the KVDB, the request tail and the credentials themselves, each fed malformed,
//! mistyped, oversized, deeply nested and path-traversing input. Every case must get its
//! 4xx with the JSON error body — never a 5xx, a hang or a traceback — and the cluster must
//! serve normally afterwards. (The channels' corpus is `bad_input.rs`.)

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use shoal_tests::cluster::{Cluster, examples_dir};

struct Case {
    what: String,
    method: reqwest::Method,
    path: String,
    body: Vec<u8>,
    auth: Option<String>,
    expect: &'static [u16],
}

fn corpus() -> Vec<Case> {
    use reqwest::Method as M;
    let mut cases = Vec::new();
    let mut add = |what: String, method: M, path: String, body: Vec<u8>, expect: &'static [u16]| {
        cases.push(Case {
            what,
            method,
            path,
            body,
            auth: None,
            expect,
        });
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge_name = "n".repeat(5000);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not JSON", b"{".to_vec()),
        ("an array", b"[]".to_vec()),
        ("a number", b"42".to_vec()),
        ("a string", b"\"x\"".to_vec()),
        ("null", b"null".to_vec()),
        ("no type", br#"{"name": "x"}"#.to_vec()),
        (
            "an unknown type",
            br#"{"name": "x", "type": "telepathy"}"#.to_vec(),
        ),
        (
            "an unknown field",
            br#"{"name": "x", "type": "http", "colour": "red"}"#.to_vec(),
        ),
        (
            "a mistyped name",
            br#"{"name": 7, "type": "http"}"#.to_vec(),
        ),
        ("deeply nested", deep.clone().into_bytes()),
        ("invalid UTF-8", b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ("a NUL byte", b"{\"name\": \"a\x00b\"}".to_vec()),
    ];
    for kind in ["channels", "outgoing", "security", "jobs"] {
        for (what, body) in &bodies {
            add(
                format!("PUT {kind} with {what}"),
                M::PUT,
                format!("{kind}/x"),
                body.clone(),
                &[400],
            );
        }
        for (what, name) in [
            ("a path-traversal name", "..%2F..%2Fetc%2Fpasswd"),
            ("a 5000-character name", huge_name.as_str()),
            ("a name with spaces", "a%20b"),
            ("a name with a NUL", "a%00b"),
        ] {
            add(
                format!("PUT {kind} with {what}"),
                M::PUT,
                format!("{kind}/{name}"),
                br#"{"type": "http", "service": "s", "url_path": "/a"}"#.to_vec(),
                &[400],
            );
            add(
                format!("GET {kind} with {what}"),
                M::GET,
                format!("{kind}/{name}"),
                Vec::new(),
                &[400, 404],
            );
            add(
                format!("DELETE {kind} with {what}"),
                M::DELETE,
                format!("{kind}/{name}"),
                Vec::new(),
                &[400, 404],
            );
        }
        add(
            format!("DELETE an unknown {kind}"),
            M::DELETE,
            format!("{kind}/no-such-thing"),
            Vec::new(),
            &[404],
        );
    }
    // Deploy.
    for (what, body) in [
        ("not JSON", b"{".to_vec()),
        ("no files", br#"{"files": []}"#.to_vec()),
        ("files not a list", br#"{"files": "x.py"}"#.to_vec()),
        ("a file without source", br#"{"files": [{"name": "x.py"}]}"#.to_vec()),
        ("a source that is not text", br#"{"files": [{"name": "x.py", "source": 5}]}"#.to_vec()),
        ("a path-traversal name", br#"{"files": [{"name": "../../x.py", "source": "x = 1"}]}"#.to_vec()),
        ("a dotted name", br#"{"files": [{"name": "a.b.py", "source": "x = 1"}]}"#.to_vec()),
        ("a name starting with a digit", br#"{"files": [{"name": "1x.py", "source": "x = 1"}]}"#.to_vec()),
        ("an empty name", br#"{"files": [{"name": "", "source": "x = 1"}]}"#.to_vec()),
        ("a syntax error", br#"{"files": [{"name": "broken_syntax.py", "source": "def (:"}]}"#.to_vec()),
        ("an import error", br#"{"files": [{"name": "broken_import.py", "source": "import no_such_module_anywhere"}]}"#.to_vec()),
        ("a raise at import", br#"{"files": [{"name": "broken_raise.py", "source": "raise SystemExit(4)"}]}"#.to_vec()),
        ("an unknown field", br#"{"files": [], "force": true}"#.to_vec()),
        ("deeply nested", deep.clone().into_bytes()),
    ] {
        add(format!("deploy with {what}"), M::POST, "deploy".into(), body, &[400]);
    }
    for (what, body, expect) in [
        ("not JSON", b"{".to_vec(), &[400u16][..]),
        ("no module", b"{}".to_vec(), &[400][..]),
        (
            "a path-traversal module",
            br#"{"module": "../x"}"#.to_vec(),
            &[400][..],
        ),
        (
            "an unknown module",
            br#"{"module": "never_deployed"}"#.to_vec(),
            &[404][..],
        ),
    ] {
        add(
            format!("rollback with {what}"),
            M::POST,
            "deploy/rollback".into(),
            body,
            expect,
        );
    }
    // Apply.
    for (what, body) in [
        ("not JSON", b"channels:\n  - x".to_vec()),
        ("an unknown section", br#"{"routes": []}"#.to_vec()),
        ("a channel of an unknown type", br#"{"channels": [{"name": "a", "type": "pigeon"}]}"#.to_vec()),
        ("a channel naming missing security", br#"{"channels": [{"name": "a", "type": "http", "service": "s", "url_path": "/a", "security": "ghost"}]}"#.to_vec()),
        ("duplicate names", br#"{"channels": [{"name": "a", "type": "http", "service": "s", "url_path": "/a"}, {"name": "a", "type": "http", "service": "s", "url_path": "/b"}]}"#.to_vec()),
        ("a job with a bad cron", br#"{"jobs": [{"name": "j", "type": "cron", "service": "s", "cron": "61 * * * * *"}]}"#.to_vec()),
        ("a job with a bad cron_definition", br#"{"jobs": [{"name": "j", "type": "cron_style", "service": "s", "cron_definition": "0 0 L * *"}]}"#.to_vec()),
        ("a job in an unknown time zone", br#"{"jobs": [{"name": "j", "type": "cron", "service": "s", "cron": "0 0 2 * * *", "timezone": "Mars/Olympus"}]}"#.to_vec()),
        ("a short API key", br#"{"security": [{"name": "k", "type": "apikey", "header": "X-K", "key": "short"}]}"#.to_vec()),
        ("a bad header name", br#"{"security": [{"name": "k", "type": "apikey", "header": "X K", "key": "0123456789"}]}"#.to_vec()),
        ("an oversized max_body", br#"{"channels": [{"name": "a", "type": "http", "service": "s", "url_path": "/a", "max_body": 1000000000000}]}"#.to_vec()),
        ("deeply nested", deep.clone().into_bytes()),
    ] {
        add(format!("apply with {what}"), M::POST, "apply".into(), body, &[400]);
    }
    add(
        "apply with prune=maybe".into(),
        M::POST,
        "apply?prune=maybe".into(),
        b"{}".to_vec(),
        &[400],
    );
    // Invoke.
    for (what, path, body, expect) in [
        (
            "a body that is not JSON",
            "services/hello.say-hello/invoke",
            b"{".to_vec(),
            &[400u16][..],
        ),
        (
            "deeply nested JSON",
            "services/hello.say-hello/invoke",
            deep.clone().into_bytes(),
            &[400][..],
        ),
        (
            "an unknown service",
            "services/no.such/invoke",
            b"{}".to_vec(),
            &[404][..],
        ),
        (
            "a mistyped SimpleIO input",
            "services/zato-style.get-client-details/invoke",
            br#"{"client_code": "c", "age": "old"}"#.to_vec(),
            &[400][..],
        ),
        (
            "a missing SimpleIO input",
            "services/zato-style.get-client-details/invoke",
            b"{}".to_vec(),
            &[400][..],
        ),
        (
            "an input that is a list",
            "services/zato-style.get-client-details/invoke",
            b"[1, 2]".to_vec(),
            &[400][..],
        ),
    ] {
        add(
            format!("invoke with {what}"),
            M::POST,
            path.into(),
            body,
            expect,
        );
    }
    // The KVDB and the tail.
    let long_key = "k".repeat(2000);
    for (what, method, path, expect) in [
        (
            "a 2000-character key",
            M::GET,
            format!("kvdb/{long_key}"),
            &[400u16][..],
        ),
        (
            "a PUT with a non-numeric expiry",
            M::PUT,
            "kvdb/a?expiry=soon".into(),
            &[400][..],
        ),
        (
            "a PUT with a negative expiry",
            M::PUT,
            "kvdb/a?expiry=-1".into(),
            &[400][..],
        ),
        (
            "an unknown query parameter",
            M::PUT,
            "kvdb/a?ttl=5".into(),
            &[400][..],
        ),
        (
            "an unknown key",
            M::GET,
            "kvdb/never-set".into(),
            &[404][..],
        ),
        (
            "requests?limit=-1",
            M::GET,
            "requests?limit=-1".into(),
            &[400][..],
        ),
        (
            "requests?limit=100000",
            M::GET,
            "requests?limit=100000".into(),
            &[400][..],
        ),
        (
            "tail?backlog=x",
            M::GET,
            "tail?backlog=x".into(),
            &[400][..],
        ),
        (
            "tail with an unknown parameter",
            M::GET,
            "tail?follow=1".into(),
            &[400][..],
        ),
        (
            "an unknown endpoint",
            M::GET,
            "no/such/endpoint".into(),
            &[404][..],
        ),
        (
            "a job run of an unknown job",
            M::POST,
            "jobs/no-such-job/run".into(),
            &[404][..],
        ),
    ] {
        add(what.to_string(), method, path, b"v".to_vec(), expect);
    }
    // Credentials.
    for (i, header) in [
        "Basic !!!not-base64!!!".to_owned(),
        "Basic ".to_owned(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("no-colon")
        ),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:wrong")
        ),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("root:test-password-1")
        ),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("admin:{}", "x".repeat(100_000)))
        ),
        "Bearer abc.def.ghi".to_owned(),
        "Digest username=\"admin\"".to_owned(),
        "basic".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(Case {
            what: format!("bad credentials #{i}"),
            method: M::GET,
            path: "services".into(),
            body: Vec::new(),
            auth: Some(header),
            expect: &[401, 431],
        });
    }
    cases.extend(wrong_types());
    cases
}

/// Valid objects of each kind and type (the test checks they are accepted), for
/// [`wrong_types`].
fn bases() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "channels",
            json!({"name": "wt-http", "type": "http", "service": "hello.echo", "url_path": "/wt", "method": "POST", "data_format": "json", "is_active": true, "max_body": 1000}),
        ),
        (
            "channels",
            json!({"name": "wt-soap", "type": "soap", "service": "hello.echo", "url_path": "/wt-soap", "soap_version": "1.1", "namespace": "urn:x", "soap_action": "a", "max_body": 1000}),
        ),
        (
            "channels",
            json!({"name": "wt-inv", "type": "invoke", "url_path": "/wt-inv/{service}", "wire": "json", "max_body": 1000}),
        ),
        (
            "channels",
            json!({"name": "wt-zmq", "type": "zmq", "service": "hello.echo", "socket_type": "PULL", "address": "tcp://127.0.0.1:1", "data_format": "json"}),
        ),
        (
            "security",
            json!({"name": "wt-basic", "type": "basic_auth", "username": "u", "password": "p-1", "realm": "r", "is_active": true}),
        ),
        (
            "security",
            json!({"name": "wt-key", "type": "apikey", "header": "X-Key", "key": "key-0123456789"}),
        ),
        (
            "security",
            json!({"name": "wt-wss", "type": "wss", "username": "u", "password": "p-1", "password_type": "text", "nonce_freshness": 300, "max_age": 300}),
        ),
        (
            "outgoing",
            json!({"name": "wt-out-http", "type": "http", "address": "http://127.0.0.1:1", "url_path": "/x", "timeout": 5.0, "pool_size": 2, "tls_verify": true, "retries": 1}),
        ),
        (
            "outgoing",
            json!({"name": "wt-sql", "type": "sql", "url": "sqlite::memory:", "pool_size": 1, "timeout": 5.0}),
        ),
        (
            "outgoing",
            json!({"name": "wt-ftp", "type": "ftp", "host": "127.0.0.1", "port": 21, "username": "u", "passive": true, "pool_size": 1}),
        ),
        (
            "outgoing",
            json!({"name": "wt-out-zmq", "type": "zmq", "socket_type": "PUSH", "address": "tcp://127.0.0.1:1"}),
        ),
        (
            "jobs",
            json!({"name": "wt-job", "type": "interval", "service": "hello.echo", "minutes": 5, "is_active": true, "extra": {"a": 1}}),
        ),
    ]
}

/// Valid objects of each kind and type, then each of their fields given a value of the
/// wrong JSON type (a string where a number goes, a number where a string goes, ...), and
/// an unknown field: each a 400, nothing stored.
fn wrong_types() -> Vec<Case> {
    let mut out = Vec::new();
    for (kind, base) in bases() {
        let name = base["name"].as_str().unwrap_or_default().to_owned();
        let fields: Vec<String> = base
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for field in fields {
            let wrong = match &base[&field] {
                serde_json::Value::String(_) => json!(12345),
                serde_json::Value::Number(_) => json!("lots"),
                serde_json::Value::Bool(_) => json!("maybe"),
                serde_json::Value::Object(_) => json!([1, 2]),
                _ => json!({"x": 1}),
            };
            // `extra` takes any JSON: a string is valid there.
            if field == "extra" {
                continue;
            }
            let mut doc = base.clone();
            doc[&field] = wrong.clone();
            out.push(Case {
                what: format!("{kind} {name}: {field} = {wrong}"),
                method: reqwest::Method::PUT,
                path: format!("{kind}/{name}"),
                body: doc.to_string().into_bytes(),
                auth: None,
                expect: &[400],
            });
        }
        let mut doc = base.clone();
        doc["colour"] = json!("blue");
        out.push(Case {
            what: format!("{kind} {name}: an unknown field"),
            method: reqwest::Method::PUT,
            path: format!("{kind}/{name}"),
            body: doc.to_string().into_bytes(),
            auth: None,
            expect: &[400],
        });
    }
    out
}

#[tokio::test]
async fn the_admin_api_answers_hostile_input_with_4xx() {
    let c = Cluster::start(
        &[
            &examples_dir().join("hello.py"),
            &examples_dir().join("zato_style.py"),
        ],
        1,
        &[],
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", c.password))
    );
    let cases = corpus();
    assert!(cases.len() >= 120, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let req = http
            .request(
                case.method.clone(),
                format!("{}/api/v1/{}", c.admin_url, case.path),
            )
            .header("authorization", case.auth.as_deref().unwrap_or(&good))
            .header("content-type", "application/json")
            .body(case.body.clone());
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: no answer: {e}", case.what));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !case.expect.contains(&status) {
            failures.push(format!(
                "{}: got {status}, expected {:?}: {}",
                case.what,
                case.expect,
                text.chars().take(200).collect::<String>()
            ));
        }
        if text.contains("Traceback") {
            failures.push(format!("{}: a traceback leaked", case.what));
        }
        if status != 431 && !text.contains("\"error\"") {
            failures.push(format!(
                "{}: no JSON error body: {}",
                case.what,
                text.chars().take(200).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "admin hostile-input corpus: {} cases, all answered as expected",
        cases.len()
    );

    // Nothing was stored, and the cluster serves.
    let (_, modules) = c.admin(reqwest::Method::GET, "deploy", None).await;
    assert_eq!(modules["modules"], json!([]), "{modules}");
    for kind in ["channels", "security", "outgoing", "jobs"] {
        let (_, v) = c.admin(reqwest::Method::GET, kind, None).await;
        assert_eq!(v[kind], json!([]), "{kind}: {v}");
    }
    // The objects the wrong-typed cases started from are themselves accepted (so each of
    // those 400s was the wrong type's doing).
    for (kind, base) in bases() {
        let name = base["name"].as_str().unwrap_or_default().to_owned();
        let (status, v) = c
            .admin(
                reqwest::Method::PUT,
                &format!("{kind}/{name}"),
                Some(base.to_string().into_bytes()),
            )
            .await;
        assert_eq!(status, 200, "{kind} {name}: {v}");
        let (status, _) = c
            .admin(reqwest::Method::DELETE, &format!("{kind}/{name}"), None)
            .await;
        assert_eq!(status, 200, "{kind} {name} deleted");
    }
    let (status, v) = c
        .invoke("hello.say-hello", &json!({"name": "still"}))
        .await
        .expect("invoke");
    assert_eq!(
        (status, v["greeting"].as_str()),
        (200, Some("Hello, still!"))
    );
}
