//! Service code from a Kubernetes ConfigMap: the pickup folder laid out and updated
//! exactly as the kubelet does it (`shoal_tests::kubelet`), followed by a real executor.

use std::time::Duration;

use serde_json::json;
use shoal_tests::cluster::Cluster;
use shoal_tests::{eventually, kubelet};

fn module(version: u32) -> String {
    format!(
        "from shoal import Service\n\nclass Version(Service):\n    name = 'cm.version'\n\n    def handle(self):\n        self.response.payload = {{'version': {version}}}\n"
    )
}

const OTHER: &str = "from shoal import Service\n\nclass Other(Service):\n    name = 'cm.other'\n\n    def handle(self):\n        self.response.payload = {'other': True}\n";

async fn version(c: &Cluster) -> Option<u64> {
    match c.invoke("cm.version", &json!({})).await {
        Ok((200, v)) => v["version"].as_u64(),
        _ => None,
    }
}

async fn modules(c: &Cluster) -> Vec<String> {
    let (_, v) = c.admin(reqwest::Method::GET, "services", None).await;
    let mut m: Vec<String> = v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["module"].as_str().map(str::to_owned))
        .collect();
    m.sort();
    m.dedup();
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_volume_is_followed_through_the_kubelets_swaps() {
    let c = Cluster::start(&[], 1, &[]).await;
    let dir = c.services_dir();
    kubelet::write(&dir, &[("cm_a.py", &module(1)), ("cm_b.py", OTHER)]);
    let patience = Duration::from_secs(20);
    eventually(patience, "version 1 from the ConfigMap", || async {
        (version(&c).await == Some(1)).then_some(())
    })
    .await;
    let (status, _) = c.invoke("cm.other", &json!({})).await.expect("invoke");
    assert_eq!(status, 200);
    // Only the visible keys are modules: never `..data` or the timestamped folder.
    assert_eq!(modules(&c).await, ["cm_a", "cm_b"]);

    // An update: new content for one key, another key removed.
    kubelet::write(&dir, &[("cm_a.py", &module(2))]);
    eventually(patience, "version 2 after the swap", || async {
        (version(&c).await == Some(2)).then_some(())
    })
    .await;
    eventually(patience, "the removed key's service gone", || async {
        matches!(c.invoke("cm.other", &json!({})).await, Ok((404, _))).then_some(())
    })
    .await;
    assert_eq!(modules(&c).await, ["cm_a"]);

    // Same size and the same modification time as before: the swap alone is noticed.
    let before = std::fs::metadata(dir.join("cm_a.py")).expect("meta");
    kubelet::write(&dir, &[("cm_a.py", &module(3))]);
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join("cm_a.py"))
        .expect("open");
    file.set_modified(before.modified().expect("mtime"))
        .expect("set mtime");
    assert_eq!(
        std::fs::metadata(dir.join("cm_a.py")).expect("meta").len(),
        before.len()
    );
    eventually(patience, "version 3 after a same-size swap", || async {
        (version(&c).await == Some(3)).then_some(())
    })
    .await;
}
