//! The in-process tier: every component's `run()` called in this test process on
//! `127.0.0.1:0` — the embedded store, an executor (CPython in this process), connectors, a
//! KVDB proxy, a scheduler and a gateway — wired through the store as they are in a real
//! cluster, then stopped with their cancellation tokens. No binary is spawned: this is the
//! tier a change to one component's wiring is checked on first, in about a second.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_common::cli::CommonOptions;
use shoal_common::component::Listeners;
use shoal_store_embedded::EmbeddedStore;
use shoal_tests::eventually;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const ECHO: &str = "from shoal import Service\n\nclass Echo(Service):\n    name = 'inproc.echo'\n\n    def handle(self):\n        self.response.payload = {'echo': self.request.payload}\n";

async fn port0() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn common(store: &str) -> CommonOptions {
    CommonOptions {
        etcd: vec![format!("http://{store}")],
        cluster: "in-process".into(),
        grace_period: 2,
        plaintext: true,
        ..CommonOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_component_runs_in_process_on_port_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();

    // The config store.
    let store = EmbeddedStore::open(&dir.path().join("store")).expect("store");
    let listener = port0().await;
    let store_addr = listener.local_addr().expect("addr").to_string();
    let store_task = tokio::spawn({
        let (store, c) = (store.clone(), cancel.clone());
        async move { store.serve(listener, c).await }
    });

    // An executor with a pickup folder.
    let services = dir.path().join("services");
    std::fs::create_dir_all(&services).expect("services");
    std::fs::write(services.join("inproc_echo.py"), ECHO).expect("write");
    let executor = shoal_executor::Options {
        common: common(&store_addr),
        pickup_dir: Some(services),
        ..shoal_executor::Options::default()
    };
    let mut tasks = Vec::new();
    let l = Listeners {
        grpc: port0().await,
        ops: port0().await,
    };
    tasks.push(tokio::spawn(shoal_executor::run(
        executor,
        l,
        cancel.clone(),
    )));

    // Connectors, a KVDB proxy (memory) and a scheduler.
    let l = Listeners {
        grpc: port0().await,
        ops: port0().await,
    };
    let connectors = shoal_connectors::Options {
        common: common(&store_addr),
        ..shoal_connectors::Options::default()
    };
    tasks.push(tokio::spawn(shoal_connectors::run(
        connectors,
        l,
        cancel.clone(),
    )));
    let l = Listeners {
        grpc: port0().await,
        ops: port0().await,
    };
    let kvdb = shoal_kvdb_proxy::Options {
        common: common(&store_addr),
        ..shoal_kvdb_proxy::Options::default()
    };
    tasks.push(tokio::spawn(shoal_kvdb_proxy::run(kvdb, l, cancel.clone())));
    let l = Listeners {
        grpc: port0().await,
        ops: port0().await,
    };
    let scheduler = shoal_scheduler::Options {
        common: common(&store_addr),
        ..shoal_scheduler::Options::default()
    };
    tasks.push(tokio::spawn(shoal_scheduler::run(
        scheduler,
        l,
        cancel.clone(),
    )));

    // The gateway, its four listeners on port 0.
    let password = dir.path().join("admin-password");
    std::fs::write(&password, "in-process-password").expect("password");
    let gl = shoal_gateway::Listeners {
        http: port0().await,
        grpc: port0().await,
        admin: port0().await,
        ops: port0().await,
    };
    let http = format!("http://{}", gl.http.local_addr().expect("addr"));
    let admin = format!("http://{}", gl.admin.local_addr().expect("addr"));
    let gateway = shoal_gateway::Options {
        common: common(&store_addr),
        admin_password_file: Some(password),
        ..shoal_gateway::Options::default()
    };
    tasks.push(tokio::spawn(shoal_gateway::run(
        gateway,
        gl,
        cancel.clone(),
    )));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let api = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{admin}/api/v1/{path}"))
            .basic_auth("admin", Some("in-process-password"))
    };

    // Every role registered through the store.
    eventually(
        Duration::from_secs(30),
        "every member registered",
        || async {
            let v: Value = api(reqwest::Method::GET, "cluster")
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let roles = [
                "gateway",
                "executor",
                "connectors",
                "kvdb-proxy",
                "scheduler",
            ];
            roles
                .iter()
                .all(|r| v["members"][r].as_array().is_some_and(|m| !m.is_empty()))
                .then_some(())
        },
    )
    .await;

    // A channel made live through the admin API serves the pickup folder's service.
    let r = api(reqwest::Method::PUT, "channels/echo")
        .json(
            &json!({"name": "echo", "type": "http", "service": "inproc.echo", "url_path": "/echo"}),
        )
        .send()
        .await
        .expect("put channel");
    assert_eq!(r.status(), 200);
    let answer: Value = eventually(Duration::from_secs(20), "the channel answering", || async {
        let r = client
            .post(format!("{http}/echo"))
            .json(&json!({"a": 1}))
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json().await.ok()
    })
    .await;
    assert_eq!(answer, json!({"echo": {"a": 1}}));

    // The KVDB through the gateway and the in-process proxy.
    let r = api(reqwest::Method::PUT, "kvdb/inproc/key")
        .body("value-1")
        .send()
        .await
        .expect("kvdb put");
    assert_eq!(r.status(), 200);
    let v: Value = api(reqwest::Method::GET, "kvdb/inproc/key")
        .send()
        .await
        .expect("kvdb get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["value"], "value-1");

    // Everything stops on its cancellation token, within its grace period.
    cancel.cancel();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("a component did not stop")
            .expect("join");
        assert!(r.is_ok(), "a component failed: {r:?}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), store_task).await;
}
