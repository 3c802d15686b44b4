//! Poison code stays out of the serving executor: a module deployed through the admin API
//! that exits, crashes, spins or exhausts memory at import is refused with a 400 naming
//! the file and the reason; the executor that validated it keeps running (same process),
//! keeps serving the calls in flight, and later deploys — even ones importing modules
//! validated before the validating process was replaced — go through.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::cluster::{Cluster, examples_dir};

fn fixture(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(p)
}

async fn deploy(c: &Cluster, name: &str, source: &str) -> (u16, Value) {
    let body =
        serde_json::to_vec(&json!({"files": [{"name": name, "source": source}]})).expect("json");
    c.admin(reqwest::Method::POST, "deploy", Some(body)).await
}

async fn executor_pids(c: &Cluster) -> Vec<u64> {
    let v = c.cluster_json().await.expect("cluster");
    v["members"]["executor"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["pid"].as_u64())
        .collect()
}

#[tokio::test]
async fn poison_modules_are_refused_and_the_executor_lives_on() {
    let c = Cluster::start_env(
        &[&examples_dir().join("hello.py"), &fixture("slow.py")],
        1,
        &[],
        None,
        &[
            ("SHOAL_VALIDATE_TIMEOUT_SECS", "3"),
            ("SHOAL_VALIDATE_MEMORY_MB", "256"),
        ],
    )
    .await;
    let pids = executor_pids(&c).await;
    assert_eq!(pids.len(), 1);

    // A good module first: later ones import it.
    let (status, v) = deploy(&c, "base_mod.py", "from shoal import Service\nVALUE = 41\n\nclass B(Service):\n    name = 'base.b'\n    def handle(self):\n        self.response.payload = {'v': VALUE}\n").await;
    assert_eq!(status, 200, "{v}");

    // A call in flight while poison is validated finishes normally.
    let slow = {
        let admin = c.admin_url.clone();
        let pw = c.password.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{admin}/api/v1/services/slow.sleep/invoke"))
                .basic_auth("admin", Some(pw))
                .json(&json!({"s": 2}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };

    for (file, source, needle) in [
        ("poison_exit.py", "import os\nos._exit(3)\n", "exit code 3"),
        (
            "poison_crash.py",
            "import ctypes\nctypes.string_at(0)\n",
            "signal 11",
        ),
        (
            "poison_spin.py",
            "while True:\n    pass\n",
            "did not finish within 3 s",
        ),
        (
            "poison_memory.py",
            "hog = bytearray(4 * 1024 ** 3)\n",
            "MemoryError",
        ),
    ] {
        let (status, v) = deploy(&c, file, source).await;
        assert_eq!(status, 400, "{file}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(file) && message.contains(needle),
            "{file}: {message}"
        );
    }
    assert_eq!(
        slow.await.expect("join").expect("slow call"),
        200,
        "the call in flight"
    );

    // Same executor process, still serving; nothing of the poison was stored.
    assert_eq!(
        executor_pids(&c).await,
        pids,
        "the executor did not restart"
    );
    let (status, v) = c
        .invoke("hello.say-hello", &json!({"name": "after"}))
        .await
        .expect("invoke");
    assert_eq!(
        (status, v["greeting"].as_str()),
        (200, Some("Hello, after!"))
    );
    let (_, modules) = c.admin(reqwest::Method::GET, "deploy", None).await;
    let names: Vec<&str> = modules["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["module"].as_str())
        .collect();
    assert_eq!(names, ["base_mod"], "{modules}");

    // The validating process was replaced; a module importing the earlier one validates.
    let (status, v) = deploy(&c, "uses_base.py", "from shoal import Service\nimport base_mod\n\nclass U(Service):\n    name = 'base.u'\n    def handle(self):\n        self.response.payload = {'v': base_mod.VALUE + 1}\n").await;
    assert_eq!(status, 200, "{v}");
    shoal_tests::eventually(
        Duration::from_secs(20),
        "the new module serving",
        || async {
            let (s, v) = c.invoke("base.u", &json!({})).await.ok()?;
            (s == 200 && v["v"] == 42).then_some(())
        },
    )
    .await;
}

const STUCK: &str = r#"import re, time
from shoal import Service

class Spin(Service):
    name = 'stuck.spin'
    def handle(self):
        while True:
            pass

class Sleep(Service):
    """Blocked in C with the GIL released: no Python exception reaches it."""
    name = 'stuck.sleep'
    def handle(self):
        time.sleep(3600)

class HoldsTheGil(Service):
    """Catastrophic backtracking: the regex engine holds the GIL and never returns."""
    name = 'stuck.gil'
    def handle(self):
        re.match(r'(a+)+$', 'a' * 64 + 'b')

class Echo(Service):
    name = 'stuck.echo'
    def handle(self):
        self.response.payload = {'ok': True}
"#;

/// An admin invoke of `service` with a deadline of `ms`: its status.
async fn invoke_within(c: &Cluster, service: &str, ms: u64) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/v1/services/{service}/invoke", c.admin_url))
        .basic_auth("admin", Some(&c.password))
        .header("X-Shoal-Timeout-Ms", ms.to_string())
        .json(&json!({}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The executor's metric `name` (first sample), from its ops listener.
async fn executor_metric(c: &Cluster, name: &str) -> Option<f64> {
    let v = c.cluster_json().await?;
    let ops = v["members"]["executor"][0]["ops_addr"].as_str()?;
    let text = shoal_tests::metrics_text(ops).await?;
    shoal_tests::sample(&text, name)
}

#[tokio::test(flavor = "multi_thread")]
async fn stuck_services_are_written_off_and_the_executor_restarts_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stuck = dir.path().join("stuck.py");
    std::fs::write(&stuck, STUCK).expect("write");
    let c = Cluster::start_env(
        &[stuck.as_path()],
        1,
        &[],
        None,
        &[
            ("SHOAL_MAX_WRITTEN_OFF", "2"),
            ("SHOAL_WRITE_OFF_AFTER_MS", "500"),
        ],
    )
    .await;
    let first = executor_pids(&c).await;
    assert_eq!(invoke_within(&c, "stuck.echo", 5000).await, 200);

    // A pure-Python spin is stopped where it is: 504, and the worker lives on.
    assert_eq!(invoke_within(&c, "stuck.spin", 300).await, 504);
    shoal_tests::holds_for(Duration::from_secs(1), "nothing written off", || async {
        executor_metric(&c, "shoal_executor_workers_written_off_total").await == Some(0.0)
    })
    .await;

    // A thread blocked where no exception reaches it is written off and replaced: the
    // executor keeps serving, same process.
    assert_eq!(invoke_within(&c, "stuck.sleep", 300).await, 504);
    shoal_tests::eventually(
        Duration::from_secs(10),
        "one worker written off",
        || async {
            (executor_metric(&c, "shoal_executor_workers_written_off_total").await == Some(1.0))
                .then_some(())
        },
    )
    .await;
    for _ in 0..5 {
        assert_eq!(invoke_within(&c, "stuck.echo", 5000).await, 200);
    }
    assert_eq!(
        executor_pids(&c).await,
        first,
        "one write-off is no restart"
    );

    // The second stuck thread reaches the limit: the executor drains and restarts.
    assert_eq!(invoke_within(&c, "stuck.sleep", 300).await, 504);
    let second = shoal_tests::eventually(
        Duration::from_secs(30),
        "a new executor after the limit",
        || async {
            let p = executor_pids(&c).await;
            (p.len() == 1 && p != first).then_some(p)
        },
    )
    .await;
    shoal_tests::eventually(Duration::from_secs(20), "serving again", || async {
        (invoke_within(&c, "stuck.echo", 5000).await == 200).then_some(())
    })
    .await;

    // A service holding the GIL wedges the interpreter: nothing else can run Python, so
    // the executor restarts at once rather than after the limit.
    assert_eq!(invoke_within(&c, "stuck.gil", 300).await, 504);
    shoal_tests::eventually(
        Duration::from_secs(40),
        "a new executor after the GIL was held",
        || async {
            let p = executor_pids(&c).await;
            (p.len() == 1 && p != second).then_some(())
        },
    )
    .await;
    shoal_tests::eventually(Duration::from_secs(20), "serving again", || async {
        (invoke_within(&c, "stuck.echo", 5000).await == 200).then_some(())
    })
    .await;
}

const POOL: &str = r#"
import threading, time
from shoal import Service

_lock = threading.Lock()
_now = {'sleep': 0, 'spin': 0}
_most = {'sleep': 0, 'spin': 0}

def _enter(kind):
    with _lock:
        _now[kind] += 1
        _most[kind] = max(_most[kind], _now[kind])

def _leave(kind):
    with _lock:
        _now[kind] -= 1

class Sleep(Service):
    name = 'pool.sleep'
    def handle(self):
        _enter('sleep')
        try:
            time.sleep(0.6)
        finally:
            _leave('sleep')
        self.response.payload = {'most': _most['sleep']}

class Spin(Service):
    name = 'pool.spin'
    def handle(self):
        _enter('spin')
        try:
            end = time.perf_counter() + 0.3
            n = 0
            while time.perf_counter() < end:
                n += 1
        finally:
            _leave('spin')
        self.response.payload = {'most': _most['spin']}
"#;

/// The most calls of `service` the pool ran at once, over `n` calls made together.
async fn most_at_once(c: &Cluster, service: &str, n: usize) -> u64 {
    let empty = json!({});
    let calls = (0..n).map(|_| c.invoke(service, &empty));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| {
            let (status, v) = r.expect("invoke");
            assert_eq!(status, 200, "{v}");
            v["most"].as_u64().expect("most")
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_adds_runners_for_services_that_block_not_for_ones_that_compute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = dir.path().join("pool.py");
    std::fs::write(&pool, POOL).expect("write");
    let c = Cluster::start(&[pool.as_path()], 1, &[]).await;
    // Sleeping calls release the GIL: more runners finish them together.
    let started = std::time::Instant::now();
    let most = most_at_once(&c, "pool.sleep", 6).await;
    assert!(most >= 3, "sleeping calls ran at most {most} at once");
    assert!(
        started.elapsed() < Duration::from_millis(6 * 600),
        "6 sleeps of 0.6 s took {:?}",
        started.elapsed()
    );
    // Computing calls hold it: a second runner could only take turns (and hold another
    // payload in memory), so they run one at a time.
    let most = most_at_once(&c, "pool.spin", 4).await;
    assert_eq!(most, 1, "computing calls ran {most} at once");
}
