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
        if path.is_file() && (name == "shoal" || name.starts_with("shoal-")) && !name.contains('.') {
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
    assert_eq!(status, 200, "deploy after the binary was replaced: {answer}");
    let v = eventually(Duration::from_secs(20), "the deployed service", || async {
        let (status, v) = c.invoke("upgrade.after", &serde_json::json!({})).await.ok()?;
        (status == 200).then_some(v)
    })
    .await;
    assert_eq!(v["ok"], true);
    // And with the file gone altogether.
    std::fs::remove_file(&exe).expect("remove");
    let (status, answer) = deploy("upgrade_gone.py", &module.replace("upgrade.after", "upgrade.gone")).await;
    assert_eq!(status, 200, "deploy with the binary deleted: {answer}");
}
