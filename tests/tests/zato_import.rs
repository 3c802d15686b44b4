//! `shoal import-zato`: a Zato 3.2 enmasse export with an item of every kind becomes a
//! shoal.yaml that `shoal apply` takes; the imported channels then answer as Zato's would
//! (status, body, security), and what cannot be mapped is reported item by item.

use std::time::Duration;

use serde_json::Value;
use shoal_tests::cluster::{Cluster, examples_dir};
use shoal_tests::eventually;

/// An export in the pre-3.2 section names (def_sec, channel_plain_http, ...), as `zato
/// enmasse --export` writes it: no passwords. Brokers point at closed ports, so nothing
/// here touches the shared RabbitMQ.
fn export_yaml(zmq_port: u16) -> String {
    format!(
        r#"
def_sec:
  - {{name: partner, type: basic_auth, username: partner, realm: Partners}}
  - {{name: partner-key, type: apikey, username: X-Partner-Key}}
  - {{name: legacy-wss, type: wss, username: acme, reject_expiry_limit: 300, nonce_freshness_time: 300}}
  - {{name: jwt-def, type: jwt, username: j, ttl: 3600}}
channel_plain_http:
  - {{name: hello-zato, service: hello.say-hello, url_path: /zato/hello, method: GET, sec_def: partner, data_format: json, cache_id: 3}}
  - {{name: hello-key, service: hello.say-hello, url_path: /zato/hello-key, sec_def: partner-key, data_format: json}}
  - {{name: hello-open, service: hello.say-hello, url_path: /zato/hello-open, sec_def: zato-no-security}}
  - {{name: jwt-guarded, service: hello.say-hello, url_path: /zato/jwt, sec_def: jwt-def}}
  - {{name: csv-in, service: hello.say-hello, url_path: /zato/csv, data_format: csv}}
channel_soap:
  - {{name: hello-soap, service: hello.say-hello, url_path: /zato/soap, soap_version: "1.1", sec_def: legacy-wss}}
outconn_plain_http:
  - {{name: billing, host: "http://127.0.0.1:1", url_path: "/billing/{{id}}", sec_def: partner, timeout: 5, pool_size: 4}}
def_amqp:
  - {{name: rabbit, host: 127.0.0.1, port: 1, vhost: /, username: guest, frame_max: 131072, heartbeat: 30}}
outconn_amqp:
  - {{name: orders-out, def_name: rabbit, delivery_mode: 2, priority: 5, content_type: application/json}}
channel_amqp:
  - {{name: orders-in, def_name: rabbit, queue: orders, service_name: hello.echo, pool_size: 2, prefetch_count: 10, ack_mode: ack}}
channel_zmq:
  - {{name: zmq-in, address: "tcp://127.0.0.1:{zmq_port}", socket_type: PULL, socket_method: bind, service_name: hello.echo}}
  - {{name: zmq-mdp, address: "tcp://127.0.0.1:1", socket_type: MDP01, service_name: hello.echo}}
outconn_zmq:
  - {{name: zmq-out, address: "tcp://127.0.0.1:1", socket_type: PUSH, socket_method: connect}}
outconn_sql:
  - {{name: crm-db, engine: postgresql+pg8000, host: 127.0.0.1, port: 5432, db_name: test, username: postgres, pool_size: 2}}
  - {{name: oracle-db, engine: oracle, host: 127.0.0.1, port: 1521, db_name: x, username: y}}
outconn_ftp:
  - {{name: partner-ftp, host: 127.0.0.1, port: 1, user: ftpuser, timeout: 10, dircache: true}}
def_wmq:
  - {{name: mq1, host: mq.example, port: 1414, queue_manager: QM1, channel: DEV.APP.SVRCONN}}
outconn_wmq:
  - {{name: mq-out, def_name: mq1, delivery_mode: 2, priority: 5}}
channel_wmq:
  - {{name: mq-in, def_name: mq1, queue: DEV.QUEUE.1, service_name: hello.echo}}
scheduler:
  - {{name: nightly, job_type: cron_style, service_name: hello.say-hello, cron_definition: "0 2 * * *", start_date: "2024-01-01 00:00:00", extra: '{{"name": "nightly"}}', is_active: false}}
  - {{name: every-hour, job_type: interval_based, service: hello.say-hello, hours: 1, start_date: "2024-01-01 00:00:00", is_active: false}}
  - {{name: once, job_type: one_time, service: hello.say-hello, start_date: "2030-01-01 00:00:00", is_active: false}}
zato_generic_connection:
  - {{name: wsx-out, type_: outconn-wsx, address: "ws://127.0.0.1:1"}}
web_socket:
  - {{name: ws-channel, service: hello.echo}}
"#
    )
}

/// The newer 3.2 section names, as JSON.
const EXPORT_32_JSON: &str = r#"{
  "security": [{"name": "rest-user", "type": "basic_auth", "username": "rest", "realm": "REST"}],
  "channel_rest": [{"name": "rest-hello", "service": "hello.say-hello", "url_path": "/zato/rest-hello",
                    "security_name": "rest-user", "data_format": "json"}],
  "outgoing_rest": [{"name": "rest-out", "host": "http://127.0.0.1:1", "url_path": "/x", "security_name": "rest-user"}]
}"#;

async fn shoal(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    c.cli_env(args, env).await
}

