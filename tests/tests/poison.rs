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
