//! Outgoing connections and queue channels end to end, against real servers only:
//! PostgreSQL, MariaDB and SQLite; HTTP and SOAP (the cluster's own gateway as the
//! peer); RabbitMQ (AMQP 0-9-1, and its AMQP 1.0 plugin standing in for IBM MQ); libzmq
//! sockets (pyzmq); an FTP/FTPS server (pyftpdlib).
//!
//! Tests that talk to RabbitMQ run one at a time (nextest group `rabbitmq`): the drill
//! restarts the broker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use shoal_tests::cluster::Cluster;
use shoal_tests::servers::{BrokerRestart, Forwarder, Ftp};

const RABBIT: &str = shoal_tests::servers::RABBITMQ;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn call(c: &Cluster, service: &str, payload: Value) -> Value {
    let (status, v) = c.invoke(service, &payload).await.expect("invoke");
    assert_eq!(status, 200, "{service}: {v}");
    v
}

async fn rabbit() -> (Connection, lapin::Channel) {
    let conn = Connection::connect(
        shoal_tests::servers::rabbitmq(),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

async fn declare(ch: &lapin::Channel, queue: &str) {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .expect("declare queue");
}

async fn delete(ch: &lapin::Channel, queue: &str) {
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_on_postgres_mariadb_and_sqlite() {
    shoal_tests::servers::postgres();
    shoal_tests::servers::mariadb();
    let dir = tempfile::tempdir().expect("tempdir");
    let lite = dir.path().join("lite.db");
    let config = format!(
        r#"
outgoing:
  - {{name: pg, type: sql, url: "postgres://postgres@127.0.0.1:5432/test", pool_size: 4}}
  - {{name: maria, type: sql, url: "mysql://root@127.0.0.1:3306/test"}}
  - {{name: lite, type: sql, url: "sqlite://{}"}}
"#,
        lite.display()
    );
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(&config)).await;
    let table = unique("t").replace('-', "_");

    // PostgreSQL: typed values both ways; strings bound to the column's type.
    let v = call(&c, "conn.sql", json!({
        "conn": "pg",
        "setup": [format!("create table {table} (id int primary key, name text, price numeric(10,2), at timestamptz, ok bool, doc jsonb, f float8, day date)")],
        "insert": format!("insert into {table} values (:id, :name, :price, :at, :ok, :doc, :f, :day)"),
        "rows": [
            {"id": 1, "name": "a'; drop table x; --", "price": "12.50", "at": "2024-01-02T03:04:05Z", "ok": true, "doc": {"k": [1, 2]}, "f": 1.5, "day": "2024-02-29"},
            {"id": 2, "name": null, "price": 3, "at": null, "ok": false, "doc": null, "f": null, "day": null}
        ],
        "select": format!("select * from {table} where id >= :min order by id"),
        "params": {"min": 1}
    })).await;
    assert_eq!(
        v["rows"][0],
        json!({"id": 1, "name": "a'; drop table x; --", "price": "12.50", "at": "2024-01-02T03:04:05+00:00",
               "ok": true, "doc": {"k": [1, 2]}, "f": 1.5, "day": "2024-02-29"}),
        "{v}"
    );
    assert_eq!(v["rows"][1]["price"], "3.00");
    assert_eq!(v["rows"][1]["name"], Value::Null);
    assert_eq!(v["columns"][0], "id");

    // A session that is closed without commit rolls back.
    let v = call(&c, "conn.sql-rollback", json!({
        "conn": "pg", "insert": format!("insert into {table} (id) values (:id)"), "row": {"id": 9},
        "count": format!("select count(*) from {table}")
    }))
    .await;
    assert_eq!(v, json!({"inside": 3, "after": 2}));

    // Errors reach Python as clear exceptions.
    for (sql, params, kind, needle) in [
        (
            "select * from no_such_table",
            json!({}),
            "RemoteError",
            "no_such_table",
        ),
        ("select :a::int", json!({}), "OutgoingBadRequest", ":a"),
        (
            &*format!("insert into {table} (id) values (:id)"),
            json!({"id": "abc"}),
            "OutgoingBadRequest",
            "integer",
        ),
        (
            &*format!("insert into {table} (id) values (:id)"),
            json!({"id": 1}),
            "RemoteError",
            "duplicate key",
        ),
    ] {
        let v = call(
            &c,
            "conn.sql-error",
            json!({"conn": "pg", "sql": sql, "params": params}),
        )
        .await;
        assert_eq!(v["error"], kind, "{sql}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(needle),
            "{sql}: {v}"
        );
    }
    let v = call(
        &c,
        "conn.sql-error",
        json!({"conn": "nope", "sql": "select 1"}),
    )
    .await;
    assert_eq!(v["error"], "ConnectionNotConfigured", "{v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("'nope'"),
        "{v}"
    );
    let _ = call(
        &c,
        "conn.sql-error",
        json!({"conn": "pg", "sql": format!("drop table {table}")}),
    )
    .await;

    // MariaDB.
    let v = call(&c, "conn.sql", json!({
        "conn": "maria",
        "setup": [format!("create table {table} (id int primary key, name varchar(40), price decimal(10,2), at datetime, ok boolean, doc json, f double)")],
        "insert": format!("insert into {table} values (:id, :name, :price, :at, :ok, :doc, :f)"),
        "rows": [
            {"id": 1, "name": "a", "price": "12.50", "at": "2024-01-02 03:04:05", "ok": true, "doc": "{\"k\": [1, 2]}", "f": 1.5},
            {"id": 2, "name": null, "price": 3, "at": null, "ok": false, "doc": null, "f": null}
        ],
        "select": format!("select * from {table} where id >= :min order by id"),
        "params": {"min": 1}
    })).await;
    assert_eq!(
        v["rows"][0],
        json!({"id": 1, "name": "a", "price": "12.50", "at": "2024-01-02T03:04:05", "ok": true,
               "doc": "{\"k\": [1, 2]}", "f": 1.5}),
        "{v}"
    );
    assert_eq!(
        v["rows"][1],
        json!({"id": 2, "name": null, "price": "3.00", "at": null, "ok": false, "doc": null, "f": null})
    );
    let _ = call(
        &c,
        "conn.sql-error",
        json!({"conn": "maria", "sql": format!("drop table {table}")}),
    )
    .await;

    // SQLite.
    let v = call(&c, "conn.sql", json!({
        "conn": "lite",
        "setup": [format!("create table {table} (id integer primary key, name text, price real, ok boolean)")],
        "insert": format!("insert into {table} values (:id, :name, :price, :ok)"),
        "rows": [{"id": 1, "name": "a", "price": 12.5, "ok": true}, {"id": 2, "name": null, "price": 3, "ok": false}],
        "select": format!("select * from {table} where id >= :min order by id"),
        "params": {"min": 1}
    })).await;
    assert_eq!(
        v["rows"],
        json!([{"id": 1, "name": "a", "price": 12.5, "ok": true}, {"id": 2, "name": null, "price": 3.0, "ok": false}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sql_session_is_rolled_back() {
    let config = "outgoing:\n  - {name: pg, type: sql, url: \"postgres://postgres@127.0.0.1:5432/test\", session_timeout: 1}\n";
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(config)).await;
    let table = unique("idle").replace('-', "_");
    let v = call(
        &c,
        "conn.sql-error",
        json!({"conn": "pg", "sql": format!("create table {table} (id int)")}),
    )
    .await;
    assert_eq!(v["error"], Value::Null, "{v}");
    let v = call(
        &c,
        "conn.sql-idle",
        json!({
            "conn": "pg", "insert": format!("insert into {table} values (:id)"), "row": {"id": 1},
            "idle": 2.5, "count": format!("select count(*) from {table}")
        }),
    )
    .await;
    assert!(
        v["outcome"]
            .as_str()
            .unwrap_or_default()
            .starts_with("OutgoingBadRequest: the SQL session is closed"),
        "{v}"
    );
    assert_eq!(v["after"], 0, "the abandoned insert was rolled back: {v}");
    let _ = call(
        &c,
        "conn.sql-error",
        json!({"conn": "pg", "sql": format!("drop table {table}")}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_connection_does_not_drop_calls_in_flight() {
    let config = "outgoing:\n  - {name: pg, type: sql, url: \"postgres://postgres@127.0.0.1:5432/test\", pool_size: 2}\n";
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(config)).await;
    let slow = json!({"conn": "pg", "sql": "select pg_sleep(2)"});
    // Warm the pool, then start a 2 s query and change the connection while it runs.
    assert_eq!(
        call(
            &c,
            "conn.sql-error",
            json!({"conn": "pg", "sql": "select 1"})
        )
        .await["error"],
        Value::Null
    );
    let in_flight = {
        let (admin, password) = (c.admin_url.clone(), c.password.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{admin}/api/v1/services/conn.sql-error/invoke"))
                .basic_auth("admin", Some(password))
                .json(&slow)
                .send()
                .await
                .expect("invoke")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    // The slow query is running (PostgreSQL says so; the probe divides by zero until then).
    let running = json!({"conn": "pg", "sql": "select 1 / (select count(*) from pg_stat_activity where query = 'select pg_sleep(2)' and state = 'active')::int"});
    shoal_tests::eventually(Duration::from_secs(10), "the 2 s query to run", || {
        let (c, running) = (&c, running.clone());
        async move { (call(c, "conn.sql-error", running).await["error"] == Value::Null).then_some(()) }
    })
    .await;
    let changed = json!({"name": "pg", "type": "sql", "url": "postgres://postgres@127.0.0.1:5432/test", "pool_size": 3});
    let (s, v) = c
        .admin(
            reqwest::Method::PUT,
            "outgoing/pg",
            Some(changed.to_string().into_bytes()),
        )
        .await;
    assert_eq!((s, &v["result"]), (200, &json!("updated")), "{v}");
    // New calls use the new pool at once; the running one finishes on the old pool.
    assert_eq!(
        call(
            &c,
            "conn.sql-error",
            json!({"conn": "pg", "sql": "select 1"})
        )
        .await["error"],
        Value::Null
    );
    let v = in_flight.await.expect("in-flight call");
    assert_eq!(
        v["error"],
        Value::Null,
        "the call in flight survived the change: {v}"
    );
    // Deleting it: the next call is told so.
    let (s, _) = c.admin(reqwest::Method::DELETE, "outgoing/pg", None).await;
    assert_eq!(s, 200);
    shoal_tests::eventually(Duration::from_secs(5), "the deletion to apply", || async {
        let v = call(
            &c,
            "conn.sql-error",
            json!({"conn": "pg", "sql": "select 1"}),
        )
        .await;
        (v["error"] == "ConnectionNotConfigured").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_unreachable_then_back() {
    let port = shoal_tests::free_port();
    let config = format!(
        "outgoing:\n  - {{name: flaky, type: sql, url: \"postgres://postgres@127.0.0.1:{port}/test\", timeout: 3}}\n"
    );
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(&config)).await;
    let probe = json!({"conn": "flaky", "sql": "select 1"});
    // Nothing listens: a clear error, quickly.
    let started = std::time::Instant::now();
    let v = call(&c, "conn.sql-error", probe.clone()).await;
    assert_eq!(v["error"], "ConnectionUnavailable", "{v}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server comes (back): the pool recovers without a restart.
    let fwd = Forwarder::start(port, "127.0.0.1:5432").await;
    let v = call(&c, "conn.sql-error", probe.clone()).await;
    assert_eq!(v["error"], Value::Null, "{v}");
    // It goes away with connections in the pool, and comes back again.
    drop(fwd);
    let v = shoal_tests::eventually(
        Duration::from_secs(10),
        "a call to fail with the server gone",
        || {
            let (c, probe) = (&c, probe.clone());
            async move {
                let v = call(c, "conn.sql-error", probe).await;
                (v["error"] != Value::Null).then_some(v)
            }
        },
    )
    .await;
    assert!(v["error"] != Value::Null, "{v}");
    let _fwd = Forwarder::start(port, "127.0.0.1:5432").await;
    shoal_tests::eventually(Duration::from_secs(15), "the pool to recover", || {
        let (c, probe) = (&c, probe.clone());
        async move {
            let v = call(c, "conn.sql-error", probe).await;
            (v["error"] == Value::Null).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_soap_through_a_real_server() {
    let c = Cluster::start(&[&fixture("conn.py")], 1, &[]).await;
    let http = c.http_url.clone();
    let config = format!(
        r#"{{
  "security": [
    {{"name": "partner", "type": "basic_auth", "username": "partner", "password": "s3cret-pw"}},
    {{"name": "key", "type": "apikey", "header": "X-API-Key", "key": "0123456789abc"}},
    {{"name": "ws", "type": "wss", "username": "soapy", "password": "ws-pass-1", "password_type": "digest"}}
  ],
  "channels": [
    {{"name": "echo", "type": "http", "service": "conn.echo", "url_path": "/echo/{{id}}", "security": "partner"}},
    {{"name": "echo-key", "type": "http", "service": "conn.echo", "url_path": "/keyed/{{id}}", "security": "key"}},
    {{"name": "echo-soap", "type": "soap", "service": "conn.echo", "url_path": "/soap/echo", "security": "ws"}}
  ],
  "outgoing": [
    {{"name": "good", "type": "http", "address": "{http}", "url_path": "/echo/{{id}}",
      "security": {{"type": "basic_auth", "username": "partner", "password": "s3cret-pw"}}}},
    {{"name": "bad", "type": "http", "address": "{http}", "url_path": "/echo/{{id}}",
      "security": {{"type": "basic_auth", "username": "partner", "password": "wrong"}}}},
    {{"name": "keyed", "type": "http", "address": "{http}", "url_path": "/keyed/{{id}}",
      "security": {{"type": "apikey", "header": "X-API-Key", "key": "0123456789abc"}}}},
    {{"name": "down", "type": "http", "address": "http://127.0.0.1:1", "retries": 1}},
    {{"name": "legacy", "type": "soap", "address": "{http}", "url_path": "/soap/echo",
      "security": {{"type": "wss", "username": "soapy", "password": "ws-pass-1", "password_type": "digest"}}}}
  ]
}}"#
    );
    let (s, v) = c
        .admin(reqwest::Method::POST, "apply", Some(config.into_bytes()))
        .await;
    assert_eq!(s, 200, "{v}");
    // Secrets are stored sealed and shown redacted.
    let (_, v) = c.admin(reqwest::Method::GET, "outgoing/good", None).await;
    assert_eq!(v["security"]["password"], "***", "{v}");
    let store = shoal_common::store::Store::connect(&c.store_options("gateway"))
        .await
        .expect("config store");
    let stored = store.get("outgoing/good").await.expect("get");
    let text = stored
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .unwrap_or_default();
    assert!(text.contains("\"sealed\""), "{text}");
    assert!(
        !text.contains("s3cret-pw"),
        "the store holds the password in clear: {text}"
    );

    let v = call(
        &c,
        "conn.http",
        json!({"conn": "good", "params": {"id": "7", "q": "x y"}}),
    )
    .await;
    assert_eq!(
        v,
        json!({"status": 200, "data": {"method": "GET", "params": {"id": "7"}, "query": {"q": "x y"}, "user": "partner", "payload": null}})
    );
    let v = call(
        &c,
        "conn.http",
        json!({"conn": "good", "method": "post", "data": {"a": 1}, "params": {"id": "8"}}),
    )
    .await;
    assert_eq!(v["data"]["payload"], json!({"a": 1}), "{v}");
    assert_eq!(v["data"]["method"], "POST");
    let v = call(
        &c,
        "conn.http",
        json!({"conn": "keyed", "params": {"id": "1"}}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    // The peer's answer, whatever its status, is the service's to read.
    let v = call(
        &c,
        "conn.http",
        json!({"conn": "bad", "params": {"id": "7"}}),
    )
    .await;
    assert_eq!(v["status"], 401, "{v}");
    // A missing path parameter and an unreachable peer are clear errors.
    let (s, v) = c
        .invoke("conn.http", &json!({"conn": "good"}))
        .await
        .expect("invoke");
    assert_eq!(s, 500, "{v}");
    assert!(v.to_string().contains("'id'"), "{v}");
    let (s, v) = c
        .invoke("conn.http", &json!({"conn": "down"}))
        .await
        .expect("invoke");
    assert_eq!(s, 503, "{v}");
    assert!(v.to_string().contains("cannot connect"), "{v}");

    // SOAP with a WS-Security UsernameToken (PasswordDigest), checked by Shoal's own SOAP
    // channel.
    let v = call(
        &c,
        "conn.soap",
        json!({"conn": "legacy", "data": "<echo><x>1</x></echo>"}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let text = v["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Envelope") && text.contains("soapy"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_zmq_and_ibm_mq_outgoing() {
    let queue = unique("out");
    let zport = shoal_tests::free_port();
    let config = format!(
        r#"
outgoing:
  - {{name: rabbit, type: amqp, url: "{RABBIT}"}}
  - {{name: rabbit-out, type: amqp, definition: rabbit, routing_key: "{queue}", app_id: shoal-test, priority: 7}}
  - {{name: mq, type: ibm_mq, url: "amqp://guest:guest@127.0.0.1:5672", address_format: "/amq/queue/{{queue}}"}}
  - {{name: zpush, type: zmq, socket_type: PUSH, address: "tcp://127.0.0.1:{zport}"}}
"#
    );
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(&config)).await;
    let (_conn, ch) = rabbit().await;
    declare(&ch, &queue).await;

    // AMQP: confirmed publishes with the connection's defaults and the call's overrides.
    call(
        &c,
        "conn.send",
        json!({"kind": "amqp", "conn": "rabbit-out", "msg": {"hello": 1},
        "headers": {"h": "v"}, "properties": {"correlation_id": "c1"}}),
    )
    .await;
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic_get")
        .expect("a message");
    let d = &got.delivery;
    assert_eq!(
        serde_json::from_slice::<Value>(&d.data).ok(),
        Some(json!({"hello": 1}))
    );
    let p = &d.properties;
    assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c1"));
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("shoal-test"));
    assert_eq!(*p.priority(), Some(7));
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    let h = p.headers().clone().unwrap_or_default();
    assert!(matches!(h.inner().get("h"), Some(AMQPValue::LongString(s)) if s.to_string() == "v"));
    // A broker refusal is the service's error, named.
    let (s, v) = c
        .invoke("conn.send", &json!({"kind": "amqp", "conn": "rabbit-out", "msg": "x", "exchange": "no-such-exchange"}))
        .await
        .expect("invoke");
    assert_eq!(s, 500, "{v}");
    assert!(v.to_string().contains("no-such-exchange"), "{v}");

    // IBM MQ over AMQP 1.0 (RabbitMQ's plugin stands in): the message lands on the queue.
    call(&c, "conn.send", json!({"kind": "ibm_mq", "conn": "mq", "msg": "to mq", "queue": queue, "correlation_id": "c2"})).await;
    let got = shoal_tests::eventually(Duration::from_secs(5), "the AMQP 1.0 message", || {
        let (ch, queue) = (&ch, &queue);
        async move {
            ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let body = String::from_utf8_lossy(&got.delivery.data).into_owned();
    assert!(body.contains("to mq"), "{body}");
    delete(&ch, &queue).await;

    // ZeroMQ: a libzmq PULL socket (pyzmq) receives what the service pushes.
    let mut pull = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import zmq,sys\nc=zmq.Context();s=c.socket(zmq.PULL);s.bind('tcp://127.0.0.1:{zport}')\nprint('ready',flush=True)\ns.RCVTIMEO=15000\nprint(s.recv_multipart()[-1].decode(),flush=True)"
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with pyzmq");
    let stdout = pull.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(
        lines.next_line().await.ok().flatten().as_deref(),
        Some("ready")
    );
    call(
        &c,
        "conn.send",
        json!({"kind": "zmq", "conn": "zpush", "msg": "over zmq"}),
    )
    .await;
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("pyzmq got the message")
        .ok()
        .flatten();
    assert_eq!(line.as_deref(), Some("over zmq"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_certs(certs.path());
    let port = shoal_tests::free_port();
    let script = format!(
        "import http.server,ssl,json\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20def do_GET(self):\n\
         \x20 b=json.dumps({{'path': self.path, 'tls': True}}).encode()\n\
         \x20 self.send_response(200);self.send_header('Content-Type','application/json');self.send_header('Content-Length',str(len(b)));self.end_headers();self.wfile.write(b)\n\
         \x20def log_message(self,*a): pass\n\
         s=http.server.HTTPServer(('127.0.0.1',{port}),H)\n\
         c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER);c.load_cert_chain('{}','{}')\n\
         s.socket=c.wrap_socket(s.socket,server_side=True)\n\
         print('ready',flush=True)\n\
         s.serve_forever()",
        cert.display(),
        key.display()
    );
    let mut server = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let stdout = server.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(
        lines.next_line().await.ok().flatten().as_deref(),
        Some("ready")
    );
    let config = format!(
        r#"
outgoing:
  - {{name: trusted, type: http, address: "https://localhost:{port}", url_path: "/x/{{id}}", ca_file: "{}"}}
  - {{name: untrusted, type: http, address: "https://localhost:{port}", url_path: "/x/{{id}}", retries: 0}}
  - {{name: unverified, type: http, address: "https://localhost:{port}", url_path: "/x/{{id}}", tls_verify: false}}
"#,
        ca.display()
    );
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(&config)).await;
    let v = call(
        &c,
        "conn.http",
        json!({"conn": "trusted", "params": {"id": "1"}}),
    )
    .await;
    assert_eq!(
        v,
        json!({"status": 200, "data": {"path": "/x/1", "tls": true}})
    );
    // A certificate from an unknown CA is refused, naming the reason.
    let (s, v) = c
        .invoke(
            "conn.http",
            &json!({"conn": "untrusted", "params": {"id": "1"}}),
        )
        .await
        .expect("invoke");
    assert_eq!(s, 503, "{v}");
    assert!(v.to_string().to_lowercase().contains("certificate"), "{v}");
    // tls_verify: false accepts it (for test systems only).
    let v = call(
        &c,
        "conn.http",
        json!({"conn": "unverified", "params": {"id": "2"}}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
}

/// A private CA and a server certificate for localhost and 127.0.0.1 it signed (webpki
/// refuses a CA certificate as the server's own): (ca.pem, cert.pem, key.pem) in `d`.
fn make_certs(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, cert, key) = (d.join("ca.pem"), d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(d.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
    // A private CA and a server certificate it signed (webpki refuses a CA certificate
    // as the server's own).
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .current_dir(d)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=shoal-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]) && openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "req.csr",
    ]) && openssl(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "cert.pem",
    ]);
    assert!(ok, "openssl could not make a certificate");
    (ca, cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_and_ftps() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_certs(certs.path());
    let plain = Ftp::start(&fixture("ftp_server.py"), root.path(), None).await;
    let plain_port = plain.port;
    let tls_root = tempfile::tempdir().expect("tempdir");
    let tls = Ftp::start(
        &fixture("ftp_server.py"),
        tls_root.path(),
        Some((&cert, &key)),
    )
    .await;
    let tls_port = tls.port;
    let config = format!(
        r#"
outgoing:
  - {{name: files, type: ftp, host: 127.0.0.1, port: {plain_port}, username: shoal, password: ftp-pass-1}}
  - {{name: secure, type: ftp, host: localhost, port: {tls_port}, username: shoal, password: ftp-pass-1, tls: true, ca_file: "{}"}}
  - {{name: wrong, type: ftp, host: 127.0.0.1, port: {plain_port}, username: shoal, password: nope}}
"#,
        ca.display()
    );
    let c = Cluster::start_with(&[&fixture("conn.py")], 1, &[], Some(&config)).await;
    for conn in ["files", "secure"] {
        let v = call(&c, "conn.ftp", json!({"conn": conn, "text": "héllo"})).await;
        assert_eq!(
            v,
            json!({"before": ["a.txt", "b.bin"], "text": "héllo", "size": 1024, "bytes": true,
                   "exists": [true, false, true], "missing": "RemoteError"}),
            "{conn}"
        );
    }
    assert!(
        std::fs::read_dir(root.path())
            .expect("root")
            .next()
            .is_none(),
        "cleaned up"
    );
    // A 64 MB file streamed up and down (in 1 MB and 256 KB pieces, never whole).
    let v = call(&c, "conn.ftp-big", json!({"conn": "secure", "mb": 64})).await;
    let mb64 = 64 * 1024 * 1024;
    assert_eq!(
        v,
        json!({"up": mb64, "down": mb64, "same": true, "size": mb64})
    );
    assert_eq!(
        std::fs::metadata(tls_root.path().join("big.bin"))
            .map(|m| m.len())
            .ok(),
        Some(mb64)
    );
    let (s, v) = c
        .invoke("conn.ftp", &json!({"conn": "wrong", "text": "x"}))
        .await
        .expect("invoke");
    assert_eq!(s, 500, "{v}");
    assert!(v.to_string().contains("refused the login"), "{v}");
}

async fn stats(c: &Cluster, tag: &str, seqs: &[u32]) -> Value {
    call(c, "q.stats", json!({"tag": tag, "seqs": seqs})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_channel_drill_with_a_broker_restart() {
    let queue = unique("drill");
    let dlx = format!("{queue}-dlx");
    let dlq = format!("{queue}-dlq");
    let config = format!(
        r#"
outgoing:
  - {{name: rabbit, type: amqp, url: "{RABBIT}"}}
  - {{name: to-drill, type: amqp, definition: rabbit, routing_key: "{queue}"}}
channels:
  - {{name: drill, type: amqp, service: q.record, definition: rabbit, queue: "{queue}", consumers: 2, prefetch: 20, max_redeliveries: 3, dead_letter_exchange: "{dlx}"}}
"#
    );
    let c = Cluster::start_with(
        &[&fixture("queues.py"), &fixture("conn.py")],
        1,
        &[],
        Some(&config),
    )
    .await;
    let (conn, ch) = rabbit().await;
    declare(&ch, &queue).await;
    ch.exchange_declare(
        dlx.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    declare(&ch, &dlq).await;
    ch.queue_bind(
        dlq.as_str().into(),
        dlx.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    // 1,000 messages (every tenth fails its first try), 5 that always fail, and one that
    // is not JSON at all.
    let mut bodies: Vec<Vec<u8>> = (1..=1000u32)
        .map(|i| json!({"tag": "drill", "seq": i}).to_string().into_bytes())
        .collect();
    for i in 2001..=2005u32 {
        bodies.push(
            json!({"tag": "drill", "seq": i, "poison": true})
                .to_string()
                .into_bytes(),
        );
    }
    bodies.push(b"{not json".to_vec());
    for b in &bodies {
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    drop(ch);
    let _ = conn.close(200, "published".into()).await;

    // Restart the broker in the middle of the run.
    shoal_tests::eventually(
        Duration::from_secs(60),
        "a third of the messages",
        || async {
            let v = stats(&c, "drill", &[]).await;
            (v["done"].as_array().map_or(0, Vec::len) >= 300).then_some(())
        },
    )
    .await;
    // A service publishes through an outgoing connection before and after the restart:
    // the publisher reconnects by itself.
    let send =
        |seq: u32| json!({"kind": "amqp", "conn": "to-drill", "msg": {"tag": "drill", "seq": seq}});
    call(&c, "conn.send", send(1001)).await;
    {
        let _restart = BrokerRestart::stop();
        shoal_tests::window(Duration::from_secs(2), "the broker stays down").await;
    }
    call(&c, "conn.send", send(1002)).await;
    let all: Vec<u32> = (1..=1002).collect();
    shoal_tests::eventually(
        Duration::from_secs(90),
        "every message processed",
        || async {
            let v = stats(&c, "drill", &[]).await;
            (v["done"].as_array().map_or(0, Vec::len) >= 1002).then_some(())
        },
    )
    .await;
    let v = stats(&c, "drill", &all).await;
    let done: Vec<u32> = serde_json::from_value(v["done"].clone()).expect("done");
    assert_eq!(done, all, "every message processed at least once");
    for s in (10..=1000).step_by(10) {
        assert!(
            v["calls"][s.to_string()].as_i64().unwrap_or(0) >= 2,
            "{s} was retried"
        );
    }

    // The dead-letter queue holds exactly the poison messages, each after 1 + 3 tries
    // (a redelivery across the restart may add one), and the unparseable one at once.
    let (_conn, ch) = rabbit().await;
    let taken: std::sync::Mutex<Vec<(Value, u32)>> = Default::default();
    shoal_tests::eventually(Duration::from_secs(30), "six dead letters", || async {
        while let Ok(Some(m)) = ch
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await
        {
            let attempts = m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| match h.inner().get("x-shoal-attempts") {
                    Some(AMQPValue::LongUInt(n)) => Some(*n),
                    _ => None,
                })
                .unwrap_or(0);
            let body = serde_json::from_slice(&m.delivery.data).unwrap_or(Value::Null);
            taken
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((body, attempts));
        }
        (taken.lock().unwrap_or_else(|e| e.into_inner()).len() >= 6).then_some(())
    })
    .await;
    let dead = taken.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_eq!(dead.len(), 6, "{dead:?}");
    let poison = stats(&c, "drill", &[2001, 2002, 2003, 2004, 2005]).await;
    for (body, attempts) in &dead {
        match body["seq"].as_u64() {
            Some(seq) => {
                assert!(seq > 2000, "only poison messages are dead-lettered: {body}");
                assert!(*attempts >= 4, "dead-lettered after the limit: {attempts}");
                let calls = poison["calls"][seq.to_string()].as_i64().unwrap_or(0);
                assert!((4..=5).contains(&calls), "{seq} called {calls} times");
            }
            None => assert_eq!(
                *attempts, 1,
                "an unparseable message is dead-lettered at once"
            ),
        }
    }
    delete(&ch, &queue).await;
    delete(&ch, &dlq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_and_ibm_mq_channels() {
    let zport = shoal_tests::free_port();
    let pport = shoal_tests::free_port();
    let queue = unique("mq-in");
    let config = format!(
        r#"
outgoing:
  - {{name: mq, type: ibm_mq, url: "amqp://guest:guest@127.0.0.1:5672", address_format: "/amq/queue/{{queue}}"}}
  - {{name: zpub, type: zmq, socket_type: PUB, socket_method: bind, address: "tcp://127.0.0.1:{pport}"}}
channels:
  - {{name: zin, type: zmq, service: q.record, socket_type: PULL, address: "tcp://127.0.0.1:{zport}"}}
  - {{name: zsub, type: zmq, service: q.record, socket_type: SUB, socket_method: connect, address: "tcp://127.0.0.1:{pport}", topic: prices}}
  - {{name: mq-in, type: ibm_mq, service: q.record, definition: mq, queue: "{queue}", max_redeliveries: 2}}
"#
    );
    let (_conn, ch) = rabbit().await;
    declare(&ch, &queue).await;
    let c = Cluster::start_with(
        &[&fixture("queues.py"), &fixture("conn.py")],
        1,
        &[],
        Some(&config),
    )
    .await;

    // ZeroMQ: a libzmq PUSH socket (pyzmq) connects to the channel's PULL socket, once
    // the gateway has bound it (the channel starts when the applied config reaches it).
    shoal_tests::eventually(
        Duration::from_secs(20),
        "the ZeroMQ channel to bind",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", zport))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let script = format!(
        "import zmq,json,time\nc=zmq.Context();s=c.socket(zmq.PUSH);s.connect('tcp://127.0.0.1:{zport}')\n\
         for i in range(1,51): s.send_string(json.dumps({{'tag':'zmq','seq':i,'flaky':False}}))\n\
         time.sleep(1);s.close(linger=5000)"
    );
    let status = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .status()
        .await
        .expect("python3 with pyzmq");
    assert!(status.success());
    shoal_tests::eventually(
        Duration::from_secs(20),
        "50 ZeroMQ messages processed",
        || async {
            let got = stats(&c, "zmq", &[]).await["done"]
                .as_array()
                .map_or(0, Vec::len);
            (got == 50).then_some(())
        },
    )
    .await;
    assert!(
        stats(&c, "zmq", &[]).await["last"]
            .as_str()
            .unwrap_or_default()
            .starts_with("zmq|zin")
    );
    // PUB (outgoing, bound) to SUB (a channel that connects, filtering on a topic): the
    // service publishes until the subscriber has it (PUB drops what it sends before a
    // subscriber has joined, as ZeroMQ does).
    let v = call(
        &c,
        "conn.zmq-pub",
        json!({"conn": "zpub", "tag": "pubsub", "topic": "prices"}),
    )
    .await;
    assert!(v["sends"].as_u64().is_some(), "{v}");
    let last = stats(&c, "pubsub", &[]).await["last"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(last, "zmq|zsub||prices");

    // The gateway reports each queue channel as consuming.
    let metrics = reqwest::get(format!("http://{}/metrics", c.gateway_ops))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for ch in ["zin", "zsub", "mq-in"] {
        let line = format!("gateway_queue_channel_up{{channel=\"{ch}\"}} 1");
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    assert!(
        metrics.contains("gateway_queue_messages_total{channel=\"zin\",outcome=\"processed\"} 50")
    );

    // IBM MQ over AMQP 1.0: messages put on the queue (here over AMQP 0-9-1) reach the
    // service; the failing first tries are retried; a poison message is rejected after
    // 1 + 2 tries.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut bodies: Vec<Value> = (1..=30u32)
        .map(|i| json!({"tag": "mq", "seq": i}))
        .collect();
    bodies.push(json!({"tag": "mq", "seq": 99, "poison": true}));
    for b in &bodies {
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b.to_string().as_bytes(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_correlation_id("corr-1".into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let all: Vec<u32> = (1..=30).collect();
    shoal_tests::eventually(Duration::from_secs(40), "30 IBM MQ messages", || async {
        let v = stats(&c, "mq", &[]).await;
        (v["done"].as_array().map_or(0, Vec::len) == 30).then_some(())
    })
    .await;
    shoal_tests::eventually(
        Duration::from_secs(20),
        "the poison message to be given up",
        || async {
            let v = stats(&c, "mq", &[99]).await;
            (v["calls"]["99"].as_i64() == Some(3)).then_some(())
        },
    )
    .await;
    let v = stats(&c, "mq", &all).await;
    assert_eq!(v["calls"]["10"], 2, "{v}");
    assert!(
        v["last"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ibm_mq|mq-in|corr-1"),
        "{v}"
    );
    // Given up means given up: no further tries.
    shoal_tests::holds_for(Duration::from_secs(2), "no further tries", || async {
        stats(&c, "mq", &[99]).await["calls"]["99"] == 3
    })
    .await;
    delete(&ch, &queue).await;
}

/// CURVE (CurveZMQ) between Shoal's libzmq sockets and pyzmq's, both ways and for both
/// socket pairs, with certificates made by pyzmq as a user makes them
/// (`zmq.auth.create_certificates`): a CURVE-server channel takes what a CURVE client
/// sends and nothing from a plain-text sender; a CURVE-client connection reaches a
/// pyzmq CURVE server; PUB/SUB likewise in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_curve_interoperates_with_pyzmq() {
    let keys = tempfile::tempdir().expect("tempdir");
    let dir = keys.path().display().to_string();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import zmq.auth\nfor n in ('server','peer'): zmq.auth.create_certificates('{dir}', n)\n\
             print(zmq.auth.load_certificate('{dir}/server.key')[0].decode())\n\
             print(zmq.auth.load_certificate('{dir}/peer.key')[0].decode())"
        ))
        .output()
        .expect("python3 with pyzmq");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let (server_public, peer_public) = (
        lines.next().expect("server key").to_owned(),
        lines.next().expect("peer key").to_owned(),
    );
    let (zin, zout, pubport, subport) = (
        shoal_tests::free_port(),
        shoal_tests::free_port(),
        shoal_tests::free_port(),
        shoal_tests::free_port(),
    );
    let server_cert = format!("{dir}/server.key_secret");
    // A Z85 key may hold `${` (about one key in 200 does): written into an apply document it
    // must be escaped, as a user would write it, or it reads as a variable reference.
    let peer_key = shoal_common::objects::escape_env(&peer_public);
    let config = format!(
        r#"
outgoing:
  - {{name: zc-push, type: zmq, socket_type: PUSH, address: "tcp://127.0.0.1:{zout}", curve: {{server_key: "{peer_key}"}}}}
  - {{name: zc-pub, type: zmq, socket_type: PUB, socket_method: bind, address: "tcp://127.0.0.1:{pubport}", curve: {{server: true, certificate: "{server_cert}"}}}}
channels:
  - {{name: zc-in, type: zmq, service: q.record, socket_type: PULL, address: "tcp://127.0.0.1:{zin}", curve: {{server: true, certificate: "{server_cert}"}}}}
  - {{name: zc-sub, type: zmq, service: q.record, socket_type: SUB, socket_method: connect, address: "tcp://127.0.0.1:{subport}", topic: news, curve: {{server_key: "{peer_key}"}}}}
"#
    );
    let c = Cluster::start_with(
        &[&fixture("queues.py"), &fixture("conn.py")],
        1,
        &[],
        Some(&config),
    )
    .await;
    shoal_tests::eventually(
        Duration::from_secs(20),
        "the CURVE channel to bind",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", zin))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;

    // 1. The CURVE-server channel: a plain-text pyzmq PUSH gets nothing through, a CURVE
    // client with the server's public key does.
    let tag = unique("curve");
    let plain = unique("plain");
    let script = format!(
        "import zmq,json,time\nc=zmq.Context()\n\
         p=c.socket(zmq.PUSH);p.connect('tcp://127.0.0.1:{zin}')\n\
         for i in range(1,6): p.send_string(json.dumps({{'tag':'{plain}','seq':i,'flaky':False}}))\n\
         s=c.socket(zmq.PUSH);s.curve_publickey,s.curve_secretkey=zmq.curve_keypair()\n\
         s.curve_serverkey=b'{server_public}';s.immediate=1;s.sndtimeo=20000\n\
         s.connect('tcp://127.0.0.1:{zin}')\n\
         for i in range(1,21): s.send_string(json.dumps({{'tag':'{tag}','seq':i,'flaky':False}}))\n\
         s.close(linger=5000);p.close(linger=1000)"
    );
    // (The CURVE sender waits for its handshake before each send: `immediate`.)
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("python3 with pyzmq");
    assert!(
        out.status.success(),
        "pyzmq: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    shoal_tests::eventually(
        Duration::from_secs(30),
        "20 CURVE messages processed",
        || async {
            let got = stats(&c, &tag, &[]).await["done"]
                .as_array()
                .map_or(0, Vec::len);
            (got == 20).then_some(())
        },
    )
    .await;
    let through = stats(&c, &plain, &[]).await["done"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(through, 0, "a plain-text sender reached a CURVE channel");

    // 2. The CURVE-client connection reaches a pyzmq CURVE server (PULL).
    let mut pull = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import zmq,zmq.auth\nc=zmq.Context();s=c.socket(zmq.PULL)\n\
             s.curve_publickey,s.curve_secretkey=zmq.auth.load_certificate('{dir}/peer.key_secret')\n\
             s.curve_server=True;s.bind('tcp://127.0.0.1:{zout}')\nprint('ready',flush=True)\n\
             s.RCVTIMEO=15000\nprint(s.recv_multipart()[-1].decode(),flush=True)"
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with pyzmq");
    let mut from_pull = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        pull.stdout.take().expect("stdout"),
    ));
    assert_eq!(
        from_pull.next_line().await.ok().flatten().as_deref(),
        Some("ready")
    );
    call(
        &c,
        "conn.send",
        json!({"kind": "zmq", "conn": "zc-push", "msg": "over curve"}),
    )
    .await;
    let line = tokio::time::timeout(Duration::from_secs(15), from_pull.next_line())
        .await
        .expect("pyzmq got the message")
        .ok()
        .flatten();
    assert_eq!(line.as_deref(), Some("over curve"));

    // 3. PUB (a CURVE-server connection) to a pyzmq SUB (CURVE client): the service
    // publishes until the subscriber has a message (PUB drops what it sends before).
    let mut sub = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import zmq\nc=zmq.Context();s=c.socket(zmq.SUB)\n\
             s.curve_publickey,s.curve_secretkey=zmq.curve_keypair();s.curve_serverkey=b'{server_public}'\n\
             s.setsockopt(zmq.SUBSCRIBE,b'alerts');s.connect('tcp://127.0.0.1:{pubport}')\n\
             s.RCVTIMEO=40000\nprint(s.recv_multipart()[-1].decode(),flush=True)"
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with pyzmq");
    let from_sub = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        sub.stdout.take().expect("stdout"),
    ));
    let from_sub = tokio::sync::Mutex::new(from_sub);
    let got = shoal_tests::eventually(
        Duration::from_secs(30),
        "pyzmq's SUB to get a CURVE message",
        || {
            let (c, from_sub) = (&c, &from_sub);
            async move {
                call(
                    c,
                    "conn.send",
                    json!({"kind": "zmq", "conn": "zc-pub", "msg": "curve news", "topic": "alerts"}),
                )
                .await;
                let mut lines = from_sub.lock().await;
                tokio::time::timeout(Duration::from_millis(200), lines.next_line())
                    .await
                    .ok()
                    .and_then(|l| l.ok().flatten())
            }
        },
    )
    .await;
    assert_eq!(got, "curve news");

    // 4. A pyzmq PUB (CURVE server) to the SUB channel (CURVE client, topic `news`).
    let subtag = unique("curvesub");
    let _publisher = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import zmq,zmq.auth,json,time\nc=zmq.Context();s=c.socket(zmq.PUB)\n\
             s.curve_publickey,s.curve_secretkey=zmq.auth.load_certificate('{dir}/peer.key_secret')\n\
             s.curve_server=True;s.bind('tcp://127.0.0.1:{subport}')\n\
             for i in range(300):\n  s.send_multipart([b'news',json.dumps({{'tag':'{subtag}','seq':1,'flaky':False}}).encode()]);time.sleep(0.1)"
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with pyzmq");
    shoal_tests::eventually(
        Duration::from_secs(30),
        "the SUB channel to get a CURVE message",
        || async {
            (stats(&c, &subtag, &[]).await["done"]
                .as_array()
                .map_or(0, Vec::len)
                >= 1)
                .then_some(())
        },
    )
    .await;
    let last = stats(&c, &subtag, &[]).await["last"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(last, "zmq|zc-sub||news");
}