#[tokio::test]
async fn an_enmasse_export_imports_applies_and_answers_as_zato() {
    let c = Cluster::start(&[&examples_dir().join("hello.py")], 1, &[]).await;
    let dir = c.dir.path();
    let export = dir.join("enmasse.yaml");
    std::fs::write(&export, export_yaml(shoal_tests::free_port())).expect("write");
    let imported = dir.join("imported.yaml");
    let (code, _, err) = shoal(
        &c,
        &[
            "import-zato",
            &export.display().to_string(),
            "--out",
            &imported.display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("imported 3 security definitions, 7 channels, 8 outgoing connections, 3 jobs"),
        "{err}"
    );
    // Every item that cannot be mapped is named, with the reason.
    for needle in [
        "not imported: def_sec jwt-def: Zato's own JWT log-in",
        "not imported: channel_plain_http jwt-guarded: its security definition 'jwt-def' could not be mapped (not imported unsecured)",
        "not imported: channel_plain_http csv-in: data_format 'csv'",
        "not imported: channel_zmq zmq-mdp: socket_type MDP01",
        "not imported: outconn_sql oracle-db: engine 'oracle'",
        "not imported: zato_generic_connection wsx-out",
        "not imported: web_socket ws-channel",
        "dropped field: channel_plain_http hello-zato: cache_id",
        "ZATO_SEC_PARTNER_PASSWORD",
        "ZATO_WMQ_MQ1_AMQP_URL",
    ] {
        assert!(err.contains(needle), "{needle} in:\n{err}");
    }

    // Without the variables, applying fails naming them; with them it applies.
    let path = imported.display().to_string();
    let (code, _, err) = shoal(&c, &["apply", "-f", &path], &[]).await;
    assert_ne!(code, 0);
    assert!(err.contains("ZATO_SEC_PARTNER_PASSWORD"), "{err}");
    let env = [
        ("ZATO_SEC_PARTNER_PASSWORD", "partner-pw"),
        ("ZATO_SEC_PARTNER_KEY_KEY", "key-12345678"),
        ("ZATO_SEC_LEGACY_WSS_PASSWORD", "wss-pw"),
        ("ZATO_AMQP_RABBIT_PASSWORD", "guest"),
        ("ZATO_SQL_CRM_DB_PASSWORD", "unused"),
        ("ZATO_FTP_PARTNER_FTP_PASSWORD", "ftp-pw"),
        ("ZATO_WMQ_MQ1_AMQP_URL", "amqp://127.0.0.1:1"),
    ];
    let (code, out, err) = shoal(&c, &["apply", "-f", &path], &env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created:"), "{out}");

    // The channels answer as Zato's: Basic Auth and an API key guard them (401 without).
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", c.http_url);
    let v: Value = eventually(Duration::from_secs(20), "the imported channel", || async {
        let r = http
            .get(url("/zato/hello?name=Zato"))
            .basic_auth("partner", Some("partner-pw"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(v["greeting"], "Hello, Zato!");
    let r = http.get(url("/zato/hello")).send().await.expect("call");
    assert_eq!(r.status(), 401);
    let r = http
        .get(url("/zato/hello"))
        .basic_auth("partner", Some("wrong"))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 401);
    let r = http
        .post(url("/zato/hello-key"))
        .header("X-Partner-Key", "key-12345678")
        .json(&serde_json::json!({"name": "Key"}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let r = http
        .post(url("/zato/hello-key"))
        .header("X-Partner-Key", "nope")
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 401);
    let r = http
        .get(url("/zato/hello-open?name=Open"))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    // What was not imported is not served (no unsecured stand-in).
    let r = http.get(url("/zato/jwt")).send().await.expect("call");
    assert_eq!(r.status(), 404);

    // Every kind arrived: queue channels, each outgoing type, jobs with Zato's cron.
    let (code, out, err) = shoal(&c, &["export"], &[]).await;
    assert_eq!(code, 0, "{err}");
    let doc: serde_yaml::Value = serde_yaml::from_str(&out).expect("export YAML");
    let types = |section: &str| -> Vec<String> {
        doc[section]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{}:{}",
                    i["name"].as_str().unwrap_or(""),
                    i["type"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let channels = types("channels");
    for want in [
        "orders-in:amqp",
        "zmq-in:zmq",
        "mq-in:ibm_mq",
        "hello-soap:soap",
        "hello-zato:http",
    ] {
        assert!(
            channels.contains(&want.to_owned()),
            "{want} in {channels:?}"
        );
    }
    let outgoing = types("outgoing");
    for want in [
        "billing:http",
        "rabbit:amqp",
        "orders-out:amqp",
        "zmq-out:zmq",
        "crm-db:sql",
        "partner-ftp:ftp",
        "mq1:ibm_mq",
        "mq-out:ibm_mq",
    ] {
        assert!(
            outgoing.contains(&want.to_owned()),
            "{want} in {outgoing:?}"
        );
    }
    assert!(out.contains("cron_definition: 0 2 * * *"), "{out}");
    assert!(!out.contains("partner-pw"), "no secret in the export");

    // The 3.2 names (security, channel_rest, outgoing_rest), as JSON, applied directly.
    let json_export = dir.join("enmasse-3.2.json");
    std::fs::write(&json_export, EXPORT_32_JSON).expect("write");
    let (code, out, err) = shoal(
        &c,
        &["import-zato", &json_export.display().to_string(), "--apply"],
        &[("ZATO_SEC_REST_USER_PASSWORD", "rest-pw")],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let r = eventually(Duration::from_secs(20), "the REST channel", || async {
        let r = http
            .get(url("/zato/rest-hello?name=Rest"))
            .basic_auth("rest", Some("rest-pw"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(r)
    })
    .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["greeting"], "Hello, Rest!");
}
