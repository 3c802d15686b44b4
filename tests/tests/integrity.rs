//! Nothing altered in transit (issue #24): numbers of any size and decimals of any length
//! keep their exact value through every way in — a JSON channel, the admin API's invoke,
//! SOAP, an AMQP channel — and back out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use shoal_tests::cluster::Cluster;
use shoal_tests::eventually;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The four big-number cases of the finding, and a 40-digit decimal.
const CASES: &[&str] = &[
    "18446744073709551617",
    "100000000000000000000000",
    "-9223372036854775809",
    "36893488147419103234",
    "1.2345678901234567890123456789012345678901",
];

/// Twice each integer case, computed exactly.
fn doubled(v: &str) -> String {
    // Decimal doubling of a string of digits (with a sign).
    let (neg, digits) = v.strip_prefix('-').map_or((false, v), |d| (true, d));
    let mut out = Vec::new();
    let mut carry = 0;
    for c in digits.bytes().rev() {
        let d = (c - b'0') * 2 + carry;
        out.push(b'0' + d % 10);
        carry = d / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    let s = String::from_utf8(out).expect("digits");
    if neg { format!("-{s}") } else { s }
}

fn config(queue: &str) -> String {
    format!(
        r#"
outgoing:
  - {{name: rabbit, type: amqp, url: "{rabbit}"}}
channels:
  - {{name: num-echo, type: http, service: num.echo, url_path: /num/echo}}
  - {{name: num-double, type: http, service: num.double, url_path: /num/double}}
  - {{name: num-decimal, type: http, service: num.decimal, url_path: /num/decimal}}
  - {{name: num-float, type: http, service: num.float, url_path: /num/float}}
  - {{name: num-soap, type: soap, service: num.double, url_path: /soap/num}}
  - {{name: num-soap-dec, type: soap, service: num.decimal, url_path: /soap/dec}}
  - {{name: num-amqp, type: amqp, service: num.record, definition: rabbit, queue: "{queue}"}}
"#,
        rabbit = shoal_tests::servers::RABBITMQ
    )
}

#[tokio::test]
async fn numbers_keep_their_exact_value_everywhere() {
    let queue = format!("num-{}", std::process::id());
    let c = Cluster::start_with(&[&fixture("numbers.py")], 1, &[], Some(&config(&queue))).await;
    c.wait_for_channel("/num/echo").await;
    let http = reqwest::Client::new();
    let post = |url: String, body: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };

    let admin_invoke = |service: &str, body: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/services/{service}/invoke", c.admin_url);
        let password = c.password.clone();
        async move {
            let r = http
                .post(url)
                .basic_auth("admin", Some(password))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("admin invoke");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };

    // An echo through a JSON channel and through the admin API's invoke: every digit back.
    for case in CASES {
        let body = format!(r#"{{"v":{case}}}"#);
        let (status, text) = post(format!("{}/num/echo", c.http_url), body.clone()).await;
        assert_eq!(
            (status, text.as_str()),
            (200, body.as_str()),
            "channel echo of {case}"
        );
        let (status, text) = admin_invoke("num.echo", body.clone()).await;
        assert_eq!(
            (status, text.as_str()),
            (200, body.as_str()),
            "admin echo of {case}"
        );
    }
    // -0 and a decimal of exactly representable value keep theirs too.
    let (_, text) = post(
        format!("{}/num/echo", c.http_url),
        r#"[-0,-0.0,0.1,1.50,1e400]"#.into(),
    )
    .await;
    assert_eq!(text, "[-0.0,-0.0,0.1,1.5,1e400]");

    // SimpleIO Int: bar.double computes exactly (the finding's 2^64+1 case, and the rest).
    for case in &CASES[..4] {
        let (status, text) = post(
            format!("{}/num/double", c.http_url),
            format!(r#"{{"v":{case}}}"#),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            text,
            format!(r#"{{"v":{}}}"#, doubled(case)),
            "double of {case}"
        );
    }
    // An Int given a fraction, or a Float given more digits than it holds: a 400 naming
    // the element, never a rounded value.
    let (status, text) = post(format!("{}/num/double", c.http_url), r#"{"v":1.5}"#.into()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"element\":\"v\""), "{text}");
    let (status, text) = post(
        format!("{}/num/float", c.http_url),
        format!(r#"{{"f":{}}}"#, CASES[4]),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("\"element\":\"f\"") && text.contains("Decimal"),
        "{text}"
    );
    let (status, text) = post(format!("{}/num/float", c.http_url), r#"{"f":0.1}"#.into()).await;
    assert_eq!((status, text.as_str()), (200, r#"{"f":0.1}"#));

    // SimpleIO Decimal: the 40 digits, exactly, and arithmetic on them.
    let (status, text) = post(
        format!("{}/num/decimal", c.http_url),
        format!(r#"{{"d":{}}}"#, CASES[4]),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        r#"{"d":"1.2345678901234567890123456789012345678901","plus_one":"2.2345678901234567890123456789012345678901"}"#
    );

    // SOAP: the request's text to an Int, the doubled value in the response, exactly.
    let soap = |path: &str, body: String| {
        let http = http.clone();
        let url = format!("{}{path}", c.http_url);
        async move {
            let env = format!(
                r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}</s:Body></s:Envelope>"#
            );
            let r = http
                .post(url)
                .header("content-type", "text/xml")
                .body(env)
                .send()
                .await
                .expect("soap");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };
    for case in &CASES[..4] {
        let (status, text) = soap("/soap/num", format!("<req><v>{case}</v></req>")).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains(&format!("<v>{}</v>", doubled(case))),
            "SOAP double of {case}: {text}"
        );
    }
    let (status, text) = soap("/soap/dec", format!("<req><d>{}</d></req>", CASES[4])).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("<d>1.2345678901234567890123456789012345678901</d>")
            && text.contains("<plus_one>2.2345678901234567890123456789012345678901</plus_one>"),
        "{text}"
    );

    // An AMQP channel: the message's numbers reach the service exactly (it writes back
    // what it got).
    let conn = Connection::connect(
        shoal_tests::servers::rabbitmq(),
        ConnectionProperties::default(),
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
    let values = CASES.join(",");
    let body = format!(r#"{{"tag":"amqp","values":[{values}]}}"#);
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let got = eventually(
        Duration::from_secs(30),
        "the AMQP message recorded",
        || async {
            let (_, text) = admin_invoke("num.recorded", r#"{"tag":"amqp"}"#.into()).await;
            (!text.is_empty() && text != "\"\"").then_some(text)
        },
    )
    .await;
    assert_eq!(
        got, body,
        "the AMQP channel's payload, as the service saw it"
    );
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
}

/// Every kind of object and every kind of secret (issue #24's round trip).
fn every_kind(zmq_port: u16) -> String {
    format!(
        r#"
security:
  - {{name: rt-basic, type: basic_auth, username: partner, password: "rt-basic-pw-1"}}
  - {{name: rt-key, type: apikey, header: X-API-Key, key: "rt-key-0123456789"}}
  - {{name: rt-wss-text, type: wss, username: acme, password: "rt-wss-pw-1"}}
  - {{name: rt-wss-digest, type: wss, username: acme, password: "rt-wss-pw-2", password_type: digest}}
outgoing:
  - {{name: rt-http-basic, type: http, address: "http://127.0.0.1:9", url_path: /x,
     security: {{type: basic_auth, username: u, password: "rt-out-pw-1"}}}}
  - {{name: rt-http-key, type: http, address: "http://127.0.0.1:9",
     security: {{type: apikey, header: X-Key, key: "rt-out-key-1"}}}}
  - {{name: rt-soap, type: soap, address: "http://127.0.0.1:9", url_path: /soap,
     security: {{type: wss, username: u, password: "rt-out-pw-2", password_type: digest}}}}
  - {{name: rt-amqp, type: amqp, url: "amqp://guest:guest@127.0.0.1:5672/%2f"}}
  - {{name: rt-amqp-pub, type: amqp, definition: rt-amqp, routing_key: rt}}
  - {{name: rt-sql, type: sql, url: "postgres://postgres:rt-sql-pw@127.0.0.1:5432/test", pool_size: 2}}
  - {{name: rt-ftp, type: ftp, host: 127.0.0.1, port: 9, username: u, password: "rt-ftp-pw"}}
  - {{name: rt-mq, type: ibm_mq, url: "amqp://guest:guest@127.0.0.1:5672"}}
  - {{name: rt-zmq, type: zmq, socket_type: PUSH, socket_method: connect, address: "tcp://127.0.0.1:9"}}
channels:
  - {{name: rt-http, type: http, service: num.echo, url_path: /rt/basic, method: POST, security: rt-basic}}
  - {{name: rt-http-key, type: http, service: num.echo, url_path: /rt/key, security: rt-key, data_format: xml, max_body: 4096}}
  - {{name: rt-soap, type: soap, service: num.echo, url_path: /rt/soap, security: rt-wss-text, soap_version: "1.2", namespace: "urn:rt"}}
  - {{name: rt-soap-digest, type: soap, service: num.echo, url_path: /rt/soap-d, security: rt-wss-digest}}
  - {{name: rt-zato, type: invoke, wire: zato, url_path: /rt/zato, security: rt-basic}}
  - {{name: rt-api, type: invoke, wire: json, url_path: "/rt/api/{{service}}"}}
  - {{name: rt-amqp-in, type: amqp, service: num.record, definition: rt-amqp, queue: rt-roundtrip, is_active: false}}
  - {{name: rt-zmq-in, type: zmq, service: num.record, socket_type: PULL, address: "tcp://127.0.0.1:{zmq_port}"}}
  - {{name: rt-mq-in, type: ibm_mq, service: num.record, definition: rt-mq, queue: rt-mq, is_active: false}}
jobs:
  - {{name: rt-once, type: one_time, service: num.echo, start_date: "2099-01-01T00:00:00Z"}}
  - {{name: rt-every, type: interval, service: num.echo, hours: 12, extra: {{v: 12, big: "18446744073709551617"}}}}
  - {{name: rt-cron, type: cron, service: num.echo, cron: "0 0 2 * * *", timezone: Europe/Warsaw, is_active: false}}
  - {{name: rt-zato-cron, type: cron_style, service: num.echo, cron_definition: "0 3 * * *"}}
"#
    )
}

/// What the store holds under the config prefixes (to compare before and after).
async fn stored(c: &Cluster) -> Vec<(String, Vec<u8>)> {
    let store = shoal_common::store::Store::connect(&c.store_options("gateway"))
        .await
        .expect("store");
    let mut all = Vec::new();
    for prefix in ["security/", "outgoing/", "channels/", "jobs/"] {
        let (entries, _) = store.list(prefix).await.expect("list");
        all.extend(entries.into_iter().map(|e| (e.key, e.value)));
    }
    all.sort();
    all
}

fn changed(report: &serde_json::Value) -> Vec<String> {
    ["created", "updated", "deleted"]
        .iter()
        .flat_map(|k| report[*k].as_array().cloned().unwrap_or_default())
        .map(|v| v.to_string())
        .collect()
}

#[tokio::test]
async fn export_and_read_back_apply_again_unchanged() {
    let c = Cluster::start_with(
        &[&fixture("numbers.py")],
        1,
        &[],
        Some(&every_kind(shoal_tests::free_port())),
    )
    .await;
    c.wait_for_channel("/rt/api/num.echo").await;
    let before = stored(&c).await;
    assert_eq!(before.len(), 26, "every object stored");

    // `shoal export > f; shoal apply -f f` changes nothing (YAML and JSON output).
    for format in ["yaml", "json"] {
        let (code, out, err) = c.cli(&["export", "-o", format]).await;
        assert_eq!(code, 0, "{err}");
        assert!(
            !out.contains("rt-basic-pw-1") && !out.contains("rt-sql-pw"),
            "{out}"
        );
        let file = c.dir.path().join(format!("export.{format}"));
        std::fs::write(&file, &out).expect("write export");
        let (code, out, err) = c.cli(&["apply", "-f", &file.display().to_string()]).await;
        assert_eq!(code, 0, "apply of the {format} export: {out}{err}");
        assert_eq!(
            stored(&c).await,
            before,
            "apply of the {format} export changed something"
        );
    }

    // The admin API: the export applied again, and every object's read-back PUT back.
    let (status, export) = c.admin(reqwest::Method::GET, "export", None).await;
    assert_eq!(status, 200);
    let (status, report) = c
        .admin(
            reqwest::Method::POST,
            "apply",
            Some(serde_json::to_vec(&export).expect("json")),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert!(changed(&report).is_empty(), "{report}");
    for kind in ["security", "outgoing", "channels", "jobs"] {
        let (status, list) = c.admin(reqwest::Method::GET, kind, None).await;
        assert_eq!(status, 200);
        for item in list[kind].as_array().expect("list") {
            let name = item["name"].as_str().expect("name");
            let (status, one) = c
                .admin(reqwest::Method::GET, &format!("{kind}/{name}"), None)
                .await;
            assert_eq!(status, 200, "{kind}/{name}");
            let (status, answer) = c
                .admin(
                    reqwest::Method::PUT,
                    &format!("{kind}/{name}"),
                    Some(serde_json::to_vec(&one).expect("json")),
                )
                .await;
            assert_eq!(status, 200, "PUT back {kind}/{name}: {answer}");
            assert_eq!(answer["result"], "unchanged", "{kind}/{name}: {answer}");
        }
    }
    // A secret left out of a definition also keeps the stored one; with nothing stored
    // to keep, it is refused, naming why.
    let (status, answer) = c
        .admin(
            reqwest::Method::PUT,
            "security/rt-key",
            Some(br#"{"name":"rt-key","type":"apikey","header":"X-API-Key"}"#.to_vec()),
        )
        .await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("unchanged")),
        "{answer}"
    );
    let (status, answer) = c
        .admin(
            reqwest::Method::PUT,
            "security/rt-new",
            Some(br#"{"name":"rt-new","type":"apikey","header":"X-API-Key","key":"***"}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("no stored one"), "{answer}");
    assert_eq!(stored(&c).await, before);

    // The secrets still admit the callers they admitted.
    let r = reqwest::Client::new()
        .post(format!("{}/rt/basic", c.http_url))
        .basic_auth("partner", Some("rt-basic-pw-1"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
}

/// Issue #24: a package upgrade replaces the executor binary under a running cluster; the
/// next deploy (validated in a process started from the executor's own binary) succeeds.
#[tokio::test]
async fn deploys_survive_the_executor_binary_replaced_on_disk() {
    let bins = tempfile::tempdir().expect("bin dir");
    for entry in std::fs::read_dir(shoal_tests::bin_dir()).expect("bin dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && (name == "shoal" || name.starts_with("shoal-")) && !name.contains('.')
        {
            std::fs::copy(&path, bins.path().join(name)).expect("copy binary");
        }
    }
    let c = Cluster::start_binaries(bins.path(), &[&fixture("numbers.py")], 1, None).await;
    let exe = bins.path().join("shoal-executor");
    // What a package manager does: the new file written beside, renamed over the old one
    // (the running executor's image is now a deleted inode).
    let staged = bins.path().join(".shoal-executor.new");
    std::fs::copy(shoal_tests::bin("shoal-executor"), &staged).expect("stage");
    std::fs::rename(&staged, &exe).expect("replace");
    let deploy = |name: &str, body: &str| {
        let doc = serde_json::json!({"files": [{"name": name, "source": body}]});
        c.admin(
            reqwest::Method::POST,
            "deploy",
            Some(serde_json::to_vec(&doc).expect("json")),
        )
    };
    let module = "from shoal import Service\n\nclass After(Service):\n    name = 'upgrade.after'\n\n    def handle(self):\n        self.response.payload = {'ok': True}\n";
    let (status, answer) = deploy("upgrade_after.py", module).await;
    assert_eq!(
        status, 200,
        "deploy after the binary was replaced: {answer}"
    );
    let v = eventually(Duration::from_secs(20), "the deployed service", || async {
        let (status, v) = c
            .invoke("upgrade.after", &serde_json::json!({}))
            .await
            .ok()?;
        (status == 200).then_some(v)
    })
    .await;
    assert_eq!(v["ok"], true);
    // And with the file gone altogether.
    std::fs::remove_file(&exe).expect("remove");
    let (status, answer) = deploy(
        "upgrade_gone.py",
        &module.replace("upgrade.after", "upgrade.gone"),
    )
    .await;
    assert_eq!(status, 200, "deploy with the binary deleted: {answer}");
}

/// HTTP/2 requests on `conns` connections of `streams` streams each, until `stop`: every
/// status counted (the body read whole).
async fn h2_load(
    addr: &str,
    path: &str,
    body: &'static str,
    conns: usize,
    streams: usize,
    stop: tokio_util::sync::CancellationToken,
) -> std::collections::BTreeMap<u16, u64> {
    use http_body_util::{BodyExt, Full};
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(64 << 20)
                .handshake::<_, Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        for _ in 0..streams {
            let mut sender = sender.clone();
            let stop = stop.clone();
            let uri = format!("http://{addr}{path}");
            tasks.push(tokio::spawn(async move {
                let mut counts = std::collections::BTreeMap::<u16, u64>::new();
                while !stop.is_cancelled() {
                    let req = http::Request::post(&uri)
                        .header("content-type", "application/json")
                        .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                        .expect("request");
                    let status = match sender.send_request(req).await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            match resp.into_body().collect().await {
                                Ok(_) => status,
                                Err(_) => 1,
                            }
                        }
                        Err(_) => 0,
                    };
                    *counts.entry(status).or_default() += 1;
                }
                counts
            }));
        }
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("load task") {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

/// Issue #24: an executor saturated with large answers for 60 s — far longer than its
/// 3 s member lease — stays a member: no lease lost, no call failed with 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_executor_keeps_its_membership() {
    let config = "channels:\n  - {name: big, type: http, service: big.reply, url_path: /big}\n";
    let c = Cluster::start_with(&[&fixture("big.py")], 1, &[], Some(config)).await;
    eventually(Duration::from_secs(30), "the channel", || async {
        let r = reqwest::Client::new()
            .post(format!("{}/big", c.http_url))
            .body(r#"{"size": 1}"#)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let store = shoal_common::store::Store::connect(&c.store_options("gateway"))
        .await
        .expect("store");
    let watching = tokio_util::sync::CancellationToken::new();
    let mut events = store.watch_prefix("members/executor/", watching.clone());
    let first = events.recv().await.expect("the executors");
    assert!(
        matches!(first, shoal_common::store::WatchEvent::Reset { ref entries, .. } if entries.len() == 1)
    );
    let lost = tokio::spawn(async move {
        let mut lost = Vec::new();
        while let Some(ev) = events.recv().await {
            if let shoal_common::store::WatchEvent::Delete { key, .. } = ev {
                lost.push(key);
            }
        }
        lost
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let load = tokio::spawn(h2_load(
        Box::leak(addr.into_boxed_str()),
        "/big",
        r#"{"size": 1000000}"#,
        4,
        128,
        stop.clone(),
    ));
    shoal_tests::window(Duration::from_secs(60), "the executor saturated").await;
    stop.cancel();
    let counts = load.await.expect("load");
    watching.cancel();
    let lost = lost.await.expect("watch");
    // Overloaded on purpose (512 calls outstanding, each answer 1 MB): a call may reach
    // its 30 s deadline (504); none may fail because its executor was taken for dead.
    let served = counts.get(&200).copied().unwrap_or(0);
    let all: u64 = counts.values().sum();
    assert!(lost.is_empty(), "member records lost under load: {lost:?}");
    assert!(
        counts.keys().all(|s| *s == 200 || *s == 504),
        "every call answered 200, or 504 past its deadline (no 502 'left the cluster'): {counts:?}"
    );
    assert!(served * 100 >= all * 95, "{counts:?}");
}

/// Issue #24: HTTP/2 clients that open streams of large answers and never read them
/// (a receive window of zero) hold a bounded amount of the gateway's memory, other
/// clients are served meanwhile, and the non-readers' connections are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_never_read_hold_bounded_memory() {
    use http_body_util::Full;
    let config = "channels:\n  - {name: big, type: http, service: big.reply, url_path: /big}\n";
    let c = Cluster::start_env(
        &[&fixture("big.py")],
        1,
        &[],
        Some(config),
        &[("SHOAL_ANSWER_STALL_TIMEOUT_SECS", "5")],
    )
    .await;
    let ask = |size: u32| {
        let url = format!("{}/big", c.http_url);
        async move {
            reqwest::Client::new()
                .post(url)
                .body(format!(r#"{{"size": {size}}}"#))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    eventually(Duration::from_secs(30), "the channel", || async {
        (ask(1).await == 200).then_some(())
    })
    .await;
    let gateway = c.cluster_json().await.expect("cluster")["members"]["gateway"][0]["pid"]
        .as_u64()
        .expect("gateway pid");
    // Warm up with answers that are read (the allocator's pools and buffers).
    for _ in 0..20 {
        assert_eq!(ask(1_000_000).await, 200);
    }
    // The gateway's peak memory while the attack lasts.
    let sampled = shoal_tests::PeakRss::start(gateway);

    // The attack: 4 connections, 100 streams each, answers of 1 MB, a window of zero.
    let addr = c.http_url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    let mut conns = Vec::new();
    let mut senders = Vec::new();
    let statuses = std::sync::Arc::new(counts::Counts::default());
    for _ in 0..4 {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(0)
                .handshake::<_, Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        conns.push(tokio::spawn(conn));
        // A sender kept for the whole attack: the client never closes the connection.
        senders.push(sender.clone());
        for _ in 0..100 {
            let mut sender = sender.clone();
            let uri = format!("http://{addr}/big");
            let statuses = statuses.clone();
            held.push(tokio::spawn(async move {
                let req = http::Request::post(&uri)
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from_static(
                        br#"{"size": 1000000}"#,
                    )))
                    .ok()?;
                let sent = match sender.ready().await {
                    Ok(()) => sender.send_request(req).await.ok(),
                    Err(_) => None,
                };
                // 0: the connection was closed (its answers stalled) before this one came.
                statuses.add(sent.as_ref().map_or(0, |r| r.status().as_u16()));
                // Never read the body; hold the stream open.
                sent
            }));
        }
    }
    eventually(
        Duration::from_secs(60),
        "every stream answered (headers)",
        || async { (statuses.total() >= 400).then_some(()) },
    )
    .await;
    // Meanwhile, a client that reads is served.
    for _ in 0..10 {
        assert_eq!(ask(1_000).await, 200);
    }
    let grew = sampled.grew();
    eprintln!(
        "gateway RSS before {} MB, at most {} MB during the attack; answers (200, 503, other) {:?}",
        sampled.before() >> 20,
        sampled.peak() >> 20,
        statuses.snapshot()
    );
    drop(sampled);
    assert!(
        grew <= 64 << 20,
        "the gateway grew by {} MB holding unread answers (budget: 64 MB)",
        grew >> 20
    );
    // The non-readers are closed once their answers stall past the timeout (5 s here).
    eventually(
        Duration::from_secs(30),
        "the stalled connections closed",
        || async { conns.iter().all(|c| c.is_finished()).then_some(()) },
    )
    .await;
    drop(held);
    // Every stalled connection counted, and every byte they held given back.
    let metric = |text: &str, name: &str| {
        shoal_tests::sample(text, &format!("{name}{{listener=\"http\"}}")).map(|v| v as u64)
    };
    eventually(Duration::from_secs(20), "the budget given back", || async {
        let text = shoal_tests::metrics_text(&c.gateway_ops).await?;
        let stalled = metric(&text, "shoal_http_connections_stalled_total")?;
        let held = metric(&text, "shoal_http_answer_bytes_held")?;
        (stalled == 4 && held == 0).then_some(())
    })
    .await;
}

/// Status counts shared between tasks (no lock needed for a handful of codes).
mod counts {
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    pub struct Counts {
        ok: AtomicU64,
        unavailable: AtomicU64,
        other: AtomicU64,
    }

    impl Counts {
        pub fn add(&self, status: u16) {
            match status {
                200 => &self.ok,
                503 => &self.unavailable,
                _ => &self.other,
            }
            .fetch_add(1, Ordering::Relaxed);
        }

        pub fn total(&self) -> u64 {
            self.ok.load(Ordering::Relaxed)
                + self.unavailable.load(Ordering::Relaxed)
                + self.other.load(Ordering::Relaxed)
        }

        pub fn snapshot(&self) -> (u64, u64, u64) {
            (
                self.ok.load(Ordering::Relaxed),
                self.unavailable.load(Ordering::Relaxed),
                self.other.load(Ordering::Relaxed),
            )
        }
    }
}
